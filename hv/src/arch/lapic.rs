//! The local APIC: only what it takes for the legacy PIC's interrupts to
//! reach the CPU. Firmware (qboot) leaves LINT0 masked and the APIC
//! software-disabled; we enable it and route LINT0 as ExtINT (virtual-wire
//! mode), so the 8259's timer interrupt arrives as before.

use handover_abi::entry::DIRECT_MAP_BASE;

/// Physical address of the local APIC's registers.
pub const LAPIC_PHYS: u64 = 0xfee0_0000;

const SVR: u64 = 0xf0;
const LVT_LINT0: u64 = 0x350;
const LVT_LINT1: u64 = 0x360;

/// The spurious-interrupt vector: the last PIC stub, so it has a handler.
pub const SPURIOUS_VECTOR: u32 = 47;

fn write(reg: u64, value: u32) {
    // SAFETY: the hypervisor's page tables map the APIC page uncached at
    // this direct-map address (`paging::build_and_load`); these are 32-bit
    // register writes the APIC defines. Call only after those tables are
    // loaded.
    unsafe { core::ptr::write_volatile((DIRECT_MAP_BASE + LAPIC_PHYS + reg) as *mut u32, value) }
}

/// Enables the APIC in virtual-wire mode: LINT0 ExtINT, LINT1 NMI.
pub fn init_virtual_wire() {
    write(SVR, 0x100 | SPURIOUS_VECTOR);
    write(LVT_LINT0, 0x700);
    write(LVT_LINT1, 0x400);
}
