//! The architecture layer: every `unsafe` of the hypervisor lives here.
//!
//! Port I/O, control registers and MSRs, descriptor tables (these through
//! the `x86_64` crate's types and instructions), the stacks and their guard
//! pages, the boot path, physical memory access, PCI configuration space
//! (ECAM), the virtio-mmio transports and the memory their device writes
//! (`virtio`), page-table switches and the live-update jump, the exported
//! entry symbols and ELF note (`start`), and the test-only self-test
//! triggers (`selftest`). Everything above this
//! layer is safe Rust over the functions it exports: the crate root denies
//! `unsafe_code` and allows it for this module alone.

use core::sync::atomic::{AtomicU64, Ordering};

mod boot;
pub mod cpu;
pub mod fwcfg;
pub mod gdt;
pub mod kexec;
pub mod lapic;
pub mod paging;
pub mod pci;
pub mod phys;
pub mod selftest;
pub mod serial;
pub mod stack;
pub mod svm;
mod start;
pub use start::build_id;
pub mod timer;
pub mod trap;
pub mod virtio;
pub mod watchdog;

/// Where the image is linked: upper-half virtual = this + physical link
/// address (see `hv/linker.ld`).
pub const KERNEL_VBASE: u64 = 0xffff_ffff_8000_0000;

/// Physical address the image actually sits at minus the address it was
/// linked for: 0 on a cold boot.
static PHYS_SHIFT: AtomicU64 = AtomicU64::new(0);

extern "C" {
    static __image_start_phys: u8;
    static __image_end_phys: u8;
}

/// The physical range `[start, end)` the running image occupies.
pub fn image_range() -> (u64, u64) {
    let shift = PHYS_SHIFT.load(Ordering::Relaxed);
    // Only the addresses of the linker-defined symbols are taken.
    let (start, end) = (
        core::ptr::addr_of!(__image_start_phys) as u64,
        core::ptr::addr_of!(__image_end_phys) as u64,
    );
    (start.wrapping_add(shift), end.wrapping_add(shift))
}

/// Records where this image actually sits (the incoming side of a live
/// update): `image_phys` is the physical address of its first byte.
pub fn set_image_phys(image_phys: u64) {
    let linked = core::ptr::addr_of!(__image_start_phys) as u64;
    PHYS_SHIFT.store(image_phys.wrapping_sub(linked), Ordering::Relaxed);
}

/// The physical address of an object of the image (code, data, bss).
pub fn kernel_virt_to_phys(vaddr: u64) -> u64 {
    vaddr
        .wrapping_sub(KERNEL_VBASE)
        .wrapping_add(PHYS_SHIFT.load(Ordering::Relaxed))
}
