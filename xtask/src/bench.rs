//! `cargo xtask bench`: the figures a user compares live-update systems
//! by, side by side, from one run.
//!
//! - `host`: the frametable pass on the host against a plain write of the
//!   same bytes (`cargo bench -p frame-ownership`);
//! - `ram`: the blackout and each of its phases as the machine's RAM grows
//!   (1, 4, 16, 64 GiB) with the same two PV domUs of 64 MiB;
//! - `guest`: one domU of 4 MiB up to 2 GiB — as far as a domain may
//!   have, `pv_abi::call::MAX_DOMAIN_KIB`, 1 GiB today — PV, HVM, HVM with
//!   log-dirty on;
//! - `count`: 1 to 32 domUs of 4 MiB, the same three kinds;
//! - `logdirty`: an HVM guest's speed before, during and after log-dirty.
//!
//! Each configuration of a sweep ([`sweep::configs`]) is one machine: dom0
//! and the domUs boot, `--updates` live updates run one after the other
//! (the current tree alternates between two builds, `hv-b` and `hv`), and
//! the record is read from the serial transcript: every `*_us` field of the
//! `lu-report` lines with its min/median/max over the updates (new fields
//! need no new code), the state's size, and what the guests saw: each domU
//! times its own pauses with the TSC (`pvrt::gap`) and prints the one that
//! held each update, which is set against the update's blackout, beside
//! the ordinary gaps of the round-robin scheduler its heartbeats carry.
//! With `--baseline REV` every PV configuration also runs on images built
//! from that revision (`hvlu_harness::releases::Release::unrecorded`:
//! the releases' machinery, its worktree and images cached under
//! `target/releases/`), updating to itself, right after the current
//! tree's, and each figure gets its ratio to the baseline's.
//!
//! Everything goes to `target/bench/`: `results.json` (the run, the host,
//! one record per configuration and tree), `results.md` (the tables) and
//! SVG plots drawn with `plotters` (`blackout-{ram,guest,count}.svg`,
//! `phases-{ram,guest,count}.svg`). A configuration that fails is recorded
//! with its error and the run goes on; the command fails at the end if one
//! of the current tree's did.

mod host;
mod plots;
mod results;
mod sweep;

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use hvlu_harness::releases::Release;
use hvlu_harness::scenario;
use hvlu_harness::Images;

use crate::build::build;
use crate::setup;
use crate::shell::{self, root, Cmd, Failure};
use crate::soak::boot_with_guests;
use results::{Baseline, Record, Results, Run, SpeedCycle};
pub use sweep::Sweep;
use sweep::{Config, Tree};

/// What `cargo xtask bench` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The sweeps and phases to run; empty: all.
    pub sweeps: Vec<Sweep>,
    /// Updates per configuration (default 5, 2 with `quick`).
    pub updates: Option<u64>,
    /// The two smallest points of each sweep.
    pub quick: bool,
    /// The revision to compare with.
    pub baseline: Option<String>,
    /// RAM of the guest and count sweeps and of the log-dirty phase.
    pub ram: Option<u32>,
}

