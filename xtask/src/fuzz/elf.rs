//! The hand-written ELF writer of the image seeds: an `ET_EXEC` header and
//! its program headers, nothing else.

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;
/// Where `hv/linker.ld` puts the image in the upper half.
pub const VBASE: u64 = 0xffff_ffff_8000_0000;

/// A program header: (type, flags, offset, vaddr, paddr, filesz, memsz, align).
pub type Phdr = (u32, u32, u64, u64, u64, u64, u64, u64);

/// Writes an ELF64 LE x86_64 `ET_EXEC` header and `phdrs` right after it
/// over the start of `f`, with `limit` in bytes 8..16 (`EI_PAD`).
pub fn write_elf_header(f: &mut [u8], phdrs: &[Phdr], limit: u64) {
    let mut h = Vec::with_capacity(64 + 56 * phdrs.len());
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\x00"); // ELF64, LSB, EV_CURRENT, SysV
    h.extend_from_slice(&limit.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes()); // e_version
    h.extend_from_slice(&0xff380u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&(phdrs.len() as u16).to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&[0; 4]); // e_shnum, e_shstrndx
    for &(p_type, flags, offset, vaddr, paddr, filesz, memsz, align) in phdrs {
        h.extend_from_slice(&p_type.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        for v in [offset, vaddr, paddr, filesz, memsz, align] {
            h.extend_from_slice(&v.to_le_bytes());
        }
    }
    f[..h.len()].copy_from_slice(&h);
}
