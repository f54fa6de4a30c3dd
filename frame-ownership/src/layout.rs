//! The inputs of the pass: the machine's memory layout and borrowed views of
//! the domains.

use handover_abi::{MemRun, RunKind};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

use crate::error::{Error, RangeList};

/// The machine's memory map as the pass sees it: RAM, the live-update
/// region, the hv-reserved ranges.
///
/// Built only through [`MachineLayout::new`], which checks that the range
/// lists are sorted and disjoint, so every lookup is a binary search.
#[derive(Clone, Copy, Debug)]
pub struct MachineLayout<'a> {
    ram: &'a [MfnRange],
    region: MfnRange,
    hv_reserved: &'a [MfnRange],
}

impl<'a> MachineLayout<'a> {
    /// A layout from the RAM ranges, the live-update region and the
    /// hv-reserved ranges.
    ///
    /// `ram` and `hv_reserved` must each be sorted by start and disjoint
    /// (adjacent ranges are fine; empty ranges are ignored by lookups but
    /// must still be in order). The region and the reserved ranges normally
    /// lie inside RAM; frames of theirs that do not are simply not RAM.
    pub fn new(
        ram: &'a [MfnRange],
        region: MfnRange,
        hv_reserved: &'a [MfnRange],
    ) -> Result<Self, Error> {
        check_sorted(ram, RangeList::Ram)?;
        check_sorted(hv_reserved, RangeList::HvReserved)?;
        Ok(MachineLayout {
            ram,
            region,
            hv_reserved,
        })
    }

    /// The RAM ranges, sorted.
    pub fn ram(&self) -> &'a [MfnRange] {
        self.ram
    }

    /// The live-update region.
    pub fn region(&self) -> MfnRange {
        self.region
    }

    /// The hv-reserved ranges, sorted.
    pub fn hv_reserved(&self) -> &'a [MfnRange] {
        self.hv_reserved
    }

    /// One past the last RAM frame (0 without RAM).
    pub fn ram_end(&self) -> u64 {
        self.ram.iter().map(|r| r.end()).max().unwrap_or(0)
    }

    /// Whether `mfn` is RAM.
    pub fn is_ram(&self, mfn: Mfn) -> bool {
        contains(self.ram, mfn)
    }

    /// Whether `mfn` lies in the live-update region.
    pub fn in_region(&self, mfn: Mfn) -> bool {
        self.region.contains(mfn)
    }

    /// Whether `mfn` is hv-reserved.
    pub fn is_hv_reserved(&self, mfn: Mfn) -> bool {
        contains(self.hv_reserved, mfn)
    }

    /// The first frame of `range` that is not RAM, if any.
    pub fn first_non_ram(&self, range: MfnRange) -> Option<Mfn> {
        let end = range.end();
        let mut cover = range.start.0;
        let mut i = self.ram.partition_point(|r| r.end() <= cover);
        while cover < end {
            match self.ram.get(i) {
                Some(r) if r.start.0 <= cover => {
                    cover = cover.max(r.end());
                    i += 1;
                }
                _ => return Some(Mfn(cover)),
            }
        }
        None
    }

    /// The first frame of `range` inside the live-update region, if any.
    pub fn first_in_region(&self, range: MfnRange) -> Option<Mfn> {
        range
            .overlaps(self.region)
            .then(|| Mfn(range.start.0.max(self.region.start.0)))
    }

    /// What `mfn` is for a domain whose MMIO ranges are `mmio`, when no
    /// domain owns it: permitted or forbidden MMIO outside RAM, a region
    /// frame, an hv-reserved frame, or free RAM. Shared by the pass and the
    /// live operations, so both classify alike.
    pub fn classify_not_owned(&self, mfn: Mfn, mmio: &[MfnRange]) -> crate::rules::FrameClass {
        use crate::rules::FrameClass;
        if !self.is_ram(mfn) {
            if contains(mmio, mfn) {
                FrameClass::PermittedMmio
            } else {
                FrameClass::ForbiddenMmio
            }
        } else if self.in_region(mfn) {
            FrameClass::Region
        } else if self.is_hv_reserved(mfn) {
            FrameClass::HvReserved
        } else {
            FrameClass::Unowned
        }
    }

    /// The first hv-reserved frame of `range`, if any.
    pub fn first_hv_reserved(&self, range: MfnRange) -> Option<Mfn> {
        first_in(self.hv_reserved, range)
    }
}

/// A borrowed view of one domain's part of the handover state: everything
/// the pass needs, as slices into the decoded state (no copy).
///
/// Runs and MMIO ranges are slices of the shared primitive types. Pins and
/// vCPUs are slices of whatever element type the caller's state holds (`P`,
/// `V`), read through two accessor functions, so that a decoded handover
/// body can be viewed in place:
///
/// ```
/// use frame_ownership::DomainView;
/// use handover_abi::{MemRun, RunKind};
/// use hvlu_types::{DomId, Mfn, MfnRange};
///
/// // Stand-ins for the element types of a decoded handover body.
/// struct PinnedTable { mfn: Mfn, level: RunKind }
/// struct Vcpu { cr3: Mfn /* registers, … */ }
/// struct Domain {
///     id: DomId,
///     runs: Vec<MemRun>,
///     mmio: Vec<MfnRange>,
///     pinned: Vec<PinnedTable>,
///     vcpus: Vec<Vcpu>,
/// }
///
/// fn view(d: &Domain) -> DomainView<'_, PinnedTable, Vcpu> {
///     DomainView {
///         id: d.id,
///         runs: &d.runs,
///         mmio: &d.mmio,
///         pinned: &d.pinned,
///         pin_of: |p| (p.mfn, p.level),
///         vcpus: &d.vcpus,
///         cr3_of: |v| v.cr3,
///         hvm: None,
///     }
/// }
/// ```
///
/// With plain `(Mfn, RunKind)` pins and `Mfn` CR3s, use [`DomainView::new`].
#[derive(Debug)]
pub struct DomainView<'a, P = (Mfn, RunKind), V = Mfn> {
    /// The domain's id.
    pub id: DomId,
    /// Its memory runs, bottom-up: every `Data` run first, then `L1`, `L2`,
    /// `L3`, `L4` runs (any order among runs of one kind). Runs of zero
    /// frames are allowed and ignored.
    pub runs: &'a [MemRun],
    /// The non-RAM ranges its L1 entries may map (device MMIO), sorted by
    /// start and disjoint.
    pub mmio: &'a [MfnRange],
    /// Its pinned page tables.
    pub pinned: &'a [P],
    /// The pinned frame of a pin, and the level it is pinned at.
    pub pin_of: fn(&P) -> (Mfn, RunKind),
    /// Its vCPUs.
    pub vcpus: &'a [V],
    /// The CR3 of a vCPU: the L4 it runs on (an HVM domain's vCPUs hold
    /// its nested root, [`HvmView::ncr3`], and take no reference).
    pub cr3_of: fn(&V) -> Mfn,
    /// `None` for a PV domain; what the pass needs of an HVM domain.
    pub hvm: Option<HvmView<'a>>,
}

