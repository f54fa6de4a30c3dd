//! Primitive types shared by the handover body, the frametable and the pass.
//!
//! These are plain values with a fixed serde shape. They appear inside the
//! versioned body types, so changing the shape of any of them is a change of
//! the ABI: add a new version instead.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Size of a machine frame (and of a guest page) in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Width of a physical address on x86-64 (the architectural maximum).
pub const PHYS_ADDR_BITS: u32 = 52;
/// One past the highest machine frame number a physical address can reach.
pub const MFN_LIMIT: u64 = 1 << (PHYS_ADDR_BITS - PAGE_SHIFT);

/// A machine frame number: physical address >> 12.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Mfn(pub u64);

impl Mfn {
    /// The physical address of the first byte of this frame.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame that holds physical address `addr`.
    pub const fn containing(addr: u64) -> Self {
        Mfn(addr >> PAGE_SHIFT)
    }
}

/// A guest pseudo-physical frame number, as a PV guest numbers its own pages.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Gpfn(pub u64);

/// A domain identifier. Domain 0 is the privileged control domain.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct DomId(pub u16);

impl DomId {
    /// The control domain.
    pub const DOM0: DomId = DomId(0);
}

/// A half-open range of machine frames `[start, start + count)`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct MfnRange {
    /// First frame of the range.
    pub start: Mfn,
    /// Number of frames. A range of zero frames is empty.
    pub count: u64,
}

impl MfnRange {
    /// A range of `count` frames starting at `start`.
    pub const fn new(start: Mfn, count: u64) -> Self {
        MfnRange { start, count }
    }

    /// One past the last frame, saturating at `u64::MAX`.
    pub const fn end(self) -> u64 {
        self.start.0.saturating_add(self.count)
    }

    /// Whether `mfn` lies in this range.
    pub const fn contains(self, mfn: Mfn) -> bool {
        mfn.0 >= self.start.0 && mfn.0 < self.end()
    }

    /// Whether the two ranges share at least one frame.
    pub const fn overlaps(self, other: MfnRange) -> bool {
        self.start.0 < other.end() && other.start.0 < self.end()
    }

    /// Whether the range has no frames.
    pub const fn is_empty(self) -> bool {
        self.count == 0
    }
}

/// What the frames of a memory run hold.
///
/// The order of the variants is the order in which runs must appear in a
/// domain's run list: data first, then page tables bottom-up (L1 to L4). The
/// single frametable pass relies on it (see `docs/invariants.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum RunKind {
    /// Ordinary guest memory.
    Data = 0,
    /// Level-1 page tables (entries map 4 KiB pages).
    L1 = 1,
    /// Level-2 page tables.
    L2 = 2,
    /// Level-3 page tables.
    L3 = 3,
    /// Level-4 page tables (the roots loaded into CR3).
    L4 = 4,
}

impl RunKind {
    /// The page-table level, or `None` for data.
    pub const fn level(self) -> Option<u8> {
        match self {
            RunKind::Data => None,
            RunKind::L1 => Some(1),
            RunKind::L2 => Some(2),
            RunKind::L3 => Some(3),
            RunKind::L4 => Some(4),
        }
    }

    /// The page-table kind of `level` (1..=4), or `None` for any other number.
    pub const fn from_level(level: u8) -> Option<RunKind> {
        match level {
            1 => Some(RunKind::L1),
            2 => Some(RunKind::L2),
            3 => Some(RunKind::L3),
            4 => Some(RunKind::L4),
            _ => None,
        }
    }

    /// Whether this run holds page tables.
    pub const fn is_page_table(self) -> bool {
        !matches!(self, RunKind::Data)
    }
}

/// A run of machine-contiguous frames of one domain that are also contiguous
/// in the guest's pseudo-physical space and all of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemRun {
    /// First machine frame of the run.
    pub first_mfn: Mfn,
    /// Number of frames; never zero in a valid state.
    pub count: u64,
    /// Guest frame number of the run's first frame.
    pub first_gpfn: Gpfn,
    /// What every frame of the run holds.
    pub kind: RunKind,
}

impl MemRun {
    /// The machine frames of the run.
    pub const fn mfns(&self) -> MfnRange {
        MfnRange::new(self.first_mfn, self.count)
    }
}

impl fmt::Display for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfn {:#x}", self.0)
    }
}

impl fmt::Display for Gpfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpfn {:#x}", self.0)
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for MfnRange {
    /// `mfns [start, end)` in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfns [{:#x}, {:#x})", self.start.0, self.end())
    }
}
