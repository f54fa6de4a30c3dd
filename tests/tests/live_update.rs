//! Live update end to end: dom0's tool → old hypervisor → jump → new
//! hypervisor → guests resume, with the equivalence checks of every update.

use std::time::Duration;

use hvlu_harness::scenario::{
    boot, cmd, field, fields, poweroff_pass, soak_clean, summarise, wait_all,
};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

fn last_checks(m: &Machine, dom: u16) -> u64 {
    m.lines_with(&format!("(d{dom}) heartbeat "))
        .last()
        .and_then(|l| field(l, "checks"))
        .unwrap_or_else(|| panic!("no heartbeat from d{dom}"))
}

/// The build id in the `HVLU` note of the signed image at `path`, in its
/// short form: the first 8 bytes in hex, as the `lu-report` line shows it.
fn note_build_id(path: &std::path::Path) -> String {
    let signed = std::fs::read(path).expect("image");
    let image = old_hv::signature::strip(&signed);
    let limits = old_hv::image::ImageLimits { max_span: u64::MAX };
    let info = old_hv::image::validate(image, handover_abi::WRITES, &limits).expect("valid");
    info.note.build_id.to_string()[..16].to_string()
}

#[test]
fn one_update_with_dom0_and_three_domus() {
    let mut m = boot("lu-one", "autostart=domu,domu,domu");
    wait_all(
        &mut m,
        &[
            "(d1) heartbeat 2:",
            "(d2) heartbeat 2:",
            "(d3) heartbeat 2:",
        ],
        LONG,
    );
    let before: Vec<u64> = (1..=3).map(|d| last_checks(&m, d)).collect();

    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(&mut m, &["(hv) lu-report "], LONG).remove(0);
    let f = fields(&report);
    assert_eq!(f["seq"], "1", "{report}");
    assert_eq!(f["digest_equal"], "yes", "{report}");
    assert_eq!(f["free_equal"], "yes", "{report}");
    assert_ne!(
        f["from"], f["to"],
        "the update replaced the build: {report}"
    );
    // Each image names itself by the build id its note holds, which
    // `cargo xtask build` stamped (docs/abi.md §4.2).
    let hv = hvlu_harness::qemu::Images::built().expect("images").hv;
    assert_eq!(f["from"], note_build_id(&hv), "{report}");
    assert_eq!(
        f["to"],
        note_build_id(&hvlu_harness::qemu::second_build()),
        "{report}"
    );
    assert_eq!(f["frames"], (2048 + 3 * 1024).to_string(), "{report}");

    // The guests go on from where they were: counters continue, never back.
    let n: Vec<u64> = (1..=3)
        .map(|d| m.lines_with(&format!("(d{d}) heartbeat ")).count() as u64)
        .collect();
    let needles: Vec<String> = (1..=3)
        .map(|d| format!("(d{d}) heartbeat {}:", n[d - 1] + 2))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    wait_all(&mut m, &needles, LONG);
    for d in 1..=3u16 {
        assert!(
            last_checks(&m, d) > before[d as usize - 1],
            "d{d} checks continued"
        );
    }
    // dom0 can still create and destroy a domain.
    let out = cmd(&mut m, "create domu");
    assert!(
        out.iter().any(|l| l.contains("created d4 from domu")),
        "{out:?}"
    );
    m.wait_for_text("(d4) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = cmd(&mut m, "destroy 4");
    assert!(
        out.iter().any(|l| l.contains("destroy d4: done")),
        "{out:?}"
    );

    let summary = summarise(&m.transcript);
    assert!(summary.clean(1), "{summary}");
    poweroff_pass(&mut m);
}

#[test]
fn soak_of_twenty_updates_alternating_builds() {
    let mut m = boot("lu-soak-20", "autostart=domu,domu");
    wait_all(&mut m, &["(d1) heartbeat 1:", "(d2) heartbeat 1:"], LONG);
    let summary = soak_clean(&mut m, &["hv-b", "hv"], 20, 200);
    // Builds alternate: each update's `from` is the previous one's `to`.
    let reports: Vec<_> = m.lines_with("(hv) lu-report ").map(fields).collect();
    for pair in reports.windows(2) {
        assert_eq!(pair[0]["to"], pair[1]["from"]);
        assert_ne!(pair[1]["from"], pair[1]["to"]);
    }
    // The capacity does not drift: after every update it is the capacity
    // after the first, and `lu status` shows that figure.
    let (first, min, max) = summary.capacity_stats().expect("capacity figures");
    assert_eq!((min, max), (first, first), "{summary}");
    let out = cmd(&mut m, "lu status");
    let idle = out
        .iter()
        .find(|l| l.contains("lu status: idle; capacity "))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        idle.contains(&format!("capacity {first} KiB")),
        "{idle} (after the first update: {first} KiB)"
    );
    poweroff_pass(&mut m);
}

