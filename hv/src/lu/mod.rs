//! Live update: the outgoing role (load, status, unload, exec) and the
//! incoming role (the entry, verify, the pass, rebuild, resume, release).
//!
//! Both roles are in every image, so an updated hypervisor can be updated
//! again. The framework's format and rules live in `handover-abi`,
//! `frame-ownership` and `old-hv`; this module is the reference
//! hypervisor's use of them.
//!
//! The staging area is the region's largest free gap at load time, laid out
//! as `[image][argument page][trampoline page][entry tables][state]`; the
//! incoming image's boot allocator treats `[image, end of state)` as one hole.

pub mod incoming;
pub mod outgoing;

use alloc::vec::Vec;

use frame_ownership::DomainView;
use handover_abi::{Mfn, PinnedTable, RunKind, Vcpu as StateVcpu};

/// The frametable pass's view of a decoded domain, borrowing its lists.
pub fn view(d: &handover_abi::Domain) -> DomainView<'_, PinnedTable, StateVcpu> {
    DomainView {
        id: d.id,
        runs: &d.runs,
        mmio: &d.mmio,
        pinned: &d.pinned,
        pin_of: |p: &PinnedTable| -> (Mfn, RunKind) { (p.mfn, p.level) },
        vcpus: &d.vcpus,
        cr3_of: |v: &StateVcpu| v.cr3,
    }
}

/// Views of every domain of a state.
pub fn views(state: &handover_abi::HandoverState) -> Vec<DomainView<'_, PinnedTable, StateVcpu>> {
    state.domains.iter().map(view).collect()
}

/// Microseconds between two TSC readings.
pub fn us(from: u64, to: u64, tsc_khz: u64) -> u64 {
    to.saturating_sub(from).saturating_mul(1000) / tsc_khz.max(1)
}
