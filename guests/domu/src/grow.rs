//! `grow`: frames taken and given back, cycle after cycle, each one
//! checked in between.

use pvrt::hc;
use pvrt::hvlu_types::pte::{NO_EXECUTE, PRESENT, USER, WRITABLE};
use pvrt::mem;
use pvrt::pv_abi::hypercall::MmuUpdate;
use pvrt::{println, start_info};

use crate::workload::pattern;
use crate::{pte_for, SCRATCH_SLOTS};

/// `grow`: takes frames with `increase_reservation` and gives them back
/// with `decrease_reservation`, a batch per turn of the main loop, cycle
/// after cycle: a quarter of its pages each time (its memory limit is 125 %
/// of them). Each new frame must come zeroed; its first and last words get a
/// pattern of (mfn, cycle) through the window, checked again before it is
/// given back — across live updates too. The mfns held are kept in the
/// guest's own last pages.
pub struct Grower {
    /// First gpfn of the pages that hold the mfns taken.
    store: u64,
    /// Frames taken per cycle.
    pub target: u64,
    /// Frames held now.
    held: u64,
    /// Giving back (else taking).
    shrinking: bool,
    /// Cycles completed.
    cycle: u32,
}

impl Grower {
    /// Frames one call takes or gives back.
    pub const BATCH: usize = 512;

    /// A grower for a guest of `nr_pages` pages, with its store in the last
    /// pages: returns it and the number of store pages.
    pub fn new(nr_pages: u64) -> (Grower, u64) {
        let target = (nr_pages / 4).saturating_sub(8);
        let store_pages = target.div_ceil(mem::WORDS as u64);
        let grower = Grower {
            store: nr_pages - store_pages,
            target,
            held: 0,
            shrinking: false,
            cycle: 0,
        };
        (grower, store_pages)
    }

    fn stored(&self, i: u64) -> u64 {
        mem::read(
            self.store + i / mem::WORDS as u64,
            (i % mem::WORDS as u64) as usize,
        )
    }

    fn store(&self, i: u64, mfn: u64) {
        mem::write(
            self.store + i / mem::WORDS as u64,
            (i % mem::WORDS as u64) as usize,
            mfn,
        );
    }

    /// Maps `mfns` (at most a window's worth) at the window's first slots,
    /// runs `f(slot, mfn)` on each, and unmaps them (a frame still mapped
    /// could not be given back). Returns the mismatches `f` found, or one
    /// if the window could not be mapped.
    fn through_window(mfns: &[u64], mut f: impl FnMut(u64, u64) -> u64) -> u64 {
        let si = start_info();
        let mut reqs = [MmuUpdate::default(); SCRATCH_SLOTS as usize];
        let n = mfns.len().min(reqs.len());
        for (slot, (req, &mfn)) in reqs.iter_mut().zip(mfns).enumerate() {
            *req = MmuUpdate {
                ptr: si.window_pte_maddr + 8 * slot as u64,
                val: pte_for(mfn, PRESENT | WRITABLE | USER | NO_EXECUTE),
            };
        }
        if hc::mmu_update(&reqs[..n]) != Ok(n as u64) {
            println!("grow: cannot map frames into the window");
            return 1;
        }
        let bad = mfns[..n]
            .iter()
            .zip(0u64..)
            .map(|(&mfn, slot)| f(slot, mfn))
            .sum();
        for req in &mut reqs[..n] {
            req.val = 0;
        }
        if hc::mmu_update(&reqs[..n]) != Ok(n as u64) {
            println!("grow: cannot unmap the window");
            return bad + 1;
        }
        bad
    }

    /// One batch: takes or gives back up to [`Grower::BATCH`] frames.
    /// Returns the mismatches found (a refused call counts as one).
    pub fn step(&mut self) -> u64 {
        if self.target == 0 {
            return 0;
        }
        let mut batch = [0u64; Self::BATCH];
        let gen = self.cycle;
        let mut bad = 0;
        if !self.shrinking {
            let n = (self.target - self.held).min(Self::BATCH as u64) as usize;
            let got = match hc::increase_reservation(&mut batch[..n]) {
                Ok(k) if k > 0 => k as usize,
                other => {
                    println!("grow: increase_reservation of {n} frames: {other:?}");
                    return 1;
                }
            };
            for chunk in batch[..got].chunks(SCRATCH_SLOTS as usize) {
                bad += Self::through_window(chunk, |slot, mfn| {
                    let fresh = mem::window_read(slot, 0) == 0
                        && mem::window_read(slot, mem::WORDS - 1) == 0;
                    for w in [0, mem::WORDS - 1] {
                        mem::window_write(slot, w, pattern(mfn, gen, w));
                    }
                    if fresh {
                        0
                    } else {
                        println!("MISMATCH: new frame {mfn:#x} is not zeroed");
                        1
                    }
                });
            }
            for (i, &mfn) in batch[..got].iter().enumerate() {
                self.store(self.held + i as u64, mfn);
            }
            self.held += got as u64;
            if self.held == self.target {
                self.shrinking = true;
            }
        } else {
            let n = self.held.min(Self::BATCH as u64) as usize;
            let first = self.held - n as u64;
            for (i, slot) in batch[..n].iter_mut().enumerate() {
                *slot = self.stored(first + i as u64);
            }
            for chunk in batch[..n].chunks(SCRATCH_SLOTS as usize) {
                bad += Self::through_window(chunk, |slot, mfn| {
                    let ok = [0, mem::WORDS - 1]
                        .iter()
                        .all(|&w| mem::window_read(slot, w) == pattern(mfn, gen, w));
                    if ok {
                        0
                    } else {
                        println!("MISMATCH: taken frame {mfn:#x} lost its pattern");
                        1
                    }
                });
            }
            match hc::decrease_reservation(&batch[..n]) {
                Ok(k) if k == n as u64 => {}
                other => {
                    println!("grow: decrease_reservation of {n} frames: {other:?}");
                    return bad + 1;
                }
            }
            self.held = first;
            if self.held == 0 {
                self.cycle += 1;
                self.shrinking = false;
                println!(
                    "grow cycle {} done: {} frames taken and given back",
                    self.cycle, self.target
                );
            }
        }
        bad
    }
}
