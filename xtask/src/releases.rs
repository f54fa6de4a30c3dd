//! `cargo xtask releases` and `cargo xtask build --release-images`: the
//! releases recorded in `releases.toml`, built by the harness
//! (`hvlu_harness::releases`), which the tests between versions also use.

use std::time::Instant;

use hvlu_harness::releases::{self, Source};

use crate::keys;
use crate::shell::{root, Failure};

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
