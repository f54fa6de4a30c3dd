//! The live hypervisor's incremental page-type operations.
//!
//! Between updates the old hypervisor keeps its frametable up to date one
//! guest request at a time. At an update it lists each domain's frames as
//! runs whose kind is each frame's page type ([`crate::collect`]), and the
//! new hypervisor rebuilds the frametable from them with [`crate::rebuild`].
//! The two tables must be identical (Invariant 12), so every operation here
//! maintains exactly the state the pass reconstructs (Invariants 1–12), and
//! keeps Invariants 13–17 of `docs/invariants.md`, which say how a live
//! table may change (Invariant 18 says how its runs are read back):
//!
//! | operation | hypercall | what changes |
//! |---|---|---|
//! | [`update_entry`] | `mmu_update` | one entry of a page table; its new target's counts up, its old target's down |
//! | [`pin`] | `pin_table` | a data frame becomes a validated table (all entries counted), or a table gets the pin's references |
//! | [`unpin`] | `unpin_table` | the pin's references and flag go; the table keeps its type |
//! | [`release_table`] | (type change back to data) | an idle table's entries drop their references; the frame becomes data |
//! | [`use_as_cr3`] | `new_baseptr`, vCPU creation | the CR3 reference moves from one L4 to another |
//! | [`claim_data`] | `increase_reservation`, domain build | a free frame becomes a data frame of the domain |
//! | [`release_data`] | `decrease_reservation` | an idle data frame becomes free |
//!
//! **Types are sticky** (Invariant 13). A frame becomes a level-n table only
//! by [`pin`], which validates every entry first, and becomes data again only
//! by [`release_table`] of an unpinned table whose type count is 0. A table
//! that nothing references keeps its type, exactly as a table listed in a
//! run does in the pass. Entries of L2..L4 tables may only point at frames
//! that already have the type one level down: there is no automatic
//! promotion, so a guest builds a tree bottom-up (pin the L1s, then the L2s
//! that point at them, …; it may unpin the lower ones afterwards, their
//! parents keep them typed).
//!
//! **A refused operation changes nothing** (Invariant 15): every check is
//! made before the first count moves, and the rare failure after that (a
//! count at `u32::MAX`) rolls back what was done.
//!
//! The rules of an entry are [`check_entry`], shared with the pass; the
//! lookup is [`LiveLookup`], over the live frametable.

use handover_abi::{DomId, Gpfn, Mfn, MfnRange, RunKind};

use crate::error::{Error, OpError, RangeList};
use crate::frame::{FrameInfo, PageType};
use crate::layout::{check_sorted, MachineLayout};
use crate::pass::{PageTableReader, M2P_INVALID};
use crate::rules::{
    check_entry, EntryEffect, EntryRef, FrameClass, FrameLookup, PtLevel, ENTRIES_PER_TABLE,
    HV_L4_FIRST_SLOT,
};

/// Page-table memory the live hypervisor can write: the direct map on the
/// hypervisor, `testkit::SimMemory` (feature `testkit`) in tests.
///
/// Only [`update_entry`] writes, one entry at a time, and only into frames
/// that are page tables of the domain asking.
pub trait PageTableMemory: PageTableReader {
    /// Sets entry `index` (`0..512`) of the page-table frame `table` to
    /// `value`.
    fn write_entry(&mut self, table: Mfn, index: usize, value: u64);
}

/// The domain an operation is made for: its id and the MMIO ranges its L1
/// entries may map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainContext<'a> {
    id: DomId,
    mmio: &'a [MfnRange],
}

impl<'a> DomainContext<'a> {
    /// The context of domain `id` with its permitted MMIO ranges, which must
    /// be sorted by start and disjoint ([`Error::Unsorted`] otherwise).
    ///
    /// The ranges must not shrink while entries map them: an entry mapping a
    /// range that is no longer permitted cannot be replaced or released
    /// ([`OpError::StaleEntry`]).
    pub fn new(id: DomId, mmio: &'a [MfnRange]) -> Result<Self, Error> {
        check_sorted(mmio, RangeList::Mmio(id))?;
        Ok(DomainContext { id, mmio })
    }

