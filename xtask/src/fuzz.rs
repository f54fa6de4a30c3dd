//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/`, built and run
//! without cargo-fuzz.
//!
//! The targets are built with a nightly toolchain, `cargo +nightly build
//! --release` in `fuzz/` with the flags cargo-fuzz passes for libFuzzer
//! ([`RUSTFLAGS`]: SanitizerCoverage, `--cfg fuzzing`, debug assertions,
//! overflow checks, AddressSanitizer), into `target/fuzz/` so that the main
//! build is left alone. Each binary then runs for a fixed time:
//!
//! - its corpus grows in `target/fuzz-corpus/<target>/`, kept between runs;
//! - seeds written by [`write_seeds`] (the golden state blobs, a valid note,
//!   small valid images, console lines, encoded hypercalls) are read from
//!   `target/fuzz-seeds/<target>/`;
//! - a crashing input is written to `target/fuzz-artifacts/<target>/`;
//! - libFuzzer's output goes to `target/fuzz-logs/<target>.log`, whose final
//!   statistics (`-print_final_stats=1`) give the figures printed.
//!
//! `cargo xtask test` runs every target for [`TEST_SECONDS`] when
//! [`availability`] finds a nightly toolchain and a C++ compiler (libFuzzer is
//! C++), and says why it skipped the step otherwise. `HVLU_FUZZ` overrides
//! that: `skip` skips the step, `require` fails the tests when fuzzing cannot
//! run; `HVLU_FUZZ_TOOLCHAIN` names another toolchain than `nightly` (one
//! that is not installed simulates a machine without nightly). A toolchain
//! that is not a nightly (`HVLU_FUZZ_TOOLCHAIN=stable`) builds the targets
//! with `RUSTC_BOOTSTRAP=1`, which lets it take the `-Z` flags: its standard
//! library ships the AddressSanitizer runtime too.
//! `cargo xtask fuzz --test-step` runs just that step.

pub(crate) mod seeds;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use self::seeds::write_seeds;
use crate::shell::{root, step, Cmd, Failure};

/// The targets, as `fuzz/Cargo.toml` names its binaries.
pub const TARGETS: &[&str] = &[
    "state_decoder",
    "note_parser",
    "image_validator",
    "console_line",
    "hypercall_args",
];

/// Seconds each target runs for in `cargo xtask test`.
pub const TEST_SECONDS: u64 = 10;

/// What cargo-fuzz passes to rustc for libFuzzer (its defaults, with
/// AddressSanitizer). Only the fuzz crate and its dependencies get them:
/// with an explicit `--target`, build scripts and proc-macros do not.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks -Zsanitizer=address";

/// Where the fuzz binaries are built, under the workspace root.
const TARGET_DIR: &str = "target/fuzz";

/// The toolchain the targets are built with unless `HVLU_FUZZ_TOOLCHAIN`
/// names another.
const DEFAULT_TOOLCHAIN: &str = "nightly";

/// Whether fuzzing can run here, and with what.
#[derive(Debug, PartialEq, Eq)]
pub enum Availability {
    /// It can: with this toolchain.
    Ready(String),
    /// It cannot or should not: why, and what to do about it.
    Skip(String),
}

/// What `HVLU_FUZZ` asks of `cargo xtask test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Unset or `auto`: fuzz when a nightly toolchain is present.
    Auto,
    /// `skip`: never fuzz.
    Skip,
    /// `require`: fuzz, and fail when it cannot.
    Require,
}

