//! Tables: the guests' page-table frames stay where they are across the
//! jump, so their contents must be what the old hypervisor paused. The old
//! side takes [`digest`] of every table frame the state's runs list and
//! carries it in the argument page (`tables_digest`); the new side takes it
//! again before the pass ([`check`]) and refuses any difference — a flipped
//! bit anywhere in a table is caught even where the pass would find the
//! entry still valid.
//!
//! An L4 is digested over its guest slots only (0..256): the hypervisor
//! slots are each image's own, and the new image rewrites them. An HVM
//! domain's nested page-table (P2m) and log-dirty frames stay in place too
//! and are digested whole, after its other runs, in run order.
//!
//! The words are folded with the project's fold
//! ([`hvlu_types::digest::Fold`]) from this digest's own seed, and the
//! splitmix64 finaliser ends it.

use frame_ownership::PageTableReader;
use handover_abi::{HandoverState, RunKind};
use hvlu_types::digest::Fold;
use hvlu_types::Mfn;

use crate::IncomingError;

/// The page-table digest's seed.
const SEED: u64 = 0x9e6c_63d0_676a_9a99;

/// The digest of the contents of every page-table frame of `state`'s runs,
/// read through `reader`, in run order (each frame's number folded in, so
/// tables swapped between frames differ).
pub fn digest<R: PageTableReader + ?Sized>(state: &HandoverState, reader: &R) -> u64 {
    let mut fold = Fold::new(SEED);
    for d in &state.domains {
        // Guest page tables, and an HVM domain's nested tables and
        // log-dirty bitmap: all stay in place.
        let in_place = |k: RunKind| k.is_page_table() || !k.has_guest_frames();
        for run in d.runs.iter().filter(|r| in_place(r.kind)) {
            let slots = if run.kind == RunKind::L4 { 256 } else { 512 };
            for i in 0..run.count {
                let mfn = Mfn(run.first_mfn.0 + i);
                fold.add(mfn.0);
                for &entry in &reader.read_table(mfn)[..slots] {
                    fold.add(entry);
                }
            }
        }
    }
    fold.finish()
}

/// Refuses unless the tables' [`digest`] is `expected`.
pub fn check<R: PageTableReader + ?Sized>(
    state: &HandoverState,
    reader: &R,
    expected: u64,
) -> Result<u64, IncomingError> {
    let computed = digest(state, reader);
    if computed == expected {
        Ok(computed)
    } else {
        Err(IncomingError::TablesChanged { computed, expected })
    }
}
