//! Every step of `lu exec` before the point of no return, made to fail for
//! real in turn (`lu_inject=fail-<step>`): the update is cancelled with the
//! step's reason, every guest runs on, the image stays staged, and the next
//! `lu exec` succeeds. (After the point of no return, the incoming image's
//! refusals are `live_update.rs`'s `a_corrupted_*` tests.)

use std::time::Duration;

use hvlu_harness::scenario::{boot, cmd, poweroff_pass, summarise, wait_all};

const LONG: Duration = Duration::from_secs(90);

fn cancelled_then_succeeds(step: &str, reason: &str) {
    let mut m = boot(
        &format!("lu-fail-{step}"),
        &format!("autostart=domu lu_inject=fail-{step}"),
    );
    m.wait_for_text("(d1) heartbeat 2:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = cmd(&mut m, "live-update hv-b");
    assert!(
        out.iter().any(|l| l.contains("lu exec: error")),
        "{step}: {out:?}"
    );
    let cancelled = m
        .lines_with("(hv) lu: update cancelled, every domain runs on: ")
        .last()
        .unwrap_or_else(|| panic!("{step}: no cancellation; log: {}", m.log_path().display()))
        .to_string();
    assert!(cancelled.contains(reason), "{step}: {cancelled}");
    // The guests run on.
    let n = m.lines_with("(d1) heartbeat ").count();
    m.wait_for_text(&format!("(d1) heartbeat {}:", n + 2), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    // The image is still staged, the injection spent: the next exec works.
    let out = cmd(&mut m, "lu exec");
    assert!(
        out.iter().any(|l| l.contains("lu exec: done")),
        "{step}: {out:?}"
    );
    wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG);
    let summary = summarise(&m.transcript);
    assert!(summary.clean(1), "{step}: {summary}");
    poweroff_pass(&mut m);
}

#[test]
fn a_state_too_large_for_its_area_cancels() {
    cancelled_then_succeeds("too-large", "the staging area has 64");
}

#[test]
fn an_encoding_failure_cancels() {
    cancelled_then_succeeds("encode", "does not write ABI version 1.99");
}

#[test]
fn a_preflight_mismatch_cancels() {
    cancelled_then_succeeds("preflight", "pre-flight");
}

#[test]
fn a_new_image_that_would_not_fit_cancels() {
    cancelled_then_succeeds("boot", "boot");
}

#[test]
fn entry_tables_that_cannot_be_built_cancel() {
    cancelled_then_succeeds("tables", "entry tables");
}