impl Policy {
    /// Reads `HVLU_FUZZ`.
    pub fn from_env() -> Result<Policy, Failure> {
        Policy::parse(std::env::var("HVLU_FUZZ").ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Result<Policy, Failure> {
        match value.map(str::trim) {
            None | Some("" | "auto") => Ok(Policy::Auto),
            Some("skip") => Ok(Policy::Skip),
            Some("require") => Ok(Policy::Require),
            Some(other) => Err(Failure::Failed(format!(
                "HVLU_FUZZ={other} is not understood: use auto (the default), skip or require"
            ))),
        }
    }
}

/// The toolchain to build with: `HVLU_FUZZ_TOOLCHAIN`, or `nightly`.
fn toolchain() -> String {
    std::env::var("HVLU_FUZZ_TOOLCHAIN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TOOLCHAIN.to_string())
}

/// Whether the fuzz targets can be built here: the toolchain answers
/// `cargo +TOOLCHAIN --version` (without rustup installing anything), and a
/// C++ compiler runs.
pub fn availability() -> Availability {
    let toolchain = toolchain();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    decide(
        &toolchain,
        &cxx,
        |t| {
            Cmd::new("cargo")
                .arg(format!("+{t}"))
                .arg("--version")
                .env("RUSTUP_AUTO_INSTALL", "0")
                .output()
                .is_some()
        },
        |c| Cmd::new(c).arg("--version").output().is_some(),
    )
}

/// [`availability`] with the probes passed in.
fn decide(
    toolchain: &str,
    cxx: &str,
    toolchain_runs: impl FnOnce(&str) -> bool,
    cxx_runs: impl FnOnce(&str) -> bool,
) -> Availability {
    if !toolchain_runs(toolchain) {
        return Availability::Skip(format!(
            "no {toolchain} toolchain (`cargo +{toolchain} --version` does not run); the \
             fuzz targets need nightly for -Zsanitizer and SanitizerCoverage. Install it \
             with: rustup toolchain install {toolchain} --profile minimal (or set \
             HVLU_FUZZ_TOOLCHAIN=stable to build them with stable under RUSTC_BOOTSTRAP=1)"
        ));
    }
    if !cxx_runs(cxx) {
        return Availability::Skip(format!(
            "no C++ compiler (`{cxx} --version` does not run); libfuzzer-sys builds libFuzzer \
             from C++. Install one, e.g. as root: apt-get install -y g++"
        ));
    }
    Availability::Ready(toolchain.to_string())
}

/// The fuzz step of `cargo xtask test`: every target for [`TEST_SECONDS`],
/// unless `HVLU_FUZZ` or what is installed says otherwise.
pub fn test_step() -> Result<(), Failure> {
    match plan(Policy::from_env()?, availability)? {
        Availability::Ready(toolchain) => run(&toolchain, TEST_SECONDS, TARGETS, &[]),
        Availability::Skip(why) => {
            println!("xtask: fuzz step SKIPPED: {why}");
            Ok(())
        }
    }
}

/// Whether the test step fuzzes: `probe` (looking for the toolchain) is
/// asked unless the policy is to skip; `require` turns a skip into a failure.
fn plan(policy: Policy, probe: impl FnOnce() -> Availability) -> Result<Availability, Failure> {
    let availability = match policy {
        Policy::Skip => {
            return Ok(Availability::Skip(
                "HVLU_FUZZ=skip (unset it to fuzz when a nightly toolchain is present)".to_string(),
            ))
        }
        Policy::Auto | Policy::Require => probe(),
    };
    match (availability, policy) {
        (Availability::Skip(why), Policy::Require) => Err(Failure::Missing(format!(
            "HVLU_FUZZ=require, but fuzzing cannot run: {why}"
        ))),
        (availability, _) => Ok(availability),
    }
}

/// `cargo xtask fuzz`: `target` (every target if `None`) for `seconds` each,
/// with `extra` passed on to libFuzzer.
pub fn fuzz(seconds: u64, target: Option<&str>, extra: &[String]) -> Result<(), Failure> {
    let targets: Vec<&str> = match target {
        None => TARGETS.to_vec(),
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => {
            return Err(Failure::Failed(format!(
                "no fuzz target {t}; the targets are {}",
                TARGETS.join(", ")
            )))
        }
    };
    match availability() {
        Availability::Ready(toolchain) => run(&toolchain, seconds, &targets, extra),
        Availability::Skip(why) => Err(Failure::Missing(why)),
    }
}

/// What one target's run gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// `stat::number_of_executed_units`.
    executions: Option<u64>,
    /// `stat::average_exec_per_sec`.
    exec_per_sec: Option<u64>,
    /// `stat::new_units_added`.
    new_units: Option<u64>,
    /// `stat::peak_rss_mb`.
    peak_rss_mb: Option<u64>,
    /// `cov:` of the last status line: coverage points reached.
    coverage: Option<u64>,
    /// `corp:` of the last status line: inputs in the corpus.
    corpus: Option<u64>,
    /// The input libFuzzer wrote after a crash, a timeout or running out of
    /// memory (`Test unit written to PATH`).
    artifact: Option<String>,
    /// libFuzzer's summary line, if it printed one (`SUMMARY: ...`).
    summary: Option<String>,
    /// The target's panic: `panicked at FILE:LINE:COL:` and the message's
    /// first line.
    panic: Option<String>,
}

/// Reads libFuzzer's output: the final statistics, the last status line, the
/// artifact written.
fn parse_log(log: &str) -> Outcome {
    let mut o = Outcome::default();
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.contains(" panicked at ") && o.panic.is_none() {
            let message = lines.next().unwrap_or_default().trim();
            o.panic = Some(format!("{line} {message}"));
        } else if let Some((key, value)) = line
            .strip_prefix("stat::")
            .and_then(|rest| rest.split_once(':'))
        {
            let slot = match key {
                "number_of_executed_units" => &mut o.executions,
                "average_exec_per_sec" => &mut o.exec_per_sec,
                "new_units_added" => &mut o.new_units,
                "peak_rss_mb" => &mut o.peak_rss_mb,
                _ => continue,
            };
            *slot = number(value);
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            o.artifact = Some(path.trim().to_string());
        } else if line.starts_with("SUMMARY: ") {
            o.summary = Some(line.to_string());
        } else if line.starts_with('#') {
            // `#461687	DONE   cov: 104 ft: 185 corp: 31/604b lim: 4096 ...`
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                match word {
                    "cov:" => o.coverage = words.next().and_then(number),
                    "corp:" => {
                        o.corpus = words
                            .next()
                            .and_then(|c| c.split('/').next())
                            .and_then(number)
                    }
                    _ => {}
                }
            }
        }
    }
    o
}

