//! [`PhysRange`]: a half-open range of physical addresses.

/// Size of a physical frame in bytes. The allocator hands out whole frames.
///
/// Equal to `handover_abi::PAGE_SIZE`; this crate does not depend on
/// `handover-abi` (which needs `alloc`), so the value is repeated here.
pub const PAGE_SIZE: u64 = 4096;

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A half-open range of physical addresses `[start, start + size)`.
///
/// A plain value: the fields are public and nothing is checked when one is
/// built. The allocator checks the ranges it is given (region and holes) and
/// every range it returns is page aligned, non-empty unless stated otherwise,
/// and has an end that fits in a `u64`.
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
}

impl core::fmt::Display for PhysRange {
    /// `[0x1000, 0x3000)`: start and end in hex. An end that does not fit in
    /// a `u64` is printed exactly all the same.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let end = u128::from(self.start) + u128::from(self.size);
        write!(f, "[{:#x}, {:#x})", self.start, end)
    }
}
