//! Adopting the preserved frames: the single frametable pass over the
//! decoded state, the digest check and the free RAM.

use alloc::vec::Vec;

use frame_ownership::lazy::{init_named, named_ranges, Unsettled};
use frame_ownership::{state_views, FrameInfo, MachineLayout, PageTableReader, PassReport};
use handover_abi::marks::Marks;
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
    /// Free RAM: the complement of the runs, the region and the reserved
    /// ranges, to release once the guests run.
    pub free: Vec<MfnRange>,
    /// Every entry but the named frames', not initialised yet, with the
    /// free RAM among them: settled after the guests run again
    /// (Invariant 29). Once it is, the digest of the whole table by a scan
    /// of every entry ([`frame_ownership::frametable_digest`], the
    /// definition, independent of the runs and of the check above) must be
    /// the old side's: the report prints it as `digest_new`.
    pub unsettled: Unsettled,
    /// Runs in the state, over all domains.
    pub runs: u64,
}

/// Initialises the entries of the frames `state` names
/// ([`frame_ownership::lazy::init_named`]: `frametable` and `m2p` may hold
/// anything else), runs [`frame_ownership::rebuild`] over every domain,
/// takes the owned-frame digest, refuses if it is not `expected_digest`,
/// and computes the free ranges and what is left to initialise
/// ([`Adopted::unsettled`]). Nothing here is proportional to RAM: only to
/// the runs and the frames they name.
pub fn adopt<R: PageTableReader + ?Sized>(
    layout: &MachineLayout<'_>,
    state: &HandoverState,
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    expected_digest: u64,
) -> Result<Adopted, IncomingError> {
    let mut marks = Marks::new();
    adopt_marked(
        layout,
        state,
        reader,
        frametable,
        m2p,
        expected_digest,
        (&mut marks, || 0),
    )
}

/// [`adopt`], marking its steps in `marks` with readings of `clock`
/// (`named`, `rebuild`, `digest`, `free`).
pub fn adopt_marked<R: PageTableReader + ?Sized>(
    layout: &MachineLayout<'_>,
    state: &HandoverState,
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    expected_digest: u64,
    (marks, clock): (&mut Marks, fn() -> u64),
) -> Result<Adopted, IncomingError> {
    let views = state_views(state);
    let named = named_ranges(&views);
    init_named(frametable, m2p, &named);
    marks.mark("named", clock());
    let report = frame_ownership::rebuild(layout, &views, reader, frametable, m2p)?;
    marks.mark("rebuild", clock());
    let digest = frame_ownership::owned_digest(frametable, m2p, &views);
    marks.mark("digest", clock());
    if digest != expected_digest {
        return Err(IncomingError::DigestMismatch {
            computed: digest,
            expected: expected_digest,
        });
    }
    let free = frame_ownership::free_ranges(layout, &views);
    let unsettled = Unsettled::after_update(frametable.len() as u64, &named, &free);
    marks.mark("free", clock());
    Ok(Adopted {
        report,
        digest,
        unsettled,
        free,
        runs: state.domains.iter().map(|d| d.runs.len() as u64).sum(),
    })
}