#[test]
fn a_flipped_bit_of_guest_memory_is_found_by_the_guest_and_fails_the_verdict() {
    let mut m = boot("lu-inject-guest", "autostart=domu lu_inject=guest");
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let injected = wait_all(
        &mut m,
        &["(hv) lu: fault injection: flipped a bit of d1"],
        LONG,
    );
    // The hypervisor's own checks cannot see guest data: the update
    // completes with equal digests and free frames ...
    let report = wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG).remove(0);
    assert_eq!(fields(&report)["digest_equal"], "yes", "{report}");
    assert_eq!(fields(&report)["free_equal"], "yes", "{report}");
    // ... and the domU's checker finds the bit (at the latest in its next
    // sweep of every page).
    let gpfn = injected[0]
        .split("gpfn ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{injected:?}"))
        .to_string();
    let mismatch = wait_all(&mut m, &["(d1) MISMATCH"], LONG).remove(0);
    assert!(mismatch.contains(&format!("gpfn {gpfn}")), "{mismatch}");
    // The domU reports its counts to the hypervisor after its current
    // batch of steps, before its next heartbeat: power off only once the
    // count has reached the hypervisor, or the verdict may not have it yet.
    let counted = |l: &str| l.contains("(d1) heartbeat") && !l.contains("mismatches=0");
    if !m.transcript.iter().any(|l| counted(l)) {
        m.wait_for("d1's heartbeat after the mismatch", LONG, counted)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    m.send("poweroff").unwrap_or_else(|e| panic!("{e}"));
    let ending = m.wait_exit(LONG);
    assert_eq!(
        ending,
        hvlu_harness::Ending::Outcome(pv_abi::exit::Outcome::Fail),
        "log: {}",
        m.log_path().display()
    );
    assert_eq!(pv_abi::exit::Outcome::Fail.qemu_status(), 35);
    let summary = m
        .lines_with("(hv) poweroff:")
        .last()
        .unwrap_or_else(|| panic!("no poweroff summary; log: {}", m.log_path().display()))
        .to_string();
    assert!(summary.contains("verdict FAIL"), "{summary}");
}

