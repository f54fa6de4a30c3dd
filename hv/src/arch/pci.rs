//! PCI configuration space through ECAM (PCI Express's memory-mapped
//! configuration access), for the walk of `crate::pci`.
//!
//! Where ECAM is: this hypervisor runs on QEMU's microvm, whose `pcie=on`
//! host bridge puts it at a fixed address, [`ECAM_BASE`], 256 MiB long
//! (buses 0..=255; see `/work/shared/PLATFORM.md`, "PCI devices under QEMU
//! microvm"). The hypervisor reads no ACPI MCFG table: it takes microvm's
//! layout as given, and the walk refuses cleanly when no host bridge
//! answers there — plain microvm (`--no-devices`) has nothing at these
//! addresses, and reads of them return all-ones or zeroes, never a device.
//!
//! The window is mapped uncacheable — PCD and PWT set, PAT clear: PAT
//! entry 3, UC under the power-on PAT, which this hypervisor never
//! reprograms and checks at boot ([`pat_entry_3_is_uc`]) — at its
//! direct-map address, in 2 MiB pages, by `paging::build_and_load`
//! ([`ecam_map`]). Those pages sit in the same 1 GiB as the local APIC's
//! page, so they take no page-table frame beyond what the boot reserved for
//! the hypervisor's plan (`new_hv::boot::page_table_frames`, which an
//! older image also uses to size this image's boot); the mapping is left
//! out, and PCI with it, if they would.

use handover_abi::entry::DIRECT_MAP_BASE;
use hvlu_types::pte::{CACHE_DISABLE, NO_EXECUTE, WRITABLE, WRITE_THROUGH};
use hvlu_types::table_plan::{self, Map};
use x86_64::registers::model_specific::Msr;

use crate::pci::{Bdf, ConfigSpace, ECAM_BUS_BYTES};

/// Physical address of microvm's ECAM window (`pcie=on`).
pub const ECAM_BASE: u64 = 0xe000_0000;
/// Bytes of the window: 256 buses of 1 MiB.
pub const ECAM_SIZE: u64 = 256 << 20;
/// microvm's 32-bit MMIO window, where a cold boot places memory BARs.
pub const MMIO_WINDOW: (u64, u64) = (0xc000_0000, 0x2000_0000);

/// Flags of the window's pages (and of every device window,
/// [`device_window`]): writable, uncacheable (PAT entry 3), not
/// executable, not global (nothing in a guest's half).
const ECAM_FLAGS: u64 = WRITABLE | CACHE_DISABLE | WRITE_THROUGH | NO_EXECUTE;

/// The IA32_PAT MSR.
const IA32_PAT: u32 = 0x277;
/// The PAT memory type "uncacheable".
const PAT_UC: u64 = 0;

/// Whether the window is mapped, or why not.
static STATE: spin::Mutex<State> = spin::Mutex::new(State::NotBuilt);

/// Where the ECAM mapping stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The hypervisor's own tables are not built yet.
    NotBuilt,
    /// Mapped: configuration space can be read.
    Mapped,
    /// Not mapped: the hypervisor maps something else there (RAM).
    OverRam,
    /// Not mapped: it would take page-table frames the boot did not
    /// reserve.
    NeedsTables,
    /// Not mapped: PAT entry 3 is not uncacheable, so no mapping the rules
    /// call uncacheable would be.
    PatNotUc,
}

impl State {
    /// Why configuration space cannot be read, for the boot log.
    pub fn reason(self) -> &'static str {
        match self {
            State::NotBuilt => "the hypervisor's page tables are not built yet",
            State::Mapped => "it is mapped",
            State::OverRam => "RAM lies in its window",
            State::NeedsTables => "mapping it would take page tables the boot did not reserve",
            State::PatNotUc => "PAT entry 3 is not uncacheable",
        }
    }
}

