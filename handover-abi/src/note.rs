//! The `HVLU` ELF note that every hypervisor image carries.
//!
//! It tells an outgoing hypervisor, before anything is paused, which handover
//! versions the image reads and writes, where its live-update entry is, and
//! the rest of what the image reads when it is entered (its [`NoteContract`]:
//! the argument-page versions, the staging layouts, its boot). It is an
//! ordinary ELF note (`Elf64_Nhdr`: 4-byte words, name and descriptor each
//! padded to 4 bytes), 72 bytes in all as this crate writes it, 4-byte
//! aligned in a `PT_NOTE` segment. Loaders find it through the program
//! headers and never read section names; an image places it in the input
//! section [`NOTE_SECTION`], which its linker script puts in the `PT_NOTE`
//! segment (`hv/linker.ld`: in the output section `.note`, after the Xen
//! PVH note). `docs/abi.md` §4.1 shows one in hex:
//!
//! ```text
//! offset size field
//! ------ ---- -------------------------------------------------------------
//!      0    4 namesz      5
//!      4    4 descsz      52 (36 in the 1.0 release, 44 in builds between)
//!      8    4 type        1 (NOTE_TYPE)
//!     12    8 name        "HVLU\0" and 3 bytes of zero padding
//!     20    - desc:
//!     20    4   version     note format version, 1
//!     24    2   min_major   oldest handover ABI version the image reads ...
//!     26    2   min_minor
//!     28    2   max_major   ... and the newest
//!     30    2   max_minor
//!     32    8   entry       live-update entry: a virtual address in the
//!                           image's ELF address space, not zero
//!     40   16   build_id    the image's build id
//!     56    - (end of the 36-byte descriptor of the 1.0 release)
//!     56    2   writes_min_major  oldest handover ABI version the image
//!     58    2   writes_min_minor  writes ...
//!     60    2   writes_max_major  ... and the newest
//!     62    2   writes_max_minor
//!     64    - (end of the 44-byte descriptor of unreleased builds)
//!     64    4   args_versions  argument-page versions the image reads,
//!                              bit v for version v (ArgsVersions)
//!     68    2   layouts        staging layouts it accepts (Layouts):
//!                              bit 0 image first, bit 1 state first
//!     70    2   boot_model     whose boot it runs (BootModel): 1 the 1.0
//!                              release's, 2 this tree's `new_hv::boot`
//!     72
//! ```
//!
//! All integers are little-endian. The note version changes only when the
//! layout above changes incompatibly; fields added later are appended to the
//! descriptor, and a parser ignores descriptor bytes past the ones it knows
//! (the 1.0 release's parser reads the first 36 bytes and ignores the rest,
//! which is why the fields after them could be added without a new note
//! version). Two groups were added so:
//!
//! - the `writes` range: a descriptor of at least [`MIN_DESC_SIZE`] (36)
//!   bytes but shorter than [`WRITES_DESC_SIZE`] (44) parses with
//!   [`ImageNote::writes`] `None`;
//! - the contract ([`NoteContract`]): a descriptor shorter than
//!   [`DESC_SIZE`] (52) parses with [`ImageNote::contract`] `None`.
//!
//! Bytes of a group that is not whole are ignored like unknown ones. What a
//! note without a contract means is the outgoing side's to decide
//! (`old_hv::image::Contract`): the 36-byte note is the 1.0 release's, whose
//! contract [`NoteContract::RELEASE_1_0`] records; a 44-byte note was only
//! ever carried by unreleased builds.
//!
//! The contract's masks keep bits this crate has no name for (an argument
//! page version 5, a layout bit 7) and its boot model may be one this crate
//! does not know: the note states what the image reads, and the writer
//! refuses what it cannot write, naming it. What the parser refuses is a
//! contract that cannot be met by anyone: no argument-page version
//! ([`NoteError::NoArgsVersion`]), no layout ([`NoteError::NoLayout`]), or
//! boot model 0 ([`NoteError::ZeroBootModel`], a field left unset).
//!
//! An image places the note with [`HvluNote`] (no unsafe code needed):
//!
//! ```no_run
//! use handover_abi::note::{HvluNote, CONTRACT};
//! use handover_abi::{BuildId, READS, WRITES};
//!
//! unsafe extern "C" fn lu_entry() -> ! {
//!     loop {}
//! }
//!
//! #[used]
//! #[link_section = ".note.hvlu"]
//! static HVLU_NOTE: HvluNote<unsafe extern "C" fn() -> !> =
//!     HvluNote::new(READS, WRITES, CONTRACT, lu_entry, BuildId([0x42; 16]));
//! ```
//!
//! The loader finds it with [`find_note`] (from an iterator of
//! `(name, type, desc)` such as goblin's notes), or parses one raw note record
//! with [`parse_note`].

