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
//! A refused entry is an [`EntryError`]: what is wrong with the value, the
//! rule it breaks. The caller knows where the entry is ([`EntryRef`]) and
//! wraps the two together: [`crate::Error::Entry`] in the pass,
//! [`crate::OpError::Entry`] and [`crate::OpError::StaleEntry`] in the live
//! operations. This module depends on no error type above it.
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
//!    domain's MMIO ranges, and must be uncacheable: PCD and PWT set, PAT
//!    (bit 7) clear — PAT entry 3, UC under the power-on PAT, which the
//!    hypervisor never reprograms ([`MMIO_CACHE_BITS`], [`MMIO_CACHE`]); it
//!    counts nothing. An L2..L4 entry may not point outside RAM at all.
//! 8. Anything else — a frame of another domain, a frame nobody owns, a
//!    live-update region or hv-reserved frame — is refused.

use core::fmt;

use handover_abi::RunKind;
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn};

use crate::page_type::PageType;
use crate::pte::{self, Pte};

/// The bits of an L1 entry that choose its memory type: PWT, PCD and PAT
/// (bit 7 of an L1 entry).
pub const MMIO_CACHE_BITS: u64 = pte::WRITE_THROUGH | pte::CACHE_DISABLE | pte::HUGE;
/// What [`MMIO_CACHE_BITS`] must hold in an L1 entry that maps device
/// memory (rule 7): PWT and PCD set, PAT clear — PAT entry 3, uncacheable
/// (UC) under the power-on PAT. A cached mapping of device registers could
/// read stale values and write late or merged; UC keeps every access one
/// access, in order.
pub const MMIO_CACHE: u64 = pte::WRITE_THROUGH | pte::CACHE_DISABLE;

/// Number of entries in one page table.
pub const ENTRIES_PER_TABLE: usize = pte::ENTRIES;

/// The first L4 slot that belongs to the hypervisor (the upper half of the
/// address space). Slots `HV_L4_FIRST_SLOT..512` of a guest L4 are skipped.
pub const HV_L4_FIRST_SLOT: usize = ENTRIES_PER_TABLE / 2;

/// Number of slots of a table of `level` that belong to the guest: the
/// first [`HV_L4_FIRST_SLOT`] of an L4, all [`ENTRIES_PER_TABLE`] of the
/// others.
pub const fn guest_slots(level: Level) -> usize {
    match level {
        Level::L4 => HV_L4_FIRST_SLOT,
        Level::L1 | Level::L2 | Level::L3 => ENTRIES_PER_TABLE,
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
            FrameClass::Own(kind @ (RunKind::P2m | RunKind::LogDirty)) => {
                write!(f, "{} of the same domain", kind_phrase(*kind))
            }
            FrameClass::Own(kind) => write!(f, "an {kind:?} table of the same domain"),
            FrameClass::OtherDomain(d) => write!(f, "a frame of dom{d}"),
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
/// entry's index. Carried by every error that wraps an [`EntryError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryRef {
    /// The domain that owns the table.
    pub domain: DomId,
    /// The table frame.
    pub table: Mfn,
    /// The table's level.
    pub level: Level,
    /// The entry's index in the table, `0..512`.
    pub index: u16,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dom{}: entry {} of {} table {}",
            self.domain, self.index, self.level, self.table
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

/// Why [`check_entry`] refuses an entry: the PV type rule its value breaks
/// (Invariants 6–8), with the frame it points at.
///
/// The error does not say where the entry is: the caller does, by wrapping
/// it with the entry's [`EntryRef`] ([`crate::Error::Entry`],
/// [`crate::OpError::Entry`], [`crate::OpError::StaleEntry`]). The message
/// is written to follow the entry's own (`"{at} {error}"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The entry points at a frame that is not its domain's: another
    /// domain's, one nobody owns (or, during the pass, a domain later in the
    /// list claims), a region or hv-reserved frame.
    #[error("points at {target}, {found}")]
    ForeignTarget {
        /// The frame it points at.
        target: Mfn,
        /// What that frame is.
        found: FrameClass,
    },
    /// An L2, L3 or L4 entry points at a frame of its domain that is not a
    /// table one level down.
    #[error(
        "points at {target}, which is {}, but must point at an {expected:?} table",
        kind_phrase(*.found)
    )]
    TypeMismatch {
        /// The frame it points at.
        target: Mfn,
        /// The kind the entry requires.
        expected: RunKind,
        /// The kind the target has.
        found: RunKind,
    },
    /// An L1 entry maps one of its domain's page tables writable.
    #[error("maps the {kind:?} table {target} writable; page tables may only be mapped read-only")]
    WritablePageTable {
        /// The page table it maps.
        target: Mfn,
        /// That table's level.
        kind: RunKind,
    },
    /// The entry points outside RAM but is not an L1 entry inside one of
    /// the domain's MMIO ranges (the entry's level says which of the two it
    /// is not).
    #[error(
        "points at non-RAM {target}; only L1 entries may map MMIO, and only inside the domain's MMIO ranges"
    )]
    MmioNotPermitted {
        /// The non-RAM frame it points at.
        target: Mfn,
    },
    /// An L1 entry maps a permitted MMIO frame with a memory type other
    /// than uncacheable: PCD and PWT not both set, or PAT set
    /// ([`MMIO_CACHE`]).
    #[error(
        "maps non-RAM {target} cacheable (entry {entry:#018x}); device memory must be mapped uncacheable: PCD and PWT set, PAT clear"
    )]
    MmioCacheable {
        /// The non-RAM frame it maps.
        target: Mfn,
        /// Its raw value.
        entry: u64,
    },
    /// A present L2, L3 or L4 entry has bit 7 (PS, [`pte::HUGE`]) set:
    /// superpages are refused for PV guests.
    #[error(
        "has the PS bit set (entry {entry:#018x}, {}); PV guests may not use superpages",
        Pte(*.entry).mfn()
    )]
    Superpage {
        /// Its raw value.
        entry: u64,
    },
    /// An L1 entry maps one of its domain's nested page-table or log-dirty
    /// frames: those are the hypervisor's, held for the domain, and never
    /// mapped by a guest (Invariant 28).
    #[error("maps {target}, {}; a guest never maps the hypervisor's frames held for it", kind_phrase(*.kind))]
    HypervisorFrame {
        /// The frame it maps.
        target: Mfn,
        /// What it is.
        kind: RunKind,
    },
    /// A present L1 entry has the G bit ([`pte::GLOBAL`]) set: its
    /// translation would survive the address-space switches that must drop
    /// it.
    #[error(
        "has the G bit set (entry {entry:#018x}, {}); a global mapping would outlive address-space switches",
        Pte(*.entry).mfn()
    )]
    GlobalMapping {
        /// Its raw value.
        entry: u64,
    },
}

