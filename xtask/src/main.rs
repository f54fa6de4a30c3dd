//! `cargo xtask`: build, run, test and bench hvlu.
//!
//! Every command installs what it needs and is missing (the bare-metal Rust
//! target, rustfmt, clippy, QEMU) or stops with the exact command a person
//! has to run. Bare-metal builds run with the inherited `RUSTFLAGS` and
//! target settings removed, so that a host-side setting never leaks into the
//! hypervisor image.
//!
//! Each subcommand has its own module: `setup`, `build`, `releases`
//! (and `compat`),
//! `run`, `sign` (`keys`), `test`, `fuzz`, `bench`, `live_update`, `soak`;
//! this file
//! holds the command line and the crate sets they share.

#![forbid(unsafe_code)]

mod bench;
mod build;
mod build_id;
mod fuzz;
mod keys;
mod live_update;
mod releases;
mod run;
mod setup;
mod shell;
mod soak;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::build::build;

/// The bare-metal target of the hypervisor and its guests.
pub const BARE_TARGET: &str = "x86_64-unknown-none";

/// The guests and their runtime: built for [`BARE_TARGET`] only, and in a
/// cargo run of their own, so that features the hypervisor turns on in
/// shared crates (serde, and with it `alloc`, in `hvlu-types`) are not
/// unified into the guests, which have no heap.
const GUESTS: &[&str] = &["dom0", "domu", "hvm", "pvrt"];

