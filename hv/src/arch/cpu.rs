//! Control registers, MSRs, the TSC and stopping the CPU.

use hvlu_types::canonical::is_lower_half;
use pv_abi::exit::{Outcome, DEBUG_EXIT_PORT};
use x86_64::instructions::port::PortWriteOnly;
use x86_64::instructions::{hlt, interrupts};
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::registers::model_specific::{FsBase, GsBase};
use x86_64::VirtAddr;

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads a counter and has no other effect; every x86_64
    // CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether the CPU maps 1 GiB pages (CPUID 0x8000_0001 EDX bit 26,
/// `Page1GB`).
pub fn has_gib_pages() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// Reads CR2, the faulting address of the last page fault.
pub fn cr2() -> u64 {
    Cr2::read_raw()
}

/// Reads CR3: the physical address of the current top-level page table
/// and the flag bits below it.
pub fn cr3() -> u64 {
    let (root, flags) = Cr3::read_raw();
    root.start_address().as_u64() | u64::from(flags)
}

/// Loads a guest's FS and GS bases (the hypervisor itself uses neither).
pub fn set_guest_segment_bases(fs: u64, gs: u64) {
    // Non-canonical values would fault on wrmsr: the hypercall only accepts
    // lower-half addresses, and so does this function.
    let lower_half = |base: u64| VirtAddr::new(if is_lower_half(base) { base } else { 0 });
    FsBase::write(lower_half(fs));
    GsBase::write(lower_half(gs));
}

/// Disables interrupts and halts forever.
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        hlt();
    }
}

/// Ends the run: reports `outcome` to QEMU's debug-exit device and halts in
/// case there is none (outside QEMU).
pub fn exit(outcome: Outcome) -> ! {
    // SAFETY: the debug-exit port belongs to the hypervisor; the write ends
    // the virtual machine and touches no memory.
    unsafe { PortWriteOnly::<u32>::new(DEBUG_EXIT_PORT).write(outcome as u32) };
    halt_forever()
}

/// Sets the TSC (IA32_TSC, MSR 0x10) to `value`; returns what it reads
/// right after (a CPU, or an emulator, that ignores the write shows it).
pub fn set_tsc(value: u64) -> u64 {
    // SAFETY: IA32_TSC exists on every x86-64 CPU; writing it moves the
    // clock every reader of the TSC sees and touches no memory. It is
    // written once, before any guest or timer reads it.
    unsafe { x86_64::registers::model_specific::Msr::new(0x10).write(value) };
    rdtsc()
}

/// Resets the machine: an exception with an IDT of limit 0 is a triple
/// fault, which every x86 machine answers with a reset (QEMU's
/// `-no-reboot` turns it into an exit).
pub fn reset() -> ! {
    interrupts::disable();
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::new(0),
    };
    // SAFETY: loading an empty IDT and raising an exception is meant to
    // end the machine: no handler runs, no memory is written.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    halt_forever()
}
