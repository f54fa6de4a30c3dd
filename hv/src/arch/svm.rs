//! AMD SVM with nested paging: the VMCB, turning SVM on, and the world
//! switch (`VMRUN`).
//!
//! The hypervisor runs an HVM vCPU from inside a trap (`crate::hvm`): it
//! calls [`run`], which saves the host's hidden state (`VMSAVE`), loads the
//! guest's (`VMLOAD`), loads the general registers `VMRUN` does not switch,
//! enters the guest with interrupts enabled (so a physical interrupt ends
//! the guest's turn: the VMCB intercepts it and sets `V_INTR_MASKING`),
//! and on `#VMEXIT` saves them back and restores the host, returning with
//! interrupts off and GIF set. A pending interrupt is then taken by
//! [`take_interrupt`], through the ordinary IDT, as an interrupt of the
//! idle loop is.
//!
//! Field offsets are the AMD64 Architecture Programmer's Manual's, volume 2,
//! appendix B (checked below). QEMU's TCG implements neither decode assists
//! nor next-RIP saving nor VMCB clean bits: the exit handlers advance RIP
//! themselves, and every field is written as if every clean bit were clear.

use alloc::boxed::Box;
use core::arch::{asm, global_asm};

use hvlu_types::regs::{DescriptorTable, Segment};
use hvlu_types::GpRegs;
use x86_64::registers::model_specific::Msr;

use super::phys;

/// `EFER`.
const MSR_EFER: u32 = 0xc000_0080;
/// `EFER.SVME`: SVM enabled. A guest's EFER must have it too.
pub const EFER_SVME: u64 = 1 << 12;
/// `VM_CR`: bit 4 (`SVMDIS`) set means firmware disabled SVM.
const MSR_VM_CR: u32 = 0xc001_0114;
/// `VM_HSAVE_PA`: where `VMRUN` keeps the host state.
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// One 4 KiB page, page aligned: the host save areas and the permission
/// maps are made of these.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// A segment as the VMCB stores it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcbSeg {
    /// Selector.
    pub selector: u16,
    /// Attributes (packed).
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

impl From<Segment> for VmcbSeg {
    fn from(s: Segment) -> Self {
        VmcbSeg {
            selector: s.selector,
            attrib: s.attrib,
            limit: s.limit,
            base: s.base,
        }
    }
}

impl From<VmcbSeg> for Segment {
    fn from(s: VmcbSeg) -> Self {
        Segment {
            selector: s.selector,
            attrib: s.attrib,
            limit: s.limit,
            base: s.base,
        }
    }
}

impl VmcbSeg {
    /// A descriptor-table register (only limit and base count).
    pub fn table(t: DescriptorTable) -> VmcbSeg {
        VmcbSeg {
            selector: 0,
            attrib: 0,
            limit: t.limit,
            base: t.base,
        }
    }

    /// This as a descriptor-table register.
    pub fn as_table(&self) -> DescriptorTable {
        DescriptorTable {
            limit: self.limit,
            base: self.base,
        }
    }
}

