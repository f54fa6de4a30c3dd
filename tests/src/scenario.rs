//! Helpers shared by the QEMU scenarios in `tests/tests/`: boot to the dom0
//! prompt, run a command, power off and check the verdict. They panic with
//! the serial log's path, which is what a failing test should show.

use std::time::Duration;

use crate::{Ending, Machine, MachineConfig};

/// How long a boot may go without progress (a line of the hypervisor or
/// dom0, [`crate::qemu::is_progress`]) before it fails; there is no limit
/// on the whole.
pub const BOOT: Duration = Duration::from_secs(60);
/// How long one dom0 command may go without progress; likewise no limit on
/// the whole.
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
    boot_config(&config)
}

/// Boots the machine `config` describes and waits for dom0's first prompt.
pub fn boot_config(config: &MachineConfig) -> Machine {
    let started = std::time::Instant::now();
    let mut machine = Machine::start(config).unwrap_or_else(|e| panic!("{e}"));
    machine
        .wait_for_text("(d0) dom0>", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{}: QEMU start to dom0 prompt in {} ms",
        config.name,
        started.elapsed().as_millis()
    );
    machine
}

/// Waits until a line containing each of `needles` has been seen since the
/// machine started, in any order (domains print concurrently). Returns the
/// lines, in `needles` order. Each line found restarts the `quiet` period
/// ([`Machine::wait_for`]).
pub fn wait_all(machine: &mut Machine, needles: &[&str], quiet: Duration) -> Vec<String> {
    let mut found: Vec<Option<String>> = needles
        .iter()
        .map(|n| machine.transcript.iter().find(|l| l.contains(n)).cloned())
        .collect();
    while found.iter().any(Option::is_none) {
        let missing: Vec<&str> = needles
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| *n)
            .collect();
        let line = machine
            .wait_for(&format!("{missing:?}"), quiet, |l| {
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

/// Waits for the next heartbeat of domain `dom` after those already seen:
/// the guest runs and verifies. Fails after `quiet` without progress.
pub fn next_heartbeat(machine: &mut Machine, dom: u16, quiet: Duration) {
    let prefix = format!("(d{dom}) heartbeat ");
    let n = machine.lines_with(&prefix).count() as u64;
    machine
        .wait_for_text(&format!("{prefix}{}:", n + 1), quiet)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs dom0's `list` and checks that every domain of `ids` is listed
/// running (dom0's listing: id second, state last, in every release's
/// dom0); panics naming `what` (the machine's situation) otherwise.
pub fn assert_running(machine: &mut Machine, ids: &[u16], what: &str) {
    let list = cmd(machine, "list");
    for id in ids {
        let id = id.to_string();
        assert!(
            list.iter().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.get(1) == Some(&id.as_str()) && words.last() == Some(&"running")
            }),
            "{what}: domain {id} is not listed running: {list:?}; log: {}",
            machine.log_path().display()
        );
    }
}

/// Powers off and checks the hypervisor's verdict (see [`verdict`]).
pub fn poweroff_pass(machine: &mut Machine) {
    machine.send("poweroff").unwrap_or_else(|e| panic!("{e}"));
    let ending = machine.wait_exit(CMD);
    if let Err(e) = verdict(machine, ending) {
        panic!("{e}");
    }
}

/// Checks, after `poweroff`, that domain `dom`'s report counts `ok`
/// expected refusals and no unexpected result.
pub fn assert_refusals(machine: &Machine, dom: u16, ok: u64) {
    let report = machine
        .lines_with(&format!("(hv) report d{dom} "))
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(field(&report, "refusals_ok"), Some(ok), "{report}");
    assert_eq!(field(&report, "refusals_bad"), Some(0), "{report}");
}

/// The value of `key=` in a `key=value` line.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// A dom0 script, checked before anything boots: the lines dom0 will run,
/// each as dom0 will run it — its words joined by single spaces, what dom0
/// echoes — with its number in the file (from 1).
///
/// Blank lines and lines starting with `#` are skipped. Every other line
/// must be one dom0 takes whole (`pv_abi::console_line`: printable ASCII
/// and tabs, at most 256 bytes and 16 words): a backspace, an embedded
/// carriage return (which the hypervisor turns into a line end, so that
/// `pause 1\rdestroy 2` would run two commands), an escape or any other
/// control byte, a byte beyond ASCII refuses the script, as does a line
/// after a `poweroff` (it would never run). A `\r\n` line end is a line
/// end. [`Script::parse`] lists every refused line with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// (line number, the command as dom0 runs it).
    pub lines: Vec<(usize, String)>,
}

impl Script {
    /// Checks `text` line by line; `Err` lists each line refused and why
    /// (`line N: <why>`), one per line of the message.
    pub fn parse(text: &str) -> Result<Script, String> {
        let mut lines = Vec::new();
        let mut refused = Vec::new();
        let mut poweroff = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let start = line.trim_start_matches([' ', '\t']);
            if start.is_empty() || start.starts_with('#') {
                continue;
            }
            let words = match pv_abi::console_line::parse(line.as_bytes()) {
                Ok(w) => w,
                Err(why) => {
                    refused.push(format!("line {n}: {why}"));
                    continue;
                }
            };
            let command = words.as_slice().join(" ");
            if let Some(at) = poweroff {
                refused.push(format!(
                    "line {n}: `{command}` comes after the `poweroff` of line {at}, which ends the run"
                ));
                continue;
            }
            if command == "poweroff" {
                poweroff = Some(n);
            }
            lines.push((n, command));
        }
        if refused.is_empty() {
            Ok(Script { lines })
        } else {
            Err(format!(
                "the script has {} line(s) dom0 would not run as written; nothing was run:\n  {}",
                refused.len(),
                refused.join("\n  ")
            ))
        }
    }

    /// Whether the script ends the run itself (its last line `poweroff`).
    pub fn powers_off(&self) -> bool {
        self.lines.last().is_some_and(|(_, l)| l == "poweroff")
    }
}

