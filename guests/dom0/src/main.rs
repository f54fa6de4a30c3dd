//! dom0: the control domain, with a small toolstack on the console.
//!
//! Commands (one per line; `help` prints the same list):
//!
//! | command | what |
//! |---|---|
//! | `help` | this list |
//! | `list` | domains: id, name, frames, memory limit, state |
//! | `modules` | boot modules a domain can be created from |
//! | `create <module> [mem_kib] [args...]` | a new domU (default 4096 KiB); args become its command line |
//! | `destroy <id>` | end a domU and take back its frames |
//! | `pause <id>` | stop scheduling a domU |
//! | `unpause <id>` | schedule a paused domU again |
//! | `free` | free frames, owned frames, domains, ticks |
//! | `sleep <ms>` | wait (scripts use it to let domUs run) |
//! | `poweroff` | end the system; the hypervisor prints every domain's report |
//! | `lu load <image>` | validate a boot module as a hypervisor image and stage it |
//! | `lu status` | running build; idle, or the staged build, its ABI range, sizes against capacity |
//! | `lu unload` | forget the staged image |
//! | `lu exec` | update to the staged image |
//! | `live-update <image>` | `lu load <image>`, then `lu exec` |
//!
//! Images sent from the host (`cargo xtask live-update --image PATH`) need no
//! command: they arrive on the host link (module `hostlink`) and are staged and
//! executed as they come.
//!
//! At boot it creates a domU from each module named in its command line's
//! `autostart=` list.
//!
//! A typed line runs only if it can run whole (`pv_abi::console_line`):
//! one with a byte other than printable ASCII or a tab, more than 256 bytes
//! or more than 16 words is refused with the reason, and nothing of it
//! runs. A refused hypercall is printed with the hypervisor's reason
//! (`last_error`), in full.

#![no_std]
#![no_main]
// Every `unsafe` block of the guest lives in `pvrt`, behind safe functions.
#![deny(unsafe_code)]

use pvrt::hc;
use pvrt::hvlu_types::DomId;
use pvrt::println;
use pvrt::pv_abi::call::{Domctl, DEFAULT_DOMU_KIB};
use pvrt::pv_abi::console_line::LineReader;
use pvrt::pv_abi::hypercall::{DomainInfo, MAX_ERROR_MESSAGE};

pvrt::entry!(main);

/// What `help` prints: every command [`run`] accepts, one line each (the
/// table at the top of this file and `docs/operator-guide.md` say the same).
const HELP: &str = "commands:
  help                                 this list
  list                                 domains: id, name, frames, memory limit, state
  modules                              boot modules a domain can be created from
  create <module> [mem_kib] [args...]  a new domU (default 4096 KiB); args become its command line
  destroy <id>                         end a domU and take back its frames
  pause <id>                           stop scheduling a domU
  unpause <id>                         schedule a paused domU again
  free                                 free frames, owned frames, domains, ticks
  sleep <ms>                           wait (scripts use it to let domUs run)
  poweroff                             end the system; the hypervisor prints every domain's report
  lu load <image>                      validate a boot module as a hypervisor image and stage it
  lu status                            running build; idle, or the staged build, its ABI range, sizes against capacity
  lu unload                            forget the staged image
  lu exec                              update to the staged image
  live-update <image>                  lu load <image>, then lu exec
images sent from the host (cargo xtask live-update --image PATH) need no command: \
they arrive on the host link and are staged and executed";

fn main() -> ! {
    println!("dom0 toolstack ready (type `help`)");
    let autostart = pvrt::cmdline()
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("autostart="));
    for module in autostart.unwrap_or("").split(',').filter(|m| !m.is_empty()) {
        run(&["create", module]);
    }
    let mut reader = LineReader::new();
    let mut link = hostlink::Receiver::new();
    println!("dom0>");
    loop {
        let mut buf = [0u8; 64];
        let typed = match hc::console_read(&mut buf) {
            Ok(n) => n as usize,
            Err(_) => 0,
        };
        for &b in &buf[..typed] {
            if !reader.push(b) {
                continue;
            }
            match reader.finish() {
                Ok(words) if words.is_empty() => {}
                Ok(words) => {
                    println!("> {}", Joined(words.as_slice()));
                    run(words.as_slice());
                }
                Err(why) => println!("refused: {why}; nothing was run"),
            }
            println!("dom0>");
        }
        let mut received = link.poll();
        // While a frame is arriving, keep polling instead of yielding: the
        // UART holds 16 bytes, and a yield hands the CPU to a busy domU for
        // a whole time slice.
        let mut idle_polls = 0;
        while link.busy() && idle_polls < 20_000 {
            let n = link.poll();
            received += n;
            idle_polls = if n == 0 { idle_polls + 1 } else { 0 };
        }
        if typed == 0 && received == 0 {
            hc::yield_now();
        }
    }
}

