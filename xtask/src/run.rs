//! `cargo xtask run`: the system in QEMU, on the terminal or from a script.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Boots dom0 and `domus` domUs (on `ram` MiB of RAM, if given); runs
/// `script` (checked by [`read_script`]) or forwards the terminal.
pub fn run(
    script: Option<Script>,
    domus: u32,
    timeout: u64,
    ram: Option<u32>,
) -> Result<(), Failure> {
    let name = if script.is_some() {
        "run-script"
    } else {
        "run"
    };
    let mut config = MachineConfig::new(name).map_err(Failure::Failed)?;
    if let Some(mib) = ram {
        config.set_ram(mib);
    }
    if domus > 0 {
        let list = vec!["domu"; domus as usize].join(",");
        config.cmdline = format!("{} autostart={list}", config.cmdline);
    }
    config.hostlink = Some(hostlink_socket());
    let mut machine = Machine::start(&config).map_err(Failure::Failed)?;
    machine.echo(true);
    println!(
        "xtask: host link at {}: `cargo xtask live-update --image PATH` updates this system",
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

/// Boots a machine named `name` with dom0 and `domus` domUs of `guest_mib`
/// MiB each, and waits for every domU's first heartbeat. Its RAM is `ram`
/// MiB if given, else enough for the domUs.
fn boot_with_domus(
    name: &str,
    domus: u32,
    guest_mib: u64,
    ram: Option<u32>,
    domu_args: &str,
) -> Result<Machine, Failure> {
    let mut config = MachineConfig::new(name).map_err(Failure::Failed)?;
    // dom0 (8 MiB) and the domUs, with room to spare.
    config.mem_mib = (256 + u64::from(domus) * guest_mib * 2).min(3072) as u32;
    if let Some(mib) = ram {
        config.set_ram(mib);
    }
    let mut machine = Machine::start(&config).map_err(Failure::Failed)?;
    machine
        .wait_for_text("(d0) dom0>", scenario::BOOT)
        .map_err(Failure::Failed)?;
    for _ in 0..domus {
        let out = machine
            .command(
                &format!("create domu {} {domu_args}", guest_mib * 1024),
                scenario::CMD,
            )
            .map_err(Failure::Failed)?;
        if !out.iter().any(|l| l.contains("created d")) {
            return Err(Failure::Failed(format!("cannot create a domU: {out:?}")));
        }
    }
    let needles: Vec<String> = (1..=domus)
        .map(|d| format!("(d{d}) heartbeat 1:"))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    scenario::wait_all(&mut machine, &needles, scenario::BOOT);
    Ok(machine)
}

/// `cargo xtask soak`.
pub fn soak(
    updates: u64,
    domus: u32,
    guest_mem: u64,
    settle_ms: u64,
    ram: Option<u32>,
    churn: bool,
) -> Result<(), Failure> {
    let args = if churn { "churn" } else { "" };
    let mut machine = boot_with_domus("soak", domus, guest_mem, ram, args)?;
    let started = std::time::Instant::now();
    let mut churner = scenario::Churn::new(0x5eed_0000 + updates, 4096);
    let summary = if churn {
        // Room for the extra domUs (at most four of 4 MiB alive).
        scenario::soak_with_churn(
            &mut machine,
            &["hv-b", "hv"],
            updates,
            settle_ms,
            &mut churner,
        )
    } else {
        scenario::soak(&mut machine, &["hv-b", "hv"], updates, settle_ms)
    }
    .map_err(Failure::Failed)?;
    if churn {
        println!("soak {churner}");
    }
    let elapsed = started.elapsed();
    machine.send("poweroff").map_err(Failure::Failed)?;
    let ending = machine.wait_exit(scenario::CMD);
    let verdict_line = verdict(&machine, ending);
    println!(
        "soak summary: {summary} ({} s); log: {}",
        elapsed.as_secs(),
        machine.log_path().display()
    );
    match verdict_line {
        Ok(line) if summary.clean(updates) => {
            println!("xtask: soak passed ({line})");
            Ok(())
        }
        Ok(line) => Err(Failure::Failed(format!("soak failed: {summary}; {line}"))),
        Err(e) => Err(Failure::Failed(format!("soak failed: {summary}; {e}"))),
    }
}

fn hostlink_socket() -> PathBuf {
    hvlu_harness::qemu::root().join("target/qemu/hostlink.sock")
}

/// `cargo xtask live-update --image PATH`.
pub fn live_update(image: &std::path::Path) -> Result<(), Failure> {
    let bytes = std::fs::read(image)
        .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", image.display())))?;
    let log = hvlu_harness::qemu::root().join("target/qemu/run.log");
    let reports_before = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("lu-report")
        .count();
    let id = hvlu_harness::hostlink::new_id();
    println!(
        "xtask: sending {} ({} bytes) to dom0 as host-link transfer #{id:08x}",
        image.display(),
        bytes.len()
    );
    let replies = hvlu_harness::hostlink::send_image_as(
        &hostlink_socket(),
        id,
        &bytes,
        hvlu_harness::hostlink::QUIET,
    )
    .map_err(Failure::Failed)?;
    for reply in &replies {
        println!("dom0: {reply}");
    }
    if !replies.last().is_some_and(|r| r.starts_with("done")) {
        return Err(Failure::Failed("the update did not happen".into()));
    }
    // The report line is printed before dom0's `done`; the log may be
    // written a moment later. The wait follows the log: it ends when the
    // log has not grown for the quiet period.
    let mut seen = 0;
    let mut last_growth = std::time::Instant::now();
    while last_growth.elapsed() < scenario::CMD {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.len() != seen {
            seen = text.len();
            last_growth = std::time::Instant::now();
        }
        if let Some(line) = text
            .lines()
            .filter(|l| l.contains("lu-report"))
            .nth(reports_before)
        {
            println!("{line}");
            let f = scenario::fields(line);
            let ok = f.get("digest_equal").map(String::as_str) == Some("yes")
                && f.get("free_equal").map(String::as_str) == Some("yes");
            return if ok {
                Ok(())
            } else {
                Err(Failure::Failed(
                    "the update's equivalence checks failed".into(),
                ))
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Failure::Failed(format!(
        "no report line in {} (it has not grown for {:?})",
        log.display(),
        scenario::CMD
    )))
}

/// Blackout of live updates as guest memory and the number of domains grow:
/// for each configuration, five updates; prints the medians of the phases.
pub fn blackout_bench(ram: Option<u32>) -> Result<(), Failure> {
    const UPDATES: u64 = 5;
    for (domus, guest_mib) in [(1u32, 4u64), (1, 64), (1, 256), (4, 4), (8, 4), (4, 64)] {
        let mut machine = boot_with_domus(
            &format!("bench-{domus}x{guest_mib}"),
            domus,
            guest_mib,
            ram,
            "",
        )?;
        let summary =
            scenario::soak(&mut machine, &["hv-b", "hv"], UPDATES, 100).map_err(Failure::Failed)?;
        let reports: Vec<_> = machine
            .lines_with("(hv) lu-report ")
            .map(scenario::fields)
            .collect();
        let median = |key: &str| {
            let mut v: Vec<u64> = reports
                .iter()
                .filter_map(|f| f.get(key)?.parse().ok())
                .collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        };
        println!(
            "bench blackout domus={domus} guest_mib={guest_mib} frames={} runs={} state_bytes={} \
             blackout_us={} serialise_us={} preflight_us={} jump_us={} boot_us={} verify_us={} pass_us={} \
             resume_us={} release_us={} clean={}",
            median("frames"),
            median("runs"),
            median("state_bytes"),
            median("blackout_us"),
            median("serialise_us"),
            median("preflight_us"),
            median("jump_us"),
            median("boot_us"),
            median("verify_us"),
            median("pass_us"),
            median("resume_us"),
            median("release_us"),
            summary.clean(UPDATES),
        );
        let _ = machine.send("poweroff");
        machine.wait_exit(scenario::CMD);
    }
    Ok(())
}

// Not `mod tests`: that name is the harness crate's here.
#[cfg(test)]
mod script_checks {
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