/// The VMCB: control area (offset 0) and state-save area (offset 0x400).
#[repr(C, align(4096))]
pub struct Vmcb {
    /// Intercepts of CR reads (bits 0–15) and writes (16–31).
    pub intercept_cr: u32,
    /// Intercepts of DR reads and writes.
    pub intercept_dr: u32,
    /// Intercepted exception vectors.
    pub intercept_exceptions: u32,
    /// Intercepts, first word ([`intercept`]).
    pub intercept1: u32,
    /// Intercepts, second word ([`intercept2`]).
    pub intercept2: u32,
    _r0: [u8; 0x3c - 0x14],
    /// Pause filter threshold.
    pub pause_filter_threshold: u16,
    /// Pause filter count.
    pub pause_filter_count: u16,
    /// Physical address of the I/O permission map.
    pub iopm_base: u64,
    /// Physical address of the MSR permission map.
    pub msrpm_base: u64,
    /// Added to the TSC the guest reads.
    pub tsc_offset: u64,
    /// The guest's address-space id (never 0).
    pub asid: u32,
    /// TLB control: 1 flushes every TLB entry at the next `VMRUN`.
    pub tlb_control: u8,
    _r1: [u8; 3],
    /// Virtual interrupt control (`V_INTR_MASKING` is bit 24).
    pub int_ctl: u64,
    /// Bit 0: the guest is in an interrupt shadow.
    pub int_state: u64,
    /// Why the guest exited.
    pub exit_code: u64,
    /// Exit information 1.
    pub exit_info1: u64,
    /// Exit information 2.
    pub exit_info2: u64,
    /// An event that was being delivered when the guest exited.
    pub exit_int_info: u64,
    /// Bit 0: nested paging enabled.
    pub np_enable: u64,
    _r2: [u8; 0xa8 - 0x98],
    /// An event to inject at the next `VMRUN` (bit 31 valid).
    pub event_inj: u64,
    /// The nested page-table root (host-physical).
    pub ncr3: u64,
    /// LBR virtualisation.
    pub lbr_ctl: u64,
    /// VMCB clean bits (0: nothing cached).
    pub clean: u64,
    /// Next RIP (not provided by QEMU's TCG).
    pub next_rip: u64,
    _r3: [u8; 0x400 - 0xd0],
    // The state-save area.
    /// `es`.
    pub es: VmcbSeg,
    /// `cs`.
    pub cs: VmcbSeg,
    /// `ss`.
    pub ss: VmcbSeg,
    /// `ds`.
    pub ds: VmcbSeg,
    /// `fs`.
    pub fs: VmcbSeg,
    /// `gs`.
    pub gs: VmcbSeg,
    /// GDTR.
    pub gdtr: VmcbSeg,
    /// LDTR.
    pub ldtr: VmcbSeg,
    /// IDTR.
    pub idtr: VmcbSeg,
    /// TR.
    pub tr: VmcbSeg,
    _r4: [u8; 0x4cb - 0x4a0],
    /// CPL.
    pub cpl: u8,
    _r5: [u8; 4],
    /// EFER (with SVME).
    pub efer: u64,
    _r6: [u8; 0x548 - 0x4d8],
    /// CR4.
    pub cr4: u64,
    /// CR3 (the guest's own, guest-physical).
    pub cr3: u64,
    /// CR0.
    pub cr0: u64,
    /// DR7.
    pub dr7: u64,
    /// DR6.
    pub dr6: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP.
    pub rip: u64,
    _r7: [u8; 0x5d8 - 0x580],
    /// RSP.
    pub rsp: u64,
    _r8: [u8; 0x5f8 - 0x5e0],
    /// RAX.
    pub rax: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub sfmask: u64,
    /// KernelGSbase.
    pub kernel_gs_base: u64,
    /// SYSENTER_CS.
    pub sysenter_cs: u64,
    /// SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// CR2.
    pub cr2: u64,
    _r9: [u8; 0x668 - 0x648],
    /// The guest's PAT.
    pub g_pat: u64,
    _r10: [u8; 4096 - 0x670],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Vmcb>() == 4096);
    assert!(offset_of!(Vmcb, intercept1) == 0x0c);
    assert!(offset_of!(Vmcb, intercept2) == 0x10);
    assert!(offset_of!(Vmcb, pause_filter_threshold) == 0x3c);
    assert!(offset_of!(Vmcb, iopm_base) == 0x40);
    assert!(offset_of!(Vmcb, msrpm_base) == 0x48);
    assert!(offset_of!(Vmcb, asid) == 0x58);
    assert!(offset_of!(Vmcb, tlb_control) == 0x5c);
    assert!(offset_of!(Vmcb, int_ctl) == 0x60);
    assert!(offset_of!(Vmcb, int_state) == 0x68);
    assert!(offset_of!(Vmcb, exit_code) == 0x70);
    assert!(offset_of!(Vmcb, exit_int_info) == 0x88);
    assert!(offset_of!(Vmcb, np_enable) == 0x90);
    assert!(offset_of!(Vmcb, event_inj) == 0xa8);
    assert!(offset_of!(Vmcb, ncr3) == 0xb0);
    assert!(offset_of!(Vmcb, next_rip) == 0xc8);
    assert!(offset_of!(Vmcb, es) == 0x400);
    assert!(offset_of!(Vmcb, tr) == 0x490);
    assert!(offset_of!(Vmcb, cpl) == 0x4cb);
    assert!(offset_of!(Vmcb, efer) == 0x4d0);
    assert!(offset_of!(Vmcb, cr4) == 0x548);
    assert!(offset_of!(Vmcb, rip) == 0x578);
    assert!(offset_of!(Vmcb, rsp) == 0x5d8);
    assert!(offset_of!(Vmcb, rax) == 0x5f8);
    assert!(offset_of!(Vmcb, cr2) == 0x640);
    assert!(offset_of!(Vmcb, g_pat) == 0x668);
};