/// The host link: hypervisor images sent from the host (`cargo xtask
/// live-update --image PATH`) over the second serial port.
///
/// A frame is `"HVLUIMG1"`, the image length (u64 LE), its CRC32C (u32 LE),
/// then the image. dom0 collects it in its free pages, checks the CRC, stages
/// it with `lu_load_buffer` and updates to it, answering the host with one
/// line per step: `staged`, `done <build> <update>` or `error <why>`.
mod hostlink {
    use pvrt::{hc, mem, println};

    const MAGIC: &[u8; 8] = b"HVLUIMG1";
    const HEADER: usize = 20;
    static CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

    /// Where a frame stands.
    pub struct Receiver {
        header: [u8; HEADER],
        have: usize,
        len: u64,
        crc: u32,
        received: u64,
        digest: crc::Digest<'static, u32>,
    }

    /// Writes straight to the host link, however long the text.
    struct ToHost;

    impl core::fmt::Write for ToHost {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            hc::hostlink_write(s.as_bytes())
                .map(|_| ())
                .map_err(|_| core::fmt::Error)
        }
    }

    fn reply(args: core::fmt::Arguments<'_>) {
        let _ = core::fmt::Write::write_fmt(&mut ToHost, args);
        let _ = hc::hostlink_write(b"\n");
    }

    impl Receiver {
        /// An idle receiver.
        pub fn new() -> Self {
            Receiver {
                header: [0; HEADER],
                have: 0,
                len: 0,
                crc: 0,
                received: 0,
                digest: CASTAGNOLI.digest(),
            }
        }

        /// Whether a frame has begun and not ended.
        pub fn busy(&self) -> bool {
            self.have > 0
        }

        /// Takes what the host sent; returns how many bytes arrived.
        pub fn poll(&mut self) -> usize {
            let mut buf = [0u8; 4096];
            let n = match hc::hostlink_read(&mut buf) {
                Ok(n) => n as usize,
                Err(_) => return 0,
            };
            let mut bytes = &buf[..n];
            while !bytes.is_empty() {
                if self.have < HEADER {
                    let take = (HEADER - self.have).min(bytes.len());
                    self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    bytes = &bytes[take..];
                    if self.have == HEADER && !self.start() {
                        *self = Receiver::new();
                    }
                    continue;
                }
                let take = ((self.len - self.received) as usize).min(bytes.len());
                mem::free_area_write(self.received, &bytes[..take]);
                self.digest.update(&bytes[..take]);
                self.received += take as u64;
                bytes = &bytes[take..];
                if self.received == self.len {
                    self.finish();
                    *self = Receiver::new();
                }
            }
            n
        }

        fn start(&mut self) -> bool {
            if &self.header[..8] != MAGIC {
                reply(format_args!("error: bad frame magic"));
                return false;
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&self.header[8..16]);
            self.len = u64::from_le_bytes(len);
            self.crc = u32::from_le_bytes([
                self.header[16],
                self.header[17],
                self.header[18],
                self.header[19],
            ]);
            let (_, room) = mem::free_area();
            if self.len == 0 || self.len > room {
                reply(format_args!(
                    "error: an image of {} bytes does not fit dom0's {} free bytes",
                    self.len, room
                ));
                return false;
            }
            println!(
                "hostlink: receiving an image of {} bytes from the host",
                self.len
            );
            true
        }

        fn finish(&mut self) {
            let digest = core::mem::replace(&mut self.digest, CASTAGNOLI.digest());
            let crc = digest.finalize();
            if crc != self.crc {
                println!(
                    "hostlink: image CRC32C {crc:#010x} does not match {:#010x}",
                    self.crc
                );
                reply(format_args!(
                    "error: CRC32C mismatch: received {crc:#010x}, sent {:#010x}",
                    self.crc
                ));
                return;
            }
            println!("hostlink: received {} bytes, CRC32C ok", self.len);
            match hc::lu_load_free_area(self.len) {
                Ok(_) => {
                    println!("lu load (from host): staged");
                    reply(format_args!("staged"));
                }
                Err(e) => {
                    let msg = super::reason();
                    println!("lu load (from host): error: {}: {msg}", e.name());
                    reply(format_args!("error: {}: {msg}", e.name()));
                    return;
                }
            }
            match hc::lu_exec() {
                Ok(_) => {
                    let st = hc::lu_status().unwrap_or_default();
                    println!(
                        "lu exec: done, now running build {} (update {})",
                        super::hex(&st.running_build_id[..8]),
                        st.sequence
                    );
                    reply(format_args!(
                        "done {} {}",
                        super::hex(&st.running_build_id[..8]),
                        st.sequence
                    ));
                }
                Err(e) => {
                    let msg = super::reason();
                    println!("lu exec: error: {}: {msg}", e.name());
                    reply(format_args!("error: {}: {msg}", e.name()));
                }
            }
        }
    }
}

