//! The compatibility matrix: updates between the recorded releases and the
//! current tree, in QEMU, with self-checking domUs (`cargo xtask compat`,
//! `tests/tests/compat.rs`).
//!
//! A cell is an ordered pair of releases of one major, `A` then `B`
//! ([`pairs`]): a machine boots `A`'s hypervisor with `A`'s own dom0 and
//! domU, with both hypervisor images as the boot modules `to-A` and
//! `to-B`, and `A`'s dom0 — a guest, which runs on whatever hypervisor is
//! under it — updates to `B`, back to `A` and to `B` again ([`run`]).
//! Each update must:
//!
//! - be done, its report (printed by the image that arrived) saying that
//!   the owned-frame digest and the free frames are equal;
//! - have been written in the version the version rule gives
//!   ([`Release::writes_to`]), which the writer's `lu load` line names;
//! - leave the domains as they were: every row of `list` (id, name,
//!   frames, the most frames, state) unchanged, and the domU beating on;
//! - have carried a state that today's reader decodes, read from the
//!   machine's memory where the arriving image says it found it
//!   ([`capture::state_of_update`]): of that version, by the writer the
//!   report names, with the domains of `list` — so the states the old
//!   releases write are decoded by today's code too;
//! - when it is written in 1.0 by an image that knows more: first be
//!   refused, before anything is paused, with a domain paused (1.0 cannot
//!   say so), every other guest running on; then, with none paused, be
//!   done, the writer having said before the pause what 1.0 drops of its
//!   own records (the guests' reports at least).
//!
//! At the end the machine powers off and the hypervisor's verdict must be
//! PASS: the domU's checks were clean all along. An update the version
//! rule forbids must be refused by the writer with the reason, every guest
//! running on; the cell then stops there.
//!
//! [`table`] prints the cells: pair, the version each way, the result and
//! each update's blackout.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use handover_abi::version::AbiVersion;
use handover_abi::DomainFlags;

use crate::capture;
use crate::releases::{Release, ReleaseImages};
use crate::scenario::{boot_config, cmd, fields, poweroff_pass, wait_all};
use crate::{Machine, MachineConfig};

/// How long a step of a cell may go without progress.
const QUIET: Duration = Duration::from_secs(90);

/// Where the last matrix is written, under `target/`.
pub const MATRIX_FILE: &str = "target/compat/matrix.txt";

/// The ordered pairs of distinct releases of one major, in `releases`'
/// order: the cells of the matrix.
pub fn pairs(releases: &[Release]) -> Vec<(Release, Release)> {
    let mut out = Vec::new();
    for a in releases {
        for b in releases {
            if a.name != b.name && a.writes.max.major == b.writes.max.major {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

/// One update of a cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The release that wrote the state.
    pub writer: String,
    /// The release it updated to.
    pub reader: String,
    /// The version the writer hands over in, by the version rule; `None`:
    /// none, the update must be refused.
    pub version: Option<AbiVersion>,
    /// The blackout the report gave (µs), or the refusal's reason.
    pub outcome: Result<u64, String>,
}

/// What a cell showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// `A`.
    pub from: String,
    /// `B`.
    pub to: String,
    /// The updates done or refused, in order; on a failure, those before.
    pub hops: Vec<Hop>,
    /// Why the cell failed, with the serial log's path; `None`: it passed.
    pub failure: Option<String>,
}

impl Cell {
    /// Whether every update did what the version rule says and the guests
    /// were clean.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The module an image is loaded under in a cell.
fn module(r: &Release) -> String {
    format!("to-{}", r.name)
}

/// The rows of `list`: one per domain, its words after dom0's prefix,
/// without the kind column (`pv`/`hvm`) a dom0 from issue #16 on prints
/// before the state, so every release's rows compare alike.
fn domains(m: &mut Machine) -> Vec<String> {
    cmd(m, "list")
        .iter()
        .filter_map(|l| l.strip_prefix("(d0) "))
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u16>().is_ok())
        })
        .map(|l| {
            let mut words: Vec<&str> = l.split_whitespace().collect();
            if words.len() == 6 {
                words.remove(4);
            }
            words.join(" ")
        })
        .collect()
}

