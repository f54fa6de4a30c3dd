//! `cargo xtask run`: the system in QEMU, on the terminal or from a script.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hvlu_harness::qemu::LinkDevice;
use hvlu_harness::scenario::{self, run_script, verdict, Script};
use hvlu_harness::{Machine, MachineConfig};

use crate::shell::Failure;

/// Reads and checks a `--script` file before anything is built or booted
/// ([`Script::parse`]): a line dom0 would not run as written refuses the
/// whole script, with every such line and why.
pub fn read_script(path: &Path) -> Result<Script, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Failed(format!("cannot read script {}: {e}", path.display())))?;
    Script::parse(&text)
        .map_err(|e| Failure::Failed(format!("script {} refused: {e}", path.display())))
}

/// Boots dom0 and `domus` domUs (on `ram` MiB of RAM, if given; with the
/// PCI device unless `devices` is false, `MachineConfig::devices`; the host
/// link on COM2 if `uart`, else as `MachineConfig::new` says); runs
/// `script` (checked by [`read_script`]) or forwards the terminal.
pub fn run(
    script: Option<Script>,
    domus: u32,
    timeout: u64,
    ram: Option<u32>,
    devices: bool,
    uart: bool,
) -> Result<(), Failure> {
    let name = if script.is_some() {
        "run-script"
    } else {
        "run"
    };
    let mut config = MachineConfig::new(name).map_err(Failure::Failed)?;
    config.devices = devices;
    config.watchdog = Some(crate::soak::WATCHDOG_SECONDS);
    if let Some(mib) = ram {
        config.set_ram(mib);
    }
    if domus > 0 {
        let list = vec!["domu"; domus as usize].join(",");
        config.cmdline = format!("{} autostart={list}", config.cmdline);
    }
    config.hostlink = Some(hostlink_socket());
    if uart {
        config.link = LinkDevice::Uart;
    }
    let mut machine = Machine::start(&config).map_err(Failure::Failed)?;
    machine.echo(true);
    println!(
        "xtask: host link ({}) at {}: `cargo xtask live-update --image PATH` updates this system",
        match config.link {
            LinkDevice::Virtio => "virtio-serial port 1",
            LinkDevice::Uart | LinkDevice::UartBesideVirtio => "COM2",
        },
        hostlink_socket().display()
    );
    let summary = match script {
        Some(script) => run_script(&mut machine, &script, scenario::CMD)
            .map_err(Failure::Failed)?
            .verdict(&machine),
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
            let ending = machine.wait_exit(Duration::from_secs(timeout));
            verdict(&machine, ending)
        }
    };
    let summary = summary.map_err(Failure::Failed)?;
    println!(
        "xtask: run passed ({summary}); log: {}",
        machine.log_path().display()
    );
    Ok(())
}

pub fn hostlink_socket() -> PathBuf {
    hvlu_harness::qemu::root().join("target/qemu/hostlink.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_dom0_would_not_run_as_written_is_refused_before_anything_boots() {
        let dir = std::env::temp_dir().join(format!("hvlu-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bad.txt");
        std::fs::write(&path, "list\npause 1\rdestroy 2\nlisx\u{8}t\n").expect("script");
        let Err(Failure::Failed(e)) = read_script(&path) else {
            panic!("the script was taken");
        };
        assert!(
            e.contains("line 2: the line has a byte 0x0d at column 8"),
            "{e}"
        );
        assert!(
            e.contains("line 3: the line has a byte 0x08 at column 5"),
            "{e}"
        );
        std::fs::write(&path, "list\npoweroff\n").expect("script");
        assert!(read_script(&path).is_ok_and(|s| s.powers_off()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
