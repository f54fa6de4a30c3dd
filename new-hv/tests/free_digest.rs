//! The free-frame digest is the one docs/abi.md §5.2 describes: released
//! images compute it, so its value may never change.

mod by_the_doc;

use std::collections::BTreeSet;

use hvlu_types::{Mfn, MfnRange};
use new_hv::free::digest_of;

fn r(start: u64, count: u64) -> MfnRange {
    MfnRange::new(Mfn(start), count)
}

/// The set of frames, cut into maximal ranges, folded from the free
/// digest's seed: each range's first frame and length, then the number of
/// ranges and of frames.
fn free_digest_by_the_doc(ranges: &[MfnRange]) -> u64 {
    let frames: BTreeSet<u64> = ranges.iter().flat_map(|r| r.start.0..r.end()).collect();
    let mut maximal: Vec<(u64, u64)> = Vec::new();
    for f in frames {
        match maximal.last_mut() {
            Some((start, len)) if *start + *len == f => *len += 1,
            _ => maximal.push((f, 1)),
        }
    }
    let count = maximal.len() as u64;
    let frames = maximal.iter().map(|&(_, len)| len).sum();
    let words = maximal.into_iter().flat_map(|(start, len)| [start, len]);
    by_the_doc::digest(0x6a09_e667_f3bc_c908, words.chain([count, frames]))
}

#[test]
fn the_free_digest_is_the_documented_one() {
    let sets: [&[MfnRange]; 5] = [
        &[],
        &[r(0, 1)],
        &[r(10, 20), r(100, 5)],
        &[r(100, 5), r(10, 5), r(15, 15), r(12, 3), r(0, 0)],
        &[
            r(0x1_0000, 0x8000),
            r(0x3, 0x2000),
            r(0x2003, 7),
            r(0x9_0000, 1),
        ],
    ];
    for set in sets {
        assert_eq!(
            digest_of(set.iter().copied()),
            free_digest_by_the_doc(set),
            "{set:?}"
        );
    }
}
