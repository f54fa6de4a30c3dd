//! [`BootAllocator`] and its retired form, the [`HandOff`] report.
//!
//! Internal invariants (checked by the property tests in `src/test/props.rs`):
//!
//! 1. `region` is non-empty, page aligned, and its end fits in a `u64`.
//! 2. `holes[..n_holes]` are non-empty, page aligned, inside `region`,
//!    sorted by address, and pairwise neither overlapping nor touching.
//! 3. `allocs[..n_allocs]` are non-empty, page aligned, inside `region`,
//!    sorted by address, and overlap neither each other nor any hole (they
//!    may touch).
//!
//! Everything else — free gaps, the largest gap, byte counts — is computed
//! from these two sorted lists on demand, so there is no third list to keep
//! consistent and no capacity to run out of.

use crate::error::BootAllocError;
use crate::range::{PhysRange, PAGE_SIZE};

/// Default for the `MAX_HOLES` parameter of [`BootAllocator`]: after a live
/// update the holes are the incoming image and the handover state (which may
/// be split in a few pieces); this leaves room to spare.
pub const DEFAULT_MAX_HOLES: usize = 8;

/// Default for the `MAX_ALLOCS` parameter of [`BootAllocator`]: a boot
/// makes four allocations (heap, page tables, frametable, M2P); the records
/// live on the boot stack, which an unoptimised build fills with copies of
/// them, so they are kept small.
pub const DEFAULT_MAX_ALLOCS: usize = 16;

/// One range handed out by [`BootAllocator::alloc_pages`] or
/// [`BootAllocator::alloc_pages_tagged`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// The physical range: page aligned, non-empty, inside the region,
    /// outside every hole.
    pub range: PhysRange,
    /// What the caller said it is for (`"frametable"`, `"early heap"`, ...),
    /// or `None` if it gave no tag.
    pub tag: Option<&'static str>,
}

/// One piece of the region in a [`HandOff::tiles`] walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// A reserved hole (normalised): what the region held before boot.
    Hole(PhysRange),
    /// A boot allocation.
    Allocated(Allocation),
    /// A maximal free gap.
    Free(PhysRange),
}

impl Tile {
    /// The physical range the tile covers.
    pub const fn range(&self) -> PhysRange {
        match *self {
            Tile::Hole(r) | Tile::Free(r) => r,
            Tile::Allocated(a) => a.range,
        }
    }
}

/// The early allocator: hands out page-aligned physical ranges from one
/// region, never from its reserved holes, first fit in address order.
///
/// `MAX_HOLES` bounds the number of distinct holes (after merging) and
/// `MAX_ALLOCS` the number of allocations; both are fixed-size arrays inside
/// the value, so it works before any heap exists. Write the type in a type
/// position (`let a: BootAllocator = ...`) to get the defaults
/// ([`DEFAULT_MAX_HOLES`], [`DEFAULT_MAX_ALLOCS`]).
///
/// There is no `free`: when the real page allocator exists, retire this one
/// with [`finish`](Self::finish) and hand the [`HandOff`] to the frametable.
///
/// Deliberately not `Clone`: two copies would hand out the same frames.
#[derive(Debug)]
pub struct BootAllocator<
    const MAX_HOLES: usize = DEFAULT_MAX_HOLES,
    const MAX_ALLOCS: usize = DEFAULT_MAX_ALLOCS,
> {
    state: HandOff<MAX_HOLES, MAX_ALLOCS>,
}

/// What the boot allocator leaves behind when it is retired: the region,
/// its holes, every allocation (with its tag) and, computed from those, the
/// free gaps — the staging area for the next live update.
///
/// The holes, the allocations and the free gaps are pairwise disjoint and
/// together tile the region exactly. Each list is sorted by address.
#[derive(Clone, Debug)]
pub struct HandOff<
    const MAX_HOLES: usize = DEFAULT_MAX_HOLES,
    const MAX_ALLOCS: usize = DEFAULT_MAX_ALLOCS,
> {
    region: PhysRange,
    holes: [PhysRange; MAX_HOLES],
    n_holes: usize,
    allocs: [Allocation; MAX_ALLOCS],
    n_allocs: usize,
}

/// Rounds `x` up to a multiple of `align` (a power of two), or `None` if the
/// result does not fit in a `u64`.
const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Whether `align` is an alignment the allocator accepts.
pub const fn is_valid_align(align: u64) -> bool {
    align.is_power_of_two() && align >= PAGE_SIZE
}