use core::fmt;
use core::mem::{align_of, offset_of, size_of};
use core::ops::Deref;

use crate::entry::ENTRY_ARGS_READS;
use crate::header::BuildId;
use crate::version::{AbiVersion, VersionRange};

/// The note's name, with its terminating NUL (`namesz` is its length, 5).
pub const NOTE_NAME: &[u8; 5] = b"HVLU\0";
/// The note's type.
pub const NOTE_TYPE: u32 = 1;
/// The note format version this crate writes and reads.
pub const NOTE_VERSION: u32 = 1;
/// The input section an image places the note in; its linker script puts
/// it in a `PT_NOTE` segment (loaders read no section name).
pub const NOTE_SECTION: &str = ".note.hvlu";
/// Size of the note header (`namesz`, `descsz`, `type`).
pub const NHDR_SIZE: usize = 12;
/// Size of the name field, padded to 4 bytes.
pub const NAME_FIELD_SIZE: usize = 8;
/// Offset of the descriptor in the note.
pub const DESC_OFFSET: usize = NHDR_SIZE + NAME_FIELD_SIZE;
/// Size of the version-1 descriptor this crate writes (with `writes` and
/// the contract).
pub const DESC_SIZE: usize = 52;
/// Size of the whole version-1 note this crate writes.
pub const NOTE_SIZE: usize = DESC_OFFSET + DESC_SIZE;
/// The shortest version-1 descriptor a parser accepts: the 1.0 release's,
/// from before the `writes` range was appended (no `writes`, no contract).
pub const MIN_DESC_SIZE: usize = 36;
/// Size of the whole note of the 1.0 release.
pub const MIN_NOTE_SIZE: usize = DESC_OFFSET + MIN_DESC_SIZE;
/// Size of a descriptor with `writes` but no contract: only unreleased
/// builds between the 1.0 release and the contract's addition carry it.
pub const WRITES_DESC_SIZE: usize = 44;
/// Size of the whole note of such a build.
pub const WRITES_NOTE_SIZE: usize = DESC_OFFSET + WRITES_DESC_SIZE;

/// Byte offsets of the fields inside the descriptor.
pub mod desc_offset {
    /// Note format version, u32.
    pub const VERSION: usize = 0;
    /// Oldest ABI version read: major, u16.
    pub const MIN_MAJOR: usize = 4;
    /// Oldest ABI version read: minor, u16.
    pub const MIN_MINOR: usize = 6;
    /// Newest ABI version read: major, u16.
    pub const MAX_MAJOR: usize = 8;
    /// Newest ABI version read: minor, u16.
    pub const MAX_MINOR: usize = 10;
    /// Live-update entry, u64.
    pub const ENTRY: usize = 12;
    /// Build id, 16 bytes.
    pub const BUILD_ID: usize = 20;
    /// Oldest ABI version written: major, u16. Absent from the 36-byte
    /// descriptors of older images.
    pub const WRITES_MIN_MAJOR: usize = 36;
    /// Oldest ABI version written: minor, u16.
    pub const WRITES_MIN_MINOR: usize = 38;
    /// Newest ABI version written: major, u16.
    pub const WRITES_MAX_MAJOR: usize = 40;
    /// Newest ABI version written: minor, u16.
    pub const WRITES_MAX_MINOR: usize = 42;
    /// Argument-page versions read, a u32 bitmask ([`super::ArgsVersions`]).
    /// Absent from descriptors shorter than 52 bytes, like the two below.
    pub const ARGS_VERSIONS: usize = 44;
    /// Staging layouts accepted, a u16 bitmask ([`super::Layouts`]).
    pub const LAYOUTS: usize = 48;
    /// Boot model, a u16 ([`super::BootModel`]).
    pub const BOOT_MODEL: usize = 50;
}

/// A set of live-update argument-page versions (`handover_abi::entry`) as
/// a bitmask: bit `v` is version `v`. Versions 0 to 31 can be named.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ArgsVersions(pub u32);

impl ArgsVersions {
    /// The set of `versions`; a version above 31 does not fit (a compile
    /// error in a const).
    pub const fn of(versions: &[u32]) -> ArgsVersions {
        let mut bits = 0u32;
        let mut i = 0;
        while i < versions.len() {
            assert!(versions[i] < 32, "argument page versions are 0 to 31");
            bits |= 1 << versions[i];
            i += 1;
        }
        ArgsVersions(bits)
    }

    /// Whether version `v` is in the set.
    pub const fn contains(self, v: u32) -> bool {
        v < 32 && self.0 & (1 << v) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The versions in both sets.
    pub const fn intersection(self, other: ArgsVersions) -> ArgsVersions {
        ArgsVersions(self.0 & other.0)
    }

    /// The highest version in the set.
    pub const fn highest(self) -> Option<u32> {
        match self.0 {
            0 => None,
            bits => Some(31 - bits.leading_zeros()),
        }
    }

    /// The versions in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..32).filter(move |&v| self.contains(v))
    }
}

