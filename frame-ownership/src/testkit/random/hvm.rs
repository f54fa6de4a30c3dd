//! One random HVM domain: its RAM (below its hole and from 4 GiB up), its
//! nested page tables mapping every RAM frame of its data runs and the
//! device frames of its hole, its log-dirty bitmap.

use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind, NO_GPFN};
use hvlu_types::hole::{Hole, HOLE_END, MIN_HOLE};
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange};
use rand::Rng;

use super::Ctx;
use crate::collect::frame_runs;
use crate::pte::{self, Pte};
use crate::rules::MMIO_CACHE;
use crate::testkit::{runs_of, SimDomain, SimHvm};

/// Flags every present nested entry may have besides P and U.
fn extra(ctx: &mut Ctx<'_>) -> u64 {
    let mut f = 0;
    for (bit, p) in [
        (pte::ACCESSED, 0.5),
        (pte::DIRTY, 0.3),
        (pte::NO_EXECUTE, 0.2),
        (1 << 9, 0.1),
        (1 << 52, 0.1),
    ] {
        if ctx.rng.random_bool(p) {
            f |= bit;
        }
    }
    f
}

/// The leaf table of `gpfn` under `root`, creating tables (and listing
/// them in `p2m`) on the way.
fn leaf_table(ctx: &mut Ctx<'_>, p2m: &mut Vec<Mfn>, root: Mfn, gpfn: u64) -> Mfn {
    let mut table = root;
    for level in [Level::L4, Level::L3, Level::L2] {
        let i = ((gpfn >> (9 * (level.number() - 1))) & 511) as usize;
        let e = ctx.mem.table_mut(table)[i];
        table = if e & pte::PRESENT != 0 {
            Pte(e).mfn()
        } else {
            let t = ctx.pool.alloc();
            ctx.mem.table_mut(t);
            p2m.push(t);
            let flags = pte::PRESENT | pte::USER | pte::WRITABLE | extra(ctx);
            ctx.mem.table_mut(table)[i] = Pte::new(t, flags).0;
            t
        };
    }
    table
}

/// Builds one HVM domain: 8..200 RAM frames mapped (some above its hole
/// at 16 MiB), the device frames of `mmio` that lie in its hole mapped
/// 1:1 uncacheable, log-dirty on (half of the pages dirty and writable,
/// the others clean and read-only) or off (every RAM leaf writable), and
/// junk in non-present entries.
pub(super) fn build_hvm_domain(
    ctx: &mut Ctx<'_>,
    id: DomId,
    mmio: Vec<MfnRange>,
    log_dirty: bool,
) -> SimDomain {
    let hole = Hole::new(MIN_HOLE).expect("16 MiB is a hole");
    let max_frames = hole.start().0 + ctx.rng.random_range(1..0x9_0000u64);
    // RAM indices with a frame: a stretch at the bottom and one around the
    // hole's end (RAM index hole.start() is gpfn 4 GiB).
    let low = ctx.rng.random_range(4..=100u64);
    let high = ctx.rng.random_range(4..=100u64);
    let high_first = hole.start().0 - ctx.rng.random_range(0..high);
    let indices: Vec<u64> = (0..low)
        .chain(high_first..high_first + high)
        .filter(|&i| i < max_frames)
        .collect();

    let root = ctx.pool.alloc();
    ctx.mem.table_mut(root);
    let mut p2m = alloc::vec![root];
    let bitmap = log_dirty.then(|| {
        let frames = max_frames.div_ceil(4096 * 8);
        let first = ctx.pool.alloc();
        // Contiguous: the pool hands out blocks, so take more until one is.
        let mut start = first;
        let mut count = 1;
        while count < frames {
            let m = ctx.pool.alloc();
            if m.0 == start.0 + count {
                count += 1;
            } else {
                start = m;
                count = 1;
            }
        }
        for k in 0..frames {
            ctx.mem.table_mut(Mfn(start.0 + k));
        }
        MfnRange::new(start, frames)
    });

    let mut data = Vec::new();
    let mut runs: Vec<MemRun> = Vec::new();
    for &i in &indices {
        let gpfn = hole.gpfn_of(i).expect("a RAM index");
        let mfn = ctx.pool.alloc();
        data.push(mfn);
        match runs.last_mut() {
            Some(r)
                if r.first_mfn.0 + r.count == mfn.0
                    && r.first_gpfn.0 + r.count == gpfn.0
                    && !ctx.rng.random_bool(0.1) =>
            {
                r.count += 1
            }
            _ => runs.push(MemRun {
                first_mfn: mfn,
                count: 1,
                first_gpfn: gpfn,
                kind: RunKind::Data,
            }),
        }
        let table = leaf_table(ctx, &mut p2m, root, gpfn.0);
        let writable = match bitmap {
            None => true,
            Some(b) => {
                let dirty = ctx.rng.random_bool(0.5);
                if dirty {
                    let word = &mut ctx.mem.table_mut(Mfn(b.start.0 + i / 32768))
                        [((i % 32768) / 64) as usize];
                    *word |= 1 << (i % 64);
                }
                // A clean page is read-only; a dirty one writable, or
                // still read-only (marked dirty by a peek that raced it).
                dirty && ctx.rng.random_bool(0.8)
            }
        };
        let mut flags = pte::PRESENT | pte::USER | extra(ctx);
        if writable {
            flags |= pte::WRITABLE;
        }
        ctx.mem.table_mut(table)[(gpfn.0 & 511) as usize] = Pte::new(mfn, flags).0;
    }

    // The device frames of its hole, 1:1, uncacheable.
    let identity: Vec<MfnRange> = mmio
        .iter()
        .filter(|r| r.start.0 >= hole.start().0 && r.end() <= HOLE_END.0)
        .copied()
        .collect();
    for r in &identity {
        for g in r.start.0..r.end() {
            let table = leaf_table(ctx, &mut p2m, root, g);
            let flags = pte::PRESENT | pte::USER | MMIO_CACHE | pte::WRITABLE;
            ctx.mem.table_mut(table)[(g & 511) as usize] = Pte::new(Mfn(g), flags).0;
        }
    }

    // Junk in non-present entries.
    for &t in &p2m {
        if ctx.rng.random_bool(0.3) {
            let s = ctx.rng.random_range(0..512);
            if ctx.mem.table_mut(t)[s] == 0 {
                ctx.mem.table_mut(t)[s] = ctx.rng.random::<u64>() & !pte::PRESENT;
            }
        }
    }

    let mut sorted = p2m.clone();
    sorted.sort_unstable();
    let mut all_runs = runs;
    // Split the data runs' order: the pass takes them in any order.
    if ctx.rng.random_bool(0.5) {
        all_runs.reverse();
    }
    all_runs.extend(frame_runs(sorted, RunKind::P2m));
    if let Some(b) = bitmap {
        all_runs.extend(runs_of(
            (b.start.0..b.end()).collect(),
            RunKind::LogDirty,
            || false,
        ));
        for r in all_runs.iter_mut().filter(|r| r.kind == RunKind::LogDirty) {
            r.first_gpfn = NO_GPFN;
        }
    }
    let vcpus = ctx.rng.random_range(1..=3);
    SimDomain {
        id,
        runs: all_runs,
        mmio,
        pinned: Vec::new(),
        vcpu_cr3: alloc::vec![root; vcpus],
        tables: Vec::new(),
        data,
        hvm: Some(SimHvm {
            ncr3: root,
            p2m,
            log_dirty: bitmap,
            max_frames,
            hole: Gpfn(hole.start().0),
            identity,
        }),
    }
}
