//! Hostile images for the scenario tests, made from the signed `hv-b`
//! image `cargo xtask build --release` leaves: every way an image can be
//! wrong that the running hypervisor must refuse (`corpus`), with the
//! reason each refusal must give on each path.

#![allow(dead_code)] // Each test file uses part of this module.

use std::path::PathBuf;

use handover_abi::note::{desc_offset, DESC_OFFSET, DESC_SIZE, NOTE_NAME, NOTE_TYPE};
use hvlu_types::PAGE_SIZE;
use old_hv::image::testkit::{
    append_program_headers, edit_program_header, elf, header_mut, note_record, program_headers,
    ProgramHeader, LE,
};
use old_hv::image::{validate, ImageInfo, ImageLimits};
use old_hv::signature::{self, SecretSeed};

/// A key no hypervisor here trusts.
pub const STRANGER: SecretSeed = [0x5a; 32];

/// The development key `cargo xtask build` signs with.
pub fn dev_key() -> SecretSeed {
    let path = hvlu_harness::qemu::root().join("target/keys/dev.key");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo xtask build creates it)", path.display()));
    signature::parse_hex32(&text).expect("dev.key is 64 hex digits")
}

/// The signed hv-b image, split into its ELF bytes and its trailer.
pub fn hv_b() -> (Vec<u8>, Vec<u8>) {
    let signed = std::fs::read(hvlu_harness::qemu::second_build()).expect("hv-b image");
    let (image, _) = signature::split(&signed).expect("cargo xtask build signs hv-b");
    let n = image.len();
    (signed[..n].to_vec(), signed[n..].to_vec())
}

/// hv-b's ELF bytes as the loader sees them.
pub fn hv_b_info(image: &[u8]) -> ImageInfo {
    let limits = ImageLimits { max_span: u64::MAX };
    validate(image, handover_abi::WRITES, &limits).expect("hv-b validates")
}

/// File offset of the `HVLU` note's descriptor.
pub fn note_desc(image: &[u8]) -> usize {
    // The note's header and name, as every image has them.
    let head = &note_record(NOTE_NAME, NOTE_TYPE, &[0; DESC_SIZE], 4)[..DESC_OFFSET];
    let at = image
        .windows(head.len())
        .position(|w| w == head)
        .expect("the HVLU note");
    at + DESC_OFFSET
}

