//! Edge cases: holes at the ends of the region or covering it, alignments
//! larger than the region, adjacent and overlapping holes, the top of the
//! address space, first fit into alignment padding, the hand-off report.

use super::{alloc, gaps, pages, MIB, PAGE};
use crate::{Allocation, BootAllocError, BootAllocator, PhysRange, Tile};

#[test]
fn no_holes_cold_boot() {
    let mut a = alloc(pages(256, 16), &[]);
    assert!(a.holes().is_empty());
    assert_eq!(gaps(&a), vec![pages(256, 16)]);
    assert_eq!(a.largest_free_gap(), Some(pages(256, 16)));
    assert_eq!(a.free_bytes(), 16 * PAGE);
    assert_eq!(a.alloc_pages(16, PAGE), Ok(pages(256, 16)));
    assert_eq!(a.free_bytes(), 0);
    assert_eq!(a.largest_free_gap(), None);
}

#[test]
fn hole_at_very_start() {
    let mut a = alloc(pages(100, 10), &[pages(100, 3)]);
    assert_eq!(gaps(&a), vec![pages(103, 7)]);
    assert_eq!(a.alloc_pages(1, PAGE), Ok(pages(103, 1)));
    assert_eq!(a.alloc_pages(6, PAGE), Ok(pages(104, 6)));
    assert!(matches!(
        a.alloc_pages(1, PAGE),
        Err(BootAllocError::Exhausted { .. })
    ));
}

#[test]
fn hole_at_very_end() {
    let mut a = alloc(pages(100, 10), &[pages(107, 3)]);
    assert_eq!(gaps(&a), vec![pages(100, 7)]);
    assert_eq!(a.alloc_pages(7, PAGE), Ok(pages(100, 7)));
    assert!(gaps(&a).is_empty());
    assert!(matches!(
        a.alloc_pages(1, PAGE),
        Err(BootAllocError::Exhausted { .. })
    ));
}

#[test]
fn holes_at_both_ends() {
    let a = alloc(pages(100, 10), &[pages(109, 1), pages(100, 1)]);
    assert_eq!(a.holes(), &[pages(100, 1), pages(109, 1)]);
    assert_eq!(gaps(&a), vec![pages(101, 8)]);
}

#[test]
fn hole_covering_whole_region() {
    let region = pages(100, 10);
    // Given exactly, and as a byte range that rounds out to the region.
    for hole in [region, PhysRange::new(100 * PAGE + 1, 10 * PAGE - 2)] {
        let mut a = alloc(region, &[hole]);
        assert_eq!(a.holes(), &[region]);
        assert!(gaps(&a).is_empty());
        assert_eq!(a.free_bytes(), 0);
        assert_eq!(a.largest_free_gap(), None);
        assert_eq!(
            a.alloc_pages(1, PAGE),
            Err(BootAllocError::Exhausted {
                pages: 1,
                align: PAGE,
                largest_free_gap: 0
            })
        );
        let report = a.finish();
        assert_eq!(report.tiles().collect::<Vec<_>>(), vec![Tile::Hole(region)]);
    }
}

#[test]
fn alignment_larger_than_region() {
    // No multiple of the alignment inside the region.
    let mut a = alloc(pages(1, 2), &[]);
    assert_eq!(
        a.alloc_pages(1, 4 * PAGE),
        Err(BootAllocError::Exhausted {
            pages: 1,
            align: 4 * PAGE,
            largest_free_gap: 2 * PAGE
        })
    );
    assert!(matches!(
        a.alloc_pages(1, 1 << 40),
        Err(BootAllocError::Exhausted { .. })
    ));
    // Alignment is of the physical address, not of the offset in the region:
    // a small region at an aligned address satisfies a huge alignment.
    let mut a = alloc(PhysRange::new(1 << 40, 2 * PAGE), &[]);
    assert_eq!(a.alloc_pages(1, 1 << 40), Ok(PhysRange::new(1 << 40, PAGE)));
    assert!(matches!(
        a.alloc_pages(1, 1 << 40),
        Err(BootAllocError::Exhausted { .. })
    ));
    assert_eq!(
        a.alloc_pages(1, PAGE),
        Ok(PhysRange::new((1 << 40) + PAGE, PAGE))
    );
}

#[test]
fn largest_alignment_at_top_of_address_space() {
    // The last page below 2^64; aligning it up to 2^63 overflows.
    let top = PhysRange::new(u64::MAX - 0x1fff, PAGE);
    let mut a = alloc(top, &[]);
    assert!(matches!(
        a.alloc_pages(1, 1 << 63),
        Err(BootAllocError::Exhausted { .. })
    ));
    assert_eq!(a.alloc_pages(1, PAGE), Ok(top));
    // A region starting at 2^63 serves the largest alignment.
    let mut a = alloc(PhysRange::new(1 << 63, 4 * PAGE), &[]);
    assert_eq!(
        a.alloc_pages(2, 1 << 63),
        Ok(PhysRange::new(1 << 63, 2 * PAGE))
    );
}

