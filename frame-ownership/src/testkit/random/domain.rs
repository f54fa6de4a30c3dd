//! One random domain: its data frames, address spaces, page tables, pins
//! and vCPUs.

use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind};
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::Ctx;
use crate::pte::{self, Pte};
use crate::rules::{guest_slots, HV_L4_FIRST_SLOT};
use crate::testkit::{runs_of, SimDomain};

/// A domain under construction.
#[derive(Default)]
struct Dom {
    tables: Vec<(Mfn, Level)>,
    data: Vec<Mfn>,
    /// The L4 of each address space.
    roots: Vec<Mfn>,
    /// Per address space, the (l4, l3, l2) indices of its L1 tables.
    windows: Vec<Vec<(usize, usize, usize)>>,
}

/// Flags of an upper-level (L2..L4) entry: present, never PS.
fn upper_flags(rng: &mut SmallRng) -> u64 {
    let mut f = pte::PRESENT;
    for (bit, p) in [
        (pte::WRITABLE, 0.9),
        (pte::USER, 0.8),
        (pte::ACCESSED, 0.5),
        (pte::NO_EXECUTE, 0.1),
    ] {
        if rng.random_bool(p) {
            f |= bit;
        }
    }
    f
}

/// Flags of an L1 entry other than P and RW: anything the guest may set (G
/// may not be set: Invariant 6, `EntryError::GlobalMapping`).
fn leaf_extra(rng: &mut SmallRng) -> u64 {
    let mut f = 0;
    for (bit, p) in [
        (pte::USER, 0.8),
        (pte::ACCESSED, 0.5),
        (pte::DIRTY, 0.3),
        (pte::HUGE, 0.1), // PAT in an L1 entry: allowed
        (pte::NO_EXECUTE, 0.3),
        (1 << 9, 0.1),
        (1 << 11, 0.1),
        (1 << 52, 0.1),
        (1 << 58, 0.1),
    ] {
        if rng.random_bool(p) {
            f |= bit;
        }
    }
    f
}

fn new_table(ctx: &mut Ctx<'_>, dom: &mut Dom, level: Level) -> Mfn {
    let m = ctx.pool.alloc();
    ctx.mem.table_mut(m);
    dom.tables.push((m, level));
    m
}

/// The L1 table at (l4, l3, l2) under `root`, creating tables on the way.
fn walk_or_create(ctx: &mut Ctx<'_>, dom: &mut Dom, root: Mfn, idx: (usize, usize, usize)) -> Mfn {
    let mut table = root;
    for (i, below) in [(idx.0, Level::L3), (idx.1, Level::L2), (idx.2, Level::L1)] {
        let e = ctx.mem.table_mut(table)[i];
        if e & pte::PRESENT != 0 {
            table = Pte(e).mfn();
        } else {
            let t = new_table(ctx, dom, below);
            let flags = upper_flags(ctx.rng);
            ctx.mem.table_mut(table)[i] = Pte::new(t, flags).0;
            table = t;
        }
    }
    table
}

/// Maps `target` with L1 `flags` (P added) somewhere in a random address
/// space of the domain.
fn map(ctx: &mut Ctx<'_>, dom: &mut Dom, target: Mfn, flags: u64) {
    let space = ctx.rng.random_range(0..dom.roots.len());
    loop {
        let windows = &dom.windows[space];
        let idx = if windows.is_empty() || ctx.rng.random_bool(0.05) {
            let (l4, l3) = match windows.first() {
                Some(&(l4, l3, _)) if ctx.rng.random_bool(0.6) => (
                    l4,
                    if ctx.rng.random_bool(0.5) {
                        l3
                    } else {
                        ctx.rng.random_range(0..512)
                    },
                ),
                _ => (
                    ctx.rng.random_range(0..HV_L4_FIRST_SLOT),
                    ctx.rng.random_range(0..512),
                ),
            };
            let w = (l4, l3, ctx.rng.random_range(0..512));
            dom.windows[space].push(w);
            w
        } else {
            windows[ctx.rng.random_range(0..windows.len())]
        };
        let root = dom.roots[space];
        let l1 = walk_or_create(ctx, dom, root, idx);
        for _ in 0..16 {
            let slot = ctx.rng.random_range(0..512);
            let table = ctx.mem.table_mut(l1);
            if table[slot] == 0 {
                table[slot] = Pte::new(target, flags | pte::PRESENT).0;
                return;
            }
        }
        // Crowded window: open a new one next time round.
        dom.windows[space].clear();
    }
}