    /// The domain's id.
    pub fn id(&self) -> DomId {
        self.id
    }

    /// Its permitted MMIO ranges, sorted.
    pub fn mmio(&self) -> &'a [MfnRange] {
        self.mmio
    }
}

/// The rules' [`FrameLookup`] over the live frametable, for one domain.
///
/// A frame the domain owns is `Own(kind)` with the kind of its page type
/// (`None` and `Writable` → `Data`, `Ln` → `Ln`); a frame another domain
/// owns is `OtherDomain`; otherwise the layout decides: not RAM → permitted
/// or forbidden MMIO by the domain's ranges, region, hv-reserved, or free
/// RAM (`Unowned`). The pass's lookup answers the same for every frame it
/// has written, which is what makes the two sides agree.
#[derive(Clone, Copy, Debug)]
pub struct LiveLookup<'a> {
    layout: &'a MachineLayout<'a>,
    frametable: &'a [FrameInfo],
    domain: &'a DomainContext<'a>,
}

impl<'a> LiveLookup<'a> {
    /// The lookup for `domain` over `frametable` and `layout`.
    pub fn new(
        layout: &'a MachineLayout<'a>,
        frametable: &'a [FrameInfo],
        domain: &'a DomainContext<'a>,
    ) -> Self {
        LiveLookup {
            layout,
            frametable,
            domain,
        }
    }
}

impl FrameLookup for LiveLookup<'_> {
    fn classify(&self, mfn: Mfn) -> FrameClass {
        if let Some(fi) = frame(self.frametable, mfn) {
            if fi.is_owned_by(self.domain.id) {
                return FrameClass::Own(fi.page_type().map_or(RunKind::Data, PageType::run_kind));
            }
            if let Some(other) = fi.owner() {
                return FrameClass::OtherDomain(other);
            }
        }
        self.layout.classify_not_owned(mfn, self.domain.mmio)
    }
}

/// The live lookup, except that one frame — a data frame being validated
/// for [`pin`] — is already seen as a table of the pinned level, as the pass
/// sees it (it is listed in a table run; Invariant 14). So an L1 that maps itself
/// read-only is counted like the pass counts it, and one that maps itself
/// writable, or an L2..L4 that points at itself, is refused like the pass
/// refuses it.
struct PinLookup<'a> {
    live: LiveLookup<'a>,
    candidate: Mfn,
    kind: RunKind,
}

