//! The PV type rules: what one present page-table entry may point at, and
//! which counts it takes on its target.
//!
//! The rules are pure functions over a small lookup trait, [`FrameLookup`],
//! so that two users share them:
//! - the single pass ([`crate::pass`]), whose lookup reads the frametable
//!   being built and, for frames not written yet, the domain's runs;
//! - the old hypervisor's incremental `mmu_update`, which checks one entry at
//!   a time against its live frametable: it calls [`check_entry`] on the new
//!   value, applies the returned [`EntryEffect`] with
//!   [`crate::FrameInfo::get_ref`], and drops the old value's effect (computed
//!   the same way) with [`crate::FrameInfo::put_ref`].
//!
//! The rules (Invariants 6–8 in `docs/invariants.md`):
//! 1. An entry without the present bit is always fine and counts nothing.
//! 2. Slots [`HV_L4_FIRST_SLOT`]`..512` of an L4 belong to the hypervisor
//!    (upper half): never checked, never counted; the new hypervisor
//!    rewrites them.
//! 3. Bit 7 (PS) set in an L2, L3 or L4 entry is refused: PV guests here use
//!    4 KiB pages only (in an L4 the bit is reserved anyway).
//! 4. An entry of an L2, L3 or L4 table must point at a frame of the same
//!    domain whose type is one level down. It takes one general and one type
//!    reference on it. Its RW bit does not matter.
//! 5. An L1 entry may point at a data frame of the domain (one general
//!    reference; one `Writable` type reference as well if RW is set), or
//!    read-only at one of the domain's own page-table frames (one general
//!    reference). A writable mapping of a page table is refused.
//! 6. An L1 entry with the G (global) bit is refused: a global translation
//!    survives the CR3 loads that switch address spaces, so it would outlive
//!    the mapping and reach a frame after it changed hands.
//! 7. An L1 entry that points outside RAM must lie inside one of the
//!    domain's MMIO ranges; it counts nothing. An L2..L4 entry may not point
//!    outside RAM at all.
//! 8. Anything else — a frame of another domain, a frame nobody owns, a
//!    live-update region or hv-reserved frame — is refused.

use core::fmt;

use handover_abi::{DomId, Mfn, RunKind};

use crate::error::Error;
use crate::frame::PageType;
use crate::pte::Pte;

/// Number of entries in one page table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// The first L4 slot that belongs to the hypervisor (the upper half of the
/// address space). Slots `HV_L4_FIRST_SLOT..512` of a guest L4 are skipped.
pub const HV_L4_FIRST_SLOT: usize = 256;

/// The level of a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PtLevel {
    /// Entries map 4 KiB pages.
    L1 = 1,
    /// Entries point at L1 tables.
    L2 = 2,
    /// Entries point at L2 tables.
    L3 = 3,
    /// Entries point at L3 tables; the root.
    L4 = 4,
}

impl PtLevel {
    /// The level as a number, 1..=4.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The level of a page-table run, or `None` for a data run.
    pub const fn of_run(kind: RunKind) -> Option<PtLevel> {
        match kind {
            RunKind::Data => None,
            RunKind::L1 => Some(PtLevel::L1),
            RunKind::L2 => Some(PtLevel::L2),
            RunKind::L3 => Some(PtLevel::L3),
            RunKind::L4 => Some(PtLevel::L4),
        }
    }

    /// The run kind of tables of this level.
    pub const fn run_kind(self) -> RunKind {
        match self {
            PtLevel::L1 => RunKind::L1,
            PtLevel::L2 => RunKind::L2,
            PtLevel::L3 => RunKind::L3,
            PtLevel::L4 => RunKind::L4,
        }
    }

    /// The page type of tables of this level.
    pub const fn page_type(self) -> PageType {
        match self {
            PtLevel::L1 => PageType::L1,
            PtLevel::L2 => PageType::L2,
            PtLevel::L3 => PageType::L3,
            PtLevel::L4 => PageType::L4,
        }
    }

    /// The level one down, or `None` for L1 (whose entries map pages).
    pub const fn below(self) -> Option<PtLevel> {
        match self {
            PtLevel::L1 => None,
            PtLevel::L2 => Some(PtLevel::L1),
            PtLevel::L3 => Some(PtLevel::L2),
            PtLevel::L4 => Some(PtLevel::L3),
        }
    }
}

impl fmt::Display for PtLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.number())
    }
}

/// What a frame is, seen from the domain whose page table is being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameClass {
    /// A RAM frame of the checked domain, holding what the run kind says
    /// (`Data` for a frame of type `None` or `Writable`).
    Own(RunKind),
    /// A RAM frame of another domain.
    OtherDomain(DomId),
    /// A RAM frame that no domain owns (free RAM). During the pass this also
    /// covers frames that a domain later in the list will claim.
    Unowned,
    /// A frame of the live-update region.
    Region,
    /// An hv-reserved frame.
    HvReserved,
    /// Not RAM, inside one of the checked domain's MMIO ranges.
    PermittedMmio,
    /// Not RAM and outside every MMIO range of the checked domain.
    ForbiddenMmio,
}

