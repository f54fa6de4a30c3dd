//! Booting the hypervisor in QEMU and talking to dom0 over the serial line.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use pv_abi::exit::Outcome;

/// How dom0 starts the answer to a line it refuses.
pub const REFUSED: &str = "(d0) refused: ";
/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The images a machine boots.
#[derive(Clone, Debug)]
pub struct Images {
    /// The hypervisor.
    pub hv: PathBuf,
    /// Boot modules: (name, file).
    pub modules: Vec<(String, PathBuf)>,
}

impl Images {
    /// The images `cargo xtask build --release` leaves in `target/`: the
    /// hypervisor and modules `dom0`, `domu` and `hv` (the same hypervisor,
    /// to update to).
    pub fn built() -> Result<Images, String> {
        let dir = root().join("target/x86_64-unknown-none/release");
        let images = Images {
            hv: dir.join("hv"),
            modules: vec![
                ("dom0".into(), dir.join("dom0")),
                ("domu".into(), dir.join("domu")),
                ("hvm".into(), dir.join("hvm")),
                // The hypervisor itself, as an image to update to.
                ("hv".into(), dir.join("hv")),
            ],
        };
        let mut images = images;
        // A second build of the hypervisor with another build id, for
        // updates that visibly replace the image (`cargo xtask build
        // --release` makes it).
        images.modules.push(("hv-b".into(), second_build()));
        for path in std::iter::once(&images.hv).chain(images.modules.iter().map(|(_, p)| p)) {
            if !path.exists() {
                return Err(format!(
                    "{} is missing: build the images with `cargo xtask build --release` \
                     (cargo xtask test does it)",
                    path.display()
                ));
            }
        }
        Ok(images)
    }
}

/// Where `cargo xtask build --release` puts the second build of the
/// hypervisor (built with `HVLU_BUILD_ID=hvlu-hv-b`).
pub fn second_build() -> PathBuf {
    root().join("target/hv-b/x86_64-unknown-none/release/hv")
}

/// Where `cargo xtask build --release` puts the hypervisor built with
/// `HVLU_ABI=2.0` (and `HVLU_BUILD_ID=hvlu-hv-abi-2.0`): its note says it
/// reads and writes only handover ABI 2.0, outside every release's major.
pub fn abi_2_0_build() -> PathBuf {
    root().join("target/hv-abi-2.0/x86_64-unknown-none/release/hv")
}

/// Where `cargo xtask build` (without `--release`) puts the debug build of
/// the hypervisor, signed like the release images.
pub fn debug_build() -> PathBuf {
    root().join("target/x86_64-unknown-none/debug/hv")
}

/// The longest path a unix socket address holds, with its terminating NUL.
const SOCKET_PATH_MAX: usize = 108;

/// How long the monitor may take to answer one command: it answers from
/// QEMU's main loop whatever the guest does, so only a broken QEMU takes
/// this long.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(60);

/// A path as the value of a QEMU option: a comma doubled.
fn option_value(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// Guest RAM above this many MiB is not reserved on the host
/// ([`MachineConfig::command`]): a 64 GiB machine on a smaller host.
pub const LAZY_RAM_ABOVE_MIB: u64 = 4096;

/// Guest RAM in MiB from a size such as `512M`, `64G` or `4096` (MiB): what
/// `--ram` takes.
pub fn parse_ram(text: &str) -> Result<u32, String> {
    let bad = || format!("`{text}` is not a RAM size (e.g. 512M, 4G, 64G)");
    let (digits, mib_per_unit) = match text.as_bytes().last() {
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1024),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1),
        _ => (text, 1),
    };
    let n: u32 = digits.parse().map_err(|_| bad())?;
    let mib = n
        .checked_mul(mib_per_unit)
        .filter(|&m| m >= 64)
        .ok_or_else(bad)?;
    Ok(mib)
}

