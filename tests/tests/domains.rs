//! PV domains: domUs run their self-checking workload, dom0 creates and
//! destroys them, and every frame comes back.

use std::time::Duration;

use hvlu_harness::scenario::{assert_refusals, boot, cmd, field, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const BEATS: Duration = Duration::from_secs(60);

fn free_frames(m: &mut Machine) -> u64 {
    let out = cmd(m, "free");
    out.iter()
        .find_map(|l| field(l, "free_frames"))
        .unwrap_or_else(|| panic!("no free_frames in {out:?}"))
}

fn wait_heartbeat(m: &mut Machine, dom: u16, n: u64) -> String {
    // In everything seen since the boot: the heartbeat may arrive inside
    // the wait of the command before (`unpause`), which consumes it.
    let prefix = format!("(d{dom}) heartbeat {n}:");
    wait_all(m, &[&prefix], BEATS).remove(0)
}

#[test]
fn domus_run_and_verify_their_memory() {
    let mut m = boot("domus-verify", "autostart=domu,domu");
    // Each domU first exercises new frames, pin/unpin, a base-pointer
    // switch and giving frames back.
    wait_all(
        &mut m,
        &["(d1) table exercise passed", "(d2) table exercise passed"],
        BEATS,
    );
    for beat in wait_all(&mut m, &["(d1) heartbeat 3:", "(d2) heartbeat 3:"], BEATS) {
        assert_eq!(field(&beat, "mismatches"), Some(0), "{beat}");
        assert!(field(&beat, "checks").is_some_and(|c| c > 0), "{beat}");
        assert!(field(&beat, "remaps").is_some_and(|c| c > 0), "{beat}");
    }
    poweroff_pass(&mut m);
    for dom in [1, 2] {
        let report = m
            .lines_with(&format!("(hv) report d{dom} "))
            .next()
            .unwrap_or_else(|| panic!("no report for d{dom}"))
            .to_string();
        assert!(field(&report, "checks").is_some_and(|c| c > 0), "{report}");
        assert_eq!(field(&report, "mismatches"), Some(0), "{report}");
        assert_eq!(field(&report, "regressions"), Some(0), "{report}");
    }
}

#[test]
fn create_and_destroy_give_every_frame_back() {
    let mut m = boot("create-destroy", "");
    let before = free_frames(&mut m);
    for expected in 1..=2 {
        let out = cmd(&mut m, "create domu 8192");
        assert!(
            out.iter()
                .any(|l| l.contains(&format!("created d{expected} from domu"))),
            "{out:?}"
        );
    }
    wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], BEATS);
    let during = free_frames(&mut m);
    assert_eq!(before - during, 2 * 2048, "two 8 MiB domUs own 4096 frames");
    let list = cmd(&mut m, "list");
    assert_eq!(
        list.iter().filter(|l| l.contains(" domu ")).count(),
        2,
        "{list:?}"
    );
    for id in [1, 2] {
        let out = cmd(&mut m, &format!("destroy {id}"));
        assert!(
            out.iter()
                .any(|l| l.contains(&format!("destroy d{id}: done"))),
            "{out:?}"
        );
    }
    assert_eq!(
        free_frames(&mut m),
        before,
        "free frames after destroying every domU"
    );
    let list = cmd(&mut m, "list");
    assert!(!list.iter().any(|l| l.contains(" domu ")), "{list:?}");
    poweroff_pass(&mut m);
}

#[test]
fn domu_refusals_are_refused_and_it_keeps_running() {
    let mut m = boot("probes", "");
    cmd(&mut m, "create domu probe");
    let needles: Vec<String> = (1..=9)
        .chain([13, 14, 18, 19, 20])
        .map(|t| format!("(d1) probe {t} "))
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    for line in wait_all(&mut m, &needles, BEATS) {
        assert!(line.ends_with("as expected"), "{line}");
    }
    let beat = wait_heartbeat(&mut m, 1, 2);
    assert_eq!(field(&beat, "mismatches"), Some(0), "{beat}");
    poweroff_pass(&mut m);
    assert_refusals(&m, 1, 14);
}

#[test]
fn a_fault_in_a_domu_ends_that_domain_only() {
    let mut m = boot("fault", "autostart=domu");
    let before = {
        wait_heartbeat(&mut m, 1, 1);
        free_frames(&mut m)
    };
    cmd(&mut m, "create domu fault");
    m.wait_for_text("(hv) d2 took a fatal page fault: destroying it", BEATS)
        .unwrap_or_else(|e| panic!("{e}"));
    // The hypervisor, dom0 and the other domU go on.
    let list = cmd(&mut m, "list");
    assert!(list.iter().any(|l| l.starts_with("(d0) 1 ")), "{list:?}");
    assert!(!list.iter().any(|l| l.starts_with("(d0) 2 ")), "{list:?}");
    assert_eq!(
        free_frames(&mut m),
        before,
        "the faulted domain's frames are free again"
    );
    let n = m.lines_with("(d1) heartbeat").count() as u64;
    wait_heartbeat(&mut m, 1, n + 2);
    poweroff_pass(&mut m);
}

#[test]
fn a_paused_domu_stops_and_resumes_where_it_was() {
    let mut m = boot("pause", "autostart=domu");
    wait_heartbeat(&mut m, 1, 1);
    cmd(&mut m, "pause 1");
    let list = cmd(&mut m, "list");
    assert!(
        list.iter()
            .any(|l| l.starts_with("(d0) 1 ") && l.ends_with("paused")),
        "{list:?}"
    );
    let beats_paused = m.lines_with("(d1) heartbeat").count();
    cmd(&mut m, "sleep 2000");
    assert_eq!(
        m.lines_with("(d1) heartbeat").count(),
        beats_paused,
        "no heartbeat while paused"
    );
    cmd(&mut m, "unpause 1");
    let beat = wait_heartbeat(&mut m, 1, beats_paused as u64 + 1);
    assert_eq!(field(&beat, "mismatches"), Some(0), "{beat}");
    let out = cmd(&mut m, "pause 0");
    assert!(
        out.iter()
            .any(|l| l.contains("pause d0: error: invalid argument")),
        "{out:?}"
    );
    poweroff_pass(&mut m);
}

#[test]
fn a_domu_using_the_fpu_ends_without_touching_anyone_else() {
    let mut m = boot("fpu", "autostart=domu");
    wait_heartbeat(&mut m, 1, 1);
    cmd(&mut m, "create domu fpu");
    m.wait_for_text(
        "(hv) d2 took a fatal device not available: destroying it",
        BEATS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let n = m.lines_with("(d1) heartbeat").count() as u64;
    wait_heartbeat(&mut m, 1, n + 1);
    poweroff_pass(&mut m);
}