impl<const MAX_HOLES: usize, const MAX_ALLOCS: usize> BootAllocator<MAX_HOLES, MAX_ALLOCS> {
    /// An allocator over `region` minus `holes`.
    ///
    /// `region` must be page aligned, non-empty, and end at or below the
    /// top of the 64-bit address space (its end must fit in a `u64`).
    ///
    /// `holes` are byte ranges that already hold data (after a live update:
    /// the incoming image and the handover state; on a cold boot possibly
    /// none). They may come in any order, touch or overlap; each must lie
    /// inside the region. Each non-empty hole is rounded out to whole pages
    /// (which keeps it inside the page-aligned region), then holes that
    /// touch or overlap are merged. Zero-size holes reserve nothing (they
    /// are still checked to lie inside the region).
    ///
    /// Errors, checked in this order: [`RegionNotAligned`], [`RegionEmpty`],
    /// [`RegionOverflow`], [`HoleOutsideRegion`] (the first such hole in
    /// `holes`), [`TooManyHoles`].
    ///
    /// [`RegionNotAligned`]: BootAllocError::RegionNotAligned
    /// [`RegionEmpty`]: BootAllocError::RegionEmpty
    /// [`RegionOverflow`]: BootAllocError::RegionOverflow
    /// [`HoleOutsideRegion`]: BootAllocError::HoleOutsideRegion
    /// [`TooManyHoles`]: BootAllocError::TooManyHoles
    pub fn new(region: PhysRange, holes: &[PhysRange]) -> Result<Self, BootAllocError> {
        if !region.is_page_aligned() {
            return Err(BootAllocError::RegionNotAligned { region });
        }
        if region.is_empty() {
            return Err(BootAllocError::RegionEmpty { base: region.start });
        }
        if region.checked_end().is_none() {
            return Err(BootAllocError::RegionOverflow { region });
        }
        for (index, &hole) in holes.iter().enumerate() {
            if !region.contains_range(hole) {
                return Err(BootAllocError::HoleOutsideRegion {
                    index,
                    hole,
                    region,
                });
            }
        }

        let mut state = HandOff {
            region,
            holes: [PhysRange::default(); MAX_HOLES],
            n_holes: 0,
            allocs: [Allocation::default(); MAX_ALLOCS],
            n_allocs: 0,
        };
        let mut distinct = 0;
        for merged in NormalisedHoles::new(holes) {
            if let Some(slot) = state.holes.get_mut(distinct) {
                *slot = merged;
            }
            distinct += 1;
        }
        if distinct > MAX_HOLES {
            return Err(BootAllocError::TooManyHoles {
                distinct,
                capacity: MAX_HOLES,
            });
        }
        state.n_holes = distinct;
        Ok(BootAllocator { state })
    }

    /// Allocates `count` pages aligned to `align` bytes, without a tag.
    ///
    /// See [`alloc_pages_tagged`](Self::alloc_pages_tagged).
    pub fn alloc_pages(&mut self, count: u64, align: u64) -> Result<PhysRange, BootAllocError> {
        self.alloc(count, align, None)
    }

    /// Allocates `count` pages whose physical start is a multiple of `align`
    /// bytes, and records the range with `tag` in the hand-off report.
    ///
    /// The range is the lowest address at which the request fits in a free
    /// gap (first fit in address order): the same inputs always give the
    /// same addresses. It lies inside the region and outside every hole and
    /// every earlier allocation. The memory is not touched (nor zeroed).
    ///
    /// Errors, checked in this order: [`BadAlignment`] (`align` not a power
    /// of two ≥ [`PAGE_SIZE`]), [`ZeroSize`], [`RecordFull`], [`Exhausted`]
    /// (no free gap can hold the request at that alignment — which may
    /// happen even though the largest gap is big enough, when the alignment
    /// does not fit). On error nothing changes.
    ///
    /// [`BadAlignment`]: BootAllocError::BadAlignment
    /// [`ZeroSize`]: BootAllocError::ZeroSize
    /// [`RecordFull`]: BootAllocError::RecordFull
    /// [`Exhausted`]: BootAllocError::Exhausted
    pub fn alloc_pages_tagged(
        &mut self,
        count: u64,
        align: u64,
        tag: &'static str,
    ) -> Result<PhysRange, BootAllocError> {
        self.alloc(count, align, Some(tag))
    }

