//! The legacy timer: the 8254 PIT on IRQ 0 through the 8259 PIC, remapped
//! to vector 32; and TSC calibration against the PIT.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

use super::cpu::rdtsc;

/// Vector of the timer interrupt (PIC line 0 after remapping).
pub const TIMER_VECTOR: u64 = 32;
/// First vector of the remapped PIC.
pub const PIC_BASE: u8 = 32;

const PIT_HZ: u64 = 1_193_182;

/// The ports of the PIT and of the two PICs.
#[derive(Clone, Copy, Debug)]
enum Reg {
    PitCh0 = 0x40,
    PitCmd = 0x43,
    Pic1Cmd = 0x20,
    Pic1Data = 0x21,
    Pic2Cmd = 0xa0,
    Pic2Data = 0xa1,
}

/// Writes a port of the PIT or a PIC.
fn write(reg: Reg, value: u8) {
    // SAFETY: the PIT and the PICs belong to the hypervisor and only this
    // module reaches their ports. Neither device has access to memory: a
    // wrong value can only misprogram the timer or the interrupt lines,
    // whose vectors all reach `trap`'s stubs or fault there.
    unsafe { Port::<u8>::new(reg as u16).write(value) }
}

/// Reads a port of the PIT or a PIC.
fn read(reg: Reg) -> u8 {
    // SAFETY: as for `write`; a read has no effect beyond the device.
    unsafe { Port::<u8>::new(reg as u16).read() }
}

fn pit_read_ch0() -> u16 {
    // Latch the count of channel 0, then read it low byte first.
    write(Reg::PitCmd, 0x00);
    let lo = read(Reg::PitCh0);
    let hi = read(Reg::PitCh0);
    u16::from_le_bytes([lo, hi])
}

/// Measures the TSC frequency in kHz against the PIT (about 20 ms).
pub fn calibrate_tsc_khz() -> u64 {
    // Channel 0, lobyte/hibyte, mode 2 (rate generator), count 0 = 65536:
    // a free-running counter.
    write(Reg::PitCmd, 0x34);
    write(Reg::PitCh0, 0);
    write(Reg::PitCh0, 0);
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
    // The standard ICW1-4 initialisation sequence, then a mask.
    write(Reg::Pic1Cmd, 0x11);
    write(Reg::Pic2Cmd, 0x11);
    write(Reg::Pic1Data, PIC_BASE);
    write(Reg::Pic2Data, PIC_BASE + 8);
    write(Reg::Pic1Data, 4);
    write(Reg::Pic2Data, 2);
    write(Reg::Pic1Data, 1);
    write(Reg::Pic2Data, 1);
    write(Reg::Pic1Data, 0xfe); // only IRQ 0
    write(Reg::Pic2Data, 0xff);
    periodic(hz);
}

/// Set while channel 0 counts down one short turn ([`one_shot`]) instead
/// of the periodic tick.
static ONE_SHOT: AtomicBool = AtomicBool::new(false);

/// Makes channel 0 (the tick's) interrupt once, `us` microseconds from now (at most
/// 54 ms, at least one PIT period), instead of periodically: the end of a
/// short turn. [`periodic`] goes back to the tick.
pub fn one_shot(us: u64) {
    let count = (us * PIT_HZ / 1_000_000).clamp(1, 65535) as u16;
    ONE_SHOT.store(true, Ordering::Relaxed);
    // Channel 0, lobyte/hibyte, mode 0 (interrupt on terminal count): the
    // count starts when its high byte is written.
    write(Reg::PitCmd, 0x30);
    write(Reg::PitCh0, count as u8);
    write(Reg::PitCh0, (count >> 8) as u8);
}

/// Channel 0 back to `hz` interrupts per second after [`one_shot`] (the
/// first a whole period from now).
pub fn periodic(hz: u32) {
    let divisor = (PIT_HZ / u64::from(hz.max(19))).min(65535) as u16;
    // Channel 0, lobyte/hibyte, mode 2 (rate generator).
    write(Reg::PitCmd, 0x34);
    write(Reg::PitCh0, divisor as u8);
    write(Reg::PitCh0, (divisor >> 8) as u8);
    ONE_SHOT.store(false, Ordering::Relaxed);
}

/// Whether channel 0 is counting down a short turn: its interrupt ends
/// the turn and is not a tick.
pub fn one_shot_armed() -> bool {
    ONE_SHOT.load(Ordering::Relaxed)
}

/// Whether `vector` is a spurious interrupt (PIC line 7 or 15, or the local
/// APIC's spurious vector, which is line 15's): those get no EOI.
pub fn is_spurious(vector: u64) -> bool {
    vector == u64::from(PIC_BASE) + 7 || vector == u64::from(PIC_BASE) + 15
}

/// Acknowledges an interrupt from PIC line `vector - 32`.
pub fn eoi(vector: u64) {
    // An end-of-interrupt command to the PIC that raised `vector` (and to
    // the first, which the second is chained to).
    if vector >= u64::from(PIC_BASE) + 8 {
        write(Reg::Pic2Cmd, 0x20);
    }
    write(Reg::Pic1Cmd, 0x20);
}
