//! The hvlu handover format.
//!
//! This crate owns every byte that crosses a live update: the header and the
//! versioned body of the handover state, the CRC32C that guards them, the
//! `HVLU` ELF note that every hypervisor image carries, and the rules that
//! decide which versions two images can exchange.
//!
//! It has no `unsafe` and no dependency on a CPU: everything here is tested on
//! the host.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod types;

pub use types::*;
