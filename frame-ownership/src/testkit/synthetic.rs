//! Large regular guests for the benchmark.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind};
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange};

use super::{Machine, SimDomain, SimMemory};
use crate::pte::{self, Pte};
use crate::rules::ENTRIES_PER_TABLE;

/// Frames below this are hv-reserved in a synthetic machine.
const RESERVED: u64 = 256;
/// Size of the live-update region of a synthetic machine, in frames.
const REGION: u64 = 4096;
/// Data runs are cut into runs of at most this many frames.
const DATA_RUN: u64 = 1 << 18;

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// A machine whose `domains` guests own `total_frames` frames in all
/// (data and page tables), laid out like a PV guest's physmap: guest frame
/// `i` of a domain is mapped at virtual page `i` — data writable, its own
/// page tables read-only — by real 4-level tables. Each domain's frames are
/// one machine-contiguous block (data first, then L1, L2, L3, the L4), data
/// cut into runs of 256 Ki frames; the L4 is pinned and two vCPUs run on it.
/// Only page-table frames are backed in [`SimMemory`].
pub fn synthetic_machine(total_frames: u64, domains: usize) -> Machine {
    assert!(domains > 0, "synthetic machine without domains");
    let mut memory = SimMemory::new();
    let mut sims = Vec::with_capacity(domains);
    let mut base = RESERVED;
    for d in 0..domains as u64 {
        let n = total_frames / domains as u64
            + if d == 0 {
                total_frames % domains as u64
            } else {
                0
            };
        sims.push(build(&mut memory, DomId(d as u16), Mfn(base), n));
        base += n;
    }
    let region = MfnRange::new(Mfn(base), REGION);
    let ram_end = base + REGION + 1024;
    Machine {
        ram: vec![MfnRange::new(Mfn(0), ram_end)],
        holes: Vec::new(),
        region,
        hv_reserved: vec![MfnRange::new(Mfn(0), RESERVED)],
        devices: Vec::new(),
        frametable_len: ram_end as usize,
        memory,
        domains: sims,
    }
}

fn build(memory: &mut SimMemory, id: DomId, base: Mfn, n: u64) -> SimDomain {
    let e = ENTRIES_PER_TABLE as u64;
    let l1 = div_ceil(n, e);
    let l2 = div_ceil(l1, e);
    let l3 = div_ceil(l2, e);
    assert!(
        l3 <= 256,
        "synthetic domain too large for one L4's lower half"
    );
    let tables = l1 + l2 + l3 + 1;
    assert!(n > tables, "synthetic domain of {n} frames is too small");
    let data = n - tables;
    let l1_base = base.0 + data;
    let l2_base = l1_base + l1;
    let l3_base = l2_base + l2;
    let l4 = Mfn(l3_base + l3);

    let table_of =
        |count: u64, level_base: u64, child_base: u64, children: u64, flags: u64, rw_below: u64| {
            let mut out = Vec::with_capacity(count as usize);
            for t in 0..count {
                let mut table = Box::new([0u64; ENTRIES_PER_TABLE]);
                for (s, slot) in table.iter_mut().enumerate() {
                    let child = t * e + s as u64;
                    if child < children {
                        let rw = if child < rw_below { pte::WRITABLE } else { 0 };
                        *slot = Pte::new(Mfn(child_base + child), flags | rw).0;
                    }
                }
                out.push((Mfn(level_base + t), table));
            }
            out
        };
    let leaf = pte::PRESENT | pte::USER | pte::ACCESSED;
    let upper = pte::PRESENT | pte::WRITABLE | pte::USER;
    // L1: guest frame i (all n frames) at virtual page i; data writable.
    for (m, t) in table_of(l1, l1_base, base.0, n, leaf, data) {
        memory.push(m, t);
    }
    for (m, t) in table_of(l2, l2_base, l1_base, l1, upper, 0) {
        memory.push(m, t);
    }
    for (m, t) in table_of(l3, l3_base, l2_base, l2, upper, 0) {
        memory.push(m, t);
    }
    for (m, t) in table_of(1, l4.0, l3_base, l3, upper, 0) {
        memory.push(m, t);
    }

    let mut runs = Vec::new();
    let mut off = 0;
    while off < data {
        let count = DATA_RUN.min(data - off);
        runs.push(MemRun {
            first_mfn: Mfn(base.0 + off),
            count,
            first_gpfn: Gpfn(off),
            kind: RunKind::Data,
        });
        off += count;
    }
    for (first, count, kind) in [
        (l1_base, l1, RunKind::L1),
        (l2_base, l2, RunKind::L2),
        (l3_base, l3, RunKind::L3),
        (l4.0, 1, RunKind::L4),
    ] {
        runs.push(MemRun {
            first_mfn: Mfn(first),
            count,
            first_gpfn: Gpfn(first - base.0),
            kind,
        });
    }

    let mut table_list = Vec::with_capacity(tables as usize);
    for (first, count, level) in [
        (l1_base, l1, Level::L1),
        (l2_base, l2, Level::L2),
        (l3_base, l3, Level::L3),
        (l4.0, 1, Level::L4),
    ] {
        table_list.extend((first..first + count).map(|m| (Mfn(m), level)));
    }

    SimDomain {
        id,
        runs,
        mmio: Vec::new(),
        pinned: vec![(l4, RunKind::L4)],
        vcpu_cr3: vec![l4, l4],
        tables: table_list,
        data: (base.0..base.0 + data).map(Mfn).collect(),
        hvm: None,
    }
}

