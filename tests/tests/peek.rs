//! dom0 reads a domain's memory by guest frame number (issue #16 item 3,
//! `read_guest` and dom0's `peek`): the hypervisor translates the gpfn and
//! reads RAM the domain owns — the same words before and after a live
//! update, since no page moves — and refuses, each with its reason, a gpfn
//! in the PCI hole, device memory mapped there, a gpfn past the domain's
//! RAM, RAM without a frame, a domain that does not exist, and any domU
//! (item 6: its probe 20). An HVM domain is read the same way: its
//! start-info page and the marker word its guest wrote at a gpfn it names,
//! translated through its nested page tables, the same before and after a
//! second update.
//!
//! What is known in a domain's memory: its start-info page
//! (`pv_abi::start_info::StartInfo`), which the domain builder puts at
//! gpfn 0 (`START_INFO_GPFN`), and whose fields say where the page → mfn
//! list is and which L4 the domain started on — the L4 mfn the hypervisor
//! printed when it created the domain.

use std::time::Duration;

use hvlu_harness::scenario::{assert_refusals, boot_with, cmd, fields, poweroff_pass, wait_all};
use hvlu_harness::Machine;
use pv_abi::start_info::{HVM_START_INFO_GPA, SIF_HVM, START_INFO_MAGIC};

const LONG: Duration = Duration::from_secs(120);

/// Byte offsets of `StartInfo`'s fields.
const DOMID: u64 = 8;
const FLAGS: u64 = 16;
const NR_PAGES: u64 = 24;
const MFN_LIST_GPFN: u64 = 32;
const L4_MFN: u64 = 56;

/// dom0's `peek <id> <gpfn> <offset>` line, without the `(d0) ` prefix.
fn peek_line(m: &mut Machine, id: u16, gpfn: u64, offset: u64) -> String {
    let args = format!("{id} {gpfn:#x} {offset:#x}");
    let out = cmd(m, &format!("peek {args}"));
    let prefix = format!("(d0) peek d{id} gpfn {gpfn:#x}");
    out.iter()
        .find_map(|l| l.strip_prefix("(d0) ").filter(|_| l.starts_with(&prefix)))
        .unwrap_or_else(|| panic!("peek {args}: {out:?}; log: {}", m.log_path().display()))
        .to_string()
}

/// The word dom0's `peek` read; panics on a refusal.
fn peek(m: &mut Machine, id: u16, gpfn: u64, offset: u64) -> u64 {
    let line = peek_line(m, id, gpfn, offset);
    let expected = format!("peek d{id} gpfn {gpfn:#x} +{offset:#x}: 0x");
    let hex = line
        .strip_prefix(&expected)
        .unwrap_or_else(|| panic!("peek {id} {gpfn:#x} {offset:#x}: {line}"));
    assert_eq!(hex.len(), 16, "sixteen hex digits: {line}");
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// dom0's `peek` refused with `reason` and the error's name `error`.
fn refused(m: &mut Machine, id: u16, gpfn: u64, reason: &str, error: &str) {
    let line = peek_line(m, id, gpfn, 0);
    assert_eq!(
        line,
        format!("peek d{id} gpfn {gpfn:#x}: refused: {reason} ({error})")
    );
}

/// The L4 mfn the hypervisor printed when it created domain `id`.
fn created_l4(m: &Machine, id: u16) -> u64 {
    let prefix = format!("(hv) d{id} created from module ");
    let line = m
        .lines_with(&prefix)
        .next()
        .unwrap_or_else(|| panic!("no creation line for d{id}"));
    let hex = line
        .split("L4 mfn 0x")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no L4 mfn in {line}"));
    u64::from_str_radix(hex, 16).unwrap()
}

/// What a domain's start-info page says, read by gpfn.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    domid: u64,
    flags: u64,
    nr_pages: u64,
    l4_mfn: u64,
    /// The mfn of page 0 (the start-info page itself), from the page →
    /// mfn list: where the page lies in machine memory.
    own_mfn: u64,
}

