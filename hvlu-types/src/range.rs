//! Ranges of frames ([`MfnRange`]) and of physical addresses
//! ([`PhysRange`]), and the conversions between them.

use core::fmt;

use crate::{Mfn, PAGE_SHIFT, PAGE_SIZE};

/// A half-open range of machine frames `[start, start + count)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

    /// The bytes of these frames, or `None` if they do not fit in a `u64`.
    pub const fn checked_bytes(self) -> Option<PhysRange> {
        if self.start.0 > u64::MAX >> PAGE_SHIFT || self.count > u64::MAX >> PAGE_SHIFT {
            return None;
        }
        let r = PhysRange::new(self.start.0 << PAGE_SHIFT, self.count << PAGE_SHIFT);
        match r.checked_end() {
            Some(_) => Some(r),
            None => None,
        }
    }

    /// The bytes of these frames. Exact for every range below
    /// [`MFN_LIMIT`](crate::MFN_LIMIT); saturates otherwise.
    pub const fn bytes(self) -> PhysRange {
        match self.checked_bytes() {
            Some(r) => r,
            None => PhysRange::from_bounds(
                self.start.0.saturating_mul(PAGE_SIZE),
                self.end().saturating_mul(PAGE_SIZE),
            ),
        }
    }
}

impl From<MfnRange> for PhysRange {
    fn from(r: MfnRange) -> PhysRange {
        r.bytes()
    }
}

impl fmt::Display for MfnRange {
    /// `mfns [start, end)` in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfns [{:#x}, {:#x})", self.start.0, self.end())
    }
}

/// A half-open range of physical addresses `[start, start + size)`.
///
/// A plain value: the fields are public and nothing is checked when one is
/// built. Its users check the ranges they are given (the boot allocator its
/// region and holes) and say what they promise of those they return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    /// Physical address of the first byte.
    pub start: u64,
    /// Length in bytes. A range of zero bytes is empty.
    pub size: u64,
}

impl PhysRange {
    /// The range of `size` bytes starting at `start`.
    pub const fn new(start: u64, size: u64) -> Self {
        PhysRange { start, size }
    }

    /// The range `[start, end)`, or an empty range at `start` if
    /// `end <= start`.
    pub const fn from_bounds(start: u64, end: u64) -> Self {
        PhysRange {
            start,
            size: end.saturating_sub(start),
        }
    }

    /// One past the last byte, or `None` if that address does not fit in a
    /// `u64` (the range runs off the top of the address space).
    pub const fn checked_end(self) -> Option<u64> {
        self.start.checked_add(self.size)
    }

    /// One past the last byte, saturating at `u64::MAX`.
    ///
    /// Exact for every range the allocator returns or accepts.
    pub const fn end(self) -> u64 {
        self.start.saturating_add(self.size)
    }

    /// Whether the range has no bytes.
    pub const fn is_empty(self) -> bool {
        self.size == 0
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.size
    }

    /// Whether every byte of `other` lies in this range (an empty `other`
    /// lies in this range when its start is inside it or at its end).
    pub const fn contains_range(self, other: PhysRange) -> bool {
        match other.checked_end() {
            Some(end) => other.start >= self.start && end <= self.end(),
            None => false,
        }
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(self, other: PhysRange) -> bool {
        self.start < other.end()
            && other.start < self.end()
            && !self.is_empty()
            && !other.is_empty()
    }

    /// Whether both ends are multiples of [`PAGE_SIZE`].
    pub const fn is_page_aligned(self) -> bool {
        (self.start | self.size) & (PAGE_SIZE - 1) == 0
    }

    /// The frame number (physical address >> 12) of the first frame: the
    /// `Mfn` the frametable indexes by.
    pub const fn first_frame(self) -> u64 {
        self.start >> PAGE_SHIFT
    }

    /// The number of whole frames in the range (for a page-aligned range,
    /// every frame it touches).
    pub const fn frame_count(self) -> u64 {
        self.size >> PAGE_SHIFT
    }

    /// The frames of a page-aligned range, or `None` if either end is not
    /// page aligned.
    pub const fn frames(self) -> Option<MfnRange> {
        if self.is_page_aligned() {
            Some(MfnRange::new(
                Mfn(self.start >> PAGE_SHIFT),
                self.size >> PAGE_SHIFT,
            ))
        } else {
            None
        }
    }

    /// The whole frames inside the range (the start rounded up, the end
    /// down), or `None` if it holds no whole frame: how a RAM map's bytes
    /// become frames the hypervisor can use.
    pub const fn inner_frames(self) -> Option<MfnRange> {
        let first = self.start.div_ceil(PAGE_SIZE);
        let end = self.end() / PAGE_SIZE;
        if end > first {
            Some(MfnRange::new(Mfn(first), end - first))
        } else {
            None
        }
    }

    /// Every frame the range touches (the start rounded down, the end up).
    pub const fn covering_frames(self) -> MfnRange {
        let first = self.start >> PAGE_SHIFT;
        let end = self.end().div_ceil(PAGE_SIZE);
        MfnRange::new(Mfn(first), end - first)
    }
}

impl fmt::Display for PhysRange {
    /// `[0x1000, 0x3000)`: start and end in hex. An end that does not fit in
    /// a `u64` is printed exactly all the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = u128::from(self.start) + u128::from(self.size);
        write!(f, "[{:#x}, {:#x})", self.start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_and_bytes_convert_losslessly() {
        let frames = MfnRange::new(Mfn(0x100), 0x20);
        let bytes = PhysRange::from(frames);
        assert_eq!(bytes, PhysRange::new(0x10_0000, 0x2_0000));
        assert_eq!(bytes.frames(), Some(frames));
        assert_eq!(PhysRange::new(0x1001, 0x1000).frames(), None);
        assert_eq!(
            PhysRange::new(0x1001, 0x1000).covering_frames(),
            MfnRange::new(Mfn(1), 2)
        );
        assert_eq!(MfnRange::new(Mfn(u64::MAX >> 12), 2).checked_bytes(), None);
        assert_eq!(
            PhysRange::new(0x1001, 0x2fff).inner_frames(),
            Some(MfnRange::new(Mfn(2), 2))
        );
        assert_eq!(PhysRange::new(0x1001, 0x1ffe).inner_frames(), None);
    }

    #[test]
    fn display() {
        assert_eq!(MfnRange::new(Mfn(1), 2).to_string(), "mfns [0x1, 0x3)");
        assert_eq!(
            PhysRange::new(0x1000, 0x2000).to_string(),
            "[0x1000, 0x3000)"
        );
    }

    proptest! {
        #[test]
        fn round_trip(start in 0u64..(1 << 40), count in 0u64..(1 << 30)) {
            let r = MfnRange::new(Mfn(start), count);
            prop_assert_eq!(r.bytes().frames(), Some(r));
            prop_assert_eq!(r.bytes().covering_frames(), r);
            prop_assert_eq!(r.bytes().inner_frames(), (!r.is_empty()).then_some(r));
        }

        #[test]
        fn overlap_is_symmetric(a in 0u64..64, n in 0u64..64, b in 0u64..64, m in 0u64..64) {
            let (x, y) = (MfnRange::new(Mfn(a), n), MfnRange::new(Mfn(b), m));
            prop_assert_eq!(x.overlaps(y), y.overlaps(x));
            prop_assert_eq!(
                x.bytes().overlaps(y.bytes()),
                x.overlaps(y) && !x.is_empty() && !y.is_empty()
            );
        }
    }
}
