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
    boot_with(name, extra_cmdline, |_| {})
}

/// [`boot`], with `setup` changing the machine first (its RAM, say).
pub fn boot_with(
    name: &str,
    extra_cmdline: &str,
    setup: impl FnOnce(&mut MachineConfig),
) -> Machine {
    let mut config = MachineConfig::new(name).unwrap_or_else(|e| panic!("{e}"));
    setup(&mut config);
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

/// Waits, up to `timeout`, for the next heartbeat of domain `dom` after
/// those already seen: the guest runs and verifies.
pub fn next_heartbeat(machine: &mut Machine, dom: u16, timeout: Duration) {
    let prefix = format!("(d{dom}) heartbeat ");
    let n = machine.lines_with(&prefix).count() as u64;
    machine
        .wait_for_text(&format!("{prefix}{}:", n + 1), timeout)
        .unwrap_or_else(|e| panic!("{e}"));
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

/// What a script run ended with.
#[derive(Debug)]
pub struct ScriptRun {
    /// How QEMU ended.
    pub ending: Ending,
    /// The lines dom0 refused: (line number in the script, from 1; dom0's
    /// reason).
    pub refused: Vec<(usize, String)>,
}

impl ScriptRun {
    /// `Ok(())` if dom0 ran every line; else which lines it refused, and
    /// why.
    pub fn all_lines_run(&self) -> Result<(), String> {
        if self.refused.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .refused
            .iter()
            .map(|(n, why)| format!("line {n}: {why}"))
            .collect();
        Err(format!(
            "dom0 refused {} script line(s): {}",
            self.refused.len(),
            lines.join("; ")
        ))
    }
}

/// Runs a dom0 script: waits for the first prompt, types each line (blank
/// lines and `#` comments skipped) and waits for dom0's prompt after it,
/// then powers off and waits for QEMU to end. `sleep <ms>` lines get their
/// time added to the command timeout. A line dom0 refuses is reported
/// (`script line N refused: <why>`) and the script goes on; the caller
/// fails the run on [`ScriptRun::refused`].
pub fn run_script(
    machine: &mut Machine,
    script: &str,
    limit: Duration,
) -> Result<ScriptRun, String> {
    machine.wait_for_text("(d0) dom0>", BOOT)?;
    let mut refused = Vec::new();
    for (n, line) in script
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
    {
        let extra = line
            .strip_prefix("sleep ")
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
        let out = machine.command(line, CMD + extra * 4)?;
        if let Some(why) = out
            .iter()
            .find_map(|l| l.strip_prefix(crate::qemu::REFUSED))
        {
            println!("script line {n} refused: {why}");
            refused.push((n, why.to_string()));
        }
    }
    machine.send("poweroff")?;
    Ok(ScriptRun {
        ending: machine.wait_exit(limit),
        refused,
    })
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

/// The `key=value` fields of a line.
pub fn fields(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a series of live updates showed.
#[derive(Clone, Debug, Default)]
pub struct SoakSummary {
    /// Updates that completed (a report line was printed).
    pub updates: u64,
    /// Guest mismatches seen in heartbeats and hypervisor reports.
    pub mismatches: u64,
    /// Times a domain's check counter went backwards between heartbeats.
    pub regressions: u64,
    /// Updates whose digests, free-frame counts or free-frame digests
    /// differed (`digest_equal`, `free_equal`).
    pub equivalence_failures: u64,
    /// Sum over updates of |free_after - expected|.
    pub frame_delta: u64,
    /// Blackout of each update, in microseconds.
    pub blackouts_us: Vec<u64>,
    /// The live-update capacity after each update (`capacity_kib`, what
    /// `lu status` shows), in KiB.
    pub capacities_kib: Vec<u64>,
}

impl SoakSummary {
    /// Minimum, median and maximum blackout.
    pub fn blackout_stats(&self) -> Option<(u64, u64, u64)> {
        let mut b = self.blackouts_us.clone();
        b.sort_unstable();
        Some((*b.first()?, b[b.len() / 2], *b.last()?))
    }

    /// The capacity after the first update, and the least and the most
    /// after any update.
    pub fn capacity_stats(&self) -> Option<(u64, u64, u64)> {
        let first = *self.capacities_kib.first()?;
        let min = *self.capacities_kib.iter().min()?;
        let max = *self.capacities_kib.iter().max()?;
        Some((first, min, max))
    }

    /// KiB the capacity lost after some update against the first one (0 if
    /// it never went below).
    pub fn capacity_shrink_kib(&self) -> u64 {
        self.capacity_stats()
            .map_or(0, |(first, min, _)| first.saturating_sub(min))
    }

    /// Whether everything held: the updates, the guests' checks, both
    /// sides' digests and free frames, and a capacity that never shrinks.
    pub fn clean(&self, expected_updates: u64) -> bool {
        self.updates == expected_updates
            && self.mismatches == 0
            && self.regressions == 0
            && self.equivalence_failures == 0
            && self.frame_delta == 0
            && self.capacity_shrink_kib() == 0
    }
}

impl std::fmt::Display for SoakSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "updates={} mismatches={} regressions={} equivalence_failures={} frame_delta={}",
            self.updates,
            self.mismatches,
            self.regressions,
            self.equivalence_failures,
            self.frame_delta
        )?;
        if let Some((min, median, max)) = self.blackout_stats() {
            write!(f, " blackout_us min={min} median={median} max={max}")?;
        }
        if let Some((first, min, max)) = self.capacity_stats() {
            write!(
                f,
                " capacity_kib first={first} min={min} max={max} shrink={}",
                self.capacity_shrink_kib()
            )?;
        }
        Ok(())
    }
}

/// Reads a whole run's transcript: every `lu-report` line (both digests and
/// the free frames equal, the capacity after it), every domU heartbeat
/// (check counters must never go back, mismatches must be 0) and the
/// hypervisor's final reports.
pub fn summarise(transcript: &[String]) -> SoakSummary {
    let mut s = SoakSummary::default();
    let mut last_checks: std::collections::BTreeMap<String, u64> = Default::default();
    for line in transcript {
        if line.starts_with("(hv) lu-report ") {
            let f = fields(line);
            let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            s.updates += 1;
            if f.get("digest_equal").map(String::as_str) != Some("yes")
                || f.get("free_equal").map(String::as_str) != Some("yes")
            {
                s.equivalence_failures += 1;
            }
            let expected = num("free_before") + num("image_frames_released");
            s.frame_delta += num("free_after").abs_diff(expected);
            s.blackouts_us.push(num("blackout_us"));
            if let Some(kib) = f.get("capacity_kib").and_then(|v| v.parse::<u64>().ok()) {
                s.capacities_kib.push(kib);
            }
        } else if let Some(rest) = line.strip_prefix('(') {
            let Some((dom, text)) = rest.split_once(") ") else {
                continue;
            };
            if text.starts_with("heartbeat ") {
                let f = fields(text);
                let checks = f
                    .get("checks")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                s.mismatches += f
                    .get("mismatches")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    .min(1);
                let last = last_checks.entry(dom.to_string()).or_insert(0);
                if checks < *last {
                    s.regressions += 1;
                }
                *last = checks;
            } else if text.contains("MISMATCH") {
                s.mismatches += 1;
            }
        }
    }
    s
}

/// Performs `updates` live updates from dom0, to `images[i % len]` in
/// turn, letting the domUs run `settle_ms` between them; returns the
/// summary of the whole transcript so far.
pub fn soak(
    machine: &mut Machine,
    images: &[&str],
    updates: u64,
    settle_ms: u64,
) -> Result<SoakSummary, String> {
    soak_with(machine, images, updates, settle_ms, None)
}

/// [`soak`] with churn: before each update dom0 also performs one
/// toolstack action of `churn` (create, destroy, pause or unpause a domU).
pub fn soak_with_churn(
    machine: &mut Machine,
    images: &[&str],
    updates: u64,
    settle_ms: u64,
    churn: &mut Churn,
) -> Result<SoakSummary, String> {
    soak_with(machine, images, updates, settle_ms, Some(churn))
}

/// What dom0 does to the domains between updates in a soak with churn:
/// a small set of extra domUs (started with `churn`, so they also pin,
/// switch and release page tables all the time) is created, destroyed,
/// paused and unpaused in a pseudo-random order from a seed, so that every
/// update hands over a different set of domains, some of them paused.
#[derive(Debug)]
pub struct Churn {
    rng: u64,
    /// The extra domUs alive: (id, paused).
    live: Vec<(u16, bool)>,
    /// Memory of each extra domU, in KiB.
    kib: u64,
    /// Actions done, by kind.
    pub created: u64,
    /// Extra domUs destroyed.
    pub destroyed: u64,
    /// Pauses.
    pub paused: u64,
    /// Unpauses.
    pub unpaused: u64,
}

impl Churn {
    /// Churn from `seed`, with extra domUs of `kib` KiB.
    pub fn new(seed: u64, kib: u64) -> Churn {
        Churn {
            rng: seed | 1,
            live: Vec::new(),
            kib,
            created: 0,
            destroyed: 0,
            paused: 0,
            unpaused: 0,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// One toolstack action; fails if dom0 does not confirm it.
    pub fn step(&mut self, machine: &mut Machine) -> Result<(), String> {
        let r = self.next();
        let n = self.live.len();
        let pick = (r >> 8) as usize % n.max(1);
        let action = match (n, r % 5) {
            (0 | 1, _) | (2, 0) => "create",
            (_, 0 | 1) => "destroy",
            _ if self.live[pick].1 => "unpause",
            _ => "pause",
        };
        let line = match action {
            "create" => format!("create domu {} churn", self.kib),
            op => format!("{op} {}", self.live[pick].0),
        };
        let out = machine.command(&line, CMD)?;
        let confirmed = |needle: &str| out.iter().any(|l| l.contains(needle));
        match action {
            "create" => {
                let id = out
                    .iter()
                    .find_map(|l| l.split("created d").nth(1))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|id| id.parse::<u16>().ok())
                    .ok_or_else(|| format!("churn: `{line}` did not create a domain: {out:?}"))?;
                self.live.push((id, false));
                self.created += 1;
            }
            op => {
                let id = self.live[pick].0;
                if !confirmed(&format!("{op} d{id}: done")) {
                    return Err(format!("churn: `{line}` failed: {out:?}"));
                }
                match op {
                    "destroy" => {
                        self.live.remove(pick);
                        self.destroyed += 1;
                    }
                    "pause" => {
                        self.live[pick].1 = true;
                        self.paused += 1;
                    }
                    _ => {
                        self.live[pick].1 = false;
                        self.unpaused += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Churn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "churn created={} destroyed={} paused={} unpaused={} alive={}",
            self.created,
            self.destroyed,
            self.paused,
            self.unpaused,
            self.live.len()
        )
    }
}

fn soak_with(
    machine: &mut Machine,
    images: &[&str],
    updates: u64,
    settle_ms: u64,
    mut churn: Option<&mut Churn>,
) -> Result<SoakSummary, String> {
    for i in 0..updates {
        if let Some(churn) = churn.as_deref_mut() {
            churn.step(machine)?;
        }
        let image = images[(i as usize) % images.len()];
        let out = machine.command(&format!("live-update {image}"), CMD)?;
        if !out.iter().any(|l| l.contains("lu exec: done")) {
            return Err(format!(
                "update {} to `{image}` failed: {out:?}; log: {}",
                i + 1,
                machine.log_path().display()
            ));
        }
        // The report is printed at the new hypervisor's release, before it
        // answers dom0's first call (so before `lu exec: done`); a wait
        // that finds it already there costs nothing.
        let needle = format!("lu-report seq={} ", i + 1);
        if !machine.transcript.iter().any(|l| l.contains(&needle)) {
            machine.wait_for_text(&needle, CMD)?;
        }
        if settle_ms > 0 {
            machine.command(
                &format!("sleep {settle_ms}"),
                CMD + Duration::from_millis(settle_ms * 4),
            )?;
        }
    }
    Ok(summarise(&machine.transcript))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, capacity_kib: u64, free_equal: &str) -> String {
        format!(
            "(hv) lu-report seq={seq} blackout_us=10 digest_equal=yes free_before=5 \
             image_frames_released=0 free_after=5 free_equal={free_equal} capacity_kib={capacity_kib}"
        )
    }

    #[test]
    fn a_steady_capacity_is_clean() {
        let t = vec![report(1, 900, "yes"), report(2, 900, "yes")];
        let s = summarise(&t);
        assert_eq!(s.capacity_stats(), Some((900, 900, 900)));
        assert!(s.clean(2), "{s}");
        assert!(s
            .to_string()
            .contains("capacity_kib first=900 min=900 max=900 shrink=0"));
    }

    #[test]
    fn a_shrinking_capacity_fails() {
        let t = vec![
            report(1, 900, "yes"),
            report(2, 850, "yes"),
            report(3, 900, "yes"),
        ];
        let s = summarise(&t);
        assert_eq!(s.capacity_shrink_kib(), 50);
        assert!(!s.clean(3), "{s}");
    }

    #[test]
    fn a_free_set_mismatch_fails() {
        let t = vec![report(1, 900, "no")];
        let s = summarise(&t);
        assert_eq!(s.equivalence_failures, 1);
        assert!(!s.clean(1));
    }
}
