//! Staging: where the old hypervisor put the image and the state, from the
//! entry arguments (`old_hv::staging::Staging::place` wrote them).
//!
//! The staged range is one contiguous part of the region in one of two
//! layouts (`docs/abi.md` section 5.3): `[image][args][trampoline][entry
//! tables][state]` when the old hypervisor staged at the bottom of a free
//! gap, `[state][args][trampoline][entry tables][image]` when it staged at
//! the top. Either way the image is at one end and the state at the other,
//! so the hull of the two is the range the boot allocator must leave alone
//! ([`staged_range`]), and everything in it but the image is free again once
//! the state is consumed and this image runs on its own page tables
//! ([`consumed_range`]).

use boot_allocator::PhysRange;
use handover_abi::entry::EntryArgs;
use hvlu_types::PAGE_SIZE;

use crate::IncomingError;

fn page_up(x: u64) -> u64 {
    x.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// The staged image and state: the hull of both, in whole pages — the hole
/// the boot allocator must respect. Refuses an image and a state that
/// overlap, and a range that is not inside the region.
pub fn staged_range(args: &EntryArgs) -> Result<PhysRange, IncomingError> {
    let image = (
        args.image_phys,
        args.image_phys.saturating_add(args.image_len),
    );
    let state = (
        args.state_phys,
        args.state_phys.saturating_add(args.state_len),
    );
    if image.0 < state.1 && state.0 < image.1 {
        return Err(IncomingError::StagedOverlap {
            image: args.image_phys,
            state: args.state_phys,
        });
    }
    let staged = PhysRange::from_bounds(
        page_down(image.0.min(state.0)),
        page_up(image.1.max(state.1)),
    );
    let region = PhysRange::new(args.region_base, args.region_size);
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

/// What of the staged range `staged` ([`staged_range`]) is free once the
/// state has been decoded and this image runs on its own page tables: all
/// of it but the image's pages — the state, the argument and trampoline
/// pages and the entry tables. The hypervisor returns it to the region's
/// free space (`boot_allocator::HandOff::release_hole`), so the capacity
/// for the next update does not shrink by it.
pub fn consumed_range(args: &EntryArgs, staged: PhysRange) -> PhysRange {
    let image_start = page_down(args.image_phys);
    let image_end = page_up(args.image_phys.saturating_add(args.image_len));
    if image_start <= staged.start {
        PhysRange::from_bounds(image_end.min(staged.end()), staged.end())
    } else {
        PhysRange::from_bounds(staged.start, image_start.min(staged.end()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn args(image: u64, image_len: u64, state: u64, state_len: u64) -> EntryArgs {
        EntryArgs {
            image_phys: image,
            image_len,
            state_phys: state,
            state_len,
            region_base: 64 * MIB,
            region_size: 64 * MIB,
            ..EntryArgs::default()
        }
    }

    #[test]
    fn image_first_at_the_bottom_of_a_gap() {
        let a = args(80 * MIB, 0x9_0000, 80 * MIB + 0xd_2000, 5000);
        let staged = staged_range(&a).unwrap();
        assert_eq!(
            staged,
            PhysRange::from_bounds(80 * MIB, 80 * MIB + 0xd_4000)
        );
        assert_eq!(
            consumed_range(&a, staged),
            PhysRange::from_bounds(80 * MIB + 0x9_0000, staged.end())
        );
    }

    #[test]
    fn state_first_at_the_top_of_a_gap() {
        let image = 128 * MIB - 0x9_0000;
        let a = args(image, 0x9_0000, image - 0x4_3000, 5000);
        let staged = staged_range(&a).unwrap();
        assert_eq!(staged, PhysRange::from_bounds(image - 0x4_3000, 128 * MIB));
        assert_eq!(
            consumed_range(&a, staged),
            PhysRange::from_bounds(image - 0x4_3000, image)
        );
    }

    #[test]
    fn overlapping_image_and_state_are_refused() {
        let a = args(80 * MIB, 0x9_0000, 80 * MIB + 0x8_f000, 5000);
        let e = staged_range(&a).unwrap_err();
        assert_eq!(
            e,
            IncomingError::StagedOverlap {
                image: 80 * MIB,
                state: 80 * MIB + 0x8_f000
            }
        );
        assert!(e.to_string().contains("overlap"), "{e}");
    }

    #[test]
    fn a_range_outside_the_region_is_refused() {
        let a = args(127 * MIB, 2 * MIB, 126 * MIB, 5000);
        assert!(matches!(
            staged_range(&a),
            Err(IncomingError::StagedOutsideRegion { .. })
        ));
    }
}
