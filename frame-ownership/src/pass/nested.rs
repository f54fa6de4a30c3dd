//! An HVM domain's nested page tables and log-dirty bitmap (Invariant 28),
//! after every run of the domain is claimed.
//!
//! The tables are walked once from the root, depth first in entry order,
//! so every table frame is read once and the leaves come in increasing
//! guest-frame order. That order lets the walk compare the leaves with the
//! domain's data runs sorted by guest frame through a cursor: each RAM leaf
//! must be the next guest frame the runs give, naming the frame they give
//! it, and no run frame may be skipped. A table reached is marked by the
//! type reference its parent's entry (or, for the root, the nCR3) takes on
//! it, so a frame reached twice and a P2m frame never reached are both seen
//! in the frametable, without a second structure.

use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind};
use hvlu_types::hole::Hole;
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange};

use super::lookup::Scope;
use super::{frame_mut, overflow, DomainReport, PageTableReader};
use crate::error::Error;
use crate::frame::FrameInfo;
use crate::layout::{contains, HvmView};
use crate::page_type::PageType;
use crate::pte::{self, Pte};
use crate::rules::{EntryRef, FrameClass, FrameLookup, NestedError, MMIO_CACHE, MMIO_CACHE_BITS};

/// RAM indices one bitmap frame holds.
const BITS_PER_FRAME: u64 = 4096 * 8;

/// One data run, by guest frame.
#[derive(Clone, Copy)]
struct Backing {
    gpfn: u64,
    mfn: u64,
    count: u64,
}

/// The walk of one HVM domain.
struct Walk<'w, R: ?Sized> {
    scope: &'w Scope<'w>,
    reader: &'w R,
    frametable: &'w mut [FrameInfo],
    hvm: &'w HvmView<'w>,
    hole: Hole,
    /// The data runs by guest frame, and the cursor: the run and the frame
    /// in it the next RAM leaf must map.
    backing: Vec<Backing>,
    next: (usize, u64),
    dr: &'w mut DomainReport,
}

/// Checks the nested tables and the bitmap of the HVM domain `hvm` whose
/// runs `runs` were all claimed (Invariant 28), taking the nested tables'
/// references.
pub(super) fn check_hvm<R: PageTableReader + ?Sized>(
    scope: &Scope<'_>,
    reader: &R,
    frametable: &mut [FrameInfo],
    runs: &[MemRun],
    hvm: &HvmView<'_>,
    dr: &mut DomainReport,
) -> Result<(), Error> {
    let domain = scope.domain;
    let hole = Hole::new(hvm.hole).map_err(|_| Error::BadHole {
        domain,
        hole: hvm.hole,
    })?;
    if let Some(bitmap) = hvm.log_dirty {
        check_bitmap(scope, frametable, hvm, bitmap)?;
    }
    let mut backing: Vec<Backing> = runs
        .iter()
        .filter(|r| r.kind == RunKind::Data && r.count > 0)
        .map(|r| Backing {
            gpfn: r.first_gpfn.0,
            mfn: r.first_mfn.0,
            count: r.count,
        })
        .collect();
    backing.sort_unstable_by_key(|b| b.gpfn);
    if let Some(w) = backing
        .windows(2)
        .find(|w| w[1].gpfn < w[0].gpfn + w[0].count)
    {
        return Err(Error::GpfnTwice {
            domain,
            gpfn: Gpfn(w[1].gpfn),
        });
    }

    // The root: reached by the nCR3.
    let root = hvm.ncr3;
    let found = scope.lookup(frametable).classify(root);
    if found != FrameClass::Own(RunKind::P2m) {
        return Err(Error::BadNcr3 {
            domain,
            mfn: root,
            found,
        });
    }
    reach(frametable, root, domain)?;
    let mut walk = Walk {
        scope,
        reader,
        frametable,
        hvm,
        hole,
        backing,
        next: (0, 0),
        dr,
    };
    walk.table(root, Level::L4, 0)?;
    if let Some((gpfn, mfn)) = walk.expected() {
        return Err(Error::RamNotMapped {
            domain,
            gpfn: Gpfn(gpfn),
            mfn: Mfn(mfn),
        });
    }
    // Every P2m frame reached (its type count is the reference that
    // reached it).
    let frametable = walk.frametable;
    for r in runs.iter().filter(|r| r.kind == RunKind::P2m) {
        for mfn in (0..r.count).map(|k| Mfn(r.first_mfn.0 + k)) {
            if frame_mut(frametable, mfn).is_none_or(|fi| fi.type_count() == 0) {
                return Err(Error::P2mUnreached { domain, mfn });
            }
        }
    }
    Ok(())
}

