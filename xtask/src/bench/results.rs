//! What one `cargo xtask bench` run measured: the records it writes to
//! `target/bench/results.json`, their statistics, and the markdown table
//! (`results.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Minimum, median and maximum of some figures (the median of an even
/// count is the mean of the middle two).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many figures.
    pub n: usize,
}

impl Stats {
    /// The statistics of `values`; `None` if there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }
}

/// The run: what was built and measured, where and how.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The commit of the current tree (`-dirty` when it had changes).
    pub commit: String,
    /// Its subject line.
    pub subject: String,
    /// When the run started (UTC, ISO 8601).
    pub date: String,
    /// The command line.
    pub command: String,
    /// Updates per configuration.
    pub updates: u64,
    /// The sweeps and phases run.
    pub sweeps: Vec<String>,
    /// The baseline's revision (full hash) and its release name, if any.
    pub baseline: Option<Baseline>,
    /// Seconds the whole run took.
    pub seconds: f64,
    /// The host.
    pub machine: Host,
}

/// The baseline revision of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    pub revision: String,
    /// Where its images were built: `target/releases/<name>/`.
    pub name: String,
    /// The handover ABI versions its image reads and writes, by its note;
    /// `None` when today's note reader cannot tell (a note form only
    /// unreleased builds had).
    pub abi: Option<String>,
}

/// The host the run was on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Host {
    pub cpu: String,
    /// Logical CPUs.
    pub cores: usize,
    pub ram_mib: u64,
    pub qemu: String,
    pub os: String,
    /// How QEMU runs the guest: TCG (no `/dev/kvm` is used).
    pub accelerator: String,
}

/// The guests' own view of one configuration's updates.
#[derive(Clone, Debug, Serialize)]
pub struct GuestPauses {
    /// For each update, the longest pause any domU saw (µs at the
    /// hypervisor's TSC rate).
    pub worst_us: Stats,
    /// For each update, that pause over the update's reported blackout.
    pub worst_vs_blackout: Stats,
    /// Each domU's pauses over the updates (µs), by domain (`d1`, …).
    pub per_domain_us: BTreeMap<String, Stats>,
    /// The ordinary gaps, the other domains' turns: the `sched_gap_tsc` of
    /// the domUs' heartbeats in a quiet second or two before the updates,
    /// dom0 idle (µs at the hypervisor's TSC rate).
    pub quiet_gap_us: Option<Stats>,
    /// The same from the heartbeats while the updates ran (the first one's
    /// window starts in the quiet moment): the longest gaps other than the
    /// updates' own (staging an image, `lu load`, is one hypercall, in
    /// which no guest runs).
    pub updating_gap_us: Option<Stats>,
    /// `update-pause` lines seen (one per domU and update).
    pub lines: usize,
}

/// One configuration of one tree, measured.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// `<tree> <sweep> <kind>[+logdirty] <domUs>x<MiB>M ram <RAM>`.
    pub id: String,
    /// `current` or `baseline`.
    pub tree: String,
    /// The commit its images were built from.
    pub revision: String,
    /// `ram`, `guest` or `count`.
    pub sweep: String,
    /// `pv` or `hvm`.
    pub kind: String,
    pub log_dirty: bool,
    pub domus: u32,
    /// Memory of each domU.
    pub guest_mib: u64,
    /// Memory of all domUs together.
    pub guest_gib: f64,
    /// The machine's RAM.
    pub ram_mib: u32,
    /// The hypervisor's command line.
    pub cmdline: String,
    pub updates_asked: u64,
    /// Updates that completed (a report line each).
    pub updates: u64,
    /// Every update done, the guests' checks clean, the verdict PASS.
    pub passed: bool,
    /// Why not, if it did not pass.
    pub error: Option<String>,
    /// Seconds the configuration took, boot to power-off.
    pub seconds: f64,
    /// The serial log.
    pub log: String,
    /// The hypervisor's TSC rate.
    pub tsc_khz: Option<u64>,
    /// Every `*_us` field of the report lines (phases, sub-phases, the
    /// blackout, the release): min/median/max over the updates.
    pub phases_us: BTreeMap<String, Stats>,
    /// The encoded handover state.
    pub state_bytes: Option<Stats>,
    /// Runs in the state.
    pub runs: Option<Stats>,
    /// Frames owned after the pass.
    pub frames: Option<Stats>,
    /// Median state bytes per domain (dom0 and the domUs).
    pub state_bytes_per_domain: Option<f64>,
    /// Median state bytes per run.
    pub state_bytes_per_run: Option<f64>,
    /// Median blackout per GiB of domU memory.
    pub blackout_us_per_guest_gib: Option<f64>,
    /// What the guests saw (a tree whose guests time their pauses).
    pub guest_pause: Option<GuestPauses>,
    /// For the current tree: each median over the baseline's median for
    /// the same configuration in the same run (every `*_us` field both
    /// have, and `state_bytes`).
    pub vs_baseline: BTreeMap<String, f64>,
}

