//! A domain's guest frame space: the p2m (gpfn → mfn) of its RAM, the RAM
//! frames given back and free for reuse, the number of frames the domain
//! owns, its PCI hole and the device frames mapped identity (gpfn == mfn)
//! inside it. [`P2m::translate`] says what any gpfn is: a RAM frame of the
//! domain's, or why there is none to read ([`TranslateError`]).
//!
//! The hole is `[hole, 4 GiB)` in gpfn space (`hvlu_types::hole`): chosen
//! when the domain is made, never changed. RAM never lies there. The p2m
//! stores nothing for the hole: it is dense by **RAM index** (the i-th
//! RAM frame of the domain, gpfn order; `Hole::gpfn_of` and
//! `Hole::index_of` translate), so a 1 GiB hole costs no memory. Every
//! gpfn the frame space hands out (`next_gpfn`, `add`) is a RAM gpfn, so
//! `increase_reservation` never populates the hole (Invariant 26); a
//! lookup of a gpfn in the hole gives a frame only for an identity entry
//! ([`P2m::add_identity`]), which is device memory: never owned, counted
//! or released.
//!
//! Everything is sized once, when the domain is made, from its memory limit
//! (`max_frames`), and taken fallibly from the heap: a domain that cannot be
//! backed is refused then, with the numbers. Afterwards nothing here
//! allocates but an identity range. The p2m never grows past the limit: a
//! new frame takes the lowest RAM index given back earlier before the p2m
//! grows, and a domain owns at most `max_frames` frames, so
//! `len ≤ max_frames` always. Each frame in or out costs `O(log n)` (a
//! min-heap of the free indices), never a scan of the p2m; the owned-frame
//! count is kept as frames come and go.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use hvlu_types::hole::{Hole, HOLE_END};
use hvlu_types::{Gpfn, Mfn, MfnRange, PAGE_SHIFT};
use pv_abi::hypercall::{Error, MapKind, MemoryMapEntry};

/// A p2m entry with no frame.
pub const NO_FRAME: u64 = u64::MAX;

/// Most identity ranges a domain has: its memory map (two RAM ranges, the
/// hole cut around each range) then stays within what `memory_map` gives
/// (`pv_abi::call::MAX_MEMORY_MAP`).
pub const MAX_IDENTITY: usize = (pv_abi::call::MAX_MEMORY_MAP as usize - 3) / 2;

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

/// Why an identity range was not added or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The range has no frame.
    #[error("an identity range of no frame at {}", .range.start)]
    Empty {
        /// The range.
        range: MfnRange,
    },
    /// Part of the range lies outside the domain's PCI hole: identity
    /// entries map device memory, which lives in the hole only.
    #[error("{range} is not inside the domain's PCI hole {hole}")]
    OutsideHole {
        /// The range.
        range: MfnRange,
        /// The domain's hole.
        hole: Hole,
    },
    /// The range shares frames with an identity range the domain has.
    #[error("{range} overlaps the domain's identity range {other}")]
    Overlaps {
        /// The range.
        range: MfnRange,
        /// The range it overlaps.
        other: MfnRange,
    },
    /// The range to remove is not one the domain has.
    #[error("{range} is not an identity range of the domain")]
    NotMapped {
        /// The range.
        range: MfnRange,
    },
    /// The domain has [`MAX_IDENTITY`] ranges already.
    #[error("the domain has {MAX_IDENTITY} identity ranges, the most it may have")]
    TooMany,
    /// The heap cannot hold one more range.
    #[error("the hypervisor heap cannot hold another identity range")]
    NoHeap,
}

