//! Helpers shared by the QEMU scenarios in `tests/tests/`: boot to the dom0
//! prompt, run a command, power off and check the verdict. They panic with
//! the serial log's path, which is what a failing test should show.

use std::time::Duration;

use crate::{Ending, Machine, MachineConfig};

/// Generous: every scenario here runs in seconds of guest time.
pub const BOOT: Duration = Duration::from_secs(60);
/// For one dom0 command.
pub const CMD: Duration = Duration::from_secs(60);

/// Boots a machine named `name` with the given hypervisor command-line
/// additions and waits for dom0's first prompt.
pub fn boot(name: &str, extra_cmdline: &str) -> Machine {
    let mut config = MachineConfig::new(name).unwrap_or_else(|e| panic!("{e}"));
    if !extra_cmdline.is_empty() {
        config.cmdline = format!("{} {extra_cmdline}", config.cmdline);
    }
    let started = std::time::Instant::now();
    let mut machine = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    machine
        .wait_for_text("(d0) dom0>", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{name}: QEMU start to dom0 prompt in {} ms",
        started.elapsed().as_millis()
    );
    machine
}

/// Waits until a line containing each of `needles` has been seen since the
/// machine started, in any order (domains print concurrently). Returns the
/// lines, in `needles` order.
pub fn wait_all(machine: &mut Machine, needles: &[&str], timeout: Duration) -> Vec<String> {
    let mut found: Vec<Option<String>> = needles
        .iter()
        .map(|n| machine.transcript.iter().find(|l| l.contains(n)).cloned())
        .collect();
    let deadline = std::time::Instant::now() + timeout;
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let missing: Vec<&str> = needles
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| *n)
            .collect();
        let line = machine
            .wait_for(&format!("{missing:?}"), left, |l| {
                missing.iter().any(|n| l.contains(n))
            })
            .unwrap_or_else(|e| panic!("{e}"));
        for (needle, slot) in needles.iter().zip(found.iter_mut()) {
            if slot.is_none() && line.contains(needle) {
                *slot = Some(line.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Runs a dom0 command, panicking with the log's path on failure.
pub fn cmd(machine: &mut Machine, line: &str) -> Vec<String> {
    machine.command(line, CMD).unwrap_or_else(|e| panic!("{e}"))
}

/// Powers off and checks the hypervisor's verdict (see [`verdict`]).
pub fn poweroff_pass(machine: &mut Machine) {
    machine.send("poweroff").unwrap_or_else(|e| panic!("{e}"));
    let ending = machine.wait_exit(CMD);
    if let Err(e) = verdict(machine, ending) {
        panic!("{e}");
    }
}

/// The value of `key=` in a `key=value` line.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Runs a dom0 script: waits for the first prompt, types each line (blank
/// lines and `#` comments skipped) and waits for dom0's prompt after it,
/// then powers off and waits for QEMU to end. `sleep <ms>` lines get their
/// time added to the command timeout.
pub fn run_script(machine: &mut Machine, script: &str, limit: Duration) -> Result<Ending, String> {
    machine.wait_for_text("(d0) dom0>", BOOT)?;
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let extra = line
            .strip_prefix("sleep ")
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
        machine.command(line, CMD + extra * 4)?;
    }
    machine.send("poweroff")?;
    Ok(machine.wait_exit(limit))
}

/// The verdict of a run: `Ok(summary line)` only for the hypervisor's pass
/// code together with its `verdict PASS` summary.
pub fn verdict(machine: &Machine, ending: Ending) -> Result<String, String> {
    let log = machine.log_path().display().to_string();
    let summary = machine
        .lines_with("(hv) poweroff:")
        .last()
        .map(str::to_string);
    match (ending, summary) {
        (Ending::Outcome(pv_abi::exit::Outcome::Pass), Some(line))
            if line.contains("verdict PASS") =>
        {
            Ok(line)
        }
        (ending, summary) => Err(format!(
            "run failed: {ending:?}, summary {}; log: {log}",
            summary.as_deref().unwrap_or("missing")
        )),
    }
}
