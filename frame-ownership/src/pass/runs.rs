//! The checks of a domain's runs before any of its frames is claimed
//! (Invariants 1, 9, 10), and the tables' size (Invariant 1).

use alloc::vec::Vec;

use handover_abi::RunKind;
use hvlu_types::{DomId, Mfn};

use crate::error::{Error, RangeList};
use crate::layout::{check_sorted, DomainView, MachineLayout};

/// One run in a domain's mfn-sorted index.
#[derive(Clone, Copy, Debug)]
pub(super) struct IndexedRun {
    /// Its first frame.
    pub(super) start: u64,
    /// One past its last frame.
    pub(super) end: u64,
    /// Its kind.
    pub(super) kind: RunKind,
    /// The guest frame of its first frame (meaningless for a kind without
    /// guest frames).
    pub(super) first_gpfn: u64,
}

/// Refuses a frametable or M2P table that does not cover all RAM.
pub(super) fn check_table_size(
    layout: &MachineLayout<'_>,
    frametable_len: usize,
    m2p_len: usize,
) -> Result<(), Error> {
    let limit = frametable_len.min(m2p_len) as u64;
    let uncovered = layout
        .ram()
        .iter()
        .find(|r| !r.is_empty() && r.end() > limit)
        .map(|r| Mfn(r.start.0.max(limit)));
    match uncovered {
        Some(mfn) => Err(Error::BeyondFrametable {
            mfn,
            frametable_len: frametable_len as u64,
            m2p_len: m2p_len as u64,
        }),
        None => Ok(()),
    }
}

/// Checks a domain's runs before any of its frames is claimed: order,
/// layout, guest frame numbers, overlaps. Fills `index` with the runs sorted
/// by mfn.
pub(super) fn check_runs<P, V>(
    layout: &MachineLayout<'_>,
    dom: &DomainView<'_, P, V>,
    index: &mut Vec<IndexedRun>,
) -> Result<(), Error> {
    let domain = dom.id;
    check_sorted(dom.mmio, RangeList::Mmio(domain))?;
    // Invariant 9: bottom-up, so that L2..L4 targets are written first.
    for (run, w) in dom.runs.windows(2).enumerate() {
        if w[1].kind < w[0].kind {
            return Err(Error::RunsNotBottomUp {
                domain,
                run: run + 1,
                kind: w[1].kind,
                previous: w[0].kind,
            });
        }
    }
    index.clear();
    for (run, r) in dom.runs.iter().enumerate() {
        // Invariant 28: a PV domain has no nested tables or bitmap, an HVM
        // domain no guest page tables.
        match (
            dom.hvm.is_some(),
            r.kind.has_guest_frames(),
            r.kind.is_page_table(),
        ) {
            (false, false, _) => {
                return Err(Error::HvmRunInPvDomain {
                    domain,
                    run,
                    kind: r.kind,
                })
            }
            (true, _, true) => {
                return Err(Error::PvTableInHvmDomain {
                    domain,
                    run,
                    kind: r.kind,
                })
            }
            _ => {}
        }
        if r.count == 0 {
            continue;
        }
        let range = r.mfns();
        // Invariant 1. The first bad frame of the run; for one frame, "not RAM" is
        // reported before "region" before "hv-reserved".
        let mut bad: Option<Error> = None;
        let mut consider = |mfn: Option<Mfn>, err: fn(DomId, usize, Mfn) -> Error| {
            if let Some(m) = mfn {
                if bad.as_ref().is_none_or(|b| m.0 < error_mfn(b)) {
                    bad = Some(err(domain, run, m));
                }
            }
        };
        consider(layout.first_non_ram(range), |domain, run, mfn| {
            Error::OutsideRam { domain, run, mfn }
        });
        consider(layout.first_in_region(range), |domain, run, mfn| {
            Error::InRegion { domain, run, mfn }
        });
        consider(layout.first_hv_reserved(range), |domain, run, mfn| {
            Error::HvReserved { domain, run, mfn }
        });
        if let Some(err) = bad {
            return Err(err);
        }
        // Invariant 10: no gpfn may equal M2P_INVALID or wrap (a run
        // without guest frames has none).
        if r.kind.has_guest_frames() && r.first_gpfn.0.checked_add(r.count).is_none() {
            // gpfn first_gpfn + k == u64::MAX for k = u64::MAX - first_gpfn.
            let k = u64::MAX - r.first_gpfn.0;
            return Err(Error::GpfnOutOfRange {
                domain,
                run,
                mfn: Mfn(r.first_mfn.0 + k),
            });
        }
        index.push(IndexedRun {
            start: range.start.0,
            end: range.end(),
            kind: r.kind,
            first_gpfn: r.first_gpfn.0,
        });
    }
    index.sort_unstable_by_key(|r| r.start);
    // Invariant 1 within the domain; across domains the claim checks it.
    for w in index.windows(2) {
        if w[1].start < w[0].end {
            return Err(Error::OwnedTwice {
                mfn: Mfn(w[1].start),
                first: domain,
                second: domain,
            });
        }
    }
    Ok(())
}

/// The frame a run-layout error names.
fn error_mfn(e: &Error) -> u64 {
    match *e {
        Error::OutsideRam { mfn, .. }
        | Error::InRegion { mfn, .. }
        | Error::HvReserved { mfn, .. } => mfn.0,
        _ => u64::MAX,
    }
}
