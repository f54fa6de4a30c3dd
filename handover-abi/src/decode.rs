//! Reading a blob: every check, in a fixed order, before a state is returned.

use crate::body::{self, current::HandoverState};
use crate::crc::crc32c;
use crate::header::{offset, Header, RawHeader, HEADER_SIZE, MAGIC};
use crate::validate::StateError;
use crate::version::{AbiVersion, CURRENT};
use hvlu_types::{MfnRange, PAGE_SIZE};

/// A blob that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Its header.
    pub header: Header,
    /// The state, converted to this build's in-memory types and valid.
    pub state: HandoverState,
}

/// A way in which a blob is wrong: one variant per check.
///
/// [`decode`] makes the checks in the order of the variants here: the first
/// failing check is reported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first eight bytes are not [`MAGIC`].
    #[error("bad magic {found:02x?}: not a handover state")]
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// The buffer is shorter than a header.
    #[error("truncated header: {len} bytes, a header needs {HEADER_SIZE}")]
    TruncatedHeader {
        /// Length of the buffer.
        len: usize,
    },
    /// The header's CRC does not match its bytes.
    #[error("header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the header's bytes.
        computed: u32,
    },
    /// The blob's major version is not the reader's.
    #[error("unsupported ABI major version {}: this reader reads {}.x", found.major, reader.major)]
    UnsupportedMajor {
        /// The blob's version.
        found: AbiVersion,
        /// The reader's version.
        reader: AbiVersion,
    },
    /// The blob's minor version is newer than the reader's.
    #[error("ABI version {found} is newer than this reader's {reader}")]
    NewerMinor {
        /// The blob's version.
        found: AbiVersion,
        /// The reader's version.
        reader: AbiVersion,
    },
    /// The header's size field is not the size of a header of its version.
    #[error("header size field is {found}, a {version} header is {expected} bytes")]
    HeaderSizeMismatch {
        /// The blob's version.
        version: AbiVersion,
        /// The size field.
        found: u32,
        /// The size of a header of that version.
        expected: u32,
    },
    /// The header's reserved bytes are not zero.
    #[error("reserved header byte at offset {offset} is {value:#04x}, not zero")]
    ReservedNotZero {
        /// Offset of the first non-zero reserved byte.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// The header says the blob was written by a build whose own version is
    /// older than the body's: no writer writes a version newer than its own
    /// (every real writer records its `CURRENT`, at least the body's).
    #[error("the producer's ABI version {producer} is older than the body's {body}: no writer writes a version newer than its own")]
    ProducerOlderThanBody {
        /// The producer version in the header.
        producer: AbiVersion,
        /// The version of the body.
        body: AbiVersion,
    },
    /// The buffer is shorter than the header says the blob is.
    #[error(
        "truncated body: the header declares {declared} bytes in all, the buffer has {available}"
    )]
    TruncatedBody {
        /// `header_size + body_len`, saturated at `u64::MAX`.
        declared: u64,
        /// Length of the buffer.
        available: usize,
    },
    /// The buffer is longer than the header says the blob is.
    #[error("length mismatch: the header declares {declared} bytes in all, the buffer given as the blob has {len}")]
    TrailingBytes {
        /// `header_size + body_len`.
        declared: u64,
        /// Length of the buffer.
        len: usize,
    },
    /// The body's CRC does not match the header.
    #[error("body CRC mismatch: header says {stored:#010x}, body has {computed:#010x}")]
    BodyCrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the body.
        computed: u32,
    },
    /// The body is not a postcard value of the header's version.
    #[error("malformed body: {0}")]
    MalformedBody(postcard::Error),
    /// The body has bytes after the postcard value.
    #[error("malformed body: {unused} bytes after the state, inside the declared body length")]
    BodyTrailingBytes {
        /// Bytes not used by the value.
        unused: usize,
    },
    /// The body is longer than the canonical encoding of its value: a
    /// varint is written in more bytes than its value needs (`80 00` for
    /// 0). Each state has exactly one encoding.
    #[error("malformed body: {len} bytes, but its value encodes in {canonical_len}: a varint is padded with needless bytes")]
    NonCanonicalVarint {
        /// Bytes the value used.
        len: usize,
        /// Bytes of its canonical encoding.
        canonical_len: usize,
    },
    /// The state breaks a structural invariant.
    #[error("invalid state: {0}")]
    Invalid(#[from] StateError),
    /// The state's own range in the region is smaller than the blob.
    #[error("the state range ({range}) holds fewer bytes than the blob's {blob_len}")]
    StateRangeTooSmall {
        /// The state range recorded in the region.
        range: MfnRange,
        /// Length of the blob.
        blob_len: u64,
    },
}

