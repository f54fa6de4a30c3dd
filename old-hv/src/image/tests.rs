//! Tests of the image loader.
//!
//! Inputs are made here with the test kit's ELF writer
//! ([`testkit::ElfFile`]), not read from built hypervisors: [`hv_like`]
//! lays out an image the way `hv/linker.ld` does (a `.boot` segment at its
//! physical address 0x100000, text, rodata and data+bss in the upper half
//! at `KERNEL_VBASE + paddr`, a `PT_NOTE` inside rodata holding a `Xen`
//! note and the `HVLU` note). Each malformed-image test changes one thing
//! of that image and is named after what is then wrong with it.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use handover_abi::note::{
    ImageNote, NoteError, CONTRACT, MIN_DESC_SIZE, MIN_NOTE_SIZE, NOTE_SIZE, WRITES_DESC_SIZE,
};
use handover_abi::version::{AbiVersion, VersionRange, READS, WRITES};
use handover_abi::BuildId;
use proptest::prelude::*;

use super::testkit::{
    append_program_headers, elf, header_mut, note_record, xen_pvh_note, ElfFile, ProgramHeader, LE,
};
use super::*;

const KERNEL_VBASE: u64 = 0xffff_ffff_8000_0000;
const IMAGE_PHYS: u64 = 0x10_0000;

const RWX: u32 = PF_R | PF_W | PF_X;
const RX: u32 = PF_R | PF_X;
const R: u32 = PF_R;
const RW: u32 = PF_R | PF_W;

// Program header indices of `hv_like`.
const BOOT: usize = 0;
const TEXT: usize = 1;
const RODATA: usize = 2;
const DATA: usize = 3;
const NOTES: usize = 4;

/// The entry of `hv_like`: 0x100 bytes into text.
const ENTRY: u64 = KERNEL_VBASE + 0x10_2100;
/// Where the notes start inside rodata.
const NOTES_IN_RODATA: u64 = 0x800;

/// Plenty of room for every test image.
const LIMITS: ImageLimits = ImageLimits { max_span: 16 << 20 };

/// The memory image a loader would produce from `image`, built from what
/// the writer was given rather than by the parser: zeros over the whole
/// span, each `PT_LOAD`'s file bytes at `p_paddr - IMAGE_PHYS`.
fn expected_memory(image: &ElfFile, span: u64) -> Vec<u8> {
    let mut mem = vec![0u8; span as usize];
    for p in image.phdrs.iter().filter(|p| p.p_type == elf::PT_LOAD) {
        assert!(p.p_filesz <= p.p_memsz);
        let (at, from, len) = (
            (p.p_paddr - IMAGE_PHYS) as usize,
            p.p_offset as usize,
            p.p_filesz as usize,
        );
        mem[at..at + len].copy_from_slice(&image.body[from..from + len]);
    }
    mem
}

/// Bytes that differ from segment to segment and from place to place, so a
/// misplaced copy shows.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The PVH note QEMU boots the image by, entering at the boot segment.
fn xen_note() -> Vec<u8> {
    xen_pvh_note(0x10_0000)
}

/// The note of an image that reads `reads`, writes what this build writes
/// and states this build's contract.
fn image_note(reads: VersionRange, entry: u64) -> ImageNote {
    ImageNote {
        reads,
        writes: Some(WRITES),
        contract: Some(CONTRACT),
        entry,
        build_id: BuildId([0x42; 16]),
    }
}

/// `image_note` as a note record: the full form (52-byte descriptor).
fn hvlu_note(reads: VersionRange, entry: u64) -> Vec<u8> {
    image_note(reads, entry).to_note_bytes().to_vec()
}

/// The note record of an image built before the note said what it writes:
/// the first 36 bytes of `image_note`'s descriptor.
fn old_hvlu_note(reads: VersionRange, entry: u64) -> Vec<u8> {
    let desc = image_note(reads, entry).to_desc();
    note_record(b"HVLU\0", 1, &desc[..MIN_DESC_SIZE], 4)
}

/// A valid image laid out like `hv/linker.ld`, with these note records in
/// its `PT_NOTE` segment:
///
/// | # | segment | flags | paddr | vaddr | file | filesz | memsz |
/// |---|---|---|---|---|---|---|---|
/// | 0 | boot | rwx | 0x100000 | = paddr | 0x1000 | 0x1234 | 0x2000 |
/// | 1 | text | r-x | 0x102000 | KERNEL_VBASE + paddr | 0x3000 | 0x2345 | 0x2345 |
/// | 2 | rodata | r-- | 0x105000 | KERNEL_VBASE + paddr | 0x6000 | 0x1000 | 0x1000 |
/// | 3 | data+bss | rw- | 0x106000 | KERNEL_VBASE + paddr | 0x7000 | 0x321 | 0x4000 |
/// | 4 | PT_NOTE | r-- | 0x105800 | KERNEL_VBASE + paddr | 0x6800 | notes | notes |
fn hv_like_with_notes(notes: &[Vec<u8>]) -> ElfFile {
    let notes: Vec<u8> = notes.concat();
    assert!(notes.len() as u64 <= 0x1000 - NOTES_IN_RODATA);
    let seg = |flags, file: u64, paddr: u64, vaddr: u64, filesz: u64, memsz: u64| ProgramHeader {
        p_type: elf::PT_LOAD,
        p_flags: elf::ProgramFlags(flags),
        p_offset: file,
        p_vaddr: vaddr,
        p_paddr: paddr,
        p_filesz: filesz,
        p_memsz: memsz,
        p_align: 0x1000,
    };
    let mut phdrs = vec![
        seg(RWX, 0x1000, 0x10_0000, 0x10_0000, 0x1234, 0x2000),
        seg(
            RX,
            0x3000,
            0x10_2000,
            KERNEL_VBASE + 0x10_2000,
            0x2345,
            0x2345,
        ),
        seg(
            R,
            0x6000,
            0x10_5000,
            KERNEL_VBASE + 0x10_5000,
            0x1000,
            0x1000,
        ),
        seg(
            RW,
            0x7000,
            0x10_6000,
            KERNEL_VBASE + 0x10_6000,
            0x321,
            0x4000,
        ),
    ];
    phdrs.push(ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: elf::ProgramFlags(R),
        p_offset: 0x6000 + NOTES_IN_RODATA,
        p_vaddr: KERNEL_VBASE + 0x10_5000 + NOTES_IN_RODATA,
        p_paddr: 0x10_5000 + NOTES_IN_RODATA,
        p_filesz: notes.len() as u64,
        p_memsz: notes.len() as u64,
        p_align: 4,
    });
    let mut body = vec![0u8; 0x7321];
    for (i, p) in phdrs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type == elf::PT_LOAD)
    {
        let mut data = pattern(i as u64 + 1, p.p_filesz as usize);
        if i == RODATA {
            let at = NOTES_IN_RODATA as usize;
            data[at..at + notes.len()].copy_from_slice(&notes);
        }
        let at = p.p_offset as usize;
        body[at..at + data.len()].copy_from_slice(&data);
    }
    ElfFile {
        entry: 0x10_0000, // the PVH stub
        phdrs,
        body,
    }
}

