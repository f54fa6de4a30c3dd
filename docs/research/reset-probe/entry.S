/* PVH entry: 32-bit protected mode, paging off, %ebx = hvm_start_info. */
        .section .note.Xen, "a"
        .p2align 2
        .long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start
        .p2align 2

        .section .text.entry, "ax"
        .code32
        .globl _start
_start:
        cli
        mov $stack_top, %esp
        push %ebx
        call kmain
1:      cli
        hlt
        jmp 1b

        .globl triple_fault
triple_fault:
        lidt zero_idt
        int $3
        jmp .

        .section .data
        .p2align 3
zero_idt:
        .word 0
        .long 0

        .section .bss
        .p2align 4
        .space 16384
stack_top:
