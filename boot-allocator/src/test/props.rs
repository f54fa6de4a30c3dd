//! Property tests over random regions, hole sets and allocation sequences,
//! checked against a page-bitmap model and against the reported gaps.

use super::PAGE;
use crate::{BootAllocError, BootAllocator, HandOff, PhysRange, Tile};
use proptest::prelude::*;

const MAX_HOLES: usize = 8;
const MAX_ALLOCS: usize = 16;
/// The highest page number whose page ends at or below `u64::MAX`.
const TOP_PAGE: u64 = (u64::MAX >> 12) - 1;
const TAGS: [&str; 4] = ["frametable", "early heap", "page tables", "stacks"];

/// A region of 1..=256 pages, low in memory or touching the top of the
/// address space.
fn region() -> impl Strategy<Value = PhysRange> {
    (1u64..=256).prop_flat_map(|n| {
        let base = prop_oneof![
            3 => 0u64..(1 << 20),
            1 => (TOP_PAGE + 1 - n - 16)..=(TOP_PAGE + 1 - n),
        ];
        base.prop_map(move |b| PhysRange::new(b * PAGE, n * PAGE))
    })
}

/// Byte-granular holes inside `region` (possibly empty, unaligned, touching,
/// overlapping).
fn holes_in(region: PhysRange) -> impl Strategy<Value = Vec<PhysRange>> {
    let hole = (0..=region.size, 0..=region.size, 0u8..4).prop_map(move |(a, b, kind)| {
        let (lo, hi) = (a.min(b), a.max(b));
        let r = match kind {
            // Mostly page aligned: round the offsets down.
            0 | 1 => PhysRange::from_bounds(lo & !(PAGE - 1), hi & !(PAGE - 1)),
            // Small: at most two pages.
            2 => PhysRange::from_bounds(lo, hi.min(lo + 2 * PAGE)),
            _ => PhysRange::from_bounds(lo, hi),
        };
        PhysRange::new(region.start + r.start, r.size)
    });
    proptest::collection::vec(hole, 0..6)
}

/// One allocation request: (pages, alignment, tag).
fn request() -> impl Strategy<Value = (u64, u64, Option<&'static str>)> {
    let count = prop_oneof![6 => 1u64..=4, 2 => 1u64..=40, 1 => 1u64..=300];
    let shift = prop_oneof![6 => 12u32..=16, 2 => 12u32..=24, 1 => Just(40u32), 1 => Just(63u32)];
    let tag = prop_oneof![Just(None), (0..TAGS.len()).prop_map(|i| Some(TAGS[i]))];
    (count, shift, tag).prop_map(|(c, s, t)| (c, 1u64 << s, t))
}

/// A page bitmap of the region: the reference model.
struct Model {
    region: PhysRange,
    used: Vec<bool>,
}

impl Model {
    fn new(region: PhysRange, holes: &[PhysRange]) -> Self {
        let mut m = Model {
            region,
            used: vec![false; region.frame_count() as usize],
        };
        for h in holes.iter().filter(|h| !h.is_empty()) {
            let first = h.start / PAGE;
            let last = (h.end() - 1) / PAGE;
            for p in first..=last {
                m.used[(p - region.first_frame()) as usize] = true;
            }
        }
        m
    }

    fn is_free(&self, start: u64, pages: u64) -> bool {
        let first = (start - self.region.start) / PAGE;
        (first..first + pages).all(|i| !self.used[i as usize])
    }

    /// The lowest aligned address at which `pages` free pages start.
    fn first_fit(&self, pages: u64, align: u64) -> Option<u64> {
        let size = pages.checked_mul(PAGE)?;
        let mut a = self.region.start.checked_next_multiple_of(align)?;
        while a.checked_add(size)? <= self.region.end() {
            if self.is_free(a, pages) {
                return Some(a);
            }
            a = a.checked_add(align)?;
        }
        None
    }

    fn mark(&mut self, r: PhysRange) {
        let first = (r.start - self.region.start) / PAGE;
        for i in first..first + r.frame_count() {
            assert!(!self.used[i as usize], "page allocated twice");
            self.used[i as usize] = true;
        }
    }
}

/// Whether some gap of `gaps` can hold `pages` pages at `align` (brute force
/// over every aligned start in every gap).
fn some_gap_fits(gaps: &[PhysRange], pages: u64, align: u64) -> bool {
    let Some(size) = pages.checked_mul(PAGE) else {
        return false;
    };
    gaps.iter().any(|g| {
        let mut a = g.start;
        while a < g.end() {
            if a % align == 0 && a.checked_add(size).is_some_and(|e| e <= g.end()) {
                return true;
            }
            a += PAGE;
        }
        false
    })
}

