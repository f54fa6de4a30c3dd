//! The hypervisor heap: a linked-list allocator over memory claimed from the
//! live-update region at boot. The hypervisor's own live data (domain
//! structures, the page-allocator bitmap, consoles) lives here, inside the
//! region, which is why staging an update uses only the region's free gaps.
//!
//! Its size grows with the machine (`new_hv::boot::heap_bytes`): enough for
//! the p2m and free-gpfn list of domains covering all of RAM, plus a fixed
//! part for everything else. What a guest or dom0 can make the hypervisor
//! allocate is allocated fallibly (`zeroed`, `Vec::try_reserve`): a heap
//! that runs short refuses the request with `Error::NoMemory`, it never
//! panics the hypervisor.
//!
//! On the host only [`Exhausted`] is built: the heap itself is the
//! bare-metal image's global allocator.

bare_metal! {
    use alloc::vec::Vec;
    use core::mem::MaybeUninit;

    use linked_list_allocator::LockedHeap;

    #[global_allocator]
    static HEAP: LockedHeap = LockedHeap::empty();
}

#[cfg(target_os = "none")]
/// Hands `memory` to the global allocator. Call once.
pub fn init(memory: &'static mut [u8]) {
    let uninit: &'static mut [MaybeUninit<u8>] = crate::arch::phys::bytes_as_uninit(memory);
    HEAP.lock().init_from_slice(uninit);
}

/// How much of the heap is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of the heap.
    pub size: u64,
    /// Bytes handed out.
    pub used: u64,
    /// Bytes free (possibly in pieces).
    pub free: u64,
}

#[cfg(target_os = "none")]
/// The heap's size and use now.
pub fn stats() -> Stats {
    let heap = HEAP.lock();
    Stats {
        size: heap.size() as u64,
        used: heap.used() as u64,
        free: heap.free() as u64,
    }
}

#[cfg(target_os = "none")]
/// Bytes the heap has free now.
pub fn free() -> u64 {
    stats().free
}

/// The heap could not hold an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the hypervisor heap cannot hold {} KiB ({} KiB free)",
    .needed.div_ceil(1024),
    .free >> 10
)]
pub struct Exhausted {
    /// Bytes asked for.
    pub needed: u64,
    /// Bytes the heap had free (possibly in pieces).
    pub free: u64,
}

impl From<Exhausted> for pv_abi::hypercall::Error {
    fn from(_: Exhausted) -> Self {
        pv_abi::hypercall::Error::NoMemory
    }
}

#[cfg(target_os = "none")]
/// Reserves room for `additional` more elements in `v`, or says how much
/// was missing.
pub fn reserve<T>(v: &mut Vec<T>, additional: usize) -> Result<(), Exhausted> {
    v.try_reserve_exact(additional).map_err(|_| Exhausted {
        needed: (additional as u64).saturating_mul(core::mem::size_of::<T>() as u64),
        free: free(),
    })
}

#[cfg(target_os = "none")]
/// A zeroed buffer of `len` bytes, or [`Exhausted`]: for buffers whose size
/// a guest chooses (hypercall arguments and results).
pub fn zeroed(len: usize) -> Result<Vec<u8>, Exhausted> {
    let mut v = Vec::new();
    reserve(&mut v, len)?;
    v.resize(len, 0);
    Ok(v)
}
