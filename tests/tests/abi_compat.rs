//! Updates between images of different handover-ABI versions: a current
//! image (reads and writes 1.0..=1.1) and one built with `HVLU_ABI=1.0`,
//! which reads and writes only 1.0 as images from before 1.1 did. The
//! writer negotiates the version from the reader's note; what 1.0 cannot
//! carry for a guest (a paused domain) is refused before the point of no
//! return, and every guest runs on.

use std::time::Duration;

use hvlu_harness::scenario::{boot, cmd, fields, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

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
/// old side chose to write and the update's report.
fn update(m: &mut Machine, image: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let reports = m.lines_with("(hv) lu-report ").count();
    let out = cmd(m, &format!("live-update {image}"));
    assert!(
        out.iter().any(|l| l.contains("lu exec: done")),
        "{out:?}; log: {}",
        m.log_path().display()
    );
    if m.lines_with("(hv) lu-report ").count() == reports {
        m.wait_for_text("(hv) lu-report ", LONG)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let report = m
        .lines_with("(hv) lu-report ")
        .last()
        .expect("a report")
        .to_string();
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
fn updates_down_to_abi_1_0_and_back_up() {
    let mut m = boot("abi-compat", "autostart=domu,domu");
    wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], LONG);

    // 1.0 cannot say that d2 is paused: refused, nothing changes.
    cmd(&mut m, "pause 2");
    let out = cmd(&mut m, "live-update hv-abi-1.0");
    assert!(out.iter().any(|l| l.contains("lu exec: error")), "{out:?}");
    let cancelled = m
        .lines_with("(hv) lu: update cancelled")
        .last()
        .expect("a cancellation")
        .to_string();
    assert!(
        cancelled.contains("ABI 1.0 cannot carry this state: d2 is paused"),
        "{cancelled}"
    );
    let d1 = beats(&m, 1);
    m.wait_for_text(&format!("(d1) heartbeat {}:", d1 + 2), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    cmd(&mut m, "unpause 2");

    // Down: the current image writes 1.0 for an image that reads only 1.0.
    let (writing, report) = update(&mut m, "hv-abi-1.0");
    assert_eq!(writing, "1.0");
    assert_eq!(report["seq"], "1");
    assert_eq!(report["digest_equal"], "yes");
    both_go_on(&mut m, 2);

    // Up: the 1.0 image writes 1.0, which the current image reads.
    let (writing, report) = update(&mut m, "hv-b");
    assert_eq!(writing, "1.0");
    assert_eq!(report["seq"], "2");
    assert_eq!(report["digest_equal"], "yes");
    both_go_on(&mut m, 2);

    // And between current images, 1.1 again.
    let (writing, report) = update(&mut m, "hv");
    assert_eq!(writing, "1.1");
    assert_eq!(report["seq"], "3");
    both_go_on(&mut m, 2);
    poweroff_pass(&mut m);
}