/// The valid hypervisor-like image: a `Xen` note, then the `HVLU` note
/// (reads `READS`, entry 0x100 bytes into text).
fn hv_like() -> ElfFile {
    hv_like_with_notes(&[xen_note(), hvlu_note(READS, ENTRY)])
}

fn check(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    validate(bytes, WRITES, &LIMITS)
}

/// `hv_like` with one program header changed.
fn with_phdr(index: usize, edit: impl FnOnce(&mut ProgramHeader)) -> Vec<u8> {
    let mut image = hv_like();
    edit(&mut image.phdrs[index]);
    image.bytes()
}

/// A staging area over a `Vec` that starts full of garbage and counts how
/// often each byte is written.
#[derive(Debug)]
struct VecArea {
    mem: Vec<u8>,
    writes: Vec<u32>,
}

impl VecArea {
    fn new(len: u64) -> Self {
        VecArea {
            mem: vec![0xa5; len as usize],
            writes: vec![0; len as usize],
        }
    }

    fn range(&mut self, offset: u64, len: u64) -> Result<core::ops::Range<usize>, OutOfArea> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.mem.len() as u64);
        let Some(end) = end else {
            return Err(OutOfArea { offset, len });
        };
        for w in &mut self.writes[offset as usize..end as usize] {
            *w += 1;
        }
        Ok(offset as usize..end as usize)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OutOfArea {
    offset: u64,
    len: u64,
}

impl fmt::Display for OutOfArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x} is outside the area", self.offset, self.len)
    }
}

