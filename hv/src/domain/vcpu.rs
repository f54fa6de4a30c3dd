//! Virtual CPUs, and their conversion to and from the register state every
//! hvlu layer shares ([`VcpuContext`]).

use hvlu_types::Mfn;
use hvlu_types::regs::rflags;
use hvlu_types::VcpuContext;

use crate::arch::trap::TrapFrame;

/// One virtual CPU.
#[derive(Debug)]
pub struct Vcpu {
    /// The saved context while the vCPU is not running.
    pub frame: TrapFrame,
    /// The L4 it runs on.
    pub cr3: Mfn,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// The GS base `swapgs` exchanges with. This hypervisor neither loads
    /// nor changes it (its guests do not use `swapgs`); it is kept so that a
    /// live update hands it on unchanged.
    pub kernel_gs_base: u64,
    /// An HVM vCPU's VMCB and registers (`crate::hvm`); `None` for a PV
    /// vCPU, whose state is the fields above.
    pub hvm: Option<alloc::boxed::Box<crate::hvm::HvmVcpu>>,
}

impl Vcpu {
    /// A vCPU that starts with `frame` on the L4 `cr3`, segment bases zero.
    pub fn new(frame: TrapFrame, cr3: Mfn) -> Vcpu {
        Vcpu {
            frame,
            cr3,
            fs_base: 0,
            gs_base: 0,
            kernel_gs_base: 0,
            hvm: None,
        }
    }

    /// The vCPU's saved state, as the live-update roles carry it.
    pub fn context(&self) -> VcpuContext {
        let f = &self.frame;
        VcpuContext {
            regs: f.regs,
            rip: f.rip,
            rsp: f.rsp,
            rflags: f.rflags,
            cr3: self.cr3,
            fs_base: self.fs_base,
            gs_base: self.gs_base,
            kernel_gs_base: self.kernel_gs_base,
        }
    }

    /// A vCPU that resumes `ctx` in ring 3. The selectors are this
    /// hypervisor's ring-3 ones whatever `ctx` came from, and the flags are
    /// made safe to run a guest with: no I/O privilege, interrupts on.
    pub fn from_context(ctx: &VcpuContext) -> Vcpu {
        let mut frame = TrapFrame::user(ctx.rip, ctx.rsp);
        frame.rflags = (ctx.rflags & !rflags::IOPL) | rflags::IF | rflags::RESERVED_ONE;
        frame.regs = ctx.regs;
        Vcpu {
            frame,
            cr3: ctx.cr3,
            fs_base: ctx.fs_base,
            gs_base: ctx.gs_base,
            kernel_gs_base: ctx.kernel_gs_base,
            hvm: None,
        }
    }
}

impl Vcpu {
    /// An HVM vCPU: its state is all in `hvm`; the PV fields stay at rest
    /// (no frame is ever resumed from them).
    pub fn hvm(hvm: crate::hvm::HvmVcpu) -> Vcpu {
        let mut v = Vcpu::new(TrapFrame::default(), Mfn(0));
        v.hvm = Some(alloc::boxed::Box::new(hvm));
        v
    }
}
