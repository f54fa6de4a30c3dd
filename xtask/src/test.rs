//! `cargo xtask test`: every test, in the order CI runs them.

use crate::build::build;
use crate::shell::{self, Cmd, Failure};
use crate::{fuzz, keys, releases, setup, soak, GUESTS, HV_AND_FRAMEWORK};

/// `cargo xtask test`.
pub fn test() -> Result<(), Failure> {
    // Before anything builds the hypervisor: its build script reads dev.pub.
    keys::ensure_dev_keys()?;
    shell::step("formatting");
    Cmd::cargo("fmt").args(["--all", "--", "--check"]).run()?;

    shell::step("clippy, host crates");
    Cmd::cargo("clippy")
        .arg("--workspace")
        .excluding(GUESTS)
        .args(["--all-targets", "--", "-D", "warnings"])
        .run()?;

    shell::step("clippy, bare-metal crates");
    for set in [HV_AND_FRAMEWORK, GUESTS] {
        Cmd::cargo("clippy")
            .bare_metal()
            .packages(set)
            .args(["--", "-D", "warnings"])
            .run()?;
    }

    shell::step("bare-metal build (debug and release)");
    build(false)?;
    build(true)?;

    shell::step("release images (releases.toml: each built once from its revision, kept in target/releases/)");
    releases::build_all()?;

    shell::step("benchmarks build");
    Cmd::cargo("bench")
        .args(["--no-run", "--package", "frame-ownership"])
        .run()?;

    shell::step("the guests' runtime on the host (pvrt: its arithmetic, such as the pause timing)");
    Cmd::cargo("test").args(["--package", "pvrt"]).run()?;

    shell::step("host tests and QEMU scenarios");
    setup::ensure_qemu()?;
    releases::forget_matrix();
    let run = Cmd::cargo("test")
        .arg("--workspace")
        .excluding(GUESTS)
        .run();
    // The compatibility matrix ran among them (`cargo xtask compat`).
    releases::print_matrix();
    run?;

    shell::step("soak: 200 updates in a row, two PV domUs and an HVM domU whose writes log-dirty tracks with a peek/clean cycle between updates, dom0 checking the edu device all along (cargo xtask soak --devices --hvm 1)");
    soak::soak(
        200,
        2,
        4,
        200,
        None,
        soak::Extras {
            churn: false,
            devices: true,
            hvm: 1,
        },
    )?;

    shell::step(&format!(
        "fuzzing ({} s per target, when a nightly toolchain is present)",
        fuzz::TEST_SECONDS
    ));
    fuzz::test_step()?;

    println!("xtask: all tests passed");
    Ok(())
}
