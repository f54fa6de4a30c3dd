//! What the bench records of the host and the tree, and the host benchmark
//! of the pass.

use std::collections::BTreeMap;

use super::results::Host;
use crate::shell::{Cmd, Failure};

/// The host: CPU model and logical CPUs (`/proc/cpuinfo`), RAM
/// (`/proc/meminfo`), QEMU's version and the kernel; unknown parts empty.
pub fn host() -> Host {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or(String::new(), |(_, v)| v.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let qemu = Cmd::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .and_then(|o| o.lines().next().map(str::to_string))
        .map_or(String::new(), |l| {
            l.trim_start_matches("QEMU emulator version ").to_string()
        });
    let os = Cmd::new("uname")
        .args(["-sr"])
        .output()
        .map_or(String::new(), |o| o.trim().to_string());
    Host {
        cpu,
        cores,
        ram_mib,
        qemu,
        os,
        accelerator: "TCG".into(),
    }
}

/// The current tree's commit, `-dirty` if it has changes, and its subject.
pub fn commit() -> (String, String) {
    let git = |args: &[&str]| {
        Cmd::new("git")
            .args(args)
            .output()
            .map(|o| o.trim().to_string())
    };
    let hash = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let subject = git(&["log", "-1", "--format=%s"]).unwrap_or_default();
    (if dirty { format!("{hash}-dirty") } else { hash }, subject)
}

/// Now, UTC, ISO 8601 (from `date`).
pub fn now() -> String {
    Cmd::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map_or(String::new(), |o| o.trim().to_string())
}

/// The `key=value` figures of every `bench pass ...` line of `text`.
pub fn pass_lines(text: &str) -> Vec<BTreeMap<String, f64>> {
    text.lines()
        .filter_map(|l| l.strip_prefix("bench pass "))
        .map(|rest| {
            rest.split_ascii_whitespace()
                .filter_map(|w| w.split_once('='))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                .collect()
        })
        .collect()
}

/// `cargo bench -p frame-ownership`, printed as it runs; its `bench pass`
/// figures.
pub fn pass_bench() -> Result<Vec<BTreeMap<String, f64>>, Failure> {
    let out = Cmd::cargo("bench")
        .args(["--package", "frame-ownership"])
        .run_capture()?;
    Ok(pass_lines(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_figures_are_read_from_the_bench_lines() {
        let text = "pass over 1048576 frames\n  ratio 6.1\n\
                    bench pass frames=1048576 ns_per_frame=7.500 write_ns_per_frame=1.230 ratio=6.10\n";
        let lines = pass_lines(text);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["frames"], 1_048_576.0);
        assert_eq!(lines[0]["ratio"], 6.1);
    }
}
