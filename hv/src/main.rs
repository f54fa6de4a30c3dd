//! The hvlu reference hypervisor.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask` and booted by QEMU
//! through the PVH entry (see `arch::boot`).

#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot_info;
mod cmdline;
mod console;
mod mm;
mod trap;

use core::panic::PanicInfo;

use pv_abi::exit::Outcome;

/// The first Rust code: called by the PVH boot stub in long mode, in the
/// upper half, on the boot stack, with the physical address of the PVH
/// start-info structure.
#[no_mangle]
pub extern "C" fn hv_entry64(start_info: u64) -> ! {
    console::init();
    hvprintln!("hvlu hypervisor starting, start_info at {start_info:#x}");
    arch::gdt::init();
    let (image_start, image_end) = arch::image_range();
    arch::phys::set_image_range(image_start, image_end);
    let info = match boot_info::BootInfo::from_pvh(start_info) {
        Ok(info) => info,
        Err(e) => fatal(format_args!("cannot read the PVH start info: {e:?}")),
    };
    let options = match cmdline::Options::parse(info.cmdline()) {
        Ok(options) => options,
        Err(e) => fatal(format_args!("bad command line `{}`: {e}", info.cmdline())),
    };
    for e in info.memmap() {
        hvprintln!("  memory {:#012x}-{:#012x} type {}", e.addr, e.end(), e.kind);
    }
    let region = match mm::choose_region(&info, options.lu_region) {
        Ok(region) => region,
        Err(e) => fatal(format_args!("no live-update region: {e:?}")),
    };
    let memory = match mm::init(&info, region, &[]) {
        Ok(memory) => memory,
        Err(e) => fatal(format_args!("memory setup failed: {e:?}")),
    };
    hvprintln!(
        "live-update region {:#x}-{:#x} ({} MiB), capacity {} KiB, boot allocations {} KiB",
        region.start,
        region.end(),
        region.size >> 20,
        memory.handoff.largest_free_gap().map_or(0, |g| g.size) >> 10,
        memory.handoff.used_bytes() >> 10
    );
    hvprintln!("free frames {}", memory.pages.free_frames());
    arch::cpu::exit(Outcome::Pass)
}

/// Stops the hypervisor with a diagnostic.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    hvprintln!("FATAL: {args}");
    arch::cpu::exit(Outcome::Fail)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    hvprintln!("PANIC: {info}");
    arch::cpu::exit(Outcome::Panic)
}
