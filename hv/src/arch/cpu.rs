//! Control registers, MSRs, the TSC and stopping the CPU.

use core::arch::asm;

use hvlu_types::canonical::is_lower_half;
use pv_abi::exit::{Outcome, DEBUG_EXIT_PORT};

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc reads a counter and has no other effect.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Reads CR2, the faulting address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reads CR3, the physical address of the current top-level page table.
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

const FS_BASE: u32 = 0xc000_0100;
const GS_BASE: u32 = 0xc000_0101;

/// Loads a guest's FS and GS bases (the hypervisor itself uses neither).
pub fn set_guest_segment_bases(fs: u64, gs: u64) {
    // Non-canonical values would fault on wrmsr: the hypercall only accepts
    // lower-half addresses, and so does this function.
    let fs = if is_lower_half(fs) { fs } else { 0 };
    let gs = if is_lower_half(gs) { gs } else { 0 };
    // SAFETY: FS_BASE and GS_BASE exist on every x86_64 CPU; canonical
    // values (checked) are valid; the hypervisor does not use FS or GS.
    unsafe {
        wrmsr(FS_BASE, fs);
        wrmsr(GS_BASE, gs);
    }
}

/// Disables interrupts and halts forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt stops this CPU; nothing is touched.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Ends the run: reports `outcome` to QEMU's debug-exit device and halts in
/// case there is none (outside QEMU).
pub fn exit(outcome: Outcome) -> ! {
    // SAFETY: the debug-exit port belongs to the hypervisor; the write ends
    // the virtual machine and touches no memory.
    unsafe { super::port::outl(DEBUG_EXIT_PORT, outcome as u32) };
    halt_forever()
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (reading an absent MSR raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: the caller guarantees the MSR exists; rdmsr touches no memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it; the caller owns
/// whatever the MSR controls.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags))
    }
}
