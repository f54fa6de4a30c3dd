//! `cargo xtask run`: the system in QEMU, on the terminal or from a script.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use pv_abi::exit::Outcome;
use tests::{Ending, Machine, MachineConfig};

use crate::shell::Failure;

fn harness(e: String) -> Failure {
    Failure::Failed(e)
}

/// Boots dom0 and `domus` domUs; runs `script` or forwards the terminal.
pub fn run(script: Option<PathBuf>, domus: u32, timeout: u64) -> Result<(), Failure> {
    let mut config = MachineConfig::new(if script.is_some() {
        "run-script"
    } else {
        "run"
    })
    .map_err(harness)?;
    if domus > 0 {
        let list = vec!["domu"; domus as usize].join(",");
        config.cmdline = format!("{} autostart={list}", config.cmdline);
    }
    let mut machine = Machine::start(&config).map_err(harness)?;
    machine.echo(true);
    let limit = Duration::from_secs(timeout);
    let ending = match script {
        Some(path) => run_script(&mut machine, &path, limit)?,
        None => {
            if let Some(mut stdin) = machine.take_stdin() {
                std::thread::spawn(move || {
                    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                        if writeln!(stdin, "{line}")
                            .and_then(|()| stdin.flush())
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
            machine.wait_exit(limit)
        }
    };
    verdict(&machine, ending)
}

fn run_script(machine: &mut Machine, path: &PathBuf, limit: Duration) -> Result<Ending, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Failed(format!("cannot read script {}: {e}", path.display())))?;
    machine
        .wait_for_text("(d0) dom0>", Duration::from_secs(60))
        .map_err(harness)?;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let extra = line
            .strip_prefix("sleep ")
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
        machine
            .command(line, Duration::from_secs(60) + extra * 4)
            .map_err(harness)?;
    }
    machine.send("poweroff").map_err(harness)?;
    Ok(machine.wait_exit(limit))
}

fn verdict(machine: &Machine, ending: Ending) -> Result<(), Failure> {
    let log = machine.log_path().display().to_string();
    let summary = machine
        .lines_with("(hv) poweroff:")
        .last()
        .map(str::to_string);
    match (ending, summary) {
        (Ending::Outcome(Outcome::Pass), Some(line)) if line.contains("verdict PASS") => {
            println!("xtask: run passed ({line}); log: {log}");
            Ok(())
        }
        (ending, summary) => Err(Failure::Failed(format!(
            "run failed: {ending:?}, summary {}; log: {log}",
            summary.as_deref().unwrap_or("missing")
        ))),
    }
}