/// Checks every property of a finished report against the inputs and the
/// allocations that were returned.
fn check_report(
    report: &HandOff<MAX_HOLES, MAX_ALLOCS>,
    input_holes: &[PhysRange],
    returned: &[(PhysRange, Option<&'static str>)],
) -> Result<(), TestCaseError> {
    let region = report.region();
    let holes = report.holes();
    let allocs = report.allocations();
    let gaps: Vec<_> = report.free_gaps().collect();

    // The normalised holes are page aligned, sorted, not touching, and cover
    // exactly the pages the input holes touch.
    for w in holes.windows(2) {
        prop_assert!(
            w[0].end() < w[1].start,
            "holes touch or are unsorted: {holes:?}"
        );
    }
    let model = Model::new(region, input_holes);
    for (i, &used) in model.used.iter().enumerate() {
        let addr = region.start + i as u64 * PAGE;
        prop_assert_eq!(
            used,
            holes.iter().any(|h| h.contains(addr)),
            "page {:#x}",
            addr
        );
    }

    // The report lists exactly what was returned, in address order.
    let mut expected: Vec<_> = returned.to_vec();
    expected.sort_by_key(|(r, _)| r.start);
    let got: Vec<_> = allocs.iter().map(|a| (a.range, a.tag)).collect();
    prop_assert_eq!(got, expected);

    // Holes, allocations and gaps tile the region exactly.
    let mut all: Vec<PhysRange> = holes.to_vec();
    all.extend(allocs.iter().map(|a| a.range));
    all.extend(gaps.iter().copied());
    all.sort_by_key(|r| r.start);
    let mut cursor = region.start;
    for r in &all {
        prop_assert!(!r.is_empty());
        prop_assert!(r.is_page_aligned());
        prop_assert_eq!(r.start, cursor, "tiles not contiguous: {:?}", all);
        cursor = r.end();
    }
    prop_assert_eq!(cursor, region.end());

    // Gaps are maximal: no two are adjacent.
    for w in gaps.windows(2) {
        prop_assert!(w[0].end() < w[1].start);
    }

    // tiles() is that same tiling, in order and by kind.
    let tiles: Vec<_> = report.tiles().collect();
    prop_assert_eq!(tiles.len(), all.len());
    for (t, r) in tiles.iter().zip(&all) {
        prop_assert_eq!(t.range(), *r);
        let ok = match t {
            Tile::Hole(h) => holes.contains(h),
            Tile::Allocated(a) => allocs.contains(a),
            Tile::Free(g) => gaps.contains(g),
        };
        prop_assert!(ok);
    }

    // Totals and the live-update capacity.
    let free: u64 = gaps.iter().map(|g| g.size).sum();
    let used: u64 = allocs.iter().map(|a| a.range.size).sum();
    let holed: u64 = holes.iter().map(|h| h.size).sum();
    prop_assert_eq!(report.free_bytes(), free);
    prop_assert_eq!(report.used_bytes(), used);
    prop_assert_eq!(free + used + holed, region.size);
    let max = gaps.iter().map(|g| g.size).max();
    prop_assert_eq!(report.largest_free_gap().map(|g| g.size), max);
    if let Some(l) = report.largest_free_gap() {
        prop_assert!(gaps.contains(&l));
        let first_of_max = gaps.iter().find(|g| Some(g.size) == max).copied();
        prop_assert_eq!(Some(l), first_of_max, "ties go to the lowest gap");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Random region, holes and allocation sequence: every allocation is the
    /// model's first fit, aligned, inside the region, outside holes and
    /// disjoint; every error is the one the model predicts; the report tiles
    /// the region.
    #[test]
    fn allocations_follow_the_model(
        (region, holes) in region().prop_flat_map(|r| (Just(r), holes_in(r))),
        requests in proptest::collection::vec(request(), 0..40),
    ) {
        let mut a = BootAllocator::<MAX_HOLES, MAX_ALLOCS>::new(region, &holes).unwrap();
        let mut model = Model::new(region, &holes);
        let mut returned: Vec<(PhysRange, Option<&'static str>)> = Vec::new();

        for (pages, align, tag) in requests {
            let gaps_before: Vec<_> = a.free_gaps().collect();
            let result = match tag {
                Some(t) => a.alloc_pages_tagged(pages, align, t),
                None => a.alloc_pages(pages, align),
            };
            if returned.len() == MAX_ALLOCS {
                prop_assert_eq!(result, Err(BootAllocError::RecordFull { capacity: MAX_ALLOCS }));
                continue;
            }
            match result {
                Ok(r) => {
                    prop_assert_eq!(Some(r.start), model.first_fit(pages, align));
                    prop_assert_eq!(r.size, pages * PAGE);
                    prop_assert_eq!(r.start % align, 0, "alignment lost");
                    prop_assert!(region.contains_range(r), "outside the region");
                    for h in &holes {
                        prop_assert!(!r.overlaps(*h), "{:?} touches hole {:?}", r, h);
                    }
                    for (o, _) in &returned {
                        prop_assert!(!r.overlaps(*o), "{:?} overlaps {:?}", r, o);
                    }
                    prop_assert!(gaps_before.iter().any(|g| g.contains_range(r)));
                    model.mark(r);
                    returned.push((r, tag));
                }
                Err(BootAllocError::Exhausted { pages: p, align: al, largest_free_gap }) => {
                    prop_assert_eq!((p, al), (pages, align));
                    prop_assert_eq!(model.first_fit(pages, align), None);
                    prop_assert!(
                        !some_gap_fits(&gaps_before, pages, align),
                        "exhausted, but a reported gap fits {} pages at {:#x}: {:?}",
                        pages, align, gaps_before
                    );
                    let max = gaps_before.iter().map(|g| g.size).max().unwrap_or(0);
                    prop_assert_eq!(largest_free_gap, max);
                    prop_assert_eq!(a.free_gaps().collect::<Vec<_>>(), gaps_before);
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            prop_assert_eq!(
                a.largest_free_gap().map(|g| g.size),
                a.free_gaps().map(|g| g.size).max()
            );
        }
        check_report(&a.finish(), &holes, &returned)?;
    }

    /// Holes anywhere: `new` fails with the first hole not inside the
    /// region, and succeeds otherwise.
    #[test]
    fn holes_outside_the_region_are_refused(
        region in region(),
        holes in proptest::collection::vec(
            (any::<u64>(), prop_oneof![Just(0u64), 1u64..=(1 << 24), any::<u64>()]), 0..5),
        near in proptest::collection::vec((-4i64..300, 0u64..(300 * PAGE)), 0..5),
    ) {
        let mut all: Vec<PhysRange> = holes.iter().map(|&(s, n)| PhysRange::new(s, n)).collect();
        // Also holes close to the region, so both outcomes are common.
        all.extend(near.iter().map(|&(off, n)| {
            let s = region.start.wrapping_add_signed(off * PAGE as i64 + off % 3);
            PhysRange::new(s, n)
        }));
        let first_bad = all.iter().position(|h| {
            !(h.start >= region.start && h.checked_end().is_some_and(|e| e <= region.end()))
        });
        let result = BootAllocator::<16, 4>::new(region, &all);
        match first_bad {
            Some(index) => prop_assert_eq!(
                result.unwrap_err(),
                BootAllocError::HoleOutsideRegion { index, hole: all[index], region }
            ),
            None => prop_assert!(result.is_ok()),
        }
    }

    /// The order in which holes are given does not change anything.
    #[test]
    fn hole_order_does_not_matter(
        (region, holes, shuffled) in region().prop_flat_map(|r| (Just(r), holes_in(r)))
            .prop_flat_map(|(r, h)| (Just(r), Just(h.clone()), Just(h).prop_shuffle())),
        requests in proptest::collection::vec(request(), 0..20),
    ) {
        let mut a = BootAllocator::<MAX_HOLES, MAX_ALLOCS>::new(region, &holes).unwrap();
        let mut b = BootAllocator::<MAX_HOLES, MAX_ALLOCS>::new(region, &shuffled).unwrap();
        prop_assert_eq!(a.holes(), b.holes());
        for (pages, align, _) in requests {
            prop_assert_eq!(a.alloc_pages(pages, align), b.alloc_pages(pages, align));
        }
        prop_assert_eq!(a.allocations(), b.allocations());
    }

    /// Releasing part of a hole frees exactly its whole pages: they join the
    /// free gaps, every other page keeps its kind, and the holes,
    /// allocations and gaps still tile the region.
    #[test]
    fn releasing_part_of_a_hole_frees_exactly_its_pages(
        (region, holes) in region().prop_flat_map(|r| (Just(r), holes_in(r))),
        requests in proptest::collection::vec(request(), 0..8),
        pick in any::<prop::sample::Index>(),
        (a, b) in (0u64..=256 * PAGE, 0u64..=256 * PAGE),
    ) {
        let mut alloc = BootAllocator::<MAX_HOLES, MAX_ALLOCS>::new(region, &holes).unwrap();
        for (pages, align, _) in requests {
            let _ = alloc.alloc_pages(pages, align);
        }
        let before = alloc.finish();
        prop_assume!(!before.holes().is_empty());
        let hole = before.holes()[pick.index(before.holes().len())];
        let (lo, hi) = (a.min(b) % (hole.size + 1), a.max(b) % (hole.size + 1));
        let range = PhysRange::from_bounds(hole.start + lo.min(hi), hole.start + lo.max(hi));
        let mut after = before.clone();
        match after.release_hole(range) {
            Ok(()) => {}
            Err(BootAllocError::TooManyHoles { .. }) => {
                prop_assert_eq!(before.holes().len(), MAX_HOLES);
                prop_assert_eq!(after.holes(), before.holes());
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
        let kind = |r: &HandOff<MAX_HOLES, MAX_ALLOCS>, addr: u64| {
            r.tiles()
                .find(|t| t.range().contains(addr))
                .map(|t| match t {
                    Tile::Hole(_) => 0,
                    Tile::Allocated(_) => 1,
                    Tile::Free(_) => 2,
                })
        };
        let mut addr = region.start;
        while addr < region.end() {
            let released = range.start <= addr && addr + PAGE <= range.end();
            let want = if released { Some(2) } else { kind(&before, addr) };
            prop_assert_eq!(kind(&after, addr), want, "page {:#x}", addr);
            addr += PAGE;
        }
        let tiled: u64 = after.tiles().map(|t| t.range().size).sum();
        prop_assert_eq!(tiled, region.size);
        prop_assert_eq!(after.allocations(), before.allocations());
    }
}
