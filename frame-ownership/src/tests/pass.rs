//! The ways the pass can go agree: frame by frame in list order, or a PV
//! domain run by run with room for many, few or no stretches of mappings
//! (`pass::fused`). Same tables, same report, and on bad input the same
//! error and the same frametable (the run-by-run path undoes what it
//! wrote before the domain goes in list order). The tests in `tests/pass/`
//! compare the default way with the multi-pass reference.

use handover_abi::RunKind;
use hvlu_types::{pte::Level, Mfn};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::pass::{rebuild_with, Options};
use crate::pte::{self, Pte};
use crate::testkit::{physmap_machine, random_hvm_machine, random_machine, Machine};
use crate::{Error, FrameFlags, FrameInfo, PageType, PassReport};

const IN_ORDER: Options = Options {
    fused: false,
    stretches: 0,
};

/// Every other way: the default, and run by run with room for no
/// stretch, 3 or 40 (the rest of the L1 tables then go as in list order,
/// after one table or a few).
const OTHER_WAYS: [Options; 4] = [
    Options::DEFAULT,
    Options {
        fused: true,
        stretches: 0,
    },
    Options {
        fused: true,
        stretches: 3,
    },
    Options {
        fused: true,
        stretches: 40,
    },
];

struct Outcome {
    result: Result<PassReport, Error>,
    frametable: Vec<FrameInfo>,
    m2p: Vec<u64>,
}

fn run(m: &Machine, options: Options, mut frametable: Vec<FrameInfo>) -> Outcome {
    let mut m2p = m.new_tables().1;
    let views = m.views();
    let result = m.layout().and_then(|layout| {
        rebuild_with(
            options,
            &layout,
            &views,
            &m.memory,
            &mut frametable,
            &mut m2p,
        )
    });
    Outcome {
        result,
        frametable,
        m2p,
    }
}

/// Runs every way from `frametable` and checks they agree; the result.
fn agree(m: &Machine, frametable: &[FrameInfo], what: &str) -> Result<PassReport, Error> {
    let base = run(m, IN_ORDER, frametable.to_vec());
    for way in OTHER_WAYS {
        let out = run(m, way, frametable.to_vec());
        assert_eq!(out.result, base.result, "{what}: {way:?}");
        if let Some(mfn) =
            (0..base.frametable.len()).find(|&i| out.frametable[i] != base.frametable[i])
        {
            panic!(
                "{what}: {way:?}: frametable differs at {mfn:#x}: {:?}, in order {:?}",
                out.frametable[mfn], base.frametable[mfn]
            );
        }
        if base.result.is_ok() {
            assert!(out.m2p == base.m2p, "{what}: {way:?}: M2P differs");
        }
    }
    base.result
}

#[test]
fn every_way_builds_the_same_tables() {
    for seed in 0..60 {
        let m = random_machine(seed, 4);
        agree(&m, &m.new_tables().0, &format!("random {seed}")).expect("valid");
    }
    for seed in 0..20 {
        let m = random_hvm_machine(seed, 2, 1);
        agree(&m, &m.new_tables().0, &format!("hvm {seed}")).expect("valid");
        let m = physmap_machine(seed, 1 + seed as usize % 3);
        let report = agree(&m, &m.new_tables().0, &format!("physmap {seed}")).expect("valid");
        // Stretches kept, continued and cut: the last domain's second
        // mappings overlap its first ones.
        assert!(report.domains.iter().any(|d| d.writable_mappings > 0));
    }
}

/// A present L1 entry of a PV domain of `m`, at random: (table, slot).
fn some_l1_entry(m: &Machine, rng: &mut SmallRng) -> (usize, Mfn, usize) {
    loop {
        let d = rng.random_range(0..m.domains.len());
        let l1s: Vec<Mfn> = m.domains[d].tables_of(Level::L1).collect();
        if l1s.is_empty() {
            continue;
        }
        let t = l1s[rng.random_range(0..l1s.len())];
        let table = m.memory.table(t).expect("tables are backed");
        let present: Vec<usize> = (0..table.len())
            .filter(|&i| table[i] & pte::PRESENT != 0)
            .collect();
        if !present.is_empty() {
            return (d, t, present[rng.random_range(0..present.len())]);
        }
    }
}