/// What the pass needs of an HVM domain besides its runs: where its nested
/// page tables start, its log-dirty bitmap, its guest memory map (its hole
/// and its RAM, `hvlu_types::hole`) and the device frames it maps in its
/// hole (Invariant 28).
#[derive(Clone, Copy, Debug)]
pub struct HvmView<'a> {
    /// The root (level 4) of its nested page tables: a frame of one of its
    /// P2m runs.
    pub ncr3: Mfn,
    /// Its log-dirty bitmap (one bit per RAM index, `ceil(max_frames /
    /// 32768)` frames, its LogDirty runs), when log-dirty mode is on.
    pub log_dirty: Option<MfnRange>,
    /// Its RAM frames: RAM indices `0..max_frames`.
    pub max_frames: u64,
    /// The first gpfn of its PCI hole (`hvlu_types::hole`; the pass
    /// refuses one that breaks the hole's rules).
    pub hole: Gpfn,
    /// The device frames its nested tables map in the hole at guest frame
    /// == machine frame, sorted and disjoint; each inside its MMIO ranges.
    pub identity: &'a [MfnRange],
}

// A view is a handful of references: copyable whatever `P` and `V` are.
impl<P, V> Clone for DomainView<'_, P, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, V> Copy for DomainView<'_, P, V> {}

impl<'a> DomainView<'a> {
    /// A view over plain slices: pins as `(frame, level)`, CR3s by vCPU
    /// index.
    pub fn new(
        id: DomId,
        runs: &'a [MemRun],
        mmio: &'a [MfnRange],
        pinned: &'a [(Mfn, RunKind)],
        vcpu_cr3: &'a [Mfn],
    ) -> Self {
        DomainView {
            id,
            runs,
            mmio,
            pinned,
            pin_of: |p| *p,
            vcpus: vcpu_cr3,
            cr3_of: |m| *m,
            hvm: None,
        }
    }

    /// The same view of an HVM domain (`hvm`).
    pub fn with_hvm(self, hvm: HvmView<'a>) -> Self {
        DomainView {
            hvm: Some(hvm),
            ..self
        }
    }
}

/// Checks that `ranges` is sorted by start and disjoint.
pub(crate) fn check_sorted(ranges: &[MfnRange], list: RangeList) -> Result<(), Error> {
    for (i, w) in ranges.windows(2).enumerate() {
        if w[1].start.0 < w[0].end() {
            return Err(Error::Unsorted { list, index: i + 1 });
        }
    }
    Ok(())
}

/// Whether `mfn` lies in one of the sorted, disjoint `ranges`.
pub(crate) fn contains(ranges: &[MfnRange], mfn: Mfn) -> bool {
    let i = ranges.partition_point(|r| r.end() <= mfn.0);
    ranges.get(i).is_some_and(|r| r.contains(mfn))
}

/// The first frame of `range` inside one of the sorted, disjoint `ranges`.
fn first_in(ranges: &[MfnRange], range: MfnRange) -> Option<Mfn> {
    if range.is_empty() {
        return None;
    }
    let i = ranges.partition_point(|r| r.end() <= range.start.0);
    ranges[i..]
        .iter()
        .find(|r| !r.is_empty())
        .filter(|r| r.start.0 < range.end())
        .map(|r| Mfn(range.start.0.max(r.start.0)))
}

/// The view of a decoded handover domain: pins and vCPUs as the body holds
/// them.
pub type StateView<'a> = DomainView<'a, handover_abi::PinnedTable, handover_abi::Vcpu>;

/// The pass's view of one domain of a decoded handover state, borrowing its
/// lists (no copy).
pub fn state_view(d: &handover_abi::Domain) -> StateView<'_> {
    DomainView {
        id: d.id,
        runs: &d.runs,
        mmio: &d.mmio,
        pinned: &d.pinned,
        pin_of: |p| (p.mfn, p.level),
        vcpus: &d.vcpus,
        cr3_of: |v| v.cr3,
        hvm: d.hvm.as_ref().map(|h| HvmView {
            ncr3: h.ncr3,
            log_dirty: h.log_dirty.map(|l| l.bitmap),
            max_frames: d.max_frames,
            hole: d.hole,
            identity: &d.identity,
        }),
    }
}

/// Views of every domain of a decoded handover state, in its order.
pub fn state_views(state: &handover_abi::HandoverState) -> alloc::vec::Vec<StateView<'_>> {
    state.domains.iter().map(state_view).collect()
}
