//! The frametable entry: who owns a machine frame, what it holds, how many
//! references it has.
//!
//! The frametable is an array of [`FrameInfo`] indexed by machine frame number
//! from 0. The old hypervisor keeps it up to date one change at a time
//! (`mmu_update`, pin, unpin, CR3 switch); after a live update the new
//! hypervisor rebuilds it in one pass ([`crate::pass`]) from the handover
//! state. Both must arrive at exactly the same values for every owned frame,
//! which [`crate::digest`] checks. The counting rules are written on the
//! fields below and numbered in `docs/invariants.md` (Invariants 2–5).

use core::fmt;

use zerocopy::IntoBytes;

use handover_abi::RunKind;
use hvlu_types::{DomId, Mfn};

pub use crate::page_type::PageType;

/// The flag bits of a [`FrameInfo`].
///
/// | bit | meaning |
/// |---|---|
/// | 0 | [`FrameFlags::PINNED`] |
/// | 1..=7 | reserved, always 0; a frametable with one set is corrupt |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flag set.
    pub const EMPTY: FrameFlags = FrameFlags(0);
    /// The frame is a page table that its domain pinned (at the level of its
    /// type). Set iff the handover state (or the live hypervisor's pin list)
    /// lists it as pinned; each pin also holds one type and one general
    /// reference (Invariant 5).
    pub const PINNED: FrameFlags = FrameFlags(1 << 0);
    /// Every bit that has a meaning today.
    pub const KNOWN: FrameFlags = FrameFlags(1 << 0);

    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The flags of `bits`, or `None` if a reserved bit is set.
    pub const fn from_bits(bits: u8) -> Option<FrameFlags> {
        if bits & !Self::KNOWN.0 == 0 {
            Some(FrameFlags(bits))
        } else {
            None
        }
    }

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with those of `other` added.
    pub const fn union(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }

    /// These flags with those of `other` removed.
    pub const fn difference(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 & !other.0)
    }
}

/// A reference count would leave its legal range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CountError {
    /// A count is already `u32::MAX`.
    #[error("reference count overflow")]
    Overflow,
    /// A count that must be decremented is already 0 (or the type reference
    /// to drop is not of the frame's type).
    #[error("reference count underflow")]
    Underflow,
}