/// The smallest live-update region, in MiB, for a machine with `mem_mib` of
/// RAM that still leaves room for updates (`docs/operator-guide.md`): the
/// frametable (16 bytes a frame), the M2P (8) and the heap (16, and 2 MiB)
/// for every frame up to the end of RAM — microvm puts RAM past 3 GiB above
/// a 1 GiB hole — and 6 MiB for the heap's fixed part, the page tables,
/// the running image and the staged one with its state (and the image file
/// beside it while it is loaded), with 16 bytes more per MiB of RAM end
/// (1 MiB at 64 GiB) for the page tables and the allocations' alignment,
/// which grow with the machine; whole 2 MiB, at least 8 MiB.
pub fn min_region_mib(mem_mib: u32) -> u64 {
    let mib = u64::from(mem_mib);
    let end_mib = if mib > 3072 { mib + 1024 } else { mib };
    let bytes = end_mib * 256 * 40 + end_mib * 16 + (6 << 20);
    (bytes.div_ceil(2 << 20) * 2).max(8)
}

/// How to start a machine.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Name of the run: the log goes to `target/qemu/<name>.log`.
    pub name: String,
    /// Images.
    pub images: Images,
    /// RAM in MiB.
    pub mem_mib: u32,
    /// The hypervisor command line.
    pub cmdline: String,
    /// Extra QEMU arguments (e.g. `-accel kvm`).
    pub extra: Vec<String>,
    /// The host link as a unix socket (QEMU is the server) at this path,
    /// on the device [`MachineConfig::link`] says.
    pub hostlink: Option<PathBuf>,
    /// What carries the host link ([`LinkDevice`]).
    pub link: LinkDevice,
    /// Whether the machine has its PCI device ([`DEVICE`]): a PCI Express
    /// host bridge (`microvm,pcie=on`: ECAM at 0xe0000000, a 32-bit MMIO
    /// window at 0xc0000000) with QEMU's `edu` device behind it. Without
    /// it the machine is plain `microvm`, with no host bridge at all: the
    /// hypervisor must find no PCI and boot as before.
    pub devices: bool,
    /// An ib700 watchdog (`-device ib700`) that updates arm for this many
    /// seconds before their jump (`lu_watchdog=ib700:SECONDS` added to the
    /// command line; a hypervisor of this tree only: releases up to 1.3
    /// refuse the word).
    pub watchdog: Option<u32>,
}

/// Set to `1`, machines made by [`MachineConfig::new`] have no device
/// (plain microvm), so that any test, or the whole suite, runs as on a
/// machine without PCI: `HVLU_NO_DEVICES=1 cargo test -p hvlu-harness
/// --test live_update`. A test that needs the device asks for it itself.
pub const NO_DEVICES_ENV: &str = "HVLU_NO_DEVICES";

/// Whether a new machine has the device, given [`NO_DEVICES_ENV`]'s value.
fn devices_by_default(no_devices: Option<&std::ffi::OsStr>) -> bool {
    no_devices.is_none_or(|v| v != "1")
}

/// What carries a machine's host link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDevice {
    /// Port 1 of a virtio-serial device on one of microvm's virtio-mmio
    /// transports, made modern (`-global
    /// virtio-mmio.force-legacy=false`): the fast link. Without a
    /// host-link socket the port is on a `null` chardev: the device is
    /// there on every such machine, so that images that do not know it
    /// (the releases) boot and update with it present.
    Virtio,
    /// COM2, an ISA 16550 at 0x2f8; the machine has no virtio-serial
    /// device, and the hypervisor falls back to COM2 by itself.
    Uart,
    /// COM2, with the virtio-serial device there too (its port on a `null`
    /// chardev): the hypervisor uses COM2 only when its command line says
    /// `hostlink=uart`.
    UartBesideVirtio,
}

/// Set to `uart`, machines made by [`MachineConfig::new`] have their host
/// link on COM2 and no virtio-serial device ([`LinkDevice::Uart`]), so that
/// any test, or the whole suite, runs on the fallback: `HVLU_HOSTLINK=uart
/// cargo test -p hvlu-harness --test hostile`. `virtio` (or unset) is the
/// default.
pub const HOSTLINK_ENV: &str = "HVLU_HOSTLINK";