/// `cargo xtask bench`.
pub fn bench(o: Options) -> Result<(), Failure> {
    let started = Instant::now();
    let sweeps = if o.sweeps.is_empty() {
        Sweep::ALL.to_vec()
    } else {
        o.sweeps.clone()
    };
    let updates = o.updates.unwrap_or(if o.quick { 2 } else { 5 });
    if updates == 0 {
        return Err(Failure::Failed("--updates must be at least 1".into()));
    }
    let (commit, subject) = host::commit();
    let mut res = Results {
        run: Run {
            commit: commit.clone(),
            subject,
            date: host::now(),
            command: std::env::args()
                .skip(1)
                .fold("cargo xtask".to_string(), |l, a| format!("{l} {a}")),
            updates,
            sweeps: sweeps.iter().map(|s| s.name().to_string()).collect(),
            baseline: None,
            seconds: 0.0,
            machine: host::host(),
        },
        host_pass: Vec::new(),
        records: Vec::new(),
        log_dirty_speed: Vec::new(),
        tcg_pass: None,
    };
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;

    if sweeps.contains(&Sweep::Host) {
        shell::step("the frametable pass against a plain write (host)");
        res.host_pass = host::pass_bench()?;
    }
    let configs = sweep::configs(&sweeps, o.quick, o.ram);
    if !configs.is_empty() || sweeps.contains(&Sweep::Logdirty) {
        setup::ensure_qemu()?;
        build(true)?;
    }
    let mut trees = Vec::new();
    if !configs.is_empty() {
        trees.push(Tree {
            label: "current",
            revision: commit,
            images: Images::built().map_err(Failure::Failed)?,
            update_to: vec!["hv-b".into(), "hv".into()],
            hvm: true,
        });
        if let Some(rev) = &o.baseline {
            let (tree, baseline) = baseline_tree(rev)?;
            res.run.baseline = Some(baseline);
            trees.push(tree);
        }
    }
    let jobs: Vec<(&Config, &Tree)> = configs
        .iter()
        .flat_map(|c| trees.iter().filter(|t| t.runs(c)).map(move |t| (c, t)))
        .collect();
    if !jobs.is_empty() {
        shell::step(&format!(
            "blackout sweeps in QEMU (TCG): {} machines, {updates} updates each",
            jobs.len()
        ));
    }
    for (k, (c, tree)) in jobs.iter().enumerate() {
        let tag = format!("bench [{}/{}] {} {}", k + 1, jobs.len(), tree.label, c.id());
        println!(
            "{tag}: starting ({:.0} s into the run)",
            started.elapsed().as_secs_f64()
        );
        let r = measure(c, tree, updates);
        let versus = res
            .records
            .iter()
            .find(|o| o.tree != r.tree && o.config_key() == r.config_key());
        println!("{tag}: {}", done_line(&r, versus));
        res.records.push(r);
    }
    compare(&mut res.records);
    res.tcg_pass = results::TcgPass::of(&res.records, &res.host_pass);

    if sweeps.contains(&Sweep::Logdirty) {
        shell::step("an HVM guest's speed before, during and after log-dirty (QEMU, TCG)");
        res.log_dirty_speed = log_dirty_speed(o.ram)?;
    }
    res.run.seconds = started.elapsed().as_secs_f64();
    write(&dir, &res)?;
    let failed: Vec<&Record> = res.records.iter().filter(|r| r.error.is_some()).collect();
    for r in &failed {
        println!(
            "bench: {} FAILED: {}",
            r.id,
            r.error.as_deref().unwrap_or_default()
        );
    }
    if failed.iter().any(|r| r.tree == "current") {
        return Err(Failure::Failed(format!(
            "{} configuration(s) of the current tree failed (above); the results are written",
            failed.iter().filter(|r| r.tree == "current").count()
        )));
    }
    Ok(())
}

/// The baseline revision `rev`, built from git as a release is (once; kept
/// in `target/releases/baseline-<hash>/`), booting its own dom0 and domU
/// and updating to its own hypervisor (module `hv`). It runs the PV
/// configurations: a release's images are `hv`, `dom0` and `domu`.
fn baseline_tree(rev: &str) -> Result<(Tree, Baseline), Failure> {
    let full = Cmd::new("git")
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .output()
        .map(|s| s.trim().to_string())
        .ok_or_else(|| {
            Failure::Failed(format!(
                "--baseline {rev}: no such commit in this clone (fetch it first)"
            ))
        })?;
    let name = format!("baseline-{}", &full[..full.len().min(12)]);
    shell::step(&format!(
        "the baseline {rev} ({full}): built from git like a release, kept in target/releases/{name}/"
    ));
    let built = Release::unrecorded(&name, &full).map_err(Failure::Failed)?;
    let mut boot = built.images.boot();
    boot.modules.push(("hv".into(), built.images.hv.clone()));
    let abi = match &built.ranges {
        Ok((reads, writes)) => Some(format!("reads handover ABI {reads}, writes {writes}")),
        Err(why) => {
            println!("bench: baseline {name}: its handover ABI is not known: {why}");
            None
        }
    };
    println!("bench: baseline {name}: images in {}", built.dir.display());
    Ok((
        Tree {
            label: "baseline",
            revision: full.clone(),
            images: boot,
            update_to: vec!["hv".into()],
            hvm: false,
        },
        Baseline {
            revision: full,
            name,
            abi,
        },
    ))
}

/// [`sweep::measure`], with a failure or a panic of the harness (a wait
/// that gave up) made a record with its error.
fn measure(c: &Config, tree: &Tree, updates: u64) -> Record {
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| sweep::measure(c, tree, updates)));
    let error = match outcome {
        Ok(Ok(r)) => return r,
        Ok(Err(e)) => e,
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the harness panicked".into()),
    };
    let mut r = sweep::record(c, tree, &[], &[], sweep::Marks::default(), updates, "");
    r.error = Some(error);
    r.seconds = started.elapsed().as_secs_f64();
    r
}

