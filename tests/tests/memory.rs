//! Memory that grows with the machine: large machines boot and update,
//! large domains grow and shrink, the smallest region works, a domain the
//! machine cannot back is refused at creation, and no domain can keep the
//! handover state from describing it (its start-info page stays its own).
//!
//! Timeouts are generous (TCG, and these machines are large); nothing here
//! asserts a speed.

use std::time::Duration;

use hvlu_harness::scenario::{
    assert_refusals, boot, boot_with, cmd, fields, poweroff_pass, summarise, wait_all,
};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(300);
const VERY_LONG: Duration = Duration::from_secs(900);

fn command(m: &mut Machine, line: &str, timeout: Duration) -> Vec<String> {
    m.command(line, timeout).unwrap_or_else(|e| panic!("{e}"))
}

fn heartbeats(m: &Machine, dom: u16) -> u64 {
    m.lines_with(&format!("(d{dom}) heartbeat ")).count() as u64
}

/// Updates to `image` and checks the report line of update `seq`.
fn update(m: &mut Machine, image: &str, seq: u64) -> std::collections::BTreeMap<String, String> {
    let out = command(m, &format!("live-update {image}"), LONG);
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG).remove(0);
    let f = fields(&report);
    assert_eq!(f["digest_equal"], "yes", "{report}");
    assert_eq!(f["free_equal"], "yes", "{report}");
    f
}

/// Waits for `more` heartbeats of each domain in `doms` after those seen.
fn beats_go_on(m: &mut Machine, doms: &[u16], more: u64) {
    let needles: Vec<String> = doms
        .iter()
        .map(|&d| format!("(d{d}) heartbeat {}:", heartbeats(m, d) + more))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    wait_all(m, &needles, LONG);
}

#[test]
fn a_domu_cannot_give_back_its_start_info_page_and_updates_go_on() {
    let mut m = boot("giveback", "");
    let out = cmd(&mut m, "create domu 4096 giveback");
    assert!(
        out.iter().any(|l| l.contains("created d1 from domu")),
        "{out:?}"
    );
    let lines = wait_all(
        &mut m,
        &[
            "(d1) probe 10 ",
            "(d1) probe 11 ",
            "(d1) giveback: the start-info page is mapped again",
            "(d1) heartbeat 2:",
        ],
        LONG,
    );
    for line in &lines[..2] {
        assert!(line.ends_with("as expected"), "{line}");
        assert!(line.contains("permission denied"), "{line}");
    }
    // The update its start-info page would have vetoed happens.
    update(&mut m, "hv-b", 1);
    beats_go_on(&mut m, &[1], 2);
    assert!(summarise(&m.transcript).clean(1));
    poweroff_pass(&mut m);
    assert_refusals(&m, 1, 2);
}

#[test]
fn a_domain_the_machine_cannot_back_is_refused_at_create() {
    // 512 MiB of RAM cannot hold a 1 GiB domain.
    let mut m = boot("create-too-large", "");
    let out = cmd(&mut m, "create domu 1048576");
    // The reason reaches dom0's console, not only the hypervisor log.
    let why = out
        .iter()
        .find(|l| l.contains("create domu: error: out of memory: cannot build d1 from `domu`: "))
        .unwrap_or_else(|| panic!("no reason in {out:?}"))
        .clone();
    assert!(why.contains("262144 pages asked for"), "{why}");
    assert!(why.contains(" free"), "{why}");
    // Nothing was lost: a domain that fits is still made, as d1.
    let out = cmd(&mut m, "create domu");
    assert!(
        out.iter().any(|l| l.contains("created d1 from domu")),
        "{out:?}"
    );
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    poweroff_pass(&mut m);
}

#[test]
fn two_1_gib_domus_grow_and_shrink_across_an_update() {
    // dom0, two domUs of 1 GiB each allowed to grow by 256 MiB.
    let mut m = boot_with("grow-1g", "", |c| c.set_ram(4096));
    for d in 1..=2 {
        let out = command(&mut m, "create domu 1048576 grow", LONG);
        assert!(
            out.iter()
                .any(|l| l.contains(&format!("created d{d} from domu"))),
            "{out:?}"
        );
    }
    wait_all(
        &mut m,
        &["(d1) grow cycle 1 done", "(d2) grow cycle 1 done"],
        VERY_LONG,
    );
    let f = update(&mut m, "hv-b", 1);
    let frames: u64 = f["frames"].parse().unwrap();
    assert!(frames >= 2048 + 2 * 262_144, "{f:?}");
    // Both go on growing and shrinking: two more cycles each, every frame's
    // pattern checked before it is given back.
    let cycles = |m: &Machine, d: u16| m.lines_with(&format!("(d{d}) grow cycle ")).count();
    let needles: Vec<String> = (1..=2u16)
        .map(|d| format!("(d{d}) grow cycle {} done", cycles(&m, d) + 2))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    wait_all(&mut m, &needles, VERY_LONG);
    let summary = summarise(&m.transcript);
    assert!(summary.clean(1), "{summary}");
    let list = cmd(&mut m, "list");
    assert_eq!(
        list.iter().filter(|l| l.contains(" domu ")).count(),
        2,
        "{list:?}"
    );
    poweroff_pass(&mut m);
}

#[test]
fn a_64_gib_machine_boots_and_updates() {
    let mut m = boot_with("ram-64g", "autostart=domu", |c| c.set_ram(64 * 1024));
    if let Some(line) = m.lines_with("(hv) boot done in ").next() {
        println!("64 GiB: {line}");
    }
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let f = update(&mut m, "hv-b", 1);
    println!(
        "64 GiB: first update blackout {} us, boot {} us",
        f["blackout_us"], f["boot_us"]
    );
    beats_go_on(&mut m, &[1], 2);
    update(&mut m, "hv", 2);
    beats_go_on(&mut m, &[1], 2);
    let out = cmd(&mut m, "create domu 65536");
    assert!(
        out.iter().any(|l| l.contains("created d2 from domu")),
        "{out:?}"
    );
    m.wait_for_text("(d2) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(summarise(&m.transcript).clean(2));
    poweroff_pass(&mut m);
}

#[test]
fn the_smallest_region_boots_and_updates_again_and_again() {
    // The documented minimum, on the RAM it is documented for.
    let mut m = boot_with("region-8m", "autostart=domu", |c| {
        c.mem_mib = 128;
        c.cmdline = c.cmdline.replace("lu_region=64M", "lu_region=8M");
    });
    assert!(m
        .lines_with("(hv) live-update region ")
        .any(|l| l.contains("(8 MiB)")));
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    for (seq, image) in [(1, "hv-b"), (2, "hv"), (3, "hv-b")] {
        update(&mut m, image, seq);
        beats_go_on(&mut m, &[1], 1);
    }
    assert!(summarise(&m.transcript).clean(3));
    poweroff_pass(&mut m);
}