/// The domU has beaten once more than it had.
fn domu_beats_on(m: &mut Machine) {
    let before = m.lines_with("(d1) heartbeat ").count();
    wait_all(m, &[&format!("(d1) heartbeat {}:", before + 1)], QUIET);
}

/// The last line of dom0's output for a command, for a reason.
fn last_words(out: &[String]) -> String {
    out.iter()
        .rev()
        .find(|l| !l.ends_with("dom0>"))
        .map_or_else(String::new, |l| {
            l.trim_start_matches("(d0) ").trim().to_string()
        })
}

/// A 1.0 state cannot say that a domain is paused: with d1 paused, an
/// update written in 1.0 by an image that writes more must be refused
/// with that reason, and d1 must be paused and the others run on; it is
/// unpaused after.
fn paused_domain_refused(m: &mut Machine, target: &Release) {
    let out = cmd(m, "pause 1");
    assert!(
        !out.iter().any(|l| Machine::is_refusal(l)),
        "pause 1: {out:?}"
    );
    let out = cmd(m, &format!("live-update {}", module(target)));
    assert!(
        !out.iter().any(|l| l.contains("lu exec: done")),
        "an update written in 1.0 with d1 paused must be refused: {out:?}; log: {}",
        m.log_path().display()
    );
    let said = m
        .transcript
        .iter()
        .rev()
        .take(40)
        .any(|l| l.contains("before pausing") && l.contains("paused") && l.contains("1.0"));
    assert!(
        said,
        "the refusal names the paused domain and 1.0: {out:?}; log: {}",
        m.log_path().display()
    );
    let rows = domains(m);
    assert!(
        rows.iter()
            .any(|r| r.starts_with("1 ") && r.ends_with(" paused")),
        "d1 stays paused: {rows:?}"
    );
    cmd(m, "unpause 1");
    domu_beats_on(m);
}

