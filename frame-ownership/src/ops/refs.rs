//! Moving references: one frame's, one entry's, a whole table's
//! ([`TableWalk`]), with the checks every operation starts with.

use handover_abi::RunKind;
use hvlu_types::{pte::Level, DomId, Mfn};

use super::lookup::{LiveLookup, PinLookup};
use super::DomainContext;
use crate::error::OpError;
use crate::frame::{frame_at, frame_at_mut, FrameInfo};
use crate::layout::MachineLayout;
use crate::page_type::PageType;
use crate::rules::{
    check_entry, guest_slots, EntryEffect, EntryError, EntryRef, ENTRIES_PER_TABLE,
};

/// The frame `mfn`, which `domain` must own.
pub(super) fn owned(
    frametable: &[FrameInfo],
    domain: DomId,
    mfn: Mfn,
) -> Result<FrameInfo, OpError> {
    let fi = *frame_at(frametable, mfn).ok_or(OpError::OutOfRange { domain, mfn })?;
    if !fi.is_owned_by(domain) {
        return Err(OpError::NotOwner {
            domain,
            mfn,
            owner: fi.owner(),
        });
    }
    Ok(fi)
}

/// The page type of an owned frame, refusing an illegal type byte.
pub(super) fn page_type_of(fi: &FrameInfo, domain: DomId, mfn: Mfn) -> Result<PageType, OpError> {
    fi.page_type().ok_or(OpError::Corrupt {
        domain: Some(domain),
        mfn,
        what: "its page-type byte is reserved",
    })
}

/// Which way references move.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Take ([`FrameInfo::get_ref`]).
    Get,
    /// Drop ([`FrameInfo::put_ref`]).
    Put,
}

impl Dir {
    /// The other way.
    pub(super) fn reverse(self) -> Dir {
        match self {
            Dir::Get => Dir::Put,
            Dir::Put => Dir::Get,
        }
    }
}

/// What [`OpError::Corrupt`] says when a reference to drop is not there.
const UNDERFLOW: &str = "a reference to drop is not held (count underflow or wrong type)";

/// Takes or drops one reference of type `typed` (and one general reference)
/// on `mfn`. On error nothing is changed.
pub(super) fn move_ref(
    frametable: &mut [FrameInfo],
    domain: DomId,
    mfn: Mfn,
    typed: Option<PageType>,
    dir: Dir,
) -> Result<(), OpError> {
    let fi = frame_at_mut(frametable, mfn).ok_or(OpError::OutOfRange { domain, mfn })?;
    match dir {
        Dir::Get => fi
            .get_ref(typed)
            .map_err(|_| OpError::CountOverflow { domain, mfn }),
        Dir::Put => fi.put_ref(typed).map_err(|_| OpError::Corrupt {
            domain: Some(domain),
            mfn,
            what: UNDERFLOW,
        }),
    }
}

/// Takes or drops the references of one entry's effect.
pub(super) fn apply(
    frametable: &mut [FrameInfo],
    domain: DomId,
    effect: EntryEffect,
    dir: Dir,
) -> Result<(), OpError> {
    match effect {
        EntryEffect::Frame { target, typed } => move_ref(frametable, domain, target, typed, dir),
        EntryEffect::NotPresent | EntryEffect::HvSlot | EntryEffect::Mmio(_) => Ok(()),
    }
}

/// Where entry `index` of `table` is, for the rules and the errors.
pub(super) fn entry_ref(domain: DomId, table: Mfn, level: Level, index: usize) -> EntryRef {
    EntryRef {
        domain,
        table,
        level,
        index: index as u16,
    }
}

/// The whole-table operations: validate (or re-derive) every guest entry's
/// effect, then move all of their references one way, rolling back on
/// failure.
pub(super) struct TableWalk<'a> {
    /// The machine's layout.
    pub(super) layout: &'a MachineLayout<'a>,
    /// The domain that owns the table.
    pub(super) dom: &'a DomainContext<'a>,
    /// The table.
    pub(super) table: Mfn,
    /// Its level (for a pin of a data frame, the level pinned at).
    pub(super) level: Level,
    /// Its entries.
    pub(super) entries: &'a [u64; ENTRIES_PER_TABLE],
    /// For a pin of a data frame: see it as a table of `level` already.
    pub(super) as_candidate: bool,
}

impl TableWalk<'_> {
    /// The effect of entry `index`, or the rule it breaks.
    fn effect(&self, frametable: &[FrameInfo], index: usize) -> Result<EntryEffect, EntryError> {
        let live = LiveLookup::new(self.layout, frametable, self.dom);
        let at = entry_ref(self.dom.id, self.table, self.level, index);
        let value = self.entries[index];
        if self.as_candidate {
            let lookup = PinLookup {
                live,
                candidate: self.table,
                kind: RunKind::of_level(self.level),
            };
            check_entry(&lookup, at, value)
        } else {
            check_entry(&live, at, value)
        }
    }

    /// Checks every guest entry; on the first refusal, says which entry and
    /// why.
    pub(super) fn validate(&self, frametable: &[FrameInfo]) -> Result<(), (EntryRef, EntryError)> {
        for i in 0..guest_slots(self.level) {
            self.effect(frametable, i).map_err(|e| (self.at(i), e))?;
        }
        Ok(())
    }

    /// Where entry `index` is.
    fn at(&self, index: usize) -> EntryRef {
        entry_ref(self.dom.id, self.table, self.level, index)
    }

    /// Moves every guest entry's references `dir`. All entries have been
    /// validated, and applying effects does not change any entry's effect
    /// (a `Writable` reference turns `None` data into `Writable` data or
    /// back, both `Own(Data)` to the lookup), so each is re-derived here
    /// rather than stored. On failure the references moved are moved back.
    pub(super) fn move_all(&self, frametable: &mut [FrameInfo], dir: Dir) -> Result<(), OpError> {
        let domain = self.dom.id;
        for i in 0..guest_slots(self.level) {
            let step = self
                .effect(frametable, i)
                .map_err(|source| OpError::Entry {
                    at: self.at(i),
                    source,
                })
                .and_then(|e| apply(frametable, domain, e, dir));
            if let Err(err) = step {
                for j in (0..i).rev() {
                    // Undoing a move that just succeeded cannot fail.
                    if let Ok(e) = self.effect(frametable, j) {
                        let _ = apply(frametable, domain, e, dir.reverse());
                    }
                }
                return Err(err);
            }
        }
        Ok(())
    }
}
