//! Tests of the boot allocator: one per error variant (`errors`), edge cases
//! (`edges`) and property tests against a page-bitmap model (`props`).

mod edges;
mod errors;
mod props;

use crate::{BootAllocator, PhysRange, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE;
const MIB: u64 = 1 << 20;

/// The range of `pages` pages starting at page `first`.
fn pages(first: u64, pages: u64) -> PhysRange {
    PhysRange::new(first * PAGE, pages * PAGE)
}

/// An allocator with the default capacities, panicking on error.
fn alloc(region: PhysRange, holes: &[PhysRange]) -> BootAllocator {
    BootAllocator::new(region, holes).expect("valid allocator inputs")
}

/// The free gaps as a vector.
fn gaps<const H: usize, const A: usize>(a: &BootAllocator<H, A>) -> Vec<PhysRange> {
    a.free_gaps().collect()
}
