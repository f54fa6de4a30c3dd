//! The free-frame digest: which frames are free, as one number both sides
//! of an update can compute and compare.
//!
//! The old hypervisor computes it over its page allocator's free frames plus
//! the frames of its own image outside the region (a cold-boot image, which
//! the new image frees), and carries it in the argument page; the new one
//! computes it over the ranges it releases. Equal digests mean the same set
//! of free frames, not only the same count (`free_equal` in the report).
//!
//! **What it covers.** The set's maximal ranges (adjacent and overlapping
//! input ranges merged) in increasing order: each folds its first frame and
//! its length; then the number of ranges and the number of frames are
//! folded and the splitmix64 finaliser applied: the project's fold
//! ([`hvlu_types::digest::Fold`], as the owned-frame digest) from its own
//! seed. Two descriptions of one set — split differently, in another
//! order — give the same digest.

use alloc::vec::Vec;

use hvlu_types::digest::Fold;
use hvlu_types::MfnRange;

/// The free-frame digest's seed (released images use it: never change it).
const SEED: u64 = 0x6a09_e667_f3bc_c908;

/// An incremental free-frame digest: feed ranges in increasing order
/// ([`FreeDigest::add`]); adjacent ranges merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeDigest {
    fold: Fold,
    ranges: u64,
    frames: u64,
    /// The range being grown: `(start, end)`.
    pending: Option<(u64, u64)>,
}

impl Default for FreeDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl FreeDigest {
    /// The digest of no frame.
    pub const fn new() -> FreeDigest {
        FreeDigest {
            fold: Fold::new(SEED),
            ranges: 0,
            frames: 0,
            pending: None,
        }
    }

    fn flush(&mut self) {
        if let Some((start, end)) = self.pending.take() {
            self.fold.add(start);
            self.fold.add(end - start);
            self.ranges += 1;
            self.frames += end - start;
        }
    }

    /// Adds `range`. Ranges must come in increasing order of start; one that
    /// touches or overlaps the previous one extends it. Empty ranges are
    /// ignored.
    pub fn add(&mut self, range: MfnRange) {
        if range.is_empty() {
            return;
        }
        let (start, end) = (range.start.0, range.end());
        match &mut self.pending {
            Some((_, e)) if start <= *e => *e = (*e).max(end),
            _ => {
                self.flush();
                self.pending = Some((start, end));
            }
        }
    }

    /// Frames of the set so far.
    pub fn frames(&self) -> u64 {
        self.frames + self.pending.map_or(0, |(s, e)| e - s)
    }

    /// The digest value.
    pub fn finish(&self) -> u64 {
        let mut d = *self;
        d.flush();
        d.fold.add(d.ranges);
        d.fold.add(d.frames);
        d.fold.finish()
    }
}

/// The digest of the frames of `ranges`, in any order, possibly
/// overlapping or adjacent.
pub fn digest_of(ranges: impl IntoIterator<Item = MfnRange>) -> u64 {
    let mut all: Vec<MfnRange> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
    all.sort_unstable_by_key(|r| r.start);
    let mut d = FreeDigest::new();
    for r in all {
        d.add(r);
    }
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvlu_types::Mfn;

    fn r(start: u64, count: u64) -> MfnRange {
        MfnRange::new(Mfn(start), count)
    }

    #[test]
    fn one_set_one_digest_however_it_is_cut() {
        let whole = digest_of([r(10, 20), r(100, 5)]);
        assert_eq!(digest_of([r(100, 5), r(10, 20)]), whole);
        assert_eq!(digest_of([r(10, 5), r(15, 15), r(100, 5)]), whole);
        assert_eq!(digest_of([r(10, 20), r(12, 3), r(100, 5), r(0, 0)]), whole);
        let mut d = FreeDigest::new();
        for mfn in (10..30).chain(100..105) {
            d.add(r(mfn, 1));
        }
        assert_eq!(d.finish(), whole);
        assert_eq!(d.frames(), 25);
    }

    #[test]
    fn another_set_another_digest() {
        let base = digest_of([r(10, 20), r(100, 5)]);
        for other in [
            digest_of([r(10, 20), r(101, 5)]), // moved
            digest_of([r(10, 20), r(100, 4)]), // one frame fewer
            digest_of([r(10, 19), r(100, 6)]), // same count, other frames
            digest_of([r(10, 20)]),
            digest_of([]),
        ] {
            assert_ne!(other, base);
        }
        assert_ne!(digest_of([]), digest_of([r(0, 1)]));
    }
}