impl Record {
    /// The median of `*_us` field `key`.
    pub fn median_us(&self, key: &str) -> Option<f64> {
        self.phases_us.get(key).map(|s| s.median)
    }

    /// The configuration, without the tree: what a baseline record is
    /// matched by.
    pub fn config_key(&self) -> (String, String, bool, u32, u64, u32) {
        (
            self.sweep.clone(),
            self.kind.clone(),
            self.log_dirty,
            self.domus,
            self.guest_mib,
            self.ram_mib,
        )
    }

    /// The kind as the tables and plots name it: `pv`, `hvm`,
    /// `hvm+logdirty`.
    pub fn series(&self) -> String {
        if self.log_dirty {
            format!("{}+logdirty", self.kind)
        } else {
            self.kind.clone()
        }
    }
}

/// One on/off cycle of the log-dirty speed phase: an HVM guest's checks
/// per heartbeat (its own clock) before log-dirty, while tracked with a
/// clean every second, and after `off`.
#[derive(Clone, Debug, Serialize)]
pub struct SpeedCycle {
    pub cycle: u32,
    pub before: f64,
    pub tracked: f64,
    pub after_off: f64,
}

/// Everything a run writes to `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub run: Run,
    /// The host benchmark's `bench pass …` lines (`cargo bench -p
    /// frame-ownership`): the pass and a plain write of the same bytes.
    pub host_pass: Vec<BTreeMap<String, f64>>,
    /// One record per configuration and tree.
    pub records: Vec<Record>,
    pub log_dirty_speed: Vec<SpeedCycle>,
    /// The pass under TCG against the pass on the host.
    pub tcg_pass: Option<TcgPass>,
}

/// What TCG does to the pass: its cost per frame in QEMU, the slope of
/// `pass_us` over the owned frames along the current tree's PV points of
/// the guest-memory sweep (least squares: the fixed part of the phase
/// falls out), against the host benchmark's ns per frame of the same
/// code at its smallest size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TcgPass {
    pub qemu_ns_per_frame: f64,
    pub host_ns_per_frame: f64,
    /// How many times slower under TCG.
    pub factor: f64,
    /// The sweep's points the slope is fitted over.
    pub points: usize,
}

impl TcgPass {
    /// From the records and the host benchmark's lines; `None` without
    /// two points of different sizes or a host figure.
    pub fn of(records: &[Record], host: &[BTreeMap<String, f64>]) -> Option<TcgPass> {
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.tree == "current" && r.sweep == "guest" && r.kind == "pv")
            .filter(|r| r.error.is_none() && !r.log_dirty)
            .filter_map(|r| Some((r.frames?.median, r.median_us("pass_us")? * 1000.0)))
            .collect();
        let n = points.len() as f64;
        let (mx, my) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
        let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        if points.len() < 2 || sxx <= 0.0 {
            return None;
        }
        let qemu = sxy / sxx;
        let host = host
            .iter()
            .filter_map(|p| Some((p.get("frames")?, *p.get("ns_per_frame")?)))
            .min_by(|a, b| a.0.total_cmp(b.0))?
            .1;
        Some(TcgPass {
            qemu_ns_per_frame: qemu,
            host_ns_per_frame: host,
            factor: qemu / host.max(f64::MIN_POSITIVE),
            points: points.len(),
        })
    }
}

