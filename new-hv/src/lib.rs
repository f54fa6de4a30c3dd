//! The incoming role of a live update.
//!
//! Every hypervisor image plays this role when it is entered through its
//! live-update entry: it boots with an allocator confined to the live-update
//! region, verifies the handover state, runs the single frametable pass,
//! rebuilds and resumes every domain and only then releases the rest of RAM.
//! The logic is written against traits that a hypervisor implements, so it
//! runs in host tests against a simulated machine. It is filled in by the
//! live-update issue (#4); until then it only re-exports the crates it builds
//! on.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use boot_allocator;
pub use frame_ownership;
pub use handover_abi as abi;
