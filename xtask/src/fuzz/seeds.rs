//! The seeds of the fuzz targets: valid inputs (the golden state blobs, a
//! valid note, small valid images, console lines, encoded hypercalls) from
//! which the fuzzer reaches the deep checks far sooner than from nothing.

use std::path::Path;

use handover_abi::note::ImageNote;
use handover_abi::{BuildId, HEADER_SIZE, READS};
use old_hv::image::testkit::{elf, header_mut, xen_pvh_note, ElfFile, ProgramHeader};

use crate::shell::{root, Failure};

const R: u32 = elf::PF_R.0;
const W: u32 = elf::PF_W.0;
const X: u32 = elf::PF_X.0;
/// Where `hv/linker.ld` puts the image in the upper half.
const VBASE: u64 = 0xffff_ffff_8000_0000;

/// `body` with an ELF64 LE x86_64 `ET_EXEC` header and `phdrs` written
/// over its start, and `limit` in bytes 8..16 (`EI_ABIVERSION` and
/// `EI_PAD`, which the validator ignores and the target reads as its
/// second limit).
fn seed_elf(phdrs: Vec<ProgramHeader>, body: Vec<u8>, limit: u64) -> Vec<u8> {
    let mut f = ElfFile {
        entry: 0xff380,
        phdrs,
        body,
    }
    .bytes();
    let [abi_version, padding @ ..] = limit.to_le_bytes();
    let ident = &mut header_mut(&mut f).e_ident;
    ident.abi_version = abi_version;
    ident.padding = padding;
    f
}

/// Writes the seeds of `target` into `dir`: valid inputs, from which the
/// fuzzer reaches the deep checks far sooner than from nothing.
pub fn write_seeds(target: &str, dir: &Path) -> Result<(), Failure> {
    // Only the seeds: anything else there (say, inputs a hand-run libFuzzer
    // added) goes.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let seeds: Vec<(String, Vec<u8>)> = match target {
        "state_decoder" => state_seeds()?,
        "console_line" => named(vec![
            (
                "commands",
                b"help\nlist\ncreate domu 4096 probe\nlu status\n".to_vec(),
            ),
            ("edited", b"destroy 2\x08\x083\n\tpause\t1\n".to_vec()),
            (
                "refused",
                "poweroff \u{1f600}\n\x1b[A\n".as_bytes().to_vec(),
            ),
        ]),
        "note_parser" => {
            let note = seed_note(0xffff_ffff_8010_0110);
            let desc = note.to_desc();
            // The first byte cuts the rest into descriptors: 35 gives 36-byte ones.
            let listed = [&[35u8][..], &desc, &desc].concat();
            named(vec![
                ("note", note.to_note_bytes().to_vec()),
                ("desc", desc.to_vec()),
                ("two-descs", listed),
            ])
        }
        "image_validator" => named(vec![
            ("two-loads-span", seed_image(false, false)),
            ("two-loads-span-minus-1", seed_image(false, true)),
            ("hv-like", seed_image(true, false)),
            ("many-segments", seed_many_segments()),
        ]),
        "hypercall_args" => named(seed_calls()),
        _ => Vec::new(),
    };
    for (name, bytes) in seeds {
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Seeds named by literals.
fn named(seeds: Vec<(&str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    seeds.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// The golden state blobs of `state_decoder`, whole (`golden-v1_0` …) and
/// without their header (`golden-v1_0-body` …): every released version, so
/// that the fuzzer starts from each version's shape, the newest with an HVM
/// domain (its contexts, nested-table and log-dirty runs) among them.
fn state_seeds() -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let dir = root().join("handover-abi/tests/golden");
    let cannot = |what: &Path, e: std::io::Error| {
        Failure::Failed(format!("cannot read the seed {}: {e}", what.display()))
    };
    let mut blobs: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .map_err(|e| cannot(&dir, e))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let stem = path.file_stem()?.to_str()?.to_string();
            (path.extension()? == "bin").then_some((stem, path))
        })
        .collect();
    blobs.sort();
    let mut seeds = Vec::new();
    for (version, path) in blobs {
        let blob = std::fs::read(&path).map_err(|e| cannot(&path, e))?;
        let body = blob.get(HEADER_SIZE..).unwrap_or_default().to_vec();
        seeds.push((format!("golden-{version}"), blob));
        seeds.push((format!("golden-{version}-body"), body));
    }
    Ok(seeds)
}

