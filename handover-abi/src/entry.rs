//! The live-update entry contract: how the old hypervisor enters the new
//! image, and the argument page it passes.
//!
//! # CPU state at the entry
//!
//! The old hypervisor jumps to the virtual address in the new image's `HVLU`
//! note ([`crate::note::ImageNote::entry`]) with:
//!
//! - 64-bit long mode, CPL 0, interrupts disabled (RFLAGS.IF = 0), DF = 0;
//! - `rdi` = physical address of an [`EntryArgs`] page; every other general
//!   register, the stack pointer, GDTR, IDTR and TR are undefined: the entry
//!   must load its own stack, GDT, IDT and TSS before anything else;
//! - CR0.PG, CR0.WP, CR4.PAE, EFER.LME, EFER.NXE set; CR4.PGE set, with no
//!   global translation left in the TLB from the old image;
//! - CR3 = page tables built by the old hypervisor inside the live-update
//!   region, mapping exactly:
//!   1. every loadable segment of the new image at its link virtual address,
//!      backed by the staged copy (4 KiB pages, writable and executable);
//!   2. all physical memory below [`EntryArgs::ram_end`] at
//!      [`DIRECT_MAP_BASE`]` + paddr` (2 MiB pages, or 1 GiB pages for its
//!      whole gigabytes where the CPU has them; writable, not executable);
//!   3. one identity-mapped page holding the old hypervisor's trampoline;
//! - the image's `.bss` zeroed in the staged copy.
//!
//! The new image may use those tables until it has built its own from the
//! region; it must not touch memory outside the region before it has
//! verified the handover state.
//!
//! # The argument page
//!
//! Fixed little-endian layout, [`ENTRY_ARGS_SIZE`] bytes, guarded by its own
//! CRC32C. The layout is the `#[repr(C)]` struct [`RawEntryArgs`] (byte
//! arrays and `zerocopy`'s little-endian integers, alignment 1), whose size
//! and field offsets are checked at compile time against this table (the
//! one docs/abi.md §5.2 draws):
//!
//! ```text
//! offset size field
//!      0    8 magic "HVLUARGS"
//!      8    4 version (4)
//!     12    4 size (ENTRY_ARGS_SIZE)
//!     16    8 state_phys        physical address of the handover header
//!     24    8 state_len         header + body bytes
//!     32    8 image_phys        physical address of the staged image's first byte
//!     40    8 image_len         bytes of the staged image span
//!     48    8 region_base       live-update region
//!     56    8 region_size
//!     64    8 ram_end           end of the direct map the entry tables provide
//!     72    8 digest            owned-frame digest the old hypervisor computed
//!     80    8 tsc_khz           TSC frequency the old hypervisor measured
//!     88    8 tsc_pause         TSC when the update began to pause the domains
//!     96    8 tsc_paused        TSC when every vCPU was stopped
//!    104    8 tsc_serialised    TSC when the state was written
//!    112    8 tsc_preflight     TSC when the pre-flight check ended
//!    120    8 tsc_jump          TSC just before the jump
//!    128    8 free_frames       free frames of the old hypervisor's page allocator
//!    136    8 sequence          updates so far since cold boot, this one included
//!    144    8 image_frames_out  frames of the old image outside the region (the
//!                               new image releases them: a cold-boot image)
//!    152   16 from_build_id     the old image's build id
//!    168    8 free_digest       digest of the frames the new image must find free:
//!                               the old page allocator's free frames plus
//!                               image_frames_out (`new_hv::free`)
//!    176    8 tables_digest     digest of the contents of every page-table frame
//!                               the state's L1–L4 runs list (`new_hv::tables`):
//!                               the guests' tables stay in place across the jump,
//!                               and a change to any of their bits is refused
//!    184    4 watchdog          the watchdog the old hypervisor armed right
//!                               before the jump: 0 none, 1 ib700 (ISA, ports
//!                               0x441 and 0x443; [`WatchdogDevice`])
//!    188    4 watchdog_ms       its deadline, in ms from the jump (0 with none)
//!    192    8 marker_phys       the page holding the update marker
//!                               (`crate::marker`; 0 with none)
//!    200    4 crc32c            of bytes 0..200
//!    204    4 reserved (0)
//! ```
//!
//! **The watchdog** (version 4). An image that reads version 4 agrees to
//! disarm the watchdog the page names, once it has verified the state and
//! run the pass and right before it resumes the guests, and then to zero
//! the update marker the old side left at `marker_phys`; if it hangs or
//! faults before that, the watchdog resets the machine and the marker
//! tells the image that boots next. The old side arms
//! one only for an image that reads version 4 (its note's argument-page
//! versions), so an image of an older contract is never reset for not
//! knowing it. A device code this crate does not know, or a deadline that
//! does not go with its code, is refused.
//!
//! Version 1 (176 bytes: the same fields up to `from_build_id`, then the
//! CRC at 168 and the reserved word at 172; [`RawEntryArgsV1`]) is what the
//! 1.0 release writes and reads: this crate reads it, without the two
//! digests (`None`), and writes it for an image that reads nothing newer
//! ([`EntryArgs::to_bytes_as`]). Version 3 (192 bytes: the same fields
//! up to `tables_digest`, then the CRC at 184 and the reserved word at
//! 188; [`RawEntryArgsV3`]) is what the releases from 1.1 to 1.3 read and
//! write: read here without a watchdog. Version 2 (184 bytes, without
//! `tables_digest`) was never released and is not read.

