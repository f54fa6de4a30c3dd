//! Primitive types shared by the handover body, the frametable and the pass.
//!
//! These are plain values with a fixed serde shape. They appear inside the
//! versioned body types, so changing the shape of any of them is a change of
//! the ABI: add a new version instead.

use serde::{Deserialize, Serialize};

// The frames, ranges, domain ids and page constants are `hvlu_types`'; every
// crate imports them from there (this crate no longer re-exports them).
use hvlu_types::{pte::Level, Gpfn, Mfn, MfnRange};

/// What the frames of a memory run hold.
///
/// The order of the variants is the order in which runs must appear in a
/// domain's run list: data first, then page tables bottom-up (L1 to L4). The
/// single frametable pass relies on it (see `docs/invariants.md`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::FromRepr,
)]
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
    pub const fn level(self) -> Option<Level> {
        match self {
            RunKind::Data => None,
            RunKind::L1 => Some(Level::L1),
            RunKind::L2 => Some(Level::L2),
            RunKind::L3 => Some(Level::L3),
            RunKind::L4 => Some(Level::L4),
        }
    }

    /// The kind of a run of page tables of `level`.
    pub const fn of_level(level: Level) -> RunKind {
        match level {
            Level::L1 => RunKind::L1,
            Level::L2 => RunKind::L2,
            Level::L3 => RunKind::L3,
            Level::L4 => RunKind::L4,
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

#[cfg(test)]
mod tests {
    use super::RunKind;
    use hvlu_types::pte::Level;

    #[test]
    fn a_level_is_a_table_kind_and_back() {
        for level in Level::ALL {
            let kind = RunKind::of_level(level);
            assert!(kind.is_page_table());
            assert_eq!(kind.level(), Some(level));
            // A table kind's number is its level.
            assert_eq!(u32::from(kind as u8), level.number());
        }
        assert_eq!(RunKind::Data.level(), None);
    }
}
