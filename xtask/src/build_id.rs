//! The build id of a hypervisor image: a hash of its content
//! (`docs/abi.md` §4.2).
//!
//! The id is the first 16 bytes of the SHA-512 of the ELF file — without a
//! signature trailer — in which the 16 bytes of the `HVLU` note's
//! `build_id` field are taken as zero. `cargo xtask build` stamps it into
//! the note after linking and before signing ([`stamp`]); the image reads
//! it from its note at run time. Two images differ in their id exactly when
//! they differ in a byte, and one source tree built twice gives one id
//! (the build is reproducible, and so is its id). Stamping a stamped image
//! changes nothing.

use std::fs;
use std::path::Path;

use goblin::elf::Elf;
use handover_abi::note::{desc_offset, is_hvlu_name, ImageNote, NOTE_TYPE};
use handover_abi::BuildId;
use old_hv::signature;

use crate::shell::Failure;

/// Where the `HVLU` note's build id lies in `elf`: its file offset.
pub fn field_offset(elf: &[u8]) -> Result<usize, String> {
    let parsed = Elf::parse(elf).map_err(|e| format!("not an ELF image: {e}"))?;
    let mut found = None;
    for note in parsed.iter_note_headers(elf).into_iter().flatten() {
        let note = note.map_err(|e| format!("a note segment does not parse: {e}"))?;
        if !is_hvlu_name(note.name.as_bytes()) || note.n_type != NOTE_TYPE {
            continue;
        }
        ImageNote::parse_desc(note.desc).map_err(|e| e.to_string())?;
        // The descriptor is a slice of `elf`: its offset is the distance
        // between the two starts.
        let desc = note.desc.as_ptr() as usize - elf.as_ptr() as usize;
        if found.replace(desc + desc_offset::BUILD_ID).is_some() {
            return Err("the image has two HVLU notes".into());
        }
    }
    found.ok_or_else(|| "the image has no HVLU note in a PT_NOTE segment".into())
}

/// The build id of `elf` (an ELF image without a signature trailer) whose
/// note's build id lies at `field`: its content hash with that field zero.
pub fn of(elf: &[u8], field: usize) -> BuildId {
    let mut hash = ed25519_compact::sha512::Hash::new();
    hash.update(&elf[..field]);
    hash.update([0u8; 16]);
    hash.update(&elf[field + 16..]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.finalize()[..16]);
    BuildId(id)
}

/// `elf` with its note's build id set to its content hash.
pub fn stamped(elf: &[u8]) -> Result<(Vec<u8>, BuildId), String> {
    let field = field_offset(elf)?;
    let id = of(elf, field);
    let mut out = elf.to_vec();
    out[field..field + 16].copy_from_slice(&id.0);
    Ok((out, id))
}

/// Stamps the image file at `path` with its build id. A signature
/// trailer it has is dropped (the image must be signed again, as `cargo
/// xtask build` then does); the file is not rewritten when it already
/// holds its id and no trailer.
pub fn stamp(path: &Path) -> Result<BuildId, Failure> {
    let bytes = fs::read(path)
        .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", path.display())))?;
    let elf = signature::strip(&bytes);
    let (out, id) = stamped(elf)
        .map_err(|e| Failure::Failed(format!("cannot stamp {}: {e}", path.display())))?;
    if out != bytes {
        fs::write(path, &out)
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use handover_abi::note::{DESC_OFFSET, NHDR_SIZE};
    use handover_abi::WRITES;
    use old_hv::image::{validate, ImageLimits};

    /// A small valid image like the hypervisor's (the PVH note, then the
    /// `HVLU` note, in one `PT_NOTE` segment): the fuzz seed.
    fn image() -> Vec<u8> {
        crate::fuzz::seeds::seed_image(true, false)
    }

    /// A byte of the image's text segment (file offset 0x200).
    const CODE: usize = 0x200;

    #[test]
    fn the_id_is_the_content_hash_with_the_field_zero() {
        let elf = image();
        let field = field_offset(&elf).expect("a note");
        assert_eq!(&elf[field..field + 16], &[0x5e; 16], "the seed's id");
        let (out, id) = stamped(&elf).expect("stamps");
        assert_eq!(&out[field..field + 16], &id.0);
        // Only the field changed.
        assert_eq!(out[..field], elf[..field]);
        assert_eq!(out[field + 16..], elf[field + 16..]);
        let mut zeroed = elf.clone();
        zeroed[field..field + 16].fill(0);
        let digest = ed25519_compact::sha512::Hash::hash(&zeroed);
        assert_eq!(id.0, digest[..16]);
        // What the field held before does not matter; any other byte does.
        let mut other_id = elf.clone();
        other_id[field..field + 16].fill(0xaa);
        assert_eq!(stamped(&other_id).expect("stamps").1, id);
        let mut other_code = elf.clone();
        other_code[CODE] ^= 1;
        assert_ne!(stamped(&other_code).expect("stamps").1, id);
    }

    #[test]
    fn stamping_is_idempotent() {
        let (once, id) = stamped(&image()).expect("stamps");
        let (twice, again) = stamped(&once).expect("stamps again");
        assert_eq!(once, twice);
        assert_eq!(id, again);
    }

    #[test]
    fn the_stamped_image_is_valid_and_its_note_holds_the_id() {
        let (out, id) = stamped(&image()).expect("stamps");
        let limits = ImageLimits { max_span: 1 << 30 };
        let info = validate(&out, WRITES, &limits).expect("valid");
        assert_eq!(info.note.build_id, id);
    }

    #[test]
    fn an_image_without_a_note_is_refused() {
        // The HVLU note renamed: only other notes are left.
        let mut elf = image();
        let field = field_offset(&elf).expect("a note");
        // The name is the 8 bytes before the descriptor.
        let name = field - desc_offset::BUILD_ID - (DESC_OFFSET - NHDR_SIZE);
        assert_eq!(&elf[name..name + 5], b"HVLU\0");
        elf[name + 3] = b'X';
        assert!(stamped(&elf).unwrap_err().contains("no HVLU note"));
        assert!(
            stamped(b"not an ELF file at all, but long enough to be read")
                .unwrap_err()
                .starts_with("not an ELF image")
        );
    }
}
