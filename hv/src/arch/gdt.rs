//! The GDT, the TSS, the IDT and the syscall MSRs of the (only) CPU, as the
//! `x86_64` crate's types.
//!
//! Selector order is fixed by `STAR`: kernel code, kernel data, user data,
//! user code, then the TSS. Each table is built once per image, at boot, in
//! a [`Once`] static (so it lives, unmoved, for as long as the CPU uses it).

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::{Cr0, Cr0Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::{Entry, InterruptDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

use super::stack::Stack;
use super::trap;

/// Entries of the GDT: the null descriptor, four segments, the TSS (two).
const GDT_ENTRIES: usize = 7;

/// The GDT's segments, without the TSS, and the selectors they get.
struct Segments {
    gdt: GlobalDescriptorTable<GDT_ENTRIES>,
    kernel_code: SegmentSelector,
    kernel_data: SegmentSelector,
    user_data: SegmentSelector,
    user_code: SegmentSelector,
}

const fn segments() -> Segments {
    let mut gdt = GlobalDescriptorTable::empty();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    Segments {
        gdt,
        kernel_code,
        kernel_data,
        user_data,
        user_code,
    }
}

/// Kernel code selector.
pub const KERNEL_CS: u16 = segments().kernel_code.0;
/// Kernel data selector.
pub const KERNEL_DS: u16 = segments().kernel_data.0;
/// User data selector (RPL 3).
pub const USER_DS: u16 = segments().user_data.0;
/// User code selector (RPL 3).
pub const USER_CS: u16 = segments().user_code.0;

// The selectors guests have always seen in their frames, in the order
// `syscall` and `sysret` need (`STAR`: kernel data right after kernel code,
// user code right after user data).
const _: () = assert!(KERNEL_CS == 0x08 && KERNEL_DS == 0x10);
const _: () = assert!(USER_DS == (0x18 | 3) && USER_CS == (0x20 | 3));

/// The TSS's interrupt-stack-table slots (the crate counts from 0: slot 0
/// is the CPU's IST1).
const DOUBLE_FAULT_IST: u16 = 0;
const NMI_IST: u16 = 1;

static TSS: Once<TaskStateSegment> = Once::new();
/// The GDT and its TSS selector.
static GDT: Once<(GlobalDescriptorTable<GDT_ENTRIES>, SegmentSelector)> = Once::new();
static IDT: Once<InterruptDescriptorTable> = Once::new();

/// The top of the stack traps from ring 3 arrive on.
pub fn kernel_stack_top() -> u64 {
    Stack::Kernel.top()
}

/// Loads the GDT, TSS and IDT and programs the syscall MSRs. Call once per
/// image, on the boot CPU, with interrupts off.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top());
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST)] =
            VirtAddr::new(Stack::DoubleFault.top());
        tss.interrupt_stack_table[usize::from(NMI_IST)] = VirtAddr::new(Stack::Nmi.top());
        tss
    });
    let (gdt, tss_selector) = GDT.call_once(|| {
        let mut gdt = segments().gdt;
        let tss_selector = gdt.append(Descriptor::tss_segment(tss));
        (gdt, tss_selector)
    });
    gdt.load();
    // SAFETY:
    // 1. The GDT just loaded holds the descriptors these selectors name:
    //    64-bit kernel code, kernel data (`segments`) and the TSS.
    // 2. The TSS is a static that never changes once built, and the stacks
    //    it names are `.bss` blocks of the image that live forever
    //    (`super::stack`).
    // 3. This runs once per image, at boot, with interrupts off: nothing
    //    runs on the old segments meanwhile, and the TSS descriptor is not
    //    busy yet.
    unsafe {
        CS::set_reg(SegmentSelector(KERNEL_CS));
        DS::set_reg(SegmentSelector(KERNEL_DS));
        ES::set_reg(SegmentSelector(KERNEL_DS));
        SS::set_reg(SegmentSelector(KERNEL_DS));
        load_tss(*tss_selector);
    }
    IDT.call_once(idt).load();

    trap::set_syscall_stack(kernel_stack_top());
    // CR0.EM: x87 and MMX instructions fault (#NM). The hypervisor and its
    // guests are soft-float and no FPU state is switched, so a guest that
    // tries the FPU ends, rather than seeing another domain's registers.
    // SAFETY: CR0.EM only makes x87/MMX instructions fault, which nothing
    // of the hypervisor uses; EFER.SCE only enables `syscall`, whose entry
    // (LSTAR, below) and stack (`set_syscall_stack`) are in place before
    // the first guest runs. Both updates keep every other bit.
    unsafe {
        Cr0::update(|cr0| cr0.insert(Cr0Flags::EMULATE_COPROCESSOR));
        Efer::update(|efer| efer.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    Star::write(
        SegmentSelector(USER_CS),
        SegmentSelector(USER_DS),
        SegmentSelector(KERNEL_CS),
        SegmentSelector(KERNEL_DS),
    )
    .expect("the selectors are in STAR's order (checked at compile time)");
    LStar::write(VirtAddr::new(trap::syscall_entry_addr()));
    // Clear IF, TF, DF, NT and AC on entry: a guest's NT would make the
    // hypervisor's own iretq fault.
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::NESTED_TASK
            | RFlags::ALIGNMENT_CHECK,
    );
}

