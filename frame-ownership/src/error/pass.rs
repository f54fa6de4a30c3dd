//! [`Error`]: why the pass or a machine layout refuses its input.

use handover_abi::RunKind;
use hvlu_types::{DomId, Gpfn, Mfn};

use super::RangeList;
use crate::rules::{EntryError, EntryRef, FrameClass, NestedError};

/// Why a machine layout, a domain's state or a page-table entry is refused
/// by the pass ([`crate::rebuild`]) or by [`crate::MachineLayout::new`] and
/// [`crate::DomainContext::new`].
///
/// Every variant names the domain and the frame at fault; an entry that
/// breaks a type rule is [`Error::Entry`], the rule's [`EntryError`] with the
/// entry's table and index. The pass stops at the first error; the
/// frametable is then garbage and must not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A list of ranges that lookups binary-search is not sorted by start
    /// with disjoint (possibly adjacent) ranges; `index` is the first range
    /// that starts before the end of the one before it.
    #[error(
        "{list}: range {index} starts before the end of range {}; the list must be sorted and disjoint",
        .index.saturating_sub(1)
    )]
    Unsorted {
        /// The list.
        list: RangeList,
        /// Index of the offending range.
        index: usize,
    },
    /// A RAM frame lies beyond the end of the frametable or of the M2P table:
    /// the hypervisor sized them too small for the machine.
    #[error(
        "RAM frame {mfn} lies beyond the frametable ({frametable_len} entries) or the M2P table ({m2p_len} entries)"
    )]
    BeyondFrametable {
        /// The first RAM frame not covered.
        mfn: Mfn,
        /// Number of frametable entries.
        frametable_len: u64,
        /// Number of M2P entries.
        m2p_len: u64,
    },
    /// Two domains in the list have the same id.
    #[error("dom{domain} appears twice in the domain list")]
    DuplicateDomain {
        /// The repeated id.
        domain: DomId,
    },
    /// A domain's runs are not in bottom-up order (data, then L1, L2, L3,
    /// L4): a run's kind is below the kind of the run before it.
    #[error(
        "dom{domain}: run {run} ({kind:?}) comes after run {} ({previous:?}); runs must be bottom-up (Data, L1, L2, L3, L4)",
        .run.saturating_sub(1)
    )]
    RunsNotBottomUp {
        /// The domain.
        domain: DomId,
        /// Index of the run out of order.
        run: usize,
        /// Its kind.
        kind: RunKind,
        /// The kind of the run before it.
        previous: RunKind,
    },
    /// A frame of a domain's run is not RAM.
    #[error("dom{domain}: {mfn} of run {run} is not RAM")]
    OutsideRam {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first frame of the run that is not RAM.
        mfn: Mfn,
    },
    /// A frame of a domain's run lies inside the live-update region.
    #[error("dom{domain}: {mfn} of run {run} lies inside the live-update region")]
    InRegion {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first frame of the run inside the region.
        mfn: Mfn,
    },
    /// A frame of a domain's run is hv-reserved.
    #[error("dom{domain}: {mfn} of run {run} is hv-reserved")]
    HvReserved {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first hv-reserved frame of the run.
        mfn: Mfn,
    },
    /// A frame is claimed twice: by two domains, or twice by one domain
    /// (overlapping runs).
    #[error(
        "dom{second}: {mfn} is already claimed by dom{first}{}",
        if .first == .second { " (two of its runs overlap)" } else { "" }
    )]
    OwnedTwice {
        /// The frame.
        mfn: Mfn,
        /// The domain that claimed it first.
        first: DomId,
        /// The domain that claimed it again.
        second: DomId,
    },
    /// A run's guest frame numbers overflow: `first_gpfn + count` exceeds
    /// `u64::MAX`, so a frame would get the M2P value
    /// [`crate::M2P_INVALID`] or wrap.
    #[error("dom{domain}: {mfn} of run {run} would get a guest frame number beyond u64::MAX - 1")]
    GpfnOutOfRange {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first frame whose gpfn is out of range.
        mfn: Mfn,
    },
    /// A present entry of one of the domain's page tables breaks a PV type
    /// rule (Invariants 6–8).
    #[error("{at} {source}")]
    Entry {
        /// The entry.
        at: EntryRef,
        /// The rule it breaks.
        source: EntryError,
    },
    /// A pinned frame is not a page table of its domain of the pinned level
    /// (or the pin names a data level).
    #[error("dom{domain}: {mfn} is pinned as {pinned_as:?} but is {found}")]
    BadPin {
        /// The domain.
        domain: DomId,
        /// The pinned frame.
        mfn: Mfn,
        /// The level the pin names.
        pinned_as: RunKind,
        /// What the frame is.
        found: FrameClass,
    },
    /// A frame is pinned twice.
    #[error("dom{domain}: {mfn} is pinned twice")]
    PinnedTwice {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A vCPU's CR3 is not an L4 table of its domain.
    #[error(
        "dom{domain}: CR3 of vcpu {vcpu} holds {mfn}, which is {found}, not an L4 table of the domain"
    )]
    BadCr3 {
        /// The domain.
        domain: DomId,
        /// Index of the vCPU.
        vcpu: usize,
        /// The frame CR3 holds.
        mfn: Mfn,
        /// What that frame is.
        found: FrameClass,
    },
    /// A PV domain has a nested page-table or log-dirty run.
    #[error("dom{domain}: run {run} is a {kind:?} run, but the domain is PV (only an HVM domain has nested page tables and a log-dirty bitmap)")]
    HvmRunInPvDomain {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// Its kind.
        kind: RunKind,
    },
    /// An HVM domain has a guest page-table (L1..L4) run.
    #[error("dom{domain}: run {run} is an {kind:?} run, but the domain is HVM (its page tables are its own memory)")]
    PvTableInHvmDomain {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// Its kind.
        kind: RunKind,
    },
    /// An HVM domain's PCI hole breaks the hole's rules.
    #[error("dom{domain}: its PCI hole at {hole} breaks the hole's rules (a multiple of 2 MiB from 16 MiB up to below 4 GiB)")]
    BadHole {
        /// The domain.
        domain: DomId,
        /// The hole's first gpfn.
        hole: Gpfn,
    },
    /// Two data runs of an HVM domain give one guest frame twice.
    #[error("dom{domain}: two data runs give {gpfn}; the nested tables map each guest frame once")]
    GpfnTwice {
        /// The domain.
        domain: DomId,
        /// The guest frame.
        gpfn: Gpfn,
    },
    /// An HVM domain's vCPU record names another root than the domain's
    /// nested root.
    #[error("dom{domain}: vcpu {vcpu} holds {mfn} as its root, but the domain's nested root (ncr3) is {ncr3}")]
    HvmCr3 {
        /// The domain.
        domain: DomId,
        /// Index of the vCPU.
        vcpu: usize,
        /// The root it holds.
        mfn: Mfn,
        /// The domain's nested root.
        ncr3: Mfn,
    },
    /// An HVM domain's nested root is not one of its P2m frames.
    #[error("dom{domain}: the nested root (ncr3) {mfn} is {found}, not a nested page-table frame of the domain")]
    BadNcr3 {
        /// The domain.
        domain: DomId,
        /// The root.
        mfn: Mfn,
        /// What that frame is.
        found: FrameClass,
    },
    /// An HVM domain's log-dirty bitmap has not one bit per RAM frame.
    #[error("dom{domain}: its log-dirty bitmap has {frames} frames, but one bit per RAM frame of its {max_frames} takes {expected}")]
    LogDirtyBitmapSize {
        /// The domain.
        domain: DomId,
        /// The bitmap's frames.
        frames: u64,
        /// The frames it must have.
        expected: u64,
        /// The domain's RAM frames.
        max_frames: u64,
    },
    /// A frame of an HVM domain's log-dirty bitmap is not one of its
    /// LogDirty frames.
    #[error("dom{domain}: {mfn} of its log-dirty bitmap is {found}, not a log-dirty frame of the domain")]
    BadLogDirtyFrame {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// What it is.
        found: FrameClass,
    },
    /// A present entry of an HVM domain's nested page tables breaks a rule
    /// of Invariant 28.
    #[error("{at} (nested, entry {entry:#018x}) {source}")]
    Nested {
        /// The entry.
        at: EntryRef,
        /// Its raw value.
        entry: u64,
        /// The rule it breaks.
        source: NestedError,
    },
    /// A guest frame the domain's data runs give has no present leaf in
    /// its nested tables.
    #[error("dom{domain}: {gpfn} is RAM of the domain (its data runs give it {mfn}) but its nested tables do not map it")]
    RamNotMapped {
        /// The domain.
        domain: DomId,
        /// The guest frame.
        gpfn: Gpfn,
        /// The machine frame the runs give it.
        mfn: Mfn,
    },
    /// A frame of an HVM domain's P2m runs is not reached from its nested
    /// root.
    #[error("dom{domain}: the nested page-table frame {mfn} is not reached from the root: the nested tables are one tree of all the P2m frames")]
    P2mUnreached {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A type or reference count would exceed `u32::MAX`.
    #[error("dom{domain}: a reference count of {mfn} would exceed u32::MAX")]
    CountOverflow {
        /// The frame.
        mfn: Mfn,
        /// The domain whose entry, pin or CR3 took the reference.
        domain: DomId,
    },
}
