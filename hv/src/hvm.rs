//! HVM domains at run time: a VMCB per vCPU, entered with `VMRUN`
//! (`arch::svm`), and the exits — `VMMCALL` (the hypercalls), `HLT`,
//! nested page faults, port I/O, MSRs, physical interrupts, shutdown.
//!
//! The scheduler knows one kind of vCPU state: the trap frame. An HVM vCPU
//! is given one while the hypervisor handles its exit ([`synth_frame`]:
//! its general registers, `rax` from the VMCB), so the hypercall table and
//! the scheduler run unchanged; what they leave in the frame goes back to
//! the vCPU ([`HvmVcpu::absorb`]) — when the scheduler switches away, it
//! does that itself (`Hv::schedule`).
//!
//! [`run`] is called at the end of every trap (`crate::trap`) and by
//! `Hv::start`: while the scheduler's choice is an HVM vCPU it enters it,
//! handles its exit, and loops; it returns once the choice is a PV vCPU,
//! whose frame the trap's `iretq` resumes.

pub mod logdirty;
pub mod mmio;

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use hvlu_types::regs::HvmContext;
use hvlu_types::{DomId, GpRegs, Mfn};

use crate::arch::svm::{self, exit, intercept, intercept2, Host, Vmcb, VmcbSeg};
use crate::arch::trap::{TrapFrame, SYSCALL_VECTOR};
use crate::arch::paging;
use crate::domain::npt::Npt;
use crate::hv::Hv;
use crate::{hvprintln, hypercall, trap};

use hvlu_types::hvm::efer::{GUEST as EFER_GUEST, LMA as EFER_LMA};
use hvlu_types::hvm::eventinj::{self, VALID as EVENT_VALID};
/// `EFER`.
const MSR_EFER: u32 = 0xc000_0080;
/// The PAT MSR.
const MSR_PAT: u32 = 0x277;

/// An HVM domain's part: its nested page tables and address-space id.
#[derive(Debug)]
pub struct HvmDomain {
    /// The nested page tables.
    pub npt: Npt,
    /// Its ASID (never 0, the host's).
    pub asid: u32,
    /// The nested tables changed since its vCPUs last ran: flush the
    /// guest's TLB entries at the next `VMRUN`.
    pub flush: bool,
    /// Log-dirty tracking, while it is on ([`logdirty`]).
    pub log_dirty: Option<logdirty::LogDirty>,
}

/// An HVM vCPU: its VMCB and the general registers `VMRUN` does not switch.
pub struct HvmVcpu {
    /// The VMCB.
    pub vmcb: Box<Vmcb>,
    /// `rbx`..`r15` (its `rax` is the VMCB's).
    pub regs: GpRegs,
    /// Its x87/SSE state, which `VMRUN` does not switch.
    pub fpu: Box<svm::FxArea>,
}

impl core::fmt::Debug for HvmVcpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HvmVcpu")
            .field("rip", &self.vmcb.rip)
            .finish_non_exhaustive()
    }
}

impl HvmVcpu {
    /// A vCPU that resumes `ctx` on the nested tables at `ncr3`, with this
    /// hypervisor's intercepts and permission maps.
    pub fn new(ctx: &HvmContext, host: &Host, ncr3: Mfn, asid: u32) -> HvmVcpu {
        let mut vmcb = Vmcb::new_boxed();
        vmcb.intercept1 = intercept::INTR
            | intercept::NMI
            | intercept::SMI
            | intercept::INIT
            | intercept::INVD
            | intercept::HLT
            | intercept::CPUID
            | intercept::INVLPGA
            | intercept::IOIO
            | intercept::MSR
            | intercept::TASK_SWITCH
            | intercept::SHUTDOWN;
        vmcb.intercept2 = intercept2::VMRUN
            | intercept2::VMMCALL
            | intercept2::VMLOAD
            | intercept2::VMSAVE
            | intercept2::STGI
            | intercept2::CLGI
            | intercept2::SKINIT
            | intercept2::WBINVD
            | intercept2::MONITOR
            | intercept2::MWAIT
            | intercept2::XSETBV;
        vmcb.iopm_base = host.iopm();
        vmcb.msrpm_base = host.msrpm();
        vmcb.asid = asid;
        vmcb.tlb_control = 1;
        vmcb.int_ctl = svm::V_INTR_MASKING;
        vmcb.np_enable = 1;
        vmcb.ncr3 = ncr3.addr();
        let mut vcpu = HvmVcpu {
            vmcb,
            regs: GpRegs::default(),
            fpu: Box::new(svm::FxArea([0; 512])),
        };
        vcpu.load(ctx);
        vcpu
    }

