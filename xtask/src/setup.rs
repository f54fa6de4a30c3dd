//! Installs what the build needs and is missing, or says exactly what to run.

use crate::shell::{step, Cmd, Failure};
use crate::BARE_TARGET;

/// Makes sure the bare-metal target, rustfmt and clippy are installed.
pub fn ensure_toolchain() -> Result<(), Failure> {
    let Some(installed) = Cmd::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Err(Failure::Missing(format!(
            "rustup is not available, so the {BARE_TARGET} target cannot be checked or \
             installed. Install rustup (https://rustup.rs), then run: \
             rustup target add {BARE_TARGET}"
        )));
    };
    if !installed.lines().any(|line| line.trim() == BARE_TARGET) {
        step(&format!("installing the {BARE_TARGET} target"));
        Cmd::new("rustup")
            .args(["target", "add", BARE_TARGET])
            .run()?;
    }
    for (component, probe) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        if Cmd::cargo(probe).arg("--version").output().is_none() {
            step(&format!("installing {component}"));
            Cmd::new("rustup")
                .args(["component", "add", component])
                .run()?;
        }
    }
    Ok(())
}

/// Makes sure `qemu-system-x86_64` is installed, installing Debian's package
/// when we are root on a Debian-like system.
pub fn ensure_qemu() -> Result<(), Failure> {
    if Cmd::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_some()
    {
        return Ok(());
    }
    const INSTALL: &str = "apt-get update && apt-get install -y qemu-system-x86";
    let is_root = Cmd::new("id")
        .arg("-u")
        .output()
        .is_some_and(|uid| uid.trim() == "0");
    let has_apt = Cmd::new("apt-get").arg("--version").output().is_some();
    if !(is_root && has_apt) {
        return Err(Failure::Missing(format!(
            "qemu-system-x86_64 is not installed; as root run: {INSTALL}"
        )));
    }
    step("installing QEMU (Debian package qemu-system-x86)");
    Cmd::new("apt-get").arg("update").run()?;
    Cmd::new("apt-get")
        .args([
            "install",
            "-y",
            "--no-install-recommends",
            "qemu-system-x86",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    if Cmd::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_none()
    {
        return Err(Failure::Missing(format!(
            "qemu-system-x86_64 still does not run after installing; try: {INSTALL}"
        )));
    }
    Ok(())
}
