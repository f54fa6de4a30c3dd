//! hvm: a self-checking HVM guest.
//!
//! The hypervisor starts it in 32-bit protected mode with paging off (the
//! HVM boot contract, `pv_abi::start_info::HVM_BOOT_CS`); `pvrt::hvm`'s boot
//! stub builds its page tables, enters long mode and calls `main` here.
//! From then on it runs the same self-checks as the PV domU, by its own
//! guest-physical addresses (its nested page tables are the hypervisor's,
//! it never sees a machine frame): it fills every free page with patterns of
//! (page, generation) (`pvrt::pattern`), then loops: picks a page, checks
//! every word, every fourth time rewrites it with the next generation. It
//! reports its check and mismatch counts (`report`) and prints a heartbeat
//! about once a second; the mismatch count must stay 0, across live
//! updates too. Like the PV domU it times the gaps between its page checks
//! (`pvrt::gap`: `sched_gap_tsc=` in the heartbeat, an `update-pause N:`
//! line after each update).
//!
//! With the command-line word `probe` it first tries the PV-only
//! hypercalls (page tables, reservation, segment bases), which an HVM
//! domain must be refused with `NoSys` (probes 40–44), another domain's
//! memory map and memory (`Permission`, probes 45 and 46), and log-dirty
//! on itself (dom0's alone: `Permission`, probe 47).
//!
//! It polls the device the hypervisor emulates in its PCI hole (the page at
//! `EMU_GPA`): the magic and its domain id once, and at every heartbeat the
//! polled register, (the hypervisor's uptime in µs), which must have gone up (`device_polls=` in the
//! heartbeat); anything else is a mismatch. The word `holefault` makes it
//! read its PCI hole's first page, which has no device: the hypervisor
//! must end it (it announces the fault first); `beyond` reads the first
//! page past its RAM, the same.
//!
//! It keeps a value of its own in `xmm7` (its code is soft-float, nothing
//! else touches it) and checks it at every heartbeat: the x87/SSE state is
//! the hypervisor's to switch between guests and to carry across updates.
//!
//! Its first free page is a marker page whose word 0 is
//! [`marker`]`(domid)`, written once and never again: what dom0 reads by
//! guest frame number (`peek`) before and after an update.
//!
//! With the word `dirty` it writes a known set of pages, for log-dirty
//! tests: the loop only reads its pages under test (no generation is
//! rewritten), and at heartbeat `k` it writes word 0 of the four pages
//! `dirty_area + (4k + j) mod DIRTY_PAGES` (`j` < 4), bracketed by
//! `started = k` (word 1 of the marker page) before and `done = k` (word 2)
//! after, and prints `dirtied k: <gpfns>`. Paused with `started == done`,
//! its pages outside its image written since heartbeat `a` are exactly the
//! marker page and those of heartbeats `a+1..=done`.

#![no_std]
#![no_main]
// Every `unsafe` block of the guest lives in `pvrt`, behind safe functions.
#![deny(unsafe_code)]

use pvrt::gap::Meter;
use pvrt::hc;
use pvrt::hvlu_types::pte::Level;
use pvrt::hvlu_types::DomId;
use pvrt::mem;
use pvrt::pattern::{generation_word, pattern, split};
use pvrt::probe::expect;
use pvrt::pv_abi::call::LogDirtyOp;
use pvrt::pv_abi::hypercall::{Error, MemoryMapEntry, MmuUpdate, Report};
use pvrt::{println, start_info};

pvrt::entry!(main);

/// The marker word of domain `domid`: "HVM_MARK" with the domain id.
fn marker(domid: u64) -> u64 {
    0x4856_4d5f_4d41_524b ^ domid
}

/// The emulated device's page (`hv`'s `hvm::mmio::EMU_GPA`): the last
/// page below 4 GiB.
const EMU_GPA: u64 = 0xffff_f000;
/// Its register 0.
const EMU_MAGIC: u64 = u64::from_le_bytes(*b"HVLUEMU1");

/// Pages of the `dirty` area.
const DIRTY_PAGES: u64 = 64;

/// The pages heartbeat `k` writes in `dirty` mode.
fn dirtied(area: u64, k: u64) -> [u64; 4] {
    core::array::from_fn(|j| area + (4 * k + j as u64) % DIRTY_PAGES)
}

