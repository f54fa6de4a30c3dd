//! The entry contract and the verification of the handover state, before
//! anything is built on it.
//!
//! The order is the incoming image's: the argument page ([`read_args`]),
//! the staged range the boot allocator must leave alone ([`staged_range`]),
//! then — once there is a heap — the state itself ([`verify_state`]).
//! [`verify`] does all three.

use alloc::vec::Vec;

use boot_allocator::PhysRange;
use handover_abi::entry::EntryArgs;
use handover_abi::{HandoverState, Mfn, MfnRange, RamType, PAGE_SIZE};

use crate::IncomingError;

/// Reads the argument page (magic, version, size, CRC).
pub fn read_args(bytes: &[u8]) -> Result<EntryArgs, IncomingError> {
    Ok(EntryArgs::from_bytes(bytes)?)
}

/// The staged image and state, `[image, end of state rounded up to a page)`:
/// the hole the boot allocator must respect. Refuses a state before the
/// image or a range that is not inside the region.
pub fn staged_range(args: &EntryArgs) -> Result<PhysRange, IncomingError> {
    let staged_end = args
        .state_phys
        .saturating_add(args.state_len)
        .div_ceil(PAGE_SIZE)
        * PAGE_SIZE;
    if args.state_phys < args.image_phys {
        return Err(IncomingError::StateBeforeImage {
            image: args.image_phys,
            state: args.state_phys,
        });
    }
    let region = PhysRange::new(args.region_base, args.region_size);
    let staged = PhysRange::from_bounds(args.image_phys, staged_end);
    if !region.contains_range(staged) {
        return Err(IncomingError::StagedOutsideRegion {
            start: staged.start,
            end: staged.end(),
            region_base: region.start,
            region_size: region.size,
        });
    }
    Ok(staged)
}

/// Decodes the state (`bytes`, the `state_len` bytes at `state_phys`) and
/// checks that its region, image and state ranges are the argument page's.
pub fn verify_state(args: &EntryArgs, bytes: &[u8]) -> Result<HandoverState, IncomingError> {
    let decoded = handover_abi::decode(bytes)?;
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
    Ok(decoded.state)
}

/// The whole check on host buffers: argument page, staged range, state.
pub fn verify(
    args_bytes: &[u8],
    state_bytes: &[u8],
) -> Result<(EntryArgs, HandoverState), IncomingError> {
    let args = read_args(args_bytes)?;
    staged_range(&args)?;
    let state = verify_state(&args, state_bytes)?;
    Ok((args, state))
}

/// The usable RAM of a decoded state's RAM map, as whole frames (partial
/// pages at either end dropped, empty ranges skipped).
pub fn ram_ranges(state: &HandoverState) -> Vec<MfnRange> {
    state
        .machine
        .ram_map
        .iter()
        .filter(|r| r.kind == RamType::Usable)
        .filter_map(|r| {
            let start = r.base.div_ceil(PAGE_SIZE);
            let end = r.base.saturating_add(r.size) / PAGE_SIZE;
            (end > start).then(|| MfnRange::new(Mfn(start), end - start))
        })
        .collect()
}