/// One frametable entry: 16 bytes, `#[repr(C)]`, all-zero = a frame no
/// domain owns.
///
/// The layout (offsets in bytes) is fixed so that a hypervisor can keep the
/// table in raw memory that it zeroes itself:
///
/// | offset | field | size |
/// |---|---|---|
/// | 0 | `type_count` | 4 |
/// | 4 | `ref_count` | 4 |
/// | 8 | `owner` | 4 |
/// | 12 | `page_type` | 1 |
/// | 13 | `flags` | 1 |
/// | 14 | `reserved` | 2 |
///
/// Every field is a plain integer, so any bit pattern is a valid Rust value;
/// the legal ranges below are what the pass produces and the old hypervisor
/// maintains. Outside them a frametable is corrupt, and the digest (which
/// hashes the raw values) tells the two sides apart. The `zerocopy` derives
/// check that layout at compile time (no padding, all-zero is a valid value),
/// so the hypervisor can place a frametable in zeroed memory without a
/// hand-kept claim.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct FrameInfo {
    /// The type count: how many references pin the frame's [`PageType`].
    ///
    /// Legal values by type (Invariant 3):
    /// - frame not owned: `0` once the pass has finished. (During the pass a
    ///   frame not yet claimed always has `0` too: type references are taken
    ///   only on claimed frames.)
    /// - `None`: `0`. A `None` frame with a non-zero type count is illegal.
    /// - `Writable`: `1..=u32::MAX`, the number of present L1 entries of the
    ///   owner's page tables (lower half of L4s only, see Invariant 7) that
    ///   map the frame with the RW bit set. `0` is illegal: the type falls
    ///   back to `None` when the last writable mapping goes.
    /// - `Ln` (n = 1..=3): `0..=u32::MAX`, the number of present entries of
    ///   the owner's L(n+1) tables that point at the frame, plus 1 if it is
    ///   pinned. `0` is legal: a table listed in the handover state keeps its
    ///   type even when nothing references it.
    /// - `L4`: `0..=u32::MAX`, 1 if pinned plus the number of the owner's
    ///   vCPUs whose CR3 holds the frame (no table entry may point at an L4).
    /// - `P2m`: `1`: the one reference that reaches it (its parent's entry,
    ///   or the domain's nCR3 for the root; Invariant 28). Entries of nested
    ///   tables take no count on the frames they map.
    /// - `LogDirty`: `0`.
    ///
    /// A count that would exceed `u32::MAX` is refused (the pass reports
    /// [`crate::Error::CountOverflow`]); it never wraps.
    type_count: u32,
    /// The general reference count.
    ///
    /// Legal values (Invariant 4):
    /// - frame not owned: `0` once the pass has finished. During the pass a
    ///   frame not yet claimed may already hold references taken by read-only
    ///   L1 mappings of it (it is one of the domain's own page tables in a
    ///   later run); claiming it keeps them.
    /// - owned frame: `1..=u32::MAX`, equal to 1 (the allocation reference:
    ///   the frame belongs to its domain) + the number of present entries, of
    ///   any level and any RW bit, of the owner's page tables that point at the
    ///   frame (lower half of L4s only; MMIO entries count nothing) + 1 if
    ///   pinned + the number of the owner's vCPUs whose CR3 holds it (an
    ///   HVM domain's: 1 for a data or log-dirty frame, 2 for a P2m frame).
    ///   So `ref_count >= type_count + 1` always holds for an owned frame;
    ///   `0`, or a value below `type_count + 1`, is illegal.
    ref_count: u32,
    /// The owning domain, stored as `DomId + 1`.
    ///
    /// - `0`: no domain owns the frame (free RAM, the live-update region,
    ///   hv-reserved frames, holes). All other fields are then 0 after the
    ///   pass (see `ref_count` for the transient exception during the pass).
    /// - `1..=0x1_0000`: owned by domain `owner - 1` (every `DomId`, including
    ///   0 and `0xFFFF`, is representable, and domain 0 is distinct from "no
    ///   owner", so a zeroed table means "nothing owned").
    /// - `0x1_0001..=u32::MAX`: illegal.
    owner: u32,
    /// The [`PageType`] byte (Invariant 2).
    ///
    /// - `0` (`None`): unowned, or a data frame without writable mapping.
    /// - `1` (`Writable`): a data frame with at least one writable L1 mapping.
    /// - `2..=5` (`L1`..`L4`): a page table of that level; set when the frame
    ///   is claimed from a page-table run and never changed by mappings.
    /// - `6` (`P2m`): a frame of an HVM domain's nested page tables, set
    ///   when claimed from a P2m run (Invariant 28: type count 1, reference
    ///   count 2 — each is reached exactly once, the root from the domain's
    ///   nCR3, the others from one entry of their parent).
    /// - `7` (`LogDirty`): a frame of an HVM domain's log-dirty bitmap
    ///   (type count 0, reference count 1).
    /// - `8..=255`: illegal.
    page_type: u8,
    /// [`FrameFlags`] bits.
    ///
    /// - bit 0 `PINNED`: set iff the frame is pinned (Invariant 5); only legal
    ///   on an owned frame of type `L1`..`L4`.
    /// - bits 1..=7: reserved, must be 0.
    flags: u8,
    /// Reserved for future fields; always 0. Hashed by the digest so that a
    /// future user cannot silently diverge between the two sides.
    reserved: u16,
}

const _: () = assert!(core::mem::size_of::<FrameInfo>() == 16);
const _: () = assert!(core::mem::align_of::<FrameInfo>() == 4);

impl FrameInfo {
    /// The entry of a frame no domain owns: all zero.
    pub const UNOWNED: FrameInfo = FrameInfo {
        type_count: 0,
        ref_count: 0,
        owner: 0,
        page_type: 0,
        flags: 0,
        reserved: 0,
    };

    /// An entry with the given fields. Used by the old hypervisor when it
    /// creates an entry and by tests that build an expected table; the caller
    /// is responsible for the legal ranges documented on the fields.
    pub const fn new(
        owner: Option<DomId>,
        page_type: PageType,
        type_count: u32,
        ref_count: u32,
        flags: FrameFlags,
    ) -> FrameInfo {
        FrameInfo {
            type_count,
            ref_count,
            owner: encode_owner(owner),
            page_type: page_type as u8,
            flags: flags.bits(),
            reserved: 0,
        }
    }

