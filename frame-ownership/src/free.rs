//! Free RAM after an update: the complement of the owned runs (Invariant 11).

use alloc::vec::Vec;

use hvlu_types::{Mfn, MfnRange};

use crate::layout::{DomainView, MachineLayout};

/// The RAM that no domain owns and that is neither the live-update region
/// nor hv-reserved: what the new hypervisor hands to its page allocator
/// (release, `docs/design.md` section 1, step 7).
///
/// Computed from the runs, never from the frametable: the owned runs of all
/// domains, the region and the reserved ranges are sorted by mfn and merged,
/// then subtracted from each RAM range. The cost is O(R log R) in the number
/// of runs R, independent of the amount of RAM.
///
/// The result is sorted, disjoint, non-empty ranges, with adjacent ranges
/// merged. It is meaningful after a successful [`crate::rebuild`] on the same
/// inputs (runs that overlap, or that lie outside RAM, are simply subtracted).
pub fn free_ranges<P, V>(
    layout: &MachineLayout<'_>,
    domains: &[DomainView<'_, P, V>],
) -> Vec<MfnRange> {
    let mut taken: Vec<(u64, u64)> = domains
        .iter()
        .flat_map(|d| d.runs.iter())
        .map(|r| r.mfns())
        .chain(core::iter::once(layout.region()))
        .chain(layout.hv_reserved().iter().copied())
        .filter(|r| !r.is_empty())
        .map(|r| (r.start.0, r.end()))
        .collect();
    taken.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(taken.len());
    for (s, e) in taken {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }

    let mut out: Vec<MfnRange> = Vec::new();
    let mut emit = |s: u64, e: u64| {
        if s >= e {
            return;
        }
        match out.last_mut() {
            Some(last) if last.end() == s => last.count += e - s,
            _ => out.push(MfnRange::new(Mfn(s), e - s)),
        }
    };
    for ram in layout.ram() {
        let end = ram.end();
        let mut cur = ram.start.0;
        let mut k = merged.partition_point(|&(_, e)| e <= cur);
        while cur < end {
            match merged.get(k) {
                Some(&(s, e)) if s < end => {
                    emit(cur, s);
                    cur = cur.max(e);
                    k += 1;
                }
                _ => {
                    emit(cur, end);
                    cur = end;
                }
            }
        }
    }
    out
}