#[test]
fn adjacent_holes_merge() {
    let a = alloc(pages(0, 32), &[pages(4, 2), pages(6, 2), pages(8, 1)]);
    assert_eq!(a.holes(), &[pages(4, 5)]);
    assert_eq!(gaps(&a), vec![pages(0, 4), pages(9, 23)]);
}

#[test]
fn holes_one_page_apart_stay_apart() {
    let mut a = alloc(pages(0, 32), &[pages(4, 2), pages(7, 2)]);
    assert_eq!(a.holes(), &[pages(4, 2), pages(7, 2)]);
    // The one-page gap between them is used by first fit once pages 0..4 are taken.
    assert_eq!(a.alloc_pages(4, PAGE), Ok(pages(0, 4)));
    assert_eq!(a.alloc_pages(1, PAGE), Ok(pages(6, 1)));
    assert_eq!(a.alloc_pages(1, PAGE), Ok(pages(9, 1)));
}

#[test]
fn overlapping_contained_duplicate_and_unsorted_holes() {
    let a = alloc(
        pages(0, 64),
        &[
            pages(40, 4),
            pages(10, 10),
            pages(12, 2), // inside the previous one
            pages(18, 5), // overlaps its end
            pages(40, 4), // duplicate
            pages(30, 1),
        ],
    );
    assert_eq!(a.holes(), &[pages(10, 13), pages(30, 1), pages(40, 4)]);
}

#[test]
fn unaligned_holes_round_out_to_pages() {
    // 0x1800..0x2001 touches pages 1 and 2; 0x5fff..0x6000 touches page 5.
    let a = alloc(
        pages(0, 16),
        &[PhysRange::new(0x1800, 0x801), PhysRange::new(0x5fff, 1)],
    );
    assert_eq!(a.holes(), &[pages(1, 2), pages(5, 1)]);
    // Two byte ranges in the same page, not touching as bytes, are one hole.
    let a = alloc(
        pages(0, 16),
        &[PhysRange::new(0x3000, 0x10), PhysRange::new(0x3f00, 0x10)],
    );
    assert_eq!(a.holes(), &[pages(3, 1)]);
}

#[test]
fn empty_holes_reserve_nothing() {
    let a = alloc(
        pages(4, 4),
        &[
            PhysRange::new(0x4800, 0),
            PhysRange::new(4 * PAGE, 0),
            PhysRange::new(8 * PAGE, 0), // at the region's end: inside
        ],
    );
    assert!(a.holes().is_empty());
    assert_eq!(a.free_bytes(), 4 * PAGE);
}

#[test]
fn first_fit_reuses_alignment_padding() {
    let mut a = alloc(pages(0, 64), &[]);
    assert_eq!(a.alloc_pages(1, PAGE), Ok(pages(0, 1)));
    // Aligned to 16 pages: skips pages 1..16, which stay free.
    assert_eq!(a.alloc_pages(2, 16 * PAGE), Ok(pages(16, 2)));
    assert_eq!(gaps(&a), vec![pages(1, 15), pages(18, 46)]);
    assert_eq!(a.largest_free_gap(), Some(pages(18, 46)));
    // The padding is the first fit for small requests.
    assert_eq!(a.alloc_pages(15, PAGE), Ok(pages(1, 15)));
    assert_eq!(a.alloc_pages(1, PAGE), Ok(pages(18, 1)));
    // The record is in address order, not allocation order.
    let starts: Vec<_> = a
        .allocations()
        .iter()
        .map(|x| x.range.start / PAGE)
        .collect();
    assert_eq!(starts, vec![0, 1, 16, 18]);
}

#[test]
fn largest_free_gap_prefers_lowest_on_ties() {
    let a = alloc(pages(0, 12), &[pages(4, 4)]);
    assert_eq!(a.largest_free_gap(), Some(pages(0, 4)));
}

#[test]
fn same_inputs_same_addresses() {
    let region = PhysRange::new(64 * MIB, 32 * MIB);
    let holes = [
        PhysRange::new(64 * MIB, 5 * MIB + 123),
        PhysRange::new(70 * MIB, 3 * MIB),
    ];
    let reversed = [holes[1], holes[0]];
    let run = |holes: &[PhysRange]| {
        let mut a = alloc(region, holes);
        let ranges: Vec<_> = [(256, 2 * MIB), (7, PAGE), (64, 64 * 1024), (1, PAGE)]
            .into_iter()
            .map(|(n, align)| a.alloc_pages(n, align).unwrap())
            .collect();
        (ranges, gaps(&a))
    };
    assert_eq!(run(&holes), run(&holes));
    assert_eq!(run(&holes), run(&reversed));
}

