//! The hvlu reference hypervisor.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask` and booted by QEMU
//! through the PVH entry (see `arch::boot`).

#![no_std]
#![no_main]

mod arch;
mod console;

use core::panic::PanicInfo;

use pv_abi::exit::Outcome;

/// The first Rust code: called by the PVH boot stub in long mode, in the
/// upper half, on the boot stack, with the physical address of the PVH
/// start-info structure.
#[no_mangle]
pub extern "C" fn hv_entry64(start_info: u64) -> ! {
    console::init();
    hvprintln!("hvlu hypervisor starting, start_info at {start_info:#x}");
    arch::cpu::exit(Outcome::Pass)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    hvprintln!("PANIC: {info}");
    arch::cpu::exit(Outcome::Panic)
}