impl StagingArea for VecArea {
    type Error = OutOfArea;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), OutOfArea> {
        let r = self.range(offset, bytes.len() as u64)?;
        self.mem[r].copy_from_slice(bytes);
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), OutOfArea> {
        let r = self.range(offset, len)?;
        self.mem[r].fill(0);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Valid images

#[test]
fn hv_like_image_is_accepted_and_described() {
    let info = check(&hv_like().bytes()).unwrap();
    assert_eq!(info.version, handover_abi::CURRENT);
    assert_eq!(info.note, image_note(READS, ENTRY));
    assert_eq!(info.entry(), ENTRY);
    assert_eq!(info.phys_start, IMAGE_PHYS);
    assert_eq!(info.span, 0xa000);
    assert_eq!(info.entry_offset, 0x2100);
    assert_eq!(info.file_len, 0x7321);
    let seg = |index, offset, vaddr, file_offset, filesz, memsz, flags| Segment {
        index,
        offset,
        vaddr,
        file_offset,
        filesz,
        memsz,
        flags: SegmentFlags(flags),
    };
    assert_eq!(
        info.segments,
        vec![
            seg(BOOT, 0, 0x10_0000, 0x1000, 0x1234, 0x2000, RWX),
            seg(
                TEXT,
                0x2000,
                KERNEL_VBASE + 0x10_2000,
                0x3000,
                0x2345,
                0x2345,
                RX
            ),
            seg(
                RODATA,
                0x5000,
                KERNEL_VBASE + 0x10_5000,
                0x6000,
                0x1000,
                0x1000,
                R
            ),
            seg(
                DATA,
                0x6000,
                KERNEL_VBASE + 0x10_6000,
                0x7000,
                0x321,
                0x4000,
                RW
            ),
        ]
    );
    let map = |vaddr, len, offset, flags| Mapping {
        vaddr,
        len,
        offset,
        flags: SegmentFlags(flags),
    };
    assert_eq!(
        info.mappings,
        vec![
            map(0x10_0000, 0x2000, 0, RWX),
            map(KERNEL_VBASE + 0x10_2000, 0x3000, 0x2000, RX),
            map(KERNEL_VBASE + 0x10_5000, 0x1000, 0x5000, R),
            map(KERNEL_VBASE + 0x10_6000, 0x4000, 0x6000, RW),
        ]
    );
    assert_eq!(info.offset_of(ENTRY), Some(info.entry_offset));
    assert_eq!(info.offset_of(0x10_0000), Some(0));
    assert_eq!(info.offset_of(KERNEL_VBASE + 0x10_9fff), Some(0x9fff));
    assert_eq!(info.offset_of(KERNEL_VBASE + 0x10_a000), None);
    assert_eq!(info.offset_of(KERNEL_VBASE + 0x10_0000), None);
}

#[test]
fn image_with_an_old_form_note_is_accepted() {
    let note = old_hvlu_note(READS, ENTRY);
    assert_eq!(note.len(), MIN_NOTE_SIZE);
    let image = hv_like_with_notes(&[xen_note(), note]);
    let info = check(&image.bytes()).unwrap();
    assert_eq!(info.note.writes, None);
    assert_eq!(
        info.note,
        ImageNote {
            writes: None,
            contract: None,
            ..image_note(READS, ENTRY)
        }
    );
    assert_eq!(info.version, handover_abi::CURRENT);
    assert_eq!(info.entry_offset, 0x2100);
    // The one inferred contract: the 1.0 release's.
    assert_eq!(
        info.contract,
        Contract {
            args_version: 1,
            layouts: Layouts::IMAGE_FIRST,
            boot: Model::Release1_0,
            stated: false,
        }
    );
}

#[test]
fn image_with_a_full_note_is_held_to_the_contract_it_states() {
    let info = check(&hv_like().bytes()).unwrap();
    assert_eq!(info.note.contract, Some(CONTRACT));
    assert_eq!(
        info.contract,
        Contract {
            args_version: 4,
            layouts: Layouts::KNOWN,
            boot: Model::Current,
            stated: true,
        }
    );
}

#[test]
fn image_with_a_note_without_contract_is_refused_at_load() {
    // The 44-byte form of unreleased builds between 1.0 and the contract.
    let desc = image_note(READS, ENTRY).to_desc();
    let note = note_record(b"HVLU\0", 1, &desc[..WRITES_DESC_SIZE], 4);
    let image = hv_like_with_notes(&[xen_note(), note]);
    let e = check(&image.bytes()).unwrap_err();
    assert_eq!(e, ImageError::Contract(ContractError::Unstated));
    let msg = e.to_string();
    assert!(
        msg.contains("states no contract") && msg.contains("44-byte form"),
        "{msg}"
    );
}

#[test]
fn image_whose_contract_cannot_be_kept_is_refused_at_load() {
    let mut note = image_note(READS, ENTRY);
    note.contract = Some(NoteContract {
        args: ArgsVersions::of(&[5]),
        ..CONTRACT
    });
    let image = hv_like_with_notes(&[note.to_note_bytes().to_vec()]);
    let e = check(&image.bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the image reads argument pages {5}, this hypervisor writes {1, 3, 4}"
    );
}

/// The note of `image_note` with `contract`.
fn stating(contract: NoteContract) -> ImageNote {
    ImageNote {
        contract: Some(contract),
        ..image_note(READS, ENTRY)
    }
}

#[test]
fn contract_writes_the_highest_argument_page_both_know() {
    let agree = |versions: &[u32]| {
        Contract::agree(&stating(NoteContract {
            args: ArgsVersions::of(versions),
            ..CONTRACT
        }))
        .map(|c| c.args_version)
    };
    assert_eq!(agree(&[1, 3, 4]), Ok(4));
    assert_eq!(agree(&[1, 3]), Ok(3));
    assert_eq!(agree(&[1]), Ok(1));
    assert_eq!(agree(&[3]), Ok(3));
    // Versions this build does not write are passed over.
    assert_eq!(agree(&[1, 2, 3, 5, 9]), Ok(3));
    assert_eq!(agree(&[1, 2, 3, 4, 9]), Ok(4));
    assert_eq!(agree(&[1, 7]), Ok(1));
}

#[test]
fn contract_refuses_argument_pages_this_hypervisor_does_not_write() {
    let e = Contract::agree(&stating(NoteContract {
        args: ArgsVersions::of(&[2, 5]),
        ..CONTRACT
    }))
    .unwrap_err();
    assert_eq!(
        e,
        ContractError::NoCommonArgsVersion {
            reads: ArgsVersions::of(&[2, 5]),
            writes: WRITES_ARGS,
        }
    );
    assert_eq!(
        e.to_string(),
        "the image reads argument pages {2, 5}, this hypervisor writes {1, 3, 4}"
    );
}

#[test]
fn contract_stages_the_state_first_where_accepted() {
    let agree = |layouts| {
        Contract::agree(&stating(NoteContract {
            layouts,
            ..CONTRACT
        }))
        .unwrap()
    };
    let both = agree(Layouts::KNOWN);
    assert_eq!(both.order(), Order::StateFirst);
    assert_eq!(both.order_at(End::Top), Ok(Order::StateFirst));
    assert_eq!(both.order_at(End::Bottom), Ok(Order::ImageFirst));
    let image_first = agree(Layouts::IMAGE_FIRST);
    assert_eq!(image_first.order(), Order::ImageFirst);
    assert_eq!(image_first.order_at(End::Top), Ok(Order::ImageFirst));
    assert_eq!(image_first.order_at(End::Bottom), Ok(Order::ImageFirst));
    // Unknown layout bits are ignored where a known one is accepted.
    let with_unknown = agree(Layouts(Layouts::IMAGE_FIRST.0 | 1 << 9));
    assert_eq!(with_unknown.layouts, Layouts::IMAGE_FIRST);
}

#[test]
fn contract_of_an_image_that_accepts_only_the_state_first() {
    let c = Contract::agree(&stating(NoteContract {
        layouts: Layouts::STATE_FIRST,
        ..CONTRACT
    }))
    .unwrap();
    assert_eq!(c.order_at(End::Top), Ok(Order::StateFirst));
    let e = c.order_at(End::Bottom).unwrap_err();
    assert_eq!(e, ContractError::BottomNeedsImageFirst);
    assert!(e.to_string().contains("only the state first"), "{e}");
}

#[test]
fn contract_refuses_layouts_this_hypervisor_does_not_stage() {
    let e = Contract::agree(&stating(NoteContract {
        layouts: Layouts(1 << 2 | 1 << 7),
        ..CONTRACT
    }))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the image accepts staging layouts {bit 2, bit 7}, this hypervisor stages {image first, state first}"
    );
}