/// File offset of the `HVLU` note's entry field.
pub fn entry_field(image: &[u8]) -> usize {
    note_desc(image) + desc_offset::ENTRY
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The text segment: the largest executable one (the boot stub is
/// executable too).
pub fn text_segment(info: &ImageInfo) -> old_hv::image::Segment {
    *info
        .segments
        .iter()
        .filter(|s| s.flags.executable())
        .max_by_key(|s| s.filesz)
        .expect("text")
}

/// hv-b made small for the host link (small enough for COM2 too, a few
/// tens of KB/s under TCG, `HVLU_HOSTLINK=uart`; the virtio port moves
/// megabytes a second): every loadable segment cut to at most one page of file
/// bytes (memory sizes kept), the `HVLU` note copied to the start of the
/// segment that held it, its entry moved into text's page, the segments'
/// bytes moved down to follow each other. Unsigned; it validates like
/// hv-b (it is not meant to run).
pub fn compact(image: &[u8]) -> Vec<u8> {
    let info = hv_b_info(image);
    let phdrs = program_headers(image);
    let text = text_segment(&info);
    // The headers and everything before the first segment stay.
    let first = info.segments.iter().map(|s| s.file_offset).min().unwrap() as usize;
    let mut out = image[..first].to_vec();
    // Each PT_LOAD, in file order.
    let mut loads: Vec<(usize, &ProgramHeader)> = phdrs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type == elf::PT_LOAD)
        .collect();
    loads.sort_by_key(|(_, p)| p.p_offset);
    let mut moved: Vec<(u64, u64, u64)> = Vec::new(); // (old offset, old filesz, new offset)
    for (i, p) in loads {
        let (old, filesz) = (p.p_offset, p.p_filesz);
        let keep = filesz.min(PAGE_SIZE);
        let new = (out.len() as u64).next_multiple_of(PAGE_SIZE) + old % PAGE_SIZE;
        out.resize(new as usize, 0);
        out.extend_from_slice(&image[old as usize..(old + keep) as usize]);
        edit_program_header(&mut out, i, |p| {
            p.p_offset = new;
            p.p_filesz = keep;
        });
        moved.push((old, filesz, new));
    }
    // Notes go to the start of the segment whose bytes held them.
    for (i, p) in phdrs.iter().enumerate() {
        if p.p_type != elf::PT_NOTE {
            continue;
        }
        let (off, len) = (p.p_offset, p.p_filesz);
        let (_, _, new) = *moved
            .iter()
            .find(|(o, n, _)| (*o..o + n).contains(&off))
            .expect("the note is inside a loadable segment");
        let (from, to) = (off as usize, new as usize);
        out[to..to + len as usize].copy_from_slice(&image[from..from + len as usize]);
        edit_program_header(&mut out, i, |p| p.p_offset = new);
    }
    let entry = entry_field(&out);
    put_u64(&mut out, entry, text.vaddr + 0x100);
    out
}

/// `image` with its program header table replaced by `count` one-byte
/// `PT_LOAD`s, appended to the file.
fn tiny_segments(image: &[u8], count: u16) -> Vec<u8> {
    let table: Vec<ProgramHeader> = (0..u64::from(count))
        .map(|i| ProgramHeader {
            p_type: elf::PT_LOAD,
            p_flags: elf::ProgramFlags(0),
            p_offset: 0x1000,
            p_vaddr: 0x4000_0000 + i * 0x1000,
            p_paddr: 0x4000_0000 + i * 0x1000,
            p_filesz: 1,
            p_memsz: 1,
            p_align: 0,
        })
        .collect();
    let mut b = image.to_vec();
    append_program_headers(&mut b, &table);
    b
}

/// One hostile image and what each path must answer.
pub struct Hostile {
    /// Its name (the boot module's name too).
    pub name: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// A part of the refusal `lu load` of it as a boot module gives.
    pub module_reason: &'static str,
    /// A part of dom0's answer when it comes over the host link.
    pub link_reason: &'static str,
    /// Whether the test sends it over the host link too (all but one
    /// 3.6 MB image, which would take minutes over COM2).
    pub by_link: bool,
}

/// The corpus: each image is wrong in one way, and signed with the
/// development key unless the way is its signature, so that every check
/// the hypervisor makes is reached by some image.
pub fn corpus() -> Vec<Hostile> {
    let (full, trailer) = hv_b();
    // Small images cross the host link in a fraction of the time.
    let image = compact(&full);
    let info = hv_b_info(&image);
    let key = dev_key();
    let signed = |b: &[u8]| signature::sign(b, &key);
    // The index of a program header by what it is in hv-b.
    let load = |n: usize| {
        info.segments
            .iter()
            .map(|s| s.index)
            .nth(n)
            .expect("hv-b has four loadable segments")
    };
    let text = text_segment(&info).index;
    let data = info
        .segments
        .iter()
        .find(|s| s.flags.writable() && !s.flags.executable())
        .expect("data")
        .index;
    let note_index = program_headers(&image)
        .iter()
        .position(|p| p.p_type == elf::PT_NOTE)
        .expect("a PT_NOTE");
    // hv-b with one edit, signed.
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = image.clone();
        edit(&mut b);
        signed(&b)
    };
    let desc = note_desc(&image);
    vec![
        Hostile {
            name: "empty",
            bytes: Vec::new(),
            module_reason: "the image is empty (0 bytes)",
            by_link: true,
            link_reason: "the image is empty (0 bytes)",
        },
        Hostile {
            name: "one-byte",
            bytes: vec![0x7f],
            module_reason: "not signed",
            by_link: true,
            link_reason: "not signed",
        },
        Hostile {
            name: "text-file",
            bytes: b"#!/bin/sh\necho this is not a hypervisor\n".repeat(100),
            module_reason: "not signed",
            by_link: true,
            link_reason: "not signed",
        },
        Hostile {
            name: "unsigned-hv",
            bytes: image.clone(),
            module_reason: "not signed",
            by_link: true,
            link_reason: "not signed",
        },
        Hostile {
            name: "stranger-signed",
            bytes: signature::sign(&image, &STRANGER),
            module_reason: "signed by a key this hypervisor does not trust",
            by_link: true,
            link_reason: "signed by a key this hypervisor does not trust",
        },
        Hostile {
            name: "byte-changed-after-signing",
            bytes: {
                let mut b = signed(&image);
                let at = info.segments[1].file_offset as usize + 1000;
                b[at] ^= 0x20;
                b
            },
            module_reason: "bad signature",
            by_link: true,
            link_reason: "bad signature",
        },
        Hostile {
            name: "genuine-trailer-on-other-code",
            bytes: {
                let mut b = image.clone();
                let s = &info.segments[1];
                b[s.file_offset as usize..(s.file_offset + s.filesz) as usize].fill(0xcc);
                b.extend_from_slice(&trailer);
                b
            },
            module_reason: "bad signature",
            by_link: true,
            link_reason: "bad signature",
        },
        Hostile {
            name: "random-bytes",
            bytes: signed(
                &(0..8192u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                    .collect::<Vec<_>>(),
            ),
            module_reason: "not an ELF file",
            by_link: true,
            link_reason: "not an ELF file",
        },
        Hostile {
            name: "cut-elf-header",
            bytes: signed(&image[..40]),
            module_reason: "truncated ELF header",
            by_link: true,
            link_reason: "truncated ELF header",
        },
        Hostile {
            name: "elf32",
            bytes: edited(&|b| header_mut(b).e_ident.class = elf::ELFCLASS32),
            module_reason: "not a 64-bit ELF file",
            by_link: true,
            link_reason: "not a 64-bit ELF file",
        },
        Hostile {
            name: "big-endian",
            bytes: edited(&|b| header_mut(b).e_ident.data = elf::ELFDATA2MSB),
            module_reason: "wrong endianness",
            by_link: true,
            link_reason: "wrong endianness",
        },
        Hostile {
            name: "aarch64",
            bytes: edited(&|b| header_mut(b).e_machine.set(LE, elf::EM_AARCH64)),
            module_reason: "wrong machine: e_machine is 183",
            by_link: true,
            link_reason: "wrong machine: e_machine is 183",
        },
        Hostile {
            name: "shared-object",
            bytes: edited(&|b| header_mut(b).e_type.set(LE, elf::ET_DYN)),
            module_reason: "not an executable: e_type is 3",
            by_link: true,
            link_reason: "not an executable: e_type is 3",
        },
        Hostile {
            name: "phentsize-32",
            bytes: edited(&|b| header_mut(b).e_phentsize.set(LE, 32)),
            module_reason: "program header entries are 32 bytes",
            by_link: true,
            link_reason: "program header entries are 32 bytes",
        },
        Hostile {
            name: "phdrs-past-end",
            bytes: edited(&|b| {
                let n = b.len() as u64;
                header_mut(b).e_phoff.set(LE, n - 100)
            }),
            module_reason: "runs past the end of the",
            by_link: true,
            link_reason: "runs past the end of the",
        },
        Hostile {
            name: "65534-tiny-segments",
            // 65534 one-byte PT_LOADs: a 3.6 MB table that used to run the
            // hypervisor's heap out, on both paths. The link gets the
            // 4096-segment one below instead (the same rule, 229 KB).
            bytes: signed(&tiny_segments(&image, 65534)),
            module_reason: "the image has 65534 program headers; at most 128",
            by_link: false,
            link_reason: "the image has 65534 program headers; at most 128",
        },
        Hostile {
            name: "4096-tiny-segments",
            bytes: signed(&tiny_segments(&image, 4096)),
            module_reason: "the image has 4096 program headers; at most 128",
            by_link: true,
            link_reason: "the image has 4096 program headers; at most 128",
        },
        Hostile {
            name: "segment-past-end",
            bytes: edited(&|b| edit_program_header(b, text, |p| p.p_filesz = 1 << 40)),
            module_reason: "runs past the end of the",
            by_link: true,
            link_reason: "runs past the end of the",
        },
        Hostile {
            name: "filesz-over-memsz",
            bytes: edited(&|b| edit_program_header(b, data, |p| p.p_memsz = p.p_filesz - 1)),
            module_reason: "exceeds memory size",
            by_link: true,
            link_reason: "exceeds memory size",
        },
        Hostile {
            name: "address-overflow",
            bytes: edited(&|b| edit_program_header(b, data, |p| p.p_paddr = u64::MAX - 0x10)),
            module_reason: "address overflow",
            by_link: true,
            link_reason: "address overflow",
        },
        Hostile {
            name: "non-canonical",
            bytes: edited(&|b| {
                edit_program_header(b, data, |p| {
                    p.p_vaddr = 0x0000_9000_0000_0000 | (p.p_vaddr & 0xfff)
                })
            }),
            module_reason: "is not canonical",
            by_link: true,
            link_reason: "is not canonical",
        },
        Hostile {
            name: "misaligned",
            bytes: edited(&|b| edit_program_header(b, data, |p| p.p_vaddr += 8)),
            module_reason: "misaligned",
            by_link: true,
            link_reason: "misaligned",
        },
        Hostile {
            name: "no-loadable-segment",
            bytes: edited(&|b| {
                for n in 0..4 {
                    edit_program_header(b, load(n), |p| p.p_type = elf::PT_NULL);
                }
            }),
            module_reason: "no loadable segment",
            by_link: true,
            link_reason: "no loadable segment",
        },
        Hostile {
            name: "overlapping-segments",
            bytes: edited(&|b| {
                let text = program_headers(b)[text].p_paddr;
                edit_program_header(b, data, |p| p.p_paddr = text + 0x1000)
            }),
            module_reason: "overlap in physical memory",
            by_link: true,
            link_reason: "overlap in physical memory",
        },
        Hostile {
            name: "bss-of-1-gib",
            bytes: edited(&|b| edit_program_header(b, data, |p| p.p_memsz = 1 << 30)),
            module_reason: "image too large for the staging area",
            by_link: true,
            link_reason: "image too large for the staging area",
        },
        Hostile {
            name: "no-note",
            bytes: edited(&|b| edit_program_header(b, note_index, |p| p.p_type = elf::PT_NULL)),
            module_reason: "no HVLU note",
            by_link: true,
            link_reason: "no HVLU note",
        },
        Hostile {
            name: "duplicate-note",
            bytes: edited(&|b| {
                // The boot segment's header becomes a second PT_NOTE over
                // the same note.
                let note = program_headers(b)[note_index].clone();
                edit_program_header(b, load(0), |p| *p = note);
            }),
            module_reason: "duplicate note",
            by_link: true,
            link_reason: "duplicate note",
        },
        Hostile {
            name: "note-version-99",
            bytes: edited(&|b| put_u32(b, desc + desc_offset::VERSION, 99)),
            module_reason: "bad HVLU note",
            by_link: true,
            link_reason: "bad HVLU note",
        },
        Hostile {
            name: "reads-only-abi-9",
            bytes: edited(&|b| {
                for at in [desc_offset::MIN_MAJOR, desc_offset::MAX_MAJOR] {
                    put_u16(b, desc + at, 9);
                }
                for at in [desc_offset::MIN_MINOR, desc_offset::MAX_MINOR] {
                    put_u16(b, desc + at, 0);
                }
            }),
            module_reason: "no common handover ABI version",
            by_link: true,
            link_reason: "no common handover ABI version",
        },
        Hostile {
            name: "args-page-5",
            // Its note's contract reads an argument page this build does
            // not write: refused at load, not by the image after the jump.
            bytes: edited(&|b| put_u32(b, desc + desc_offset::ARGS_VERSIONS, 1 << 5)),
            module_reason: "the image reads argument pages {5}, this hypervisor writes {1, 3, 4}",
            by_link: true,
            link_reason: "the image reads argument pages {5}",
        },
        Hostile {
            name: "boot-model-7",
            bytes: edited(&|b| put_u16(b, desc + desc_offset::BOOT_MODEL, 7)),
            module_reason: "the image boots as model 7 (unknown)",
            by_link: true,
            link_reason: "the image boots as model 7 (unknown)",
        },
        Hostile {
            name: "entry-in-data",
            bytes: edited(&|b| {
                let v = program_headers(b)[data].p_vaddr;
                put_u64(b, desc + desc_offset::ENTRY, v + 16)
            }),
            module_reason: "is not inside the file-backed part of any executable",
            by_link: true,
            link_reason: "is not inside the file-backed part of any executable",
        },
        Hostile {
            name: "host-program",
            // Another program's ELF file, signed: a PIE executable.
            bytes: signed(&std::fs::read("/bin/true").expect("/bin/true")),
            module_reason: "not an executable: e_type is 3",
            by_link: true,
            link_reason: "not an executable: e_type is 3",
        },
        Hostile {
            name: "larger-than-the-region",
            bytes: signed(&vec![0x90u8; 80 << 20]),
            module_reason: "the live-update region has room for",
            by_link: true,
            link_reason: "does not fit dom0's",
        },
    ]
}

/// Writes the corpus's images under `target/qemu/<dir>/` and returns them
/// as boot modules, with the corpus.
pub fn corpus_modules(dir: &str) -> (Vec<Hostile>, Vec<(String, PathBuf)>) {
    let corpus = corpus();
    let dir = hvlu_harness::qemu::root().join("target/qemu").join(dir);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let modules = corpus
        .iter()
        .map(|h| {
            let path = dir.join(h.name);
            std::fs::write(&path, &h.bytes).expect("write a module");
            (h.name.to_string(), path)
        })
        .collect();
    (corpus, modules)
}
