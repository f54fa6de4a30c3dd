//! The frametable of an hvlu hypervisor, the PV type rules and the single
//! rebuild pass.
//!
//! After a live update the new hypervisor knows which frames belong to which
//! domain only from the handover state: per domain, memory runs
//! `(first_mfn, count, first_gpfn, kind)` ordered bottom-up (data, L1, L2,
//! L3, L4), pinned tables and vCPU CR3s. This crate turns that into a
//! frametable — owner, PV page type, type count, reference count, flags — and
//! an M2P table, in **one pass** over the runs that reads only page-table
//! frames and validates every guest page-table entry (`docs/design.md` section 4). The
//! result must be identical to the old hypervisor's incrementally maintained
//! table; [`frametable_digest`] lets both sides check that.
//!
//! - [`FrameInfo`]: the 16-byte frametable entry, every field's legal values
//!   documented on the field; [`PageType`], what a frame holds (a page table's level
//!   is `hvlu_types::pte::Level`).
//! - [`rules`]: the PV type rules as pure functions over [`FrameLookup`],
//!   shared by the pass and the live operations; a refused entry is an
//!   [`EntryError`].
//! - [`rebuild`]: the pass, generic over a [`PageTableReader`]; it refuses
//!   its input with an [`Error`].
//! - [`ops`]: the live hypervisor's incremental operations (`mmu_update`,
//!   pin, unpin, table release, CR3 switch, data claim and release, domain
//!   release), which keep exactly the table the pass would rebuild; they
//!   refuse with an [`OpError`].
//! - [`collect`]: the runs and pins of each domain, read off a live
//!   frametable, for the handover state;
//!   [`p2m_runs`], [`p2m_domain`] and [`pinned_in`] the same from one
//!   domain's p2m (what the hypervisors use).
//! - [`state_view`]: the pass's view of a decoded handover domain.
//! - [`free_ranges`]: free RAM as the complement of the runs.
//! - [`Digest`]: the digest over owned frames ([`frametable_digest`],
//!   [`owned_digest`], both in one walk: [`owned_and_frametable_digests`]).
//! - [`lazy`]: the entries an incoming image initialises only after the
//!   guests run again ([`lazy::Unsettled`]).
//!
//! The rules are numbered in `docs/invariants.md` ("Frametable and the single
//! pass"); comments cite them as "Invariant n".
//!
//! No `unsafe`, no CPU: everything here runs in host tests against simulated
//! memory (see the `testkit` feature).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod collect;
pub mod digest;
pub mod error;
pub mod frame;
pub mod free;
pub mod layout;
pub mod lazy;
pub mod ops;
pub mod page_type;
pub mod pass;
pub mod pte;
pub mod rules;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(test)]
mod tests;

pub use collect::{
    collect_domains, domain_runs, frame_runs, p2m_domain, p2m_runs, pinned_in, OwnedDomain,
};
pub use digest::{frametable_digest, owned_and_frametable_digests, owned_digest, Digest};
pub use error::{Error, OpError, RangeList};
pub use frame::{CountError, FrameFlags, FrameInfo};
pub use free::free_ranges;
pub use layout::{state_view, state_views, DomainView, HvmView, MachineLayout, StateView};
pub use ops::{
    claim_data, claim_hvm_frame, hvm_frame_counts, pin, release_data, release_domain,
    release_hvm_frame, release_table, unpin, update_entry, use_as_cr3, DomainContext, LiveLookup,
    PageTableMemory,
};
pub use page_type::PageType;
pub use pass::{rebuild, DomainReport, PageTableReader, PassReport, M2P_INVALID};
pub use rules::{
    check_entry, EntryEffect, EntryError, EntryRef, FrameClass, FrameLookup, NestedError,
    MMIO_CACHE, MMIO_CACHE_BITS,
};
