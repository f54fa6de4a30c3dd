use super::*;
use crate::entry::ENTRY_ARGS_READS;
use crate::version::{READS, WRITES};
use proptest::prelude::*;

const BUILD: BuildId = BuildId(*b"image-build-id-1");
const ENTRY: u64 = 0xffff_ffff_8010_0000;

const INFO_READS: VersionRange = VersionRange::new(AbiVersion::new(1, 0), AbiVersion::new(1, 2));
const INFO_WRITES: VersionRange = VersionRange::new(AbiVersion::new(1, 1), AbiVersion::new(1, 3));

/// A contract with an unknown argument page version (5), an unknown
/// layout bit (4) and an unknown boot model (9): the parser keeps them.
const INFO_CONTRACT: NoteContract = NoteContract {
    args: ArgsVersions((1 << 1) | (1 << 3) | (1 << 5)),
    layouts: Layouts(0b1_0011),
    boot: BootModel(9),
};

fn info() -> ImageNote {
    ImageNote {
        reads: INFO_READS,
        writes: Some(INFO_WRITES),
        contract: Some(INFO_CONTRACT),
        entry: ENTRY,
        build_id: BUILD,
    }
}

/// `info()` as an unreleased build between 1.0 and the contract says it.
fn writes_info() -> ImageNote {
    ImageNote {
        contract: None,
        ..info()
    }
}

/// `info()` as the 1.0 release, built before `writes` existed, says it.
fn old_info() -> ImageNote {
    ImageNote {
        writes: None,
        contract: None,
        ..info()
    }
}

/// Built in a const context, as an image builds its static note.
const CONST_NOTE: HvluNote<u64> =
    HvluNote::new(INFO_READS, INFO_WRITES, INFO_CONTRACT, ENTRY, BUILD);

extern "C" fn entry_fn() -> ! {
    panic!("never called")
}

/// The kind of type an image uses: the linker fills the entry. (An image
/// would use `unsafe extern "C" fn() -> !`; this crate forbids declaring
/// unsafe functions, and both types have the same layout.)
static FN_NOTE: HvluNote<extern "C" fn() -> !> =
    HvluNote::new(READS, WRITES, CONTRACT, entry_fn, BUILD);

/// `info()`'s descriptor (the full, 52-byte form), edited.
fn desc_with(f: impl FnOnce(&mut [u8; DESC_SIZE])) -> [u8; DESC_SIZE] {
    let mut d: [u8; DESC_SIZE] = info().to_desc().as_slice().try_into().unwrap();
    f(&mut d);
    d
}

/// A raw note record named `HVLU\0` of type 1 around `desc`.
fn record(desc: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&(NOTE_NAME.len() as u32).to_le_bytes());
    r.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    r.extend_from_slice(&NOTE_TYPE.to_le_bytes());
    r.extend_from_slice(b"HVLU\0\0\0\0");
    r.extend_from_slice(desc);
    r
}

#[test]
fn sizes_are_as_documented() {
    assert_eq!(MIN_DESC_SIZE, 36);
    assert_eq!(WRITES_DESC_SIZE, 44);
    assert_eq!(DESC_SIZE, 52);
    assert_eq!(MIN_NOTE_SIZE, 56);
    assert_eq!(WRITES_NOTE_SIZE, 64);
    assert_eq!(NOTE_SIZE, 72);
}

#[test]
fn this_trees_contract_is_its_entry_and_boot() {
    // Argument pages 1, 3 and 4 (what `entry` reads), both layouts, model 2.
    assert_eq!(CONTRACT.args.0, 0b1_1010);
    assert_eq!(CONTRACT.args.iter().collect::<Vec<_>>(), ENTRY_ARGS_READS);
    assert_eq!(CONTRACT.layouts.0, 0b11);
    assert_eq!(CONTRACT.boot.0, 2);
    assert_eq!(NoteContract::RELEASE_1_0.args.0, 0b10);
    assert_eq!(NoteContract::RELEASE_1_0.layouts, Layouts::IMAGE_FIRST);
    assert_eq!(NoteContract::RELEASE_1_0.boot.0, 1);
}

#[test]
fn contract_values_display_by_name_and_number() {
    assert_eq!(CONTRACT.args.to_string(), "{1, 3, 4}");
    assert_eq!(ArgsVersions(0).to_string(), "{}");
    assert_eq!(ArgsVersions(1 << 31).to_string(), "{31}");
    assert_eq!(CONTRACT.layouts.to_string(), "{image first, state first}");
    assert_eq!(Layouts(0b1_0010).to_string(), "{state first, bit 4}");
    assert_eq!(BootModel::CURRENT.to_string(), "2 (this tree's boot)");
    assert_eq!(
        BootModel::RELEASE_1_0.to_string(),
        "1 (the 1.0 release's boot)"
    );
    assert_eq!(BootModel(9).to_string(), "9 (unknown)");
}

