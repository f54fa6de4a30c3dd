//! What the hypervisor does on each trap: NMIs and interrupts while idle
//! without the lock; with it, the timer tick (the deferred work, console
//! input, a time slice), a hypercall (`crate::hypercall`), or a guest's
//! fatal exception.

use core::sync::atomic::{AtomicU64, Ordering};

use handover_abi::DomId;
use hvlu_types::canonical::is_lower_half;
use pv_abi::exit::Outcome;

use crate::arch::trap::{TrapFrame, SYSCALL_VECTOR};
use crate::arch::{cpu, timer};
use crate::hv::{Hv, HV};
use crate::{hvprintln, hypercall};

/// NMIs seen (ignored).
pub static NMIS: AtomicU64 = AtomicU64::new(0);

/// Timer ticks since boot; also counted while idle, without the lock.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

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
    let r = &frame.regs;
    hvprintln!(
        "  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        r.rbp
    );
}

/// Handles one trap. `frame` may be rewritten to resume another context.
pub fn handle(frame: &mut TrapFrame) {
    if frame.vector < 32 && frame.vector != 2 && !frame.user_mode() {
        report(frame, "the hypervisor");
        cpu::exit(Outcome::Panic);
    }
    if frame.vector == 2 {
        // NMI: nothing here raises one on purpose; it must not take the
        // lock (it can arrive while the lock is held). Resume.
        NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if frame.vector == timer::TIMER_VECTOR {
        TICKS.fetch_add(1, Ordering::Relaxed);
    }
    if frame.vector >= 32 && !frame.user_mode() {
        // An interrupt while idle (the idle loop holds the lock): count,
        // acknowledge unless spurious, return to the idle loop.
        if !timer::is_spurious(frame.vector) {
            timer::eoi(frame.vector);
        }
        return;
    }
    let mut guard = HV.lock();
    match guard.as_mut() {
        Some(hv) => from_guest(hv, frame),
        None => {
            drop(guard);
            report(frame, "early boot");
            cpu::exit(Outcome::Panic);
        }
    }
}

/// Handles a trap from a guest (or the first timer tick while idle).
fn from_guest(hv: &mut Hv, frame: &mut TrapFrame) {
    match frame.vector {
        v if v == timer::TIMER_VECTOR => {
            timer::eoi(v);
            hv.run_deferred();
            hv.console_in.poll();
            hv.schedule(frame, true);
        }
        SYSCALL_VECTOR => {
            hypercall::hypercall(hv, frame);
            // `iretq` to a non-canonical address faults in ring 0 on
            // real CPUs: a guest that arranged for one (a `syscall` at
            // the very top of the lower half) has faulted.
            if frame.user_mode() && !is_lower_half(frame.rip) {
                let d = hv.sched.current_domain().unwrap_or(DomId::INVALID);
                hvprintln!(
                    "d{d} would return to non-canonical rip {:#x}: destroying it",
                    frame.rip
                );
                if let Some(dom) = hv.domains.get_mut(&d) {
                    dom.reports.unexpected_faults += 1;
                }
                let _ = hv.destroy_domain(d);
                hv.schedule(frame, false);
            }
        }
        v if v < 32 => {
            let d = hv.sched.current_domain().unwrap_or(DomId::INVALID);
            report(frame, &alloc::format!("d{d}"));
            hvprintln!("d{d} took a fatal {}: destroying it", exception_name(v));
            if let Some(dom) = hv.domains.get_mut(&d) {
                if !dom.reports.expect_fault {
                    dom.reports.unexpected_faults += 1;
                }
            }
            let _ = hv.destroy_domain(d);
            hv.schedule(frame, false);
        }
        v => {
            if !timer::is_spurious(v) {
                hvprintln!("unexpected interrupt {v} from a guest");
                timer::eoi(v);
            }
        }
    }
}
