//! The incoming role of a live update.
//!
//! Every hypervisor image plays this role when it is entered through its
//! live-update entry: it boots with an allocator confined to the live-update
//! region, verifies the handover state, runs the single frametable pass,
//! rebuilds and resumes every domain and only then releases the rest of RAM.
//! The logic here is hardware-independent and runs in host tests against a
//! simulated machine; the hypervisor reads and writes physical memory,
//! builds its page tables, rewrites the guest L4s and schedules.
//!
//! - One module per item of the state, each the restore side of the module
//!   of the same name in `old-hv` (a round-trip test per item,
//!   `tests/items.rs`, saves on a simulated machine and restores):
//!   [`staging`] (the staged range the boot allocator must respect,
//!   [`staged_range`]), [`ram`] (the usable frames of the RAM map),
//!   [`domain`] (p2m, limits, flags, the L4s to rewrite), [`vcpu`]
//!   (registers and bases, checked), [`pins`] (the pinned tables, read back
//!   after the pass).
//! - [`verify`](mod@verify): the argument page ([`read_args`]), decoding
//!   the state and cross-checking it with the argument page
//!   ([`verify_state`]).
//! - [`devices`]: the PCI devices an image finds against those the state
//!   recorded ([`devices::compare`], which the old side runs too before it
//!   pauses), taken into the state before the pass ([`devices::adopt`]).
//! - [`adopt`](mod@adopt): the frametable pass over the decoded domains, the
//!   digest check and the free RAM ([`adopt()`]).
//! - [`boot`]: what the restricted boot takes from the region and in which
//!   order ([`boot::needs`]), and the same sequence as a dry run the old
//!   side makes before the point of no return ([`boot::dry_run`]).
//! - [`free`]: the digest of a set of free frames ([`free::digest_of`]),
//!   which both sides compute so that `free_equal` compares frames, not
//!   counts.
//! - [`report`]: the incoming timestamps ([`InTimes`]) and the `lu-report`
//!   line ([`Report`]).
//!
//! Every refusal is an [`IncomingError`]; its `Display` names the failure
//! (the hypervisor prints it after "live update REFUSED by the incoming
//! image: ").

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub use boot_allocator;
pub use frame_ownership;
pub use handover_abi as abi;

pub mod adopt;
pub mod boot;
pub mod devices;
pub mod domain;
pub mod enter;
pub mod free;
pub mod globals;
pub mod pins;
pub mod ram;
pub mod report;
pub mod staging;
pub mod tables;
pub mod vcpu;
pub mod verify;

pub use adopt::{adopt, adopt_marked, Adopted};
pub use domain::{l4_frames, p2m_of, RestoredHvm};
pub use enter::{enter, Entered};
pub use report::{us, InTimes, Report};
pub use staging::staged_range;
pub use verify::{read_args, verify, verify_state};

use handover_abi::entry::EntryArgsError;
use handover_abi::DecodeError;
use hvlu_types::{DomId, Gpfn, MfnRange};

