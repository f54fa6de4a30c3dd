//! Adopting the preserved frames: the single frametable pass over the
//! decoded state, the digest check and the free RAM.

use alloc::vec::Vec;

use frame_ownership::{state_views, FrameInfo, MachineLayout, PageTableReader, PassReport};
use handover_abi::HandoverState;
use hvlu_types::MfnRange;

use crate::IncomingError;

/// What the pass made of the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// The pass's report.
    pub report: PassReport,
    /// The owned-frame digest after the pass, over the frames of the runs
    /// (checked equal to the old side's before anything runs).
    pub digest: u64,
    /// The digest of the new frametable by a scan of every entry
    /// ([`frame_ownership::frametable_digest`], the definition), computed
    /// independently of the runs and of the check above: a frame the pass
    /// wrote outside the runs, or an entry the boot left non-zero, makes it
    /// differ from the old side's. The report prints it as `digest_new`.
    pub digest_scan: u64,
    /// Free RAM: the complement of the runs, the region and the reserved
    /// ranges, to release once the guests run.
    pub free: Vec<MfnRange>,
    /// Runs in the state, over all domains.
    pub runs: u64,
}

/// Runs [`frame_ownership::rebuild`] over every domain of `state` on the
/// zeroed `frametable` and `m2p`, takes the owned-frame digest, refuses if
/// it is not `expected_digest`, takes the independent digest of the whole
/// table ([`Adopted::digest_scan`], a scan of every entry: proportional to
/// RAM) and computes the free ranges.
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
    let digest_scan = frame_ownership::frametable_digest(frametable, m2p);
    Ok(Adopted {
        report,
        digest,
        digest_scan,
        free: frame_ownership::free_ranges(layout, &views),
        runs: state.domains.iter().map(|d| d.runs.len() as u64).sum(),
    })
}
