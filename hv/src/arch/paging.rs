//! The hypervisor's own page tables, and loading a guest's.
//!
//! Layout of every address space (the hypervisor's and each guest's):
//!
//! | L4 slots | virtual range | what |
//! |---|---|---|
//! | 0..256 | lower half | the guest (PV, ring 3) |
//! | 256 | `0xffff_8000_0000_0000` + pa | direct map of RAM, 2 MiB pages, NX; the local APIC's page, the PCI ECAM window and the page of the virtio-mmio transports, uncacheable |
//! | 511 | `0xffff_ffff_8000_0000` + link pa | the hypervisor image, 4 KiB pages by section, the guard page below each stack left out |
//!
//! Slots 256..512 of every guest L4 are copies of the hypervisor root's and
//! are written only by the hypervisor; the guest cannot change them (the
//! type rules refuse guest writes there), and after a live update the new
//! hypervisor rewrites them.
//!
//! Every frame of these tables is recorded with `phys` as it is allocated
//! (`phys::record_table`): the public physical accessors refuse them, and
//! this module (and `kexec`) reach them through `phys::table_*` only.

use core::sync::atomic::{AtomicU64, Ordering};
use hvlu_types::PAGE_SIZE;

use alloc::vec::Vec;
use hvlu_types::pte::{GLOBAL, NO_EXECUTE, WRITABLE};
use hvlu_types::table_plan::{self, BuildError, Map, PlanError, TableMemory};
use hvlu_types::MfnRange;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::phys::{self, PhysError};
use super::{image_range, kernel_virt_to_phys, stack, KERNEL_VBASE};

/// First L4 slot that belongs to the hypervisor.
pub const HV_FIRST_SLOT: usize = 256;

static HV_ROOT: AtomicU64 = AtomicU64::new(0);

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
}

/// Page-table frames for a table plan (`hvlu_types::table_plan`): new
/// tables from `alloc`, zeroed, and — for the hypervisor's own tables —
/// recorded before anything is written to them; entries through the
/// page-table accessors of `phys`.
pub(super) struct Tables<'a> {
    alloc: &'a mut dyn FnMut() -> Option<u64>,
    record: bool,
}

