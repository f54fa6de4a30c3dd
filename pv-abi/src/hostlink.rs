//! The host link's framing: how a hypervisor image travels from the host
//! (`cargo xtask live-update --image PATH`) to dom0 over the machine's
//! second serial port, a byte stream with no flow control that either end
//! may abandon at any moment.
//!
//! # A transfer
//!
//! ```text
//! host                                         dom0
//!  | header (28 bytes) ----------------------->  |  checks it, and the room it has
//!  |  <----------------------- "#<id> ready"     |  or "#<id> error: <why>" (and the sender stops)
//!  | body (len bytes) ------------------------>  |  collected in dom0's free pages
//!  |  <---------------------- "#<id> staged"     |  or "#<id> error: <why>"
//!  |  <------------------ "#<id> done <b> <n>"   |  or "#<id> error: <why>"
//! ```
//!
//! The header ([`RawHeader`], docs/abi.md §7) is [`MAGIC`], the transfer's
//! id (u32 LE, the sender's choice), the image length (u64 LE), the image's
//! CRC32C (u32 LE) and the CRC32C of those 24 bytes (u32 LE). Every answer
//! is one line starting with `#` and the id in 8 hex digits, so that a
//! sender can tell the answers to its transfer from late answers to an
//! earlier one.
//!
//! # Why it cannot wedge
//!
//! - The receiver ([`Receiver`]) hunts for a header byte by byte: whatever
//!   precedes one — the rest of an abandoned body, noise — is skipped, and a
//!   false [`MAGIC`] inside it is rejected by the header's own CRC. A
//!   refused or aborted transfer therefore leaves the link ready for the
//!   next.
//! - dom0 answers a header before any body byte is sent, so a refused
//!   transfer costs one header, not the image; the sender reads answers
//!   while it sends and stops at an `error`.
//! - dom0 abandons a body that stops arriving ([`Receiver::abort`]), and a
//!   sender that got no answer to its header sends the header again: a
//!   header repeated before the body starts is recognised and not taken as
//!   body bytes, and a new transfer's header arriving there gives up the
//!   transfer whose sender went away after `ready` ([`Sink::abandoned`]) (an image cannot begin with its own header: an ELF file
//!   begins `\x7fELF`; a body shorter than a header is never taken for
//!   one).

use core::mem::offset_of;

use hvlu_types::crc32c::Crc32cDigest;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first bytes of a header.
pub const MAGIC: [u8; 8] = *b"HVLUIMG2";

/// Bytes of a header.
pub const HEADER_LEN: usize = 28;

/// A header as it crosses the link: field for field the table of
/// docs/abi.md §7 (byte arrays and little-endian integers, alignment 1, so
/// `len` sits unaligned at 12 with no padding). [`Header`] holds the same
/// fields as numbers; [`Header::encode`] and [`Header::decode`] fill and
/// check the magic and `header_crc`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`Header::id`].
    pub id: U32,
    /// [`Header::len`].
    pub len: U64,
    /// [`Header::crc`].
    pub crc: U32,
    /// CRC32C of every byte before this field.
    pub header_crc: U32,
}

// The layout docs/abi.md §7 gives, checked when the crate compiles.
hvlu_types::assert_layout!(RawHeader, HEADER_LEN, {
    magic: 0,
    id: 8,
    len: 12,
    crc: 20,
    header_crc: 24,
});

/// Where the bytes `header_crc` covers end.
const HEADER_CRC_AT: usize = offset_of!(RawHeader, header_crc);

/// The CRC both ends use: CRC32C (Castagnoli), the project's one engine.
pub use hvlu_types::crc32c::CASTAGNOLI;

/// A transfer's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The transfer's id, echoed in every answer.
    pub id: u32,
    /// The image's length in bytes.
    pub len: u64,
    /// The image's CRC32C.
    pub crc: u32,
}

impl Header {
    /// The header of a transfer `id` of `image`.
    pub fn for_image(id: u32, image: &[u8]) -> Header {
        Header {
            id,
            len: image.len() as u64,
            crc: CASTAGNOLI.checksum(image),
        }
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut raw = RawHeader {
            magic: MAGIC,
            id: self.id.into(),
            len: self.len.into(),
            crc: self.crc.into(),
            header_crc: U32::ZERO,
        };
        raw.header_crc = CASTAGNOLI.checksum(&raw.as_bytes()[..HEADER_CRC_AT]).into();
        zerocopy::transmute!(raw)
    }

