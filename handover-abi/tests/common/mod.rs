//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses only some of the helpers")]

use handover_abi::header::offset;
use handover_abi::{
    crc::crc32c, decode, encode, encoded_len, DecodeError, HandoverState, Header, Producer,
    StateError, HEADER_SIZE,
};

#[path = "../golden/state_v1_3.rs"]
pub mod golden;

/// A complete valid state: the golden v1.3 state (this build's in-memory
/// type, every field of the format filled in: three PV domains and an HVM
/// domain).
pub fn sample() -> HandoverState {
    golden::state()
}

/// A complete valid state without an HVM domain: the golden v1.2 state.
pub fn pv_sample() -> HandoverState {
    HandoverState::from(golden::v1_2::state())
}

/// A complete valid state that 1.0 and 1.1 can carry: the golden v1.1 state
/// on a machine whose devices make its dom0's access the default, nothing
/// paused.
pub fn older_sample() -> HandoverState {
    let mut state = HandoverState::from(golden::v1_2::on_older_devices(
        handover_abi::body::v1_2::HandoverState::from(golden::v1_2::v1_1::state()),
    ));
    for d in &mut state.domains {
        d.paused = false;
    }
    state
}

/// The producer the tests write as.
pub fn producer() -> Producer {
    golden::producer()
}

/// Encodes `state` into a vector of exactly the blob's length.
pub fn encode_vec(state: &HandoverState) -> Vec<u8> {
    let len = encoded_len(state).expect("encoded_len");
    let mut buf = vec![0u8; len];
    let written = encode(state, &producer(), &mut buf).expect("encode");
    assert_eq!(written, len);
    buf
}

/// The header of `blob`, with its fields as written.
pub fn header_of(blob: &[u8]) -> Header {
    Header::from_bytes_unchecked(blob[..HEADER_SIZE].try_into().expect("a header"))
}

/// Recomputes the header CRC after the header was edited.
pub fn reseal_header(blob: &mut [u8]) {
    let bytes: &[u8; HEADER_SIZE] = blob[..HEADER_SIZE].try_into().expect("a header");
    let crc = Header::crc_of(bytes);
    blob[offset::HEADER_CRC..offset::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes body length, body CRC and header CRC after the body was edited:
/// a corruption that the checksums cannot see.
pub fn reseal_body(blob: &mut [u8]) {
    let body_len = (blob.len() - HEADER_SIZE) as u64;
    let body_crc = crc32c(&blob[HEADER_SIZE..]);
    blob[offset::BODY_LEN..offset::BODY_LEN + 8].copy_from_slice(&body_len.to_le_bytes());
    blob[offset::BODY_CRC..offset::BODY_CRC + 4].copy_from_slice(&body_crc.to_le_bytes());
    reseal_header(blob);
}

/// Encodes `state` and decodes it back, expecting a structural error.
pub fn invalid(state: &HandoverState) -> StateError {
    match decode(&encode_vec(state)) {
        Err(DecodeError::Invalid(e)) => {
            assert_eq!(state.validate(), Err(e), "validate and decode disagree");
            e
        }
        other => panic!("expected a structural error, got {other:?}"),
    }
}