use core::mem::offset_of;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::crc::crc32c;
use crate::header::BuildId;

/// Where the entry tables map physical memory.
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Magic of the argument page.
pub const ENTRY_ARGS_MAGIC: [u8; 8] = *b"HVLUARGS";
/// The first argument page that names a watchdog ("The watchdog" above).
pub const ENTRY_ARGS_V4: u32 = 4;
/// Version of the argument page this crate writes by default.
pub const ENTRY_ARGS_VERSION: u32 = ENTRY_ARGS_V4;
/// Bytes of the argument page of [`ENTRY_ARGS_VERSION`]: the most any
/// version read here takes.
pub const ENTRY_ARGS_SIZE: usize = 208;
/// The argument page of the 1.0 release: version 1, 176 bytes.
pub const ENTRY_ARGS_V1: u32 = 1;
/// Bytes of version 1.
pub const ENTRY_ARGS_V1_SIZE: usize = 176;
/// The argument page of the releases 1.1 to 1.3: version 3, 192 bytes.
pub const ENTRY_ARGS_V3: u32 = 3;
/// Bytes of version 3.
pub const ENTRY_ARGS_V3_SIZE: usize = 192;
/// The versions this crate reads (and can write), oldest first.
pub const ENTRY_ARGS_READS: [u32; 3] = [ENTRY_ARGS_V1, ENTRY_ARGS_V3, ENTRY_ARGS_VERSION];

/// A watchdog device an outgoing hypervisor may arm before the jump (the
/// `watchdog` word of a version 4 page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchdogDevice {
    /// The ib700 on the ISA bus: a write of `v` to port 0x443 arms it for
    /// `(15 - v) * 2` seconds (30 s at most, in steps of 2 s); a write to
    /// port 0x441 disarms it.
    Ib700,
}

impl WatchdogDevice {
    /// Its code in the page.
    pub const fn code(self) -> u32 {
        match self {
            WatchdogDevice::Ib700 => 1,
        }
    }

    /// Its name, as the command line and the log write it.
    pub const fn name(self) -> &'static str {
        match self {
            WatchdogDevice::Ib700 => "ib700",
        }
    }

    /// The device of `code`, if this crate knows it (0, none, is not a
    /// device).
    pub const fn from_code(code: u32) -> Option<WatchdogDevice> {
        match code {
            1 => Some(WatchdogDevice::Ib700),
            _ => None,
        }
    }
}

/// The watchdog armed before the jump, which the incoming image must
/// disarm before it resumes the guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchdog {
    /// The device.
    pub device: WatchdogDevice,
    /// Its deadline, in milliseconds from the jump (not zero).
    pub deadline_ms: u32,
    /// The page-aligned physical address of the update marker
    /// (`crate::marker`), which the incoming image zeroes once it has
    /// disarmed the watchdog.
    pub marker_phys: u64,
}