    /// Loads the architectural state `ctx`.
    fn load(&mut self, ctx: &HvmContext) {
        let s = &mut self.vmcb;
        s.rip = ctx.rip;
        s.rsp = ctx.rsp;
        s.rflags = ctx.rflags;
        s.rax = ctx.regs.rax;
        s.cr0 = ctx.cr0;
        s.cr2 = ctx.cr2;
        s.cr3 = ctx.cr3;
        s.cr4 = ctx.cr4;
        s.efer = (ctx.efer & EFER_GUEST) | svm::EFER_SVME;
        s.dr6 = ctx.dr6;
        s.dr7 = ctx.dr7;
        s.es = ctx.es.into();
        s.cs = ctx.cs.into();
        s.ss = ctx.ss.into();
        s.ds = ctx.ds.into();
        s.fs = ctx.fs.into();
        s.gs = ctx.gs.into();
        s.tr = ctx.tr.into();
        s.ldtr = ctx.ldtr.into();
        s.gdtr = VmcbSeg::table(ctx.gdtr);
        s.idtr = VmcbSeg::table(ctx.idtr);
        s.cpl = ctx.cpl;
        s.star = ctx.star;
        s.lstar = ctx.lstar;
        s.cstar = ctx.cstar;
        s.sfmask = ctx.sfmask;
        s.kernel_gs_base = ctx.kernel_gs_base;
        s.sysenter_cs = ctx.sysenter_cs;
        s.sysenter_esp = ctx.sysenter_esp;
        s.sysenter_eip = ctx.sysenter_eip;
        s.g_pat = ctx.pat;
        s.event_inj = ctx.pending_event;
        s.int_state = u64::from(ctx.interrupt_shadow);
        self.regs = ctx.regs;
        self.fpu.0 = ctx.fpu.to_bytes();
    }

    /// The architectural state, as a live update carries it.
    pub fn context(&self) -> HvmContext {
        let s = &self.vmcb;
        let mut regs = self.regs;
        regs.rax = s.rax;
        HvmContext {
            regs,
            rip: s.rip,
            rsp: s.rsp,
            rflags: s.rflags,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer & !svm::EFER_SVME,
            dr6: s.dr6,
            dr7: s.dr7,
            es: s.es.into(),
            cs: s.cs.into(),
            ss: s.ss.into(),
            ds: s.ds.into(),
            fs: s.fs.into(),
            gs: s.gs.into(),
            tr: s.tr.into(),
            ldtr: s.ldtr.into(),
            gdtr: s.gdtr.as_table(),
            idtr: s.idtr.as_table(),
            cpl: s.cpl,
            star: s.star,
            lstar: s.lstar,
            cstar: s.cstar,
            sfmask: s.sfmask,
            kernel_gs_base: s.kernel_gs_base,
            sysenter_cs: s.sysenter_cs,
            sysenter_esp: s.sysenter_esp,
            sysenter_eip: s.sysenter_eip,
            pat: s.g_pat,
            pending_event: s.event_inj,
            interrupt_shadow: s.int_state & 1 != 0,
            fpu: hvlu_types::regs::FxState::from_bytes(&self.fpu.0),
        }
    }

    /// Takes back the general registers from a frame the hypercall table or
    /// the scheduler worked on ([`synth_frame`]).
    pub fn absorb(&mut self, frame: &TrapFrame) {
        self.regs = frame.regs;
        self.vmcb.rax = frame.regs.rax;
    }
}

/// A trap frame standing for HVM vCPU `v` while its exit is handled: its
/// general registers (`rax` the VMCB's), a ring-3 code selector (it is a
/// guest's context), the hypercall vector.
pub fn synth_frame(v: &HvmVcpu) -> TrapFrame {
    let mut f = TrapFrame::user(v.vmcb.rip, v.vmcb.rsp);
    f.regs = v.regs;
    f.regs.rax = v.vmcb.rax;
    f.vector = SYSCALL_VECTOR;
    f
}

/// The ASID of domain `id`: ASIDs 1.. are the domain ids + 1, folded into
/// the CPU's count (two domains may share one; every `VMRUN` after a
/// switch between them flushes, see [`run`]).
pub fn asid_for(id: DomId, asids: u32) -> u32 {
    1 + u32::from(id.0) % asids.saturating_sub(1).max(1)
}

