//! The lines dom0's console takes, and the ones it refuses.
//!
//! dom0 runs a typed line only if it can run all of it as typed: a line with
//! a byte it cannot take, one longer than its buffer or one with more words
//! than it keeps is refused whole, with the reason, and nothing of it runs.
//! The harness (`cargo xtask run --script`) reads the same limits.
//!
//! A line is printable ASCII (`0x20..=0x7e`) and tabs, which separate words
//! like spaces; the line end (`\n`, the hypervisor turns `\r` into it) is not
//! part of it. Backspace and DEL (`0x08`, `0x7f`) edit the line while it is
//! typed ([`LineReader`]); every other byte — control bytes, escape
//! sequences, anything beyond ASCII — is refused.

use core::fmt;

/// Most bytes of a line, without its end.
pub const MAX_LINE: usize = 256;
/// Most words of a line.
pub const MAX_WORDS: usize = 16;

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A byte the console does not take, at `column` (1-based, in bytes).
    Byte {
        /// The byte.
        byte: u8,
        /// Its column, counting from 1.
        column: usize,
    },
    /// The line has `len` bytes, more than [`MAX_LINE`].
    TooLong {
        /// Bytes typed before the line end.
        len: usize,
    },
    /// The line has `count` words, more than [`MAX_WORDS`].
    TooManyWords {
        /// Words in the line.
        count: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Byte { byte, column } => write!(
                f,
                "the line has a byte {byte:#04x} at column {column} (only printable ASCII and tabs are taken)"
            ),
            Refusal::TooLong { len } => write!(
                f,
                "the line has {len} bytes, more than the {MAX_LINE} a line may have"
            ),
            Refusal::TooManyWords { count } => write!(
                f,
                "the line has {count} words, more than the {MAX_WORDS} a line may have"
            ),
        }
    }
}

/// Whether the console takes `b` inside a line.
pub fn allowed(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b)
}

/// The words of an accepted line.
#[derive(Clone, Copy, Debug)]
pub struct Words<'a> {
    words: [&'a str; MAX_WORDS],
    len: usize,
}

impl<'a> Words<'a> {
    /// Whether the line had no words (blank).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The words, in order.
    pub fn as_slice(&self) -> &[&'a str] {
        &self.words[..self.len]
    }
}

/// Checks a whole line (without its end) and splits it into words at
/// spaces and tabs; refuses the first problem found, in this order: a byte
/// not taken, the length, the number of words.
pub fn parse(line: &[u8]) -> Result<Words<'_>, Refusal> {
    if let Some(i) = line.iter().position(|&b| !allowed(b)) {
        return Err(Refusal::Byte {
            byte: line[i],
            column: i + 1,
        });
    }
    if line.len() > MAX_LINE {
        return Err(Refusal::TooLong { len: line.len() });
    }
    // Printable ASCII and tabs only: valid UTF-8.
    let text = core::str::from_utf8(line).map_err(|e| Refusal::Byte {
        byte: line[e.valid_up_to()],
        column: e.valid_up_to() + 1,
    })?;
    let count = text.split_ascii_whitespace().count();
    if count > MAX_WORDS {
        return Err(Refusal::TooManyWords { count });
    }
    let mut words = Words {
        words: [""; MAX_WORDS],
        len: 0,
    };
    for w in text.split_ascii_whitespace() {
        words.words[words.len] = w;
        words.len += 1;
    }
    Ok(words)
}

/// Collects typed bytes into lines: keeps up to [`MAX_LINE`] bytes, counts
/// the ones past it (so an overlong line is refused, never cut), and
/// remembers the first byte not taken even if later edits remove it from
/// view — a line that once held one is refused.
#[derive(Clone, Debug)]
pub struct LineReader {
    buf: [u8; MAX_LINE],
    len: usize,
    /// Bytes typed past the buffer.
    over: usize,
    /// The first byte not taken, and its column.
    bad: Option<(u8, usize)>,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new()
    }
}

impl LineReader {
    /// An empty line.
    pub const fn new() -> Self {
        LineReader {
            buf: [0; MAX_LINE],
            len: 0,
            over: 0,
            bad: None,
        }
    }

    /// Takes one typed byte. Returns `true` at a line end: the line is then
    /// ready for [`LineReader::finish`].
    pub fn push(&mut self, b: u8) -> bool {
        match b {
            b'\n' => return true,
            8 | 0x7f => {
                if self.over > 0 {
                    self.over -= 1;
                } else {
                    self.len = self.len.saturating_sub(1);
                }
            }
            _ => {
                let column = self.len + self.over + 1;
                if !allowed(b) && self.bad.is_none() {
                    self.bad = Some((b, column));
                }
                if self.len < MAX_LINE {
                    self.buf[self.len] = b;
                    self.len += 1;
                } else {
                    self.over += 1;
                }
            }
        }
        false
    }