/// The arguments of the live-update entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryArgs {
    /// Physical address of the handover header.
    pub state_phys: u64,
    /// Bytes of the handover state (header and body).
    pub state_len: u64,
    /// Physical address of the staged image.
    pub image_phys: u64,
    /// Bytes of the staged image span.
    pub image_len: u64,
    /// Base of the live-update region.
    pub region_base: u64,
    /// Size of the live-update region.
    pub region_size: u64,
    /// End of the physical memory the entry tables map.
    pub ram_end: u64,
    /// The owned-frame digest computed before the jump.
    pub digest: u64,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// TSC when the update began to pause the domains.
    pub tsc_pause: u64,
    /// TSC when every vCPU was stopped.
    pub tsc_paused: u64,
    /// TSC when the state was written.
    pub tsc_serialised: u64,
    /// TSC when the pre-flight check ended.
    pub tsc_preflight: u64,
    /// TSC just before the jump.
    pub tsc_jump: u64,
    /// Free frames of the old hypervisor's page allocator.
    pub free_frames: u64,
    /// Updates since cold boot, this one included.
    pub sequence: u64,
    /// Frames of the old image that lie outside the region: the new image
    /// releases them with the rest of RAM (an image a cold boot loaded).
    pub image_frames_out: u64,
    /// The old image's build id.
    pub from_build_id: BuildId,
    /// The digest of the free frames the new image must end up with: the
    /// old page allocator's free frames and the old image's frames outside
    /// the region (`new_hv::free`). `None` in a version 1 page.
    pub free_digest: Option<u64>,
    /// The digest of the contents of every page-table frame the state's
    /// runs list, taken before the jump (`new_hv::tables`). `None` in a
    /// version 1 page.
    pub tables_digest: Option<u64>,
    /// The watchdog armed before the jump, if any (only in a version 4
    /// page: `None` in older ones, which no watchdog goes with).
    pub watchdog: Option<Watchdog>,
}

/// The argument page as it lies in memory: field for field the table of
/// the module documentation and of docs/abi.md §5.2. [`EntryArgs`] holds
/// the same arguments as numbers; [`EntryArgs::to_bytes`] and
/// [`EntryArgs::from_bytes`] fill and check the magic, version, size, CRC
/// and reserved word.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawEntryArgs {
    /// [`ENTRY_ARGS_MAGIC`].
    pub magic: [u8; 8],
    /// [`ENTRY_ARGS_VERSION`].
    pub version: U32,
    /// [`ENTRY_ARGS_SIZE`].
    pub size: U32,
    /// [`EntryArgs::state_phys`].
    pub state_phys: U64,
    /// [`EntryArgs::state_len`].
    pub state_len: U64,
    /// [`EntryArgs::image_phys`].
    pub image_phys: U64,
    /// [`EntryArgs::image_len`].
    pub image_len: U64,
    /// [`EntryArgs::region_base`].
    pub region_base: U64,
    /// [`EntryArgs::region_size`].
    pub region_size: U64,
    /// [`EntryArgs::ram_end`].
    pub ram_end: U64,
    /// [`EntryArgs::digest`].
    pub digest: U64,
    /// [`EntryArgs::tsc_khz`].
    pub tsc_khz: U64,
    /// [`EntryArgs::tsc_pause`].
    pub tsc_pause: U64,
    /// [`EntryArgs::tsc_paused`].
    pub tsc_paused: U64,
    /// [`EntryArgs::tsc_serialised`].
    pub tsc_serialised: U64,
    /// [`EntryArgs::tsc_preflight`].
    pub tsc_preflight: U64,
    /// [`EntryArgs::tsc_jump`].
    pub tsc_jump: U64,
    /// [`EntryArgs::free_frames`].
    pub free_frames: U64,
    /// [`EntryArgs::sequence`].
    pub sequence: U64,
    /// [`EntryArgs::image_frames_out`].
    pub image_frames_out: U64,
    /// [`EntryArgs::from_build_id`].
    pub from_build_id: [u8; 16],
    /// [`EntryArgs::free_digest`].
    pub free_digest: U64,
    /// [`EntryArgs::tables_digest`].
    pub tables_digest: U64,
    /// [`EntryArgs::watchdog`]'s device code, 0 for none.
    pub watchdog: U32,
    /// [`EntryArgs::watchdog`]'s deadline, 0 for none.
    pub watchdog_ms: U32,
    /// [`EntryArgs::watchdog`]'s marker page, 0 for none.
    pub marker_phys: U64,
    /// CRC32C of every byte before this field.
    pub crc32c: U32,
    /// Zero.
    pub reserved: U32,
}

