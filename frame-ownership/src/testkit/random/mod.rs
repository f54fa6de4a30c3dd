//! Small random machines with real page tables that exercise every rule:
//! the machine here, each domain's memory and page tables in `domain`.

mod domain;
mod hvm;

use alloc::vec;
use alloc::vec::Vec;

use hvlu_types::{DomId, Mfn, MfnRange};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{Machine, SimMemory};
use domain::build_domain;
use hvm::build_hvm_domain;

/// Free RAM frames in a shuffled-blocks order: consecutive allocations are
/// often, but not always, machine-contiguous.
struct Pool {
    /// The free frames, in allocation order.
    frames: Vec<u64>,
    /// The next one to hand out.
    next: usize,
}

impl Pool {
    /// The next free frame.
    fn alloc(&mut self) -> Mfn {
        let m = *self
            .frames
            .get(self.next)
            .expect("random machine: free RAM exhausted; enlarge the RAM map");
        self.next += 1;
        Mfn(m)
    }
}

/// What building a domain draws from.
struct Ctx<'a> {
    /// The machine's random source.
    rng: &'a mut SmallRng,
    /// Free RAM.
    pool: &'a mut Pool,
    /// The memory backing page tables.
    mem: &'a mut SimMemory,
}

/// A random machine with `domains` valid domains, reproducible from `seed`.
///
/// RAM: 2 to 5 ranges of 1200..3000 frames with holes (the first gap is
/// always a hole, later neighbours may be adjacent). A region of 16..128
/// frames and 1..4 hv-reserved ranges inside RAM. Device ranges in some
/// holes and one just past the end of RAM (inside or beyond the frametable).
/// Each domain: 8..250 data frames, 1..3 address spaces, data mapped
/// writable or read-only, some twice, some not at all; read-only mappings of
/// its own tables; shared tables; orphan tables; MMIO mappings into its
/// permitted ranges; junk in non-present entries and in the hypervisor's L4
/// slots; pinned L4s (and sometimes a lower table); 1..4 vCPUs.
pub fn random_machine(seed: u64, domains: usize) -> Machine {
    build_machine(seed, domains, 0)
}

/// A random machine with `pv` PV domains as [`random_machine`] makes them
/// and `hvm` HVM domains after them (every other one with log-dirty on),
/// reproducible from `seed`: each HVM domain has a hole at 16 MiB, RAM
/// below it and from 4 GiB up, nested tables mapping all of it and the
/// device frames of its hole.
pub fn random_hvm_machine(seed: u64, pv: usize, hvm: usize) -> Machine {
    build_machine(seed, pv + hvm, hvm)
}

/// A random machine whose last `hvm` of `domains` domains are HVM.
fn build_machine(seed: u64, domains: usize, hvm: usize) -> Machine {
    let mut rng = SmallRng::seed_from_u64(seed);

    let mut ram = Vec::new();
    let mut holes = Vec::new();
    let mut cur: u64 = rng.random_range(0..8);
    if cur > 0 {
        holes.push(MfnRange::new(Mfn(0), cur));
    }
    let nram = rng.random_range(2..=5);
    for i in 0..nram {
        let len = rng.random_range(1200..3000);
        ram.push(MfnRange::new(Mfn(cur), len));
        cur += len;
        if i + 1 < nram && (i == 0 || rng.random_bool(0.7)) {
            let h = rng.random_range(1..64);
            holes.push(MfnRange::new(Mfn(cur), h));
            cur += h;
        }
    }
    let ram_end = cur;
    let frametable_len = (ram_end + rng.random_range(0..48)) as usize;

    let mut devices = Vec::new();
    for h in &holes {
        if rng.random_bool(0.6) {
            let len = rng.random_range(1..=h.count);
            let off = rng.random_range(0..=h.count - len);
            devices.push(MfnRange::new(Mfn(h.start.0 + off), len));
        }
    }
    devices.push(MfnRange::new(
        Mfn(ram_end + rng.random_range(0..64)),
        rng.random_range(1..32),
    ));

    let r = ram[rng.random_range(0..ram.len())];
    let len = rng.random_range(16..=128).min(r.count);
    let region = MfnRange::new(Mfn(r.start.0 + rng.random_range(0..=r.count - len)), len);

    let mut hv_reserved: Vec<MfnRange> = Vec::new();
    let want = rng.random_range(1..=4);
    for _ in 0..64 {
        if hv_reserved.len() == want {
            break;
        }
        let r = ram[rng.random_range(0..ram.len())];
        let len = rng.random_range(1..=32).min(r.count);
        let cand = MfnRange::new(Mfn(r.start.0 + rng.random_range(0..=r.count - len)), len);
        if !cand.overlaps(region) && !hv_reserved.iter().any(|x| x.overlaps(cand)) {
            hv_reserved.push(cand);
        }
    }
    hv_reserved.sort();

    // Free frames in blocks of 1..=40, blocks shuffled.
    let mut blocks: Vec<Vec<u64>> = Vec::new();
    for r in &ram {
        let mut block = Vec::new();
        for m in r.start.0..r.end() {
            let mfn = Mfn(m);
            let usable = !region.contains(mfn) && !hv_reserved.iter().any(|x| x.contains(mfn));
            if usable {
                block.push(m);
            }
            if (!usable || block.len() >= rng.random_range(1..=40)) && !block.is_empty() {
                blocks.push(core::mem::take(&mut block));
            }
        }
        if !block.is_empty() {
            blocks.push(block);
        }
    }
    blocks.shuffle(&mut rng);
    let mut pool = Pool {
        frames: blocks.into_iter().flatten().collect(),
        next: 0,
    };

    let mut ids = vec![DomId::DOM0];
    while ids.len() < domains {
        let id = if rng.random_bool(0.1) {
            DomId(0xFFFF)
        } else {
            DomId(rng.random_range(1..0xFFFF))
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.truncate(domains);
    if rng.random_bool(0.5) {
        ids.shuffle(&mut rng);
    }

    let mut memory = SimMemory::new();
    let mut sims = Vec::with_capacity(domains);
    for (n, id) in ids.into_iter().enumerate() {
        let mmio: Vec<MfnRange> = devices
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.6))
            .collect();
        let mut ctx = Ctx {
            rng: &mut rng,
            pool: &mut pool,
            mem: &mut memory,
        };
        let hvm_at = n.checked_sub(domains - hvm);
        sims.push(match hvm_at {
            None => build_domain(&mut ctx, id, mmio),
            Some(k) => build_hvm_domain(&mut ctx, id, mmio, k % 2 == 0),
        });
    }

    Machine {
        ram,
        holes,
        region,
        hv_reserved,
        devices,
        frametable_len,
        memory,
        domains: sims,
    }
}
