use super::*;
use proptest::prelude::*;

#[test]
fn check_value_matches_the_catalogue() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn fixed_vectors_match_the_crc32c_crate() {
    let vectors: [&[u8]; 6] = [
        b"",
        b"a",
        b"123456789",
        b"HVLUSTAT",
        &[0u8; 32],
        &[0xFFu8; 32],
    ];
    for v in vectors {
        assert_eq!(crc32c(v), ::crc32c::crc32c(v), "vector {v:02x?}");
    }
    // RFC 3720, B.4: 32 bytes of zeros and of ones.
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
}

#[test]
fn parts_equal_the_whole() {
    assert_eq!(
        crc32c_parts(&[b"1234", b"", b"56789"]),
        crc32c(b"123456789")
    );
}

proptest! {
    #[test]
    fn random_inputs_match_the_crc32c_crate(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert_eq!(crc32c(&data), ::crc32c::crc32c(&data));
    }

    #[test]
    fn random_splits_match_the_whole(data in proptest::collection::vec(any::<u8>(), 0..1024), cut in any::<prop::sample::Index>()) {
        let at = cut.index(data.len() + 1);
        let (a, b) = data.split_at(at);
        prop_assert_eq!(crc32c_parts(&[a, b]), ::crc32c::crc32c(&data));
    }
}
