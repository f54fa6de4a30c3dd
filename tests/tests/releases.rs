//! The releases recorded in `releases.toml`, each built from its own
//! revision (`hvlu_harness::releases`, built on first use and cached in
//! `target/releases/<name>/`): every release boots cold with its own dom0
//! and domU, its guests run, and it powers off with the pass verdict; and
//! the current hypervisor's `lu load` accepts each release's image, signed
//! with the current key after its own build, writing the version the
//! table (`cargo xtask releases`) says.
//!
//! Released bytes never change: every golden handover blob a release's
//! revision holds is, byte for byte, the file in today's tree, and every
//! handover version a release writes has its golden blob at that revision.
//! (The state of every update between releases, read out of the machine's
//! memory and decoded with today's reader, is checked in the compatibility
//! matrix, `tests/tests/compat.rs`.)

use std::fs;
use std::time::Duration;

use hvlu_harness::qemu::root;
use hvlu_harness::releases::{self, golden_path, Release, Source, GOLDEN_DIR};
use hvlu_harness::scenario::{
    assert_running, boot_config, boot_with, cmd, poweroff_pass, wait_all,
};
use hvlu_harness::MachineConfig;

const LONG: Duration = Duration::from_secs(90);

fn recorded() -> Vec<Release> {
    let all = releases::load().unwrap_or_else(|e| panic!("{e}"));
    all.into_iter()
        .filter(|r| matches!(r.source, Source::Revision(_)))
        .collect()
}

#[test]
fn every_release_boots_cold_with_its_own_guests_and_powers_off() {
    let all = releases::load().unwrap_or_else(|e| panic!("{e}"));
    assert!(all.len() >= 2, "at least 1.0 and the current tree: {all:?}");
    for release in all {
        let images = release.images().unwrap_or_else(|e| panic!("{e}"));
        let config = MachineConfig {
            name: format!("release-{}-cold", release.name),
            images: images.boot(),
            mem_mib: 512,
            cmdline: "lu_region=64M autostart=domu,domu".into(),
            extra: Vec::new(),
            hostlink: None,
            link: hvlu_harness::qemu::LinkDevice::Virtio,
            devices: true,
            watchdog: None,
        };
        let mut m = boot_config(&config);
        // Both domUs run and check their memory (a heartbeat reports the
        // checks so far; a mismatch fails the poweroff verdict).
        wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], LONG);
        // dom0's own toolstack lists dom0 and both domUs running.
        assert_running(&mut m, &[0, 1, 2], &format!("release {}", release.name));
        poweroff_pass(&mut m);
    }
}

#[test]
fn the_current_loader_accepts_every_release_image_signed_with_the_current_key() {
    let next = releases::next();
    let recorded = recorded();
    let modules: Vec<(String, std::path::PathBuf)> = recorded
        .iter()
        .map(|r| {
            let images = r.images().unwrap_or_else(|e| panic!("{e}"));
            (format!("release-{}", r.name), images.hv)
        })
        .collect();
    let mut m = boot_with("release-images-load", "", |c| {
        c.images.modules.extend(modules.iter().cloned())
    });
    for r in &recorded {
        let module = format!("release-{}", r.name);
        let out = cmd(&mut m, &format!("lu load {module}"));
        let Some(writing) = next.writes_to(r) else {
            // The table says the current tree cannot hand over to it: the
            // loader refuses it.
            assert!(
                out.iter()
                    .any(|l| l.contains(&format!("lu load {module}: error"))),
                "{out:?}"
            );
            continue;
        };
        assert!(
            out.iter()
                .any(|l| l.contains(&format!("lu load {module}: staged"))),
            "{out:?}; log: {}",
            m.log_path().display()
        );
        let loaded = m
            .lines_with(&format!("(hv) lu: loaded `{module}`"))
            .last()
            .unwrap_or_else(|| panic!("no load line for {module}"))
            .to_string();
        let reads = format!("reads ABI {}..={}", r.reads.min, r.reads.max);
        assert!(loaded.contains(&reads), "{reads}: {loaded}");
        assert!(
            loaded.contains(&format!("writing {writing},")),
            "writing {writing}: {loaded}"
        );
        let out = cmd(&mut m, "lu unload");
        assert!(out.iter().any(|l| l.contains("lu unload: done")), "{out:?}");
    }
    poweroff_pass(&mut m);
}

/// Whether a path is a golden blob: `v<anything>.bin` in [`GOLDEN_DIR`].
fn is_golden_blob(path: &str) -> bool {
    path.strip_prefix(GOLDEN_DIR)
        .and_then(|name| name.strip_prefix("/v"))
        .is_some_and(|name| name.ends_with(".bin") && !name.contains('/'))
}

#[test]
fn every_released_golden_blob_is_byte_for_byte_the_file_at_its_release() {
    let recorded = recorded();
    assert!(
        !recorded.is_empty(),
        "{} records no release",
        releases::FILE
    );
    let mut wrong = Vec::new();
    let mut checked = Vec::new();
    for release in &recorded {
        let at_release = release
            .files_at_revision(GOLDEN_DIR)
            .unwrap_or_else(|e| panic!("{e}"));
        let blobs: Vec<&String> = at_release.iter().filter(|p| is_golden_blob(p)).collect();
        // Every version the release writes was released with its blob.
        let written = release.written_versions().unwrap_or_else(|e| panic!("{e}"));
        for version in written {
            let path = golden_path(version);
            if !blobs.contains(&&path) {
                wrong.push(format!(
                    "release {} writes handover {version} but its revision has no {path} \
                     (it has: {blobs:?})",
                    release.name
                ));
            }
        }
        for path in blobs {
            let released = release
                .file_at_revision(path)
                .unwrap_or_else(|e| panic!("{e}"));
            let today = match fs::read(root().join(path)) {
                Ok(bytes) => bytes,
                Err(e) => {
                    wrong.push(format!(
                        "{path}, released in {}, is gone from today's tree: {e}",
                        release.name
                    ));
                    continue;
                }
            };
            match first_difference(&released, &today) {
                None => checked.push(format!("{path} = {} ({} bytes)", release.name, today.len())),
                Some(at) => wrong.push(format!(
                    "{path} differs from the file released in {} at byte {at} \
                     (released {} bytes, today {}; a released blob is never edited: a \
                     format change adds a version, {GOLDEN_DIR}/README.md)",
                    release.name,
                    released.len(),
                    today.len()
                )),
            }
        }
    }
    println!("golden blobs as released: {}", checked.join(", "));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The offset of the first byte where two files differ, or where the
/// shorter one ends; `None` if they are equal.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (a != b).then(|| {
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()))
    })
}
