//! The machine's PCI devices, found at boot: the walk of `crate::pci` over
//! ECAM (`arch::pci`), its findings printed one line each, and the list
//! kept in `Hv::devices`.
//!
//! A cold boot assigns the memory BARs (the hypervisor is the machine's
//! firmware here); a live-update boot reads them as they are and takes
//! their sizes from dom0's I/O memory permission, which is every memory
//! BAR, one range each (`docs/design.md`, "Devices"), carried by the
//! handover state. No device is not an error: the hypervisor boots without
//! any.

use alloc::vec::Vec;

use hvlu_types::{MfnRange, PhysRange};

use crate::arch::{cpu, pci as ecam};
use crate::hvprintln;
use crate::pci::{self, Device, Mode};

/// Walks PCI (see the module docs) and prints what it finds: `pci <device>`
/// for each function, `pci: <note>` for each BAR left out or alone, or one
/// line saying why there is no PCI. `avoid` is address space no BAR may
/// overlap (RAM, firmware ranges); `tsc_khz` times the walk.
pub fn discover(mode: Mode<'_>, avoid: &[PhysRange], tsc_khz: u64) -> Vec<Device> {
    let started = cpu::rdtsc();
    let mut cfg = match ecam::ecam() {
        Ok(cfg) => cfg,
        Err(why) => {
            hvprintln!(
                "pci: ECAM at {:#x} is not mapped ({}): no devices",
                ecam::ECAM_BASE,
                why.reason()
            );
            return Vec::new();
        }
    };
    let buses = cfg.buses();
    let scan = match pci::scan(&mut cfg, buses, mode, avoid) {
        Ok(scan) => scan,
        Err(e) => {
            hvprintln!("pci: {e} of ECAM at {:#x}: no devices", ecam::ECAM_BASE);
            return Vec::new();
        }
    };
    for d in &scan.devices {
        hvprintln!("pci {d}");
    }
    for note in &scan.notes {
        hvprintln!("pci: {note}");
    }
    let how = match mode {
        Mode::Assign { .. } => "BARs assigned",
        Mode::Keep { .. } => "nothing written",
    };
    hvprintln!(
        "pci: {} functions on {buses} buses, {how}, in {} us",
        scan.devices.len(),
        cpu::rdtsc().saturating_sub(started) * 1000 / tsc_khz.max(1)
    );
    scan.devices
}

/// The 32-bit MMIO window a cold boot places memory BARs in.
pub fn window() -> PhysRange {
    PhysRange::new(ecam::MMIO_WINDOW.0, ecam::MMIO_WINDOW.1)
}

/// RAM as byte ranges: what no BAR may overlap.
pub fn ram_bytes(ram: &[MfnRange]) -> Vec<PhysRange> {
    ram.iter().map(|r| r.bytes()).collect()
}