/// Runs HVM vCPUs while the scheduler's choice is one; returns when it is
/// a PV vCPU, whose context is then in `frame`.
pub fn run(hv: &mut Hv, frame: &mut TrapFrame) {
    let mut last: Option<(DomId, usize)> = None;
    loop {
        let Some((d, v)) = hv.sched.current else {
            return;
        };
        let Some(host) = hv.svm.as_ref() else {
            return;
        };
        let Some(dom) = hv.domains.get_mut(&d) else {
            return;
        };
        let Some(hd) = dom.hvm.as_mut() else {
            return;
        };
        // Another vCPU ran since (it may share the ASID): flush.
        let flush = core::mem::take(&mut hd.flush) || last != Some((d, v));
        let Some(vcpu) = dom.vcpus.get_mut(v).and_then(|c| c.hvm.as_deref_mut()) else {
            return;
        };
        if last != Some((d, v)) {
            // Off any PV guest's tables: an HVM guest runs on the
            // hypervisor's own.
            paging::load_hv_root();
        }
        last = Some((d, v));
        vcpu.vmcb.tlb_control = u8::from(flush);
        // A short turn (`crate::sched`) counts the time in the guest.
        hv.sched.trap_out();
        svm::run(host, &mut vcpu.vmcb, &mut vcpu.regs, &mut vcpu.fpu);
        hv.sched.trap_in();
        vcpu.vmcb.tlb_control = 0;
        handle_exit(hv, frame, d, v);
    }
}

/// What to do with the exit of vCPU `v` of `d`.
fn handle_exit(hv: &mut Hv, frame: &mut TrapFrame, d: DomId, v: usize) {
    let Some(vcpu) = hv.domains.get_mut(&d).and_then(|dom| {
        dom.vcpus
            .get_mut(v)
            .and_then(|c| c.hvm.as_deref_mut())
    }) else {
        return;
    };
    let code = vcpu.vmcb.exit_code;
    let (info1, info2) = (vcpu.vmcb.exit_info1, vcpu.vmcb.exit_info2);
    // An event the CPU was delivering when the guest exited (a nested page
    // fault on its stack while log-dirty write-protects it, an interrupt
    // that arrived): delivered again at the next entry, and carried by an
    // update meanwhile (`HvmContext::pending_event`).
    if vcpu.vmcb.exit_int_info & EVENT_VALID != 0 {
        vcpu.vmcb.event_inj = vcpu.vmcb.exit_int_info;
    }
    match code & 0xffff_ffff {
        exit::INTR => {
            let before = trap::TIMER_IRQS.load(Ordering::Relaxed);
            svm::take_interrupt();
            if trap::TIMER_IRQS.load(Ordering::Relaxed) != before {
                with_frame(hv, frame, d, v, trap::tick);
            }
        }
        exit::NMI => svm::take_interrupt(),
        exit::VMMCALL => {
            vcpu.vmcb.rip = vcpu.vmcb.rip.wrapping_add(3);
            if vcpu.vmcb.cpl != 0 {
                // Only the guest's kernel makes hypercalls (as in Xen):
                // its user space gets a refusal, nothing else.
                vcpu.vmcb.rax = hypercall::return_value(Err(pv_abi::hypercall::Error::Permission));
                return;
            }
            with_frame(hv, frame, d, v, hypercall::hypercall);
        }
        exit::CPUID => cpuid(vcpu),
        exit::HLT => {
            // Nothing to wait for but the next turn: a yield.
            vcpu.vmcb.rip = vcpu.vmcb.rip.wrapping_add(1);
            with_frame(hv, frame, d, v, |hv, f| hv.schedule(f, true));
        }
        exit::IOIO => {
            // No port is the guest's: reads give all ones, writes are
            // dropped. EXITINFO2 is the next RIP.
            let info = vcpu.vmcb.exit_info1;
            if info & (1 << 2) != 0 {
                return fatal(hv, frame, d, v,
                    format_args!("string port I/O (ins/outs), which is not emulated"),
                );
            }
            if info & 1 != 0 {
                let rax = &mut vcpu.vmcb.rax;
                *rax = match (info >> 4) & 7 {
                    1 => *rax | 0xff,
                    2 => *rax | 0xffff,
                    // A 32-bit load zero-extends.
                    _ => 0xffff_ffff,
                };
            }
            vcpu.vmcb.rip = vcpu.vmcb.exit_info2;
        }
        exit::MSR => msr(hv, d, v),
        exit::NPF => {
            // A write (bit 1) to a present page (bit 0) log-dirty keeps
            // read-only: marked dirty, made writable, retried.
            let write = info1 & 0b11 == 0b11;
            let gpfn = hvlu_types::Gpfn(info2 / hvlu_types::PAGE_SIZE);
            let emulated = (mmio::EMU_GPA..mmio::EMU_GPA + hvlu_types::PAGE_SIZE)
                .contains(&info2)
                && hv.domains.get(&d).is_some_and(|dom| dom.hole().contains(gpfn));
            if emulated {
                let cycles = u128::from(crate::arch::cpu::rdtsc().saturating_sub(hv.boot_tsc));
                let uptime_us = (cycles * 1000 / u128::from(hv.tsc_khz.max(1))) as u64;
                let done = hv
                    .domains
                    .get_mut(&d)
                    .map(|dom| mmio::emulate(dom, v, info2, uptime_us));
                if let Some(Err(e)) = done {
                    fatal(hv, frame, d, v,
                        format_args!("an access to its emulated device it cannot make: {e}"),
                    );
                }
                return;
            }
            let logged = write
                && hv
                    .domains
                    .get_mut(&d)
                    .is_some_and(|dom| logdirty::write_fault(dom, gpfn));
            if !logged {
                fatal(hv, frame, d, v,
                    format_args!(
                        "a nested page fault at guest-physical {info2:#x} (error {info1:#x})"
                    ),
                );
            }
        }
        exit::SHUTDOWN => fatal(hv, frame, d, v, format_args!("a triple fault")),
        exit::INVALID => fatal(hv, frame, d, v,
            format_args!("VMRUN refused its VMCB (invalid guest state)"),
        ),
        other => fatal(hv, frame, d, v,
            format_args!(
                "an exit the hypervisor does not handle ({other:#x}, info {info1:#x} {info2:#x})"
            ),
        ),
    }
}