fn start_info(m: &mut Machine, id: u16) -> Seen {
    assert_eq!(peek(m, id, 0, 0), START_INFO_MAGIC, "d{id}'s magic");
    // A PV domain's page → mfn list (an HVM domain has none).
    let list = peek(m, id, 0, MFN_LIST_GPFN);
    Seen {
        domid: peek(m, id, 0, DOMID),
        flags: peek(m, id, 0, FLAGS),
        nr_pages: peek(m, id, 0, NR_PAGES),
        l4_mfn: peek(m, id, 0, L4_MFN),
        own_mfn: peek(m, id, list, 0),
    }
}

/// The refusals that do not depend on the machine's devices: d1 (4096 KiB,
/// 1024 pages, a limit of 1280 frames, the default hole) has gpfns in its
/// hole and past its RAM, and its RAM index 0x400 was populated and given
/// back by its table exercise; there is no d7.
fn refusals(m: &mut Machine) {
    refused(
        m,
        1,
        0xc0000,
        "d1: gpfn 0xc0000 is in the PCI hole [0xc0000000, 4 GiB): there is no RAM there",
        "invalid argument",
    );
    for gpfn in [0x500, 0x10_0000] {
        refused(
            m,
            1,
            gpfn,
            &format!(
                "d1: gpfn {gpfn:#x} is beyond the domain's RAM (1280 frames: gpfns [0x0, 0x500))"
            ),
            "invalid argument",
        );
    }
    for gpfn in [0x400, 0x4ff] {
        refused(
            m,
            1,
            gpfn,
            &format!("d1: gpfn {gpfn:#x} (RAM index {gpfn:#x}) has no frame: never populated, or given back"),
            "not found",
        );
    }
    refused(m, 7, 0, "there is no domain d7", "not found");
}

/// dom0's own hole holds the edu BAR mapped identity: device memory, which
/// `peek` never reads.
fn device_refused(m: &mut Machine, edu_gpfn: u64) {
    let line = peek_line(m, 0, edu_gpfn, 0);
    assert!(
        line.starts_with(&format!(
            "peek d0 gpfn {edu_gpfn:#x}: refused: d0: gpfn {edu_gpfn:#x} is device memory (mfns ["
        )) && line.ends_with(
            ", mapped identity): dom0 maps device memory itself, this call never reads a device \
             register (permission denied)"
        ),
        "{line}"
    );
}

/// The first frame of the device memory in dom0's memory map.
fn edu_gpfn(m: &mut Machine) -> u64 {
    let out = cmd(m, "memmap 0");
    let device = out
        .iter()
        .find_map(|l| l.strip_prefix("(d0) d0 memmap 0x")?.strip_suffix(" device"))
        .unwrap_or_else(|| panic!("no device memory in dom0's map: {out:?}"));
    let first = device.split('-').next().unwrap();
    u64::from_str_radix(first, 16).unwrap() >> 12
}