/// Calls for `hypercall_args`, as a guest makes them
/// (`pv_abi::call::Call::encode`): the number and five words, little-endian,
/// then what the buffer holds — the bounds' edges, and each payload the
/// hypervisor interprets.
fn seed_calls() -> Vec<(&'static str, Vec<u8>)> {
    use pv_abi::call::{
        Call, CreateArgs, Domctl, EntryWrite, GuestArray, GuestBuf, MAX_CONSOLE_IO, MAX_MODULE_NAME,
    };
    use pv_abi::hypercall::MmuUpdate;

    let seed = |call: Call, payload: &[u8]| {
        let (nr, args) = call.encode();
        let mut bytes = nr.to_le_bytes().to_vec();
        for a in args {
            bytes.extend_from_slice(&a.to_le_bytes());
        }
        bytes.extend_from_slice(payload);
        bytes
    };
    let buf = |len: u64| GuestBuf {
        addr: 0x20_0000,
        len,
    };
    let mut create = [0u8; 64];
    let n = CreateArgs {
        name: "domu",
        cmdline: "probe",
    }
    .encode(&mut create)
    .unwrap_or(0);
    let mut requests = Vec::new();
    // One to apply, one misaligned, one present global mapping.
    for req in [
        EntryWrite {
            table: hvlu_types::Mfn(0x1234),
            index: 7,
            val: 0x0567_8007,
        }
        .encode(),
        MmuUpdate {
            ptr: 0x0123_4004,
            val: 0,
        },
        MmuUpdate {
            ptr: 0x0123_4010,
            val: 0x0101,
        },
    ] {
        requests.extend_from_slice(&req.ptr.to_le_bytes());
        requests.extend_from_slice(&req.val.to_le_bytes());
    }
    vec![
        (
            "console-write",
            seed(
                Call::ConsoleWrite {
                    buf: buf(MAX_CONSOLE_IO),
                },
                b"hello\n",
            ),
        ),
        (
            "mmu-update",
            seed(
                Call::MmuUpdate {
                    reqs: GuestArray {
                        addr: 0x20_0000,
                        count: 3,
                    },
                },
                &requests,
            ),
        ),
        (
            "pin-l4",
            seed(
                Call::PinTable {
                    mfn: hvlu_types::Mfn(0x1234),
                    level: hvlu_types::pte::Level::L4,
                },
                &[],
            ),
        ),
        (
            "create",
            seed(
                Call::Domctl(Domctl::Create {
                    args: buf(n as u64),
                    kib: 4096,
                    hole: hvlu_types::hole::Hole::at_addr(1 << 30).ok(),
                }),
                &create[..n],
            ),
        ),
        (
            "lu-load",
            seed(
                Call::LuLoad {
                    name: buf(MAX_MODULE_NAME),
                    force: false,
                },
                b"hv-b",
            ),
        ),
        (
            "lu-load-buffer",
            seed(
                Call::LuLoadBuffer {
                    image: buf(16 << 20),
                    name: buf(MAX_MODULE_NAME),
                },
                b"host link transfer #00000001 (16777216 bytes, CRC32C 0x00000000)",
            ),
        ),
    ]
}

/// An `HVLU` note reading what this build reads, with its contract.
fn seed_note(entry: u64) -> ImageNote {
    ImageNote {
        reads: READS,
        writes: Some(handover_abi::WRITES),
        contract: Some(handover_abi::note::CONTRACT),
        entry,
        build_id: BuildId([0x5e; 16]),
    }
}

