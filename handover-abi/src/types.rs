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
/// domain's run list: data first, then page tables bottom-up (L1 to L4),
/// then an HVM domain's nested page tables ([`RunKind::P2m`]) and its
/// log-dirty bitmap ([`RunKind::LogDirty`]). The single frametable pass
/// relies on it (see `docs/invariants.md`).
///
/// `P2m` and `LogDirty` came with ABI 1.3: a body of 1.0, 1.1 or 1.2 that
/// holds their numbers (5, 6) is refused as malformed, as the readers of
/// those versions refuse it (`crate::body`, [`RunKind::ABI_1_3`]).
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
    /// (1.3) Frames of an HVM domain's nested page tables, every level:
    /// the hypervisor's own tables that turn the domain's guest frames
    /// into machine frames. They have no guest frame: `first_gpfn` is
    /// [`NO_GPFN`].
    P2m = 5,
    /// (1.3) Frames of an HVM domain's log-dirty bitmap, one bit per RAM
    /// index of the domain. They have no guest frame: `first_gpfn` is
    /// [`NO_GPFN`].
    LogDirty = 6,
}

/// The `first_gpfn` of a run whose frames have no guest frame (the kinds
/// [`RunKind::P2m`] and [`RunKind::LogDirty`]): `u64::MAX`, which no guest
/// frame of a run can be (a run's guest frames are below its end, which
/// fits in 64 bits).
pub const NO_GPFN: Gpfn = Gpfn(u64::MAX);

impl RunKind {
    /// The kinds ABI 1.3 added: a body of an older version holds none.
    pub const ABI_1_3: [RunKind; 2] = [RunKind::P2m, RunKind::LogDirty];

    /// The page-table level of a guest (PV) page table, or `None` for
    /// data, nested page tables and the log-dirty bitmap.
    pub const fn level(self) -> Option<Level> {
        match self {
            RunKind::Data | RunKind::P2m | RunKind::LogDirty => None,
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

    /// Whether this run holds guest (PV) page tables, L1 to L4.
    pub const fn is_page_table(self) -> bool {
        self.level().is_some()
    }

    /// Whether the frames of this run have guest frames (data and PV page
    /// tables); nested page tables and the log-dirty bitmap have none.
    pub const fn has_guest_frames(self) -> bool {
        !matches!(self, RunKind::P2m | RunKind::LogDirty)
    }

    /// Whether this kind exists in ABI versions before 1.3.
    pub const fn before_1_3(self) -> bool {
        self.has_guest_frames()
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
        for kind in RunKind::ABI_1_3 {
            assert_eq!(kind.level(), None);
            assert!(!kind.is_page_table() && !kind.has_guest_frames() && !kind.before_1_3());
        }
        assert!(RunKind::Data.has_guest_frames() && RunKind::L4.before_1_3());
        // The order of runs: P2m after L4, LogDirty last.
        assert!(RunKind::L4 < RunKind::P2m && RunKind::P2m < RunKind::LogDirty);
    }
}
