//! The hvlu reference hypervisor.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask`. Booting it in QEMU is the
//! subject of issue #3; until then this image does nothing, and `cargo xtask
//! run` says so instead of booting it.

#![no_std]
#![no_main]

use core::panic::PanicInfo;

/// The entry point the linker looks for. The PVH boot path replaces it.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_info: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
