//! Load step of a live update: validate a new hypervisor image and stage it.
//!
//! Dom0 hands the running hypervisor the bytes of an ELF file, signed
//! ([`crate::signature::verify`] checks the trailer first and hands on the
//! bytes before it). Before anything is paused, [`validate`] decides whether those bytes are an image
//! this hypervisor can hand over to, and describes it ([`ImageInfo`]); then
//! [`stage`] copies it into the staging area of the live-update region through
//! a [`StagingArea`]. A refused image leaves the system untouched: validation
//! only reads the bytes, and staging writes only the staging area.
//!
//! # What an image looks like
//!
//! A hypervisor image (see `hv/linker.ld`) is one physically contiguous block.
//! Its small 32-bit cold-boot stub (`.boot`) is linked at its physical address;
//! everything else runs in the upper half, at `0xffffffff80000000` + physical
//! address, and its program headers carry the physical address in `p_paddr`:
//!
//! ```text
//!  p_paddr:  phys_start                                         phys_start + span
//!            |<- .boot ->|  |<- .text ->|  |<- .rodata ->|  |<- .data | .bss ->|
//!  offset:   0           ...                                               span
//!  p_vaddr:  = p_paddr      = 0xffffffff80000000 + p_paddr  (4 KiB congruent)
//! ```
//!
//! The image is *staged* at some 4 KiB-aligned physical base inside the
//! live-update region, not at its link physical address: every segment goes to
//! `base + (p_paddr - phys_start)` (its [`Segment::offset`]). No relocation
//! entries are applied: the code that runs after a live update runs at its
//! link virtual addresses, which the outgoing hypervisor maps onto the staged
//! copy ([`ImageInfo::mappings`]); only the cold-boot stub cares about the
//! physical address, and it does not run on a live update. The live-update
//! entry is entered at its virtual address ([`ImageNote::entry`]); its staged
//! physical address is `base + entry_offset`.
//!
//! # The rules, and why each exists
//!
//! Checked in this order; the first broken rule is the error.
//!
//! 1. **ELF64, little-endian, x86_64, `ET_EXEC`.** The header is read as
//!    ELF64 LE ([`ImageError::NotElf`], [`ImageError::TruncatedHeader`],
//!    [`ImageError::Not64Bit`], [`ImageError::NotLittleEndian`]); an image for
//!    another machine cannot run ([`ImageError::WrongMachine`]); a relocatable
//!    or shared object would need a dynamic loader that does not exist here
//!    ([`ImageError::NotExecutable`]).
//! 2. **The program header table is whole and small.** Its entries are 56
//!    bytes ([`ImageError::BadProgramHeaderSize`]), there are at most
//!    [`MAX_PROGRAM_HEADERS`] of them ([`ImageError::TooManyProgramHeaders`]:
//!    validation allocates per header, from a hypervisor heap of a few MiB,
//!    so the count is bounded before anything is allocated; a hypervisor
//!    image has half a dozen) and it lies inside the file
//!    ([`ImageError::ProgramHeadersBeyondEndOfFile`]). Section headers are
//!    never read: a loader needs only segments, and a hypervisor should not
//!    refuse an image over a symbol table.
//! 3. **Every `PT_LOAD` and `PT_NOTE` segment's file range is inside the
//!    file** ([`ImageError::SegmentBeyondEndOfFile`]): staging copies those
//!    bytes and must never read past the buffer dom0 gave.
//! 4. **Every `PT_LOAD` has `p_filesz <= p_memsz`**
//!    ([`ImageError::FileSizeExceedsMemSize`]): the loader copies `filesz`
//!    bytes into a `memsz`-byte range and zeroes the rest; more file bytes
//!    than memory would spill into whatever follows.
//! 5. **No address arithmetic overflows** ([`ImageError::AddressOverflow`]):
//!    `p_paddr + p_memsz` and `p_vaddr + p_memsz`, rounded up to 4 KiB, fit in
//!    64 bits, so that every later range comparison means what it says.
//! 6. **Virtual ranges are canonical** ([`ImageError::NonCanonicalSegment`]):
//!    each segment lies wholly below `0x0000_8000_0000_0000` or at or above
//!    `0xffff_8000_0000_0000` (4-level paging), because page tables cannot map
//!    anything else and an index computed from a non-canonical address would
//!    silently map a different one.
//! 7. **`p_vaddr % 4096 == p_paddr % 4096`** ([`ImageError::MisalignedSegment`]):
//!    pages are mapped whole, so a byte lands at its virtual address only if it
//!    has the same offset in its virtual and in its physical page.
//! 8. **At least one `PT_LOAD` with a non-zero `p_memsz`**
//!    ([`ImageError::NoLoadableSegment`]). `PT_LOAD`s with `p_memsz == 0`
//!    occupy nothing; after rules 3 and 4 they are ignored.
//! 9. **Segments do not overlap physically** ([`ImageError::OverlappingSegments`]):
//!    otherwise the staged bytes would depend on the copy order. They may
//!    share a 4 KiB page.
//! 10. **Segments do not overlap virtually, and two that share a virtual page
//!     place it at the same physical page** ([`ImageError::OverlappingVirtualRanges`],
//!     [`ImageError::ConflictingPageMapping`]): one virtual page maps one
//!     frame.
//! 11. **The physical span fits the staging area** ([`ImageError::TooLarge`]):
//!     `[min p_paddr rounded down, max p_paddr + p_memsz rounded up)` is at most
//!     [`ImageLimits::max_span`] bytes, the live-update capacity left for the
//!     image. An update that would not fit is refused before anything pauses.
//! 12. **Exactly one `HVLU` note of type 1, in a `PT_NOTE` segment, that
//!     parses** ([`ImageError::NoNote`], [`ImageError::DuplicateNote`],
//!     [`ImageError::BadNote`]): two notes would make the ABI range and the
//!     entry ambiguous. Note records are walked with 4-byte alignment (8 for a
//!     segment with `p_align == 8`, as the gABI's 8-byte notes); a record that
//!     runs past its segment is [`NoteError::Truncated`]; notes with other
//!     names are skipped.
//! 13. **A common ABI version** ([`ImageError::NoCommonVersion`]): the highest
//!     version both in what this hypervisor writes and in the note's read
//!     range ([`negotiate`]); the state is later written in that version.
//! 14. **A contract both sides keep** ([`ImageError::Contract`]): the
//!     argument-page version, the staging layouts and the boot the image's
//!     note states it reads are ones this hypervisor writes, stages and
//!     dry-runs ([`Contract::agree`]); the update is later made to them.
//!     The image is entered after the point of no return, where a page it
//!     cannot read or a state where it does not look for it would lose
//!     every domain.
//! 15. **The entry is code of the image**
//!     ([`ImageError::EntryOutsideExecutableSegment`]): the note's entry lies
//!     in the file-backed part (`p_vaddr <= entry < p_vaddr + p_filesz`) of a
//!     `PT_LOAD` with `PF_X`. The jump happens after the point of no return;
//!     a wrong entry found then would lose every domain.
//!
//! # Staging
//!
//! [`stage`] writes each byte of `[0, span)` of the staging area exactly once,
//! in increasing order: gaps between segments and each segment's `.bss` tail
//! are zeroed, file bytes are copied. The area is whatever the hypervisor
//! implements [`StagingArea`] over (physical memory of the live-update region;
//! a `Vec` in tests); its base must be 4 KiB aligned for
//! [`ImageInfo::mappings`] to hold.