#[test]
fn a_failed_check_before_the_jump_cancels_and_every_guest_runs_on() {
    let mut m = boot("lu-inject-vcpu", "autostart=domu lu_inject=vcpu");
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = cmd(&mut m, "live-update hv-b");
    let cancelled = "update cancelled, every domain runs on: d1 vCPU 0: rip 0xffff800000000000 is not a guest address";
    assert!(
        out.iter()
            .any(|l| l.contains("lu exec: error: failed:") && l.contains(cancelled)),
        "{out:?}"
    );
    let out = cmd(&mut m, "lu status");
    assert!(
        out.iter()
            .any(|l| l.contains("lu status: last message: ") && l.contains(cancelled)),
        "{out:?}"
    );
    // The image stays staged and nothing was handed over.
    assert!(
        out.iter().any(|l| l.contains("lu status: loaded build")),
        "{out:?}"
    );
    assert!(m.lines_with("(hv) lu-report").next().is_none());
    assert!(m.lines_with("entered by live update").next().is_none());
    // The guests run on.
    let n = m.lines_with("(d1) heartbeat ").count() as u64;
    m.wait_for_text(&format!("(d1) heartbeat {}:", n + 2), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = summarise(&m.transcript);
    assert!(summary.clean(0), "{summary}");
    poweroff_pass(&mut m);
}

#[test]
fn lu_unload_and_exec_with_nothing_loaded() {
    let mut m = boot("lu-unload", "");
    let out = cmd(&mut m, "lu exec");
    assert!(
        out.iter()
            .any(|l| l.contains("lu exec: error: not found: nothing is loaded")),
        "{out:?}"
    );
    let out = cmd(&mut m, "lu unload");
    assert!(
        out.iter()
            .any(|l| l.contains("lu unload: error: not found")),
        "{out:?}"
    );
    let out = cmd(&mut m, "lu load hv-b");
    assert!(
        out.iter().any(|l| l.contains("lu load hv-b: staged")),
        "{out:?}"
    );
    let out = cmd(&mut m, "lu status");
    assert!(
        out.iter().any(|l| l.contains("lu status: loaded build")),
        "{out:?}"
    );
    let out = cmd(&mut m, "lu unload");
    assert!(out.iter().any(|l| l.contains("lu unload: done")), "{out:?}");
    let out = cmd(&mut m, "lu status");
    assert!(out.iter().any(|l| l.contains("lu status: idle")), "{out:?}");
    let out = cmd(&mut m, "lu exec");
    assert!(
        out.iter().any(|l| l.contains("nothing is loaded")),
        "{out:?}"
    );
    assert!(
        m.lines_with("(hv) lu-report").next().is_none(),
        "no update happened"
    );
    poweroff_pass(&mut m);
}

#[test]
fn refused_image_leaves_guests_running_and_a_good_update_works_after() {
    let mut m = boot("lu-refused", "autostart=domu");
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    // A guest kernel is an ELF, but not a signed hypervisor image (a
    // signed one without an HVLU note: tests/tests/signing.rs).
    let out = cmd(&mut m, "live-update domu");
    assert!(
        out.iter().any(
            |l| l.contains("lu load domu: error: invalid argument") && l.contains("not signed")
        ),
        "{out:?}"
    );
    let out = cmd(&mut m, "lu load nosuchimage");
    assert!(
        out.iter()
            .any(|l| l.contains("lu load nosuchimage: error: not found")),
        "{out:?}"
    );
    let n = m.lines_with("(d1) heartbeat ").count() as u64;
    m.wait_for_text(&format!("(d1) heartbeat {}:", n + 1), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG);
    let summary = summarise(&m.transcript);
    assert!(summary.clean(1), "{summary}");
    poweroff_pass(&mut m);
}

fn refused_by_incoming(inject: &str, needle: &str) {
    let mut m = boot(
        &format!("lu-inject-{inject}"),
        &format!("autostart=domu lu_inject={inject}"),
    );
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    m.send("live-update hv-b").unwrap_or_else(|e| panic!("{e}"));
    let ending = m.wait_exit(LONG);
    assert_eq!(
        ending,
        hvlu_harness::Ending::Outcome(pv_abi::exit::Outcome::Refused),
        "log: {}",
        m.log_path().display()
    );
    let refusal = m
        .lines_with("(hv) live update REFUSED by the incoming image: ")
        .next()
        .unwrap_or_else(|| panic!("no refusal line; log: {}", m.log_path().display()))
        .to_string();
    assert!(refusal.contains(needle), "{refusal}");
    // No guest ran on the state it could not verify: nothing from a guest
    // after the jump (the new image may refuse before it says it entered,
    // when the argument page itself is bad).
    let jumped = m
        .transcript
        .iter()
        .rposition(|l| l.contains("jumping"))
        .expect("the old side jumped");
    assert!(
        m.transcript[jumped..].iter().all(|l| !l.starts_with("(d")),
        "a guest ran after the jump"
    );
}

#[test]
fn a_corrupted_state_is_never_run() {
    refused_by_incoming("state", "body CRC mismatch");
}

#[test]
fn a_corrupted_argument_page_is_never_run() {
    // One bit at a pseudo-random place of the page: its magic, version,
    // CRC or a field the CRC covers.
    refused_by_incoming("args", "entry arguments");
}

#[test]
fn a_changed_guest_page_table_is_never_run() {
    // One bit of a guest page-table frame, after the old side took the
    // tables' digest: refused before the pass.
    refused_by_incoming("table", "page-table frames changed");
}

#[test]
fn a_digest_mismatch_is_never_run() {
    refused_by_incoming("digest", "digest");
}

#[test]
fn an_image_from_the_host_reaches_dom0_over_the_host_link() {
    let mut config =
        hvlu_harness::MachineConfig::new("lu-hostlink").unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = format!("{} autostart=domu", config.cmdline);
    let socket = hvlu_harness::qemu::root().join("target/qemu/lu-hostlink.sock");
    config.hostlink = Some(socket.clone());
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let image = std::fs::read(hvlu_harness::qemu::second_build()).expect("hv-b image");
    // Staged at the top of the free gap (the cold-boot image is outside the
    // region): one handover-area figure in the log and in `lu status`.
    let top = handover_area_kib(&mut m, "hv");

    let replies = hvlu_harness::hostlink::send_image_as(&socket, 0x600d, &image, LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        replies
            .iter()
            .map(String::as_str)
            .take(2)
            .collect::<Vec<_>>(),
        ["ready", "staged"],
        "{replies:?}"
    );
    assert!(
        replies
            .last()
            .is_some_and(|r| r.starts_with("done ") && r.ends_with(" 1")),
        "{replies:?}"
    );
    let report = wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG).remove(0);
    assert_eq!(fields(&report)["digest_equal"], "yes", "{report}");
    // The hypervisor's log names the image by its transfer.
    let named = format!(
        "(hv) lu: loaded `host link transfer #0000600d ({} bytes, CRC32C {:#010x})`",
        image.len(),
        hvlu_harness::hostlink::crc32c(&image)
    );
    assert!(
        m.lines_with(&named).next().is_some(),
        "no `{named}` in {}",
        m.log_path().display()
    );
    // Staged at the bottom now (the running image is at the gap's end):
    // the same figure, not the rest of the gap.
    let bottom = handover_area_kib(&mut m, "hv");
    assert!(
        top.abs_diff(bottom) <= 8,
        "handover area {top} KiB at the top, {bottom} KiB at the bottom"
    );
    let n = m.lines_with("(d1) heartbeat ").count() as u64;
    m.wait_for_text(&format!("(d1) heartbeat {}:", n + 1), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(summarise(&m.transcript).clean(1));
    poweroff_pass(&mut m);
}

/// Loads `image`, reads the handover area the hypervisor's `lu: loaded`
/// line gives and the one `lu status` gives, checks they are one figure,
/// unloads, and returns it (KiB).
fn handover_area_kib(m: &mut Machine, image: &str) -> u64 {
    let kib = |line: &str| -> u64 {
        line.split("handover area ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no handover area in `{line}`"))
    };
    let out = cmd(m, &format!("lu load {image}"));
    assert!(out.iter().any(|l| l.ends_with(": staged")), "{out:?}");
    let loaded = m
        .lines_with(&format!("(hv) lu: loaded `{image}`"))
        .last()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no load line for {image}"));
    let status = cmd(m, "lu status");
    let status = status
        .iter()
        .find(|l| l.contains("lu status: loaded build"))
        .unwrap_or_else(|| panic!("{status:?}"));
    assert_eq!(kib(&loaded), kib(status), "`{loaded}` against `{status}`");
    cmd(m, "lu unload");
    kib(&loaded)
}
