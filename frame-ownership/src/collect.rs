//! The handover state's memory description, read off a live frametable.
//!
//! At a live update the old hypervisor lists each domain's memory as runs
//! `(first_mfn, count, first_gpfn, kind)` and its pinned tables; the new
//! hypervisor's pass ([`crate::rebuild`]) turns them back into a frametable.
//! For the two tables to be equal (Invariant 12) the runs must say exactly
//! what the live frametable says (Invariant 18):
//!
//! - a run's kind is its frames' page type: `None` and `Writable` → `Data`,
//!   `Ln` → `Ln`;
//! - a run is a maximal stretch of frames of one domain and one kind whose
//!   mfns **and** gpfns (from the M2P) both go up by one;
//! - a domain's runs are bottom-up: all `Data` runs, then `L1`, `L2`, `L3`,
//!   `L4`, each kind in increasing mfn order;
//! - its pins are its frames with the `PINNED` flag, at the level of their
//!   type, in increasing mfn order.
//!
//! The vCPUs' CR3s are not in the frametable; the caller adds them.
//!
//! Two ways to read them, which give the same runs and pins (only the order
//! of the runs of one kind differs, which the pass does not care about):
//! - from the frametable: [`collect_domains`] for every domain in one scan
//!   of the frametable, [`domain_runs`] for one domain. Each kind's runs are
//!   in increasing mfn order. The cost follows the machine's memory; the
//!   host tests use these.
//! - from a domain's p2m: [`p2m_runs`], the kinds given by a function, and
//!   [`p2m_domain`], the kinds and pins read off the frametable. Each kind's
//!   runs are in increasing gpfn order. The cost follows the domain's
//!   memory; this is what the hypervisors use (the outgoing side to
//!   describe a domain, the domain builder with the kinds of its plan).
//!
//! The ops equivalence property (`tests/ops/equivalence.rs`) rebuilds the
//! live table from the p2m path and requires the frametable path to give
//! the same runs and pins.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind};
use hvlu_types::{DomId, Gpfn, Mfn};

use crate::error::OpError;
use crate::frame::{frame_at, FrameInfo};
use crate::page_type::PageType;
use crate::pass::M2P_INVALID;

/// One domain's memory as the handover state lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedDomain {
    /// The domain.
    pub id: DomId,
    /// Its runs, bottom-up (module docs).
    pub runs: Vec<MemRun>,
    /// Its pinned tables with their levels, by increasing mfn.
    pub pinned: Vec<(Mfn, RunKind)>,
}

/// Run kinds: data, L1..L4, P2m, LogDirty.
const KINDS: usize = 7;

/// Runs under construction, one list per kind.
#[derive(Default)]
struct Builder {
    by_kind: [Vec<MemRun>; KINDS],
    pinned: Vec<(Mfn, RunKind)>,
}

impl Builder {
    fn finish(self, id: DomId) -> OwnedDomain {
        OwnedDomain {
            id,
            runs: self.by_kind.into_iter().flatten().collect(),
            pinned: self.pinned,
        }
    }
}

/// The previous owned frame, to extend its run.
#[derive(Clone, Copy)]
struct Last {
    slot: usize,
    kind: RunKind,
    mfn: u64,
    gpfn: u64,
}

/// Every domain's runs and pins, in one scan of `frametable` (and `m2p` for
/// owned frames), domains by increasing id.
///
/// Refuses ([`OpError::Corrupt`]) an owned frame with an illegal owner
/// value, a reserved page-type byte, or no valid M2P entry: such a frame
/// cannot be described by a run.
pub fn collect_domains(frametable: &[FrameInfo], m2p: &[u64]) -> Result<Vec<OwnedDomain>, OpError> {
    scan(frametable, m2p, None)
}

/// The runs of `domain` alone (module docs for their order): one scan of
/// `frametable`. Errors as [`collect_domains`], for this domain's frames.
pub fn domain_runs(
    frametable: &[FrameInfo],
    m2p: &[u64],
    domain: DomId,
) -> Result<Vec<MemRun>, OpError> {
    Ok(scan(frametable, m2p, Some(domain))?
        .pop()
        .map(|d| d.runs)
        .unwrap_or_default())
}

fn scan(
    frametable: &[FrameInfo],
    m2p: &[u64],
    only: Option<DomId>,
) -> Result<Vec<OwnedDomain>, OpError> {
    let mut slots: BTreeMap<DomId, usize> = BTreeMap::new();
    let mut builders: Vec<(DomId, Builder)> = Vec::new();
    // The owner of the previous owned frame and its builder slot: owners
    // change rarely along the table, so the map is seldom consulted.
    let mut current: Option<(DomId, usize)> = None;
    let mut last: Option<Last> = None;
    for (i, fi) in frametable.iter().enumerate() {
        if !fi.is_owned() {
            continue;
        }
        let mfn = i as u64;
        let corrupt = |domain, what| OpError::Corrupt {
            domain,
            mfn: Mfn(mfn),
            what,
        };
        let Some(owner) = fi.owner() else {
            return Err(corrupt(None, "its owner value is illegal"));
        };
        if only.is_some_and(|d| d != owner) {
            continue;
        }
        let kind = fi
            .page_type()
            .ok_or(corrupt(Some(owner), "its page-type byte is reserved"))?
            .run_kind();
        let gpfn = m2p.get(i).copied().unwrap_or(M2P_INVALID);
        // Invariant 28: a nested page-table or log-dirty frame has no guest
        // frame, every other owned frame one.
        match (kind.has_guest_frames(), gpfn == M2P_INVALID) {
            (true, true) => {
                return Err(corrupt(Some(owner), "an owned frame has no M2P entry"));
            }
            (false, false) => {
                return Err(corrupt(
                    Some(owner),
                    "a nested page-table or log-dirty frame has an M2P entry",
                ));
            }
            _ => {}
        }
        let slot = match current {
            Some((d, s)) if d == owner => s,
            _ => {
                let s = *slots.entry(owner).or_insert_with(|| {
                    builders.push((owner, Builder::default()));
                    builders.len() - 1
                });
                current = Some((owner, s));
                s
            }
        };
        let b = &mut builders[slot].1;
        let runs = &mut b.by_kind[kind as usize];
        let extends = last.is_some_and(|l| {
            l.slot == slot
                && l.kind == kind
                && l.mfn + 1 == mfn
                && (!kind.has_guest_frames() || l.gpfn.checked_add(1) == Some(gpfn))
        });
        match runs.last_mut() {
            Some(r) if extends => r.count += 1,
            _ => runs.push(MemRun {
                first_mfn: Mfn(mfn),
                count: 1,
                // M2P_INVALID is NO_GPFN for the kinds without guest frames.
                first_gpfn: Gpfn(gpfn),
                kind,
            }),
        }
        if fi.is_pinned() {
            b.pinned.push((Mfn(mfn), kind));
        }
        last = Some(Last {
            slot,
            kind,
            mfn,
            gpfn,
        });
    }
    let mut out: Vec<OwnedDomain> = builders.into_iter().map(|(id, b)| b.finish(id)).collect();
    out.sort_unstable_by_key(|d| d.id);
    Ok(out)
}