impl<'a> Tables<'a> {
    /// Frames for the hypervisor's own tables: each recorded with `phys`.
    pub(super) fn own(alloc: &'a mut dyn FnMut() -> Option<u64>) -> Tables<'a> {
        Tables {
            alloc,
            record: true,
        }
    }

    /// Frames for tables that are not the hypervisor's for good (the
    /// entry tables of an update, in the staging area).
    pub(super) fn passing(alloc: &'a mut dyn FnMut() -> Option<u64>) -> Tables<'a> {
        Tables {
            alloc,
            record: false,
        }
    }
}

impl TableMemory for Tables<'_> {
    type Error = PagingError;

    fn new_table(&mut self) -> Result<u64, PagingError> {
        let frame = (self.alloc)().ok_or(PagingError::OutOfFrames)?;
        if self.record {
            phys::record_table(frame)?;
        }
        phys::table_zero(frame)?;
        Ok(frame)
    }

    fn read_entry(&mut self, table: u64, index: usize) -> Result<u64, PagingError> {
        Ok(phys::table_read_u64(table + 8 * index as u64)?)
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) -> Result<(), PagingError> {
        Ok(phys::table_write_u64(table + 8 * index as u64, value)?)
    }
}

/// Why the hypervisor's page tables could not be built.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum PagingError {
    /// The frame allocator ran dry.
    #[error("no frame left for page tables")]
    OutOfFrames,
    /// A table frame could not be written.
    #[error("cannot write a page table: {0}")]
    Phys(#[from] PhysError),
    /// The plan is refused (an overlap, a misaligned mapping).
    #[error("the table plan is refused: {0}")]
    Plan(#[from] PlanError),
}

impl From<BuildError<PagingError>> for PagingError {
    fn from(e: BuildError<PagingError>) -> PagingError {
        match e {
            BuildError::Plan(e) => PagingError::Plan(e),
            BuildError::Memory(e) => e,
        }
    }
}

/// The table frame at physical `root` (page aligned: every table frame
/// is), as CR3 takes it.
fn frame(root: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(root))
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

// The address `new_hv::boot` sizes the tables for is where the image is
// linked, and the page it maps uncached is this APIC's.
const _: () = assert!(new_hv::boot::IMAGE_VBASE == KERNEL_VBASE);
const _: () = assert!(new_hv::boot::LAPIC_PHYS == super::lapic::LAPIC_PHYS);

/// The image's upper-half part (from `.text` on) as mappings: text
/// read-only and executable, rodata read-only, the rest writable, all
/// global; the stacks' guard pages left out so that an overflow faults
/// (see `super::stack`).
fn image_maps() -> Vec<Map> {
    // SAFETY: only the addresses of linker-defined symbols are taken.
    let (text, text_end, ro, ro_end) = unsafe {
        (
            sym(&__text_start),
            sym(&__text_end),
            sym(&__rodata_start),
            sym(&__rodata_end),
        )
    };
    let (_, img_end) = image_range();
    let virt_minus_phys = KERNEL_VBASE.wrapping_sub(kernel_virt_to_phys(KERNEL_VBASE));
    new_hv::boot::image_maps(
        text & !(PAGE_SIZE - 1),
        kernel_phys_end_virt(img_end),
        virt_minus_phys,
        |va| {
            if stack::is_guard_page(va) {
                None
            } else if (text..text_end).contains(&va) {
                Some(GLOBAL)
            } else if (ro..ro_end).contains(&va) {
                Some(GLOBAL | NO_EXECUTE)
            } else {
                Some(WRITABLE | GLOBAL | NO_EXECUTE)
            }
        },
    )
}

/// Builds the hypervisor's page tables — `new_hv::boot::hv_plan_for`: the
/// direct map over `ram` (in 1 GiB pages where the CPU has them: fewer
/// tables than the boot reserved, and less to write inside an update's
/// blackout), the local APIC page, the image by section
/// without the stacks' guard pages; and the PCI ECAM window and the page of
/// the virtio-mmio transports uncacheable where they fit
/// (`super::pci::ecam_map`, `super::virtio::mmio_map`) — in frames from
/// `alloc`, and loads them. Returns the highest physical address the direct
/// map covers.
pub fn build_and_load(
    ram: &[MfnRange],
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<u64, PagingError> {
    let mut plan = new_hv::boot::hv_plan_for(ram, &image_maps(), super::cpu::has_gib_pages());
    if let Some(ecam) = super::pci::ecam_map(&plan) {
        plan.push(ecam);
    }
    if let Some(transports) = super::virtio::mmio_map(&plan) {
        plan.push(transports);
    }
    let mut tables = Tables::own(alloc);
    let root = tables.new_table()?;
    table_plan::build(root, &plan, &mut tables)?;
    let limit = new_hv::boot::direct_map_end(ram);

    // SAFETY: the new root maps the image at its link addresses with the
    // same contents (the code running now, its stack in .bss, its statics)
    // and the direct map at the base `phys` already uses (the boot stub's
    // tables, or the entry tables, map RAM there too); the boot stub's
    // identity map is no longer used by anything. The guard pages left out
    // are never accessed (an access is a stack overflow, and faults). The
    // old tables had no global entries for them, so none survives the
    // switch.
    unsafe { Cr3::write(frame(root), Cr3Flags::empty()) };
    HV_ROOT.store(root, Ordering::Relaxed);
    phys::set_direct_map(limit);
    Ok(limit)
}

fn kernel_phys_end_virt(img_end_phys: u64) -> u64 {
    // The image's physical end, translated back to its link address.
    let shift = kernel_virt_to_phys(KERNEL_VBASE);
    KERNEL_VBASE + (img_end_phys - shift)
}

/// The physical address of the hypervisor's root table.
pub fn hv_root() -> u64 {
    HV_ROOT.load(Ordering::Relaxed)
}

/// The entries of the hypervisor's upper-half slots, to copy into a guest
/// L4 (slot `HV_FIRST_SLOT + i` is element `i`).
pub fn hv_slots() -> Result<[u64; 512 - HV_FIRST_SLOT], PhysError> {
    let mut slots = [0u64; 512 - HV_FIRST_SLOT];
    let root = hv_root();
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = phys::table_read_u64(root + 8 * (HV_FIRST_SLOT + i) as u64)?;
    }
    Ok(slots)
}

/// Flushes the whole TLB, global entries included, after a change to a
/// guest's page tables. (The type rules refuse global guest mappings; the
/// full flush does not rely on it.)
pub fn flush_guest_tlb() {
    // SAFETY: toggling CR4.PGE off and on changes no mapping; it drops every
    // cached translation, which the hypervisor's own tables re-create.
    unsafe {
        Cr4::update(|f| f.remove(Cr4Flags::PAGE_GLOBAL));
        Cr4::update(|f| f.insert(Cr4Flags::PAGE_GLOBAL));
    };
}

/// Loads the hypervisor's own root (no guest mapped): before a domain's
/// frames are freed while its tables are loaded.
pub fn load_hv_root() {
    // SAFETY: the hypervisor's root maps the image and the direct map like
    // every guest root does; only the lower half (the guest) disappears.
    unsafe { Cr3::write(frame(hv_root()), Cr3Flags::empty()) };
}

/// Writes the hypervisor's slots into the guest L4 at `root` (physical):
/// what every guest L4 must carry before it can be loaded.
pub fn install_hv_slots(root: u64) -> Result<(), PhysError> {
    for (i, slot) in hv_slots()?.iter().enumerate() {
        phys::write_u64(root + 8 * (HV_FIRST_SLOT + i) as u64, *slot)?;
    }
    Ok(())
}

/// Why a guest root was not loaded.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum LoadRootError {
    /// The root's hypervisor slots differ from the hypervisor's own.
    #[error("its hypervisor slots differ from the hypervisor's own")]
    ForeignUpperHalf,
    /// The root frame could not be read.
    #[error("cannot read it: {0}")]
    Phys(PhysError),
}

/// Loads the guest L4 at `root` (physical), after checking that its
/// hypervisor slots are the hypervisor's — the invariant that keeps the
/// hypervisor mapped and lets this function be safe.
pub fn load_guest_root(root: u64) -> Result<(), LoadRootError> {
    let hv = hv_root();
    for slot in [HV_FIRST_SLOT as u64, 511] {
        let mine = phys::table_read_u64(hv + 8 * slot).map_err(LoadRootError::Phys)?;
        let theirs = phys::read_u64(root + 8 * slot).map_err(LoadRootError::Phys)?;
        if mine != theirs {
            return Err(LoadRootError::ForeignUpperHalf);
        }
    }
    // SAFETY: the root maps the hypervisor's upper half exactly as its own
    // root does (checked above for the slots in use: the direct map and the
    // image), so the code, stack and data in use stay mapped; the lower half
    // is the guest's, validated by the type rules.
    unsafe { Cr3::write(frame(root), Cr3Flags::empty()) };
    Ok(())
}
