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
//! across live updates too. It also times, with the TSC, the gaps between
//! its page checks (`pvrt::gap`): the heartbeat ends with the largest
//! ordinary one since the last (`sched_gap_tsc=`, the other domains'
//! turns), and after each live update it prints the one that held the
//! update (`update-pause N: gap_tsc=… gap_us=… hv=…`).
//!
//! At start it reads its memory map (`memory_map`), prints it and checks it
//! against its own pages ([`memmap`]), exercises the page-table hypercalls
//! once (new frames, pin, unpin, base-pointer switch, giving frames back),
//! then starts the loop.
//!
//! Command-line words change what it does first:
//! - `probe`: tries hypercalls that must be refused (privileged calls,
//!   live-update calls, the machine's memory map and another domain's,
//!   reading another domain's memory by gpfn, mapping a frame it does not
//!   own, a writable mapping of its own page
//!   table, a pointer outside its memory, arguments that do not decode)
//!   and reports each result;
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
//!   of it;
//! - `bar=ADDR` (hex) with `probe`: also tries to map the device memory at
//!   `ADDR`, which it was not given, uncacheable and cacheable: both must
//!   be refused for permission;
//! - `edu=ADDR` (hex): drives QEMU's edu device whose BAR 0 is at `ADDR`
//!   once dom0 grants it (`iomem permit`): a check at every heartbeat
//!   (identification, liveness, a factorial), counted in its heartbeat
//!   (`edu_checks=`, `edu_failures=`); a failure is a mismatch.
//!
//! The loop is [`workload`]; the refusals of `probe` and `giveback` are
//! [`mod@probes`]; the page-table exercise is [`tables`]; `grow` is [`grow`];
//! the edu driver is [`device`].

#![no_std]
#![no_main]
// Every `unsafe` block of the guest lives in `pvrt`, behind safe functions.
#![deny(unsafe_code)]

mod device;
mod grow;
mod memmap;
mod probes;
mod tables;
mod workload;

use pvrt::gap::Meter;
use pvrt::hc;
use pvrt::hvlu_types::pte::Pte;
use pvrt::hvlu_types::Mfn;
use pvrt::mem;
use pvrt::pv_abi::hypercall::Report;
use pvrt::pv_abi::start_info::WINDOW_PAGES;
use pvrt::{println, start_info};

use crate::device::Driver;
use crate::grow::Grower;
use crate::probes::{device_probes, giveback, probes};
use crate::tables::exercise_tables;
use crate::workload::{split, Workload};

pvrt::entry!(main);

/// The remapping window's slots (`pv_abi::start_info::WINDOW_PAGES`): the
/// workload and `grow` take the first `SCRATCH_SLOTS`, a driver's device
/// registers [`DEVICE_SLOT`] for good, the page-table exercise and the
/// probes the last one, [`LAST_SLOT`], for a moment.
const SCRATCH_SLOTS: u64 = WINDOW_PAGES - 2;
/// Where a driver (`edu=`) keeps its device mapped.
const DEVICE_SLOT: u64 = WINDOW_PAGES - 2;
/// The slot the page-table exercise and the probes map things at.
const LAST_SLOT: u64 = WINDOW_PAGES - 1;

/// The value of command-line word `key=0x...` (hex, `0x` optional).
fn hex_arg(cmdline: &str, key: &str) -> Option<u64> {
    cmdline.split_ascii_whitespace().find_map(|w| {
        let v = w.strip_prefix(key)?.strip_prefix('=')?;
        u64::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
    })
}

/// A page-table entry mapping machine frame `mfn` with `flags`.
fn pte_for(mfn: u64, flags: u64) -> u64 {
    Pte::new(Mfn(mfn), flags).0
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
    let has_maps = memmap::check_own_map();
    if probe {
        probes(has_maps);
        if let Some(bar) = hex_arg(cmdline, "bar") {
            device_probes(bar);
        }
    }
    let mut driver = hex_arg(cmdline, "edu").map(Driver::new);
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
        gaps: Meter::new(),
    };
    work.fill_all();
    work.gaps.restart();
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
        let edu_failures = driver.as_ref().map_or(0, |d| d.failures);
        let _ = hc::report(Report::Checks, work.checks);
        let _ = hc::report(Report::Mismatches, work.mismatches + edu_failures);
        let info = hc::sysinfo();
        if let Ok(info) = &info {
            work.gaps.look(info);
        }
        let now = info.map(|i| i.ticks).unwrap_or(0);
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
            match &mut driver {
                Some(d) => {
                    d.step();
                    println!(
                        "heartbeat {beats}: checks={} remaps={} mismatches={} {} edu_checks={} edu_failures={}",
                        work.checks,
                        work.remaps,
                        work.mismatches,
                        work.gaps.heartbeat_field(),
                        d.checks,
                        d.failures
                    );
                }
                None => println!(
                    "heartbeat {beats}: checks={} remaps={} mismatches={} {}",
                    work.checks,
                    work.remaps,
                    work.mismatches,
                    work.gaps.heartbeat_field()
                ),
            }
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