impl core::fmt::Debug for Vmcb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vmcb")
            .field("rip", &self.rip)
            .field("exit_code", &self.exit_code)
            .finish_non_exhaustive()
    }
}

/// Bits of [`Vmcb::intercept1`].
pub mod intercept {
    /// Physical interrupts.
    pub const INTR: u32 = 1 << 0;
    /// NMIs.
    pub const NMI: u32 = 1 << 1;
    /// SMIs.
    pub const SMI: u32 = 1 << 2;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// `CPUID`.
    pub const CPUID: u32 = 1 << 18;
    /// `INVD`.
    pub const INVD: u32 = 1 << 22;
    /// `HLT`.
    pub const HLT: u32 = 1 << 24;
    /// `INVLPGA`.
    pub const INVLPGA: u32 = 1 << 26;
    /// Port I/O, through the I/O permission map.
    pub const IOIO: u32 = 1 << 27;
    /// `RDMSR`/`WRMSR`, through the MSR permission map.
    pub const MSR: u32 = 1 << 28;
    /// Task switches.
    pub const TASK_SWITCH: u32 = 1 << 29;
    /// Shutdown (a triple fault).
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Bits of [`Vmcb::intercept2`].
pub mod intercept2 {
    /// `VMRUN` (mandatory).
    pub const VMRUN: u32 = 1 << 0;
    /// `VMMCALL`: the hypercall.
    pub const VMMCALL: u32 = 1 << 1;
    /// `VMLOAD`.
    pub const VMLOAD: u32 = 1 << 2;
    /// `VMSAVE`.
    pub const VMSAVE: u32 = 1 << 3;
    /// `STGI`.
    pub const STGI: u32 = 1 << 4;
    /// `CLGI`.
    pub const CLGI: u32 = 1 << 5;
    /// `SKINIT`.
    pub const SKINIT: u32 = 1 << 6;
    /// `WBINVD`.
    pub const WBINVD: u32 = 1 << 9;
    /// `MONITOR`.
    pub const MONITOR: u32 = 1 << 10;
    /// `MWAIT`.
    pub const MWAIT: u32 = 1 << 11;
    /// `XSETBV`.
    pub const XSETBV: u32 = 1 << 13;
}

/// Exit codes.
pub mod exit {
    /// A physical interrupt.
    pub const INTR: u64 = 0x60;
    /// An NMI.
    pub const NMI: u64 = 0x61;
    /// `CPUID`.
    pub const CPUID: u64 = 0x72;
    /// `HLT`.
    pub const HLT: u64 = 0x78;
    /// Port I/O.
    pub const IOIO: u64 = 0x7b;
    /// `RDMSR` or `WRMSR` (EXITINFO1 0 or 1).
    pub const MSR: u64 = 0x7c;
    /// Shutdown: the guest triple-faulted.
    pub const SHUTDOWN: u64 = 0x7f;
    /// `VMMCALL`.
    pub const VMMCALL: u64 = 0x81;
    /// A nested page fault (EXITINFO2 the guest-physical address).
    pub const NPF: u64 = 0x400;
    /// `VMRUN` found the VMCB invalid (the low 32 bits under TCG).
    pub const INVALID: u64 = 0xffff_ffff;
}

/// `V_INTR_MASKING` in [`Vmcb::int_ctl`]: the host's RFLAGS.IF, not the
/// guest's, masks physical interrupts while the guest runs.
pub const V_INTR_MASKING: u64 = 1 << 24;

impl Vmcb {
    /// A VMCB of zeroes, on the heap.
    pub fn new_boxed() -> Box<Vmcb> {
        // SAFETY: every field of `Vmcb` is an integer or an array of them,
        // for which all-zero bytes are a valid value.
        unsafe { Box::<Vmcb>::new_zeroed().assume_init() }
    }