/// "a data frame", "an L1 table", …: what a frame of `kind` is.
fn kind_phrase(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Data => "a data frame",
        RunKind::L1 => "an L1 table",
        RunKind::L2 => "an L2 table",
        RunKind::L3 => "an L3 table",
        RunKind::L4 => "an L4 table",
        RunKind::P2m => "a nested page-table frame",
        RunKind::LogDirty => "a log-dirty bitmap frame",
    }
}

/// Checks one page-table entry against the PV type rules (module docs) and
/// says which counts it takes.
///
/// `at` names the entry (its table's owner is the domain `lookup` answers
/// for; its level and index decide which rules apply); `entry` is its raw
/// value. A refusal names the rule and the target; the caller adds `at`.
#[inline]
pub fn check_entry<L: FrameLookup + ?Sized>(
    lookup: &L,
    at: EntryRef,
    entry: u64,
) -> Result<EntryEffect, EntryError> {
    if at.level == Level::L4 && usize::from(at.index) >= HV_L4_FIRST_SLOT {
        return Ok(EntryEffect::HvSlot);
    }
    let pte = Pte(entry);
    if !pte.is_present() {
        return Ok(EntryEffect::NotPresent);
    }
    let target = pte.mfn();
    match at.level.below() {
        None => {
            if entry & pte::GLOBAL != 0 {
                // A global translation survives CR3 loads: it would outlive
                // the mapping, the domain and the frame's ownership.
                return Err(EntryError::GlobalMapping { entry });
            }
            let class = lookup.classify(target);
            match class {
                FrameClass::Own(RunKind::Data) => Ok(EntryEffect::Frame {
                    target,
                    typed: pte.is_writable().then_some(PageType::Writable),
                }),
                FrameClass::Own(kind @ (RunKind::P2m | RunKind::LogDirty)) => {
                    Err(EntryError::HypervisorFrame { target, kind })
                }
                FrameClass::Own(kind) => {
                    if pte.is_writable() {
                        Err(EntryError::WritablePageTable { target, kind })
                    } else {
                        Ok(EntryEffect::Frame {
                            target,
                            typed: None,
                        })
                    }
                }
                FrameClass::PermittedMmio if entry & MMIO_CACHE_BITS == MMIO_CACHE => {
                    Ok(EntryEffect::Mmio(target))
                }
                FrameClass::PermittedMmio => Err(EntryError::MmioCacheable { target, entry }),
                FrameClass::ForbiddenMmio => Err(EntryError::MmioNotPermitted { target }),
                _ => Err(EntryError::ForeignTarget {
                    target,
                    found: class,
                }),
            }
        }
        Some(below) => {
            if pte.has_huge_bit() {
                return Err(EntryError::Superpage { entry });
            }
            let class = lookup.classify(target);
            match class {
                FrameClass::Own(kind) if kind == RunKind::of_level(below) => {
                    Ok(EntryEffect::Frame {
                        target,
                        typed: Some(PageType::of_level(below)),
                    })
                }
                FrameClass::Own(found) => Err(EntryError::TypeMismatch {
                    target,
                    expected: RunKind::of_level(below),
                    found,
                }),
                FrameClass::PermittedMmio | FrameClass::ForbiddenMmio => {
                    Err(EntryError::MmioNotPermitted { target })
                }
                _ => Err(EntryError::ForeignTarget {
                    target,
                    found: class,
                }),
            }
        }
    }
}