/// Runs `work` on a frame standing for vCPU `v` of `d`; what it leaves
/// goes back to the vCPU if it is still the one on the CPU, and to `frame`
/// (the trap's) if the scheduler chose a PV vCPU.
fn with_frame(
    hv: &mut Hv,
    frame: &mut TrapFrame,
    d: DomId,
    v: usize,
    work: impl FnOnce(&mut Hv, &mut TrapFrame),
) {
    let Some(vcpu) = hv.vcpu_hvm(d, v) else {
        return;
    };
    let mut f = synth_frame(vcpu);
    work(hv, &mut f);
    match hv.sched.current {
        Some(cur) if cur == (d, v) => {
            if let Some(vcpu) = hv.vcpu_hvm_mut(d, v) {
                vcpu.absorb(&f);
            }
        }
        Some((nd, _)) if hv.domains.get(&nd).is_some_and(|x| x.hvm.is_none()) => *frame = f,
        _ => {}
    }
}

/// `CPUID`: the host's answer without what the guest cannot use here —
/// XSAVE, OSXSAVE and AVX (XSETBV is not emulated), SVM (no nesting) —
/// and with the hypervisor-present bit.
fn cpuid(vcpu: &mut HvmVcpu) {
    let leaf = vcpu.vmcb.rax as u32;
    let sub = vcpu.regs.rcx as u32;
    let mut r = core::arch::x86_64::__cpuid_count(leaf, sub);
    match leaf {
        1 => {
            r.ecx &= !(1 << 26 | 1 << 27 | 1 << 28);
            r.ecx |= 1 << 31;
        }
        7 => {
            // AVX2, AVX-512 and friends need XSAVE state.
            r.ebx &= !(1 << 5 | 0xffff_0000);
        }
        0xd => r = core::arch::x86_64::CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 },
        0x8000_0001 => r.ecx &= !(1 << 2),
        0x8000_000a => r = core::arch::x86_64::CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 },
        _ => {}
    }
    vcpu.vmcb.rax = u64::from(r.eax);
    vcpu.regs.rbx = u64::from(r.ebx);
    vcpu.regs.rcx = u64::from(r.ecx);
    vcpu.regs.rdx = u64::from(r.edx);
    vcpu.vmcb.rip = vcpu.vmcb.rip.wrapping_add(2);
}

