//! Domain: one domain as the hypervisor keeps it — its p2m, whose frames'
//! types give its runs, its pins and its vCPUs — into the state. Restored
//! by `new_hv::domain`.
//!
//! The hypervisor keeps a domain's p2m dense by RAM index, its PCI hole
//! skipped (`hvlu_types::hole`); the state's runs name gpfns, so a run is
//! cut where the RAM indices jump over the hole ([`ram_runs_to_gpfns`]).

use alloc::string::String;
use alloc::vec::Vec;

use frame_ownership::{p2m_domain, FrameInfo};
use handover_abi::{ConsoleRing, DomainFlags, GuestReports, MemRun};
use hvlu_types::hole::{Hole, HOLE_END};
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
    /// Its RAM by RAM index: `p2m[i]` is the mfn of its i-th RAM frame,
    /// `u64::MAX` for none (below the hole's start the index is the gpfn).
    pub p2m: &'a [u64],
    /// Its PCI hole, which the RAM indices skip; chosen when it was
    /// created.
    pub hole: Hole,
    /// The device ranges its L1 entries may map, sorted (its I/O memory
    /// permission).
    pub mmio: &'a [MfnRange],
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
/// its equivalence property checks against the pass), their RAM indices
/// made gpfns ([`ram_runs_to_gpfns`]); vCPUs from their contexts.
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
        runs: ram_runs_to_gpfns(owned.runs, d.hole),
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
        hole: d.hole.start(),
        identity: d.identity.to_vec(),
    }
}

/// Runs whose `first_gpfn` is a RAM index made runs of gpfns: a run below
/// the hole's start stays, one from it on moves up by the hole's size, one
/// across it is cut in two there. The order is kept (RAM indices and gpfns
/// share it), so runs grouped bottom-up stay so.
pub fn ram_runs_to_gpfns(runs: Vec<MemRun>, hole: Hole) -> Vec<MemRun> {
    let start = hole.start().0;
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let first = run.first_gpfn.0;
        let end = first.saturating_add(run.count);
        if end <= start {
            out.push(run);
            continue;
        }
        let below = start.saturating_sub(first);
        if below > 0 {
            out.push(MemRun {
                count: below,
                ..run
            });
        }
        out.push(MemRun {
            first_mfn: hvlu_types::Mfn(run.first_mfn.0 + below),
            count: run.count - below,
            first_gpfn: Gpfn((first.max(start) - start).saturating_add(HOLE_END.0)),
            kind: run.kind,
        });
    }
    out
}
