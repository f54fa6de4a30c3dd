//! After a live update, the frametable and M2P entries of the frames the
//! handover state does not name are initialised only after the guests run
//! again (Invariant 29). With `lu_settle=demand` nothing initialises them
//! in the background: each is initialised when something first needs it,
//! and every answer must be the one a fully initialised table gives — the
//! free count, a mapping of a frame dom0 does not own, a new domain's
//! frames, and the `lu-settled` line once all are done.

use std::time::Duration;

use hvlu_harness::scenario::{boot, cmd, fields, poweroff_pass, summarise, wait_all};

const LONG: Duration = Duration::from_secs(90);

/// A frame of free RAM on the default machine: above the frames the
/// domains took at boot, below the live-update region at the top of RAM.
const FREE_MFN: &str = "0x10000";

fn free_frames(m: &mut hvlu_harness::Machine) -> u64 {
    let out = cmd(m, "free");
    out.iter()
        .find_map(|l| fields(l).get("free_frames")?.parse().ok())
        .unwrap_or_else(|| panic!("no free_frames in {out:?}"))
}

#[test]
fn entries_an_update_left_give_the_right_answers_when_first_needed() {
    let mut m = boot("settle-demand", "autostart=domu lu_settle=demand");
    wait_all(&mut m, &["(d1) heartbeat 2:"], LONG);
    // A first update releases the cold-boot image's frames besides: the
    // second one is the one measured (its `lu exec` initialises what the
    // first left, before it pauses anything).
    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    wait_all(&mut m, &["entered by live update #1"], LONG);
    let free = free_frames(&mut m);
    let refused = cmd(&mut m, &format!("map {FREE_MFN}"));
    assert!(
        refused
            .iter()
            .any(|l| l.contains("refused: frame not owned by caller")),
        "{refused:?}"
    );

    let out = cmd(&mut m, "live-update hv");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    wait_all(
        &mut m,
        &[
            "(hv) lu-settled seq=1 ",
            "entered by live update #2",
            "(hv) lu-report seq=2 ",
        ],
        LONG,
    );
    // Free RAM not handed to the page allocator yet counts as free, in
    // `free` as in the report.
    assert_eq!(free_frames(&mut m), free);
    let report = m
        .lines_with("(hv) lu-report seq=2 ")
        .next()
        .unwrap()
        .to_string();
    let f = fields(&report);
    assert_eq!(f.get("free_equal"), Some(&"yes".to_string()), "{report}");
    assert_eq!(f.get("free_after"), Some(&free.to_string()), "{report}");
    // The frame's entry is initialised when dom0 names it: not owned.
    let again = cmd(&mut m, &format!("map {FREE_MFN}"));
    assert!(
        again
            .iter()
            .any(|l| l.contains("refused: frame not owned by caller")),
        "{again:?}"
    );
    // The guests run on meanwhile, their own frames' entries initialised
    // by the pass.
    let n = m.lines_with("(d1) heartbeat ").count();
    wait_all(&mut m, &[&format!("(d1) heartbeat {}:", n + 2)], LONG);
    assert!(
        m.lines_with("(hv) lu-settled seq=2 ").next().is_none(),
        "settled without anything asking"
    );

    // A new domain takes its frames from all of free RAM: every entry is
    // initialised first, and all free RAM is the page allocator's.
    let out = cmd(&mut m, "create domu");
    assert!(!out.iter().any(|l| l.contains("error")), "{out:?}");
    wait_all(
        &mut m,
        &["(hv) lu-settled seq=2 ", "(d2) heartbeat 2:"],
        LONG,
    );
    let settled = m
        .lines_with("(hv) lu-settled seq=2 ")
        .next()
        .unwrap()
        .to_string();
    let f = fields(&settled);
    assert_eq!(f.get("free_frames"), Some(&free.to_string()), "{settled}");
    // Then the whole table was audited: every entry that says a frame is
    // owned is backed by its owner.
    assert_eq!(f.get("audit_equal"), Some(&"yes".to_string()), "{settled}");
    let owned: u64 = f["audit_owned"].parse().unwrap();
    assert!(owned > 1000, "{settled}");
    let summary = summarise(&m.transcript);
    assert!(summary.clean(2), "{summary}");
    poweroff_pass(&mut m);
}