// The layout docs/abi.md §5.2 gives, checked when the crate compiles.
hvlu_types::assert_layout!(RawEntryArgs, ENTRY_ARGS_SIZE, {
    magic: 0,
    version: 8,
    size: 12,
    state_phys: 16,
    state_len: 24,
    image_phys: 32,
    image_len: 40,
    region_base: 48,
    region_size: 56,
    ram_end: 64,
    digest: 72,
    tsc_khz: 80,
    tsc_pause: 88,
    tsc_paused: 96,
    tsc_serialised: 104,
    tsc_preflight: 112,
    tsc_jump: 120,
    free_frames: 128,
    sequence: 136,
    image_frames_out: 144,
    from_build_id: 152,
    free_digest: 168,
    tables_digest: 176,
    watchdog: 184,
    watchdog_ms: 188,
    marker_phys: 192,
    crc32c: 200,
    reserved: 204,
});

/// The argument page of version 1 (the 1.0 release's): [`RawEntryArgs`]
/// up to `from_build_id`, then its CRC and reserved word.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawEntryArgsV1 {
    /// Bytes 0..168, laid out as in [`RawEntryArgs`].
    pub common: [u8; V1_CRC_AT],
    /// CRC32C of `common`.
    pub crc32c: U32,
    /// Zero.
    pub reserved: U32,
}

/// Where version 1's CRC-covered bytes end: where version 3 carries
/// `free_digest`.
const V1_CRC_AT: usize = offset_of!(RawEntryArgs, free_digest);

hvlu_types::assert_layout!(RawEntryArgsV1, ENTRY_ARGS_V1_SIZE, {
    common: 0,
    crc32c: 168,
    reserved: 172,
});

/// The argument page of version 3 (the releases 1.1 to 1.3):
/// [`RawEntryArgs`] up to `tables_digest`, then its CRC and reserved word.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawEntryArgsV3 {
    /// Bytes 0..184, laid out as in [`RawEntryArgs`].
    pub common: [u8; V3_CRC_AT],
    /// CRC32C of `common`.
    pub crc32c: U32,
    /// Zero.
    pub reserved: U32,
}

/// Where version 3's CRC-covered bytes end: where version 4 carries
/// `watchdog`.
const V3_CRC_AT: usize = offset_of!(RawEntryArgs, watchdog);

hvlu_types::assert_layout!(RawEntryArgsV3, ENTRY_ARGS_V3_SIZE, {
    common: 0,
    crc32c: 184,
    reserved: 188,
});

/// Why an argument page was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryArgsError {
    /// The buffer is shorter than [`ENTRY_ARGS_SIZE`].
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The magic is not `HVLUARGS`.
    BadMagic,
    /// A version or size this reader does not know.
    UnsupportedVersion {
        /// The version found.
        version: u32,
        /// The size found.
        size: u32,
    },
    /// The CRC32C does not match.
    CrcMismatch {
        /// The CRC stored in the page.
        stored: u32,
        /// The CRC of the page's bytes.
        computed: u32,
    },
    /// The reserved word is not zero.
    ReservedNotZero,
    /// The watchdog words name no device this crate knows, or a deadline
    /// or marker page that does not go with their device (none with a
    /// deadline or a marker, a device without either, a marker page not
    /// page aligned).
    BadWatchdog {
        /// The device code.
        code: u32,
        /// The deadline.
        deadline_ms: u32,
        /// The marker page.
        marker_phys: u64,
    },
}

impl core::fmt::Display for EntryArgsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EntryArgsError::Truncated { len } => {
                write!(f, "entry arguments truncated: {len} of {ENTRY_ARGS_SIZE} bytes")
            }
            EntryArgsError::BadMagic => f.write_str("entry arguments: bad magic"),
            EntryArgsError::UnsupportedVersion { version, size } => write!(
                f,
                "entry arguments version {version} size {size} not supported (this image reads version {ENTRY_ARGS_V1} size {ENTRY_ARGS_V1_SIZE}, version {ENTRY_ARGS_V3} size {ENTRY_ARGS_V3_SIZE} and version {ENTRY_ARGS_VERSION} size {ENTRY_ARGS_SIZE})"
            ),
            EntryArgsError::BadWatchdog {
                code,
                deadline_ms,
                marker_phys,
            } => write!(
                f,
                "entry arguments: watchdog {code} with a deadline of {deadline_ms} ms and its marker at {marker_phys:#x} is not one this image knows"
            ),
            EntryArgsError::CrcMismatch { stored, computed } => write!(
                f,
                "entry arguments CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            EntryArgsError::ReservedNotZero => f.write_str("entry arguments: reserved word not zero"),
        }
    }
}

