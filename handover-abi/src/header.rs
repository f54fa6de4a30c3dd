//! The fixed header in front of every handover blob.
//!
//! 64 bytes, every integer little-endian. The layout is the `#[repr(C)]`
//! struct [`RawHeader`], whose fields are all byte arrays or `zerocopy`'s
//! little-endian integers (alignment 1, so no padding can creep in), with
//! its size and every field's offset checked at compile time against this
//! table (the one docs/abi.md §2.1 draws). It never depends on a serializer:
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
//!     50    2 producer_minor   (may be above abi_major.minor, never below)
//!     52   12 reserved         zero
//!     64      body ...
//! ```
//!
//! The blob is `header_size + body_len` bytes long. The header CRC covers the
//! reserved bytes and the body CRC, so a header that passes its CRC describes
//! exactly the body the writer produced.

use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::crc::crc32c;
use crate::version::{AbiVersion, CURRENT};

/// The first eight bytes of every handover blob.
pub const MAGIC: [u8; 8] = *b"HVLUSTAT";

/// Size of the header in bytes (the value of `header_size` for every 1.x version).
pub const HEADER_SIZE: usize = 64;

/// The header's bytes as a struct: field for field the table of the module
/// documentation and of docs/abi.md §2.1. [`Header`] is the same header with
/// its fields as numbers and versions; this is what lies in memory.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Major ABI version of the body.
    pub abi_major: U16,
    /// Minor ABI version of the body.
    pub abi_minor: U16,
    /// [`HEADER_SIZE`] for every 1.x version.
    pub header_size: U32,
    /// Bytes of body after the header.
    pub body_len: U64,
    /// CRC32C of the body.
    pub body_crc: U32,
    /// CRC32C of the 64 header bytes with this field zero.
    pub header_crc: U32,
    /// Build id of the image that wrote the blob.
    pub producer_build: [u8; 16],
    /// Major of the newest version the writer writes.
    pub producer_major: U16,
    /// Minor of the newest version the writer writes.
    pub producer_minor: U16,
    /// Zero.
    pub reserved: [u8; 12],
}

// The layout docs/abi.md §2.1 gives, checked when the crate compiles.
hvlu_types::assert_layout!(RawHeader, HEADER_SIZE, {
    magic: 0,
    abi_major: 8,
    abi_minor: 10,
    header_size: 12,
    body_len: 16,
    body_crc: 24,
    header_crc: 28,
    producer_build: 32,
    producer_major: 48,
    producer_minor: 50,
    reserved: 52,
});

/// Byte offsets of the header fields: those of [`RawHeader`]'s fields.
pub mod offset {
    use super::RawHeader;
    use core::mem::offset_of;

    /// `magic`, 8 bytes.
    pub const MAGIC: usize = offset_of!(RawHeader, magic);
    /// `abi_major`, u16.
    pub const ABI_MAJOR: usize = offset_of!(RawHeader, abi_major);
    /// `abi_minor`, u16.
    pub const ABI_MINOR: usize = offset_of!(RawHeader, abi_minor);
    /// `header_size`, u32.
    pub const HEADER_SIZE: usize = offset_of!(RawHeader, header_size);
    /// `body_len`, u64.
    pub const BODY_LEN: usize = offset_of!(RawHeader, body_len);
    /// `body_crc`, u32.
    pub const BODY_CRC: usize = offset_of!(RawHeader, body_crc);
    /// `header_crc`, u32.
    pub const HEADER_CRC: usize = offset_of!(RawHeader, header_crc);
    /// `producer_build`, 16 bytes.
    pub const PRODUCER_BUILD: usize = offset_of!(RawHeader, producer_build);
    /// `producer_major`, u16.
    pub const PRODUCER_MAJOR: usize = offset_of!(RawHeader, producer_major);
    /// `producer_minor`, u16.
    pub const PRODUCER_MINOR: usize = offset_of!(RawHeader, producer_minor);
    /// `reserved`, 12 bytes of zero up to the end of the header.
    pub const RESERVED: usize = offset_of!(RawHeader, reserved);
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

    /// The header as it lies in memory, with `header_crc` as it is in
    /// `self` and the reserved bytes zero.
    pub fn to_raw(&self) -> RawHeader {
        RawHeader {
            magic: MAGIC,
            abi_major: self.version.major.into(),
            abi_minor: self.version.minor.into(),
            header_size: self.header_size.into(),
            body_len: self.body_len.into(),
            body_crc: self.body_crc.into(),
            header_crc: self.header_crc.into(),
            producer_build: self.producer.build_id.0,
            producer_major: self.producer.abi.major.into(),
            producer_minor: self.producer.abi.minor.into(),
            reserved: [0; 12],
        }
    }

    /// The fields of `raw` (its magic and reserved bytes are not
    /// represented).
    pub fn from_raw(raw: &RawHeader) -> Self {
        Header {
            version: AbiVersion::new(raw.abi_major.get(), raw.abi_minor.get()),
            header_size: raw.header_size.get(),
            body_len: raw.body_len.get(),
            body_crc: raw.body_crc.get(),
            header_crc: raw.header_crc.get(),
            producer: Producer {
                build_id: BuildId(raw.producer_build),
                abi: AbiVersion::new(raw.producer_major.get(), raw.producer_minor.get()),
            },
        }
    }

    /// The header bytes, with `header_crc` as it is in `self`.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        zerocopy::transmute!(self.to_raw())
    }

    /// The fields of `bytes`, read without any check (the magic and the
    /// reserved bytes are not represented; see [`crate::read_header`] for the
    /// checked version).
    pub fn from_bytes_unchecked(b: &[u8; HEADER_SIZE]) -> Self {
        Header::from_raw(zerocopy::transmute_ref!(b))
    }

    /// The header CRC of `bytes`: CRC32C of the 64 bytes with the
    /// `header_crc` field taken as zero.
    pub fn crc_of(bytes: &[u8; HEADER_SIZE]) -> u32 {
        let mut raw: RawHeader = zerocopy::transmute!(*bytes);
        raw.header_crc = U32::ZERO;
        crc32c(raw.as_bytes())
    }

    /// Length of the whole blob, `header_size + body_len`, or `None` if that
    /// does not fit in a `u64`.
    pub const fn total_len(&self) -> Option<u64> {
        (self.header_size as u64).checked_add(self.body_len)
    }
}

#[cfg(test)]
mod tests;