#[test]
fn retire_from_option_and_report() {
    let region = PhysRange::new(64 * MIB, 4 * MIB);
    let image = PhysRange::new(64 * MIB, MIB + 10);
    let mut early: Option<BootAllocator<4, 8>> =
        Some(BootAllocator::new(region, &[image]).unwrap());
    let a = early.as_mut().unwrap();
    let ft = a.alloc_pages_tagged(16, 64 * 1024, "frametable").unwrap();
    let heap = a.alloc_pages(2, PAGE).unwrap();
    let report = early.take().map(BootAllocator::finish).unwrap();
    assert!(early.is_none());

    assert_eq!(report.region(), region);
    assert_eq!(report.holes(), &[PhysRange::new(64 * MIB, MIB + PAGE)]);
    assert_eq!(
        report.allocations(),
        // In address order, not allocation order.
        &[
            Allocation {
                range: heap,
                tag: None
            },
            Allocation {
                range: ft,
                tag: Some("frametable")
            },
        ]
    );
    assert_eq!(ft, PhysRange::new(65 * MIB + 64 * 1024, 16 * PAGE));
    assert_eq!(heap, PhysRange::new(65 * MIB + PAGE, 2 * PAGE));
    assert_eq!(report.used_bytes(), 18 * PAGE);
    assert_eq!(report.free_bytes(), 4 * MIB - (MIB + PAGE) - 18 * PAGE);
    assert_eq!(
        report.to_string(),
        "live-update region [0x4000000, 0x4400000) (4194304 bytes)\n\
         \x20 hole  [0x4000000, 0x4101000)\n\
         \x20 alloc [0x4101000, 0x4103000) (untagged)\n\
         \x20 free  [0x4103000, 0x4110000)\n\
         \x20 alloc [0x4110000, 0x4120000) frametable\n\
         \x20 free  [0x4120000, 0x4400000)\n\
         used 73728 bytes, free 3067904 bytes, live-update capacity 3014656 bytes"
    );
    // What the frametable marks hv-owned: frame numbers.
    let frametable = report.allocations()[1];
    assert_eq!(frametable.tag, Some("frametable"));
    assert_eq!(
        frametable.range.first_frame(),
        (65 * MIB + 64 * 1024) / PAGE
    );
    assert_eq!(frametable.range.frame_count(), 16);
}

#[test]
fn phys_range_helpers() {
    let r = PhysRange::new(0x1000, 0x2000);
    assert_eq!(r.end(), 0x3000);
    assert!(r.contains(0x1000) && r.contains(0x2fff) && !r.contains(0x3000) && !r.contains(0xfff));
    assert!(r.overlaps(PhysRange::new(0x2fff, 1)));
    assert!(!r.overlaps(PhysRange::new(0x3000, 1)));
    assert!(!r.overlaps(PhysRange::new(0x2000, 0)));
    assert!(r.contains_range(PhysRange::new(0x3000, 0)));
    assert!(!r.contains_range(PhysRange::new(0x2000, u64::MAX)));
    assert_eq!(PhysRange::new(u64::MAX, 2).checked_end(), None);
    assert_eq!(PhysRange::new(u64::MAX, 2).end(), u64::MAX);
    assert_eq!(PhysRange::from_bounds(5, 3), PhysRange::new(5, 0));
    assert!(r.is_page_aligned() && !PhysRange::new(0x1000, 1).is_page_aligned());
}

#[test]
fn releasing_a_hole_after_the_state_is_consumed() {
    // After an update: the image at 8..12 and the state 12..15 are one hole;
    // the boot allocations sit below.
    let region = pages(0, 32);
    let mut a = alloc(region, &[pages(8, 7)]);
    assert_eq!(a.alloc_pages(8, PAGE), Ok(pages(0, 8)));
    let mut report = a.finish();
    assert_eq!(report.largest_free_gap(), Some(pages(15, 17)));
    // The state part goes back: the image stays, the gap above grows.
    report.release_hole(pages(12, 3)).unwrap();
    assert_eq!(report.holes(), &[pages(8, 4)]);
    assert_eq!(report.free_gaps().collect::<Vec<_>>(), vec![pages(12, 20)]);
    assert_eq!(report.largest_free_gap(), Some(pages(12, 20)));
    // A range with partial pages releases only the whole pages it covers.
    report
        .release_hole(PhysRange::new(8 * PAGE + 1, 2 * PAGE))
        .unwrap();
    assert_eq!(report.holes(), &[pages(8, 1), pages(10, 2)]);
    // Less than a whole page: nothing.
    report
        .release_hole(PhysRange::new(8 * PAGE + 1, 100))
        .unwrap();
    assert_eq!(report.holes(), &[pages(8, 1), pages(10, 2)]);
    // A whole hole disappears; the tiling stays exact.
    report.release_hole(pages(8, 1)).unwrap();
    assert_eq!(report.holes(), &[pages(10, 2)]);
    let tiles: Vec<Tile> = report.tiles().collect();
    assert_eq!(
        tiles,
        vec![
            Tile::Allocated(Allocation {
                range: pages(0, 8),
                tag: None
            }),
            Tile::Free(pages(8, 2)),
            Tile::Hole(pages(10, 2)),
            Tile::Free(pages(12, 20)),
        ]
    );
}
