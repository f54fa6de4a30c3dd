//! vCPU: a paused vCPU's context into the state. Restored by
//! `new_hv::vcpu`.

use handover_abi::{Vcpu, VcpuFlags};
use hvlu_types::regs::HvmContext;
use hvlu_types::VcpuContext;

/// The state's record of vCPU `id`, paused with context `ctx`.
///
/// Every field of the context is named here, so a field added to
/// [`VcpuContext`] does not compile until it is saved.
pub fn save(id: u32, ctx: &VcpuContext) -> Vcpu {
    let VcpuContext {
        regs,
        rip,
        rsp,
        rflags,
        cr3,
        fs_base,
        gs_base,
        kernel_gs_base,
    } = *ctx;
    Vcpu {
        id,
        regs,
        rip,
        rflags,
        rsp,
        cr3,
        fs_base,
        gs_base,
        kernel_gs_base,
        pending_events: 0,
        flags: VcpuFlags::ONLINE,
    }
}

/// The state's record of a paused HVM vCPU's context: the context itself,
/// every field named, so that a field added to [`HvmContext`] does not
/// compile until it is saved (restored by `new_hv::vcpu::restore_hvm`).
pub fn save_hvm(ctx: &HvmContext) -> HvmContext {
    let HvmContext {
        regs,
        rip,
        rsp,
        rflags,
        cr0,
        cr2,
        cr3,
        cr4,
        efer,
        dr6,
        dr7,
        es,
        cs,
        ss,
        ds,
        fs,
        gs,
        tr,
        ldtr,
        gdtr,
        idtr,
        cpl,
        star,
        lstar,
        cstar,
        sfmask,
        kernel_gs_base,
        sysenter_cs,
        sysenter_esp,
        sysenter_eip,
        pat,
        pending_event,
        interrupt_shadow,
    } = *ctx;
    HvmContext {
        regs,
        rip,
        rsp,
        rflags,
        cr0,
        cr2,
        cr3,
        cr4,
        efer,
        dr6,
        dr7,
        es,
        cs,
        ss,
        ds,
        fs,
        gs,
        tr,
        ldtr,
        gdtr,
        idtr,
        cpl,
        star,
        lstar,
        cstar,
        sfmask,
        kernel_gs_base,
        sysenter_cs,
        sysenter_esp,
        sysenter_eip,
        pat,
        pending_event,
        interrupt_shadow,
    }
}
