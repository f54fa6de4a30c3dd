//! [`OpError`]: why a live operation is refused.

use hvlu_types::{pte::Level, DomId, Mfn};

use super::{DomPrefix, OwnerName};
use crate::page_type::PageType;
use crate::rules::{EntryError, EntryRef, FrameClass};

/// Why an incremental page-type operation of the live hypervisor
/// ([`crate::ops`]) is refused.
///
/// A refused operation has changed nothing: not the frametable, not the
/// M2P, not the page-table memory. Every variant names the domain the
/// operation was made for and the frame at fault (and the entry, for entry
/// errors: [`OpError::Entry`] and [`OpError::StaleEntry`] wrap the rules'
/// [`EntryError`], the same the pass reports for the same entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The frame lies beyond the frametable or the M2P table.
    #[error("dom{domain}: {mfn} lies beyond the frametable or the M2P table")]
    OutOfRange {
        /// The domain the operation was for.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// The frame is not the domain's: another domain owns it, or nobody
    /// does.
    #[error("dom{domain}: {mfn} is not the domain's, it belongs to {}", OwnerName(*.owner))]
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
    #[error("dom{domain}: {mfn} is not a page table (type {found})")]
    NotPageTable {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// Its type (`None` or `Writable`).
        found: PageType,
    },
    /// An entry index is not below 512.
    #[error("dom{domain}: entry index {index} of table {table} is not below 512")]
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
    #[error(
        "dom{domain}: entry {index} of L4 table {table} belongs to the hypervisor (slots 256..512)"
    )]
    HvSlot {
        /// The domain.
        domain: DomId,
        /// The L4 table.
        table: Mfn,
        /// The slot asked for, `256..512`.
        index: usize,
    },
    /// The new value of an entry, or an entry of a frame being pinned,
    /// breaks a PV type rule (Invariants 6–8): the rule's error is the one
    /// the pass would report for the same entry.
    #[error("{at} {source}")]
    Entry {
        /// The entry.
        at: EntryRef,
        /// The rule it breaks.
        source: EntryError,
    },
    /// The table is pinned: it cannot be pinned again, nor released.
    #[error("dom{domain}: {mfn} is pinned as {level}; unpin it first")]
    Pinned {
        /// The domain.
        domain: DomId,
        /// The table.
        mfn: Mfn,
        /// Its level.
        level: Level,
    },
    /// An unpin names a frame that is not pinned.
    #[error("dom{domain}: {mfn} is not pinned")]
    NotPinned {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A pin names a level other than the table's (types are sticky:
    /// a table changes level only by being released first).
    #[error("dom{domain}: {mfn} cannot be pinned as {requested}: it is an {found} table")]
    LevelMismatch {
        /// The domain.
        domain: DomId,
        /// The table.
        mfn: Mfn,
        /// The level the pin asked for.
        requested: Level,
        /// The table's level.
        found: Level,
    },
    /// A pin names a data frame that L1 entries map writable: it cannot
    /// become a page table while the guest can write it.
    #[error(
        "dom{domain}: {mfn} cannot become a page table: {mappings} L1 entries map it writable"
    )]
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
    #[error(
        "dom{domain}: {level} table {mfn} cannot be released: {type_count} entries or CR3s still reference it"
    )]
    TableInUse {
        /// The domain.
        domain: DomId,
        /// The table.
        mfn: Mfn,
        /// Its level.
        level: Level,
        /// Its type count.
        type_count: u32,
    },
    /// A CR3 switch names a frame of the domain that is not an L4 table.
    #[error(
        "dom{domain}: {mfn} cannot be loaded into CR3: it is of type {found}, not an L4 table"
    )]
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
    #[error("dom{domain}: {mfn} cannot be given to a domain: it is {found}")]
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
    #[error("dom{domain}: {mfn} cannot be claimed: dom{owner} owns it already")]
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
    #[error(
        "dom{domain}: {mfn} cannot get guest frame number {:#x} (the M2P's invalid marker)",
        crate::M2P_INVALID
    )]
    GpfnInvalid {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A data release names a frame that something besides its allocation
    /// still holds: a mapping, a type (table or writable data), a pin or a
    /// CR3.
    #[error(
        "dom{domain}: {mfn} is still in use (type {page_type}, type count {type_count}, reference count {ref_count}{}); only an untyped data frame held by its allocation alone (reference count 1) can be released",
        if *.pinned { ", pinned" } else { "" }
    )]
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
    /// [`crate::claim_hvm_frame`] or [`crate::release_hvm_frame`] was asked
    /// for a type that is no HVM structure's.
    #[error("dom{domain}: {mfn} cannot be an HVM domain's {page_type} frame: only P2m and LogDirty frames are")]
    NotHvmFrame {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// The type asked for.
        page_type: PageType,
    },
    /// [`crate::release_hvm_frame`] found the frame other than as
    /// [`crate::claim_hvm_frame`] left it.
    #[error("dom{domain}: {mfn} is not an unused {expected} frame (type {page_type}, type count {type_count}, reference count {ref_count}): it cannot be released as one")]
    HvmFrameInUse {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
        /// The type it should have.
        expected: PageType,
        /// Its type.
        page_type: PageType,
        /// Its type count.
        type_count: u32,
        /// Its reference count.
        ref_count: u32,
    },
    /// A type or reference count would exceed `u32::MAX`.
    #[error("dom{domain}: a reference count of {mfn} would exceed u32::MAX")]
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
    #[error(
        "{at}: the value already there no longer passes the type rules (it {source}); the live state is inconsistent"
    )]
    StaleEntry {
        /// The entry.
        at: EntryRef,
        /// Why the rules refuse its current value.
        source: EntryError,
    },
    /// A frametable entry holds values outside the legal ranges documented
    /// on [`crate::FrameInfo`] (or the caller's record, e.g. a vCPU's CR3,
    /// disagrees with it). The live state is inconsistent; nothing was
    /// changed.
    #[error("{}frametable entry of {mfn} is corrupt: {what}", DomPrefix(*.domain))]
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
