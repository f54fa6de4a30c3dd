//! HVM guests: the boot stub that takes an HVM guest from the mode it
//! starts in to long mode, and the flag that makes the rest of the runtime
//! speak HVM.
//!
//! The hypervisor starts an HVM guest by the boot contract of
//! `pv_abi::start_info::HVM_BOOT_CS`: 32-bit protected mode, paging off,
//! flat segments, interrupts off. `hvm_entry32` (the entry of an image
//! linked with `guests/hvm/hvm.ld`) builds its own page tables — the first
//! 4 GiB of guest-physical memory identity-mapped with 2 MiB pages —,
//! enables PAE, long mode (`EFER.LME`, a `wrmsr` the hypervisor
//! emulates) and paging, loads its own GDT, switches to 64-bit code and
//! calls `_start` (the guest's [`crate::entry!`]) on its own stack, having
//! set [`is_hvm`]'s flag. From then on the guest's virtual addresses are
//! its guest-physical addresses: its start-info page is at
//! `HVM_START_INFO_GPA`, its page `n` at `n × 4096`, and its hypercalls are
//! `vmmcall` with guest-physical pointers.
//!
//! A PV image never links the stub (nothing references it, and the linker
//! drops unreferenced sections), and its flag stays clear.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU8, Ordering};

/// Set to 1 by the HVM boot stub before any Rust code runs.
#[no_mangle]
static PVRT_HVM: AtomicU8 = AtomicU8::new(0);

/// Whether this guest is HVM (started by `hvm_entry32`).
pub fn is_hvm() -> bool {
    PVRT_HVM.load(Ordering::Relaxed) != 0
}

/// Reads the 64-bit word at guest-physical `gpa` with one `mov` (an HVM
/// guest's page tables map the first 4 GiB identity): for device
/// registers, which the hypervisor emulates by decoding that `mov`.
pub fn mmio_read(gpa: u64) -> u64 {
    assert!(is_hvm(), "mmio_read is for HVM guests");
    let value: u64;
    // SAFETY: a load from the identity-mapped address `gpa`; device memory
    // or an emulated register has no Rust object behind it, and a gpa the
    // domain may not reach ends the domain (a nested page fault), nothing
    // worse.
    unsafe {
        core::arch::asm!(
            "mov {v}, qword ptr [{a}]",
            a = in(reg) gpa,
            v = out(reg) value,
            options(nostack, readonly)
        );
    }
    value
}

/// Puts `value` in `xmm7`, which nothing else in the guest uses (it is
/// built soft-float): the hypervisor must keep it across every exit, every
/// other guest's turn and every live update ([`xmm_get`]).
pub fn xmm_set(value: u64) {
    assert!(is_hvm(), "xmm_set is for HVM guests");
    // SAFETY: `xmm7` is used by no code of the guest (soft-float target);
    // the boot stub enabled SSE (CR4.OSFXSR, CR0.EM clear).
    unsafe { core::arch::asm!("movq xmm7, {v}", v = in(reg) value, options(nomem, nostack)) };
}

/// What `xmm7` holds ([`xmm_set`]).
pub fn xmm_get() -> u64 {
    assert!(is_hvm(), "xmm_get is for HVM guests");
    let value: u64;
    // SAFETY: as in `xmm_set`; a read of a register.
    unsafe { core::arch::asm!("movq {v}, xmm7", v = out(reg) value, options(nomem, nostack)) };
    value
}

global_asm!(
    r#"
    .section .text.boot32, "ax"
    .code32
    .global hvm_entry32
hvm_entry32:
    /* The top-level table: one PDPT. */
    mov $hvm_pdpt, %eax
    or $0x3, %eax
    mov %eax, hvm_pml4
    /* Four page directories: 4 GiB. */
    mov $hvm_pd, %eax
    or $0x3, %eax
    mov %eax, hvm_pdpt
    add $0x1000, %eax
    mov %eax, hvm_pdpt + 8
    add $0x1000, %eax
    mov %eax, hvm_pdpt + 16
    add $0x1000, %eax
    mov %eax, hvm_pdpt + 24
    /* 2048 entries of 2 MiB: present, writable, large. */
    xor %ecx, %ecx
1:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, hvm_pd(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 1b
    /* CR4.PAE | OSFXSR | OSXMMEXCPT (SSE for `xmm_set`), CR3, EFER.LME,
       CR0.PG | MP, EM clear. */
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $hvm_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $~0x4, %eax
    or $0x80000003, %eax
    mov %eax, %cr0
    lgdt hvm_gdt_desc
    ljmp $0x08, $hvm_entry64

    .code64
hvm_entry64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    movb $1, PVRT_HVM(%rip)
    lea hvm_stack_top(%rip), %rsp
    call _start
    ud2

    .section .rodata.boot32, "a"
    .p2align 3
hvm_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
hvm_gdt_desc:
    .word 23
    .long hvm_gdt

    .section .bss.boot32, "aw", @nobits
    .p2align 12
hvm_pml4:
    .skip 4096
hvm_pdpt:
    .skip 4096
hvm_pd:
    .skip 4 * 4096
hvm_stack:
    .skip 64 * 1024
hvm_stack_top:

    .section .note.hvlu-hvm, "a", @note
    .p2align 2
    .long 9
    .long 0
    .long 1
    .asciz "hvlu-hvm"
    .p2align 2
    "#,
    options(att_syntax)
);
