//! Entry from guests and exceptions: the IDT, the syscall entry and the
//! common trap frame.
//!
//! Every way into the hypervisor — an exception, an interrupt, a `syscall`
//! from a guest — ends up in `trap_common`, which saves the general
//! registers below the hardware's `iretq` frame and calls
//! [`trap_dispatch`]. The frame it passes is the complete state of the
//! interrupted context: to switch to another vCPU the scheduler replaces the
//! frame's contents and returns, and `iretq` resumes the other context.
//! `syscall` builds the same frame by hand and also returns through
//! `iretq`, so there is one return path.
//!
//! The hypervisor runs with interrupts off; it enables them only while idle
//! and while it initialises what a live update left ([`with_interrupts`]).

use core::arch::{asm, global_asm};
use core::mem::size_of;
use core::sync::atomic::{compiler_fence, AtomicU64, Ordering};

use hvlu_types::regs::rflags;
use hvlu_types::GpRegs;
use x86_64::instructions::interrupts;

use super::gdt::{USER_CS, USER_DS};

/// The state of an interrupted context, as `trap_common` saves it.
///
/// `trap_common` pushes `r15` first and `rax` last, so the general registers
/// sit in [`GpRegs`] order at the start of the frame; the stubs (or
/// `syscall_entry`) pushed the vector and error code above them, and the
/// CPU (or `syscall_entry`) the `iretq` frame above those. The offsets are
/// checked below.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// General registers (rsp is in the hardware part below).
    pub regs: GpRegs,
    /// The vector, or [`SYSCALL_VECTOR`] for a hypercall.
    pub vector: u64,
    /// The exception's error code, or 0.
    pub error_code: u64,
    /// The hardware `iretq` frame.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The pseudo-vector of a `syscall` (hypercall) entry.
pub const SYSCALL_VECTOR: u64 = 0x100;

impl TrapFrame {
    /// Whether the interrupted context ran in ring 3 (a guest).
    pub fn user_mode(&self) -> bool {
        self.cs & 3 == 3
    }

    /// A fresh ring-3 context starting at `rip` with stack `rsp` and
    /// interrupts enabled.
    pub fn user(rip: u64, rsp: u64) -> Self {
        TrapFrame {
            rip,
            rsp,
            cs: u64::from(USER_CS),
            ss: u64::from(USER_DS),
            rflags: rflags::IF | rflags::RESERVED_ONE,
            ..TrapFrame::default()
        }
    }
}

