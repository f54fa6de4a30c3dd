//! This image's identity: its build id (baked in by `build.rs`). The
//! `HVLU` note that carries it, with the live-update entry and the handover
//! versions this image reads, is placed by `arch::start`.

use handover_abi::BuildId;

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("build id is not lower-case hex"),
    }
}

const fn parse(hex: &str) -> [u8; 16] {
    let h = hex.as_bytes();
    assert!(h.len() == 32, "build id must be 32 hex digits");
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (hex_digit(h[2 * i]) << 4) | hex_digit(h[2 * i + 1]);
        i += 1;
    }
    out
}

/// This image's build id.
pub const BUILD_ID: BuildId = BuildId(parse(env!("HVLU_BUILD_ID_HEX")));
/// The text the build id was derived from.
pub const BUILD_TEXT: &str = env!("HVLU_BUILD_ID_TEXT");

/// The first 8 bytes of the build id, for compact logs and `sysinfo`.
pub fn short() -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&BUILD_ID.0[..8]);
    u64::from_be_bytes(b)
}
