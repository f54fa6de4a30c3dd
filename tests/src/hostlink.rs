//! The host side of the host link: a hypervisor image sent to dom0 over the
//! machine's virtio-serial port or its second serial port (either a unix
//! socket on the host: `qemu::LinkDevice`), which dom0 stages and updates
//! to. The framing is `pv_abi::hostlink`'s.
//!
//! [`send_image`] never blocks for long on either direction, and follows
//! progress, not the clock: answers are read on their own thread while the
//! image is sent, the header is sent again if dom0 does not answer it,
//! sending stops at dom0's first `error`, and a transfer fails only when
//! dom0 has neither taken a byte nor answered for the caller's quiet
//! period — however long the whole transfer takes on a busy host. The
//! socket's send buffer is kept small ([`SEND_BUFFER`]), so that a write
//! returns when dom0 has taken the bytes, not when the host's kernel has
//! queued them: what the sender counts as sent is what dom0 has (but for
//! that buffer), and a failure says how far it got.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use pv_abi::hostlink::{parse_answer, Header};

/// How long a transfer may go with dom0 neither taking a byte nor
/// answering before it fails (what `cargo xtask live-update` uses).
pub const QUIET: Duration = Duration::from_secs(60);
/// How long the header waits for an answer before it is sent again.
pub const HEADER_RETRY: Duration = Duration::from_secs(5);
/// Bytes sent between looks at dom0's answers and at the progress made.
const CHUNK: usize = 4 * 1024;
/// The socket's send buffer: bytes the host's kernel may hold that dom0
/// has not taken yet (the kernel may double it).
pub const SEND_BUFFER: usize = 16 * 1024;

/// The CRC32C (Castagnoli) of `bytes`, as dom0 checks it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    pv_abi::hostlink::CASTAGNOLI.checksum(bytes)
}

/// The whole frame of transfer `id`: header, then image (for tests that
/// send frames by hand).
pub fn frame(id: u32, image: &[u8]) -> Vec<u8> {
    let mut f = Header::for_image(id, image).encode().to_vec();
    f.extend_from_slice(image);
    f
}

/// A connection to the host link, with dom0's answer lines arriving on
/// their own thread.
#[derive(Debug)]
pub struct Link {
    stream: UnixStream,
    lines: Receiver<Result<String, String>>,
}

impl Link {
    /// Connects to the host link at `socket`.
    pub fn connect(socket: &Path) -> Result<Link, String> {
        let stream = UnixStream::connect(socket).map_err(|e| {
            format!(
                "cannot connect to the host link {}: {e} (is `cargo xtask run` running?)",
                socket.display()
            )
        })?;
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(SEND_BUFFER)
            .map_err(|e| format!("cannot size the host link's send buffer: {e}"))?;
        stream
            .set_write_timeout(Some(QUIET))
            .map_err(|e| e.to_string())?;
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut line = String::new();
                let item = match reader.read_line(&mut line) {
                    Ok(0) => Err("the host link closed".to_string()),
                    Ok(_) => Ok(line.trim_end().to_string()),
                    Err(e) => Err(format!("reading the host link: {e}")),
                };
                let end = item.is_err();
                if tx.send(item).is_err() || end {
                    return;
                }
            }
        });
        Ok(Link { stream, lines })
    }

    /// Sends raw bytes (tests: noise, cut frames); fails if dom0 takes none
    /// of a write for the socket's write timeout ([`QUIET`] unless
    /// [`Link::send_image`] set another).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stall = self.stream.write_timeout().ok().flatten().unwrap_or(QUIET);
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("dom0 took no byte for {stall:?}: {e}"))
    }

    /// The next answer to transfer `id` (its text), waiting until
    /// `deadline`; `Ok(None)` at the deadline. Answers to other transfers
    /// are skipped.
    pub fn answer(&self, id: u32, deadline: Instant) -> Result<Option<String>, String> {
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(Ok(line)) => match parse_answer(&line) {
                    Some((got, text)) if got == id => return Ok(Some(text.to_string())),
                    _ => continue,
                },
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the host link closed".to_string())
                }
            }
        }
    }

    /// An answer to `id` that has already arrived, if any.
    fn answer_now(&self, id: u32) -> Result<Option<String>, String> {
        self.answer(id, Instant::now())
    }

    /// Sends `image` as transfer `id`; returns dom0's answers, ending with
    /// `done …` or `error …`. Sending stops at the first `error`. Fails
    /// only when dom0 has neither taken a byte nor answered for `quiet`,
    /// saying how many bytes were sent of how many, and the answers so far.
    pub fn send_image(
        &mut self,
        id: u32,
        image: &[u8],
        quiet: Duration,
    ) -> Result<Vec<String>, String> {
        self.send_image_timed(id, image, quiet)
            .map(|(answers, _)| answers)
    }

    /// [`Link::send_image`], and when its steps happened.
    pub fn send_image_timed(
        &mut self,
        id: u32,
        image: &[u8],
        quiet: Duration,
    ) -> Result<(Vec<String>, Timing), String> {
        let mut timing = Timing::default();
        self.stream
            .set_write_timeout(Some(quiet))
            .map_err(|e| e.to_string())?;
        let header = Header::for_image(id, image).encode();
        let mut answers = Vec::new();
        let total = image.len();
        let failed = |what: String, sent: usize, answers: &[String]| {
            format!(
                "transfer #{id:08x}: {what}; {sent} of {total} bytes sent, answers so far: {answers:?}"
            )
        };
        // The header, again every HEADER_RETRY until dom0 answers it.
        let started = Instant::now();
        let at = |t: &mut Option<Duration>| *t = Some(started.elapsed());
        loop {
            if started.elapsed() >= quiet {
                return Err(failed(
                    format!("dom0 did not answer the header for {quiet:?}"),
                    0,
                    &answers,
                ));
            }
            self.send_raw(&header).map_err(|e| failed(e, 0, &answers))?;
            let wait = (Instant::now() + HEADER_RETRY).min(started + quiet);
            if let Some(a) = self.answer(id, wait)? {
                let refused = a.starts_with("error");
                answers.push(a);
                if refused {
                    return Ok((answers, timing));
                }
                at(&mut timing.ready);
                break;
            }
        }
        // The body, looking at answers between chunks. Each write returns
        // once dom0 has taken (nearly) all of it: that is the progress.
        let mut sent = 0;
        for chunk in image.chunks(CHUNK) {
            if let Some(a) = self.answer_now(id)? {
                let stop = a.starts_with("error");
                answers.push(a);
                if stop {
                    return Ok((answers, timing));
                }
            }
            self.send_raw(chunk)
                .map_err(|e| failed(e, sent, &answers))?;
            sent += chunk.len();
        }
        at(&mut timing.sent);
        // The answers: each one restarts the quiet period.
        loop {
            match self.answer(id, Instant::now() + quiet)? {
                Some(a) => {
                    let last = a.starts_with("done") || a.starts_with("error");
                    if a == "staged" {
                        at(&mut timing.staged);
                    } else if a.starts_with("done") {
                        at(&mut timing.done);
                    }
                    answers.push(a);
                    if last {
                        return Ok((answers, timing));
                    }
                }
                None => {
                    return Err(failed(
                        format!("no answer from dom0 for {quiet:?} since the last byte or answer"),
                        sent,
                        &answers,
                    ))
                }
            }
        }
    }
}

