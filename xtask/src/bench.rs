//! `cargo xtask bench`: the frametable pass on the host, then the blackout
//! of live updates in QEMU.

use hvlu_harness::scenario;

use crate::build::build;
use crate::setup;
use crate::shell::{self, Cmd, Failure};
use crate::soak::boot_with_domus;

/// `cargo xtask bench`.
pub fn bench(ram: Option<u32>) -> Result<(), Failure> {
    shell::step("the frametable pass against a plain write (host)");
    Cmd::cargo("bench")
        .args(["--package", "frame-ownership"])
        .run()?;
    shell::step("blackout against guest memory and domain count (QEMU, TCG)");
    setup::ensure_qemu()?;
    build(true)?;
    blackout_bench(ram)
}

/// Blackout of live updates as guest memory and the number of domains grow:
/// for each configuration, five updates; prints the medians of the phases.
fn blackout_bench(ram: Option<u32>) -> Result<(), Failure> {
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
