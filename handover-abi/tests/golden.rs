//! The committed golden blobs decode to their known states and, for the
//! versions this build writes, re-encode to the same bytes.

// `state_v1_1.rs` builds on the v1.0 state and includes its file too.
#![allow(clippy::duplicate_mod)]

#[path = "golden/state_v1_0.rs"]
mod golden;
#[path = "golden/state_v1_1.rs"]
mod golden_v1_1;

use handover_abi::body::Inexpressible;
use handover_abi::{
    decode, encode_as, AbiVersion, EncodeError, HandoverState, Header, HEADER_SIZE, MAGIC,
};
use hvlu_types::DomId;

const V1_0: &[u8] = include_bytes!("golden/v1_0.bin");
const V1_1: &[u8] = include_bytes!("golden/v1_1.bin");

fn encode(version: AbiVersion, state: &HandoverState) -> Result<Vec<u8>, EncodeError> {
    let mut buf = vec![0u8; 64 * 1024];
    let producer = if version == golden::VERSION {
        golden::producer()
    } else {
        golden_v1_1::producer()
    };
    let len = encode_as(version, state, &producer, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

#[test]
fn v1_0_decodes_to_the_known_state() {
    let decoded = decode(V1_0).expect("the golden v1.0 blob decodes");
    // A 1.0 blob becomes this build's types with every v1.1 addition empty.
    let expected = HandoverState::from(golden::state());
    assert_eq!(decoded.state, expected);
    assert!(decoded.state.domains.iter().all(|d| !d.paused));
    assert!(decoded.state.retired.is_empty() && decoded.state.globals.cmdline.is_empty());
    assert_eq!(decoded.header.version, AbiVersion::new(1, 0));
    assert_eq!(decoded.header.producer, golden::producer());
    assert_eq!(decoded.header.body_len as usize, V1_0.len() - HEADER_SIZE);
}

#[test]
fn v1_0_reencodes_to_the_same_bytes() {
    let state = HandoverState::from(golden::state());
    assert_eq!(
        encode(golden::VERSION, &state).expect("encode"),
        V1_0,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn v1_1_decodes_to_the_known_state() {
    let decoded = decode(V1_1).expect("the golden v1.1 blob decodes");
    assert_eq!(decoded.state, golden_v1_1::state());
    assert_eq!(decoded.header.version, AbiVersion::new(1, 1));
    assert_eq!(decoded.header.producer, golden_v1_1::producer());
}

#[test]
fn v1_1_reencodes_to_the_same_bytes() {
    assert_eq!(
        encode(golden_v1_1::VERSION, &golden_v1_1::state()).expect("encode"),
        V1_1,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn v1_1_state_is_complete() {
    // Every addition of v1.1 is exercised by its blob.
    let state = golden_v1_1::state();
    assert!(state.domains.iter().any(|d| d.paused));
    assert!(state.domains.iter().any(|d| !d.paused));
    assert!(state.domains.iter().all(|d| d.reports.checks > 0));
    assert!(state.domains.iter().any(|d| d.reports.expect_fault));
    assert!(!state.globals.cmdline.is_empty());
    assert_eq!(state.retired.len(), 2);
}

#[test]
fn a_paused_domain_cannot_be_written_as_v1_0() {
    assert_eq!(
        encode(golden::VERSION, &golden_v1_1::state()),
        Err(EncodeError::Inexpressible {
            version: AbiVersion::new(1, 0),
            what: Inexpressible::PausedDomain(DomId(3)),
        })
    );
    let e = handover_abi::encoded_len_as(golden::VERSION, &golden_v1_1::state()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ABI 1.0 cannot carry this state: d3 is paused, and ABI 1.0 cannot say so \
         (the new image would resume it)"
    );
}

#[test]
fn writing_v1_0_drops_the_hypervisors_records_only() {
    // Nothing paused: 1.0 carries every guest-visible field, and drops the
    // reports, the command line and the retired domains.
    let mut state = golden_v1_1::state();
    for d in &mut state.domains {
        d.paused = false;
    }
    let back = decode(&encode(golden::VERSION, &state).expect("encode"))
        .expect("decode")
        .state;
    let mut expected = state.clone();
    expected.globals.cmdline.clear();
    expected.retired.clear();
    for d in &mut expected.domains {
        d.reports = Default::default();
    }
    assert_eq!(back, expected);
    assert_eq!(
        handover_abi::body::carried(golden::VERSION, &state).into_owned(),
        expected
    );
    // What is dropped, as the writer announces it before pausing.
    let dropped = handover_abi::body::dropped(golden::VERSION, &state);
    assert_eq!(
        dropped,
        handover_abi::body::Dropped {
            cmdline: !state.globals.cmdline.is_empty(),
            reports: state
                .domains
                .iter()
                .filter(|d| d.reports != Default::default())
                .count(),
            retired: state.retired.len(),
        }
    );
    assert!(
        !dropped.is_empty(),
        "the golden 1.1 state has records to drop"
    );
    assert!(handover_abi::body::dropped(golden::VERSION, &expected).is_empty());
    assert!(handover_abi::body::dropped(golden_v1_1::VERSION, &state).is_empty());
    let text = handover_abi::body::Dropped {
        cmdline: true,
        reports: 2,
        retired: 1,
    }
    .to_string();
    assert_eq!(
        text,
        "the command line, the reports of 2 domain(s), 1 retired domain(s)"
    );
    // And 1.1 carries it all.
    let back = decode(&encode(golden_v1_1::VERSION, &state).expect("encode"))
        .expect("decode")
        .state;
    assert_eq!(back, state);
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
    let state = HandoverState::from(golden::state());
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
