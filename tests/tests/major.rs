//! An image outside every release's major is refused by `lu load`, before
//! anything is paused (issue #14, item 5). The image is the current tree
//! built with `HVLU_ABI=2.0` (`target/hv-abi-2.0/`, signed with the current
//! key): its note says it reads and writes only handover ABI 2.0.
//!
//! Every release `releases.toml` records, and the current tree (`next`),
//! boots with its own hypervisor, dom0 and domU and that image as the boot
//! module `abi-2.0`; its own dom0 runs `live-update abi-2.0`. The load must
//! be refused with the release's own reason, which names what the
//! hypervisor writes and what the image reads; `lu exec` must never run (no
//! exec, cancellation or report line); the domU must beat on, every domain
//! must be listed running, and the machine must power off with the pass
//! verdict. The table printed at the end says what each release did; a
//! release recorded later is covered without a change here.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use hvlu_harness::qemu::abi_2_0_build;
use hvlu_harness::releases::{self, Release};
use hvlu_harness::scenario::{assert_running, boot_with, cmd, poweroff_pass, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

/// The boot module the 2.0 image is loaded from.
const MODULE: &str = "abi-2.0";

/// What the image's note says it reads.
const IMAGE_READS: &str = "2.0..=2.0";

/// The reason a release's hypervisor gives for refusing the image: the
/// same words in 1.0 (`git show 15a2f57:old-hv/src/image.rs`,
/// `ImageError::NoCommonVersion`, and `hv/src/lu/outgoing.rs`) and in the
/// current tree.
fn reason(release: &Release) -> String {
    format!(
        "`{MODULE}` refused: no common handover ABI version: this hypervisor writes {}, \
         the image reads {IMAGE_READS}",
        release.writes
    )
}

/// Boots `release` with the 2.0 image as a module, tries the update and
/// checks the refusal; returns dom0's answer to `lu load`.
fn refuses_the_2_0_image(release: &Release, image: &Path) -> String {
    let mut images = release.images().unwrap_or_else(|e| panic!("{e}")).boot();
    images.modules.push((MODULE.into(), image.to_path_buf()));
    // The default machine (512 MiB, a 64 MiB region) with the release's
    // images.
    let mut m = boot_with(&format!("major-{}", release.name), "autostart=domu", |c| {
        c.images = images;
    });
    wait_all(&mut m, &["(d1) heartbeat 2:"], LONG);
    let log = m.log_path().display().to_string();

    let out = cmd(&mut m, &format!("live-update {MODULE}"));
    let reason = reason(release);
    let hv_line = format!("(hv) lu: {reason}");
    assert!(
        m.lines_with("(hv) lu: ").any(|l| l == hv_line),
        "release {}: no `{hv_line}`; log: {log}",
        release.name
    );
    // dom0 gets the reason whole, after the error's name.
    let answer = out
        .iter()
        .find(|l| l.starts_with(&format!("(d0) lu load {MODULE}: error: ")))
        .unwrap_or_else(|| {
            panic!(
                "release {}: no refusal in {out:?}; log: {log}",
                release.name
            )
        })
        .clone();
    assert!(
        answer.ends_with(&format!(": {reason}")),
        "release {}: {answer}",
        release.name
    );
    // The load failed, so `live-update` never asked for `lu exec`: nothing
    // was paused, serialised or cancelled.
    assert!(
        !out.iter().any(|l| l.contains("lu exec")),
        "release {}: {out:?}",
        release.name
    );
    for line in [
        "(hv) lu: exec ",
        "(hv) lu: update cancelled",
        "(hv) lu-report ",
    ] {
        assert_eq!(
            m.lines_with(line).count(),
            0,
            "release {}: `{line}` after a refused load; log: {log}",
            release.name
        );
    }
    goes_on(&mut m, release);
    poweroff_pass(&mut m);
    answer
}

/// The domU beats twice more and dom0 lists both domains running.
fn goes_on(m: &mut Machine, release: &Release) {
    let beats = m.lines_with("(d1) heartbeat ").count();
    wait_all(m, &[&format!("(d1) heartbeat {}:", beats + 2)], LONG);
    assert_running(m, &[0, 1], &format!("release {}", release.name));
}

#[test]
fn every_release_refuses_an_image_of_another_major_before_any_pause() {
    let image = abi_2_0_build();
    assert!(
        image.exists(),
        "{} is missing: build it with `cargo xtask build --release`",
        image.display()
    );
    let all = releases::load().unwrap_or_else(|e| panic!("{e}"));
    assert!(all.len() >= 2, "at least 1.0 and the current tree: {all:?}");
    let mut table = Vec::new();
    let mut failed = Vec::new();
    for release in &all {
        let result =
            panic::catch_unwind(AssertUnwindSafe(|| refuses_the_2_0_image(release, &image)));
        let cell = match result {
            Ok(answer) => format!("refused at lu load: {answer}"),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                failed.push(release.name.clone());
                format!("FAILED: {why}")
            }
        };
        table.push(format!(
            "{:6} writes {:9}  {cell}",
            release.name, release.writes
        ));
    }
    println!(
        "the {IMAGE_READS} image loaded by each release:\n{}",
        table.join("\n")
    );
    assert!(
        failed.is_empty(),
        "failed for {failed:?}:\n{}",
        table.join("\n")
    );
}