impl fmt::Display for ArgsVersions {
    /// `{1, 3}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for ArgsVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArgsVersions({self})")
    }
}

/// A set of staging layouts, as a bitmask: where the handover state may lie
/// relative to the staged image in the live-update region
/// (`old_hv::staging::Order`, `docs/abi.md` §5.3).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Layouts(pub u16);

impl Layouts {
    /// Image first: `[image][argument page][trampoline page][entry
    /// tables][state]`, the state above the image's span. The 1.0 release
    /// accepts only this one.
    pub const IMAGE_FIRST: Layouts = Layouts(1 << 0);
    /// State first: `[state][argument page][trampoline page][entry
    /// tables][image]`, the state below the image, which ends at the top of
    /// the free gap it is staged in.
    pub const STATE_FIRST: Layouts = Layouts(1 << 1);
    /// Every layout this crate names.
    pub const KNOWN: Layouts = Layouts(Self::IMAGE_FIRST.0 | Self::STATE_FIRST.0);

    /// Every layout of either set.
    pub const fn union(self, other: Layouts) -> Layouts {
        Layouts(self.0 | other.0)
    }

    /// Whether every layout of `other` is in the set.
    pub const fn contains(self, other: Layouts) -> bool {
        self.0 & other.0 == other.0
    }

    /// The layouts in both sets.
    pub const fn intersection(self, other: Layouts) -> Layouts {
        Layouts(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Layouts {
    /// `{image first, state first}`; a bit this crate has no name for is
    /// shown as `bit N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut first = true;
        for bit in 0..16 {
            if self.0 & (1 << bit) == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match Layouts(1 << bit) {
                Layouts::IMAGE_FIRST => f.write_str("image first")?,
                Layouts::STATE_FIRST => f.write_str("state first")?,
                _ => write!(f, "bit {bit}")?,
            }
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Layouts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Layouts({self})")
    }
}

/// Whose boot an image runs after the jump: how it sizes and places its
/// early allocations in the live-update region, which the outgoing side
/// dry-runs before the pause (`new_hv::boot::Model`). An id names one set of
/// sizes for good: a build whose boot needs differ states a new id. Ids this
/// crate does not name can be held, so that a writer can refuse them by
/// number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootModel(pub u16);

impl BootModel {
    /// The 1.0 release's boot (git 15a2f57): a fixed 8 MiB heap, a boot
    /// allocator of 64 records (`new_hv::boot::Model::Release1_0`).
    pub const RELEASE_1_0: BootModel = BootModel(1);
    /// This tree's `new_hv::boot` (`new_hv::boot::Model::Current`).
    pub const CURRENT: BootModel = BootModel(2);

    /// Its name, if this crate knows it.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            BootModel::RELEASE_1_0 => Some("the 1.0 release's boot"),
            BootModel::CURRENT => Some("this tree's boot"),
            _ => None,
        }
    }
}

impl fmt::Display for BootModel {
    /// `2 (this tree's boot)`, or `7 (unknown)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name().unwrap_or("unknown"))
    }
}

impl fmt::Debug for BootModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootModel({self})")
    }
}

/// What an image reads when it is entered, besides the handover body: the
/// argument-page versions, the staging layouts it accepts and its boot.
/// The outgoing side agrees on one of each before anything is paused, or
/// refuses the image (`old_hv::image::Contract`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoteContract {
    /// The argument-page versions the image reads.
    pub args: ArgsVersions,
    /// The staging layouts it accepts.
    pub layouts: Layouts,
    /// Its boot.
    pub boot: BootModel,
}

impl NoteContract {
    /// The 1.0 release's contract, which its 36-byte note predates: it
    /// reads argument page version 1 only, accepts the image first only,
    /// and boots as [`BootModel::RELEASE_1_0`].
    pub const RELEASE_1_0: NoteContract = NoteContract {
        args: ArgsVersions::of(&[crate::entry::ENTRY_ARGS_V1]),
        layouts: Layouts::IMAGE_FIRST,
        boot: BootModel::RELEASE_1_0,
    };
}

/// This tree's contract, what an image built from it states: the
/// argument-page versions `handover_abi::entry` reads
/// ([`ENTRY_ARGS_READS`]), either layout (`new_hv::staging` takes the
/// staged range as the hull of both), and this tree's boot.
pub const CONTRACT: NoteContract = NoteContract {
    args: ArgsVersions::of(&ENTRY_ARGS_READS),
    layouts: Layouts::KNOWN,
    boot: BootModel::CURRENT,
};

