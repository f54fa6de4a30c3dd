//! The configurations the bench boots, the trees it boots them with, and
//! the measurement of one configuration: boot, updates, power-off, the
//! record read from the serial transcript.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hvlu_harness::scenario::{self, domain_line, fields, guest_pauses, us_fields};
use hvlu_harness::{Images, Machine, MachineConfig};

use super::results::{GuestPauses, Record, Stats};
use crate::soak::boot_guests;

/// A sweep: what grows along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sweep {
    /// The machine's RAM (1, 4, 16, 64 GiB), two PV domUs of 64 MiB.
    Ram,
    /// One domU's memory (4 MiB to 2 GiB, as far as a domain may have:
    /// 1 GiB today): PV, HVM, HVM with log-dirty.
    Guest,
    /// The number of domUs of 4 MiB (1 to 32): PV, HVM, HVM with log-dirty.
    Count,
    /// The frametable pass on the host (`cargo bench -p frame-ownership`).
    Host,
    /// An HVM guest's speed before, during and after log-dirty.
    Logdirty,
}

impl Sweep {
    /// Every sweep and phase: the default.
    pub const ALL: [Sweep; 5] = [
        Sweep::Host,
        Sweep::Ram,
        Sweep::Guest,
        Sweep::Count,
        Sweep::Logdirty,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sweep::Ram => "ram",
            Sweep::Guest => "guest",
            Sweep::Count => "count",
            Sweep::Host => "host",
            Sweep::Logdirty => "logdirty",
        }
    }
}

/// A domU kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pv,
    Hvm,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pv => "pv",
            Kind::Hvm => "hvm",
        }
    }

    /// The boot module dom0 creates it from.
    fn module(self) -> &'static str {
        match self {
            Kind::Pv => "domu",
            Kind::Hvm => "hvm",
        }
    }
}

/// One machine to boot and update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub sweep: Sweep,
    pub kind: Kind,
    /// Log-dirty on for every domU (HVM only).
    pub log_dirty: bool,
    pub domus: u32,
    pub guest_mib: u64,
    pub ram_mib: u32,
}

impl Config {
    /// `<sweep> <kind>[+logdirty] <domUs>x<MiB>M ram <RAM>`.
    pub fn id(&self) -> String {
        format!(
            "{} {}{} {}x{}M ram {}",
            self.sweep.name(),
            self.kind.name(),
            if self.log_dirty { "+logdirty" } else { "" },
            self.domus,
            self.guest_mib,
            show_mib(self.ram_mib)
        )
    }

    /// The serial log's name: `target/qemu/bench-<tree>-<the id in
    /// words joined by dashes>.log`.
    fn machine_name(&self, tree: &str) -> String {
        let words: Vec<String> = self.id().split(' ').map(|w| w.replace('+', "-")).collect();
        format!("bench-{tree}-{}", words.join("-"))
    }
}

/// `64G` or `512M`.
pub fn show_mib(mib: u32) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

/// RAM of the guest-memory and domain-count sweeps unless `--ram` says
/// otherwise: one size for the whole sweep, so that only the guests grow
/// along it, enough for a 2 GiB domU.
pub const SWEEP_RAM_MIB: u32 = 3072;

