//! The outgoing role of a live update.
//!
//! Every hypervisor image plays this role when it hands over to a new image:
//! it validates and stages the image, pauses every vCPU, serialises the
//! handover state into the live-update region, checks it (pre-flight) and
//! jumps to the new image. The logic is written against traits that a
//! hypervisor implements, so it runs in host tests against a simulated
//! machine.
//!
//! - [`image`]: the load step — [`image::validate`] decides whether an ELF
//!   file is an image this hypervisor can hand over to (x86_64, sane
//!   segments, one `HVLU` note with a common ABI version, an entry in its
//!   code, a span that fits the staging area) and describes it;
//!   [`image::stage`] copies it into the staging area through the
//!   [`image::StagingArea`] trait.
//! - [`signature`]: the check before validation — an image is accepted
//!   only with an Ed25519 signature trailer by a key the running hypervisor
//!   trusts ([`signature::verify`]); [`signature::sign`] makes one.
//! - [`staging`]: where the image, the argument and trampoline pages, the
//!   entry tables and the state sit in the region's free gap, at the end
//!   away from the running image ([`staging::choose_end`],
//!   [`staging::Staging::plan_at`]), recorded in the entry arguments
//!   ([`staging::Staging::place`]); the incoming boot allocator must leave
//!   [`staging::Staging::hole`] alone.
//! - One module per item of the state, each the save side of the module of
//!   the same name in `new-hv` (which restores it; a round-trip test per
//!   item there checks the pair): [`staging`] (where the update sits in the
//!   region), [`ram`] (the RAM map), [`domain`] (runs from the p2m, name,
//!   flags, limits), [`vcpu`] (registers and bases), [`pins`] (pinned
//!   tables).
//! - [`handover`]: the exec step — [`handover::handover_state`] builds the
//!   state from the hypervisor's view ([`handover::DomainInput`] per domain
//!   and its live frametable), [`handover::serialise`] encodes it for the
//!   staging area, [`handover::preflight`] decodes it back, compares and
//!   takes the owned-frame digest.
//! - [`checks`]: what else is checked before the point of no return — the
//!   vCPU contexts, every frame in use in some run, and a dry run of the
//!   new image's boot on the region minus the staged range
//!   ([`checks::before_jump`]).
//! - [`abi`]: the handover format this role writes (a re-export of
//!   `handover-abi`).
//!
//! Pausing (saving the caller's context), writing physical memory, the
//! entry page tables and the jump touch the hardware and stay in the
//! hypervisor.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub use handover_abi as abi;

pub mod checks;
pub mod domain;
pub mod exec;
pub mod globals;
pub mod handover;
pub mod image;
pub mod pins;
pub mod ram;
pub mod signature;
pub mod staging;
pub mod vcpu;
