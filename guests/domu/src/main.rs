//! domU: a self-checking workload.
//!
//! It fills its free pages with patterns derived from (page, generation) —
//! all of them, however much memory it has: the generation of each page is
//! kept in table pages at the start of its free memory (the guest has no
//! heap), sized from its real page count — then loops forever: it maps a page into its remapping window with
//! `mmu_update` (so its page tables change all the time), verifies every
//! word through the window, every fourth time rewrites the page with the
//! next generation, and re-verifies samples through the physmap. It reports
//! its check count and mismatch count to the hypervisor and prints a
//! heartbeat about once a second. The mismatch count must stay 0 forever —
//! across live updates too.
//!
//! At start it exercises the page-table hypercalls once (new frames, pin,
//! unpin, base-pointer switch, giving frames back), then starts the loop.
//!
//! Command-line words change what it does first:
//! - `probe`: tries hypercalls that must be refused (privileged calls,
//!   live-update calls, mapping a frame it does not own, a writable mapping
//!   of its own page table, a pointer outside its memory, arguments that
//!   do not decode) and reports each result;
//! - `fault`: after two heartbeats, announces and takes a page fault;
//! - `fpu`: after two heartbeats, announces and executes an x87
//!   instruction (the hypervisor runs with CR0.EM: it faults);
//! - `giveback`: unmaps its start-info page and tries to give it back and
//!   to pin it as a table, which must both be refused, then maps it again
//!   and runs on;
//! - `grow`: besides the loop, takes a quarter of its pages more with
//!   `increase_reservation` and gives them back with `decrease_reservation`,
//!   cycle after cycle, checking each frame's pattern in between;
//! - `churn`: besides the loop, repeats the page-table exercise (a new
//!   frame pinned as an L1, an L4 copy pinned and run on, both released and
//!   given back) at every heartbeat, so that an update can come at any step
//!   of it.

#![no_std]
#![no_main]
// Every `unsafe` block of the guest lives in `pvrt`, behind safe functions.
#![deny(unsafe_code)]

use pvrt::hc;
use pvrt::hvlu_types::pte::{self, Pte, GLOBAL, NO_EXECUTE, PRESENT, USER, WRITABLE};
use pvrt::hvlu_types::{DomId, Mfn, PAGE_SIZE};
use pvrt::mem;
use pvrt::pv_abi::call::{Domctl, TableLevel};
use pvrt::pv_abi::hypercall::{Error, MmuUpdate, Report};
use pvrt::pv_abi::start_info::{PHYSMAP_VA, START_INFO_VA, WINDOW_PAGES};
use pvrt::{println, start_info};

pvrt::entry!(main);

/// How the free pages `free` (from `first_free_gpfn` to the end of memory)
/// are split: `(table pages, pages under test)`. Each table page holds the
/// generation words of `mem::WORDS` pages under test, so `table` is the
/// least number with `table * WORDS >= free - table`.
fn split(free: u64) -> (u64, u64) {
    let table = free.div_ceil(mem::WORDS as u64 + 1);
    (table, free - table)
}

/// A generation word: the generation in the low half, its complement in the
/// high half, so that any flipped bit of the word shows.
fn generation_word(gen: u32) -> u64 {
    u64::from(gen) | u64::from(!gen) << 32
}

/// A page-table entry mapping machine frame `mfn` with `flags`.
fn pte_for(mfn: u64, flags: u64) -> u64 {
    Pte::new(Mfn(mfn), flags).0
}

fn pattern(gpfn: u64, gen: u32, word: usize) -> u64 {
    let mut x = gpfn.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(gen) << 32) ^ word as u64;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

struct Workload {
    /// The first generation-table page.
    table: u64,
    /// The first page under test.
    first: u64,
    pages: usize,
    checks: u64,
    mismatches: u64,
    remaps: u64,
    rng: u64,
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

