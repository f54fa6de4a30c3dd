//! The legacy timer: the 8254 PIT on IRQ 0 through the 8259 PIC, remapped
//! to vector 32; and TSC calibration against the PIT.

use super::cpu::rdtsc;
use super::port::{inb, outb};

/// Vector of the timer interrupt (PIC line 0 after remapping).
pub const TIMER_VECTOR: u64 = 32;
/// First vector of the remapped PIC.
pub const PIC_BASE: u8 = 32;

const PIT_HZ: u64 = 1_193_182;
const PIT_CH0: u16 = 0x40;
const PIT_CMD: u16 = 0x43;
const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;

fn pit_read_ch0() -> u16 {
    // SAFETY: the PIT belongs to the hypervisor; latching and reading the
    // count of channel 0 has no other effect.
    unsafe {
        outb(PIT_CMD, 0x00);
        let lo = inb(PIT_CH0);
        let hi = inb(PIT_CH0);
        u16::from_le_bytes([lo, hi])
    }
}

/// Measures the TSC frequency in kHz against the PIT (about 20 ms).
pub fn calibrate_tsc_khz() -> u64 {
    // SAFETY: the PIT belongs to the hypervisor. Channel 0, lobyte/hibyte,
    // mode 2 (rate generator), count 0 = 65536: a free-running counter.
    unsafe {
        outb(PIT_CMD, 0x34);
        outb(PIT_CH0, 0);
        outb(PIT_CH0, 0);
    }
    // Count PIT ticks (1.193182 MHz) while the TSC runs, over ~20 ms.
    let target_ticks = PIT_HZ / 50;
    let mut elapsed: u64 = 0;
    let mut last = pit_read_ch0();
    let start = rdtsc();
    while elapsed < target_ticks {
        let now = pit_read_ch0();
        // The counter counts down and wraps at 65536.
        elapsed += u64::from(last.wrapping_sub(now));
        last = now;
    }
    let tsc = rdtsc() - start;
    tsc * PIT_HZ / elapsed / 1000
}

/// Remaps the PIC to vectors 32..48, masks every line but the timer and
/// starts the PIT at `hz` interrupts per second.
pub fn start(hz: u32) {
    let divisor = (PIT_HZ / u64::from(hz.max(19))).min(65535) as u16;
    // SAFETY: the PIC and PIT belong to the hypervisor; this is the
    // standard ICW1-4 initialisation sequence, then a mask and a PIT mode.
    unsafe {
        outb(PIC1_CMD, 0x11);
        outb(PIC2_CMD, 0x11);
        outb(PIC1_DATA, PIC_BASE);
        outb(PIC2_DATA, PIC_BASE + 8);
        outb(PIC1_DATA, 4);
        outb(PIC2_DATA, 2);
        outb(PIC1_DATA, 1);
        outb(PIC2_DATA, 1);
        outb(PIC1_DATA, 0xfe); // only IRQ 0
        outb(PIC2_DATA, 0xff);

        outb(PIT_CMD, 0x34);
        outb(PIT_CH0, divisor as u8);
        outb(PIT_CH0, (divisor >> 8) as u8);
    }
}

/// Whether `vector` is a spurious interrupt (PIC line 7 or 15, or the local
/// APIC's spurious vector, which is line 15's): those get no EOI.
pub fn is_spurious(vector: u64) -> bool {
    vector == u64::from(PIC_BASE) + 7 || vector == u64::from(PIC_BASE) + 15
}

/// Acknowledges an interrupt from PIC line `vector - 32`.
pub fn eoi(vector: u64) {
    // SAFETY: an end-of-interrupt command to the PIC that raised `vector`.
    unsafe {
        if vector >= u64::from(PIC_BASE) + 8 {
            outb(PIC2_CMD, 0x20);
        }
        outb(PIC1_CMD, 0x20);
    }
}
