//! The page-table operations: entry updates, pins, unpins, table releases
//! and CR3 switches (Invariants 13–15, 17).

use hvlu_types::{pte::Level, DomId, Mfn};

use super::lookup::LiveLookup;
use super::refs::{apply, entry_ref, move_ref, owned, page_type_of, Dir, TableWalk};
use super::{DomainContext, PageTableMemory};
use crate::error::OpError;
use crate::frame::{frame_at_mut, FrameInfo};
use crate::layout::MachineLayout;
use crate::page_type::PageType;
use crate::pass::PageTableReader;
use crate::rules::{check_entry, guest_slots, ENTRIES_PER_TABLE};

/// Writes entry `index` of the page table `table` of `dom` to `new`
/// (`mmu_update`).
///
/// `table` must be a page table (type L1..L4) that `dom` owns, `index` below
/// 512, and for an L4 below [`HV_L4_FIRST_SLOT`](crate::rules::HV_L4_FIRST_SLOT) (the hypervisor's slots are
/// never written by guests). The new value must pass [`check_entry`]; its
/// references are taken, the value is written, then the old value's
/// references are dropped (take before drop, so that mapping the same
/// target again never lets a count touch 0; Invariant 15). The first
/// writable mapping of a `None` data frame makes it `Writable`; dropping the
/// last one makes it `None` again (Invariant 2). Refused updates change
/// nothing.
pub fn update_entry<M: PageTableMemory + ?Sized>(
    layout: &MachineLayout<'_>,
    frametable: &mut [FrameInfo],
    mem: &mut M,
    dom: &DomainContext<'_>,
    table: Mfn,
    index: usize,
    new: u64,
) -> Result<(), OpError> {
    let domain = dom.id;
    let fi = owned(frametable, domain, table)?;
    let found = page_type_of(&fi, domain, table)?;
    let level = found.level().ok_or(OpError::NotPageTable {
        domain,
        mfn: table,
        found,
    })?;
    if index >= ENTRIES_PER_TABLE {
        return Err(OpError::BadIndex {
            domain,
            table,
            index,
        });
    }
    // Invariant 17.
    if index >= guest_slots(level) {
        return Err(OpError::HvSlot {
            domain,
            table,
            index,
        });
    }
    let at = entry_ref(domain, table, level, index);
    let old = mem.read_table(table)[index];
    // Invariant 15: every check before the first count moves. The old
    // value's effect is recomputed; it cannot have changed while held.
    let (new_effect, old_effect) = {
        let lookup = LiveLookup::new(layout, frametable, dom);
        let new_effect =
            check_entry(&lookup, at, new).map_err(|source| OpError::Entry { at, source })?;
        let old_effect =
            check_entry(&lookup, at, old).map_err(|source| OpError::StaleEntry { at, source })?;
        (new_effect, old_effect)
    };
    apply(frametable, domain, new_effect, Dir::Get)?;
    mem.write_entry(table, index, new);
    if let Err(err) = apply(frametable, domain, old_effect, Dir::Put) {
        mem.write_entry(table, index, old);
        // Undoing the take that just succeeded cannot fail.
        let _ = apply(frametable, domain, new_effect, Dir::Put);
        return Err(err);
    }
    Ok(())
}

/// Pins the frame `mfn` of `dom` as a page table of `level` (`pin_table`).
///
/// - A table of type `level` that is not pinned gets the pin's type and
///   general reference and the `PINNED` flag.
/// - A data frame of type `None` (no writable mapping) is validated: every
///   entry (slots below [`HV_L4_FIRST_SLOT`](crate::rules::HV_L4_FIRST_SLOT) for an L4) must pass
///   [`check_entry`] as an entry of a `level` table, the frame itself being
///   seen as one already. Only if all pass are their references taken, the
///   type set to `level`, and the pin's references taken (Invariant 13).
/// - Anything else is refused: `Writable` data ([`OpError::WritableData`]),
///   a table of another level ([`OpError::LevelMismatch`]), a pinned table
///   ([`OpError::Pinned`]), a frame not the domain's. A refused pin changes
///   nothing.
pub fn pin<R: PageTableReader + ?Sized>(
    layout: &MachineLayout<'_>,
    frametable: &mut [FrameInfo],
    mem: &R,
    dom: &DomainContext<'_>,
    mfn: Mfn,
    level: Level,
) -> Result<(), OpError> {
    let domain = dom.id;
    let fi = owned(frametable, domain, mfn)?;
    let found = page_type_of(&fi, domain, mfn)?;
    let promoted = match found.level() {
        Some(have) if fi.is_pinned() => {
            return Err(OpError::Pinned {
                domain,
                mfn,
                level: have,
            })
        }
        Some(have) if have != level => {
            return Err(OpError::LevelMismatch {
                domain,
                mfn,
                requested: level,
                found: have,
            })
        }
        Some(_) => None,
        None if found == PageType::Writable => {
            return Err(OpError::WritableData {
                domain,
                mfn,
                mappings: fi.type_count(),
            })
        }
        None => {
            if fi.type_count() != 0 || fi.is_pinned() {
                return Err(OpError::Corrupt {
                    domain: Some(domain),
                    mfn,
                    what: "a data frame of type none has a type count or the pinned flag",
                });
            }
            // Invariants 13 and 14: validate every entry, then count them
            // all, then the frame is a table.
            let walk = TableWalk {
                layout,
                dom,
                table: mfn,
                level,
                entries: mem.read_table(mfn),
                as_candidate: true,
            };
            walk.validate(frametable)
                .map_err(|(at, source)| OpError::Entry { at, source })?;
            walk.move_all(frametable, Dir::Get)?;
            Some(walk)
        }
    };
    let fi = frame_at_mut(frametable, mfn).ok_or(OpError::OutOfRange { domain, mfn })?;
    if promoted.is_some() {
        fi.set_page_type(PageType::of_level(level));
    }
    if fi.get_ref(Some(PageType::of_level(level))).is_err() {
        if let Some(walk) = promoted {
            fi.set_page_type(PageType::None);
            // Undoing the takes that just succeeded cannot fail.
            let _ = walk.move_all(frametable, Dir::Put);
        }
        return Err(OpError::CountOverflow { domain, mfn });
    }
    fi.set_pinned(true);
    Ok(())
}

