//! A domain's frame space: frames in and out, the limit, the free indices,
//! the PCI hole, identity entries and the memory map.

use std::collections::BTreeMap;

use hvlu_types::hole::{Hole, HOLE_END, MIN_HOLE};
use proptest::prelude::*;

use super::*;

/// A frame space of `limit` with frames `1000..1000 + n` at gpfns `0..n`
/// (the default hole is far above).
fn with_frames(limit: u64, n: u64) -> P2m {
    let mut p2m = P2m::with_limit(limit, Hole::DEFAULT).unwrap();
    for i in 0..n {
        assert_eq!(p2m.add(1000 + i), Some(Gpfn(i)));
    }
    p2m
}

/// The smallest hole: from 16 MiB (gpfn 0x1000).
fn small_hole() -> Hole {
    Hole::new(MIN_HOLE).unwrap()
}

/// The gpfn of RAM index `i` with the small hole.
fn above(i: u64) -> Gpfn {
    Gpfn(HOLE_END.0 + i - MIN_HOLE.0)
}

fn entry(base: u64, size: u64, kind: MapKind) -> MemoryMapEntry {
    MemoryMapEntry::new(base, size, kind)
}

#[test]
fn frames_get_gpfns_in_order_up_to_the_limit() {
    let mut p2m = with_frames(4, 4);
    assert_eq!(p2m.ram(), &[1000, 1001, 1002, 1003]);
    assert_eq!(p2m.frames(), 4);
    assert_eq!(p2m.limit(), 4);
    assert_eq!(p2m.hole(), Hole::DEFAULT);
    assert_eq!(p2m.next_gpfn(), None);
    assert_eq!(p2m.add(2000), None, "at the limit");
    assert_eq!(p2m.ram(), &[1000, 1001, 1002, 1003], "nothing changed");
    assert_eq!(p2m.frames(), 4);
    assert_eq!(p2m.get(Gpfn(2)), Some(1002));
    assert_eq!(p2m.get(Gpfn(4)), None);
}

#[test]
fn a_limit_of_zero_takes_no_frame() {
    let mut p2m = P2m::with_limit(0, Hole::DEFAULT).unwrap();
    assert_eq!(p2m.next_gpfn(), None);
    assert_eq!(p2m.add(1), None);
    assert_eq!(p2m.frames(), 0);
    assert!(p2m.ram().is_empty());
    // Its map is the hole alone.
    assert_eq!(
        p2m.memory_map().collect::<Vec<_>>(),
        [entry(3 << 30, 1 << 30, MapKind::PciHole)]
    );
}

#[test]
fn a_frame_taken_away_leaves_a_free_index() {
    let mut p2m = with_frames(8, 5);
    assert_eq!(p2m.remove(Gpfn(2)), Some(1002));
    assert_eq!(p2m.ram(), &[1000, 1001, NO_FRAME, 1003, 1004]);
    assert_eq!(p2m.frames(), 4);
    assert_eq!(p2m.mfns().collect::<Vec<_>>(), vec![1000, 1001, 1003, 1004]);
    assert_eq!(p2m.get(Gpfn(2)), None);
    // A free index, a gpfn past the end, one in the hole and one far
    // beyond have no frame.
    assert_eq!(p2m.remove(Gpfn(2)), None);
    assert_eq!(p2m.remove(Gpfn(5)), None);
    assert_eq!(p2m.remove(Hole::DEFAULT.start()), None);
    assert_eq!(p2m.remove(Gpfn(u64::MAX)), None);
    assert_eq!(p2m.frames(), 4);
}

#[test]
fn free_indices_are_filled_lowest_first_before_the_p2m_grows() {
    let mut p2m = with_frames(8, 6);
    for g in [4, 1, 3] {
        p2m.remove(Gpfn(g));
    }
    assert_eq!(p2m.next_gpfn(), Some(Gpfn(1)));
    assert_eq!(p2m.add(2001), Some(Gpfn(1)));
    assert_eq!(p2m.add(2003), Some(Gpfn(3)));
    assert_eq!(p2m.add(2004), Some(Gpfn(4)));
    assert_eq!(p2m.add(2006), Some(Gpfn(6)));
    assert_eq!(p2m.add(2007), Some(Gpfn(7)));
    assert_eq!(p2m.add(2008), None, "8 frames: the limit");
    assert_eq!(p2m.ram(), &[1000, 2001, 1002, 2003, 2004, 1005, 2006, 2007]);
}

