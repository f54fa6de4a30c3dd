//! Updates between a current image (reads and writes 1.0 up to this tree's
//! `handover_abi::CURRENT`) and the
//! real 1.0 release (built from its own revision, `releases.toml`), which
//! reads and writes only 1.0, on a machine of the current tree with two
//! domUs: the version each writer chooses from the reader's note, and what
//! 1.0 cannot carry for a guest. A paused domain cannot be said in 1.0: the
//! update to 1.0 is refused before anything is paused, with that
//! reason, and every guest runs on. (`compat.rs` checks the updates between
//! the two both ways with each release's own guests; this file checks the
//! refusal and the versions written.)

use std::collections::BTreeMap;
use std::time::Duration;

use hvlu_harness::releases;
use hvlu_harness::scenario::{boot_with, cmd, fields, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

/// The boot module the 1.0 release's hypervisor is loaded from.
const TO_1_0: &str = "to-1.0";

fn beats(m: &Machine, dom: u16) -> usize {
    m.lines_with(&format!("(d{dom}) heartbeat ")).count()
}

/// Both domUs beat `n` more times.
fn both_go_on(m: &mut Machine, n: usize) {
    let needles: Vec<String> = (1..=2)
        .map(|d| format!("(d{d}) heartbeat {}:", beats(m, d) + n))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    wait_all(m, &needles, LONG);
}

/// Runs `live-update <image>`, expects it done, and returns the version the
/// old side chose to write (its `lu: loaded` line) and the report of
/// update `seq`.
fn update(m: &mut Machine, image: &str, seq: u64) -> (String, BTreeMap<String, String>) {
    let out = cmd(m, &format!("live-update {image}"));
    assert!(
        out.iter().any(|l| l.contains("lu exec: done")),
        "update {seq} to {image}: {out:?}; log: {}",
        m.log_path().display()
    );
    let report = wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG).remove(0);
    let loaded = m
        .lines_with(&format!("(hv) lu: loaded `{image}`"))
        .last()
        .unwrap_or_else(|| panic!("no load line for {image}"))
        .to_string();
    let writing = loaded
        .split(", ")
        .find_map(|part| part.strip_prefix("writing "))
        .unwrap_or_else(|| panic!("no version in `{loaded}`"))
        .to_string();
    (writing, fields(&report))
}

#[test]
fn updates_down_to_release_1_0_and_back_up() {
    let old = releases::find("1.0")
        .and_then(|r| r.images())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut m = boot_with("abi-compat", "autostart=domu,domu", |c| {
        c.images.modules.push((TO_1_0.into(), old.hv.clone()));
    });
    wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], LONG);

    // 1.0 cannot say that d2 is paused: refused, nothing changes.
    cmd(&mut m, "pause 2");
    let out = cmd(&mut m, &format!("live-update {TO_1_0}"));
    assert!(
        out.iter()
            .any(|l| l.contains("lu exec: error") && l.contains("d2 is paused")),
        "{out:?}"
    );
    let cancelled = m
        .lines_with("(hv) lu: update cancelled")
        .last()
        .expect("a cancellation")
        .to_string();
    assert!(
        cancelled.contains(
            "refused before pausing anything: ABI 1.0 cannot carry this state: d2 is paused"
        ),
        "{cancelled}"
    );
    assert_eq!(m.lines_with("(hv) lu-report ").count(), 0, "no update ran");
    // d1 runs on; d2 is still paused, and runs on once unpaused.
    let d2 = beats(&m, 2);
    let d1 = beats(&m, 1);
    m.wait_for_text(&format!("(d1) heartbeat {}:", d1 + 2), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(beats(&m, 2), d2, "d2 beat while paused");
    cmd(&mut m, "unpause 2");
    both_go_on(&mut m, 2);

    // Down: the current image writes 1.0 for the release that reads only
    // 1.0.
    let (writing, report) = update(&mut m, TO_1_0, 1);
    assert_eq!(writing, "1.0");
    assert_eq!(report["digest_equal"], "yes");
    both_go_on(&mut m, 2);

    // Up: the 1.0 release writes 1.0, which the current image reads.
    let (writing, report) = update(&mut m, "hv-b", 2);
    assert_eq!(writing, "1.0");
    assert_eq!(report["digest_equal"], "yes");
    both_go_on(&mut m, 2);

    // And between current images, this tree's version again.
    let (writing, report) = update(&mut m, "hv", 3);
    assert_eq!(writing, handover_abi::CURRENT.to_string());
    assert_eq!(report["digest_equal"], "yes");
    both_go_on(&mut m, 2);
    poweroff_pass(&mut m);
}