/// The phases of the blackout, in order; `pause_us` through `resume_us`
/// add up to `blackout_us` (`new_hv::report`).
pub const PHASES: [&str; 8] = [
    "pause_us",
    "serialise_us",
    "preflight_us",
    "jump_us",
    "boot_us",
    "verify_us",
    "pass_us",
    "resume_us",
];

/// The `*_us` fields that are not a phase inside the blackout.
const NOT_PHASES: [&str; 2] = ["blackout_us", "release_us"];

/// Named figures, in order.
pub type Segments = Vec<(String, f64)>;

/// The segments a record's blackout is drawn as, in order: each phase of
/// [`PHASES`], or where the report carries sub-phases of it (fields named
/// `<phase>_<step>_us`, e.g. `preflight_runs_us`) those, then the rest of
/// the phase (`<phase>_rest_us`); then any other `*_us` field the report
/// carries that is neither a phase, a sub-phase, the blackout nor the
/// release, which the stack cannot place (`other:<name>`, not stacked).
/// Medians, µs.
pub fn segments(r: &Record) -> (Segments, Segments) {
    let mut stacked = Vec::new();
    let mut placed: Vec<&str> = NOT_PHASES.to_vec();
    for phase in PHASES {
        let Some(total) = r.median_us(phase) else {
            continue;
        };
        placed.push(phase);
        let stem = phase.trim_end_matches("_us");
        let subs: Vec<(&String, f64)> = r
            .phases_us
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{stem}_")) && k.as_str() != phase)
            .map(|(k, s)| (k, s.median))
            .collect();
        if subs.is_empty() {
            stacked.push((phase.to_string(), total));
            continue;
        }
        let mut sum = 0.0;
        for (k, v) in subs {
            placed.push(k);
            sum += v;
            stacked.push((k.clone(), v));
        }
        stacked.push((format!("{stem}_rest_us"), (total - sum).max(0.0)));
    }
    let others = r
        .phases_us
        .iter()
        .filter(|(k, _)| !placed.contains(&k.as_str()))
        .map(|(k, s)| (k.clone(), s.median))
        .collect();
    (stacked, others)
}

/// A heading and a table's head.
fn section(t: &mut String, heading: &str, columns: &[&str]) {
    let _ = writeln!(
        t,
        "\n## {heading}\n\n| {} |\n|{}",
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
}

/// Milliseconds of µs, one decimal.
fn ms(us: f64) -> String {
    format!("{:.1}", us / 1000.0)
}

fn ratio(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.2}"))
}

