//! `cargo xtask soak`: many live updates in a row on one machine, and the
//! boot of dom0 and self-checking domUs it shares with the benchmark.

use hvlu_harness::scenario::{self, verdict};
use hvlu_harness::{Machine, MachineConfig};

use crate::shell::Failure;

/// Boots a machine named `name` with dom0 and `domus` domUs of `guest_mib`
/// MiB each, and waits for every domU's first heartbeat. Its RAM is `ram`
/// MiB if given, else enough for the domUs.
pub fn boot_with_domus(
    name: &str,
    domus: u32,
    guest_mib: u64,
    ram: Option<u32>,
    domu_args: &str,
) -> Result<Machine, Failure> {
    boot_with_guests(name, "domu", domus, guest_mib, ram, domu_args)
}

/// [`boot_with_domus`] with domUs of boot module `module` (`domu`, PV, or
/// `hvm`).
pub fn boot_with_guests(
    name: &str,
    module: &str,
    domus: u32,
    guest_mib: u64,
    ram: Option<u32>,
    domu_args: &str,
) -> Result<Machine, Failure> {
    let mut config = MachineConfig::new(name).map_err(Failure::Failed)?;
    config.watchdog = Some(WATCHDOG_SECONDS);
    config.mem_mib = default_mem_mib(domus, guest_mib);
    if let Some(mib) = ram {
        config.set_ram(mib);
    }
    boot_guests(&config, module, domus, guest_mib, domu_args)
        .map(|(machine, _)| machine)
        .map_err(Failure::Failed)
}

/// The deadline of the ib700 watchdog that the machines of `cargo xtask
/// run` and `cargo xtask soak` have (`MachineConfig::watchdog`): every
/// update arms it before its jump, the new image disarms it before its
/// guests run.
pub const WATCHDOG_SECONDS: u32 = 10;

/// RAM enough for dom0 (8 MiB) and `domus` domUs of `guest_mib` MiB, with
/// room to spare, at most 3 GiB.
pub fn default_mem_mib(domus: u32, guest_mib: u64) -> u32 {
    (256 + u64::from(domus) * guest_mib * 2).min(3072) as u32
}

/// Boots the machine `config` describes, has dom0 create `domus` domUs of
/// boot module `module` with `guest_mib` MiB each and the command line
/// `domu_args`, and waits for every domU's first heartbeat; returns the
/// machine and the domUs' ids. A large domU takes time to build and to
/// fill its memory before it beats: the waits allow a second more per 8
/// MiB of it.
pub fn boot_guests(
    config: &MachineConfig,
    module: &str,
    domus: u32,
    guest_mib: u64,
    domu_args: &str,
) -> Result<(Machine, Vec<u16>), String> {
    let quiet = scenario::BOOT + std::time::Duration::from_secs(guest_mib / 8);
    let mut machine = Machine::start(config)?;
    machine.wait_for_text("(d0) dom0>", scenario::BOOT)?;
    let mut ids = Vec::new();
    for _ in 0..domus {
        let out = machine.command(
            &format!("create {module} {} {domu_args}", guest_mib * 1024),
            quiet,
        )?;
        let id =
            scenario::created_id(&out).ok_or_else(|| format!("cannot create a domU: {out:?}"))?;
        ids.push(id);
    }
    let needles: Vec<String> = ids.iter().map(|d| format!("(d{d}) heartbeat 1:")).collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    scenario::wait_all(&mut machine, &needles, quiet);
    Ok((machine, ids))
}

/// What a soak does besides the updates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// Toolstack actions between updates, domUs with `churn`.
    pub churn: bool,
    /// dom0 drives edu all along (`edu watch 20`).
    pub devices: bool,
    /// HVM domUs beside the PV ones; log-dirty tracks the first, with a
    /// peek and a clean before every update.
    pub hvm: u32,
}

/// Log-dirty cycles of a soak: the dirty count of every clean.
#[derive(Debug, Default)]
struct DirtyCycles {
    counts: Vec<u64>,
}

impl DirtyCycles {
    /// One cycle on domain `id`: `logdirty peek` then `logdirty clean`, each
    /// with a count; the clean's is the cycle's (it can only have grown).
    fn cycle(&mut self, m: &mut Machine, id: u16) -> Result<(), String> {
        let count = |op: &str, m: &mut Machine| -> Result<u64, String> {
            let out = m.command(&format!("logdirty {id} {op}"), scenario::CMD)?;
            let prefix = format!("(d0) logdirty d{id} {op}: ");
            out.iter()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("soak: `logdirty {id} {op}` failed: {out:?}"))
        };
        let peeked = count("peek", m)?;
        let cleaned = count("clean", m)?;
        if cleaned < peeked {
            return Err(format!(
                "soak: d{id}'s dirty count went down between peek ({peeked}) and clean ({cleaned})"
            ));
        }
        self.counts.push(cleaned);
        Ok(())
    }
}