#[test]
fn contract_boots_each_known_model() {
    for (id, model) in [
        (BootModel::RELEASE_1_0, Model::Release1_0),
        (BootModel::CURRENT, Model::Current),
    ] {
        let c = Contract::agree(&stating(NoteContract {
            boot: id,
            ..CONTRACT
        }))
        .unwrap();
        assert_eq!(c.boot, model);
        assert!(c.stated);
    }
}

#[test]
fn contract_refuses_an_unknown_boot_model() {
    let e = Contract::agree(&stating(NoteContract {
        boot: BootModel(3),
        ..CONTRACT
    }))
    .unwrap_err();
    assert_eq!(e, ContractError::UnknownBootModel { boot: BootModel(3) });
    assert_eq!(
        e.to_string(),
        "the image boots as model 3 (unknown), this hypervisor knows models {1, 2}"
    );
}

#[test]
fn contract_of_a_note_without_writes_is_the_1_0_release_s() {
    // Whatever else the note holds: a 36-byte note has no contract bytes.
    let note = ImageNote {
        writes: None,
        contract: None,
        ..image_note(READS, ENTRY)
    };
    let c = Contract::agree(&note).unwrap();
    assert_eq!(c.args_version, handover_abi::entry::ENTRY_ARGS_V1);
    assert_eq!(c.order_at(End::Top), Ok(Order::ImageFirst));
    assert_eq!(c.boot, Model::Release1_0);
    assert!(!c.stated);
}

#[test]
fn negotiation_picks_the_highest_common_version() {
    let v = |minor| AbiVersion::new(1, minor);
    let reads = VersionRange::new(v(1), v(2));
    let image = hv_like_with_notes(&[hvlu_note(reads, ENTRY)]);
    let info = validate(&image.bytes(), VersionRange::new(v(0), v(3)), &LIMITS).unwrap();
    assert_eq!(info.version, v(2));
    let info = validate(&image.bytes(), VersionRange::new(v(0), v(1)), &LIMITS).unwrap();
    assert_eq!(info.version, v(1));
}

#[test]
fn image_exactly_as_large_as_the_staging_area_fits() {
    let limits = ImageLimits { max_span: 0xa000 };
    assert!(validate(&hv_like().bytes(), WRITES, &limits).is_ok());
}

#[test]
fn entry_in_the_boot_segment_is_accepted() {
    // The boot segment is executable too (rwx); the entry may lie there.
    let image = hv_like_with_notes(&[hvlu_note(READS, 0x10_0010)]);
    assert_eq!(check(&image.bytes()).unwrap().entry_offset, 0x10);
}

#[test]
fn notes_of_other_names_and_8_byte_note_alignment_are_handled() {
    // In a segment with p_align 8, names and descriptors are padded to 8
    // (the GNU property note's layout): the HVLU descriptor then starts at
    // byte 24 of its record, not 20.
    let foreign = note_record(b"GNU\0", 5, &[1, 2, 3, 4, 5], 8);
    let desc = image_note(READS, ENTRY).to_desc();
    let hvlu = note_record(b"HVLU\0", 1, &desc, 8);
    let mut image = hv_like_with_notes(&[foreign, hvlu]);
    image.phdrs[NOTES].p_align = 8;
    assert_eq!(check(&image.bytes()).unwrap().note.entry, ENTRY);
}

#[test]
fn empty_loadable_segments_are_ignored() {
    let mut image = hv_like();
    image.phdrs.push(ProgramHeader {
        p_type: elf::PT_LOAD,
        p_flags: elf::ProgramFlags(RW),
        p_offset: 0,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: 0,
        p_memsz: 0,
        p_align: 0x1000,
    });
    let info = check(&image.bytes()).unwrap();
    assert_eq!(info.phys_start, IMAGE_PHYS);
    assert_eq!(info.segments.len(), 4);
}

#[test]
fn segments_sharing_a_page_share_its_mapping() {
    // rodata ends mid-page and data starts right after it, on the same page:
    // that page is mapped once, with both segments' flags.
    let mut image = hv_like();
    let rodata = image.phdrs[RODATA].clone();
    image.phdrs[RODATA].p_memsz = 0xa00;
    image.phdrs[RODATA].p_filesz = 0xa00;
    let data = &mut image.phdrs[DATA];
    data.p_paddr = rodata.p_paddr + 0xa00;
    data.p_vaddr = rodata.p_vaddr + 0xa00;
    let info = check(&image.bytes()).unwrap();
    // r-- | rw- is rw-, so the shared page continues data's mapping.
    assert_eq!(
        info.mappings[2..],
        [Mapping {
            vaddr: KERNEL_VBASE + 0x10_5000,
            len: 0x5000,
            offset: 0x5000,
            flags: SegmentFlags(RW),
        }]
    );
    assert_eq!(info.span, 0xa000);
    assert_eq!(info.offset_of(KERNEL_VBASE + 0x10_5a10), Some(0x5a10));
}

