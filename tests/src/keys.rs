//! The key hypervisor images are signed with, and signing a file with it
//! (`docs/abi.md` §6). `cargo xtask` creates the development key pair
//! (`xtask/src/keys.rs`); the harness signs the release images it builds
//! ([`crate::releases`]) with the same key, so that the current
//! hypervisor, which trusts `target/keys/dev.pub`, loads them.

use std::fs;
use std::path::{Path, PathBuf};

use old_hv::signature::{self, KeyId, SecretSeed};

use crate::qemu::root;

/// `target/keys/`, where the development key pair lives.
pub fn dir() -> PathBuf {
    root().join("target/keys")
}

/// The development secret key file (64 hex digits: the Ed25519 seed).
pub fn dev_secret() -> PathBuf {
    dir().join("dev.key")
}

/// The secret key images are signed with: the file `HVLU_SIGNING_KEY`
/// names, else the development key. Whether it exists is not checked here.
pub fn signing_key() -> PathBuf {
    std::env::var_os("HVLU_SIGNING_KEY")
        .filter(|v| !v.is_empty())
        .map_or_else(dev_secret, PathBuf::from)
}

/// Reads a secret key file (64 hex digits: the Ed25519 seed).
pub fn read_secret(path: &Path) -> Result<SecretSeed, String> {
    let text = fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (`cargo xtask build` creates the development key)",
            path.display()
        )
    })?;
    signature::parse_hex32(&text).ok_or_else(|| {
        format!(
            "{}: not an Ed25519 secret key (64 hex digits)",
            path.display()
        )
    })
}

/// Signs the file `image` with the secret key in `key`, writing the result
/// to `out` (which may be `image`: in place). A trailer the file already has
/// is replaced; the file is not rewritten when nothing changes. Returns the
/// key's id.
pub fn sign_file(key: &Path, image: &Path, out: &Path) -> Result<KeyId, String> {
    let seed = read_secret(key)?;
    let bytes = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let signed = signature::sign(&bytes, &seed);
    if out != image || signed != bytes {
        fs::write(out, &signed).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(KeyId::of(&signature::public_key(&seed)))
}