#[test]
fn args_versions_set_operations() {
    let s = ArgsVersions::of(&[1, 3]);
    assert!(s.contains(1) && s.contains(3) && !s.contains(2) && !s.contains(40));
    assert_eq!(s.highest(), Some(3));
    assert_eq!(ArgsVersions(0).highest(), None);
    assert_eq!(
        s.intersection(ArgsVersions::of(&[3, 5])),
        ArgsVersions::of(&[3])
    );
    assert!(s.intersection(ArgsVersions::of(&[5])).is_empty());
    assert!(Layouts::KNOWN.contains(Layouts::STATE_FIRST));
    assert!(!Layouts::IMAGE_FIRST.contains(Layouts::KNOWN));
}

#[test]
fn const_built_note_has_the_bytes_of_the_field_by_field_encoder() {
    assert_eq!(info().to_note_bytes(), CONST_NOTE.to_bytes());
}

#[test]
fn const_built_note_parses_back() {
    assert_eq!(parse_note(&CONST_NOTE.to_bytes()), Ok(info()));
}

#[test]
fn note_bytes_are_as_documented() {
    let b = info().to_note_bytes();
    assert_eq!(b.len(), 72);
    assert_eq!(&b[0..12], &[5, 0, 0, 0, 52, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&b[12..20], b"HVLU\0\0\0\0");
    assert_eq!(&b[20..24], &[1, 0, 0, 0]);
    assert_eq!(&b[24..32], &[1, 0, 0, 0, 1, 0, 2, 0]);
    assert_eq!(&b[32..40], &ENTRY.to_le_bytes());
    assert_eq!(&b[40..56], &BUILD.0);
    assert_eq!(&b[56..64], &[1, 0, 1, 0, 1, 0, 3, 0]);
    // args_versions 0x2a (1, 3, 5), layouts 0x13, boot model 9.
    assert_eq!(&b[64..72], &[0x2a, 0, 0, 0, 0x13, 0, 9, 0]);
}

#[test]
fn this_trees_note_bytes_in_hex() {
    let b = HvluNote::new(READS, WRITES, CONTRACT, ENTRY, BUILD).to_bytes();
    assert_eq!(&b[4..8], &[52, 0, 0, 0]);
    assert_eq!(&b[64..72], &[0x1a, 0, 0, 0, 0x03, 0, 0x02, 0]);
    let note = parse_note(&b).unwrap();
    assert_eq!(note.contract, Some(CONTRACT));
    assert_eq!(note.writes, Some(WRITES));
}
#[test]
fn note_without_contract_is_the_64_byte_form() {
    let mid = writes_info().to_note_bytes();
    let new = info().to_note_bytes();
    assert_eq!(mid.len(), WRITES_NOTE_SIZE);
    assert_eq!(&mid[4..8], &44u32.to_le_bytes());
    assert_eq!(mid[..4], new[..4]);
    assert_eq!(mid[8..], new[8..WRITES_NOTE_SIZE]);
    assert_eq!(writes_info().to_desc().len(), WRITES_DESC_SIZE);
}

#[test]
fn contract_without_writes_encodes_as_the_36_byte_form() {
    // The contract follows `writes` in the descriptor: without `writes`
    // there is no place for it.
    let note = ImageNote {
        writes: None,
        ..info()
    };
    assert_eq!(note.to_desc().len(), MIN_DESC_SIZE);
    assert_eq!(ImageNote::parse_desc(&note.to_desc()), Ok(old_info()));
}

#[test]
fn note_without_writes_is_the_old_56_byte_form() {
    let old = old_info().to_note_bytes();
    let new = info().to_note_bytes();
    assert_eq!(old.len(), MIN_NOTE_SIZE);
    assert_eq!(&old[4..8], &36u32.to_le_bytes());
    // Everything but descsz is the start of the full form.
    assert_eq!(old[..4], new[..4]);
    assert_eq!(old[8..], new[8..MIN_NOTE_SIZE]);
    assert_eq!(old_info().to_desc().len(), MIN_DESC_SIZE);
}

#[test]
fn function_pointer_note_has_the_same_shape() {
    assert_eq!(
        size_of::<HvluNote<unsafe extern "C" fn() -> !>>(),
        NOTE_SIZE
    );
    assert_eq!(size_of::<HvluNote<extern "C" fn() -> !>>(), NOTE_SIZE);
    assert_eq!(FN_NOTE.reads(), READS);
    assert_eq!(FN_NOTE.writes(), WRITES);
    assert_eq!(FN_NOTE.build_id(), BUILD);
    assert_eq!(
        FN_NOTE.entry() as usize,
        entry_fn as extern "C" fn() -> ! as usize
    );
    assert!(format!("{FN_NOTE:?}").starts_with("HvluNote { reads:"));
    assert!(format!("{FN_NOTE:?}").contains("writes:"));
    assert_eq!(FN_NOTE.contract(), CONTRACT);
}

#[test]
fn desc_round_trips() {
    assert_eq!(ImageNote::parse_desc(&info().to_desc()), Ok(info()));
}

#[test]
fn full_52_byte_note_round_trips() {
    let b = info().to_note_bytes();
    assert_eq!(info().to_desc().len(), DESC_SIZE);
    let note = parse_note(&b).unwrap();
    assert_eq!(note, info());
    assert_eq!(note.writes, Some(INFO_WRITES));
    assert_eq!(note.contract, Some(INFO_CONTRACT));
    assert_eq!(note.to_note_bytes(), b);
}

#[test]
fn unreleased_44_byte_desc_parses_with_writes_and_no_contract() {
    let full = info().to_desc();
    let mid = &full[..WRITES_DESC_SIZE];
    assert_eq!(ImageNote::parse_desc(mid), Ok(writes_info()));
    let rec = record(mid);
    assert_eq!(rec.len(), WRITES_NOTE_SIZE);
    assert_eq!(parse_note(&rec), Ok(writes_info()));
    assert_eq!(writes_info().to_note_bytes(), rec[..]);
}

#[test]
fn desc_cut_inside_the_contract_has_no_contract() {
    let d = info().to_desc();
    for len in WRITES_DESC_SIZE + 1..DESC_SIZE {
        assert_eq!(ImageNote::parse_desc(&d[..len]), Ok(writes_info()), "{len}");
    }
}

#[test]
fn old_36_byte_desc_parses_without_writes() {
    // What an image built before `writes` existed carries: the first 36
    // bytes of today's descriptor, in a 56-byte record.
    let full = info().to_desc();
    let old = &full[..MIN_DESC_SIZE];
    assert_eq!(ImageNote::parse_desc(old), Ok(old_info()));
    let rec = record(old);
    assert_eq!(rec.len(), MIN_NOTE_SIZE);
    assert_eq!(parse_note(&rec), Ok(old_info()));
    assert_eq!(
        find_note([(&NOTE_NAME[..], NOTE_TYPE, old)]),
        Ok(old_info())
    );
    // And encodes back to the same bytes.
    assert_eq!(old_info().to_note_bytes(), rec[..]);
}

#[test]
fn desc_cut_inside_writes_has_no_writes() {
    // Between the old and the full size, the writes field is not whole:
    // the bytes past 36 are ignored like unknown ones.
    let d = info().to_desc();
    for len in MIN_DESC_SIZE + 1..WRITES_DESC_SIZE {
        assert_eq!(ImageNote::parse_desc(&d[..len]), Ok(old_info()), "{len}");
    }
}

#[test]
fn longer_desc_of_the_same_version_is_read() {
    let mut d = info().to_desc().to_vec();
    d.extend_from_slice(&[0xEE; 8]);
    assert_eq!(ImageNote::parse_desc(&d), Ok(info()));
}

#[test]
fn longer_note_with_unknown_trailing_fields_is_read() {
    // A later crate appends two fields: a 60-byte descriptor.
    let mut d = info().to_desc().to_vec();
    d.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    d.extend_from_slice(&[0xEE; 4]);
    assert_eq!(d.len(), 60);
    let rec = record(&d);
    assert_eq!(parse_note(&rec), Ok(info()));
    assert_eq!(
        find_note([(b"HVLU".as_slice(), NOTE_TYPE, d.as_slice())]),
        Ok(info())
    );
}

#[test]
fn find_note_among_others() {
    let gnu = b"GNU\0".as_slice();
    let desc = info().to_desc();
    let notes = [
        (gnu, 3, b"\x01\x02\x03\x04".as_slice()),
        (b"Xen\0".as_slice(), 18, b"\0\0\x10\0".as_slice()),
        (b"HVLU".as_slice(), NOTE_TYPE, desc.as_slice()),
    ];
    assert_eq!(find_note(notes), Ok(info()));
    // With the NUL, as a raw note names itself.
    assert_eq!(
        find_note([(&NOTE_NAME[..], NOTE_TYPE, &desc[..])]),
        Ok(info())
    );
}

// One test per `NoteError` variant.

#[test]
fn missing_note() {
    let notes = [(b"GNU\0".as_slice(), 3, b"".as_slice())];
    assert_eq!(find_note(notes), Err(NoteError::Missing));
    assert_eq!(find_note(core::iter::empty()), Err(NoteError::Missing));
}

#[test]
fn duplicate_note() {
    let desc = info().to_desc();
    let notes = [
        (b"HVLU".as_slice(), NOTE_TYPE, desc.as_slice()),
        (b"HVLU\0".as_slice(), NOTE_TYPE, desc.as_slice()),
    ];
    assert_eq!(find_note(notes), Err(NoteError::Duplicate));
}

#[test]
fn truncated_note_record() {
    let b = info().to_note_bytes();
    assert_eq!(
        parse_note(&b[..11]),
        Err(NoteError::Truncated {
            len: 11,
            needed: 12
        })
    );
    assert_eq!(
        parse_note(&b[..NOTE_SIZE - 1]),
        Err(NoteError::Truncated {
            len: NOTE_SIZE - 1,
            needed: NOTE_SIZE as u64
        })
    );
    // A huge descsz.
    let mut b = b.to_vec();
    b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        parse_note(&b),
        Err(NoteError::Truncated {
            len: NOTE_SIZE,
            needed: 20 + u64::from(u32::MAX)
        })
    );
}

