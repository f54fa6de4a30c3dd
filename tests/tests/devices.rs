//! A PCI device under the hypervisor (issue #15): QEMU's `edu` behind
//! microvm's PCI Express host bridge. The hypervisor finds it and places
//! its BAR at a cold boot; dom0 lists it and drives it, before, during
//! (`edu watch`) and after live updates; a domU may map its memory only
//! once dom0 grants it, and only uncacheable; a granted driver domU drives
//! it across an update; and a machine without the device runs as before.

use std::time::Duration;

use hvlu_harness::releases;
use hvlu_harness::scenario::{
    boot_with, cmd, field, fields, poweroff_pass, soak_clean, summarise, wait_all,
};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

/// What the hypervisor assigns edu's BAR 0 on microvm at a cold boot: the
/// first address of the 32-bit MMIO window, 1 MiB.
const EDU_LINE: &str = "00:01.0 1234:11e8 class 00ff bar0 0xc0000000+1M";

/// Boots a machine with the device, whatever `HVLU_NO_DEVICES` says.
fn with_device(name: &str, cmdline: &str) -> Machine {
    boot_with(name, cmdline, |c| c.devices = true)
}

/// edu's BAR 0 as dom0's `devices` lists it: (base, bytes).
fn edu_bar(m: &mut Machine) -> (u64, u64) {
    let out = cmd(m, "devices");
    let line = out
        .iter()
        .find(|l| l.contains(" 1234:11e8 "))
        .unwrap_or_else(|| panic!("no edu in `devices`: {out:?}"));
    let bar = line
        .split(" bar0 ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no bar0 in {line:?}"));
    let (base, size) = bar.split_once('+').expect("base+size");
    let base = u64::from_str_radix(base.trim_start_matches("0x"), 16).expect("hex base");
    let size = match size.strip_suffix('M') {
        Some(mib) => mib.parse::<u64>().expect("size") << 20,
        None => size.parse().expect("size"),
    };
    (base, size)
}

/// The `(d0)` lines of `out` that contain `needle`; panics if none does.
fn expect_line<'a>(out: &'a [String], needle: &str) -> &'a str {
    out.iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {out:?}"))
}

/// The last `(d{dom}) heartbeat` line's `key=` figure (0 before the
/// first).
fn last_beat(m: &Machine, dom: u16, key: &str) -> u64 {
    m.lines_with(&format!("(d{dom}) heartbeat "))
        .last()
        .and_then(|l| field(l, key))
        .unwrap_or(0)
}

/// The `report d0` line of the poweroff summary.
fn dom0_report(m: &Machine) -> String {
    m.lines_with("(hv) report d0 (dom0):")
        .last()
        .unwrap_or_else(|| panic!("no report of d0; log: {}", m.log_path().display()))
        .to_string()
}

#[test]
fn the_hypervisor_places_the_bar_and_dom0_lists_and_drives_the_device() {
    let mut m = with_device("devices-edu", "");
    // The cold boot's walk, one line per function.
    let pci: Vec<&str> = m.lines_with("(hv) pci ").collect();
    assert_eq!(
        pci,
        [
            "(hv) pci 00:00.0 1b36:0008 class 0600",
            &format!("(hv) pci {EDU_LINE}")
        ],
        "log: {}",
        m.log_path().display()
    );
    let out = cmd(&mut m, "devices");
    expect_line(&out, &format!("(d0) {EDU_LINE} mappable by d0"));
    expect_line(&out, "(d0) 00:00.0 1b36:0008 class 0600");

    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: 00:01.0 bar0 0xc0000000 mapped uncacheable at ");
    let check = expect_line(&out, "edu: id 0x");
    // QEMU's edu is version 1.0: 0x010000ed.
    assert!(check.contains("id 0x010000ed (version 1.0)"), "{check}");
    expect_line(&out, "edu: check passed (1 checks, 0 failed)");
    // A second check with fresh values, the mapping kept.
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: check passed (2 checks, 0 failed)");
    assert!(
        !out.iter().any(|l| l.contains("mapped uncacheable")),
        "{out:?}"
    );

    poweroff_pass(&mut m);
    let report = dom0_report(&m);
    assert!(report.contains("checks=2 mismatches=0"), "{report}");
}

