//! Hostile images for the scenario tests, made from the signed `hv-b`
//! image `cargo xtask build --release` leaves: every way an image can be
//! wrong that the running hypervisor must refuse (`corpus`), with the
//! reason each refusal must give on each path.

#![allow(dead_code)] // Each test file uses part of this module.

use std::path::PathBuf;

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
    let mut header = Vec::new();
    header.extend_from_slice(&5u32.to_le_bytes());
    header.extend_from_slice(&44u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(b"HVLU\0\0\0\0");
    let at = image
        .windows(header.len())
        .position(|w| w == header)
        .expect("the HVLU note");
    at + 20
}

/// File offset of the `HVLU` note's entry field.
pub fn entry_field(image: &[u8]) -> usize {
    note_desc(image) + 12
}

// ELF64 header and program header field offsets.
const E_IDENT_CLASS: usize = 4;
const E_IDENT_DATA: usize = 5;
const E_TYPE: usize = 16;
const E_MACHINE: usize = 18;
const E_PHOFF: usize = 32;
const E_PHENTSIZE: usize = 54;
const E_PHNUM: usize = 56;
const PHDR: usize = 56;
const P_TYPE: usize = 0;
const P_OFFSET: usize = 8;
const P_VADDR: usize = 16;
const P_PADDR: usize = 24;
const P_FILESZ: usize = 32;
const P_MEMSZ: usize = 40;
const PT_NULL: u32 = 0;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of program header `i`.
fn phdr(image: &[u8], i: usize) -> usize {
    get_u64(image, E_PHOFF) as usize + i * PHDR
}

/// The text segment: the largest executable one (the boot stub is
/// executable too).
fn text_segment(info: &ImageInfo) -> old_hv::image::Segment {
    *info
        .segments
        .iter()
        .filter(|s| s.flags.executable())
        .max_by_key(|s| s.filesz)
        .expect("text")
}

/// hv-b made small for the host link (a serial port, a few tens of KB/s
/// under TCG): every loadable segment cut to at most one page of file
/// bytes (memory sizes kept), the `HVLU` note copied to the start of the
/// segment that held it, its entry moved into text's page, the segments'
/// bytes moved down to follow each other. Unsigned; it validates like
/// hv-b (it is not meant to run).
pub fn compact(image: &[u8]) -> Vec<u8> {
    let info = hv_b_info(image);
    let phnum = usize::from(u16::from_le_bytes([image[E_PHNUM], image[E_PHNUM + 1]]));
    let text = text_segment(&info);
    // The headers and everything before the first segment stay.
    let first = info.segments.iter().map(|s| s.file_offset).min().unwrap() as usize;
    let mut out = image[..first].to_vec();
    // Old and new file offsets of each PT_LOAD, in file order.
    let mut loads: Vec<(usize, u64, u64)> = Vec::new(); // (index, old offset, filesz)
    for i in 0..phnum {
        let p = phdr(image, i);
        if u32::from_le_bytes(image[p..p + 4].try_into().unwrap()) == PT_LOAD {
            loads.push((
                i,
                get_u64(image, p + P_OFFSET),
                get_u64(image, p + P_FILESZ),
            ));
        }
    }
    loads.sort_by_key(|l| l.1);
    let mut moved: Vec<(u64, u64, u64)> = Vec::new(); // (old offset, old filesz, new offset)
    for (i, old, filesz) in loads {
        let keep = filesz.min(4096);
        let new = (out.len() as u64).next_multiple_of(4096) + old % 4096;
        out.resize(new as usize, 0);
        out.extend_from_slice(&image[old as usize..(old + keep) as usize]);
        let p = phdr(image, i);
        put_u64(&mut out, p + P_OFFSET, new);
        put_u64(&mut out, p + P_FILESZ, keep);
        moved.push((old, filesz, new));
    }
    // Notes go to the start of the segment whose bytes held them.
    for i in 0..phnum {
        let p = phdr(image, i);
        if u32::from_le_bytes(image[p..p + 4].try_into().unwrap()) != PT_NOTE {
            continue;
        }
        let (off, len) = (get_u64(image, p + P_OFFSET), get_u64(image, p + P_FILESZ));
        let (_, _, new) = *moved
            .iter()
            .find(|(o, n, _)| (*o..o + n).contains(&off))
            .expect("the note is inside a loadable segment");
        let (from, to) = (off as usize, new as usize);
        out[to..to + len as usize].copy_from_slice(&image[from..from + len as usize]);
        put_u64(&mut out, p + P_OFFSET, new);
    }
    let desc = note_desc(&out);
    put_u64(&mut out, desc + 12, text.vaddr + 0x100);
    out
}

