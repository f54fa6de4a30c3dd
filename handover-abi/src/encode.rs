//! Writing a blob: header and body into a caller-provided buffer, without
//! allocating.

use crate::body::{self, current::HandoverState};
use crate::header::{Header, Producer, HEADER_SIZE};
use crate::version::{AbiVersion, CURRENT, WRITES};

/// Why a state could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// This build does not write the requested version (see [`WRITES`]).
    #[error("this build does not write ABI version {requested} (it writes {WRITES})")]
    UnsupportedVersion {
        /// The version asked for.
        requested: AbiVersion,
    },
    /// The buffer cannot hold the blob.
    #[error("the blob needs {needed} bytes but the buffer has {available}")]
    BufferTooSmall {
        /// Bytes the whole blob needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The version cannot carry the state without changing what a guest
    /// sees.
    #[error("ABI {version} cannot carry this state: {what}")]
    Inexpressible {
        /// The version asked for.
        version: AbiVersion,
        /// What it cannot say.
        what: body::Inexpressible,
    },
    /// The serializer failed for another reason than space.
    #[error("serializing the body failed: {0}")]
    Body(postcard::Error),
}

/// Encodes `state` as a blob of [`CURRENT`] into `buf`: header, then body.
/// Returns the number of bytes written (the blob is `buf[..n]`). Does not
/// allocate, and does not check the state's invariants (the writer's
/// pre-flight decodes the blob back, which does).
pub fn encode(
    state: &HandoverState,
    producer: &Producer,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_as(CURRENT, state, producer, buf)
}

/// Encodes `state` as a blob of `version`, which must be in [`WRITES`]; used
/// to hand over to an image that reads only an older minor (see
/// [`crate::negotiate`]). Otherwise as [`encode`].
pub fn encode_as(
    version: AbiVersion,
    state: &HandoverState,
    producer: &Producer,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    if !WRITES.contains(version) {
        return Err(EncodeError::UnsupportedVersion { requested: version });
    }
    body::expressible(version, state)
        .map_err(|what| EncodeError::Inexpressible { version, what })?;
    let available = buf.len();
    let too_small = || match encoded_len_as(version, state) {
        Ok(needed) => EncodeError::BufferTooSmall { needed, available },
        Err(e) => e,
    };
    if available < HEADER_SIZE {
        return Err(too_small());
    }
    let (head, rest) = buf.split_at_mut(HEADER_SIZE);
    let body_len = match body::encode_body(version, state, rest) {
        None => return Err(EncodeError::UnsupportedVersion { requested: version }),
        Some(Err(postcard::Error::SerializeBufferFull)) => return Err(too_small()),
        Some(Err(e)) => return Err(EncodeError::Body(e)),
        Some(Ok(n)) => n,
    };
    let header = Header::new(version, &rest[..body_len], *producer);
    head.copy_from_slice(&header.to_bytes());
    Ok(HEADER_SIZE + body_len)
}

/// The number of bytes [`encode`] writes for `state`.
pub fn encoded_len(state: &HandoverState) -> Result<usize, EncodeError> {
    encoded_len_as(CURRENT, state)
}

/// The number of bytes [`encode_as`] writes for `state` as `version`.
pub fn encoded_len_as(version: AbiVersion, state: &HandoverState) -> Result<usize, EncodeError> {
    if !WRITES.contains(version) {
        return Err(EncodeError::UnsupportedVersion { requested: version });
    }
    body::expressible(version, state)
        .map_err(|what| EncodeError::Inexpressible { version, what })?;
    match body::body_len(version, state) {
        None => Err(EncodeError::UnsupportedVersion { requested: version }),
        Some(Err(e)) => Err(EncodeError::Body(e)),
        Some(Ok(n)) => Ok(HEADER_SIZE + n),
    }
}