/// Why a gpfn has no RAM frame of the domain's ([`P2m::translate`]): one
/// variant per kind of gpfn, each with the error `read_guest` gives
/// ([`TranslateError::error`]) and, as its `Display`, the reason
/// `last_error` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The gpfn lies in the PCI hole, where there is no RAM, and no device
    /// memory is mapped there.
    #[error("{gpfn} is in the PCI hole {hole}: there is no RAM there")]
    Hole {
        /// The gpfn.
        gpfn: Gpfn,
        /// The domain's hole.
        hole: Hole,
    },
    /// The gpfn is device memory mapped identity in the hole (a BAR): not
    /// RAM, and reading it would read a device register.
    #[error(
        "{gpfn} is device memory ({range}, mapped identity): dom0 maps device memory \
         itself, this call never reads a device register"
    )]
    Device {
        /// The gpfn.
        gpfn: Gpfn,
        /// The identity range that holds it.
        range: MfnRange,
    },
    /// The gpfn's RAM index is at or past the domain's memory limit: no
    /// frame can ever be there.
    #[error("{gpfn} is beyond the domain's RAM ({limit} frames: {})", RamSpan(*.hole, *.limit))]
    BeyondRam {
        /// The gpfn.
        gpfn: Gpfn,
        /// The domain's memory limit in frames.
        limit: u64,
        /// The domain's hole (where its RAM is cut).
        hole: Hole,
    },
    /// The gpfn is RAM of the domain's, within its limit, but has no frame:
    /// never given one, or given back (`decrease_reservation`).
    #[error("{gpfn} (RAM index {index:#x}) has no frame: never populated, or given back")]
    NoFrame {
        /// The gpfn.
        gpfn: Gpfn,
        /// Its RAM index.
        index: u64,
    },
    /// An HVM domain's RAM gpfn whose nested page-table entry is missing
    /// (Invariant 28 says it cannot be: a hypervisor bug, said as such).
    #[error("{gpfn} has no entry in the domain's nested page tables (a hypervisor bug: its RAM is always mapped)")]
    NotNested {
        /// The gpfn.
        gpfn: Gpfn,
    },
}

impl TranslateError {
    /// What `read_guest` returns for it: a gpfn that is no RAM of the
    /// domain (hole, past its RAM) is an argument out of range
    /// ([`Error::Invalid`]); device memory is not the call's to read
    /// ([`Error::Permission`]); RAM without a frame has nothing to read
    /// ([`Error::NotFound`]).
    pub fn error(self) -> Error {
        match self {
            TranslateError::Hole { .. } | TranslateError::BeyondRam { .. } => Error::Invalid,
            TranslateError::Device { .. } => Error::Permission,
            TranslateError::NoFrame { .. } => Error::NotFound,
            TranslateError::NotNested { .. } => Error::Failed,
        }
    }
}

/// The RAM gpfns of a domain with hole `.0` and limit `.1`, as ranges.
struct RamSpan(Hole, u64);

impl core::fmt::Display for RamSpan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut any = false;
        for (first, count) in self.0.ram(self.1) {
            let sep = if any { " and " } else { "" };
            write!(f, "{sep}gpfns [{:#x}, {:#x})", first.0, first.0 + count)?;
            any = true;
        }
        if !any {
            f.write_str("no RAM")?;
        }
        Ok(())
    }
}

/// A domain's guest frame space: RAM by RAM index, the hole, the identity
/// ranges. Changes only through its methods.
#[derive(Debug)]
pub struct P2m {
    /// RAM index → mfn, [`NO_FRAME`] for an index with no frame; capacity
    /// `limit`.
    map: Vec<u64>,
    /// The indices below `map.len()` with no frame, lowest first; capacity
    /// `limit`.
    free: BinaryHeap<Reverse<u32>>,
    /// Entries of `map` that are not [`NO_FRAME`].
    owned: u64,
    /// The memory limit in frames.
    limit: u64,
    /// The PCI hole.
    hole: Hole,
    /// Device frames mapped gpfn == mfn, inside the hole; sorted, disjoint.
    identity: Vec<MfnRange>,
}

impl P2m {
    /// An empty frame space for a domain limited to `max_frames` frames,
    /// with room for all of them, its PCI hole at `hole`.
    pub fn with_limit(max_frames: u64, hole: Hole) -> Result<P2m, P2mError> {
        Self::from_map(Vec::new(), max_frames, hole)
    }

