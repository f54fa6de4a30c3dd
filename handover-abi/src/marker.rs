//! The update marker: what an update that armed a watchdog leaves, at a
//! page that survives a reset, until the new image confirms it
//! (`docs/abi.md` §5.5).
//!
//! The outgoing image writes it right before it arms the watchdog and
//! jumps; the incoming image zeroes it once it has disarmed the watchdog,
//! before its guests run. An image booting after a reset that finds one
//! knows that update N, to that build, never confirmed: the new image hung
//! or faulted after the jump. The page is the machine's (a page that no
//! allocator and no guest uses and that a reset leaves alone, on QEMU's
//! `microvm` one in the first MiB: `docs/research/reset.md`); the argument
//! page names it to the new image (`entry::Watchdog::marker_phys`).
//!
//! ```text
//! offset size field
//!      0    8 magic "HVLUMARK"
//!      8    4 version (1)
//!     12    4 size (80)
//!     16    8 sequence        the update's (updates since cold boot, it included)
//!     24    8 args_phys       physical address of its argument page
//!     32   16 from_build_id   the image that jumped
//!     48   16 to_build_id     the image it jumped to
//!     64    4 deadline_ms     the watchdog's deadline
//!     68    2 caller_domain   the domain whose vCPU made the `lu exec` call
//!     70    2 caller_vcpu     and that vCPU's index: the way back answers it
//!     72    4 crc32c          of bytes 0..72
//!     76    4 reserved (0)
//! ```
//!
//! A page without the magic holds no marker. One with the magic whose
//! version, size, CRC or reserved word do not check is a damaged marker:
//! the reader says so rather than guessing.

use core::fmt;

use crate::crc::crc32c;
use crate::header::BuildId;
use hvlu_types::DomId;

/// The marker's magic.
pub const MARKER_MAGIC: [u8; 8] = *b"HVLUMARK";
/// The marker version this crate writes and reads.
pub const MARKER_VERSION: u32 = 1;
/// Bytes of the marker.
pub const MARKER_SIZE: usize = 80;
/// Where its CRC-covered bytes end.
const CRC_AT: usize = 72;

/// An update that has jumped and not yet been confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The update's sequence number.
    pub sequence: u64,
    /// Its argument page.
    pub args_phys: u64,
    /// The image that jumped.
    pub from_build_id: BuildId,
    /// The image it jumped to.
    pub to_build_id: BuildId,
    /// The watchdog's deadline.
    pub deadline_ms: u32,
    /// The domain and vCPU index that made the call which ran the update
    /// (dom0's): whoever resumes the state answers it.
    pub caller: (DomId, u16),
}