/// An entry that breaks a rule, made from the entry `old` of domain `d`.
fn bad_entry(m: &Machine, d: usize, old: u64, rng: &mut SmallRng) -> u64 {
    let dom = &m.domains[d];
    let flags = old & !pte::ADDR_MASK;
    let other = &m.domains[(d + 1) % m.domains.len()];
    match rng.random_range(0..6) {
        // Another domain's frame (or, with one domain, a free one).
        0 => {
            let target = other.data.first().map_or(Mfn(m.ram_end() - 1), |f| *f);
            Pte::new(target, flags).0
        }
        // One of its own tables, writable.
        1 => {
            let table = dom.tables[rng.random_range(0..dom.tables.len())].0;
            Pte::new(table, flags | pte::WRITABLE).0
        }
        // A frame of the region.
        2 => Pte::new(m.region.start, flags).0,
        // The same frame, global.
        3 => old | pte::GLOBAL,
        // A device frame, cacheable.
        4 if !m.devices.is_empty() => Pte::new(m.devices[0].start, flags & !pte::CACHE_DISABLE).0,
        // Not RAM, and no device.
        _ => Pte::new(Mfn(1 << 39), flags).0,
    }
}

#[test]
fn every_way_refuses_a_bad_entry_alike() {
    let mut rng = SmallRng::seed_from_u64(17);
    for seed in 0..80 {
        let mut m = if seed % 2 == 0 {
            random_machine(seed, 3)
        } else {
            physmap_machine(seed, 3)
        };
        let (d, table, slot) = some_l1_entry(&m, &mut rng);
        let old = m.memory.table(table).expect("backed")[slot];
        let bad = bad_entry(&m, d, old, &mut rng);
        m.memory.table_mut(table)[slot] = bad;
        let what = format!("seed {seed}: entry {slot} of {table:?} = {bad:#x}");
        let result = agree(&m, &m.new_tables().0, &what);
        assert!(
            matches!(result, Err(Error::Entry { .. })),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn every_way_meets_a_frametable_not_zeroed_alike() {
    let mut rng = SmallRng::seed_from_u64(5);
    for seed in 0..60 {
        let m = if seed % 2 == 0 {
            random_machine(seed, 3)
        } else {
            physmap_machine(seed, 2)
        };
        // A frame of some run, data or table, or a free one.
        let d = &m.domains[rng.random_range(0..m.domains.len())];
        let run = d.runs[rng.random_range(0..d.runs.len())];
        let mfn = run.first_mfn.0 + rng.random_range(0..run.count);
        let value = match rng.random_range(0..4) {
            0 => FrameInfo::new(None, PageType::None, 0, u32::MAX, FrameFlags::EMPTY),
            1 => FrameInfo::new(Some(d.id), PageType::L1, 0, 1, FrameFlags::EMPTY),
            2 => FrameInfo::new(None, PageType::Writable, 1, 3, FrameFlags::EMPTY),
            _ => FrameInfo::new(None, PageType::None, 0, 0, FrameFlags::PINNED),
        };
        let mut frametable = m.new_tables().0;
        frametable[mfn as usize] = value;
        agree(
            &m,
            &frametable,
            &format!("seed {seed}: {mfn:#x} = {value:?}"),
        )
        .ok();
    }
}

#[test]
fn every_way_names_a_frame_claimed_twice_alike() {
    for seed in 0..40 {
        let mut m = physmap_machine(seed, 3);
        // A data run of one domain grown over the frames next to it (its
        // own, or the domain's before it): a frame claimed twice.
        let d = (seed as usize) % 3;
        let run = m.domains[d]
            .runs
            .iter_mut()
            .find(|r| r.kind == RunKind::Data)
            .expect("data");
        if d == 0 {
            run.count += 1 + seed % 7;
        } else {
            run.first_mfn = Mfn(run.first_mfn.0 - 1 - seed % 7);
            run.count += 1 + seed % 7;
        }
        let result = agree(&m, &m.new_tables().0, &format!("seed {seed}"));
        assert!(result.is_err(), "seed {seed}: {result:?}");
    }
}