    /// The header in `bytes`, or `None` if the magic or the header's own
    /// CRC is wrong.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
        let raw: &RawHeader = zerocopy::transmute_ref!(bytes);
        if raw.magic != MAGIC
            || CASTAGNOLI.checksum(&bytes[..HEADER_CRC_AT]) != raw.header_crc.get()
        {
            return None;
        }
        Some(Header {
            id: raw.id.get(),
            len: raw.len.get(),
            crc: raw.crc.get(),
        })
    }
}

/// What a [`Receiver`] hands its owner.
pub trait Sink {
    /// A header arrived (or arrived again before its body began): `true`
    /// takes its body, `false` refuses it and the receiver hunts for the
    /// next header.
    fn header(&mut self, header: &Header) -> bool;

    /// Body bytes of the taken transfer, at `offset` from the image's start.
    fn body(&mut self, header: &Header, offset: u64, bytes: &[u8]);

    /// The body is whole; `crc` is the CRC32C of what arrived.
    fn complete(&mut self, header: &Header, crc: u32);

    /// A different valid header arrived before the first body byte of
    /// `header`'s transfer: that one is given up (its sender went away
    /// after `ready`), and the new header is offered next.
    fn abandoned(&mut self, header: &Header);
}

/// Where a receiver stands.
enum State {
    /// Looking for a header: the last bytes that may begin one.
    Hunt {
        window: [u8; HEADER_LEN],
        have: usize,
    },
    /// Taking the body of `header`.
    Body {
        header: Header,
        received: u64,
        digest: Crc32cDigest,
        /// Bytes at the very start of the body that may be a header (the
        /// same one repeated, or a new transfer's), until they cannot.
        held: [u8; HEADER_LEN],
        /// How many of `held` are filled.
        have: usize,
    },
}

/// dom0's end of the link: bytes in, [`Sink`] calls out.
pub struct Receiver {
    state: State,
    skipped: u64,
}

