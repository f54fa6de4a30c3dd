//! vCPU: a vCPU's context back from the state (`old_hv::vcpu::save` wrote
//! it), checked so that nothing the state says can fault the hypervisor
//! when it loads it.

use handover_abi::Vcpu;
use hvlu_types::DomId;
use hvlu_types::VcpuContext;

use crate::IncomingError;

/// The context of vCPU `v` of domain `domain`.
///
/// Refuses what [`VcpuContext::check_guest`] refuses: an instruction
/// pointer, stack pointer or segment base outside the guest half, flags a
/// guest cannot have. Every field is named, so a field added to
/// [`VcpuContext`] does not compile until it is restored.
pub fn restore(domain: DomId, v: &Vcpu) -> Result<VcpuContext, IncomingError> {
    let Vcpu {
        id,
        regs,
        rip,
        rflags,
        rsp,
        cr3,
        fs_base,
        gs_base,
        kernel_gs_base,
        pending_events: _,
        flags: _,
    } = *v;
    let ctx = VcpuContext {
        regs,
        rip,
        rsp,
        rflags,
        cr3,
        fs_base,
        gs_base,
        kernel_gs_base,
    };
    ctx.check_guest().map_err(|error| IncomingError::Vcpu {
        domain,
        vcpu: id,
        error,
    })?;
    Ok(ctx)
}