#[test]
fn tiny_segments_on_one_page_give_one_mapping() {
    // Three segments inside one page, then one continuing it with the same
    // flags: one page with the union of flags, then the rest.
    let mut image = hv_like();
    let base = image.phdrs[DATA].clone();
    let part = |at: u64, len: u64, flags: u32| ProgramHeader {
        p_paddr: base.p_paddr + at,
        p_vaddr: base.p_vaddr + at,
        p_filesz: 0,
        p_memsz: len,
        p_flags: elf::ProgramFlags(flags),
        ..base.clone()
    };
    image.phdrs[RODATA] = part(0x100, 0x100, RX);
    image.phdrs[DATA] = part(0x400, 0x100, RW);
    image.phdrs.push(part(0x800, 0x2000, RW));
    let info = check(&image.bytes()).unwrap();
    let map = |vaddr, len, offset, flags| Mapping {
        vaddr,
        len,
        offset,
        flags: SegmentFlags(flags),
    };
    assert_eq!(
        info.mappings[2..],
        [
            map(KERNEL_VBASE + 0x10_6000, 0x1000, 0x6000, RWX),
            map(KERNEL_VBASE + 0x10_7000, 0x2000, 0x7000, RW),
        ]
    );
    assert_eq!(info.span, 0x9000);
}

// ---------------------------------------------------------------------------
// Staging

#[test]
fn staging_reproduces_the_loaders_memory_image() {
    let image = hv_like();
    let bytes = image.bytes();
    let info = check(&bytes).unwrap();
    let mut area = VecArea::new(info.span + 0x1000);
    stage(&info, &bytes, &mut area).unwrap();
    let expected = expected_memory(&image, info.span);
    assert!(
        area.mem[..info.span as usize] == expected[..],
        "staged bytes differ"
    );
    // Every byte of the span written exactly once, nothing past it.
    assert!(area.writes[..info.span as usize].iter().all(|&w| w == 1));
    assert!(area.writes[info.span as usize..].iter().all(|&w| w == 0));
    assert!(area.mem[info.span as usize..].iter().all(|&b| b == 0xa5));
}

#[test]
fn staging_zeroes_bss_and_gaps() {
    let bytes = hv_like().bytes();
    let info = check(&bytes).unwrap();
    let mut area = VecArea::new(info.span);
    stage(&info, &bytes, &mut area).unwrap();
    // boot's tail [0x1234, 0x2000), text's page tail, data's bss.
    assert!(area.mem[0x1234..0x2000].iter().all(|&b| b == 0));
    assert!(area.mem[0x4345..0x5000].iter().all(|&b| b == 0));
    assert!(area.mem[0x6321..0xa000].iter().all(|&b| b == 0));
}

#[test]
fn staging_into_a_too_small_area_fails_in_the_area() {
    let bytes = hv_like().bytes();
    let info = check(&bytes).unwrap();
    let mut area = VecArea::new(info.span - 1);
    let err = stage(&info, &bytes, &mut area).unwrap_err();
    assert_eq!(
        err,
        StageError::Area(OutOfArea {
            offset: 0x6321,
            len: 0xa000 - 0x6321
        })
    );
    assert!(err.to_string().starts_with("staging area: "));
}

#[test]
fn staging_other_bytes_than_validated_is_refused() {
    let bytes = hv_like().bytes();
    let info = check(&bytes).unwrap();
    let mut area = VecArea::new(info.span);
    let err = stage(&info, &bytes[..bytes.len() - 1], &mut area).unwrap_err();
    assert_eq!(
        err,
        StageError::ImageMismatch {
            expected_len: 0x7321,
            len: 0x7320
        }
    );
    assert!(area.writes.iter().all(|&w| w == 0), "nothing written");
}

// ---------------------------------------------------------------------------
// Malformed images: one thing wrong each, named after it.

#[test]
fn bad_magic() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_ident.magic[1] = b'X';
    assert_eq!(check(&bytes), Err(ImageError::NotElf));
}

#[test]
fn empty_file() {
    assert_eq!(check(&[]), Err(ImageError::NotElf));
}

#[test]
fn truncated_header() {
    let bytes = hv_like().bytes();
    assert_eq!(
        check(&bytes[..40]),
        Err(ImageError::TruncatedHeader { len: 40 })
    );
}

#[test]
fn not_64_bit() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_ident.class = elf::ELFCLASS32;
    assert_eq!(check(&bytes), Err(ImageError::Not64Bit { class: 1 }));
}

#[test]
fn big_endian() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_ident.data = elf::ELFDATA2MSB;
    assert_eq!(check(&bytes), Err(ImageError::NotLittleEndian { data: 2 }));
}

#[test]
fn not_x86_64() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_machine.set(LE, elf::EM_AARCH64);
    assert_eq!(
        check(&bytes),
        Err(ImageError::WrongMachine { machine: 183 })
    );
}

#[test]
fn not_an_executable() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_type.set(LE, elf::ET_DYN);
    assert_eq!(check(&bytes), Err(ImageError::NotExecutable { e_type: 3 }));
}

#[test]
fn wrong_program_header_entry_size() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_phentsize.set(LE, 64);
    assert_eq!(
        check(&bytes),
        Err(ImageError::BadProgramHeaderSize { phentsize: 64 })
    );
}

#[test]
fn program_headers_beyond_end_of_file() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_phoff.set(LE, 0x7321 - 100);
    assert_eq!(
        check(&bytes),
        Err(ImageError::ProgramHeadersBeyondEndOfFile {
            phoff: 0x7321 - 100,
            phnum: 5,
            file_len: 0x7321
        })
    );
}

/// `count` program headers, `PT_NULL` past the first `hv_like` ones, the
/// table appended to the end of the file (it no longer fits the first page).
fn with_program_headers(count: usize) -> Vec<u8> {
    let mut image = hv_like();
    let null = ProgramHeader {
        p_type: elf::PT_NULL,
        p_flags: elf::ProgramFlags(0),
        p_offset: 0,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: 0,
        p_memsz: 0,
        p_align: 0,
    };
    let mut phdrs = core::mem::take(&mut image.phdrs);
    phdrs.resize(count, null);
    let mut bytes = image.bytes();
    append_program_headers(&mut bytes, &phdrs);
    bytes
}

