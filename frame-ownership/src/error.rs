//! The errors of this crate: [`Error`] for the pass and the type rules,
//! [`OpError`] for the live hypervisor's incremental operations.

use core::fmt;

use handover_abi::{DomId, Mfn, RunKind};

use crate::frame::PageType;
use crate::rules::{EntryRef, FrameClass, PtLevel};

/// Which sorted list of ranges an [`Error::Unsorted`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeList {
    /// The machine's RAM ranges.
    Ram,
    /// The hv-reserved ranges.
    HvReserved,
    /// The MMIO ranges a domain may map.
    Mmio(DomId),
}

impl fmt::Display for RangeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeList::Ram => f.write_str("RAM ranges"),
            RangeList::HvReserved => f.write_str("hv-reserved ranges"),
            RangeList::Mmio(d) => write!(f, "MMIO ranges of dom{}", d.0),
        }
    }
}

/// Why a machine layout, a domain's state or a page-table entry is refused.
///
/// Every variant names the frame at fault and the domain, and for entry
/// errors the table and entry index ([`EntryRef`]). The pass stops at the
/// first error; the frametable is then garbage and must not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A list of ranges that lookups binary-search is not sorted by start
    /// with disjoint (possibly adjacent) ranges; `index` is the first range
    /// that starts before the end of the one before it.
    Unsorted {
        /// The list.
        list: RangeList,
        /// Index of the offending range.
        index: usize,
    },
    /// A RAM frame lies beyond the end of the frametable or of the M2P table:
    /// the hypervisor sized them too small for the machine.
    BeyondFrametable {
        /// The first RAM frame not covered.
        mfn: Mfn,
        /// Number of frametable entries.
        frametable_len: u64,
        /// Number of M2P entries.
        m2p_len: u64,
    },
    /// Two domains in the list have the same id.
    DuplicateDomain {
        /// The repeated id.
        domain: DomId,
    },
    /// A domain's runs are not in bottom-up order (data, then L1, L2, L3,
    /// L4): a run's kind is below the kind of the run before it.
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
    OutsideRam {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first frame of the run that is not RAM.
        mfn: Mfn,
    },
    /// A frame of a domain's run lies inside the live-update region.
    InRegion {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first frame of the run inside the region.
        mfn: Mfn,
    },
    /// A frame of a domain's run is hv-reserved.
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
    GpfnOutOfRange {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The first frame whose gpfn is out of range.
        mfn: Mfn,
    },
    /// An entry points at a frame that is not its domain's: another
    /// domain's, one nobody owns (or a domain later in the list claims), a
    /// region or hv-reserved frame.
    ForeignTarget {
        /// The entry.
        at: EntryRef,
        /// The frame it points at.
        target: Mfn,
        /// What that frame is.
        found: FrameClass,
    },
    /// An L2, L3 or L4 entry points at a frame of its domain that is not a
    /// table one level down.
    TypeMismatch {
        /// The entry.
        at: EntryRef,
        /// The frame it points at.
        target: Mfn,
        /// The kind the entry requires.
        expected: RunKind,
        /// The kind the target has.
        found: RunKind,
    },
    /// An L1 entry maps one of its domain's page tables writable.
    WritablePageTable {
        /// The entry.
        at: EntryRef,
        /// The page table it maps.
        target: Mfn,
        /// That table's level.
        kind: RunKind,
    },
    /// An entry points outside RAM but is not an L1 entry inside one of the
    /// domain's MMIO ranges.
    MmioNotPermitted {
        /// The entry.
        at: EntryRef,
        /// The non-RAM frame it points at.
        target: Mfn,
    },
    /// A present L2, L3 or L4 entry has bit 7 (PS) set: superpages are
    /// refused for PV guests.
    Superpage {
        /// The entry.
        at: EntryRef,
        /// Its raw value.
        entry: u64,
    },
    /// A present L1 entry has the G (global) bit set: its translation would
    /// survive the address-space switches that must drop it.
    GlobalMapping {
        /// The entry.
        at: EntryRef,
        /// Its raw value.
        entry: u64,
    },
    /// A pinned frame is not a page table of its domain of the pinned level
    /// (or the pin names a data level).
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
    PinnedTwice {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A vCPU's CR3 is not an L4 table of its domain.
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
    /// A type or reference count would exceed `u32::MAX`.
    CountOverflow {
        /// The frame.
        mfn: Mfn,
        /// The domain whose entry, pin or CR3 took the reference.
        domain: DomId,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Unsorted { list, index } => write!(
                f,
                "{list}: range {index} starts before the end of range {}; the list must be sorted and disjoint",
                index.saturating_sub(1)
            ),
            Error::BeyondFrametable {
                mfn,
                frametable_len,
                m2p_len,
            } => write!(
                f,
                "RAM frame mfn {:#x} lies beyond the frametable ({frametable_len} entries) or the M2P table ({m2p_len} entries)",
                mfn.0
            ),
            Error::DuplicateDomain { domain } => {
                write!(f, "dom{} appears twice in the domain list", domain.0)
            }
            Error::RunsNotBottomUp {
                domain,
                run,
                kind,
                previous,
            } => write!(
                f,
                "dom{}: run {run} ({kind:?}) comes after run {} ({previous:?}); runs must be bottom-up (Data, L1, L2, L3, L4)",
                domain.0,
                run.saturating_sub(1)
            ),
            Error::OutsideRam { domain, run, mfn } => write!(
                f,
                "dom{}: mfn {:#x} of run {run} is not RAM",
                domain.0, mfn.0
            ),
            Error::InRegion { domain, run, mfn } => write!(
                f,
                "dom{}: mfn {:#x} of run {run} lies inside the live-update region",
                domain.0, mfn.0
            ),
            Error::HvReserved { domain, run, mfn } => write!(
                f,
                "dom{}: mfn {:#x} of run {run} is hv-reserved",
                domain.0, mfn.0
            ),
            Error::OwnedTwice { mfn, first, second } => {
                if first == second {
                    write!(
                        f,
                        "dom{}: mfn {:#x} is claimed by two of its runs",
                        first.0, mfn.0
                    )
                } else {
                    write!(
                        f,
                        "mfn {:#x} is claimed by dom{} and again by dom{}",
                        mfn.0, first.0, second.0
                    )
                }
            }
            Error::GpfnOutOfRange { domain, run, mfn } => write!(
                f,
                "dom{}: mfn {:#x} of run {run} would get a guest frame number beyond u64::MAX - 1",
                domain.0, mfn.0
            ),
            Error::ForeignTarget { at, target, found } => write!(
                f,
                "{at} points at mfn {:#x}, {found}",
                target.0
            ),
            Error::TypeMismatch {
                at,
                target,
                expected,
                found,
            } => write!(
                f,
                "{at} points at mfn {:#x}, which is {}, but must point at an {expected:?} table",
                target.0,
                kind_phrase(found)
            ),
            Error::WritablePageTable { at, target, kind } => write!(
                f,
                "{at} maps the {kind:?} table mfn {:#x} writable; page tables may only be mapped read-only",
                target.0
            ),
            Error::MmioNotPermitted { at, target } => {
                if at.level == crate::rules::PtLevel::L1 {
                    write!(
                        f,
                        "{at} maps non-RAM mfn {:#x}, outside the domain's MMIO ranges",
                        target.0
                    )
                } else {
                    write!(
                        f,
                        "{at} points at non-RAM mfn {:#x}; only L1 entries may map MMIO",
                        target.0
                    )
                }
            }
            Error::Superpage { at, entry } => write!(
                f,
                "{at} has the PS bit set (entry {entry:#018x}, mfn {:#x}); PV guests may not use superpages",
                crate::pte::Pte(entry).mfn().0
            ),
            Error::GlobalMapping { at, entry } => write!(
                f,
                "{at} has the G bit set (entry {entry:#018x}, mfn {:#x}); a global mapping would outlive address-space switches",
                crate::pte::Pte(entry).mfn().0
            ),
            Error::BadPin {
                domain,
                mfn,
                pinned_as,
                found,
            } => write!(
                f,
                "dom{}: mfn {:#x} is pinned as {pinned_as:?} but is {found}",
                domain.0, mfn.0
            ),
            Error::PinnedTwice { domain, mfn } => write!(
                f,
                "dom{}: mfn {:#x} is pinned twice",
                domain.0, mfn.0
            ),
            Error::BadCr3 {
                domain,
                vcpu,
                mfn,
                found,
            } => write!(
                f,
                "dom{}: CR3 of vcpu {vcpu} holds mfn {:#x}, which is {found}, not an L4 table of the domain",
                domain.0, mfn.0
            ),
            Error::CountOverflow { mfn, domain } => write!(
                f,
                "dom{}: a reference count of mfn {:#x} would exceed u32::MAX",
                domain.0, mfn.0
            ),
        }
    }
}

