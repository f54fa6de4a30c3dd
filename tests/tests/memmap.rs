//! Guest memory maps (issue #15 item 4): each domain's map shows its RAM
//! and its PCI hole, chosen at create and never moved; a domain larger than
//! its hole's start has RAM from 4 GiB; dom0 reads the machine's map, a
//! domU is refused it; the maps are the same after a live update, with the
//! hole's first gpfn still without a frame.

use std::time::Duration;

use hvlu_harness::scenario::{assert_refusals, boot, cmd, fields, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(120);

/// dom0's `memmap <id>`: the entries, `first-last kind`, without the
/// `(d0) dN memmap ` prefix.
fn memmap(m: &mut Machine, id: u16) -> Vec<String> {
    let prefix = format!("(d0) d{id} memmap ");
    let out = cmd(m, &format!("memmap {id}"));
    let map: Vec<String> = out
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect();
    assert!(!map.is_empty(), "memmap {id}: {out:?}");
    map
}

/// A domU's own map as it printed it at start (`(dN) memmap first-last
/// kind`).
fn printed_map(m: &Machine, id: u16) -> Vec<String> {
    let prefix = format!("(d{id}) memmap 0x");
    m.lines_with(&prefix)
        .map(|l| l[prefix.len() - 2..].to_string())
        .collect()
}

/// dom0's `machine-memmap`: `(first, one past the last, kind)`.
fn machine_memmap(m: &mut Machine) -> Vec<(u64, u64, String)> {
    let out = cmd(m, "machine-memmap");
    let map: Vec<(u64, u64, String)> = out
        .iter()
        .filter_map(|l| l.strip_prefix("(d0) machine memmap "))
        .map(|l| {
            let (span, kind) = l.split_once(' ').expect("a span and a kind");
            let (first, last) = span.split_once('-').expect("first-last");
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            (hex(first), hex(last) + 1, kind.to_string())
        })
        .collect();
    assert!(!map.is_empty(), "machine-memmap: {out:?}");
    map
}

/// The usable RAM of a machine map in whole pages, as a reader of the
/// handover state's RAM map sees it.
fn ram_pages(map: &[(u64, u64, String)]) -> Vec<(u64, u64)> {
    map.iter()
        .filter(|(_, _, kind)| kind == "ram")
        .map(|&(first, end, _)| (first.div_ceil(4096), end / 4096))
        .filter(|(first, end)| first < end)
        .collect()
}

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

/// Updates to hv-b; checks the report of update `seq`.
fn update(m: &mut Machine, seq: u64) {
    let out = cmd(m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG).remove(0);
    let f = fields(&report);
    assert_eq!(f["digest_equal"], "yes", "{report}");
    assert_eq!(f["free_equal"], "yes", "{report}");
}

/// The hypervisor's line, after update `seq`'s report, on domain `id`'s
/// hole and what a lookup of its first gpfn found.
fn hole_after_update(m: &mut Machine, seq: u64, id: u16) -> String {
    wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG);
    let at = m
        .transcript
        .iter()
        .rposition(|l| l.starts_with(&format!("(hv) lu-report seq={seq} ")))
        .unwrap();
    let needle = format!("(hv) d{id}: PCI hole ");
    wait_all(m, &[&needle], LONG);
    m.transcript[at..]
        .iter()
        .find(|l| l.starts_with(&needle))
        .unwrap_or_else(|| panic!("no hole line for d{id} after update {seq}"))
        .clone()
}

/// A 64 MiB domU with the default hole: RAM is its limit (80 MiB) below
/// 3 GiB.
const D1_MAP: [&str; 2] = ["0x0-0x4ffffff ram", "0xc0000000-0xffffffff pci-hole"];
/// A 32 MiB domU with a hole at 16 MiB: 16 MiB of RAM below it, the rest of
/// its 40 MiB limit from 4 GiB.
const D2_MAP: [&str; 3] = [
    "0x0-0xffffff ram",
    "0x1000000-0xffffffff pci-hole",
    "0x100000000-0x1017fffff ram",
];
/// dom0 (8 MiB, limit 10 MiB), default hole.
const D0_RAM: &str = "0x0-0x9fffff ram";