/// The self-checking loop's state.
struct Work {
    /// The first generation-table page.
    table: u64,
    /// The first page under test.
    first: u64,
    /// Pages under test.
    pages: u64,
    checks: u64,
    mismatches: u64,
    rng: u64,
    /// Whether pages are rewritten with the next generation (not in
    /// `dirty` mode, which only reads them).
    rewrite: bool,
    /// The gaps in this work: a mark after every page checked.
    gaps: Meter,
}

impl Work {
    fn generation(&mut self, i: u64) -> u32 {
        let w = mem::WORDS as u64;
        let word = mem::read(self.table + i / w, (i % w) as usize);
        let gen = word as u32;
        if word != generation_word(gen) {
            println!("MISMATCH in the generation table: page {i} has {word:#x}");
            self.mismatches += 1;
        }
        gen
    }

    fn set_generation(&mut self, i: u64, gen: u32) {
        let w = mem::WORDS as u64;
        mem::write(self.table + i / w, (i % w) as usize, generation_word(gen));
    }

    fn fill(&mut self) {
        for i in 0..self.pages {
            let gpfn = self.first + i;
            for w in 0..mem::WORDS {
                mem::write(gpfn, w, pattern(gpfn, 0, w));
            }
            self.set_generation(i, 0);
        }
    }

    fn step(&mut self) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let i = self.rng % self.pages;
        let gpfn = self.first + i;
        let gen = self.generation(i);
        let bad = (0..mem::WORDS)
            .filter(|&w| mem::read(gpfn, w) != pattern(gpfn, gen, w))
            .count();
        if bad != 0 {
            println!("MISMATCH in page gpfn {gpfn:#x}: {bad} words");
            self.mismatches += 1;
        }
        if self.rewrite && self.checks.is_multiple_of(4) {
            let next = gen.wrapping_add(1);
            for w in 0..mem::WORDS {
                mem::write(gpfn, w, pattern(gpfn, next, w));
            }
            self.set_generation(i, next);
        }
        self.checks += 1;
        self.gaps.mark();
    }
}

/// The refusals of `probe`: the PV-only calls on one of its own frames.
fn probes(own_gpfn: u64) {
    let req = [MmuUpdate {
        ptr: own_gpfn << 12,
        val: 0,
    }];
    expect(40, "mmu_update", hc::mmu_update(&req), Error::NoSys);
    expect(
        41,
        "pin_table of its own frame",
        hc::pin_table(own_gpfn, Level::L1),
        Error::NoSys,
    );
    expect(42, "new_baseptr", hc::new_baseptr(own_gpfn), Error::NoSys);
    let mut out = [0u64; 1];
    expect(
        43,
        "increase_reservation",
        hc::increase_reservation(&mut out),
        Error::NoSys,
    );
    expect(
        44,
        "decrease_reservation",
        hc::decrease_reservation(&[own_gpfn]),
        Error::NoSys,
    );
    let mut map = [MemoryMapEntry::default(); 4];
    expect(
        45,
        "dom0's memory map",
        hc::memory_map(DomId(0), &mut map),
        Error::Permission,
    );
    let mut word = [0u8; 8];
    expect(
        46,
        "read_guest of dom0's memory",
        hc::read_guest(DomId(0), 0, 0, &mut word),
        Error::Permission,
    );
    let me = DomId(start_info().domid as u16);
    let mut first = [0u64; 4];
    expect(
        47,
        "log-dirty on itself",
        hc::log_dirty(me, LogDirtyOp::Enable, &mut first),
        Error::Permission,
    );
}