/// A new machine's host-link device, given [`HOSTLINK_ENV`]'s value.
fn link_by_default(value: Option<&std::ffi::OsStr>) -> Result<LinkDevice, String> {
    match value.map(|v| v.to_str()) {
        None | Some(Some("virtio")) => Ok(LinkDevice::Virtio),
        Some(Some("uart")) => Ok(LinkDevice::Uart),
        Some(v) => Err(format!("{HOSTLINK_ENV}={v:?}: expected `virtio` or `uart`")),
    }
}

/// The host-link port's name on the virtio-serial device.
pub const VIRTIO_PORT_NAME: &str = "org.hvlu.hostlink";

/// The CPU every machine has: QEMU's default model with AMD SVM and nested
/// paging, which HVM domains need (`hv/src/arch/svm.rs`;
/// `shared/PLATFORM.md` has what was checked under TCG), and 1 GiB pages,
/// which the hypervisor's direct map uses when the CPU has them (any
/// recent x86_64 CPU does).
pub const CPU: &str = "qemu64,+svm,+npt,+pdpe1gb";

/// The PCI device every machine has unless told otherwise
/// ([`MachineConfig::devices`]): QEMU's teaching device, 1234:11e8, with
/// one 1 MiB memory BAR (QEMU's `docs/specs/edu.rst`).
pub const DEVICE: &str = "edu";

impl MachineConfig {
    /// A machine with the built images, 512 MiB, the default command line
    /// and the PCI device unless [`NO_DEVICES_ENV`] says otherwise.
    pub fn new(name: &str) -> Result<MachineConfig, String> {
        Ok(MachineConfig {
            name: name.into(),
            images: Images::built()?,
            mem_mib: 512,
            cmdline: "lu_region=64M".into(),
            extra: Vec::new(),
            hostlink: None,
            link: link_by_default(std::env::var_os(HOSTLINK_ENV).as_deref())?,
            devices: devices_by_default(std::env::var_os(NO_DEVICES_ENV).as_deref()),
            watchdog: None,
        })
    }