#[test]
fn dom0_reads_a_domain_s_memory_by_gpfn_before_and_after_an_update() {
    // With the edu device, whatever `HVLU_NO_DEVICES` says: its BAR is the
    // device memory in dom0's hole.
    let mut m = boot_with("peek", "", |c| c.devices = true);
    let out = cmd(&mut m, "create domu probe");
    assert!(out.iter().any(|l| l.contains("created d1")), "{out:?}");
    // d2's RAM crosses a hole at 16 MiB: 4096 frames below it, the rest of
    // its 8192 pages from 4 GiB.
    let out = cmd(&mut m, "create domu 32768 hole=16M");
    assert!(out.iter().any(|l| l.contains("created d2")), "{out:?}");
    let lines = wait_all(
        &mut m,
        &[
            "(d1) probe 20 ",
            "(d1) table exercise passed",
            "(d2) table exercise passed",
        ],
        LONG,
    );
    assert_eq!(
        lines[0],
        "(d1) probe 20 (read_guest of dom0's memory from a domU): refused with \
         `permission denied` as expected"
    );

    // Each start-info page by gpfn: its magic, its domain, dom0's flag,
    // its pages, and the L4 the hypervisor built for it.
    let d0 = start_info(&mut m, 0);
    let d1 = start_info(&mut m, 1);
    let d2 = start_info(&mut m, 2);
    for (id, seen, flags, pages) in [
        (0, &d0, 1, None),
        (1, &d1, 0, Some(1024)),
        (2, &d2, 0, Some(8192)),
    ] {
        assert_eq!(seen.domid, id, "d{id}: {seen:?}");
        assert_eq!(seen.flags, flags, "d{id}: {seen:?}");
        if let Some(pages) = pages {
            assert_eq!(seen.nr_pages, pages, "d{id}: {seen:?}");
        }
        assert_eq!(seen.l4_mfn, created_l4(&m, id as u16), "d{id}: {seen:?}");
    }
    // d2's RAM from 4 GiB (its page 0x1000, the first above the hole) is
    // read too, and its first page below the hole.
    peek(&mut m, 2, 0x10_0000, 0);
    peek(&mut m, 2, 0xfff, 0xff8);
    refused(
        &mut m,
        2,
        0x1000,
        "d2: gpfn 0x1000 is in the PCI hole [0x1000000, 4 GiB): there is no RAM there",
        "invalid argument",
    );
    refusals(&mut m);
    let edu = edu_gpfn(&mut m);
    device_refused(&mut m, edu);
    // What dom0 checks before it asks.
    let out = cmd(&mut m, "peek 1 0 4");
    assert!(
        out.iter()
            .any(|l| l == "(d0) peek d1 gpfn 0x0: offset 0x4 is not a multiple of 8 below 0x1000"),
        "{out:?}"
    );
    let out = cmd(&mut m, "peek 1 0 4096");
    assert!(
        out.iter()
            .any(|l| l.ends_with("offset 0x1000 is not a multiple of 8 below 0x1000")),
        "{out:?}"
    );

    // A live update: the same words, the same frames, the same refusals.
    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG).remove(0);
    assert_eq!(fields(&report)["digest_equal"], "yes", "{report}");
    assert_eq!(start_info(&mut m, 0), d0, "dom0 after the update");
    assert_eq!(start_info(&mut m, 1), d1, "d1 after the update");
    assert_eq!(start_info(&mut m, 2), d2, "d2 after the update");
    peek(&mut m, 2, 0x10_0000, 0);
    refusals(&mut m);
    device_refused(&mut m, edu);

    // An HVM domain: its start-info page and the marker its guest wrote
    // once, at the gpfn it printed ("HVM_MARK" with its id).
    let out = cmd(&mut m, "create hvm 4096");
    assert!(
        out.iter().any(|l| l.contains("created d3 from hvm")),
        "{out:?}"
    );
    let up = wait_all(&mut m, &["(d3) hvm domU 3 up: "], LONG).remove(0);
    let mark = up
        .split("marker at gpfn 0x")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no marker gpfn in {up}"));
    let si = HVM_START_INFO_GPA >> 12;
    assert_eq!(peek(&mut m, 3, si, 0), START_INFO_MAGIC);
    assert_eq!(peek(&mut m, 3, si, DOMID), 3);
    assert_eq!(peek(&mut m, 3, si, FLAGS), SIF_HVM);
    assert_eq!(peek(&mut m, 3, mark, 0), 0x4856_4d5f_4d41_524b ^ 3);
    refused(
        &mut m,
        3,
        0xc0000,
        "d3: gpfn 0xc0000 is in the PCI hole [0xc0000000, 4 GiB): there is no RAM there",
        "invalid argument",
    );
    // Across an update its nested tables stay where they are: the same
    // words.
    let out = cmd(&mut m, "live-update hv");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(&mut m, &["(hv) lu-report seq=2 "], LONG).remove(0);
    assert_eq!(fields(&report)["digest_equal"], "yes", "{report}");
    assert_eq!(peek(&mut m, 3, si, DOMID), 3);
    assert_eq!(peek(&mut m, 3, mark, 0), 0x4856_4d5f_4d41_524b ^ 3);

    // The domUs run on; d1's refusals were all as expected (probe 20 among
    // them).
    let next: Vec<String> = [1, 2, 3]
        .iter()
        .map(|d| {
            let seen = m.lines_with(&format!("(d{d}) heartbeat ")).count();
            format!("(d{d}) heartbeat {}:", seen + 2)
        })
        .collect();
    wait_all(&mut m, &[&next[0], &next[1], &next[2]], LONG);
    poweroff_pass(&mut m);
    assert_refusals(&m, 1, 14);
}