/// A line's words, joined by single spaces (what dom0 echoes and runs).
struct Joined<'a>(&'a [&'a str]);

impl core::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}

/// A domain id: a number up to `u16::MAX`.
fn parse_id(arg: &str) -> Option<DomId> {
    arg.parse().ok().map(DomId)
}

fn run(words: &[&str]) {
    match words {
        ["help"] => println!("{HELP}"),
        ["list"] => list(),
        ["modules"] => {
            let mut buf = [0u8; 512];
            match hc::domctl_modules(&mut buf) {
                Ok(n) => {
                    let text = core::str::from_utf8(&buf[..n as usize]).unwrap_or("?");
                    for name in text.lines() {
                        println!("module {name}");
                    }
                }
                Err(e) => println!("modules: error: {}: {}", e.name(), reason()),
            }
        }
        ["create", module, rest @ ..] => {
            // A first argument of digits is the size; one too large for a
            // number is refused, not taken for a command-line word.
            let (kib, args) = match rest.first() {
                Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<u64>() {
                    Ok(kib) => (kib, &rest[1..]),
                    Err(_) => {
                        println!("create {module}: `{s}` KiB is not a size dom0 can hold");
                        return;
                    }
                },
                _ => (DEFAULT_DOMU_KIB, rest),
            };
            // A line is at most 256 bytes: its words always fit.
            let mut cmdline = [0u8; 256];
            let mut n = 0;
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    cmdline[n] = b' ';
                    n += 1;
                }
                cmdline[n..n + a.len()].copy_from_slice(a.as_bytes());
                n += a.len();
            }
            let cmdline = core::str::from_utf8(&cmdline[..n]).unwrap_or("");
            match hc::domctl_create(module, kib, cmdline) {
                Ok(id) => println!("created d{id} from {module}"),
                Err(e) => println!("create {module}: error: {}: {}", e.name(), reason()),
            }
        }
        [op @ ("destroy" | "pause" | "unpause"), id] => {
            let Some(id) = parse_id(id) else {
                println!(
                    "{op}: `{id}` is not a domain id (they go up to {})",
                    u16::MAX
                );
                return;
            };
            let call = match *op {
                "destroy" => Domctl::Destroy { id },
                "pause" => Domctl::Pause { id },
                _ => Domctl::Unpause { id },
            };
            match hc::domctl(call) {
                Ok(_) => println!("{op} d{id}: done"),
                Err(e) => println!("{op} d{id}: error: {}: {}", e.name(), reason()),
            }
        }
        ["free"] => match hc::sysinfo() {
            Ok(info) => println!(
                "free_frames={} owned_frames={} domains={} ticks={}",
                info.free_frames, info.owned_frames, info.domains, info.ticks
            ),
            Err(e) => println!("free: error: {}", e.name()),
        },
        ["sleep", ms] => match ms.parse::<u64>() {
            Ok(ms) => sleep_ms(ms),
            Err(_) => println!("sleep: `{ms}` is not a number of milliseconds"),
        },
        ["poweroff"] => {
            println!("powering off");
            if let Err(e) = hc::poweroff() {
                println!("poweroff: error: {}", e.name());
            }
        }
        ["lu", "load", image] => {
            lu_load(image);
        }
        ["lu", "status"] => lu_status(),
        ["lu", "unload"] => match hc::lu_unload() {
            Ok(_) => println!("lu unload: done"),
            Err(e) => println!("lu unload: error: {}: {}", e.name(), reason()),
        },
        ["lu", "exec"] => lu_exec(),
        ["live-update", image] => {
            if lu_load(image) {
                lu_exec();
            }
        }
        [cmd, ..] => println!("unknown command `{cmd}` or wrong arguments; {HELP}"),
        [] => {}
    }
}

fn sleep_ms(ms: u64) {
    let Ok(start) = hc::sysinfo() else { return };
    let ticks = ms * start.tick_hz.max(1) / 1000;
    loop {
        match hc::sysinfo() {
            Ok(now) if now.ticks.wrapping_sub(start.ticks) >= ticks => return,
            Ok(_) => hc::yield_now(),
            Err(_) => return,
        }
    }
}

