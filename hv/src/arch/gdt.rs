//! The GDT, the TSS, the IDT and the syscall MSRs of the (only) CPU.
//!
//! Selector order is fixed by `STAR`: kernel code, kernel data, user data,
//! user code, then the TSS.

use core::arch::asm;
use core::mem::size_of;
use core::ptr::addr_of;

use super::cpu::wrmsr;
use super::stack::Stack;
use super::trap;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector (RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// User code selector (RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector.
const TSS_SEL: u16 = 0x28;

#[repr(C, packed)]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

static mut TSS: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: size_of::<Tss>() as u16,
};

static mut GDT: [u64; 7] = [
    0,
    0x00af_9a00_0000_ffff, // kernel code, 64-bit
    0x00cf_9200_0000_ffff, // kernel data
    0x00cf_f200_0000_ffff, // user data, DPL 3
    0x00af_fa00_0000_ffff, // user code, 64-bit, DPL 3
    0,                     // TSS (low), filled in by init
    0,                     // TSS (high)
];

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    attrs: u8,
    offset_mid: u16,
    offset_hi: u32,
    _reserved: u32,
}

static mut IDT: [Gate; 256] = [Gate {
    offset_lo: 0,
    selector: 0,
    ist: 0,
    attrs: 0,
    offset_mid: 0,
    offset_hi: 0,
    _reserved: 0,
}; 256];

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// The top of the stack traps from ring 3 arrive on.
pub fn kernel_stack_top() -> u64 {
    Stack::Kernel.top()
}

const EFER: u32 = 0xc000_0080;
const STAR: u32 = 0xc000_0081;
const LSTAR: u32 = 0xc000_0082;
const SFMASK: u32 = 0xc000_0084;

/// Loads the GDT, TSS and IDT and programs the syscall MSRs. Call once, on
/// the boot CPU, with interrupts off.
pub fn init() {
    let tss_addr = addr_of!(TSS) as u64;
    let tss_limit = (size_of::<Tss>() - 1) as u64;
    let tss_lo = (tss_limit & 0xffff)
        | ((tss_addr & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((tss_limit >> 16) & 0xf) << 48)
        | (((tss_addr >> 24) & 0xff) << 56);
    let tss_hi = tss_addr >> 32;

    // SAFETY: called once at boot on the only CPU with interrupts off, so
    // nothing else reads or writes these tables while they are filled; the
    // descriptors written are valid 64-bit descriptors, the stacks are
    // `.bss` blocks of the image that live forever (`super::stack`), and
    // every IDT gate points at a stub of
    // `trap` that builds a `TrapFrame`.
    unsafe {
        let tss = &mut *core::ptr::addr_of_mut!(TSS);
        tss.rsp[0] = kernel_stack_top();
        tss.ist[0] = Stack::DoubleFault.top();
        tss.ist[1] = Stack::Nmi.top();

        let gdt = &mut *core::ptr::addr_of_mut!(GDT);
        gdt[5] = tss_lo;
        gdt[6] = tss_hi;
        let gdt_ptr = Pointer {
            limit: (size_of::<[u64; 7]>() - 1) as u16,
            base: gdt.as_ptr() as u64,
        };
        asm!("lgdt [{}]", in(reg) &gdt_ptr, options(readonly, nostack, preserves_flags));
        // Reload CS through a far return, then the data segments and TR.
        asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) u64::from(KERNEL_DS),
            tss = in(reg) u64::from(TSS_SEL),
            tmp = out(reg) _,
            options(preserves_flags),
        );

        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (vector, gate) in idt.iter_mut().enumerate().take(trap::STUB_COUNT) {
            let handler = trap::stub(vector);
            let ist = match vector {
                8 => 1,
                2 => 2,
                _ => 0,
            };
            // Breakpoint (3) may be raised from ring 3 with int3.
            let dpl: u8 = if vector == 3 { 3 } else { 0 };
            *gate = Gate {
                offset_lo: handler as u16,
                selector: trap::GATE_CS,
                ist,
                attrs: 0x8e | (dpl << 5),
                offset_mid: (handler >> 16) as u16,
                offset_hi: (handler >> 32) as u32,
                _reserved: 0,
            };
        }
        let idt_ptr = Pointer {
            limit: (size_of::<[Gate; 256]>() - 1) as u16,
            base: idt.as_ptr() as u64,
        };
        asm!("lidt [{}]", in(reg) &idt_ptr, options(readonly, nostack, preserves_flags));

        trap::set_syscall_stack(kernel_stack_top());
        // CR0.EM: x87 and MMX instructions fault (#NM). The hypervisor and
        // its guests are soft-float and no FPU state is switched, so a guest
        // that tries the FPU ends, rather than seeing another domain's
        // registers.
        let cr0: u64;
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
        asm!("mov cr0, {}", in(reg) cr0 | (1 << 2), options(nomem, nostack, preserves_flags));
        wrmsr(EFER, super::cpu::rdmsr(EFER) | 1); // SCE
        wrmsr(
            STAR,
            (u64::from(KERNEL_DS & !3 | 3) << 48) | (u64::from(KERNEL_CS) << 32),
        );
        wrmsr(LSTAR, trap::syscall_entry_addr());
        // Clear IF, TF, DF, NT and AC on entry: a guest's NT would make the
        // hypervisor's own iretq fault.
        wrmsr(
            SFMASK,
            (1 << 9) | (1 << 8) | (1 << 10) | (1 << 14) | (1 << 18),
        );
    }
}