/// A small valid image (1 KiB) for `image_validator`:
///
/// - text, `r-x`, file 0x200+0x100 at physical 0x100100, virtual
///   0xffffffff80100100, holding the entry;
/// - data+bss, `rw-`, file 0x300+0x80, 0x1000 in memory, right after the
///   text on the same page;
/// - a `PT_NOTE` at file 0x380 holding the `HVLU` note (after a `Xen` note,
///   with `hv_like`).
///
/// With `hv_like`, a `.boot` segment (`rwx`, physical = virtual 0xff380,
/// file 0x3d0+0x30, 0x80 in memory) comes first, as in `hv/linker.ld`.
/// The second limit ([`seed_elf`]) is the span, or the span less one with
/// `under_limit`.
pub(crate) fn seed_image(hv_like: bool, under_limit: bool) -> Vec<u8> {
    const FILE_LEN: usize = 0x400;
    const NOTES_AT: usize = 0x380;
    let mut phdrs = Vec::new();
    if hv_like {
        phdrs.push(ProgramHeader {
            p_type: elf::PT_LOAD,
            p_flags: elf::ProgramFlags(R | W | X),
            p_offset: 0x3d0,
            p_vaddr: 0xff380,
            p_paddr: 0xff380,
            p_filesz: 0x30,
            p_memsz: 0x80,
            p_align: 0x1000,
        });
    }
    phdrs.push(ProgramHeader {
        p_type: elf::PT_LOAD,
        p_flags: elf::ProgramFlags(R | X),
        p_offset: 0x200,
        p_vaddr: VBASE + 0x10_0100,
        p_paddr: 0x10_0100,
        p_filesz: 0x100,
        p_memsz: 0x100,
        p_align: 0x1000,
    });
    phdrs.push(ProgramHeader {
        p_type: elf::PT_LOAD,
        p_flags: elf::ProgramFlags(R | W),
        p_offset: 0x300,
        p_vaddr: VBASE + 0x10_0200,
        p_paddr: 0x10_0200,
        p_filesz: 0x80,
        p_memsz: 0x1000,
        p_align: 0x1000,
    });
    let mut notes = Vec::new();
    if hv_like {
        notes.extend_from_slice(&xen_pvh_note(0xff380));
    }
    notes.extend_from_slice(&seed_note(VBASE + 0x10_0110).to_note_bytes());
    let notes_len = notes.len() as u64;
    phdrs.push(ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: elf::ProgramFlags(R),
        p_offset: NOTES_AT as u64,
        p_vaddr: VBASE + 0x10_0380,
        p_paddr: 0x10_0380,
        p_filesz: notes_len,
        p_memsz: notes_len,
        p_align: 4,
    });
    // From the lowest page to the end of the bss, rounded up to a page.
    let span: u64 = if hv_like { 0x3000 } else { 0x2000 };
    let limit = if under_limit { span - 1 } else { span };

    let mut body = vec![0u8; FILE_LEN];
    // Text and data: bytes that are not zero, so a misplaced copy shows.
    for (i, b) in body[0x200..NOTES_AT].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    body[NOTES_AT..NOTES_AT + notes.len()].copy_from_slice(&notes);
    seed_elf(phdrs, body, limit)
}

