//! The page allocator: one bit per machine frame, set when the frame is free.
//!
//! It knows only frames it was given ([`PageAllocator::release`]): RAM
//! outside the live-update region, the image and firmware memory. Domain
//! memory comes from here, never from the region.
//!
//! A second, summary level has one bit per word of the first, set when the
//! word has a free frame: taking a frame reads at most one summary bit per
//! 4096 frames (a few thousand words on a 64 GiB machine, however full it
//! is), and releasing a range fills whole words at a time.
//!
//! The bitmap grows as frames are released, up to the span given at
//! creation: creating an allocator writes nothing per frame of RAM (an
//! incoming image creates one inside the blackout, and hands it free RAM
//! only afterwards).

use alloc::vec::Vec;

use hvlu_types::{Mfn, MfnRange};

/// Free machine frames.
#[derive(Debug)]
pub struct PageAllocator {
    bits: Vec<u64>,
    /// Bit `i` set when `bits[i]` is not zero.
    summary: Vec<u64>,
    free: u64,
    /// The word where the next search starts.
    hint: usize,
    /// Words the bitmap may grow to: one bit per frame of the span.
    span_words: usize,
    /// Changes of the free frames (allocations and releases) so far.
    generation: u64,
}

impl PageAllocator {
    /// An allocator for frames `0..frames` with none free yet.
    pub fn new(frames: u64) -> Self {
        PageAllocator {
            bits: Vec::new(),
            summary: Vec::new(),
            free: 0,
            hint: 0,
            span_words: frames.div_ceil(64) as usize,
            generation: 0,
        }
    }

    /// Makes the bitmap (and its summary) at least `words` words long.
    fn grow(&mut self, words: usize) {
        if words > self.bits.len() {
            self.bits.resize(words, 0);
            self.summary.resize(words.div_ceil(64), 0);
        }
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// A number that changes whenever the free frames may have: every
    /// allocation and every release adds one (what a digest of the free
    /// frames taken earlier can be checked against).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn is_free(&self, mfn: u64) -> bool {
        self.bits
            .get((mfn / 64) as usize)
            .is_some_and(|w| w & (1 << (mfn % 64)) != 0)
    }

    /// Adds the frames of `range` to the free pool, a word at a time.
    /// Frames already free or beyond the allocator's span are ignored.
    pub fn release(&mut self, range: MfnRange) {
        self.generation += 1;
        let span = self.span_words as u64 * 64;
        let (mut mfn, end) = (range.start.0.min(span), range.end().min(span));
        self.grow(end.div_ceil(64) as usize);
        while mfn < end {
            let word = (mfn / 64) as usize;
            let from = mfn % 64;
            let to = (end - word as u64 * 64).min(64);
            // Bits `from..to` of the word.
            let mask = (u64::MAX >> (64 - (to - from))) << from;
            let w = &mut self.bits[word];
            self.free += u64::from((mask & !*w).count_ones());
            *w |= mask;
            self.summary[word / 64] |= 1 << (word % 64);
            mfn = word as u64 * 64 + to;
        }
    }

    /// The free frames as maximal ranges in increasing order: one pass over
    /// the bitmap, a word at a time (full and empty words in one step).
    /// For the free-frame digest a live update carries.
    pub fn free_runs(&self) -> impl Iterator<Item = MfnRange> + '_ {
        let mut word = 0usize;
        let mut bit = 0u32;
        core::iter::from_fn(move || {
            // Find the first free frame at or after (word, bit).
            let start = loop {
                let w = *self.bits.get(word)? & (!0u64).checked_shl(bit).unwrap_or(0);
                if w != 0 {
                    break word as u64 * 64 + u64::from(w.trailing_zeros());
                }
                word += 1;
                bit = 0;
            };
            // Then the first used frame after it.
            let (mut w_i, mut b) = ((start / 64) as usize, (start % 64) as u32);
            let end = loop {
                let Some(&w) = self.bits.get(w_i) else {
                    break w_i as u64 * 64;
                };
                let used = !w & (!0u64).checked_shl(b).unwrap_or(0);
                if used != 0 {
                    break w_i as u64 * 64 + u64::from(used.trailing_zeros());
                }
                w_i += 1;
                b = 0;
            };
            word = (end / 64) as usize;
            bit = (end % 64) as u32;
            Some(MfnRange::new(Mfn(start), end - start))
        })
    }

    /// The first word with a free frame at or after word `from`, wrapping
    /// around once: a walk over the summary level.
    fn word_with_free(&self, from: usize) -> Option<usize> {
        let n = self.summary.len();
        let first = from / 64;
        // The first summary word twice: from `from` on, then (after all the
        // others) the words below it.
        for i in 0..=n {
            let s = (first + i) % n.max(1);
            let mut bits = *self.summary.get(s)?;
            if i == 0 {
                bits &= u64::MAX << (from % 64);
            }
            if bits != 0 {
                return Some(s * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }

    /// Takes one free frame (the lowest of the first word with one from
    /// the search hint on).
    pub fn alloc(&mut self) -> Option<Mfn> {
        let word = self.word_with_free(self.hint)?;
        let w = self.bits[word];
        let bit = w.trailing_zeros() as u64;
        self.bits[word] = w & !(1 << bit);
        if self.bits[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
        self.free -= 1;
        self.generation += 1;
        self.hint = word;
        Some(Mfn(word as u64 * 64 + bit))
    }

    /// Takes `count` (not 0) machine-contiguous free frames, the lowest
    /// run that has them (for what must be contiguous: a log-dirty bitmap);
    /// `None` if no free run is that long.
    pub fn alloc_run(&mut self, count: u64) -> Option<MfnRange> {
        if count == 0 {
            return None;
        }
        let run = self.free_runs().find(|r| r.count >= count)?;
        let taken = MfnRange::new(run.start, count);
        for mfn in taken.start.0..taken.end() {
            let word = (mfn / 64) as usize;
            self.bits[word] &= !(1 << (mfn % 64));
            if self.bits[word] == 0 {
                self.summary[word / 64] &= !(1 << (word % 64));
            }
        }
        self.free -= count;
        self.generation += 1;
        Some(taken)
    }

    /// Gives back a run of frames taken by [`PageAllocator::alloc_run`].
    pub fn free_run(&mut self, run: MfnRange) {
        for mfn in run.start.0..run.end() {
            self.free(Mfn(mfn));
        }
    }

    /// Returns a frame to the pool.
    ///
    /// # Panics
    /// If the frame is already free: a double free is a hypervisor bug.
    pub fn free(&mut self, mfn: Mfn) {
        assert!(!self.is_free(mfn.0), "double free of frame {:#x}", mfn.0);
        self.release(MfnRange::new(mfn, 1));
    }
}

#[cfg(test)]
mod tests;
