//! The development signing key and image signing.
//!
//! The running hypervisor accepts a live-update image only if it is signed
//! by a key built into it (`old_hv::signature`, `docs/abi.md` §6,
//! `docs/operator-guide.md` "Signed images"). `cargo xtask` keeps a
//! development key pair in `target/keys/`: `dev.key` (the 32-byte secret
//! seed, 64 hex digits, readable by its owner only) and `dev.pub` (the public
//! key, 64 hex digits), made from the OS random number generator on first
//! use. `hv/build.rs` builds `dev.pub` into every hypervisor unless
//! `HVLU_TRUSTED_KEYS` names another file, and `cargo xtask build` signs
//! every hypervisor image with `dev.key` unless `HVLU_SIGNING_KEY` names
//! another secret key file.

use std::fs;
use std::path::{Path, PathBuf};

use hvlu_harness::keys::{dev_secret, dir};
use old_hv::signature::{self, KeyId, SecretSeed};

use crate::shell::Failure;

/// The development public key file.
pub fn dev_public() -> PathBuf {
    dir().join("dev.pub")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(what: &Path, e: std::io::Error) -> Failure {
    Failure::Failed(format!("{}: {e}", what.display()))
}

/// Creates the development key pair if `target/keys/dev.key` is missing,
/// and (re)writes `dev.pub` from it when it is missing or differs.
pub fn ensure_dev_keys() -> Result<(), Failure> {
    let secret = dev_secret();
    if !secret.exists() {
        fs::create_dir_all(dir()).map_err(|e| io(&dir(), e))?;
        let mut seed: SecretSeed = [0; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Failure::Failed(format!("no OS randomness for a key: {e}")))?;
        write_secret(&secret, &format!("{}\n", hex(&seed)))?;
        let id = KeyId::of(&signature::public_key(&seed));
        println!(
            "xtask: created the development signing key {} (key id {id})",
            secret.display()
        );
    }
    let seed = read_secret(&secret)?;
    let public = format!("{}\n", hex(&signature::public_key(&seed)));
    if fs::read_to_string(dev_public()).ok().as_deref() != Some(public.as_str()) {
        fs::write(dev_public(), public).map_err(|e| io(&dev_public(), e))?;
    }
    Ok(())
}

fn write_secret(path: &Path, text: &str) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io(path, e))?;
        f.write_all(text.as_bytes()).map_err(|e| io(path, e))
    }
    #[cfg(not(unix))]
    fs::write(path, text).map_err(|e| io(path, e))
}

/// Reads a secret key file (64 hex digits: the Ed25519 seed).
pub fn read_secret(path: &Path) -> Result<SecretSeed, Failure> {
    hvlu_harness::keys::read_secret(path).map_err(Failure::Failed)
}

/// The key `cargo xtask build` signs with: `HVLU_SIGNING_KEY`, or the
/// development key (created if missing).
pub fn build_key() -> Result<PathBuf, Failure> {
    let key = hvlu_harness::keys::signing_key();
    if key == dev_secret() {
        ensure_dev_keys()?;
    }
    Ok(key)
}

/// Signs the file `image` with the secret key in `key`, writing the result
/// to `out` (which may be `image`: in place). A trailer the file already has
/// is replaced; the file is not rewritten when nothing changes.
pub fn sign_file(key: &Path, image: &Path, out: &Path) -> Result<KeyId, Failure> {
    hvlu_harness::keys::sign_file(key, image, out).map_err(Failure::Failed)
}

/// `cargo xtask sign`.
pub fn sign(key: Option<PathBuf>, image: &Path, out: Option<PathBuf>) -> Result<(), Failure> {
    let key = match key {
        Some(k) => k,
        None => build_key()?,
    };
    let out = out.unwrap_or_else(|| image.to_path_buf());
    let id = sign_file(&key, image, &out)?;
    println!(
        "xtask: signed {} with key id {id} -> {}",
        image.display(),
        out.display()
    );
    Ok(())
}
