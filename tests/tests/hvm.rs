//! HVM domains (issue #16): an HVM domU under AMD SVM with nested paging
//! runs its self-checks beside PV domUs; `list` shows each domain's kind;
//! the PV-only hypercalls are refused to it; it crosses live updates (its
//! nested tables in place, handover ABI 1.3), and the 1.2 release, which
//! cannot read it, is refused before anything pauses; log-dirty reports
//! exactly the pages written, across an update too; the emulated device
//! answers and any other access to the hole ends the domain.

use std::time::Duration;

use hvlu_harness::releases;
use hvlu_harness::scenario::{
    assert_refusals, boot, boot_with, cmd, fields, poweroff_pass, wait_all,
};
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
    wait_all(
        &mut m,
        &["(d2) cpuid: hypervisor bit 1, xsave 0, svm 0 (ok)"],
        LONG,
    );
    // Device memory is not passed through to an HVM domain.
    let out = cmd(&mut m, "iomem permit 2 0xc0000 1");
    assert!(
        out.iter()
            .any(|l| l.contains("d2 is an HVM domain: device memory is not passed through")),
        "{out:?}"
    );
    assert_eq!(row(&mut m, 2)[4], "hvm");
    assert_eq!(row(&mut m, 1)[4], "pv");
    assert_eq!(row(&mut m, 0)[4], "pv");
    beats_go_on(&mut m, &[1, 2]);
    poweroff_pass(&mut m);
    // Probes 40–47: the PV-only calls, another domain's map and memory,
    // log-dirty on itself.
    assert_refusals(&m, 2, 8);
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

/// Updates to `image`; checks that update `seq` was done with the digest
/// and the free frames equal.
fn update_to(m: &mut Machine, seq: u64, image: &str) -> String {
    let out = cmd(m, &format!("live-update {image}"));
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG).remove(0);
    let f = fields(&report);
    assert_eq!(f["digest_equal"], "yes", "{report}");
    assert_eq!(f["free_equal"], "yes", "{report}");
    report
}

#[test]
fn an_hvm_domu_and_a_pv_domu_cross_updates_with_clean_self_checks() {
    let mut m = boot("hvm-updates", "autostart=domu");
    cmd(&mut m, "create hvm 4096");
    wait_all(&mut m, &["(d2) heartbeat 1:"], LONG);
    let before = row(&mut m, 2);
    for seq in 1..=4 {
        update_to(&mut m, seq, if seq % 2 == 1 { "hv-b" } else { "hv" });
        beats_go_on(&mut m, &[1, 2]);
    }
    // The same domain, still HVM, still running.
    assert_eq!(row(&mut m, 2), before);
    poweroff_pass(&mut m);
    let report = m
        .lines_with("(hv) report d2 (hvm): checks=")
        .next()
        .expect("the HVM domain's report")
        .to_string();
    assert!(report.contains("mismatches=0"), "{report}");
}

/// The boot module the 1.2 release's hypervisor is loaded from.
const TO_1_2: &str = "to-1.2";

#[test]
fn the_1_2_release_is_refused_before_anything_pauses_while_an_hvm_domain_runs() {
    let old = releases::find("1.2")
        .and_then(|r| r.images())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut m = boot_with("hvm-1.2-refused", "", |c| {
        c.images.modules.push((TO_1_2.into(), old.hv.clone()));
    });
    cmd(&mut m, "create hvm 4096");
    wait_all(&mut m, &["(d1) heartbeat 1:"], LONG);
    let out = cmd(&mut m, &format!("live-update {TO_1_2}"));
    let refused = out
        .iter()
        .find(|l| l.contains("lu exec: error"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        refused.contains("refused before pausing anything")
            && refused.contains("d1 is an HVM domain, and ABI 1.2 cannot describe one"),
        "{refused}"
    );
    assert_eq!(m.lines_with("(hv) lu-report ").count(), 0, "no update ran");
    beats_go_on(&mut m, &[1]);
    // Without the HVM domain the same release is updated to.
    cmd(&mut m, "destroy 1");
    let out = cmd(&mut m, &format!("live-update {TO_1_2}"));
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
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

/// One log-dirty window of domain 1 (in `dirty` mode, its marker page at
/// `mark`): paused, cleaned, run for two heartbeats — with `update`
/// (`(seq, image)`) in the middle of the window, then two more — paused
/// again and peeked. Every page written entirely inside the window must be
/// dirty, and nothing outside the image but the marker and the pages of
/// the heartbeats on the window's two edges.
fn dirty_window(m: &mut Machine, mark: u64, update: Option<(u64, &str)>) {
    cmd(m, "pause 1");
    let before = dirtied(m, 1).keys().max().copied().unwrap_or(0);
    logdirty_list(m, 1, "clean");
    cmd(m, "unpause 1");
    wait_all(m, &[&format!("(d1) dirtied {}: ", before + 2)], LONG);
    if let Some((seq, image)) = update {
        update_to(m, seq, image);
        let now = dirtied(m, 1).keys().max().copied().unwrap();
        wait_all(m, &[&format!("(d1) dirtied {}: ", now + 2)], LONG);
    }
    cmd(m, "pause 1");
    let last = dirtied(m, 1).keys().max().copied().unwrap();
    let (count, listed) = logdirty_list(m, 1, "peek");
    cmd(m, "unpause 1");
    // The heartbeat on the pause's edge prints after the unpause.
    wait_all(m, &[&format!("(d1) dirtied {}: ", last + 1)], LONG);
    let sets = dirtied(m, 1);
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

/// The domain's start line's marker gpfn, after it started.
fn marker_gpfn(m: &mut Machine, id: u16) -> u64 {
    let up = wait_all(m, &[&format!("(d{id}) hvm domU {id} up: ")], LONG).remove(0);
    hex_after(&up, "marker at gpfn ")
}

#[test]
fn a_running_log_dirty_window_crosses_updates_without_losing_a_page() {
    let mut m = boot("hvm-logdirty-update", "");
    cmd(&mut m, "create hvm 4096 dirty");
    let mark = marker_gpfn(&mut m, 1);
    wait_all(&mut m, &["(d1) dirtied 1: "], LONG);
    cmd(&mut m, "logdirty 1 on");
    // The window spans the update: pages written before it, during its
    // neighbourhood and after it are all in the bitmap the new image
    // adopted, and the write protection crossed too (else the pages
    // written after it would be missing).
    dirty_window(&mut m, mark, Some((1, "hv-b")));
    dirty_window(&mut m, mark, Some((2, "hv")));
    // An update with tracking on, then off: every page writable again.
    update_to(&mut m, 3, "hv-b");
    let out = cmd(&mut m, "logdirty 1 off");
    assert!(
        out.iter().any(|l| l.contains("logdirty d1 off: done")),
        "{out:?}"
    );
    update_to(&mut m, 4, "hv");
    beats_go_on(&mut m, &[1]);
    poweroff_pass(&mut m);
}

#[test]
fn log_dirty_reports_exactly_the_pages_the_guest_wrote() {
    let mut m = boot("hvm-logdirty", "");
    cmd(&mut m, "create hvm 4096 dirty");
    let mark = marker_gpfn(&mut m, 1);
    wait_all(&mut m, &["(d1) dirtied 1: "], LONG);
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
    dirty_window(&mut m, mark, None);
    dirty_window(&mut m, mark, None);
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
