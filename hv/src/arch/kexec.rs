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

use hvlu_types::pte::Level;
use hvlu_types::table_plan::{self, TableMemory};
use old_hv::exec::EntryPlan;

use super::paging::{PagingError, Tables};
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
    /// The trampoline page is not page aligned, or the entry is outside
    /// the segments.
    #[error("unaligned trampoline or entry outside the image")]
    BadPlan,
    /// The tables could not be built: region memory not writable, or a
    /// plan the walker refuses.
    #[error("entry page tables: {0}")]
    Tables(PagingError),
    /// Region memory could not be written.
    #[error("cannot write the trampoline: {0}")]
    Phys(#[from] PhysError),
}

impl From<PagingError> for PrepareError {
    fn from(e: PagingError) -> PrepareError {
        match e {
            PagingError::OutOfFrames => PrepareError::OutOfFrames,
            e => PrepareError::Tables(e),
        }
    }
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

/// Builds the entry tables of `plan` (`old_hv::exec::EntryPlan`: its
/// [`EntryPlan::maps`] in a new root, and the trampoline's identity mapping
/// in the new root and in the hypervisor's own) in the frames of
/// `plan.frames` (region frames outside the staged image, the state and
/// the argument page), and the trampoline.
pub fn prepare(plan: &EntryPlan) -> Result<Prepared, PrepareError> {
    if !plan.trampoline.is_multiple_of(PAGE_SIZE)
        || !plan
            .segments
            .iter()
            .any(|m| (m.vaddr..m.vaddr.saturating_add(m.len)).contains(&plan.entry))
    {
        return Err(PrepareError::BadPlan);
    }
    let mut next = plan.frames.start;
    let alloc = &mut || {
        (next < plan.frames.end()).then(|| {
            next += PAGE_SIZE;
            next - PAGE_SIZE
        })
    };
    // The frames come from the staging area and are not the hypervisor's
    // tables for good: not recorded.
    let mut tables = Tables::passing(alloc);
    let new_root = tables.new_table()?;
    table_plan::build(
        new_root,
        &plan.maps_for(super::cpu::has_gib_pages()),
        &mut tables,
    ).map_err(PagingError::from)?;
    let trampoline = [plan.trampoline_map()];
    table_plan::build(new_root, &trampoline, &mut tables).map_err(PagingError::from)?;
    // A fresh identity mapping of the trampoline in the hypervisor's root:
    // its slot of the lower half is otherwise empty.
    let hv_root = super::paging::hv_root();
    tables.write_entry(hv_root, Level::L4.index(plan.trampoline), 0)?;
    table_plan::build(hv_root, &trampoline, &mut tables).map_err(PagingError::from)?;
    phys::zero(plan.trampoline, PAGE_SIZE)?;
    phys::write(plan.trampoline, trampoline_code())?;
    Ok(Prepared {
        hv_root,
        new_root,
        trampoline: plan.trampoline,
        args: plan.args,
        entry: plan.entry,
    })
}

impl Prepared {
    /// The point of no return: enters the new image. The virtio device
    /// this image drives is reset first (`super::virtio::quiesce`): its
    /// buffers are this image's memory, which the new image reuses.
    pub fn jump(self) -> ! {
        super::virtio::quiesce();
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