#[test]
fn too_many_program_headers() {
    // 65534 tiny segments made a 3.6 MB image that ran the hypervisor's
    // heap out while validating; the count is refused before any
    // allocation.
    let bytes = with_program_headers(65534);
    assert_eq!(
        check(&bytes),
        Err(ImageError::TooManyProgramHeaders { phnum: 65534 })
    );
    let bytes = with_program_headers(usize::from(MAX_PROGRAM_HEADERS) + 1);
    assert_eq!(
        check(&bytes),
        Err(ImageError::TooManyProgramHeaders {
            phnum: MAX_PROGRAM_HEADERS + 1
        })
    );
    // Exactly the bound is accepted.
    let bytes = with_program_headers(usize::from(MAX_PROGRAM_HEADERS));
    assert!(check(&bytes).is_ok());
}

#[test]
fn program_header_offset_overflowing() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_phoff.set(LE, u64::MAX - 8);
    assert!(matches!(
        check(&bytes),
        Err(ImageError::ProgramHeadersBeyondEndOfFile { .. })
    ));
}

#[test]
fn no_program_headers() {
    let mut bytes = hv_like().bytes();
    header_mut(&mut bytes).e_phnum.set(LE, 0);
    assert_eq!(check(&bytes), Err(ImageError::NoLoadableSegment));
}

#[test]
fn no_loadable_segment() {
    let mut image = hv_like();
    for p in image.phdrs.iter_mut().filter(|p| p.p_type == elf::PT_LOAD) {
        p.p_type = elf::PT_NULL;
    }
    assert_eq!(check(&image.bytes()), Err(ImageError::NoLoadableSegment));
}

#[test]
fn segment_beyond_end_of_file() {
    let bytes = with_phdr(DATA, |p| p.p_filesz = 0x322);
    assert_eq!(
        check(&bytes),
        Err(ImageError::SegmentBeyondEndOfFile {
            index: DATA,
            offset: 0x7000,
            filesz: 0x322,
            file_len: 0x7321
        })
    );
}

#[test]
fn segment_file_offset_overflowing() {
    let bytes = with_phdr(TEXT, |p| p.p_offset = u64::MAX - 0x100);
    assert!(matches!(
        check(&bytes),
        Err(ImageError::SegmentBeyondEndOfFile { index: TEXT, .. })
    ));
}

#[test]
fn note_segment_beyond_end_of_file() {
    let bytes = with_phdr(NOTES, |p| p.p_offset = 0x7300);
    assert!(matches!(
        check(&bytes),
        Err(ImageError::SegmentBeyondEndOfFile { index: NOTES, .. })
    ));
}

#[test]
fn file_size_exceeds_memory_size() {
    let bytes = with_phdr(TEXT, |p| p.p_filesz = 0x2346);
    assert_eq!(
        check(&bytes),
        Err(ImageError::FileSizeExceedsMemSize {
            index: TEXT,
            filesz: 0x2346,
            memsz: 0x2345
        })
    );
}

#[test]
fn overflowing_physical_address() {
    let bytes = with_phdr(BOOT, |p| p.p_paddr = 0xffff_ffff_ffff_f000);
    assert_eq!(
        check(&bytes),
        Err(ImageError::AddressOverflow {
            index: BOOT,
            paddr: 0xffff_ffff_ffff_f000,
            vaddr: 0x10_0000,
            memsz: 0x2000
        })
    );
}

#[test]
fn overflowing_virtual_address() {
    let bytes = with_phdr(DATA, |p| p.p_vaddr = 0xffff_ffff_ffff_e000);
    assert!(matches!(
        check(&bytes),
        Err(ImageError::AddressOverflow { index: DATA, .. })
    ));
}

#[test]
fn segment_end_overflowing_when_rounded_to_a_page() {
    // vaddr + memsz fits, but its page-rounded end is 2^64.
    let mut image = hv_like();
    image.phdrs[DATA].p_vaddr = 0xffff_ffff_ffff_c000;
    image.phdrs[DATA].p_memsz = 0x3800;
    let bytes = image.bytes();
    assert!(matches!(
        check(&bytes),
        Err(ImageError::AddressOverflow { index: DATA, .. })
    ));
}

#[test]
fn non_canonical_virtual_address() {
    let bytes = with_phdr(TEXT, |p| p.p_vaddr = 0x0000_9000_0010_2000);
    assert_eq!(
        check(&bytes),
        Err(ImageError::NonCanonicalSegment {
            index: TEXT,
            vaddr: 0x0000_9000_0010_2000,
            memsz: 0x2345
        })
    );
}

#[test]
fn segment_crossing_the_canonical_hole() {
    let bytes = with_phdr(TEXT, |p| p.p_vaddr = LOWER_HALF_END - 0x2000);
    assert!(matches!(
        check(&bytes),
        Err(ImageError::NonCanonicalSegment { index: TEXT, .. })
    ));
}

#[test]
fn misaligned_segment() {
    let bytes = with_phdr(TEXT, |p| p.p_vaddr += 0x10);
    assert_eq!(
        check(&bytes),
        Err(ImageError::MisalignedSegment {
            index: TEXT,
            vaddr: KERNEL_VBASE + 0x10_2010,
            paddr: 0x10_2000
        })
    );
}

#[test]
fn overlapping_segments() {
    // text moved down onto boot's second page, physically and virtually alike.
    let bytes = with_phdr(TEXT, |p| {
        p.p_paddr -= 0x1000;
        p.p_vaddr -= 0x1000;
    });
    assert_eq!(
        check(&bytes),
        Err(ImageError::OverlappingSegments {
            first: BOOT,
            second: TEXT
        })
    );
}