/// `image` with its program header table replaced by `count` one-byte
/// `PT_LOAD`s, appended to the file.
fn tiny_segments(image: &[u8], count: u16) -> Vec<u8> {
    let mut b = image.to_vec();
    let table = b.len() as u64;
    put_u64(&mut b, E_PHOFF, table);
    put_u16(&mut b, E_PHNUM, count);
    for i in 0..u64::from(count) {
        let mut p = [0u8; PHDR];
        put_u32(&mut p, P_TYPE, PT_LOAD);
        put_u64(&mut p, P_OFFSET, 0x1000);
        put_u64(&mut p, P_VADDR, 0x4000_0000 + i * 0x1000);
        put_u64(&mut p, P_PADDR, 0x4000_0000 + i * 0x1000);
        put_u64(&mut p, P_FILESZ, 1);
        put_u64(&mut p, P_MEMSZ, 1);
        b.extend_from_slice(&p);
    }
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
    /// 3.6 MB image, which would take minutes there).
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
    let note_index = (0..usize::from(u16::from_le_bytes([image[E_PHNUM], image[E_PHNUM + 1]])))
        .find(|&i| u32::from_le_bytes(image[phdr(&image, i)..][..4].try_into().unwrap()) == PT_NOTE)
        .expect("a PT_NOTE");
    // hv-b with one edit, signed.
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = image.clone();
        edit(&mut b);
        signed(&b)
    };
    let set_phdr_u64 = |b: &mut Vec<u8>, i: usize, field: usize, v: u64| {
        let at = phdr(b, i) + field;
        put_u64(b, at, v)
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
            bytes: edited(&|b| b[E_IDENT_CLASS] = 1),
            module_reason: "not a 64-bit ELF file",
            by_link: true,
            link_reason: "not a 64-bit ELF file",
        },
        Hostile {
            name: "big-endian",
            bytes: edited(&|b| b[E_IDENT_DATA] = 2),
            module_reason: "wrong endianness",
            by_link: true,
            link_reason: "wrong endianness",
        },
        Hostile {
            name: "aarch64",
            bytes: edited(&|b| put_u16(b, E_MACHINE, 183)),
            module_reason: "wrong machine: e_machine is 183",
            by_link: true,
            link_reason: "wrong machine: e_machine is 183",
        },
        Hostile {
            name: "shared-object",
            bytes: edited(&|b| put_u16(b, E_TYPE, 3)),
            module_reason: "not an executable: e_type is 3",
            by_link: true,
            link_reason: "not an executable: e_type is 3",
        },
        Hostile {
            name: "phentsize-32",
            bytes: edited(&|b| put_u16(b, E_PHENTSIZE, 32)),
            module_reason: "program header entries are 32 bytes",
            by_link: true,
            link_reason: "program header entries are 32 bytes",
        },
        Hostile {
            name: "phdrs-past-end",
            bytes: edited(&|b| {
                let n = b.len() as u64;
                put_u64(b, E_PHOFF, n - 100)
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
            bytes: edited(&|b| set_phdr_u64(b, text, P_FILESZ, 1 << 40)),
            module_reason: "runs past the end of the",
            by_link: true,
            link_reason: "runs past the end of the",
        },
        Hostile {
            name: "filesz-over-memsz",
            bytes: edited(&|b| {
                let memsz = get_u64(b, phdr(b, data) + P_FILESZ) - 1;
                set_phdr_u64(b, data, P_MEMSZ, memsz)
            }),
            module_reason: "exceeds memory size",
            by_link: true,
            link_reason: "exceeds memory size",
        },
        Hostile {
            name: "address-overflow",
            bytes: edited(&|b| set_phdr_u64(b, data, P_PADDR, u64::MAX - 0x10)),
            module_reason: "address overflow",
            by_link: true,
            link_reason: "address overflow",
        },
        Hostile {
            name: "non-canonical",
            bytes: edited(&|b| {
                let v = get_u64(b, phdr(b, data) + P_VADDR) & 0xfff;
                set_phdr_u64(b, data, P_VADDR, 0x0000_9000_0000_0000 | v)
            }),
            module_reason: "is not canonical",
            by_link: true,
            link_reason: "is not canonical",
        },
        Hostile {
            name: "misaligned",
            bytes: edited(&|b| {
                let v = get_u64(b, phdr(b, data) + P_VADDR);
                set_phdr_u64(b, data, P_VADDR, v + 8)
            }),
            module_reason: "misaligned",
            by_link: true,
            link_reason: "misaligned",
        },
        Hostile {
            name: "no-loadable-segment",
            bytes: edited(&|b| {
                for n in 0..4 {
                    let at = phdr(b, load(n)) + P_TYPE;
                    put_u32(b, at, PT_NULL);
                }
            }),
            module_reason: "no loadable segment",
            by_link: true,
            link_reason: "no loadable segment",
        },
        Hostile {
            name: "overlapping-segments",
            bytes: edited(&|b| {
                let p = get_u64(b, phdr(b, text) + P_PADDR);
                set_phdr_u64(b, data, P_PADDR, p + 0x1000)
            }),
            module_reason: "overlap in physical memory",
            by_link: true,
            link_reason: "overlap in physical memory",
        },
        Hostile {
            name: "bss-of-1-gib",
            bytes: edited(&|b| set_phdr_u64(b, data, P_MEMSZ, 1 << 30)),
            module_reason: "image too large for the staging area",
            by_link: true,
            link_reason: "image too large for the staging area",
        },
        Hostile {
            name: "no-note",
            bytes: edited(&|b| {
                let at = phdr(b, note_index) + P_TYPE;
                put_u32(b, at, PT_NULL)
            }),
            module_reason: "no HVLU note",
            by_link: true,
            link_reason: "no HVLU note",
        },
        Hostile {
            name: "duplicate-note",
            bytes: edited(&|b| {
                // The boot segment's header becomes a second PT_NOTE over
                // the same note.
                let (from, to) = (phdr(b, note_index), phdr(b, load(0)));
                let copy = b[from..from + PHDR].to_vec();
                b[to..to + PHDR].copy_from_slice(&copy);
            }),
            module_reason: "duplicate note",
            by_link: true,
            link_reason: "duplicate note",
        },
        Hostile {
            name: "note-version-99",
            bytes: edited(&|b| put_u32(b, desc, 99)),
            module_reason: "bad HVLU note",
            by_link: true,
            link_reason: "bad HVLU note",
        },
        Hostile {
            name: "reads-only-abi-9",
            bytes: edited(&|b| {
                for (i, v) in [9u16, 0, 9, 0].into_iter().enumerate() {
                    put_u16(b, desc + 4 + 2 * i, v);
                }
            }),
            module_reason: "no common handover ABI version",
            by_link: true,
            link_reason: "no common handover ABI version",
        },
        Hostile {
            name: "entry-in-data",
            bytes: edited(&|b| {
                let v = get_u64(b, phdr(b, data) + P_VADDR);
                put_u64(b, desc + 12, v + 16)
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