    /// The VMCB's physical address.
    pub fn paddr(&self) -> u64 {
        heap_paddr(self as *const Vmcb as u64)
    }
}

/// The physical address of a heap object: the heap is RAM claimed through
/// the direct map.
fn heap_paddr(vaddr: u64) -> u64 {
    phys::direct_map_to_phys(vaddr)
        .unwrap_or_else(|| panic!("heap object at {vaddr:#x} is not in the direct map"))
}

/// What the CPU offers for HVM guests.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// Address-space ids the CPU has (ASID 0 is the host's).
    pub asids: u32,
}

/// Why HVM guests cannot run on this CPU.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum Unsupported {
    /// CPUID says no SVM.
    #[error("the CPU has no AMD SVM (CPUID 0x80000001 ECX bit 2): run QEMU with `-cpu max` or `-cpu qemu64,+svm,+npt`")]
    NoSvm,
    /// CPUID says SVM without nested paging.
    #[error("the CPU has SVM but no nested paging (CPUID 0x8000000A EDX bit 0)")]
    NoNestedPaging,
    /// Firmware disabled SVM.
    #[error("SVM is disabled by firmware (VM_CR.SVMDIS)")]
    Disabled,
}

/// Checks that the CPU can run HVM guests.
pub fn features() -> Result<Features, Unsupported> {
    // CPUID has no side effect (a safe intrinsic).
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    if max < 0x8000_000a {
        return Err(Unsupported::NoSvm);
    }
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    if ext.ecx & (1 << 2) == 0 {
        return Err(Unsupported::NoSvm);
    }
    let svm = core::arch::x86_64::__cpuid(0x8000_000a);
    if svm.edx & 1 == 0 {
        return Err(Unsupported::NoNestedPaging);
    }
    // SAFETY: VM_CR exists on every CPU with SVM (checked above); reading
    // it changes nothing.
    let vm_cr = unsafe { Msr::new(MSR_VM_CR).read() };
    if vm_cr & (1 << 4) != 0 {
        return Err(Unsupported::Disabled);
    }
    Ok(Features { asids: svm.ebx })
}

/// The host's areas for the world switch, made by [`enable`].
pub struct Host {
    /// Where `VMRUN` keeps the host's state (`VM_HSAVE_PA`).
    _hsave: Box<Page>,
    /// Where [`run`] keeps the host's hidden state (`VMSAVE`).
    vmsave: Box<Page>,
    /// The I/O permission map: every port intercepted.
    iopm: Box<[Page; 3]>,
    /// The MSR permission map: every MSR intercepted.
    msrpm: Box<[Page; 2]>,
}

impl core::fmt::Debug for Host {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Host {
    /// The I/O permission map's physical address.
    pub fn iopm(&self) -> u64 {
        heap_paddr(self.iopm.as_ptr() as u64)
    }