/// What an image's `HVLU` note says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageNote {
    /// The handover ABI versions the image reads.
    pub reads: VersionRange,
    /// The handover ABI versions the image writes (hands over in), or `None`
    /// if the note is the short form of an image built before the field
    /// existed ([`MIN_DESC_SIZE`]-byte descriptor).
    pub writes: Option<VersionRange>,
    /// What else the image reads when it is entered, or `None` if the note
    /// predates the field (a descriptor shorter than [`DESC_SIZE`]). Never
    /// `Some` when `writes` is `None`: the contract follows `writes` in the
    /// descriptor.
    pub contract: Option<NoteContract>,
    /// The live-update entry: a virtual address in the image's ELF address space.
    pub entry: u64,
    /// The image's build id.
    pub build_id: BuildId,
}

/// A way in which an image's `HVLU` note is missing or wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// No note is named `HVLU`.
    #[error("the image has no HVLU note")]
    Missing,
    /// More than one `HVLU` note of type [`NOTE_TYPE`].
    #[error("the image has more than one HVLU note of type {NOTE_TYPE}")]
    Duplicate,
    /// A note record is shorter than its header or than the sizes it declares.
    #[error("truncated note: {len} bytes, the record needs {needed}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the record needs.
        needed: u64,
    },
    /// A note record's name is not `HVLU\0`.
    #[error("wrong note name (namesz {namesz}): not an HVLU note")]
    WrongName {
        /// The record's `namesz`.
        namesz: u32,
    },
    /// An `HVLU` note has a type other than [`NOTE_TYPE`].
    #[error("HVLU note of type {found}, expected {NOTE_TYPE}")]
    WrongType {
        /// The note's type.
        found: u32,
    },
    /// The descriptor is too short for its version (shorter than
    /// [`MIN_DESC_SIZE`]).
    #[error("HVLU note descriptor is {len} bytes, version {NOTE_VERSION} needs at least {MIN_DESC_SIZE}")]
    DescTooShort {
        /// The descriptor's length.
        len: usize,
    },
    /// The note format version is not one this parser reads.
    #[error("HVLU note version {found}, this parser reads version {NOTE_VERSION}")]
    UnknownVersion {
        /// The note's version.
        found: u32,
    },
    /// The range of ABI versions read is empty (its maximum is older than
    /// its minimum).
    #[error("HVLU note ABI range read {min}..={max} is empty")]
    EmptyAbiRange {
        /// The oldest version.
        min: AbiVersion,
        /// The newest version.
        max: AbiVersion,
    },
    /// The range of ABI versions written is empty (its maximum is older than
    /// its minimum).
    #[error("HVLU note ABI range written {min}..={max} is empty")]
    EmptyWritesRange {
        /// The oldest version.
        min: AbiVersion,
        /// The newest version.
        max: AbiVersion,
    },
    /// The live-update entry is zero.
    #[error("HVLU note live-update entry is zero")]
    ZeroEntry,
    /// The contract names no argument-page version: no writer can enter
    /// the image.
    #[error("HVLU note contract reads no argument page version (args_versions is 0)")]
    NoArgsVersion,
    /// The contract accepts no staging layout.
    #[error("HVLU note contract accepts no staging layout (layouts is 0)")]
    NoLayout,
    /// The contract's boot model is 0, which names no model (a field left
    /// unset).
    #[error("HVLU note contract boot model is 0, which names no model")]
    ZeroBootModel,
}

