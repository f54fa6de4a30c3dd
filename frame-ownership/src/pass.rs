//! The single frametable pass (DESIGN.md §4).
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

use alloc::vec::Vec;

use handover_abi::{DomId, Gpfn, MemRun, Mfn, MfnRange, RunKind};

use crate::error::{Error, RangeList};
use crate::frame::{CountError, FrameInfo, PageType};
use crate::layout::{check_sorted, DomainView, MachineLayout};
use crate::rules::{
    check_entry, EntryEffect, EntryRef, FrameClass, FrameLookup, PtLevel, ENTRIES_PER_TABLE,
};

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
    /// vCPUs (CR3 references).
    pub vcpus: u64,
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

/// One run in a domain's mfn-sorted index.
#[derive(Clone, Copy, Debug)]
struct IndexedRun {
    start: u64,
    end: u64,
    kind: RunKind,
}

/// Rebuilds the frametable and the M2P of every domain-owned frame in one
/// pass, validating every page-table entry (module docs, Invariants 1–10).
///
/// - `layout`: RAM, the live-update region, the hv-reserved ranges.
/// - `domains`: the domains, in any order; ids must be distinct.
/// - `reader`: reads page-table frames.
/// - `frametable`: indexed by mfn from 0, **all zero** on entry
///   ([`FrameInfo::UNOWNED`]), at least as long as the RAM map.
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
    check_table_size(layout, frametable.len(), m2p.len())?;
    for (i, d) in domains.iter().enumerate() {
        if domains[..i].iter().any(|e| e.id == d.id) {
            return Err(Error::DuplicateDomain { domain: d.id });
        }
    }

    let mut report = PassReport {
        domains: Vec::with_capacity(domains.len()),
        ..PassReport::default()
    };
    let mut index: Vec<IndexedRun> = Vec::new();
    for dom in domains {
        let dr = rebuild_domain(layout, dom, reader, frametable, m2p, &mut index)?;
        report.frames_owned += dr.frames;
        report.tables_read += dr.tables.iter().sum::<u64>();
        report.entries_checked += dr.entries_checked;
        report.mmio_entries += dr.mmio_entries;
        report.domains.push(dr);
    }
    Ok(report)
}

/// Refuses a frametable or M2P table that does not cover all RAM.
fn check_table_size(
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
fn check_runs<P, V>(
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
        // Invariant 10: no gpfn may equal M2P_INVALID or wrap.
        if r.first_gpfn.0.checked_add(r.count).is_none() {
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

/// What the pass knows while it works on one domain.
#[derive(Clone, Copy)]
struct Scope<'p> {
    layout: &'p MachineLayout<'p>,
    /// The domain.
    domain: DomId,
    /// Its MMIO ranges, sorted.
    mmio: &'p [MfnRange],
    /// The domain's non-empty runs, sorted by mfn, disjoint.
    index: &'p [IndexedRun],
}

impl<'p> Scope<'p> {
    /// The lookup of the rules over the frametable as it is now.
    fn lookup<'t>(&'t self, frametable: &'t [FrameInfo]) -> PassLookup<'t>
    where
        'p: 't,
    {
        PassLookup {
            frametable,
            scope: self,
        }
    }
}

/// The lookup of the pass, for one domain: the frametable first, then the
/// domain's runs for its frames not written yet, then the layout.
struct PassLookup<'p> {
    frametable: &'p [FrameInfo],
    scope: &'p Scope<'p>,
}

impl FrameLookup for PassLookup<'_> {
    // The common case — a frame already written — is a single frametable
    // load, inlined into the entry loop; the rest is out of line.
    #[inline(always)]
    fn classify(&self, mfn: Mfn) -> FrameClass {
        if let Some(fi) = frame(self.frametable, mfn) {
            if fi.is_owned_by(self.scope.domain) {
                return FrameClass::Own(fi.page_type().map_or(RunKind::Data, PageType::run_kind));
            }
            if let Some(other) = fi.owner() {
                return FrameClass::OtherDomain(other);
            }
        }
        self.scope.classify_unwritten(mfn)
    }
}

impl Scope<'_> {
    /// Classifies a frame that no domain has claimed yet (or that lies
    /// beyond the frametable): one of this domain's frames in a later run
    /// (a page table, since data runs come first), or not this domain's.
    #[inline(never)]
    fn classify_unwritten(&self, mfn: Mfn) -> FrameClass {
        let i = self.index.partition_point(|r| r.end <= mfn.0);
        if let Some(r) = self.index.get(i) {
            if r.start <= mfn.0 {
                return FrameClass::Own(r.kind);
            }
        }
        self.layout.classify_not_owned(mfn, self.mmio)
    }
}