/// The IDT: every vector with a stub in `trap` (the 32 exceptions and the
/// 16 PIC lines) points at it.
///
/// The crate gives each exception an entry of its own type (the stubs work
/// for every vector alike). The reserved vectors (15, 22–27, 31) keep
/// not-present entries, as the crate gives no access to them: no CPU
/// raises them, and a guest's `int` to one faults on the gate's privilege
/// (ring 0) before its presence is looked at, as before.
fn idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    gate(&mut idt.divide_error, 0);
    gate(&mut idt.debug, 1);
    gate(&mut idt.non_maskable_interrupt, 2);
    gate(&mut idt.breakpoint, 3);
    gate(&mut idt.overflow, 4);
    gate(&mut idt.bound_range_exceeded, 5);
    gate(&mut idt.invalid_opcode, 6);
    gate(&mut idt.device_not_available, 7);
    gate(&mut idt.double_fault, 8);
    // The crate reaches this one (which no 64-bit CPU raises) by index only.
    gate(&mut idt[9], 9);
    gate(&mut idt.invalid_tss, 10);
    gate(&mut idt.segment_not_present, 11);
    gate(&mut idt.stack_segment_fault, 12);
    gate(&mut idt.general_protection_fault, 13);
    gate(&mut idt.page_fault, 14);
    gate(&mut idt.x87_floating_point, 16);
    gate(&mut idt.alignment_check, 17);
    gate(&mut idt.machine_check, 18);
    gate(&mut idt.simd_floating_point, 19);
    gate(&mut idt.virtualization, 20);
    gate(&mut idt.cp_protection_exception, 21);
    gate(&mut idt.hv_injection_exception, 28);
    gate(&mut idt.vmm_communication_exception, 29);
    gate(&mut idt.security_exception, 30);
    const FIRST_IRQ: u8 = 32;
    for (vector, entry) in (FIRST_IRQ..).zip(idt.slice_mut(FIRST_IRQ..trap::STUB_COUNT as u8)) {
        gate(entry, vector);
    }
    idt
}

/// Points `entry` at the stub of `vector`: an interrupt gate (interrupts
/// off on entry) in the kernel code segment, on its own stack for a double
/// fault (IST1) and an NMI (IST2), and callable from ring 3 for a
/// breakpoint (`int3`).
fn gate<F>(entry: &mut Entry<F>, vector: u8) {
    let stub = VirtAddr::new(trap::stub(usize::from(vector)));
    // SAFETY:
    // 1. `stub` is `trap`'s entry stub of `vector`; the stubs push an error
    //    code of 0 where the CPU pushes none, so each is a valid handler of
    //    its vector whatever the entry's type.
    // 2. KERNEL_CS is the 64-bit kernel code segment of the GDT `init`
    //    loads before this IDT.
    // 3. Each IST slot is the TSS's stack of that one vector (double fault,
    //    NMI); no other gate uses it.
    let options = unsafe {
        let options = entry.set_handler_addr(stub);
        options.set_code_selector(SegmentSelector(KERNEL_CS));
        match vector {
            8 => options.set_stack_index(DOUBLE_FAULT_IST),
            2 => options.set_stack_index(NMI_IST),
            _ => options,
        }
    };
    if vector == 3 {
        options.set_privilege_level(PrivilegeLevel::Ring3);
    }
}
