//! Signed images: the check before [`crate::image::validate`].
//!
//! A hypervisor image is accepted for a live update only if it carries an
//! Ed25519 signature by a key the running hypervisor trusts (the keys built
//! into it; see `docs/operator-guide.md`, "Signed images"). The signature
//! travels in the file as a fixed-size trailer appended after the ELF bytes
//! (`docs/abi.md` §6 has the layout byte by byte):
//!
//! ```text
//!  offset from the trailer's start (the trailer is the file's last 112 bytes)
//!    0  8  magic "HVLUSIG1"
//!    8 32  the signer's Ed25519 public key (its first 8 bytes: the key id)
//!   40 64  Ed25519 signature (RFC 8032) over every byte before the trailer
//!  104  8  trailer length, u64 little-endian: 112
//! ```
//!
//! [`verify`] reads the trailer from the end of the file and answers, in
//! this order: [`SignatureError::NotSigned`] (no well-formed trailer: the
//! file is shorter than one, its last 8 bytes are not 112, or the magic is
//! not there), [`SignatureError::UntrustedKey`] (the public key is not one of
//! the trusted keys, compared byte for byte) and
//! [`SignatureError::BadSignature`] (the signature does not verify). On
//! success it returns the image bytes without the trailer: what
//! [`crate::image::validate`] and [`crate::image::stage`] are given. An ELF
//! loader ignores trailing bytes, so a signed image still boots as is.

use alloc::vec::Vec;
use core::fmt;

use ed25519_compact::{KeyPair, PublicKey as EdPublicKey, Seed, Signature};

/// The trailer's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"HVLUSIG1";
/// The trailer's length in bytes (also its last field).
pub const TRAILER_LEN: usize = 112;
/// Offset of the public key in the trailer.
pub const KEY_OFFSET: usize = 8;
/// Offset of the signature in the trailer.
pub const SIGNATURE_OFFSET: usize = 40;
/// Offset of the trailer-length field in the trailer.
pub const LENGTH_OFFSET: usize = 104;

/// An Ed25519 public key (32 bytes, RFC 8032 encoding).
pub type PublicKey = [u8; 32];
/// An Ed25519 secret seed (32 bytes): the private half of a key pair.
pub type SecretSeed = [u8; 32];

/// The short name of a key in messages: the first 8 bytes of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &PublicKey) -> KeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&key[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    /// 16 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why an image's signature is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The file does not end with a well-formed signature trailer.
    #[error("not signed")]
    NotSigned,
    /// The trailer names a key that is not among the trusted keys.
    #[error("signed by a key this hypervisor does not trust (key id {key_id})")]
    UntrustedKey {
        /// The first 8 bytes of the trailer's public key.
        key_id: KeyId,
    },
    /// The key is trusted but the signature does not verify over the image.
    #[error("bad signature")]
    BadSignature,
}

/// A parsed trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// The signer's public key.
    pub public_key: PublicKey,
    /// The signature over the bytes before the trailer.
    pub signature: [u8; 64],
}

/// Splits `bytes` into the image and its trailer, if it ends with a
/// well-formed one (length field 112 and the magic at its start).
pub fn split(bytes: &[u8]) -> Option<(&[u8], Trailer)> {
    let start = bytes.len().checked_sub(TRAILER_LEN)?;
    let (image, t) = bytes.split_at(start);
    let len = u64::from_le_bytes(t[LENGTH_OFFSET..].try_into().ok()?);
    if len != TRAILER_LEN as u64 || t[..KEY_OFFSET] != MAGIC {
        return None;
    }
    Some((
        image,
        Trailer {
            public_key: t[KEY_OFFSET..SIGNATURE_OFFSET].try_into().ok()?,
            signature: t[SIGNATURE_OFFSET..LENGTH_OFFSET].try_into().ok()?,
        },
    ))
}

/// The image bytes of `bytes`: without its trailer if it has one.
pub fn strip(bytes: &[u8]) -> &[u8] {
    split(bytes).map_or(bytes, |(image, _)| image)
}

/// Checks that `bytes` ends with a signature trailer by one of `trusted`
/// over the bytes before it, and returns those bytes.
pub fn verify<'a>(bytes: &'a [u8], trusted: &[PublicKey]) -> Result<&'a [u8], SignatureError> {
    let (image, trailer) = split(bytes).ok_or(SignatureError::NotSigned)?;
    if !trusted.contains(&trailer.public_key) {
        return Err(SignatureError::UntrustedKey {
            key_id: KeyId::of(&trailer.public_key),
        });
    }
    // A trusted key that does not decode cannot have signed anything.
    let key =
        EdPublicKey::from_slice(&trailer.public_key).map_err(|_| SignatureError::BadSignature)?;
    key.verify(image, &Signature::new(trailer.signature))
        .map_err(|_| SignatureError::BadSignature)?;
    Ok(image)
}

/// The public key of the key pair with secret `seed`.
pub fn public_key(seed: &SecretSeed) -> PublicKey {
    *KeyPair::from_seed(Seed::new(*seed)).pk
}

