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
use pvrt::pv_abi::call::{create_size, Domctl, DEFAULT_DOMU_KIB};
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
                    run(words.as_slice());
                }
                Err(why) => println!("refused: {why}; nothing was run"),
            }
            println!("dom0>");
        }
        // While bytes arrive on the host link, keep polling instead of
        // yielding: the UART holds 16 bytes, and a yield hands the CPU to a
        // busy domU for a whole time slice. Back to the console after
        // 64 KiB or 50 ms, so that neither a flood nor a trickle from the
        // host shuts it out.
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
        if typed == 0 && received == 0 {
            hc::yield_now();
        }
    }
}

/// The host link: hypervisor images sent from the host (`cargo xtask
/// live-update --image PATH`) over the second serial port, framed as
/// `pv_abi::hostlink` says: a header dom0 answers (`ready`, or `error` and
/// the sender stops), then the image, collected in dom0's free pages,
/// checked against its CRC32C, staged with `lu_load_buffer` and updated
/// to, with one answer per step: `staged`, `done <build> <update>` or
/// `error: <why>`, each prefixed with the transfer's id.
///
/// Nothing here can wedge: a body that stops arriving is abandoned after
/// [`IDLE_MS`] and the link hunts for the next header; an answer the host
/// does not read within [`ANSWER_MS`] is dropped (the hypervisor never
/// waits on the link, `hostlink_write` takes what the UART can hold).
mod hostlink {
    use pvrt::pv_abi::hostlink::{AnswerPrefix, Header, Receiver, Sink};
    use pvrt::{hc, mem, println};

    /// A body that stops arriving for this long is abandoned.
    pub const IDLE_MS: u64 = 2000;
    /// How long an answer waits for the host to read.
    pub const ANSWER_MS: u64 = 2000;

    /// The system tick count and the ticks in `ms` milliseconds; `None`
    /// if the hypervisor does not say (then nothing times out).
    pub fn ticks(ms: u64) -> Option<(u64, u64)> {
        hc::sysinfo()
            .ok()
            .map(|si| (si.ticks, ms * si.tick_hz.max(1) / 1000))
    }

    /// Writes to the host until `deadline` (ticks), yielding while the
    /// host does not read; `dropped` once it gave up.
    struct ToHost {
        deadline: u64,
        dropped: bool,
    }