    /// Gives the machine `mem_mib` of RAM and, if the command line's
    /// live-update region is too small for that much, the smallest region
    /// that is not ([`min_region_mib`]).
    pub fn set_ram(&mut self, mem_mib: u32) {
        self.mem_mib = mem_mib;
        let region = self
            .cmdline
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix("lu_region="))
            .and_then(|v| parse_ram(v).ok());
        let least = min_region_mib(mem_mib);
        if region.is_some_and(|r| u64::from(r) < least) {
            self.cmdline = self
                .cmdline
                .split_ascii_whitespace()
                .map(|w| {
                    if w.starts_with("lu_region=") {
                        format!("lu_region={least}M")
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
    }

    /// The machine's QEMU monitor (HMP), a unix socket that QEMU serves:
    /// `target/qemu/<name>.monitor`, or, where that path is too long for a
    /// socket address (108 bytes), `hvlu-<hash of the name>.monitor` in the
    /// system's temporary directory.
    pub fn monitor_path(&self) -> PathBuf {
        let path = root()
            .join("target/qemu")
            .join(format!("{}.monitor", self.name));
        if path.as_os_str().len() < SOCKET_PATH_MAX {
            return path;
        }
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.name, &mut hash);
        let hash = std::hash::Hasher::finish(&hash);
        std::env::temp_dir().join(format!("hvlu-{hash:016x}.monitor"))
    }

    /// The QEMU command line.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let ram = format!("{}M", self.mem_mib);
        // microvm would add the virtio-mmio devices to the command line it
        // hands the kernel (`virtio_mmio.device=…`), which the hypervisor
        // refuses as an unknown option.
        let mut machine = String::from("microvm,auto-kernel-cmdline=off");
        if self.devices {
            // The PCI Express host bridge the device sits behind.
            machine.push_str(",pcie=on");
        }
        let lazy = u64::from(self.mem_mib) > LAZY_RAM_ABOVE_MIB;
        if lazy {
            machine.push_str(",memory-backend=ram");
        }
        cmd.arg("-machine").arg(machine).args(["-cpu", CPU]);
        if lazy {
            // QEMU reserves guest RAM on the host up front, which a host
            // with less memory refuses; unreserved, pages are taken only as
            // the guest touches them.
            cmd.arg("-object")
                .arg(format!("memory-backend-ram,id=ram,size={ram},reserve=off"));
        }
        if self.devices {
            cmd.args(["-device", DEVICE]);
        }
        let mut cmdline = self.cmdline.clone();
        if let Some(seconds) = self.watchdog {
            cmd.args(["-device", "ib700"]);
            cmdline.push_str(&format!(" lu_watchdog=ib700:{seconds}"));
        }
        cmd.arg("-m")
            .arg(&ram)
            .args(["-no-reboot", "-display", "none", "-serial", "stdio"])
            // The monitor, for the harness to read guest memory
            // ([`Machine::read_phys`]); the guest cannot reach it.
            .arg("-monitor")
            .arg(format!(
                "unix:{},server=on,wait=off",
                option_value(&self.monitor_path())
            ))
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(&self.images.hv)
            .arg("-append")
            .arg(cmdline.trim_start());
        // The chardev `id` of the host link: its socket, or nothing.
        let chardev = |id: &str, socket: Option<&PathBuf>| match socket {
            Some(socket) => format!(
                "socket,id={id},path={},server=on,wait=off",
                option_value(socket)
            ),
            None => format!("null,id={id}"),
        };
        let (virtio, uart) = match self.link {
            LinkDevice::Virtio => (Some(self.hostlink.as_ref()), None),
            LinkDevice::Uart => (None, self.hostlink.as_ref()),
            LinkDevice::UartBesideVirtio => (Some(None), self.hostlink.as_ref()),
        };
        if let Some(socket) = virtio {
            // Port 1: port 0 is a virtconsole's, whose output QEMU drops
            // when the host does not read, where a virtserialport's waits.
            cmd.args(["-global", "virtio-mmio.force-legacy=false"])
                .args(["-device", "virtio-serial-device,max_ports=2"])
                .arg("-chardev")
                .arg(chardev("hostlink-virtio", socket))
                .arg("-device")
                .arg(format!(
                    "virtserialport,chardev=hostlink-virtio,nr=1,name={VIRTIO_PORT_NAME}"
                ));
        }
        if let Some(socket) = uart {
            // microvm has one ISA UART of its own: add COM2 explicitly.
            cmd.arg("-chardev")
                .arg(chardev("hostlink", Some(socket)))
                .args(["-device", "isa-serial,chardev=hostlink,iobase=0x2f8,irq=3"]);
        }
        for (name, path) in &self.images.modules {
            cmd.arg("-fw_cfg")
                .arg(format!("name=opt/hvlu/{name},file={}", path.display()));
        }
        cmd.args(&self.extra);
        cmd
    }
}

/// How long the output of an exited QEMU may stay open without a line
/// before [`Machine::wait_exit`] stops draining it.
const DRAIN: Duration = Duration::from_secs(10);

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The hypervisor reported an outcome.
    Outcome(Outcome),
    /// QEMU exited with a status that is no outcome: its own failure (1), a
    /// triple fault under `-no-reboot` (0), a signal.
    Infrastructure(Option<i32>),
    /// The run made no progress for the caller's quiet period; QEMU was
    /// killed.
    Timeout,
}

/// A running QEMU with the hypervisor.
#[derive(Debug)]
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line seen so far.
    pub transcript: Vec<String>,
    log_path: PathBuf,
    monitor_path: PathBuf,
    echo: bool,
}

