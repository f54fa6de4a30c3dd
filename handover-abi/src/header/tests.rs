use super::*;

fn sample() -> Header {
    Header::new(
        AbiVersion::new(1, 0),
        b"some body bytes",
        Producer {
            build_id: BuildId(*b"0123456789abcdef"),
            abi: AbiVersion::new(1, 3),
        },
    )
}

#[test]
fn fields_sit_at_their_documented_offsets() {
    let h = sample();
    let b = h.to_bytes();
    assert_eq!(&b[0..8], b"HVLUSTAT");
    assert_eq!(&b[8..10], &1u16.to_le_bytes());
    assert_eq!(&b[10..12], &0u16.to_le_bytes());
    assert_eq!(&b[12..16], &64u32.to_le_bytes());
    assert_eq!(&b[16..24], &15u64.to_le_bytes());
    assert_eq!(&b[24..28], &crc32c(b"some body bytes").to_le_bytes());
    assert_eq!(&b[28..32], &h.header_crc.to_le_bytes());
    assert_eq!(&b[32..48], b"0123456789abcdef");
    assert_eq!(&b[48..50], &1u16.to_le_bytes());
    assert_eq!(&b[50..52], &3u16.to_le_bytes());
    assert_eq!(&b[52..64], &[0u8; 12]);
}

#[test]
fn header_crc_is_computed_with_its_field_zero() {
    let h = sample();
    let mut b = h.to_bytes();
    b[offset::HEADER_CRC..offset::HEADER_CRC + 4].fill(0);
    assert_eq!(crc32c(&b), h.header_crc);
    assert_eq!(Header::crc_of(&h.to_bytes()), h.header_crc);
}

#[test]
fn bytes_round_trip() {
    let h = sample();
    assert_eq!(Header::from_bytes_unchecked(&h.to_bytes()), h);
}

#[test]
fn total_length_is_header_plus_body() {
    let h = sample();
    assert_eq!(h.total_len(), Some(64 + 15));
    let huge = Header {
        body_len: u64::MAX,
        ..h
    };
    assert_eq!(huge.total_len(), None);
}

#[test]
fn build_id_prints_as_hex() {
    let id = BuildId([0xab; 16]);
    assert_eq!(id.to_string(), "ab".repeat(16));
    assert_eq!(format!("{id:?}"), format!("BuildId({})", "ab".repeat(16)));
}

#[test]
fn this_build_writes_its_current_version() {
    assert_eq!(Producer::this_build(BuildId::default()).abi, CURRENT);
}
