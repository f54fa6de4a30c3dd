//! `cargo xtask bench`: the frametable pass on the host, then the blackout
//! of live updates in QEMU.

use hvlu_harness::scenario;

use crate::build::build;
use crate::setup;
use crate::shell::{self, Cmd, Failure};
use crate::soak::boot_with_guests;

/// `cargo xtask bench`.
pub fn bench(ram: Option<u32>) -> Result<(), Failure> {
    shell::step("the frametable pass against a plain write (host)");
    Cmd::cargo("bench")
        .args(["--package", "frame-ownership"])
        .run()?;
    shell::step("blackout against guest memory and domain count (QEMU, TCG)");
    setup::ensure_qemu()?;
    build(true)?;
    blackout_bench(ram)?;
    shell::step("an HVM guest's speed before, during and after log-dirty (QEMU, TCG)");
    log_dirty_speed(ram)
}

/// The self-check rate of one HVM domU of 64 MiB (checks per heartbeat,
/// the guest's own clock) before log-dirty, while it tracks the domain
/// with a clean every second (each first write to a page then faults into
/// the hypervisor), and after `off`: the last should be the first again.
/// Under TCG the rate swings by a third from second to second: each phase
/// is 10 heartbeats, and the cycle runs twice.
fn log_dirty_speed(ram: Option<u32>) -> Result<(), Failure> {
    const BEATS: usize = 10;
    let mut m = boot_with_guests("bench-logdirty-speed", "hvm", 1, 64, ram, "")?;
    // Checks per heartbeat over the next `BEATS` heartbeats, `between`
    // run once a second meanwhile.
    let rate = |m: &mut hvlu_harness::Machine, between: &str| -> Result<f64, Failure> {
        let checks = |m: &hvlu_harness::Machine| -> Vec<u64> {
            m.lines_with("(d1) heartbeat ")
                .filter_map(|l| scenario::fields(l).get("checks")?.parse().ok())
                .collect()
        };
        let start = checks(m).len();
        while checks(m).len() < start + BEATS + 1 {
            m.command("sleep 1000", scenario::CMD)
                .map_err(Failure::Failed)?;
            if !between.is_empty() {
                m.command(between, scenario::CMD).map_err(Failure::Failed)?;
            }
        }
        let c = checks(m);
        Ok((c[start + BEATS] - c[start]) as f64 / BEATS as f64)
    };
    let before = rate(&mut m, "")?;
    for cycle in 1..=2 {
        m.command("logdirty 1 on", scenario::CMD)
            .map_err(Failure::Failed)?;
        let tracked = rate(&mut m, "logdirty 1 clean")?;
        m.command("logdirty 1 off", scenario::CMD)
            .map_err(Failure::Failed)?;
        let after = rate(&mut m, "")?;
        println!(
            "bench log-dirty speed cycle {cycle}: checks per heartbeat before={before:.0} tracked={tracked:.0} \
             after_off={after:.0} tracked_vs_before={:.2} after_off_vs_before={:.2}",
            tracked / before.max(1.0),
            after / before.max(1.0)
        );
    }
    let _ = m.send("poweroff");
    m.wait_exit(scenario::CMD);
    Ok(())
}

/// Blackout of live updates as guest memory and the number of domains grow,
/// for PV domUs and for HVM domUs (AMD SVM with nested paging: their VMCBs
/// saved and rebuilt, their nested tables checked by the pass), and for an
/// HVM domU whose writes log-dirty tracks: for each configuration, five
/// updates; prints the medians of the phases, the pass per GiB of guest
/// memory, and for an HVM configuration the ratio of its blackout to the
/// PV configuration of the same size measured in the same run.
fn blackout_bench(ram: Option<u32>) -> Result<(), Failure> {
    const UPDATES: u64 = 5;
    let configs: [(&str, u32, u64, bool); 12] = [
        ("pv", 1, 4, false),
        ("pv", 1, 64, false),
        ("pv", 1, 256, false),
        ("pv", 4, 4, false),
        ("pv", 8, 4, false),
        ("pv", 4, 64, false),
        ("hvm", 1, 4, false),
        ("hvm", 1, 64, false),
        ("hvm", 1, 256, false),
        ("hvm", 4, 4, false),
        ("hvm", 4, 64, false),
        ("hvm", 1, 256, true),
    ];
    let mut pv_blackouts = std::collections::BTreeMap::new();
    for (kind, domus, guest_mib, log_dirty) in configs {
        let module = if kind == "hvm" { "hvm" } else { "domu" };
        let mut machine = boot_with_guests(
            &format!(
                "bench-{kind}-{domus}x{guest_mib}{}",
                if log_dirty { "-ld" } else { "" }
            ),
            module,
            domus,
            guest_mib,
            ram,
            "",
        )?;
        if log_dirty {
            let out = machine
                .command("logdirty 1 on", scenario::CMD)
                .map_err(Failure::Failed)?;
            if !out.iter().any(|l| l.contains("on: done")) {
                return Err(Failure::Failed(format!("bench: logdirty 1 on: {out:?}")));
            }
        }
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
        let blackout = median("blackout_us");
        let guest_gib = (u64::from(domus) * guest_mib) as f64 / 1024.0;
        let vs_pv = if kind == "pv" {
            pv_blackouts.insert((domus, guest_mib), blackout);
            String::new()
        } else {
            pv_blackouts
                .get(&(domus, guest_mib))
                .map_or(String::new(), |&pv| {
                    format!(" blackout_vs_pv={:.2}", blackout as f64 / pv.max(1) as f64)
                })
        };
        println!(
            "bench blackout kind={kind} log_dirty={log_dirty} domus={domus} guest_mib={guest_mib} frames={} runs={} state_bytes={} \
             blackout_us={} serialise_us={} preflight_us={} jump_us={} boot_us={} verify_us={} pass_us={} \
             pass_us_per_guest_gib={:.0} resume_us={} release_us={} clean={}{vs_pv}",
            median("frames"),
            median("runs"),
            median("state_bytes"),
            blackout,
            median("serialise_us"),
            median("preflight_us"),
            median("jump_us"),
            median("boot_us"),
            median("verify_us"),
            median("pass_us"),
            median("pass_us") as f64 / guest_gib,
            median("resume_us"),
            median("release_us"),
            summary.clean(UPDATES),
        );
        let _ = machine.send("poweroff");
        machine.wait_exit(scenario::CMD);
    }
    Ok(())
}
