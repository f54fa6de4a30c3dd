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
//! | [`release_domain`] | domain destruction | every frame of the domain becomes free, whatever it held |
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
//! The rules of an entry are [`check_entry`](crate::check_entry), shared with the pass; the
//! lookup is [`LiveLookup`], over the live frametable.
//!
//! Submodules: `lookup` (the rules' lookups over the live table), `refs`
//! (moving references, whole-table walks), `tables` (the page-table
//! operations), `frames` (frames entering and leaving a domain).

mod frames;
mod lookup;
mod refs;
mod tables;

use hvlu_types::{DomId, Mfn, MfnRange};

use crate::error::{Error, RangeList};
use crate::layout::check_sorted;
use crate::pass::PageTableReader;

pub use frames::{
    claim_data, claim_hvm_frame, hvm_frame_counts, release_data, release_domain, release_hvm_frame,
};
pub use lookup::LiveLookup;
pub use tables::{pin, release_table, unpin, update_entry, use_as_cr3};

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
    /// ([`crate::OpError::StaleEntry`]).
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
