//! Deliberately hostile instructions, for the domU's probes: each checks
//! that the hypervisor survives something a guest may do.

use core::arch::asm;

use hvlu_types::canonical::UPPER_HALF_START;
use pv_abi::hypercall::{Error, Hypercall, Report};

use crate::hc::{self, HcResult};

/// `console_write` of `len` bytes from guest virtual address `va`, which
/// need not be mapped: the hypervisor must refuse a range outside the
/// guest's memory with `BadAddress`.
pub fn console_write_from(va: u64, len: u64) -> HcResult {
    // SAFETY: `console_write` only reads the described memory; whatever `va`
    // is, the hypervisor writes nothing of the guest's, so no Rust value of
    // the guest can change.
    hc::decode(unsafe { hc::raw(Hypercall::ConsoleWrite as u64, va, len, 0, 0, 0) })
}

/// `sysinfo` told to write `len` bytes at the first address of the
/// hypervisor's half ([`UPPER_HALF_START`]): the hypervisor must refuse it
/// with `BadAddress`.
pub fn sysinfo_into_hypervisor_half(len: u64) -> HcResult {
    // SAFETY: the guest has no memory in the upper half (ring 3 cannot
    // access it), so even a hypervisor that wrongly wrote there could not
    // change any Rust value of the guest.
    hc::decode(unsafe { hc::raw(Hypercall::SysInfo as u64, UPPER_HALF_START, len, 0, 0, 0) })
}

/// `domctl(op, 0, 0, 0)` with any operation number, which the typed
/// wrappers cannot send. From a domU the hypervisor must refuse it with
/// `Permission` before it looks at `op`.
pub fn domctl_op(op: u64) -> HcResult {
    // SAFETY: with every pointer 0 and every length 0, no operation copies
    // a byte to or from the guest.
    hc::decode(unsafe { hc::raw(Hypercall::Domctl as u64, op, 0, 0, 0, 0) })
}

/// `pin_table` of frame 0 at `level`, which need not be a page-table level
/// (the typed wrapper sends only 1..=4): the hypervisor must refuse a level
/// outside 1..=4 with `Invalid`.
///
/// # Panics
/// If `level` is one of 1..=4.
pub fn pin_table_at_level(level: u64) -> HcResult {
    assert!(!(1..=4).contains(&level), "a real level: use hc::pin_table");
    // SAFETY: a refused `pin_table` changes nothing; frame 0 is firmware
    // memory, never the guest's.
    hc::decode(unsafe { hc::raw(Hypercall::PinTable as u64, 0, level, 0, 0, 0) })
}

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

/// Checks that probe `test` (`what`) was refused with `expected`: reports
/// an expected refusal, or an unexpected result with the test's number.
pub fn expect(test: u64, what: &str, result: Result<u64, Error>, expected: Error) {
    match result {
        Err(e) if e == expected => {
            crate::println!(
                "probe {test} ({what}): refused with `{}` as expected",
                e.name()
            );
            let _ = crate::hc::report(Report::ExpectedRefusal, test);
        }
        other => {
            crate::println!(
                "probe {test} ({what}): expected `{}`, got {other:?}",
                expected.name()
            );
            let _ = crate::hc::report(Report::UnexpectedResult, test);
        }
    }
}