// The layout `trap_common`, `trap_return` and `syscall_entry` assume: the
// pushes of `trap_common` in reverse (rax at the lowest address), then the
// stub's vector and error code, then the `iretq` frame.
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<GpRegs>() == 15 * 8);
    assert!(offset_of!(TrapFrame, regs) == 0);
    assert!(offset_of!(TrapFrame, regs.rax) == 0);
    assert!(offset_of!(TrapFrame, regs.rbx) == 8);
    assert!(offset_of!(TrapFrame, regs.rcx) == 2 * 8);
    assert!(offset_of!(TrapFrame, regs.rdx) == 3 * 8);
    assert!(offset_of!(TrapFrame, regs.rsi) == 4 * 8);
    assert!(offset_of!(TrapFrame, regs.rdi) == 5 * 8);
    assert!(offset_of!(TrapFrame, regs.rbp) == 6 * 8);
    assert!(offset_of!(TrapFrame, regs.r8) == 7 * 8);
    assert!(offset_of!(TrapFrame, regs.r9) == 8 * 8);
    assert!(offset_of!(TrapFrame, regs.r10) == 9 * 8);
    assert!(offset_of!(TrapFrame, regs.r11) == 10 * 8);
    assert!(offset_of!(TrapFrame, regs.r12) == 11 * 8);
    assert!(offset_of!(TrapFrame, regs.r13) == 12 * 8);
    assert!(offset_of!(TrapFrame, regs.r14) == 13 * 8);
    assert!(offset_of!(TrapFrame, regs.r15) == 14 * 8);
    // `push ${syscall_vector}` / `push $\n`, then the error code; `trap_return`
    // drops both with `add $16, %rsp`.
    assert!(offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(offset_of!(TrapFrame, error_code) == 16 * 8);
    // The `iretq` frame.
    assert!(offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(offset_of!(TrapFrame, cs) == 18 * 8);
    assert!(offset_of!(TrapFrame, rflags) == 19 * 8);
    assert!(offset_of!(TrapFrame, rsp) == 20 * 8);
    assert!(offset_of!(TrapFrame, ss) == 21 * 8);
    assert!(size_of::<TrapFrame>() == 22 * 8);
};

extern "C" {
    static trap_stubs: [u64; 48];
    fn syscall_entry();
}

/// Vectors with a handler stub: the 32 exceptions and 16 legacy PIC lines.
pub const STUB_COUNT: usize = 48;

/// The address of the stub of `vector`.
pub fn stub(vector: usize) -> u64 {
    // SAFETY: `trap_stubs` is a read-only table of 48 addresses emitted by
    // the assembly below; `vector < 48` is checked by indexing.
    unsafe { trap_stubs[vector] }
}

/// The entry point for `syscall`, for LSTAR.
pub fn syscall_entry_addr() -> u64 {
    syscall_entry as *const () as u64
}

/// The top of the stack that `syscall` switches to. Written once at boot;
/// `syscall_entry` reads it (an `AtomicU64` is laid out as a `u64`).
#[no_mangle]
static SYSCALL_KERNEL_RSP: AtomicU64 = AtomicU64::new(0);
/// Where `syscall_entry` keeps the guest's stack pointer while it switches
/// stacks; Rust code never touches it.
#[no_mangle]
static mut SYSCALL_USER_RSP: u64 = 0;

/// Sets the stack `syscall` switches to.
pub fn set_syscall_stack(top: u64) {
    SYSCALL_KERNEL_RSP.store(top, Ordering::Relaxed);
}

#[no_mangle]
extern "C" fn trap_dispatch(frame: *mut TrapFrame) {
    // SAFETY: `trap_common` passes the frame it just built on this CPU's
    // stack; it is valid, aligned and not aliased until we return.
    let frame = unsafe { &mut *frame };
    crate::trap::handle(frame);
}

/// Leaves the boot path for good: resumes the context `frame` (a guest)
/// from the top of the kernel stack, where every later trap arrives.
pub fn enter(frame: &TrapFrame) -> ! {
    let top = super::gdt::kernel_stack_top();
    let slot = (top - size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: the kernel stack is not in use (we run on the boot stack, and
    // no trap is in progress); the slot at its top is exactly where
    // `trap_common` keeps a frame, and `trap_return` restores it and irets
    // to the context it describes. Nothing returns here.
    unsafe {
        slot.write(*frame);
        asm!("mov rsp, {0}", "jmp trap_return", in(reg) slot, options(noreturn));
    }
}

/// Runs `f` with interrupts enabled, then disables them again: an
/// interrupt taken meanwhile is handled as one of the idle loop
/// (`crate::trap`: counted and acknowledged, nothing else), so `f` may hold
/// the hypervisor's lock. For background work that must not hold
/// interrupts off for long (`crate::settle`).
pub fn with_interrupts<R>(f: impl FnOnce() -> R) -> R {
    // The handler of an interrupt taken inside `f` runs on this stack and
    // writes the tick count: nothing may move across the boundaries.
    compiler_fence(Ordering::SeqCst);
    interrupts::enable();
    let r = f();
    interrupts::disable();
    compiler_fence(Ordering::SeqCst);
    r
}

/// Takes the interrupts that are pending, if any (`sti; nop; cli`: one
/// instruction with interrupts on), each handled as one of the idle loop.
/// Before a short turn (`crate::sched`): a tick that came while the
/// hypervisor held interrupts off would otherwise end the turn at once.
pub fn take_pending_interrupts() {
    compiler_fence(Ordering::SeqCst);
    interrupts::enable();
    // The instruction after `sti` runs before an interrupt is taken.
    x86_64::instructions::nop();
    interrupts::disable();
    compiler_fence(Ordering::SeqCst);
}

/// Waits for an interrupt with interrupts enabled (`sti; hlt`), then
/// disables them again.
pub fn wait_for_interrupt() {
    // The handler of the interrupt that wakes us runs on this stack and may
    // write memory: nothing written before may be moved past the wait
    // (`enable_and_hlt` claims no memory access), and `disable` is a
    // compiler barrier for what is read after it.
    compiler_fence(Ordering::SeqCst);
    interrupts::enable_and_hlt();
    interrupts::disable();
}

global_asm!(
    r#"
    .section .text.trap, "ax"
    .code64

    .macro STUB_NOERR n
trap_stub_\n:
    push $0
    push $\n
    jmp trap_common
    .endm

    .macro STUB_ERR n
trap_stub_\n:
    push $\n
    jmp trap_common
    .endm

    STUB_NOERR 0
    STUB_NOERR 1
    STUB_NOERR 2
    STUB_NOERR 3
    STUB_NOERR 4
    STUB_NOERR 5
    STUB_NOERR 6
    STUB_NOERR 7
    STUB_ERR 8
    STUB_NOERR 9
    STUB_ERR 10
    STUB_ERR 11
    STUB_ERR 12
    STUB_ERR 13
    STUB_ERR 14
    STUB_NOERR 15
    STUB_NOERR 16
    STUB_ERR 17
    STUB_NOERR 18
    STUB_NOERR 19
    STUB_NOERR 20
    STUB_ERR 21
    STUB_NOERR 22
    STUB_NOERR 23
    STUB_NOERR 24
    STUB_NOERR 25
    STUB_NOERR 26
    STUB_NOERR 27
    STUB_NOERR 28
    STUB_ERR 29
    STUB_ERR 30
    STUB_NOERR 31
    .irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    STUB_NOERR \n
    .endr

trap_common:
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    cld
    mov %rsp, %rdi
    call trap_dispatch
    .global trap_return
trap_return:
    pop %rax
    pop %rbx
    pop %rcx
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rbp
    pop %r8
    pop %r9
    pop %r10
    pop %r11
    pop %r12
    pop %r13
    pop %r14
    pop %r15
    add $16, %rsp
    iretq

    .global syscall_entry
syscall_entry:
    mov %rsp, SYSCALL_USER_RSP(%rip)
    mov SYSCALL_KERNEL_RSP(%rip), %rsp
    push ${user_ds}
    push SYSCALL_USER_RSP(%rip)
    push %r11
    push ${user_cs}
    push %rcx
    push $0
    push ${syscall_vector}
    jmp trap_common

    .section .rodata.trap_stubs, "a"
    .p2align 3
    .global trap_stubs
trap_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad trap_stub_\n
    .endr
    "#,
    user_ds = const USER_DS,
    user_cs = const USER_CS,
    syscall_vector = const SYSCALL_VECTOR,
    options(att_syntax)
);
