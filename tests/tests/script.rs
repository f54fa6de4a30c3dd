//! `cargo xtask run --script`: a dom0 script runs to the end and the run
//! passes on the hypervisor's verdict.

use std::time::Duration;

use tests::scenario::{run_script, verdict};
use tests::{Machine, MachineConfig};

#[test]
fn smoke_script_passes_with_two_domus_running() {
    let script = std::fs::read_to_string(tests::qemu::root().join("tests/scripts/smoke.txt"))
        .expect("tests/scripts/smoke.txt");
    let mut config = MachineConfig::new("script-smoke").unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = format!("{} autostart=domu,domu", config.cmdline);
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let run =
        run_script(&mut m, &script, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    run.all_lines_run().unwrap_or_else(|e| panic!("{e}"));
    let summary = verdict(&m, run.ending).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.contains("3 domains"), "{summary}");
    assert!(
        m.lines_with("(d3) heartbeat 1:").next().is_some(),
        "the scripted domU ran"
    );
    assert_eq!(
        m.lines_with("(hv) report d").count(),
        4,
        "dom0, two domUs and the destroyed d3"
    );
}

#[test]
fn a_script_with_a_refused_line_reports_it_and_fails_at_the_end() {
    let script = "# a comment\nfree\n\u{1f600} poweroff\nlist\n";
    let config = MachineConfig::new("script-refused").unwrap_or_else(|e| panic!("{e}"));
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let run =
        run_script(&mut m, script, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "no wait for an echo that never comes"
    );
    assert_eq!(run.refused.len(), 1, "{:?}", run.refused);
    assert_eq!(run.refused[0].0, 3, "the script's line 3");
    assert!(run.refused[0].1.contains("byte 0xf0 at column 1"));
    let err = run.all_lines_run().unwrap_err();
    assert!(err.contains("line 3:"), "{err}");
    // The lines after it ran, and the system itself passed.
    assert!(m.lines_with("(d0) > list").next().is_some());
    verdict(&m, run.ending).unwrap_or_else(|e| panic!("{e}"));
}