/// What a script run ended with.
#[derive(Debug)]
pub struct ScriptRun {
    /// How QEMU ended.
    pub ending: Ending,
    /// The lines dom0 refused when they were typed (none, for a script
    /// [`Script::parse`] took): (line number, dom0's reason).
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

    /// The run's verdict: the hypervisor's ([`verdict`]), failed also if
    /// dom0 refused a line; `Ok` is the summary line.
    pub fn verdict(&self, machine: &Machine) -> Result<String, String> {
        match (verdict(machine, self.ending), self.all_lines_run()) {
            (Ok(summary), Ok(())) => Ok(summary),
            (Ok(summary), Err(refused)) => Err(format!(
                "run failed: {refused} (the system itself passed: {summary}); log: {}",
                machine.log_path().display()
            )),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(refused)) => Err(format!("{e}; and {refused}")),
        }
    }
}

/// Runs a dom0 script: waits for the first prompt, types each line and
/// waits for dom0's prompt after it; then, unless the script's last line
/// did, powers off, and waits for QEMU to end (`quiet`: how long it may go
/// without a line). `sleep <ms>` lines get their time added to the
/// command's quiet period. A line dom0 refuses anyway is reported
/// (`script line N refused: <why>`) and the script goes on; the caller
/// fails the run on [`ScriptRun::refused`].
pub fn run_script(
    machine: &mut Machine,
    script: &Script,
    quiet: Duration,
) -> Result<ScriptRun, String> {
    machine.wait_for_text("(d0) dom0>", BOOT)?;
    let mut refused = Vec::new();
    for (n, line) in &script.lines {
        if line == "poweroff" {
            // No prompt follows: the machine ends.
            machine.send(line)?;
            return Ok(ScriptRun {
                ending: machine.wait_exit(quiet),
                refused,
            });
        }
        let extra = line
            .strip_prefix("sleep ")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
        let out = machine.command(line, CMD + extra * 4)?;
        if let Some(why) = out
            .iter()
            .find_map(|l| l.strip_prefix(crate::qemu::REFUSED))
        {
            println!("script line {n} refused: {why}");
            refused.push((*n, why.to_string()));
        }
    }
    machine.send("poweroff")?;
    Ok(ScriptRun {
        ending: machine.wait_exit(quiet),
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
/// the free frames equal, the capacity after it), every `lu-settled` line
/// (the audit of the whole frametable after the update found every owned
/// entry backed: `audit_equal=yes`), every domU heartbeat
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
        } else if line.starts_with("(hv) lu-settled ") {
            if fields(line).get("audit_equal").map(String::as_str) != Some("yes") {
                s.equivalence_failures += 1;
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

/// [`soak`] that must come out clean ([`SoakSummary::clean`]): panics with
/// the summary and the log's path otherwise; prints and returns it.
pub fn soak_clean(
    machine: &mut Machine,
    images: &[&str],
    updates: u64,
    settle_ms: u64,
) -> SoakSummary {
    let summary = soak(machine, images, updates, settle_ms).unwrap_or_else(|e| panic!("{e}"));
    println!("soak: {summary}");
    assert!(
        summary.clean(updates),
        "{summary}; log: {}",
        machine.log_path().display()
    );
    summary
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
    churn: Option<&mut Churn>,
) -> Result<SoakSummary, String> {
    match churn {
        Some(churn) => soak_hooked(machine, images, updates, settle_ms, &mut |m, _| {
            churn.step(m)
        }),
        None => soak_hooked(machine, images, updates, settle_ms, &mut |_, _| Ok(())),
    }
}

/// [`soak`] with `before` run before each update (its number from 0): a
/// toolstack action, a log-dirty cycle, …; an error of it ends the soak.
pub fn soak_hooked(
    machine: &mut Machine,
    images: &[&str],
    updates: u64,
    settle_ms: u64,
    before: &mut dyn FnMut(&mut Machine, u64) -> Result<(), String>,
) -> Result<SoakSummary, String> {
    for i in 0..updates {
        before(machine, i)?;
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

    fn refusal(text: &str) -> String {
        Script::parse(text).unwrap_err()
    }

    #[test]
    fn a_script_is_what_dom0_runs_one_command_a_line() {
        let s = Script::parse(
            "# comment \u{e9}\n\nlist\r\n\t create  domu\t8192 grow \nsleep 10\npoweroff\n",
        )
        .unwrap();
        assert_eq!(
            s.lines,
            vec![
                (3, "list".to_string()),
                (4, "create domu 8192 grow".to_string()),
                (5, "sleep 10".to_string()),
                (6, "poweroff".to_string()),
            ]
        );
        assert!(s.powers_off());
        assert!(!Script::parse("list\n").unwrap().powers_off());
    }

    #[test]
    fn a_line_with_backspaces_is_refused_before_booting() {
        let e = refusal("list\nlisx\u{8}t\nfree\n");
        assert!(
            e.contains("line 2: the line has a byte 0x08 at column 5"),
            "{e}"
        );
        assert!(e.contains("nothing was run"), "{e}");
    }

    #[test]
    fn an_embedded_carriage_return_is_refused_not_run_as_two_commands() {
        let e = refusal("pause 1\rdestroy 2\n");
        assert!(
            e.contains("line 1: the line has a byte 0x0d at column 8"),
            "{e}"
        );
    }

    #[test]
    fn control_bytes_escapes_and_non_ascii_are_refused_each_with_its_line() {
        let e = refusal("free\n\u{1b}[A\nlist\u{7}\n\u{1f600} poweroff\n");
        for want in [
            "line 2: the line has a byte 0x1b at column 1",
            "line 3: the line has a byte 0x07 at column 5",
            "line 4: the line has a byte 0xf0 at column 1",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(e.starts_with("the script has 3 line(s)"), "{e}");
    }

    #[test]
    fn overlong_lines_and_lines_after_poweroff_are_refused() {
        let long = format!("create domu {}\n", "x".repeat(300));
        assert!(refusal(&long).contains("line 1: the line has 312 bytes"));
        let many = format!("create domu {}\n", "a ".repeat(20));
        assert!(refusal(&many).contains("line 1: the line has 22 words"));
        let e = refusal("list\npoweroff\nfree\n# a comment is fine\n");
        assert!(
            e.contains("line 3: `free` comes after the `poweroff` of line 2"),
            "{e}"
        );
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
    fn an_unbacked_entry_found_by_the_audit_fails() {
        let t = vec![
            report(1, 900, "yes"),
            "(hv) lu-settled seq=1 settle_us=1 settled_us=2 steps=1 turns=0 free_frames=5 audit_owned=7 audit_unbacked=1 audit_equal=no".to_string(),
        ];
        let s = summarise(&t);
        assert_eq!(s.equivalence_failures, 1);
        assert!(!s.clean(1), "{s}");
    }

    #[test]
    fn a_free_set_mismatch_fails() {
        let t = vec![report(1, 900, "no")];
        let s = summarise(&t);
        assert_eq!(s.equivalence_failures, 1);
        assert!(!s.clean(1));
    }
}
