//! The live-update jump, both ends of it.
//!
//! **Outgoing.** [`prepare`] builds, in frames of the live-update region, the
//! page tables the entry contract (`handover_abi::entry`) promises the new
//! image: its segments at their link addresses, the direct map, and an
//! identity mapping of one trampoline page, which it also maps in the
//! hypervisor's own root. [`Prepared::jump`] then loads the hypervisor's
//! root (which maps both the running image and the trampoline), jumps to the
//! trampoline's identity address, which loads the new root, flushes global
//! translations (the old image's global pages sit at the very addresses the
//! new image is linked at) and jumps to the new image's entry.
//!
//! **Incoming.** `hv_lu_entry` is the address in this image's `HVLU` note:
//! it takes the boot stack and calls `hv_lu_main` with the argument page's
//! physical address.

use core::arch::{asm, global_asm};
use hvlu_types::PAGE_SIZE;

use handover_abi::entry::DIRECT_MAP_BASE;
use hvlu_types::pte::{ADDR_MASK, HUGE, NO_EXECUTE, PRESENT, TWO_MIB, WRITABLE};
use old_hv::exec::EntryPlan;

use super::paging::entry_offset;
use super::phys::{self, PhysError};

global_asm!(
    r#"
    .section .text.lu_entry, "ax"
    .global hv_lu_entry
hv_lu_entry:
    movabs $boot_stack_top_high, %rsp
    xor %ebp, %ebp
    call hv_lu_main
1:
    hlt
    jmp 1b

    .section .text.lu_trampoline, "ax"
    .global lu_trampoline_start
    .global lu_trampoline_end
lu_trampoline_start:
    mov %rsi, %cr3
    mov %cr4, %rax
    and $~0x80, %rax
    mov %rax, %cr4
    or $0x80, %rax
    mov %rax, %cr4
    jmp *%rdx
lu_trampoline_end:
    "#,
    options(att_syntax)
);

extern "C" {
    static lu_trampoline_start: u8;
    static lu_trampoline_end: u8;
}

/// The trampoline's machine code.
fn trampoline_code() -> &'static [u8] {
    let start = core::ptr::addr_of!(lu_trampoline_start);
    let end = core::ptr::addr_of!(lu_trampoline_end);
    // SAFETY: both symbols delimit the trampoline in this image's .text,
    // which is mapped read-only and never changes; start <= end.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// Why the jump could not be prepared. Nothing has happened yet then.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum PrepareError {
    /// The staging area has no frame left for page tables.
    #[error("no frame left in the staging area for the entry page tables")]
    OutOfFrames,
    /// A range is not page aligned, or the entry is outside the segments.
    #[error("unaligned range or entry outside the image")]
    BadPlan,
    /// Region memory could not be written.
    #[error("cannot write the entry page tables: {0}")]
    Phys(#[from] PhysError),
}

/// A prepared jump.
#[derive(Debug)]
pub struct Prepared {
    hv_root: u64,
    new_root: u64,
    trampoline: u64,
    args: u64,
    entry: u64,
}

fn table_for(
    root: u64,
    va: u64,
    level: u32,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<u64, PrepareError> {
    // `root` may be the hypervisor's own root (the trampoline's mapping), so
    // the walk goes through the page-table accessors; the frames it adds
    // come from the staging area and are not the hypervisor's tables for
    // good (they are not recorded).
    let mut table = root;
    for l in (level + 1..=4).rev() {
        let slot = table + entry_offset(va, l);
        let entry = phys::table_read_u64(slot)?;
        table = if entry & PRESENT != 0 {
            entry & ADDR_MASK
        } else {
            let new = alloc().ok_or(PrepareError::OutOfFrames)?;
            phys::table_zero(new)?;
            phys::table_write_u64(slot, new | PRESENT | WRITABLE)?;
            new
        };
    }
    Ok(table)
}

/// Builds the entry tables of `plan` (`old_hv::exec::EntryPlan`: the new
/// image's segments, the direct map, the trampoline) in the frames of
/// `plan.frames` (region frames outside the staged image, the state and the
/// argument page), and the trampoline.
pub fn prepare(plan: &EntryPlan) -> Result<Prepared, PrepareError> {
    let mut next = plan.frames.start;
    let alloc = &mut || {
        (next < plan.frames.end()).then(|| {
            next += PAGE_SIZE;
            next - PAGE_SIZE
        })
    };
    let aligned = |x: u64| x.is_multiple_of(PAGE_SIZE);
    if !plan
        .segments
        .iter()
        .all(|m| aligned(m.vaddr) && aligned(m.len) && aligned(m.phys))
        || !aligned(plan.trampoline)
        || !plan
            .segments
            .iter()
            .any(|m| (m.vaddr..m.vaddr + m.len).contains(&plan.entry))
    {
        return Err(PrepareError::BadPlan);
    }
    let hv_root = super::paging::hv_root();
    // A fresh identity mapping of the trampoline in the hypervisor's root:
    // slot 0 of its lower half is otherwise empty.
    phys::table_write_u64(hv_root + entry_offset(plan.trampoline, 4), 0)?;
    let new_root = alloc().ok_or(PrepareError::OutOfFrames)?;
    phys::zero(new_root, PAGE_SIZE)?;
    for root in [hv_root, new_root] {
        let pt = table_for(root, plan.trampoline, 1, alloc)?;
        phys::table_write_u64(
            pt + entry_offset(plan.trampoline, 1),
            plan.trampoline | PRESENT,
        )?;
    }
    phys::zero(plan.trampoline, PAGE_SIZE)?;
    phys::write(plan.trampoline, trampoline_code())?;

    for m in &plan.segments {
        for off in (0..m.len).step_by(PAGE_SIZE as usize) {
            let va = m.vaddr + off;
            let pt = table_for(new_root, va, 1, alloc)?;
            phys::table_write_u64(
                pt + entry_offset(va, 1),
                (m.phys + off) | PRESENT | WRITABLE,
            )?;
        }
    }
    for pa in (0..plan.ram_end.div_ceil(TWO_MIB) * TWO_MIB).step_by(TWO_MIB as usize) {
        let va = DIRECT_MAP_BASE + pa;
        let pd = table_for(new_root, va, 2, alloc)?;
        phys::table_write_u64(
            pd + entry_offset(va, 2),
            pa | PRESENT | WRITABLE | HUGE | NO_EXECUTE,
        )?;
    }
    Ok(Prepared {
        hv_root,
        new_root,
        trampoline: plan.trampoline,
        args: plan.args,
        entry: plan.entry,
    })
}

impl Prepared {
    /// The point of no return: enters the new image.
    pub fn jump(self) -> ! {
        // SAFETY: `prepare` built `new_root` to the entry contract and mapped
        // the trampoline page identity in both roots; the hypervisor's root
        // maps this code, so execution continues after the CR3 load, and the
        // trampoline's identity address is valid in both roots. Interrupts
        // are disabled first: nothing of this image runs again.
        unsafe {
            asm!(
                "cli",
                "mov cr3, {root}",
                "jmp {tramp}",
                root = in(reg) self.hv_root,
                tramp = in(reg) self.trampoline,
                in("rdi") self.args,
                in("rsi") self.new_root,
                in("rdx") self.entry,
                options(noreturn),
            )
        }
    }
}
