//! dom0: the control domain, with a small toolstack on the console.
//!
//! Commands (one per line; `help` prints the same list):
//!
//! | command | what |
//! |---|---|
//! | `help` | this list |
//! | `list` | domains: id, name, frames, memory limit, state |
//! | `modules` | boot modules a domain can be created from |
//! | `create <module> [mem_kib] [hole=<size>] [args...]` | a new domU (default 4096 KiB), its PCI hole from `<size>` (default 3G); args become its command line |
//! | `destroy <id>` | end a domU and take back its frames |
//! | `pause <id>` | stop scheduling a domU |
//! | `unpause <id>` | schedule a paused domU again |
//! | `memmap <id>` | a domain's memory map: RAM, PCI hole, device memory |
//! | `machine-memmap` | the machine's memory map as the hypervisor read it |
//! | `peek <id> <gpfn> [offset]` | the 64-bit word at byte `offset` (default 0, a multiple of 8) of a domain's guest frame, or why the hypervisor refuses it |
//! | `free` | free frames, owned frames, domains, ticks |
//! | `sleep <ms>` | wait (scripts use it to let domUs run) |
//! | `poweroff` | end the system; the hypervisor prints every domain's report |
//! | `lu load <image> [force]` | validate a boot module as a hypervisor image and stage it (`force`: even the build whose update was rolled back) |
//! | `lu status` | running build; idle, or the staged build, its ABI range, sizes against capacity |
//! | `lu unload` | forget the staged image |
//! | `lu exec` | update to the staged image |
//! | `live-update <image> [force]` | `lu load <image> [force]`, then `lu exec` |
//! | `devices` | PCI functions, their BARs and which domains may map them |
//! | `edu` | map edu's BAR 0 uncacheable, check its id, liveness and a factorial |
//! | `edu watch <ms>` / `edu watch off` / `edu watch` | check edu every `<ms>` between commands / stop / say how it goes |
//! | `edu unmap` | stop the watch and take BAR 0 out of dom0's tables |
//! | `iomem permit\|revoke <id> <mfn> <count>` | grant or revoke a domU's permission to map device frames |
//! | `logdirty <id> on\|peek\|clean\|off` | log-dirty tracking of an HVM domU: start, report (count and first dirty gpfns), report and clean, stop |
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

mod devices;
mod hostlink;
mod hvm;
mod peek;
mod text;

use pvrt::hc;
use pvrt::hvlu_types::DomId;
use pvrt::println;
use pvrt::pv_abi::call::{create_size, hole_size, Domctl, DEFAULT_DOMU_KIB, MAX_MEMORY_MAP};
use pvrt::pv_abi::console_line::LineReader;
use pvrt::pv_abi::hypercall::{
    e820_name, DomainInfo, MapKind, MemoryMapEntry, DOMINFO_HVM, MAX_ERROR_MESSAGE,
};

pvrt::entry!(main);

/// What `help` prints: every command [`run`] accepts, one line each (the
/// table at the top of this file and `docs/operator-guide.md` say the same).
const HELP: &str = "commands:
  help                                 this list
  list                                 domains: id, name, frames, memory limit, state
  modules                              boot modules a domain can be created from
  create <module> [mem_kib] [hole=<size>] [args...]
                                       a new domU (default 4096 KiB), its PCI hole from <size>
                                       (e.g. 1G, 512M; default 3G); args become its command line
  destroy <id>                         end a domU and take back its frames
  pause <id>                           stop scheduling a domU
  unpause <id>                         schedule a paused domU again
  memmap <id>                          a domain's memory map: RAM, PCI hole, device memory
  machine-memmap                       the machine's memory map as the hypervisor read it
  peek <id> <gpfn> [offset]            the 64-bit word at byte offset (default 0, a multiple of 8)
                                       of a domain's guest frame (decimal, or hex with 0x)
  free                                 free frames, owned frames, domains, ticks
  map <mfn>                            try to map machine frame <mfn> read-only into dom0's window,
                                       then unmap it: refused unless dom0 owns it or may map it
  sleep <ms>                           wait (scripts use it to let domUs run)
  poweroff                             end the system; the hypervisor prints every domain's report
  lu load <image> [force]              validate a boot module as a hypervisor image and stage it
                                       (force: even the build whose update was rolled back)
  lu status                            running build; idle, or the staged build, its ABI range, sizes against capacity
  lu unload                            forget the staged image
  lu exec                              update to the staged image
  live-update <image> [force]          lu load <image> [force], then lu exec
  devices                              PCI functions, their BARs and which domains may map them
  edu                                  map edu's BAR 0 uncacheable, check its id, liveness and a factorial
  edu watch <ms> | off                 check edu every <ms> between commands | stop (alone: how it goes)
  edu unmap                            stop the watch and take BAR 0 out of dom0's tables
  iomem permit|revoke <id> <mfn> <n>   grant or revoke a domU's permission to map n device frames
  logdirty <id> on|peek|clean|off      log-dirty tracking of an HVM domU (peek/clean: count, first gpfns)