#[test]
fn overlapping_virtual_ranges() {
    // rodata linked onto text's last page, its physical place unchanged.
    let bytes = with_phdr(RODATA, |p| p.p_vaddr = KERNEL_VBASE + 0x10_4000);
    assert_eq!(
        check(&bytes),
        Err(ImageError::OverlappingVirtualRanges {
            first: TEXT,
            second: RODATA
        })
    );
}

#[test]
fn page_shared_by_segments_placed_apart() {
    // rodata linked right after text, on text's last page, but placed
    // physically after data: one virtual page would need two frames.
    let bytes = with_phdr(RODATA, |p| {
        p.p_vaddr = KERNEL_VBASE + 0x10_4800;
        p.p_paddr = 0x10_a800;
    });
    assert_eq!(
        check(&bytes),
        Err(ImageError::ConflictingPageMapping {
            first: TEXT,
            second: RODATA,
            page: KERNEL_VBASE + 0x10_4000
        })
    );
}

#[test]
fn image_too_large_for_the_staging_area() {
    let limits = ImageLimits { max_span: 0x9fff };
    let err = validate(&hv_like().bytes(), WRITES, &limits).unwrap_err();
    assert_eq!(
        err,
        ImageError::TooLarge {
            span: 0xa000,
            max_span: 0x9fff
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("40960") && msg.contains("40959"), "{msg}");
}

#[test]
fn no_hvlu_note() {
    let image = hv_like_with_notes(&[xen_note()]);
    assert_eq!(check(&image.bytes()), Err(ImageError::NoNote));
}

#[test]
fn no_note_segment() {
    let bytes = with_phdr(NOTES, |p| p.p_type = elf::PT_NULL);
    assert_eq!(check(&bytes), Err(ImageError::NoNote));
}

#[test]
fn duplicate_hvlu_note() {
    let note = hvlu_note(READS, ENTRY);
    let image = hv_like_with_notes(&[xen_note(), note.clone(), note]);
    assert_eq!(check(&image.bytes()), Err(ImageError::DuplicateNote));
}

#[test]
fn many_notes_are_walked_without_being_kept() {
    // A whole segment of empty notes of other names around the HVLU note,
    // then HVLU notes of another type: the note is found. The same with a
    // second HVLU note at the very end is a duplicate.
    let filler = note_record(b"GNU", 3, &[], 4);
    let wrong_type = note_record(b"HVLU", 7, &[0; 8], 4);
    let note = hvlu_note(READS, ENTRY);
    let mut notes = vec![filler.clone(); 40];
    notes.push(note.clone());
    notes.extend(vec![wrong_type.clone(); 20]);
    notes.extend(vec![filler.clone(); 40]);
    let image = hv_like_with_notes(&notes);
    assert_eq!(check(&image.bytes()).map(|i| i.entry()), Ok(ENTRY));
    notes.push(note);
    let image = hv_like_with_notes(&notes);
    assert_eq!(check(&image.bytes()), Err(ImageError::DuplicateNote));
    // Only notes of another type: the first one's type is reported.
    let image = hv_like_with_notes(&[filler, wrong_type.clone(), note_record(b"HVLU", 9, &[], 4)]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::BadNote(NoteError::WrongType { found: 7 }))
    );
}

#[test]
fn duplicate_hvlu_note_in_a_second_note_segment() {
    let mut image = hv_like();
    let second = image.phdrs[NOTES].clone();
    image.phdrs.push(second);
    assert_eq!(check(&image.bytes()), Err(ImageError::DuplicateNote));
}

#[test]
fn truncated_note() {
    // The note segment ends 4 bytes before the HVLU note does.
    let bytes = with_phdr(NOTES, |p| p.p_filesz -= 4);
    assert_eq!(
        check(&bytes),
        Err(ImageError::BadNote(NoteError::Truncated {
            len: NOTE_SIZE - 4,
            needed: NOTE_SIZE as u64
        }))
    );
}

#[test]
fn note_descsz_20_is_desc_too_short() {
    // The note's `descsz` says 20 in a segment that holds all 44 bytes:
    // the note is too short for its version, which is what is reported —
    // not the 24 bytes after it read as a record of garbage sizes.
    let mut note = hvlu_note(READS, ENTRY);
    note[4..8].copy_from_slice(&20u32.to_le_bytes());
    let image = hv_like_with_notes(&[xen_note(), note]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::BadNote(NoteError::DescTooShort { len: 20 }))
    );
}

#[test]
fn unknown_note_version() {
    let mut note = hvlu_note(READS, ENTRY);
    note[20..24].copy_from_slice(&2u32.to_le_bytes());
    let image = hv_like_with_notes(&[xen_note(), note]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::BadNote(NoteError::UnknownVersion { found: 2 }))
    );
}

#[test]
fn hvlu_note_of_wrong_type() {
    let desc = image_note(READS, ENTRY).to_desc();
    let image = hv_like_with_notes(&[note_record(b"HVLU\0", 7, &desc, 4)]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::BadNote(NoteError::WrongType { found: 7 }))
    );
}

#[test]
fn zero_entry_in_note() {
    let image = hv_like_with_notes(&[hvlu_note(READS, 0)]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::BadNote(NoteError::ZeroEntry))
    );
}

#[test]
fn abi_range_without_common_version() {
    let reads = VersionRange::new(AbiVersion::new(2, 0), AbiVersion::new(2, 3));
    let image = hv_like_with_notes(&[hvlu_note(reads, ENTRY)]);
    let err = check(&image.bytes()).unwrap_err();
    assert_eq!(
        err,
        ImageError::NoCommonVersion {
            writes: WRITES,
            reads
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&WRITES.to_string()) && msg.contains("2.0..=2.3"),
        "{msg}"
    );
}

#[test]
fn entry_outside_executable_segment() {
    // In rodata: mapped, but not code.
    let entry = KERNEL_VBASE + 0x10_5010;
    let image = hv_like_with_notes(&[hvlu_note(READS, entry)]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::EntryOutsideExecutableSegment { entry })
    );
}

