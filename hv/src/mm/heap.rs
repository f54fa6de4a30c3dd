//! The hypervisor heap: a linked-list allocator over memory claimed from the
//! live-update region at boot. The hypervisor's own live data (domain
//! structures, the page-allocator bitmap, consoles) lives here, inside the
//! region, which is why staging an update uses only the region's free gaps.

use core::mem::MaybeUninit;

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `memory` to the global allocator. Call once.
pub fn init(memory: &'static mut [u8]) {
    let uninit: &'static mut [MaybeUninit<u8>] = crate::arch::phys::bytes_as_uninit(memory);
    HEAP.lock().init_from_slice(uninit);
}