    /// The MSR permission map's physical address.
    pub fn msrpm(&self) -> u64 {
        heap_paddr(self.msrpm.as_ptr() as u64)
    }
}

/// Turns SVM on (`EFER.SVME`) and gives it the host save area. Call once,
/// after [`features`] said yes.
pub fn enable() -> Host {
    // On the heap from the start: a debug build would build a 12 KiB array
    // on the (boot) stack first.
    // SAFETY: all-zero bytes are a valid `Page` and a valid array of them.
    let hsave = unsafe { Box::<Page>::new_zeroed().assume_init() };
    // SAFETY: as above.
    let vmsave = unsafe { Box::<Page>::new_zeroed().assume_init() };
    // SAFETY: as above.
    let mut iopm = unsafe { Box::<[Page; 3]>::new_zeroed().assume_init() };
    // SAFETY: as above.
    let mut msrpm = unsafe { Box::<[Page; 2]>::new_zeroed().assume_init() };
    // Every port and every MSR intercepted.
    iopm.iter_mut().for_each(|p| p.0.fill(0xff));
    msrpm.iter_mut().for_each(|p| p.0.fill(0xff));
    // SAFETY: the CPU has SVM (the caller checked `features`); setting
    // SVME only makes the SVM instructions legal. The save area is a page
    // of the heap that lives as long as the hypervisor (the `Host` is kept
    // in `Hv`), 4 KiB aligned as `VM_HSAVE_PA` requires.
    unsafe {
        let mut efer = Msr::new(MSR_EFER);
        efer.write(efer.read() | EFER_SVME);
        Msr::new(MSR_VM_HSAVE_PA).write(heap_paddr(&*hsave as *const Page as u64));
    }
    Host {
        _hsave: hsave,
        vmsave,
        iopm,
        msrpm,
    }
}

/// A vCPU's x87/SSE state as `FXSAVE` writes it: 512 bytes, 16-aligned.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FxArea(pub [u8; 512]);

impl core::fmt::Debug for FxArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FxArea").finish_non_exhaustive()
    }
}

extern "C" {
    fn svm_world_switch(regs: *mut GpRegs, vmcb: u64, host: u64, fx: *mut FxArea);
}

/// Runs the guest of `vmcb` until it exits: its general registers (but
/// `rax` and `rsp`, which are in the VMCB) are `regs`, saved back on exit,
/// and its x87/SSE state `fx` (`VMRUN` switches neither). Returns with
/// interrupts off and GIF set; a physical interrupt that ended the guest's
/// turn is still pending ([`take_interrupt`]).
///
/// The hypervisor runs with CR0.EM set (PV guests may not use the FPU):
/// around the guest's turn the switch clears EM and TS and sets
/// CR4.OSFXSR, loads the guest's state (`FXRSTOR`), and after the exit saves
/// it (`FXSAVE`) and restores CR0 and CR4, so no guest ever sees another's
/// registers.
pub fn run(host: &Host, vmcb: &mut Vmcb, regs: &mut GpRegs, fx: &mut FxArea) {
    let vmcb_pa = vmcb.paddr();
    let host_pa = heap_paddr(&*host.vmsave as *const Page as u64);
    // SAFETY: SVM is enabled with a host save area (`Host` exists only
    // after `enable`); `vmcb` is a page-aligned VMCB this call borrows
    // exclusively, so the CPU's writes to it during `VMRUN` alias no other
    // reference; its intercepts (set by `crate::hvm`) include VMRUN and
    // every instruction that could change the host's state, and its
    // nested page tables map only the guest's own frames and the device
    // memory it was given, so the guest cannot reach the hypervisor's
    // memory. The switch saves and restores every callee-saved register
    // and the host's hidden state, and writes only `regs` and `fx`
    // (16-aligned by its type, borrowed exclusively); CR0 and CR4 are as
    // they were when it returns.
    unsafe { svm_world_switch(regs, vmcb_pa, host_pa, fx) };
}