#[test]
fn at_the_limit_a_frame_given_back_makes_room_for_one() {
    let mut p2m = with_frames(3, 3);
    assert_eq!(p2m.add(7), None);
    p2m.remove(Gpfn(0));
    assert_eq!(p2m.next_gpfn(), Some(Gpfn(0)));
    assert_eq!(p2m.add(7), Some(Gpfn(0)));
    assert_eq!(p2m.add(8), None);
}

#[test]
fn a_domain_larger_than_its_hole_start_has_ram_from_4_gib() {
    // 0x1000 frames below the hole, 600 more from 4 GiB.
    let limit = MIN_HOLE.0 + 600;
    let mut p2m = P2m::with_limit(limit, small_hole()).unwrap();
    for i in 0..MIN_HOLE.0 {
        assert_eq!(p2m.add(i), Some(Gpfn(i)));
    }
    // The next frame skips the hole: gpfn 0x1000 is its start.
    assert_eq!(p2m.next_gpfn(), Some(HOLE_END));
    assert_eq!(p2m.add(0x7000), Some(HOLE_END));
    for i in 1..600 {
        assert_eq!(p2m.add(0x7000 + i), Some(above(MIN_HOLE.0 + i)));
    }
    assert_eq!(p2m.add(1), None, "the limit");
    assert_eq!(p2m.frames(), limit);
    assert_eq!(p2m.ram().len() as u64, limit, "no entry for the hole");
    // Lookups: RAM on both sides, nothing in the hole.
    assert_eq!(p2m.get(Gpfn(0xfff)), Some(0xfff));
    for g in [MIN_HOLE.0, 0x8_0000, HOLE_END.0 - 1] {
        assert_eq!(p2m.get(Gpfn(g)), None, "{g:#x}");
    }
    assert_eq!(p2m.get(HOLE_END), Some(0x7000));
    assert_eq!(p2m.get(above(limit - 1)), Some(0x7000 + 599));
    assert_eq!(p2m.get(above(limit)), None);
    // The frames by gpfn, in order.
    let entries: Vec<_> = p2m.entries().collect();
    assert_eq!(entries.len() as u64, limit);
    assert_eq!(entries[0xfff], (Gpfn(0xfff), 0xfff));
    assert_eq!(entries[0x1000], (HOLE_END, 0x7000));
    // A frame given back above the hole is the next one taken, at the
    // same gpfn; one below comes first.
    assert_eq!(p2m.remove(above(MIN_HOLE.0 + 5)), Some(0x7005));
    assert_eq!(p2m.remove(Gpfn(0x10)), Some(0x10));
    assert_eq!(p2m.add(0x9000), Some(Gpfn(0x10)));
    assert_eq!(p2m.add(0x9001), Some(above(MIN_HOLE.0 + 5)));
    // Its map: RAM below, the hole, RAM from 4 GiB.
    assert_eq!(
        p2m.memory_map().collect::<Vec<_>>(),
        [
            entry(0, 16 << 20, MapKind::Ram),
            entry(16 << 20, (4 << 30) - (16 << 20), MapKind::PciHole),
            entry(4 << 30, 600 << 12, MapKind::Ram),
        ]
    );
}

#[test]
fn a_frame_space_never_hands_out_a_gpfn_in_its_hole() {
    // Frames in and out across the hole's start, many times.
    let limit = MIN_HOLE.0 + 64;
    let hole = small_hole();
    let mut p2m = P2m::with_limit(limit, hole).unwrap();
    let mut mfn = 0;
    for round in 0..8u64 {
        while let Some(g) = p2m.add(mfn) {
            assert!(!hole.contains(g), "{g}");
            mfn += 1;
        }
        for i in (round..limit).step_by(3) {
            p2m.remove(hole.gpfn_of(i).unwrap());
        }
    }
    assert!(p2m.entries().all(|(g, _)| !hole.contains(g)));
}

