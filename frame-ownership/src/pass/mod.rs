//! The single frametable pass (`docs/design.md` section 4).
//!
//! [`rebuild`] walks every domain's runs once, in order, on a zeroed
//! frametable. For each domain it first checks the inputs that are cheap to
//! check per run (order, layout, guest frame numbers, overlaps — Invariants 1
//! and 9), then claims the run frames one by one: owner, type and M2P are
//! written, counts already on the frame are kept. Each page-table frame is
//! read right after it is claimed and each of its entries is checked by
//! [`check_entry`] against a [`FrameLookup`] that reads the frametable and,
//! for a frame of the domain that is not written yet (a page table in a
//! later run, mapped read-only by an L1 entry), binary-searches the domain's
//! runs sorted by mfn. Because runs are bottom-up, the target of an L2..L4
//! entry is always written already. Pins and CR3s come last.
//!
//! Each frametable entry is written once as a whole (the claim) plus one
//! increment per reference; only page-table frames are read; no frame is
//! visited twice.
//!
//! That is the pass **in list order**, which every domain can take and
//! which names the first violation. A PV domain goes **run by run**
//! (`pass/fused.rs`) when no two runs of the machine overlap: L1 tables first,
//! checked stretch by stretch against the domain's runs, then each data
//! frame written once with its final counts — the same tables at about a
//! quarter of the cost. If that path meets anything wrong it undoes its
//! writes and the domain goes in list order (Invariant 9).

mod fused;
mod lookup;
mod nested;
mod runs;

use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind};
use hvlu_types::{pte::Level, DomId, Mfn};

use crate::error::Error;
use crate::frame::{frame_at_mut as frame_mut, CountError, FrameInfo};
use crate::layout::{DomainView, MachineLayout};
use crate::page_type::PageType;
use crate::pte;
use crate::rules::{
    check_entry, guest_slots, EntryEffect, EntryError, EntryRef, FrameClass, FrameLookup,
    ENTRIES_PER_TABLE,
};
use lookup::Scope;
use runs::{check_runs, check_table_size, IndexedRun};

/// The value of an M2P entry whose frame no domain owns.
///
/// The pass writes the M2P entry of every owned frame and no other: the
/// caller fills the table with `M2P_INVALID` beforehand (or invalidates the
/// entries of unowned frames itself before anyone reads them).
pub const M2P_INVALID: u64 = u64::MAX;

/// Reads a page-table frame. On the hypervisor this is the direct map; in
/// tests a simulated memory.
///
/// The pass calls it only for frames it has just claimed as page tables,
/// which are RAM, outside the live-update region and not hv-reserved.
pub trait PageTableReader {
    /// The 512 entries of the page-table frame `mfn`.
    fn read_table(&self, mfn: Mfn) -> &[u64; ENTRIES_PER_TABLE];
}

impl<T: PageTableReader + ?Sized> PageTableReader for &T {
    fn read_table(&self, mfn: Mfn) -> &[u64; ENTRIES_PER_TABLE] {
        (**self).read_table(mfn)
    }
}

/// What the pass did for one domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainReport {
    /// The domain.
    pub id: DomId,
    /// Frames claimed (data and page tables).
    pub frames: u64,
    /// Data frames claimed.
    pub data_frames: u64,
    /// Page-table frames claimed (and read), by level: `tables[0]` is L1.
    pub tables: [u64; 4],
    /// Present entries checked (hypervisor L4 slots are not checked).
    pub entries_checked: u64,
    /// Present L1 entries that map a permitted MMIO frame.
    pub mmio_entries: u64,
    /// Present L1 entries that map a data frame writable.
    pub writable_mappings: u64,
    /// Pinned tables.
    pub pins: u64,
    /// vCPUs (CR3 references; an HVM domain's take none).
    pub vcpus: u64,
    /// Nested page-table frames claimed and read (an HVM domain).
    pub p2m_tables: u64,
    /// Present leaves of the nested tables checked (an HVM domain).
    pub p2m_leaves: u64,
    /// Log-dirty bitmap frames claimed (an HVM domain).
    pub log_dirty_frames: u64,
}