/// The bitmap: one bit per RAM frame, in whole frames, each a log-dirty
/// frame of the domain.
fn check_bitmap(
    scope: &Scope<'_>,
    frametable: &[FrameInfo],
    hvm: &HvmView<'_>,
    bitmap: MfnRange,
) -> Result<(), Error> {
    let domain = scope.domain;
    let expected = hvm.max_frames.div_ceil(BITS_PER_FRAME);
    if bitmap.count != expected {
        return Err(Error::LogDirtyBitmapSize {
            domain,
            frames: bitmap.count,
            expected,
            max_frames: hvm.max_frames,
        });
    }
    for mfn in (0..bitmap.count).map(|k| Mfn(bitmap.start.0 + k)) {
        let found = scope.lookup(frametable).classify(mfn);
        if found != FrameClass::Own(RunKind::LogDirty) {
            return Err(Error::BadLogDirtyFrame { domain, mfn, found });
        }
    }
    Ok(())
}

/// Marks the P2m frame `mfn` reached: the one type and general reference
/// that reaches it.
fn reach(frametable: &mut [FrameInfo], mfn: Mfn, domain: DomId) -> Result<(), Error> {
    let fi = frame_mut(frametable, mfn).ok_or(Error::P2mUnreached { domain, mfn })?;
    fi.get_ref(Some(PageType::P2m))
        .map_err(overflow(mfn, domain))
}