/// Unpins the table `mfn` of `domain` (`unpin_table`): drops the pin's type
/// and general reference and the `PINNED` flag. The table keeps its type,
/// even if nothing references it any more (Invariant 13); [`release_table`]
/// turns it back into data.
pub fn unpin(frametable: &mut [FrameInfo], domain: DomId, mfn: Mfn) -> Result<(), OpError> {
    let fi = owned(frametable, domain, mfn)?;
    let found = page_type_of(&fi, domain, mfn)?;
    if !fi.is_pinned() {
        return Err(OpError::NotPinned { domain, mfn });
    }
    if found.level().is_none() {
        return Err(OpError::Corrupt {
            domain: Some(domain),
            mfn,
            what: "a data frame has the pinned flag",
        });
    }
    move_ref(frametable, domain, mfn, Some(found), Dir::Put)?;
    if let Some(fi) = frame_at_mut(frametable, mfn) {
        fi.set_pinned(false);
    }
    Ok(())
}

/// Turns the idle page table `mfn` of `dom` back into a data frame:
/// "devalidation".
///
/// The table must be unpinned ([`OpError::Pinned`]) with type count 0
/// ([`OpError::TableInUse`]): no entry, pin or CR3 references it by type.
/// The references its present entries hold (slots below
/// [`HV_L4_FIRST_SLOT`](crate::rules::HV_L4_FIRST_SLOT) for an L4) are dropped and its type becomes `None`.
/// Its children keep their own types (no recursion). Read-only mappings of
/// it stay: they hold one general reference each, as they would on data.
pub fn release_table<R: PageTableReader + ?Sized>(
    layout: &MachineLayout<'_>,
    frametable: &mut [FrameInfo],
    mem: &R,
    dom: &DomainContext<'_>,
    mfn: Mfn,
) -> Result<(), OpError> {
    let domain = dom.id;
    let fi = owned(frametable, domain, mfn)?;
    let found = page_type_of(&fi, domain, mfn)?;
    let level = found
        .level()
        .ok_or(OpError::NotPageTable { domain, mfn, found })?;
    if fi.is_pinned() {
        return Err(OpError::Pinned { domain, mfn, level });
    }
    if fi.type_count() != 0 {
        return Err(OpError::TableInUse {
            domain,
            mfn,
            level,
            type_count: fi.type_count(),
        });
    }
    let walk = TableWalk {
        layout,
        dom,
        table: mfn,
        level,
        entries: mem.read_table(mfn),
        as_candidate: false,
    };
    // Invariant 14: the entries hold exactly their effects; drop them all.
    walk.validate(frametable)
        .map_err(|(at, source)| OpError::StaleEntry { at, source })?;
    walk.move_all(frametable, Dir::Put)?;
    if let Some(fi) = frame_at_mut(frametable, mfn) {
        fi.set_page_type(PageType::None);
    }
    Ok(())
}

/// Moves a vCPU of `domain` onto the L4 table `new` (`new_baseptr`, and
/// vCPU creation with `old` = `None`): takes one type and one general
/// reference on `new`, then drops those of `old`, the vCPU's previous CR3
/// (Invariant 5: each CR3 holds one of each, as the pass counts it).
///
/// `old` must be an L4 of the domain holding a type reference; otherwise the
/// caller's record of the vCPU disagrees with the frametable
/// ([`OpError::Corrupt`]) and nothing is changed.
pub fn use_as_cr3(
    frametable: &mut [FrameInfo],
    domain: DomId,
    new: Mfn,
    old: Option<Mfn>,
) -> Result<(), OpError> {
    let fi = owned(frametable, domain, new)?;
    let found = page_type_of(&fi, domain, new)?;
    if found != PageType::L4 {
        return Err(OpError::NotL4 {
            domain,
            mfn: new,
            found,
        });
    }
    if let Some(old) = old {
        let corrupt = OpError::Corrupt {
            domain: Some(domain),
            mfn: old,
            what: "the previous CR3 is not an L4 of the domain holding a type reference",
        };
        let ofi = owned(frametable, domain, old).map_err(|_| corrupt)?;
        if ofi.page_type() != Some(PageType::L4) || ofi.type_count() == 0 {
            return Err(corrupt);
        }
    }
    move_ref(frametable, domain, new, Some(PageType::L4), Dir::Get)?;
    if let Some(old) = old {
        if let Err(err) = move_ref(frametable, domain, old, Some(PageType::L4), Dir::Put) {
            // Undoing the take that just succeeded cannot fail.
            let _ = move_ref(frametable, domain, new, Some(PageType::L4), Dir::Put);
            return Err(err);
        }
    }
    Ok(())
}
