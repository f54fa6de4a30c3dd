//! One test per way the framing of a blob can be wrong, each named after what
//! is wrong and expecting exactly its `DecodeError` variant. (Structural
//! errors of the state are in `invalid_state.rs`.)

mod common;

use common::{encode_vec, header_of, reseal_body, reseal_header, sample};
use handover_abi::header::offset;
use handover_abi::{decode, read_header, AbiVersion, DecodeError, CURRENT, HEADER_SIZE, MAGIC};
use hvlu_types::{Mfn, MfnRange, PAGE_SIZE};

fn blob() -> Vec<u8> {
    encode_vec(&sample())
}

fn set_u16(blob: &mut [u8], at: usize, v: u16) {
    blob[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn set_u32(blob: &mut [u8], at: usize, v: u32) {
    blob[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn valid_blob_decodes() {
    let decoded = decode(&blob()).expect("valid");
    assert_eq!(decoded.state, sample());
}

#[test]
fn bad_magic() {
    let mut b = blob();
    b[0..8].copy_from_slice(b"ELF\0\0\0\0\0");
    assert_eq!(
        decode(&b),
        Err(DecodeError::BadMagic {
            found: *b"ELF\0\0\0\0\0"
        })
    );
}

#[test]
fn bad_magic_in_a_buffer_shorter_than_a_header() {
    assert_eq!(
        decode(b"HVLUSTAX..."),
        Err(DecodeError::BadMagic {
            found: *b"HVLUSTAX"
        })
    );
}

#[test]
fn truncated_header() {
    let b = blob();
    assert_eq!(
        decode(&b[..HEADER_SIZE - 1]),
        Err(DecodeError::TruncatedHeader { len: 63 })
    );
    assert_eq!(
        decode(&b[..3]),
        Err(DecodeError::TruncatedHeader { len: 3 })
    );
    assert_eq!(decode(&[]), Err(DecodeError::TruncatedHeader { len: 0 }));
}

#[test]
fn corrupted_header_with_stale_crc() {
    let mut b = blob();
    let stored = header_of(&b).header_crc;
    b[offset::BODY_LEN] ^= 0x01;
    match decode(&b) {
        Err(DecodeError::HeaderCrcMismatch {
            stored: s,
            computed,
        }) => {
            assert_eq!(s, stored);
            assert_ne!(computed, stored);
        }
        other => panic!("expected HeaderCrcMismatch, got {other:?}"),
    }
}

#[test]
fn unsupported_major_version() {
    let mut b = blob();
    set_u16(&mut b, offset::ABI_MAJOR, 2);
    reseal_header(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::UnsupportedMajor {
            found: AbiVersion::new(2, CURRENT.minor),
            reader: CURRENT
        })
    );
}

#[test]
fn newer_minor_version() {
    let mut b = blob();
    set_u16(&mut b, offset::ABI_MINOR, CURRENT.minor + 1);
    reseal_header(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::NewerMinor {
            found: AbiVersion::new(1, CURRENT.minor + 1),
            reader: CURRENT
        })
    );
}

#[test]
fn wrong_header_size_field() {
    let mut b = blob();
    set_u32(&mut b, offset::HEADER_SIZE, 128);
    reseal_header(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::HeaderSizeMismatch {
            version: CURRENT,
            found: 128,
            expected: 64
        })
    );
}

#[test]
fn reserved_header_bytes_not_zero() {
    let mut b = blob();
    b[60] = 0xAA;
    reseal_header(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::ReservedNotZero {
            offset: 60,
            value: 0xAA
        })
    );
}

#[test]
fn producer_older_than_the_body() {
    // A 1.3 body that says a 1.2, 1.1 or 1.0 writer wrote it: no writer
    // writes a version newer than its own.
    for minor in [2, 1, 0] {
        let mut b = blob();
        set_u16(&mut b, offset::PRODUCER_MAJOR, 1);
        set_u16(&mut b, offset::PRODUCER_MINOR, minor);
        reseal_header(&mut b);
        let expected = DecodeError::ProducerOlderThanBody {
            producer: AbiVersion::new(1, minor),
            body: AbiVersion::new(1, 3),
        };
        assert_eq!(decode(&b), Err(expected.clone()));
        assert_eq!(read_header(&b), Err(expected));
    }
    let mut b = blob();
    // An older major too.
    set_u16(&mut b, offset::PRODUCER_MAJOR, 0);
    set_u16(&mut b, offset::PRODUCER_MINOR, 9);
    reseal_header(&mut b);
    assert!(matches!(
        decode(&b),
        Err(DecodeError::ProducerOlderThanBody { .. })
    ));
}