/// Where the CRC-covered bytes end: the offset of the CRC field.
const CRC_AT: usize = offset_of!(RawEntryArgs, crc32c);
#[cfg(test)]
const FREE_DIGEST_AT: usize = offset_of!(RawEntryArgs, free_digest);
#[cfg(test)]
const TABLES_DIGEST_AT: usize = offset_of!(RawEntryArgs, tables_digest);

impl EntryArgs {
    /// The argument page, with its magic, version, size and reserved word
    /// set and its CRC computed.
    pub fn to_raw(&self) -> RawEntryArgs {
        let mut raw = RawEntryArgs {
            magic: ENTRY_ARGS_MAGIC,
            version: ENTRY_ARGS_VERSION.into(),
            size: (ENTRY_ARGS_SIZE as u32).into(),
            state_phys: self.state_phys.into(),
            state_len: self.state_len.into(),
            image_phys: self.image_phys.into(),
            image_len: self.image_len.into(),
            region_base: self.region_base.into(),
            region_size: self.region_size.into(),
            ram_end: self.ram_end.into(),
            digest: self.digest.into(),
            tsc_khz: self.tsc_khz.into(),
            tsc_pause: self.tsc_pause.into(),
            tsc_paused: self.tsc_paused.into(),
            tsc_serialised: self.tsc_serialised.into(),
            tsc_preflight: self.tsc_preflight.into(),
            tsc_jump: self.tsc_jump.into(),
            free_frames: self.free_frames.into(),
            sequence: self.sequence.into(),
            image_frames_out: self.image_frames_out.into(),
            from_build_id: self.from_build_id.0,
            free_digest: self.free_digest.unwrap_or(0).into(),
            tables_digest: self.tables_digest.unwrap_or(0).into(),
            watchdog: self.watchdog.map_or(0, |w| w.device.code()).into(),
            watchdog_ms: self.watchdog.map_or(0, |w| w.deadline_ms).into(),
            marker_phys: self.watchdog.map_or(0, |w| w.marker_phys).into(),
            crc32c: U32::ZERO,
            reserved: U32::ZERO,
        };
        raw.crc32c = crc32c(&raw.as_bytes()[..CRC_AT]).into();
        raw
    }

    /// The arguments `raw` carries, read without any check but of the
    /// watchdog words (see [`EntryArgs::from_bytes`] for the checked
    /// version).
    pub fn from_raw(raw: &RawEntryArgs) -> Result<EntryArgs, EntryArgsError> {
        let (code, deadline_ms, marker_phys) = (
            raw.watchdog.get(),
            raw.watchdog_ms.get(),
            raw.marker_phys.get(),
        );
        let bad = EntryArgsError::BadWatchdog {
            code,
            deadline_ms,
            marker_phys,
        };
        let watchdog = match (code, deadline_ms, marker_phys) {
            (0, 0, 0) => None,
            (code, ms, marker) if ms > 0 && marker > 0 && marker.is_multiple_of(4096) => {
                Some(Watchdog {
                    device: WatchdogDevice::from_code(code).ok_or(bad)?,
                    deadline_ms: ms,
                    marker_phys: marker,
                })
            }
            _ => return Err(bad),
        };
        Ok(EntryArgs {
            state_phys: raw.state_phys.get(),
            state_len: raw.state_len.get(),
            image_phys: raw.image_phys.get(),
            image_len: raw.image_len.get(),
            region_base: raw.region_base.get(),
            region_size: raw.region_size.get(),
            ram_end: raw.ram_end.get(),
            digest: raw.digest.get(),
            tsc_khz: raw.tsc_khz.get(),
            tsc_pause: raw.tsc_pause.get(),
            tsc_paused: raw.tsc_paused.get(),
            tsc_serialised: raw.tsc_serialised.get(),
            tsc_preflight: raw.tsc_preflight.get(),
            tsc_jump: raw.tsc_jump.get(),
            free_frames: raw.free_frames.get(),
            sequence: raw.sequence.get(),
            image_frames_out: raw.image_frames_out.get(),
            from_build_id: BuildId(raw.from_build_id),
            free_digest: Some(raw.free_digest.get()),
            tables_digest: Some(raw.tables_digest.get()),
            watchdog,
        })
    }

