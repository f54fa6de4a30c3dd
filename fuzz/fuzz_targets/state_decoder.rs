//! Fuzzes the handover state decoder.
//!
//! Each input is tried twice: as a whole blob (exercising the header checks),
//! and as a body behind a correct header for it (so that the fuzzer reaches
//! postcard and the structural invariants without having to forge CRCs).
//! A state that decodes must re-encode to the same bytes (a blob has one
//! encoding: padded varints are refused) and decode to the same state.

#![no_main]

use handover_abi::{
    decode, encode, encoded_len, read_header, BuildId, Header, Producer, CURRENT, HEADER_SIZE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_header(data);
    let _ = decode(data);

    let producer = Producer::this_build(BuildId([0xf2; 16]));
    let header = Header::new(CURRENT, data, producer);
    let mut blob = Vec::with_capacity(HEADER_SIZE + data.len());
    blob.extend_from_slice(&header.to_bytes());
    blob.extend_from_slice(data);
    if let Ok(decoded) = decode(&blob) {
        assert_eq!(decoded.state.validate(), Ok(()));
        let len = encoded_len(&decoded.state).expect("a decoded state has a length");
        let mut again = vec![0u8; len];
        let written =
            encode(&decoded.state, &producer, &mut again).expect("a decoded state encodes");
        assert_eq!(written, len);
        assert_eq!(again, blob, "a decoded state re-encodes to its own bytes");
        let round = decode(&again).expect("a re-encoded state decodes");
        assert_eq!(round.state, decoded.state);
    }
});