/// The hypervisor and the `no_std` framework crates, which are tested on the
/// host and also built for [`BARE_TARGET`] to prove they stay `no_std`. (On
/// the host, `hv` is its library's hardware-independent part.)
const HV_AND_FRAMEWORK: &[&str] = &[
    "hv",
    "hvlu-types",
    "handover-abi",
    "boot-allocator",
    "frame-ownership",
    "old-hv",
    "new-hv",
    "pv-abi",
];

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Build, run, test and bench hvlu")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install what is missing: bare-metal target, rustfmt, clippy, QEMU.
    Setup,
    /// Build the hypervisor, the guests and the framework for the bare-metal target.
    Build {
        /// Build with the release profile (what QEMU runs boot).
        #[arg(long)]
        release: bool,
        /// Build every release recorded in releases.toml from its own
        /// revision (a git worktree under target/releases/<name>/src, its
        /// own Cargo.lock, toolchain and build command), once per
        /// revision, and sign its hypervisor with the current key. Alone,
        /// builds only those; with --release, the current tree too.
        #[arg(long)]
        release_images: bool,
    },
    /// Print the releases (releases.toml) and which can update to which.
    ///
    /// Lists every recorded release and the current tree (`next`): its
    /// revision, toolchain and handover ABI ranges; then, for every ordered
    /// pair, the handover body version the first writes when it updates to
    /// the second (or `refused`), and who reads whom; and whether each
    /// release's images are built (`cargo xtask build --release-images`).
    Releases,
    /// Run the compatibility matrix in QEMU and print it.
    ///
    /// Every ordered pair of the releases recorded in releases.toml and the
    /// current tree (`next`) inside one major: boot A with its own dom0 and
    /// a self-checking domU, update to B, back to A and to B again. Each
    /// update must keep the guests (digests, free frames, `list`, the
    /// domU's checks) or be refused by the writer as the version rule
    /// says. Builds the current tree and every release first (once per
    /// revision); prints the table (pair, versions, result, blackouts),
    /// which is also kept in target/compat/matrix.txt. Also part of
    /// `cargo xtask test`.
    Compat,
    /// Boot the system in QEMU: the hypervisor, dom0 and two self-checking domUs.
    ///
    /// Without --script the terminal is dom0's console (type `help`; `poweroff`
    /// ends the run). With --script, dom0 runs the file's commands one per line
    /// (blank lines and lines starting with # are skipped), then powers off
    /// unless the script's last line did; the run passes only if the
    /// hypervisor reports that every domain had zero mismatches. The script
    /// is checked before anything is built or booted: a line dom0 would not
    /// run as written (a control byte such as a backspace or a carriage
    /// return, a byte beyond ASCII, too long, a line after `poweroff`)
    /// refuses it, with every such line and why.
    Run {
        /// dom0 commands to run, one per line.
        #[arg(long)]
        script: Option<PathBuf>,
        /// Number of domUs dom0 creates at boot.
        #[arg(long, default_value_t = 2)]
        domus: u32,
        /// Without --script: stop QEMU once its console has printed nothing
        /// for this many seconds. (A script's steps each fail after 60 s
        /// without progress instead.)
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Guest RAM (e.g. 512M, 4G, 64G); the live-update region grows
        /// with it when the default is too small. Default: unchanged.
        #[arg(long, value_parser = hvlu_harness::qemu::parse_ram)]
        ram: Option<u32>,
        /// Boot a machine without its PCI device: plain microvm, with no
        /// PCI Express host bridge and no `edu` (by default the machine is
        /// `microvm,pcie=on` with `-device edu`, which dom0's `devices` and
        /// `edu` commands use).
        #[arg(long)]
        no_devices: bool,
        /// Put the host link on the machine's second serial port (COM2)
        /// and leave the virtio-serial device out: for images that do not
        /// know the virtio link (releases before it), or to compare. By
        /// default the link is port 1 of a virtio-serial device
        /// (HVLU_HOSTLINK=uart does the same as this flag).
        #[arg(long)]
        hostlink_uart: bool,
    },
    /// Sign a hypervisor image for live update: append an Ed25519 signature
    /// trailer (docs/abi.md §6), replacing one the file already has.
    ///
    /// Writes IMAGE in place unless --out is given. The hypervisor accepts
    /// the image only if the key's public half is built into it
    /// (docs/operator-guide.md, "Signed images").
    Sign {
        /// The secret key file (64 hex digits). Default: HVLU_SIGNING_KEY,
        /// else the development key target/keys/dev.key (created if missing).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Write the signed image here instead of over IMAGE.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The image to sign.
        image: PathBuf,
    },
    /// Run every test: formatting, clippy (-D warnings), bare-metal builds,
    /// the release images (releases.toml), host tests, QEMU scenarios, and
    /// 10 s of each fuzz target.
    ///
    /// The fuzz step needs a nightly toolchain and a C++ compiler; without
    /// them it is skipped, with a line saying why. HVLU_FUZZ=skip skips it
    /// always, HVLU_FUZZ=require makes its absence a failure;
    /// HVLU_FUZZ_TOOLCHAIN names another toolchain than `nightly`.
    Test,
    /// Run the fuzz targets of fuzz/ (libFuzzer, AddressSanitizer) for a fixed
    /// time each and print executions, exec/s and whether each crashed.
    ///
    /// Needs a nightly toolchain (HVLU_FUZZ_TOOLCHAIN names another) and a C++
    /// compiler, not cargo-fuzz. Binaries go to target/fuzz/, corpora to
    /// target/fuzz-corpus/<target>/ (kept between runs), crashing inputs to
    /// target/fuzz-artifacts/<target>/, libFuzzer's output to
    /// target/fuzz-logs/<target>.log. Fails if any target crashed.
    Fuzz {
        /// Seconds each target runs for.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Run only this target (state_decoder, note_parser, image_validator).
        #[arg(long)]
        target: Option<String>,
        /// Further libFuzzer flags, after `--` (e.g. -- -max_len=65536 -dict=FILE).
        #[arg(last = true)]
        libfuzzer_args: Vec<String>,
        /// Run only the fuzz step of `cargo xtask test`, as it runs there
        /// (10 s per target, skipped without nightly, honours HVLU_FUZZ).
        #[arg(long, conflicts_with_all = ["seconds", "target", "libfuzzer_args"])]
        test_step: bool,
    },
    /// Run the benchmarks: the figures live-update systems are compared by,
    /// side by side, from one run.
    ///
    /// The frametable pass on the host against a plain write of the same
    /// bytes (`host`); then in QEMU (TCG) the blackout of live updates and
    /// each of its phases (every `*_us` field of the `lu-report` line,
    /// min/median/max over the updates) as the machine's RAM grows (`ram`:
    /// 1, 4, 16, 64 GiB, two PV domUs of 64 MiB), as one domU's memory
    /// grows (`guest`: 4 MiB up to 1 GiB, the most a domain may have) and as the domUs multiply
    /// (`count`: 1 to 32 of 4 MiB), the last two for PV, HVM and HVM with
    /// log-dirty on; with each the state's size, the blackout per GiB of
    /// guest memory and the pause each domU saw by its own clock against
    /// the reported blackout; then an HVM guest's speed under log-dirty
    /// (`logdirty`). Every configuration is printed as it starts and ends.
    /// Writes target/bench/results.json, results.md and SVG plots there.
    /// The full run takes a long while (docs/performance.md says how long
    /// it took); --quick takes the two smallest points of each sweep.
    Bench {
        /// The sweeps and phases to run, comma-separated: ram, guest,
        /// count, host, logdirty. Default: all.
        #[arg(long, value_enum, value_delimiter = ',')]
        sweep: Vec<bench::Sweep>,
        /// Live updates per configuration (default 5; 2 with --quick).
        #[arg(long)]
        updates: Option<u64>,
        /// A short run: the two smallest points of each sweep, 2 updates.
        #[arg(long)]
        quick: bool,
        /// Also run every PV configuration on images built from this
        /// revision (as a release is: a worktree and images under
        /// target/releases/baseline-<hash>/, built once), updating to
        /// itself; every figure then has its ratio to the baseline's.
        #[arg(long, value_name = "REV")]
        baseline: Option<String>,
        /// RAM of the guest-memory and domain-count sweeps (default 3G,
        /// for all of their points) and of the log-dirty phase (default:
        /// enough for its domU). The RAM sweep sets its own.
        #[arg(long, value_parser = hvlu_harness::qemu::parse_ram)]
        ram: Option<u32>,
    },
    /// Update a system started by `cargo xtask run` to a hypervisor image
    /// from the host: the image travels over the host link (the machine's
    /// virtio-serial port, or its second serial port with `run
    /// --hostlink-uart`) to dom0, whose tool stages and executes it; prints
    /// dom0's answers, how fast the image crossed, and the update's report
    /// line.
    LiveUpdate {
        /// The hypervisor image (e.g. target/hv-b/x86_64-unknown-none/release/hv,
        /// which `cargo xtask build --release` makes).
        #[arg(long)]
        image: PathBuf,
    },
    /// Boot dom0 and K self-checking domUs and perform N live updates in a
    /// row, alternating between two builds of the hypervisor (build ids
    /// differ). Ends with a summary: updates done, guest mismatches, frame
    /// delta, equivalence failures, blackout min/median/max. Exits non-zero if
    /// any of those is wrong.
    Soak {
        /// Updates to perform.
        #[arg(long, default_value_t = 200)]
        updates: u64,
        /// Self-checking domUs.
        #[arg(long, default_value_t = 2)]
        domus: u32,
        /// Memory of each domU in MiB.
        #[arg(long, default_value_t = 4)]
        guest_mem: u64,
        /// Milliseconds the domUs run between two updates.
        #[arg(long, default_value_t = 200)]
        settle_ms: u64,
        /// Guest RAM (e.g. 512M, 4G, 64G); the live-update region grows
        /// with it when the default is too small. Default: unchanged.
        #[arg(long, value_parser = hvlu_harness::qemu::parse_ram)]
        ram: Option<u32>,
        /// Between updates dom0 creates, destroys, pauses and unpauses
        /// extra domUs, and every domU keeps pinning, switching and
        /// releasing page tables (`domu churn`) while updates come.
        #[arg(long)]
        churn: bool,
        /// dom0 drives the PCI device (QEMU's edu) all along: a check every
        /// 20 ms (`edu watch 20`) before, during and after the updates; the
        /// soak fails on a failed check.
        #[arg(long)]
        devices: bool,
        /// HVM domUs (AMD SVM with nested paging) beside the PV ones, of
        /// the same memory; log-dirty tracks the first, with a peek and a
        /// clean before every update (the soak fails on a cycle without a
        /// dirty page: the guest writes all the time).
        #[arg(long, default_value_t = 0)]
        hvm: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = setup::ensure_toolchain().and_then(|()| match cli.command {
        Command::Setup => setup::ensure_qemu(),
        Command::Build {
            release,
            release_images,
        } => build::build_images(release, release_images),
        Command::Releases => releases::print(),
        Command::Compat => releases::compat(),
        Command::Run {
            script,
            domus,
            timeout,
            ram,
            no_devices,
            hostlink_uart,
        } => script
            .as_deref()
            .map(run::read_script)
            .transpose()
            .and_then(|script| {
                setup::ensure_qemu()?;
                build(true)?;
                run::run(script, domus, timeout, ram, !no_devices, hostlink_uart)
            }),
        Command::Test => test::test(),
        Command::Sign { key, out, image } => keys::sign(key, &image, out),
        Command::Fuzz {
            test_step: true, ..
        } => fuzz::test_step(),
        Command::Fuzz {
            seconds,
            target,
            libfuzzer_args,
            test_step: false,
        } => fuzz::fuzz(seconds, target.as_deref(), &libfuzzer_args),
        Command::LiveUpdate { image } => live_update::live_update(&image),
        Command::Soak {
            updates,
            domus,
            guest_mem,
            settle_ms,
            ram,
            churn,
            devices,
            hvm,
        } => setup::ensure_qemu()
            .and_then(|()| build(true))
            .and_then(|()| {
                soak::soak(
                    updates,
                    domus,
                    guest_mem,
                    settle_ms,
                    ram,
                    soak::Extras {
                        churn,
                        devices,
                        hvm,
                    },
                )
            }),
        Command::Bench {
            sweep,
            updates,
            quick,
            baseline,
            ram,
        } => bench::bench(bench::Options {
            sweeps: sweep,
            updates,
            quick,
            baseline,
            ram,
        }),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xtask: {failure}");
            ExitCode::FAILURE
        }
    }
}