/// A free slot (entry 0) of `table` below `limit`, if one is found quickly.
fn free_slot(ctx: &mut Ctx<'_>, table: Mfn, limit: usize) -> Option<usize> {
    (0..32)
        .map(|_| ctx.rng.random_range(0..limit))
        .find(|&i| ctx.mem.table_mut(table)[i] == 0)
}

fn random_table(ctx: &mut Ctx<'_>, dom: &Dom, level: Level) -> Option<Mfn> {
    let of_level: Vec<Mfn> = dom
        .tables
        .iter()
        .filter(|t| t.1 == level)
        .map(|t| t.0)
        .collect();
    (!of_level.is_empty()).then(|| of_level[ctx.rng.random_range(0..of_level.len())])
}

/// Builds one domain's memory and page tables.
pub(super) fn build_domain(ctx: &mut Ctx<'_>, id: DomId, mmio: Vec<MfnRange>) -> SimDomain {
    let mut dom = Dom::default();
    let n_data = ctx.rng.random_range(8..=250);
    for _ in 0..n_data {
        let m = ctx.pool.alloc();
        dom.data.push(m);
    }
    let spaces = ctx.rng.random_range(1..=3);
    for _ in 0..spaces {
        let root = new_table(ctx, &mut dom, Level::L4);
        dom.roots.push(root);
        dom.windows.push(Vec::new());
    }

    // Data: most mapped once, some twice or three times, some not at all;
    // writable or read-only.
    for i in 0..dom.data.len() {
        let target = dom.data[i];
        let p: f64 = ctx.rng.random();
        let times = if p < 0.15 {
            0
        } else if p < 0.85 {
            1
        } else {
            ctx.rng.random_range(2..=3)
        };
        for _ in 0..times {
            let rw = if ctx.rng.random_bool(0.6) {
                pte::WRITABLE
            } else {
                0
            };
            let flags = rw | leaf_extra(ctx.rng);
            map(ctx, &mut dom, target, flags);
        }
    }

    // Orphans: tables nothing references (still validated and counted).
    if ctx.rng.random_bool(0.3) {
        let t = new_table(ctx, &mut dom, Level::L1);
        for _ in 0..ctx.rng.random_range(0..4) {
            let target = dom.data[ctx.rng.random_range(0..dom.data.len())];
            let rw = if ctx.rng.random_bool(0.5) {
                pte::WRITABLE
            } else {
                0
            };
            let flags = pte::PRESENT | rw | leaf_extra(ctx.rng);
            if let Some(s) = free_slot(ctx, t, 512) {
                ctx.mem.table_mut(t)[s] = Pte::new(target, flags).0;
            }
        }
    }
    for (level, below) in [
        (Level::L2, Level::L1),
        (Level::L3, Level::L2),
        (Level::L4, Level::L3),
    ] {
        if ctx.rng.random_bool(0.2) {
            if let Some(child) = random_table(ctx, &dom, below) {
                let t = new_table(ctx, &mut dom, level);
                let flags = upper_flags(ctx.rng);
                let s = ctx.rng.random_range(0..guest_slots(level));
                ctx.mem.table_mut(t)[s] = Pte::new(child, flags).0;
            }
        }
    }

    // Sharing: a table referenced from two places (type count 2 or more).
    for (level, below) in [
        (Level::L4, Level::L3),
        (Level::L3, Level::L2),
        (Level::L2, Level::L1),
    ] {
        if ctx.rng.random_bool(0.5) {
            let parent = if level == Level::L4 {
                Some(dom.roots[ctx.rng.random_range(0..dom.roots.len())])
            } else {
                random_table(ctx, &dom, level)
            };
            let child = random_table(ctx, &dom, below);
            if let (Some(parent), Some(child)) = (parent, child) {
                if let Some(s) = free_slot(ctx, parent, guest_slots(level)) {
                    let flags = upper_flags(ctx.rng);
                    ctx.mem.table_mut(parent)[s] = Pte::new(child, flags).0;
                }
            }
        }
    }

    // PV guests read their own page tables: read-only mappings of some of
    // them (tables created by these mappings stay unmapped).
    let snapshot: Vec<Mfn> = dom.tables.iter().map(|t| t.0).collect();
    for t in snapshot {
        let times = if ctx.rng.random_bool(0.4) {
            1 + usize::from(ctx.rng.random_bool(0.1))
        } else {
            0
        };
        for _ in 0..times {
            let flags = leaf_extra(ctx.rng);
            map(ctx, &mut dom, t, flags);
        }
    }

    // MMIO inside the permitted ranges, uncacheable (rule 7).
    if !mmio.is_empty() {
        for _ in 0..ctx.rng.random_range(0..6) {
            let r = mmio[ctx.rng.random_range(0..mmio.len())];
            let target = Mfn(r.start.0 + ctx.rng.random_range(0..r.count));
            let rw = if ctx.rng.random_bool(0.5) {
                pte::WRITABLE
            } else {
                0
            };
            let flags = rw | (leaf_extra(ctx.rng) & !crate::MMIO_CACHE_BITS) | crate::MMIO_CACHE;
            map(ctx, &mut dom, target, flags);
        }
    }

    // Pins and vCPUs.
    let mut pinned: Vec<(Mfn, RunKind)> = dom
        .roots
        .iter()
        .filter(|_| ctx.rng.random_bool(0.7))
        .map(|&r| (r, RunKind::L4))
        .collect();
    if ctx.rng.random_bool(0.3) {
        let (t, level) = dom.tables[ctx.rng.random_range(0..dom.tables.len())];
        if !pinned.iter().any(|p| p.0 == t) {
            pinned.push((t, RunKind::of_level(level)));
        }
    }
    let vcpu_cr3: Vec<Mfn> = (0..ctx.rng.random_range(1..=4))
        .map(|_| dom.roots[ctx.rng.random_range(0..dom.roots.len())])
        .collect();

    // Junk: non-present entries with other bits set, and the hypervisor's
    // upper-half L4 slots filled with anything (skipped by the rules).
    for &(t, level) in &dom.tables {
        if ctx.rng.random_bool(0.3) {
            for _ in 0..ctx.rng.random_range(1..=4) {
                let junk: u64 = ctx.rng.random::<u64>() & !pte::PRESENT;
                if let Some(s) = free_slot(ctx, t, 512) {
                    ctx.mem.table_mut(t)[s] = junk;
                }
            }
        }
        if level == Level::L4 && ctx.rng.random_bool(0.7) {
            for _ in 0..ctx.rng.random_range(1..=16) {
                let s = ctx.rng.random_range(HV_L4_FIRST_SLOT..512);
                let junk: u64 = ctx.rng.random::<u64>() | pte::PRESENT;
                ctx.mem.table_mut(t)[s] = junk;
            }
        }
    }

    // Runs: group by kind, give gpfns in a random order, list bottom-up.
    let mut runs: Vec<MemRun> = Vec::new();
    let data_mfns: Vec<u64> = dom.data.iter().map(|m| m.0).collect();
    runs.extend(runs_of(data_mfns, RunKind::Data, || {
        ctx.rng.random_bool(0.1)
    }));
    for level in Level::ALL {
        let mfns: Vec<u64> = dom
            .tables
            .iter()
            .filter(|t| t.1 == level)
            .map(|t| t.0 .0)
            .collect();
        runs.extend(runs_of(mfns, RunKind::of_level(level), || {
            ctx.rng.random_bool(0.1)
        }));
    }
    runs.shuffle(ctx.rng);
    let mut gpfn = ctx.rng.random_range(0..1024u64);
    for r in &mut runs {
        r.first_gpfn = Gpfn(gpfn);
        gpfn += r.count + ctx.rng.random_range(0..4u64);
    }
    runs.sort_by_key(|r| r.kind);

    SimDomain {
        id,
        runs,
        mmio,
        pinned,
        vcpu_cr3,
        tables: dom.tables,
        data: dom.data,
        hvm: None,
    }
}