/// Checks the header at the start of `buf` (magic, header CRC, version,
/// header size, reserved bytes, producer version) and returns it. `buf` may be just the header
/// or the header followed by anything; [`Header::total_len`] then says how
/// long the blob is. Errors as [`decode`], up to
/// [`DecodeError::ProducerOlderThanBody`].
pub fn read_header(buf: &[u8]) -> Result<Header, DecodeError> {
    if let Some(found) = buf.first_chunk::<8>() {
        if *found != MAGIC {
            return Err(DecodeError::BadMagic { found: *found });
        }
    }
    let Some(bytes) = buf.first_chunk::<HEADER_SIZE>() else {
        return Err(DecodeError::TruncatedHeader { len: buf.len() });
    };
    let raw: &RawHeader = zerocopy::transmute_ref!(bytes);
    let header = Header::from_raw(raw);
    let computed = Header::crc_of(bytes);
    if computed != header.header_crc {
        return Err(DecodeError::HeaderCrcMismatch {
            stored: header.header_crc,
            computed,
        });
    }
    let found = header.version;
    if found.major != CURRENT.major {
        return Err(DecodeError::UnsupportedMajor {
            found,
            reader: CURRENT,
        });
    }
    if !CURRENT.reads(found) {
        return Err(DecodeError::NewerMinor {
            found,
            reader: CURRENT,
        });
    }
    if header.header_size != HEADER_SIZE as u32 {
        return Err(DecodeError::HeaderSizeMismatch {
            version: found,
            found: header.header_size,
            expected: HEADER_SIZE as u32,
        });
    }
    if let Some((i, &value)) = raw.reserved.iter().enumerate().find(|(_, &b)| b != 0) {
        return Err(DecodeError::ReservedNotZero {
            offset: offset::RESERVED + i,
            value,
        });
    }
    if header.producer.abi < found {
        return Err(DecodeError::ProducerOlderThanBody {
            producer: header.producer.abi,
            body: found,
        });
    }
    Ok(header)
}

/// Decodes and checks a whole blob. `buf` must be exactly the blob (header
/// and body, nothing after). The checks, in order: magic, header CRC, major,
/// minor, header size, reserved bytes, producer version, length (truncated,
/// then trailing bytes), body CRC, postcard value, bytes after it, canonical
/// varints, the structural invariants ([`HandoverState::validate`]), and
/// that the state range holds the blob.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let header = read_header(buf)?;
    let declared = header.total_len().unwrap_or(u64::MAX);
    let total = match usize::try_from(declared) {
        Ok(total) if total <= buf.len() => total,
        _ => {
            return Err(DecodeError::TruncatedBody {
                declared,
                available: buf.len(),
            })
        }
    };
    if buf.len() > total {
        return Err(DecodeError::TrailingBytes {
            declared,
            len: buf.len(),
        });
    }
    let body = &buf[HEADER_SIZE..];
    let computed = crc32c(body);
    if computed != header.body_crc {
        return Err(DecodeError::BodyCrcMismatch {
            stored: header.body_crc,
            computed,
        });
    }
    let read = match body::decode_body(header.version, body) {
        None => {
            return Err(DecodeError::NewerMinor {
                found: header.version,
                reader: CURRENT,
            })
        }
        Some(Err(e)) => return Err(DecodeError::MalformedBody(e)),
        Some(Ok(read)) => read,
    };
    let body::Read {
        state,
        unused,
        canonical_len,
    } = read;
    if unused != 0 {
        return Err(DecodeError::BodyTrailingBytes { unused });
    }
    if canonical_len != body.len() {
        return Err(DecodeError::NonCanonicalVarint {
            len: body.len(),
            canonical_len,
        });
    }
    state.validate()?;
    let range = state.machine.region.state;
    if range.count.saturating_mul(PAGE_SIZE) < declared {
        return Err(DecodeError::StateRangeTooSmall {
            range,
            blob_len: declared,
        });
    }
    Ok(Decoded { header, state })
}