impl ImageNote {
    /// Parses a note descriptor (the bytes after the padded name): at least
    /// [`MIN_DESC_SIZE`] bytes; [`ImageNote::writes`] is read if the
    /// descriptor has [`WRITES_DESC_SIZE`] bytes or more,
    /// [`ImageNote::contract`] if it has [`DESC_SIZE`] or more, and bytes
    /// past those are ignored.
    pub fn parse_desc(desc: &[u8]) -> Result<ImageNote, NoteError> {
        let too_short = NoteError::DescTooShort { len: desc.len() };
        let version = u32::from_le_bytes(*desc.first_chunk::<4>().ok_or(too_short)?);
        if version != NOTE_VERSION {
            return Err(NoteError::UnknownVersion { found: version });
        }
        let d: &[u8; MIN_DESC_SIZE] = desc.first_chunk().ok_or(too_short)?;
        let reads = range_at(
            d,
            [
                desc_offset::MIN_MAJOR,
                desc_offset::MIN_MINOR,
                desc_offset::MAX_MAJOR,
                desc_offset::MAX_MINOR,
            ],
        );
        if reads.is_empty() {
            return Err(NoteError::EmptyAbiRange {
                min: reads.min,
                max: reads.max,
            });
        }
        let mut entry = [0u8; 8];
        entry.copy_from_slice(&d[desc_offset::ENTRY..desc_offset::ENTRY + 8]);
        let entry = u64::from_le_bytes(entry);
        if entry == 0 {
            return Err(NoteError::ZeroEntry);
        }
        let mut build_id = [0u8; 16];
        build_id.copy_from_slice(&d[desc_offset::BUILD_ID..desc_offset::BUILD_ID + 16]);
        let writes = match desc.first_chunk::<WRITES_DESC_SIZE>() {
            None => None,
            Some(d) => {
                let writes = range_at(
                    d,
                    [
                        desc_offset::WRITES_MIN_MAJOR,
                        desc_offset::WRITES_MIN_MINOR,
                        desc_offset::WRITES_MAX_MAJOR,
                        desc_offset::WRITES_MAX_MINOR,
                    ],
                );
                if writes.is_empty() {
                    return Err(NoteError::EmptyWritesRange {
                        min: writes.min,
                        max: writes.max,
                    });
                }
                Some(writes)
            }
        };
        let contract = match desc.first_chunk::<DESC_SIZE>() {
            None => None,
            Some(d) => Some(contract_at(d)?),
        };
        Ok(ImageNote {
            reads,
            writes,
            contract,
            entry,
            build_id: BuildId(build_id),
        })
    }

    /// The version-1 descriptor, encoded field by field: [`DESC_SIZE`]
    /// bytes; the [`WRITES_DESC_SIZE`]-byte form if `contract` is `None`;
    /// the [`MIN_DESC_SIZE`]-byte form of the 1.0 release if `writes` is
    /// `None` (the contract, which would follow `writes`, is then not
    /// written). A note as [`ImageNote::parse_desc`] returns it encodes to
    /// a descriptor that parses back to it.
    pub fn to_desc(&self) -> NoteBytes<DESC_SIZE> {
        let mut d = [0u8; DESC_SIZE];
        let mut put = |at: usize, bytes: &[u8]| d[at..at + bytes.len()].copy_from_slice(bytes);
        put(desc_offset::VERSION, &NOTE_VERSION.to_le_bytes());
        put(desc_offset::MIN_MAJOR, &self.reads.min.major.to_le_bytes());
        put(desc_offset::MIN_MINOR, &self.reads.min.minor.to_le_bytes());
        put(desc_offset::MAX_MAJOR, &self.reads.max.major.to_le_bytes());
        put(desc_offset::MAX_MINOR, &self.reads.max.minor.to_le_bytes());
        put(desc_offset::ENTRY, &self.entry.to_le_bytes());
        put(desc_offset::BUILD_ID, &self.build_id.0);
        let len = match (self.writes, self.contract) {
            (None, _) => MIN_DESC_SIZE,
            (Some(w), contract) => {
                put(desc_offset::WRITES_MIN_MAJOR, &w.min.major.to_le_bytes());
                put(desc_offset::WRITES_MIN_MINOR, &w.min.minor.to_le_bytes());
                put(desc_offset::WRITES_MAX_MAJOR, &w.max.major.to_le_bytes());
                put(desc_offset::WRITES_MAX_MINOR, &w.max.minor.to_le_bytes());
                match contract {
                    None => WRITES_DESC_SIZE,
                    Some(c) => {
                        put(desc_offset::ARGS_VERSIONS, &c.args.0.to_le_bytes());
                        put(desc_offset::LAYOUTS, &c.layouts.0.to_le_bytes());
                        put(desc_offset::BOOT_MODEL, &c.boot.0.to_le_bytes());
                        DESC_SIZE
                    }
                }
            }
        };
        NoteBytes { bytes: d, len }
    }

    /// The whole note record (header, padded name, descriptor), encoded
    /// field by field: [`NOTE_SIZE`] bytes, or fewer for a note without
    /// a contract or `writes` (see [`ImageNote::to_desc`]).
    pub fn to_note_bytes(&self) -> NoteBytes<NOTE_SIZE> {
        let desc = self.to_desc();
        let mut n = [0u8; NOTE_SIZE];
        n[0..4].copy_from_slice(&(NOTE_NAME.len() as u32).to_le_bytes());
        n[4..8].copy_from_slice(&(desc.len() as u32).to_le_bytes());
        n[8..12].copy_from_slice(&NOTE_TYPE.to_le_bytes());
        n[NHDR_SIZE..NHDR_SIZE + NOTE_NAME.len()].copy_from_slice(NOTE_NAME);
        n[DESC_OFFSET..DESC_OFFSET + desc.len()].copy_from_slice(&desc);
        NoteBytes {
            bytes: n,
            len: DESC_OFFSET + desc.len(),
        }
    }
}

