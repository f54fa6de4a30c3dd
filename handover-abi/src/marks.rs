//! Timestamps of an update's sub-steps: what each side did inside the
//! blackout, step by step, for the report (`docs/abi.md` §5.3).
//!
//! Each side keeps its [`Marks`]: a tag of at most [`TAG_LEN`] ASCII bytes
//! and a TSC reading per step, in the order taken; a step's time is the
//! interval since the previous mark ([`Marks::intervals`]). The outgoing
//! side's marks cross the jump in a trailer of the argument page, at
//! [`MARKS_OFFSET`], outside the bytes of every argument-page version:
//!
//! ```text
//! offset size field
//!      0    8 magic "HVLUMRKS"
//!      8    4 count (at most MAX_MARKS)
//!     12    4 crc32c of the count × 16 bytes that follow
//!     16   16 per mark: tag (8 bytes, ASCII, zero-padded), TSC (u64 LE)
//! ```
//!
//! A reader that does not know the trailer ignores it; a trailer that does
//! not check (magic, count, CRC) is no trailer: the marks are a
//! measurement, never a reason to refuse an update.

use crate::crc::crc32c;

/// Where the trailer starts in the argument page.
pub const MARKS_OFFSET: usize = 256;
/// The trailer's magic.
pub const MARKS_MAGIC: [u8; 8] = *b"HVLUMRKS";
/// Marks a side keeps at most (later ones are dropped).
pub const MAX_MARKS: usize = 24;
/// Bytes of a tag.
pub const TAG_LEN: usize = 8;
/// Bytes of the largest trailer.
pub const MARKS_MAX_BYTES: usize = 16 + MAX_MARKS * 16;

/// Named TSC readings, in the order taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    tags: [[u8; TAG_LEN]; MAX_MARKS],
    tsc: [u64; MAX_MARKS],
    len: usize,
}

impl Default for Marks {
    fn default() -> Self {
        Marks::new()
    }
}

impl Marks {
    /// No mark.
    pub const fn new() -> Marks {
        Marks {
            tags: [[0; TAG_LEN]; MAX_MARKS],
            tsc: [0; MAX_MARKS],
            len: 0,
        }
    }

    /// Records that step `tag` (ASCII, its first [`TAG_LEN`] bytes kept)
    /// ended at `tsc`. Beyond [`MAX_MARKS`] marks, nothing is recorded.
    pub fn mark(&mut self, tag: &str, tsc: u64) {
        if self.len == MAX_MARKS {
            return;
        }
        let mut t = [0u8; TAG_LEN];
        for (d, s) in t.iter_mut().zip(tag.bytes().filter(u8::is_ascii_graphic)) {
            *d = s;
        }
        self.tags[self.len] = t;
        self.tsc[self.len] = tsc;
        self.len += 1;
    }

    /// The number of marks.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The marks: (tag, TSC), in the order taken.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        (0..self.len).map(|i| (tag_str(&self.tags[i]), self.tsc[i]))
    }

    /// Each step's time in microseconds: from the previous mark (the first
    /// from `start`) to its own, at `tsc_khz`.
    pub fn intervals(&self, start: u64, tsc_khz: u64) -> impl Iterator<Item = (&str, u64)> + '_ {
        let mut prev = start;
        self.iter().map(move |(tag, tsc)| {
            let us = tsc.saturating_sub(prev).saturating_mul(1000) / tsc_khz.max(1);
            prev = tsc;
            (tag, us)
        })
    }

    /// The trailer: its bytes, and how many of them are used.
    pub fn to_bytes(&self) -> ([u8; MARKS_MAX_BYTES], usize) {
        let mut out = [0u8; MARKS_MAX_BYTES];
        out[..8].copy_from_slice(&MARKS_MAGIC);
        out[8..12].copy_from_slice(&(self.len as u32).to_le_bytes());
        for i in 0..self.len {
            let at = 16 + i * 16;
            out[at..at + 8].copy_from_slice(&self.tags[i]);
            out[at + 8..at + 16].copy_from_slice(&self.tsc[i].to_le_bytes());
        }
        let end = 16 + self.len * 16;
        let crc = crc32c(&out[16..end]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        (out, end)
    }

    /// Reads a trailer; `None` if `b` holds none that checks.
    pub fn from_bytes(b: &[u8]) -> Option<Marks> {
        let head = b.first_chunk::<16>()?;
        if head[..8] != MARKS_MAGIC {
            return None;
        }
        let count = u32::from_le_bytes(head[8..12].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(head[12..16].try_into().ok()?);
        if count > MAX_MARKS {
            return None;
        }
        let body = b.get(16..16 + count * 16)?;
        if crc32c(body) != crc {
            return None;
        }
        let mut m = Marks::new();
        for e in body.chunks_exact(16) {
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&e[..8]);
            if !tag.iter().all(|&c| c == 0 || c.is_ascii_graphic()) {
                return None;
            }
            m.tags[m.len] = tag;
            m.tsc[m.len] = u64::from_le_bytes(e[8..16].try_into().ok()?);
            m.len += 1;
        }
        Some(m)
    }
}

fn tag_str(tag: &[u8; TAG_LEN]) -> &str {
    let n = tag.iter().position(|&c| c == 0).unwrap_or(TAG_LEN);
    core::str::from_utf8(&tag[..n]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_give_intervals() {
        let mut m = Marks::new();
        m.mark("collect", 1_000);
        m.mark("encode-long-tag", 3_000);
        m.mark("write", 3_500);
        let (bytes, len) = m.to_bytes();
        assert_eq!(len, 16 + 3 * 16);
        let back = Marks::from_bytes(&bytes[..len]).unwrap();
        assert_eq!(back, m);
        let got: Vec<_> = back.intervals(0, 1_000).collect();
        assert_eq!(got, [("collect", 1000), ("encode-l", 2000), ("write", 500)]);
    }

    #[test]
    fn a_damaged_or_absent_trailer_is_none() {
        let mut m = Marks::new();
        m.mark("a", 1);
        let (mut bytes, len) = m.to_bytes();
        assert!(Marks::from_bytes(&[0u8; 64]).is_none());
        bytes[20] ^= 1;
        assert!(Marks::from_bytes(&bytes[..len]).is_none());
        let (mut bytes, len) = m.to_bytes();
        bytes[8] = 200;
        assert!(Marks::from_bytes(&bytes[..len]).is_none());
    }

    #[test]
    fn marks_beyond_the_maximum_are_dropped() {
        let mut m = Marks::new();
        for i in 0..MAX_MARKS + 5 {
            m.mark("x", i as u64);
        }
        assert_eq!(m.len(), MAX_MARKS);
        let (b, len) = m.to_bytes();
        assert_eq!(Marks::from_bytes(&b[..len]), Some(m));
    }
}
