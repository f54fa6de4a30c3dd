//! Staging: where the old hypervisor put the image and the state, from the
//! entry arguments (`old_hv::staging::Staging::place` wrote them).

use boot_allocator::PhysRange;
use handover_abi::entry::EntryArgs;
use handover_abi::PAGE_SIZE;

use crate::IncomingError;

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