fn frame(frametable: &[FrameInfo], mfn: Mfn) -> Option<&FrameInfo> {
    usize::try_from(mfn.0).ok().and_then(|i| frametable.get(i))
}

fn frame_mut(frametable: &mut [FrameInfo], mfn: Mfn) -> Option<&mut FrameInfo> {
    usize::try_from(mfn.0)
        .ok()
        .and_then(|i| frametable.get_mut(i))
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

fn rebuild_domain<R: PageTableReader + ?Sized, P, V>(
    layout: &MachineLayout<'_>,
    dom: &DomainView<'_, P, V>,
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    index: &mut Vec<IndexedRun>,
) -> Result<DomainReport, Error> {
    check_runs(layout, dom, index)?;
    let scope = Scope {
        layout,
        domain: dom.id,
        mmio: dom.mmio,
        index: index.as_slice(),
    };
    let domain = dom.id;
    let mut dr = DomainReport {
        id: domain,
        ..DomainReport::default()
    };

    for run in dom.runs {
        if run.count == 0 {
            continue;
        }
        match PtLevel::of_run(run.kind) {
            None => claim_data_run(domain, run, frametable, m2p)?,
            Some(level) => {
                for k in 0..run.count {
                    let mfn = Mfn(run.first_mfn.0 + k);
                    claim(
                        domain,
                        run.kind,
                        mfn,
                        Gpfn(run.first_gpfn.0 + k),
                        frametable,
                        m2p,
                    )?;
                    check_table(&scope, reader, frametable, mfn, level, &mut dr)?;
                }
                dr.tables[usize::from(level.number() - 1)] += run.count;
            }
        }
        dr.frames += run.count;
        if run.kind == RunKind::Data {
            dr.data_frames += run.count;
        }
    }

    // Invariant 5.
    for pin in dom.pinned {
        let (mfn, pinned_as) = (dom.pin_of)(pin);
        let found = scope.lookup(frametable).classify(mfn);
        let typed = match PtLevel::of_run(pinned_as) {
            Some(level) if found == FrameClass::Own(pinned_as) => level.page_type(),
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
    Ok(dr)
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
    for (k, (fi, slot)) in (0..).zip(infos.iter_mut().zip(gpfns.iter_mut())) {
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
    Ok(())
}

/// Claims one frame (Invariant 9: the counts it holds are kept).
fn claim(
    domain: DomId,
    kind: RunKind,
    mfn: Mfn,
    gpfn: Gpfn,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
) -> Result<(), Error> {
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
    *slot = gpfn.0;
    Ok(())
}

/// Reads the just-claimed table `mfn` of `level` and checks and counts each
/// of its entries.
fn check_table<R: PageTableReader + ?Sized>(
    scope: &Scope<'_>,
    reader: &R,
    frametable: &mut [FrameInfo],
    mfn: Mfn,
    level: PtLevel,
    dr: &mut DomainReport,
) -> Result<(), Error> {
    let entries = reader.read_table(mfn);
    let domain = scope.domain;
    let (mut checked, mut mmio, mut writable) = (0u64, 0u64, 0u64);
    let limit = if level == PtLevel::L4 {
        crate::rules::HV_L4_FIRST_SLOT
    } else {
        ENTRIES_PER_TABLE
    };
    // Hypervisor slots (Invariant 7) and non-present entries (Invariant 6)
    // are skipped here without a call, exactly as `check_entry` would skip
    // them.
    for (i, &entry) in entries[..limit].iter().enumerate() {
        if entry & crate::pte::PRESENT == 0 {
            continue;
        }
        let at = EntryRef {
            domain,
            table: mfn,
            level,
            index: i as u16,
        };
        let effect = check_entry(&scope.lookup(frametable), at, entry)?;
        checked += 1;
        match effect {
            EntryEffect::NotPresent | EntryEffect::HvSlot => {}
            EntryEffect::Mmio(_) => mmio += 1,
            EntryEffect::Frame { target, typed } => {
                writable += u64::from(typed == Some(PageType::Writable));
                let fi = frame_mut(frametable, target).ok_or(Error::ForeignTarget {
                    at,
                    target,
                    found: FrameClass::Unowned,
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