    impl core::fmt::Write for ToHost {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let mut bytes = s.as_bytes();
            while !bytes.is_empty() && !self.dropped {
                match hc::hostlink_write(bytes) {
                    Ok(0) => {
                        if ticks(0).is_none_or(|(now, _)| now >= self.deadline) {
                            self.dropped = true;
                        } else {
                            hc::yield_now();
                        }
                    }
                    Ok(n) => bytes = &bytes[(n as usize).min(bytes.len())..],
                    Err(_) => self.dropped = true,
                }
            }
            if self.dropped {
                Err(core::fmt::Error)
            } else {
                Ok(())
            }
        }
    }

    /// Set once an answer was dropped, until the host takes bytes again:
    /// while it is, answers do not wait (a host that stopped reading costs
    /// one [`ANSWER_MS`] wait, not one per answer).
    static HOST_DEAF: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

    /// Set when an answer was dropped part way: the next one starts with a
    /// newline, so that it is a line of its own for the host.
    static CUT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

    /// Answers transfer `id` with one line.
    fn answer(id: u32, args: core::fmt::Arguments<'_>) {
        use core::sync::atomic::Ordering::Relaxed;
        let Some((now, wait)) = ticks(ANSWER_MS) else {
            return;
        };
        let mut out = ToHost {
            deadline: if HOST_DEAF.load(Relaxed) {
                now
            } else {
                now + wait
            },
            dropped: false,
        };
        let newline = if CUT.load(Relaxed) { "\n" } else { "" };
        let _ = core::fmt::Write::write_fmt(
            &mut out,
            format_args!("{newline}{} {args}\n", AnswerPrefix(id)),
        );
        CUT.store(out.dropped, Relaxed);
        if out.dropped && !HOST_DEAF.swap(true, Relaxed) {
            println!(
                "hostlink: the host did not read for {ANSWER_MS} ms: answers are dropped until it does"
            );
        } else if !out.dropped && HOST_DEAF.swap(false, Relaxed) {
            println!("hostlink: the host reads again");
        }
    }

    /// A short text built without a heap: the name dom0 gives an image
    /// from the host link. What does not fit is dropped.
    struct Name {
        bytes: [u8; 96],
        len: usize,
    }

    impl Name {
        fn new() -> Self {
            Name {
                bytes: [0; 96],
                len: 0,
            }
        }

        fn as_str(&self) -> &str {
            core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
        }
    }

    impl core::fmt::Write for Name {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.bytes.len() - self.len);
            // Whole characters only: the text is ASCII.
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }

    /// dom0's end of a transfer: its free pages and its answers.
    struct Dom0;

    impl Sink for Dom0 {
        fn header(&mut self, h: &Header) -> bool {
            let (_, room) = mem::free_area();
            if h.len == 0 {
                answer(h.id, format_args!("error: the image is empty (0 bytes)"));
                return false;
            }
            if h.len > room {
                println!(
                    "hostlink: transfer {} refused: an image of {} bytes does not fit dom0's {} free bytes",
                    AnswerPrefix(h.id),
                    h.len,
                    room
                );
                answer(
                    h.id,
                    format_args!(
                        "error: an image of {} bytes does not fit dom0's {} free bytes",
                        h.len, room
                    ),
                );
                return false;
            }
            println!(
                "hostlink: receiving transfer {}: an image of {} bytes from the host",
                AnswerPrefix(h.id),
                h.len
            );
            answer(h.id, format_args!("ready"));
            true
        }

        fn body(&mut self, _: &Header, offset: u64, bytes: &[u8]) {
            mem::free_area_write(offset, bytes);
        }

        fn abandoned(&mut self, h: &Header) {
            println!(
                "hostlink: transfer {} abandoned before its body: a new transfer began",
                AnswerPrefix(h.id)
            );
            answer(
                h.id,
                format_args!("error: transfer abandoned before its body: a new transfer began"),
            );
        }

        fn complete(&mut self, h: &Header, crc: u32) {
            if crc != h.crc {
                println!(
                    "hostlink: image CRC32C {crc:#010x} does not match {:#010x}",
                    h.crc
                );
                answer(
                    h.id,
                    format_args!(
                        "error: CRC32C mismatch: received {crc:#010x}, sent {:#010x}",
                        h.crc
                    ),
                );
                return;
            }
            println!("hostlink: received {} bytes, CRC32C ok", h.len);
            // What the hypervisor's log and refusals call the image.
            let mut name = Name::new();
            let _ = core::fmt::Write::write_fmt(
                &mut name,
                format_args!(
                    "host link transfer {} ({} bytes, CRC32C {:#010x})",
                    AnswerPrefix(h.id),
                    h.len,
                    h.crc
                ),
            );
            match hc::lu_load_free_area(h.len, name.as_str()) {
                Ok(_) => {
                    println!("lu load (from host): staged");
                    answer(h.id, format_args!("staged"));
                }
                Err(e) => {
                    let msg = super::reason();
                    println!("lu load (from host): error: {}: {msg}", e.name());
                    answer(h.id, format_args!("error: {}: {msg}", e.name()));
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
                    answer(
                        h.id,
                        format_args!(
                            "done {} {}",
                            super::hex(&st.running_build_id[..8]),
                            st.sequence
                        ),
                    );
                }
                Err(e) => {
                    let msg = super::reason();
                    println!("lu exec: error: {}: {msg}", e.name());
                    answer(h.id, format_args!("error: {}: {msg}", e.name()));
                }
            }
        }
    }

    /// The link: a receiver and when it last got a byte.
    pub struct Link {
        receiver: Receiver,
        quiet_since: Option<u64>,
    }

    impl Link {
        /// A link hunting for a header.
        pub fn new() -> Self {
            Link {
                receiver: Receiver::new(),
                quiet_since: None,
            }
        }

        /// Whether a transfer's body is arriving.
        pub fn busy(&self) -> bool {
            self.receiver.in_body()
        }

        /// Takes what the host sent; returns how many bytes arrived. Once
        /// the link has been quiet for [`IDLE_MS`], a body that stopped is
        /// abandoned and the bytes skipped since the last time are logged.
        pub fn poll(&mut self) -> usize {
            let mut buf = [0u8; 4096];
            let n = match hc::hostlink_read(&mut buf) {
                Ok(n) => (n as usize).min(buf.len()),
                Err(_) => 0,
            };
            if n > 0 {
                self.quiet_since = None;
                self.receiver.feed(&buf[..n], &mut Dom0);
                return n;
            }
            let Some((now, idle)) = ticks(IDLE_MS) else {
                return 0;
            };
            let since = *self.quiet_since.get_or_insert(now);
            if now.wrapping_sub(since) >= idle {
                let skipped = self.receiver.take_skipped();
                if skipped > 0 {
                    println!("hostlink: skipped {skipped} bytes that were not part of a transfer");
                }
                if let Some((h, got)) = self.receiver.abort() {
                    println!(
                        "hostlink: transfer {} abandoned after {got} of {} bytes",
                        AnswerPrefix(h.id),
                        h.len
                    );
                    answer(
                        h.id,
                        format_args!(
                            "error: transfer abandoned after {got} of {} bytes: nothing arrived for {IDLE_MS} ms",
                            h.len
                        ),
                    );
                }
            }
            0
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
