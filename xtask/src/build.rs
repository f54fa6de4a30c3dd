//! `cargo xtask build`: the hypervisor, the guests and the framework for
//! the bare-metal target, every hypervisor image stamped with its build id
//! and signed.

use crate::build_id;
use crate::shell::{self, Cmd, Failure};
use crate::{keys, releases, BARE_TARGET, GUESTS, HV_AND_FRAMEWORK};

/// `cargo xtask build`: the current tree ([`build`]) unless only
/// `--release-images` is given, then the recorded releases
/// ([`releases::build_all`]) if it is.
pub fn build_images(release: bool, release_images: bool) -> Result<(), Failure> {
    if release || !release_images {
        build(release)?;
    }
    if release_images {
        releases::build_all()?;
    }
    Ok(())
}

/// Builds the framework crates and the images for the bare-metal target;
/// with `release`, also a second hypervisor build with another build id
/// (`target/hv-b/`), the image updates alternate with, and one whose note
/// says it reads and writes only handover ABI 2.0 (`target/hv-abi-2.0/`), a
/// major no release has, which every release must refuse to load
/// (`tests/tests/major.rs`). Every hypervisor image is
/// then stamped with its build id, the hash of its content
/// ([`build_id::stamp`]), and signed in place ([`keys::build_key`]); the development key pair is
/// created first if missing, so that `hv/build.rs` finds `dev.pub`.
pub fn build(release: bool) -> Result<(), Failure> {
    let key = keys::build_key()?;
    for set in [HV_AND_FRAMEWORK, GUESTS] {
        let mut cmd = Cmd::cargo("build").bare_metal().packages(set);
        if release {
            cmd = cmd.arg("--release");
        }
        cmd.run()?;
    }
    if release {
        for (dir, build_id, abi) in [
            ("target/hv-b", "hvlu-hv-b", ""),
            ("target/hv-abi-2.0", "hvlu-hv-abi-2.0", "2.0"),
        ] {
            Cmd::cargo("build")
                .bare_metal()
                .args(["--release", "--package", "hv", "--target-dir", dir])
                .env("HVLU_BUILD_ID", build_id)
                .env("HVLU_ABI", abi)
                .run()?;
        }
    }
    let profile = if release { "release" } else { "debug" };
    let mut images = vec![format!("target/{BARE_TARGET}/{profile}/hv")];
    if release {
        images.push(format!("target/hv-b/{BARE_TARGET}/release/hv"));
        images.push(format!("target/hv-abi-2.0/{BARE_TARGET}/release/hv"));
    }
    for image in images {
        let path = shell::root().join(&image);
        let build = build_id::stamp(&path)?;
        let id = keys::sign_file(&key, &path, &path)?;
        println!("xtask: {image}: build id {build}, signed (key id {id})");
    }
    Ok(())
}
