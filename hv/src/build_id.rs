//! This image's identity: its build id and the handover versions it reads
//! and writes. The `HVLU` note that carries them, with the live-update
//! entry, is placed by `arch::start`.
//!
//! The build id is the image's content (`docs/abi.md` §4.2): `cargo xtask
//! build` stamps the first 16 bytes of the SHA-512 of the linked file, its
//! id field zeroed, into the note, and [`id`] reads it from there. Before
//! that stamp the note holds [`PROVISIONAL_ID`], derived by `build.rs` from
//! a text (`HVLU_BUILD_ID`), which an image built without `cargo xtask`
//! keeps.

#[cfg(hvlu_abi_2_0)]
use handover_abi::version::AbiVersion;
use handover_abi::version::VersionRange;
use handover_abi::BuildId;

/// The handover versions this image reads: what its `HVLU` note says.
/// `handover_abi::READS`, or only 2.0 in an image built with `HVLU_ABI=2.0`.
#[cfg(not(hvlu_abi_2_0))]
pub const READS: VersionRange = handover_abi::READS;
/// The handover versions this image writes when it hands over.
#[cfg(not(hvlu_abi_2_0))]
pub const WRITES: VersionRange = handover_abi::WRITES;
/// The handover versions this image reads: only 2.0 (`HVLU_ABI=2.0`, a
/// test target outside every release's major).
#[cfg(hvlu_abi_2_0)]
pub const READS: VersionRange = VersionRange::single(AbiVersion::new(2, 0));
/// The handover versions this image writes: only 2.0 (`HVLU_ABI=2.0`).
#[cfg(hvlu_abi_2_0)]
pub const WRITES: VersionRange = VersionRange::single(AbiVersion::new(2, 0));

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

/// The build id the note is compiled with, before `cargo xtask build`
/// stamps the image's own.
pub const PROVISIONAL_ID: BuildId = BuildId(parse(env!("HVLU_BUILD_ID_HEX")));

/// This image's build id, as its note holds it.
pub fn id() -> BuildId {
    crate::arch::build_id()
}

/// The text [`PROVISIONAL_ID`] was derived from: the build's name in logs.
pub const BUILD_TEXT: &str = env!("HVLU_BUILD_ID_TEXT");

/// The first 8 bytes of the build id, for compact logs and `sysinfo`.
pub fn short() -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id().0[..8]);
    u64::from_be_bytes(b)
}

include!(concat!(env!("OUT_DIR"), "/trusted_keys.rs"));