impl core::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.state {
            State::Hunt { have, .. } => write!(f, "Receiver(hunting, {have} bytes held)"),
            State::Body {
                header, received, ..
            } => write!(
                f,
                "Receiver(transfer {:#x}: {received} of {} bytes)",
                header.id, header.len
            ),
        }
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    /// A receiver hunting for a header.
    pub fn new() -> Self {
        Receiver {
            state: State::Hunt {
                window: [0; HEADER_LEN],
                have: 0,
            },
            skipped: 0,
        }
    }

    /// Whether a transfer's body has begun and not ended.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// The transfer being received and how many body bytes have arrived.
    pub fn progress(&self) -> Option<(Header, u64)> {
        match &self.state {
            State::Body {
                header, received, ..
            } => Some((*header, *received)),
            State::Hunt { .. } => None,
        }
    }

    /// Bytes skipped while hunting since the last call (not a header, nor
    /// part of one).
    pub fn take_skipped(&mut self) -> u64 {
        core::mem::take(&mut self.skipped)
    }

    /// Abandons the transfer being received, if any (its sender went
    /// quiet): returns it and how many body bytes had arrived. The
    /// receiver hunts again; the rest of that body, if it ever comes, is
    /// skipped.
    pub fn abort(&mut self) -> Option<(Header, u64)> {
        let progress = self.progress();
        if progress.is_some() {
            self.hunt();
        }
        progress
    }

    fn hunt(&mut self) {
        self.state = State::Hunt {
            window: [0; HEADER_LEN],
            have: 0,
        };
    }

    /// Takes `bytes` as they came off the link.
    pub fn feed(&mut self, mut bytes: &[u8], sink: &mut impl Sink) {
        while !bytes.is_empty() {
            let used = match &mut self.state {
                State::Hunt { .. } => self.feed_hunt(bytes[0], sink),
                State::Body { .. } => self.feed_body(bytes, sink),
            };
            bytes = &bytes[used..];
        }
    }

    /// One byte while hunting; returns 1.
    fn feed_hunt(&mut self, byte: u8, sink: &mut impl Sink) -> usize {
        let State::Hunt { window, have } = &mut self.state else {
            return 1;
        };
        window[*have] = byte;
        *have += 1;
        // Drop leading bytes until the window could begin a header.
        loop {
            let n = (*have).min(MAGIC.len());
            if window[..n] == MAGIC[..n] {
                if *have < HEADER_LEN {
                    return 1;
                }
                if let Some(header) = Header::decode(window) {
                    if sink.header(&header) {
                        self.take(header, sink);
                    } else {
                        self.hunt();
                    }
                    return 1;
                }
            }
            // Not a header here: skip one byte and look again.
            window.copy_within(1..*have, 0);
            *have -= 1;
            self.skipped += 1;
            if *have == 0 {
                return 1;
            }
        }
    }

    /// Takes the body of `header`, offered and accepted.
    fn take(&mut self, header: Header, sink: &mut impl Sink) {
        self.state = State::Body {
            header,
            received: 0,
            digest: CASTAGNOLI.digest(),
            held: [0; HEADER_LEN],
            have: 0,
        };
        if header.len == 0 {
            self.complete(sink);
        }
    }

    /// Body bytes; returns how many of `bytes` were used.
    fn feed_body(&mut self, bytes: &[u8], sink: &mut impl Sink) -> usize {
        let State::Body {
            header,
            received,
            held,
            have,
            ..
        } = &mut self.state
        else {
            return 0;
        };
        let header = *header;
        // Before the first body byte, what looks like a header is held: the
        // same header again (its sender heard no `ready`), or a new
        // transfer's (this one's sender went away). A body shorter than a
        // header is never taken for one.
        if *received == 0 && header.len >= HEADER_LEN as u64 {
            let b = bytes[0];
            if *have >= MAGIC.len() || b == MAGIC[*have] {
                held[*have] = b;
                *have += 1;
                if *have < HEADER_LEN {
                    return 1;
                }
                let bytes_held = *held;
                *have = 0;
                match Header::decode(&bytes_held) {
                    Some(again) if again == header => {
                        if !sink.header(&header) {
                            self.hunt();
                        }
                    }
                    Some(new) => {
                        sink.abandoned(&header);
                        if sink.header(&new) {
                            self.take(new, sink);
                        } else {
                            self.hunt();
                        }
                    }
                    // Body after all, all of it (a body holds at least a
                    // header's length).
                    None => self.body_bytes(&bytes_held, sink),
                }
                return 1;
            }
            // What was held is body after all; `b` follows it.
            let n = core::mem::take(have);
            let bytes_held = *held;
            self.body_bytes(&bytes_held[..n], sink);
        }
        // (Had the flush ended the body, the state would be hunting.)
        let State::Body { received, .. } = &self.state else {
            return 0;
        };
        let take = (header.len - *received).min(bytes.len() as u64) as usize;
        self.body_bytes(&bytes[..take], sink);
        take
    }

    /// Hands `bytes` (at most what the body still lacks) to the sink as
    /// body, and completes the transfer when they end it.
    fn body_bytes(&mut self, bytes: &[u8], sink: &mut impl Sink) {
        let State::Body {
            header,
            received,
            digest,
            ..
        } = &mut self.state
        else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        sink.body(header, *received, bytes);
        digest.update(bytes);
        *received += bytes.len() as u64;
        if *received == header.len {
            self.complete(sink);
        }
    }

    fn complete(&mut self, sink: &mut impl Sink) {
        let state = core::mem::replace(
            &mut self.state,
            State::Hunt {
                window: [0; HEADER_LEN],
                have: 0,
            },
        );
        if let State::Body { header, digest, .. } = state {
            sink.complete(&header, digest.finalize());
        }
    }
}

/// The prefix of every answer to transfer `id`: `#` and 8 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerPrefix(pub u32);

impl core::fmt::Display for AnswerPrefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#{:08x}", self.0)
    }
}

/// Splits an answer line into the transfer id it is for and its text.
pub fn parse_answer(line: &str) -> Option<(u32, &str)> {
    let rest = line.strip_prefix('#')?;
    let (id, text) = rest.split_once(' ')?;
    if id.len() != 8 {
        return None;
    }
    Some((u32::from_str_radix(id, 16).ok()?, text))
}

#[cfg(test)]
mod tests;
