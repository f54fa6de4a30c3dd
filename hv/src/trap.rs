//! What the hypervisor does on each trap: NMIs and interrupts while idle
//! without the lock; with it, the timer tick (the deferred work, console
//! input, a time slice), a hypercall (`crate::hypercall`), or a guest's
//! fatal exception.
//!
//! An exception in the hypervisor itself (ring 0) is fatal: it is reported
//! and the machine stops with [`Outcome::Panic`]. That path takes no lock —
//! neither the hypervisor's ([`HV`]), which the faulting code may hold (the
//! idle loop and every trap handler run with it held), nor the console's,
//! which it may hold too if it faulted while printing — and writes straight
//! to the serial port. A double fault whose faulting address or stack
//! pointer is in a stack's guard page (`arch::stack`) is reported as a
//! hypervisor stack overflow. A trap from a guest that finds the lock held
//! cannot happen (the lock is released before every return to a guest) and
//! is reported the same way instead of spinning forever.
//!
//! The first timer tick of each image also looks for test-only self-test
//! requests (`arch::selftest`).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hvlu_types::DomId;
use hvlu_types::canonical::is_lower_half;
use pv_abi::exit::Outcome;

use crate::arch::stack::Stack;
use crate::arch::trap::{TrapFrame, SYSCALL_VECTOR};
use crate::arch::{cpu, fwcfg, selftest, timer};
use crate::hv::{Hv, HV};
use crate::{hvprintln, hypercall};

/// NMIs seen (ignored).
pub static NMIS: AtomicU64 = AtomicU64::new(0);

/// Timer ticks since boot; also counted while idle, without the lock.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// Timer interrupts since boot: the ticks and the ends of short turns
/// (`crate::sched`), which are not ticks.
pub static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);

/// Set by the first fatal report: a fault while reporting stops at once.
static FATAL: AtomicBool = AtomicBool::new(false);

/// Set at this image's first timer tick from a guest, when it has looked
/// for self-test requests.
static SELFTESTS_READ: AtomicBool = AtomicBool::new(false);

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

/// The lines of a report of the trap in `frame`, without the `(hv) ` prefix.
fn report_lines(frame: &TrapFrame, context: &str, mut line: impl FnMut(fmt::Arguments<'_>)) {
    line(format_args!(
        "{} (vector {}, error code {:#x}) in {} at rip {:#x}, cr2 {:#x}",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        context,
        frame.rip,
        cpu::cr2(),
    ));
    line(format_args!(
        "  rsp {:#x} rflags {:#x} cs {:#x} ss {:#x} cr3 {:#x}",
        frame.rsp,
        frame.rflags,
        frame.cs,
        frame.ss,
        cpu::cr3()
    ));
    let r = &frame.regs;
    line(format_args!(
        "  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp
    ));
}

/// Prints a report of the trap in `frame` on the console.
pub fn report(frame: &TrapFrame, context: &str) {
    report_lines(frame, context, |args| hvprintln!("{args}"));
}

/// The stack a double fault in `frame` overflowed, if it was one: the
/// faulting address (the push that could not be made) or the stack pointer
/// is in a stack's guard page, or the stack pointer is at the very bottom
/// of a stack.
fn overflowed(frame: &TrapFrame) -> Option<Stack> {
    const SLACK: u64 = 256;
    Stack::guarding(cpu::cr2())
        .or_else(|| Stack::guarding(frame.rsp))
        .or_else(|| Stack::containing(frame.rsp).filter(|s| frame.rsp < s.bottom() + SLACK))
}

/// What [`fatal`] reports.
#[derive(Clone, Copy)]
enum Fatal {
    /// An exception in the hypervisor itself (ring 0), or a double fault.
    Exception,
    /// A trap from a guest that found the hypervisor lock held.
    Reentered,
}

/// Reports `what` happened with the trap in `frame` and stops the machine
/// with the panic code. Takes no lock (see the module documentation).
fn fatal(frame: &TrapFrame, what: Fatal) -> ! {
    if FATAL.swap(true, Ordering::Relaxed) {
        // A fault while reporting one: stop without another word.
        cpu::exit(Outcome::Panic);
    }
    // Straight to the UART, without the console's lock (single CPU,
    // interrupts off: nothing else writes meanwhile).
    let mut out = crate::console::Serial;
    let mut line = |args: fmt::Arguments<'_>| {
        let _ = writeln!(out, "(hv) {args}");
    };
    // The fault may have cut a line short.
    let _ = crate::console::Serial.write_str("\n");
    if frame.vector == 8 {
        if let Some(stack) = overflowed(frame) {
            line(format_args!(
                "FATAL: hypervisor stack overflow: the {} stack ({:#x}-{:#x}) ran into its guard page at {:#x} (cr2 {:#x}, rsp {:#x})",
                stack.name(),
                stack.bottom(),
                stack.top(),
                stack.guard(),
                cpu::cr2(),
                frame.rsp,
            ));
        }
    }
    let (context, stop) = match what {
        Fatal::Exception => ("the hypervisor", "exception in the hypervisor"),
        Fatal::Reentered => (
            "a guest",
            "trap from a guest while the hypervisor is inside a trap",
        ),
    };
    report_lines(frame, context, &mut line);
    line(format_args!(
        "FATAL: {stop} (hypervisor lock {}): stopping",
        if HV.is_locked() { "held" } else { "free" }
    ));
    cpu::exit(Outcome::Panic)
}