/// What `rustc +TOOLCHAIN -vV` says: the host triple, and whether it is a
/// nightly (or locally built) compiler, which takes `-Z` flags as it is.
fn rustc_info(toolchain: &str) -> Result<(String, bool), Failure> {
    let out = Cmd::new("rustc")
        .arg(format!("+{toolchain}"))
        .arg("-vV")
        .output()
        .unwrap_or_default();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let host = field("host: ").ok_or_else(|| {
        Failure::Failed(format!(
            "`rustc +{toolchain} -vV` does not say the host triple"
        ))
    })?;
    let release = field("release: ").unwrap_or_default();
    Ok((host, takes_unstable_flags(&release)))
}

/// Whether a rustc of this `release:` takes `-Z` flags without
/// `RUSTC_BOOTSTRAP=1`.
fn takes_unstable_flags(release: &str) -> bool {
    release.contains("-nightly") || release.contains("-dev")
}

/// Builds `targets` and runs each for `seconds`; fails if any crashed.
fn run(toolchain: &str, seconds: u64, targets: &[&str], extra: &[String]) -> Result<(), Failure> {
    let root = root();
    let (host, nightly) = rustc_info(toolchain)?;
    step(&format!(
        "building the fuzz targets with {toolchain}{} (libFuzzer, AddressSanitizer)",
        if nightly {
            ""
        } else {
            ", not a nightly: RUSTC_BOOTSTRAP=1"
        }
    ));
    let mut build = Cmd::new("cargo")
        .arg(format!("+{toolchain}"))
        .args(["build", "--release", "--manifest-path", "fuzz/Cargo.toml"])
        .args(["--target", &host, "--target-dir", TARGET_DIR])
        .env("RUSTFLAGS", RUSTFLAGS);
    if !nightly {
        build = build.env("RUSTC_BOOTSTRAP", "1");
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        build = build.env_remove(var);
    }
    for target in targets {
        build = build.args(["--bin", target]);
    }
    build.run()?;

    let bin_dir = root.join(TARGET_DIR).join(&host).join("release");
    let mut results = Vec::new();
    for &target in targets {
        step(&format!("fuzzing {target} for {seconds} s"));
        let dirs = Dirs::new(&root, target)?;
        write_seeds(target, &dirs.seeds)?;
        let binary = bin_dir.join(target);
        let cmd = Cmd::new(&binary)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            // A unit slower than this is reported as a hang.
            .arg("-timeout=30")
            .arg(format!("-artifact_prefix={}/", dirs.artifacts.display()))
            .args(extra.iter().map(String::as_str))
            .arg(&dirs.corpus)
            .arg(&dirs.seeds);
        let started = Instant::now();
        let status = cmd.status_to_log(&dirs.log)?;
        let elapsed = started.elapsed().as_secs_f64();
        let log = std::fs::read_to_string(&dirs.log)
            .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", dirs.log.display())))?;
        let outcome = parse_log(&log);
        let crashed = !status.success();
        if crashed {
            println!("xtask: {target} FAILED ({status}); the end of its log:");
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(40)..] {
                println!("    {line}");
            }
            if let Some(panic) = &outcome.panic {
                println!("xtask: {target}: {panic}");
            }
            match &outcome.artifact {
                Some(artifact) => println!(
                    "xtask: crashing input: {artifact}\n\
                     xtask: replay it with: {} {artifact}",
                    binary.display()
                ),
                None => println!("xtask: libFuzzer wrote no input (see the log)"),
            }
        }
        println!("xtask: {target}: {}", describe(&outcome, elapsed, crashed));
        results.push((target, outcome, elapsed, crashed));
    }

    let mut table = format!(
        "{:<16} {:>12} {:>9} {:>8} {:>6} {:>7}  result\n",
        "target", "executions", "exec/s", "seconds", "cov", "corpus"
    );
    for (target, o, elapsed, crashed) in &results {
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        let result = match (crashed, &o.artifact) {
            (false, _) => "no crash".to_string(),
            (true, Some(artifact)) => format!("CRASH: {artifact}"),
            (true, None) => "FAILED (no artifact; see the log)".to_string(),
        };
        let _ = writeln!(
            table,
            "{:<16} {:>12} {:>9} {:>8.1} {:>6} {:>7}  {result}",
            target,
            show(o.executions),
            show(o.exec_per_sec),
            elapsed,
            show(o.coverage),
            show(o.corpus),
        );
    }
    step(&format!("fuzzing summary ({seconds} s per target)"));
    print!("{table}");
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, _, crashed)| *crashed)
        .map(|(target, o, _, _)| match &o.artifact {
            Some(artifact) => format!("{target} ({artifact})"),
            None => format!("{target} (log: target/fuzz-logs/{target}.log)"),
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "fuzzing found a crash in {}",
            failed.join(", ")
        )))
    }
}