    fn fill_all(&mut self) {
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

    fn step(&mut self) {
        let i = self.next_page();
        let gpfn = self.first + i as u64;
        let slot = self.checks % WINDOW_PAGES;
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
    }

    fn sweep(&mut self) {
        for i in 0..self.pages {
            let gpfn = self.first + i as u64;
            let gen = self.generation(i);
            if (0..mem::WORDS).any(|w| mem::read(gpfn, w) != pattern(gpfn, gen, w)) {
                println!("MISMATCH in sweep at gpfn {gpfn}");
                self.mismatches += 1;
            }
        }
    }
}

fn expect(test: u64, what: &str, result: Result<u64, Error>, expected: Error) {
    match result {
        Err(e) if e == expected => {
            println!(
                "probe {test} ({what}): refused with `{}` as expected",
                e.name()
            );
            let _ = hc::report(Report::ExpectedRefusal, test);
        }
        other => {
            println!(
                "probe {test} ({what}): expected `{}`, got {other:?}",
                expected.name()
            );
            let _ = hc::report(Report::UnexpectedResult, test);
        }
    }
}

fn probes() {
    let si = start_info();
    // 1. A privileged hypercall.
    expect(
        1,
        "domctl from a domU",
        hc::domctl(Domctl::Destroy { id: DomId(0) }),
        Error::Permission,
    );
    // 2. Mapping a frame it does not own (frame 0: firmware memory).
    let req = MmuUpdate {
        ptr: si.window_pte_maddr,
        val: pte_for(0, PRESENT | USER | NO_EXECUTE),
    };
    expect(
        2,
        "map a frame it does not own",
        hc::mmu_update(&[req]),
        Error::NotOwner,
    );
    // 3. A writable mapping of its own L4.
    let req = MmuUpdate {
        ptr: si.window_pte_maddr,
        val: pte_for(si.l4_mfn, PRESENT | WRITABLE | USER | NO_EXECUTE),
    };
    expect(
        3,
        "writable mapping of its own page table",
        hc::mmu_update(&[req]),
        Error::TypeViolation,
    );
    // 4. A pointer outside its memory (an unmapped address and the
    //    hypervisor's half).
    expect(
        4,
        "console_write from an unmapped address",
        pvrt::probe::console_write_from(0x7000_0000_0000, 16),
        Error::BadAddress,
    );
    expect(
        5,
        "sysinfo into the hypervisor's memory",
        pvrt::probe::sysinfo_into_hypervisor_half(40),
        Error::BadAddress,
    );
    // 6 and 7. The live-update hypercalls are dom0's.
    expect(
        6,
        "lu_load from a domU",
        hc::lu_load("hv"),
        Error::Permission,
    );
    expect(7, "lu_exec from a domU", hc::lu_exec(), Error::Permission);
    // 13. A dom0-only call whose arguments do not decode: refused for the
    // caller first.
    expect(
        13,
        "an unknown domctl operation from a domU",
        pvrt::probe::domctl_op(99),
        Error::Permission,
    );
    // 14. Arguments that do not decode.
    expect(
        14,
        "pin_table of level 7",
        pvrt::probe::pin_table_at_level(7),
        Error::Invalid,
    );
    // 8. A global mapping hidden in a frame that is then pinned as an L1.
    let mut new = [0u64; 1];
    if hc::increase_reservation(&mut new) == Ok(1) {
        let slot = WINDOW_PAGES - 1;
        let ptr = si.window_pte_maddr + 8 * slot;
        let rw = MmuUpdate {
            ptr,
            val: pte_for(new[0], PRESENT | WRITABLE | USER | NO_EXECUTE),
        };
        let _ = hc::mmu_update(&[rw]);
        let data = mem::mfn_of(si.first_free_gpfn);
        mem::window_write(
            slot,
            0,
            pte_for(data, PRESENT | WRITABLE | USER | NO_EXECUTE | GLOBAL),
        );
        let _ = hc::mmu_update(&[MmuUpdate { ptr, val: 0 }]);
        expect(
            8,
            "pin an L1 holding a global mapping",
            hc::pin_table(new[0], TableLevel::L1),
            Error::TypeViolation,
        );
        let _ = hc::decrease_reservation(&new);
    } else {
        let _ = hc::report(Report::UnexpectedResult, 8);
    }
    // 9. A hypercall with RFLAGS.NT set: the hypervisor returns normally.
    let r = pvrt::probe::yield_with_nested_task_flag();
    if r == 0 {
        println!("probe 9 (hypercall with NT set): returned normally as expected");
        let _ = hc::report(Report::ExpectedRefusal, 9);
    } else {
        println!("probe 9 (hypercall with NT set): returned {r}");
        let _ = hc::report(Report::UnexpectedResult, 9);
    }
}

/// Exercises the page-table hypercalls once: a new frame from
/// `increase_reservation` is filled as an L1 through the window, pinned,
/// refused a writable mapping, mapped read-only, unpinned and given back;
/// then a copy of the current L4 is pinned and run on for a moment. Returns
/// the number of steps that went wrong (each is reported).
fn exercise_tables() -> u64 {
    let si = start_info();
    let slot = WINDOW_PAGES - 1;
    let pte = |slot: u64| si.window_pte_maddr + 8 * slot;
    let mut failures = 0;
    let mut check = |step: u64, what: &str, ok: bool| {
        if !ok {
            println!("table exercise step {step} ({what}) failed");
            let _ = hc::report(Report::UnexpectedResult, 100 + step);
            failures += 1;
        }
    };
    let map = |mfn: u64, rw: bool| MmuUpdate {
        ptr: pte(slot),
        val: pte_for(
            mfn,
            PRESENT | USER | NO_EXECUTE | if rw { WRITABLE } else { 0 },
        ),
    };
    let unmap = MmuUpdate {
        ptr: pte(slot),
        val: 0,
    };

    // A new L1 mapping one of our data pages read-only at index 7.
    let mut new = [0u64; 1];
    check(
        1,
        "increase_reservation",
        hc::increase_reservation(&mut new) == Ok(1),
    );
    let l1 = new[0];
    let data_mfn = mem::mfn_of(si.first_free_gpfn);
    let entry = pte_for(data_mfn, PRESENT | USER | NO_EXECUTE);
    check(
        2,
        "map the new frame writable",
        hc::mmu_update(&[map(l1, true)]).is_ok(),
    );
    mem::window_write(slot, 7, entry);
    check(3, "unmap it", hc::mmu_update(&[unmap]).is_ok());
    check(
        4,
        "pin it as an L1",
        hc::pin_table(l1, TableLevel::L1).is_ok(),
    );
    check(
        5,
        "writable mapping of a pinned L1 is refused",
        hc::mmu_update(&[map(l1, true)]) == Err(Error::TypeViolation),
    );
    check(
        6,
        "read-only mapping of it",
        hc::mmu_update(&[map(l1, false)]).is_ok(),
    );
    check(
        7,
        "its entry reads back",
        mem::window_read(slot, 7) == entry,
    );
    check(
        8,
        "giving back a mapped table is refused",
        hc::decrease_reservation(&new) == Err(Error::Busy),
    );
    check(
        9,
        "unmap and unpin",
        hc::mmu_update(&[unmap]).is_ok() && hc::unpin_table(l1).is_ok(),
    );
    check(10, "give it back", hc::decrease_reservation(&new) == Ok(1));
    check(
        11,
        "giving it back twice is refused",
        hc::decrease_reservation(&new) == Err(Error::NotOwner),
    );

    // A copy of our L4 (the lower-half slots; the hypervisor fills in its
    // own), pinned, switched to and back.
    check(
        12,
        "increase_reservation",
        hc::increase_reservation(&mut new) == Ok(1),
    );
    let l4 = new[0];
    check(
        13,
        "map the new frame writable",
        hc::mmu_update(&[map(l4, true)]).is_ok(),
    );
    for i in 0..256 {
        let e = mem::read_pte(si.pt_first_gpfn + si.pt_count - 1, i);
        mem::window_write(slot, i, e);
    }
    check(14, "unmap it", hc::mmu_update(&[unmap]).is_ok());
    check(
        15,
        "pin it as an L4",
        hc::pin_table(l4, TableLevel::L4).is_ok(),
    );
    check(16, "switch to it", hc::new_baseptr(l4).is_ok());
    check(
        17,
        "memory still reads right",
        mem::mfn_of(si.first_free_gpfn) == data_mfn,
    );
    check(18, "switch back", hc::new_baseptr(si.l4_mfn).is_ok());
    check(
        19,
        "unpin and give it back",
        hc::unpin_table(l4).is_ok() && hc::decrease_reservation(&new) == Ok(1),
    );
    failures
}

/// The L1 entry that maps `va` in the tables the domain started on, by a
/// walk through them (read in the physmap): `(its table's gpfn, its index,
/// its machine address)`.
fn l1_entry(va: u64) -> Option<(u64, usize, u64)> {
    let si = start_info();
    let pt = si.pt_first_gpfn..si.pt_first_gpfn + si.pt_count;
    let gpfn_of = |mfn: u64| pt.clone().find(|&g| mem::mfn_of(g) == mfn);
    let mut table = si.l4_mfn;
    for level in [4u32, 3, 2] {
        let entry = Pte(mem::read_pte(gpfn_of(table)?, pte::index(va, level)));
        if !entry.is_present() || entry.has_huge_bit() {
            return None;
        }
        table = entry.mfn().0;
    }
    let index = pte::index(va, 1);
    Some((gpfn_of(table)?, index, (table << 12) + 8 * index as u64))
}

/// `giveback`: unmaps the start-info page everywhere it is mapped (its
/// fixed address and the physmap), so that nothing but its allocation holds
/// it, then tries to give it back and to pin it as a table — the handover
/// state of a live update must find it among the domain's data frames, so
/// both must be refused — and maps it again. Nothing in between reads the
/// start-info page. Returns whether it is mapped again.
fn giveback() -> bool {
    let si = start_info();
    let Some((si_table, si_index, si_ptr)) = l1_entry(START_INFO_VA) else {
        println!("giveback: the start-info page's mapping was not found");
        let _ = hc::report(Report::UnexpectedResult, 10);
        return true;
    };
    let si_pte = mem::read_pte(si_table, si_index);
    let si_mfn = Pte(si_pte).mfn().0;
    let Some(gpfn) = (0..si.nr_pages).find(|&g| mem::mfn_of(g) == si_mfn) else {
        println!("giveback: the start-info frame {si_mfn:#x} is not in the mfn list");
        let _ = hc::report(Report::UnexpectedResult, 10);
        return true;
    };
    let Some((phys_table, phys_index, phys_ptr)) = l1_entry(PHYSMAP_VA + gpfn * PAGE_SIZE) else {
        println!("giveback: the start-info page's physmap mapping was not found");
        let _ = hc::report(Report::UnexpectedResult, 10);
        return true;
    };
    let phys_pte = mem::read_pte(phys_table, phys_index);
    println!("giveback: unmapping the start-info page (gpfn {gpfn}, mfn {si_mfn:#x})");
    let unmap = [
        MmuUpdate {
            ptr: si_ptr,
            val: 0,
        },
        MmuUpdate {
            ptr: phys_ptr,
            val: 0,
        },
    ];
    if hc::mmu_update(&unmap) != Ok(2) {
        println!("giveback: cannot unmap the start-info page");
        let _ = hc::report(Report::UnexpectedResult, 10);
        let _ = hc::mmu_update(&[
            MmuUpdate {
                ptr: si_ptr,
                val: si_pte,
            },
            MmuUpdate {
                ptr: phys_ptr,
                val: phys_pte,
            },
        ]);
        return true;
    }
    // From here until it is mapped again, nothing may read the start-info
    // page (`start_info()`, `mem`): only hypercalls and the console.
    expect(
        10,
        "give back the start-info page",
        hc::decrease_reservation(&[si_mfn]),
        Error::Permission,
    );
    expect(
        11,
        "pin the start-info page as an L1",
        hc::pin_table(si_mfn, TableLevel::L1),
        Error::Permission,
    );
    let remap = [
        MmuUpdate {
            ptr: si_ptr,
            val: si_pte,
        },
        MmuUpdate {
            ptr: phys_ptr,
            val: phys_pte,
        },
    ];
    match hc::mmu_update(&remap) {
        Ok(2) => {
            println!("giveback: the start-info page is mapped again");
            true
        }
        other => {
            println!("giveback: cannot map the start-info page again: {other:?}");
            let _ = hc::report(Report::UnexpectedResult, 12);
            false
        }
    }
}

/// `grow`: takes frames with `increase_reservation` and gives them back
/// with `decrease_reservation`, a batch per turn of the main loop, cycle
/// after cycle: a quarter of its pages each time (its memory limit is 125 %
/// of them). Each new frame must come zeroed; its first and last words get a
/// pattern of (mfn, cycle) through the window, checked again before it is
/// given back — across live updates too. The mfns held are kept in the
/// guest's own last pages.
struct Grower {
    /// First gpfn of the pages that hold the mfns taken.
    store: u64,
    /// Frames taken per cycle.
    target: u64,
    /// Frames held now.
    held: u64,
    /// Giving back (else taking).
    shrinking: bool,
    /// Cycles completed.
    cycle: u32,
}

impl Grower {
    /// Frames one call takes or gives back.
    const BATCH: usize = 512;