/// A valid image of 24 small `PT_LOAD`s (file 0x10, memory 0x40 bytes each,
/// `r-x`, `r--`, `rw-` in turn) packed on one page, listed from the highest
/// address down, and its `HVLU` note: the validator's sorts, its shared-page
/// checks and the merging of mappings get work. The entry is in the first.
fn seed_many_segments() -> Vec<u8> {
    const N: u64 = 24;
    const DATA_AT: u64 = 0x600;
    const NOTES_AT: usize = 0x780;
    let mut phdrs: Vec<ProgramHeader> = (0..N)
        .rev()
        .map(|i| {
            let flags = [R | X, R, R | W][(i % 3) as usize];
            let paddr = 0x10_0000 + i * 0x40;
            ProgramHeader {
                p_type: elf::PT_LOAD,
                p_flags: elf::ProgramFlags(flags),
                p_offset: DATA_AT + i * 0x10,
                p_vaddr: VBASE + paddr,
                p_paddr: paddr,
                p_filesz: 0x10,
                p_memsz: 0x40,
                p_align: 0x40,
            }
        })
        .collect();
    let note = seed_note(VBASE + 0x10_0004).to_note_bytes();
    let len = note.len() as u64;
    phdrs.push(ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: elf::ProgramFlags(R),
        p_offset: NOTES_AT as u64,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: len,
        p_memsz: len,
        p_align: 4,
    });
    let mut body = vec![0u8; 0x800];
    for (i, b) in body[DATA_AT as usize..NOTES_AT].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(73).wrapping_add(5);
    }
    body[NOTES_AT..NOTES_AT + note.len()].copy_from_slice(&note);
    seed_elf(phdrs, body, 0x1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::TARGETS;

    #[test]
    fn seed_images_are_valid_and_carry_their_span_as_limit() {
        use old_hv::image::{validate, ImageError, ImageLimits};
        let big = ImageLimits { max_span: 64 << 20 };
        for hv_like in [false, true] {
            let image = seed_image(hv_like, false);
            let info = validate(&image, handover_abi::WRITES, &big).unwrap();
            assert_eq!(info.segments.len(), 2 + usize::from(hv_like));
            let limit = u64::from_le_bytes(image[8..16].try_into().unwrap());
            assert_eq!(limit, info.span);
            let exact = ImageLimits { max_span: limit };
            assert_eq!(
                validate(&image, handover_abi::WRITES, &exact),
                Ok(info.clone())
            );

            let under = seed_image(hv_like, true);
            let limit = u64::from_le_bytes(under[8..16].try_into().unwrap());
            assert_eq!(
                validate(
                    &under,
                    handover_abi::WRITES,
                    &ImageLimits { max_span: limit }
                ),
                Err(ImageError::TooLarge {
                    span: info.span,
                    max_span: limit
                })
            );
        }
    }

    #[test]
    fn the_many_segments_seed_is_valid_with_one_mapping() {
        use old_hv::image::{validate, ImageLimits, SegmentFlags};
        let image = seed_many_segments();
        let info = validate(
            &image,
            handover_abi::WRITES,
            &ImageLimits { max_span: 0x1000 },
        )
        .unwrap();
        assert_eq!(info.segments.len(), 24);
        assert_eq!(info.span, 0x1000);
        assert_eq!(info.mappings.len(), 1);
        assert_eq!(info.mappings[0].flags, SegmentFlags(R | W | X));
    }

    #[test]
    fn the_state_seeds_hold_every_golden_version_and_an_hvm_domain() {
        let seeds = state_seeds().unwrap();
        let names: Vec<&str> = seeds.iter().map(|(n, _)| n.as_str()).collect();
        for v in ["v1_0", "v1_1", "v1_2", "v1_3"] {
            assert!(names.contains(&format!("golden-{v}").as_str()), "{names:?}");
            assert!(
                names.contains(&format!("golden-{v}-body").as_str()),
                "{names:?}"
            );
        }
        // The newest body behind a header of this build's version, as the
        // target tries every input: it decodes, with an HVM domain that has
        // log-dirty on, so the fuzzer starts inside the HVM checks.
        let (_, body) = seeds.iter().find(|(n, _)| n == "golden-v1_3-body").unwrap();
        let producer = handover_abi::Producer::this_build(BuildId([0xf2; 16]));
        let header = handover_abi::Header::new(handover_abi::CURRENT, body, producer);
        let blob = [&header.to_bytes()[..], body].concat();
        let state = handover_abi::decode(&blob).unwrap().state;
        assert!(state
            .domains
            .iter()
            .any(|d| d.hvm.as_ref().is_some_and(|h| h.log_dirty.is_some())));
    }

    #[test]
    fn seeds_are_written_for_every_target() {
        let dir = std::env::temp_dir().join(format!("hvlu-fuzz-seeds-{}", std::process::id()));
        for target in TARGETS {
            let sub = dir.join(target);
            std::fs::create_dir_all(&sub).unwrap();
            write_seeds(target, &sub).unwrap();
            assert!(std::fs::read_dir(&sub).unwrap().count() >= 2, "{target}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