use alloc::vec::Vec;
use core::fmt;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{
    EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_X86_64, ET_EXEC, SELFMAG,
};
use goblin::elf::program_header::{ProgramHeader, PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use goblin::elf::Elf;
use goblin::elf64::header::SIZEOF_EHDR;
use goblin::elf64::program_header::SIZEOF_PHDR;
use handover_abi::entry::ENTRY_ARGS_READS;
use handover_abi::note::{
    find_note, ArgsVersions, BootModel, ImageNote, Layouts, NoteContract, NoteError, NHDR_SIZE,
    WRITES_DESC_SIZE,
};
use handover_abi::version::{negotiate, AbiVersion, VersionRange};
use new_hv::boot::Model;

use crate::staging::{End, Order};

pub use hvlu_types::canonical::{LOWER_HALF_END, UPPER_HALF_START};
/// The page size the image is laid out and mapped with.
pub use hvlu_types::PAGE_SIZE;

const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// The most program headers an image may have (rule 2). Every hypervisor
/// image this project builds has fewer than ten; a Linux `vmlinux` has five.
pub const MAX_PROGRAM_HEADERS: u16 = 128;

/// What the caller allows an image to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// The most bytes the image's physical span may cover: the staging
    /// capacity the live-update region has left for the image.
    pub max_span: u64,
}

/// A segment's `p_flags` (`PF_R`, `PF_W`, `PF_X` and any other bits, kept).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SegmentFlags(pub u32);

impl SegmentFlags {
    /// `PF_X`.
    pub const X: SegmentFlags = SegmentFlags(PF_X);
    /// `PF_W`.
    pub const W: SegmentFlags = SegmentFlags(PF_W);
    /// `PF_R`.
    pub const R: SegmentFlags = SegmentFlags(PF_R);

    /// Whether `PF_R` is set.
    pub const fn readable(self) -> bool {
        self.0 & PF_R != 0
    }

    /// Whether `PF_W` is set.
    pub const fn writable(self) -> bool {
        self.0 & PF_W != 0
    }

    /// Whether `PF_X` is set.
    pub const fn executable(self) -> bool {
        self.0 & PF_X != 0
    }

    /// Every flag of either.
    pub const fn union(self, other: SegmentFlags) -> SegmentFlags {
        SegmentFlags(self.0 | other.0)
    }
}

impl fmt::Display for SegmentFlags {
    /// `rwx`, with `-` for a missing permission.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |set: bool, c: char| if set { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            bit(self.readable(), 'r'),
            bit(self.writable(), 'w'),
            bit(self.executable(), 'x')
        )
    }
}

impl fmt::Debug for SegmentFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentFlags({self} {:#x})", self.0)
    }
}

