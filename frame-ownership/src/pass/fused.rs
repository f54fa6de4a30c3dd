//! One PV domain, run by run: each data frame's entry is written once,
//! with its final counts (Invariant 9).
//!
//! The pass in list order claims a data frame and then, when an L1 entry
//! that maps it is read, adds a reference to it: two writes of the entry,
//! far apart in time, so the second one misses the caches. Here the
//! domain's L1 tables are read first and their present entries cut into
//! **stretches**: consecutive entries that differ only by their frame
//! number, which goes up by one, and whose frames lie in one run of the
//! domain. A stretch is checked once, by [`check_entry`] on its first entry
//! with the class of its run ([`Known`]): every entry of it has the same
//! bits and the same class, so the same verdict. A stretch over data frames
//! is kept as two edges (where its mappings start and end, writable or
//! not); consecutive stretches that continue one another are kept as one.
//! Then each data run is written, in mfn order, as pieces over which the
//! number of mappings is constant — one value stored in a tight loop, the
//! M2P a counting loop — and only then come the L2, L3 and L4 runs, frame
//! by frame as in list order (their entries point at tables, all written
//! by now), the pins and the CR3s.
//!
//! So a guest's memory costs, per data frame, the read of the L1 entry
//! that maps it, one frametable and one M2P store (and a read of the
//! entry's line, which the store needs anyway, to see that it is zero);
//! per run and per stretch, a binary search. No frame is written twice.
//!
//! What this path does not do is name errors: it relies on the caller's
//! check that no two runs of the machine overlap for frames claimed twice
//! across domains, and on any violation it makes the entries it wrote zero
//! again ([`InOrder`]) and the caller goes in list order, which finds the
//! same tables for a valid domain and names the first violation of an
//! invalid one. It writes only entries it found zero, so that a table the
//! caller did not zero reaches the pass in list order as it was.
//!
//! Mappings that do not come in stretches (a guest that mapped its frames
//! in a scattered order) would each cost a stretch, and the edges a heap
//! that grows with memory. So after an L1 table that takes the domain past
//! [`STRETCHES`] stretches, the data runs are written with the mappings
//! found so far and the rest of the L1 tables go as in list order, each
//! entry adding its reference to a data frame already claimed: the same
//! tables, at the cost of the pass in list order for those tables only.

use alloc::vec::Vec;

use handover_abi::RunKind;
use hvlu_types::{pte::Level, Mfn, PAGE_SHIFT};

use super::lookup::{Known, Scope};
use super::runs::IndexedRun;
use super::{
    check_table, claim, claim_tables, roots, write_block, DomainReport, PageTableReader, BLOCK,
};
use crate::error::Error;
use crate::frame::FrameInfo;
use crate::layout::DomainView;
use crate::page_type::PageType;
use crate::pte::{self, Pte};
use crate::rules::{check_entry, EntryEffect, EntryRef, FrameClass, ENTRIES_PER_TABLE};

/// How many stretches of data mappings a domain keeps at most, give or
/// take one L1 table's (16 bytes per edge, two edges each: 128 KiB). A
/// guest's physmap needs a few per run.
pub(super) const STRETCHES: usize = 4096;

/// The edges [`rebuild_pv`] needs room for, with at most `stretches`
/// stretches kept: one more table's worth (each of its entries may start
/// a stretch) and the last one left open. The caller reserves them, so
/// that the path never allocates.
pub(super) const fn edges_needed(stretches: usize) -> usize {
    limited(stretches)
        .saturating_add(ENTRIES_PER_TABLE + 1)
        .saturating_mul(2)
}

/// At most 2^30 stretches: then the mappings of one frame, one per
/// stretch, count in a `u32` (`FrameInfo::mapped_data`).
const fn limited(stretches: usize) -> usize {
    if stretches < 1 << 30 {
        stretches
    } else {
        1 << 30
    }
}

/// The highest frame number an entry's address field holds, + 1.
const FRAME_LIMIT: u64 = (pte::ADDR_MASK >> PAGE_SHIFT) + 1;

