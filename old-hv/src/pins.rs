//! Pins: which of a domain's page tables are pinned, from the `PINNED`
//! flags of their frametable entries. Restored by the incoming pass (a pin
//! in the state pins the frame) and read back by `new_hv::pins`.

use alloc::vec::Vec;

use frame_ownership::{pinned_in, FrameInfo};
use handover_abi::{MemRun, PinnedTable};

/// The pinned tables among `runs`' page-table frames, in run order.
pub fn save(frametable: &[FrameInfo], runs: &[MemRun]) -> Vec<PinnedTable> {
    pinned_in(frametable, runs)
        .into_iter()
        .map(|(mfn, level)| PinnedTable { mfn, level })
        .collect()
}
