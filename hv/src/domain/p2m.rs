//! A domain's guest frame space: the p2m (gpfn → mfn), the guest frame
//! numbers given back and free for reuse, and the number of frames the
//! domain owns.
//!
//! Everything is sized once, when the domain is made, from its memory limit
//! (`max_frames`), and taken fallibly from the heap: a domain that cannot be
//! backed is refused then, with the numbers. Afterwards nothing here
//! allocates. The p2m never grows past the limit: a new frame takes the
//! lowest guest frame number given back earlier before the p2m grows, and a
//! domain owns at most `max_frames` frames, so `len ≤ max_frames` always.
//! Each frame in or out costs `O(log n)` (a min-heap of the free numbers),
//! never a scan of the p2m; the owned-frame count is kept as frames come and
//! go.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::ops::Deref;

use hvlu_types::Gpfn;

/// A p2m entry with no frame.
pub const NO_FRAME: u64 = u64::MAX;

/// Heap bytes a domain's frame space takes per frame of its limit: an
/// 8-byte p2m entry and a 4-byte free-list slot.
pub const BYTES_PER_FRAME: u64 = 8 + 4;

/// The heap bytes of the frame space of a domain limited to `max_frames`.
pub const fn heap_bytes(max_frames: u64) -> u64 {
    max_frames.saturating_mul(BYTES_PER_FRAME)
}

/// Why a frame space could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum P2mError {
    /// The heap cannot hold it.
    #[error("the hypervisor heap cannot hold {} KiB", .needed.div_ceil(1024))]
    NoHeap {
        /// Bytes its p2m and free list take ([`heap_bytes`]).
        needed: u64,
    },
    /// The limit is beyond what the free list indexes (2^32 frames).
    #[error("a limit of {max_frames} frames is beyond 2^32")]
    LimitTooLarge {
        /// The limit asked for.
        max_frames: u64,
    },
    /// The p2m given has more entries than the limit allows.
    #[error("a p2m of {len} entries is beyond the limit of {max_frames} frames")]
    BeyondLimit {
        /// Its entries.
        len: u64,
        /// The limit.
        max_frames: u64,
    },
}

/// A domain's guest frame space. Reads as the p2m slice (`NO_FRAME` for a
/// gpfn without a frame); changes only through its methods.
#[derive(Debug)]
pub struct P2m {
    /// gpfn → mfn, [`NO_FRAME`] for a hole; capacity `limit`.
    map: Vec<u64>,
    /// The holes below `map.len()`, lowest first; capacity `limit`.
    holes: BinaryHeap<Reverse<u32>>,
    /// Entries of `map` that are not [`NO_FRAME`].
    owned: u64,
    /// The memory limit in frames.
    limit: u64,
}

impl P2m {
    /// An empty frame space for a domain limited to `max_frames` frames,
    /// with room for all of them.
    pub fn with_limit(max_frames: u64) -> Result<P2m, P2mError> {
        Self::from_map(Vec::new(), max_frames)
    }

    /// The frame space around `map` (a p2m rebuilt after a live update),
    /// with room for the rest of the limit; the holes and the frame count
    /// are read off `map` once.
    pub fn from_map(mut map: Vec<u64>, max_frames: u64) -> Result<P2m, P2mError> {
        let limit = usize::try_from(max_frames)
            .ok()
            .filter(|_| max_frames <= 1 << 32)
            .ok_or(P2mError::LimitTooLarge { max_frames })?;
        if map.len() > limit {
            return Err(P2mError::BeyondLimit {
                len: map.len() as u64,
                max_frames,
            });
        }
        let no_heap = |_| P2mError::NoHeap {
            needed: heap_bytes(max_frames),
        };
        map.try_reserve_exact(limit - map.len()).map_err(no_heap)?;
        let mut holes = BinaryHeap::new();
        holes.try_reserve_exact(limit).map_err(no_heap)?;
        let mut owned = 0;
        for (gpfn, &mfn) in map.iter().enumerate() {
            if mfn == NO_FRAME {
                // Below the limit, so below 2^32.
                holes.push(Reverse(gpfn as u32));
            } else {
                owned += 1;
            }
        }
        Ok(P2m {
            map,
            holes,
            owned,
            limit: max_frames,
        })
    }

    /// Frames the domain owns.
    pub fn frames(&self) -> u64 {
        self.owned
    }

    /// The memory limit in frames.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The guest frame number the next frame gets: the lowest one given
    /// back, or the first past the end; `None` at the limit.
    pub fn next_gpfn(&self) -> Option<Gpfn> {
        match self.holes.peek() {
            Some(Reverse(g)) => Some(Gpfn(u64::from(*g))),
            None => (self.owned < self.limit).then_some(Gpfn(self.map.len() as u64)),
        }
    }

    /// Gives the domain frame `mfn` at [`P2m::next_gpfn`]; returns that
    /// gpfn, `None` (and nothing changes) at the limit. Never allocates.
    pub fn add(&mut self, mfn: u64) -> Option<Gpfn> {
        let gpfn = self.next_gpfn()?;
        match self.holes.pop() {
            Some(Reverse(g)) => self.map[g as usize] = mfn,
            // Within the capacity reserved for the limit: no reallocation.
            None => self.map.push(mfn),
        }
        self.owned += 1;
        Some(gpfn)
    }

    /// Takes the frame of `gpfn` away; returns its mfn, `None` if the gpfn
    /// has none. Never allocates.
    pub fn remove(&mut self, gpfn: Gpfn) -> Option<u64> {
        let i = usize::try_from(gpfn.0).ok()?;
        let slot = self.map.get_mut(i)?;
        if *slot == NO_FRAME {
            return None;
        }
        let mfn = core::mem::replace(slot, NO_FRAME);
        // Every gpfn below `len` is below the limit, so below 2^32, and the
        // holes never outnumber the entries: within the reserved capacity.
        self.holes.push(Reverse(i as u32));
        self.owned -= 1;
        Some(mfn)
    }

    /// The mfns the domain owns, in gpfn order.
    pub fn mfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.iter().copied().filter(|&m| m != NO_FRAME)
    }
}

impl Deref for P2m {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        &self.map
    }
}

#[cfg(test)]
mod tests;