/// Whether PAT entry 3 (PCD and PWT set, PAT clear) is uncacheable, as it
/// is at power-on: what every uncacheable mapping of device memory — the
/// hypervisor's ECAM and the guests' BARs (`frame_ownership`'s rule 7) —
/// relies on.
pub fn pat_entry_3_is_uc() -> bool {
    // SAFETY: IA32_PAT exists on every x86_64 CPU (PAT is part of the
    // architecture); reading it has no effect.
    let pat = unsafe { Msr::new(IA32_PAT).read() };
    (pat >> 24) & 0x7 == PAT_UC
}

/// The mapping of the ECAM window to add to the hypervisor's plan `plan`,
/// or `None` (with the reason recorded for [`ecam`]) if it cannot be added:
/// RAM in the window, a page table more, or a PAT that would not make it
/// uncacheable.
pub(super) fn ecam_map(plan: &[Map]) -> Option<Map> {
    let (state, map) = device_window(plan, ECAM_BASE, ECAM_SIZE);
    *STATE.lock() = state;
    map
}

/// The uncacheable mapping of device memory `pa..pa + len` (2 MiB aligned
/// and whole 2 MiB pages) at its direct-map address, if it can join the
/// hypervisor's plan `plan`: no RAM of the plan in it, no page-table frame
/// more than the plan takes (what the boot reserved), and PAT entry 3
/// uncacheable. The state says which, for the log. Used for ECAM and for
/// the virtio-mmio transports (`super::virtio`).
pub(super) fn device_window(plan: &[Map], pa: u64, len: u64) -> (State, Option<Map>) {
    let map = Map::huge(DIRECT_MAP_BASE + pa, pa, len, ECAM_FLAGS);
    let last = map.va + (map.len - 1);
    let state = if !pat_entry_3_is_uc() {
        State::PatNotUc
    } else if plan.iter().any(|m| m.va <= last && map.va < m.va + m.len) {
        State::OverRam
    } else {
        let mut with = plan.to_vec();
        with.push(map);
        if table_plan::frames(&with) == table_plan::frames(plan) {
            State::Mapped
        } else {
            State::NeedsTables
        }
    };
    (state, (state == State::Mapped).then_some(map))
}

/// Configuration space through the mapped ECAM window.
#[derive(Debug)]
pub struct Ecam(());

/// The ECAM window, if it is mapped; else why not.
pub fn ecam() -> Result<Ecam, State> {
    match *STATE.lock() {
        State::Mapped => Ok(Ecam(())),
        other => Err(other),
    }
}

impl Ecam {
    /// Buses the window covers.
    pub fn buses(&self) -> u16 {
        (ECAM_SIZE / ECAM_BUS_BYTES) as u16
    }

    /// The virtual address of register `offset` of `f`.
    fn register(f: Bdf, offset: u16) -> *mut u32 {
        // In the window: a bus below 256 (any u8), device and function cut
        // to their bits by `Bdf`, an offset below 4096 and 4-byte aligned.
        let at = f.ecam_offset() + u64::from(offset & 0xffc);
        (DIRECT_MAP_BASE + ECAM_BASE + at) as *mut u32
    }
}

impl ConfigSpace for Ecam {
    fn read(&mut self, f: Bdf, offset: u16) -> u32 {
        // SAFETY: an `Ecam` exists only while the window is mapped
        // (uncacheable, writable) in the hypervisor's tables, which every
        // address space carries; the address is a 4-byte aligned register
        // inside it (`register`). It is device memory, no Rust object:
        // a volatile 32-bit read is the access ECAM defines.
        unsafe { core::ptr::read_volatile(Ecam::register(f, offset)) }
    }

    fn write(&mut self, f: Bdf, offset: u16, value: u32) {
        // SAFETY: as in `read`; a 32-bit write to a configuration register.
        // Which registers are written, and when, is `crate::pci`'s rule
        // (a cold boot only).
        unsafe { core::ptr::write_volatile(Ecam::register(f, offset), value) }
    }
}