#[test]
fn wrong_note_name() {
    let mut b = info().to_note_bytes().to_vec();
    b[12..16].copy_from_slice(b"Xen\0");
    assert_eq!(parse_note(&b), Err(NoteError::WrongName { namesz: 5 }));
    // The right letters without the NUL.
    let mut b = info().to_note_bytes().to_vec();
    b[0..4].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(parse_note(&b), Err(NoteError::WrongName { namesz: 4 }));
}

#[test]
fn wrong_note_type() {
    let mut b = info().to_note_bytes().to_vec();
    b[8..12].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(parse_note(&b), Err(NoteError::WrongType { found: 7 }));
    let desc = info().to_desc();
    assert_eq!(
        find_note([(b"HVLU".as_slice(), 7, desc.as_slice())]),
        Err(NoteError::WrongType { found: 7 })
    );
}

#[test]
fn desc_too_short() {
    let d = info().to_desc();
    assert_eq!(
        ImageNote::parse_desc(&d[..35]),
        Err(NoteError::DescTooShort { len: 35 })
    );
    assert_eq!(
        ImageNote::parse_desc(&d[..2]),
        Err(NoteError::DescTooShort { len: 2 })
    );
    assert_eq!(
        ImageNote::parse_desc(&[]),
        Err(NoteError::DescTooShort { len: 0 })
    );
}

