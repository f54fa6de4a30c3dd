//! `cargo xtask releases`, `cargo xtask build --release-images` and
//! `cargo xtask compat`: the releases recorded in `releases.toml`, built by
//! the harness (`hvlu_harness::releases`), and the matrix of updates
//! between them (`hvlu_harness::compat`), which the tests between versions
//! also use.

use std::time::Instant;

use hvlu_harness::releases::{self, Source};

use crate::build::build;
use crate::keys;
use crate::setup;
use crate::shell::{self, root, Cmd, Failure};

/// Prints the table of the releases and the current tree.
pub fn print() -> Result<(), Failure> {
    let list = releases::load().map_err(Failure::Failed)?;
    println!("{}", releases::table(&list));
    println!();
    for r in &list {
        if let Source::Revision(_) = r.source {
            let dir = r.dir();
            let built = if dir.join("built-from").exists() {
                "built"
            } else {
                "not built yet (cargo xtask build --release-images)"
            };
            let dir = dir.strip_prefix(root()).unwrap_or(&dir).display();
            println!("{}: images in {dir}: {built}", r.name);
        }
    }
    Ok(())
}

/// Builds (or finds built) every recorded release's images and signs its
/// hypervisor with the current key; prints where they are, their sizes
/// and the time taken.
pub fn build_all() -> Result<(), Failure> {
    // The key the images are signed with exists before anything is built.
    keys::build_key()?;
    let list = releases::load().map_err(Failure::Failed)?;
    for r in list
        .iter()
        .filter(|r| matches!(r.source, Source::Revision(_)))
    {
        let started = Instant::now();
        let images = r.images().map_err(Failure::Failed)?;
        println!(
            "xtask: release {} ready in {:.1} s: {} ({}; hv signed)",
            r.name,
            started.elapsed().as_secs_f64(),
            r.dir().strip_prefix(root()).unwrap_or(&r.dir()).display(),
            releases::sizes(&images)
        );
    }
    Ok(())
}

/// The matrix test: every pair of releases in QEMU, its table printed.
pub const COMPAT_TEST: [&str; 4] = ["--package", "hvlu-harness", "--test", "compat"];

/// Removes the matrix an earlier run left, so that only this run's is
/// printed.
pub fn forget_matrix() {
    let _ = std::fs::remove_file(root().join(hvlu_harness::compat::MATRIX_FILE));
}

/// Prints the matrix this run of the compatibility test left, if any.
pub fn print_matrix() {
    let path = root().join(hvlu_harness::compat::MATRIX_FILE);
    if let Ok(table) = std::fs::read_to_string(&path) {
        println!("\n{table}(kept in {})", path.display());
    }
}

/// `cargo xtask compat`: builds the current tree and every release, runs
/// the matrix test and prints its table.
pub fn compat() -> Result<(), Failure> {
    setup::ensure_qemu()?;
    build(true)?;
    build_all()?;
    shell::step("compatibility matrix (QEMU, every ordered pair of releases)");
    forget_matrix();
    let run = Cmd::cargo("test").args(COMPAT_TEST).run();
    print_matrix();
    run
}
