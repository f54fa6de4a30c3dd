//! `encode`: errors, lengths, and that it does not allocate.

mod common;

use common::{producer, sample};
use handover_abi::{
    decode, encode, encode_as, encoded_len, encoded_len_as, AbiVersion, EncodeError, CURRENT,
    HEADER_SIZE,
};

#[test]
fn encoded_len_is_what_encode_writes() {
    let state = sample();
    let mut buf = vec![0u8; 8192];
    let n = encode(&state, &producer(), &mut buf).expect("encode");
    assert_eq!(encoded_len(&state), Ok(n));
    assert_eq!(encoded_len_as(CURRENT, &state), Ok(n));
}

#[test]
fn encode_writes_nothing_past_the_blob() {
    let state = sample();
    let mut buf = vec![0xAAu8; 8192];
    let n = encode(&state, &producer(), &mut buf).expect("encode");
    assert!(buf[n..].iter().all(|&b| b == 0xAA));
    assert_eq!(decode(&buf[..n]).map(|d| d.state), Ok(state));
}

#[test]
fn encode_as_current_is_encode() {
    let state = sample();
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    let n = encode(&state, &producer(), &mut a).expect("encode");
    let m = encode_as(CURRENT, &state, &producer(), &mut b).expect("encode_as");
    assert_eq!(a[..n], b[..m]);
}

#[test]
fn encode_does_not_allocate() {
    // The counter sees allocations at all.
    let info = allocation_counter::measure(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(info.count_total, 1);

    let state = sample();
    let producer = producer();
    let mut buf = vec![0u8; 8192];
    let mut result = None;
    let info = allocation_counter::measure(|| {
        result = Some(encode(&state, &producer, &mut buf));
    });
    assert!(matches!(result, Some(Ok(_))));
    assert_eq!(info.count_total, 0, "encode allocated");
    // Failing for want of space does not allocate either.
    let mut small = [0u8; 100];
    let info = allocation_counter::measure(|| {
        result = Some(encode(&state, &producer, &mut small));
    });
    assert!(matches!(
        result,
        Some(Err(EncodeError::BufferTooSmall { .. }))
    ));
    assert_eq!(info.count_total, 0, "encode allocated on its error path");
}

#[test]
fn encoding_an_older_minor_does_not_allocate_either() {
    // The borrowing view and the check of what the version can carry (the
    // privileged domain's access compared with the device memory).
    let state = common::older_sample();
    assert!(!state.devices.is_empty());
    let producer = producer();
    let mut buf = vec![0u8; 8192];
    for minor in [0, 1] {
        let version = AbiVersion::new(1, minor);
        let mut result = None;
        let info = allocation_counter::measure(|| {
            result = Some(encode_as(version, &state, &producer, &mut buf));
        });
        assert!(matches!(result, Some(Ok(_))), "{version}: {result:?}");
        assert_eq!(info.count_total, 0, "encoding {version} allocated");
    }
    // Nor does a refusal.
    let mut refused = state.clone();
    refused.domains[0].identity.clear();
    let mut result = None;
    let info = allocation_counter::measure(|| {
        result = Some(encode_as(
            AbiVersion::new(1, 1),
            &refused,
            &producer,
            &mut buf,
        ));
    });
    assert!(
        matches!(result, Some(Err(EncodeError::Inexpressible { .. }))),
        "{result:?}"
    );
    assert_eq!(info.count_total, 0, "a refusal allocated");
}

#[test]
fn buffer_too_small_for_the_header() {
    let state = sample();
    let needed = encoded_len(&state).expect("len");
    let mut buf = [0u8; HEADER_SIZE - 1];
    assert_eq!(
        encode(&state, &producer(), &mut buf),
        Err(EncodeError::BufferTooSmall {
            needed,
            available: HEADER_SIZE - 1
        })
    );
}

#[test]
fn buffer_too_small_for_the_body() {
    let state = sample();
    let needed = encoded_len(&state).expect("len");
    let mut buf = vec![0u8; needed - 1];
    assert_eq!(
        encode(&state, &producer(), &mut buf),
        Err(EncodeError::BufferTooSmall {
            needed,
            available: needed - 1
        })
    );
    let mut buf = vec![0u8; needed];
    assert_eq!(encode(&state, &producer(), &mut buf), Ok(needed));
}

#[test]
fn unsupported_version() {
    let state = sample();
    let mut buf = vec![0u8; 4096];
    for v in [
        AbiVersion::new(1, 4),
        AbiVersion::new(2, 0),
        AbiVersion::new(0, 9),
    ] {
        assert_eq!(
            encode_as(v, &state, &producer(), &mut buf),
            Err(EncodeError::UnsupportedVersion { requested: v })
        );
        assert_eq!(
            encoded_len_as(v, &state),
            Err(EncodeError::UnsupportedVersion { requested: v })
        );
    }
    assert_eq!(
        EncodeError::UnsupportedVersion {
            requested: AbiVersion::new(1, 4)
        }
        .to_string(),
        "this build does not write ABI version 1.4 (it writes 1.0..=1.3)"
    );
}