    fn alloc(
        &mut self,
        count: u64,
        align: u64,
        tag: Option<&'static str>,
    ) -> Result<PhysRange, BootAllocError> {
        if !is_valid_align(align) {
            return Err(BootAllocError::BadAlignment { align });
        }
        if count == 0 {
            return Err(BootAllocError::ZeroSize);
        }
        if self.state.n_allocs == MAX_ALLOCS {
            return Err(BootAllocError::RecordFull {
                capacity: MAX_ALLOCS,
            });
        }
        // A size that does not fit in a u64 cannot fit in the region either.
        let found = count.checked_mul(PAGE_SIZE).and_then(|size| {
            self.free_gaps().find_map(|gap| {
                let start = align_up(gap.start, align)?;
                let end = start.checked_add(size)?;
                (end <= gap.end()).then_some(PhysRange::new(start, size))
            })
        });
        let Some(range) = found else {
            return Err(BootAllocError::Exhausted {
                pages: count,
                align,
                largest_free_gap: self.largest_free_gap().map_or(0, |g| g.size),
            });
        };

        // Keep the record sorted by address (invariant 3).
        let s = &mut self.state;
        let at = s.allocs[..s.n_allocs].partition_point(|a| a.range.start < range.start);
        s.allocs.copy_within(at..s.n_allocs, at + 1);
        s.allocs[at] = Allocation { range, tag };
        s.n_allocs += 1;
        Ok(range)
    }

    /// Retires the allocator and returns the hand-off report. Consuming
    /// `self` makes any later boot allocation a compile error; a hypervisor
    /// that keeps the allocator in a global `Option` retires it with
    /// `option.take().map(BootAllocator::finish)`.
    ///
    /// ```compile_fail,E0382
    /// use boot_allocator::{BootAllocator, PhysRange, PAGE_SIZE};
    /// let mut a: BootAllocator = BootAllocator::new(PhysRange::new(0, 1 << 20), &[]).unwrap();
    /// let report = a.finish();
    /// a.alloc_pages(1, PAGE_SIZE); // error: the allocator has been retired
    /// ```
    pub fn finish(self) -> HandOff<MAX_HOLES, MAX_ALLOCS> {
        self.state
    }

    /// The region the allocator serves.
    pub fn region(&self) -> PhysRange {
        self.state.region()
    }

    /// The normalised holes: page aligned, sorted, disjoint, not touching.
    pub fn holes(&self) -> &[PhysRange] {
        self.state.holes()
    }

    /// Every allocation so far, sorted by address.
    pub fn allocations(&self) -> &[Allocation] {
        self.state.allocations()
    }

    /// Total bytes allocated so far.
    pub fn used_bytes(&self) -> u64 {
        self.state.used_bytes()
    }

    /// The free gaps, in address order: the region minus holes minus
    /// allocations, each gap maximal.
    pub fn free_gaps(&self) -> FreeGaps<'_> {
        self.state.free_gaps()
    }

    /// Total free bytes (the sum of the free gaps).
    pub fn free_bytes(&self) -> u64 {
        self.state.free_bytes()
    }

    /// The largest free gap (the lowest one if several are equally large),
    /// or `None` if nothing is free. Its size is the live-update capacity:
    /// the next image and handover state must fit in it.
    pub fn largest_free_gap(&self) -> Option<PhysRange> {
        self.state.largest_free_gap()
    }
}

impl<const MAX_HOLES: usize, const MAX_ALLOCS: usize> HandOff<MAX_HOLES, MAX_ALLOCS> {
    /// The region the allocator served.
    pub fn region(&self) -> PhysRange {
        self.region
    }

    /// The normalised holes: page aligned, sorted, disjoint, not touching.
    /// They still hold the incoming image and handover state.
    pub fn holes(&self) -> &[PhysRange] {
        &self.holes[..self.n_holes]
    }

