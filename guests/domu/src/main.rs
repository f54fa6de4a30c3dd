//! A PV guest of the hvlu reference hypervisor. Filled in by issue #3.

#![no_std]
#![no_main]

use core::panic::PanicInfo;

/// The guest entry point.
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
