//! Links the hypervisor with its own linker script and bakes in its
//! provisional build id.
//!
//! The provisional build id is 16 bytes derived from the `HVLU_BUILD_ID`
//! environment variable (any text; default `hvlu-hv-<version>`), which the
//! image also keeps as its name in logs. `cargo xtask build` replaces it in
//! the linked image with the image's content hash (`docs/abi.md` §4.2), so
//! that two different images never share an id; two builds with different
//! texts are different images (`cargo xtask soak` alternates between two
//! such builds so every update visibly replaces the image).
//!
//! It also bakes in the Ed25519 public keys whose signatures `lu load`
//! accepts: one key a line, 64 hex digits (blank lines and `#` comments
//! skipped), from the file `HVLU_TRUSTED_KEYS` names, or by default
//! `target/keys/dev.pub` (the development key `cargo xtask` creates). A
//! missing default file gives a hypervisor that trusts no key (it refuses
//! every update), with a build warning; a missing `HVLU_TRUSTED_KEYS` file
//! stops the build.

use std::fmt::Write as _;
use std::path::PathBuf;

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
    // Only the bare-metal image is linked with the script; on the host the
    // binary is an ordinary program (`src/bin/hv.rs`).
    let bare_metal = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none");
    if bare_metal {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
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

    trusted_keys(&dir, bare_metal);

    // `HVLU_ABI=2.0` builds an image whose note says it reads and writes
    // only handover ABI 2.0, a major no release has: the test that every
    // release refuses an image outside its major (`tests/tests/major.rs`)
    // loads it. It is only a test target; it cannot hand over to anything.
    println!("cargo:rustc-check-cfg=cfg(hvlu_abi_2_0)");
    println!("cargo:rerun-if-env-changed=HVLU_ABI");
    match std::env::var("HVLU_ABI").as_deref() {
        Ok("2.0") => println!("cargo:rustc-cfg=hvlu_abi_2_0"),
        Ok("") | Err(_) => {}
        Ok(other) => {
            panic!("HVLU_ABI={other}: the only other ABI an image can be built for is 2.0")
        }
    }
}

fn parse_key(line: &str) -> Option<[u8; 32]> {
    let hex = line.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        key[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Some(key)
}

/// Writes `$OUT_DIR/trusted_keys.rs`: `pub const TRUSTED_KEYS: &[[u8; 32]]`.
fn trusted_keys(dir: &str, bare_metal: bool) {
    println!("cargo:rerun-if-env-changed=HVLU_TRUSTED_KEYS");
    let explicit = std::env::var_os("HVLU_TRUSTED_KEYS").filter(|v| !v.is_empty());
    let path = match &explicit {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(dir).join("../target/keys/dev.pub"),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let mut keys = Vec::new();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                match parse_key(line) {
                    Some(k) => keys.push(k),
                    None => panic!(
                        "{}:{}: not an Ed25519 public key (64 hex digits)",
                        path.display(),
                        n + 1
                    ),
                }
            }
        }
        Err(e) if explicit.is_some() => {
            panic!("HVLU_TRUSTED_KEYS={}: {e}", path.display())
        }
        // Only an image can refuse updates: a host build has no keys to use.
        Err(_) if !bare_metal => {}
        Err(_) => println!(
            "cargo:warning=no trusted keys ({} is missing; `cargo xtask build` creates it): \
             this hypervisor will refuse every live update",
            path.display()
        ),
    }
    let mut out = String::from("/// The Ed25519 public keys `lu load` accepts signatures by.\n");
    out.push_str("pub const TRUSTED_KEYS: &[[u8; 32]] = &[\n");
    for k in &keys {
        let _ = writeln!(out, "    {k:?},");
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(PathBuf::from(out_dir).join("trusted_keys.rs"), out)
        .expect("write trusted_keys.rs");
}
