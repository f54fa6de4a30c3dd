//! Fuzzes the image loader: `old_hv::image::validate` on arbitrary bytes, and
//! `old_hv::image::stage` of every image it accepts.
//!
//! The whole input is the image (so that its ELF offsets mean what they say).
//! It is validated twice: against a generous fixed limit ([`BIG`], 64 MiB),
//! and against a limit read from bytes 8..16 of the input, which are
//! `EI_ABIVERSION` and `EI_PAD` of an ELF header, bytes the validator never
//! reads; so small limits, and limits right at an image's span, are tried
//! without changing what else the image says. The two answers must agree
//! except where rule 11 (the span limit) tells them apart.
//!
//! An accepted image's description must hold what [`ImageInfo`] promises
//! (page-aligned span, segments in order inside it, the entry mapped at its
//! offset, disjoint sorted mappings), and staging it must write each byte of
//! `[0, span)` exactly once, in increasing order, never outside the area:
//! into an area of exactly `span` bytes it succeeds, into one a byte shorter
//! it fails with the area's error, and other bytes than the validated ones
//! are refused before anything is written.

#![no_main]

use handover_abi::WRITES;
use libfuzzer_sys::fuzz_target;
use old_hv::image::{
    stage, validate, ImageError, ImageInfo, ImageLimits, StageError, StagingArea, PAGE_SIZE,
};

/// The generous limit: 64 MiB.
const BIG: u64 = 64 << 20;

/// Spans up to this are staged into a real buffer and compared byte for
/// byte; larger ones only have their writes checked (to keep runs fast).
const BUFFERED: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let big = validate(data, WRITES, &ImageLimits { max_span: BIG });
    let small_limit = data
        .get(8..16)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0);
    let small = validate(
        data,
        WRITES,
        &ImageLimits {
            max_span: small_limit,
        },
    );
    agree(&big, BIG, &small, small_limit);

    // When both accept, they agree: the image is checked once.
    let accepted = match (&big, &small) {
        (Ok(info), _) => Some((info, BIG)),
        (Err(_), Ok(info)) => Some((info, small_limit)),
        (Err(_), Err(_)) => None,
    };
    if let Some((info, limit)) = accepted {
        check_info(info, data, limit);
        check_stage(info, data);
    }
});

/// The same bytes under two limits: the same answer, unless one of them is
/// `TooLarge` (rule 11), which only the limit decides.
fn agree(
    a: &Result<ImageInfo, ImageError>,
    a_limit: u64,
    b: &Result<ImageInfo, ImageError>,
    b_limit: u64,
) {
    let too_large = |r: &Result<ImageInfo, ImageError>, limit: u64| match *r {
        Err(ImageError::TooLarge { span, max_span }) => {
            assert_eq!(max_span, limit);
            assert!(span > limit, "TooLarge with span {span} <= limit {limit}");
            Some(span)
        }
        _ => None,
    };
    match (too_large(a, a_limit), too_large(b, b_limit)) {
        (None, None) => assert_eq!(a, b, "limits {a_limit} and {b_limit}"),
        (Some(x), Some(y)) => assert_eq!(x, y),
        (Some(span), None) => the_other_passed_rule_11(b, span, b_limit),
        (None, Some(span)) => the_other_passed_rule_11(a, span, a_limit),
    }
}

/// `r` passed the span check with `limit` where the other limit did not, for
/// an image spanning `span`: `r` is not an error from before rule 11.
fn the_other_passed_rule_11(r: &Result<ImageInfo, ImageError>, span: u64, limit: u64) {
    assert!(span <= limit, "span {span} passed a limit of {limit}");
    match r {
        Ok(info) => assert_eq!(info.span, span),
        Err(
            ImageError::NoNote
            | ImageError::DuplicateNote
            | ImageError::BadNote(_)
            | ImageError::NoCommonVersion { .. }
            | ImageError::Contract(_)
            | ImageError::EntryOutsideExecutableSegment { .. },
        ) => {}
        Err(e) => panic!("an error from before rule 11 under one limit only: {e:?}"),
    }
}