/// Takes the interrupt that ended a guest's turn, if it is still pending:
/// opens interrupts for one instruction. The handler runs as for an
/// interrupt of the idle loop (`crate::trap`: counted and acknowledged).
pub fn take_interrupt() {
    // SAFETY: the hypervisor's IDT is loaded; an interrupt taken here runs
    // the ordinary handler on this stack, which touches no state the
    // caller holds (it only counts and acknowledges); interrupts are off
    // again afterwards.
    // Not `nomem`: the handler writes the tick count the caller reads.
    unsafe { asm!("sti", "nop", "cli", options(nostack)) };
}

global_asm!(
    r#"
    .section .text.svm, "ax"
    .code64
    .global svm_world_switch
/* svm_world_switch(regs: rdi, vmcb: rsi, host: rdx, fx: rcx) */
svm_world_switch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi
    push %rsi
    push %rdx
    /* [rsp] host area, [rsp+8] vmcb, [rsp+16] regs */
    /* GIF clear before the guest's hidden state is loaded: no NMI may be
       taken on the guest's TR. */
    clgi
    /* The FPU: host CR0 and CR4 kept in r12/r13, EM and TS clear, OSFXSR
       and OSXMMEXCPT set, the guest's state loaded; fx kept in r14. */
    mov %rcx, %r14
    mov %cr0, %r12
    mov %cr4, %r13
    mov %r12, %rax
    and $~0xc, %rax
    mov %rax, %cr0
    mov %r13, %rax
    or $0x600, %rax
    mov %rax, %cr4
    fxrstor64 (%r14)
    mov %rdx, %rax
    vmsave %rax
    mov 8(%rsp), %rax
    vmload %rax
    mov 16(%rsp), %rdi
    mov 8(%rdi), %rbx
    mov 16(%rdi), %rcx
    mov 24(%rdi), %rdx
    mov 32(%rdi), %rsi
    mov 48(%rdi), %rbp
    mov 56(%rdi), %r8
    mov 64(%rdi), %r9
    mov 72(%rdi), %r10
    mov 80(%rdi), %r11
    /* r12-r14 hold host values the guest's replace: keep them on the
       stack across VMRUN. */
    push %r12
    push %r13
    push %r14
    mov 88(%rdi), %r12
    mov 96(%rdi), %r13
    mov 104(%rdi), %r14
    mov 112(%rdi), %r15
    mov 40(%rdi), %rdi
    sti
    vmrun %rax
    cli
    push %rdi
    /* [rsp] guest rdi, [rsp+8] fx, [rsp+16] host cr4, [rsp+24] host cr0,
       [rsp+32] host area, [rsp+40] vmcb, [rsp+48] regs */
    mov 48(%rsp), %rdi
    mov %rbx, 8(%rdi)
    mov %rcx, 16(%rdi)
    mov %rdx, 24(%rdi)
    mov %rsi, 32(%rdi)
    mov %rbp, 48(%rdi)
    mov %r8, 56(%rdi)
    mov %r9, 64(%rdi)
    mov %r10, 72(%rdi)
    mov %r11, 80(%rdi)
    mov %r12, 88(%rdi)
    mov %r13, 96(%rdi)
    mov %r14, 104(%rdi)
    mov %r15, 112(%rdi)
    pop %rax
    mov %rax, 40(%rdi)
    pop %r14
    pop %r13
    pop %r12
    fxsave64 (%r14)
    mov %r13, %cr4
    mov %r12, %cr0
    mov 8(%rsp), %rax
    vmsave %rax
    mov (%rsp), %rax
    vmload %rax
    stgi
    add $24, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    "#,
    options(att_syntax)
);

// The offsets `svm_world_switch` uses.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(GpRegs, rbx) == 8);
    assert!(offset_of!(GpRegs, rsi) == 32);
    assert!(offset_of!(GpRegs, rdi) == 40);
    assert!(offset_of!(GpRegs, rbp) == 48);
    assert!(offset_of!(GpRegs, r8) == 56);
    assert!(offset_of!(GpRegs, r15) == 112);
};
