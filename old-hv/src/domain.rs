//! Domain: one domain as the hypervisor keeps it — its p2m, whose frames'
//! types give its runs, its pins and its vCPUs — into the state. Restored
//! by `new_hv::domain`.

use alloc::string::String;
use alloc::vec::Vec;

use frame_ownership::{p2m_domain, FrameInfo};
use handover_abi::{ConsoleRing, DomainFlags, GuestReports};
use hvlu_types::VcpuContext;
use hvlu_types::{DomId, Gpfn, MfnRange};

use crate::{pins, vcpu};

/// One domain as the hypervisor sees it, for the handover state.
#[derive(Clone, Debug)]
pub struct DomainInput<'a> {
    /// Its id.
    pub id: DomId,
    /// Whether it is the privileged control domain.
    pub privileged: bool,
    /// Its name.
    pub name: &'a str,
    /// Its memory limit in frames.
    pub max_frames: u64,
    /// Guest frame → machine frame; `u64::MAX` for a gpfn with no frame.
    pub p2m: &'a [u64],
    /// The device ranges its L1 entries may map, sorted (its I/O memory
    /// permission).
    pub mmio: &'a [MfnRange],
    /// The first guest frame of its PCI hole (`handover_abi::DEFAULT_HOLE`
    /// unless it was created with another).
    pub hole: Gpfn,
    /// The device frames its p2m maps at guest frame == machine frame in
    /// the hole, sorted.
    pub identity: &'a [MfnRange],
    /// Its vCPUs' saved contexts, in vCPU id order.
    pub vcpus: Vec<VcpuContext>,
    /// The gpfn of its start-info page.
    pub start_info: Gpfn,
    /// Paused by the toolstack.
    pub paused: bool,
    /// What the guest reported about itself.
    pub reports: GuestReports,
}

/// One domain of the handover state: runs from its p2m grouped by the page
/// types `frametable` holds for its frames and pins from the `PINNED` flags
/// of its page-table frames (frame-ownership's [`p2m_domain`], the path
/// its equivalence property checks against the pass), vCPUs from their
/// contexts.
pub fn save(d: DomainInput<'_>, frametable: &[FrameInfo]) -> handover_abi::Domain {
    let owned = p2m_domain(frametable, d.id, d.p2m);
    let pinned = pins::save(&owned.pinned);
    let mut flags = DomainFlags::PV;
    if d.privileged {
        flags = flags.union(DomainFlags::PRIVILEGED);
    }
    handover_abi::Domain {
        id: d.id,
        flags,
        name: String::from(d.name),
        max_frames: d.max_frames,
        runs: owned.runs,
        pinned,
        mmio: d.mmio.to_vec(),
        start_info: d.start_info,
        vcpus: d
            .vcpus
            .iter()
            .zip(0u32..)
            .map(|(ctx, id)| vcpu::save(id, ctx))
            .collect(),
        console: ConsoleRing::default(),
        paused: d.paused,
        reports: d.reports,
        hole: d.hole,
        identity: d.identity.to_vec(),
    }
}
