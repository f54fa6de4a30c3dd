//! The hvlu reference hypervisor.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask` (the image is the
//! binary `src/bin/hv.rs`, which is this library linked with
//! `hv/linker.ld`) and booted by QEMU through the PVH entry (see
//! `arch::boot`), which calls [`cold_boot`]; an older hypervisor's live
//! update enters through `arch::kexec`, which calls [`lu_boot`]. Both build
//! an `hv::Hv` and `hv::Hv::start` it.
//!
//! Every `unsafe` is in `arch` (`#![deny(unsafe_code)]` below enforces it):
//! the rest of the hypervisor is safe Rust over the functions it exports.
//!
//! On the host (`cargo test -p hv`) the library is its hardware-independent
//! part alone: the command line ([`cmdline`]), the page allocator
//! ([`mm::pages`]), a domain's frame space ([`domain::p2m`]), the domain
//! builder over a memory it is given ([`domain::builder`]), the work
//! left for after a live update's resume ([`deferred`]), the PCI walk
//! over a configuration space it is given ([`pci`]), the I/O memory
//! permission's ranges ([`iomem`]) and the virtio-serial driver of the
//! host link over a transport and memory it is given ([`virtio`]).
//! Everything that
//! reaches the hardware, and every module that needs it, is compiled for
//! the bare-metal target only (`#[cfg(target_os = "none")]`).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

/// Items of the bare-metal image only: each gets
/// `#[cfg(target_os = "none")]`.
macro_rules! bare_metal {
    ($($item:item)*) => {
        $(
            #[cfg(target_os = "none")]
            $item
        )*
    };
}

pub mod cmdline;
pub mod deferred;
pub mod domain;
pub mod insn;
pub mod iomem;
pub mod mm;
pub mod pci;
pub mod virtio;

// Outside `bare_metal!`: it exports `hvprintln!`, which a macro-expanded
// module could not.
#[cfg(target_os = "none")]
mod console;

bare_metal! {
    #[allow(unsafe_code)]
    mod arch;
    mod boot_info;
    mod build_id;
    mod devices;
    mod guest_mem;
    mod hostlink;
    mod hv;
    mod hvm;
    mod hypercall;
    mod lu;
    mod mmu;
    mod modules;
    mod sched;
    mod settle;
    mod trap;

    use core::panic::PanicInfo;
    use pv_abi::exit::Outcome;
}

/// A cold boot: called by the PVH entry (`arch::start`) on the boot stack,
/// in the upper half, with the physical address of the PVH start-info
/// structure.
#[cfg(target_os = "none")]
pub fn cold_boot(start_info: u64) -> ! {
    let boot_tsc = arch::cpu::rdtsc();
    // How deep the boot goes on the boot stack: its guard page is mapped
    // until the hypervisor's own tables are loaded.
    let depth = arch::stack::Depth::start();
    console::init();
    hvprintln!("hvlu hypervisor starting, start_info at {start_info:#x}");
    arch::gdt::init();
    let (image_start, image_end) = arch::image_range();
    arch::phys::set_image_range(image_start, image_end);
    let info = match boot_info::BootInfo::from_pvh(start_info) {
        Ok(info) => info,
        Err(e) => fatal(format_args!("cannot read the PVH start info: {e}")),
    };
    let options = match cmdline::Options::parse(info.cmdline()) {
        Ok(options) => options,
        Err(e) => fatal(format_args!("bad command line `{}`: {e}", info.cmdline())),
    };
    for e in info.memmap() {
        hvprintln!(
            "  memory {:#012x}-{:#012x} type {}",
            e.addr,
            e.end(),
            e.kind
        );
    }
    // An update that armed the watchdog and never confirmed: the machine
    // reset after its jump. The way back resumes its guests from the state
    // still in the region, before anything here is allocated; it never
    // returns (on failure it resets the machine, which then boots cold).
    let damaged = match lu::read_marker() {
        Ok(Some(marker)) => lu::incoming::roll_back(marker, start_info, boot_tsc, depth),
        Ok(None) => None,
        Err(e) => {
            hvprintln!(
                "lu: a damaged update marker at {:#x} ({e}): cold boot",
                cmdline::UPDATE_MARKER_PHYS
            );
            lu::clear_marker();
            Some(e)
        }
    };
    let region = match mm::choose_region(&info, options.lu_region) {
        Ok(region) => region,
        Err(e) => fatal(format_args!("no live-update region: {e}")),
    };
    let memory = match cold_memory(&info, region) {
        Ok(memory) => memory,
        Err(e) => fatal(format_args!("memory setup failed: {e}")),
    };
    if let Some(depth) = depth {
        if depth.exhausted() {
            fatal(format_args!(
                "the boot stack overflowed before its guard page was unmapped"
            ));
        }
        hvprintln!(
            "boot: at most {} KiB of the {} KiB {} stack",
            depth.deepest() >> 10,
            arch::stack::STACK_SIZE >> 10,
            depth.stack().name()
        );
    }
    hvprintln!(
        "live-update region {:#x}-{:#x} ({} MiB), capacity {} KiB, boot allocations {} KiB (heap {} KiB)",
        region.start,
        region.end(),
        region.size >> 20,
        memory.handoff.largest_free_gap().map_or(0, |g| g.size) >> 10,
        memory.handoff.used_bytes() >> 10,
        mm::heap::stats().size >> 10
    );
    let tsc_khz = arch::timer::calibrate_tsc_khz();
    let modules = modules::discover();
    hvprintln!(
        "free frames {}, TSC {} kHz, modules: {}",
        memory.free_frames(),
        tsc_khz,
        modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<alloc::vec::Vec<_>>()
            .join(" ")
    );
    // Every memory-map entry, RAM or not, is address space no BAR may take.
    let taken: alloc::vec::Vec<hvlu_types::PhysRange> = info
        .memmap()
        .iter()
        .map(|e| hvlu_types::PhysRange::new(e.addr, e.size))
        .collect();
    let walk = devices::discover(
        pci::Mode::Assign {
            window: devices::window(),
        },
        &taken,
        tsc_khz,
    );
    walk.print();
    let mut hv = hv::Hv::new(memory, info.cmdline(), options, modules, tsc_khz, boot_tsc);
    // At most `boot_info::MAX_MEMMAP` entries: within what the call gives.
    hv.machine_map = info
        .memmap()
        .iter()
        .map(|e| pv_abi::hypercall::MemoryMapEntry {
            base: e.addr,
            size: e.size,
            kind: e.kind,
            reserved: 0,
        })
        .collect();
    hv.devices = walk.devices;
    if let Some(e) = damaged {
        hv.lu.message = alloc::format!("a damaged update marker ({e}); cold boot");
    }
    if let Some(why) = lu::take_failed_way_back() {
        hvprintln!("lu: {why}: this is the cold boot after it");
        hv.lu.message = why;
    }
    let dom0_cmdline = alloc::format!(
        "autostart={}",
        cmdline::value(info.cmdline(), "autostart").unwrap_or("")
    );
    if let Err(e) = hv.create_domain(
        "dom0",
        domain::DOM0_KIB,
        &dom0_cmdline,
        true,
        hvlu_types::hole::Hole::DEFAULT,
    ) {
        fatal(format_args!("cannot create dom0: {}", e.name()));
    }
    hvprintln!(
        "boot done in {} ms: starting dom0",
        arch::cpu::rdtsc().saturating_sub(boot_tsc) / tsc_khz.max(1)
    );
    match hv.start() {
        Ok(never) => match never {},
        Err(hv::StartError::NoVcpu) => fatal(format_args!("dom0 has no vCPU")),
        Err(hv::StartError::Root { error, .. }) => {
            fatal(format_args!("cannot load dom0's page tables: {error}"))
        }
    }
}

