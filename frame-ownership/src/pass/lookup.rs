//! The pass's view of the frames for the rules ([`FrameLookup`]), one
//! domain at a time.

use handover_abi::RunKind;
use hvlu_types::{DomId, Mfn, MfnRange};

use super::runs::IndexedRun;
use crate::frame::{frame_at, FrameInfo};
use crate::layout::MachineLayout;
use crate::page_type::PageType;
use crate::rules::{FrameClass, FrameLookup};

/// What the pass knows while it works on one domain.
#[derive(Clone, Copy)]
pub(super) struct Scope<'p> {
    /// The machine's layout.
    pub(super) layout: &'p MachineLayout<'p>,
    /// The domain.
    pub(super) domain: DomId,
    /// Its MMIO ranges, sorted.
    pub(super) mmio: &'p [MfnRange],
    /// The domain's non-empty runs, sorted by mfn, disjoint.
    pub(super) index: &'p [IndexedRun],
}

impl<'p> Scope<'p> {
    /// The lookup of the rules over the frametable as it is now.
    pub(super) fn lookup<'t>(&'t self, frametable: &'t [FrameInfo]) -> PassLookup<'t>
    where
        'p: 't,
    {
        PassLookup {
            frametable,
            scope: self,
        }
    }
}

/// The lookup of the pass, for one domain: the frametable first, then the
/// domain's runs for its frames not written yet, then the layout.
pub(super) struct PassLookup<'p> {
    frametable: &'p [FrameInfo],
    scope: &'p Scope<'p>,
}

impl FrameLookup for PassLookup<'_> {
    // The common case — a frame already written — is a single frametable
    // load, inlined into the entry loop; the rest is out of line.
    #[inline(always)]
    fn classify(&self, mfn: Mfn) -> FrameClass {
        if let Some(fi) = frame_at(self.frametable, mfn) {
            if fi.is_owned_by(self.scope.domain) {
                return FrameClass::Own(fi.page_type().map_or(RunKind::Data, PageType::run_kind));
            }
            if let Some(other) = fi.owner() {
                return FrameClass::OtherDomain(other);
            }
        }
        self.scope.classify_unwritten(mfn)
    }
}

impl Scope<'_> {
    /// Classifies a frame that no domain has claimed yet (or that lies
    /// beyond the frametable): one of this domain's frames in a later run
    /// (a page table, since data runs come first), or not this domain's.
    #[inline(never)]
    fn classify_unwritten(&self, mfn: Mfn) -> FrameClass {
        match self.own_run(mfn) {
            Some(r) => FrameClass::Own(r.kind),
            None => self.layout.classify_not_owned(mfn, self.mmio),
        }
    }

    /// The domain's run that holds `mfn`, if any (a binary search).
    pub(super) fn own_run(&self, mfn: Mfn) -> Option<&IndexedRun> {
        let i = self.index.partition_point(|r| r.end <= mfn.0);
        self.index.get(i).filter(|r| r.start <= mfn.0)
    }
}

/// A lookup that already knows the answer: the class of a stretch of
/// frames found once for all of them (`pass::fused`).
pub(super) struct Known(pub(super) FrameClass);

impl FrameLookup for Known {
    #[inline(always)]
    fn classify(&self, _mfn: Mfn) -> FrameClass {
        self.0
    }
}
