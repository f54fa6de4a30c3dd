//! The frametable digest both hypervisors compute (Invariant 12).
//!
//! The old hypervisor computes it over its live frametable just before the
//! jump, the new one after the pass; equal digests mean equal tables for
//! every owned frame.
//!
//! **What it covers.** Every owned frame (owner field not 0), in increasing
//! mfn order, contributes four 64-bit words:
//!
//! | word | value |
//! |---|---|
//! | 0 | the mfn |
//! | 1 | stored owner (`DomId + 1`) \| page-type byte << 32 \| flags byte << 40 \| reserved u16 << 48 |
//! | 2 | type count \| reference count << 32 |
//! | 3 | the M2P entry (the gpfn) |
//!
//! Unowned frames, and the M2P entries of unowned frames, are not covered:
//! the two sides legitimately differ there (free RAM, the region).
//!
//! **How.** With the project's fold ([`hvlu_types::digest::Fold`]: each
//! word `w` as `h = (h ^ w) * 0x9e37_79b9_7f4a_7c15`, wrapping, then
//! `h ^= h >> 32`) from the seed `0xcbf2_9ce4_8422_2325`. After the last
//! frame the number of owned frames is folded the same way, then the
//! splitmix64 finaliser is applied. Deterministic, endian-free, no table;
//! not cryptographic (it detects divergence, not tampering).

use alloc::vec::Vec;

use hvlu_types::digest::Fold;
use hvlu_types::Mfn;

use crate::frame::FrameInfo;
use crate::layout::DomainView;
use crate::pass::M2P_INVALID;

/// The owned-frame digest's seed (released images use it: never change it).
const SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// An incremental digest: feed owned frames in increasing mfn order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    fold: Fold,
    frames: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    /// An empty digest.
    pub const fn new() -> Digest {
        Digest {
            fold: Fold::new(SEED),
            frames: 0,
        }
    }

    /// Adds one owned frame. Frames must come in increasing mfn order.
    pub fn add_frame(&mut self, mfn: Mfn, info: &FrameInfo, m2p: u64) {
        let (owner, page_type, flags, reserved, type_count, ref_count) = info.raw();
        self.fold.add(mfn.0);
        self.fold.add(
            u64::from(owner)
                | u64::from(page_type) << 32
                | u64::from(flags) << 40
                | u64::from(reserved) << 48,
        );
        self.fold
            .add(u64::from(type_count) | u64::from(ref_count) << 32);
        self.fold.add(m2p);
        self.frames += 1;
    }

    /// Number of frames added so far.
    pub const fn frames(&self) -> u64 {
        self.frames
    }

    /// The digest value.
    pub fn finish(&self) -> u64 {
        let mut fold = self.fold;
        fold.add(self.frames);
        fold.finish()
    }
}

/// The digest of a whole frametable: scans every entry and hashes the owned
/// ones. `m2p[mfn]` is read for owned frames only ([`M2P_INVALID`] if the
/// M2P table is shorter). This is the definition; the old hypervisor uses it.
pub fn frametable_digest(frametable: &[FrameInfo], m2p: &[u64]) -> u64 {
    let mut d = Digest::new();
    for (i, fi) in frametable.iter().enumerate() {
        if fi.is_owned() {
            d.add_frame(
                Mfn(i as u64),
                fi,
                m2p.get(i).copied().unwrap_or(M2P_INVALID),
            );
        }
    }
    d.finish()
}

/// The same digest computed from the domains' runs instead of a scan: visits
/// only the frames of the runs, sorted by mfn. Equal to
/// [`frametable_digest`] whenever the frames the runs list are exactly the
/// owned frames, which a successful [`crate::rebuild`] guarantees; its cost
/// grows with owned memory, not with the size of the machine.
pub fn owned_digest<P, V>(
    frametable: &[FrameInfo],
    m2p: &[u64],
    domains: &[DomainView<'_, P, V>],
) -> u64 {
    let mut d = Digest::new();
    for (start, end) in run_spans(domains, frametable.len()) {
        add_owned(&mut [&mut d], frametable, m2p, start..end);
    }
    d.finish()
}

/// [`owned_digest`] and [`frametable_digest`] of the same tables, in one
/// walk: `(owned, frametable)`, each bit for bit the value of its own
/// function, whatever the tables hold.
///
/// Each digest is a chain of dependent multiplications (four per owned
/// frame), so its cost is the chain's latency, not the memory it reads.
/// The two chains are independent: walked side by side they take about
/// the time of one, where calling both functions takes the time of two
/// (the incoming hypervisor needs both after the pass, Invariant 20). Its
/// cost grows with the frametable, as [`frametable_digest`]'s does.
pub fn owned_and_frametable_digests<P, V>(
    frametable: &[FrameInfo],
    m2p: &[u64],
    domains: &[DomainView<'_, P, V>],
) -> (u64, u64) {
    let (mut owned, mut scan) = (Digest::new(), Digest::new());
    let mut at = 0;
    for (start, end) in run_spans(domains, frametable.len()) {
        add_owned(&mut [&mut scan], frametable, m2p, at..start);
        add_owned(&mut [&mut owned, &mut scan], frametable, m2p, start..end);
        at = end;
    }
    add_owned(&mut [&mut scan], frametable, m2p, at..frametable.len());
    (owned.finish(), scan.finish())
}

/// The frames of the domains' non-empty runs below `limit`, as sorted,
/// disjoint `start..end` spans (runs that overlap or touch merged).
fn run_spans<P, V>(domains: &[DomainView<'_, P, V>], limit: usize) -> Vec<(usize, usize)> {
    let clip = |mfn: u64| usize::try_from(mfn).map_or(limit, |m| m.min(limit));
    let mut runs: Vec<(usize, usize)> = domains
        .iter()
        .flat_map(|d| d.runs.iter())
        .filter(|r| r.count != 0)
        .map(|r| (clip(r.first_mfn.0), clip(r.mfns().end())))
        .filter(|(start, end)| start < end)
        .collect();
    runs.sort_unstable();
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
    for (start, end) in runs {
        match spans.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((start, end)),
        }
    }
    spans
}

/// Adds every owned frame of `frames` to each digest of `digests`.
#[inline(always)]
fn add_owned<const N: usize>(
    digests: &mut [&mut Digest; N],
    frametable: &[FrameInfo],
    m2p: &[u64],
    frames: core::ops::Range<usize>,
) {
    let Some(entries) = frametable.get(frames.clone()) else {
        return;
    };
    // The folds as locals, so that they stay in registers.
    let mut folds: [Digest; N] = core::array::from_fn(|i| *digests[i]);
    for (mfn, fi) in frames.zip(entries) {
        if fi.is_owned() {
            let m = m2p.get(mfn).copied().unwrap_or(M2P_INVALID);
            for d in &mut folds {
                d.add_frame(Mfn(mfn as u64), fi, m);
            }
        }
    }
    for (d, fold) in digests.iter_mut().zip(folds) {
        **d = fold;
    }
}