#[test]
fn memory_maps_show_ram_and_the_hole_and_are_the_same_after_an_update() {
    let mut m = boot("memmap", "");
    let out = cmd(&mut m, "create domu 65536 hole=3G probe");
    assert!(out.iter().any(|l| l.contains("created d1")), "{out:?}");
    let out = cmd(&mut m, "create domu 32768 hole=16M");
    assert!(out.iter().any(|l| l.contains("created d2")), "{out:?}");
    // Each domU read its own map, found its pages in its RAM, and d1 was
    // refused the machine's map and dom0's.
    let lines = wait_all(
        &mut m,
        &[
            "(d1) memmap: agrees with its 16384 pages: 20480 RAM frames, PCI hole [0xc0000000, 4 GiB)",
            "(d2) memmap: agrees with its 8192 pages: 10240 RAM frames, PCI hole [0x1000000, 4 GiB)",
            "(d1) probe 18 ",
            "(d1) probe 19 ",
        ],
        LONG,
    );
    for probe in &lines[2..] {
        assert!(probe.ends_with("as expected"), "{probe}");
        assert!(probe.contains("permission denied"), "{probe}");
    }
    assert!(!m.transcript.iter().any(|l| l.contains("memmap: MISMATCH")));

    // dom0 sees the same maps, and its own.
    assert_eq!(memmap(&mut m, 1), D1_MAP);
    assert_eq!(memmap(&mut m, 2), D2_MAP);
    // dom0's: its RAM, and its hole with the device memory it holds (the
    // edu BAR, unless the machine has no device) mapped identity there.
    let d0_map = memmap(&mut m, 0);
    assert_eq!(
        d0_map.first().map(String::as_str),
        Some(D0_RAM),
        "{d0_map:?}"
    );
    assert!(
        d0_map
            .iter()
            .all(|e| e == D0_RAM || e.ends_with(" device") || e.ends_with("-0xffffffff pci-hole")),
        "{d0_map:?}"
    );
    assert_eq!(printed_map(&m, 1), D1_MAP);
    assert_eq!(printed_map(&m, 2), D2_MAP);
    let out = cmd(&mut m, "memmap 7");
    assert!(
        out.iter()
            .any(|l| l.contains("memmap d7: error: not found")),
        "{out:?}"
    );

    // The machine's map: the firmware's entries, RAM among them.
    let machine = machine_memmap(&mut m);
    assert!(machine.windows(2).all(|w| w[0].1 <= w[1].0), "{machine:?}");
    assert!(!ram_pages(&machine).is_empty(), "{machine:?}");

    // A hole that breaks the rules is refused with the reason; nothing is
    // created.
    for (hole, why) in [
        (
            "5M",
            "a PCI hole at 0x500000 starts below 16 MiB, the lowest it may start",
        ),
        (
            "1025M",
            "a PCI hole at 0x40100000 is not on a 2 MiB boundary",
        ),
        (
            "4G",
            "a PCI hole at 0x100000000 does not start below 4 GiB, where it ends",
        ),
        ("3X", "`hole=3X` is not where a PCI hole may start"),
    ] {
        let out = cmd(&mut m, &format!("create domu 4096 hole={hole}"));
        assert!(
            out.iter()
                .any(|l| l.contains("create domu: error:") && l.contains(why)),
            "hole={hole}: {out:?}"
        );
    }
    let list = cmd(&mut m, "list");
    assert_eq!(list.iter().filter(|l| l.contains(" domu ")).count(), 2);

    // The update carries every map (ABI 1.2), d2's hole at 16 MiB too.
    update(&mut m, 1);
    for (id, found) in [
        (1, "[0xc0000000, 4 GiB): gpfn 0xc0000 has no frame"),
        (2, "[0x1000000, 4 GiB): gpfn 0x1000 has no frame"),
    ] {
        let line = hole_after_update(&mut m, 1, id);
        assert!(line.ends_with(&format!(": PCI hole {found}")), "{line}");
    }
    assert_eq!(memmap(&mut m, 1), D1_MAP, "d1's map after the update");
    assert_eq!(memmap(&mut m, 2), D2_MAP, "d2's map after the update");
    assert_eq!(memmap(&mut m, 0), d0_map, "dom0's map after the update");
    // The machine's usable RAM crossed the update, in whole pages.
    let after = machine_memmap(&mut m);
    assert_eq!(ram_pages(&after), ram_pages(&machine), "{after:?}");
    assert!(after.iter().all(|(_, _, kind)| kind == "ram"), "{after:?}");
    beats_go_on(&mut m, &[1, 2]);
    poweroff_pass(&mut m);
    assert_refusals(&m, 1, 14);
}

#[test]
fn a_hole_other_than_the_default_is_the_same_after_an_update() {
    let mut m = boot("memmap-hole", "");
    cmd(&mut m, "create domu 65536 hole=1G");
    cmd(&mut m, "create domu 32768 hole=16M");
    wait_all(
        &mut m,
        &["(d1) memmap: agrees ", "(d2) memmap: agrees "],
        LONG,
    );
    let d1 = ["0x0-0x4ffffff ram", "0x40000000-0xffffffff pci-hole"];
    assert_eq!(memmap(&mut m, 1), d1);
    assert_eq!(memmap(&mut m, 2), D2_MAP);
    update(&mut m, 1);
    assert_eq!(memmap(&mut m, 1), d1, "d1's map after the update");
    assert_eq!(memmap(&mut m, 2), D2_MAP, "d2's map after the update");
    for (id, hole) in [
        (1, "[0x40000000, 4 GiB): gpfn 0x40000"),
        (2, "[0x1000000, 4 GiB): gpfn 0x1000"),
    ] {
        let line = hole_after_update(&mut m, 1, id);
        assert!(
            line.ends_with(&format!(": PCI hole {hole} has no frame")),
            "{line}"
        );
    }
    // d2's RAM from 4 GiB is still its own: it runs on and checks it.
    beats_go_on(&mut m, &[1, 2]);
    poweroff_pass(&mut m);
}