fn main() -> ! {
    let si = start_info();
    let mark = si.first_free_gpfn;
    mem::write(mark, 0, marker(si.domid));
    let quiet = pvrt::cmdline()
        .split_ascii_whitespace()
        .any(|w| w == "dirty");
    let area = mark + 1;
    let Some(free) = si
        .nr_pages
        .checked_sub(area + DIRTY_PAGES)
        .filter(|&f| f >= 8)
    else {
        println!(
            "hvm domU {}: {} pages are too few: it needs {} at least",
            si.domid,
            si.nr_pages,
            area + DIRTY_PAGES + 8
        );
        hc::shutdown(4)
    };
    let (table_pages, pages) = split(free);
    println!(
        "hvm domU {} up: {} pages under test ({} generation-table pages), marker at gpfn {mark:#x}, dirty area at gpfn {area:#x}, image below gpfn {mark:#x}, args `{}`",
        si.domid,
        pages,
        table_pages,
        pvrt::cmdline()
    );
    let word = |w: &str| pvrt::cmdline().split_ascii_whitespace().any(|x| x == w);
    if word("probe") {
        probes(mark);
    }
    let magic = pvrt::hvm::mmio_read(EMU_GPA);
    let id = pvrt::hvm::mmio_read(EMU_GPA + 0x18);
    let mut polls = pvrt::hvm::mmio_read(EMU_GPA + 8);
    // What the hypervisor's CPUID says: a hypervisor is present, and SVM
    // and XSAVE (which it does not offer a guest) are hidden.
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    let cpuid_ok =
        leaf1.ecx & (1 << 31) != 0 && leaf1.ecx & (1 << 26) == 0 && ext.ecx & (1 << 2) == 0;
    println!(
        "cpuid: hypervisor bit {}, xsave {}, svm {} ({})",
        leaf1.ecx >> 31 & 1,
        leaf1.ecx >> 26 & 1,
        ext.ecx >> 2 & 1,
        if cpuid_ok { "ok" } else { "WRONG" }
    );
    let device_ok = magic == EMU_MAGIC && id == si.domid && cpuid_ok;
    // A value in an SSE register that only this guest knows: the hypervisor
    // switches the x87/SSE state between guests and carries it across
    // updates, so it must stay.
    let xmm = marker(si.domid).rotate_left(17);
    pvrt::hvm::xmm_set(xmm);
    println!(
        "emulated device: magic {magic:#x} ({}), domain {id}, poll {polls}",
        if device_ok { "ok" } else { "WRONG" }
    );
    for (w, gpa) in [("holefault", 0xc000_0000), ("beyond", si.nr_pages * 4096)] {
        if word(w) {
            println!(
                "reading guest-physical {gpa:#x} on purpose: the hypervisor must end this domain"
            );
            let _ = hc::report(Report::ExpectFault, 1);
            let v = pvrt::hvm::mmio_read(gpa);
            println!("MISMATCH: read {v:#x} at {gpa:#x} and ran on");
            let _ = hc::report(Report::Mismatches, 1);
        }
    }
    let mut work = Work {
        table: area + DIRTY_PAGES,
        first: area + DIRTY_PAGES + table_pages,
        pages,
        checks: 0,
        mismatches: 0,
        rng: 0x8765_4321 ^ si.domid,
        rewrite: !quiet,
        gaps: Meter::new(),
    };
    if !device_ok {
        work.mismatches += 1;
    }
    work.fill();
    work.gaps.restart();
    let hz = hc::sysinfo().map(|i| i.tick_hz).unwrap_or(100).max(1);
    let mut last_beat = hc::sysinfo().map(|i| i.ticks).unwrap_or(0);
    let mut beats = 0u64;
    loop {
        for _ in 0..64 {
            work.step();
        }
        if mem::read(mark, 0) != marker(si.domid) {
            println!("MISMATCH: the marker page changed");
            work.mismatches += 1;
            mem::write(mark, 0, marker(si.domid));
        }
        let _ = hc::report(Report::Checks, work.checks);
        let _ = hc::report(Report::Mismatches, work.mismatches);
        let info = hc::sysinfo();
        if let Ok(info) = &info {
            work.gaps.look(info);
        }
        let now = info.map(|i| i.ticks).unwrap_or(0);
        if now.wrapping_sub(last_beat) >= hz {
            last_beat = now;
            beats += 1;
            let held = pvrt::hvm::xmm_get();
            if held != xmm {
                println!("MISMATCH: xmm7 holds {held:#x}, not {xmm:#x}");
                work.mismatches += 1;
                pvrt::hvm::xmm_set(xmm);
            }
            let now = pvrt::hvm::mmio_read(EMU_GPA + 8);
            if now <= polls {
                println!("MISMATCH: the device's polled register went from {polls} to {now}");
                work.mismatches += 1;
            }
            polls = now;
            // The new field before `device_polls`, which tests read as
            // the line's last.
            println!(
                "heartbeat {beats}: checks={} mismatches={} {} device_polls={polls}",
                work.checks,
                work.mismatches,
                work.gaps.heartbeat_field()
            );
            if quiet {
                let pages = dirtied(area, beats);
                mem::write(mark, 1, beats);
                for g in pages {
                    mem::write(g, 0, beats);
                }
                mem::write(mark, 2, beats);
                println!(
                    "dirtied {beats}: {:#x} {:#x} {:#x} {:#x}",
                    pages[0], pages[1], pages[2], pages[3]
                );
            }
        }
    }
}