/// Handles one trap. `frame` may be rewritten to resume another context.
pub fn handle(frame: &mut TrapFrame) {
    // A double fault is the hypervisor's whatever the saved context says
    // (the CPU could not deliver an exception); any other exception from
    // ring 0 but an NMI is a fault in the hypervisor.
    if frame.vector == 8 || (frame.vector < 32 && frame.vector != 2 && !frame.user_mode()) {
        fatal(frame, Fatal::Exception);
    }
    if frame.vector == 2 {
        // NMI: nothing here raises one on purpose; it must not take the
        // lock (it can arrive while the lock is held). Resume.
        NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if frame.vector == timer::TIMER_VECTOR {
        TIMER_IRQS.fetch_add(1, Ordering::Relaxed);
        if !timer::one_shot_armed() {
            TICKS.fetch_add(1, Ordering::Relaxed);
        }
    }
    if frame.vector >= 32 && !frame.user_mode() {
        // An interrupt while idle (the idle loop holds the lock): count,
        // acknowledge unless spurious, return to the idle loop.
        if !timer::is_spurious(frame.vector) {
            timer::eoi(frame.vector);
        }
        return;
    }
    // From a guest: the lock is free, since it is released before every
    // return to a guest. Finding it held means the hypervisor re-entered
    // itself; waiting would never end.
    let Some(mut guard) = HV.try_lock() else {
        fatal(frame, Fatal::Reentered)
    };
    match guard.as_mut() {
        Some(hv) => {
            // A short turn counts the guest's time, not this.
            hv.turn_trap_in();
            from_guest(hv, frame);
            hv.turn_trap_out();
            // If the scheduler chose an HVM vCPU, it runs until a PV one
            // is chosen (whose frame `iretq` then resumes).
            crate::hvm::run(hv, frame);
        }
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
            tick(hv, frame);
        }
        SYSCALL_VECTOR => {
            hypercall::hypercall(hv, frame);
            // `iretq` to a non-canonical address faults in ring 0 on
            // real CPUs: a guest that arranged for one (a `syscall` at
            // the very top of the lower half) has faulted.
            // Only for a PV vCPU: if the scheduler chose an HVM vCPU, the
            // frame stands for it and its RIP is the guest's own.
            let pv = hv.current_domain().is_some_and(|d| d.hvm.is_none());
            if pv && frame.user_mode() && !is_lower_half(frame.rip) {
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

/// A timer tick's work, from a PV guest's trap or an HVM guest's exit:
/// the deferred work, this image's self-tests (once), console input, a
/// turn of the initialisation an update left (`crate::settle`), the end of
/// the running vCPU's time slice. The end of a short turn around an update
/// (`crate::sched`) only ends the turn: the rest waits for the ticks.
pub fn tick(hv: &mut Hv, frame: &mut TrapFrame) {
    if timer::one_shot_armed() {
        if hv.turn_over() {
            hv.schedule(frame, true);
        }
        return;
    }
    hv.run_deferred();
    if !SELFTESTS_READ.swap(true, Ordering::Relaxed) {
        selftests(hv);
    }
    hv.console_in.poll();
    hv.settle_turn();
    hv.schedule(frame, true);
}

/// Runs the self-tests the host asked this image for, if any: the words of
/// the fw_cfg file `arch::selftest::FILE`, each `TEST` (for the cold-booted
/// image) or `TEST@N` (for the image entered by live update number `N`):
///
/// - `stack`: overflows the kernel stack, with the hypervisor lock held;
/// - `fault`: a page fault in the hypervisor, with the hypervisor lock and
///   the console lock held;
/// - `phys`: every physical accessor must refuse the hypervisor's own page
///   tables (stops with the fail code if one does not).
///
/// Called once per image, at its first timer tick from a guest (after an
/// update, after the deferred work, so its report line comes first).
fn selftests(hv: &mut Hv) {
    let Some(file) = fwcfg::find(selftest::FILE) else {
        return;
    };
    let mut buf = [0u8; 128];
    let n = fwcfg::read_small(&file, &mut buf);
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("");
    for word in text.split_ascii_whitespace() {
        let (test, sequence) = match word.split_once('@') {
            Some((test, n)) => (test, n.parse::<u64>().ok()),
            None => (word, Some(0)),
        };
        if sequence.is_some() && sequence != Some(hv.lu_sequence) {
            continue;
        }
        match (test, sequence) {
            ("phys", Some(_)) => selftest_phys(),
            ("fault", Some(_)) => {
                /// Faults while it is being printed: with the console
                /// locked.
                struct Load(u64);
                impl fmt::Display for Load {
                    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{:#x}", selftest::load(self.0))
                    }
                }
                hvprintln!(
                    "selftest fault: loading from {:#x} with the hypervisor and console locks held: {}",
                    selftest::UNMAPPED,
                    Load(selftest::UNMAPPED)
                );
            }
            ("stack", Some(_)) => {
                hvprintln!(
                    "selftest stack: overflowing the kernel stack with the hypervisor lock held"
                );
                selftest::overflow_stack();
            }
            _ => hvprintln!("selftest: unknown request `{word}` ignored"),
        }
    }
}

/// The `phys` self-test: see [`selftests`].
fn selftest_phys() {
    match selftest::probe_tables() {
        Ok(r) => hvprintln!(
            "selftest phys: the hypervisor's page tables are refused: root={:#x} frames={} ranges={} probed={} refused={} ({})",
            r.root,
            r.frames,
            r.ranges,
            r.probed,
            r.accesses,
            r.example
        ),
        Err(e) => {
            hvprintln!(
                "selftest phys: {} of the page-table frame {:#x} was NOT refused",
                e.access,
                e.paddr
            );
            cpu::exit(Outcome::Fail);
        }
    }
}
