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

/// The gpfns of `(d{id}) dirtied k: a b c d` lines, by `k`.
fn dirtied(m: &Machine, id: u16) -> std::collections::BTreeMap<u64, Vec<u64>> {
    let prefix = format!("(d{id}) dirtied ");
    m.lines_with(&prefix)
        .map(|l| {
            let (k, pages) = l[prefix.len()..].split_once(": ").expect("k: pages");
            let pages = pages
                .split_whitespace()
                .map(|g| u64::from_str_radix(g.trim_start_matches("0x"), 16).unwrap())
                .collect();
            (k.parse().unwrap(), pages)
        })
        .collect()
}

/// dom0's `logdirty <id> peek|clean`: the count and the gpfns listed.
fn logdirty_list(m: &mut Machine, id: u16, op: &str) -> (u64, Vec<u64>) {
    let out = cmd(m, &format!("logdirty {id} {op}"));
    let prefix = format!("(d0) logdirty d{id} {op}: ");
    let line = out
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("logdirty {id} {op}: {out:?}"));
    let (count, rest) = line.split_once(" dirty").expect("a count");
    let pages = rest
        .trim_start_matches(':')
        .split_whitespace()
        .map(|g| u64::from_str_radix(g.trim_start_matches("0x"), 16).unwrap())
        .collect();
    (count.parse().unwrap(), pages)
}

/// A hex word of a `key 0x..` phrase in `line`.
fn hex_after(line: &str, key: &str) -> u64 {
    let rest = line.split(key).nth(1).expect(key);
    let word = rest
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap();
    u64::from_str_radix(word.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn log_dirty_reports_exactly_the_pages_the_guest_wrote() {
    let mut m = boot("hvm-logdirty", "");
    cmd(&mut m, "create hvm 4096 dirty");
    wait_all(&mut m, &["(d1) dirtied 1: "], LONG);
    let up = m
        .lines_with("(d1) hvm domU 1 up: ")
        .next()
        .expect("the guest's start line")
        .to_string();
    let mark = hex_after(&up, "marker at gpfn ");
    // Refusals: a PV domain, an untracked domain, tracking twice.
    for (line, why) in [
        ("logdirty 0 on", "d0 is a PV domain"),
        ("logdirty 1 peek", "d1 is not tracked"),
        ("logdirty 1 sideways", "is none of on, peek, clean, off"),
    ] {
        let out = cmd(&mut m, line);
        assert!(out.iter().any(|l| l.contains(why)), "{line}: {out:?}");
    }
    cmd(&mut m, "logdirty 1 on");
    let out = cmd(&mut m, "logdirty 1 on");
    assert!(out.iter().any(|l| l.contains("tracked already")), "{out:?}");
    for _round in 0..2 {
        cmd(&mut m, "pause 1");
        let before = dirtied(&m, 1).keys().max().copied().unwrap_or(0);
        logdirty_list(&mut m, 1, "clean");
        cmd(&mut m, "unpause 1");
        wait_all(&mut m, &[&format!("(d1) dirtied {}: ", before + 2)], LONG);
        cmd(&mut m, "pause 1");
        let last = dirtied(&m, 1).keys().max().copied().unwrap();
        let (count, listed) = logdirty_list(&mut m, 1, "peek");
        cmd(&mut m, "unpause 1");
        // The heartbeat on the pause's edge prints after the unpause.
        wait_all(&mut m, &[&format!("(d1) dirtied {}: ", last + 1)], LONG);
        let sets = dirtied(&m, 1);
        let pages = |ks: std::ops::RangeInclusive<u64>| -> std::collections::BTreeSet<u64> {
            ks.flat_map(|k| sets[&k].clone()).collect()
        };
        assert!(
            listed.len() as u64 == count,
            "all listed: {count} {listed:?}"
        );
        // Outside the image: the marker page and the written pages.
        let seen: std::collections::BTreeSet<u64> =
            listed.iter().copied().filter(|&g| g > mark).collect();
        assert!(
            listed.contains(&mark),
            "the marker page is written each heartbeat: {listed:?}"
        );
        let surely = pages(before + 2..=last);
        let at_most = pages(before + 1..=last + 1);
        assert!(
            surely.is_subset(&seen) && seen.is_subset(&at_most),
            "dirty {seen:?}; written inside the window {surely:?}, at most {at_most:?}"
        );
    }
    let out = cmd(&mut m, "logdirty 1 off");
    assert!(
        out.iter().any(|l| l.contains("logdirty d1 off: done")),
        "{out:?}"
    );
    beats_go_on(&mut m, &[1]);
    poweroff_pass(&mut m);
}

#[test]
fn the_emulated_device_answers_and_the_rest_of_the_hole_and_beyond_ram_end_the_domain() {
    let mut m = boot("hvm-hole", "");
    cmd(&mut m, "create hvm 4096");
    wait_all(
        &mut m,
        &[
            "(d1) emulated device: magic 0x31554d45554c5648 (ok), domain 1, poll ",
            "(d1) heartbeat 2: ",
        ],
        LONG,
    );
    // The polled register went up at each heartbeat (else a mismatch).
    let polls: Vec<u64> = m
        .lines_with("(d1) heartbeat ")
        .filter_map(|l| l.split("device_polls=").nth(1)?.parse().ok())
        .collect();
    assert!(
        polls.windows(2).all(|w| w[0] < w[1]) && polls.len() >= 2,
        "{polls:?}"
    );
    for (word, id, gpa) in [("holefault", 2, "0xc0000000"), ("beyond", 3, "0x400000")] {
        cmd(&mut m, &format!("create hvm 4096 {word}"));
        wait_all(
            &mut m,
            &[
                &format!("(hv) d{id} (HVM) took a nested page fault at guest-physical {gpa} "),
                &format!("(hv) d{id} destroyed, 1024 frames freed"),
            ],
            LONG,
        );
        assert_eq!(m.lines_with(&format!("(d{id}) MISMATCH")).count(), 0);
    }
    beats_go_on(&mut m, &[1]);
    // The faults were announced: the verdict stays clean.
    poweroff_pass(&mut m);
}