    /// The line typed since the last end, checked and split (see
    /// [`parse`]); the reader is empty again afterwards.
    pub fn finish(&mut self) -> Result<Words<'_>, Refusal> {
        let (len, over, bad) = (self.len, self.over, self.bad);
        self.len = 0;
        self.over = 0;
        self.bad = None;
        if let Some((byte, column)) = bad {
            return Err(Refusal::Byte { byte, column });
        }
        if over > 0 {
            return Err(Refusal::TooLong { len: len + over });
        }
        parse(&self.buf[..len])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;

    fn read(bytes: &[u8]) -> Result<Vec<std::string::String>, Refusal> {
        let mut r = LineReader::new();
        for &b in bytes {
            assert!(!r.push(b), "no line end expected");
        }
        assert!(r.push(b'\n'));
        r.finish()
            .map(|w| w.as_slice().iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_plain_line_splits_into_words() {
        assert_eq!(read(b"destroy 2").unwrap(), ["destroy", "2"]);
        assert_eq!(read(b"  lu\tload   hv ").unwrap(), ["lu", "load", "hv"]);
        assert!(read(b"").unwrap().is_empty());
        assert!(read(b"   ").unwrap().is_empty());
    }

    #[test]
    fn an_emoji_is_refused_at_its_first_byte() {
        let e = read("\u{1f600} poweroff".as_bytes()).unwrap_err();
        assert_eq!(
            e,
            Refusal::Byte {
                byte: 0xf0,
                column: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "the line has a byte 0xf0 at column 1 (only printable ASCII and tabs are taken)"
        );
    }

    #[test]
    fn control_bytes_are_refused() {
        for b in [0u8, 1, 0x1b, b'\r', 0x0b, 0x0c, 0x80, 0xff] {
            let line = [b'l', b'i', b's', b't', b];
            assert_eq!(
                read(&line).unwrap_err(),
                Refusal::Byte { byte: b, column: 5 },
                "{b:#x}"
            );
            assert_eq!(
                parse(&line).unwrap_err(),
                Refusal::Byte { byte: b, column: 5 }
            );
        }
    }

    #[test]
    fn a_bad_byte_erased_by_backspace_still_refuses_the_line() {
        assert_eq!(
            read(b"li\x1b\x08st").unwrap_err(),
            Refusal::Byte {
                byte: 0x1b,
                column: 3
            }
        );
    }

    #[test]
    fn backspace_edits_the_line() {
        assert_eq!(read(b"lisx\x08t").unwrap(), ["list"]);
        assert_eq!(read(b"x\x7f\x7f\x7ffree").unwrap(), ["free"]);
    }

    #[test]
    fn an_overlong_line_is_refused_not_cut() {
        let mut line = b"destroy 2".to_vec();
        line.extend([b' '; 300]);
        line.extend(b"please not");
        let e = read(&line).unwrap_err();
        assert_eq!(e, Refusal::TooLong { len: 319 });
        assert!(e.to_string().contains("319 bytes"), "{e}");
        assert_eq!(parse(&line).unwrap_err(), Refusal::TooLong { len: 319 });
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_taken() {
        let mut line = b"sleep 1".to_vec();
        line.resize(MAX_LINE, b' ');
        assert_eq!(read(&line).unwrap(), ["sleep", "1"]);
        line.push(b' ');
        assert_eq!(
            read(&line).unwrap_err(),
            Refusal::TooLong { len: MAX_LINE + 1 }
        );
    }

    #[test]
    fn backspace_past_the_limit_brings_the_line_back() {
        let mut line = b"list".to_vec();
        line.resize(MAX_LINE + 3, b' ');
        line.extend([8u8; 3]);
        assert_eq!(read(&line).unwrap(), ["list"]);
    }

    #[test]
    fn too_many_words_are_refused() {
        let line = "w ".repeat(MAX_WORDS + 1);
        assert_eq!(
            read(line.as_bytes()).unwrap_err(),
            Refusal::TooManyWords {
                count: MAX_WORDS + 1
            }
        );
        let line = "w ".repeat(MAX_WORDS);
        assert_eq!(read(line.as_bytes()).unwrap().len(), MAX_WORDS);
    }

    #[test]
    fn the_reader_is_empty_after_each_line() {
        let mut r = LineReader::new();
        for &b in b"\x01bad" {
            r.push(b);
        }
        assert!(r.finish().is_err());
        for &b in b"list" {
            r.push(b);
        }
        assert_eq!(r.finish().unwrap().as_slice(), ["list"]);
    }
}
