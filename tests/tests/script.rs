//! `cargo xtask run --script`: a dom0 script runs to the end and the run
//! passes on the hypervisor's verdict; a script that powers off itself
//! ends the run with that verdict. Scripts dom0 would not run as written
//! are refused before anything boots (host tests of `Script::parse` in
//! `tests/src/scenario.rs`).

use hvlu_harness::scenario::{run_script, Script, CMD};
use hvlu_harness::{Machine, MachineConfig};

#[test]
fn smoke_script_passes_with_two_domus_running() {
    let text = std::fs::read_to_string(hvlu_harness::qemu::root().join("tests/scripts/smoke.txt"))
        .expect("tests/scripts/smoke.txt");
    let script = Script::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut config = MachineConfig::new("script-smoke").unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = format!("{} autostart=domu,domu", config.cmdline);
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let run = run_script(&mut m, &script, CMD).unwrap_or_else(|e| panic!("{e}"));
    let summary = run.verdict(&m).unwrap_or_else(|e| panic!("{e}"));
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
fn a_script_that_powers_off_itself_reports_the_verdict() {
    let script = Script::parse("list\n\tfree  \npoweroff\n# the end\n").unwrap();
    assert!(script.powers_off());
    let config = MachineConfig::new("script-poweroff").unwrap_or_else(|e| panic!("{e}"));
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let run = run_script(&mut m, &script, CMD).unwrap_or_else(|e| panic!("{e}"));
    let summary = run.verdict(&m).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.contains("verdict PASS"), "{summary}");
    // Sent as dom0 runs it: its words joined by single spaces.
    assert!(m.lines_with("(d0) > free").next().is_some());
    assert_eq!(
        m.lines_with("(d0) > poweroff").count(),
        1,
        "powered off once, by the script"
    );
}