/// The markdown of a run: the run, the blackout table, the phases, the
/// guests' pauses, the state, the host pass and the log-dirty speed.
pub fn markdown(res: &Results) -> String {
    let mut t = String::new();
    let run = &res.run;
    let m = &run.machine;
    let _ = writeln!(t, "# `cargo xtask bench` results\n");
    let _ = writeln!(
        t,
        "- commit `{}` ({}), run {}, {:.0} s in all\n- `{}`: {} updates per configuration, {}",
        run.commit,
        run.subject,
        run.date,
        run.seconds,
        run.command,
        run.updates,
        run.sweeps.join(", ")
    );
    let _ = writeln!(
        t,
        "- host: {}, {} logical CPUs, {} MiB RAM, {}, {}; QEMU {} (microvm, `-cpu qemu64,+svm,+npt`)",
        m.cpu, m.cores, m.ram_mib, m.os, m.accelerator, m.qemu
    );
    match &run.baseline {
        Some(b) => {
            let _ = writeln!(
                t,
                "- baseline: `{}`{}, built from git in `target/releases/{}/`, updating to \
                 itself; its configurations are the PV ones (a release's images have no HVM guest)",
                b.revision,
                b.abi.as_ref().map_or(String::new(), |a| format!(" ({a})")),
                b.name
            );
        }
        None => {
            let _ = writeln!(t, "- no baseline (`--baseline REV` adds one)");
        }
    }
    let _ = writeln!(
        t,
        "\nFigures are medians over the updates of a configuration (min–max in \
         results.json); µs and ms from the TSC, as the `lu-report` line gives them. \
         A configuration that failed shows its error.\n"
    );

    section(
        &mut t,
        "Blackout",
        &[
            "sweep",
            "tree",
            "kind",
            "domUs × MiB",
            "RAM",
            "blackout ms (min–max)",
            "÷ baseline",
            "ms per guest GiB",
            "guest pause ms",
            "pause ÷ blackout (max)",
            "quiet gap ms",
            "other gaps while updating ms (max)",
            "state bytes",
            "per domain",
            "per run",
        ],
    );
    for r in &res.records {
        let ram = super::sweep::show_mib(r.ram_mib);
        let head = format!(
            "| {} | {} | {} | {} × {} | {ram} |",
            r.sweep,
            r.tree,
            r.series(),
            r.domus,
            r.guest_mib
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                t,
                "{head} failed: {} | | | | | | | | | |",
                e.replace('|', "/").replace('\n', " ")
            );
            continue;
        }
        let b = r.phases_us.get("blackout_us");
        let pause = r.guest_pause.as_ref();
        let _ = writeln!(
            t,
            "{head} {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            b.map_or("–".into(), |b| format!(
                "{} ({}–{})",
                ms(b.median),
                ms(b.min),
                ms(b.max)
            )),
            ratio(r.vs_baseline.get("blackout_us").copied()),
            r.blackout_us_per_guest_gib.map_or("–".into(), ms),
            pause.map_or("–".into(), |p| ms(p.worst_us.median)),
            pause.map_or("–".into(), |p| format!(
                "{:.2} ({:.2})",
                p.worst_vs_blackout.median, p.worst_vs_blackout.max
            )),
            pause
                .and_then(|p| p.quiet_gap_us)
                .map_or("–".into(), |s| ms(s.median)),
            pause
                .and_then(|p| p.updating_gap_us)
                .map_or("–".into(), |s| format!(
                    "{} ({})",
                    ms(s.median),
                    ms(s.max)
                )),
            r.state_bytes
                .map_or("–".into(), |s| format!("{:.0}", s.median)),
            r.state_bytes_per_domain
                .map_or("–".into(), |v| format!("{v:.0}")),
            r.state_bytes_per_run
                .map_or("–".into(), |v| format!("{v:.1}")),
        );
    }

    // Every `*_us` key any record has, phases first in their order.
    let mut keys: Vec<String> = PHASES.iter().map(|s| s.to_string()).collect();
    keys.extend(NOT_PHASES.iter().map(|s| s.to_string()));
    for r in &res.records {
        for k in r.phases_us.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys.retain(|k| res.records.iter().any(|r| r.phases_us.contains_key(k)));
    let columns: Vec<&str> = std::iter::once("configuration")
        .chain(keys.iter().map(|k| k.trim_end_matches("_us")))
        .collect();
    section(
        &mut t,
        "Phases (median ms; the phases from pause to resume make up the blackout)",
        &columns,
    );
    for r in res.records.iter().filter(|r| r.error.is_none()) {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| r.median_us(k).map_or("–".into(), ms))
            .collect();
        let _ = writeln!(t, "| {} | {} |", r.id, cells.join(" | "));
    }

    if !res.host_pass.is_empty() {
        section(
            &mut t,
            "The pass on the host (`cargo bench -p frame-ownership`)",
            &[
                "frames",
                "pass ns/frame",
                "plain write ns/frame",
                "pass ÷ write",
            ],
        );
        for p in &res.host_pass {
            let f = |k: &str| p.get(k).map_or("–".into(), |v| format!("{v}"));
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} |",
                f("frames"),
                f("ns_per_frame"),
                f("write_ns_per_frame"),
                f("ratio")
            );
        }
    }
    if let Some(p) = res.tcg_pass {
        let _ = writeln!(
            t,
            "\nThe same pass in QEMU (TCG): {:.1} ns per owned frame, the slope of `pass` over \
             the frames of the {} PV points of the guest-memory sweep, {:.1}× the host's {:.2} ns \
             per frame.",
            p.qemu_ns_per_frame, p.points, p.factor, p.host_ns_per_frame
        );
    }
    if !res.log_dirty_speed.is_empty() {
        section(
            &mut t,
            "An HVM guest's speed under log-dirty (checks per heartbeat)",
            &[
                "cycle",
                "before",
                "tracked",
                "after off",
                "tracked ÷ before",
            ],
        );
        for c in &res.log_dirty_speed {
            let _ = writeln!(
                t,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} |",
                c.cycle,
                c.before,
                c.tracked,
                c.after_off,
                c.tracked / c.before.max(1.0)
            );
        }
    }
    t
}

