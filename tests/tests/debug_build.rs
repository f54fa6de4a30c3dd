//! The debug build of the hypervisor (what `cargo xtask build` makes and
//! signs) updates to the release build and back (issue #13, item 8): it
//! used to die of a stack overflow in its unoptimised Ed25519 check on any
//! signed `lu load`. The stack every load took is measured (the hypervisor
//! paints its stack before each load and prints how deep it went), and it
//! must stay well inside the stack on both builds. So must each boot's use
//! of the boot stack, whose guard page is mapped until the hypervisor's own
//! tables are loaded: the unoptimised cold boot once ran over it silently,
//! into the statics below.

use hvlu_harness::scenario::{boot_with, cmd, next_heartbeat, summarise, wait_all, BOOT};

/// What a load may take of the 64 KiB stack: three quarters, the rest is
/// margin for what the path may grow by.
const MOST_KIB: u64 = 48;

/// The KiB each boot's `… at most N KiB of the 64 KiB boot stack` line
/// gives: the cold boot's, then each incoming one's.
fn boot_depths(transcript: &[String]) -> Vec<u64> {
    transcript
        .iter()
        .filter(|l| l.ends_with(" KiB boot stack"))
        .filter_map(|l| {
            let (_, rest) = l.split_once(" at most ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// The KiB each `lu: loading … took at most N KiB` line of the log gives.
fn load_depths(transcript: &[String]) -> Vec<(String, u64)> {
    transcript
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("(hv) lu: loading `")?;
            let (module, rest) = rest.split_once('`')?;
            let kib = rest
                .strip_prefix(" took at most ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((module.to_string(), kib))
        })
        .collect()
}

#[test]
fn the_debug_build_updates_to_the_release_build_and_back() {
    let debug = hvlu_harness::qemu::debug_build();
    assert!(
        debug.exists(),
        "{} is missing: build it with `cargo xtask build` (cargo xtask test does)",
        debug.display()
    );
    let mut m = boot_with("debug-build", "autostart=domu", |c| {
        c.images.hv = debug.clone();
        c.images.modules.push(("hv-debug".into(), debug.clone()));
    });
    wait_all(&mut m, &["(d1) heartbeat 1:"], BOOT);
    // debug → release → debug → release (hv-b): each build loads a
    // signed image and is updated to.
    for (seq, image) in ["hv", "hv-debug", "hv-b"].into_iter().enumerate() {
        let out = cmd(&mut m, &format!("live-update {image}"));
        assert!(
            out.iter().any(|l| l.contains("lu exec: done")),
            "update {} to {image}: {out:?}; log: {}",
            seq + 1,
            m.log_path().display()
        );
        wait_all(&mut m, &[&format!("(hv) lu-report seq={} ", seq + 1)], BOOT);
    }
    let depths = load_depths(&m.transcript);
    println!("stack taken by each load: {depths:?}");
    assert_eq!(depths.len(), 3, "one measure a load: {depths:?}");
    for (module, kib) in &depths {
        assert!(
            *kib > 0 && *kib <= MOST_KIB,
            "loading {module} took {kib} KiB of the stack (at most {MOST_KIB}): {depths:?}"
        );
    }
    let boots = boot_depths(&m.transcript);
    println!("boot stack taken by each boot: {boots:?}");
    assert_eq!(boots.len(), 4, "the cold boot and three updates: {boots:?}");
    for kib in &boots {
        assert!(
            *kib > 0 && *kib <= MOST_KIB,
            "a boot took {kib} KiB of the boot stack (at most {MOST_KIB}): {boots:?}"
        );
    }
    next_heartbeat(&mut m, 1, BOOT);
    // Everything but the capacity holds: the images differ in size (the
    // debug one is larger), so the capacity after each update does too.
    let s = summarise(&m.transcript);
    assert_eq!(
        (
            s.updates,
            s.mismatches,
            s.regressions,
            s.equivalence_failures,
            s.frame_delta
        ),
        (3, 0, 0, 0, 0),
        "{s}"
    );
    hvlu_harness::scenario::poweroff_pass(&mut m);
}

#[test]
fn load_depths_are_read_from_the_log() {
    let t = vec![
        "(hv) lu: loading `hv` took at most 21 KiB of the 64 KiB kernel stack".to_string(),
        "(d1) heartbeat 3: checks=1".to_string(),
    ];
    assert_eq!(load_depths(&t), vec![("hv".to_string(), 21)]);
}
