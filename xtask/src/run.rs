//! `cargo xtask run`: the system in QEMU, on the terminal or from a script.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use tests::scenario::{run_script, verdict};
use tests::{Machine, MachineConfig};

use crate::shell::Failure;

/// Boots dom0 and `domus` domUs; runs `script` or forwards the terminal.
pub fn run(script: Option<PathBuf>, domus: u32, timeout: u64) -> Result<(), Failure> {
    let name = if script.is_some() {
        "run-script"
    } else {
        "run"
    };
    let mut config = MachineConfig::new(name).map_err(Failure::Failed)?;
    if domus > 0 {
        let list = vec!["domu"; domus as usize].join(",");
        config.cmdline = format!("{} autostart={list}", config.cmdline);
    }
    let text =
        match &script {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Failure::Failed(format!("cannot read script {}: {e}", path.display()))
            })?),
            None => None,
        };
    let mut machine = Machine::start(&config).map_err(Failure::Failed)?;
    machine.echo(true);
    let limit = Duration::from_secs(timeout);
    let ending = match text {
        Some(text) => run_script(&mut machine, &text, limit).map_err(Failure::Failed)?,
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
    let summary = verdict(&machine, ending).map_err(Failure::Failed)?;
    println!(
        "xtask: run passed ({summary}); log: {}",
        machine.log_path().display()
    );
    Ok(())
}