impl Drop for Link {
    /// Closes the connection for good: the reader thread holds a clone of
    /// the socket, which would otherwise keep it open (and the link busy:
    /// QEMU serves one connection at a time).
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// When a transfer's steps happened, counted from its first header byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// dom0 answered the header `ready`.
    pub ready: Option<Duration>,
    /// The last body byte was written: dom0 had taken all but what the
    /// socket's buffer holds ([`SEND_BUFFER`]).
    pub sent: Option<Duration>,
    /// dom0 answered `staged`: it had the whole image, checked its CRC32C,
    /// and the hypervisor had checked and staged it.
    pub staged: Option<Duration>,
    /// dom0 answered `done`: the update happened.
    pub done: Option<Duration>,
}

impl Timing {
    /// Body bytes per second over the link: `len` bytes from `ready` to
    /// the last byte written.
    pub fn rate(&self, len: usize) -> Option<f64> {
        let body = self.sent?.checked_sub(self.ready?)?;
        (!body.is_zero()).then(|| len as f64 / body.as_secs_f64())
    }

    /// The figures of a transfer of `len` bytes, on one line: `bytes=…
    /// ready_ms=… body_ms=… rate=<B/s> staged_ms=… done_ms=…` (`-` for a
    /// step that did not happen).
    pub fn line(&self, len: usize) -> String {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_millis().to_string());
        let body = self.ready.zip(self.sent).map(|(r, s)| s.saturating_sub(r));
        format!(
            "bytes={len} ready_ms={} body_ms={} rate={} staged_ms={} done_ms={}",
            ms(self.ready),
            ms(body),
            self.rate(len)
                .map_or("-".to_string(), |r| format!("{r:.0}B/s")),
            ms(self.staged),
            ms(self.done),
        )
    }
}

/// Sends `image` over the host link at `socket` and returns dom0's answers
/// (`ready`, `staged`, …), ending with `done …` or `error …`; fails when
/// dom0 neither takes a byte nor answers for `quiet` ([`Link::send_image`]).
pub fn send_image(socket: &Path, image: &[u8], quiet: Duration) -> Result<Vec<String>, String> {
    send_image_as(socket, new_id(), image, quiet)
}

/// [`send_image`] as transfer `id` (which `cargo xtask live-update` prints
/// first, so that its lines in the hypervisor's log can be found).
pub fn send_image_as(
    socket: &Path,
    id: u32,
    image: &[u8],
    quiet: Duration,
) -> Result<Vec<String>, String> {
    send_image_timed(socket, id, image, quiet).map(|(answers, _)| answers)
}

/// [`send_image_as`], and when the transfer's steps happened.
pub fn send_image_timed(
    socket: &Path,
    id: u32,
    image: &[u8],
    quiet: Duration,
) -> Result<(Vec<String>, Timing), String> {
    let mut link = Link::connect(socket)?;
    // Extra `ready`s (answers to a repeated header) say nothing new.
    let (mut answers, timing) = link.send_image_timed(id, image, quiet)?;
    answers.dedup();
    Ok((answers, timing))
}

/// A transfer id unlikely to repeat between runs.
pub fn new_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}