/// The contract of a whole descriptor: its masks must not be empty and its
/// boot model not 0; unknown bits and ids are kept.
fn contract_at(d: &[u8; DESC_SIZE]) -> Result<NoteContract, NoteError> {
    let u16_at = |at: usize| u16::from_le_bytes([d[at], d[at + 1]]);
    let at = desc_offset::ARGS_VERSIONS;
    let args = ArgsVersions(u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]));
    let layouts = Layouts(u16_at(desc_offset::LAYOUTS));
    let boot = BootModel(u16_at(desc_offset::BOOT_MODEL));
    if args.is_empty() {
        return Err(NoteError::NoArgsVersion);
    }
    if layouts.is_empty() {
        return Err(NoteError::NoLayout);
    }
    if boot.0 == 0 {
        return Err(NoteError::ZeroBootModel);
    }
    Ok(NoteContract {
        args,
        layouts,
        boot,
    })
}

/// The version range whose `min_major`, `min_minor`, `max_major` and
/// `max_minor` are the u16s at these offsets of `d`.
fn range_at(d: &[u8], [min_major, min_minor, max_major, max_minor]: [usize; 4]) -> VersionRange {
    let u16_at = |at: usize| u16::from_le_bytes([d[at], d[at + 1]]);
    VersionRange::new(
        AbiVersion::new(u16_at(min_major), u16_at(min_minor)),
        AbiVersion::new(u16_at(max_major), u16_at(max_minor)),
    )
}