    /// The argument page's bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_ARGS_SIZE] {
        zerocopy::transmute!(self.to_raw())
    }

    /// The argument page of `version` (one of [`ENTRY_ARGS_READS`]) in the
    /// first bytes of the returned buffer, and how many: version 1 drops
    /// the two digests and the watchdog, version 3 the watchdog, which
    /// they do not carry.
    pub fn to_bytes_as(
        &self,
        version: u32,
    ) -> Result<([u8; ENTRY_ARGS_SIZE], usize), EntryArgsError> {
        let (covered, size) = match version {
            ENTRY_ARGS_VERSION => return Ok((self.to_bytes(), ENTRY_ARGS_SIZE)),
            ENTRY_ARGS_V3 => (V3_CRC_AT, ENTRY_ARGS_V3_SIZE),
            ENTRY_ARGS_V1 => (V1_CRC_AT, ENTRY_ARGS_V1_SIZE),
            _ => return Err(EntryArgsError::UnsupportedVersion { version, size: 0 }),
        };
        // An older page is the newest one's first `covered` bytes, then
        // its own CRC and reserved word.
        let mut raw = self.to_raw();
        raw.version = version.into();
        raw.size = (size as u32).into();
        let mut out = [0u8; ENTRY_ARGS_SIZE];
        out[..covered].copy_from_slice(&raw.as_bytes()[..covered]);
        let crc = crc32c(&out[..covered]);
        out[covered..covered + 4].copy_from_slice(&crc.to_le_bytes());
        Ok((out, size))
    }

    /// Reads an argument page of any version in [`ENTRY_ARGS_READS`],
    /// checking magic, version, size, CRC and the watchdog words; a
    /// version 1 page has no digests (`None`), neither version 1 nor 3 a
    /// watchdog.
    pub fn from_bytes(b: &[u8]) -> Result<EntryArgs, EntryArgsError> {
        let head = b
            .first_chunk::<16>()
            .ok_or(EntryArgsError::Truncated { len: b.len() })?;
        if head[..8] != ENTRY_ARGS_MAGIC {
            return Err(EntryArgsError::BadMagic);
        }
        let word =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let (version, size) = (word(8), word(12));
        let covered = match (version, size as usize) {
            (ENTRY_ARGS_VERSION, ENTRY_ARGS_SIZE) => CRC_AT,
            (ENTRY_ARGS_V3, ENTRY_ARGS_V3_SIZE) => V3_CRC_AT,
            (ENTRY_ARGS_V1, ENTRY_ARGS_V1_SIZE) => V1_CRC_AT,
            _ => return Err(EntryArgsError::UnsupportedVersion { version, size }),
        };
        let bytes = b
            .get(..size as usize)
            .ok_or(EntryArgsError::Truncated { len: b.len() })?;
        let word = |at: usize| {
            U32::new(u32::from_le_bytes([
                bytes[at],
                bytes[at + 1],
                bytes[at + 2],
                bytes[at + 3],
            ]))
        };
        check_crc(word(covered), &bytes[..covered], word(covered + 4))?;
        // The fields an older page does not carry read as zero, then as
        // absent.
        let mut full = [0u8; ENTRY_ARGS_SIZE];
        full[..covered].copy_from_slice(&bytes[..covered]);
        let raw: &RawEntryArgs = zerocopy::transmute_ref!(&full);
        let args = EntryArgs::from_raw(raw)?;
        Ok(match version {
            ENTRY_ARGS_V1 => EntryArgs {
                free_digest: None,
                tables_digest: None,
                ..args
            },
            _ => args,
        })
    }
}