#[test]
fn a_rebuilt_p2m_reads_its_free_indices_and_frames() {
    let map = vec![5, NO_FRAME, 7, NO_FRAME, 9];
    let mut p2m = P2m::from_map(map, 7, Hole::DEFAULT).unwrap();
    assert_eq!(p2m.frames(), 3);
    assert_eq!(p2m.limit(), 7);
    assert_eq!(p2m.mfns().collect::<Vec<_>>(), vec![5, 7, 9]);
    assert_eq!(p2m.add(11), Some(Gpfn(1)));
    assert_eq!(p2m.add(13), Some(Gpfn(3)));
    assert_eq!(p2m.add(15), Some(Gpfn(5)));
    assert_eq!(p2m.add(17), Some(Gpfn(6)));
    assert_eq!(p2m.add(19), None, "7 frames: the limit");
    assert_eq!(p2m.ram(), &[5, 11, 7, 13, 9, 15, 17]);
}

#[test]
fn a_rebuilt_p2m_keeps_its_hole_and_its_ram_above_it() {
    // A map by RAM index of a domain rebuilt with the small hole.
    let mut map = vec![NO_FRAME; MIN_HOLE.0 as usize + 3];
    map[0] = 40;
    map[MIN_HOLE.0 as usize + 1] = 41;
    let mut p2m = P2m::from_map(map, MIN_HOLE.0 + 8, small_hole()).unwrap();
    assert_eq!(p2m.hole(), small_hole());
    assert_eq!(p2m.frames(), 2);
    assert_eq!(p2m.get(above(MIN_HOLE.0 + 1)), Some(41));
    assert_eq!(p2m.get(MIN_HOLE), None);
    assert_eq!(
        p2m.entries().collect::<Vec<_>>(),
        [(Gpfn(0), 40), (above(MIN_HOLE.0 + 1), 41)]
    );
    // Its free indices are below the hole first, then past it.
    assert_eq!(p2m.add(50), Some(Gpfn(1)));
    for _ in 2..MIN_HOLE.0 {
        p2m.add(50);
    }
    assert_eq!(p2m.add(51), Some(HOLE_END));
    assert_eq!(p2m.add(52), Some(above(MIN_HOLE.0 + 2)));
    assert_eq!(p2m.add(53), Some(above(MIN_HOLE.0 + 3)));
}

#[test]
fn a_rebuilt_p2m_with_no_frame_owns_nothing() {
    let p2m = P2m::from_map(vec![NO_FRAME; 4], 4, Hole::DEFAULT).unwrap();
    assert_eq!(p2m.frames(), 0);
    assert_eq!(p2m.next_gpfn(), Some(Gpfn(0)));
}

