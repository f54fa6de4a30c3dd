//! Updates while everything moves: between updates dom0 creates, destroys,
//! pauses and unpauses domUs, and every domU keeps pinning, switching to
//! and releasing page tables (`domu churn`) while the updates come.

use std::time::Duration;

use hvlu_harness::scenario::{boot, poweroff_pass, soak_with_churn, wait_all, Churn};

const LONG: Duration = Duration::from_secs(90);

#[test]
fn updates_with_domains_coming_going_and_pausing() {
    let mut m = boot("churn", "");
    for _ in 0..2 {
        hvlu_harness::scenario::cmd(&mut m, "create domu churn");
    }
    wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], LONG);
    let mut churn = Churn::new(0x5eed_0000 + 24, 4096);
    let summary = soak_with_churn(&mut m, &["hv-b", "hv"], 24, 100, &mut churn)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("soak: {summary}; {churn}");
    assert!(
        summary.clean(24),
        "{summary}; log: {}",
        m.log_path().display()
    );
    // The seed exercises every action.
    assert!(
        churn.created > 0 && churn.destroyed > 0 && churn.paused > 0 && churn.unpaused > 0,
        "{churn}"
    );
    poweroff_pass(&mut m);
}