/// The configurations of `sweeps` (the host and log-dirty phases have
/// none), in order; `quick`: the two smallest points of each.
pub fn configs(sweeps: &[Sweep], quick: bool, ram: Option<u32>) -> Vec<Config> {
    let take = |points: &[u64]| -> Vec<u64> {
        if quick {
            points[..2].to_vec()
        } else {
            points.to_vec()
        }
    };
    let ram = ram.unwrap_or(SWEEP_RAM_MIB);
    let kinds = [(Kind::Pv, false), (Kind::Hvm, false), (Kind::Hvm, true)];
    let mut out = Vec::new();
    for &sweep in sweeps {
        match sweep {
            Sweep::Ram => {
                for gib in take(&[1, 4, 16, 64]) {
                    out.push(Config {
                        sweep,
                        kind: Kind::Pv,
                        log_dirty: false,
                        domus: 2,
                        guest_mib: 64,
                        ram_mib: (gib * 1024) as u32,
                    });
                }
            }
            Sweep::Guest => {
                // Up to the most a domain may have (`create` refuses
                // more).
                let most = pv_abi::call::MAX_DOMAIN_KIB / 1024;
                let sizes: Vec<u64> = [4, 64, 256, 1024, 2048]
                    .into_iter()
                    .filter(|&mib| mib <= most)
                    .collect();
                for mib in take(&sizes) {
                    for (kind, log_dirty) in kinds {
                        out.push(Config {
                            sweep,
                            kind,
                            log_dirty,
                            domus: 1,
                            guest_mib: mib,
                            ram_mib: ram,
                        });
                    }
                }
            }
            Sweep::Count => {
                for n in take(&[1, 2, 4, 8, 16, 32]) {
                    for (kind, log_dirty) in kinds {
                        out.push(Config {
                            sweep,
                            kind,
                            log_dirty,
                            domus: n as u32,
                            guest_mib: 4,
                            ram_mib: ram,
                        });
                    }
                }
            }
            Sweep::Host | Sweep::Logdirty => {}
        }
    }
    out
}

/// The images a configuration boots and updates.
#[derive(Clone, Debug)]
pub struct Tree {
    /// `current` or `baseline`.
    pub label: &'static str,
    /// The commit the images are built from.
    pub revision: String,
    /// The hypervisor and its boot modules (dom0, the domUs, the images to
    /// update to).
    pub images: Images,
    /// The modules updates go to, in turn.
    pub update_to: Vec<String>,
    /// Whether it has HVM guests (a module `hvm`).
    pub hvm: bool,
}

impl Tree {
    /// Whether the tree can run `c`.
    pub fn runs(&self, c: &Config) -> bool {
        c.kind == Kind::Pv || self.hvm
    }
}

/// Milliseconds domUs run between two updates.
const SETTLE_MS: u64 = 100;

/// Boots `c` with `tree`, performs `updates` updates and reads the record
/// from the transcript. An `Err` is a failure before any figure.
pub fn measure(c: &Config, tree: &Tree, updates: u64) -> Result<Record, String> {
    let started = Instant::now();
    let mut config = MachineConfig::new(&c.machine_name(tree.label))?;
    config.images = tree.images.clone();
    config.set_ram(c.ram_mib);
    let (mut m, ids) = boot_guests(&config, c.kind.module(), c.domus, c.guest_mib, "")?;
    if c.log_dirty {
        for id in &ids {
            let out = m.command(&format!("logdirty {id} on"), scenario::CMD)?;
            if !out.iter().any(|l| l.contains("on: done")) {
                return Err(format!("logdirty {id} on: {out:?}"));
            }
        }
    }
    // Guests that time their pauses say so in their heartbeat.
    let timed = m.transcript.iter().any(|l| {
        domain_line(l)
            .is_some_and(|(_, t)| t.starts_with("heartbeat ") && t.contains("sched_gap_tsc="))
    });
    // A quiet moment first, dom0 idle: two more heartbeats of every domU,
    // whose gaps are the scheduler's alone.
    let quiet_from = m.transcript.len();
    if timed {
        let needles: Vec<String> = ids
            .iter()
            .map(|&d| {
                let beats = m.lines_with(&format!("(d{d}) heartbeat ")).count();
                format!("(d{d}) heartbeat {}:", beats + 2)
            })
            .collect();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        scenario::wait_all(&mut m, &needles, scenario::CMD);
    }
    let marks = Marks {
        quiet_from,
        updates_from: m.transcript.len(),
    };
    let quiet = scenario::CMD + Duration::from_secs(u64::from(c.domus));
    let pauses_of = |m: &mut Machine, n: u64| -> Result<(), String> {
        let needles: Vec<String> = ids
            .iter()
            .map(|d| format!("(d{d}) update-pause {n}:"))
            .collect();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        scenario::wait_all(m, &needles, quiet);
        Ok(())
    };
    let images: Vec<&str> = tree.update_to.iter().map(String::as_str).collect();
    // Before each update but the first, every domU has said what it saw of
    // the one before.
    let summary = scenario::soak_hooked(&mut m, &images, updates, SETTLE_MS, &mut |m, i| {
        if timed && i > 0 {
            pauses_of(m, i)?;
        }
        Ok(())
    })?;
    if timed && summary.updates == updates {
        pauses_of(&mut m, updates)?;
    }
    m.send("poweroff")?;
    let ending = m.wait_exit(scenario::CMD);
    let verdict = scenario::verdict(&m, ending);
    let mut r = record(
        c,
        tree,
        &m.transcript,
        &ids,
        marks,
        updates,
        &config.cmdline,
    );
    r.seconds = started.elapsed().as_secs_f64();
    r.log = m.log_path().display().to_string();
    let error = match verdict {
        Err(e) => Some(e),
        Ok(_) if !summary.clean(updates) => Some(format!("not clean: {summary}")),
        Ok(_) => None,
    };
    r.passed = error.is_none();
    r.error = error;
    Ok(r)
}