/// One domain's runs from its own frames: its p2m (`p2m[gpfn]` is the mfn,
/// `u64::MAX` for a gpfn without a frame) and `kind(gpfn)`, grouped
/// bottom-up (all `Data` runs, then `L1` … `L4`), each run contiguous in
/// mfn and gpfn, each kind in increasing gpfn order.
///
/// The cost follows the domain's memory, not the machine's: the outgoing
/// side uses it with the kinds of the live frametable, the domain
/// builder's tests with the kinds of its plan (to rebuild a new domain
/// with the pass).
pub fn p2m_runs(p2m: &[u64], kind: impl Fn(u64) -> RunKind) -> Vec<MemRun> {
    // One walk over the p2m; a run list per kind, joined bottom-up.
    let mut by_kind: [Vec<MemRun>; KINDS] = Default::default();
    for (gpfn, &mfn) in p2m.iter().enumerate() {
        if mfn == u64::MAX {
            continue;
        }
        let k = kind(gpfn as u64);
        let runs = &mut by_kind[k as usize];
        match runs.last_mut() {
            Some(run)
                if run.first_mfn.0 + run.count == mfn
                    && run.first_gpfn.0 + run.count == gpfn as u64 =>
            {
                run.count += 1
            }
            _ => runs.push(MemRun {
                first_mfn: Mfn(mfn),
                count: 1,
                first_gpfn: Gpfn(gpfn as u64),
                kind: k,
            }),
        }
    }
    by_kind.concat()
}

/// One domain's runs and pins as the outgoing hypervisor describes it: the
/// runs of its p2m ([`p2m_runs`]) with each frame's kind read off its
/// frametable entry (`None` and `Writable` → `Data`, `Ln` → `Ln`; a frame
/// beyond the table or with a reserved type byte counts as `Data`, and the
/// pass will refuse what that makes wrong), and its pins from the `PINNED`
/// flags of those runs' page-table frames ([`pinned_in`]).
///
/// `p2m[gpfn]` is the mfn of guest frame `gpfn`, `u64::MAX` for none. For a
/// domain whose p2m and the M2P agree (Invariant 10), this is the domain's
/// part of [`collect_domains`], up to the order of the runs of one kind.
pub fn p2m_domain(frametable: &[FrameInfo], id: DomId, p2m: &[u64]) -> OwnedDomain {
    let runs = p2m_runs(p2m, |gpfn| {
        p2m.get(gpfn as usize)
            .and_then(|&mfn| frame_at(frametable, Mfn(mfn)))
            .and_then(FrameInfo::page_type)
            .map_or(RunKind::Data, PageType::run_kind)
    });
    let pinned = pinned_in(frametable, &runs);
    OwnedDomain { id, runs, pinned }
}

/// The pinned tables among `runs`' page-table frames, by the `PINNED` flag
/// of their frametable entries, at the level of their run, in run order.
pub fn pinned_in(frametable: &[FrameInfo], runs: &[MemRun]) -> Vec<(Mfn, RunKind)> {
    runs.iter()
        .filter(|r| r.kind.is_page_table())
        .flat_map(|r| (0..r.count).map(move |i| (Mfn(r.first_mfn.0 + i), r.kind)))
        .filter(|&(mfn, _)| frame_at(frametable, mfn).is_some_and(FrameInfo::is_pinned))
        .collect()
}

/// The runs of frames without guest frames (`kind` `P2m` or `LogDirty`,
/// Invariant 28) from the list of their frames: maximal stretches of
/// consecutive frames in the order given, `first_gpfn` `NO_GPFN`. What the
/// outgoing side lists for an HVM domain's nested tables and bitmap, after
/// its data runs.
pub fn frame_runs(frames: impl IntoIterator<Item = Mfn>, kind: RunKind) -> Vec<MemRun> {
    let mut runs: Vec<MemRun> = Vec::new();
    for mfn in frames {
        match runs.last_mut() {
            Some(r) if r.first_mfn.0.checked_add(r.count) == Some(mfn.0) => r.count += 1,
            _ => runs.push(MemRun {
                first_mfn: mfn,
                count: 1,
                first_gpfn: handover_abi::NO_GPFN,
                kind,
            }),
        }
    }
    runs
}