impl std::fmt::Display for DirtyCycles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut c = self.counts.clone();
        c.sort_unstable();
        match (c.first(), c.get(c.len() / 2), c.last()) {
            (Some(min), Some(median), Some(max)) => write!(
                f,
                "{} peek/clean cycles, dirty pages per cycle min={min} median={median} max={max}",
                c.len()
            ),
            _ => write!(f, "no peek/clean cycle"),
        }
    }
}

/// What dom0 says when its edu watch stops: `edu watch: off after N checks,
/// F failed` gives (N, F).
fn edu_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("edu watch: off after ").nth(1)?;
    let (checks, rest) = rest.split_once(" checks, ")?;
    let failed = rest.strip_suffix(" failed")?;
    Some((checks.parse().ok()?, failed.parse().ok()?))
}

/// `cargo xtask soak`.
pub fn soak(
    updates: u64,
    domus: u32,
    guest_mem: u64,
    settle_ms: u64,
    ram: Option<u32>,
    extras: Extras,
) -> Result<(), Failure> {
    let churn = extras.churn;
    let args = if churn { "churn" } else { "" };
    let mut machine = boot_with_domus("soak", domus, guest_mem, ram, args)?;
    // The HVM domUs, ids after the PV ones; log-dirty on the first.
    let hvm_ids: Vec<u16> = (0..extras.hvm).map(|k| (domus + 1 + k) as u16).collect();
    for &id in &hvm_ids {
        let out = machine
            .command(&format!("create hvm {}", guest_mem * 1024), scenario::CMD)
            .map_err(Failure::Failed)?;
        if !out
            .iter()
            .any(|l| l.contains(&format!("created d{id} from hvm")))
        {
            return Err(Failure::Failed(format!(
                "soak: cannot create HVM d{id}: {out:?}"
            )));
        }
        scenario::wait_all(
            &mut machine,
            &[&format!("(d{id}) heartbeat 1:")],
            scenario::BOOT,
        );
    }
    let tracked = hvm_ids.first().copied();
    if let Some(id) = tracked {
        let out = machine
            .command(&format!("logdirty {id} on"), scenario::CMD)
            .map_err(Failure::Failed)?;
        if !out.iter().any(|l| l.contains("on: done")) {
            return Err(Failure::Failed(format!(
                "soak: log-dirty on d{id} failed: {out:?}"
            )));
        }
    }
    let mut dirty = DirtyCycles::default();
    if extras.devices {
        for line in ["edu", "edu watch 20"] {
            let out = machine
                .command(line, scenario::CMD)
                .map_err(Failure::Failed)?;
            if out
                .iter()
                .any(|l| l.contains("FAILED") || l.contains("no edu device"))
            {
                return Err(Failure::Failed(format!(
                    "soak: dom0's `{line}` failed: {out:?}"
                )));
            }
        }
    }
    let started = std::time::Instant::now();
    let mut churner = scenario::Churn::new(0x5eed_0000 + updates, 4096);
    let summary = scenario::soak_hooked(
        &mut machine,
        &["hv-b", "hv"],
        updates,
        settle_ms,
        &mut |m, _| {
            if churn {
                // Room for the extra domUs (at most four of 4 MiB alive).
                churner.step(m)?;
            }
            match tracked {
                Some(id) => dirty.cycle(m, id),
                None => Ok(()),
            }
        },
    )
    .map_err(Failure::Failed)?;
    if churn {
        println!("soak {churner}");
    }
    if let Some(id) = tracked {
        println!("soak log-dirty on d{id}: {dirty}");
    }
    let dirty_clean = tracked.is_none() || dirty.counts.iter().all(|&n| n > 0);
    let edu = if extras.devices {
        let out = machine
            .command("edu watch off", scenario::CMD)
            .map_err(Failure::Failed)?;
        let counts = out.iter().find_map(|l| edu_counts(l));
        let Some((checks, failed)) = counts else {
            return Err(Failure::Failed(format!(
                "soak: dom0's edu watch did not say how it went: {out:?}"
            )));
        };
        println!("soak edu: {checks} checks, {failed} failed");
        Some((checks, failed))
    } else {
        None
    };
    let edu_clean = edu.is_none_or(|(checks, failed)| checks > 0 && failed == 0);
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
        Ok(line) if summary.clean(updates) && edu_clean && dirty_clean => {
            println!("xtask: soak passed ({line})");
            Ok(())
        }
        Ok(line) => Err(Failure::Failed(format!(
            "soak failed: {summary}{}; {line}",
            edu.map_or(String::new(), |(c, f)| format!(
                ", edu {c} checks {f} failed"
            ))
        ))),
        Err(e) => Err(Failure::Failed(format!("soak failed: {summary}; {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::edu_counts;

    #[test]
    fn the_watch_counts_are_read_from_dom0s_line() {
        assert_eq!(
            edu_counts("(d0) edu watch: off after 230 checks, 0 failed"),
            Some((230, 0))
        );
        assert_eq!(
            edu_counts("(d0) edu watch: off after 7 checks, 2 failed"),
            Some((7, 2))
        );
        assert_eq!(edu_counts("(d0) edu watch: on, 7 checks, 0 failed"), None);
    }
}
