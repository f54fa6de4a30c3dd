//! The entries an incoming hypervisor has not initialised yet
//! (Invariant 29).
//!
//! Inside the blackout the incoming image writes only the frametable and
//! M2P entries of the frames the handover state names: [`init_named`]
//! zeroes them, then the pass ([`crate::rebuild`]) fills them. Every other
//! entry — free RAM, the region, reserved frames, holes in the memory map —
//! holds whatever the memory held before: [`Unsettled`] lists them, as
//! ranges computed from the runs (never from the frames), and initialises
//! them after the guests run again: a bounded chunk at a time
//! ([`Unsettled::settle_some`], from the hypervisor's idle and background
//! time), or the chunk around one frame the moment something needs it
//! ([`Unsettled::settle_at`]). An entry leaves the list only once it reads
//! as a frame nobody owns ([`FrameInfo::UNOWNED`], M2P [`M2P_INVALID`]), and
//! a free frame is handed to the page allocator only once its entry has
//! left it. So nothing reads an uninitialised entry as long as every frame
//! number that did not come from a domain's own validated structures (its
//! runs, its p2m, its checked page tables) or from the page allocator is
//! settled first.

use alloc::vec::Vec;

use hvlu_types::{Mfn, MfnRange};

use crate::frame::FrameInfo;
use crate::layout::DomainView;
use crate::pass::M2P_INVALID;

/// Entries [`Unsettled::settle_at`] initialises around the frame asked for,
/// and the most [`Unsettled::settle_some`] hands back in one range: 4096
/// frames (64 KiB of frametable and 32 KiB of M2P).
pub const CHUNK: u64 = 4096;

/// Sorted, disjoint, non-empty frame ranges, with touching ranges merged,
/// from any ranges.
pub fn merged(mut ranges: Vec<MfnRange>) -> Vec<MfnRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_unstable_by_key(|r| r.start.0);
    let mut out: Vec<MfnRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start.0 <= last.end() => {
                let end = last.end().max(r.end());
                last.count = end - last.start.0;
            }
            _ => out.push(r),
        }
    }
    out
}

/// The frames the runs of `domains` name, sorted and merged: the entries an
/// incoming image initialises before the pass ([`init_named`]).
pub fn named_ranges<P, V>(domains: &[DomainView<'_, P, V>]) -> Vec<MfnRange> {
    merged(
        domains
            .iter()
            .flat_map(|d| d.runs.iter())
            .map(|r| r.mfns())
            .collect(),
    )
}

/// Zeroes the frametable entries of `named` and marks their M2P entries
/// invalid (the part of `named` beyond the tables is left: the pass refuses
/// such a frame). Costs what the named frames cost, nothing per frame of
/// RAM.
pub fn init_named(frametable: &mut [FrameInfo], m2p: &mut [u64], named: &[MfnRange]) {
    for r in named {
        init(frametable, m2p, *r);
    }
}

/// Initialises the entries of `range` (as far as the tables reach).
fn init(frametable: &mut [FrameInfo], m2p: &mut [u64], range: MfnRange) {
    let (start, end) = (range.start.0 as usize, range.end() as usize);
    if let Some(ft) = frametable.get_mut(start..end.min(frametable.len())) {
        ft.fill(FrameInfo::UNOWNED);
    }
    if let Some(m) = m2p.get_mut(start..end.min(m2p.len())) {
        m.fill(M2P_INVALID);
    }
}

/// The entries not initialised yet, and the free RAM among them that is
/// handed to the page allocator as they are (Invariant 29).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unsettled {
    /// Entries not initialised: sorted, disjoint, non-empty.
    ranges: Vec<MfnRange>,
    /// Free RAM not handed out yet: sorted, disjoint, non-empty, each
    /// inside `ranges`.
    free: Vec<MfnRange>,
    /// Frames of `free`.
    free_frames: u64,
}

impl Unsettled {
    /// Nothing left: every entry is initialised (a cold boot's table,
    /// zeroed when it was claimed).
    pub fn none() -> Unsettled {
        Unsettled::default()
    }

    /// After an update: every entry of `0..frames` but the `named` frames
    /// ([`named_ranges`]); among them the `free` RAM ([`crate::free_ranges`],
    /// the complement of the runs, the region and the reserved frames).
    /// Sorted inputs make it O(runs); any order is accepted.
    pub fn after_update(frames: u64, named: &[MfnRange], free: &[MfnRange]) -> Unsettled {
        let named = merged(named.to_vec());
        let mut ranges = Vec::with_capacity(named.len() + 1);
        let mut cur = 0;
        for r in &named {
            let start = r.start.0.min(frames);
            if start > cur {
                ranges.push(MfnRange::new(Mfn(cur), start - cur));
            }
            cur = cur.max(r.end().min(frames));
        }
        if cur < frames {
            ranges.push(MfnRange::new(Mfn(cur), frames - cur));
        }
        // Free RAM is what no run names: only its part inside `ranges`
        // (all of it, when it was computed from the same runs).
        let mut kept = Vec::new();
        for f in merged(free.to_vec()) {
            intersect(&ranges, f, |r| kept.push(r));
        }
        let free = merged(kept);
        let free_frames = free.iter().map(|r| r.count).sum();
        Unsettled {
            ranges,
            free,
            free_frames,
        }
    }