/// The state update `seq` carried, read from the machine's memory and
/// decoded by today's reader ([`capture::state_of_update`]): written in
/// `version` by the image the report names, with the runs the report
/// counted, and the domains of `rows` (id, name, frames, most frames; none
/// paused, only d0 privileged, each with runs and vCPUs).
fn check_state(m: &mut Machine, seq: u64, version: AbiVersion, report: &str, rows: &[String]) {
    let captured = capture::state_of_update(m, seq).unwrap_or_else(|e| panic!("{e}"));
    let state = captured.state();
    let f = fields(report);
    assert_eq!(captured.version(), version, "update {seq}: {report}");
    let build: String = captured.decoded.header.producer.build_id.0[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(Some(&build), f.get("from"), "the writer: {report}");
    let runs: usize = state.domains.iter().map(|d| d.runs.len()).sum();
    assert_eq!(Some(&runs.to_string()), f.get("runs"), "{report}");
    let seen: Vec<String> = state
        .domains
        .iter()
        .map(|d| {
            assert!(!d.runs.is_empty() && !d.vcpus.is_empty(), "{d:?}");
            assert_eq!(
                d.flags.contains(DomainFlags::PRIVILEGED),
                d.id.0 == 0,
                "d{}: {:?}",
                d.id.0,
                d.flags
            );
            let run = if d.paused { "paused" } else { "running" };
            format!(
                "{} {} {} {} {run}",
                d.id.0,
                d.name,
                d.frames(),
                d.max_frames
            )
        })
        .collect();
    assert_eq!(seen, rows, "update {seq}: the state as decoded; {report}");
}

/// One update, from the release running (`writer`) to `reader`, number
/// `seq`; the domains must be `rows` before and after.
fn hop(m: &mut Machine, seq: u64, writer: &Release, reader: &Release, rows: &[String]) -> Hop {
    let version = writer.writes_to(reader);
    let log = m.log_path().display().to_string();
    let knows_more = writer.writes.max > AbiVersion::new(1, 0);
    if version == Some(AbiVersion::new(1, 0)) && knows_more {
        paused_domain_refused(m, reader);
    }
    let target = module(reader);
    let drops = "(hv) lu: handover 1.0 does not carry";
    let said_before = m.lines_with(drops).count();
    let out = cmd(m, &format!("live-update {target}"));
    let done = out.iter().any(|l| l.contains("lu exec: done"));
    let Some(version) = version else {
        assert!(
            !done,
            "{} writes {}, {} reads {}: the update must be refused, it was done; log: {log}",
            writer.name, writer.writes, reader.name, reader.reads
        );
        domu_beats_on(m);
        assert_eq!(domains(m), rows, "a refused update changed the domains");
        return Hop {
            writer: writer.name.clone(),
            reader: reader.name.clone(),
            version: None,
            outcome: Err(last_words(&out)),
        };
    };
    assert!(done, "update {seq} to {target}: {out:?}; log: {log}");
    let loaded = m
        .lines_with(&format!("(hv) lu: loaded `{target}`"))
        .last()
        .unwrap_or_else(|| panic!("no `lu: loaded` line for {target}; log: {log}"))
        .to_string();
    assert!(
        loaded.contains(&format!("writing {version}")),
        "the version rule gives {version} from {} to {}: {loaded}",
        writer.name,
        reader.name
    );
    // The rest of the contract, agreed from the reader's note (only a
    // writer that states it: the 1.0 release's load line has none).
    if loaded.contains("argument page") {
        let contract = if reader.reads.max == AbiVersion::new(1, 0) {
            "argument page v1, image first, boot model 1"
        } else {
            "argument page v3"
        };
        assert!(
            loaded.contains(contract),
            "{} to {}: `{contract}`: {loaded}",
            writer.name,
            reader.name
        );
    }
    if version == AbiVersion::new(1, 0) && knows_more {
        // The guests' reports at least: the domU has reported its checks.
        assert!(
            m.lines_with(drops).count() > said_before,
            "{} says what 1.0 drops before it pauses; log: {log}",
            writer.name
        );
    }
    let prefix = format!("(hv) lu-report seq={seq} ");
    wait_all(m, &[&prefix], QUIET);
    let report = m.lines_with(&prefix).last().unwrap().to_string();
    let f = fields(&report);
    for key in ["digest_equal", "free_equal"] {
        assert_eq!(
            f.get(key).map(String::as_str),
            Some("yes"),
            "{key}: {report}"
        );
    }
    check_state(m, seq, version, &report, rows);
    domu_beats_on(m);
    assert_eq!(
        domains(m),
        rows,
        "update {seq} ({} to {}) changed the domains; log: {log}",
        writer.name,
        reader.name
    );
    Hop {
        writer: writer.name.clone(),
        reader: reader.name.clone(),
        version: Some(version),
        outcome: Ok(f
            .get("blackout_us")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no blackout_us in {report}"))),
    }
}

/// The cell `a` then `b`, as the [module documentation](self) says;
/// panics on the first thing that is wrong.
fn cell(a: &Release, b: &Release, done: &Mutex<Vec<Hop>>) {
    let images = |r: &Release| -> ReleaseImages { r.images().unwrap_or_else(|e| panic!("{e}")) };
    let (ia, ib) = (images(a), images(b));
    let mut boot = ia.boot();
    boot.modules.push((module(a), ia.hv.clone()));
    boot.modules.push((module(b), ib.hv.clone()));
    let mut m = boot_config(&MachineConfig {
        name: format!("compat-{}-{}", a.name, b.name),
        images: boot,
        mem_mib: 512,
        cmdline: "lu_region=64M autostart=domu".into(),
        extra: Vec::new(),
        hostlink: None,
        link: crate::qemu::LinkDevice::Virtio,
        devices: true,
        watchdog: None,
    });
    wait_all(&mut m, &["(d1) heartbeat 2:"], QUIET);
    let rows = domains(&mut m);
    assert_eq!(rows.len(), 2, "dom0 and the domU: {rows:?}");
    let mut on = a;
    for (seq, to) in (1..).zip([b, a, b]) {
        let h = hop(&mut m, seq, on, to, &rows);
        let refused = h.outcome.is_err();
        done.lock().unwrap_or_else(PoisonError::into_inner).push(h);
        if refused {
            break;
        }
        on = to;
    }
    poweroff_pass(&mut m);
}

/// Runs the cell `a` then `b` and says what it showed; a failure is
/// caught, not propagated.
pub fn run(a: &Release, b: &Release) -> Cell {
    let done = Arc::new(Mutex::new(Vec::new()));
    let (ra, rb, d) = (a.clone(), b.clone(), Arc::clone(&done));
    let result = thread::Builder::new()
        .name(format!("compat {} {}", a.name, b.name))
        .spawn(move || cell(&ra, &rb, &d))
        .map_err(|e| format!("cannot start a thread: {e}"))
        .and_then(|t| {
            t.join().map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "the cell panicked".into())
            })
        });
    let hops = done.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Cell {
        from: a.name.clone(),
        to: b.name.clone(),
        hops,
        failure: result.err(),
    }
}