/// Where the mappings of data frames change: from `mfn` on, `writable`
/// and `read_only` more (or, negative, fewer) L1 entries map each frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct Edge {
    mfn: u64,
    writable: i32,
    read_only: i32,
}

/// A stretch of L1 entries mapping the data frames `start..end`, all
/// inside one run of the domain that ends at `run_end`.
#[derive(Clone, Copy)]
struct Stretch {
    start: u64,
    end: u64,
    writable: bool,
    run_end: u64,
}

/// The data mappings found so far.
struct Mappings<'e> {
    /// Two per stretch closed; room for them is reserved.
    edges: &'e mut Vec<Edge>,
    /// The last stretch, which the next one may continue.
    open: Option<Stretch>,
}

/// This path cannot finish the domain: the state breaks a rule somewhere
/// in it, or an entry was not zero to begin with. [`rebuild_pv`] has made
/// every entry it wrote zero again; the caller goes in list order, which
/// says what is wrong (module docs).
#[derive(Clone, Copy, Debug)]
pub(super) struct InOrder;

impl From<Error> for InOrder {
    fn from(_: Error) -> InOrder {
        InOrder
    }
}

/// The entries [`rebuild_pv`] may have written: only entries it found all
/// zero, so that giving up leaves the table as it found it (whatever the
/// caller left in it: the pass in list order then sees what it would have
/// seen).
#[derive(Default)]
struct Written {
    /// The domain's page-table frames.
    tables: bool,
    /// Its data frames below this frame.
    data_below: u64,
}

impl Written {
    /// Makes the entries written zero again.
    fn undo(&self, frametable: &mut [FrameInfo], index: &[IndexedRun]) {
        for r in index {
            let end = match r.kind {
                RunKind::Data => r.end.min(self.data_below),
                _ if self.tables => r.end,
                _ => continue,
            };
            if let Some(entries) = frametable.get_mut(r.start as usize..end.max(r.start) as usize) {
                entries.fill(FrameInfo::UNOWNED);
            }
        }
    }
}

/// Builds the frametable entries and M2P entries of the PV domain of
/// `scope`, whose runs were checked ([`super::check_runs`]) and share no
/// frame with another domain's. `edges` is scratch space (reused across
/// domains) with room for [`edges_needed`]`(stretches)`. On [`InOrder`] the
/// frametable is as it was (the M2P is not: the pass in list order
/// rewrites what it needs).
pub(super) fn rebuild_pv<R: PageTableReader + ?Sized, P, V>(
    scope: &Scope<'_>,
    dom: &DomainView<'_, P, V>,
    reader: &R,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    edges: &mut Vec<Edge>,
    stretches: usize,
) -> Result<DomainReport, InOrder> {
    let mut written = Written::default();
    let done = pv(
        scope,
        dom,
        reader,
        (frametable, m2p),
        edges,
        stretches,
        &mut written,
    );
    if done.is_err() {
        written.undo(frametable, scope.index);
    }
    done
}

