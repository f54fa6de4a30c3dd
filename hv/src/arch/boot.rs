//! The PVH entry: 32-bit protected mode to long mode in the upper half.
//!
//! QEMU (and Xen) enter a PVH kernel at the 32-bit physical address given by
//! the `Xen` ELF note of type 18 (`XEN_ELFNOTE_PHYS32_ENTRY`), with paging
//! off, flat 4 GiB segments and `ebx` holding the physical address of the
//! `hvm_start_info` structure.
//!
//! The stub below builds page directories of 2 MiB pages covering the first
//! 4 GiB, maps them identity (so the stub keeps running once paging is on)
//! and again at the direct-map base (`DIRECT_MAP_BASE`, so that the
//! hypervisor reaches the memory map and the region — its heap, its first
//! page tables — at the addresses its own direct map will keep), maps the
//! first GiB again at `KERNEL_VBASE` (where the rest of the image is
//! linked), enables long mode
//! and jumps to `hv_entry64` (`super::start`) on the boot stack
//! (`boot_stack_top_high`, `super::stack`) with the start-info address as
//! its argument. The hypervisor replaces these tables
//! with its own as soon as it has a boot allocator.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long pvh_start32
    .p2align 2

    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi                      /* start_info (physical) */
    mov $boot_stack_top, %esp

    /* pd[i] = i * 2 MiB | PS | RW | P, for the first 4 GiB (4 directories) */
    mov $boot_pd, %edi
    xor %ecx, %ecx
1:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, (%edi,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, 4(%edi,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b

    /* pdpt_low[0..4] -> pd[0..4]; pdpt_high[510] -> pd[0] (the first GiB) */
    mov $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt_high + 510 * 8
    mov %eax, boot_pdpt_low
    add $4096, %eax
    mov %eax, boot_pdpt_low + 8
    add $4096, %eax
    mov %eax, boot_pdpt_low + 16
    add $4096, %eax
    mov %eax, boot_pdpt_low + 24
    /* pml4[0] and pml4[256] (the direct map) -> pdpt_low, pml4[511] -> pdpt_high */
    mov $boot_pdpt_low, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + 256 * 8
    mov $boot_pdpt_high, %eax
    or $0x3, %eax
    mov %eax, boot_pml4 + 511 * 8

    /* CR4.PAE | CR4.PGE, CR3, EFER.LME | EFER.NXE | EFER.SCE, CR0.PG | WP | PE */
    mov %cr4, %eax
    or $0xa0, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x901, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_desc
    ljmp $0x08, $boot_start64

    .code64
boot_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    movabs $boot_stack_top_high, %rsp
    mov %esi, %edi                      /* first argument: start_info (physical) */
    movabs $hv_entry64, %rax
    call *%rax
2:
    hlt
    jmp 2b

    .section .boot.data, "aw"
    .p2align 12
boot_pml4:
    .fill 512, 8, 0
boot_pdpt_low:
    .fill 512, 8, 0
boot_pdpt_high:
    .fill 512, 8, 0
boot_pd:
    .fill 2048, 8, 0
    .p2align 4
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
boot_gdt_desc:
    .word boot_gdt_desc - boot_gdt - 1
    .long boot_gdt
    .p2align 4
    .fill 256, 1, 0
boot_stack_top:
    "#,
    options(att_syntax)
);