/// What a configuration showed, in one line.
fn done_line(r: &Record, versus: Option<&Record>) -> String {
    if let Some(e) = &r.error {
        return format!("FAILED after {:.0} s: {e}", r.seconds);
    }
    let mut line = format!("done in {:.0} s:", r.seconds);
    if let Some(b) = r.phases_us.get("blackout_us") {
        line += &format!(
            " blackout {:.1} ms ({:.1}–{:.1})",
            b.median / 1000.0,
            b.min / 1000.0,
            b.max / 1000.0
        );
    }
    if let Some(p) = &r.guest_pause {
        line += &format!(
            ", guest pause {:.1} ms = {:.2}× the blackout (quiet gaps {:.1} ms, other gaps while updating up to {:.1} ms)",
            p.worst_us.median / 1000.0,
            p.worst_vs_blackout.median,
            p.quiet_gap_us.map_or(0.0, |s| s.median / 1000.0),
            p.updating_gap_us.map_or(0.0, |s| s.max / 1000.0)
        );
    }
    if let Some(s) = r.state_bytes {
        line += &format!(", state {:.0} bytes", s.median);
    }
    let pair = versus.map(|o| if r.tree == "current" { (r, o) } else { (o, r) });
    if let Some((current, baseline)) = pair {
        if let (Some(c), Some(b)) = (
            current.median_us("blackout_us"),
            baseline.median_us("blackout_us"),
        ) {
            line += &format!(", blackout current ÷ baseline {:.2}", c / b.max(1.0));
        }
    }
    line
}

/// Each current-tree record's figures over the baseline's for the same
/// configuration: every `*_us` median both have, and `state_bytes`.
fn compare(records: &mut [Record]) {
    let baselines: BTreeMap<_, Record> = records
        .iter()
        .filter(|r| r.tree == "baseline" && r.error.is_none())
        .map(|r| (r.config_key(), r.clone()))
        .collect();
    for r in records.iter_mut().filter(|r| r.tree == "current") {
        let Some(b) = baselines.get(&r.config_key()) else {
            continue;
        };
        for (k, s) in &r.phases_us {
            if let Some(theirs) = b.phases_us.get(k).filter(|t| t.median > 0.0) {
                r.vs_baseline.insert(k.clone(), s.median / theirs.median);
            }
        }
        if let (Some(mine), Some(theirs)) = (r.state_bytes, b.state_bytes) {
            r.vs_baseline
                .insert("state_bytes".into(), mine.median / theirs.median.max(1.0));
        }
    }
}

/// Writes `results.json`, the plots and `results.md` in `dir`.
fn write(dir: &std::path::Path, res: &Results) -> Result<(), Failure> {
    let put = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
    };
    let json = serde_json::to_string_pretty(res)
        .map_err(|e| Failure::Failed(format!("results.json: {e}")))?;
    put("results.json", &json)?;
    // The plots of an earlier run must not pass for this one's.
    for old in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if old.path().extension().is_some_and(|e| e == "svg") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    let plots = plots::all(dir, &res.records).map_err(Failure::Failed)?;
    let mut md = results::markdown(res);
    if !plots.is_empty() {
        md += "\n## Plots\n\n";
        for p in &plots {
            if let Some(name) = p.file_name() {
                let name = name.to_string_lossy();
                md += &format!("![{name}]({name})\n\n");
            }
        }
    }
    put("results.md", &md)?;
    println!(
        "\nbench: {} records in {}; table {}; plots: {}",
        res.records.len(),
        dir.join("results.json").display(),
        dir.join("results.md").display(),
        plots
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The self-check rate of one HVM domU of 64 MiB (checks per heartbeat,
/// the guest's own clock) before log-dirty, while it tracks the domain
/// with a clean every second (each first write to a page then faults into
/// the hypervisor), and after `off`: the last should be the first again.
/// Under TCG the rate swings by a third from second to second: each phase
/// is 10 heartbeats, and the cycle runs twice.
fn log_dirty_speed(ram: Option<u32>) -> Result<Vec<SpeedCycle>, Failure> {
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
    let mut cycles = Vec::new();
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
        cycles.push(SpeedCycle {
            cycle,
            before,
            tracked,
            after_off: after,
        });
    }
    let _ = m.send("poweroff");
    m.wait_exit(scenario::CMD);
    Ok(cycles)
}