images sent from the host (cargo xtask live-update --image PATH) need no command: \
they arrive on the host link and are staged and executed";

fn main() -> ! {
    println!("dom0 toolstack ready (type `help`)");
    let autostart = pvrt::cmdline()
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("autostart="));
    let mut edu = devices::Edu::default();
    for module in autostart.unwrap_or("").split(',').filter(|m| !m.is_empty()) {
        run(&["create", module], &mut edu);
    }
    let mut reader = LineReader::new();
    let mut link = hostlink::Link::new();
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
                    run(words.as_slice(), &mut edu);
                }
                Err(why) => println!("refused: {why}; nothing was run"),
            }
            println!("dom0>");
        }
        // While bytes arrive on the host link, keep polling instead of
        // yielding: its device holds little (16 bytes on a UART, 32 KiB on
        // the virtio port), and a yield hands the CPU to a busy domU for a
        // whole time slice. Back to the console after 64 KiB or 50 ms, so
        // that neither a flood nor a trickle from the host shuts it out.
        let mut received = link.poll();
        if received > 0 || link.busy() {
            let deadline = hostlink::ticks(50).map(|(now, wait)| now + wait);
            let mut polls = 0u32;
            let mut idle_polls = 0;
            while idle_polls < 20_000 && received < 64 * 1024 {
                let n = link.poll();
                received += n;
                idle_polls = if n == 0 { idle_polls + 1 } else { 0 };
                polls += 1;
                if polls.is_multiple_of(256)
                    && deadline.is_some_and(|d| hostlink::ticks(0).is_some_and(|(now, _)| now >= d))
                {
                    break;
                }
            }
        }
        edu.poll();
        if typed == 0 && received == 0 {
            hc::yield_now();
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

/// A memory-map entry's bytes, `first-last` in hex (inclusive, as E820
/// listings print them).
struct Span<'a>(&'a MemoryMapEntry);

impl core::fmt::Display for Span<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:#x}-{:#x}",
            self.0.base,
            self.0.end().saturating_sub(1)
        )
    }
}

/// A domain id: a number up to `u16::MAX`.
fn parse_id(arg: &str) -> Option<DomId> {
    arg.parse().ok().map(DomId)
}

