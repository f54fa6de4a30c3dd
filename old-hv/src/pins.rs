//! Pins: which of a domain's page tables are pinned, as frame-ownership
//! reads them from the `PINNED` flags of their frametable entries
//! (`p2m_domain`), into the state's list. Restored by the incoming pass (a
//! pin in the state pins the frame) and read back by `new_hv::pins`.

use alloc::vec::Vec;

use handover_abi::{PinnedTable, RunKind};
use hvlu_types::Mfn;

/// The state's list of pinned tables, in the order given.
pub fn save(pinned: &[(Mfn, RunKind)]) -> Vec<PinnedTable> {
    pinned
        .iter()
        .map(|&(mfn, level)| PinnedTable { mfn, level })
        .collect()
}