    /// A grower for a guest of `nr_pages` pages, with its store in the last
    /// pages: returns it and the number of store pages.
    fn new(nr_pages: u64) -> (Grower, u64) {
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
        let mut reqs = [MmuUpdate::default(); WINDOW_PAGES as usize];
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
    fn step(&mut self) -> u64 {
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
            for chunk in batch[..got].chunks(WINDOW_PAGES as usize) {
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
            for chunk in batch[..n].chunks(WINDOW_PAGES as usize) {
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

fn main() -> ! {
    let si = start_info();
    let cmdline = pvrt::cmdline();
    let probe = cmdline.split_ascii_whitespace().any(|w| w == "probe");
    let fault = cmdline.split_ascii_whitespace().any(|w| w == "fault");
    let fpu = cmdline.split_ascii_whitespace().any(|w| w == "fpu");
    let give_back = cmdline.split_ascii_whitespace().any(|w| w == "giveback");
    let churn = cmdline.split_ascii_whitespace().any(|w| w == "churn");
    // The grower's store is taken from the end of the pages under test.
    let mut grower = cmdline
        .split_ascii_whitespace()
        .any(|w| w == "grow")
        .then(|| Grower::new(si.nr_pages));
    let store_pages = grower.as_ref().map_or(0, |(_, n)| *n);
    let (table_pages, pages) = split(si.nr_pages - si.first_free_gpfn - store_pages);
    println!(
        "domU {} up: {} pages under test ({} generation-table pages), args `{cmdline}`",
        si.domid, pages, table_pages
    );
    if probe {
        probes();
    }
    if give_back && !giveback() {
        // Its start-info page is gone: nothing can run on.
        hc::shutdown(3);
    }
    match exercise_tables() {
        0 => println!("table exercise passed"),
        n => println!("table exercise: {n} steps failed"),
    }
    let mut work = Workload {
        table: si.first_free_gpfn,
        first: si.first_free_gpfn + table_pages,
        pages: pages as usize,
        checks: 0,
        mismatches: 0,
        remaps: 0,
        rng: 0x1234_5678 ^ si.domid,
    };
    work.fill_all();
    let hz = hc::sysinfo().map(|i| i.tick_hz).unwrap_or(100).max(1);
    let mut last_beat = hc::sysinfo().map(|i| i.ticks).unwrap_or(0);
    let mut beats = 0u64;
    if let Some((g, _)) = &grower {
        println!(
            "grow: {} frames per cycle, in batches of {}",
            g.target,
            Grower::BATCH
        );
    }
    loop {
        for _ in 0..64 {
            work.step();
        }
        if let Some((g, _)) = &mut grower {
            work.mismatches += g.step();
        }
        let _ = hc::report(Report::Checks, work.checks);
        let _ = hc::report(Report::Mismatches, work.mismatches);
        let now = hc::sysinfo().map(|i| i.ticks).unwrap_or(0);
        if now.wrapping_sub(last_beat) >= hz {
            last_beat = now;
            beats += 1;
            if beats.is_multiple_of(8) {
                work.sweep();
            }
            if churn {
                // Each failed step is reported as an unexpected result.
                let _ = exercise_tables();
            }
            println!(
                "heartbeat {beats}: checks={} remaps={} mismatches={}",
                work.checks, work.remaps, work.mismatches
            );
            if fault && beats >= 2 {
                println!("taking a page fault on purpose");
                let _ = hc::report(Report::ExpectFault, 1);
                let _ = mem::read_byte_at(0x7fff_0000_0000);
            }
            if fpu && beats >= 2 {
                println!("using the FPU on purpose");
                let _ = hc::report(Report::ExpectFault, 1);
                pvrt::probe::touch_fpu();
            }
        }
    }
}
