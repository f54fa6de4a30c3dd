//! The outgoing role of a live update.
//!
//! Every hypervisor image plays this role when it hands over to a new image:
//! it validates and stages the image, pauses every vCPU, serialises the
//! handover state into the live-update region, checks it (pre-flight) and
//! jumps to the new image. The logic is written against traits that a
//! hypervisor implements, so it runs in host tests against a simulated
//! machine. It is filled in by the live-update issue (#4); until then it only
//! re-exports the format it will write.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use handover_abi as abi;