impl fmt::Display for FrameClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameClass::Own(RunKind::Data) => f.write_str("a data frame of the same domain"),
            FrameClass::Own(kind) => write!(f, "an {kind:?} table of the same domain"),
            FrameClass::OtherDomain(d) => write!(f, "a frame of dom{}", d.0),
            FrameClass::Unowned => f.write_str("a RAM frame that no domain owns"),
            FrameClass::Region => f.write_str("a frame of the live-update region"),
            FrameClass::HvReserved => f.write_str("an hv-reserved frame"),
            FrameClass::PermittedMmio => {
                f.write_str("a non-RAM frame inside the domain's MMIO ranges")
            }
            FrameClass::ForbiddenMmio => {
                f.write_str("a non-RAM frame outside the domain's MMIO ranges")
            }
        }
    }
}

/// How the rules learn what a frame is.
///
/// One lookup answers for one domain: the domain that owns the page table
/// whose entries are checked.
pub trait FrameLookup {
    /// What `mfn` is for the checked domain.
    fn classify(&self, mfn: Mfn) -> FrameClass;
}

/// Where an entry lives: its domain, its table, the table's level and the
/// entry's index. Carried by every entry error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryRef {
    /// The domain that owns the table.
    pub domain: DomId,
    /// The table frame.
    pub table: Mfn,
    /// The table's level.
    pub level: PtLevel,
    /// The entry's index in the table, `0..512`.
    pub index: u16,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dom{}: entry {} of {} table mfn {:#x}",
            self.domain.0, self.index, self.level, self.table.0
        )
    }
}

/// What a valid entry does to the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryEffect {
    /// Not present: checked for nothing, counts nothing.
    NotPresent,
    /// A hypervisor slot of an L4 (index ≥ [`HV_L4_FIRST_SLOT`]): skipped.
    HvSlot,
    /// An L1 entry mapping a permitted MMIO frame: counts nothing.
    Mmio(Mfn),
    /// An entry pointing at one of the domain's frames: one general
    /// reference on `target`, and one type reference of type `typed` if set
    /// (`Writable` for a writable L1 mapping of data, the target's table type
    /// for an L2..L4 entry).
    Frame {
        /// The frame pointed at.
        target: Mfn,
        /// The type reference taken, if any.
        typed: Option<PageType>,
    },
}

/// Checks one page-table entry against the PV type rules (module docs) and
/// says which counts it takes.
///
/// `at` names the entry (its table's owner is the domain `lookup` answers
/// for); `entry` is its raw value. Errors name the entry and its target.
#[inline]
pub fn check_entry<L: FrameLookup + ?Sized>(
    lookup: &L,
    at: EntryRef,
    entry: u64,
) -> Result<EntryEffect, Error> {
    if at.level == PtLevel::L4 && usize::from(at.index) >= HV_L4_FIRST_SLOT {
        return Ok(EntryEffect::HvSlot);
    }
    let pte = Pte(entry);
    if !pte.is_present() {
        return Ok(EntryEffect::NotPresent);
    }
    let target = pte.mfn();
    match at.level.below() {
        None => {
            if entry & crate::pte::GLOBAL != 0 {
                // A global translation survives CR3 loads: it would outlive
                // the mapping, the domain and the frame's ownership.
                return Err(Error::GlobalMapping { at, entry });
            }
            let class = lookup.classify(target);
            match class {
                FrameClass::Own(RunKind::Data) => Ok(EntryEffect::Frame {
                    target,
                    typed: pte.is_writable().then_some(PageType::Writable),
                }),
                FrameClass::Own(kind) => {
                    if pte.is_writable() {
                        Err(Error::WritablePageTable { at, target, kind })
                    } else {
                        Ok(EntryEffect::Frame {
                            target,
                            typed: None,
                        })
                    }
                }
                FrameClass::PermittedMmio => Ok(EntryEffect::Mmio(target)),
                FrameClass::ForbiddenMmio => Err(Error::MmioNotPermitted { at, target }),
                _ => Err(Error::ForeignTarget {
                    at,
                    target,
                    found: class,
                }),
            }
        }
        Some(below) => {
            if pte.has_huge_bit() {
                return Err(Error::Superpage { at, entry });
            }
            let class = lookup.classify(target);
            match class {
                FrameClass::Own(kind) if kind == below.run_kind() => Ok(EntryEffect::Frame {
                    target,
                    typed: Some(below.page_type()),
                }),
                FrameClass::Own(found) => Err(Error::TypeMismatch {
                    at,
                    target,
                    expected: below.run_kind(),
                    found,
                }),
                FrameClass::PermittedMmio | FrameClass::ForbiddenMmio => {
                    Err(Error::MmioNotPermitted { at, target })
                }
                _ => Err(Error::ForeignTarget {
                    at,
                    target,
                    found: class,
                }),
            }
        }
    }
}
