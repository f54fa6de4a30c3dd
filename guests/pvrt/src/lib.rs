//! The runtime of hvlu PV guests.
//!
//! A guest is a ring-3 program started by the hypervisor's domain builder
//! with the layout of [`pv_abi::start_info`]. This crate gives it an entry
//! point ([`entry!`]), hypercalls with typed wrappers, a console, and
//! access to its own memory through the physmap. The few `unsafe` blocks
//! (the `syscall` instruction, the deliberately hostile probes, reading and
//! writing the mappings the builder made) are all here, each behind a safe
//! function: the guests themselves (`dom0`, `domu`) deny `unsafe_code`.
//!
//! The shared vocabulary (`hvlu_types`: page size, page-table entry bits,
//! canonical bounds) and the guest ABI (`pv_abi`) are re-exported, so a guest
//! depends on this crate alone.

#![no_std]

pub mod console;
pub mod edu;
pub mod gap;
pub mod hc;
pub mod hvm;
pub mod mem;
pub mod pattern;
pub mod probe;

pub use hvlu_types;
pub use pv_abi;

use pv_abi::start_info::{StartInfo, START_INFO_MAGIC, START_INFO_VA};

/// The start-info page.
pub fn start_info() -> &'static StartInfo {
    let va = if hvm::is_hvm() {
        pv_abi::start_info::HVM_START_INFO_GPA
    } else {
        START_INFO_VA
    };
    // SAFETY: the domain builder maps a `StartInfo` at START_INFO_VA (PV)
    // or writes it at HVM_START_INFO_GPA, which the HVM boot stub maps at
    // the same virtual address, before the guest starts, and nothing in the
    // guest writes it.
    let si = unsafe { &*(va as *const StartInfo) };
    if si.magic != START_INFO_MAGIC {
        hc::shutdown(2);
    }
    si
}

/// The command line from the start-info page.
pub fn cmdline() -> &'static str {
    let raw = &start_info().cmdline;
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    core::str::from_utf8(&raw[..len]).unwrap_or("")
}

/// Declares the guest's main function: `entry!(main)` with
/// `fn main() -> !`. Also defines the panic handler, which prints the panic
/// and shuts the domain down with code 1.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        #[link_section = ".text.entry"]
        pub extern "C" fn _start() -> ! {
            $main()
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::println!("panic: {}", info);
            $crate::hc::shutdown(1)
        }
    };
}