impl<R: PageTableReader + ?Sized> Walk<'_, R> {
    /// The guest frame the next RAM leaf must map and the machine frame the
    /// runs give it, or `None` when every run frame is mapped.
    fn expected(&self) -> Option<(u64, u64)> {
        let (run, k) = self.next;
        self.backing.get(run).map(|b| (b.gpfn + k, b.mfn + k))
    }

    /// Moves the cursor one frame on.
    fn advance(&mut self) {
        let (run, k) = self.next;
        self.next = if k + 1 < self.backing[run].count {
            (run, k + 1)
        } else {
            (run + 1, 0)
        };
    }

    /// Checks the table `mfn` of `level`, whose first entry maps guest
    /// frame `base`, and everything below it.
    fn table(&mut self, mfn: Mfn, level: Level, base: u64) -> Result<(), Error> {
        let entries = self.reader.read_table(mfn);
        self.dr.p2m_tables += 1;
        let span = 1u64 << (9 * (level.number() - 1));
        for (i, &entry) in entries.iter().enumerate() {
            if entry & pte::PRESENT == 0 {
                continue;
            }
            let at = EntryRef {
                domain: self.scope.domain,
                table: mfn,
                level,
                index: i as u16,
            };
            let nested = |source| Error::Nested { at, entry, source };
            if entry & pte::USER == 0 {
                return Err(nested(NestedError::UserClear));
            }
            let gpfn = base + i as u64 * span;
            match level.below() {
                Some(below) => {
                    if entry & pte::HUGE != 0 {
                        return Err(nested(NestedError::LargePage));
                    }
                    let target = Pte(entry).mfn();
                    let found = self.scope.lookup(self.frametable).classify(target);
                    if found != FrameClass::Own(RunKind::P2m) {
                        return Err(nested(NestedError::NotP2mTable { target, found }));
                    }
                    if frame_mut(self.frametable, target).is_some_and(|fi| fi.type_count() != 0) {
                        return Err(nested(NestedError::TableTwice { target }));
                    }
                    reach(self.frametable, target, self.scope.domain)?;
                    self.table(target, below, gpfn)?;
                }
                None => self.leaf(at, Gpfn(gpfn), entry)?,
            }
        }
        Ok(())
    }

    /// Checks one present leaf mapping `gpfn`, the entry `at`.
    fn leaf(&mut self, at: EntryRef, gpfn: Gpfn, entry: u64) -> Result<(), Error> {
        let nested = |source| Error::Nested { at, entry, source };
        let target = Pte(entry).mfn();
        self.dr.p2m_leaves += 1;
        let Some(index) = self.hole.index_of(gpfn) else {
            // In the hole: an identity entry of device memory, uncacheable.
            if target.0 != gpfn.0 || !contains(self.hvm.identity, target) {
                return Err(nested(NestedError::HoleNotIdentity { gpfn, target }));
            }
            let found = self.scope.lookup(self.frametable).classify(target);
            if found != FrameClass::PermittedMmio {
                return Err(nested(NestedError::HoleNotMmio {
                    gpfn,
                    target,
                    found,
                }));
            }
            if entry & MMIO_CACHE_BITS != MMIO_CACHE {
                return Err(nested(NestedError::MmioCacheable { gpfn }));
            }
            self.dr.mmio_entries += 1;
            return Ok(());
        };
        if index >= self.hvm.max_frames {
            return Err(nested(NestedError::BeyondRam { gpfn }));
        }
        match self.expected() {
            Some((g, mfn)) if g == gpfn.0 => {
                if target.0 != mfn {
                    return Err(nested(self.not_data(gpfn, target).unwrap_or(
                        NestedError::WrongFrame {
                            gpfn,
                            target,
                            expected: Mfn(mfn),
                        },
                    )));
                }
            }
            // The leaves come in increasing gpfn order: the run frame the
            // cursor is at, below this leaf, has no leaf.
            Some((g, mfn)) if g < gpfn.0 => {
                return Err(Error::RamNotMapped {
                    domain: at.domain,
                    gpfn: Gpfn(g),
                    mfn: Mfn(mfn),
                })
            }
            _ => {
                return Err(nested(
                    self.not_data(gpfn, target)
                        .unwrap_or(NestedError::UnbackedRam { gpfn, target }),
                ))
            }
        }
        let writable = entry & pte::WRITABLE != 0;
        match self.hvm.log_dirty {
            None if !writable => return Err(nested(NestedError::ReadOnlyRam { gpfn })),
            Some(bitmap) if writable && !self.dirty(bitmap, index) => {
                return Err(nested(NestedError::CleanWritable { gpfn, index }))
            }
            _ => {}
        }
        self.dr.writable_mappings += u64::from(writable);
        self.advance();
        Ok(())
    }

    /// The refusal of a leaf that names a frame the hypervisor holds for
    /// the domain (or a guest page table), if it does.
    fn not_data(&self, gpfn: Gpfn, target: Mfn) -> Option<NestedError> {
        match self.scope.lookup(self.frametable).classify(target) {
            FrameClass::Own(kind) if kind != RunKind::Data => {
                Some(NestedError::HypervisorFrame { gpfn, target, kind })
            }
            _ => None,
        }
    }

    /// Whether RAM index `index`'s bit is set in `bitmap` (whose size was
    /// checked: it holds every RAM index).
    fn dirty(&self, bitmap: MfnRange, index: u64) -> bool {
        let frame = Mfn(bitmap.start.0 + index / BITS_PER_FRAME);
        let bit = index % BITS_PER_FRAME;
        self.reader.read_table(frame)[(bit / 64) as usize] >> (bit % 64) & 1 != 0
    }
}