#[test]
fn dom0_watches_the_device_across_twenty_updates_without_a_failed_check() {
    let mut m = with_device("devices-edu-watch-20", "autostart=domu");
    wait_all(&mut m, &["(d1) heartbeat 1:"], LONG);
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: check passed");
    let out = cmd(&mut m, "edu watch 20");
    expect_line(&out, "edu watch: a check every 20 ms (2 ticks)");

    // Each update is followed by a 200 ms `sleep` of dom0's, during which
    // the watch goes on: at least one check between two updates (timer
    // ticks start again from 0 after an update, which the watch takes as
    // "due").
    soak_clean(&mut m, &["hv-b", "hv"], 20, 200);

    let out = cmd(&mut m, "edu watch");
    let status = expect_line(&out, "edu watch: on, ");
    let checks = status
        .split("on, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!(status.ends_with(" 0 failed"), "{status}");
    assert!(checks > 20, "a check between every two updates: {status}");
    assert!(
        !m.transcript.iter().any(|l| l.contains("FAILED")),
        "log: {}",
        m.log_path().display()
    );
    // Once more after the last update, explicitly.
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: check passed");
    let out = cmd(&mut m, "edu watch off");
    let off = expect_line(&out, "edu watch: off after ");
    assert!(off.ends_with(", 0 failed"), "{off}");

    poweroff_pass(&mut m);
    // dom0's counts crossed the 20 updates in the handover state: the
    // summary counts every check since the cold boot.
    let report = dom0_report(&m);
    let total = field(&report, "checks").expect("checks=");
    assert!(total > checks, "{report} after {status}");
    assert_eq!(field(&report, "mismatches"), Some(0), "{report}");
}

#[test]
fn a_domu_maps_device_memory_only_granted_and_uncacheable_and_drives_it_across_an_update() {
    let mut m = with_device("devices-driver-domu", "");
    let (base, size) = edu_bar(&mut m);
    let (mfn, frames) = (base >> 12, size >> 12);

    // d1 was given nothing: the BAR is refused for permission, uncacheable
    // or not.
    let out = cmd(&mut m, &format!("create domu 4096 probe bar={base:#x}"));
    expect_line(&out, "created d1 from domu");
    wait_all(
        &mut m,
        &[
            "(d1) probe 15 (map device memory without permission): refused with `permission denied` as expected",
            "(d1) probe 17 (map device memory cacheable without permission): refused with `permission denied` as expected",
        ],
        LONG,
    );

    // d2 drives edu once it may.
    let out = cmd(&mut m, &format!("create domu 4096 edu={base:#x}"));
    expect_line(&out, "created d2 from domu");
    wait_all(
        &mut m,
        &[&format!(
            "(d2) edu: no permission to map {base:#x} yet; waiting"
        )],
        LONG,
    );

    // What is not device memory is refused, with the reason.
    let out = cmd(&mut m, "iomem permit 2 0x1000 1");
    expect_line(
        &out,
        "iomem permit d2: error: invalid argument: mfns [0x1000, 0x1001) holds RAM (mfn 0x1000): RAM is never device memory",
    );
    let out = cmd(&mut m, &format!("iomem permit 2 {mfn:#x} {}", frames + 1));
    expect_line(
        &out,
        "is not device memory: it is not all inside one memory BAR",
    );
    let out = cmd(&mut m, &format!("iomem permit 0 {mfn:#x} 1"));
    expect_line(
        &out,
        "d0 is the control domain: it holds every memory BAR for good",
    );
    let out = cmd(&mut m, &format!("iomem permit 9 {mfn:#x} 1"));
    expect_line(&out, "error: not found: there is no domain d9");
    let out = cmd(&mut m, &format!("iomem revoke 2 {mfn:#x} {frames}"));
    expect_line(&out, "d2 holds no frame of");

    let out = cmd(&mut m, &format!("iomem permit 2 {mfn:#x} {frames}"));
    expect_line(
        &out,
        &format!("iomem permit d2 mfns [{mfn:#x}, {:#x}): done", mfn + frames),
    );
    let out = cmd(&mut m, "devices");
    expect_line(&out, &format!("{EDU_LINE} mappable by d0,d2"));

    // Cacheable first, refused for its memory type; then uncacheable.
    wait_all(
        &mut m,
        &[
            "(d2) probe 16 (map device memory cacheable): refused with `page type violation` as expected",
            &format!("(d2) edu: bar0 {base:#x} mapped uncacheable at "),
        ],
        LONG,
    );
    while last_beat(&m, 2, "edu_checks") < 2 {
        m.wait_for_text("(d2) heartbeat ", LONG)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // A mapped range cannot be taken back.
    let out = cmd(&mut m, &format!("iomem revoke 2 {mfn:#x} {frames}"));
    expect_line(
        &out,
        &format!("iomem revoke d2: error: frame busy: d2 still maps mfn {mfn:#x}"),
    );

    // d1 may map the BAR's first page only: a grant that starts where the
    // BAR does and is shorter must not pass for the BAR across the update.
    let out = cmd(&mut m, &format!("iomem permit 1 {mfn:#x} 1"));
    assert!(!out.iter().any(|l| l.contains("error")), "{out:?}");

    // The update keeps the mapping, the permission and the driver going.
    let before = last_beat(&m, 2, "edu_checks");
    let out = cmd(&mut m, "live-update hv-b");
    expect_line(&out, "lu exec: done");
    let report = wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG).remove(0);
    let f = fields(&report);
    assert_eq!(
        (f["digest_equal"].as_str(), f["free_equal"].as_str()),
        ("yes", "yes"),
        "{report}"
    );
    while last_beat(&m, 2, "edu_checks") < before + 2 {
        m.wait_for_text("(d2) heartbeat ", LONG)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(last_beat(&m, 2, "edu_failures"), 0);
    // The new hypervisor read the BAR where it was, moving nothing (and,
    // the BAR recorded, sizing nothing: no note).
    let walk = m
        .lines_with("(hv) pci: ")
        .last()
        .expect("the update's walk")
        .to_string();
    assert!(walk.contains("nothing moved"), "{walk}");
    assert!(
        m.lines_with("(hv) pci: 00:01.0 bar0").next().is_none(),
        "log: {}",
        m.log_path().display()
    );
    let out = cmd(&mut m, "devices");
    expect_line(&out, &format!("{EDU_LINE} mappable by d0,d1,d2"));

    let summary = summarise(&m.transcript);
    assert!(summary.clean(1), "{summary}");
    poweroff_pass(&mut m);
    for d in [1, 2] {
        let r = m
            .lines_with(&format!("(hv) report d{d} "))
            .last()
            .expect("report")
            .to_string();
        assert!(r.contains("mismatches=0"), "{r}");
        assert!(r.contains("refusals_bad=0"), "{r}");
    }
}

#[test]
fn without_the_device_the_system_finds_no_pci_and_runs_as_before() {
    let mut m = boot_with("devices-none", "autostart=domu", |c| c.devices = false);
    let line = m
        .lines_with("(hv) pci: ")
        .next()
        .expect("the walk's line")
        .to_string();
    assert_eq!(
        line,
        "(hv) pci: no host bridge answers at 00:00.0 of ECAM at 0xe0000000: no devices"
    );
    let out = cmd(&mut m, "devices");
    expect_line(&out, "devices: none");
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: no edu device (1234:11e8) with a memory BAR 0");
    let out = cmd(&mut m, "iomem permit 1 0xc0000 1");
    expect_line(&out, "is not device memory: this machine has no memory BAR");
    wait_all(&mut m, &["(d1) heartbeat 1:"], LONG);
    let out = cmd(&mut m, "live-update hv-b");
    expect_line(&out, "lu exec: done");
    let out = cmd(&mut m, "devices");
    expect_line(&out, "devices: none");
    let summary = summarise(&m.transcript);
    assert!(summary.clean(1), "{summary}");
    poweroff_pass(&mut m);
    // No check was made, so none is counted.
    let report = dom0_report(&m);
    assert!(report.contains("checks=0 mismatches=0"), "{report}");
}

/// The boot module the 1.1 release's hypervisor is loaded from.
const TO_1_1: &str = "to-1.1";

#[test]
fn a_hop_through_the_1_1_release_needs_the_device_unmapped_and_gives_it_back() {
    let old = releases::find("1.1")
        .and_then(|r| r.images())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut m = boot_with("devices-1.1-hop", "autostart=domu", |c| {
        c.devices = true;
        c.images.modules.push((TO_1_1.into(), old.hv.clone()));
    });
    wait_all(&mut m, &["(d1) heartbeat 1:"], LONG);
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: check passed");

    // The 1.1 release would take dom0's mapping of the BAR and forget the
    // permission for it: refused before anything is paused, naming it.
    let out = cmd(&mut m, &format!("live-update {TO_1_1}"));
    let refused = expect_line(&out, "lu exec: error");
    assert!(
        refused.contains("handover 1.1 cannot carry d0's mapping of device memory mfn 0xc0000"),
        "{refused}"
    );
    assert_eq!(m.lines_with("(hv) lu-report ").count(), 0, "no update ran");
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: check passed");

    // Unmapped, the hop goes through and back; the BAR, which the release
    // did not record, is sized again while nothing runs and dom0 gets its
    // default access back.
    let out = cmd(&mut m, "edu unmap");
    expect_line(&out, "edu: bar0 0xc0000000 unmapped");
    let out = cmd(&mut m, &format!("live-update {TO_1_1}"));
    expect_line(&out, "lu exec: done");
    wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG);
    let out = cmd(&mut m, "live-update hv-b");
    expect_line(&out, "lu exec: done");
    wait_all(
        &mut m,
        &[
            "(hv) pci: 00:01.0 bar0 at 0xc0000000 was not recorded: sized (1M) while nothing runs",
            "(hv) lu-report seq=2 ",
        ],
        LONG,
    );
    assert_eq!(edu_bar(&mut m), (0xc000_0000, 1 << 20));
    let out = cmd(&mut m, "devices");
    expect_line(&out, "mappable by d0");
    let out = cmd(&mut m, "edu");
    expect_line(&out, "edu: check passed");
    poweroff_pass(&mut m);
    let report = dom0_report(&m);
    assert_eq!(field(&report, "mismatches"), Some(0), "{report}");
}