fn list() {
    let mut infos = [DomainInfo::default(); 32];
    match hc::domctl_list(&mut infos) {
        Ok(total) => {
            println!("id  name             frames    max       state");
            for info in infos.iter().take(total.min(32) as usize) {
                let len = info.name.iter().position(|&b| b == 0).unwrap_or(32);
                let name = core::str::from_utf8(&info.name[..len]).unwrap_or("?");
                let state = if info.paused != 0 {
                    "paused"
                } else {
                    "running"
                };
                println!(
                    "{:<3} {:<16} {:<9} {:<9} {}",
                    info.id, name, info.frames, info.max_frames, state
                );
            }
        }
        Err(e) => println!("list: error: {}: {}", e.name(), reason()),
    }
}

fn hex(bytes: &[u8]) -> HexBytes<'_> {
    HexBytes(bytes)
}

/// Bytes printed as lower-case hex.
struct HexBytes<'a>(&'a [u8]);

impl core::fmt::Display for HexBytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The hypervisor's last live-update message.
fn lu_message() -> LuMessage {
    let mut m = LuMessage {
        bytes: [0; 128],
        len: 0,
    };
    if let Ok(st) = hc::lu_status() {
        m.len = st
            .message
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(st.message.len());
        m.bytes = st.message;
    }
    m
}

/// A message copied out of the status.
struct LuMessage {
    bytes: [u8; 128],
    len: usize,
}

impl core::fmt::Display for LuMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?"))
    }
}

fn lu_load(image: &str) -> bool {
    match hc::lu_load(image) {
        Ok(_) => {
            println!("lu load {image}: staged");
            true
        }
        Err(e) => {
            println!("lu load {image}: error: {}: {}", e.name(), reason());
            false
        }
    }
}

fn lu_status() {
    let st = match hc::lu_status() {
        Ok(st) => st,
        Err(e) => {
            println!("lu status: error: {}", e.name());
            return;
        }
    };
    println!(
        "lu status: running build {} after {} updates",
        hex(&st.running_build_id[..8]),
        st.sequence
    );
    if st.loaded == 0 {
        println!(
            "lu status: idle; capacity {} KiB, a state now needs {} bytes",
            st.capacity >> 10,
            st.state_needed
        );
    } else {
        let r = st.staged_reads;
        println!(
            "lu status: loaded build {} reading ABI {}.{}..={}.{}, will write {}.{}; image {} KiB + state area {} KiB of capacity {} KiB; state needs {} bytes",
            hex(&st.staged_build_id[..8]),
            r[0],
            r[1],
            r[2],
            r[3],
            st.version[0],
            st.version[1],
            st.image_bytes >> 10,
            st.state_bytes >> 10,
            st.capacity >> 10,
            st.state_needed
        );
    }
    let msg = lu_message();
    if msg.len == msg.bytes.len() - 1 {
        println!(
            "lu status: last message (its first {} bytes; the refusal itself printed it whole): {msg}",
            msg.len
        );
    } else if msg.len > 0 {
        println!("lu status: last message: {msg}");
    }
}

/// `lu exec`: prints nothing until the hypervisor answers — `done` from
/// the new hypervisor, or the reason it refused.
fn lu_exec() {
    match hc::lu_exec() {
        Ok(_) => match hc::lu_status() {
            Ok(st) => println!(
                "lu exec: done, now running build {} (update {})",
                hex(&st.running_build_id[..8]),
                st.sequence
            ),
            Err(_) => println!("lu exec: done"),
        },
        Err(e) => println!("lu exec: error: {}: {}", e.name(), reason()),
    }
}

/// The hypervisor's reason for the last refused domctl or live-update call,
/// in full (`last_error`), or marked where it had to be cut.
fn reason() -> Reason {
    let mut r = Reason {
        bytes: [0; MAX_ERROR_MESSAGE],
        len: 0,
        total: 0,
    };
    match hc::last_error(&mut r.bytes) {
        Ok(total) => {
            r.total = total as usize;
            r.len = r.total.min(r.bytes.len());
        }
        // A hypervisor without `last_error`: the live-update message.
        Err(_) => {
            let m = lu_message();
            r.bytes[..m.len].copy_from_slice(&m.bytes[..m.len]);
            r.len = m.len;
            r.total = m.len;
        }
    }
    r
}

/// A reason copied from the hypervisor.
struct Reason {
    bytes: [u8; MAX_ERROR_MESSAGE],
    len: usize,
    /// Its whole length, more than `len` if the copy was cut.
    total: usize,
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.len == 0 {
            return f.write_str("(the hypervisor gave no reason)");
        }
        f.write_str(core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?"))?;
        if self.total > self.len {
            write!(f, " [cut: {} of {} bytes shown]", self.len, self.total)?;
        }
        Ok(())
    }
}