/// One loadable segment (`PT_LOAD` with `p_memsz > 0`) of a validated image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of its program header, as `readelf -l` counts.
    pub index: usize,
    /// Where it goes, from the image's physical start (`p_paddr - phys_start`).
    pub offset: u64,
    /// Its link virtual address (`p_vaddr`).
    pub vaddr: u64,
    /// Where its bytes are in the file (`p_offset`).
    pub file_offset: u64,
    /// Bytes copied from the file (`p_filesz`).
    pub filesz: u64,
    /// Bytes it occupies in memory (`p_memsz`); those past `filesz` are zero.
    pub memsz: u64,
    /// Its permissions (`p_flags`).
    pub flags: SegmentFlags,
}

/// A page-granular piece of the virtual → physical map the new image expects:
/// `len` bytes at virtual `vaddr` are the staged bytes at `base + offset`,
/// where `base` is where the image is staged. All three are multiples of
/// [`PAGE_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address.
    pub vaddr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Offset of the first byte from the image's physical start.
    pub offset: u64,
    /// Permissions: the union of the flags of every segment on these pages
    /// (a page shared by two segments gets both sets).
    pub flags: SegmentFlags,
}

/// Everything the stager, the jump and the status command need about an image
/// that passed [`validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The handover ABI version the state will be written in.
    pub version: AbiVersion,
    /// The image's `HVLU` note: the versions it reads (and writes, unless the
    /// note is the older short form), its entry, its build id.
    pub note: ImageNote,
    /// What the update writes besides the body, agreed from the note.
    pub contract: Contract,
    /// The image's physical link start: the lowest `p_paddr`, rounded down to
    /// 4 KiB. Offsets below are from here.
    pub phys_start: u64,
    /// Bytes from `phys_start` to the highest segment end rounded up to 4 KiB:
    /// the room staging takes. A multiple of [`PAGE_SIZE`].
    pub span: u64,
    /// The live-update entry's offset from the physical start.
    pub entry_offset: u64,
    /// The loadable segments, in physical order (by `offset`); they do not
    /// overlap and each ends at most at `span`.
    pub segments: Vec<Segment>,
    /// The virtual → physical map to build before jumping: disjoint pieces in
    /// increasing virtual order, adjacent ones merged when they continue each
    /// other with the same flags.
    pub mappings: Vec<Mapping>,
    /// Length of the validated file; [`stage`] checks it is given the same.
    pub file_len: u64,
}

/// The argument-page versions this hypervisor writes
/// (`EntryArgs::to_bytes_as`): every one `handover_abi::entry` reads.
pub const WRITES_ARGS: ArgsVersions = ArgsVersions::of(&ENTRY_ARGS_READS);

/// The staging layouts this hypervisor stages ([`Order`]): both.
pub const STAGES_LAYOUTS: Layouts = Layouts::KNOWN;

/// What an update writes besides the handover body, agreed from the
/// incoming image's note before anything is paused ([`Contract::agree`]):
/// the argument page version, the staging layouts, whose boot the dry run
/// before the jump models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    /// The argument page version to write: the highest that this
    /// hypervisor writes ([`WRITES_ARGS`]) and the image reads.
    pub args_version: u32,
    /// The layouts the image accepts that this hypervisor stages: not
    /// empty. [`Contract::order_at`] picks one.
    pub layouts: Layouts,
    /// Whose boot the dry run before the jump models.
    pub boot: Model,
    /// Whether the note stated the contract; `false` for the 1.0
    /// release's 36-byte note, which predates the field.
    pub stated: bool,
}

/// Why an image's contract cannot be kept: the load is refused, before
/// anything is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The note has a `writes` range but no contract: a
    /// [`WRITES_DESC_SIZE`]-byte descriptor, which only unreleased builds
    /// between the 1.0 release and the contract's addition wrote.
    #[error("the image's note states no contract (its {WRITES_DESC_SIZE}-byte form is only in unreleased builds after 1.0)")]
    Unstated,
    /// No argument-page version is both read by the image and written here.
    #[error("the image reads argument pages {reads}, this hypervisor writes {writes}")]
    NoCommonArgsVersion {
        /// What the image reads.
        reads: ArgsVersions,
        /// What this hypervisor writes ([`WRITES_ARGS`]).
        writes: ArgsVersions,
    },
    /// No staging layout is both accepted by the image and staged here.
    #[error("the image accepts staging layouts {accepts}, this hypervisor stages {stages}")]
    NoCommonLayout {
        /// What the image accepts.
        accepts: Layouts,
        /// What this hypervisor stages ([`STAGES_LAYOUTS`]).
        stages: Layouts,
    },
    /// The image's boot model is not one this hypervisor can dry-run.
    #[error("the image boots as model {boot}, this hypervisor knows models {{{}, {}}}", Model::Release1_0.id().0, Model::Current.id().0)]
    UnknownBootModel {
        /// The note's model.
        boot: BootModel,
    },
    /// The image does not accept the image first, the one layout of the
    /// bottom end of a free gap.
    #[error("the image accepts only the state first, and at the bottom of the gap the image comes first")]
    BottomNeedsImageFirst,
}

