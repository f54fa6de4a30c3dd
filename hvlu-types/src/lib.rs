//! The vocabulary every hvlu layer shares.
//!
//! Frames and addresses ([`Mfn`], [`Gpfn`]; an address is a `u64`), ranges of them
//! ([`MfnRange`], [`PhysRange`]), domain ids ([`DomId`]), a domain's PCI hole
//! and the numbering of its RAM around it ([`hole`]), the x86-64
//! page-table entry format ([`pte`]), plans of page tables and the walker
//! that builds them ([`table_plan`]), the canonical-address bounds
//! ([`canonical`]), the general-purpose register file ([`GpRegs`]), what
//! an HVM vCPU's context must be for `VMRUN` to enter it ([`hvm`]), the
//! CRC32C ([`crc32c`]), the fold the digests share ([`digest`]) and the
//! compile-time layout check of the fixed binary structs ([`assert_layout!`]).
//!
//! This is a leaf crate: no dependency but `thiserror`, `crc` and an optional `serde` (feature
//! `serde`, which `handover-abi` turns on because these types appear in the
//! handover body; the wire shape of each is fixed there by golden blobs).
//! Everything is `const` where it can be, conversions between frames and
//! addresses are lossless or say why not, and nothing here allocates.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod canonical;
pub mod crc32c;
pub mod digest;
mod frame;
pub mod hole;
pub mod hvm;
pub mod layout;
pub mod pte;
mod range;
pub mod regs;
pub mod table_plan;
pub mod time;

pub use frame::{DomId, Gpfn, Mfn};
pub use hvm::HvmContextError;
pub use range::{MfnRange, PhysRange};
pub use regs::{ContextError, GpRegs, VcpuContext};

/// Size of a machine frame (and of a guest page) in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Width of a physical address on x86-64 (the architectural maximum).
pub const PHYS_ADDR_BITS: u32 = 52;
/// One past the highest machine frame number a physical address can reach.
pub const MFN_LIMIT: u64 = 1 << (PHYS_ADDR_BITS - PAGE_SHIFT);