/// Records made up for the tests of this module and of the plots.
#[cfg(test)]
pub mod sample {
    use super::*;

    /// A current-tree record of the RAM sweep (2 PV domUs of 64 MiB, 1
    /// GiB) with these phases, each figure from one update.
    pub fn record(phases: &[(&str, f64)]) -> Record {
        Record {
            id: "x".into(),
            tree: "current".into(),
            revision: "r".into(),
            sweep: "ram".into(),
            kind: "pv".into(),
            log_dirty: false,
            domus: 2,
            guest_mib: 64,
            guest_gib: 0.125,
            ram_mib: 1024,
            cmdline: String::new(),
            updates_asked: 1,
            updates: 1,
            passed: true,
            error: None,
            seconds: 1.0,
            log: String::new(),
            tsc_khz: None,
            phases_us: phases
                .iter()
                .map(|(k, v)| (k.to_string(), Stats::of([*v]).unwrap()))
                .collect(),
            state_bytes: None,
            runs: None,
            frames: None,
            state_bytes_per_domain: None,
            state_bytes_per_run: None,
            blackout_us_per_guest_gib: None,
            guest_pause: None,
            vs_baseline: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sample::record;
    use super::*;

    #[test]
    fn the_tcg_factor_is_the_pass_slope_over_the_guest_sweep_against_the_host() {
        let point = |frames: f64, pass_us: f64| {
            let mut r = record(&[("pass_us", pass_us)]);
            r.sweep = "guest".into();
            r.frames = Stats::of([frames]);
            r
        };
        // 2 ms fixed, 40 ns a frame.
        let mut records = vec![
            point(10_000.0, 2_400.0),
            point(110_000.0, 6_400.0),
            point(510_000.0, 22_400.0),
        ];
        let mut hvm = point(1_000.0, 999_999.0);
        hvm.kind = "hvm".into();
        records.push(hvm);
        let host: Vec<BTreeMap<String, f64>> = [(16_777_216.0, 9.0), (1_048_576.0, 8.0)]
            .iter()
            .map(|&(f, ns)| [("frames".to_string(), f), ("ns_per_frame".to_string(), ns)].into())
            .collect();
        let p = TcgPass::of(&records, &host).unwrap();
        assert!((p.qemu_ns_per_frame - 40.0).abs() < 1e-9, "{p:?}");
        assert_eq!((p.host_ns_per_frame, p.points), (8.0, 3));
        assert!((p.factor - 5.0).abs() < 1e-9);
        assert!(TcgPass::of(&records[..1], &host).is_none());
        assert!(TcgPass::of(&records, &[]).is_none());
    }

    #[test]
    fn stats_take_the_middle_or_the_mean_of_the_middle_two() {
        let s = Stats::of([5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 3.0, 5.0, 3));
        assert_eq!(Stats::of([4.0, 1.0, 2.0, 10.0]).unwrap().median, 3.0);
        assert_eq!(Stats::of([]), None);
    }

    #[test]
    fn sub_phases_are_stacked_inside_their_phase_and_unknown_fields_are_set_aside() {
        let r = record(&[
            ("pause_us", 1.0),
            ("preflight_us", 10.0),
            ("preflight_runs_us", 3.0),
            ("preflight_digest_us", 4.0),
            ("pass_us", 5.0),
            ("blackout_us", 16.0),
            ("release_us", 2.0),
            ("hvnew_us", 9.0),
        ]);
        let (stacked, others) = segments(&r);
        assert_eq!(
            stacked,
            [
                ("pause_us".to_string(), 1.0),
                ("preflight_digest_us".to_string(), 4.0),
                ("preflight_runs_us".to_string(), 3.0),
                ("preflight_rest_us".to_string(), 3.0),
                ("pass_us".to_string(), 5.0),
            ]
        );
        assert_eq!(others, [("hvnew_us".to_string(), 9.0)]);
        let total: f64 = stacked.iter().map(|(_, v)| v).sum();
        assert_eq!(total, 16.0);
    }
}
