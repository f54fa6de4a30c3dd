//! Nothing a domain is gets lost across a live update (handover ABI 1.1): a
//! paused domain stays paused, the guests' report counters and the reports
//! of domains destroyed before the update survive, the hypervisor's command
//! line goes on, and the uptime counts from the cold boot.

use std::time::Duration;

use hvlu_harness::scenario::{boot, cmd, field, fields, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

fn heartbeats(m: &Machine, dom: u16) -> usize {
    m.lines_with(&format!("(d{dom}) heartbeat ")).count()
}

#[test]
fn paused_stays_paused_and_reports_survive_an_update() {
    // `loglvl=debug` must still be in force after the update: refused
    // hypercalls are logged only at that level.
    let mut m = boot("continuity", "autostart=domu loglvl=debug");
    m.wait_for_text("(d1) heartbeat 2:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    // d2 runs the refusal probes once (they are counted as expected
    // refusals and never repeated), d3 is created and destroyed: its
    // report must still be in the verdict after the update.
    // The new domain may print before dom0's prompt returns, inside the
    // command's own wait: look at everything seen since the boot.
    cmd(&mut m, "create domu probe");
    wait_all(&mut m, &["(d2) probe 9 ", "(d2) heartbeat 1:"], LONG);
    cmd(&mut m, "create domu");
    wait_all(&mut m, &["(d3) heartbeat 1:"], LONG);
    cmd(&mut m, "destroy 3");

    cmd(&mut m, "pause 1");
    let paused_at = heartbeats(&m, 1);

    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(&mut m, &["(hv) lu-report "], LONG).remove(0);
    assert_eq!(fields(&report)["digest_equal"], "yes", "{report}");

    // d2 goes on; d1 does not.
    let n2 = heartbeats(&m, 2);
    m.wait_for_text(&format!("(d2) heartbeat {}:", n2 + 3), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(heartbeats(&m, 1), paused_at, "d1 ran while paused");
    let list = cmd(&mut m, "list");
    assert!(
        list.iter().any(|l| l
            .strip_prefix("(d0) ")
            .is_some_and(|l| l.starts_with("1 ") && l.trim_end().ends_with("paused"))),
        "{list:?}"
    );

    // Until it is unpaused.
    cmd(&mut m, "unpause 1");
    m.wait_for_text(&format!("(d1) heartbeat {}:", paused_at + 1), LONG)
        .unwrap_or_else(|e| panic!("{e}"));

    // A refused hypercall is still logged: the command line went on.
    let before = m.lines_with("(hv) d0: hypercall").count();
    cmd(&mut m, "destroy 0");
    assert!(
        m.lines_with("(hv) d0: hypercall").count() > before,
        "loglvl=debug was lost in the update; log: {}",
        m.log_path().display()
    );

    poweroff_pass(&mut m);
    // The verdict counts what was reported before the update: d2's probes,
    // d3's checks although d3 is gone.
    let d2 = m
        .lines_with("(hv) report d2 ")
        .last()
        .unwrap_or_else(|| panic!("no report for d2"))
        .to_string();
    assert!(field(&d2, "refusals_ok").unwrap_or(0) >= 9, "{d2}");
    let d3 = m
        .lines_with("(hv) report d3 ")
        .last()
        .unwrap_or_else(|| panic!("no report for the destroyed d3"))
        .to_string();
    assert!(field(&d3, "checks").unwrap_or(0) > 0, "{d3}");
    let off = m
        .lines_with("(hv) poweroff:")
        .last()
        .expect("poweroff line")
        .to_string();
    assert!(off.contains("since cold boot, 1 live updates"), "{off}");
}