#[test]
fn producer_newer_than_the_body_is_accepted() {
    // A newer writer that wrote an older version for this reader: the
    // producer version is informational.
    for (major, minor) in [(1, 3), (1, 7), (2, 0)] {
        let mut b = blob();
        set_u16(&mut b, offset::PRODUCER_MAJOR, major);
        set_u16(&mut b, offset::PRODUCER_MINOR, minor);
        reseal_header(&mut b);
        let decoded = decode(&b).expect("decodes");
        assert_eq!(decoded.header.producer.abi, AbiVersion::new(major, minor));
    }
}

#[test]
fn producer_checked_after_the_reserved_bytes() {
    // Two header faults: the one earlier in the order wins.
    let mut b = blob();
    set_u16(&mut b, offset::PRODUCER_MINOR, 0);
    b[60] = 0xAA;
    reseal_header(&mut b);
    assert!(matches!(
        decode(&b),
        Err(DecodeError::ReservedNotZero { offset: 60, .. })
    ));
}

#[test]
fn truncated_body() {
    let b = blob();
    let declared = b.len() as u64;
    assert_eq!(
        decode(&b[..b.len() - 1]),
        Err(DecodeError::TruncatedBody {
            declared,
            available: b.len() - 1
        })
    );
    // Only the header.
    assert_eq!(
        decode(&b[..HEADER_SIZE]),
        Err(DecodeError::TruncatedBody {
            declared,
            available: HEADER_SIZE
        })
    );
}

#[test]
fn body_length_beyond_the_address_space() {
    let mut b = blob();
    b[offset::BODY_LEN..offset::BODY_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal_header(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::TruncatedBody {
            declared: u64::MAX,
            available: b.len()
        })
    );
}

#[test]
fn trailing_garbage_after_the_blob() {
    let mut b = blob();
    let declared = b.len() as u64;
    b.extend_from_slice(&[0; 16]);
    assert_eq!(
        decode(&b),
        Err(DecodeError::TrailingBytes {
            declared,
            len: b.len()
        })
    );
}

#[test]
fn corrupted_body_with_stale_crc() {
    let mut b = blob();
    let stored = header_of(&b).body_crc;
    let last = b.len() - 1;
    b[last] ^= 0x40;
    match decode(&b) {
        Err(DecodeError::BodyCrcMismatch {
            stored: s,
            computed,
        }) => {
            assert_eq!(s, stored);
            assert_ne!(computed, stored);
        }
        other => panic!("expected BodyCrcMismatch, got {other:?}"),
    }
}

#[test]
fn corrupted_body_with_recomputed_crc() {
    // An over-long varint where the RAM map's length is.
    let mut b = blob();
    b[HEADER_SIZE..HEADER_SIZE + 11].fill(0xFF);
    reseal_body(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::MalformedBody(
            postcard::Error::DeserializeBadVarint
        ))
    );
}

#[test]
fn body_cut_short_with_recomputed_crc() {
    let mut b = blob();
    b.pop();
    reseal_body(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::MalformedBody(
            postcard::Error::DeserializeUnexpectedEnd
        ))
    );
}

#[test]
fn bytes_after_the_state_inside_the_body() {
    let mut b = blob();
    b.extend_from_slice(&[0, 0, 0]);
    reseal_body(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::BodyTrailingBytes { unused: 3 })
    );
}

/// The blob with the RAM map's length (the body's first byte, 8 in the
/// sample) written in two bytes, `88 00`: a valid varint of the same value,
/// one byte longer than it needs.
fn padded_ram_map_length() -> Vec<u8> {
    let mut b = blob();
    assert_eq!(b[HEADER_SIZE], 8, "the sample's RAM map has 8 entries");
    b.splice(HEADER_SIZE..HEADER_SIZE + 1, [0x88, 0x00]);
    reseal_body(&mut b);
    b
}

#[test]
fn padded_varint_with_recomputed_crc() {
    let b = padded_ram_map_length();
    let len = b.len() - HEADER_SIZE;
    assert_eq!(
        decode(&b),
        Err(DecodeError::NonCanonicalVarint {
            len,
            canonical_len: len - 1
        })
    );
}

