//! ELF files for tests (feature `testkit`): what the validator's tests, the
//! fuzz seeds (`cargo xtask fuzz`) and the QEMU harness's hostile images
//! are made with.
//!
//! The bytes are laid out by the `object` crate — its ELF writer for a new
//! file ([`ElfFile`]), its ELF structures for a change in place
//! ([`header_mut`], [`edit_program_header`], [`append_program_headers`]) —
//! so no field offset is written by hand anywhere; a test names the field
//! it sets. Nothing here checks that the result is sane: a malformed image
//! is made by setting the field it is about (a segment past the end of the
//! file, two segments on one page, 65534 program headers, an `e_machine` of
//! 183), or by cutting the bytes.

use alloc::vec::Vec;

use object::pod;
use object::read::elf::FileHeader as _;
use object::write::elf::{Encoder, FileHeader, Writer};
use object::{Endianness, LittleEndian, U32};

/// The ELF constants and structures (`PT_LOAD`, `PF_R`, `EM_X86_64`,
/// `FileHeader64`, …).
pub use object::elf;
/// A program header, each field a plain number (constants such as
/// `PT_LOAD` and `PF_R` wrapped in their `object` types).
pub use object::write::elf::ProgramHeader;

/// The byte order of every image here.
pub const LE: LittleEndian = LittleEndian;

/// The encoder of ELF64 little-endian x86_64 structures.
fn encoder() -> Encoder<LittleEndian> {
    Encoder::new(LE, true, elf::EM_X86_64)
}

/// An ELF64 little-endian x86_64 executable (`ET_EXEC`) to be written.
#[derive(Clone, Debug)]
pub struct ElfFile {
    /// `e_entry`, where a cold boot starts (the live-update entry is the
    /// `HVLU` note's).
    pub entry: u64,
    /// The program headers, written right after the file header.
    pub phdrs: Vec<ProgramHeader>,
    /// The whole file: the segments' bytes at the offsets their program
    /// headers give. Its start stays zero: the headers go there.
    pub body: Vec<u8>,
}

impl ElfFile {
    /// The file: `body` with the file header and the program header table
    /// written over its start.
    ///
    /// # Panics
    ///
    /// If the headers would overwrite a non-zero byte of `body`.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len());
        let mut w = Writer::new(Endianness::Little, true, &mut out);
        w.reserve_file_header();
        w.reserve_program_headers(self.phdrs.len() as u32);
        let headers = w.reserved_len() as usize;
        assert!(
            self.body.len() >= headers && self.body[..headers].iter().all(|&b| b == 0),
            "the headers ({headers} bytes) would overwrite the start of the body"
        );
        w.reserve_until(self.body.len() as u64);
        w.write_file_header(&FileHeader {
            e_type: elf::ET_EXEC,
            e_machine: elf::EM_X86_64,
            e_entry: self.entry,
            ..FileHeader::default()
        })
        .expect("an ELF64 header");
        w.write_align_program_headers();
        for p in &self.phdrs {
            w.write_program_header(p);
        }
        w.write(&self.body[headers..]);
        out
    }
}

/// The file header of `file`, every field of it to read or set (through
/// [`LE`]).
///
/// # Panics
///
/// If `file` is shorter than an ELF64 header.
pub fn header_mut(file: &mut [u8]) -> &mut elf::FileHeader64<LittleEndian> {
    pod::from_bytes_mut(file).expect("a whole ELF64 header").0
}

/// The program headers of `file`, which must be a well-formed ELF64
/// little-endian file as far as its program header table.
pub fn program_headers(file: &[u8]) -> Vec<ProgramHeader> {
    let header = elf::FileHeader64::<LittleEndian>::parse(file).expect("an ELF64 LE header");
    header
        .program_headers(LE, file)
        .expect("a program header table inside the file")
        .iter()
        .map(|p| ProgramHeader::from_raw(LE, p))
        .collect()
}

/// Changes program header `index` of `file` in place, where `e_phoff`
/// puts it.
pub fn edit_program_header(file: &mut [u8], index: usize, edit: impl FnOnce(&mut ProgramHeader)) {
    let header = header_mut(file);
    let table = header.e_phoff.get(LE) as usize;
    let count = usize::from(header.e_phnum.get(LE));
    let (raw, _) =
        pod::slice_from_bytes_mut::<elf::ProgramHeader64<LittleEndian>>(&mut file[table..], count)
            .expect("a program header table inside the file");
    let raw = &mut raw[index];
    let mut p = ProgramHeader::from_raw(LE, raw);
    edit(&mut p);
    encoder().program_header(&mut pod::bytes_of_mut(raw), &p);
}

/// Replaces the program header table of `file` with `phdrs`, appended to
/// the end of the file (for a table that does not fit before the first
/// segment): `e_phoff`, `e_phentsize` and `e_phnum` say so.
pub fn append_program_headers(file: &mut Vec<u8>, phdrs: &[ProgramHeader]) {
    let table = file.len() as u64;
    for p in phdrs {
        encoder().program_header(file, p);
    }
    let header = header_mut(file);
    header.e_phoff.set(LE, table);
    header
        .e_phentsize
        .set(LE, encoder().program_header_size() as u16);
    let count = u16::try_from(phdrs.len()).expect("at most 65535 program headers");
    header.e_phnum.set(LE, count);
}

/// One note record: its header, then `name` and `desc`, each padded to
/// `align` bytes (4 in most notes; 8 in a `PT_NOTE` segment with
/// `p_align` 8).
pub fn note_record(name: &[u8], n_type: u32, desc: &[u8], align: usize) -> Vec<u8> {
    let header = elf::NoteHeader32 {
        n_namesz: U32::new(LE, name.len() as u32),
        n_descsz: U32::new(LE, desc.len() as u32),
        n_type: U32::new(LE, elf::NoteType(n_type)),
    };
    let mut r = pod::bytes_of(&header).to_vec();
    r.extend_from_slice(name);
    r.resize(r.len().next_multiple_of(align), 0);
    r.extend_from_slice(desc);
    r.resize(r.len().next_multiple_of(align), 0);
    r
}

/// The PVH note QEMU boots a hypervisor image by (`Xen`, type 18
/// `XEN_ELFNOTE_PHYS32_ENTRY`): its 32-bit cold-boot entry.
pub fn xen_pvh_note(entry: u32) -> Vec<u8> {
    note_record(b"Xen\0", 18, &entry.to_le_bytes(), 4)
}
