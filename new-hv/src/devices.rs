//! Devices: the machine's PCI devices as an image finds them, against what
//! the handover state recorded (`docs/abi.md` §2.5, `docs/invariants.md`
//! Invariants 26 and 27).
//!
//! Both roles use it. The outgoing side rescans the machine just before it
//! pauses anything and refuses the update if a device it recorded is gone
//! or changed ([`compare`], from `old_hv::exec`): the guests' MMIO
//! mappings and identity entries name those BARs. The incoming side
//! enumerates again and, before its frametable pass, [`adopt`]s what it
//! found: it compares with a 1.2 state's list, and gives a 1.0 or 1.1
//! state (which lists no device) the devices found and every privileged
//! domain its default access to them.
//!
//! A device found but not recorded changes nothing the guests see: it is
//! not a refusal.

use alloc::vec::Vec;
use core::fmt;

use hvlu_types::{Mfn, MfnRange, PAGE_SIZE};

use handover_abi::{AbiVersion, Bdf, DomainFlags, HandoverState, PciBar, PciDevice, StateError};

/// The first version whose state lists the devices.
const LISTS_DEVICES: AbiVersion = AbiVersion::new(1, 2);

/// A BAR as the messages show it: `0xfea00000+0x100000` and its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarText(pub PciBar);

impl fmt::Display for BarText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:#x}+{:#x}", b.base, b.size)?;
        match (
            b.flags & PciBar::MEM64 != 0,
            b.flags & PciBar::PREFETCHABLE != 0,
        ) {
            (false, false) => Ok(()),
            (true, false) => f.write_str(" (64-bit)"),
            (false, true) => f.write_str(" (prefetchable)"),
            (true, true) => f.write_str(" (64-bit, prefetchable)"),
        }?;
        let other = b.flags & !PciBar::KNOWN_FLAGS;
        if other != 0 {
            write!(f, " (flags {other:#x})")?;
        }
        Ok(())
    }
}

/// How a recorded device differs from what is found: the first difference,
/// in the recorded list's order (a device's ids before its BARs, its BARs
/// in its list's order, then a BAR found that was not recorded).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceChange {
    /// The device is not found.
    #[error("device {device} ({vendor:04x}:{id:04x}) was recorded but is gone")]
    Vanished {
        /// The device.
        device: Bdf,
        /// Its recorded vendor id.
        vendor: u16,
        /// Its recorded device id.
        id: u16,
    },
    /// Another function answers at the address: other ids or class.
    #[error("device {device} was {:04x}:{:04x} class {:06x}, it is now {:04x}:{:04x} class {:06x}", .recorded.0, .recorded.1, .recorded.2, .found.0, .found.1, .found.2)]
    Replaced {
        /// The device.
        device: Bdf,
        /// Recorded vendor, device and class.
        recorded: (u16, u16, u32),
        /// Found vendor, device and class.
        found: (u16, u16, u32),
    },
    /// A recorded BAR is no longer there.
    #[error("device {device} BAR {index} ({}) was recorded but is gone", BarText(*.recorded))]
    BarGone {
        /// The device.
        device: Bdf,
        /// The BAR register.
        index: u8,
        /// The BAR as recorded.
        recorded: PciBar,
    },
    /// A BAR's base, size or flags changed.
    #[error("device {device} BAR {index} moved: recorded at {}, found at {}", BarText(*.recorded), BarText(*.found))]
    BarMoved {
        /// The device.
        device: Bdf,
        /// The BAR register.
        index: u8,
        /// The BAR as recorded.
        recorded: PciBar,
        /// The BAR as found.
        found: PciBar,
    },
    /// A BAR is found that was not recorded (the device was reprogrammed).
    #[error("device {device} BAR {index} ({}) is found but was not recorded", BarText(*.found))]
    BarAppeared {
        /// The device.
        device: Bdf,
        /// The BAR register.
        index: u8,
        /// The BAR as found.
        found: PciBar,
    },
}

impl DeviceChange {
    /// The device that changed.
    pub fn device(&self) -> Bdf {
        match *self {
            DeviceChange::Vanished { device, .. }
            | DeviceChange::Replaced { device, .. }
            | DeviceChange::BarGone { device, .. }
            | DeviceChange::BarMoved { device, .. }
            | DeviceChange::BarAppeared { device, .. } => device,
        }
    }
}

