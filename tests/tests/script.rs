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
    let ending =
        run_script(&mut m, &script, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let summary = verdict(&m, ending).unwrap_or_else(|e| panic!("{e}"));
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
