//! The hypervisor's stacks, each above an unmapped guard page.
//!
//! Four stacks, laid out in `.bss` as `[guard][stack]` pairs, page aligned:
//!
//! | stack | used by |
//! |---|---|
//! | boot | the boot path, cold (`arch::boot`) and by live update (`arch::kexec`), until the first guest runs |
//! | kernel | every trap from a guest and every `syscall` (TSS.RSP0), and exceptions and interrupts taken while on it |
//! | double fault | the double-fault handler (IST1) |
//! | NMI | the NMI handler (IST2) |
//!
//! The guard pages are not Rust objects (nothing but their address is ever
//! named) and `paging::build_and_load` leaves them unmapped in the tables
//! the hypervisor runs on, on a cold boot and after a live update alike. A
//! stack that overflows faults on its guard page; delivering that page
//! fault on the same exhausted stack faults again, which the CPU turns into
//! a double fault, taken on its own stack (IST1), where `crate::trap`
//! reports the overflow. Frames larger than a page cannot jump over a
//! guard: the compiler probes the stack page by page (`x86_64-unknown-none`
//! has inline stack probes).
//!
//! Until the hypervisor's own tables are loaded (the boot stub's 2 MiB
//! pages on a cold boot, the entry tables after an update), the guard pages
//! are mapped like the rest of `.bss`.

use core::arch::global_asm;
use hvlu_types::PAGE_SIZE;

/// Bytes of each stack.
pub const STACK_SIZE: u64 = 64 * 1024;
/// Bytes of the guard below each stack: one unmapped page.
pub const GUARD_SIZE: u64 = PAGE_SIZE;

global_asm!(
    r#"
    .section .bss.hv_stacks, "aw", @nobits
    .p2align 12
    .global hv_stacks
hv_stacks:
    /* boot stack: the PVH stub and the live-update entry start on it */
    .skip {guard}
    .skip {stack}
    .global boot_stack_top_high
boot_stack_top_high:
    /* kernel stack (TSS.RSP0, syscall) */
    .skip {guard}
    .skip {stack}
    /* double-fault stack (IST1) */
    .skip {guard}
    .skip {stack}
    /* NMI stack (IST2) */
    .skip {guard}
    .skip {stack}
    "#,
    guard = const GUARD_SIZE,
    stack = const STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    static hv_stacks: u8;
}

/// One of the hypervisor's stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// The boot path's.
    Boot = 0,
    /// Traps from guests and `syscall` (TSS.RSP0).
    Kernel = 1,
    /// The double-fault handler's (IST1).
    DoubleFault = 2,
    /// The NMI handler's (IST2).
    Nmi = 3,
}

impl Stack {
    /// Every stack, in memory order.
    pub const ALL: [Stack; 4] = [Stack::Boot, Stack::Kernel, Stack::DoubleFault, Stack::Nmi];

    /// Its name in diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Boot => "boot",
            Stack::Kernel => "kernel",
            Stack::DoubleFault => "double-fault",
            Stack::Nmi => "NMI",
        }
    }

    /// The (virtual) address of its guard page.
    pub fn guard(self) -> u64 {
        // Only the address of the assembly-defined symbol is taken.
        let base = core::ptr::addr_of!(hv_stacks) as u64;
        base + self as u64 * (GUARD_SIZE + STACK_SIZE)
    }

    /// Its lowest usable address (just above the guard).
    pub fn bottom(self) -> u64 {
        self.guard() + GUARD_SIZE
    }

    /// The address above its first slot: what the stack pointer starts at.
    pub fn top(self) -> u64 {
        self.bottom() + STACK_SIZE
    }

    /// The stack whose guard page contains `vaddr`, if any.
    pub fn guarding(vaddr: u64) -> Option<Stack> {
        Stack::ALL
            .into_iter()
            .find(|s| (s.guard()..s.bottom()).contains(&vaddr))
    }

    /// The stack `vaddr` lies in (its usable part), if any.
    pub fn containing(vaddr: u64) -> Option<Stack> {
        Stack::ALL
            .into_iter()
            .find(|s| (s.bottom()..s.top()).contains(&vaddr))
    }
}

/// The word the unused part of a stack is painted with ([`Depth::start`]).
const PAINT: u64 = 0x57ac_d0e5_57ac_d0e5;

/// Bytes below the stack pointer [`Depth::start`] leaves unpainted: room
/// for its own frame and for what it calls.
const PAINT_MARGIN: u64 = 512;

/// How deep the stack the caller runs on goes from some point on: the
/// stack's unused part is painted when the measurement starts, and the
/// lowest word no longer holding the paint is the deepest the stack went.
/// This is how the stack a path needs is known rather than hoped (the
/// `lu load` path prints it: an unoptimised signature check once needed
/// more than [`STACK_SIZE`]).
#[derive(Clone, Copy, Debug)]
pub struct Depth {
    stack: Stack,
    /// The end of the painted part (exclusive).
    painted_end: u64,
}

impl Depth {
    /// Paints the part of the current stack below the stack pointer (less
    /// [`PAINT_MARGIN`]); `None` if the stack pointer is in none of the
    /// hypervisor's stacks.
    pub fn start() -> Option<Depth> {
        let sp: u64;
        // SAFETY: reads the stack pointer; no memory is touched.
        unsafe {
            core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        let stack = Stack::containing(sp)?;
        let painted_end = sp.saturating_sub(PAINT_MARGIN).max(stack.bottom()) & !7;
        let mut at = stack.bottom();
        while at < painted_end {
            // SAFETY: `at` is 8-byte aligned, inside the usable part of the
            // stack the caller runs on and below its stack pointer less a
            // margin: memory of `.bss` that is mapped and that no live
            // frame, reference or interrupt uses (the hypervisor runs with
            // interrupts off; NMIs and double faults have stacks of their
            // own).
            unsafe { core::ptr::write_volatile(at as *mut u64, PAINT) };
            at += 8;
        }
        Some(Depth { stack, painted_end })
    }

    /// The stack measured.
    pub fn stack(&self) -> Stack {
        self.stack
    }

    /// Bytes of the stack in use at the deepest point since
    /// [`Depth::start`], counted from its top.
    pub fn deepest(&self) -> u64 {
        let mut at = self.stack.bottom();
        while at < self.painted_end {
            // SAFETY: `at` is 8-byte aligned, inside the usable part of
            // the stack, below where the caller's frames are now (the
            // painted part): mapped `.bss`, read without a reference.
            if unsafe { core::ptr::read_volatile(at as *const u64) } != PAINT {
                break;
            }
            at += 8;
        }
        self.stack.top() - at
    }

    /// Whether the stack was used down to its last word since
    /// [`Depth::start`]: it may have run over, into its guard page and
    /// below. Before the hypervisor's own tables are loaded the guard
    /// pages are mapped (the boot stub's tables and the entry tables map
    /// the image whole), so an overflow there does not fault: the boots
    /// check this instead.
    pub fn exhausted(&self) -> bool {
        self.deepest() >= STACK_SIZE
    }
}

// The layout the assembly above and `Stack::guard` agree on.
const _: () = assert!(GUARD_SIZE.is_multiple_of(PAGE_SIZE) && STACK_SIZE.is_multiple_of(PAGE_SIZE));

/// Whether the page at `vaddr` is a guard page (never mapped).
pub fn is_guard_page(vaddr: u64) -> bool {
    Stack::guarding(vaddr).is_some()
}
