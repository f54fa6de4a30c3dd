//! Primitive types shared by the handover body, the frametable and the pass.
//!
//! These are plain values with a fixed serde shape. They appear inside the
//! versioned body types, so changing the shape of any of them is a change of
//! the ABI: add a new version instead.

use serde::{Deserialize, Serialize};

// The frames, ranges, domain ids and page constants are `hvlu_types`'; every
// crate imports them from there (this crate no longer re-exports them).
use hvlu_types::{Gpfn, Mfn, MfnRange};

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
        // A table kind's number is its level; 0 is data, not a level.
        match RunKind::from_repr(level) {
            Some(RunKind::Data) => None,
            kind => kind,
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

    #[test]
    fn a_level_is_a_table_kind_and_back() {
        for kind in [RunKind::L1, RunKind::L2, RunKind::L3, RunKind::L4] {
            let level = kind.level().unwrap();
            assert_eq!(RunKind::from_level(level), Some(kind));
        }
        assert_eq!(RunKind::Data.level(), None);
        for level in [0, 5, u8::MAX] {
            assert_eq!(RunKind::from_level(level), None, "{level}");
        }
    }
}