/// An encoded descriptor or note record ([`ImageNote::to_desc`],
/// [`ImageNote::to_note_bytes`]): the first bytes of an `N`-byte buffer, `N`
/// being the size of the full form; fewer for the short form of a note
/// without `writes`. It dereferences to those bytes.
#[derive(Clone, Copy)]
pub struct NoteBytes<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> NoteBytes<N> {
    /// The encoded bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Deref for NoteBytes<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> AsRef<[u8]> for NoteBytes<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> PartialEq for NoteBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for NoteBytes<N> {}

impl<const N: usize> PartialEq<[u8]> for NoteBytes<N> {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize, const M: usize> PartialEq<[u8; M]> for NoteBytes<N> {
    fn eq(&self, other: &[u8; M]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> fmt::Debug for NoteBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

/// Parses the note record at the start of `record` (an `Elf64_Nhdr`, the
/// name padded to 4 bytes, the descriptor), which must be the `HVLU` note.
/// Bytes after the record are ignored.
pub fn parse_note(record: &[u8]) -> Result<ImageNote, NoteError> {
    let truncated = |needed: u64| NoteError::Truncated {
        len: record.len(),
        needed,
    };
    let Some(nhdr) = record.first_chunk::<NHDR_SIZE>() else {
        return Err(truncated(NHDR_SIZE as u64));
    };
    let word = |at: usize| u32::from_le_bytes([nhdr[at], nhdr[at + 1], nhdr[at + 2], nhdr[at + 3]]);
    let (namesz, descsz, n_type) = (word(0), word(4), word(8));
    let desc_start = NHDR_SIZE as u64 + u64::from(namesz).next_multiple_of(4);
    let desc_end = desc_start + u64::from(descsz);
    if (record.len() as u64) < desc_end {
        return Err(truncated(desc_end));
    }
    // In range: both ends are at most `record.len()`.
    let name = &record[NHDR_SIZE..NHDR_SIZE + namesz as usize];
    if name != NOTE_NAME {
        return Err(NoteError::WrongName { namesz });
    }
    if n_type != NOTE_TYPE {
        return Err(NoteError::WrongType { found: n_type });
    }
    ImageNote::parse_desc(&record[desc_start as usize..desc_end as usize])
}

/// Finds and parses the `HVLU` note among an image's notes, given as
/// `(name, type, desc)`. Names are compared without trailing NULs, so both
/// `b"HVLU"` and `b"HVLU\0"` match. Notes of other names are skipped.
///
/// Errors: [`NoteError::Missing`] if no note is named `HVLU`,
/// [`NoteError::WrongType`] if `HVLU` notes exist but none of type
/// [`NOTE_TYPE`], [`NoteError::Duplicate`] if two have that type, or the
/// descriptor's error.
pub fn find_note<'a, I>(notes: I) -> Result<ImageNote, NoteError>
where
    I: IntoIterator<Item = (&'a [u8], u32, &'a [u8])>,
{
    let mut found: Option<&'a [u8]> = None;
    let mut other_type = None;
    for (name, n_type, desc) in notes {
        if !is_hvlu_name(name) {
            continue;
        }
        if n_type != NOTE_TYPE {
            other_type.get_or_insert(n_type);
            continue;
        }
        if found.replace(desc).is_some() {
            return Err(NoteError::Duplicate);
        }
    }
    match (found, other_type) {
        (Some(desc), _) => ImageNote::parse_desc(desc),
        (None, Some(n_type)) => Err(NoteError::WrongType { found: n_type }),
        (None, None) => Err(NoteError::Missing),
    }
}

/// Whether a note record's name is `HVLU` (its NUL padding ignored): the
/// records [`find_note`] looks at.
pub fn is_hvlu_name(name: &[u8]) -> bool {
    trim_nuls(name) == b"HVLU"
}

fn trim_nuls(name: &[u8]) -> &[u8] {
    let len = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &name[..len]
}

/// Types that can fill the entry field of an [`HvluNote`]: 8-byte values whose
/// bytes are the entry address — `u64`, or a pointer to the entry function
/// that the linker fills in.
pub trait NoteEntry: Copy + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! note_entry {
    ($($t:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl NoteEntry for $t {}
        const _: () = assert!(size_of::<$t>() == 8);
    )*};
}

note_entry!(
    u64,
    extern "C" fn(),
    unsafe extern "C" fn(),
    extern "C" fn() -> !,
    unsafe extern "C" fn() -> !,
);

/// The whole `HVLU` note as an image places it in its `.note.hvlu` section
/// (see the [module documentation](self) for the layout and an example).
///
/// `E` is the type of the entry field: an entry function pointer in an image,
/// so the linker writes the address, or `u64` in tests. The struct is
/// `repr(C, packed(4))` so that it has no padding and an alignment of 4, as a
/// note section needs; its layout is checked at compile time against the
/// offsets of the module documentation.
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct HvluNote<E: NoteEntry> {
    namesz: u32,
    descsz: u32,
    n_type: u32,
    name: [u8; NAME_FIELD_SIZE],
    version: u32,
    min_major: u16,
    min_minor: u16,
    max_major: u16,
    max_minor: u16,
    entry: E,
    build_id: [u8; 16],
    writes_min_major: u16,
    writes_min_minor: u16,
    writes_max_major: u16,
    writes_max_minor: u16,
    args_versions: u32,
    layouts: u16,
    boot_model: u16,
}

impl<E: NoteEntry> HvluNote<E> {
    /// The note of an image that reads `reads`, writes `writes`, reads
    /// `contract` when entered, enters a live update at `entry` and has
    /// build id `build_id`. It has the [`DESC_SIZE`]-byte descriptor.
    pub const fn new(
        reads: VersionRange,
        writes: VersionRange,
        contract: NoteContract,
        entry: E,
        build_id: BuildId,
    ) -> Self {
        HvluNote {
            namesz: NOTE_NAME.len() as u32,
            descsz: DESC_SIZE as u32,
            n_type: NOTE_TYPE,
            name: *b"HVLU\0\0\0\0",
            version: NOTE_VERSION,
            min_major: reads.min.major,
            min_minor: reads.min.minor,
            max_major: reads.max.major,
            max_minor: reads.max.minor,
            entry,
            build_id: build_id.0,
            writes_min_major: writes.min.major,
            writes_min_minor: writes.min.minor,
            writes_max_major: writes.max.major,
            writes_max_minor: writes.max.minor,
            args_versions: contract.args.0,
            layouts: contract.layouts.0,
            boot_model: contract.boot.0,
        }
    }

    /// What the note says the image reads when entered.
    pub const fn contract(&self) -> NoteContract {
        NoteContract {
            args: ArgsVersions(self.args_versions),
            layouts: Layouts(self.layouts),
            boot: BootModel(self.boot_model),
        }
    }

    /// The ABI versions the note says the image reads.
    pub const fn reads(&self) -> VersionRange {
        VersionRange::new(
            AbiVersion::new(self.min_major, self.min_minor),
            AbiVersion::new(self.max_major, self.max_minor),
        )
    }

    /// The ABI versions the note says the image writes.
    pub const fn writes(&self) -> VersionRange {
        VersionRange::new(
            AbiVersion::new(self.writes_min_major, self.writes_min_minor),
            AbiVersion::new(self.writes_max_major, self.writes_max_minor),
        )
    }

    /// The entry field.
    pub const fn entry(&self) -> E {
        self.entry
    }

    /// The build id, as the note was built with it.
    pub const fn build_id(&self) -> BuildId {
        BuildId(self.build_id)
    }

    /// Where the build id lies: for an image whose build tool stamps the
    /// id into the linked file (docs/abi.md §4.2), the running image reads
    /// it through this pointer with a volatile read, which the compiler
    /// cannot replace with the value [`HvluNote::new`] was given.
    pub const fn build_id_field(&self) -> *const [u8; 16] {
        &raw const self.build_id
    }
}

impl HvluNote<u64> {
    /// The note's bytes as they lie in memory: each field written at its
    /// offset in the struct (`offset_of!`), little-endian. The compile-time
    /// layout checks below make this the struct's exact memory image.
    pub fn to_bytes(&self) -> [u8; NOTE_SIZE] {
        let mut b = [0u8; NOTE_SIZE];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        let n = *self;
        put(offset_of!(Self, namesz), &{ n.namesz }.to_le_bytes());
        put(offset_of!(Self, descsz), &{ n.descsz }.to_le_bytes());
        put(offset_of!(Self, n_type), &{ n.n_type }.to_le_bytes());
        put(offset_of!(Self, name), &{ n.name });
        put(offset_of!(Self, version), &{ n.version }.to_le_bytes());
        put(offset_of!(Self, min_major), &{ n.min_major }.to_le_bytes());
        put(offset_of!(Self, min_minor), &{ n.min_minor }.to_le_bytes());
        put(offset_of!(Self, max_major), &{ n.max_major }.to_le_bytes());
        put(offset_of!(Self, max_minor), &{ n.max_minor }.to_le_bytes());
        put(offset_of!(Self, entry), &{ n.entry }.to_le_bytes());
        put(offset_of!(Self, build_id), &{ n.build_id });
        put(
            offset_of!(Self, writes_min_major),
            &{ n.writes_min_major }.to_le_bytes(),
        );
        put(
            offset_of!(Self, writes_min_minor),
            &{ n.writes_min_minor }.to_le_bytes(),
        );
        put(
            offset_of!(Self, writes_max_major),
            &{ n.writes_max_major }.to_le_bytes(),
        );
        put(
            offset_of!(Self, writes_max_minor),
            &{ n.writes_max_minor }.to_le_bytes(),
        );
        put(
            offset_of!(Self, args_versions),
            &{ n.args_versions }.to_le_bytes(),
        );
        put(offset_of!(Self, layouts), &{ n.layouts }.to_le_bytes());
        put(
            offset_of!(Self, boot_model),
            &{ n.boot_model }.to_le_bytes(),
        );
        b
    }
}

impl<E: NoteEntry + fmt::Debug> fmt::Debug for HvluNote<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HvluNote")
            .field("reads", &self.reads())
            .field("writes", &self.writes())
            .field("contract", &self.contract())
            .field("entry", &self.entry())
            .field("build_id", &self.build_id())
            .finish()
    }
}

/// The struct layout is the documented note layout, for every entry type.
macro_rules! check_layout {
    ($($t:ty),*) => {$(
        const _: () = {
            type N = HvluNote<$t>;
            assert!(size_of::<N>() == NOTE_SIZE);
            assert!(align_of::<N>() == 4);
            assert!(offset_of!(N, namesz) == 0);
            assert!(offset_of!(N, descsz) == 4);
            assert!(offset_of!(N, n_type) == 8);
            assert!(offset_of!(N, name) == NHDR_SIZE);
            assert!(offset_of!(N, version) == DESC_OFFSET + desc_offset::VERSION);
            assert!(offset_of!(N, min_major) == DESC_OFFSET + desc_offset::MIN_MAJOR);
            assert!(offset_of!(N, min_minor) == DESC_OFFSET + desc_offset::MIN_MINOR);
            assert!(offset_of!(N, max_major) == DESC_OFFSET + desc_offset::MAX_MAJOR);
            assert!(offset_of!(N, max_minor) == DESC_OFFSET + desc_offset::MAX_MINOR);
            assert!(offset_of!(N, entry) == DESC_OFFSET + desc_offset::ENTRY);
            assert!(offset_of!(N, build_id) == DESC_OFFSET + desc_offset::BUILD_ID);
            assert!(offset_of!(N, writes_min_major) == DESC_OFFSET + desc_offset::WRITES_MIN_MAJOR);
            assert!(offset_of!(N, writes_min_minor) == DESC_OFFSET + desc_offset::WRITES_MIN_MINOR);
            assert!(offset_of!(N, writes_max_major) == DESC_OFFSET + desc_offset::WRITES_MAX_MAJOR);
            assert!(offset_of!(N, writes_max_minor) == DESC_OFFSET + desc_offset::WRITES_MAX_MINOR);
            assert!(offset_of!(N, args_versions) == DESC_OFFSET + desc_offset::ARGS_VERSIONS);
            assert!(offset_of!(N, layouts) == DESC_OFFSET + desc_offset::LAYOUTS);
            assert!(offset_of!(N, boot_model) == DESC_OFFSET + desc_offset::BOOT_MODEL);
        };
    )*};
}

check_layout!(
    u64,
    extern "C" fn(),
    unsafe extern "C" fn(),
    extern "C" fn() -> !,
    unsafe extern "C" fn() -> !
);

#[cfg(test)]
mod tests;
