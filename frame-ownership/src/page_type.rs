//! What a frame holds: its PV page type ([`PageType`], the byte stored in
//! [`crate::FrameInfo`]). A page table's level is `hvlu_types`' [`Level`],
//! the one page-table geometry type; this module ties it to the page types
//! ([`PageType::of_level`], [`PageType::level`]), as `handover_abi`'s
//! `RunKind::of_level` and `RunKind::level` tie it to the run kinds.
//!
//! It is plain vocabulary with no dependency inside the crate, so the
//! frametable entry ([`crate::frame`]), the type rules ([`crate::rules`])
//! and the errors can all use it without depending on each other.

use core::fmt;

use handover_abi::RunKind;
use hvlu_types::pte::Level;

/// What a frame holds, as far as the PV type system is concerned.
///
/// Stored in [`crate::FrameInfo`] as one byte. The numbers are part of the digest
/// (and so of the agreement between the old and the new hypervisor): never
/// renumber a variant, only add new ones.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | [`PageType::None`] |
/// | 1 | [`PageType::Writable`] |
/// | 2..=5 | [`PageType::L1`] .. [`PageType::L4`] |
/// | 6 | [`PageType::P2m`], a frame of an HVM domain's nested page tables |
/// | 7 | [`PageType::LogDirty`], a frame of an HVM domain's log-dirty bitmap |
/// | 8..=255 | reserved; a frametable holding one is corrupt |
///
/// `PageType::from_repr(byte)` is the type stored as `byte`, or `None` for a
/// reserved value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, strum::FromRepr)]
#[repr(u8)]
#[non_exhaustive]
pub enum PageType {
    /// A data frame with no writable mapping (or a frame nobody owns).
    None = 0,
    /// A data frame that at least one L1 entry of its domain maps writable.
    Writable = 1,
    /// A level-1 page table.
    L1 = 2,
    /// A level-2 page table.
    L2 = 3,
    /// A level-3 page table.
    L3 = 4,
    /// A level-4 page table (a root that CR3 may hold).
    L4 = 5,
    /// A frame of an HVM domain's nested page tables (any level): the
    /// hypervisor's table that maps the domain's guest frames, held for
    /// the domain (Invariant 28).
    P2m = 6,
    /// A frame of an HVM domain's log-dirty bitmap (Invariant 28).
    LogDirty = 7,
}

impl PageType {
    /// The byte stored in [`crate::FrameInfo`].
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The type a frame of a run of `kind` gets when it is claimed: `None`
    /// for data (it becomes `Writable` only through writable mappings), `Ln`
    /// for a level-n page table, `P2m` and `LogDirty` for theirs.
    pub const fn of_run(kind: RunKind) -> PageType {
        match kind {
            RunKind::P2m => PageType::P2m,
            RunKind::LogDirty => PageType::LogDirty,
            _ => match kind.level() {
                None => PageType::None,
                Some(level) => PageType::of_level(level),
            },
        }
    }

    /// The type of page tables of `level`.
    pub const fn of_level(level: Level) -> PageType {
        match level {
            Level::L1 => PageType::L1,
            Level::L2 => PageType::L2,
            Level::L3 => PageType::L3,
            Level::L4 => PageType::L4,
        }
    }

    /// The page-table level of this type, or `None` for data types.
    pub const fn level(self) -> Option<Level> {
        match self {
            PageType::None | PageType::Writable | PageType::P2m | PageType::LogDirty => None,
            PageType::L1 => Some(Level::L1),
            PageType::L2 => Some(Level::L2),
            PageType::L3 => Some(Level::L3),
            PageType::L4 => Some(Level::L4),
        }
    }

    /// The run kind a frame of this type is listed under in the handover
    /// state: `Data` for `None` and `Writable`, `Ln` for a level-n table,
    /// `P2m` and `LogDirty` for theirs.
    pub const fn run_kind(self) -> RunKind {
        match self {
            PageType::P2m => RunKind::P2m,
            PageType::LogDirty => RunKind::LogDirty,
            _ => match self.level() {
                None => RunKind::Data,
                Some(level) => RunKind::of_level(level),
            },
        }
    }
}

impl fmt::Display for PageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageType::None => "none",
            PageType::Writable => "writable",
            PageType::L1 => "L1",
            PageType::L2 => "L2",
            PageType::L3 => "L3",
            PageType::L4 => "L4",
            PageType::P2m => "P2m",
            PageType::LogDirty => "log-dirty",
        })
    }
}