/// Where a configuration's transcript went from one step to the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct Marks {
    /// The quiet moment before the updates began here.
    pub quiet_from: usize,
    /// The updates began here.
    pub updates_from: usize,
}

/// The record of configuration `c` read from a transcript: the report
/// lines, the guests' pauses and heartbeats.
pub fn record(
    c: &Config,
    tree: &Tree,
    transcript: &[String],
    ids: &[u16],
    marks: Marks,
    updates: u64,
    cmdline: &str,
) -> Record {
    let reports: Vec<&String> = transcript
        .iter()
        .filter(|l| l.starts_with("(hv) lu-report "))
        .collect();
    let mut us: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in &reports {
        for (k, v) in us_fields(line) {
            us.entry(k).or_default().push(v as f64);
        }
    }
    let phases_us: BTreeMap<String, Stats> = us
        .into_iter()
        .filter_map(|(k, v)| Some((k, Stats::of(v)?)))
        .collect();
    let field = |key: &str| {
        Stats::of(
            reports
                .iter()
                .filter_map(|l| fields(l).get(key)?.parse::<f64>().ok()),
        )
    };
    let state_bytes = field("state_bytes");
    let runs = field("runs");
    let guest_gib = f64::from(c.domus) * c.guest_mib as f64 / 1024.0;
    let blackout = phases_us.get("blackout_us").map(|s| s.median);
    let tsc_khz = scenario::tsc_khz(transcript);
    Record {
        id: format!("{} {}", tree.label, c.id()),
        tree: tree.label.into(),
        revision: tree.revision.clone(),
        sweep: c.sweep.name().into(),
        kind: c.kind.name().into(),
        log_dirty: c.log_dirty,
        domus: c.domus,
        guest_mib: c.guest_mib,
        guest_gib,
        ram_mib: c.ram_mib,
        cmdline: cmdline.into(),
        updates_asked: updates,
        updates: reports.len() as u64,
        passed: false,
        error: None,
        seconds: 0.0,
        log: String::new(),
        tsc_khz,
        state_bytes_per_domain: state_bytes.map(|s| s.median / f64::from(c.domus + 1)),
        state_bytes_per_run: state_bytes
            .zip(runs)
            .map(|(s, r)| s.median / r.median.max(1.0)),
        blackout_us_per_guest_gib: blackout.map(|b| b / guest_gib),
        guest_pause: tsc_khz.and_then(|khz| guest_view(transcript, ids, marks, khz, &reports)),
        phases_us,
        state_bytes,
        runs,
        frames: field("frames"),
        vs_baseline: BTreeMap::new(),
    }
}

