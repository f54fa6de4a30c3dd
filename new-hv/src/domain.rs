//! Domain: one domain back from the state (`old_hv::domain::save` wrote
//! it) — its p2m from its runs, its vCPUs' contexts, its device access and
//! guest memory map, the L4s whose hypervisor slots this image must
//! rewrite.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::{Domain, DomainFlags, GuestReports, MemRun, RunKind};
use hvlu_types::VcpuContext;
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

use crate::{vcpu, IncomingError};

/// What the hypervisor rebuilds a domain from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Its id.
    pub id: DomId,
    /// Its name.
    pub name: String,
    /// Whether it is the privileged control domain.
    pub privileged: bool,
    /// Its memory limit in frames.
    pub max_frames: u64,
    /// Guest frame → machine frame; `u64::MAX` for a gpfn with no frame.
    pub p2m: Vec<u64>,
    /// Its vCPUs' contexts, in vCPU id order.
    pub vcpus: Vec<VcpuContext>,
    /// The gpfn of its start-info page.
    pub start_info: Gpfn,
    /// Paused by the toolstack: it stays paused.
    pub paused: bool,
    /// What the guest reported about itself.
    pub reports: GuestReports,
    /// The device frames it may map (its I/O memory permission).
    pub mmio: Vec<MfnRange>,
    /// The first guest frame of its PCI hole, `[hole, 4 GiB)`
    /// (`handover_abi::memory_map` gives its whole guest memory map).
    pub hole: Gpfn,
    /// The device frames its p2m maps in the hole at guest frame ==
    /// machine frame.
    pub identity: Vec<MfnRange>,
}

/// Rebuilds domain `d` of a verified state. Refuses a run that is not in
/// the domain's guest RAM — in its PCI hole, or past what its memory limit
/// gives it (its p2m is sized by the limit, never by a number the state
/// could inflate) — and a vCPU context [`vcpu::restore`] refuses.
pub fn restore(d: &Domain) -> Result<Restored, IncomingError> {
    let map = d.memory_map();
    for run in &d.runs {
        if map.hole.meets(run.first_gpfn.0, run.count) {
            return Err(IncomingError::GpfnInHole {
                domain: d.id,
                gpfn: run.first_gpfn.max(d.hole),
                hole: d.hole,
            });
        }
        if !map.is_ram(run.first_gpfn, run.count) {
            let end = run.first_gpfn.0.saturating_add(run.count);
            return Err(IncomingError::GpfnBeyondLimit {
                domain: d.id,
                gpfn: Gpfn(end.saturating_sub(1)),
                max_frames: d.max_frames,
            });
        }
    }
    let vcpus = d
        .vcpus
        .iter()
        .map(|v| vcpu::restore(d.id, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Restored {
        id: d.id,
        name: d.name.clone(),
        privileged: d.flags.contains(DomainFlags::PRIVILEGED),
        max_frames: d.max_frames,
        p2m: p2m_of(&d.runs),
        vcpus,
        start_info: d.start_info,
        paused: d.paused,
        reports: d.reports,
        mmio: d.mmio.clone(),
        hole: d.hole,
        identity: d.identity.clone(),
    })
}

/// A domain's p2m from its runs: `p2m[gpfn]` is the mfn, `u64::MAX` for a
/// gpfn no run covers; as long as the highest gpfn + 1.
pub fn p2m_of(runs: &[MemRun]) -> Vec<u64> {
    let gpfns = runs
        .iter()
        .map(|r| r.first_gpfn.0 + r.count)
        .max()
        .unwrap_or(0);
    let mut p2m = alloc::vec![u64::MAX; gpfns as usize];
    for run in runs {
        for i in 0..run.count {
            p2m[(run.first_gpfn.0 + i) as usize] = run.first_mfn.0 + i;
        }
    }
    p2m
}

/// The domain's L4 frames, whose hypervisor slots the new image rewrites.
pub fn l4_frames(d: &Domain) -> impl Iterator<Item = Mfn> + '_ {
    d.runs
        .iter()
        .filter(|r| r.kind == RunKind::L4)
        .flat_map(|r| (0..r.count).map(move |i| Mfn(r.first_mfn.0 + i)))
}