/// A small [`synthetic_machine`] (`domains` guests of 1200..5000 frames
/// each), made irregular from `seed` the ways a physmap gets irregular,
/// so that the L1 entries come in stretches of every length that start
/// and stop anywhere: data runs cut at random frames and listed in a
/// random order; some data mappings made read-only, some cleared, some
/// given another flag; and the free slots of each domain's last L1 table
/// filled with second mappings of random stretches of data frames
/// (writable or not), which overlap the first ones.
pub fn physmap_machine(seed: u64, domains: usize) -> Machine {
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    let mut rng = SmallRng::seed_from_u64(seed);
    let per_domain = rng.random_range(1200..5000);
    let mut m = synthetic_machine(per_domain * domains as u64, domains);
    for d in &mut m.domains {
        // Data runs cut at random frames, in a random order.
        let mut cut = Vec::new();
        for r in d.runs.iter().filter(|r| r.kind == RunKind::Data) {
            let mut off = 0;
            while off < r.count {
                let len = rng
                    .random_range(1..=r.count - off)
                    .min(rng.random_range(1..2000));
                cut.push(MemRun {
                    first_mfn: Mfn(r.first_mfn.0 + off),
                    count: len,
                    first_gpfn: Gpfn(r.first_gpfn.0 + off),
                    kind: RunKind::Data,
                });
                off += len;
            }
        }
        cut.shuffle(&mut rng);
        d.runs.retain(|r| r.kind != RunKind::Data);
        d.runs.splice(0..0, cut);

        // Some mappings of data changed: read-only, cleared, another bit.
        let data = (d.data[0].0, d.data.len() as u64);
        let l1s: Vec<Mfn> = d.tables_of(Level::L1).collect();
        for &t in &l1s {
            let table = m.memory.table_mut(t);
            for e in table.iter_mut() {
                let target = Pte(*e).mfn().0;
                if *e & pte::PRESENT == 0 || target.wrapping_sub(data.0) >= data.1 {
                    continue;
                }
                match rng.random_range(0..200) {
                    0 => *e &= !pte::WRITABLE,
                    1 => *e = 0,
                    2 => *e |= pte::DIRTY,
                    _ => {}
                }
            }
        }

        // The last L1 table's free slots: second mappings of stretches.
        let last = *l1s.last().expect("a synthetic domain has an L1 table");
        let table = m.memory.table_mut(last);
        let mut slot = table.iter().rposition(|&e| e != 0).map_or(0, |i| i + 1);
        while slot < ENTRIES_PER_TABLE {
            let len = rng
                .random_range(1..=40)
                .min((ENTRIES_PER_TABLE - slot) as u64);
            let first = data.0 + rng.random_range(0..data.1 - len);
            let rw = if rng.random_bool(0.5) {
                pte::WRITABLE
            } else {
                0
            };
            for k in 0..len {
                let flags = pte::PRESENT | pte::USER | rw;
                table[slot] = Pte::new(Mfn(first + k), flags).0;
                slot += 1;
            }
            // Now and then a gap.
            slot += usize::from(rng.random_bool(0.3));
        }
    }
    m
}