#[test]
fn padded_varint_in_a_1_0_body() {
    let state = common::older_sample();
    let len = handover_abi::encoded_len_as(AbiVersion::new(1, 0), &state).expect("len");
    let mut b = vec![0u8; len];
    handover_abi::encode_as(AbiVersion::new(1, 0), &state, &common::producer(), &mut b)
        .expect("encode");
    assert!(decode(&b).is_ok());
    // The first domain's id (0), written as `80 00`.
    let at = HEADER_SIZE + first_domain_id_offset(&state);
    assert_eq!(b[at], 0);
    b.splice(at..at + 1, [0x80, 0x00]);
    reseal_body(&mut b);
    assert!(matches!(
        decode(&b),
        Err(DecodeError::NonCanonicalVarint { .. })
    ));
}

/// Offset in the 1.0 body of `state` of its first domain's id: the length
/// of everything before it (RAM map, region, globals, the domain count).
fn first_domain_id_offset(state: &handover_abi::HandoverState) -> usize {
    let machine = postcard::to_allocvec(&state.machine).expect("machine");
    let globals =
        postcard::to_allocvec(&(state.globals.next_domid, state.globals.time)).expect("globals");
    let count = postcard::to_allocvec(&state.domains.len()).expect("count");
    machine.len() + globals.len() + count.len()
}

#[test]
fn padded_varint_reported_before_the_invariants() {
    // A padded varint in a state that also breaks an invariant.
    let mut b = padded_ram_map_length();
    let next_domid_at = HEADER_SIZE
        + 1
        + postcard::to_allocvec(&sample().machine)
            .expect("machine")
            .len();
    assert_eq!(b[next_domid_at], 5, "next domid");
    b[next_domid_at] = 3; // domain 3 exists
    reseal_body(&mut b);
    assert!(matches!(
        decode(&b),
        Err(DecodeError::NonCanonicalVarint { .. })
    ));
}

#[test]
fn corrupted_body_with_recomputed_crc_breaking_an_invariant() {
    // Find the byte of `next_domid` by encoding a state that differs only
    // there, then set it to an id that a domain has.
    let mut state = sample();
    let a = encode_vec(&state);
    state.globals.next_domid.0 = 6;
    let b5 = encode_vec(&state);
    let at = (HEADER_SIZE..a.len())
        .find(|&i| a[i] != b5[i])
        .expect("a differing byte");
    let mut b = a.clone();
    b[at] = 3; // next domid 3, but domains 3 and 4 exist
    reseal_body(&mut b);
    assert_eq!(
        decode(&b),
        Err(DecodeError::Invalid(
            handover_abi::StateError::NextDomidTooLow {
                next: hvlu_types::DomId(3),
                domain: hvlu_types::DomId(4)
            }
        ))
    );
}

#[test]
fn state_range_smaller_than_the_blob() {
    let mut state = sample();
    // Enough vCPUs for the blob to pass one page.
    let template = state.domains[0].vcpus[0];
    state.domains[0].vcpus = (0..40)
        .map(|id| handover_abi::Vcpu { id, ..template })
        .collect();
    state.machine.region.state = MfnRange::new(Mfn(0x2c00), 1);
    let b = encode_vec(&state);
    assert!(
        b.len() as u64 > PAGE_SIZE,
        "the blob does not fit the one-frame state range"
    );
    assert_eq!(
        decode(&b),
        Err(DecodeError::StateRangeTooSmall {
            range: MfnRange::new(Mfn(0x2c00), 1),
            blob_len: b.len() as u64
        })
    );
}

#[test]
fn read_header_reports_the_total_length() {
    let b = blob();
    let header = read_header(&b[..HEADER_SIZE]).expect("header alone");
    assert_eq!(header.total_len(), Some(b.len() as u64));
    assert_eq!(header.version, CURRENT);
    assert_eq!(&b[..8], &MAGIC);
}

#[test]
fn every_error_has_a_precise_message() {
    let e = decode(&[0u8; 10]).expect_err("bad magic");
    assert_eq!(
        e.to_string(),
        "bad magic [00, 00, 00, 00, 00, 00, 00, 00]: not a handover state"
    );
    let mut b = blob();
    b.push(0);
    assert!(decode(&b)
        .expect_err("trailing")
        .to_string()
        .starts_with("length mismatch: the header declares"));
}
