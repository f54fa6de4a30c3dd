//! The host link: hypervisor images sent from the host (`cargo xtask
//! live-update --image PATH`) over the hypervisor's host link (a
//! virtio-serial port, or the second serial port), framed as
//! `pv_abi::hostlink` says: a header dom0 answers (`ready`, or `error` and
//! the sender stops), then the image, collected in dom0's free pages,
//! checked against its CRC32C, staged with `lu_load_buffer` and updated
//! to, with one answer per step: `staged`, `done <build> <update>` or
//! `error: <why>`, each prefixed with the transfer's id.
//!
//! Nothing here can wedge: a body that stops arriving is abandoned after
//! [`IDLE_MS`] and the link hunts for the next header; an answer the host
//! does not read within [`ANSWER_MS`] is dropped (the hypervisor never
//! waits on the link, `hostlink_write` takes what its device can hold).

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

/// The name dom0 gives an image from the host link.
type Name = crate::text::Text<96>;

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
