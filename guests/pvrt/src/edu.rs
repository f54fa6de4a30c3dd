//! QEMU's `edu` device (PCI 1234:11e8; QEMU's `docs/specs/edu.rst`)
//! through a page of the guest's remapping window: its BAR 0 mapped
//! uncacheable with `mmu_update`, and one check of it — the identification
//! register, the liveness register with a fresh value, a factorial of a
//! fresh small number — shared by dom0 (`edu`, `edu watch`) and a driver
//! domU (`edu=ADDR`).
//!
//! The registers used (32-bit accesses only: the device takes no other
//! size below offset 0x80):
//!
//! | offset | register |
//! |---|---|
//! | 0x00 | identification, `0xRRrr00ed` (major, minor version) |
//! | 0x04 | liveness: reads the complement of what was written |
//! | 0x08 | factorial: write n, read n! once the status says it is done |
//! | 0x20 | status: bit 0 "computing" (read-only), bit 7 "interrupt when done" |

use core::fmt;

use hvlu_types::pte::{CACHE_DISABLE, NO_EXECUTE, PRESENT, USER, WRITABLE, WRITE_THROUGH};
use hvlu_types::{pte::Pte, Mfn};
use pv_abi::hypercall::{DeviceInfo, MmuUpdate, BAR_IO, BAR_PRESENT};

use crate::hc::{self, HcResult};
use crate::{mem, start_info};

/// The device's vendor id.
pub const VENDOR: u16 = 0x1234;
/// The device's device id.
pub const DEVICE: u16 = 0x11e8;

const ID: u64 = 0x00;
const LIVENESS: u64 = 0x04;
const FACTORIAL: u64 = 0x08;
const STATUS: u64 = 0x20;
/// Status: the factorial unit is computing.
const COMPUTING: u32 = 0x01;
/// Status reads before a factorial that never finishes is a failure (each
/// read is one exit to the device model; a yield every 256).
const POLLS: u32 = 1 << 20;

/// A writable user mapping of device memory, uncacheable: PCD and PWT set,
/// PAT clear (PAT entry 3, UC), as the hypervisor requires.
pub const UNCACHEABLE: u64 = PRESENT | WRITABLE | USER | NO_EXECUTE | WRITE_THROUGH | CACHE_DISABLE;
/// The same mapping write-back (cacheable): the hypervisor must refuse it.
pub const CACHEABLE: u64 = PRESENT | WRITABLE | USER | NO_EXECUTE;

/// The first edu function of `devices` and its BAR 0's base, if there is
/// one with a memory BAR 0.
pub fn find(devices: &[DeviceInfo]) -> Option<(&DeviceInfo, u64)> {
    devices.iter().find_map(|d| {
        let bar = d.bars[0];
        let memory = bar.flags & BAR_PRESENT != 0 && bar.flags & BAR_IO == 0;
        (d.vendor == VENDOR && d.device == DEVICE && memory && bar.base != 0)
            .then_some((d, bar.base))
    })
}

/// Writes window slot `slot`'s L1 entry to map frame `mfn` with `flags`
/// (0: unmaps it).
pub fn map(slot: u64, mfn: u64, flags: u64) -> HcResult {
    let req = MmuUpdate {
        ptr: start_info().window_pte_maddr + 8 * slot,
        val: if flags == 0 {
            0
        } else {
            Pte::new(Mfn(mfn), flags).0
        },
    };
    hc::mmu_update(&[req])
}

/// What one check saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The identification register.
    pub id: u32,
    /// What was written to the liveness register.
    pub written: u32,
    /// What it read back (its complement).
    pub inverted: u32,
    /// The number whose factorial was asked for.
    pub n: u32,
    /// The factorial the device computed.
    pub factorial: u32,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "id {:#010x} (version {}.{}), liveness {:#010x} -> {:#010x}, {}! = {}",
            self.id,
            self.id >> 24,
            (self.id >> 16) & 0xff,
            self.written,
            self.inverted,
            self.n,
            self.factorial
        )
    }
}

/// Why a check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The identification register is not `0xRRrr00ed`.
    Id(u32),
    /// The liveness register did not read the complement.
    Liveness {
        /// Written.
        written: u32,
        /// Read back.
        read: u32,
    },
    /// The factorial unit stayed busy.
    Busy {
        /// The number asked for (0: busy before it was asked).
        n: u32,
    },
    /// A wrong factorial.
    Factorial {
        /// The number.
        n: u32,
        /// What the device gave.
        got: u32,
        /// What it is.
        want: u32,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::Id(id) => write!(f, "identification {id:#010x} is not 0xRRrr00ed"),
            Failure::Liveness { written, read } => write!(
                f,
                "liveness: wrote {written:#010x}, read {read:#010x}, not its complement"
            ),
            Failure::Busy { n } => write!(
                f,
                "the factorial unit stayed busy for {POLLS} status reads (n = {n})"
            ),
            Failure::Factorial { n, got, want } => {
                write!(f, "{n}! read as {got}, it is {want}")
            }
        }
    }
}

/// n! in 32 bits (exact up to 12!).
pub fn factorial(n: u32) -> u32 {
    (1..=n).fold(1u32, u32::wrapping_mul)
}

/// Waits until the factorial unit is idle.
fn idle(slot: u64) -> bool {
    for i in 0..POLLS {
        if mem::window_read_u32(slot, STATUS) & COMPUTING == 0 {
            return true;
        }
        if i % 256 == 255 {
            hc::yield_now();
        }
    }
    false
}

/// One check of the device mapped at window slot `slot`, with values taken
/// from `fresh` (a different one each time): the identification register,
/// the liveness register, and the factorial of a number from 1 to 12.
pub fn check(slot: u64, fresh: u64) -> Result<Check, Failure> {
    let id = mem::window_read_u32(slot, ID);
    if id & 0xffff != 0x00ed {
        return Err(Failure::Id(id));
    }
    let written = (fresh as u32).wrapping_mul(0x9e37_79b1) ^ (fresh >> 32) as u32;
    mem::window_write_u32(slot, LIVENESS, written);
    let inverted = mem::window_read_u32(slot, LIVENESS);
    if inverted != !written {
        return Err(Failure::Liveness {
            written,
            read: inverted,
        });
    }
    let n = 1 + (fresh % 12) as u32;
    if !idle(slot) {
        return Err(Failure::Busy { n: 0 });
    }
    // No interrupt when done: nothing here would take it.
    mem::window_write_u32(slot, STATUS, 0);
    mem::window_write_u32(slot, FACTORIAL, n);
    if !idle(slot) {
        return Err(Failure::Busy { n });
    }
    let got = mem::window_read_u32(slot, FACTORIAL);
    let want = factorial(n);
    if got != want {
        return Err(Failure::Factorial { n, got, want });
    }
    Ok(Check {
        id,
        written,
        inverted,
        n,
        factorial: got,
    })
}