    /// The frame space around `map` (a p2m by RAM index, rebuilt after a
    /// live update: `new_hv::domain::p2m_of`), with room for the rest of
    /// the limit; the free indices and the frame count are read off `map`
    /// once. Identity ranges are added afterwards ([`P2m::add_identity`]).
    pub fn from_map(mut map: Vec<u64>, max_frames: u64, hole: Hole) -> Result<P2m, P2mError> {
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
        let mut free = BinaryHeap::new();
        free.try_reserve_exact(limit).map_err(no_heap)?;
        let mut owned = 0;
        for (index, &mfn) in map.iter().enumerate() {
            if mfn == NO_FRAME {
                // Below the limit, so below 2^32.
                free.push(Reverse(index as u32));
            } else {
                owned += 1;
            }
        }
        Ok(P2m {
            map,
            free,
            owned,
            limit: max_frames,
            hole,
            identity: Vec::new(),
        })
    }

    /// Frames the domain owns (identity entries are not its frames).
    pub fn frames(&self) -> u64 {
        self.owned
    }

    /// The memory limit in frames.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The PCI hole.
    pub fn hole(&self) -> Hole {
        self.hole
    }

    /// The RAM index the next frame gets: the lowest one given back, or the
    /// first past the end; `None` at the limit.
    fn next_index(&self) -> Option<u64> {
        match self.free.peek() {
            Some(Reverse(i)) => Some(u64::from(*i)),
            None => (self.owned < self.limit).then_some(self.map.len() as u64),
        }
    }

    /// The guest frame number the next frame gets: that of the lowest RAM
    /// index given back, or of the first past the end — never one in the
    /// hole; `None` at the limit.
    pub fn next_gpfn(&self) -> Option<Gpfn> {
        self.hole.gpfn_of(self.next_index()?)
    }

    /// Gives the domain frame `mfn` at [`P2m::next_gpfn`]; returns that
    /// gpfn, `None` (and nothing changes) at the limit. Never allocates.
    pub fn add(&mut self, mfn: u64) -> Option<Gpfn> {
        let gpfn = self.next_gpfn()?;
        match self.free.pop() {
            Some(Reverse(i)) => self.map[i as usize] = mfn,
            // Within the capacity reserved for the limit: no reallocation.
            None => self.map.push(mfn),
        }
        self.owned += 1;
        Some(gpfn)
    }

    /// Takes the RAM frame of `gpfn` away; returns its mfn, `None` if the
    /// gpfn has none (an identity entry is not taken: it is no RAM frame,
    /// [`P2m::remove_identity`] drops it). Never allocates.
    pub fn remove(&mut self, gpfn: Gpfn) -> Option<u64> {
        let i = usize::try_from(self.hole.index_of(gpfn)?).ok()?;
        let slot = self.map.get_mut(i)?;
        if *slot == NO_FRAME {
            return None;
        }
        let mfn = core::mem::replace(slot, NO_FRAME);
        // Every index below `len` is below the limit, so below 2^32, and
        // the free indices never outnumber the entries: within the reserved
        // capacity.
        self.free.push(Reverse(i as u32));
        self.owned -= 1;
        Some(mfn)
    }

    /// The frame at `gpfn`: its RAM frame, or for a gpfn in the hole its
    /// identity entry (the frame `gpfn` itself); `None` for a gpfn with
    /// neither.
    pub fn get(&self, gpfn: Gpfn) -> Option<u64> {
        match self.translate(gpfn) {
            Ok(mfn) => Some(mfn.0),
            Err(TranslateError::Device { .. }) => Some(gpfn.0),
            Err(_) => None,
        }
    }

    /// The RAM frame of the domain's at `gpfn`, or what the gpfn is
    /// instead: in the hole (device memory mapped identity there, or
    /// nothing), past the domain's RAM, or RAM without a frame. A lookup:
    /// `O(1)` for RAM, `O(log n)` over the identity ranges in the hole.
    pub fn translate(&self, gpfn: Gpfn) -> Result<Mfn, TranslateError> {
        let Some(index) = self.hole.index_of(gpfn) else {
            let i = self.identity.partition_point(|r| r.end() <= gpfn.0);
            return Err(match self.identity.get(i) {
                Some(&range) if range.contains(Mfn(gpfn.0)) => {
                    TranslateError::Device { gpfn, range }
                }
                _ => TranslateError::Hole {
                    gpfn,
                    hole: self.hole,
                },
            });
        };
        if index >= self.limit {
            return Err(TranslateError::BeyondRam {
                gpfn,
                limit: self.limit,
                hole: self.hole,
            });
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| self.map.get(i))
            .filter(|&&m| m != NO_FRAME)
            .map(|&m| Mfn(m))
            .ok_or(TranslateError::NoFrame { gpfn, index })
    }