#[test]
fn a_p2m_longer_than_its_limit_is_refused() {
    let e = P2m::from_map(vec![1, 2, 3], 2, Hole::DEFAULT).unwrap_err();
    assert_eq!(
        e,
        P2mError::BeyondLimit {
            len: 3,
            max_frames: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "a p2m of 3 entries is beyond the limit of 2 frames"
    );
}

#[test]
fn a_limit_beyond_2_to_the_32_is_refused() {
    for max_frames in [(1 << 32) + 1, u64::MAX] {
        let e = P2m::with_limit(max_frames, Hole::DEFAULT).unwrap_err();
        assert_eq!(e, P2mError::LimitTooLarge { max_frames });
        assert_eq!(
            e.to_string(),
            format!("a limit of {max_frames} frames is beyond 2^32")
        );
    }
}

#[test]
fn a_short_heap_says_how_much_it_needed() {
    assert_eq!(heap_bytes(1000), 12_000);
    assert_eq!(heap_bytes(u64::MAX), u64::MAX);
    let e = P2mError::NoHeap {
        needed: heap_bytes(1 << 20),
    };
    assert_eq!(e.to_string(), "the hypervisor heap cannot hold 12288 KiB");
}

// --- identity entries ---------------------------------------------------

/// A BAR-like range: `count` frames from `mfn`.
fn bar(mfn: u64, count: u64) -> MfnRange {
    MfnRange::new(Mfn(mfn), count)
}

#[test]
fn identity_ranges_map_device_frames_at_their_own_gpfn_in_the_hole() {
    let mut p2m = with_frames(16, 4);
    let edu = bar(0xfe000, 256);
    p2m.add_identity(edu).unwrap();
    p2m.add_identity(bar(0xd0000, 16)).unwrap();
    assert_eq!(p2m.identity(), &[bar(0xd0000, 16), edu], "sorted");
    assert_eq!(p2m.get(Gpfn(0xfe000)), Some(0xfe000));
    assert_eq!(p2m.get(Gpfn(0xfe000 + 255)), Some(0xfe000 + 255));
    assert_eq!(p2m.get(Gpfn(0xfe000 + 256)), None);
    assert_eq!(p2m.get(Gpfn(0xd0000 - 1)), None);
    // No RAM frame: not counted, not taken back by `remove`.
    assert_eq!(p2m.frames(), 4);
    assert_eq!(p2m.remove(Gpfn(0xfe000)), None);
    assert_eq!(p2m.mfns().count(), 4);
    // The map cuts the hole around them.
    assert_eq!(
        p2m.memory_map().collect::<Vec<_>>(),
        [
            entry(0, 16 << 12, MapKind::Ram),
            entry(3 << 30, 0xd0000000 - (3 << 30), MapKind::PciHole),
            entry(0xd0000000, 16 << 12, MapKind::Device),
            entry(0xd001_0000, 0xfe000000 - 0xd001_0000, MapKind::PciHole),
            entry(0xfe000000, 1 << 20, MapKind::Device),
            entry(0xfe10_0000, (4 << 30) - 0xfe10_0000, MapKind::PciHole),
        ]
    );
    p2m.remove_identity(edu).unwrap();
    assert_eq!(p2m.get(Gpfn(0xfe000)), None);
    assert_eq!(p2m.identity(), &[bar(0xd0000, 16)]);
}

#[test]
fn identity_ranges_at_the_hole_s_edges_leave_no_empty_entry() {
    let mut p2m = with_frames(4, 4);
    p2m.add_identity(bar(0xc0000, 1)).unwrap();
    p2m.add_identity(bar(0xc0001, 1)).unwrap();
    p2m.add_identity(bar(HOLE_END.0 - 1, 1)).unwrap();
    let kinds: Vec<_> = p2m.memory_map().map(|e| e.kind).collect();
    let (ram, hole, dev) = (
        MapKind::Ram as u32,
        MapKind::PciHole as u32,
        MapKind::Device as u32,
    );
    assert_eq!(kinds, [ram, dev, dev, hole, dev]);
    assert!(p2m.memory_map().all(|e| e.size > 0));
}

#[test]
fn identity_ranges_outside_the_hole_overlapping_or_empty_are_refused() {
    let mut p2m = with_frames(16, 4);
    let hole = Hole::DEFAULT;
    p2m.add_identity(bar(0xfe000, 256)).unwrap();
    let refused = [
        (
            bar(2, 1),
            IdentityError::OutsideHole {
                range: bar(2, 1),
                hole,
            },
        ),
        (
            bar(0xc0000 - 1, 2),
            IdentityError::OutsideHole {
                range: bar(0xc0000 - 1, 2),
                hole,
            },
        ),
        (
            bar(HOLE_END.0 - 1, 2),
            IdentityError::OutsideHole {
                range: bar(HOLE_END.0 - 1, 2),
                hole,
            },
        ),
        (
            bar(HOLE_END.0, 1),
            IdentityError::OutsideHole {
                range: bar(HOLE_END.0, 1),
                hole,
            },
        ),
        (
            bar(0xd0000, 0),
            IdentityError::Empty {
                range: bar(0xd0000, 0),
            },
        ),
        (
            bar(0xfe000 + 255, 4),
            IdentityError::Overlaps {
                range: bar(0xfe000 + 255, 4),
                other: bar(0xfe000, 256),
            },
        ),
        (
            bar(0xfd000, 0x1001),
            IdentityError::Overlaps {
                range: bar(0xfd000, 0x1001),
                other: bar(0xfe000, 256),
            },
        ),
    ];
    for (range, error) in refused {
        assert_eq!(p2m.add_identity(range), Err(error), "{range}");
    }
    assert_eq!(p2m.identity(), &[bar(0xfe000, 256)], "nothing changed");
    // Only a range added whole is removed.
    for range in [bar(0xfe000, 255), bar(0xfe001, 255), bar(0xd0000, 1)] {
        assert_eq!(
            p2m.remove_identity(range),
            Err(IdentityError::NotMapped { range })
        );
    }
    assert_eq!(
        IdentityError::OutsideHole {
            range: bar(2, 1),
            hole
        }
        .to_string(),
        "mfns [0x2, 0x3) is not inside the domain's PCI hole [0xc0000000, 4 GiB)"
    );
    assert_eq!(
        IdentityError::Overlaps {
            range: bar(0xfe0ff, 4),
            other: bar(0xfe000, 256)
        }
        .to_string(),
        "mfns [0xfe0ff, 0xfe103) overlaps the domain's identity range mfns [0xfe000, 0xfe100)"
    );
}

#[test]
fn a_domain_has_at_most_max_identity_ranges_and_its_map_fits_the_call() {
    // RAM on both sides of a small hole, each range with a gap before it:
    // the most entries a map can have.
    let mut p2m = P2m::with_limit(MIN_HOLE.0 + 1, small_hole()).unwrap();
    for i in 0..MAX_IDENTITY as u64 {
        p2m.add_identity(bar(MIN_HOLE.0 + 1 + 2 * i, 1)).unwrap();
    }
    let last = bar(MIN_HOLE.0 + 1 + 2 * MAX_IDENTITY as u64, 1);
    assert_eq!(p2m.add_identity(last), Err(IdentityError::TooMany));
    let entries = p2m.memory_map().count() as u64;
    assert_eq!(entries, 2 * MAX_IDENTITY as u64 + 3);
    assert!(entries <= pv_abi::call::MAX_MEMORY_MAP);
    assert_eq!(
        IdentityError::TooMany.to_string(),
        "the domain has 62 identity ranges, the most it may have"
    );
}

#[test]
fn a_small_hole_takes_identity_ranges_low_in_gpfn_space() {
    let mut p2m = P2m::with_limit(MIN_HOLE.0 + 8, small_hole()).unwrap();
    p2m.add_identity(bar(MIN_HOLE.0, 1)).unwrap();
    assert_eq!(p2m.get(MIN_HOLE), Some(MIN_HOLE.0));
    let range = bar(MIN_HOLE.0 - 1, 1);
    assert_eq!(
        p2m.add_identity(range),
        Err(IdentityError::OutsideHole {
            range,
            hole: small_hole()
        })
    );
}

// --- translation -------------------------------------------------------

#[test]
fn translation_gives_a_ram_frame_or_says_what_the_gpfn_is() {
    // 24 frames of a limit of 32 around a hole at 16 MiB: RAM indices
    // 0..0x1000 below it, the rest from 4 GiB.
    let mut p2m = P2m::with_limit(MIN_HOLE.0 + 32, small_hole()).unwrap();
    for i in 0..MIN_HOLE.0 + 24 {
        p2m.add(1 << 30 | i).unwrap();
    }
    // The gpfn of the k-th RAM frame from 4 GiB.
    let high = |k: u64| above(MIN_HOLE.0 + k);
    let edu = bar(0xfe000, 256);
    p2m.add_identity(edu).unwrap();
    // RAM below the hole and above it.
    assert_eq!(p2m.translate(Gpfn(0)), Ok(Mfn(1 << 30)));
    assert_eq!(
        p2m.translate(Gpfn(MIN_HOLE.0 - 1)),
        Ok(Mfn(1 << 30 | (MIN_HOLE.0 - 1)))
    );
    assert_eq!(
        p2m.translate(high(23)),
        Ok(Mfn(1 << 30 | (MIN_HOLE.0 + 23)))
    );
    // Given back: RAM without a frame, until it is taken again.
    let given_back = high(5);
    let mfn = p2m.remove(given_back).unwrap();
    let no_frame = TranslateError::NoFrame {
        gpfn: given_back,
        index: MIN_HOLE.0 + 5,
    };
    assert_eq!(p2m.translate(given_back), Err(no_frame));
    assert_eq!(p2m.add(mfn), Some(given_back));
    assert_eq!(p2m.translate(given_back), Ok(Mfn(mfn)));
    // Never populated, within the limit.
    assert_eq!(
        p2m.translate(high(24)),
        Err(TranslateError::NoFrame {
            gpfn: high(24),
            index: MIN_HOLE.0 + 24
        })
    );
    // Past the limit, and far past it.
    let beyond = |gpfn| TranslateError::BeyondRam {
        gpfn,
        limit: MIN_HOLE.0 + 32,
        hole: small_hole(),
    };
    assert_eq!(p2m.translate(high(32)), Err(beyond(high(32))));
    assert_eq!(p2m.translate(Gpfn(u64::MAX)), Err(beyond(Gpfn(u64::MAX))));
    // The hole: its first and last frames, and device memory inside it.
    let hole = |gpfn| TranslateError::Hole {
        gpfn,
        hole: small_hole(),
    };
    for gpfn in [
        MIN_HOLE,
        Gpfn(0xfe000 - 1),
        Gpfn(0xfe100),
        Gpfn(HOLE_END.0 - 1),
    ] {
        assert_eq!(p2m.translate(gpfn), Err(hole(gpfn)), "{gpfn}");
    }
    for gpfn in [Gpfn(0xfe000), Gpfn(0xfe0ff)] {
        assert_eq!(
            p2m.translate(gpfn),
            Err(TranslateError::Device { gpfn, range: edu })
        );
        // The frame space's own lookup gives the identity frame.
        assert_eq!(p2m.get(gpfn), Some(gpfn.0));
    }
}

#[test]
fn below_a_default_hole_ram_ends_at_the_limit() {
    let p2m = with_frames(8, 4);
    let beyond = |gpfn| TranslateError::BeyondRam {
        gpfn,
        limit: 8,
        hole: Hole::DEFAULT,
    };
    for gpfn in [Gpfn(8), Gpfn(0xbffff), HOLE_END, Gpfn(HOLE_END.0 + 8)] {
        assert_eq!(p2m.translate(gpfn), Err(beyond(gpfn)), "{gpfn}");
    }
    assert_eq!(
        p2m.translate(Gpfn(0xc0000)),
        Err(TranslateError::Hole {
            gpfn: Gpfn(0xc0000),
            hole: Hole::DEFAULT
        })
    );
    assert_eq!(
        p2m.translate(Gpfn(7)),
        Err(TranslateError::NoFrame {
            gpfn: Gpfn(7),
            index: 7
        })
    );
}

#[test]
fn each_translation_refusal_has_its_error_and_reason() {
    let cases = [
        (
            TranslateError::Hole {
                gpfn: Gpfn(0xc0000),
                hole: Hole::DEFAULT,
            },
            Error::Invalid,
            "gpfn 0xc0000 is in the PCI hole [0xc0000000, 4 GiB): there is no RAM there",
        ),
        (
            TranslateError::Device {
                gpfn: Gpfn(0xfe010),
                range: bar(0xfe000, 256),
            },
            Error::Permission,
            "gpfn 0xfe010 is device memory (mfns [0xfe000, 0xfe100), mapped identity): dom0 \
             maps device memory itself, this call never reads a device register",
        ),
        (
            TranslateError::BeyondRam {
                gpfn: Gpfn(0x600),
                limit: 1280,
                hole: Hole::DEFAULT,
            },
            Error::Invalid,
            "gpfn 0x600 is beyond the domain's RAM (1280 frames: gpfns [0x0, 0x500))",
        ),
        (
            TranslateError::BeyondRam {
                gpfn: Gpfn(0x200000),
                limit: MIN_HOLE.0 + 32,
                hole: small_hole(),
            },
            Error::Invalid,
            "gpfn 0x200000 is beyond the domain's RAM (4128 frames: gpfns [0x0, 0x1000) and \
             gpfns [0x100000, 0x100020))",
        ),
        (
            TranslateError::BeyondRam {
                gpfn: Gpfn(0),
                limit: 0,
                hole: Hole::DEFAULT,
            },
            Error::Invalid,
            "gpfn 0x0 is beyond the domain's RAM (0 frames: no RAM)",
        ),
        (
            TranslateError::NoFrame {
                gpfn: Gpfn(0x400),
                index: 0x400,
            },
            Error::NotFound,
            "gpfn 0x400 (RAM index 0x400) has no frame: never populated, or given back",
        ),
    ];
    for (e, error, reason) in cases {
        assert_eq!(e.error(), error, "{e:?}");
        assert_eq!(e.to_string(), reason);
        assert!(reason.len() <= pv_abi::hypercall::MAX_ERROR_MESSAGE);
    }
}

/// One step of the model check.
#[derive(Clone, Debug)]
enum Op {
    Add,
    Remove(u64),
}

proptest! {
    /// Against a map of RAM index to mfn: the same frames, the lowest free
    /// index each time (at its gpfn, never in the hole), never more than
    /// the limit; lookups by gpfn agree.
    #[test]
    fn it_behaves_as_a_map_with_a_limit(
        limit in 0u64..64,
        // A hole at 16 MiB with frames shifted so that RAM crosses it, or
        // the default hole far above.
        shift in prop_oneof![Just(None), (0u64..64).prop_map(Some)],
        ops in proptest::collection::vec(
            prop_oneof![Just(Op::Add), (0u64..80).prop_map(Op::Remove)],
            0..300,
        ),
    ) {
        // With a hole at 16 MiB, the indices under test are moved up to
        // just below it by pre-filling: `shift` frames of it are free.
        let (hole, base) = match shift {
            None => (Hole::DEFAULT, 0),
            Some(s) => (small_hole(), MIN_HOLE.0 - s),
        };
        let mut p2m = P2m::with_limit(base + limit, hole).unwrap();
        for i in 0..base {
            prop_assert_eq!(p2m.add(1 << 40 | i), Some(Gpfn(i)));
        }
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut next_mfn = 0;
        for op in ops {
            match op {
                Op::Add => {
                    next_mfn += 1;
                    let lowest = (0..).find(|g| !model.contains_key(g)).unwrap();
                    let expected = (model.len() < limit as usize)
                        .then(|| hole.gpfn_of(base + lowest).unwrap());
                    prop_assert_eq!(p2m.add(next_mfn), expected);
                    if expected.is_some() {
                        model.insert(lowest, next_mfn);
                    }
                }
                Op::Remove(i) => {
                    let gpfn = hole.gpfn_of(base + i).unwrap();
                    prop_assert_eq!(p2m.remove(gpfn), model.remove(&i));
                }
            }
            prop_assert_eq!(p2m.frames(), base + model.len() as u64);
            prop_assert!(p2m.ram().len() as u64 <= base + limit);
            prop_assert_eq!(
                p2m.mfns().skip(base as usize).collect::<Vec<_>>(),
                model.values().copied().collect::<Vec<_>>()
            );
            for i in 0..limit + 2 {
                let gpfn = hole.gpfn_of(base + i).unwrap();
                prop_assert!(!hole.contains(gpfn));
                prop_assert_eq!(p2m.get(gpfn), model.get(&i).copied());
                let translated = match model.get(&i) {
                    Some(&mfn) => Ok(Mfn(mfn)),
                    None if i < limit => Err(TranslateError::NoFrame { gpfn, index: base + i }),
                    None => Err(TranslateError::BeyondRam { gpfn, limit: base + limit, hole }),
                };
                prop_assert_eq!(p2m.translate(gpfn), translated);
            }
            prop_assert!(p2m.entries().all(|(g, _)| !hole.contains(g)));
        }
    }
}