/// Why the incoming image refuses a live update.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    /// The argument page is unreadable as one (magic, version, CRC, …).
    #[error("{0}")]
    Args(EntryArgsError),
    /// The argument page puts the image and the state on the same bytes.
    #[error("the staged image at {image:#x} and the state at {state:#x} overlap")]
    StagedOverlap {
        /// The image's physical address.
        image: u64,
        /// The state's physical address.
        state: u64,
    },
    /// The staged image and state are not inside the region.
    #[error("staged image and state are not inside the region: [{start:#x}, {end:#x}) is not inside the region {region_base:#x}+{region_size:#x}")]
    StagedOutsideRegion {
        /// Start of the staged range (page-rounded).
        start: u64,
        /// End of the staged range (page-rounded).
        end: u64,
        /// The region's base.
        region_base: u64,
        /// The region's size.
        region_size: u64,
    },
    /// The state does not decode (header, CRCs, version, body, structure).
    #[error("handover state: {0}")]
    Decode(#[from] DecodeError),
    /// The state is of a version this image does not read (its note said
    /// which it reads; the old side should have negotiated one of them).
    #[error("the state is ABI {found}, this image reads {reads}")]
    VersionNotRead {
        /// The blob's version.
        found: handover_abi::AbiVersion,
        /// What this image reads.
        reads: handover_abi::version::VersionRange,
    },
    /// The state's region is not the argument page's.
    #[error("the state's region {:#x}+{:#x} disagrees with the entry arguments' {:#x}+{:#x}", .state.0, .state.1, .args.0, .args.1)]
    RegionMismatch {
        /// The state's `(base, size)`.
        state: (u64, u64),
        /// The argument page's `(base, size)`.
        args: (u64, u64),
    },
    /// The state's image range is not the argument page's.
    #[error("the state's image {state} disagrees with the entry arguments' {args}")]
    ImageMismatch {
        /// The image range the state lists.
        state: MfnRange,
        /// The image range of the argument page.
        args: MfnRange,
    },
    #[error("the update marker's page {marker_phys:#x} is {why}: a reset would find it overwritten, or it would overwrite what is there")]
    /// The update marker's page (`entry::Watchdog::marker_phys`) is not RAM
    /// outside the region and every domain's runs.
    MarkerMisplaced {
        /// The page's address.
        marker_phys: u64,
        /// Where it lies instead.
        why: &'static str,
    },
    /// The state is not in the state area it lists.
    #[error("the state is not where the state says it is: it is at {state_phys:#x}, the state lists {listed}")]
    StateMisplaced {
        /// Where the argument page says the state is.
        state_phys: u64,
        /// The state area the state lists.
        listed: MfnRange,
    },
    /// A vCPU's context cannot be a guest's.
    #[error("d{domain} vCPU {vcpu}: {error}")]
    Vcpu {
        /// The domain.
        domain: DomId,
        /// The vCPU.
        vcpu: u32,
        /// What is wrong with it.
        error: hvlu_types::ContextError,
    },
    /// A run reaches past the domain's memory limit: its RAM index (its
    /// gpfn, below the PCI hole) is at or beyond the limit.
    #[error("d{domain}: a run reaches {gpfn}, beyond its limit of {max_frames} frames")]
    GpfnBeyondLimit {
        /// The domain.
        domain: DomId,
        /// The highest gpfn of the run.
        gpfn: Gpfn,
        /// The domain's limit.
        max_frames: u64,
    },
    /// A run puts RAM in the domain's PCI hole, where it never is.
    #[error("d{domain}: a run holds {gpfn}, inside its PCI hole {hole}")]
    GpfnInHole {
        /// The domain.
        domain: DomId,
        /// A gpfn of the run inside the hole.
        gpfn: Gpfn,
        /// The domain's hole.
        hole: hvlu_types::hole::Hole,
    },
    /// The devices this image found are not those the state recorded, or
    /// do not fit it.
    #[error("devices: {0}")]
    Devices(#[from] devices::DeviceError),
    /// The state gives a domain a PCI hole that breaks its rules.
    #[error("d{domain}: {error}")]
    BadHole {
        /// The domain.
        domain: DomId,
        /// What is wrong with it.
        error: hvlu_types::hole::HoleError,
    },
    /// The frametable pass refused the state.
    #[error("frametable pass: {0}")]
    Pass(#[from] frame_ownership::Error),
    /// A guest page-table frame's contents changed after the old side took
    /// their digest.
    #[error("the guests' page-table frames changed after the old hypervisor paused them: digest {computed:#018x}, the old hypervisor's {expected:#018x}")]
    TablesChanged {
        /// The digest of the tables as found.
        computed: u64,
        /// The digest in the argument page.
        expected: u64,
    },
    /// The argument page's end of RAM is not the state's RAM map's (the
    /// heap, sized from the first, would not be the one the map needs).
    #[error("the entry arguments say RAM ends at {ram_end:#x}, the state's RAM map ends at frame {frames:#x}")]
    RamEndMismatch {
        /// The argument page's `ram_end`.
        ram_end: u64,
        /// One past the highest RAM frame of the state.
        frames: u64,
    },
    /// The restricted boot does not fit the region minus the staged range.
    #[error("boot: {0}")]
    Boot(boot::BootError),
    /// The hypervisor could not do a step for the framework (physical
    /// memory unreadable, memory it cannot claim).
    #[error("{step}: {error}")]
    Platform {
        /// The step.
        step: &'static str,
        /// The hypervisor's reason.
        error: alloc::string::String,
    },
    /// A guest L4's hypervisor slots could not be rewritten.
    #[error("d{domain}: cannot rewrite an L4: {error}")]
    L4 {
        /// The domain.
        domain: DomId,
        /// The hypervisor's reason.
        error: alloc::string::String,
    },
    /// The owned-frame digest after the pass is not the old side's.
    #[error(
        "owned-frame digest {computed:#018x} differs from the old hypervisor's {expected:#018x}"
    )]
    DigestMismatch {
        /// The digest after the pass.
        computed: u64,
        /// The digest in the argument page.
        expected: u64,
    },
}

impl From<boot::BootError> for IncomingError {
    fn from(e: boot::BootError) -> Self {
        IncomingError::Boot(e)
    }
}

impl From<boot::StepError> for IncomingError {
    fn from(e: boot::StepError) -> Self {
        match e {
            boot::StepError::Alloc(e) => IncomingError::Boot(e),
            boot::StepError::Platform { step, error } => IncomingError::Platform { step, error },
        }
    }
}

impl From<EntryArgsError> for IncomingError {
    fn from(e: EntryArgsError) -> Self {
        IncomingError::Args(e)
    }
}
