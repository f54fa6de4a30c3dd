//! One test per [`BootAllocError`] variant: that it is returned when it
//! should be, that nothing changes on error, and its exact message.

use super::{alloc, gaps, pages, MIB, PAGE};
use crate::{BootAllocError, BootAllocator, PhysRange};

#[test]
fn region_not_aligned() {
    for region in [
        PhysRange::new(0x1800, 0x4000), // base
        PhysRange::new(0x1000, 0x4800), // size
        PhysRange::new(0x1001, 0x1),    // both
    ] {
        let err = BootAllocator::<4, 4>::new(region, &[]).unwrap_err();
        assert_eq!(err, BootAllocError::RegionNotAligned { region });
    }
    let err = BootAllocator::<4, 4>::new(PhysRange::new(0x1800, 0x4000), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "live-update region [0x1800, 0x5800) is not page aligned: base 0x1800 and size 0x4000 \
         must be multiples of 0x1000"
    );
}

#[test]
fn region_empty() {
    let err = BootAllocator::<4, 4>::new(PhysRange::new(0x20_0000, 0), &[]).unwrap_err();
    assert_eq!(err, BootAllocError::RegionEmpty { base: 0x20_0000 });
    assert_eq!(
        err.to_string(),
        "live-update region at 0x200000 is empty (size 0)"
    );
}

#[test]
fn region_overflow() {
    // Ends exactly at 2^64: the end does not fit in a u64.
    let region = PhysRange::new(u64::MAX - 0xfff, PAGE);
    let err = BootAllocator::<4, 4>::new(region, &[]).unwrap_err();
    assert_eq!(err, BootAllocError::RegionOverflow { region });
    assert_eq!(
        err.to_string(),
        "live-update region [0xfffffffffffff000, 0x10000000000000000) runs past the end of the \
         physical address space (base 0xfffffffffffff000 + size 0x1000 overflows 64 bits)"
    );
    // Ending one page lower is fine.
    BootAllocator::<4, 4>::new(PhysRange::new(u64::MAX - 0x1fff, PAGE), &[]).unwrap();
}

