//! The self-check patterns every hvlu test guest writes over its memory:
//! a word of page `gpfn` at generation `gen` is [`pattern`]`(gpfn, gen,
//! word)`, and each page's generation is kept in generation-table pages
//! ([`split`], [`generation_word`]). One definition, so the PV and HVM
//! guests check the same thing.

use crate::mem;

/// How the free pages `free` (from `first_free_gpfn` to the end of memory)
/// are split: `(table pages, pages under test)`. Each table page holds the
/// generation words of `mem::WORDS` pages under test, so `table` is the
/// least number with `table * WORDS >= free - table`.
pub fn split(free: u64) -> (u64, u64) {
    let table = free.div_ceil(mem::WORDS as u64 + 1);
    (table, free - table)
}

/// A generation word: the generation in the low half, its complement in the
/// high half, so that any flipped bit of the word shows.
pub fn generation_word(gen: u32) -> u64 {
    u64::from(gen) | u64::from(!gen) << 32
}

/// Word `word` of page `gpfn` at generation `gen`.
pub fn pattern(gpfn: u64, gen: u32, word: usize) -> u64 {
    let mut x = gpfn.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(gen) << 32) ^ word as u64;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}
