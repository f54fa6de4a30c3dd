//! Adopting the preserved frames: the single frametable pass over the
//! decoded state, the digest check and the free RAM.

use alloc::vec::Vec;

use frame_ownership::{state_views, FrameInfo, MachineLayout, PageTableReader, PassReport};
use handover_abi::{HandoverState, MfnRange};

use crate::IncomingError;

/// What the pass made of the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// The pass's report.
    pub report: PassReport,
    /// The owned-frame digest after the pass (equal to the old side's).
    pub digest: u64,
    /// Free RAM: the complement of the runs, the region and the reserved
    /// ranges, to release once the guests run.
    pub free: Vec<MfnRange>,
    /// Runs in the state, over all domains.
    pub runs: u64,
}

/// Runs [`frame_ownership::rebuild`] over every domain of `state` on the
/// zeroed `frametable` and `m2p`, takes the owned-frame digest, refuses if
/// it is not `expected_digest`, and computes the free ranges.
pub fn adopt<R: PageTableReader + ?Sized>(
    layout: &MachineLayout<'_>,
    state: &HandoverState,
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    expected_digest: u64,
) -> Result<Adopted, IncomingError> {
    let views = state_views(state);
    let report = frame_ownership::rebuild(layout, &views, reader, frametable, m2p)?;
    let digest = frame_ownership::owned_digest(frametable, m2p, &views);
    if digest != expected_digest {
        return Err(IncomingError::DigestMismatch {
            computed: digest,
            expected: expected_digest,
        });
    }
    Ok(Adopted {
        report,
        digest,
        free: frame_ownership::free_ranges(layout, &views),
        runs: state.domains.iter().map(|d| d.runs.len() as u64).sum(),
    })
}