/// What the domUs `ids` saw of the updates whose report lines are
/// `reports` (update `n` is the `n`th report: the domUs existed before the
/// first update), `None` if they printed no pause.
fn guest_view(
    transcript: &[String],
    ids: &[u16],
    marks: Marks,
    tsc_khz: u64,
    reports: &[&String],
) -> Option<GuestPauses> {
    let pauses: Vec<_> = guest_pauses(transcript)
        .into_iter()
        .filter(|p| ids.contains(&p.dom))
        .collect();
    if pauses.is_empty() {
        return None;
    }
    let blackout = |n: u64| -> Option<f64> {
        let line = reports.get(usize::try_from(n).ok()?.checked_sub(1)?)?;
        fields(line).get("blackout_us")?.parse().ok()
    };
    let mut worst: BTreeMap<u64, f64> = BTreeMap::new();
    let mut per_domain: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in &pauses {
        let us = p.us_at(tsc_khz) as f64;
        let w = worst.entry(p.n).or_insert(0.0);
        *w = w.max(us);
        per_domain
            .entry(format!("d{}", p.dom))
            .or_default()
            .push(us);
    }
    // The heartbeats' gaps from line `from` to line `to`; with `own`,
    // not each domU's first there, whose window began before `from`.
    let gaps = |from: usize, to: usize, own: bool| {
        let mut seen: Vec<u16> = Vec::new();
        let mut out = Vec::new();
        for l in transcript.get(from..to).unwrap_or_default() {
            let Some((dom, text)) = domain_line(l) else {
                continue;
            };
            if !ids.contains(&dom) || !text.starts_with("heartbeat ") {
                continue;
            }
            if own && !seen.contains(&dom) {
                seen.push(dom);
                continue;
            }
            let tsc = fields(text)
                .get("sched_gap_tsc")
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(tsc) = tsc {
                out.push((tsc.saturating_mul(1000) / tsc_khz.max(1)) as f64);
            }
        }
        Stats::of(out)
    };
    Some(GuestPauses {
        worst_us: Stats::of(worst.values().copied())?,
        worst_vs_blackout: Stats::of(
            worst
                .iter()
                .filter_map(|(&n, &us)| Some(us / blackout(n)?.max(1.0))),
        )?,
        per_domain_us: per_domain
            .into_iter()
            .filter_map(|(d, v)| Some((d, Stats::of(v)?)))
            .collect(),
        // The quiet moment's own: the windows before it saw domUs created
        // and log-dirty turned on. While updating, every heartbeat: the
        // first one's window ends with the first `lu load`, and its start
        // in the quiet moment holds ordinary gaps only.
        quiet_gap_us: gaps(marks.quiet_from, marks.updates_from, true),
        updating_gap_us: gaps(marks.updates_from, transcript.len(), false),
        lines: pauses.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        Tree {
            label: "current",
            revision: "abc".into(),
            images: Images {
                hv: "hv".into(),
                modules: Vec::new(),
            },
            update_to: vec!["hv-b".into(), "hv".into()],
            hvm: true,
        }
    }

    #[test]
    fn the_sweeps_hold_the_points_the_issue_names() {
        let all = configs(&[Sweep::Ram, Sweep::Guest, Sweep::Count], false, None);
        let ram: Vec<u32> = all
            .iter()
            .filter(|c| c.sweep == Sweep::Ram)
            .map(|c| c.ram_mib)
            .collect();
        assert_eq!(ram, [1024, 4096, 16384, 65536]);
        let largest = all
            .iter()
            .filter(|c| c.sweep == Sweep::Guest)
            .map(|c| c.guest_mib)
            .max();
        assert_eq!(
            largest,
            Some(pv_abi::call::MAX_DOMAIN_KIB.min(2 << 20) / 1024)
        );
        let guest = all.iter().filter(|c| c.sweep == Sweep::Guest).count();
        assert_eq!(guest % 3, 0);
        assert!(guest >= 12, "{guest}");
        assert_eq!(all.iter().filter(|c| c.sweep == Sweep::Count).count(), 18);
        assert!(all
            .iter()
            .filter(|c| c.sweep != Sweep::Ram)
            .all(|c| c.ram_mib == SWEEP_RAM_MIB));
        let quick = configs(&[Sweep::Count], true, Some(1024));
        assert_eq!(quick.len(), 6);
        assert!(quick.iter().all(|c| c.ram_mib == 1024 && c.domus <= 2));
        assert!(configs(&[Sweep::Host, Sweep::Logdirty], false, None).is_empty());
    }

    #[test]
    fn a_transcript_gives_the_phases_the_state_and_the_guests_pauses() {
        let c = Config {
            sweep: Sweep::Count,
            kind: Kind::Pv,
            log_dirty: false,
            domus: 2,
            guest_mib: 4,
            ram_mib: 1024,
        };
        let t: Vec<String> = [
            "(hv) free frames 100, TSC 1000000 kHz, modules: dom0",
            // The quiet moment: each domU's first heartbeat there is
            // left out.
            "(d1) heartbeat 1: checks=1 remaps=1 mismatches=0 sched_gap_tsc=90000000",
            "(d2) heartbeat 1: checks=1 remaps=1 mismatches=0 sched_gap_tsc=0",
            "(d1) heartbeat 2: checks=2 remaps=2 mismatches=0 sched_gap_tsc=20000000",
            "(d2) heartbeat 2: checks=2 remaps=2 mismatches=0 sched_gap_tsc=22000000",
            // The updates.
            "(d1) heartbeat 3: checks=3 remaps=3 mismatches=0 sched_gap_tsc=47000000",
            "(d1) heartbeat 4: checks=3 remaps=3 mismatches=0 sched_gap_tsc=30000000",
            "(hv) lu-report seq=1 pause_us=10 pass_us=100 blackout_us=40000 state_bytes=900 runs=30 frames=5000 boot_frametable_us=5",
            "(d1) update-pause 1: gap_tsc=60000000 gap_us=60100 hv=01",
            "(d2) update-pause 1: gap_tsc=50000000 gap_us=50100 hv=01",
            "(hv) lu-report seq=2 pause_us=20 pass_us=300 blackout_us=50000 state_bytes=930 runs=30 frames=5000",
            "(d1) update-pause 2: gap_tsc=55000000 gap_us=55100 hv=02",
            "(d2) update-pause 2: gap_tsc=75000000 gap_us=75100 hv=02",
            "(d3) update-pause 2: gap_tsc=99000000000 gap_us=1 hv=02",
        ]
        .map(String::from)
        .to_vec();
        let marks = Marks {
            quiet_from: 1,
            updates_from: 5,
        };
        let r = record(&c, &tree(), &t, &[1, 2], marks, 2, "lu_region=64M");
        assert_eq!(r.updates, 2);
        assert_eq!(r.median_us("pass_us"), Some(200.0));
        assert_eq!(r.phases_us["boot_frametable_us"].n, 1);
        assert_eq!(r.state_bytes.map(|s| s.median), Some(915.0));
        assert_eq!(r.state_bytes_per_domain, Some(305.0));
        assert_eq!(r.state_bytes_per_run, Some(30.5));
        // 45 ms over 8 MiB of guests.
        assert_eq!(r.blackout_us_per_guest_gib, Some(45_000.0 * 128.0));
        let p = r.guest_pause.expect("the guests timed their pauses");
        // d3 is none of the configuration's domUs.
        assert_eq!(p.lines, 4);
        assert_eq!((p.worst_us.min, p.worst_us.max), (60_000.0, 75_000.0));
        assert_eq!(
            (p.worst_vs_blackout.min, p.worst_vs_blackout.max),
            (1.5, 1.5)
        );
        assert_eq!(p.per_domain_us["d2"].median, 62_500.0);
        let quiet = p.quiet_gap_us.expect("quiet heartbeats");
        assert_eq!((quiet.n, quiet.median), (2, 21_000.0));
        let updating = p.updating_gap_us.expect("heartbeats while updating");
        assert_eq!((updating.n, updating.max), (2, 47_000.0));
    }
}