/// `RDMSR`/`WRMSR`: EFER, the PAT, the SYSCALL and SYSENTER MSRs and the
/// segment bases are the guest's (in the VMCB, carried by an update); any
/// other MSR reads as 0 and ignores writes.
fn msr(hv: &mut Hv, d: DomId, v: usize) {
    let Some(vcpu) = hv.vcpu_hvm_mut(d, v) else {
        return;
    };
    let (efer, pat) = (vcpu.vmcb.efer, vcpu.vmcb.g_pat);
    let s = &mut vcpu.vmcb;
    let index = vcpu.regs.rcx as u32;
    let write = s.exit_info1 & 1 != 0;
    let value = (vcpu.regs.rdx << 32) | (s.rax & 0xffff_ffff);
    // The MSRs the VMCB holds (and a live update carries) are the guest's.
    let held: Option<&mut u64> = match index {
        MSR_PAT => Some(&mut s.g_pat),
        0xc000_0081 => Some(&mut s.star),
        0xc000_0082 => Some(&mut s.lstar),
        0xc000_0083 => Some(&mut s.cstar),
        0xc000_0084 => Some(&mut s.sfmask),
        0xc000_0100 => Some(&mut s.fs.base),
        0xc000_0101 => Some(&mut s.gs.base),
        0xc000_0102 => Some(&mut s.kernel_gs_base),
        0x174 => Some(&mut s.sysenter_cs),
        0x175 => Some(&mut s.sysenter_esp),
        0x176 => Some(&mut s.sysenter_eip),
        _ => None,
    };
    if write {
        match (index, held) {
            (MSR_EFER, _) => {
                // LMA is the CPU's to set; the rest of what the guest may.
                s.efer = (value & EFER_GUEST & !EFER_LMA) | (s.efer & EFER_LMA) | svm::EFER_SVME;
                if value & !EFER_GUEST != 0 {
                    s.efer = efer;
                    return inject_gp(vcpu);
                }
            }
            (_, Some(field)) => *field = value,
            _ => {}
        }
        // A write the CPU would refuse (a reserved PAT type, long mode
        // enabled under paging) is a #GP, as on hardware: the state stays
        // one VMRUN accepts.
        if vcpu.context().check().is_err() {
            vcpu.vmcb.efer = efer;
            vcpu.vmcb.g_pat = pat;
            return inject_gp(vcpu);
        }
    } else {
        let read = match (index, held) {
            (MSR_EFER, _) => s.efer & !svm::EFER_SVME,
            (_, Some(field)) => *field,
            _ => 0,
        };
        s.rax = read & 0xffff_ffff;
        vcpu.regs.rdx = read >> 32;
    }
    // RDMSR and WRMSR are two bytes.
    vcpu.vmcb.rip = vcpu.vmcb.rip.wrapping_add(2);
}

/// Makes the guest take a general-protection fault (error code 0) at its
/// current instruction, which is not advanced.
fn inject_gp(vcpu: &mut HvmVcpu) {
    vcpu.vmcb.event_inj = EVENT_VALID
        | eventinj::EV
        | eventinj::TYPE_EXCEPTION << eventinj::TYPE_SHIFT
        | 13;
}

/// Ends domain `d` for `what` (its vCPU `v` took it) and schedules
/// another vCPU.
fn fatal(
    hv: &mut Hv,
    frame: &mut TrapFrame,
    d: DomId,
    v: usize,
    what: core::fmt::Arguments<'_>,
) {
    let rip = hv
        .domains
        .get(&d)
        .and_then(|dom| dom.vcpus.get(v))
        .and_then(|c| c.hvm.as_ref())
        .map_or(0, |h| h.vmcb.rip);
    hvprintln!("d{d} (HVM) took {what} at rip {rip:#x}: destroying it");
    if let Some(dom) = hv.domains.get_mut(&d) {
        if !dom.reports.expect_fault {
            dom.reports.unexpected_faults += 1;
        }
    }
    let _ = hv.destroy_domain(d);
    let mut f = TrapFrame::default();
    hv.schedule(&mut f, false);
    if hv
        .current_domain()
        .is_some_and(|dom| dom.hvm.is_none())
    {
        *frame = f;
    }
}

impl Hv {
    /// HVM vCPU `v` of `d`.
    pub fn vcpu_hvm(&self, d: DomId, v: usize) -> Option<&HvmVcpu> {
        self.domains.get(&d)?.vcpus.get(v)?.hvm.as_deref()
    }

    /// HVM vCPU `v` of `d`, to change.
    pub fn vcpu_hvm_mut(&mut self, d: DomId, v: usize) -> Option<&mut HvmVcpu> {
        self.domains.get_mut(&d)?.vcpus.get_mut(v)?.hvm.as_deref_mut()
    }
}

/// Turns SVM on if the CPU has it; says why not otherwise (HVM domains are
/// then refused at create).
pub fn init() -> Option<(Host, u32)> {
    match svm::features() {
        Ok(f) => {
            let host = svm::enable();
            hvprintln!(
                "hvm: AMD SVM with nested paging, {} ASIDs",
                f.asids
            );
            Some((host, f.asids))
        }
        Err(e) => {
            hvprintln!("hvm: no HVM guests: {e}");
            None
        }
    }
}
