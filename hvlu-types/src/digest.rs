//! The fold every digest of the project is built on: the owned-frame
//! digest (`frame_ownership::digest`), the free-frame digest
//! (`new_hv::free`) and the page-table digest (`new_hv::tables`). Each
//! starts from its own seed, so that equal words fed to two different
//! digests do not give equal values, and decides which words it feeds.
//!
//! A word `w` is folded as `h = (h ^ w) * 0x9e37_79b9_7f4a_7c15`
//! (wrapping), then `h ^= h >> 32`. [`Fold::finish`] applies the
//! splitmix64 finaliser to the state. Deterministic, endian-free, no table;
//! not cryptographic: it tells two sides that diverged apart, it does not
//! resist tampering.
//!
//! The owned-frame and free-frame digests travel between images (the
//! argument page carries them), so this fold, their seeds and the words
//! they feed are part of the ABI: an image of another build computes them
//! the same way (docs/abi.md §5.2).

/// The multiplier of a fold step: 2^64 / φ, odd.
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// A digest being folded, one 64-bit word at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fold {
    state: u64,
}

impl Fold {
    /// A fold starting at `seed` (each digest has its own).
    pub const fn new(seed: u64) -> Fold {
        Fold { state: seed }
    }

    /// Folds in `word`.
    #[inline]
    pub fn add(&mut self, word: u64) {
        let h = (self.state ^ word).wrapping_mul(MUL);
        self.state = h ^ (h >> 32);
    }

    /// The digest: the splitmix64 finaliser of the state. The fold itself
    /// is not consumed, so more words may follow.
    pub const fn finish(&self) -> u64 {
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step and the finaliser, written out from the module
    /// documentation.
    #[test]
    fn one_word_as_documented() {
        let seed = 0x0123_4567_89ab_cdef_u64;
        let mut f = Fold::new(seed);
        f.add(42);
        let h = (seed ^ 42).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = h ^ (h >> 32);
        assert_eq!(f, Fold::new(h));
        let z = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        assert_eq!(f.finish(), z ^ (z >> 31));
    }

    #[test]
    fn seed_order_and_every_word_count() {
        let fold = |seed: u64, words: &[u64]| {
            let mut f = Fold::new(seed);
            for &w in words {
                f.add(w);
            }
            f.finish()
        };
        assert_ne!(fold(1, &[5, 6]), fold(2, &[5, 6]), "seed");
        assert_ne!(fold(1, &[5, 6]), fold(1, &[6, 5]), "order");
        assert_ne!(fold(1, &[5]), fold(1, &[5, 0]), "a zero word");
    }
}