#[test]
fn note_descsz_20_is_desc_too_short() {
    // The whole 64-byte note with its `descsz` set to 20: the record is
    // complete (40 bytes, the rest ignored), its descriptor too short.
    let mut note = info().to_note_bytes().to_vec();
    note[4..8].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(parse_note(&note), Err(NoteError::DescTooShort { len: 20 }));
    assert_eq!(
        find_note([(&note[12..17], NOTE_TYPE, &note[20..40])]),
        Err(NoteError::DescTooShort { len: 20 })
    );
}

#[test]
fn unknown_note_version() {
    let d = desc_with(|d| d[0..4].copy_from_slice(&2u32.to_le_bytes()));
    assert_eq!(
        ImageNote::parse_desc(&d),
        Err(NoteError::UnknownVersion { found: 2 })
    );
    // The version is read before the length is judged.
    assert_eq!(
        ImageNote::parse_desc(&d[..4]),
        Err(NoteError::UnknownVersion { found: 2 })
    );
}

#[test]
fn inverted_abi_range() {
    let d = desc_with(|d| d[8..12].copy_from_slice(&[0, 0, 9, 0])); // max 0.9 < min 1.0
    assert_eq!(
        ImageNote::parse_desc(&d),
        Err(NoteError::EmptyAbiRange {
            min: AbiVersion::new(1, 0),
            max: AbiVersion::new(0, 9)
        })
    );
}