/// Runs every cell, `jobs` machines at a time, in `pairs`' order.
pub fn run_all(pairs: &[(Release, Release)], jobs: usize) -> Vec<Cell> {
    let next = Mutex::new(0usize);
    let cells: Mutex<Vec<Option<Cell>>> = Mutex::new(vec![None; pairs.len()]);
    thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(PoisonError::into_inner);
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some((a, b)) = pairs.get(i) else { break };
                let c = run(a, b);
                println!(
                    "compat: {} -> {}: {}",
                    c.from,
                    c.to,
                    c.failure.as_deref().unwrap_or("pass")
                );
                cells.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(c);
            });
        }
    });
    cells
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}

/// The matrix as a table: for each cell the version each way, the result
/// and each update's blackout (ms), then every failure in full.
pub fn table(cells: &[Cell]) -> String {
    let mut t = String::from(
        "Compatibility matrix: the row's release boots with its own dom0 and domU,\n\
         updates to the column's, back, and to it again (A -> B -> A -> B).\n\n",
    );
    let _ = writeln!(
        t,
        "{:6}  {:6}  {:6}  {:6}  {:8}  blackout of each update (ms)",
        "A", "B", "A->B", "B->A", "result"
    );
    let version = |h: Option<&Hop>| {
        h.map_or("-".to_string(), |h| {
            h.version.map_or("none".to_string(), |v| v.to_string())
        })
    };
    for c in cells {
        let result = if !c.passed() {
            "FAILED"
        } else if c.hops.iter().any(|h| h.outcome.is_err()) {
            "refused"
        } else {
            "pass"
        };
        let blackouts: Vec<String> = c
            .hops
            .iter()
            .map(|h| match &h.outcome {
                Ok(us) => format!("{:.1}", *us as f64 / 1000.0),
                Err(_) => "refused".into(),
            })
            .collect();
        let _ = writeln!(
            t,
            "{:6}  {:6}  {:6}  {:6}  {:8}  {}",
            c.from,
            c.to,
            version(c.hops.first()),
            version(c.hops.get(1)),
            result,
            blackouts.join(", ")
        );
    }
    for c in cells {
        for h in &c.hops {
            if let Err(why) = &h.outcome {
                let _ = write!(
                    t,
                    "\n{} -> {}: refused, as the version rule says: {why}",
                    h.writer, h.reader
                );
            }
        }
        if let Some(why) = &c.failure {
            let _ = write!(t, "\n{} -> {} FAILED: {why}", c.from, c.to);
        }
    }
    t.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}