    /// Every allocation, sorted by address, with its tag. These frames are
    /// the hypervisor's: mark them hv-owned in the frametable.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocs[..self.n_allocs]
    }

    /// Total bytes allocated.
    pub fn used_bytes(&self) -> u64 {
        // Disjoint ranges inside the region: the sum cannot overflow.
        self.allocations().iter().map(|a| a.range.size).sum()
    }

    /// The free gaps, in address order: the region minus holes minus
    /// allocations, each gap maximal. Together they are the staging area
    /// for the next live update.
    pub fn free_gaps(&self) -> FreeGaps<'_> {
        FreeGaps {
            cursor: self.region.start,
            end: self.region.end(),
            holes: self.holes(),
            allocs: self.allocations(),
        }
    }

    /// Total free bytes (the sum of the free gaps).
    pub fn free_bytes(&self) -> u64 {
        self.free_gaps().map(|g| g.size).sum()
    }

    /// The largest free gap (the lowest one if several are equally large),
    /// or `None` if nothing is free. Its size is the live-update capacity
    /// the hypervisor reports.
    pub fn largest_free_gap(&self) -> Option<PhysRange> {
        self.free_gaps()
            .fold(None, |best: Option<PhysRange>, g| match best {
                Some(b) if b.size >= g.size => Some(b),
                _ => Some(g),
            })
    }

    /// Returns the whole pages of `range` to the free gaps: the caller no
    /// longer needs that part of a hole (after a live update, the handover
    /// state, the argument page and the entry tables once the new image has
    /// consumed them; the image itself stays a hole). `range` is shrunk to
    /// the whole pages it covers; if none, nothing changes.
    ///
    /// Those pages must lie inside one hole ([`NotInHole`] otherwise).
    /// Releasing the middle of a hole splits it in two, which needs a free
    /// hole record ([`TooManyHoles`] otherwise). On error nothing changes.
    /// The allocator never handed these pages out, so the report's tiling
    /// (holes, allocations, free gaps) stays exact.
    ///
    /// [`NotInHole`]: BootAllocError::NotInHole
    /// [`TooManyHoles`]: BootAllocError::TooManyHoles
    pub fn release_hole(&mut self, range: PhysRange) -> Result<(), BootAllocError> {
        let start = align_up(range.start, PAGE_SIZE);
        let end = range.checked_end().map(|e| e & !(PAGE_SIZE - 1));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(BootAllocError::NotInHole { range });
        };
        if start >= end {
            return Ok(());
        }
        let Some(at) = self
            .holes()
            .iter()
            .position(|h| h.start <= start && end <= h.end())
        else {
            return Err(BootAllocError::NotInHole { range });
        };
        let hole = self.holes[at];
        let below = PhysRange::from_bounds(hole.start, start);
        let above = PhysRange::from_bounds(end, hole.end());
        match (below.is_empty(), above.is_empty()) {
            (true, true) => {
                self.holes.copy_within(at + 1..self.n_holes, at);
                self.n_holes -= 1;
            }
            (false, true) => self.holes[at] = below,
            (true, false) => self.holes[at] = above,
            (false, false) => {
                if self.n_holes == MAX_HOLES {
                    return Err(BootAllocError::TooManyHoles {
                        distinct: MAX_HOLES + 1,
                        capacity: MAX_HOLES,
                    });
                }
                self.holes.copy_within(at + 1..self.n_holes, at + 2);
                self.holes[at] = below;
                self.holes[at + 1] = above;
                self.n_holes += 1;
            }
        }
        Ok(())
    }

    /// Every hole, allocation and free gap, in address order. The tiles
    /// cover the region exactly, without overlap.
    pub fn tiles(&self) -> Tiles<'_> {
        Tiles {
            holes: self.holes(),
            allocs: self.allocations(),
            gaps: self.free_gaps(),
            next_gap: None,
        }
    }
}

impl<const MAX_HOLES: usize, const MAX_ALLOCS: usize> core::fmt::Display
    for HandOff<MAX_HOLES, MAX_ALLOCS>
{
    /// A multi-line report for the boot log: one line per tile, then the
    /// totals.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "live-update region {} ({} bytes)",
            self.region, self.region.size
        )?;
        for tile in self.tiles() {
            match tile {
                Tile::Hole(r) => writeln!(f, "  hole  {r}")?,
                Tile::Allocated(a) => {
                    writeln!(f, "  alloc {} {}", a.range, a.tag.unwrap_or("(untagged)"))?
                }
                Tile::Free(r) => writeln!(f, "  free  {r}")?,
            }
        }
        write!(
            f,
            "used {} bytes, free {} bytes, live-update capacity {} bytes",
            self.used_bytes(),
            self.free_bytes(),
            self.largest_free_gap().map_or(0, |g| g.size)
        )
    }
}

/// Iterator over the free gaps of a region, in address order; from
/// [`BootAllocator::free_gaps`] or [`HandOff::free_gaps`].
#[derive(Clone, Debug)]
pub struct FreeGaps<'a> {
    /// Everything below `cursor` has been accounted for.
    cursor: u64,
    end: u64,
    holes: &'a [PhysRange],
    allocs: &'a [Allocation],
}

