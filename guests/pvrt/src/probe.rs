//! Deliberately hostile instructions, for the domU's probes: each checks
//! that the hypervisor survives something a guest may do.

use core::arch::asm;

use pv_abi::hypercall::Hypercall;

/// Makes a `yield` hypercall with RFLAGS.NT set (then clears NT). The
/// hypervisor must return normally: a guest's NT must not reach its own
/// `iretq`.
pub fn yield_with_nested_task_flag() -> i64 {
    let rax: i64;
    // SAFETY: sets NT in the guest's own RFLAGS around a hypercall that
    // touches no guest memory; NT has no effect on ring-3 code that does
    // not execute `iret`, and is cleared again before returning.
    unsafe {
        asm!(
            "pushfq",
            "or qword ptr [rsp], 0x4000",
            "popfq",
            "syscall",
            "pushfq",
            "and qword ptr [rsp], ~0x4000",
            "popfq",
            inlateout("rax") Hypercall::Yield as i64 => rax,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    rax
}

/// Executes an x87 instruction. The hypervisor runs with CR0.EM set, so
/// this faults (#NM) and ends the domain instead of touching FPU state
/// another domain could see.
pub fn touch_fpu() {
    // SAFETY: `fninit` only resets the x87 state; under CR0.EM it faults
    // before doing anything.
    unsafe { asm!("fninit", options(nomem, nostack)) }
}
