//! The machine's PCI devices, found at boot: the walk of `crate::pci` over
//! ECAM (`arch::pci`), its findings printed one line each, and the list
//! kept in `Hv::devices`.
//!
//! A cold boot assigns the memory BARs (the hypervisor is the machine's
//! firmware here); a live-update boot reads them as they are and takes
//! their sizes from the device memory the handover state records
//! (`new_hv::devices::known`), sizing one nothing recorded while no guest
//! runs (`docs/design.md`, "Devices"). No device is not an error: the
//! hypervisor boots without any.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::{PciBar, PciDevice};
use hvlu_types::{MfnRange, PhysRange};

use crate::arch::{cpu, pci as ecam};
use crate::hvprintln;
use crate::pci::{self, Device, Mode};

/// What a walk of PCI found, and its lines for the console: `pci <device>`
/// for each function, `pci: <note>` for each BAR left out, sized or alone,
/// and how long it took — or one line saying why there is no PCI. The
/// caller prints them ([`Walk::print`]) where printing costs nothing that
/// matters: at once on a cold boot or before a pause, after the resume on
/// the incoming side of an update.
#[derive(Debug, Default)]
pub struct Walk {
    /// The functions found.
    pub devices: Vec<Device>,
    /// What to say about them.
    pub lines: Vec<String>,
}

impl Walk {
    /// Prints the lines.
    pub fn print(&self) {
        for line in &self.lines {
            hvprintln!("{line}");
        }
    }
}

/// Walks PCI (see the module docs). `avoid` is address space no BAR may
/// overlap (RAM, firmware ranges); `tsc_khz` times the walk.
pub fn discover(mode: Mode<'_>, avoid: &[PhysRange], tsc_khz: u64) -> Walk {
    let started = cpu::rdtsc();
    let mut cfg = match ecam::ecam() {
        Ok(cfg) => cfg,
        Err(why) => {
            return Walk {
                devices: Vec::new(),
                lines: alloc::vec![format!(
                    "pci: ECAM at {:#x} is not mapped ({}): no devices",
                    ecam::ECAM_BASE,
                    why.reason()
                )],
            }
        }
    };
    let buses = cfg.buses();
    let scan = match pci::scan(&mut cfg, buses, mode, avoid) {
        Ok(scan) => scan,
        Err(e) => {
            return Walk {
                devices: Vec::new(),
                lines: alloc::vec![format!("pci: {e} of ECAM at {:#x}: no devices", ecam::ECAM_BASE)],
            }
        }
    };
    let took_us = cpu::rdtsc().saturating_sub(started) * 1000 / tsc_khz.max(1);
    let how = match mode {
        Mode::Assign { .. } => "BARs assigned",
        Mode::Keep { .. } => "nothing moved",
    };
    let mut lines: Vec<String> = scan.devices.iter().map(|d| format!("pci {d}")).collect();
    lines.extend(scan.notes.iter().map(|n| format!("pci: {n}")));
    lines.push(format!(
        "pci: {} functions (bus 0 and behind its bridges, of {buses} buses), {how}, in {took_us} us",
        scan.devices.len()
    ));
    Walk {
        devices: scan.devices,
        lines,
    }
}

/// The 32-bit MMIO window a cold boot places memory BARs in.
pub fn window() -> PhysRange {
    PhysRange::new(ecam::MMIO_WINDOW.0, ecam::MMIO_WINDOW.1)
}

/// RAM as byte ranges: what no BAR may overlap.
pub fn ram_bytes(ram: &[MfnRange]) -> Vec<PhysRange> {
    ram.iter().map(|r| r.bytes()).collect()
}

/// The devices as the handover state lists them (`handover_abi::PciDevice`):
/// each function with its memory BARs (I/O BARs are not device memory).
/// The class is the base class and subclass, the programming interface
/// left 0: both sides of an update write it the same way.
pub fn handover(devices: &[Device]) -> Vec<PciDevice> {
    devices
        .iter()
        .map(|d| PciDevice {
            bdf: u16::from(d.bdf.bus) << 8 | u16::from(d.bdf.device) << 3 | u16::from(d.bdf.function),
            vendor: d.vendor,
            device: d.device,
            class: u32::from(d.class) << 8,
            bars: d
                .bars
                .iter()
                .filter(|b| b.is_memory())
                .map(|b| PciBar {
                    index: b.index,
                    base: b.base,
                    size: b.size,
                    flags: if matches!(b.kind, pci::BarKind::Memory64) {
                        PciBar::MEM64
                    } else {
                        0
                    } | if b.prefetchable {
                        PciBar::PREFETCHABLE
                    } else {
                        0
                    },
                })
                .collect(),
        })
        .collect()
}

/// The devices again, as they are now, moving nothing: the BARs' sizes
/// are those of `known` (one range per BAR; see `pci::Mode::Keep`), and
/// with `quiet` (no guest can reach a device: the incoming side of an
/// update) a BAR that decodes but was not recorded is sized. What the
/// outgoing side's pre-flight and the incoming side compare with the
/// state's list (`new_hv::devices::compare`).
pub fn rescan(known: &[MfnRange], ram: &[MfnRange], quiet: bool, tsc_khz: u64) -> Walk {
    discover(
        Mode::Keep {
            known,
            size_unknown: quiet,
        },
        &ram_bytes(ram),
        tsc_khz,
    )
}