#[test]
fn empty_writes_range() {
    // writes max 0.9 < min 1.1
    let d = desc_with(|d| d[40..44].copy_from_slice(&[0, 0, 9, 0]));
    assert_eq!(
        ImageNote::parse_desc(&d),
        Err(NoteError::EmptyWritesRange {
            min: AbiVersion::new(1, 1),
            max: AbiVersion::new(0, 9)
        })
    );
    assert_eq!(
        parse_note(&record(&d)),
        Err(NoteError::EmptyWritesRange {
            min: AbiVersion::new(1, 1),
            max: AbiVersion::new(0, 9)
        })
    );
    // The same bytes past a short descriptor are not read.
    assert_eq!(ImageNote::parse_desc(&d[..40]), Ok(old_info()));
}

#[test]
fn contract_without_argument_page_version() {
    let d = desc_with(|d| d[44..48].fill(0));
    assert_eq!(ImageNote::parse_desc(&d), Err(NoteError::NoArgsVersion));
    assert_eq!(parse_note(&record(&d)), Err(NoteError::NoArgsVersion));
    // Not read in a descriptor that stops before the contract.
    assert_eq!(ImageNote::parse_desc(&d[..44]), Ok(writes_info()));
}

#[test]
fn contract_without_layout() {
    let d = desc_with(|d| d[48..50].fill(0));
    assert_eq!(ImageNote::parse_desc(&d), Err(NoteError::NoLayout));
}

#[test]
fn contract_with_boot_model_zero() {
    let d = desc_with(|d| d[50..52].fill(0));
    assert_eq!(ImageNote::parse_desc(&d), Err(NoteError::ZeroBootModel));
    let msg = NoteError::ZeroBootModel.to_string();
    assert!(msg.contains("boot model is 0"), "{msg}");
}

#[test]
fn empty_ranges_have_distinct_messages() {
    let (min, max) = (AbiVersion::new(1, 0), AbiVersion::new(0, 9));
    let reads = NoteError::EmptyAbiRange { min, max }.to_string();
    let writes = NoteError::EmptyWritesRange { min, max }.to_string();
    assert_ne!(reads, writes);
    assert!(
        reads.contains("read") && reads.contains("1.0..=0.9"),
        "{reads}"
    );
    assert!(
        writes.contains("written") && writes.contains("1.0..=0.9"),
        "{writes}"
    );
}

#[test]
fn zero_entry() {
    let d = desc_with(|d| d[12..20].fill(0));
    assert_eq!(ImageNote::parse_desc(&d), Err(NoteError::ZeroEntry));
}

proptest! {
    #[test]
    fn random_notes_round_trip(
        a in any::<(u16, u16)>(),
        b in any::<(u16, u16)>(),
        entry in 1..=u64::MAX,
        id in any::<[u8; 16]>(),
        c in any::<(u16, u16)>(),
        d in any::<(u16, u16)>(),
        with_writes in any::<bool>(),
        contract in proptest::option::of((1..=u32::MAX, 1..=u16::MAX, 1..=u16::MAX)),
    ) {
        let (x, y) = (AbiVersion::new(a.0, a.1), AbiVersion::new(b.0, b.1));
        let reads = VersionRange::new(x.min(y), x.max(y));
        let (x, y) = (AbiVersion::new(c.0, c.1), AbiVersion::new(d.0, d.1));
        let writes = VersionRange::new(x.min(y), x.max(y));
        let contract = contract.map(|(a, l, b)| NoteContract {
            args: ArgsVersions(a),
            layouts: Layouts(l),
            boot: BootModel(b),
        });
        let note = ImageNote {
            reads,
            writes: with_writes.then_some(writes),
            contract: contract.filter(|_| with_writes),
            entry,
            build_id: BuildId(id),
        };
        prop_assert_eq!(parse_note(&note.to_note_bytes()), Ok(note));
        prop_assert_eq!(ImageNote::parse_desc(&note.to_desc()), Ok(note));
        if let (true, Some(c)) = (with_writes, contract) {
            prop_assert_eq!(
                note.to_note_bytes(),
                HvluNote::new(reads, writes, c, entry, BuildId(id)).to_bytes()
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = parse_note(&bytes);
        let _ = ImageNote::parse_desc(&bytes);
        let _ = find_note([(&NOTE_NAME[..], NOTE_TYPE, &bytes[..])]);
    }

    #[test]
    fn damaged_headers_never_panic(
        namesz in any::<u32>(),
        descsz in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut b = Vec::new();
        b.extend_from_slice(&namesz.to_le_bytes());
        b.extend_from_slice(&descsz.to_le_bytes());
        b.extend_from_slice(&NOTE_TYPE.to_le_bytes());
        b.extend_from_slice(&tail);
        let _ = parse_note(&b);
    }
}