#[test]
fn hole_outside_region() {
    let region = PhysRange::new(16 * MIB, 4 * MIB);
    let inside = PhysRange::new(17 * MIB, 100);
    for bad in [
        PhysRange::new(15 * MIB, MIB),             // entirely below
        PhysRange::new(16 * MIB - 1, 2),           // straddles the start
        PhysRange::new(20 * MIB - PAGE, PAGE + 1), // straddles the end
        PhysRange::new(20 * MIB, PAGE),            // starts at the end
        PhysRange::new(20 * MIB + 1, 0),           // empty, but past the end
        PhysRange::new(17 * MIB, u64::MAX),        // end overflows
    ] {
        let err = BootAllocator::<4, 4>::new(region, &[inside, bad, inside]).unwrap_err();
        assert_eq!(
            err,
            BootAllocError::HoleOutsideRegion {
                index: 1,
                hole: bad,
                region
            }
        );
    }
    let err = BootAllocator::<4, 4>::new(region, &[PhysRange::new(15 * MIB, MIB + 1)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reserved hole #0 [0xf00000, 0x1000001) is not inside the live-update region \
         [0x1000000, 0x1400000)"
    );
    // An end that overflows is printed exactly.
    let err =
        BootAllocator::<4, 4>::new(region, &[PhysRange::new(17 * MIB, u64::MAX)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reserved hole #0 [0x1100000, 0x100000000010fffff) is not inside the live-update region \
         [0x1000000, 0x1400000)"
    );
}

#[test]
fn too_many_holes() {
    let region = pages(0, 64);
    let three = [pages(1, 1), pages(10, 1), pages(20, 1)];
    let err = BootAllocator::<2, 4>::new(region, &three).unwrap_err();
    assert_eq!(
        err,
        BootAllocError::TooManyHoles {
            distinct: 3,
            capacity: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "3 distinct reserved holes after merging, but the boot allocator records at most 2"
    );
    // Capacity counts holes after merging: touching and overlapping ones are one.
    let a = BootAllocator::<2, 4>::new(
        region,
        &[pages(1, 1), pages(2, 3), pages(4, 2), pages(20, 1)],
    )
    .unwrap();
    assert_eq!(a.holes(), &[pages(1, 5), pages(20, 1)]);
    // A big hole that swallows many small ones, given last.
    let a = BootAllocator::<1, 4>::new(
        region,
        &[pages(1, 1), pages(10, 1), pages(20, 1), pages(0, 30)],
    )
    .unwrap();
    assert_eq!(a.holes(), &[pages(0, 30)]);
    // No capacity at all: only empty holes are accepted.
    BootAllocator::<0, 4>::new(region, &[PhysRange::new(0x1234, 0)]).unwrap();
    let err = BootAllocator::<0, 4>::new(region, &[PhysRange::new(0x1234, 1)]).unwrap_err();
    assert_eq!(
        err,
        BootAllocError::TooManyHoles {
            distinct: 1,
            capacity: 0
        }
    );
}

#[test]
fn bad_alignment() {
    let mut a = alloc(pages(0, 64), &[]);
    for align in [0, 1, 2048, 3 * PAGE, PAGE + 1, u64::MAX] {
        assert_eq!(
            a.alloc_pages(1, align),
            Err(BootAllocError::BadAlignment { align })
        );
    }
    // Alignment is checked before the count.
    assert_eq!(
        a.alloc_pages(0, 2048),
        Err(BootAllocError::BadAlignment { align: 2048 })
    );
    assert!(a.allocations().is_empty());
    assert_eq!(
        BootAllocError::BadAlignment { align: 0x3000 }.to_string(),
        "alignment 0x3000 is not a power of two of at least 0x1000 bytes"
    );
}

#[test]
fn zero_size() {
    let mut a = alloc(pages(0, 64), &[]);
    assert_eq!(a.alloc_pages(0, PAGE), Err(BootAllocError::ZeroSize));
    assert_eq!(
        a.alloc_pages_tagged(0, 2 * MIB, "early heap"),
        Err(BootAllocError::ZeroSize)
    );
    assert!(a.allocations().is_empty());
    assert_eq!(
        BootAllocError::ZeroSize.to_string(),
        "allocation of zero pages"
    );
}

#[test]
fn exhausted() {
    // Region: pages 16..32. Free: pages 16..20 and 24..30 (6 pages); pages
    // 20..24 and 30..32 are holes.
    let mut a = alloc(pages(16, 16), &[pages(20, 4), pages(30, 2)]);
    let before = gaps(&a);
    assert_eq!(
        a.alloc_pages(7, PAGE),
        Err(BootAllocError::Exhausted {
            pages: 7,
            align: PAGE,
            largest_free_gap: 6 * PAGE
        })
    );
    // Big enough in size but not at that alignment: 5 pages aligned to 64 KiB
    // (16 pages) could only start at page 16 (4 free pages) or page 32 (past
    // the end).
    assert_eq!(
        a.alloc_pages(5, 16 * PAGE),
        Err(BootAllocError::Exhausted {
            pages: 5,
            align: 16 * PAGE,
            largest_free_gap: 6 * PAGE
        })
    );
    assert_eq!(gaps(&a), before, "a failed allocation changes nothing");
    assert!(a.allocations().is_empty());
    // What does fit still fits.
    assert_eq!(a.alloc_pages(5, 8 * PAGE), Ok(pages(24, 5)));
    assert_eq!(a.alloc_pages(4, PAGE), Ok(pages(16, 4)));
    assert_eq!(a.alloc_pages(1, PAGE), Ok(pages(29, 1)));
    assert_eq!(
        a.alloc_pages(1, PAGE),
        Err(BootAllocError::Exhausted {
            pages: 1,
            align: PAGE,
            largest_free_gap: 0
        })
    );
    assert_eq!(
        BootAllocError::Exhausted {
            pages: 7,
            align: PAGE,
            largest_free_gap: 6 * PAGE
        }
        .to_string(),
        "live-update region exhausted: asked for 7 pages (28672 bytes) aligned to 0x1000, but no \
         free gap holds it; the largest free gap is 24576 bytes (6 pages)"
    );
    // A request whose byte size does not fit in a u64 is printed exactly.
    let err = a.alloc_pages(u64::MAX, PAGE).unwrap_err();
    assert_eq!(
        err,
        BootAllocError::Exhausted {
            pages: u64::MAX,
            align: PAGE,
            largest_free_gap: 0
        }
    );
    assert!(err
        .to_string()
        .contains("asked for 18446744073709551615 pages (75557863725914323415040 bytes)"));
}

#[test]
fn record_full() {
    let mut a = BootAllocator::<4, 2>::new(pages(0, 64), &[]).unwrap();
    a.alloc_pages(1, PAGE).unwrap();
    a.alloc_pages(1, PAGE).unwrap();
    let free = a.free_bytes();
    assert_eq!(
        a.alloc_pages(1, PAGE),
        Err(BootAllocError::RecordFull { capacity: 2 })
    );
    // Reported before exhaustion: the record is checked before the region.
    assert_eq!(
        a.alloc_pages(1000, PAGE),
        Err(BootAllocError::RecordFull { capacity: 2 })
    );
    assert_eq!(a.free_bytes(), free);
    assert_eq!(a.allocations().len(), 2);
    // A record of zero entries refuses everything.
    let mut z = BootAllocator::<4, 0>::new(pages(0, 64), &[]).unwrap();
    assert_eq!(
        z.alloc_pages(1, PAGE),
        Err(BootAllocError::RecordFull { capacity: 0 })
    );
    assert_eq!(
        BootAllocError::RecordFull { capacity: 2 }.to_string(),
        "boot allocation record is full: it holds at most 2 allocations"
    );
}

#[test]
fn not_in_hole() {
    let region = pages(0, 64);
    let a = alloc(region, &[pages(10, 4)]);
    let mut report = a.finish();
    for bad in [
        pages(9, 2),                         // straddles the hole's start
        pages(13, 2),                        // straddles its end
        pages(20, 1),                        // a free gap
        PhysRange::new(11 * PAGE, u64::MAX), // end overflows
    ] {
        let before = report.clone();
        let err = report.release_hole(bad).unwrap_err();
        assert_eq!(err, BootAllocError::NotInHole { range: bad });
        assert_eq!(report.holes(), before.holes(), "nothing changed");
    }
    // An allocation is not a hole either.
    let mut a = alloc(region, &[pages(10, 4)]);
    let got = a.alloc_pages(2, PAGE).unwrap();
    let mut report = a.finish();
    assert_eq!(
        report.release_hole(got),
        Err(BootAllocError::NotInHole { range: got })
    );
    assert_eq!(
        BootAllocError::NotInHole {
            range: pages(20, 1)
        }
        .to_string(),
        "cannot release [0x14000, 0x15000): its pages do not lie inside one reserved hole"
    );
}

#[test]
fn too_many_holes_when_a_release_splits_one() {
    let region = pages(0, 64);
    let mut report = BootAllocator::<2, 4>::new(region, &[pages(1, 1), pages(10, 10)])
        .unwrap()
        .finish();
    let err = report.release_hole(pages(12, 2)).unwrap_err();
    assert_eq!(
        err,
        BootAllocError::TooManyHoles {
            distinct: 3,
            capacity: 2
        }
    );
    assert_eq!(report.holes(), &[pages(1, 1), pages(10, 10)]);
    // Shrinking from either end needs no record.
    report.release_hole(pages(10, 2)).unwrap();
    report.release_hole(pages(18, 2)).unwrap();
    assert_eq!(report.holes(), &[pages(1, 1), pages(12, 6)]);
}

#[test]
fn errors_are_core_errors() {
    fn is_error<E: core::error::Error>(_: &E) {}
    is_error(&BootAllocError::ZeroSize);
}