/// The CRC and reserved-word checks every version shares.
fn check_crc(stored: U32, covered: &[u8], reserved: U32) -> Result<(), EntryArgsError> {
    let (stored, computed) = (stored.get(), crc32c(covered));
    if stored != computed {
        return Err(EntryArgsError::CrcMismatch { stored, computed });
    }
    if reserved != U32::ZERO {
        return Err(EntryArgsError::ReservedNotZero);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EntryArgs {
        EntryArgs {
            state_phys: 0x1c40_0000,
            state_len: 4321,
            image_phys: 0x1c20_0000,
            image_len: 0x8_0000,
            region_base: 0x1c00_0000,
            region_size: 64 << 20,
            ram_end: 512 << 20,
            digest: 0xdead_beef_f00d_cafe,
            tsc_khz: 2_600_000,
            tsc_pause: 1,
            tsc_paused: 5,
            tsc_serialised: 2,
            tsc_preflight: 3,
            tsc_jump: 4,
            free_frames: 110_000,
            sequence: 7,
            image_frames_out: 175,
            from_build_id: BuildId([0xab; 16]),
            free_digest: Some(0x0123_4567_89ab_cdef),
            tables_digest: Some(0xfedc_ba98_7654_3210),
            watchdog: Some(Watchdog {
                device: WatchdogDevice::Ib700,
                deadline_ms: 10_000,
                marker_phys: 0x6000,
            }),
        }
    }

    #[test]
    fn fields_sit_at_their_documented_offsets() {
        let b = sample().to_bytes();
        let u64_at = |at: usize| &b[at..at + 8];
        assert_eq!(&b[0..8], b"HVLUARGS");
        assert_eq!(&b[8..12], &4u32.to_le_bytes());
        assert_eq!(&b[12..16], &208u32.to_le_bytes());
        let words: [(usize, u64); 19] = [
            (16, 0x1c40_0000),
            (24, 4321),
            (32, 0x1c20_0000),
            (40, 0x8_0000),
            (48, 0x1c00_0000),
            (56, 64 << 20),
            (64, 512 << 20),
            (72, 0xdead_beef_f00d_cafe),
            (80, 2_600_000),
            (88, 1),
            (96, 5),
            (104, 2),
            (112, 3),
            (120, 4),
            (128, 110_000),
            (136, 7),
            (144, 175),
            (168, 0x0123_4567_89ab_cdef),
            (176, 0xfedc_ba98_7654_3210),
        ];
        for (at, value) in words {
            assert_eq!(u64_at(at), &value.to_le_bytes(), "word at {at}");
        }
        assert_eq!(&b[152..168], &[0xab; 16]);
        assert_eq!(&b[184..188], &1u32.to_le_bytes());
        assert_eq!(&b[188..192], &10_000u32.to_le_bytes());
        assert_eq!(&b[192..200], &0x6000u64.to_le_bytes());
        assert_eq!(&b[200..204], &crc32c(&b[..200]).to_le_bytes());
        assert_eq!(&b[204..208], &[0; 4]);
    }

    #[test]
    fn round_trip() {
        let args = sample();
        assert_eq!(EntryArgs::from_bytes(&args.to_bytes()), Ok(args));
    }

    #[test]
    fn truncated() {
        let b = sample().to_bytes();
        assert_eq!(
            EntryArgs::from_bytes(&b[..100]),
            Err(EntryArgsError::Truncated { len: 100 })
        );
    }

    #[test]
    fn bad_magic() {
        let mut b = sample().to_bytes();
        b[0] = b'X';
        assert_eq!(EntryArgs::from_bytes(&b), Err(EntryArgsError::BadMagic));
    }

    #[test]
    fn unsupported_version() {
        let mut b = sample().to_bytes();
        b[8] = 5;
        assert_eq!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::UnsupportedVersion {
                version: 5,
                size: ENTRY_ARGS_SIZE as u32
            })
        );
    }

    #[test]
    fn corrupted_field_with_stale_crc() {
        let mut b = sample().to_bytes();
        b[72] ^= 1; // the digest
        assert!(matches!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn version_1_is_the_1_0_release_s_page_and_reads_back_without_digests() {
        let args = sample();
        let (b, len) = args.to_bytes_as(ENTRY_ARGS_V1).unwrap();
        assert_eq!(len, 176);
        // The 1.0 release's layout: the fields of version 3 up to the build
        // id, then the CRC of bytes 0..168 and a zero word; nothing after.
        let v3 = args.to_bytes();
        assert_eq!(&b[0..8], b"HVLUARGS");
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..16], &176u32.to_le_bytes());
        assert_eq!(b[16..168], v3[16..168]);
        assert_eq!(&b[168..172], &crc32c(&b[..168]).to_le_bytes());
        assert_eq!(&b[172..192], &[0; 20]);
        let read = EntryArgs::from_bytes(&b[..len]).unwrap();
        assert_eq!(
            read,
            EntryArgs {
                free_digest: None,
                tables_digest: None,
                watchdog: None,
                ..args
            }
        );
        // Its CRC covers every field.
        let mut bad = b;
        bad[100] ^= 1;
        assert!(matches!(
            EntryArgs::from_bytes(&bad[..len]),
            Err(EntryArgsError::CrcMismatch { .. })
        ));
        assert_eq!(
            EntryArgs::from_bytes(&b[..170]),
            Err(EntryArgsError::Truncated { len: 170 })
        );
        // Versions nobody reads are refused by name, writing them too.
        assert_eq!(
            args.to_bytes_as(2),
            Err(EntryArgsError::UnsupportedVersion {
                version: 2,
                size: 0
            })
        );
    }

    #[test]
    fn version_3_is_the_1_1_to_1_3_releases_page_and_reads_back_without_a_watchdog() {
        let args = sample();
        let (b, len) = args.to_bytes_as(ENTRY_ARGS_V3).unwrap();
        assert_eq!(len, 192);
        let v4 = args.to_bytes();
        assert_eq!(&b[8..12], &3u32.to_le_bytes());
        assert_eq!(&b[12..16], &192u32.to_le_bytes());
        assert_eq!(b[16..184], v4[16..184]);
        assert_eq!(&b[184..188], &crc32c(&b[..184]).to_le_bytes());
        assert_eq!(&b[188..208], &[0; 20]);
        assert_eq!(
            EntryArgs::from_bytes(&b[..len]),
            Ok(EntryArgs {
                watchdog: None,
                ..args
            })
        );
        let mut bad = b;
        bad[180] ^= 1;
        assert!(matches!(
            EntryArgs::from_bytes(&bad[..len]),
            Err(EntryArgsError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn the_watchdog_words_are_checked_and_covered_by_the_crc() {
        let without = EntryArgs {
            watchdog: None,
            ..sample()
        };
        assert_eq!(EntryArgs::from_bytes(&without.to_bytes()), Ok(without));
        let mut b = sample().to_bytes();
        b[188] ^= 1;
        assert!(matches!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::CrcMismatch { .. })
        ));
        // A device nobody knows, none with a deadline or a marker, one
        // without either, a marker not page aligned.
        for (code, deadline_ms, marker_phys) in [
            (2u32, 1000u32, 0x6000u64),
            (0, 1000, 0),
            (0, 0, 0x6000),
            (1, 0, 0x6000),
            (1, 1000, 0),
            (1, 1000, 0x6008),
        ] {
            let mut raw = sample().to_raw();
            raw.watchdog = code.into();
            raw.watchdog_ms = deadline_ms.into();
            raw.marker_phys = marker_phys.into();
            raw.crc32c = crc32c(&raw.as_bytes()[..CRC_AT]).into();
            assert_eq!(
                EntryArgs::from_bytes(raw.as_bytes()),
                Err(EntryArgsError::BadWatchdog {
                    code,
                    deadline_ms,
                    marker_phys
                }),
                "{code} {deadline_ms} {marker_phys:#x}"
            );
        }
    }

    #[test]
    fn version_2_is_no_longer_read() {
        // A version-2 page: 184 bytes, CRC at 176.
        let mut b = sample().to_bytes();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        b[12..16].copy_from_slice(&184u32.to_le_bytes());
        assert_eq!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::UnsupportedVersion {
                version: 2,
                size: 184
            })
        );
    }

    #[test]
    fn the_tables_digest_is_covered_by_the_crc() {
        let mut b = sample().to_bytes();
        assert_eq!(b[TABLES_DIGEST_AT], 0x10);
        b[TABLES_DIGEST_AT] ^= 1;
        assert!(matches!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn the_free_digest_is_covered_by_the_crc() {
        let mut b = sample().to_bytes();
        assert_eq!(b[FREE_DIGEST_AT], 0xef);
        b[FREE_DIGEST_AT] ^= 1;
        assert!(matches!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn reserved_not_zero() {
        let mut b = sample().to_bytes();
        b[CRC_AT + 4] = 1;
        assert_eq!(
            EntryArgs::from_bytes(&b),
            Err(EntryArgsError::ReservedNotZero)
        );
    }
}