/// `bytes` signed with the key pair of `seed`: the image (without any
/// trailer it already has, so signing again replaces the signature) followed
/// by a new trailer. Ed25519 signing is deterministic.
pub fn sign(bytes: &[u8], seed: &SecretSeed) -> Vec<u8> {
    let image = strip(bytes);
    let pair = KeyPair::from_seed(Seed::new(*seed));
    let signature = pair.sk.sign(image, None);
    let mut out = Vec::with_capacity(image.len() + TRAILER_LEN);
    out.extend_from_slice(image);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&pair.pk[..]);
    out.extend_from_slice(&signature[..]);
    out.extend_from_slice(&(TRAILER_LEN as u64).to_le_bytes());
    out
}

/// Parses a key written as 64 hex digits (either case), surrounding
/// whitespace ignored: the format of `target/keys/dev.pub`,
/// `target/keys/dev.key` (the secret seed) and each line of a trusted-keys
/// file.
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: SecretSeed = [7; 32];
    const OTHER: SecretSeed = [9; 32];

    fn image() -> Vec<u8> {
        (0..600u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trip() {
        let img = image();
        let signed = sign(&img, &SEED);
        assert_eq!(signed.len(), img.len() + TRAILER_LEN);
        assert_eq!(&signed[img.len()..img.len() + 8], b"HVLUSIG1");
        assert_eq!(
            &signed[signed.len() - 8..],
            &112u64.to_le_bytes(),
            "last field"
        );
        assert_eq!(verify(&signed, &[public_key(&SEED)]), Ok(&img[..]));
        // Among other trusted keys, in any position.
        assert_eq!(
            verify(&signed, &[public_key(&OTHER), public_key(&SEED)]),
            Ok(&img[..])
        );
    }

    #[test]
    fn signing_again_replaces_the_trailer() {
        let img = image();
        let once = sign(&img, &OTHER);
        let twice = sign(&once, &SEED);
        assert_eq!(twice, sign(&img, &SEED));
        assert_eq!(strip(&twice), &img[..]);
    }

    #[test]
    fn unsigned_is_refused() {
        let trusted = [public_key(&SEED)];
        assert_eq!(verify(&image(), &trusted), Err(SignatureError::NotSigned));
        assert_eq!(verify(&[], &trusted), Err(SignatureError::NotSigned));
        assert_eq!(
            verify(&[0; TRAILER_LEN - 1], &trusted),
            Err(SignatureError::NotSigned)
        );
        assert_eq!(
            SignatureError::NotSigned.to_string(),
            "not signed",
            "the reason lu load gives"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_its_id() {
        let signed = sign(&image(), &OTHER);
        let err = verify(&signed, &[public_key(&SEED)]).unwrap_err();
        let id = KeyId::of(&public_key(&OTHER));
        assert_eq!(err, SignatureError::UntrustedKey { key_id: id });
        assert_eq!(
            err.to_string(),
            format!("signed by a key this hypervisor does not trust (key id {id})")
        );
        // No trusted key at all.
        assert!(matches!(
            verify(&signed, &[]),
            Err(SignatureError::UntrustedKey { .. })
        ));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let img = image();
        let signed = sign(&img, &SEED);
        let trusted = [public_key(&SEED)];
        for i in 0..signed.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = signed.clone();
                bad[i] ^= bit;
                let got = verify(&bad, &trusted);
                let want = if i < img.len()
                    || (img.len() + SIGNATURE_OFFSET..img.len() + LENGTH_OFFSET).contains(&i)
                {
                    // Image or signature bytes.
                    SignatureError::BadSignature
                } else if (img.len() + KEY_OFFSET..img.len() + SIGNATURE_OFFSET).contains(&i) {
                    // Another key.
                    SignatureError::UntrustedKey {
                        key_id: KeyId::of(bad[img.len() + KEY_OFFSET..][..32].try_into().unwrap()),
                    }
                } else {
                    // Magic or length.
                    SignatureError::NotSigned
                };
                assert_eq!(got, Err(want), "byte {i} bit {bit:#x}");
            }
        }
        assert_eq!(verify(&signed, &trusted), Ok(&img[..]));
        assert_eq!(SignatureError::BadSignature.to_string(), "bad signature");
    }

    #[test]
    fn truncated_or_extended_trailer_is_refused() {
        let img = image();
        let signed = sign(&img, &SEED);
        let trusted = [public_key(&SEED)];
        for cut in 1..=TRAILER_LEN {
            assert_eq!(
                verify(&signed[..signed.len() - cut], &trusted),
                Err(SignatureError::NotSigned),
                "{cut} bytes cut"
            );
        }
        let mut longer = signed.clone();
        longer.push(0);
        assert_eq!(verify(&longer, &trusted), Err(SignatureError::NotSigned));
        // Signed bytes moved: a byte appended to the image before the trailer.
        let mut moved = img.clone();
        moved.push(0);
        moved.extend_from_slice(&signed[img.len()..]);
        assert_eq!(verify(&moved, &trusted), Err(SignatureError::BadSignature));
    }

    #[test]
    fn hex_keys() {
        let pk = public_key(&SEED);
        let hex: String = pk.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_hex32(&format!("  {hex}\n")), Some(pk));
        assert_eq!(parse_hex32(&hex[1..]), None);
        assert_eq!(
            parse_hex32(&hex.replace('A', "g")),
            if hex.contains('A') { None } else { Some(pk) }
        );
    }
}
