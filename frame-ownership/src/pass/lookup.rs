//! The pass's view of the frames for the rules ([`FrameLookup`]), one
//! domain at a time.

use core::cell::Cell;

use handover_abi::RunKind;
use hvlu_types::{DomId, Mfn, MfnRange};

use super::runs::IndexedRun;
use crate::frame::{frame_at, FrameInfo};
use crate::layout::MachineLayout;
use crate::page_type::PageType;
use crate::rules::{FrameClass, FrameLookup};

/// What the pass knows while it works on one domain.
#[derive(Clone)]
pub(super) struct Scope<'p> {
    /// The machine's layout.
    pub(super) layout: &'p MachineLayout<'p>,
    /// The domain.
    pub(super) domain: DomId,
    /// Its MMIO ranges, sorted.
    pub(super) mmio: &'p [MfnRange],
    /// The domain's non-empty runs, sorted by mfn, disjoint.
    pub(super) index: &'p [IndexedRun],
    /// The frames every domain's runs name, sorted and merged: the only
    /// entries of the frametable that are initialised (Invariant 29).
    pub(super) named: &'p [MfnRange],
    /// The index of the domain's run that held the last frame looked up.
    pub(super) hint: Cell<usize>,
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

/// The lookup of the pass, for one domain: the domain's runs (and for its
/// frames already claimed, their entries), then the frames other domains'
/// runs name, then the layout.
pub(super) struct PassLookup<'p> {
    frametable: &'p [FrameInfo],
    scope: &'p Scope<'p>,
}

impl FrameLookup for PassLookup<'_> {
    // Only the entries of named frames are initialised (Invariant 29): the
    // frametable is read for a frame the domain's runs name, or the runs of
    // all domains, never for another — whatever its entry holds. The
    // common case, a frame in the domain's run that held the last one, is
    // one comparison and one load, inlined into the entry loop.
    #[inline(always)]
    fn classify(&self, mfn: Mfn) -> FrameClass {
        let hint = self.scope.hint.get();
        if let Some(r) = self.scope.index.get(hint) {
            if r.start <= mfn.0 && mfn.0 < r.end {
                return self.own(mfn, r.kind);
            }
        }
        self.classify_slow(mfn)
    }
}

impl PassLookup<'_> {
    /// One of the domain's frames, of a run of `kind`: its type as written
    /// if the pass has claimed it, else the run's.
    #[inline(always)]
    fn own(&self, mfn: Mfn, kind: RunKind) -> FrameClass {
        match frame_at(self.frametable, mfn) {
            Some(fi) if fi.is_owned_by(self.scope.domain) => {
                FrameClass::Own(fi.page_type().map_or(RunKind::Data, PageType::run_kind))
            }
            _ => FrameClass::Own(kind),
        }
    }

    /// A frame outside the run of the last one: the domain's runs by
    /// binary search, then the frames other domains' runs name (their
    /// entries, once claimed, say whose), then the layout.
    #[inline(never)]
    fn classify_slow(&self, mfn: Mfn) -> FrameClass {
        let index = self.scope.index;
        let i = index.partition_point(|r| r.end <= mfn.0);
        if let Some(r) = index.get(i) {
            if r.start <= mfn.0 {
                self.scope.hint.set(i);
                return self.own(mfn, r.kind);
            }
        }
        let named = self.scope.named;
        let k = named.partition_point(|r| r.end() <= mfn.0);
        if named.get(k).is_some_and(|r| r.contains(mfn)) {
            if let Some(other) = frame_at(self.frametable, mfn).and_then(FrameInfo::owner) {
                return FrameClass::OtherDomain(other);
            }
        }
        self.scope.layout.classify_not_owned(mfn, self.scope.mmio)
    }
}

impl Scope<'_> {
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
