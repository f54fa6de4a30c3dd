//! The hypervisor protects itself: a stack overflow hits a guard page and is
//! reported as one (after a cold boot and after a live update), a fault in
//! the hypervisor while it holds its locks is reported instead of hanging,
//! and the physical accessors refuse the hypervisor's own page tables.
//!
//! The triggers are test-only: the host asks for them with the fw_cfg file
//! `opt/hvlu-test/selftest` (`hv/src/arch/selftest.rs`), which no guest can
//! create; each image reads it at its first timer tick.

use std::time::Duration;

use hvlu_harness::scenario::{field, poweroff_pass, wait_all, BOOT};
use hvlu_harness::{Ending, Machine, MachineConfig};
use pv_abi::exit::Outcome;

const LONG: Duration = Duration::from_secs(90);

/// Starts a machine whose host asks for the self-tests `requests`.
fn start(name: &str, requests: &str) -> Machine {
    let mut config = MachineConfig::new(name).unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = format!("{} autostart=domu", config.cmdline);
    config.extra.extend([
        "-fw_cfg".to_string(),
        format!("name=opt/hvlu-test/selftest,string={requests}"),
    ]);
    Machine::start(&config).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits for the end of the run and checks it is the panic code.
fn expect_panic(m: &mut Machine) {
    let ending = m.wait_exit(LONG);
    assert_eq!(
        ending,
        Ending::Outcome(Outcome::Panic),
        "log: {}",
        m.log_path().display()
    );
}

/// The index of the first line containing `needle`.
fn line_of(m: &Machine, needle: &str) -> usize {
    m.transcript
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}`; log: {}", m.log_path().display()))
}

/// Checks the report of a kernel-stack overflow, from line `from` on.
fn check_overflow_report(m: &Machine, from: usize) {
    let overflow = line_of(m, "(hv) FATAL: hypervisor stack overflow: the kernel stack");
    assert!(overflow > from, "log: {}", m.log_path().display());
    let line = &m.transcript[overflow];
    assert!(line.contains("ran into its guard page at 0x"), "{line}");
    let report = &m.transcript[overflow + 1];
    assert!(
        report
            .starts_with("(hv) double fault (vector 8, error code 0x0) in the hypervisor at rip "),
        "{report}"
    );
    assert!(report.contains("cr2 0x"), "{report}");
    let stop = line_of(m, "(hv) FATAL: exception in the hypervisor");
    assert!(stop > overflow, "log: {}", m.log_path().display());
    assert!(
        m.transcript[stop].contains("hypervisor lock held"),
        "{}",
        m.transcript[stop]
    );
}

#[test]
fn a_stack_overflow_hits_the_guard_page_and_stops_the_machine() {
    let mut m = start("selfprot-stack", "stack");
    expect_panic(&mut m);
    let asked = line_of(&m, "(hv) selftest stack: overflowing the kernel stack");
    check_overflow_report(&m, asked);
}

#[test]
fn a_stack_overflow_after_a_live_update_hits_the_new_images_guard_page() {
    let mut m = start("selfprot-stack-lu", "stack@1");
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !m.transcript.iter().any(|l| l.contains("selftest")),
        "the cold-booted image ran a test meant for update 1"
    );
    m.send("live-update hv-b").unwrap_or_else(|e| panic!("{e}"));
    expect_panic(&mut m);
    let entered = line_of(&m, "entered by live update #1");
    // The update completed (its report comes at the first tick, before the
    // self-test) and the overflow is the new image's.
    let report = line_of(&m, "(hv) lu-report seq=1 ");
    assert!(report > entered, "log: {}", m.log_path().display());
    let asked = line_of(&m, "(hv) selftest stack: overflowing the kernel stack");
    assert!(asked > report, "log: {}", m.log_path().display());
    check_overflow_report(&m, asked);
}

#[test]
fn a_fault_in_the_hypervisor_with_its_locks_held_is_reported_not_a_hang() {
    let mut m = start("selfprot-fault", "fault");
    expect_panic(&mut m);
    let asked = line_of(&m, "(hv) selftest fault: loading from 0xffffc00000000000");
    // The fault happened while the console line was being written: the
    // report starts on a line of its own and needed neither lock.
    let report = line_of(
        &m,
        "(hv) page fault (vector 14, error code 0x0) in the hypervisor at rip ",
    );
    assert!(report > asked, "log: {}", m.log_path().display());
    assert!(
        m.transcript[report].ends_with("cr2 0xffffc00000000000"),
        "{}",
        m.transcript[report]
    );
    let stop = line_of(&m, "(hv) FATAL: exception in the hypervisor");
    assert!(stop > report, "log: {}", m.log_path().display());
    assert!(
        m.transcript[stop].contains("hypervisor lock held"),
        "{}",
        m.transcript[stop]
    );
}

#[test]
fn the_physical_accessors_refuse_the_hypervisors_page_tables() {
    const NEEDLE: &str = "(hv) selftest phys: ";
    let mut m = start("selfprot-phys", "phys phys@1");
    let cold = wait_all(&mut m, &[NEEDLE, "(d0) dom0>"], BOOT).remove(0);
    check_refused(&m, &cold);
    let out = hvlu_harness::scenario::cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    // The new image says it entered, then probes its own tables (built
    // after the update), at its first tick: after dom0 may have said
    // `done`.
    wait_all(&mut m, &["entered by live update #1"], LONG);
    let entered = line_of(&m, "entered by live update #1");
    let after = match m.transcript[entered..].iter().find(|l| l.contains(NEEDLE)) {
        Some(line) => line.clone(),
        None => m
            .wait_for_text(NEEDLE, LONG)
            .unwrap_or_else(|e| panic!("{e}")),
    };
    check_refused(&m, &after);
    poweroff_pass(&mut m);
}

/// Checks a `selftest phys` line: every access to every probed page-table
/// frame was refused as such.
fn check_refused(m: &Machine, line: &str) {
    let log = m.log_path().display();
    assert!(
        line.contains("the hypervisor's page tables are refused: root=0x"),
        "{line}; log: {log}"
    );
    assert!(
        line.contains("belong to the hypervisor's own page tables"),
        "{line}; log: {log}"
    );
    let num = |key| field(line, key).unwrap_or_else(|| panic!("no {key}= in {line}"));
    assert!(num("frames") >= 4, "{line}");
    assert!(num("ranges") >= 1, "{line}");
    let probed = num("probed");
    assert!(probed > num("ranges"), "{line}");
    assert_eq!(num("refused"), 5 * probed, "{line}");
}