impl Machine {
    /// Starts QEMU. The exact command line is printed and written at the top
    /// of the log.
    pub fn start(config: &MachineConfig) -> Result<Machine, String> {
        let dir = root().join("target/qemu");
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log_path = dir.join(format!("{}.log", config.name));
        let monitor_path = config.monitor_path();
        let mut log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut cmd = config.command();
        let line = format!("{cmd:?}").replace('"', "");
        println!("qemu: {line}");
        println!("qemu: serial log {}", log_path.display());
        let _ = writeln!(log, "# {line}");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            format!("cannot start qemu-system-x86_64 ({e}); install it with `cargo xtask setup`")
        })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        let tx_err = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                let _ = writeln!(log, "{text}");
                if tx.send(text).is_err() {
                    break;
                }
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx_err.send(format!("(qemu) {line}"));
            }
        });
        Ok(Machine {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            transcript: Vec::new(),
            log_path,
            monitor_path,
            echo: false,
        })
    }

    /// Prints every serial line as it arrives (for `cargo xtask run`).
    pub fn echo(&mut self, on: bool) {
        self.echo = on;
    }

    /// Takes QEMU's standard input, to forward a terminal to dom0.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The serial log's path.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn take_line(&mut self, deadline: Instant) -> Result<Option<String>, String> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        match self.lines.recv_timeout(deadline - now) {
            Ok(line) => {
                if self.echo {
                    println!("{line}");
                }
                self.transcript.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("QEMU closed its output".into()),
        }
    }

    /// Waits until a line satisfies `pred`; returns it. The wait follows
    /// progress, not the clock: it fails only when `quiet` passes with
    /// neither the line nor any sign of the machine's control path moving
    /// on ([`is_progress`]), or when QEMU ends first, naming the log. A
    /// slow (busy) host makes the wait longer, never a failure.
    pub fn wait_for(
        &mut self,
        what: &str,
        quiet: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let started = Instant::now();
        let mut deadline = started + quiet;
        loop {
            match self.take_line(deadline) {
                Ok(Some(line)) if pred(&line) => return Ok(line),
                Ok(Some(line)) => {
                    if is_progress(&line) {
                        deadline = Instant::now() + quiet;
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "no progress for {quiet:?} while waiting for {what} ({:?} in all; last line: {:?}); log: {}",
                        started.elapsed(),
                        self.transcript.last().map_or("", String::as_str),
                        self.log_path.display()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{e} while waiting for {what}; log: {}",
                        self.log_path.display()
                    ))
                }
            }
        }
    }

    /// Waits for a line containing `needle` ([`Machine::wait_for`]).
    pub fn wait_for_text(&mut self, needle: &str, quiet: Duration) -> Result<String, String> {
        self.wait_for(&format!("`{needle}`"), quiet, |l| l.contains(needle))
    }

    /// Types one line into the serial console (dom0).
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot write to QEMU: {e}"))
    }

    /// Types a dom0 command and waits for dom0's next prompt; returns the
    /// lines dom0 printed for it. dom0 echoes the words it runs joined by
    /// single spaces, or prints `refused: <why>` for a line it refuses
    /// (see [`Machine::is_refusal`]); either ends the wait for the echo.
    pub fn command(&mut self, line: &str, timeout: Duration) -> Result<Vec<String>, String> {
        let start = self.transcript.len();
        self.send(line)?;
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let echo = format!("(d0) > {}", words.join(" "));
        self.wait_for(&format!("`{echo}` or a refusal"), timeout, |l| {
            l.contains(&echo) || l.starts_with(REFUSED)
        })?;
        self.wait_for(&format!("dom0's prompt after `{line}`"), timeout, |l| {
            l == "(d0) dom0>"
        })?;
        Ok(self.transcript[start..]
            .iter()
            .filter(|l| l.starts_with("(d0) "))
            .cloned()
            .collect())
    }

    /// Waits for QEMU to exit, draining its output; kills it once `quiet`
    /// has passed with no line from the machine (a powered-off machine
    /// prints its reports and ends; one that neither ends nor prints is
    /// stuck).
    pub fn wait_exit(&mut self, quiet: Duration) -> Ending {
        let mut deadline = Instant::now() + quiet;
        loop {
            while let Ok(Some(_)) = self.take_line(Instant::now() + Duration::from_millis(20)) {
                deadline = Instant::now() + quiet;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // Drain what is left: every line QEMU wrote before it
                    // exited, up to the end of its output (both readers
                    // gone), however slowly the reader threads run on a
                    // busy host; a bounded wait only if its output stays
                    // open without a line.
                    while let Ok(Some(_)) = self.take_line(Instant::now() + DRAIN) {}
                    return ending(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Ending::Timeout;
                }
            }
        }
    }

    /// Whether a line is dom0 refusing a typed line (`(d0) refused: ...`).
    pub fn is_refusal(line: &str) -> bool {
        line.starts_with(REFUSED)
    }

    /// Reads `len` bytes of the running machine's guest-physical memory
    /// at `addr`, through QEMU's monitor (`pmemsave` into a file under
    /// `target/qemu/`, read back and removed). The guest keeps running; the
    /// caller reads memory that nothing writes meanwhile.
    pub fn read_phys(&self, addr: u64, len: u64) -> Result<Vec<u8>, String> {
        let file = self
            .log_path
            .with_extension(format!("phys-{addr:#x}-{len:#x}"));
        let _ = fs::remove_file(&file);
        let quoted = file
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let answer = self.monitor(&format!("pmemsave {addr:#x} {len:#x} \"{quoted}\""))?;
        let bytes = fs::read(&file).map_err(|e| {
            format!(
                "pmemsave {addr:#x} {len:#x} left no file {} ({e}); the monitor said: {answer:?}",
                file.display()
            )
        })?;
        let _ = fs::remove_file(&file);
        if bytes.len() as u64 != len {
            return Err(format!(
                "pmemsave {addr:#x} {len:#x} saved {} bytes; the monitor said: {answer:?}",
                bytes.len()
            ));
        }
        Ok(bytes)
    }

    /// Runs one command on QEMU's monitor; what the monitor printed for it.
    fn monitor(&self, command: &str) -> Result<String, String> {
        let path = &self.monitor_path;
        let fail = |e: std::io::Error| format!("QEMU monitor {}: {e}", path.display());
        let mut socket = UnixStream::connect(path).map_err(fail)?;
        socket
            .set_read_timeout(Some(MONITOR_TIMEOUT))
            .map_err(fail)?;
        // The banner ends with the first prompt; the command's answer with
        // the next one.
        read_to_prompt(&mut socket).map_err(fail)?;
        socket
            .write_all(format!("{command}\n").as_bytes())
            .map_err(fail)?;
        let answer = read_to_prompt(&mut socket).map_err(fail)?;
        Ok(answer)
    }

    /// Lines of the transcript that start with `prefix`.
    pub fn lines_with<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.transcript
            .iter()
            .map(String::as_str)
            .filter(move |l| l.starts_with(prefix))
    }
}