impl Iterator for FreeGaps<'_> {
    type Item = PhysRange;

    fn next(&mut self) -> Option<PhysRange> {
        loop {
            // The next used range in address order (holes and allocations
            // are each sorted, and disjoint from one another).
            let used = match (self.holes.split_first(), self.allocs.split_first()) {
                (Some((h, hs)), Some((a, _))) if h.start <= a.range.start => {
                    self.holes = hs;
                    *h
                }
                (_, Some((a, rest))) => {
                    self.allocs = rest;
                    a.range
                }
                (Some((h, hs)), None) => {
                    self.holes = hs;
                    *h
                }
                (None, None) => {
                    if self.cursor < self.end {
                        let gap = PhysRange::from_bounds(self.cursor, self.end);
                        self.cursor = self.end;
                        return Some(gap);
                    }
                    return None;
                }
            };
            if used.start > self.cursor {
                let gap = PhysRange::from_bounds(self.cursor, used.start);
                self.cursor = used.end();
                return Some(gap);
            }
            self.cursor = self.cursor.max(used.end());
        }
    }
}

/// Iterator over every [`Tile`] of a region in address order; from
/// [`HandOff::tiles`].
#[derive(Clone, Debug)]
pub struct Tiles<'a> {
    holes: &'a [PhysRange],
    allocs: &'a [Allocation],
    gaps: FreeGaps<'a>,
    next_gap: Option<PhysRange>,
}

impl Iterator for Tiles<'_> {
    type Item = Tile;

    fn next(&mut self) -> Option<Tile> {
        if self.next_gap.is_none() {
            self.next_gap = self.gaps.next();
        }
        // The three lists are disjoint and non-empty, so starts are distinct.
        let candidates = [
            self.holes.first().map(|h| h.start),
            self.allocs.first().map(|a| a.range.start),
            self.next_gap.map(|g| g.start),
        ];
        let (which, _) = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .min_by_key(|&(_, s)| s)?;
        Some(match which {
            0 => {
                let h = self.holes[0];
                self.holes = &self.holes[1..];
                Tile::Hole(h)
            }
            1 => {
                let a = self.allocs[0];
                self.allocs = &self.allocs[1..];
                Tile::Allocated(a)
            }
            _ => Tile::Free(self.next_gap.take()?),
        })
    }
}

/// The union of the given holes, as maximal page-aligned ranges in address
/// order. Needs no storage: each step scans the input again (the input is a
/// handful of ranges), which also makes the result independent of the input
/// order.
struct NormalisedHoles<'a> {
    holes: &'a [PhysRange],
    /// End of the last range yielded.
    after: Option<u64>,
}

impl<'a> NormalisedHoles<'a> {
    /// The caller has checked that every hole lies inside a page-aligned
    /// region whose end fits in a `u64`, so rounding out cannot overflow.
    fn new(holes: &'a [PhysRange]) -> Self {
        NormalisedHoles { holes, after: None }
    }

    /// The non-empty holes, rounded out to page boundaries.
    fn rounded(&self) -> impl Iterator<Item = PhysRange> + 'a {
        self.holes.iter().filter(|h| !h.is_empty()).map(|h| {
            let start = h.start & !(PAGE_SIZE - 1);
            // Cannot fail (see `new`); saturate to the last page boundary anyway.
            let end = align_up(h.end(), PAGE_SIZE).unwrap_or(!(PAGE_SIZE - 1));
            PhysRange::from_bounds(start, end)
        })
    }
}

impl Iterator for NormalisedHoles<'_> {
    type Item = PhysRange;

    fn next(&mut self) -> Option<PhysRange> {
        let after = self.after;
        // Every hole starting at or before `after` ends at or before it
        // (else it would have been merged into the previous range), so the
        // next range starts at the lowest start above `after`.
        let start = self
            .rounded()
            .map(|r| r.start)
            .filter(|&s| after.is_none_or(|a| s > a))
            .min()?;
        let mut end = start;
        loop {
            let grown = self
                .rounded()
                .filter(|r| r.start <= end && r.end() > end)
                .map(|r| r.end())
                .max();
            match grown {
                Some(e) => end = e,
                None => break,
            }
        }
        self.after = Some(end);
        Some(PhysRange::from_bounds(start, end))
    }
}
