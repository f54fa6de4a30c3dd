//! The self-checking loop: every free page filled with a pattern of
//! (page, generation), checked through the remapping window and the
//! physmap, rewritten with the next generation every fourth time.

use pvrt::gap::Meter;
use pvrt::hc;
use pvrt::hvlu_types::pte::{NO_EXECUTE, PRESENT, USER, WRITABLE};
use pvrt::mem;
use pvrt::pv_abi::hypercall::MmuUpdate;
use pvrt::{println, start_info};

use crate::{pte_for, SCRATCH_SLOTS};

pub use pvrt::pattern::{generation_word, pattern, split};

pub struct Workload {
    /// The first generation-table page.
    pub table: u64,
    /// The first page under test.
    pub first: u64,
    pub pages: usize,
    pub checks: u64,
    pub mismatches: u64,
    pub remaps: u64,
    pub rng: u64,
    /// The gaps in this work: a mark after every page checked.
    pub gaps: Meter,
}

impl Workload {
    fn next_page(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % self.pages as u64) as usize
    }

    /// The generation page `i` was last written with, from the table; a
    /// table word that is not a generation word is a mismatch (reported).
    fn generation(&mut self, i: usize) -> u32 {
        let word = mem::read(self.table + (i / mem::WORDS) as u64, i % mem::WORDS);
        let gen = word as u32;
        if word != generation_word(gen) {
            println!("MISMATCH in the generation table: page {i} has {word:#x}");
            self.mismatches += 1;
            self.set_generation(i, gen);
        }
        gen
    }

    fn set_generation(&mut self, i: usize, gen: u32) {
        mem::write(
            self.table + (i / mem::WORDS) as u64,
            i % mem::WORDS,
            generation_word(gen),
        );
    }

    pub fn fill_all(&mut self) {
        for i in 0..self.pages {
            let gpfn = self.first + i as u64;
            for w in 0..mem::WORDS {
                mem::write(gpfn, w, pattern(gpfn, 0, w));
            }
            self.set_generation(i, 0);
        }
    }

    fn map_window(&mut self, slot: u64, gpfn: u64) -> bool {
        let si = start_info();
        let req = MmuUpdate {
            ptr: si.window_pte_maddr + 8 * slot,
            val: pte_for(mem::mfn_of(gpfn), PRESENT | WRITABLE | USER | NO_EXECUTE),
        };
        match hc::mmu_update(&[req]) {
            Ok(_) => {
                self.remaps += 1;
                true
            }
            Err(e) => {
                println!("mmu_update of window slot {slot} failed: {}", e.name());
                self.mismatches += 1;
                false
            }
        }
    }

    pub fn step(&mut self) {
        let i = self.next_page();
        let gpfn = self.first + i as u64;
        let slot = self.checks % SCRATCH_SLOTS;
        if !self.map_window(slot, gpfn) {
            return;
        }
        let gen = self.generation(i);
        let mut bad = 0;
        for w in 0..mem::WORDS {
            if mem::window_read(slot, w) != pattern(gpfn, gen, w) {
                bad += 1;
            }
        }
        if self.checks.is_multiple_of(4) {
            let next = gen.wrapping_add(1);
            for w in 0..mem::WORDS {
                mem::window_write(slot, w, pattern(gpfn, next, w));
            }
            self.set_generation(i, next);
            for w in [0, 1, 255, 511] {
                if mem::read(gpfn, w) != pattern(gpfn, next, w) {
                    bad += 1;
                }
            }
        }
        if bad != 0 {
            println!(
                "MISMATCH in page gpfn {gpfn} (mfn {:#x}): {bad} words",
                mem::mfn_of(gpfn)
            );
            self.mismatches += 1;
        }
        self.checks += 1;
        self.gaps.mark();
    }

    pub fn sweep(&mut self) {
        for i in 0..self.pages {
            let gpfn = self.first + i as u64;
            let gen = self.generation(i);
            if (0..mem::WORDS).any(|w| mem::read(gpfn, w) != pattern(gpfn, gen, w)) {
                println!("MISMATCH in sweep at gpfn {gpfn}");
                self.mismatches += 1;
            }
            self.gaps.mark();
        }
    }
}