fn pv<R: PageTableReader + ?Sized, P, V>(
    scope: &Scope<'_>,
    dom: &DomainView<'_, P, V>,
    reader: &R,
    (frametable, m2p): (&mut [FrameInfo], &mut [u64]),
    edges: &mut Vec<Edge>,
    stretches: usize,
    written: &mut Written,
) -> Result<DomainReport, InOrder> {
    let domain = scope.domain;
    let mut dr = DomainReport {
        id: domain,
        ..DomainReport::default()
    };
    // The tables are few: check them all before writing any.
    for r in scope.index.iter().filter(|r| r.kind.is_page_table()) {
        let entries = frametable.get(r.start as usize..r.end as usize);
        if !entries.is_some_and(FrameInfo::all_zero) {
            return Err(InOrder);
        }
    }
    written.tables = true;
    edges.clear();
    let stretches = limited(stretches);
    if edges.capacity() < edges_needed(stretches) {
        return Err(InOrder);
    }
    let mut maps = Mappings { edges, open: None };

    // The L1 tables, claimed and read, their entries checked by stretches
    // while there is room for them.
    let mut l1 = dom
        .runs
        .iter()
        .filter(|r| r.kind == RunKind::L1)
        .flat_map(|run| (0..run.count).map(move |k| (run, k)));
    for (run, k) in l1.by_ref() {
        let mfn = claim(domain, run, k, frametable, m2p)?;
        scan_l1(
            scope,
            reader.read_table(mfn),
            mfn,
            frametable,
            &mut maps,
            &mut dr,
        )?;
        dr.tables[0] += 1;
        if maps.edges.len() > 2 * stretches {
            break;
        }
    }
    maps.close();

    // The data runs, each entry written once.
    maps.edges.sort_unstable_by_key(|e| e.mfn);
    write_data(scope, maps.edges, written, frametable, m2p, &mut dr)?;

    // The L1 tables left if the stretches ran out, then the tables above
    // L1, as in list order: their targets are all written.
    for (run, k) in l1 {
        let mfn = claim(domain, run, k, frametable, m2p)?;
        check_table(scope, reader, frametable, mfn, Level::L1, &mut dr)?;
        dr.tables[0] += 1;
    }
    dr.frames += dr.tables[0];
    for run in dom.runs {
        if let Some(level) = run.kind.level().filter(|&l| l != Level::L1) {
            if run.count > 0 {
                claim_tables(scope, reader, run, level, frametable, m2p, &mut dr)?;
                dr.frames += run.count;
            }
        }
    }
    roots(scope, dom, frametable, &mut dr)?;
    Ok(dr)
}

/// How many entries from `i` on continue `entries[i]`: each the one before
/// with the frame number one higher (at least 1).
#[inline(always)]
fn stretch_len(entries: &[u64; ENTRIES_PER_TABLE], i: usize) -> usize {
    const STEP: u64 = 1 << PAGE_SHIFT;
    let first = entries[i];
    let expected = |j: usize| first.wrapping_add(((j - i) as u64) << PAGE_SHIFT);
    let mut j = i + 1;
    // Eight at a time while they all match: no branch per entry, so a
    // table that maps 512 consecutive frames is a few dozen steps.
    while j + 8 <= ENTRIES_PER_TABLE {
        let base = expected(j);
        let mut diff = 0;
        for (k, &e) in entries[j..j + 8].iter().enumerate() {
            diff |= e ^ base.wrapping_add(k as u64 * STEP);
        }
        if diff != 0 {
            break;
        }
        j += 8;
    }
    while j < ENTRIES_PER_TABLE && entries[j] == expected(j) {
        j += 1;
    }
    j - i
}

/// Checks and counts the present entries of the L1 table `table`, stretch
/// by stretch.
fn scan_l1(
    scope: &Scope<'_>,
    entries: &[u64; ENTRIES_PER_TABLE],
    table: Mfn,
    frametable: &mut [FrameInfo],
    maps: &mut Mappings<'_>,
    dr: &mut DomainReport,
) -> Result<(), InOrder> {
    let mut i = 0;
    while i < ENTRIES_PER_TABLE {
        let entry = entries[i];
        if entry & pte::PRESENT == 0 {
            i += 1;
            continue;
        }
        let at = EntryRef {
            domain: scope.domain,
            table,
            level: Level::L1,
            index: i as u16,
        };
        let len = stretch_len(entries, i) as u64;
        i += map_stretch(scope, at, entry, len, frametable, maps, dr)? as usize;
    }
    Ok(())
}

