//! What the hypervisor does on each trap.

use crate::arch::cpu;
use crate::arch::trap::TrapFrame;
use crate::hvprintln;
use pv_abi::exit::Outcome;

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 floating point",
    "alignment check",
    "machine check",
    "SIMD floating point",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

/// The name of exception `vector`.
pub fn exception_name(vector: u64) -> &'static str {
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Prints a report of the trap in `frame`.
pub fn report(frame: &TrapFrame, context: &str) {
    hvprintln!(
        "{} (vector {}, error code {:#x}) in {} at rip {:#x}, cr2 {:#x}",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        context,
        frame.rip,
        cpu::cr2(),
    );
    hvprintln!(
        "  rsp {:#x} rflags {:#x} cs {:#x} ss {:#x} cr3 {:#x}",
        frame.rsp,
        frame.rflags,
        frame.cs,
        frame.ss,
        cpu::cr3()
    );
    hvprintln!(
        "  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp
    );
}

/// Handles one trap. `frame` may be rewritten to resume another context.
pub fn handle(frame: &mut TrapFrame) {
    if frame.vector < 32 && frame.vector != 2 && !frame.user_mode() {
        report(frame, "the hypervisor");
        cpu::exit(Outcome::Panic);
    }
    crate::hv::on_trap(frame);
}
