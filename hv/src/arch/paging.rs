//! The hypervisor's own page tables, and loading a guest's.
//!
//! Layout of every address space (the hypervisor's and each guest's):
//!
//! | L4 slots | virtual range | what |
//! |---|---|---|
//! | 0..256 | lower half | the guest (PV, ring 3) |
//! | 256 | `0xffff_8000_0000_0000` + pa | direct map of RAM, 2 MiB pages, NX |
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

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use hvlu_types::PAGE_SIZE;

use handover_abi::entry::DIRECT_MAP_BASE;
use hvlu_types::pte::{
    self, ADDR_MASK, CACHE_DISABLE, GLOBAL, HUGE, NO_EXECUTE, PRESENT, TWO_MIB, WRITABLE,
    WRITE_THROUGH,
};

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

/// The byte offset, in the table of `level`, of the entry that maps `vaddr`.
pub(super) fn entry_offset(vaddr: u64, level: u32) -> u64 {
    8 * pte::index(vaddr, level) as u64
}

/// A zeroed frame from `alloc` for the hypervisor's page tables, recorded
/// as such before anything is written to it.
fn new_table(alloc: &mut dyn FnMut() -> Option<u64>) -> Result<u64, PagingError> {
    let frame = alloc().ok_or(PagingError::OutOfFrames)?;
    phys::record_table(frame)?;
    phys::table_zero(frame)?;
    Ok(frame)
}

/// Walks from `root` to the table of `level` that maps `vaddr`, creating
/// tables from `alloc` on the way. Returns that table's physical address.
fn walk_create(
    root: u64,
    vaddr: u64,
    level: u32,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<u64, PagingError> {
    let mut table = root;
    for l in (level + 1..=4).rev() {
        let slot = table + entry_offset(vaddr, l);
        let entry = phys::table_read_u64(slot)?;
        table = if entry & PRESENT != 0 {
            entry & ADDR_MASK
        } else {
            let new = new_table(alloc)?;
            // Intermediate entries are permissive; leaves decide.
            phys::table_write_u64(slot, new | PRESENT | WRITABLE)?;
            new
        };
    }
    Ok(table)
}

/// Why the hypervisor's page tables could not be built.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum PagingError {
    /// The frame allocator ran dry.
    #[error("the boot allocator has no frame left for page tables")]
    OutOfFrames,
    /// A table frame could not be written.
    #[error("cannot write a page table: {0}")]
    Phys(#[from] PhysError),
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Builds the hypervisor's page tables — the direct map over `ram` (ranges
/// `[start, end)`) and the image by section, without the stacks' guard
/// pages — in frames from `alloc`, and loads them. Returns the highest
/// physical address the direct map covers.
pub fn build_and_load(
    ram: &mut dyn Iterator<Item = (u64, u64)>,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<u64, PagingError> {
    let root = new_table(alloc)?;

    let mut limit = 0;
    for (start, end) in ram {
        let mut pa = start & !(TWO_MIB - 1);
        while pa < end {
            let pd = walk_create(root, DIRECT_MAP_BASE + pa, 2, alloc)?;
            phys::table_write_u64(
                pd + entry_offset(DIRECT_MAP_BASE + pa, 2),
                pa | PRESENT | WRITABLE | HUGE | GLOBAL | NO_EXECUTE,
            )?;
            pa += TWO_MIB;
        }
        limit = limit.max(pa);
    }

    // The local APIC's registers, uncached, at their direct-map address.
    let lapic_va = DIRECT_MAP_BASE + super::lapic::LAPIC_PHYS;
    let pt = walk_create(root, lapic_va, 1, alloc)?;
    phys::table_write_u64(
        pt + entry_offset(lapic_va, 1),
        super::lapic::LAPIC_PHYS | PRESENT | WRITABLE | CACHE_DISABLE | WRITE_THROUGH | NO_EXECUTE,
    )?;

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
    // Map every page of the image's upper-half part (from .text on) but the
    // stacks' guard pages, which stay not present so that an overflow
    // faults (see `super::stack`).
    let mut va = text & !0xfff;
    let virt_end = kernel_phys_end_virt(img_end);
    while va < virt_end {
        if stack::is_guard_page(va) {
            va += PAGE_SIZE;
            continue;
        }
        let flags = if (text..text_end).contains(&va) {
            PRESENT | GLOBAL
        } else if (ro..ro_end).contains(&va) {
            PRESENT | GLOBAL | NO_EXECUTE
        } else {
            PRESENT | WRITABLE | GLOBAL | NO_EXECUTE
        };
        let pt = walk_create(root, va, 1, alloc)?;
        phys::table_write_u64(pt + entry_offset(va, 1), kernel_virt_to_phys(va) | flags)?;
        va += PAGE_SIZE;
    }

    // SAFETY: the new root maps the image at its link addresses with the
    // same contents (the code running now, its stack in .bss, its statics)
    // and the direct map that `phys` switches to right after; the boot
    // stub's identity map is no longer used by anything. The guard pages
    // left out are never accessed (an access is a stack overflow, and
    // faults). The old tables had no global entries for them, so none
    // survives the switch.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) };
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
        asm!(
            "mov {0}, cr4",
            "mov {1}, {0}",
            "and {1}, ~0x80",
            "mov cr4, {1}",
            "mov cr4, {0}",
            out(reg) _,
            out(reg) _,
            options(nostack, preserves_flags)
        )
    };
}

/// Loads the hypervisor's own root (no guest mapped): before a domain's
/// frames are freed while its tables are loaded.
pub fn load_hv_root() {
    // SAFETY: the hypervisor's root maps the image and the direct map like
    // every guest root does; only the lower half (the guest) disappears.
    unsafe { asm!("mov cr3, {}", in(reg) hv_root(), options(nostack, preserves_flags)) };
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
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) };
    Ok(())
}
