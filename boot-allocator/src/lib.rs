//! The early allocator of an hvlu hypervisor: one physical region minus
//! reserved holes.
//!
//! Before the frametable and the page allocator exist, a hypervisor needs
//! memory for exactly those (and for its own page tables and an early heap).
//! In hvlu that memory comes from the **live-update region** and from nowhere
//! else — on a cold boot and after a live update alike (see `DESIGN.md` in
//! this crate and section 3 of `docs/design.md`). After a live update part of
//! the region already holds the incoming image and the handover state; those
//! are the **holes** the allocator must never hand out.
//!
//! [`BootAllocator`] hands out page-aligned ranges, first fit in address
//! order (deterministic: the same inputs give the same addresses). It has no
//! `free`. When the hypervisor's real allocator takes over, it is retired
//! with [`BootAllocator::finish`], which yields the [`HandOff`] report: every
//! allocation with its tag, the holes, and the free gaps left — the staging
//! area for the next update. The size of the largest free gap is the
//! **live-update capacity** ([`BootAllocator::largest_free_gap`]).
//!
//! The crate needs neither `alloc` nor `unsafe`: holes and allocations are
//! recorded in fixed-size arrays whose capacities are const parameters, and
//! running out of them is an error ([`BootAllocError::TooManyHoles`],
//! [`BootAllocError::RecordFull`]), never a panic. The allocator never reads
//! or writes the memory it manages; it only does arithmetic on addresses.
//!
//! ```
//! use boot_allocator::{BootAllocator, PhysRange, PAGE_SIZE};
//!
//! const MIB: u64 = 1 << 20;
//! // A 16 MiB region at 64 MiB; the incoming image and state occupy two holes.
//! let region = PhysRange::new(64 * MIB, 16 * MIB);
//! let image = PhysRange::new(64 * MIB, 3 * MIB);
//! let state = PhysRange::new(67 * MIB, 5000); // rounded out to whole pages
//!
//! let mut early: Option<BootAllocator> = Some(BootAllocator::new(region, &[state, image])?);
//! let alloc = early.as_mut().unwrap();
//! let ft = alloc.alloc_pages_tagged(256, 2 * MIB, "frametable")?;
//! assert_eq!(ft, PhysRange::new(68 * MIB, MIB));
//! let pt = alloc.alloc_pages_tagged(4, PAGE_SIZE, "page tables")?;
//! assert_eq!(pt.start, 67 * MIB + 2 * PAGE_SIZE); // first fit: just after the state
//!
//! // Retire it: no boot allocation can happen any more.
//! let report = early.take().map(BootAllocator::finish).unwrap();
//! assert_eq!(report.allocations().len(), 2);
//! assert_eq!(report.used_bytes(), MIB + 4 * PAGE_SIZE);
//! // The live-update capacity: the largest free gap, [69 MiB, 80 MiB).
//! assert_eq!(report.largest_free_gap(), Some(PhysRange::new(69 * MIB, 11 * MIB)));
//! # Ok::<(), boot_allocator::BootAllocError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allocator;
mod error;
mod range;

#[cfg(test)]
mod test;

pub use allocator::{
    is_valid_align, Allocation, BootAllocator, FreeGaps, HandOff, Tile, Tiles, DEFAULT_MAX_ALLOCS,
    DEFAULT_MAX_HOLES,
};
pub use error::BootAllocError;
pub use range::{PhysRange, PAGE_SHIFT, PAGE_SIZE};