    /// Whether every entry is initialised.
    pub fn is_settled(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Entries still uninitialised.
    pub fn frames(&self) -> u64 {
        self.ranges.iter().map(|r| r.count).sum()
    }

    /// Free frames not handed to the page allocator yet: with its free
    /// frames, the machine's free RAM.
    pub fn free_frames(&self) -> u64 {
        self.free_frames
    }

    /// The ranges still uninitialised.
    pub fn ranges(&self) -> &[MfnRange] {
        &self.ranges
    }

    /// The free RAM not handed out yet.
    pub fn free(&self) -> &[MfnRange] {
        &self.free
    }

    /// Whether the entry of `mfn` is still uninitialised: a binary search
    /// over the ranges.
    pub fn contains(&self, mfn: Mfn) -> bool {
        let i = self.ranges.partition_point(|r| r.end() <= mfn.0);
        self.ranges.get(i).is_some_and(|r| r.contains(mfn))
    }

    /// Initialises the chunk of [`CHUNK`] frames around `mfn` if its entry
    /// is not yet; `release` receives the free RAM among them, now safe to
    /// hand out. Nothing happens for an initialised entry.
    pub fn settle_at(
        &mut self,
        frametable: &mut [FrameInfo],
        m2p: &mut [u64],
        mfn: Mfn,
        release: impl FnMut(MfnRange),
    ) {
        let i = self.ranges.partition_point(|r| r.end() <= mfn.0);
        let Some(&r) = self.ranges.get(i).filter(|r| r.contains(mfn)) else {
            return;
        };
        let start = (mfn.0 - mfn.0 % CHUNK).max(r.start.0);
        let end = (mfn.0 - mfn.0 % CHUNK + CHUNK).min(r.end());
        let chunk = MfnRange::new(Mfn(start), end - start);
        // What is left of `r` on either side.
        let before = MfnRange::new(r.start, start - r.start.0);
        let after = MfnRange::new(Mfn(end), r.end() - end);
        let rest: Vec<MfnRange> = [before, after]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect();
        self.ranges.splice(i..=i, rest);
        self.settle(frametable, m2p, chunk, release);
    }

    /// Initialises up to `budget` entries, lowest first, at most [`CHUNK`]
    /// of them in one range; `release` receives the free RAM among them.
    /// Returns how many entries it initialised (0 once settled).
    pub fn settle_some(
        &mut self,
        frametable: &mut [FrameInfo],
        m2p: &mut [u64],
        budget: u64,
        mut release: impl FnMut(MfnRange),
    ) -> u64 {
        let mut done = 0;
        while done < budget {
            let Some(first) = self.ranges.first_mut() else {
                break;
            };
            let n = first.count.min(CHUNK).min(budget - done);
            let chunk = MfnRange::new(first.start, n);
            first.start = Mfn(first.start.0 + n);
            first.count -= n;
            if first.count == 0 {
                self.ranges.remove(0);
            }
            self.settle(frametable, m2p, chunk, &mut release);
            done += n;
        }
        done
    }

    /// Initialises every entry left; `release` receives the free RAM.
    pub fn settle_all(
        &mut self,
        frametable: &mut [FrameInfo],
        m2p: &mut [u64],
        mut release: impl FnMut(MfnRange),
    ) {
        while self.settle_some(frametable, m2p, u64::MAX, &mut release) > 0 {}
    }

    /// Initialises `chunk` (already taken out of the ranges) and hands its
    /// free part to `release`, taking it out of the free list.
    fn settle(
        &mut self,
        frametable: &mut [FrameInfo],
        m2p: &mut [u64],
        chunk: MfnRange,
        mut release: impl FnMut(MfnRange),
    ) {
        init(frametable, m2p, chunk);
        let mut taken = Vec::new();
        intersect(&self.free, chunk, |r| taken.push(r));
        for t in taken {
            self.free_frames -= t.count;
            let i = self.free.partition_point(|r| r.end() <= t.start.0);
            let f = self.free[i];
            let before = MfnRange::new(f.start, t.start.0 - f.start.0);
            let after = MfnRange::new(Mfn(t.end()), f.end() - t.end());
            let rest: Vec<MfnRange> = [before, after]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect();
            self.free.splice(i..=i, rest);
            release(t);
        }
    }
}

/// Calls `f` with each non-empty intersection of `range` with the sorted,
/// disjoint `ranges`, in order.
fn intersect(ranges: &[MfnRange], range: MfnRange, mut f: impl FnMut(MfnRange)) {
    let mut i = ranges.partition_point(|r| r.end() <= range.start.0);
    while let Some(r) = ranges.get(i) {
        if r.start.0 >= range.end() {
            break;
        }
        let s = r.start.0.max(range.start.0);
        let e = r.end().min(range.end());
        if s < e {
            f(MfnRange::new(Mfn(s), e - s));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, count: u64) -> MfnRange {
        MfnRange::new(Mfn(start), count)
    }

    /// A frametable and M2P of `n` entries full of what a previous image
    /// left: entries that claim an owner and a type.
    fn garbage(n: usize) -> (Vec<FrameInfo>, Vec<u64>) {
        let fi = FrameInfo::new(
            Some(hvlu_types::DomId(1)),
            crate::PageType::L1,
            3,
            4,
            crate::FrameFlags::EMPTY,
        );
        (alloc::vec![fi; n], alloc::vec![7; n])
    }

    #[test]
    fn the_unsettled_entries_are_the_complement_of_the_named_frames() {
        let u = Unsettled::after_update(100, &[r(50, 10), r(10, 5), r(12, 8)], &[r(30, 10)]);
        assert_eq!(u.ranges(), &[r(0, 10), r(20, 30), r(60, 40)]);
        assert_eq!(u.free(), &[r(30, 10)]);
        assert_eq!(u.free_frames(), 10);
        assert_eq!(u.frames(), 80);
        assert!(u.contains(Mfn(0)) && u.contains(Mfn(99)) && u.contains(Mfn(49)));
        assert!(!u.contains(Mfn(10)) && !u.contains(Mfn(59)) && !u.contains(Mfn(100)));
    }

    #[test]
    fn free_ram_a_run_names_is_never_released() {
        let u = Unsettled::after_update(100, &[r(50, 10)], &[r(40, 30)]);
        assert_eq!(u.free(), &[r(40, 10), r(60, 10)]);
    }

    #[test]
    fn settling_around_a_frame_initialises_its_chunk_and_releases_its_free_part() {
        let n = 3 * CHUNK;
        let (mut ft, mut m2p) = garbage(n as usize);
        let named = [r(CHUNK + 5, 2)];
        init_named(&mut ft, &mut m2p, &named);
        let mut u = Unsettled::after_update(n, &named, &[r(CHUNK, CHUNK)]);
        let mut released = Vec::new();
        u.settle_at(&mut ft, &mut m2p, Mfn(CHUNK + 100), |x| released.push(x));
        // The chunk's part of the unsettled range holding the frame: the
        // frames before the named ones are another range, left.
        assert_eq!(released, [r(CHUNK + 7, CHUNK - 7)]);
        for i in CHUNK + 7..2 * CHUNK {
            assert_eq!(ft[i as usize], FrameInfo::UNOWNED, "entry {i}");
            assert_eq!(m2p[i as usize], M2P_INVALID);
        }
        assert_ne!(
            ft[CHUNK as usize],
            FrameInfo::UNOWNED,
            "another range: untouched"
        );
        assert_eq!(u.ranges(), &[r(0, CHUNK + 5), r(2 * CHUNK, CHUNK)]);
        assert_eq!(u.free_frames(), 5);
        // Settled already: nothing happens.
        u.settle_at(&mut ft, &mut m2p, Mfn(CHUNK + 100), |_| panic!("twice"));
    }

    #[test]
    fn settling_in_steps_ends_with_every_entry_unowned_and_all_free_ram_released_once() {
        let n = 5 * CHUNK + 17;
        let (mut ft, mut m2p) = garbage(n as usize);
        let named = [r(3, 4), r(CHUNK * 2, 100)];
        let free = [r(7, CHUNK * 2 - 7), r(CHUNK * 2 + 100, 50)];
        init_named(&mut ft, &mut m2p, &named);
        let mut u = Unsettled::after_update(n, &named, &free);
        let mut released = Vec::new();
        u.settle_at(&mut ft, &mut m2p, Mfn(4 * CHUNK + 3), |x| released.push(x));
        let mut steps = 0;
        while u.settle_some(&mut ft, &mut m2p, 1000, |x| released.push(x)) > 0 {
            steps += 1;
        }
        assert!(steps > 5);
        assert!(u.is_settled());
        assert_eq!(merged(released), merged(free.to_vec()));
        for (i, fi) in ft.iter().enumerate() {
            assert_eq!(*fi, FrameInfo::UNOWNED, "entry {i}");
        }
        assert!(m2p.iter().all(|&m| m == M2P_INVALID));
    }
}
