//! dom0's console refuses instead of guessing: a line it cannot take whole
//! is refused with the reason and nothing of it runs; every refusal of the
//! hypervisor reaches the console with its reason, in full.

use hvlu_harness::scenario::{boot, boot_with, cmd, poweroff_pass};
use hvlu_harness::Machine;

fn has(out: &[String], needle: &str) -> bool {
    out.iter().any(|l| l.contains(needle))
}

fn assert_has(out: &[String], needle: &str) {
    assert!(has(out, needle), "no `{needle}` in {out:?}");
}

/// The domains `list` shows, by id.
fn listed(m: &mut Machine) -> Vec<u64> {
    cmd(m, "list")
        .iter()
        .filter_map(|l| {
            l.strip_prefix("(d0) ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn an_emoji_before_poweroff_is_refused_and_the_machine_runs_on() {
    let mut m = boot("console-emoji", "");
    let out = cmd(&mut m, "\u{1f600} poweroff");
    assert_has(&out, "(d0) refused: the line has a byte 0xf0 at column 1");
    assert_has(&out, "nothing was run");
    assert!(!has(&out, "powering off"), "{out:?}");
    // A control byte (escape, as an arrow key sends) is refused too.
    let out = cmd(&mut m, "list\x1b[A");
    assert_has(&out, "refused: the line has a byte 0x1b at column 5");
    // A tab separates words like a space.
    let out = cmd(&mut m, "lu\tstatus");
    assert_has(&out, "lu status: running build");
    assert!(m.lines_with("(d0) powering off").next().is_none());
    poweroff_pass(&mut m);
}

#[test]
fn an_overlong_or_wordy_destroy_is_refused_and_d2_lives() {
    let mut m = boot("console-overlong", "autostart=domu,domu");
    let line = format!("destroy 2{}please not", " ".repeat(300));
    let out = cmd(&mut m, &line);
    assert_has(
        &out,
        "refused: the line has 319 bytes, more than the 256 a line may have; nothing was run",
    );
    let words = format!("destroy 2 {}", "please ".repeat(15));
    let out = cmd(&mut m, &words);
    assert_has(
        &out,
        "refused: the line has 17 words, more than the 16 a line may have",
    );
    assert!(!has(&out, "destroy d2"), "{out:?}");
    assert_eq!(listed(&mut m), [0, 1, 2]);
    let beat = m
        .transcript
        .iter()
        .filter(|l| l.starts_with("(d2) heartbeat"))
        .count();
    m.wait_for(
        "a later heartbeat of d2",
        hvlu_harness::scenario::CMD,
        |l| l.starts_with("(d2) heartbeat"),
    )
    .unwrap_or_else(|e| panic!("{e} (after {beat} beats)"));
    assert!(m.lines_with("(hv) d2 destroyed").next().is_none());
    poweroff_pass(&mut m);
}

#[test]
fn create_destroy_and_pause_refusals_say_why() {
    let mut m = boot("console-domctl-reasons", "");
    let out = cmd(&mut m, "create domu 0");
    assert_has(
        &out,
        "create domu: error: invalid argument: a domain of 0 KiB: give its memory in KiB",
    );
    let out = cmd(&mut m, "create domu 4");
    assert_has(
        &out,
        "create domu: error: invalid argument: 4 KiB is too little for module `domu`: the minimum is ",
    );
    let min: u64 = out
        .iter()
        .find_map(|l| {
            l.split("the minimum is ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no minimum in {out:?}"));
    assert!(min > 4 && min.is_multiple_of(4), "{min}");
    let out = cmd(&mut m, "create domu 4098");
    assert_has(&out, "4098 KiB is not a whole number of 4 KiB pages");
    // A size that does not parse is refused, not taken for the command
    // line of a domain of the default size.
    for size in ["-4096", "4k", "0x1000"] {
        let out = cmd(&mut m, &format!("create domu {size} probe"));
        assert_has(
            &out,
            &format!("create domu: error: `{size}` is not a memory size: give whole KiB in decimal digits (e.g. 4096; at most 1048576); nothing was created"),
        );
    }
    let out = cmd(&mut m, "create nosuch");
    assert_has(
        &out,
        "create nosuch: error: not found: there is no boot module `nosuch`; the boot modules are: dom0, domu, hv",
    );
    let out = cmd(&mut m, "destroy 0");
    assert_has(
        &out,
        "destroy d0: error: invalid argument: d0 is the control domain: it cannot be destroyed",
    );
    let out = cmd(&mut m, "pause 0");
    assert_has(&out, "d0 is the control domain: it cannot be paused");
    let out = cmd(&mut m, "destroy 9");
    assert_has(&out, "destroy d9: error: not found: there is no domain d9");
    // Nothing was created by any of them.
    assert_eq!(listed(&mut m), [0]);
    poweroff_pass(&mut m);
}

#[test]
fn a_long_reason_arrives_in_full() {
    let mut m = boot("console-long-reason", "");
    let name = "x".repeat(200);
    let out = cmd(&mut m, &format!("lu load {name}"));
    let line = out
        .iter()
        .find(|l| l.contains(": error: "))
        .unwrap_or_else(|| panic!("no answer in {out:?}"));
    let expected = format!(
        "lu load {name}: error: not found: there is no boot module `{name}`; the boot modules are: dom0, domu, hv, hv-b, hvm"
    );
    assert!(line.ends_with(&expected), "{line}");
    assert!(expected.len() > 300, "a reason well past the old 127 bytes");
    assert!(!line.contains("[cut"), "{line}");
    poweroff_pass(&mut m);
}

#[test]
fn a_refused_lu_load_leaves_the_staged_image_staged() {
    let empty = hvlu_harness::qemu::root().join("target/qemu/empty-module");
    std::fs::create_dir_all(empty.parent().unwrap()).unwrap();
    std::fs::write(&empty, b"").unwrap();
    let mut m = boot_with("console-lu-staged", "", |c| {
        c.images.modules.push(("empty".into(), empty.clone()));
    });
    // `lu exec` with nothing staged: the refusal, and nothing before it.
    let out = cmd(&mut m, "lu exec");
    assert_eq!(out.len(), 3, "echo, error, prompt: {out:?}");
    assert_has(&out, "lu exec: error: ");
    assert_has(&cmd(&mut m, "lu load hv-b"), "lu load hv-b: staged");
    let out = cmd(&mut m, "lu load nosuch");
    assert_has(&out, "there is no boot module `nosuch`");
    assert_has(&out, "`hv-b` stays staged");
    let out = cmd(&mut m, "lu load empty");
    assert_has(
        &out,
        "`empty` refused: the image is empty (0 bytes); `hv-b` stays staged",
    );
    let out = cmd(&mut m, "lu load domu");
    assert_has(
        &out,
        "lu load domu: error: invalid argument: `domu` refused: ",
    );
    assert_has(&out, "`hv-b` stays staged");
    let out = cmd(&mut m, "lu status");
    assert_has(&out, "lu status: loaded build");
    let out = cmd(&mut m, "lu exec");
    assert_has(&out, "lu exec: done, now running build");
    assert!(m
        .transcript
        .iter()
        .all(|l| !l.contains("lu exec: updating")));
    poweroff_pass(&mut m);
}