/// Why a present entry of an HVM domain's nested page tables is refused
/// (Invariant 28): the rule its value breaks. The pass wraps it with the
/// entry's [`EntryRef`] and raw value ([`crate::Error::Nested`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum NestedError {
    /// The U bit is clear: AMD nested paging treats every guest access as
    /// a user access, so every level must allow it.
    #[error("has the U bit clear; every present nested entry must have it")]
    UserClear,
    /// An L2, L3 or L4 entry has bit 7 (PS) set: nested tables map 4 KiB
    /// pages only.
    #[error("has the PS bit set; nested tables map 4 KiB pages only")]
    LargePage,
    /// An L2, L3 or L4 entry points at a frame that is not one of its
    /// domain's nested page-table frames.
    #[error("points at {target}, {found}, not a nested page-table frame of the domain")]
    NotP2mTable {
        /// The frame it points at.
        target: Mfn,
        /// What that frame is.
        found: FrameClass,
    },
    /// An L2, L3 or L4 entry points at a nested table already reached
    /// (the root, or one another entry points at): the tables are a tree.
    #[error("points at the nested page-table frame {target}, which is already reached from elsewhere: the nested tables form a tree")]
    TableTwice {
        /// The frame it points at.
        target: Mfn,
    },
    /// A leaf in the PCI hole is not an identity entry: its guest frame is
    /// in none of the domain's identity ranges, or it names another frame.
    #[error("maps {gpfn}, in the domain's PCI hole, to {target}: a present leaf in the hole maps one of the domain's identity ranges at machine frame == guest frame")]
    HoleNotIdentity {
        /// The guest frame.
        gpfn: Gpfn,
        /// The frame it names.
        target: Mfn,
    },
    /// An identity leaf in the hole names a frame that is not device
    /// memory the domain may map.
    #[error(
        "maps {gpfn} to {target}, {found}: an identity leaf maps device memory the domain may map"
    )]
    HoleNotMmio {
        /// The guest frame.
        gpfn: Gpfn,
        /// The frame it names.
        target: Mfn,
        /// What that frame is.
        found: FrameClass,
    },
    /// An identity leaf maps device memory cacheable: PCD and PWT not both
    /// set, or PAT set.
    #[error("maps device memory at {gpfn} cacheable; it must be uncacheable: PCD and PWT set, PAT clear")]
    MmioCacheable {
        /// The guest frame.
        gpfn: Gpfn,
    },
    /// A leaf maps a guest frame that is neither RAM of the domain nor in
    /// its hole.
    #[error("maps {gpfn}, which is beyond the domain's RAM (nothing is there)")]
    BeyondRam {
        /// The guest frame.
        gpfn: Gpfn,
    },
    /// A leaf maps a RAM guest frame that no data run of the domain gives.
    #[error("maps {gpfn} to {target}, but no data run of the domain gives that guest frame")]
    UnbackedRam {
        /// The guest frame.
        gpfn: Gpfn,
        /// The frame it names.
        target: Mfn,
    },
    /// A leaf maps a RAM guest frame to another frame than the data runs
    /// give it.
    #[error("maps {gpfn} to {target}, but the domain's data runs give it {expected}")]
    WrongFrame {
        /// The guest frame.
        gpfn: Gpfn,
        /// The frame it names.
        target: Mfn,
        /// The frame the runs give.
        expected: Mfn,
    },
    /// A leaf maps a frame the hypervisor holds for the domain (a nested
    /// page-table or log-dirty frame) or a guest page table.
    #[error("maps {gpfn} to {target}, {}; a guest never reaches the hypervisor's frames held for it", kind_phrase(*.kind))]
    HypervisorFrame {
        /// The guest frame.
        gpfn: Gpfn,
        /// The frame it names.
        target: Mfn,
        /// What it is.
        kind: RunKind,
    },
    /// A RAM leaf is read-only while log-dirty mode is off.
    #[error("maps RAM at {gpfn} read-only, but log-dirty mode is off: RAM is mapped writable")]
    ReadOnlyRam {
        /// The guest frame.
        gpfn: Gpfn,
    },
    /// A RAM leaf is writable while log-dirty mode is on and the page's
    /// bit is clear: a write would not be recorded.
    #[error("maps RAM at {gpfn} (RAM index {index:#x}) writable, but its log-dirty bit is clear: a clean page is mapped read-only, or a write to it would be lost")]
    CleanWritable {
        /// The guest frame.
        gpfn: Gpfn,
        /// Its RAM index (its bit in the bitmap).
        index: u64,
    },
}