impl Contract {
    /// The contract an update to the image with `note` keeps: the highest
    /// argument page version both sides know, the layouts both know, the
    /// image's boot model if this build can dry-run it; or why there is
    /// none.
    ///
    /// The one contract not read from the note is the 1.0 release's: its
    /// 36-byte note (no `writes` range) predates the contract field, so it
    /// means [`NoteContract::RELEASE_1_0`] (argument page version 1, image
    /// first, the 1.0 boot) — what that release is known to read. A
    /// 44-byte note (a `writes` range, no contract) was only written by
    /// unreleased builds after 1.0, whose contracts differed from build to
    /// build: it is refused ([`ContractError::Unstated`]).
    pub fn agree(note: &ImageNote) -> Result<Contract, ContractError> {
        let (stated, c) = match (note.writes, note.contract) {
            (None, _) => (false, NoteContract::RELEASE_1_0),
            (Some(_), None) => return Err(ContractError::Unstated),
            (Some(_), Some(c)) => (true, c),
        };
        let args_version = c.args.intersection(WRITES_ARGS).highest().ok_or(
            ContractError::NoCommonArgsVersion {
                reads: c.args,
                writes: WRITES_ARGS,
            },
        )?;
        let layouts = c.layouts.intersection(STAGES_LAYOUTS);
        if layouts.is_empty() {
            return Err(ContractError::NoCommonLayout {
                accepts: c.layouts,
                stages: STAGES_LAYOUTS,
            });
        }
        let boot =
            Model::from_id(c.boot).ok_or(ContractError::UnknownBootModel { boot: c.boot })?;
        Ok(Contract {
            args_version,
            layouts,
            boot,
            stated,
        })
    }

    /// The layout preferred where there is a choice (at the top end of a
    /// gap): the state first if the image accepts it, else the image first.
    pub fn order(&self) -> Order {
        if self.layouts.contains(Layouts::STATE_FIRST) {
            Order::StateFirst
        } else {
            Order::ImageFirst
        }
    }

    /// The layout of an update staged at `end` of a gap
    /// (`crate::staging::Staging::plan_ordered`): at the top,
    /// [`Contract::order`]; at the bottom the image first, which an image
    /// that accepts only the state first refuses
    /// ([`ContractError::BottomNeedsImageFirst`]).
    pub fn order_at(&self, end: End) -> Result<Order, ContractError> {
        match end {
            End::Top => Ok(self.order()),
            End::Bottom if self.layouts.contains(Layouts::IMAGE_FIRST) => Ok(Order::ImageFirst),
            End::Bottom => Err(ContractError::BottomNeedsImageFirst),
        }
    }
}

impl ImageInfo {
    /// The live-update entry, a virtual address.
    pub fn entry(&self) -> u64 {
        self.note.entry
    }

    /// The offset from the physical start of the byte the image expects at
    /// virtual address `vaddr`, if a mapping covers it.
    pub fn offset_of(&self, vaddr: u64) -> Option<u64> {
        let i = self.mappings.partition_point(|m| m.vaddr + m.len <= vaddr);
        let m = self.mappings.get(i)?;
        (m.vaddr <= vaddr).then(|| m.offset + (vaddr - m.vaddr))
    }
}

