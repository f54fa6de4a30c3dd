//! Pins: the incoming pass pins every table the state lists as pinned
//! (`old_hv::pins::save` listed them); this reads the pins back from the
//! rebuilt frametable, for the round-trip check and for diagnostics.

use alloc::vec::Vec;

use frame_ownership::{pinned_in, FrameInfo};
use handover_abi::{Domain, PinnedTable};

/// The tables of `d` the frametable holds pinned, in run order.
pub fn pinned(frametable: &[FrameInfo], d: &Domain) -> Vec<PinnedTable> {
    pinned_in(frametable, &d.runs)
        .into_iter()
        .map(|(mfn, level)| PinnedTable { mfn, level })
        .collect()
}
