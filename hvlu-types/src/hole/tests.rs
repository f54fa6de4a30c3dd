//! The hole's rules, and RAM indices against gpfns on both sides of it.

use std::string::ToString;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

#[test]
fn the_default_hole_is_3_gib_to_4_gib() {
    assert_eq!(Hole::DEFAULT.start(), Gpfn(0xc_0000));
    assert_eq!(Hole::DEFAULT.addr(), 3 << 30);
    assert_eq!(Hole::DEFAULT.frames(), 0x4_0000);
    assert_eq!(Hole::default(), Hole::DEFAULT);
    assert_eq!(Hole::new(Gpfn(0xc_0000)), Ok(Hole::DEFAULT));
    assert_eq!(Hole::at_addr(3 << 30), Ok(Hole::DEFAULT));
    assert_eq!(Hole::DEFAULT.to_string(), "[0xc0000000, 4 GiB)");
}

#[test]
fn a_hole_starts_on_2_mib_from_16_mib_to_below_4_gib() {
    for start in [MIN_HOLE.0, MIN_HOLE.0 + 512, 0x4_0000, HOLE_END.0 - 512] {
        let hole = Hole::new(Gpfn(start)).unwrap();
        assert_eq!(hole.start(), Gpfn(start));
        assert_eq!(Hole::at_addr(start << 12), Ok(hole));
    }
    let refused = [
        (0, HoleError::TooLow { addr: 0 }),
        (MIN_HOLE.0 - 512, HoleError::TooLow { addr: 14 << 20 }),
        (
            MIN_HOLE.0 + 1,
            HoleError::Unaligned {
                addr: (16 << 20) + 4096,
            },
        ),
        (HOLE_END.0, HoleError::TooHigh { addr: 4 << 30 }),
        (u64::MAX, HoleError::TooHigh { addr: u64::MAX }),
    ];
    for (start, error) in refused {
        assert_eq!(Hole::new(Gpfn(start)), Err(error), "{start:#x}");
    }
}

#[test]
fn a_byte_address_off_a_page_is_unaligned_unless_out_of_range() {
    assert_eq!(
        Hole::at_addr((1 << 30) + 1),
        Err(HoleError::Unaligned {
            addr: (1 << 30) + 1
        })
    );
    assert_eq!(
        Hole::at_addr((5 << 20) + 1),
        Err(HoleError::TooLow {
            addr: (5 << 20) + 1
        })
    );
    assert_eq!(
        Hole::at_addr((4 << 30) + 1),
        Err(HoleError::TooHigh {
            addr: (4 << 30) + 1
        })
    );
}

#[test]
fn refusals_say_what_is_wrong_with_the_start() {
    assert_eq!(
        HoleError::TooLow { addr: 5 << 20 }.to_string(),
        "a PCI hole at 0x500000 starts below 16 MiB, the lowest it may start"
    );
    assert_eq!(
        HoleError::Unaligned { addr: 0x4010_0000 }.to_string(),
        "a PCI hole at 0x40100000 is not on a 2 MiB boundary"
    );
    assert_eq!(
        HoleError::TooHigh { addr: 4 << 30 }.to_string(),
        "a PCI hole at 0x100000000 does not start below 4 GiB, where it ends"
    );
}

#[test]
fn ram_indices_jump_over_the_hole() {
    let hole = Hole::new(MIN_HOLE).unwrap();
    assert_eq!(hole.gpfn_of(0), Some(Gpfn(0)));
    assert_eq!(hole.gpfn_of(0xfff), Some(Gpfn(0xfff)));
    assert_eq!(hole.gpfn_of(0x1000), Some(HOLE_END));
    assert_eq!(hole.gpfn_of(0x1001), Some(Gpfn(0x10_0001)));
    assert_eq!(hole.gpfn_of(u64::MAX), None);
    assert_eq!(hole.index_of(Gpfn(0xfff)), Some(0xfff));
    for inside in [0x1000, 0x8_0000, 0xf_ffff] {
        assert!(hole.contains(Gpfn(inside)));
        assert_eq!(hole.index_of(Gpfn(inside)), None, "{inside:#x}");
    }
    assert!(!hole.contains(HOLE_END));
    assert_eq!(hole.index_of(HOLE_END), Some(0x1000));
}

#[test]
fn ram_is_below_the_hole_then_from_4_gib() {
    let ram = |hole: Hole, max| hole.ram(max).collect::<Vec<_>>();
    assert_eq!(ram(Hole::DEFAULT, 0), []);
    assert_eq!(ram(Hole::DEFAULT, 20480), [(Gpfn(0), 20480)]);
    assert_eq!(ram(Hole::DEFAULT, 0xc_0000), [(Gpfn(0), 0xc_0000)]);
    let small = Hole::new(Gpfn(0x2000)).unwrap();
    assert_eq!(
        ram(small, 10240),
        [(Gpfn(0), 0x2000), (HOLE_END, 10240 - 0x2000)]
    );
    assert_eq!(ram(small, u64::MAX)[1], (HOLE_END, u64::MAX - HOLE_END.0));
}

proptest! {
    /// Index → gpfn → index is the identity; no index lands in the hole;
    /// gpfns keep the order of their indices.
    #[test]
    fn indices_and_gpfns_correspond(
        start in (MIN_HOLE.0 / 512..HOLE_END.0 / 512).prop_map(|s| s * 512),
        index in 0u64..1 << 40,
    ) {
        let hole = Hole::new(Gpfn(start)).unwrap();
        let gpfn = hole.gpfn_of(index).unwrap();
        prop_assert!(!hole.contains(gpfn));
        prop_assert_eq!(hole.index_of(gpfn), Some(index));
        prop_assert!(hole.gpfn_of(index + 1).unwrap() > gpfn);
        // Every RAM frame of a domain of `index + 1` frames lies in its
        // ranges, the last at their end.
        let ranges: Vec<_> = hole.ram(index + 1).collect();
        prop_assert_eq!(ranges.iter().map(|r| r.1).sum::<u64>(), index + 1);
        let last = ranges.last().unwrap();
        prop_assert_eq!(last.0 .0 + last.1 - 1, gpfn.0);
    }
}