/// A way in which an image is wrong. Each names the first rule it breaks
/// (see the [module documentation](self)); `index` is a program header index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The file does not start with `\x7fELF`.
    #[error("not an ELF file: bad magic (the image does not start with \\x7fELF)")]
    NotElf,
    /// The file is shorter than an ELF64 header.
    #[error("truncated ELF header: the image is {len} bytes, an ELF64 header needs {SIZEOF_EHDR}")]
    TruncatedHeader {
        /// The file's length.
        len: usize,
    },
    /// `EI_CLASS` is not `ELFCLASS64`.
    #[error("not a 64-bit ELF file: EI_CLASS is {class}, expected {ELFCLASS64} (ELFCLASS64)")]
    Not64Bit {
        /// The file's `EI_CLASS`.
        class: u8,
    },
    /// `EI_DATA` is not `ELFDATA2LSB`.
    #[error("wrong endianness: EI_DATA is {data}, expected {ELFDATA2LSB} (little-endian)")]
    NotLittleEndian {
        /// The file's `EI_DATA`.
        data: u8,
    },
    /// `e_machine` is not `EM_X86_64`.
    #[error("wrong machine: e_machine is {machine}, expected {EM_X86_64} (x86_64)")]
    WrongMachine {
        /// The file's `e_machine`.
        machine: u16,
    },
    /// `e_type` is not `ET_EXEC`.
    #[error("not an executable: e_type is {e_type}, expected {ET_EXEC} (ET_EXEC)")]
    NotExecutable {
        /// The file's `e_type`.
        e_type: u16,
    },
    /// `e_phentsize` is not the size of an ELF64 program header.
    #[error("program header entries are {phentsize} bytes, ELF64 needs {SIZEOF_PHDR}")]
    BadProgramHeaderSize {
        /// The file's `e_phentsize`.
        phentsize: u16,
    },
    /// More program headers than [`MAX_PROGRAM_HEADERS`].
    #[error("the image has {phnum} program headers; at most {MAX_PROGRAM_HEADERS} are accepted")]
    TooManyProgramHeaders {
        /// `e_phnum`.
        phnum: u16,
    },
    /// The program header table does not lie inside the file.
    #[error("the program header table ({phnum} entries at offset {phoff:#x}) runs past the end of the {file_len}-byte file")]
    ProgramHeadersBeyondEndOfFile {
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        phnum: u16,
        /// The file's length.
        file_len: u64,
    },
    /// A `PT_LOAD` or `PT_NOTE` segment's file range does not lie inside the file.
    #[error("segment {index}: file range {offset:#x}+{filesz:#x} runs past the end of the {file_len}-byte file")]
    SegmentBeyondEndOfFile {
        /// Program header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A `PT_LOAD` has more file bytes than memory bytes.
    #[error("segment {index}: file size {filesz:#x} exceeds memory size {memsz:#x}")]
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A `PT_LOAD`'s physical or virtual range, rounded up to 4 KiB, passes 2^64.
    #[error("segment {index}: address overflow (paddr {paddr:#x}, vaddr {vaddr:#x}, memsz {memsz:#x} pass 2^64)")]
    AddressOverflow {
        /// Program header index.
        index: usize,
        /// `p_paddr`.
        paddr: u64,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A `PT_LOAD`'s virtual range is not wholly in one canonical half.
    #[error("segment {index}: virtual range {vaddr:#x}+{memsz:#x} is not canonical (it must lie below {LOWER_HALF_END:#x} or from {UPPER_HALF_START:#x})")]
    NonCanonicalSegment {
        /// Program header index.
        index: usize,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A `PT_LOAD`'s virtual and physical addresses differ within a page.
    #[error("segment {index}: misaligned, vaddr {vaddr:#x} and paddr {paddr:#x} have different offsets in a 4 KiB page")]
    MisalignedSegment {
        /// Program header index.
        index: usize,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_paddr`.
        paddr: u64,
    },
    /// No `PT_LOAD` occupies memory.
    #[error("no loadable segment: the image has no PT_LOAD with a non-zero memory size")]
    NoLoadableSegment,
    /// Two segments overlap in physical memory.
    #[error("overlapping segments: segments {first} and {second} overlap in physical memory")]
    OverlappingSegments {
        /// Program header index of the lower one.
        first: usize,
        /// Program header index of the higher one.
        second: usize,
    },
    /// Two segments overlap in virtual memory.
    #[error("overlapping segments: segments {first} and {second} overlap in virtual memory")]
    OverlappingVirtualRanges {
        /// Program header index of the lower one.
        first: usize,
        /// Program header index of the higher one.
        second: usize,
    },
    /// Two segments share a virtual page but want it backed by different
    /// physical pages.
    #[error("segments {first} and {second} share the virtual page {page:#x} but place it at different physical addresses")]
    ConflictingPageMapping {
        /// Program header index of the lower one.
        first: usize,
        /// Program header index of the higher one.
        second: usize,
        /// The shared virtual page.
        page: u64,
    },
    /// The image's physical span is larger than the staging area.
    #[error("image too large for the staging area: it spans {span} bytes, the staging area holds {max_span}")]
    TooLarge {
        /// The image's span in bytes.
        span: u64,
        /// The staging area's capacity in bytes.
        max_span: u64,
    },
    /// No `HVLU` note in any `PT_NOTE` segment.
    #[error("no HVLU note in any PT_NOTE segment")]
    NoNote,
    /// More than one `HVLU` note of type 1.
    #[error("duplicate note: more than one HVLU note of type 1")]
    DuplicateNote,
    /// The `HVLU` note, or a note record around it, is malformed.
    #[error("bad HVLU note: {0}")]
    BadNote(NoteError),
    /// No version is both written by this hypervisor and read by the image.
    #[error(
        "no common handover ABI version: this hypervisor writes {writes}, the image reads {reads}"
    )]
    NoCommonVersion {
        /// What this hypervisor writes.
        writes: VersionRange,
        /// What the image reads (its note).
        reads: VersionRange,
    },
    /// The note's contract cannot be kept ([`Contract::agree`]). Its
    /// message is the [`ContractError`]'s, which names both sides (a
    /// refusal reaches dom0 in 127 bytes).
    #[error(transparent)]
    Contract(ContractError),
    /// The note's entry is not in the file-backed part of an executable `PT_LOAD`.
    #[error("live-update entry {entry:#x} is not inside the file-backed part of any executable (PF_X) segment")]
    EntryOutsideExecutableSegment {
        /// The note's entry.
        entry: u64,
    },
}

/// Checks that `bytes` is an image this hypervisor can hand over to, writing
/// a version within `writes`, and that it fits `limits`; describes it.
///
/// Reads `bytes` only. The rules and their order are in the
/// [module documentation](self).
pub fn validate(
    bytes: &[u8],
    writes: VersionRange,
    limits: &ImageLimits,
) -> Result<ImageInfo, ImageError> {
    let file_len = bytes.len() as u64;
    let phdrs = program_headers(bytes)?;

    let mut loads = Vec::new();
    let mut note_ranges = Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        match ph.p_type {
            PT_LOAD => {
                if let Some(load) = check_load(index, ph, file_len)? {
                    loads.push(load);
                }
            }
            PT_NOTE => {
                let range = file_range(index, ph, file_len)?;
                note_ranges.push((range, ph.p_align));
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(ImageError::NoLoadableSegment);
    }

    // Physical layout (rule 9) and span (rule 11).
    loads.sort_unstable_by_key(|l| l.paddr);
    for pair in loads.windows(2) {
        if pair[0].paddr + pair[0].memsz > pair[1].paddr {
            return Err(ImageError::OverlappingSegments {
                first: pair[0].index,
                second: pair[1].index,
            });
        }
    }
    let phys_start = loads[0].paddr & !PAGE_MASK;
    // Rule 5 made every rounded end representable.
    let phys_end = loads
        .iter()
        .map(|l| page_up(l.paddr + l.memsz))
        .max()
        .unwrap_or(phys_start);
    let span = phys_end - phys_start;

    // Virtual layout (rule 10).
    let mut by_vaddr = loads.clone();
    by_vaddr.sort_unstable_by_key(|l| l.vaddr);
    for pair in by_vaddr.windows(2) {
        let (lo, hi) = (&pair[0], &pair[1]);
        let lo_end = lo.vaddr + lo.memsz;
        if lo_end > hi.vaddr {
            return Err(ImageError::OverlappingVirtualRanges {
                first: lo.index,
                second: hi.index,
            });
        }
        let lo_last_page = (lo_end - 1) & !PAGE_MASK;
        let hi_first_page = hi.vaddr & !PAGE_MASK;
        if lo_last_page == hi_first_page && lo.delta() != hi.delta() {
            return Err(ImageError::ConflictingPageMapping {
                first: lo.index,
                second: hi.index,
                page: hi_first_page,
            });
        }
    }

    if span > limits.max_span {
        return Err(ImageError::TooLarge {
            span,
            max_span: limits.max_span,
        });
    }

    // The note (rule 12) and the version (rule 13).
    let mut records = HvluRecords::default();
    for (range, align) in note_ranges {
        let align = if align == 8 { 8 } else { 4 };
        if let Err(e) = note_records(&bytes[range], align, &mut records) {
            // An `HVLU` note before the broken record that is itself wrong
            // is the first fault in file order, and the likely cause: a
            // `descsz` too short leaves the rest of the descriptor to be
            // read as a record of garbage sizes.
            return Err(match find_note(records.kept()) {
                Err(NoteError::Missing) | Ok(_) => ImageError::BadNote(e),
                Err(NoteError::Duplicate) => ImageError::DuplicateNote,
                Err(first) => ImageError::BadNote(first),
            });
        }
    }
    let note = find_note(records.kept()).map_err(|e| match e {
        NoteError::Missing => ImageError::NoNote,
        NoteError::Duplicate => ImageError::DuplicateNote,
        other => ImageError::BadNote(other),
    })?;
    let version = negotiate(writes, note.reads).ok_or(ImageError::NoCommonVersion {
        writes,
        reads: note.reads,
    })?;
    // The contract (rule 14).
    let contract = Contract::agree(&note).map_err(ImageError::Contract)?;

    // The entry (rule 15).
    let entry = note.entry;
    let entry_offset = loads
        .iter()
        .find(|l| l.flags.executable() && entry >= l.vaddr && entry - l.vaddr < l.filesz)
        .map(|l| l.paddr - phys_start + (entry - l.vaddr))
        .ok_or(ImageError::EntryOutsideExecutableSegment { entry })?;

    let mappings = mappings(&by_vaddr, phys_start);
    let segments = loads
        .iter()
        .map(|l| Segment {
            index: l.index,
            offset: l.paddr - phys_start,
            vaddr: l.vaddr,
            file_offset: l.file_offset,
            filesz: l.filesz,
            memsz: l.memsz,
            flags: l.flags,
        })
        .collect();
    Ok(ImageInfo {
        version,
        note,
        contract,
        phys_start,
        span,
        entry_offset,
        segments,
        mappings,
        file_len,
    })
}

/// A `PT_LOAD` that passed the per-segment rules.
#[derive(Clone, Copy, Debug)]
struct Load {
    index: usize,
    paddr: u64,
    vaddr: u64,
    file_offset: u64,
    filesz: u64,
    memsz: u64,
    flags: SegmentFlags,
}

impl Load {
    /// What separates a virtual address from its physical link address; two
    /// segments on one virtual page must agree on it.
    fn delta(&self) -> u64 {
        self.vaddr.wrapping_sub(self.paddr)
    }
}

/// Rounds up to a page; the caller has checked that it does not overflow.
fn page_up(x: u64) -> u64 {
    (x + PAGE_MASK) & !PAGE_MASK
}

/// Rule 1 and 2: the ELF header and the program header table.
fn program_headers(bytes: &[u8]) -> Result<Vec<ProgramHeader>, ImageError> {
    if bytes.get(..SELFMAG) != Some(&ELFMAG[..]) {
        return Err(ImageError::NotElf);
    }
    if bytes.len() < SIZEOF_EHDR {
        return Err(ImageError::TruncatedHeader { len: bytes.len() });
    }
    if bytes[EI_CLASS] != ELFCLASS64 {
        return Err(ImageError::Not64Bit {
            class: bytes[EI_CLASS],
        });
    }
    if bytes[EI_DATA] != ELFDATA2LSB {
        return Err(ImageError::NotLittleEndian {
            data: bytes[EI_DATA],
        });
    }
    // With the identification checked and 64 bytes present, goblin's header
    // read cannot fail; were it to, the header is what is short.
    let header =
        Elf::parse_header(bytes).map_err(|_| ImageError::TruncatedHeader { len: bytes.len() })?;
    if header.e_machine != EM_X86_64 {
        return Err(ImageError::WrongMachine {
            machine: header.e_machine,
        });
    }
    if header.e_type != ET_EXEC {
        return Err(ImageError::NotExecutable {
            e_type: header.e_type,
        });
    }
    if header.e_phnum == 0 {
        // An empty table is whole; it has no loadable segment.
        return Ok(Vec::new());
    }
    if usize::from(header.e_phentsize) != SIZEOF_PHDR {
        return Err(ImageError::BadProgramHeaderSize {
            phentsize: header.e_phentsize,
        });
    }
    if header.e_phnum > MAX_PROGRAM_HEADERS {
        return Err(ImageError::TooManyProgramHeaders {
            phnum: header.e_phnum,
        });
    }
    let beyond = ImageError::ProgramHeadersBeyondEndOfFile {
        phoff: header.e_phoff,
        phnum: header.e_phnum,
        file_len: bytes.len() as u64,
    };
    let table_len = u64::from(header.e_phnum) * SIZEOF_PHDR as u64;
    match header.e_phoff.checked_add(table_len) {
        Some(end) if end <= bytes.len() as u64 => {}
        _ => return Err(beyond),
    }
    // In range: the whole table is inside `bytes`.
    let ctx = Ctx::new(Container::Big, Endian::Little);
    ProgramHeader::parse(
        bytes,
        header.e_phoff as usize,
        usize::from(header.e_phnum),
        ctx,
    )
    .map_err(|_| beyond)
}

/// Rule 3: the segment's bytes in the file.
fn file_range(
    index: usize,
    ph: &ProgramHeader,
    file_len: u64,
) -> Result<core::ops::Range<usize>, ImageError> {
    match ph.p_offset.checked_add(ph.p_filesz) {
        // Both ends are at most the file's length, so they fit a usize.
        Some(end) if end <= file_len => Ok(ph.p_offset as usize..end as usize),
        _ => Err(ImageError::SegmentBeyondEndOfFile {
            index,
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            file_len,
        }),
    }
}

/// Rules 3 to 7 for one `PT_LOAD`; `None` if it occupies no memory.
fn check_load(index: usize, ph: &ProgramHeader, file_len: u64) -> Result<Option<Load>, ImageError> {
    file_range(index, ph, file_len)?;
    if ph.p_filesz > ph.p_memsz {
        return Err(ImageError::FileSizeExceedsMemSize {
            index,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        });
    }
    if ph.p_memsz == 0 {
        return Ok(None);
    }
    let page_end = |start: u64| {
        start
            .checked_add(ph.p_memsz)
            .and_then(|end| end.checked_next_multiple_of(PAGE_SIZE))
    };
    let (Some(_), Some(vend)) = (page_end(ph.p_paddr), page_end(ph.p_vaddr)) else {
        return Err(ImageError::AddressOverflow {
            index,
            paddr: ph.p_paddr,
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
        });
    };
    if !(vend <= LOWER_HALF_END || ph.p_vaddr >= UPPER_HALF_START) {
        return Err(ImageError::NonCanonicalSegment {
            index,
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
        });
    }
    if ph.p_vaddr & PAGE_MASK != ph.p_paddr & PAGE_MASK {
        return Err(ImageError::MisalignedSegment {
            index,
            vaddr: ph.p_vaddr,
            paddr: ph.p_paddr,
        });
    }
    Ok(Some(Load {
        index,
        paddr: ph.p_paddr,
        vaddr: ph.p_vaddr,
        file_offset: ph.p_offset,
        filesz: ph.p_filesz,
        memsz: ph.p_memsz,
        flags: SegmentFlags(ph.p_flags),
    }))
}

/// A note record: `(name, type, desc)`.
type NoteRecord<'a> = (&'a [u8], u32, &'a [u8]);

/// The note records that decide what [`find_note`] finds, in file order:
/// the first two `HVLU` records of the note type (two already make a
/// duplicate) and the first `HVLU` record of another type (what a missing
/// note of the right type reports). Every other record is seen and
/// dropped, so a segment of any number of notes takes no memory.
#[derive(Default)]
struct HvluRecords<'a> {
    of_type: [Option<NoteRecord<'a>>; 2],
    other_type: Option<NoteRecord<'a>>,
}

impl<'a> HvluRecords<'a> {
    fn see(&mut self, record: NoteRecord<'a>) {
        let (name, n_type, _) = record;
        if !handover_abi::note::is_hvlu_name(name) {
            return;
        }
        let slot = if n_type == handover_abi::note::NOTE_TYPE {
            self.of_type.iter_mut().find(|r| r.is_none())
        } else {
            Some(&mut self.other_type).filter(|r| r.is_none())
        };
        if let Some(slot) = slot {
            *slot = Some(record);
        }
    }

    fn kept(&self) -> impl Iterator<Item = NoteRecord<'a>> + '_ {
        self.of_type
            .iter()
            .chain([&self.other_type])
            .flatten()
            .copied()
    }
}

/// Walks a note segment's `(name, type, desc)` records into `out`, `align`
/// being the padding of names and descriptors (4, or 8). The last record's
/// trailing padding may be missing.
fn note_records<'a>(
    mut data: &'a [u8],
    align: u64,
    out: &mut HvluRecords<'a>,
) -> Result<(), NoteError> {
    while !data.is_empty() {
        let len = data.len() as u64;
        let truncated = |needed: u64| NoteError::Truncated {
            len: data.len(),
            needed,
        };
        let Some(nhdr) = data.first_chunk::<NHDR_SIZE>() else {
            return Err(truncated(NHDR_SIZE as u64));
        };
        let word =
            |at: usize| u32::from_le_bytes([nhdr[at], nhdr[at + 1], nhdr[at + 2], nhdr[at + 3]]);
        let (namesz, descsz, n_type) = (word(0), word(4), word(8));
        // No overflow: both sizes are below 2^32.
        let name_end = NHDR_SIZE as u64 + u64::from(namesz);
        let desc_start = name_end.next_multiple_of(align);
        let desc_end = desc_start + u64::from(descsz);
        if desc_end > len {
            return Err(truncated(desc_end));
        }
        // In range: every bound is at most `data.len()`.
        out.see((
            &data[NHDR_SIZE..name_end as usize],
            n_type,
            &data[desc_start as usize..desc_end as usize],
        ));
        let next = desc_end.next_multiple_of(align).min(len);
        data = &data[next as usize..];
    }
    Ok(())
}

/// The virtual → physical map of segments sorted by virtual address that
/// passed rule 10: each segment's pages, a page shared by neighbours taking
/// the union of their flags, continuing pieces merged.
fn mappings(by_vaddr: &[Load], phys_start: u64) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for l in by_vaddr {
        let vaddr = l.vaddr & !PAGE_MASK;
        let mut piece = Mapping {
            vaddr,
            len: page_up(l.vaddr + l.memsz) - vaddr,
            offset: (l.paddr & !PAGE_MASK) - phys_start,
            flags: l.flags,
        };
        if let Some(last) = out.last_mut() {
            if last.vaddr + last.len > piece.vaddr {
                // Rule 10: the byte ranges are disjoint, so the overlap is
                // exactly the one page both touch, and its offset agrees.
                let shared = Mapping {
                    vaddr: piece.vaddr,
                    len: PAGE_SIZE,
                    offset: piece.offset,
                    flags: last.flags.union(piece.flags),
                };
                if last.len == PAGE_SIZE {
                    out.pop();
                } else {
                    last.len -= PAGE_SIZE;
                }
                push_merged(&mut out, shared);
                piece.vaddr += PAGE_SIZE;
                piece.offset += PAGE_SIZE;
                piece.len -= PAGE_SIZE;
                if piece.len == 0 {
                    continue;
                }
            }
        }
        push_merged(&mut out, piece);
    }
    out
}

fn push_merged(out: &mut Vec<Mapping>, m: Mapping) {
    if let Some(last) = out.last_mut() {
        if last.vaddr + last.len == m.vaddr
            && last.offset + last.len == m.offset
            && last.flags == m.flags
        {
            last.len += m.len;
            return;
        }
    }
    out.push(m);
}

/// Where a validated image is staged: `[0, span)` from a 4 KiB-aligned base.
/// The hypervisor implements it over physical memory of the live-update
/// region; tests over a `Vec`.
pub trait StagingArea {
    /// Why a write failed (e.g. past the end of the area).
    type Error;

    /// Writes `bytes` at `offset` from the base.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Zeroes `len` bytes at `offset` from the base.
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), Self::Error>;
}

/// Why staging failed. The staging area may then hold part of the image;
/// nothing else was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StageError<E> {
    /// The bytes are not the ones `info` was validated from (their length
    /// differs, or a segment does not lie inside them).
    #[error(
        "the bytes to stage are not the validated image ({len} bytes, validated {expected_len})"
    )]
    ImageMismatch {
        /// The validated file's length.
        expected_len: u64,
        /// The given bytes' length.
        len: u64,
    },
    /// The staging area refused a write.
    #[error("staging area: {0}")]
    Area(E),
}

/// Copies the image validated as `info` from `bytes` into `area`: every byte
/// of `[0, info.span)` is written exactly once, in increasing order — file
/// bytes of each segment at its offset, zeros in the gaps, in each segment's
/// tail past its file bytes and up to `span`.
pub fn stage<S: StagingArea>(
    info: &ImageInfo,
    bytes: &[u8],
    area: &mut S,
) -> Result<(), StageError<S::Error>> {
    let mismatch = StageError::ImageMismatch {
        expected_len: info.file_len,
        len: bytes.len() as u64,
    };
    if bytes.len() as u64 != info.file_len {
        return Err(mismatch);
    }
    let zero = |area: &mut S, from: u64, to: u64| {
        if to > from {
            area.zero(from, to - from).map_err(StageError::Area)
        } else {
            Ok(())
        }
    };
    let mut cursor = 0;
    for seg in &info.segments {
        let file = usize::try_from(seg.file_offset)
            .ok()
            .zip(usize::try_from(seg.filesz).ok())
            .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?));
        let (Some(file), true) = (file, seg.offset >= cursor) else {
            return Err(mismatch);
        };
        zero(area, cursor, seg.offset)?;
        if !file.is_empty() {
            area.write(seg.offset, file).map_err(StageError::Area)?;
        }
        cursor = seg.offset + seg.memsz;
        zero(area, seg.offset + seg.filesz, cursor)?;
    }
    zero(area, cursor, info.span)
}

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(test)]
mod tests;