/// Memory on a cold boot: the boot's steps (`new_hv::boot::Boot`: heap,
/// page tables, frametable) from the region, in the order and sizes an
/// incoming image takes them, then every other RAM frame to the page
/// allocator.
#[cfg(target_os = "none")]
fn cold_memory(
    info: &boot_info::BootInfo,
    region: boot_allocator::PhysRange,
) -> Result<mm::Memory, mm::MemError> {
    // No heap yet: the RAM ranges go into a fixed array first.
    let mut fixed = [hvlu_types::MfnRange::default(); boot_info::MAX_MEMMAP];
    let mut n = 0;
    for (slot, range) in fixed.iter_mut().zip(mm::ram_ranges(info)) {
        *slot = range;
        n += 1;
    }
    let ram = &fixed[..n];
    let ram_end = ram.iter().map(|r| r.end()).max().unwrap_or(0) * hvlu_types::PAGE_SIZE;
    let mut boot = new_hv::boot::Boot::cold(region).map_err(new_hv::boot::StepError::from)?;
    let mut steps = mm::BootSteps::default();
    // The heap first, sized from the end of RAM (as an incoming image
    // sizes it from its argument page): the rest is sized with it.
    boot.heap_on(&mut steps, new_hv::boot::heap_pages(ram_end))?;
    let (image_start, image_end) = arch::image_range();
    let needs = new_hv::boot::needs(ram, image_end - image_start);
    boot.tables_on(&mut steps, &needs, ram)?;
    let mut memory = steps.into_memory(
        ram.to_vec(),
        region,
        mm::reserved_ranges(region),
        boot.finish(),
        needs.frames,
        frame_ownership::lazy::Unsettled::none(),
    )?;
    let free = {
        let parts = memory.parts();
        frame_ownership::free_ranges::<(hvlu_types::Mfn, handover_abi::RunKind), hvlu_types::Mfn>(
            &parts.layout,
            &[],
        )
    };
    memory.release(&free);
    Ok(memory)
}

/// Stops the hypervisor with a diagnostic.
#[cfg(target_os = "none")]
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    hvprintln!("FATAL: {args}");
    arch::cpu::exit(Outcome::Fail)
}

/// A boot by live update: called by the live-update entry (`arch::start`)
/// on the boot stack with the physical address of the entry argument page.
#[cfg(target_os = "none")]
pub fn lu_boot(args_phys: u64) -> ! {
    lu::incoming::enter(args_phys)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // Without the console's lock: the panic may have happened while it was
    // held (single CPU, interrupts off: nothing else writes meanwhile).
    let _ = core::fmt::Write::write_fmt(&mut console::Serial, format_args!("(hv) PANIC: {info}\n"));
    arch::cpu::exit(Outcome::Panic)
}
