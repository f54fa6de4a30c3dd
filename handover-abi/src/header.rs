//! The fixed header in front of every handover blob.
//!
//! 64 bytes, every integer little-endian, encoded by hand (not serde) so that
//! its layout never depends on a serializer:
//!
//! ```text
//! offset size field
//! ------ ---- ---------------------------------------------------------------
//!      0    8 magic            b"HVLUSTAT"
//!      8    2 abi_major        ABI version of the body ...
//!     10    2 abi_minor        ... (decides which body::vM_m type follows)
//!     12    4 header_size      64 for every 1.x version
//!     16    8 body_len         bytes of postcard body after the header
//!     24    4 body_crc         CRC32C of the body_len bytes after the header
//!     28    4 header_crc       CRC32C of these 64 bytes with this field zero
//!     32   16 producer_build   build id of the image that wrote the blob
//!     48    2 producer_major   newest ABI version that image writes
//!     50    2 producer_minor   (informational; may be above abi_major.minor)
//!     52   12 reserved         zero
//!     64      body ...
//! ```
//!
//! The blob is `header_size + body_len` bytes long. The header CRC covers the
//! reserved bytes and the body CRC, so a header that passes its CRC describes
//! exactly the body the writer produced.

use core::fmt;

use crate::crc::crc32c;
use crate::version::{AbiVersion, CURRENT};

/// The first eight bytes of every handover blob.
pub const MAGIC: [u8; 8] = *b"HVLUSTAT";

/// Size of the header in bytes (the value of `header_size` for every 1.x version).
pub const HEADER_SIZE: usize = 64;

/// Byte offsets of the header fields (see the module documentation).
pub mod offset {
    /// `magic`, 8 bytes.
    pub const MAGIC: usize = 0;
    /// `abi_major`, u16.
    pub const ABI_MAJOR: usize = 8;
    /// `abi_minor`, u16.
    pub const ABI_MINOR: usize = 10;
    /// `header_size`, u32.
    pub const HEADER_SIZE: usize = 12;
    /// `body_len`, u64.
    pub const BODY_LEN: usize = 16;
    /// `body_crc`, u32.
    pub const BODY_CRC: usize = 24;
    /// `header_crc`, u32.
    pub const HEADER_CRC: usize = 28;
    /// `producer_build`, 16 bytes.
    pub const PRODUCER_BUILD: usize = 32;
    /// `producer_major`, u16.
    pub const PRODUCER_MAJOR: usize = 48;
    /// `producer_minor`, u16.
    pub const PRODUCER_MINOR: usize = 50;
    /// `reserved`, 12 bytes of zero up to the end of the header.
    pub const RESERVED: usize = 52;
}

/// The 16-byte build id of a hypervisor image (in its `HVLU` note and in the
/// header of every blob it writes).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BuildId(pub [u8; 16]);

impl fmt::Debug for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildId({self})")
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Who wrote a blob: the image's build id and the newest ABI version it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Producer {
    /// Build id of the writing image.
    pub build_id: BuildId,
    /// The writer's own ABI version ([`CURRENT`] of its build), which may be
    /// newer than the version of the blob if it wrote an older minor.
    pub abi: AbiVersion,
}

impl Producer {
    /// This build, with the given build id.
    pub const fn this_build(build_id: BuildId) -> Self {
        Producer {
            build_id,
            abi: CURRENT,
        }
    }
}

/// The decoded fields of a header, as they are in the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// ABI version of the body.
    pub version: AbiVersion,
    /// Size of the header in bytes.
    pub header_size: u32,
    /// Length of the body in bytes.
    pub body_len: u64,
    /// CRC32C of the body.
    pub body_crc: u32,
    /// CRC32C of the header with this field zero.
    pub header_crc: u32,
    /// Who wrote the blob.
    pub producer: Producer,
}

impl Header {
    /// The header of a blob of `version` whose body is `body`, with both CRCs
    /// computed.
    pub fn new(version: AbiVersion, body: &[u8], producer: Producer) -> Self {
        let mut header = Header {
            version,
            header_size: HEADER_SIZE as u32,
            body_len: body.len() as u64,
            body_crc: crc32c(body),
            header_crc: 0,
            producer,
        };
        header.header_crc = Header::crc_of(&header.to_bytes());
        header
    }

    /// The header bytes, with `header_crc` as it is in `self`.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        put(&mut b, offset::MAGIC, &MAGIC);
        put(&mut b, offset::ABI_MAJOR, &self.version.major.to_le_bytes());
        put(&mut b, offset::ABI_MINOR, &self.version.minor.to_le_bytes());
        put(&mut b, offset::HEADER_SIZE, &self.header_size.to_le_bytes());
        put(&mut b, offset::BODY_LEN, &self.body_len.to_le_bytes());
        put(&mut b, offset::BODY_CRC, &self.body_crc.to_le_bytes());
        put(&mut b, offset::HEADER_CRC, &self.header_crc.to_le_bytes());
        put(&mut b, offset::PRODUCER_BUILD, &self.producer.build_id.0);
        put(
            &mut b,
            offset::PRODUCER_MAJOR,
            &self.producer.abi.major.to_le_bytes(),
        );
        put(
            &mut b,
            offset::PRODUCER_MINOR,
            &self.producer.abi.minor.to_le_bytes(),
        );
        b
    }

    /// The fields of `bytes`, read without any check (the magic and the
    /// reserved bytes are not represented; see [`crate::read_header`] for the
    /// checked version).
    pub fn from_bytes_unchecked(b: &[u8; HEADER_SIZE]) -> Self {
        Header {
            version: AbiVersion::new(le_u16(b, offset::ABI_MAJOR), le_u16(b, offset::ABI_MINOR)),
            header_size: le_u32(b, offset::HEADER_SIZE),
            body_len: le_u64(b, offset::BODY_LEN),
            body_crc: le_u32(b, offset::BODY_CRC),
            header_crc: le_u32(b, offset::HEADER_CRC),
            producer: Producer {
                build_id: BuildId(array(b, offset::PRODUCER_BUILD)),
                abi: AbiVersion::new(
                    le_u16(b, offset::PRODUCER_MAJOR),
                    le_u16(b, offset::PRODUCER_MINOR),
                ),
            },
        }
    }

    /// The header CRC of `bytes`: CRC32C of the 64 bytes with the
    /// `header_crc` field taken as zero.
    pub fn crc_of(bytes: &[u8; HEADER_SIZE]) -> u32 {
        let mut copy = *bytes;
        put(&mut copy, offset::HEADER_CRC, &[0; 4]);
        crc32c(&copy)
    }

    /// Length of the whole blob, `header_size + body_len`, or `None` if that
    /// does not fit in a `u64`.
    pub const fn total_len(&self) -> Option<u64> {
        (self.header_size as u64).checked_add(self.body_len)
    }
}

fn put(buf: &mut [u8; HEADER_SIZE], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn array<const N: usize>(b: &[u8; HEADER_SIZE], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

fn le_u16(b: &[u8; HEADER_SIZE], at: usize) -> u16 {
    u16::from_le_bytes(array(b, at))
}

fn le_u32(b: &[u8; HEADER_SIZE], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

fn le_u64(b: &[u8; HEADER_SIZE], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

#[cfg(test)]
mod tests;
