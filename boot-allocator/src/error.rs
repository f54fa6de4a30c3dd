//! [`BootAllocError`]: every way building or using the allocator can fail.

use crate::range::{PhysRange, PAGE_SIZE};

/// Every way building a [`BootAllocator`](crate::BootAllocator) or
/// allocating from it can fail. One variant per cause; the `Display` text
/// names the values involved so that a boot log line is enough to diagnose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootAllocError {
    /// The region's base or size is not a multiple of [`PAGE_SIZE`].
    RegionNotAligned {
        /// The region as given.
        region: PhysRange,
    },
    /// The region has no bytes.
    RegionEmpty {
        /// The region's base as given.
        base: u64,
    },
    /// The region's end (`base + size`) does not fit in a `u64`: the region
    /// runs off the top of the physical address space.
    RegionOverflow {
        /// The region as given.
        region: PhysRange,
    },
    /// A hole is not entirely inside the region (or its end does not fit in
    /// a `u64`). Holes describe what the region already holds; one outside
    /// it means the caller computed the region or the hole wrongly.
    HoleOutsideRegion {
        /// Position of the hole in the slice that was passed in.
        index: usize,
        /// The hole as given.
        hole: PhysRange,
        /// The region it should lie in.
        region: PhysRange,
    },
    /// After rounding holes out to page boundaries and merging those that
    /// touch or overlap, more distinct holes remain than the allocator can
    /// record (its `MAX_HOLES` parameter).
    TooManyHoles {
        /// Number of distinct holes after normalisation.
        distinct: usize,
        /// How many the allocator can record.
        capacity: usize,
    },
    /// [`HandOff::release_hole`](crate::HandOff::release_hole): the whole
    /// pages of the range do not lie inside one hole (or its end does not
    /// fit in a `u64`). Only what the region held before boot can be
    /// released; an allocation or a free gap cannot.
    NotInHole {
        /// The range as given.
        range: PhysRange,
    },
    /// The requested alignment is not a power of two at least [`PAGE_SIZE`].
    BadAlignment {
        /// The alignment asked for, in bytes.
        align: u64,
    },
    /// A request for zero pages.
    ZeroSize,
    /// No free gap of the region can hold the request at its alignment.
    Exhausted {
        /// Pages asked for.
        pages: u64,
        /// Alignment asked for, in bytes.
        align: u64,
        /// Size in bytes of the largest free gap left (0 if none).
        largest_free_gap: u64,
    },
    /// The allocation record is full (the allocator's `MAX_ALLOCS`
    /// parameter): the allocation would be lost from the hand-off report, so
    /// it is refused. Checked before the region is searched.
    RecordFull {
        /// How many allocations the record holds.
        capacity: usize,
    },
}

impl core::fmt::Display for BootAllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BootAllocError::RegionNotAligned { region } => write!(
                f,
                "live-update region {region} is not page aligned: base {:#x} and size {:#x} must be multiples of {PAGE_SIZE:#x}",
                region.start, region.size
            ),
            BootAllocError::RegionEmpty { base } => {
                write!(f, "live-update region at {base:#x} is empty (size 0)")
            }
            BootAllocError::RegionOverflow { region } => write!(
                f,
                "live-update region {region} runs past the end of the physical address space (base {:#x} + size {:#x} overflows 64 bits)",
                region.start, region.size
            ),
            BootAllocError::HoleOutsideRegion { index, hole, region } => write!(
                f,
                "reserved hole #{index} {hole} is not inside the live-update region {region}"
            ),
            BootAllocError::TooManyHoles { distinct, capacity } => write!(
                f,
                "{distinct} distinct reserved holes after merging, but the boot allocator records at most {capacity}"
            ),
            BootAllocError::NotInHole { range } => write!(
                f,
                "cannot release {range}: its pages do not lie inside one reserved hole"
            ),
            BootAllocError::BadAlignment { align } => write!(
                f,
                "alignment {align:#x} is not a power of two of at least {PAGE_SIZE:#x} bytes"
            ),
            BootAllocError::ZeroSize => write!(f, "allocation of zero pages"),
            BootAllocError::Exhausted {
                pages,
                align,
                largest_free_gap,
            } => write!(
                f,
                "live-update region exhausted: asked for {pages} pages ({} bytes) aligned to {align:#x}, but no free gap holds it; the largest free gap is {largest_free_gap} bytes ({} pages)",
                u128::from(pages) * u128::from(PAGE_SIZE),
                largest_free_gap / PAGE_SIZE
            ),
            BootAllocError::RecordFull { capacity } => write!(
                f,
                "boot allocation record is full: it holds at most {capacity} allocations"
            ),
        }
    }
}

impl core::error::Error for BootAllocError {}