/// What the pass did, in total and per domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Frames owned by some domain after the pass.
    pub frames_owned: u64,
    /// Page-table frames read.
    pub tables_read: u64,
    /// Present entries checked.
    pub entries_checked: u64,
    /// Present entries mapping permitted MMIO.
    pub mmio_entries: u64,
    /// One report per domain, in the order of the domain list.
    pub domains: Vec<DomainReport>,
}

/// Rebuilds the frametable and the M2P of every domain-owned frame in one
/// pass, validating every page-table entry (module docs, Invariants 1–10).
///
/// - `layout`: RAM, the live-update region, the hv-reserved ranges.
/// - `domains`: the domains, in any order; ids must be distinct.
/// - `reader`: reads page-table frames.
/// - `frametable`: indexed by mfn from 0, at least as long as the RAM map;
///   on entry the entries of the frames the runs name are zero
///   ([`FrameInfo::UNOWNED`], [`crate::lazy::init_named`]). No other entry
///   is read or written: they may hold anything (Invariant 29).
/// - `m2p`: indexed by mfn from 0, at least as long as the RAM map; the pass
///   writes the gpfn of every owned frame (see [`M2P_INVALID`] for the rest).
///
/// On error the tables hold a partial result that must not be used.
pub fn rebuild<R: PageTableReader + ?Sized, P, V>(
    layout: &MachineLayout<'_>,
    domains: &[DomainView<'_, P, V>],
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
) -> Result<PassReport, Error> {
    rebuild_with(Options::DEFAULT, layout, domains, reader, frametable, m2p)
}

/// How [`rebuild_with`] goes about it: the production pass uses
/// [`Options::DEFAULT`]; tests force the other ways, which must give the
/// same tables, report and errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Whether a PV domain may go run by run ([`fused`]); otherwise every
    /// domain goes frame by frame, in list order.
    pub(crate) fused: bool,
    /// How many stretches of data mappings [`fused`] keeps per domain
    /// before the rest of its L1 tables go as in list order.
    pub(crate) stretches: usize,
}

impl Options {
    /// What [`rebuild`] does.
    pub(crate) const DEFAULT: Options = Options {
        fused: true,
        stretches: fused::STRETCHES,
    };
}