    /// The owning domain, or `None` if no domain owns the frame (or the
    /// stored value is illegal, above `0x1_0000`).
    pub const fn owner(&self) -> Option<DomId> {
        decode_owner(self.owner)
    }

    /// Whether `domain` owns the frame.
    pub const fn is_owned_by(&self, domain: DomId) -> bool {
        self.owner == domain.0 as u32 + 1
    }

    /// Whether the owner field is not 0 ("no owner"). True for every owned
    /// frame, and also for an illegal owner value, so that the digest covers
    /// a corrupt entry rather than skipping it.
    pub const fn is_owned(&self) -> bool {
        self.owner != 0
    }

    /// The page type, or `None` if the stored byte is reserved.
    pub const fn page_type(&self) -> Option<PageType> {
        PageType::from_repr(self.page_type)
    }

    /// The type count.
    pub const fn type_count(&self) -> u32 {
        self.type_count
    }

    /// The general reference count.
    pub const fn ref_count(&self) -> u32 {
        self.ref_count
    }

    /// The flags (reserved bits included as stored).
    pub const fn flags(&self) -> FrameFlags {
        FrameFlags(self.flags)
    }

    /// Whether the frame is pinned.
    pub const fn is_pinned(&self) -> bool {
        self.flags & FrameFlags::PINNED.0 != 0
    }

    /// The raw 16 bytes' fields in digest order:
    /// `(owner as stored, page_type byte, flags byte, reserved, type_count,
    /// ref_count)`.
    pub const fn raw(&self) -> (u32, u8, u8, u16, u32, u32) {
        (
            self.owner,
            self.page_type,
            self.flags,
            self.reserved,
            self.type_count,
            self.ref_count,
        )
    }

    /// Claims the frame for `domain` with the type of `kind`, keeping the
    /// counts it may already hold (Invariant 9). The caller has checked that
    /// no domain owns it yet. Adds the allocation reference.
    pub fn claim(&mut self, domain: DomId, kind: RunKind) -> Result<(), CountError> {
        self.ref_count = self.ref_count.checked_add(1).ok_or(CountError::Overflow)?;
        self.owner = encode_owner(Some(domain));
        self.page_type = PageType::of_run(kind) as u8;
        Ok(())
    }

    /// The entry of a data frame of `domain` claimed with `writable`
    /// writable and `read_only` read-only L1 mappings and nothing else: the
    /// value [`FrameInfo::claim`] then [`FrameInfo::get_ref`] once per
    /// mapping would leave on an all-zero entry (Invariants 2–4). The caller
    /// keeps `1 + writable + read_only` within `u32`.
    pub(crate) const fn mapped_data(domain: DomId, writable: u32, read_only: u32) -> FrameInfo {
        FrameInfo {
            type_count: writable,
            ref_count: 1 + writable + read_only,
            owner: encode_owner(Some(domain)),
            page_type: data_type(writable),
            flags: 0,
            reserved: 0,
        }
    }

    /// Whether every entry of `entries` is all zero ([`FrameInfo::UNOWNED`]).
    /// Word by word without a branch, so that it runs at the speed of
    /// memory.
    pub(crate) fn all_zero(entries: &[FrameInfo]) -> bool {
        entries.as_bytes().chunks_exact(8).fold(0, |any, w| {
            any | u64::from_ne_bytes(w.try_into().unwrap_or([1; 8]))
        }) == 0
    }