/// One line about a target's run.
fn describe(o: &Outcome, elapsed: f64, crashed: bool) -> String {
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
    format!(
        "{} executions in {elapsed:.1} s ({} exec/s), coverage {}, corpus {} inputs ({} new), \
         peak RSS {} MB, {}",
        show(o.executions),
        show(o.exec_per_sec),
        show(o.coverage),
        show(o.corpus),
        show(o.new_units),
        show(o.peak_rss_mb),
        if crashed {
            o.summary.as_deref().unwrap_or("FAILED")
        } else {
            "no crash"
        },
    )
}

/// Where one target's files go, under `target/`.
struct Dirs {
    corpus: PathBuf,
    seeds: PathBuf,
    artifacts: PathBuf,
    log: PathBuf,
}

impl Dirs {
    fn new(root: &Path, target: &str) -> Result<Dirs, Failure> {
        let under = |dir: &str| root.join("target").join(dir).join(target);
        let dirs = Dirs {
            corpus: under("fuzz-corpus"),
            seeds: under("fuzz-seeds"),
            artifacts: under("fuzz-artifacts"),
            log: root.join("target/fuzz-logs").join(format!("{target}.log")),
        };
        for dir in [
            &dirs.corpus,
            &dirs.seeds,
            &dirs.artifacts,
            &root.join("target/fuzz-logs"),
        ] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", dir.display())))?;
        }
        Ok(dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statistics_and_status_line_are_read() {
        let log = "\
INFO: Seed: 1
#2	INITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb
#461687	DONE   cov: 104 ft: 185 corp: 31/604b lim: 4096 exec/s: 76947 rss: 81Mb
Done 461687 runs in 6 second(s)
stat::number_of_executed_units: 461687
stat::average_exec_per_sec:     76947
stat::new_units_added:          46
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              81
";
        assert_eq!(
            parse_log(log),
            Outcome {
                executions: Some(461_687),
                exec_per_sec: Some(76_947),
                new_units: Some(46),
                peak_rss_mb: Some(81),
                coverage: Some(104),
                corpus: Some(31),
                artifact: None,
                summary: None,
                panic: None,
            }
        );
    }

    #[test]
    fn a_crash_gives_its_artifact_and_summary() {
        let log = "\
thread '<unnamed>' (9171) panicked at fuzz_targets/image_validator.rs:178:18:
staging into a too short area: Ok(())
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
==1234== ERROR: libFuzzer: deadly signal
SUMMARY: libFuzzer: deadly signal
MS: 2 ChangeBit-CopyPart-; base unit: 0000
artifact_prefix='/w/target/fuzz-artifacts/x/'; Test unit written to /w/target/fuzz-artifacts/x/crash-ab12
Base64: AAAA
stat::number_of_executed_units: 12
";
        let o = parse_log(log);
        assert_eq!(
            o.artifact.as_deref(),
            Some("/w/target/fuzz-artifacts/x/crash-ab12")
        );
        assert_eq!(
            o.summary.as_deref(),
            Some("SUMMARY: libFuzzer: deadly signal")
        );
        assert_eq!(o.executions, Some(12));
        assert_eq!(o.exec_per_sec, None);
        assert_eq!(
            o.panic.as_deref(),
            Some(
                "thread '<unnamed>' (9171) panicked at fuzz_targets/image_validator.rs:178:18: \
                 staging into a too short area: Ok(())"
            )
        );
    }

    #[test]
    fn only_a_nightly_or_local_rustc_takes_unstable_flags_as_it_is() {
        assert!(takes_unstable_flags("1.97.0-nightly"));
        assert!(takes_unstable_flags("1.97.0-dev"));
        assert!(!takes_unstable_flags("1.95.0"));
        assert!(!takes_unstable_flags("1.96.0-beta.3"));
        assert!(!takes_unstable_flags(""));
    }

    #[test]
    fn hvlu_fuzz_is_read() {
        assert_eq!(Policy::parse(None).unwrap(), Policy::Auto);
        assert_eq!(Policy::parse(Some("")).unwrap(), Policy::Auto);
        assert_eq!(Policy::parse(Some("auto")).unwrap(), Policy::Auto);
        assert_eq!(Policy::parse(Some("skip")).unwrap(), Policy::Skip);
        assert_eq!(Policy::parse(Some(" require ")).unwrap(), Policy::Require);
        assert!(Policy::parse(Some("yes")).is_err());
    }

    #[test]
    fn a_missing_toolchain_or_compiler_skips_with_the_way_to_install_it() {
        let no_nightly = decide("nightly", "c++", |_| false, |_| true);
        let Availability::Skip(why) = no_nightly else {
            panic!("{no_nightly:?}")
        };
        assert!(why.contains("rustup toolchain install nightly"), "{why}");

        let no_cxx = decide("nightly", "c++", |_| true, |_| false);
        let Availability::Skip(why) = no_cxx else {
            panic!("{no_cxx:?}")
        };
        assert!(why.contains("C++"), "{why}");

        assert_eq!(
            decide(
                "nightly-2026-01-01",
                "c++",
                |t| t == "nightly-2026-01-01",
                |_| true
            ),
            Availability::Ready("nightly-2026-01-01".to_string())
        );
    }

    #[test]
    fn the_test_step_skips_or_fails_as_hvlu_fuzz_says() {
        let ready = || Availability::Ready("nightly".to_string());
        let missing = || Availability::Skip("no nightly toolchain".to_string());
        let skipped = |r: Result<Availability, Failure>| match r {
            Ok(Availability::Skip(why)) => why,
            other => panic!("{other:?}"),
        };

        assert_eq!(plan(Policy::Auto, ready).unwrap(), ready());
        assert_eq!(skipped(plan(Policy::Auto, missing)), "no nightly toolchain");
        assert_eq!(plan(Policy::Require, ready).unwrap(), ready());
        let Err(Failure::Missing(why)) = plan(Policy::Require, missing) else {
            panic!("require without a toolchain must fail")
        };
        assert!(why.contains("HVLU_FUZZ=require") && why.contains("no nightly"));
        // Skipping does not even look for the toolchain.
        let why = skipped(plan(Policy::Skip, || panic!("probed")));
        assert!(why.starts_with("HVLU_FUZZ=skip"), "{why}");
    }
}
