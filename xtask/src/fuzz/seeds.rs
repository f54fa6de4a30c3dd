//! The seeds of the fuzz targets: valid inputs (the golden state blob, a
//! valid note, small valid images, console lines, encoded hypercalls) from
//! which the fuzzer reaches the deep checks far sooner than from nothing.

use std::path::Path;

use handover_abi::note::ImageNote;
use handover_abi::{BuildId, HEADER_SIZE, READS};

use super::elf::{write_elf_header, Phdr, PT_LOAD, PT_NOTE, R, VBASE, W, X};
use crate::shell::{root, Failure};

/// Writes the seeds of `target` into `dir`: valid inputs, from which the
/// fuzzer reaches the deep checks far sooner than from nothing.
pub fn write_seeds(target: &str, dir: &Path) -> Result<(), Failure> {
    // Only the seeds: anything else there (say, inputs a hand-run libFuzzer
    // added) goes.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let seeds: Vec<(&str, Vec<u8>)> = match target {
        "state_decoder" => {
            let path = root().join("handover-abi/tests/golden/v1_0.bin");
            let blob = std::fs::read(&path).map_err(|e| {
                Failure::Failed(format!("cannot read the seed {}: {e}", path.display()))
            })?;
            let body = blob.get(HEADER_SIZE..).unwrap_or_default().to_vec();
            vec![("golden-v1_0", blob), ("golden-v1_0-body", body)]
        }
        "console_line" => vec![
            (
                "commands",
                b"help\nlist\ncreate domu 4096 probe\nlu status\n".to_vec(),
            ),
            ("edited", b"destroy 2\x08\x083\n\tpause\t1\n".to_vec()),
            (
                "refused",
                "poweroff \u{1f600}\n\x1b[A\n".as_bytes().to_vec(),
            ),
        ],
        "note_parser" => {
            let note = seed_note(0xffff_ffff_8010_0110);
            let desc = note.to_desc();
            // The first byte cuts the rest into descriptors: 35 gives 36-byte ones.
            let listed = [&[35u8][..], &desc, &desc].concat();
            vec![
                ("note", note.to_note_bytes().to_vec()),
                ("desc", desc.to_vec()),
                ("two-descs", listed),
            ]
        }
        "image_validator" => vec![
            ("two-loads-span", seed_image(false, false)),
            ("two-loads-span-minus-1", seed_image(false, true)),
            ("hv-like", seed_image(true, false)),
            ("many-segments", seed_many_segments()),
        ],
        "hypercall_args" => seed_calls(),
        _ => Vec::new(),
    };
    for (name, bytes) in seeds {
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Calls for `hypercall_args`, as a guest makes them
/// (`pv_abi::call::Call::encode`): the number and five words, little-endian,
/// then what the buffer holds — the bounds' edges, and each payload the
/// hypervisor interprets.
fn seed_calls() -> Vec<(&'static str, Vec<u8>)> {
    use pv_abi::call::{
        Call, CreateArgs, Domctl, EntryWrite, GuestArray, GuestBuf, TableLevel, MAX_CONSOLE_IO,
        MAX_MODULE_NAME,
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
            table: handover_abi::Mfn(0x1234),
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
                    mfn: handover_abi::Mfn(0x1234),
                    level: TableLevel::L4,
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
                }),
                &create[..n],
            ),
        ),
        (
            "lu-load",
            seed(
                Call::LuLoad {
                    name: buf(MAX_MODULE_NAME),
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

/// An `HVLU` note reading what this build reads.
fn seed_note(entry: u64) -> ImageNote {
    ImageNote {
        reads: READS,
        writes: Some(handover_abi::WRITES),
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
/// Bytes 8..16 (`EI_PAD`, which the validator ignores and the target reads
/// as its second limit) hold the span, or the span less one with
/// `under_limit`.
fn seed_image(hv_like: bool, under_limit: bool) -> Vec<u8> {
    const FILE_LEN: usize = 0x400;
    const NOTES_AT: usize = 0x380;
    let mut phdrs: Vec<Phdr> = Vec::new();
    if hv_like {
        phdrs.push((
            PT_LOAD,
            R | W | X,
            0x3d0,
            0xff380,
            0xff380,
            0x30,
            0x80,
            0x1000,
        ));
    }
    phdrs.push((
        PT_LOAD,
        R | X,
        0x200,
        VBASE + 0x10_0100,
        0x10_0100,
        0x100,
        0x100,
        0x1000,
    ));
    phdrs.push((
        PT_LOAD,
        R | W,
        0x300,
        VBASE + 0x10_0200,
        0x10_0200,
        0x80,
        0x1000,
        0x1000,
    ));
    let mut notes = Vec::new();
    if hv_like {
        // The PVH note QEMU boots by: name "Xen", type 18, a 32-bit entry.
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&18u32.to_le_bytes());
        notes.extend_from_slice(b"Xen\0");
        notes.extend_from_slice(&0xff380u32.to_le_bytes());
    }
    notes.extend_from_slice(&seed_note(VBASE + 0x10_0110).to_note_bytes());
    let notes_len = notes.len() as u64;
    phdrs.push((
        PT_NOTE,
        R,
        NOTES_AT as u64,
        VBASE + 0x10_0380,
        0x10_0380,
        notes_len,
        notes_len,
        4,
    ));
    // From the lowest page to the end of the bss, rounded up to a page.
    let span: u64 = if hv_like { 0x3000 } else { 0x2000 };
    let limit = if under_limit { span - 1 } else { span };

    let mut f = vec![0u8; FILE_LEN];
    write_elf_header(&mut f, &phdrs, limit);
    // Text and data: bytes that are not zero, so a misplaced copy shows.
    for (i, b) in f[0x200..NOTES_AT].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    f[NOTES_AT..NOTES_AT + notes.len()].copy_from_slice(&notes);
    f
}

/// A valid image of 24 small `PT_LOAD`s (file 0x10, memory 0x40 bytes each,
/// `r-x`, `r--`, `rw-` in turn) packed on one page, listed from the highest
/// address down, and its `HVLU` note: the validator's sorts, its shared-page
/// checks and the merging of mappings get work. The entry is in the first.
fn seed_many_segments() -> Vec<u8> {
    const N: u64 = 24;
    const DATA_AT: u64 = 0x600;
    const NOTES_AT: usize = 0x780;
    let mut phdrs: Vec<Phdr> = (0..N)
        .rev()
        .map(|i| {
            let flags = [R | X, R, R | W][(i % 3) as usize];
            let paddr = 0x10_0000 + i * 0x40;
            (
                PT_LOAD,
                flags,
                DATA_AT + i * 0x10,
                VBASE + paddr,
                paddr,
                0x10,
                0x40,
                0x40,
            )
        })
        .collect();
    let note = seed_note(VBASE + 0x10_0004).to_note_bytes();
    let len = note.len() as u64;
    phdrs.push((PT_NOTE, R, NOTES_AT as u64, 0, 0, len, len, 4));
    let mut f = vec![0u8; 0x800];
    write_elf_header(&mut f, &phdrs, 0x1000);
    for (i, b) in f[DATA_AT as usize..NOTES_AT].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(73).wrapping_add(5);
    }
    f[NOTES_AT..NOTES_AT + note.len()].copy_from_slice(&note);
    f
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