impl core::error::Error for Error {}

fn kind_phrase(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Data => "a data frame",
        RunKind::L1 => "an L1 table",
        RunKind::L2 => "an L2 table",
        RunKind::L3 => "an L3 table",
        RunKind::L4 => "an L4 table",
    }
}

/// Why an incremental page-type operation of the live hypervisor
/// ([`crate::ops`]) is refused.
///
/// A refused operation has changed nothing: not the frametable, not the
/// M2P, not the page-table memory. Every variant names the domain the
/// operation was made for and the frame at fault (and the entry, for entry
/// errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpError {
    /// The frame lies beyond the frametable or the M2P table.
    OutOfRange {
        /// The domain the operation was for.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// The frame is not the domain's: another domain owns it, or nobody
    /// does.
    NotOwner {
        /// The domain the operation was for.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its owner, `None` if no domain owns it.
        owner: Option<DomId>,
    },
    /// An entry update or a table release names a frame of the domain that
    /// is not a page table.
    NotPageTable {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its type (`None` or `Writable`).
        found: PageType,
    },
    /// An entry index is not below 512.
    BadIndex {
        /// The domain.
        domain: DomId,
        /// The table.
        table: Mfn,
        /// The index asked for.
        index: usize,
    },
    /// An entry update names one of the hypervisor's slots of an L4
    /// (Invariant 7, Invariant 17): guests never write them.
    HvSlot {
        /// The domain.
        domain: DomId,
        /// The L4 table.
        table: Mfn,
        /// The slot asked for, `256..512`.
        index: usize,
    },
    /// The new value of an entry, or an entry of a frame being pinned,
    /// breaks a PV type rule (Invariants 6–8). The inner error is the one
    /// the pass would report for the same entry: `ForeignTarget`,
    /// `TypeMismatch`, `WritablePageTable`, `MmioNotPermitted` or
    /// `Superpage`.
    Entry(Error),
    /// The table is pinned: it cannot be pinned again, nor released.
    Pinned {
        /// The domain.
        domain: DomId,
        /// The table.
        mfn: Mfn,
        /// Its level.
        level: PtLevel,
    },
    /// An unpin names a frame that is not pinned.
    NotPinned {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A pin names a level other than the table's (types are sticky:
    /// a table changes level only by being released first).
    LevelMismatch {
        /// The domain.
        domain: DomId,
        /// The table.
        mfn: Mfn,
        /// The level the pin asked for.
        requested: PtLevel,
        /// The table's level.
        found: PtLevel,
    },
    /// A pin names a data frame that L1 entries map writable: it cannot
    /// become a page table while the guest can write it.
    WritableData {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its number of writable mappings (its type count).
        mappings: u32,
    },
    /// A table release names a table that entries, pins or CR3s still
    /// reference by type (type count above 0).
    TableInUse {
        /// The domain.
        domain: DomId,
        /// The table.
        mfn: Mfn,
        /// Its level.
        level: PtLevel,
        /// Its type count.
        type_count: u32,
    },
    /// A CR3 switch names a frame of the domain that is not an L4 table.
    NotL4 {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its type.
        found: PageType,
    },
    /// A data claim names a frame that is not free RAM: not RAM at all, in
    /// the live-update region, or hv-reserved.
    NotDomainRam {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// What it is (`Region`, `HvReserved`, `PermittedMmio`,
        /// `ForbiddenMmio`).
        found: FrameClass,
    },
    /// A data claim names a frame that a domain owns already.
    AlreadyOwned {
        /// The domain that asked.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its owner.
        owner: DomId,
    },
    /// A data claim asks for the guest frame number
    /// [`crate::M2P_INVALID`], which marks unowned frames in the M2P.
    GpfnInvalid {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A data release names a frame that something besides its allocation
    /// still holds: a mapping, a type (table or writable data), a pin or a
    /// CR3.
    Busy {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its type.
        page_type: PageType,
        /// Its type count.
        type_count: u32,
        /// Its reference count (1 would be the allocation alone).
        ref_count: u32,
        /// Whether it is pinned.
        pinned: bool,
    },
    /// A type or reference count would exceed `u32::MAX`.
    CountOverflow {
        /// The domain.
        domain: DomId,
        /// The frame whose count is full.
        mfn: Mfn,
    },
    /// An entry already in a table (being replaced or released) no longer
    /// passes the type rules: the table's memory was changed behind the
    /// frametable's back, or the domain's MMIO ranges shrank while mapped.
    /// The live state is inconsistent; nothing was changed.
    StaleEntry {
        /// The entry.
        at: EntryRef,
        /// Why the rules refuse its current value.
        cause: Error,
    },
    /// A frametable entry holds values outside the legal ranges documented
    /// on [`crate::FrameInfo`] (or the caller's record, e.g. a vCPU's CR3,
    /// disagrees with it). The live state is inconsistent; nothing was
    /// changed.
    Corrupt {
        /// The domain the operation was for (`None` when a collection of
        /// the whole table found a frame with an illegal owner).
        domain: Option<DomId>,
        /// The frame.
        mfn: Mfn,
        /// What is wrong.
        what: &'static str,
    },
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OpError::OutOfRange { domain, mfn } => write!(
                f,
                "dom{}: mfn {:#x} lies beyond the frametable or the M2P table",
                domain.0, mfn.0
            ),
            OpError::NotOwner { domain, mfn, owner } => match owner {
                Some(o) => write!(
                    f,
                    "dom{}: mfn {:#x} belongs to dom{}, not to dom{}",
                    domain.0, mfn.0, o.0, domain.0
                ),
                None => write!(
                    f,
                    "dom{}: mfn {:#x} belongs to no domain",
                    domain.0, mfn.0
                ),
            },
            OpError::NotPageTable { domain, mfn, found } => write!(
                f,
                "dom{}: mfn {:#x} is not a page table (type {found})",
                domain.0, mfn.0
            ),
            OpError::BadIndex {
                domain,
                table,
                index,
            } => write!(
                f,
                "dom{}: entry index {index} of table mfn {:#x} is not below 512",
                domain.0, table.0
            ),
            OpError::HvSlot {
                domain,
                table,
                index,
            } => write!(
                f,
                "dom{}: entry {index} of L4 table mfn {:#x} belongs to the hypervisor (slots 256..512)",
                domain.0, table.0
            ),
            OpError::Entry(e) => write!(f, "{e}"),
            OpError::Pinned { domain, mfn, level } => write!(
                f,
                "dom{}: mfn {:#x} is pinned as {level}; unpin it first",
                domain.0, mfn.0
            ),
            OpError::NotPinned { domain, mfn } => {
                write!(f, "dom{}: mfn {:#x} is not pinned", domain.0, mfn.0)
            }
            OpError::LevelMismatch {
                domain,
                mfn,
                requested,
                found,
            } => write!(
                f,
                "dom{}: mfn {:#x} cannot be pinned as {requested}: it is an {found} table",
                domain.0, mfn.0
            ),
            OpError::WritableData {
                domain,
                mfn,
                mappings,
            } => write!(
                f,
                "dom{}: mfn {:#x} cannot become a page table: {mappings} L1 entries map it writable",
                domain.0, mfn.0
            ),
            OpError::TableInUse {
                domain,
                mfn,
                level,
                type_count,
            } => write!(
                f,
                "dom{}: {level} table mfn {:#x} cannot be released: {type_count} entries or CR3s still reference it",
                domain.0, mfn.0
            ),
            OpError::NotL4 { domain, mfn, found } => write!(
                f,
                "dom{}: mfn {:#x} cannot be loaded into CR3: it is of type {found}, not an L4 table",
                domain.0, mfn.0
            ),
            OpError::NotDomainRam { domain, mfn, found } => write!(
                f,
                "dom{}: mfn {:#x} cannot be given to a domain: it is {found}",
                domain.0, mfn.0
            ),
            OpError::AlreadyOwned { domain, mfn, owner } => write!(
                f,
                "dom{}: mfn {:#x} cannot be claimed: dom{} owns it already",
                domain.0, mfn.0, owner.0
            ),
            OpError::GpfnInvalid { domain, mfn } => write!(
                f,
                "dom{}: mfn {:#x} cannot get guest frame number {:#x} (the M2P's invalid marker)",
                domain.0,
                mfn.0,
                crate::M2P_INVALID
            ),
            OpError::Busy {
                domain,
                mfn,
                page_type,
                type_count,
                ref_count,
                pinned,
            } => write!(
                f,
                "dom{}: mfn {:#x} is still in use (type {page_type}, type count {type_count}, reference count {ref_count}{}); only an untyped data frame held by its allocation alone (reference count 1) can be released",
                domain.0,
                mfn.0,
                if pinned { ", pinned" } else { "" }
            ),
            OpError::CountOverflow { domain, mfn } => write!(
                f,
                "dom{}: a reference count of mfn {:#x} would exceed u32::MAX",
                domain.0, mfn.0
            ),
            OpError::StaleEntry { at, cause } => write!(
                f,
                "{at}: the value already there no longer passes the type rules ({cause}); the live state is inconsistent"
            ),
            OpError::Corrupt { domain, mfn, what } => match domain {
                Some(d) => write!(
                    f,
                    "dom{}: frametable entry of mfn {:#x} is corrupt: {what}",
                    d.0, mfn.0
                ),
                None => write!(f, "frametable entry of mfn {:#x} is corrupt: {what}", mfn.0),
            },
        }
    }
}

impl core::error::Error for OpError {}
