//! Installs what the build needs and is missing, or says exactly what to run.

use crate::shell::{step, Cmd, Failure};
use crate::BARE_TARGET;

/// Makes sure the bare-metal target, rustfmt and clippy are installed.
pub fn ensure_toolchain() -> Result<(), Failure> {
    let Some(installed) = Cmd::new("rustup").args(["target", "list", "--installed"]).output()
    else {
        return Err(Failure::Missing(format!(
            "rustup is not available, so the {BARE_TARGET} target cannot be checked or \
             installed. Install rustup (https://rustup.rs), then run: \
             rustup target add {BARE_TARGET}"
        )));
    };
    if !installed.lines().any(|line| line.trim() == BARE_TARGET) {
        step(&format!("installing the {BARE_TARGET} target"));
        Cmd::new("rustup").args(["target", "add", BARE_TARGET]).run()?;
    }
    for (component, probe) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        if Cmd::cargo(probe).arg("--version").output().is_none() {
            step(&format!("installing {component}"));
            Cmd::new("rustup").args(["component", "add", component]).run()?;
        }
    }
    Ok(())
}
