//! The rules' lookups over the live frametable: [`LiveLookup`], and
//! [`PinLookup`] for a frame being validated by a pin.

use handover_abi::RunKind;
use hvlu_types::Mfn;

use super::DomainContext;
use crate::frame::{frame_at, FrameInfo};
use crate::layout::MachineLayout;
use crate::page_type::PageType;
use crate::rules::{FrameClass, FrameLookup};

/// The rules' [`FrameLookup`] over the live frametable, for one domain.
///
/// A frame the domain owns is `Own(kind)` with the kind of its page type
/// (`None` and `Writable` → `Data`, `Ln` → `Ln`); a frame another domain
/// owns is `OtherDomain`; otherwise the layout decides: not RAM → permitted
/// or forbidden MMIO by the domain's ranges, region, hv-reserved, or free
/// RAM (`Unowned`). The pass's lookup answers the same for every frame it
/// has written, which is what makes the two sides agree.
#[derive(Clone, Copy, Debug)]
pub struct LiveLookup<'a> {
    layout: &'a MachineLayout<'a>,
    frametable: &'a [FrameInfo],
    domain: &'a DomainContext<'a>,
}

impl<'a> LiveLookup<'a> {
    /// The lookup for `domain` over `frametable` and `layout`.
    pub fn new(
        layout: &'a MachineLayout<'a>,
        frametable: &'a [FrameInfo],
        domain: &'a DomainContext<'a>,
    ) -> Self {
        LiveLookup {
            layout,
            frametable,
            domain,
        }
    }
}

impl FrameLookup for LiveLookup<'_> {
    fn classify(&self, mfn: Mfn) -> FrameClass {
        if let Some(fi) = frame_at(self.frametable, mfn) {
            if fi.is_owned_by(self.domain.id) {
                return FrameClass::Own(fi.page_type().map_or(RunKind::Data, PageType::run_kind));
            }
            if let Some(other) = fi.owner() {
                return FrameClass::OtherDomain(other);
            }
        }
        self.layout.classify_not_owned(mfn, self.domain.mmio)
    }
}

/// The live lookup, except that one frame — a data frame being validated
/// for [`super::pin`] — is already seen as a table of the pinned level, as the pass
/// sees it (it is listed in a table run; Invariant 14). So an L1 that maps itself
/// read-only is counted like the pass counts it, and one that maps itself
/// writable, or an L2..L4 that points at itself, is refused like the pass
/// refuses it.
pub(super) struct PinLookup<'a> {
    /// The live lookup for every other frame.
    pub(super) live: LiveLookup<'a>,
    /// The frame being pinned.
    pub(super) candidate: Mfn,
    /// The kind it is seen as: the pinned level's.
    pub(super) kind: RunKind,
}

impl FrameLookup for PinLookup<'_> {
    fn classify(&self, mfn: Mfn) -> FrameClass {
        if mfn == self.candidate {
            FrameClass::Own(self.kind)
        } else {
            self.live.classify(mfn)
        }
    }
}
