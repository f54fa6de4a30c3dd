//! The compatibility matrix (`hvlu_harness::compat`): every ordered pair of
//! the releases recorded in `releases.toml` and the current tree (`next`)
//! inside one major, each release built from its own revision, with its own
//! dom0 and domU. Each cell boots A, updates to B, back to A and to B
//! again; every update must keep the guests and their checks clean, or be
//! refused by the writer as the version rule says. The table is printed and
//! written to `target/compat/matrix.txt` (`cargo xtask compat` shows it).

use hvlu_harness::compat::{self, MATRIX_FILE};
use hvlu_harness::qemu::root;
use hvlu_harness::releases;

/// Machines run at once: one per core of the machines CI runs on.
const JOBS: usize = 2;

#[test]
fn every_pair_of_releases_updates_both_ways() {
    let list = releases::load().unwrap_or_else(|e| panic!("{e}"));
    let pairs = compat::pairs(&list);
    assert!(
        pairs
            .iter()
            .any(|(a, b)| a.name == "1.0" && b.name == releases::NEXT),
        "the matrix covers the real 1.0 release and the current tree"
    );
    let cells = compat::run_all(&pairs, JOBS);
    let table = compat::table(&cells);
    println!("\n{table}");
    let path = root().join(MATRIX_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(&path, &table).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(cells.len(), pairs.len(), "every cell ran");
    let failed: Vec<String> = cells
        .iter()
        .filter(|c| !c.passed())
        .map(|c| format!("{} -> {}", c.from, c.to))
        .collect();
    assert!(failed.is_empty(), "cells failed: {failed:?}\n{table}");
}
