//! vCPU: a vCPU's context back from the state (`old_hv::vcpu::save` wrote
//! it), checked so that nothing the state says can fault the hypervisor
//! when it loads it.

use handover_abi::{DomId, Vcpu};
use hvlu_types::canonical::is_lower_half;
use hvlu_types::regs::rflags;
use hvlu_types::VcpuContext;

use crate::IncomingError;

/// The context of vCPU `v` of domain `domain`.
///
/// Refuses an instruction pointer, stack pointer or segment base outside
/// the guest half of the address space (loading one would fault in the
/// hypervisor: `iretq` to a non-canonical address, `wrmsr` of a
/// non-canonical base) and flags a guest cannot have
/// ([`rflags::GUEST_ALLOWED`]). Every field is named, so a field added to
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
    for (register, value) in [
        ("rip", rip),
        ("rsp", rsp),
        ("fs_base", fs_base),
        ("gs_base", gs_base),
        ("kernel_gs_base", kernel_gs_base),
    ] {
        if !is_lower_half(value) {
            return Err(IncomingError::VcpuAddress {
                domain,
                vcpu: id,
                register,
                value,
            });
        }
    }
    if rflags & !rflags::GUEST_ALLOWED != 0 {
        return Err(IncomingError::VcpuFlags {
            domain,
            vcpu: id,
            rflags,
        });
    }
    Ok(VcpuContext {
        regs,
        rip,
        rsp,
        rflags,
        cr3,
        fs_base,
        gs_base,
        kernel_gs_base,
    })
}
