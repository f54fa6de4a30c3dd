//! A domain's PCI hole and how its RAM is numbered around it.
//!
//! Every domain's guest frame space has one **PCI hole**, the gpfns
//! `[start, 4 GiB)`, where device memory (BARs) lives and RAM never does.
//! Its start is chosen when the domain is created and never changes: a
//! multiple of [`HOLE_ALIGN`] frames (2 MiB), at least [`MIN_HOLE`]
//! (16 MiB), below [`HOLE_END`] (4 GiB); [`Hole::DEFAULT`] is 3 GiB.
//!
//! A domain limited to `max_frames` frames has that many RAM frames,
//! numbered by a **RAM index** `0..max_frames` in gpfn order: index `i` is
//! gpfn `i` below the hole's start and gpfn `i + (4 GiB − start)` from the
//! start on. So RAM is `[0, start)`, then `[4 GiB, 4 GiB + (max_frames −
//! start))`, the second part only for a domain larger than its hole's
//! start. The hypervisor keeps a domain's p2m dense by RAM index (nothing
//! is stored for the hole); a PV guest's own page numbers (its physmap, its
//! mfn list) are RAM indices too.

use core::fmt;

use crate::{Gpfn, PAGE_SHIFT};

/// The first gpfn above every PCI hole: 4 GiB.
pub const HOLE_END: Gpfn = Gpfn(0x10_0000);
/// A hole starts on a multiple of this many frames (2 MiB), so that no
/// 2 MiB page-table slot holds both RAM and hole.
pub const HOLE_ALIGN: u64 = 512;
/// The lowest gpfn a hole may start at (16 MiB).
pub const MIN_HOLE: Gpfn = Gpfn(0x1000);

/// A domain's PCI hole, `[start, HOLE_END)`: a start that keeps the rules of
/// the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hole {
    start: Gpfn,
}

/// Why a hole start is refused. Each carries the start asked for, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoleError {
    /// The start is not a multiple of 2 MiB.
    #[error("a PCI hole at {addr:#x} is not on a 2 MiB boundary")]
    Unaligned {
        /// The start asked for.
        addr: u64,
    },
    /// The start is below 16 MiB.
    #[error("a PCI hole at {addr:#x} starts below 16 MiB, the lowest it may start")]
    TooLow {
        /// The start asked for.
        addr: u64,
    },
    /// The start is at or above 4 GiB, where every hole ends.
    #[error("a PCI hole at {addr:#x} does not start below 4 GiB, where it ends")]
    TooHigh {
        /// The start asked for.
        addr: u64,
    },
}

impl HoleError {
    /// The same refusal, naming `addr`.
    const fn at(self, addr: u64) -> HoleError {
        match self {
            HoleError::Unaligned { .. } => HoleError::Unaligned { addr },
            HoleError::TooLow { .. } => HoleError::TooLow { addr },
            HoleError::TooHigh { .. } => HoleError::TooHigh { addr },
        }
    }
}

impl Hole {
    /// The hole a domain gets unless told otherwise: from 3 GiB.
    pub const DEFAULT: Hole = Hole {
        start: Gpfn(0xc_0000),
    };

    /// The hole from gpfn `start`, if it keeps the rules.
    pub const fn new(start: Gpfn) -> Result<Hole, HoleError> {
        let addr = start.0.saturating_mul(1 << PAGE_SHIFT);
        if start.0 >= HOLE_END.0 {
            Err(HoleError::TooHigh { addr })
        } else if start.0 < MIN_HOLE.0 {
            Err(HoleError::TooLow { addr })
        } else if !start.0.is_multiple_of(HOLE_ALIGN) {
            Err(HoleError::Unaligned { addr })
        } else {
            Ok(Hole { start })
        }
    }

    /// The hole from byte address `addr`, if it keeps the rules; a refusal
    /// names `addr` as given.
    pub const fn at_addr(addr: u64) -> Result<Hole, HoleError> {
        match Hole::new(Gpfn(addr >> PAGE_SHIFT)) {
            // Out of range says more than off a boundary.
            Err(e) => Err(e.at(addr)),
            Ok(_) if !addr.is_multiple_of(HOLE_ALIGN << PAGE_SHIFT) => {
                Err(HoleError::Unaligned { addr })
            }
            Ok(hole) => Ok(hole),
        }
    }

    /// Its first gpfn.
    pub const fn start(self) -> Gpfn {
        self.start
    }

    /// Its first byte.
    pub const fn addr(self) -> u64 {
        self.start.0 << PAGE_SHIFT
    }

    /// Its frames: `HOLE_END − start`.
    pub const fn frames(self) -> u64 {
        HOLE_END.0 - self.start.0
    }

    /// Whether `gpfn` lies in the hole.
    pub const fn contains(self, gpfn: Gpfn) -> bool {
        gpfn.0 >= self.start.0 && gpfn.0 < HOLE_END.0
    }

    /// The gpfn of RAM index `index`, or `None` past `u64::MAX`.
    pub const fn gpfn_of(self, index: u64) -> Option<Gpfn> {
        if index < self.start.0 {
            return Some(Gpfn(index));
        }
        match index.checked_add(self.frames()) {
            Some(g) => Some(Gpfn(g)),
            None => None,
        }
    }

    /// The RAM index of `gpfn`, or `None` for a gpfn in the hole.
    pub const fn index_of(self, gpfn: Gpfn) -> Option<u64> {
        if gpfn.0 < self.start.0 {
            Some(gpfn.0)
        } else if gpfn.0 < HOLE_END.0 {
            None
        } else {
            Some(gpfn.0 - self.frames())
        }
    }

    /// The RAM of a domain limited to `max_frames` frames as gpfn ranges
    /// `(first, count)`, lowest first: below the hole, then from 4 GiB;
    /// only those that hold a frame. (The part from 4 GiB stops at
    /// `u64::MAX`: no frame space is that large.)
    pub fn ram(self, max_frames: u64) -> impl Iterator<Item = (Gpfn, u64)> {
        let low = max_frames.min(self.start.0);
        let high = (max_frames - low).min(u64::MAX - HOLE_END.0);
        [(Gpfn(0), low), (HOLE_END, high)]
            .into_iter()
            .filter(|&(_, count)| count > 0)
    }
}

impl Default for Hole {
    fn default() -> Hole {
        Hole::DEFAULT
    }
}

impl fmt::Display for Hole {
    /// `[0xc0000000, 4 GiB)`: its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, 4 GiB)", self.addr())
    }
}

#[cfg(test)]
mod tests;