#[test]
fn entry_outside_every_segment() {
    let entry = KERNEL_VBASE + 0x20_0000;
    let image = hv_like_with_notes(&[hvlu_note(READS, entry)]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::EntryOutsideExecutableSegment { entry })
    );
}

#[test]
fn entry_in_bss_of_executable_segment() {
    // The boot segment's bytes past its file size are zeros, not code.
    let entry = 0x10_1500;
    let image = hv_like_with_notes(&[hvlu_note(READS, entry)]);
    assert_eq!(
        check(&image.bytes()),
        Err(ImageError::EntryOutsideExecutableSegment { entry })
    );
}

#[test]
fn every_error_message_is_distinct_and_non_empty() {
    let r = VersionRange::single(AbiVersion::new(1, 0));
    let errors = [
        ImageError::NotElf,
        ImageError::TruncatedHeader { len: 1 },
        ImageError::Not64Bit { class: 1 },
        ImageError::NotLittleEndian { data: 2 },
        ImageError::WrongMachine { machine: 3 },
        ImageError::NotExecutable { e_type: 3 },
        ImageError::BadProgramHeaderSize { phentsize: 1 },
        ImageError::TooManyProgramHeaders { phnum: 1000 },
        ImageError::ProgramHeadersBeyondEndOfFile {
            phoff: 1,
            phnum: 1,
            file_len: 1,
        },
        ImageError::SegmentBeyondEndOfFile {
            index: 1,
            offset: 1,
            filesz: 1,
            file_len: 1,
        },
        ImageError::FileSizeExceedsMemSize {
            index: 1,
            filesz: 2,
            memsz: 1,
        },
        ImageError::AddressOverflow {
            index: 1,
            paddr: 1,
            vaddr: 1,
            memsz: 1,
        },
        ImageError::NonCanonicalSegment {
            index: 1,
            vaddr: 1,
            memsz: 1,
        },
        ImageError::MisalignedSegment {
            index: 1,
            vaddr: 1,
            paddr: 2,
        },
        ImageError::NoLoadableSegment,
        ImageError::OverlappingSegments {
            first: 1,
            second: 2,
        },
        ImageError::OverlappingVirtualRanges {
            first: 1,
            second: 2,
        },
        ImageError::ConflictingPageMapping {
            first: 1,
            second: 2,
            page: 0,
        },
        ImageError::TooLarge {
            span: 2,
            max_span: 1,
        },
        ImageError::NoNote,
        ImageError::DuplicateNote,
        ImageError::BadNote(NoteError::ZeroEntry),
        ImageError::NoCommonVersion {
            writes: r,
            reads: r,
        },
        ImageError::EntryOutsideExecutableSegment { entry: 1 },
    ];
    let messages: Vec<_> = errors.iter().map(|e| e.to_string()).collect();
    for (i, m) in messages.iter().enumerate() {
        assert!(!m.is_empty());
        assert!(!messages[..i].contains(m), "duplicate message {m}");
    }
}

// ---------------------------------------------------------------------------
// Robustness

/// What must hold of any image `validate` accepts: it stages into exactly
/// its span, and everything it describes lies inside that span.
fn accepted_is_consistent(bytes: &[u8], info: &ImageInfo) {
    assert!(info.entry_offset < info.span);
    assert_eq!(info.span % PAGE_SIZE, 0);
    for s in &info.segments {
        assert!(s.offset + s.memsz <= info.span);
    }
    for m in &info.mappings {
        assert!(m.offset + m.len <= info.span);
    }
    assert_eq!(info.offset_of(info.entry()), Some(info.entry_offset));
    let mut area = VecArea::new(info.span);
    stage(info, bytes, &mut area).unwrap();
    assert!(area.writes.iter().all(|&w| w == 1));
}

fn offset_in_image() -> impl Strategy<Value = usize> {
    let notes = (0x6000 + NOTES_IN_RODATA) as usize;
    prop_oneof![
        // The ELF header and program headers.
        0..(64 + 5 * 56usize),
        // The note segment: the Xen note, then the HVLU note.
        notes..notes + 20 + NOTE_SIZE,
        // Anywhere.
        0..0x7321usize,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Corrupting random bytes never makes `validate` panic, and whatever it
    /// still accepts stages consistently.
    #[test]
    fn random_byte_corruption_never_panics(
        edits in proptest::collection::vec((offset_in_image(), any::<u8>()), 1..8),
        keep in prop_oneof![Just(usize::MAX), 0..0x7321usize],
    ) {
        let mut bytes = hv_like().bytes();
        for (at, v) in edits {
            bytes[at] = v;
        }
        bytes.truncate(keep);
        if let Ok(info) = check(&bytes) {
            accepted_is_consistent(&bytes, &info);
        }
    }

    /// Random values in program header fields (where the overflow and
    /// overlap rules live) never make `validate` panic.
    #[test]
    fn random_program_header_fields_never_panic(
        index in 0..5usize,
        field in 0..6usize,
        value in prop_oneof![
            any::<u64>(),
            (0..0x2_0000u64),
            (0..0x2_0000u64).prop_map(|v| KERNEL_VBASE + 0x10_0000 + v),
            (0..0x2000u64).prop_map(|v| u64::MAX - v),
        ],
    ) {
        let bytes = with_phdr(index, |p| match field {
            0 => p.p_offset = value,
            1 => p.p_vaddr = value,
            2 => p.p_paddr = value,
            3 => p.p_filesz = value,
            4 => p.p_memsz = value,
            _ => p.p_align = value,
        });
        if let Ok(info) = check(&bytes) {
            accepted_is_consistent(&bytes, &info);
        }
    }
}
