//! Nothing a guest can ask is half-ready after an update (issue #13, item
//! 7): the incoming hypervisor leaves work for after the guests resume
//! (listing the boot modules, releasing free RAM, the report line), and a
//! command dom0 sends the moment `lu exec: done` is printed must still see
//! all of it done. Updates follow each other with no pause, each followed
//! at once by commands that need the boot modules and the free RAM.
//!
//! The timer runs at its slowest rate (20 Hz), so the first tick after an
//! update — where that work used to run — comes up to 50 ms after the
//! guests resume: long after dom0's next command without the fix.

use hvlu_harness::scenario::{boot, cmd, fields, poweroff_pass, summarise, wait_all, BOOT};

/// The modules every machine of the harness has (`Images::built`).
const MODULES: [&str; 4] = ["dom0", "domu", "hv", "hv-b"];

#[test]
fn updates_back_to_back_see_every_module_and_all_free_ram() {
    let mut m = boot("back-to-back", "autostart=domu timer_hz=20");
    wait_all(&mut m, &["(d1) heartbeat 1:"], BOOT);
    let rounds = 3;
    for round in 0..rounds {
        for (i, image) in ["hv-b", "hv"].into_iter().enumerate() {
            let seq = round * 2 + i + 1;
            let out = cmd(&mut m, &format!("live-update {image}"));
            assert!(
                out.iter().any(|l| l.contains("lu exec: done")),
                "update {seq} to {image}: {out:?}; log: {}",
                m.log_path().display()
            );
            // At once: the free RAM is all there, as the report counts it.
            let free = cmd(&mut m, "free");
            let report = m
                .lines_with(&format!("(hv) lu-report seq={seq} "))
                .next()
                .map(fields)
                .unwrap_or_else(|| {
                    panic!(
                        "update {seq}: no report line before dom0's next command: {free:?}; log: {}",
                        m.log_path().display()
                    )
                });
            let free_frames = free
                .iter()
                .find_map(|l| fields(l).remove("free_frames"))
                .unwrap_or_else(|| panic!("{free:?}"));
            assert_eq!(
                free_frames, report["free_after"],
                "update {seq}: `free` right after the update"
            );
            // Every boot module is there to be asked for.
            let listed = cmd(&mut m, "modules");
            for name in MODULES {
                assert!(
                    listed.iter().any(|l| l == &format!("(d0) module {name}")),
                    "update {seq}: `modules` lacks {name}: {listed:?}"
                );
            }
        }
    }
    let summary = summarise(&m.transcript);
    assert!(summary.clean(rounds as u64 * 2), "{summary}");
    poweroff_pass(&mut m);
}

/// The same without any command in between: the second `live-update`
/// is typed the moment the first one's prompt is back, and needs the boot
/// module list at once.
#[test]
fn a_second_update_typed_at_once_finds_its_module() {
    let mut m = boot("back-to-back-bare", "timer_hz=20");
    for seq in 1..=6 {
        let image = if seq % 2 == 1 { "hv-b" } else { "hv" };
        let out = cmd(&mut m, &format!("live-update {image}"));
        assert!(
            out.iter().any(|l| l.contains("lu exec: done")),
            "update {seq} to {image}: {out:?}; log: {}",
            m.log_path().display()
        );
    }
    let summary = summarise(&m.transcript);
    assert!(summary.clean(6), "{summary}");
    poweroff_pass(&mut m);
}