/// Checks and counts the stretch of up to `len` entries that starts with
/// `entry` at `at`; returns how many entries it took (the stretch is cut
/// where its frames leave the run of its first frame).
fn map_stretch(
    scope: &Scope<'_>,
    at: EntryRef,
    entry: u64,
    len: u64,
    frametable: &mut [FrameInfo],
    maps: &mut Mappings<'_>,
    dr: &mut DomainReport,
) -> Result<u64, InOrder> {
    let target = Pte(entry).mfn();
    // Within one run and below the address field's limit, every entry of
    // the stretch has its first entry's bits and class.
    let (class, len, run_end) = match scope.own_run(target) {
        Some(run) => (
            FrameClass::Own(run.kind),
            len.min(run.end - target.0).min(FRAME_LIMIT - target.0),
            run.end,
        ),
        None => (scope.layout.classify_not_owned(target, scope.mmio), 1, 0),
    };
    let effect = check_entry(&Known(class), at, entry).map_err(|_| InOrder)?;
    dr.entries_checked += len;
    match effect {
        EntryEffect::Frame { target, typed } if class == FrameClass::Own(RunKind::Data) => {
            let writable = typed == Some(PageType::Writable);
            dr.writable_mappings += if writable { len } else { 0 };
            let s = Stretch {
                start: target.0,
                end: target.0 + len,
                writable,
                run_end,
            };
            maps.add(s);
        }
        // A read-only mapping of the domain's own tables (claimed or not).
        EntryEffect::Frame { target, typed } => {
            let frames = (target.0, target.0 + len);
            count_now(frametable, frames, typed)?;
        }
        EntryEffect::Mmio(_) => dr.mmio_entries += 1,
        EntryEffect::NotPresent | EntryEffect::HvSlot => {}
    }
    Ok(len)
}

/// One reference (and a type reference of `typed`) on each frame of
/// `start..end`, which are the domain's.
fn count_now(
    frametable: &mut [FrameInfo],
    (start, end): (u64, u64),
    typed: Option<PageType>,
) -> Result<(), InOrder> {
    let entries = frametable
        .get_mut(start as usize..end as usize)
        .ok_or(InOrder)?;
    for fi in entries {
        fi.get_ref(typed).map_err(|_| InOrder)?;
    }
    Ok(())
}

impl Mappings<'_> {
    /// Adds a stretch of data mappings.
    fn add(&mut self, s: Stretch) {
        if let Some(open) = &mut self.open {
            if open.end == s.start && open.writable == s.writable && s.start < open.run_end {
                open.end = s.end;
                return;
            }
        }
        self.close();
        self.open = Some(s);
    }

    /// Keeps the open stretch as two edges (in the room reserved:
    /// [`edges_needed`]).
    fn close(&mut self) {
        if let Some(s) = self.open.take() {
            let w = i32::from(s.writable);
            let r = 1 - w;
            self.edges.push(Edge {
                mfn: s.start,
                writable: w,
                read_only: r,
            });
            self.edges.push(Edge {
                mfn: s.end,
                writable: -w,
                read_only: -r,
            });
        }
    }
}

/// Writes the entries and M2P entries of every data run of the domain, in
/// mfn order, with the mappings of `edges` (sorted by mfn).
fn write_data(
    scope: &Scope<'_>,
    edges: &[Edge],
    written: &mut Written,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    dr: &mut DomainReport,
) -> Result<(), InOrder> {
    let domain = scope.domain;
    let (mut next, mut writable, mut read_only) = (0, 0u32, 0u32);
    for run in scope.index.iter().filter(|r| r.kind == RunKind::Data) {
        let mut at = run.start;
        while at < run.end {
            while let Some(e) = edges.get(next).filter(|e| e.mfn <= at) {
                writable = writable.wrapping_add_signed(e.writable);
                read_only = read_only.wrapping_add_signed(e.read_only);
                next += 1;
            }
            let until = edges.get(next).map_or(run.end, |e| e.mfn.min(run.end));
            let (a, b) = (at as usize, until as usize);
            // The runs lie inside both tables (`check_table_size`).
            let (Some(entries), Some(gpfns)) = (frametable.get_mut(a..b), m2p.get_mut(a..b)) else {
                return Err(InOrder);
            };
            // At most `limited(stretches)` + 513 stretches cover a frame:
            // the counts fit.
            let value = FrameInfo::mapped_data(domain, writable, read_only);
            // A frame that holds anything already (a frametable that was
            // not zeroed) is for the pass in list order to judge.
            let blocks = entries.chunks_mut(BLOCK).zip(gpfns.chunks_mut(BLOCK));
            for ((block, gpfns), first) in blocks.zip((at..).step_by(BLOCK)) {
                if !write_block(block, gpfns, value, run.first_gpfn + (first - run.start)) {
                    return Err(InOrder);
                }
                written.data_below = first + block.len() as u64;
            }
            at = until;
        }
        let frames = run.end - run.start;
        dr.frames += frames;
        dr.data_frames += frames;
    }
    Ok(())
}
