//! The page allocator: one bit per machine frame, set when the frame is free.
//!
//! It knows only frames it was given ([`PageAllocator::release`]): RAM
//! outside the live-update region, the image and firmware memory. Domain
//! memory comes from here, never from the region.

use alloc::vec;
use alloc::vec::Vec;

use handover_abi::{Mfn, MfnRange};

/// Free machine frames.
#[derive(Debug)]
pub struct PageAllocator {
    bits: Vec<u64>,
    free: u64,
    /// Where the next search starts.
    hint: usize,
}

impl PageAllocator {
    /// An allocator for frames `0..frames` with none free yet.
    pub fn new(frames: u64) -> Self {
        PageAllocator {
            bits: vec![0; frames.div_ceil(64) as usize],
            free: 0,
            hint: 0,
        }
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    fn is_free(&self, mfn: u64) -> bool {
        self.bits
            .get((mfn / 64) as usize)
            .is_some_and(|w| w & (1 << (mfn % 64)) != 0)
    }

    /// Adds the frames of `range` to the free pool. Frames already free or
    /// beyond the allocator's span are ignored.
    pub fn release(&mut self, range: MfnRange) {
        for mfn in range.start.0..range.end() {
            let word = (mfn / 64) as usize;
            let Some(w) = self.bits.get_mut(word) else {
                break;
            };
            if *w & (1 << (mfn % 64)) == 0 {
                *w |= 1 << (mfn % 64);
                self.free += 1;
            }
        }
    }

    /// Takes one free frame (the lowest from the search hint on).
    pub fn alloc(&mut self) -> Option<Mfn> {
        let n = self.bits.len();
        for i in 0..n {
            let word = (self.hint + i) % n;
            let w = self.bits[word];
            if w != 0 {
                let bit = w.trailing_zeros() as u64;
                self.bits[word] &= !(1 << bit);
                self.free -= 1;
                self.hint = word;
                return Some(Mfn(word as u64 * 64 + bit));
            }
        }
        None
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