/// Whether a serial line shows the machine's control path moving on: a
/// line of the hypervisor, of dom0 or of QEMU itself. This is what restarts
/// the quiet period of [`Machine::wait_for`]. A domU's lines do not: a
/// domU that prints heartbeats forever must not keep alive a wait for an
/// answer that never comes.
pub fn is_progress(line: &str) -> bool {
    ["(hv) ", "(d0) ", "(qemu) "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// The monitor's prompt.
const PROMPT: &str = "(qemu) ";

/// Reads from the monitor up to and including its next prompt; what came
/// before it.
fn read_to_prompt(socket: &mut UnixStream) -> std::io::Result<String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before its prompt, after {:?}",
                    String::from_utf8_lossy(&text)
                ),
            ));
        }
        text.extend_from_slice(&chunk[..n]);
        if let Some(at) = text
            .windows(PROMPT.len())
            .position(|w| w == PROMPT.as_bytes())
        {
            text.truncate(at);
            return Ok(String::from_utf8_lossy(&text).into_owned());
        }
    }
}

fn ending(status: ExitStatus) -> Ending {
    match status.code() {
        Some(code) => Outcome::from_qemu_status(code)
            .map_or(Ending::Infrastructure(Some(code)), Ending::Outcome),
        None => Ending::Infrastructure(None),
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.monitor_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine of 512 MiB with no real images, to look at its command.
    fn bare(name: &str, cmdline: &str) -> MachineConfig {
        MachineConfig {
            name: name.into(),
            images: Images {
                hv: "hv".into(),
                modules: Vec::new(),
            },
            mem_mib: 512,
            cmdline: cmdline.into(),
            extra: Vec::new(),
            hostlink: None,
            link: LinkDevice::Virtio,
            devices: true,
            watchdog: None,
        }
    }

    /// The QEMU arguments of a machine.
    fn args(config: &MachineConfig) -> Vec<String> {
        config
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ram_sizes_parse_to_mib() {
        assert_eq!(parse_ram("512M"), Ok(512));
        assert_eq!(parse_ram("64G"), Ok(65536));
        assert_eq!(parse_ram("4g"), Ok(4096));
        assert_eq!(parse_ram("1024"), Ok(1024));
        for bad in ["", "G", "12X", "-1G", "32M", "5000000G"] {
            assert!(parse_ram(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_watchdog_is_the_ib700_and_its_word_on_the_command_line() {
        let mut config = bare("t", "lu_region=64M");
        let without = args(&config);
        assert!(!without.iter().any(|a| a == "ib700"), "{without:?}");
        config.watchdog = Some(4);
        let with = args(&config);
        assert!(
            with.windows(2)
                .any(|w| w[0] == "-device" && w[1] == "ib700"),
            "{with:?}"
        );
        assert!(
            with.windows(2)
                .any(|w| w[0] == "-append" && w[1] == "lu_region=64M lu_watchdog=ib700:4"),
            "{with:?}"
        );
    }

    #[test]
    fn the_region_grows_with_the_ram() {
        assert_eq!(min_region_mib(128), 8);
        assert_eq!(min_region_mib(256), 10);
        assert_eq!(min_region_mib(512), 12);
        // 64 GiB end at 65 GiB: 17 Mi frames, 650 MiB, and the rest.
        assert_eq!(min_region_mib(65536), 658);
        let mut config = bare("t", "lu_region=64M autostart=domu");
        config.set_ram(4096);
        assert_eq!(config.cmdline, "lu_region=64M autostart=domu");
        config.set_ram(65536);
        assert_eq!(config.mem_mib, 65536);
        assert_eq!(config.cmdline, "lu_region=658M autostart=domu");
    }

    #[test]
    fn every_machine_has_its_monitor_on_a_socket_path_that_fits() {
        let mut config = bare("short", "");
        let path = config.monitor_path();
        assert_eq!(path, root().join("target/qemu/short.monitor"));
        let args = args(&config);
        let want = format!("unix:{},server=on,wait=off", path.display());
        assert!(
            args.windows(2).any(|w| w[0] == "-monitor" && w[1] == want),
            "{args:?}"
        );
        config.name = "x".repeat(SOCKET_PATH_MAX);
        let long = config.monitor_path();
        assert!(long.starts_with(std::env::temp_dir()), "{}", long.display());
        assert!(
            long.as_os_str().len() < SOCKET_PATH_MAX,
            "{}",
            long.display()
        );
        assert_eq!(option_value(Path::new("/a,b")), "/a,,b");
    }

    #[test]
    fn large_machines_do_not_reserve_their_ram() {
        let mut config = bare("t", "");
        assert!(args(&config)
            .windows(2)
            .any(|w| w == ["-machine", "microvm,auto-kernel-cmdline=off,pcie=on"]));
        config.mem_mib = 65536;
        let a = args(&config);
        assert!(a
            .iter()
            .any(|x| x == "memory-backend-ram,id=ram,size=65536M,reserve=off"));
        assert!(a.windows(2).any(|w| w
            == [
                "-machine",
                "microvm,auto-kernel-cmdline=off,pcie=on,memory-backend=ram"
            ]));
        assert!(a.windows(2).any(|w| w == ["-m", "65536M"]));
    }

    #[test]
    fn the_host_link_is_on_the_virtio_port_or_on_com2() {
        let mut config = bare("t", "");
        let has = |a: &[String], w: [&str; 2]| a.windows(2).any(|x| x == w);
        let socket = root().join("target/qemu/t,1.sock");
        let on_socket = |id: &str| {
            format!(
                "socket,id={id},path={},server=on,wait=off",
                option_value(&socket)
            )
        };
        // Every default machine has the virtio port, modern, on nothing
        // without a socket.
        let a = args(&config);
        assert!(
            has(&a, ["-global", "virtio-mmio.force-legacy=false"]),
            "{a:?}"
        );
        assert!(
            has(&a, ["-device", "virtio-serial-device,max_ports=2"]),
            "{a:?}"
        );
        assert!(has(&a, ["-chardev", "null,id=hostlink-virtio"]), "{a:?}");
        assert!(
            has(
                &a,
                [
                    "-device",
                    "virtserialport,chardev=hostlink-virtio,nr=1,name=org.hvlu.hostlink"
                ]
            ),
            "{a:?}"
        );
        assert!(!a.iter().any(|x| x.contains("isa-serial")), "{a:?}");
        config.hostlink = Some(socket.clone());
        let a = args(&config);
        assert!(
            has(&a, ["-chardev", &on_socket("hostlink-virtio")]),
            "{a:?}"
        );
        assert!(!a.iter().any(|x| x.contains("isa-serial")), "{a:?}");
        // COM2 alone: no virtio device.
        config.link = LinkDevice::Uart;
        let a = args(&config);
        assert!(
            !a.iter()
                .any(|x| x.starts_with("virt") || x.contains("id=hostlink-virtio")),
            "{a:?}"
        );
        assert!(
            has(
                &a,
                ["-device", "isa-serial,chardev=hostlink,iobase=0x2f8,irq=3"]
            ),
            "{a:?}"
        );
        assert!(has(&a, ["-chardev", &on_socket("hostlink")]), "{a:?}");
        // COM2 beside a virtio port on nothing.
        config.link = LinkDevice::UartBesideVirtio;
        let a = args(&config);
        assert!(has(&a, ["-chardev", "null,id=hostlink-virtio"]), "{a:?}");
        assert!(
            has(
                &a,
                ["-device", "isa-serial,chardev=hostlink,iobase=0x2f8,irq=3"]
            ),
            "{a:?}"
        );
        assert_eq!(link_by_default(None), Ok(LinkDevice::Virtio));
        assert_eq!(
            link_by_default(Some("virtio".as_ref())),
            Ok(LinkDevice::Virtio)
        );
        assert_eq!(link_by_default(Some("uart".as_ref())), Ok(LinkDevice::Uart));
        assert!(link_by_default(Some("com2".as_ref())).is_err());
    }

    #[test]
    fn the_environment_can_leave_the_device_out_of_every_new_machine() {
        assert!(devices_by_default(None));
        assert!(devices_by_default(Some("0".as_ref())));
        assert!(!devices_by_default(Some("1".as_ref())));
    }

    #[test]
    fn a_machine_has_the_device_behind_a_host_bridge_unless_told_otherwise() {
        let mut config = bare("t", "");
        let a = args(&config);
        assert!(a.windows(2).any(|w| w == ["-device", DEVICE]), "{a:?}");
        assert!(a.iter().any(|x| x.contains("pcie=on")), "{a:?}");
        config.devices = false;
        let a = args(&config);
        assert!(!a.iter().any(|x| x == DEVICE), "{a:?}");
        assert!(!a.iter().any(|x| x.contains("pcie")), "{a:?}");
        assert!(
            a.windows(2)
                .any(|w| w == ["-machine", "microvm,auto-kernel-cmdline=off"]),
            "{a:?}"
        );
    }
}