/// Why a page with the marker's magic is not a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerError {
    /// The buffer is shorter than [`MARKER_SIZE`].
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// A version or size this reader does not know.
    UnsupportedVersion {
        /// The version found.
        version: u32,
        /// The size found.
        size: u32,
    },
    /// The CRC32C does not match.
    CrcMismatch {
        /// The CRC stored.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The reserved word is not zero.
    ReservedNotZero,
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerError::Truncated { len } => {
                write!(f, "update marker truncated: {len} of {MARKER_SIZE} bytes")
            }
            MarkerError::UnsupportedVersion { version, size } => write!(
                f,
                "update marker version {version} size {size} not supported (this image reads version {MARKER_VERSION} size {MARKER_SIZE})"
            ),
            MarkerError::CrcMismatch { stored, computed } => write!(
                f,
                "update marker CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            MarkerError::ReservedNotZero => f.write_str("update marker: reserved word not zero"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn build_id_at(b: &[u8], at: usize) -> BuildId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[at..at + 16]);
    BuildId(id)
}

impl Marker {
    /// The marker's bytes.
    pub fn to_bytes(&self) -> [u8; MARKER_SIZE] {
        let mut b = [0u8; MARKER_SIZE];
        b[0..8].copy_from_slice(&MARKER_MAGIC);
        b[8..12].copy_from_slice(&MARKER_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(MARKER_SIZE as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        b[24..32].copy_from_slice(&self.args_phys.to_le_bytes());
        b[32..48].copy_from_slice(&self.from_build_id.0);
        b[48..64].copy_from_slice(&self.to_build_id.0);
        b[64..68].copy_from_slice(&self.deadline_ms.to_le_bytes());
        b[68..70].copy_from_slice(&self.caller.0 .0.to_le_bytes());
        b[70..72].copy_from_slice(&self.caller.1.to_le_bytes());
        let crc = crc32c(&b[..CRC_AT]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The marker `b` holds: `None` without the magic (no update is
    /// waiting for its confirmation), an error for a damaged one.
    pub fn from_bytes(b: &[u8]) -> Result<Option<Marker>, MarkerError> {
        if b.len() < 8 || b[..8] != MARKER_MAGIC {
            return Ok(None);
        }
        let b = b
            .get(..MARKER_SIZE)
            .ok_or(MarkerError::Truncated { len: b.len() })?;
        let (version, size) = (u32_at(b, 8), u32_at(b, 12));
        if version != MARKER_VERSION || size as usize != MARKER_SIZE {
            return Err(MarkerError::UnsupportedVersion { version, size });
        }
        let (stored, computed) = (u32_at(b, CRC_AT), crc32c(&b[..CRC_AT]));
        if stored != computed {
            return Err(MarkerError::CrcMismatch { stored, computed });
        }
        if u32_at(b, CRC_AT + 4) != 0 {
            return Err(MarkerError::ReservedNotZero);
        }
        Ok(Some(Marker {
            sequence: u64_at(b, 16),
            args_phys: u64_at(b, 24),
            from_build_id: build_id_at(b, 32),
            to_build_id: build_id_at(b, 48),
            deadline_ms: u32_at(b, 64),
            caller: (
                DomId(u16::from_le_bytes([b[68], b[69]])),
                u16::from_le_bytes([b[70], b[71]]),
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Marker {
        Marker {
            sequence: 3,
            args_phys: 0x1fe0_1000,
            from_build_id: BuildId([0x11; 16]),
            to_build_id: BuildId([0x22; 16]),
            deadline_ms: 10_000,
            caller: (DomId(0), 1),
        }
    }

    #[test]
    fn fields_sit_at_their_documented_offsets_and_read_back() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..8], b"HVLUMARK");
        assert_eq!(u32_at(&b, 8), 1);
        assert_eq!(u32_at(&b, 12), 80);
        assert_eq!(u64_at(&b, 16), 3);
        assert_eq!(u64_at(&b, 24), 0x1fe0_1000);
        assert_eq!(&b[32..48], &[0x11; 16]);
        assert_eq!(&b[48..64], &[0x22; 16]);
        assert_eq!(u32_at(&b, 64), 10_000);
        assert_eq!(&b[68..72], &[0, 0, 1, 0]);
        assert_eq!(u32_at(&b, 72), crc32c(&b[..72]));
        assert_eq!(Marker::from_bytes(&b), Ok(Some(sample())));
    }

    #[test]
    fn a_page_without_the_magic_holds_no_marker() {
        assert_eq!(Marker::from_bytes(&[0; MARKER_SIZE]), Ok(None));
        assert_eq!(Marker::from_bytes(&[0xff; 4096]), Ok(None));
        assert_eq!(Marker::from_bytes(&[]), Ok(None));
    }

    #[test]
    fn a_damaged_marker_is_named() {
        let b = sample().to_bytes();
        assert_eq!(
            Marker::from_bytes(&b[..40]),
            Err(MarkerError::Truncated { len: 40 })
        );
        let mut bad = b;
        bad[20] ^= 1;
        assert!(matches!(
            Marker::from_bytes(&bad),
            Err(MarkerError::CrcMismatch { .. })
        ));
        let mut bad = b;
        bad[8] = 2;
        assert_eq!(
            Marker::from_bytes(&bad),
            Err(MarkerError::UnsupportedVersion {
                version: 2,
                size: 80
            })
        );
        let mut bad = b;
        bad[76] = 1;
        assert_eq!(Marker::from_bytes(&bad), Err(MarkerError::ReservedNotZero));
    }
}
