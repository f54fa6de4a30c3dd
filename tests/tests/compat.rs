//! Updates between the real 1.0 release (built from its own revision,
//! `releases.toml`) and the current tree, both ways, with self-checking
//! domUs: the current hypervisor with its dom0 updates to 1.0 and back, and
//! 1.0 with its own dom0 and domU updates to the current one and back. Each
//! update must arrive with the owned-frame digest and the free frames equal,
//! every domain running, and the guests' checks clean at poweroff.
//!
//! The update to 1.0 follows the 1.0 contract its 36-byte note implies
//! (argument page version 1, the image before the state, its own boot
//! dry-run before the pause: `old_hv::image::Contract::agree`); the update
//! from 1.0 arrives with argument page version 1, whose missing digests the
//! current image says it cannot check. 1.0's own note parser reads the
//! current image's 52-byte note (it knows its first 36 bytes) whenever 1.0
//! loads it; the current one agrees on the contract that note states
//! (argument page version 3, the state first at the top of a gap) when it
//! updates to itself.

use std::time::Duration;

use hvlu_harness::releases::{self, Release, ReleaseImages};
use hvlu_harness::scenario::{boot_config, cmd, fields, poweroff_pass, wait_all};
use hvlu_harness::MachineConfig;

const LONG: Duration = Duration::from_secs(90);

fn release_1_0() -> (Release, ReleaseImages) {
    let r = releases::find("1.0").unwrap_or_else(|e| panic!("{e}"));
    let images = r.images().unwrap_or_else(|e| panic!("{e}"));
    (r, images)
}

fn current() -> ReleaseImages {
    releases::next().images().unwrap_or_else(|e| panic!("{e}"))
}

/// A machine of `base`'s hypervisor and guests, with both hypervisor images
/// as the boot modules `to-1.0` and `to-next`, and a self-checking domU.
fn machine(
    name: &str,
    base: &ReleaseImages,
    old: &ReleaseImages,
    next: &ReleaseImages,
) -> hvlu_harness::Machine {
    let mut images = base.boot();
    images.modules.push(("to-1.0".into(), old.hv.clone()));
    images.modules.push(("to-next".into(), next.hv.clone()));
    let mut m = boot_config(&MachineConfig {
        name: name.into(),
        images,
        mem_mib: 512,
        cmdline: "lu_region=64M autostart=domu".into(),
        extra: Vec::new(),
        hostlink: None,
    });
    wait_all(&mut m, &["(d1) heartbeat 2:"], LONG);
    m
}

/// `live-update <module>` from dom0: the update is done and its report
/// (number `seq`, printed by whichever image arrived) has both digests and
/// the free frames equal; dom0 and the domU run on.
fn update(m: &mut hvlu_harness::Machine, module: &str, seq: u64) {
    let out = cmd(m, &format!("live-update {module}"));
    assert!(
        out.iter().any(|l| l.contains("lu exec: done")),
        "update {seq} to {module}: {out:?}; log: {}",
        m.log_path().display()
    );
    wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG);
    let report = m
        .lines_with(&format!("(hv) lu-report seq={seq} "))
        .last()
        .unwrap()
        .to_string();
    let f = fields(&report);
    assert_eq!(f["digest_equal"], "yes", "{report}");
    assert_eq!(f["free_equal"], "yes", "{report}");
    let before = m.lines_with("(d1) heartbeat ").count();
    wait_all(m, &[&format!("(d1) heartbeat {}:", before + 1)], LONG);
    let list = cmd(m, "list");
    for id in ["0", "1"] {
        assert!(
            list.iter().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.get(1) == Some(&id) && w.last() == Some(&"running")
            }),
            "after update {seq} to {module}: domain {id} not running: {list:?}"
        );
    }
}

/// The current hypervisor's `lu: loaded` line for `to-1.0` says it writes
/// handover 1.0 and the contract 1.0's note implies.
fn loaded_with_the_1_0_contract(m: &hvlu_harness::Machine) {
    assert!(
        m.lines_with("(hv) lu: loaded `to-1.0`").any(|l| l.contains(
            "writing 1.0, argument page v1, image first, boot model 1 (the 1.0 release's contract"
        )),
        "the update to 1.0 writes handover 1.0 and the 1.0 contract; log: {}",
        m.log_path().display()
    );
}

#[test]
fn the_current_hypervisor_updates_to_1_0_and_back() {
    let (_, old) = release_1_0();
    let next = current();
    let mut m = machine("compat-next-1.0", &next, &old, &next);
    update(&mut m, "to-1.0", 1);
    loaded_with_the_1_0_contract(&m);
    update(&mut m, "to-next", 2);
    // The current image says what a version 1 argument page leaves unchecked.
    assert!(
        m.lines_with("(hv) lu: the old image's argument page (version 1)")
            .next()
            .is_some(),
        "log: {}",
        m.log_path().display()
    );
    update(&mut m, "to-1.0", 3);
    poweroff_pass(&mut m);
}

#[test]
fn release_1_0_with_its_own_guests_updates_to_the_current_hypervisor_and_back() {
    let (_, old) = release_1_0();
    let next = current();
    let mut m = machine("compat-1.0-next", &old, &old, &next);
    update(&mut m, "to-next", 1);
    update(&mut m, "to-1.0", 2);
    loaded_with_the_1_0_contract(&m);
    update(&mut m, "to-next", 3);
    poweroff_pass(&mut m);
}
