//! The digests of the argument page, re-implemented from their description
//! in docs/abi.md §5.2 (not from the code), for the tests that check the
//! code computes what the page says.

/// The digest of `words` folded from `seed`: each word as
/// `h = (h ^ w) * 0x9e37_79b9_7f4a_7c15; h ^= h >> 32`, then the
/// splitmix64 finaliser.
pub fn digest(seed: u64, words: impl IntoIterator<Item = u64>) -> u64 {
    let mut h = seed;
    for w in words {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 32;
    }
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