/// Why the incoming image refuses the devices it found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A device the state recorded is gone or changed.
    #[error("{0}")]
    Changed(DeviceChange),
    /// The devices found, with the access a 1.0 or 1.1 state's privileged
    /// domains get to them, break a rule of the state (a BAR over RAM, a
    /// domain's MMIO range outside the device memory, …).
    #[error("the devices found do not fit the state: {0}")]
    Invalid(StateError),
}

/// Checks that every device of `recorded` is in `found` as it was: the
/// same vendor, device and class, the same BARs (register, base, size,
/// flags). A device found but not recorded is fine. O(n log n) in the
/// devices.
pub fn compare(recorded: &[PciDevice], found: &[PciDevice]) -> Result<(), DeviceChange> {
    let mut by_bdf: alloc::vec::Vec<&PciDevice> = found.iter().collect();
    by_bdf.sort_unstable_by_key(|d| d.bdf);
    for r in recorded {
        let device = r.address();
        let Ok(at) = by_bdf.binary_search_by_key(&r.bdf, |d| d.bdf) else {
            return Err(DeviceChange::Vanished {
                device,
                vendor: r.vendor,
                id: r.device,
            });
        };
        let f = by_bdf[at];
        if (r.vendor, r.device, r.class) != (f.vendor, f.device, f.class) {
            return Err(DeviceChange::Replaced {
                device,
                recorded: (r.vendor, r.device, r.class),
                found: (f.vendor, f.device, f.class),
            });
        }
        compare_bars(device, &r.bars, &f.bars)?;
    }
    Ok(())
}

/// The BARs of one device: each recorded one found unchanged, none found
/// that was not recorded. A device has at most six.
fn compare_bars(device: Bdf, recorded: &[PciBar], found: &[PciBar]) -> Result<(), DeviceChange> {
    for r in recorded {
        match found.iter().find(|f| f.index == r.index) {
            None => {
                return Err(DeviceChange::BarGone {
                    device,
                    index: r.index,
                    recorded: *r,
                })
            }
            Some(f) if f != r => {
                return Err(DeviceChange::BarMoved {
                    device,
                    index: r.index,
                    recorded: *r,
                    found: *f,
                })
            }
            Some(_) => {}
        }
    }
    match found
        .iter()
        .find(|f| !recorded.iter().any(|r| r.index == f.index))
    {
        Some(f) => Err(DeviceChange::BarAppeared {
            device,
            index: f.index,
            found: *f,
        }),
        None => Ok(()),
    }
}

/// Takes the devices `found` by this image into `state`, read from a blob
/// of version `read`, before the frametable pass:
///
/// - a state of 1.2 or later lists the devices the old image recorded:
///   each must be found unchanged ([`compare`]); the state is kept as it
///   is;
/// - a 1.0 or 1.1 state lists none: it gets `found`, and every privileged
///   domain the default access to it (all of its device memory, the part
///   in the domain's hole mapped there: what the state could not say and
///   the writer checked it had, `handover_abi::body` `expressible`); the
///   state is then checked again ([`HandoverState::validate`]), since the
///   found devices enter its rules.
pub fn adopt(
    state: &mut HandoverState,
    read: AbiVersion,
    found: &[PciDevice],
) -> Result<(), DeviceError> {
    if read >= LISTS_DEVICES {
        return compare(&state.devices, found).map_err(DeviceError::Changed);
    }
    state.devices = found.to_vec();
    let devices = &state.devices;
    for d in &mut state.domains {
        if d.flags.contains(DomainFlags::PRIVILEGED) {
            d.set_default_access(devices);
        }
    }
    state.validate().map_err(DeviceError::Invalid)
}

#[cfg(test)]
mod tests;

/// The device memory `state` records: the frames of each BAR of its
/// devices, one range per BAR, sorted (not merged: a platform that reads a
/// BAR's base looks for the range that starts there). Never a domain's
/// MMIO range: one granted from a BAR's base but shorter than the BAR
/// would pass for the BAR and shrink it. A state of 1.1 or older lists no
/// device (and the 1.0 and 1.1 releases write every MMIO range empty): the
/// platform sizes what it finds while nothing runs.
pub fn known(state: &HandoverState) -> Vec<MfnRange> {
    let mut known: Vec<MfnRange> = state
        .devices
        .iter()
        .flat_map(|d| d.bars.iter())
        .map(|b| MfnRange::new(Mfn(b.base / PAGE_SIZE), b.size.div_ceil(PAGE_SIZE)))
        .collect();
    known.sort_unstable();
    known.dedup();
    known
}
