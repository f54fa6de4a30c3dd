//! The guest's own memory, through the mappings the builder made.
//!
//! Pages at or above `first_free_gpfn` belong to the guest program; this
//! module is the only way it touches them (volatile word accesses by gpfn),
//! so no Rust reference ever aliases them. Page tables are readable (the
//! builder maps them read-only). The remapping window is accessed the same
//! way.
//!
//! A "gpfn" here is the guest's page number: its RAM index, which is the
//! gpfn below its PCI hole and skips the hole above it
//! (`pv_abi::start_info`); the physmap and the mfn list are dense by it.

use hvlu_types::PAGE_SIZE;
use pv_abi::start_info::{PHYSMAP_VA, WINDOW_PAGES};

/// Where the guest's pages are mapped, page `n` at `base + n × 4096`: the
/// physmap of a PV guest, the identity map of an HVM guest
/// (`crate::hvm`).
fn physmap() -> u64 {
    if crate::hvm::is_hvm() {
        0
    } else {
        PHYSMAP_VA
    }
}

use crate::start_info;

/// Words in a page.
pub const WORDS: usize = (PAGE_SIZE / 8) as usize;

/// The mfn of guest page `gpfn`.
pub fn mfn_of(gpfn: u64) -> u64 {
    let si = start_info();
    assert!(gpfn < si.nr_pages, "gpfn {gpfn} out of range");
    let list = PHYSMAP_VA + si.mfn_list_gpfn * PAGE_SIZE;
    // SAFETY: the builder maps the mfn list (nr_pages u64s) read-write in the
    // physmap and never changes it; the index is checked.
    unsafe { core::ptr::read_volatile((list as *const u64).wrapping_add(gpfn as usize)) }
}

fn free_page_ptr(gpfn: u64) -> *mut u64 {
    let si = start_info();
    assert!(
        gpfn >= si.first_free_gpfn && gpfn < si.nr_pages,
        "gpfn {gpfn} is not a free page of the guest"
    );
    (physmap() + gpfn * PAGE_SIZE) as *mut u64
}

/// Reads word `index` of free page `gpfn`.
pub fn read(gpfn: u64, index: usize) -> u64 {
    assert!(index < WORDS);
    // SAFETY: free pages are mapped read-write in the physmap (builder
    // contract) and only accessed through this module, word by word.
    unsafe { core::ptr::read_volatile(free_page_ptr(gpfn).wrapping_add(index)) }
}

/// Writes word `index` of free page `gpfn`.
pub fn write(gpfn: u64, index: usize, value: u64) {
    assert!(index < WORDS);
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(free_page_ptr(gpfn).wrapping_add(index), value) }
}

/// Reads word `index` of window page `page` (which must be mapped).
pub fn window_read(page: u64, index: usize) -> u64 {
    assert!(page < WINDOW_PAGES && index < WORDS);
    let va = start_info().window_va + page * PAGE_SIZE;
    // SAFETY: the caller mapped this window page through mmu_update; a
    // read of an unmapped page faults and ends the domain, nothing worse.
    unsafe { core::ptr::read_volatile((va as *const u64).wrapping_add(index)) }
}

/// Writes word `index` of window page `page` (which must be mapped writable).
pub fn window_write(page: u64, index: usize, value: u64) {
    assert!(page < WINDOW_PAGES && index < WORDS);
    let va = start_info().window_va + page * PAGE_SIZE;
    // SAFETY: as in `window_read`.
    unsafe { core::ptr::write_volatile((va as *mut u64).wrapping_add(index), value) }
}

/// The address of byte `offset` (4-byte aligned, in the page) of window
/// page `page`.
fn window_register(page: u64, offset: u64) -> *mut u32 {
    assert!(page < WINDOW_PAGES && offset < PAGE_SIZE && offset.is_multiple_of(4));
    (start_info().window_va + page * PAGE_SIZE + offset) as *mut u32
}

/// Reads the 32-bit register at byte `offset` of window page `page`, which
/// must be mapped (device memory: one 32-bit access, as devices such as
/// QEMU's `edu` require below their offset 0x80).
pub fn window_read_u32(page: u64, offset: u64) -> u32 {
    // SAFETY: as in `window_read`: the caller mapped the page; the address
    // is aligned and inside it (checked). A volatile access is one access.
    unsafe { core::ptr::read_volatile(window_register(page, offset)) }
}

/// Writes the 32-bit register at byte `offset` of window page `page`,
/// which must be mapped writable.
pub fn window_write_u32(page: u64, offset: u64, value: u32) {
    // SAFETY: as in `window_read_u32`.
    unsafe { core::ptr::write_volatile(window_register(page, offset), value) }
}

/// Reads entry `index` of the page-table page `gpfn` (mapped read-only).
pub fn read_pte(gpfn: u64, index: usize) -> u64 {
    let si = start_info();
    assert!(gpfn >= si.pt_first_gpfn && gpfn < si.pt_first_gpfn + si.pt_count && index < WORDS);
    // SAFETY: the builder maps page tables read-only in the physmap.
    unsafe {
        core::ptr::read_volatile(((physmap() + gpfn * PAGE_SIZE) as *const u64).wrapping_add(index))
    }
}

/// Reads a byte at any guest virtual address (used by fault tests).
pub fn read_byte_at(va: u64) -> u8 {
    // SAFETY: a read; if `va` is not mapped the domain takes a page fault,
    // which the hypervisor turns into the domain's end.
    unsafe { core::ptr::read_volatile(va as *const u8) }
}

/// The guest's free pages as one virtually contiguous area of the physmap:
/// `(virtual address, bytes)`.
pub fn free_area() -> (u64, u64) {
    let si = start_info();
    (
        physmap() + si.first_free_gpfn * PAGE_SIZE,
        (si.nr_pages - si.first_free_gpfn) * PAGE_SIZE,
    )
}

/// Writes `bytes` at byte `offset` of the free area.
pub fn free_area_write(offset: u64, bytes: &[u8]) {
    let (va, len) = free_area();
    assert!(
        offset
            .checked_add(bytes.len() as u64)
            .is_some_and(|end| end <= len),
        "beyond the free area"
    );
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: the free area is mapped read-write in the physmap (builder
        // contract), belongs to the guest program and is only accessed
        // through this module; the range is checked above.
        unsafe { core::ptr::write_volatile((va + offset + i as u64) as *mut u8, b) }
    }
}