/// What an `ImageInfo` promises.
fn check_info(info: &ImageInfo, data: &[u8], limit: u64) {
    assert_eq!(info.file_len, data.len() as u64);
    assert!(WRITES.contains(info.version));
    assert!(info.note.reads.contains(info.version));
    assert_eq!(info.phys_start % PAGE_SIZE, 0);
    assert_eq!(info.span % PAGE_SIZE, 0);
    assert!(info.span > 0 && info.span <= limit);
    assert!(!info.segments.is_empty());
    let mut end = 0;
    for seg in &info.segments {
        assert!(seg.memsz > 0 && seg.filesz <= seg.memsz, "{seg:?}");
        assert!(seg.offset >= end, "segments overlap or are out of order");
        end = seg.offset + seg.memsz;
        assert!(end <= info.span, "segment past the span: {seg:?}");
        let file_end = seg.file_offset.checked_add(seg.filesz).expect("file range");
        assert!(file_end <= info.file_len, "segment past the file: {seg:?}");
    }
    assert!(info.entry_offset < info.span);
    let entry_seg = info
        .segments
        .iter()
        .find(|s| {
            s.flags.executable()
                && s.offset <= info.entry_offset
                && info.entry_offset < s.offset + s.filesz
        })
        .expect("the entry is in the file bytes of an executable segment");
    assert_eq!(
        info.entry() - entry_seg.vaddr,
        info.entry_offset - entry_seg.offset
    );
    assert_eq!(info.offset_of(info.entry()), Some(info.entry_offset));
    let mut vend = 0;
    for m in &info.mappings {
        assert_eq!(m.vaddr % PAGE_SIZE, 0);
        assert_eq!(m.offset % PAGE_SIZE, 0);
        assert!(m.len > 0 && m.len % PAGE_SIZE == 0);
        assert!(m.vaddr >= vend, "mappings overlap or are out of order");
        vend = m.vaddr.checked_add(m.len).expect("mapping end");
        assert!(
            m.offset + m.len <= info.span,
            "mapping past the span: {m:?}"
        );
    }
    for seg in &info.segments {
        for at in [seg.vaddr, seg.vaddr + (seg.memsz - 1)] {
            assert_eq!(
                info.offset_of(at),
                Some(seg.offset + (at - seg.vaddr)),
                "byte {at:#x} of {seg:?}"
            );
        }
    }
}

/// Stages `info` into areas of `span` and `span - 1` bytes, and with bytes of
/// another length.
fn check_stage(info: &ImageInfo, data: &[u8]) {
    let mut area = Area::new(info.span, data, true);
    stage(info, data, &mut area).expect("staging into an area of exactly the span");
    assert_eq!(area.cursor, info.span, "staging left bytes unwritten");
    if let Some(mem) = &area.mem {
        let mut expected = vec![0u8; info.span as usize];
        for seg in &info.segments {
            let (at, from, len) = (
                seg.offset as usize,
                seg.file_offset as usize,
                seg.filesz as usize,
            );
            expected[at..at + len].copy_from_slice(&data[from..from + len]);
        }
        assert!(*mem == expected, "staged bytes differ from the image");
    }

    let mut short = Area::new(info.span - 1, data, false);
    match stage(info, data, &mut short) {
        Err(StageError::Area(OutOfArea)) => {}
        other => panic!("staging into a too short area: {other:?}"),
    }

    let mut untouched = Area::new(info.span, data, false);
    match stage(info, &data[..data.len() - 1], &mut untouched) {
        Err(StageError::ImageMismatch { .. }) => assert_eq!(untouched.cursor, 0),
        other => panic!("staging other bytes than validated: {other:?}"),
    }
}

/// A staging area of `len` bytes that checks every write starts where the
/// last one ended (each byte once, in increasing order) and refuses one past
/// its end. A small area asked to keep its bytes does, starting as garbage.
#[derive(Debug)]
struct Area<'a> {
    len: u64,
    cursor: u64,
    mem: Option<Vec<u8>>,
    image: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
struct OutOfArea;

impl<'a> Area<'a> {
    fn new(len: u64, image: &'a [u8], keep: bool) -> Self {
        Area {
            len,
            cursor: 0,
            mem: (keep && len <= BUFFERED).then(|| vec![0xa5; len as usize]),
            image,
        }
    }

    /// Accounts for `len` bytes at `offset`; the range in `mem`.
    fn take(&mut self, offset: u64, len: u64) -> Result<core::ops::Range<usize>, OutOfArea> {
        assert!(len > 0, "an empty write at {offset:#x}");
        assert_eq!(offset, self.cursor, "a write out of order");
        let end = offset.checked_add(len).ok_or(OutOfArea)?;
        if end > self.len {
            return Err(OutOfArea);
        }
        self.cursor = end;
        Ok(offset as usize..end as usize)
    }
}

impl StagingArea for Area<'_> {
    type Error = OutOfArea;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), OutOfArea> {
        // Staging copies from the image it was given, nothing else.
        let image = self.image.as_ptr_range();
        let src = bytes.as_ptr_range();
        assert!(image.start <= src.start && src.end <= image.end);
        let range = self.take(offset, bytes.len() as u64)?;
        if let Some(mem) = &mut self.mem {
            mem[range].copy_from_slice(bytes);
        }
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), OutOfArea> {
        let range = self.take(offset, len)?;
        if let Some(mem) = &mut self.mem {
            mem[range].fill(0);
        }
        Ok(())
    }
}