    /// The RAM p2m by RAM index (`NO_FRAME` for an index without a frame):
    /// a PV guest's page numbers are RAM indices (the builder lays out its
    /// pages by them), and the outgoing state turns them into gpfns
    /// (`old_hv::domain`).
    pub fn ram(&self) -> &[u64] {
        &self.map
    }

    /// The domain's RAM frames `(gpfn, mfn)`, in gpfn order.
    pub fn entries(&self) -> impl Iterator<Item = (Gpfn, u64)> + '_ {
        let hole = self.hole;
        (0..)
            .zip(&self.map)
            .filter(|&(_, &m)| m != NO_FRAME)
            .filter_map(move |(i, &m)| Some((hole.gpfn_of(i)?, m)))
    }

    /// The mfns the domain owns, in gpfn order.
    pub fn mfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.iter().copied().filter(|&m| m != NO_FRAME)
    }

    /// The device frames mapped identity in the hole, sorted.
    pub fn identity(&self) -> &[MfnRange] {
        &self.identity
    }

    /// Maps the device frames `range` identity (gpfn == mfn): a BAR given to
    /// the domain. The range must lie inside the hole and share no frame
    /// with an identity range the domain has, of which it has fewer than
    /// [`MAX_IDENTITY`].
    pub fn add_identity(&mut self, range: MfnRange) -> Result<(), IdentityError> {
        if range.is_empty() {
            return Err(IdentityError::Empty { range });
        }
        if !self.hole.contains(Gpfn(range.start.0)) || range.end() > HOLE_END.0 {
            return Err(IdentityError::OutsideHole {
                range,
                hole: self.hole,
            });
        }
        let at = self.identity.partition_point(|r| r.end() <= range.start.0);
        if let Some(&other) = self.identity.get(at).filter(|r| r.overlaps(range)) {
            return Err(IdentityError::Overlaps { range, other });
        }
        if self.identity.len() >= MAX_IDENTITY {
            return Err(IdentityError::TooMany);
        }
        self.identity
            .try_reserve(1)
            .map_err(|_| IdentityError::NoHeap)?;
        self.identity.insert(at, range);
        Ok(())
    }

    /// Drops the identity range `range`, which must be one added whole
    /// ([`P2m::add_identity`]): a BAR taken back from the domain.
    pub fn remove_identity(&mut self, range: MfnRange) -> Result<(), IdentityError> {
        let at = self
            .identity
            .iter()
            .position(|&r| r == range)
            .ok_or(IdentityError::NotMapped { range })?;
        self.identity.remove(at);
        Ok(())
    }

    /// The domain's memory map, sorted by address, entries disjoint: its
    /// RAM below the hole, the hole (cut around each identity range, which
    /// is device memory), its RAM from 4 GiB.
    pub fn memory_map(&self) -> impl Iterator<Item = MemoryMapEntry> + '_ {
        let entry = |first: u64, frames: u64, kind: MapKind| {
            (frames > 0)
                .then(|| MemoryMapEntry::new(first << PAGE_SHIFT, frames << PAGE_SHIFT, kind))
        };
        // Below the hole, then from 4 GiB: a domain with RAM has some
        // below its hole, which starts at 16 MiB at the lowest.
        let mut ram = self.hole.ram(self.limit);
        let (low, high) = (ram.next(), ram.next());
        let hole = self.hole.start().0;
        let gaps = self.identity.iter().enumerate().flat_map(move |(i, r)| {
            let from = if i == 0 {
                hole
            } else {
                self.identity[i - 1].end()
            };
            [
                entry(from, r.start.0 - from, MapKind::PciHole),
                entry(r.start.0, r.count, MapKind::Device),
            ]
        });
        let last = self.identity.last().map_or(hole, |r| r.end());
        low.and_then(|(g, n)| entry(g.0, n, MapKind::Ram))
            .into_iter()
            .chain(gaps.flatten())
            .chain(entry(last, HOLE_END.0 - last, MapKind::PciHole))
            .chain(high.and_then(|(g, n)| entry(g.0, n, MapKind::Ram)))
    }
}

#[cfg(test)]
mod tests;
