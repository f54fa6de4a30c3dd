//! domU: a self-checking workload.
//!
//! It fills its free pages with patterns derived from (page, generation),
//! then loops forever: it maps a page into its remapping window with
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
//!   of its own page table, a pointer outside its memory) and reports each
//!   result;
//! - `fault`: after two heartbeats, announces and takes a page fault;
//! - `fpu`: after two heartbeats, announces and executes an x87
//!   instruction (the hypervisor runs with CR0.EM: it faults).

#![no_std]
#![no_main]
// Every `unsafe` block of the guest lives in `pvrt`, behind safe functions.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

use pvrt::hc;
use pvrt::hvlu_types::pte::{Pte, GLOBAL, NO_EXECUTE, PRESENT, USER, WRITABLE};
use pvrt::hvlu_types::Mfn;
use pvrt::mem;
use pvrt::pv_abi::hypercall::{DomctlOp, Error, MmuUpdate, Report};
use pvrt::pv_abi::start_info::WINDOW_PAGES;
use pvrt::{println, start_info};

pvrt::entry!(main);

/// Most pages checked (generation table size).
const MAX_PAGES: usize = 16384;
/// The generation each page under test was last written with. The guest has
/// one thread, so relaxed atomics are plain loads and stores here; they only
/// make the shared table safe to use without `static mut`.
static GENERATIONS: [AtomicU32; MAX_PAGES] = [const { AtomicU32::new(0) }; MAX_PAGES];

fn generation(i: usize) -> u32 {
    GENERATIONS[i].load(Ordering::Relaxed)
}

fn set_generation(i: usize, g: u32) {
    GENERATIONS[i].store(g, Ordering::Relaxed)
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

    fn fill_all(&mut self) {
        for i in 0..self.pages {
            let gpfn = self.first + i as u64;
            for w in 0..mem::WORDS {
                mem::write(gpfn, w, pattern(gpfn, 0, w));
            }
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
        let gen = generation(i);
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
            set_generation(i, next);
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
            let gen = generation(i);
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
        hc::domctl_id(DomctlOp::Destroy, 0),
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
            hc::pin_table(new[0], 1),
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
    check(4, "pin it as an L1", hc::pin_table(l1, 1).is_ok());
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
    check(15, "pin it as an L4", hc::pin_table(l4, 4).is_ok());
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

fn main() -> ! {
    let si = start_info();
    let cmdline = pvrt::cmdline();
    let probe = cmdline.split_ascii_whitespace().any(|w| w == "probe");
    let fault = cmdline.split_ascii_whitespace().any(|w| w == "fault");
    let fpu = cmdline.split_ascii_whitespace().any(|w| w == "fpu");
    let pages = ((si.nr_pages - si.first_free_gpfn) as usize).min(MAX_PAGES);
    println!(
        "domU {} up: {} pages under test, args `{cmdline}`",
        si.domid, pages
    );
    if probe {
        probes();
    }
    match exercise_tables() {
        0 => println!("table exercise passed"),
        n => println!("table exercise: {n} steps failed"),
    }
    let mut work = Workload {
        first: si.first_free_gpfn,
        pages,
        checks: 0,
        mismatches: 0,
        remaps: 0,
        rng: 0x1234_5678 ^ si.domid,
    };
    work.fill_all();
    let hz = hc::sysinfo().map(|i| i.tick_hz).unwrap_or(100).max(1);
    let mut last_beat = hc::sysinfo().map(|i| i.ticks).unwrap_or(0);
    let mut beats = 0u64;
    loop {
        for _ in 0..64 {
            work.step();
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
