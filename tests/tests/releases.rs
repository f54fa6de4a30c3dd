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
//! handover version a release writes has its golden blob at that revision;
//! and the state of every update between the real 1.0 image and the
//! current one, read out of the machine's memory
//! (`hvlu_harness::capture`), decodes with today's reader to the domains
//! the machine runs.

use std::fs;
use std::time::Duration;

use handover_abi::{AbiVersion, DomainFlags};
use hvlu_harness::capture;
use hvlu_harness::qemu::root;
use hvlu_harness::releases::{self, golden_path, Release, Source, GOLDEN_DIR};
use hvlu_harness::scenario::{boot_config, boot_with, cmd, fields, poweroff_pass, wait_all};
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
        };
        let mut m = boot_config(&config);
        // Both domUs run and check their memory (a heartbeat reports the
        // checks so far; a mismatch fails the poweroff verdict).
        wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], LONG);
        // dom0's own toolstack lists dom0 and both domUs running.
        let list = cmd(&mut m, "list");
        for id in ["0", "1", "2"] {
            assert!(
                list.iter().any(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.get(1) == Some(&id) && words.last() == Some(&"running")
                }),
                "release {}: domain {id} is not listed running: {list:?}",
                release.name
            );
        }
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

/// A domain as dom0's `list` shows it: id, name, frames, limit, state.
fn listed(list: &[String]) -> Vec<(u16, String, u64, u64, String)> {
    list.iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.strip_prefix("(d0) ")?.split_whitespace().collect();
            match w[..] {
                [id, name, frames, max, state] => Some((
                    id.parse().ok()?,
                    name.to_string(),
                    frames.parse().ok()?,
                    max.parse().ok()?,
                    state.to_string(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Updates the machine with `live-update <module>` (update number `seq`),
/// captures the state the old image wrote and checks it, decoded by
/// today's reader, against the report and dom0's list from before.
fn update_and_capture(
    m: &mut hvlu_harness::Machine,
    module: &str,
    seq: u64,
    before: &[(u16, String, u64, u64, String)],
) -> capture::Capture {
    let out = cmd(m, &format!("live-update {module}"));
    assert!(
        out.iter().any(|l| l.contains("lu exec: done")),
        "{out:?}; log: {}",
        m.log_path().display()
    );
    let report = wait_all(m, &[&format!("(hv) lu-report seq={seq} ")], LONG).remove(0);
    let captured = capture::state_of_update(m, seq).unwrap_or_else(|e| panic!("{e}"));
    let state = captured.state();
    println!(
        "update {seq} ({module}): {} bytes of state at {:#x}, version {}, producer {}: {}",
        captured.bytes.len(),
        captured.arrival.state_phys,
        captured.version(),
        captured.decoded.header.producer.abi,
        state
            .domains
            .iter()
            .map(|d| format!(
                "d{} {} ({} frames in {} runs, {} vCPUs)",
                d.id.0,
                d.name,
                d.frames(),
                d.runs.len(),
                d.vcpus.len()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The writer is the image the update came from.
    let f = fields(&report);
    let build: String = captured.decoded.header.producer.build_id.0[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(build, f["from"], "{report}");
    // The runs the report counted.
    let runs: usize = state.domains.iter().map(|d| d.runs.len()).sum();
    assert_eq!(f["runs"], runs.to_string(), "{report}");
    // The domains dom0 listed, as the state has them.
    assert_eq!(state.domains.len(), before.len(), "{:?}", state.domains);
    for (d, (id, name, frames, max, _)) in state.domains.iter().zip(before) {
        assert_eq!(d.id.0, *id);
        assert_eq!(&d.name, name);
        assert_eq!(d.frames(), *frames, "d{id}'s frames");
        assert_eq!(d.max_frames, *max, "d{id}'s limit");
        assert!(!d.runs.is_empty() && !d.vcpus.is_empty(), "d{id}: {d:?}");
        assert!(!d.paused, "d{id} runs");
        assert_eq!(
            d.flags.contains(DomainFlags::PRIVILEGED),
            *id == 0,
            "d{id}: {:?}",
            d.flags
        );
    }
    // The domains run on: the same list, every one running.
    let after = listed(&cmd(m, "list"));
    assert_eq!(after, before);
    assert!(after.iter().all(|d| d.4 == "running"), "{after:?}");
    captured
}

#[test]
fn the_state_of_updates_from_and_to_1_0_decodes_with_todays_reader() {
    let old = releases::find("1.0").unwrap_or_else(|e| panic!("{e}"));
    let images = old.images().unwrap_or_else(|e| panic!("{e}"));
    let next = releases::next().images().unwrap_or_else(|e| panic!("{e}"));
    let mut boot = images.boot();
    boot.modules.push(("to-next".into(), next.hv));
    boot.modules.push(("to-1.0".into(), images.hv.clone()));
    let mut m = boot_config(&MachineConfig {
        name: "release-1.0-state".into(),
        images: boot,
        mem_mib: 512,
        cmdline: "lu_region=64M autostart=domu".into(),
        extra: Vec::new(),
        hostlink: None,
    });
    wait_all(&mut m, &["(d1) heartbeat 2:"], LONG);
    // 1.0's own dom0 lists its domains; nothing changes them from here on
    // (the domU's heartbeats change no frame count).
    let before = listed(&cmd(&mut m, "list"));
    assert_eq!(
        before.iter().map(|d| d.0).collect::<Vec<_>>(),
        [0, 1],
        "{before:?}"
    );
    let v1_0 = AbiVersion::new(1, 0);
    // 1.0 cold-booted writes 1.0 as a writer of 1.0 only.
    let c = update_and_capture(&mut m, "to-next", 1, &before);
    assert_eq!((c.version(), c.decoded.header.producer.abi), (v1_0, v1_0));
    // The current tree writes 1.0 to a reader of 1.0, as a 1.1 producer.
    let c = update_and_capture(&mut m, "to-1.0", 2, &before);
    assert_eq!(c.version(), v1_0);
    assert_eq!(c.decoded.header.producer.abi, handover_abi::CURRENT);
    // 1.0 entered by an update writes 1.0 as well.
    let c = update_and_capture(&mut m, "to-next", 3, &before);
    assert_eq!((c.version(), c.decoded.header.producer.abi), (v1_0, v1_0));
    poweroff_pass(&mut m);
}
