//! Free ranges are the complement of the owned runs, the region and the
//! hv-reserved ranges within RAM.

use frame_ownership::testkit::{random_hvm_machine, random_machine};
use frame_ownership::{free_ranges, DomainView, MachineLayout};
use handover_abi::{MemRun, RunKind};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};
use proptest::prelude::*;

/// What a frame is, for the per-frame check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Hole,
    Free,
    Owned,
    Region,
    Reserved,
}

/// Checks that free ∪ owned ∪ region ∪ reserved = RAM, pairwise disjoint,
/// frame by frame, and that the result is sorted, non-empty and merged.
fn check_partition(
    ram: &[MfnRange],
    region: MfnRange,
    reserved: &[MfnRange],
    domains: &[DomainView<'_>],
    free: &[MfnRange],
) {
    let end = ram.iter().map(|r| r.end()).max().unwrap_or(0) + 8;
    let mut seen = vec![0u8; end as usize];
    let mut mark = |r: MfnRange| {
        for m in r.start.0..r.end() {
            seen[m as usize] += 1;
        }
    };
    for r in free {
        mark(*r);
    }
    for d in domains {
        for r in d.runs {
            mark(r.mfns());
        }
    }
    mark(region);
    for r in reserved {
        mark(*r);
    }
    for m in 0..end {
        let is_ram = ram.iter().any(|r| r.contains(Mfn(m)));
        let want = u8::from(is_ram);
        assert_eq!(
            seen[m as usize], want,
            "mfn {m:#x} covered {} times",
            seen[m as usize]
        );
    }
    for w in free.windows(2) {
        assert!(
            w[0].end() < w[1].start.0,
            "free ranges unsorted or not merged: {w:?}"
        );
    }
    assert!(free.iter().all(|r| r.count > 0));
}

#[test]
fn free_ranges_partition_ram_on_random_machines() {
    // PV domains only, and PV beside HVM ones (nested tables and log-dirty
    // bitmaps are owned frames like any other).
    let machines =
        (0..100).flat_map(|seed| [random_machine(seed, 4), random_hvm_machine(seed, 2, 2)]);
    for m in machines {
        let views = m.views();
        let layout = m.layout().unwrap();
        let free = free_ranges(&layout, &views);
        check_partition(&m.ram, m.region, &m.hv_reserved, &views, &free);
        // The pass agrees: every free frame is unowned in the frametable.
        let out = m.run_pass();
        out.result.unwrap();
        for r in &free {
            for mfn in r.start.0..r.end() {
                assert!(!out.frametable[mfn as usize].is_owned());
            }
        }
    }
}

#[test]
fn free_ranges_of_an_empty_machine_are_ram_minus_region_and_reserved() {
    let ram = [
        MfnRange::new(Mfn(0), 100),
        MfnRange::new(Mfn(100), 50),
        MfnRange::new(Mfn(200), 10),
    ];
    let reserved = [MfnRange::new(Mfn(0), 10)];
    let layout = MachineLayout::new(&ram, MfnRange::new(Mfn(140), 20), &reserved).unwrap();
    let free = free_ranges(&layout, &[] as &[DomainView<'_>]);
    assert_eq!(
        free,
        vec![MfnRange::new(Mfn(10), 130), MfnRange::new(Mfn(200), 10)]
    );
}

/// A machine described frame by frame: each frame's class, the region as
/// one interval; RAM, reserved ranges and runs derived from it.
fn machine_strategy() -> impl Strategy<Value = (Vec<Class>, Vec<usize>, Vec<usize>)> {
    (1usize..300).prop_flat_map(|n| {
        (
            proptest::collection::vec(
                prop_oneof![
                    Just(Class::Hole),
                    Just(Class::Free),
                    Just(Class::Owned),
                    Just(Class::Reserved),
                ],
                n,
            ),
            // Region start and length (clamped below).
            proptest::collection::vec(0usize..300, 2),
            // Split points, to cut ranges and runs.
            proptest::collection::vec(0usize..300, 0..40),
        )
    })
}

fn ranges_where(classes: &[Class], want: Class, splits: &[usize]) -> Vec<MfnRange> {
    let mut out: Vec<MfnRange> = Vec::new();
    for (i, &c) in classes.iter().enumerate() {
        if c != want {
            continue;
        }
        match out.last_mut() {
            Some(r) if r.end() == i as u64 && !splits.contains(&i) => r.count += 1,
            _ => out.push(MfnRange::new(Mfn(i as u64), 1)),
        }
    }
    out
}

proptest! {
    #[test]
    fn free_ranges_are_exactly_the_free_frames((mut classes, region, splits) in machine_strategy()) {
        let n = classes.len();
        let start = region[0] % n;
        let len = region[1] % (n - start + 1);
        for c in &mut classes[start..start + len] {
            *c = Class::Region;
        }
        let ram_classes: Vec<Class> = classes
            .iter()
            .map(|&c| if c == Class::Hole { Class::Hole } else { Class::Free })
            .collect();
        let ram = ranges_where(&ram_classes, Class::Free, &splits);
        let reserved = ranges_where(&classes, Class::Reserved, &splits);
        let owned = ranges_where(&classes, Class::Owned, &splits);
        // Share the owned ranges among three domains.
        let mut runs: [Vec<MemRun>; 3] = Default::default();
        for (i, r) in owned.iter().enumerate() {
            runs[i % 3].push(MemRun { first_mfn: r.start, count: r.count, first_gpfn: Gpfn(0), kind: RunKind::Data });
        }
        let views: Vec<DomainView<'_>> = runs
            .iter()
            .enumerate()
            .map(|(i, runs)| DomainView::new(DomId(i as u16), runs, &[], &[], &[]))
            .collect();
        let region = MfnRange::new(Mfn(start as u64), len as u64);
        let layout = MachineLayout::new(&ram, region, &reserved).unwrap();
        let free = free_ranges(&layout, &views);
        // The region is RAM (the class map makes it so); free frames are
        // exactly the `Free` ones, merged.
        let expected: Vec<MfnRange> = {
            let mut e: Vec<MfnRange> = Vec::new();
            for (i, &c) in classes.iter().enumerate() {
                if c == Class::Free {
                    match e.last_mut() {
                        Some(r) if r.end() == i as u64 => r.count += 1,
                        _ => e.push(MfnRange::new(Mfn(i as u64), 1)),
                    }
                }
            }
            e
        };
        prop_assert_eq!(&free, &expected);
        check_partition(&ram, region, &reserved, &views, &free);
    }
}