impl FrameLookup for PinLookup<'_> {
    fn classify(&self, mfn: Mfn) -> FrameClass {
        if mfn == self.candidate {
            FrameClass::Own(self.kind)
        } else {
            self.live.classify(mfn)
        }
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

/// The frame `mfn`, which `domain` must own.
fn owned(frametable: &[FrameInfo], domain: DomId, mfn: Mfn) -> Result<FrameInfo, OpError> {
    let fi = *frame(frametable, mfn).ok_or(OpError::OutOfRange { domain, mfn })?;
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
fn page_type_of(fi: &FrameInfo, domain: DomId, mfn: Mfn) -> Result<PageType, OpError> {
    fi.page_type().ok_or(OpError::Corrupt {
        domain: Some(domain),
        mfn,
        what: "its page-type byte is reserved",
    })
}

/// Which way references move.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Take ([`FrameInfo::get_ref`]).
    Get,
    /// Drop ([`FrameInfo::put_ref`]).
    Put,
}

impl Dir {
    fn reverse(self) -> Dir {
        match self {
            Dir::Get => Dir::Put,
            Dir::Put => Dir::Get,
        }
    }
}

const UNDERFLOW: &str = "a reference to drop is not held (count underflow or wrong type)";

/// Takes or drops one reference of type `typed` (and one general reference)
/// on `mfn`. On error nothing is changed.
fn move_ref(
    frametable: &mut [FrameInfo],
    domain: DomId,
    mfn: Mfn,
    typed: Option<PageType>,
    dir: Dir,
) -> Result<(), OpError> {
    let fi = frame_mut(frametable, mfn).ok_or(OpError::OutOfRange { domain, mfn })?;
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
fn apply(
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

/// Number of slots of a table of `level` that belong to the guest.
fn guest_slots(level: PtLevel) -> usize {
    if level == PtLevel::L4 {
        HV_L4_FIRST_SLOT
    } else {
        ENTRIES_PER_TABLE
    }
}

/// Where entry `index` of `table` is, for the rules and the errors.
fn entry_ref(domain: DomId, table: Mfn, level: PtLevel, index: usize) -> EntryRef {
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
struct TableWalk<'a> {
    layout: &'a MachineLayout<'a>,
    dom: &'a DomainContext<'a>,
    table: Mfn,
    level: PtLevel,
    entries: &'a [u64; ENTRIES_PER_TABLE],
    /// For a pin of a data frame: see it as a table of `level` already.
    as_candidate: bool,
}

impl TableWalk<'_> {
    fn effect(&self, frametable: &[FrameInfo], index: usize) -> Result<EntryEffect, Error> {
        let live = LiveLookup::new(self.layout, frametable, self.dom);
        let at = entry_ref(self.dom.id, self.table, self.level, index);
        let value = self.entries[index];
        if self.as_candidate {
            let lookup = PinLookup {
                live,
                candidate: self.table,
                kind: self.level.run_kind(),
            };
            check_entry(&lookup, at, value)
        } else {
            check_entry(&live, at, value)
        }
    }

    /// Checks every guest entry; on the first refusal, says which entry and
    /// why.
    fn validate(&self, frametable: &[FrameInfo]) -> Result<(), (EntryRef, Error)> {
        for i in 0..guest_slots(self.level) {
            self.effect(frametable, i)
                .map_err(|e| (entry_ref(self.dom.id, self.table, self.level, i), e))?;
        }
        Ok(())
    }

    /// Moves every guest entry's references `dir`. All entries have been
    /// validated, and applying effects does not change any entry's effect
    /// (a `Writable` reference turns `None` data into `Writable` data or
    /// back, both `Own(Data)` to the lookup), so each is re-derived here
    /// rather than stored. On failure the references moved are moved back.
    fn move_all(&self, frametable: &mut [FrameInfo], dir: Dir) -> Result<(), OpError> {
        let domain = self.dom.id;
        for i in 0..guest_slots(self.level) {
            let step = self
                .effect(frametable, i)
                .map_err(OpError::Entry)
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

/// Writes entry `index` of the page table `table` of `dom` to `new`
/// (`mmu_update`).
///
/// `table` must be a page table (type L1..L4) that `dom` owns, `index` below
/// 512, and for an L4 below [`HV_L4_FIRST_SLOT`] (the hypervisor's slots are
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
        let new_effect = check_entry(&lookup, at, new).map_err(OpError::Entry)?;
        let old_effect =
            check_entry(&lookup, at, old).map_err(|cause| OpError::StaleEntry { at, cause })?;
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
///   entry (slots below [`HV_L4_FIRST_SLOT`] for an L4) must pass
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
    level: PtLevel,
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
                .map_err(|(_, e)| OpError::Entry(e))?;
            walk.move_all(frametable, Dir::Get)?;
            Some(walk)
        }
    };
    let fi = frame_mut(frametable, mfn).ok_or(OpError::OutOfRange { domain, mfn })?;
    if promoted.is_some() {
        fi.set_page_type(level.page_type());
    }
    if fi.get_ref(Some(level.page_type())).is_err() {
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
    if let Some(fi) = frame_mut(frametable, mfn) {
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
/// [`HV_L4_FIRST_SLOT`] for an L4) are dropped and its type becomes `None`.
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
        .map_err(|(at, cause)| OpError::StaleEntry { at, cause })?;
    walk.move_all(frametable, Dir::Put)?;
    if let Some(fi) = frame_mut(frametable, mfn) {
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

/// Gives the free frame `mfn`, fresh from the page allocator, to `dom` as a
/// data frame with guest frame number `gpfn` (`increase_reservation`, domain
/// build).
///
/// The frame must be RAM outside the live-update region and the hv-reserved
/// ranges ([`OpError::NotDomainRam`]), owned by nobody
/// ([`OpError::AlreadyOwned`]) with an all-zero entry, and `gpfn` must not be
/// [`M2P_INVALID`]. Afterwards: owner `dom`, type `None`, type count 0,
/// reference count 1 (the allocation reference), `m2p[mfn] = gpfn`
/// (Invariants 1, 4, 10, 16). Its contents are whatever the allocator left;
/// they count for nothing until it is pinned.
pub fn claim_data(
    layout: &MachineLayout<'_>,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    dom: &DomainContext<'_>,
    mfn: Mfn,
    gpfn: Gpfn,
) -> Result<(), OpError> {
    let domain = dom.id;
    let i = usize::try_from(mfn.0)
        .ok()
        .filter(|&i| i < frametable.len() && i < m2p.len())
        .ok_or(OpError::OutOfRange { domain, mfn })?;
    match LiveLookup::new(layout, frametable, dom).classify(mfn) {
        FrameClass::Unowned => {}
        FrameClass::Own(_) => {
            return Err(OpError::AlreadyOwned {
                domain,
                mfn,
                owner: domain,
            })
        }
        FrameClass::OtherDomain(owner) => return Err(OpError::AlreadyOwned { domain, mfn, owner }),
        found => return Err(OpError::NotDomainRam { domain, mfn, found }),
    }
    if frametable[i] != FrameInfo::UNOWNED {
        return Err(OpError::Corrupt {
            domain: Some(domain),
            mfn,
            what: "a frame nobody owns has counts, a type or flags",
        });
    }
    if gpfn.0 == M2P_INVALID {
        return Err(OpError::GpfnInvalid { domain, mfn });
    }
    frametable[i] = FrameInfo::new(
        Some(domain),
        PageType::None,
        0,
        1,
        crate::frame::FrameFlags::EMPTY,
    );
    m2p[i] = gpfn.0;
    Ok(())
}

/// Takes the data frame `mfn` away from `domain` and makes it free
/// (`decrease_reservation`), for the caller to return to the page allocator.
///
/// Only a frame held by its allocation alone may go (Invariants 4, 16): type
/// `None`, type count 0, reference count exactly 1, not pinned — no
/// mapping, no table type, no pin, no CR3. Otherwise [`OpError::Busy`],
/// naming the counts. Afterwards the entry is [`FrameInfo::UNOWNED`] and
/// `m2p[mfn]` is [`M2P_INVALID`].
pub fn release_data(
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    domain: DomId,
    mfn: Mfn,
) -> Result<(), OpError> {
    let fi = owned(frametable, domain, mfn)?;
    let i = usize::try_from(mfn.0)
        .ok()
        .filter(|&i| i < m2p.len())
        .ok_or(OpError::OutOfRange { domain, mfn })?;
    let page_type = page_type_of(&fi, domain, mfn)?;
    if page_type != PageType::None || fi.type_count() != 0 || fi.ref_count() != 1 || fi.is_pinned()
    {
        return Err(OpError::Busy {
            domain,
            mfn,
            page_type,
            type_count: fi.type_count(),
            ref_count: fi.ref_count(),
            pinned: fi.is_pinned(),
        });
    }
    frametable[i] = FrameInfo::UNOWNED;
    m2p[i] = M2P_INVALID;
    Ok(())
}
