//! The committed golden blobs decode to their known states and, for the
//! versions this build writes, re-encode to the same bytes.

mod common;

use common::golden;
use handover_abi::{decode, encode_as, AbiVersion, HandoverState, Header, HEADER_SIZE, MAGIC};

const V1_0: &[u8] = include_bytes!("golden/v1_0.bin");

#[test]
fn v1_0_decodes_to_the_known_state() {
    let decoded = decode(V1_0).expect("the golden v1.0 blob decodes");
    let expected: HandoverState = golden::state();
    assert_eq!(decoded.state, expected);
    assert_eq!(decoded.header.version, AbiVersion::new(1, 0));
    assert_eq!(decoded.header.producer, golden::producer());
    assert_eq!(decoded.header.body_len as usize, V1_0.len() - HEADER_SIZE);
}

#[test]
fn v1_0_reencodes_to_the_same_bytes() {
    let state: HandoverState = golden::state();
    let mut buf = vec![0u8; V1_0.len() + 100];
    let len = encode_as(golden::VERSION, &state, &golden::producer(), &mut buf).expect("encode");
    assert_eq!(
        &buf[..len],
        V1_0,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn v1_0_header_is_as_documented() {
    assert_eq!(&V1_0[0..8], &MAGIC);
    assert_eq!(&V1_0[8..12], &[1, 0, 0, 0], "version 1.0");
    assert_eq!(&V1_0[12..16], &64u32.to_le_bytes(), "header size");
    assert_eq!(&V1_0[52..64], &[0; 12], "reserved");
    let header = Header::from_bytes_unchecked(V1_0[..HEADER_SIZE].try_into().expect("header"));
    assert_eq!(
        header.body_crc,
        handover_abi::crc::crc32c(&V1_0[HEADER_SIZE..])
    );
}

#[test]
fn v1_0_state_is_complete() {
    // The golden state covers what the format can say: keep it that way for
    // every new version's blob.
    use handover_abi::RunKind;
    let state = golden::state();
    let dom0 = &state.domains[0];
    for kind in [
        RunKind::Data,
        RunKind::L1,
        RunKind::L2,
        RunKind::L3,
        RunKind::L4,
    ] {
        assert!(
            dom0.runs.iter().filter(|r| r.kind == kind).count() >= 2,
            "{kind:?}"
        );
    }
    assert_eq!(state.domains.len(), 3);
    assert_eq!(dom0.vcpus.len(), 2);
    assert!(!dom0.mmio.is_empty());
    assert!(state
        .domains
        .iter()
        .all(|d| d.pinned.iter().any(|p| p.level == RunKind::L4)));
}
