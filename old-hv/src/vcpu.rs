//! vCPU: a paused vCPU's context into the state. Restored by
//! `new_hv::vcpu`.

use handover_abi::{Vcpu, VcpuFlags};
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