fn run(words: &[&str], edu: &mut devices::Edu) {
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
            // A first argument of digits is the size; one that looks like a
            // size but is not one (`-4096`, `4k`, `0x1000`) is refused, not
            // taken for a command-line word (`pv_abi::call::create_size`).
            let (kib, args) = match rest.first().map(|w| create_size(w)) {
                Some(Ok(Some(kib))) => (kib, &rest[1..]),
                Some(Err(e)) => {
                    println!("create {module}: error: {e}; nothing was created");
                    return;
                }
                Some(Ok(None)) | None => (DEFAULT_DOMU_KIB, rest),
            };
            // `hole=<size>`, anywhere among the arguments, is the
            // toolstack's: never passed on. 0 asks for the default.
            let mut hole = 0;
            for w in args.iter().filter_map(|w| w.strip_prefix("hole=")) {
                if hole != 0 {
                    println!("create {module}: error: `hole=` is given twice; nothing was created");
                    return;
                }
                match hole_size(w) {
                    Ok(bytes) => hole = bytes,
                    Err(e) => {
                        println!("create {module}: error: {e}; nothing was created");
                        return;
                    }
                }
            }
            // A line is at most 256 bytes: its words always fit.
            let mut cmdline = [0u8; 256];
            let mut n = 0;
            for (i, a) in args.iter().filter(|a| !a.starts_with("hole=")).enumerate() {
                if i > 0 {
                    cmdline[n] = b' ';
                    n += 1;
                }
                cmdline[n..n + a.len()].copy_from_slice(a.as_bytes());
                n += a.len();
            }
            let cmdline = core::str::from_utf8(&cmdline[..n]).unwrap_or("");
            match hc::domctl_create(module, kib, cmdline, hole) {
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
        ["memmap", id] => {
            let Some(id) = parse_id(id) else {
                println!(
                    "memmap: `{id}` is not a domain id (they go up to {})",
                    u16::MAX
                );
                return;
            };
            let mut map = [MemoryMapEntry::default(); MAX_MEMORY_MAP as usize];
            match hc::memory_map(id, &mut map) {
                Ok(n) => {
                    for e in &map[..n as usize] {
                        let kind = MapKind::from_repr(e.kind).map_or("?", MapKind::name);
                        println!("d{id} memmap {} {kind}", Span(e));
                    }
                }
                Err(e) => println!("memmap d{id}: error: {}", e.name()),
            }
        }
        ["machine-memmap"] => {
            let mut map = [MemoryMapEntry::default(); MAX_MEMORY_MAP as usize];
            match hc::machine_memory_map(&mut map) {
                Ok(n) => {
                    for e in &map[..n as usize] {
                        match e820_name(e.kind) {
                            Some(kind) => println!("machine memmap {} {kind}", Span(e)),
                            None => println!("machine memmap {} type {}", Span(e), e.kind),
                        }
                    }
                }
                Err(e) => println!("machine-memmap: error: {}", e.name()),
            }
        }
        ["peek", id, gpfn] => peek::peek(id, gpfn, None),
        ["peek", id, gpfn, offset] => peek::peek(id, gpfn, Some(offset)),
        ["map", mfn] => devices::try_map(mfn),
        ["free"] => match hc::sysinfo() {
            Ok(info) => println!(
                "free_frames={} owned_frames={} domains={} ticks={}",
                info.free_frames, info.owned_frames, info.domains, info.ticks
            ),
            Err(e) => println!("free: error: {}", e.name()),
        },
        ["sleep", ms] => match ms.parse::<u64>() {
            Ok(ms) => sleep_ms(ms, edu),
            Err(_) => println!("sleep: `{ms}` is not a number of milliseconds"),
        },
        ["poweroff"] => {
            println!("powering off");
            if let Err(e) = hc::poweroff() {
                println!("poweroff: error: {}", e.name());
            }
        }
        ["lu", "load", image] => {
            lu_load(image, false);
        }
        ["lu", "load", image, "force"] => {
            lu_load(image, true);
        }
        ["lu", "status"] => lu_status(),
        ["lu", "unload"] => match hc::lu_unload() {
            Ok(_) => println!("lu unload: done"),
            Err(e) => println!("lu unload: error: {}: {}", e.name(), reason()),
        },
        ["lu", "exec"] => lu_exec(),
        ["live-update", image] => {
            if lu_load(image, false) {
                lu_exec();
            }
        }
        ["live-update", image, "force"] => {
            if lu_load(image, true) {
                lu_exec();
            }
        }
        ["devices"] => devices::list(),
        ["edu"] => edu.once(),
        ["edu", "watch"] => edu.status(),
        ["edu", "watch", "off"] => edu.unwatch(),
        ["edu", "unmap"] => edu.unmap(),
        ["edu", "watch", ms] => match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => edu.watch(ms),
            _ => println!("edu watch: `{ms}` is not a number of milliseconds (above 0) or `off`"),
        },
        ["iomem", op @ ("permit" | "revoke"), id, first, count] => {
            devices::iomem(op, id, first, count)
        }
        ["logdirty", id, op] => hvm::logdirty(id, op),
        [cmd, ..] => println!("unknown command `{cmd}` or wrong arguments; {HELP}"),
        [] => {}
    }
}

/// Waits `ms`, the edu watch going on meanwhile.
fn sleep_ms(ms: u64, edu: &mut devices::Edu) {
    let Ok(start) = hc::sysinfo() else { return };
    let ticks = ms * start.tick_hz.max(1) / 1000;
    loop {
        match hc::sysinfo() {
            Ok(now) if now.ticks.wrapping_sub(start.ticks) >= ticks => return,
            Ok(_) => {
                edu.poll();
                hc::yield_now()
            }
            Err(_) => return,
        }
    }
}

fn list() {
    let mut infos = [DomainInfo::default(); 32];
    match hc::domctl_list(&mut infos) {
        Ok(total) => {
            println!("id  name             frames    max       kind  state");
            for info in infos.iter().take(total.min(32) as usize) {
                let len = info.name.iter().position(|&b| b == 0).unwrap_or(32);
                let name = core::str::from_utf8(&info.name[..len]).unwrap_or("?");
                let state = if info.paused != 0 {
                    "paused"
                } else {
                    "running"
                };
                let kind = if info.flags & DOMINFO_HVM != 0 {
                    "hvm"
                } else {
                    "pv"
                };
                println!(
                    "{:<3} {:<16} {:<9} {:<9} {:<5} {}",
                    info.id, name, info.frames, info.max_frames, kind, state
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

fn lu_load(image: &str, force: bool) -> bool {
    match hc::lu_load(image, force) {
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
            "lu status: loaded build {} reading ABI {}.{}..={}.{}, will write {}.{}; image {} KiB + handover area {} KiB of capacity {} KiB; state needs {} bytes",
            hex(&st.staged_build_id[..8]),
            r[0],
            r[1],
            r[2],
            r[3],
            st.version[0],
            st.version[1],
            st.image_bytes.div_ceil(1024),
            st.handover_bytes.div_ceil(1024),
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
pub(crate) fn reason() -> Reason {
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
pub(crate) struct Reason {
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
