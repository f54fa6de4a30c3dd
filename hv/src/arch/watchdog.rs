//! The hardware watchdog a live update arms right before its jump
//! (`old_hv::exec::go`) and the incoming image disarms before its guests
//! run (`new_hv::enter`): the ib700 on the ISA bus, which QEMU's `microvm`
//! machine takes (`-device ib700`).
//!
//! Its programming model (QEMU `hw/watchdog/wdt_ib700.c`): a write of `v`
//! to port 0x443 arms it, or re-arms it if it runs, for `(15 - v) * 2`
//! seconds — 30 s at most, in steps of 2 s, and at once for `v = 15`; any
//! write to port 0x441 disarms it. When it fires, QEMU's watchdog action
//! runs (a system reset by default, which `-no-reboot` turns into an exit).
//! An ISA device cannot be probed and the ib700 has no register to read:
//! the machine has one only if the command line says so
//! (`lu_watchdog=ib700:SECONDS`), and a write to ports no device decodes
//! does nothing.

use handover_abi::entry::{Watchdog, WatchdogDevice};
use x86_64::instructions::port::Port;

/// The ib700's disarm port.
const IB700_STOP: u16 = 0x441;
/// The ib700's arm port.
const IB700_START: u16 = 0x443;

/// The value that arms the ib700 for `seconds` (even, from 2 to 30, as
/// `crate::cmdline` takes them; rounded up to a step otherwise).
fn ib700_value(seconds: u32) -> u8 {
    let steps = seconds.clamp(2, 30).div_ceil(2);
    (15 - steps) as u8
}

/// Arms `w`: the machine resets when its deadline passes, unless
/// [`disarm`] runs first.
pub fn arm(w: Watchdog) {
    match w.device {
        WatchdogDevice::Ib700 => {
            let value = ib700_value(w.deadline_ms.div_ceil(1000));
            // SAFETY: port 0x443 is the ib700's (or decoded by nothing);
            // a write arms its timer and touches no memory.
            unsafe { Port::<u8>::new(IB700_START).write(value) }
        }
    }
}

/// Disarms `w`.
pub fn disarm(w: Watchdog) {
    match w.device {
        WatchdogDevice::Ib700 => {
            // SAFETY: port 0x441 is the ib700's (or decoded by nothing);
            // a write stops its timer and touches no memory.
            unsafe { Port::<u8>::new(IB700_STOP).write(0) }
        }
    }
}
