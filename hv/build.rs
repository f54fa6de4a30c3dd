//! Links the hypervisor with its own linker script and bakes in its build id.
//!
//! The build id is 16 bytes derived from the `HVLU_BUILD_ID` environment
//! variable (any text; default `hvlu-hv-<version>`). Two builds with
//! different texts differ only in their id: `cargo xtask soak` alternates
//! between two such builds so every update visibly replaces the image.

fn fnv1a(seed: u64, text: &str) -> u64 {
    let mut h = seed;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rerun-if-changed=linker.ld");

    println!("cargo:rerun-if-env-changed=HVLU_BUILD_ID");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let text = std::env::var("HVLU_BUILD_ID").unwrap_or_else(|_| format!("hvlu-hv-{version}"));
    let id = format!(
        "{:016x}{:016x}",
        fnv1a(0xcbf2_9ce4_8422_2325, &text),
        fnv1a(0x6c62_272e_07bb_0142, &text)
    );
    println!("cargo:rustc-env=HVLU_BUILD_ID_HEX={id}");
    println!("cargo:rustc-env=HVLU_BUILD_ID_TEXT={text}");

    // `HVLU_ABI=1.0` builds an image that reads and writes only handover
    // ABI 1.0, as an image from before 1.1 did: the compatibility tests
    // update between it and a current image in both directions.
    println!("cargo:rustc-check-cfg=cfg(hvlu_abi_1_0)");
    println!("cargo:rerun-if-env-changed=HVLU_ABI");
    match std::env::var("HVLU_ABI").as_deref() {
        Ok("1.0") => println!("cargo:rustc-cfg=hvlu_abi_1_0"),
        Ok("") | Err(_) => {}
        Ok(other) => {
            panic!("HVLU_ABI={other}: the only other ABI an image can be built for is 1.0")
        }
    }
}