    /// Sets every entry of `entries` to `value`, as one 16-byte word each
    /// (the compiler stores a struct field by field otherwise: six stores).
    pub(crate) fn fill(entries: &mut [FrameInfo], value: FrameInfo) {
        let (lo, hi) = value.as_bytes().split_at(8);
        let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or_default());
        let (lo, hi) = (word(lo), word(hi));
        for e in entries.as_mut_bytes().chunks_exact_mut(16) {
            let (l, h) = e.split_at_mut(8);
            l.copy_from_slice(&lo.to_ne_bytes());
            h.copy_from_slice(&hi.to_ne_bytes());
        }
    }

    /// Takes one general reference and, if `typed` is set, one type reference
    /// of that type: the effect of one present entry pointing at the frame
    /// ([`crate::rules::EntryEffect::Frame`]), of a pin, or of a CR3.
    ///
    /// A `Writable` type reference turns a `None` frame into a `Writable`
    /// one. A type reference of a page-table type does not change the type:
    /// the rules only produce it for a frame that already has that type.
    /// On error nothing is changed.
    pub fn get_ref(&mut self, typed: Option<PageType>) -> Result<(), CountError> {
        let refs = self.ref_count.checked_add(1).ok_or(CountError::Overflow)?;
        if let Some(t) = typed {
            let types = self.type_count.checked_add(1).ok_or(CountError::Overflow)?;
            self.type_count = types;
            if t == PageType::Writable {
                self.page_type = PageType::Writable as u8;
            }
        }
        self.ref_count = refs;
        Ok(())
    }

    /// Drops what [`FrameInfo::get_ref`] took: one general reference and, if
    /// `typed` is set, one type reference. The last `Writable` type reference
    /// turns the frame back into `None`. For the old hypervisor's incremental
    /// updates (an entry overwritten, an unpin, a CR3 switch); the pass never
    /// drops references. On error nothing is changed.
    pub fn put_ref(&mut self, typed: Option<PageType>) -> Result<(), CountError> {
        let refs = self.ref_count.checked_sub(1).ok_or(CountError::Underflow)?;
        if let Some(t) = typed {
            if self.page_type != t as u8 {
                return Err(CountError::Underflow);
            }
            let types = self
                .type_count
                .checked_sub(1)
                .ok_or(CountError::Underflow)?;
            self.type_count = types;
            if t == PageType::Writable && types == 0 {
                self.page_type = PageType::None as u8;
            }
        }
        self.ref_count = refs;
        Ok(())
    }

    /// Changes the page type, keeping owner, counts and flags: the type
    /// changes of [`crate::ops`] (a data frame of type `None` becomes a
    /// table when it is pinned, an idle table becomes `None` when it is
    /// released). The caller keeps Invariants 2, 3 and 13.
    pub(crate) fn set_page_type(&mut self, page_type: PageType) {
        self.page_type = page_type as u8;
    }

    /// Sets the `PINNED` flag (the caller takes the pin's references with
    /// [`FrameInfo::get_ref`]).
    pub fn set_pinned(&mut self, pinned: bool) {
        self.flags = if pinned {
            self.flags | FrameFlags::PINNED.0
        } else {
            self.flags & !FrameFlags::PINNED.0
        };
    }
}

impl fmt::Debug for FrameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FrameInfo");
        match self.owner() {
            Some(dom) => d.field("owner", &dom.0),
            None if self.owner == 0 => d.field("owner", &"none"),
            None => d.field("owner_illegal", &self.owner),
        };
        match self.page_type() {
            Some(t) => d.field("type", &t),
            None => d.field("type_illegal", &self.page_type),
        };
        d.field("type_count", &self.type_count)
            .field("ref_count", &self.ref_count)
            .field("flags", &self.flags)
            .field("reserved", &self.reserved)
            .finish()
    }
}

/// The type byte of a data frame with `type_count` writable mappings
/// (Invariant 2).
const fn data_type(type_count: u32) -> u8 {
    if type_count > 0 {
        PageType::Writable as u8
    } else {
        PageType::None as u8
    }
}

const fn encode_owner(owner: Option<DomId>) -> u32 {
    match owner {
        Some(d) => d.0 as u32 + 1,
        None => 0,
    }
}

const fn decode_owner(raw: u32) -> Option<DomId> {
    if raw == 0 || raw > 0x1_0000 {
        None
    } else {
        Some(DomId((raw - 1) as u16))
    }
}

/// The entry of `mfn` in `frametable`, `None` beyond its end.
#[inline(always)]
pub(crate) fn frame_at(frametable: &[FrameInfo], mfn: Mfn) -> Option<&FrameInfo> {
    usize::try_from(mfn.0).ok().and_then(|i| frametable.get(i))
}

/// The entry of `mfn` in `frametable`, mutable; `None` beyond its end.
#[inline(always)]
pub(crate) fn frame_at_mut(frametable: &mut [FrameInfo], mfn: Mfn) -> Option<&mut FrameInfo> {
    usize::try_from(mfn.0)
        .ok()
        .and_then(|i| frametable.get_mut(i))
}