/// [`rebuild`], the ways of `options`.
pub(crate) fn rebuild_with<R: PageTableReader + ?Sized, P, V>(
    options: Options,
    layout: &MachineLayout<'_>,
    domains: &[DomainView<'_, P, V>],
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
) -> Result<PassReport, Error> {
    check_table_size(layout, frametable.len(), m2p.len())?;
    for (i, d) in domains.iter().enumerate() {
        if domains[..i].iter().any(|e| e.id == d.id) {
            return Err(Error::DuplicateDomain { domain: d.id });
        }
    }
    // Invariant 1 across domains, for the whole machine at once: if no two
    // runs overlap, no frame a domain claims was claimed before, and the
    // run-by-run path need not look. Its room is taken once, here: without
    // it, every domain goes in list order.
    let mut edges = Vec::new();
    let run_by_run = options.fused
        && runs_disjoint(domains)
        && edges
            .try_reserve_exact(fused::edges_needed(options.stretches))
            .is_ok();

    let mut report = PassReport {
        domains: Vec::with_capacity(domains.len()),
        ..PassReport::default()
    };
    let mut index: Vec<IndexedRun> = Vec::new();
    let named = crate::lazy::named_ranges(domains);
    for dom in domains {
        check_runs(layout, dom, &mut index)?;
        let scope = Scope {
            layout,
            domain: dom.id,
            mmio: dom.mmio,
            index: index.as_slice(),
            named: &named,
            hint: core::cell::Cell::new(0),
        };
        let dr = if run_by_run && dom.hvm.is_none() {
            match fused::rebuild_pv(
                &scope,
                dom,
                reader,
                frametable,
                m2p,
                &mut edges,
                options.stretches,
            ) {
                Ok(dr) => dr,
                // Something is wrong in this domain: go again in list
                // order, frame by frame, which names the first violation.
                Err(fused::InOrder) => rebuild_in_order(&scope, dom, reader, frametable, m2p)?,
            }
        } else {
            rebuild_in_order(&scope, dom, reader, frametable, m2p)?
        };
        report.frames_owned += dr.frames;
        report.tables_read += dr.tables.iter().sum::<u64>();
        report.entries_checked += dr.entries_checked;
        report.mmio_entries += dr.mmio_entries;
        report.domains.push(dr);
    }
    Ok(report)
}

/// The error for a frame index that the layout check should have made
/// impossible: report it as a frame beyond the tables rather than panic.
fn beyond(mfn: Mfn, frametable: &[FrameInfo], m2p_len: usize) -> Error {
    Error::BeyondFrametable {
        mfn,
        frametable_len: frametable.len() as u64,
        m2p_len: m2p_len as u64,
    }
}

fn overflow(mfn: Mfn, domain: DomId) -> impl Fn(CountError) -> Error {
    move |_| Error::CountOverflow { mfn, domain }
}

/// Whether no two non-empty runs of any domains share a frame.
fn runs_disjoint<P, V>(domains: &[DomainView<'_, P, V>]) -> bool {
    let runs = || domains.iter().flat_map(|d| d.runs).filter(|r| r.count > 0);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    // Without the room to look, the pass goes frame by frame.
    if spans.try_reserve_exact(runs().count()).is_err() {
        return false;
    }
    spans.extend(runs().map(|r| (r.first_mfn.0, r.first_mfn.0.saturating_add(r.count))));
    spans.sort_unstable();
    spans.windows(2).all(|w| w[0].1 <= w[1].0)
}

/// One domain, frame by frame in list order, on a table where none of its
/// frames is written yet; its runs were checked ([`check_runs`]).
fn rebuild_in_order<R: PageTableReader + ?Sized, P, V>(
    scope: &Scope<'_>,
    dom: &DomainView<'_, P, V>,
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
) -> Result<DomainReport, Error> {
    let domain = dom.id;
    let mut dr = DomainReport {
        id: domain,
        ..DomainReport::default()
    };

    for run in dom.runs {
        if run.count == 0 {
            continue;
        }
        match run.kind.level() {
            None if run.kind == RunKind::Data => claim_data_run(domain, run, frametable, m2p)?,
            // Invariant 28: no guest frame, so no M2P entry.
            None => {
                for k in 0..run.count {
                    claim(domain, run, k, frametable, m2p)?;
                }
                if run.kind == RunKind::LogDirty {
                    dr.log_dirty_frames += run.count;
                }
            }
            Some(level) => claim_tables(scope, reader, run, level, frametable, m2p, &mut dr)?,
        }
        dr.frames += run.count;
        if run.kind == RunKind::Data {
            dr.data_frames += run.count;
        }
    }

    roots(scope, dom, frametable, &mut dr)?;
    if let Some(hvm) = &dom.hvm {
        // An HVM domain's vCPUs hold its nested root and take no
        // reference (the root has one, from the nCR3); the nested walk.
        for (vcpu, v) in dom.vcpus.iter().enumerate() {
            let mfn = (dom.cr3_of)(v);
            if mfn != hvm.ncr3 {
                return Err(Error::HvmCr3 {
                    domain,
                    vcpu,
                    mfn,
                    ncr3: hvm.ncr3,
                });
            }
        }
        nested::check_hvm(scope, reader, frametable, dom.runs, hvm, &mut dr)?;
        dr.vcpus = dom.vcpus.len() as u64;
    }
    Ok(dr)
}

/// Claims every frame of the page-table run `run` of `level`, reading and
/// checking each right after its claim.
fn claim_tables<R: PageTableReader + ?Sized>(
    scope: &Scope<'_>,
    reader: &R,
    run: &MemRun,
    level: Level,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    dr: &mut DomainReport,
) -> Result<(), Error> {
    for k in 0..run.count {
        let mfn = claim(scope.domain, run, k, frametable, m2p)?;
        check_table(scope, reader, frametable, mfn, level, dr)?;
    }
    dr.tables[level.number() as usize - 1] += run.count;
    Ok(())
}

/// The domain's pins, then a PV domain's vCPUs' CR3s (Invariant 5), once
/// all its runs are claimed.
fn roots<P, V>(
    scope: &Scope<'_>,
    dom: &DomainView<'_, P, V>,
    frametable: &mut [FrameInfo],
    dr: &mut DomainReport,
) -> Result<(), Error> {
    let domain = scope.domain;
    for pin in dom.pinned {
        let (mfn, pinned_as) = (dom.pin_of)(pin);
        let found = scope.lookup(frametable).classify(mfn);
        let typed = match pinned_as.level() {
            Some(level) if found == FrameClass::Own(pinned_as) => PageType::of_level(level),
            _ => {
                return Err(Error::BadPin {
                    domain,
                    mfn,
                    pinned_as,
                    found,
                })
            }
        };
        let fi = frame_mut(frametable, mfn).ok_or(Error::BadPin {
            domain,
            mfn,
            pinned_as,
            found,
        })?;
        if fi.is_pinned() {
            return Err(Error::PinnedTwice { domain, mfn });
        }
        fi.get_ref(Some(typed)).map_err(overflow(mfn, domain))?;
        fi.set_pinned(true);
        dr.pins += 1;
    }
    // An HVM domain's vCPUs hold its nested root (`nested`).
    if dom.hvm.is_some() {
        return Ok(());
    }
    for (vcpu, v) in dom.vcpus.iter().enumerate() {
        let mfn = (dom.cr3_of)(v);
        let found = scope.lookup(frametable).classify(mfn);
        let bad = Error::BadCr3 {
            domain,
            vcpu,
            mfn,
            found,
        };
        if found != FrameClass::Own(RunKind::L4) {
            return Err(bad);
        }
        let fi = frame_mut(frametable, mfn).ok_or(bad)?;
        fi.get_ref(Some(PageType::L4))
            .map_err(overflow(mfn, domain))?;
        dr.vcpus += 1;
    }
    Ok(())
}

/// Claims every frame of a data run: the hot loop for most of memory.
fn claim_data_run(
    domain: DomId,
    run: &MemRun,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
) -> Result<(), Error> {
    let m2p_len = m2p.len();
    let start = run.first_mfn.0 as usize;
    let end = start.saturating_add(run.count as usize);
    let (Some(infos), Some(gpfns)) = (frametable.get_mut(start..end), m2p.get_mut(start..end))
    else {
        return Err(beyond(run.first_mfn, frametable, m2p_len));
    };
    // What a claim makes of an all-zero entry; a block of those is written
    // at once, any other frame by itself.
    let claimed = FrameInfo::mapped_data(domain, 0, 0);
    let blocks = infos
        .chunks_mut(BLOCK)
        .zip(gpfns.chunks_mut(BLOCK))
        .zip((0..).step_by(BLOCK));
    for ((infos, gpfns), first) in blocks {
        if write_block(infos, gpfns, claimed, run.first_gpfn.0 + first) {
            continue;
        }
        for (k, (fi, slot)) in (first..).zip(infos.iter_mut().zip(gpfns.iter_mut())) {
            if let Some(first) = fi.owner() {
                return Err(Error::OwnedTwice {
                    mfn: Mfn(run.first_mfn.0 + k),
                    first,
                    second: domain,
                });
            }
            fi.claim(domain, RunKind::Data)
                .map_err(overflow(Mfn(run.first_mfn.0 + k), domain))?;
            *slot = run.first_gpfn.0 + k;
        }
    }
    Ok(())
}

/// Frames written at a time by [`write_block`] (8 KiB of entries).
const BLOCK: usize = 512;

/// If every entry of `entries` is all zero, sets each to `value` and the
/// M2P entries `gpfns` to `first_gpfn`, `first_gpfn + 1`, …; otherwise
/// writes nothing. Returns whether it wrote. The check reads the block
/// into the cache that the write needs it in anyway.
fn write_block(
    entries: &mut [FrameInfo],
    gpfns: &mut [u64],
    value: FrameInfo,
    first_gpfn: u64,
) -> bool {
    if !FrameInfo::all_zero(entries) {
        return false;
    }
    FrameInfo::fill(entries, value);
    for (slot, gpfn) in gpfns.iter_mut().zip(first_gpfn..) {
        *slot = gpfn;
    }
    true
}

/// Claims frame `k` of `run` (Invariant 9: the counts it holds are kept);
/// its M2P entry is its gpfn, or [`M2P_INVALID`] for a kind without guest
/// frames (Invariant 28). Returns the frame.
fn claim(
    domain: DomId,
    run: &MemRun,
    k: u64,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
) -> Result<Mfn, Error> {
    let (kind, mfn) = (run.kind, Mfn(run.first_mfn.0 + k));
    let gpfn = if kind.has_guest_frames() {
        run.first_gpfn.0 + k
    } else {
        M2P_INVALID
    };
    let m2p_len = m2p.len();
    let (Some(fi), Some(slot)) = (
        frame_mut(frametable, mfn),
        usize::try_from(mfn.0).ok().and_then(|i| m2p.get_mut(i)),
    ) else {
        return Err(beyond(mfn, frametable, m2p_len));
    };
    if let Some(first) = fi.owner() {
        return Err(Error::OwnedTwice {
            mfn,
            first,
            second: domain,
        });
    }
    fi.claim(domain, kind).map_err(overflow(mfn, domain))?;
    *slot = gpfn;
    Ok(mfn)
}

/// Reads the just-claimed table `mfn` of `level` and checks and counts each
/// of its entries.
fn check_table<R: PageTableReader + ?Sized>(
    scope: &Scope<'_>,
    reader: &R,
    frametable: &mut [FrameInfo],
    mfn: Mfn,
    level: Level,
    dr: &mut DomainReport,
) -> Result<(), Error> {
    let entries = reader.read_table(mfn);
    let domain = scope.domain;
    let (mut checked, mut mmio, mut writable) = (0u64, 0u64, 0u64);
    let limit = guest_slots(level);
    // Hypervisor slots (Invariant 7) and non-present entries (Invariant 6)
    // are skipped here without a call, exactly as `check_entry` would skip
    // them.
    for (i, &entry) in entries[..limit].iter().enumerate() {
        if entry & pte::PRESENT == 0 {
            continue;
        }
        let at = EntryRef {
            domain,
            table: mfn,
            level,
            index: i as u16,
        };
        let effect = check_entry(&scope.lookup(frametable), at, entry)
            .map_err(|source| Error::Entry { at, source })?;
        checked += 1;
        match effect {
            EntryEffect::NotPresent | EntryEffect::HvSlot => {}
            EntryEffect::Mmio(_) => mmio += 1,
            EntryEffect::Frame { target, typed } => {
                writable += u64::from(typed == Some(PageType::Writable));
                let fi = frame_mut(frametable, target).ok_or(Error::Entry {
                    at,
                    source: EntryError::ForeignTarget {
                        target,
                        found: FrameClass::Unowned,
                    },
                })?;
                fi.get_ref(typed).map_err(overflow(target, domain))?;
            }
        }
    }
    dr.entries_checked += checked;
    dr.mmio_entries += mmio;
    dr.writable_mappings += writable;
    Ok(())
}
