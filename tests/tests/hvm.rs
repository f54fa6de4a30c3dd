//! HVM domains (issue #16): an HVM domU under AMD SVM with nested paging
//! runs its self-checks beside PV domUs; `list` shows each domain's kind;
//! the PV-only hypercalls are refused to it; a live update with an HVM
//! domain is refused before anything pauses until the handover carries one.

use std::time::Duration;

use hvlu_harness::scenario::{assert_refusals, boot, cmd, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(120);

fn heartbeats(m: &Machine, dom: u16) -> usize {
    m.lines_with(&format!("(d{dom}) heartbeat ")).count()
}

/// Waits for two more heartbeats of each domain of `doms`.
fn beats_go_on(m: &mut Machine, doms: &[u16]) {
    let needles: Vec<String> = doms
        .iter()
        .map(|&d| format!("(d{d}) heartbeat {}:", heartbeats(m, d) + 2))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    wait_all(m, &needles, LONG);
}

/// The row of `list` for domain `id`, as words.
fn row(m: &mut Machine, id: u16) -> Vec<String> {
    let out = cmd(m, "list");
    out.iter()
        .filter_map(|l| l.strip_prefix("(d0) "))
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|w| w.first() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("d{id} is not listed: {out:?}"))
}

#[test]
fn an_hvm_domu_runs_beside_a_pv_domu_with_clean_self_checks() {
    let mut m = boot("hvm-beside-pv", "autostart=domu");
    let out = cmd(&mut m, "create hvm 4096 probe");
    assert!(
        out.iter().any(|l| l.contains("created d2 from hvm")),
        "{out:?}"
    );
    let created = m
        .lines_with("(hv) d2 created from module hvm (HVM, 4096 KiB")
        .count();
    assert_eq!(
        created,
        1,
        "the hypervisor's create line; log: {}",
        m.log_path().display()
    );
    wait_all(&mut m, &["(d2) hvm domU 2 up: "], LONG);
    beats_go_on(&mut m, &[1, 2]);
    assert_eq!(row(&mut m, 2)[4], "hvm");
    assert_eq!(row(&mut m, 1)[4], "pv");
    assert_eq!(row(&mut m, 0)[4], "pv");
    beats_go_on(&mut m, &[1, 2]);
    poweroff_pass(&mut m);
    // Probes 40–45: the PV-only calls and another domain's map.
    assert_refusals(&m, 2, 6);
    let report = m
        .lines_with("(hv) report d2 (hvm): checks=")
        .next()
        .expect("the HVM domain's report");
    let checks: u64 = report
        .split("checks=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a check count");
    assert!(checks > 0, "{report}");
}

#[test]
fn an_update_with_an_hvm_domain_is_refused_before_anything_pauses() {
    let mut m = boot("hvm-update-refused", "");
    cmd(&mut m, "create hvm 4096");
    wait_all(&mut m, &["(d1) heartbeat 1:"], LONG);
    let out = cmd(&mut m, "live-update hv-b");
    assert!(
        out.iter()
            .any(|l| l.contains("d1 is an HVM domain") && l.contains("nothing was paused")),
        "{out:?}"
    );
    beats_go_on(&mut m, &[1]);
    poweroff_pass(&mut m);
}
