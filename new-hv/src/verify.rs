//! The entry contract and the verification of the handover state, before
//! anything is built on it.
//!
//! The order is the incoming image's: the argument page ([`read_args`]),
//! the staged range the boot allocator must leave alone
//! ([`staged_range`](crate::staging::staged_range)),
//! then — once there is a heap — the state itself ([`verify_state`]).
//! [`verify`] does all three.

use handover_abi::entry::EntryArgs;
use handover_abi::version::VersionRange;
use handover_abi::{Decoded, HandoverState};
use hvlu_types::{Mfn, MfnRange, PAGE_SIZE};

use crate::staging::staged_range;
use crate::IncomingError;

/// Reads the argument page (magic, version, size, CRC).
pub fn read_args(bytes: &[u8]) -> Result<EntryArgs, IncomingError> {
    Ok(EntryArgs::from_bytes(bytes)?)
}

/// Decodes the state (`bytes`, the `state_len` bytes at `state_phys`),
/// checks that it is of a version this image reads (`reads`, what its note
/// advertised) and that its region, image and state ranges are the argument
/// page's. Returns the blob's header (its version says what the state
/// could carry) and the state.
pub fn verify_state(
    args: &EntryArgs,
    bytes: &[u8],
    reads: VersionRange,
) -> Result<Decoded, IncomingError> {
    let decoded = handover_abi::decode(bytes)?;
    let found = decoded.header.version;
    if !reads.contains(found) {
        return Err(IncomingError::VersionNotRead { found, reads });
    }
    let r = &decoded.state.machine.region;
    if r.base != args.region_base || r.size != args.region_size {
        return Err(IncomingError::RegionMismatch {
            state: (r.base, r.size),
            args: (args.region_base, args.region_size),
        });
    }
    let image = MfnRange::new(
        Mfn::containing(args.image_phys),
        args.image_len.div_ceil(PAGE_SIZE),
    );
    if r.image != image {
        return Err(IncomingError::ImageMismatch {
            state: r.image,
            args: image,
        });
    }
    if !r.state.contains(Mfn::containing(args.state_phys)) {
        return Err(IncomingError::StateMisplaced {
            state_phys: args.state_phys,
            listed: r.state,
        });
    }
    Ok(decoded)
}

/// The whole check on host buffers: argument page, staged range, state.
pub fn verify(
    args_bytes: &[u8],
    state_bytes: &[u8],
    reads: VersionRange,
) -> Result<(EntryArgs, HandoverState), IncomingError> {
    let args = read_args(args_bytes)?;
    staged_range(&args)?;
    let decoded = verify_state(&args, state_bytes, reads)?;
    Ok((args, decoded.state))
}

/// The update marker's page (`handover_abi::marker`, at
/// `Watchdog::marker_phys`) is a page no guest and no region allocation
/// holds: inside the state's RAM, outside the region and outside every
/// run of every domain. Both sides check it: the old one before the pause
/// (`old_hv::checks`), this image before it writes the page.
pub fn marker_placement(state: &HandoverState, marker_phys: u64) -> Result<(), IncomingError> {
    let page = Mfn::containing(marker_phys);
    let misplaced = |why| IncomingError::MarkerMisplaced { marker_phys, why };
    if !crate::ram::of_state(state).iter().any(|r| r.contains(page)) {
        return Err(misplaced("not in the machine's RAM"));
    }
    if state
        .machine
        .region
        .frames()
        .is_some_and(|r| r.contains(page))
    {
        return Err(misplaced("inside the live-update region"));
    }
    let in_run = state
        .domains
        .iter()
        .any(|d| d.runs.iter().any(|r| r.mfns().contains(page)));
    if in_run {
        return Err(misplaced("in a domain's memory"));
    }
    Ok(())
}
