//! Domain: one domain back from the state (`old_hv::domain::save` wrote
//! it) — its p2m from its runs (dense by RAM index, its PCI hole skipped:
//! `hvlu_types::hole`), its vCPUs' contexts, its device access and guest
//! memory map, the L4s whose hypervisor slots this image must rewrite.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::{Domain, DomainFlags, GuestReports, MemRun, RunKind};
use hvlu_types::hole::Hole;
use hvlu_types::regs::HvmContext;
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
    /// Its RAM by RAM index → machine frame; `u64::MAX` for an index with
    /// no frame ([`p2m_of`]).
    pub p2m: Vec<u64>,
    /// Its PCI hole.
    pub hole: Hole,
    /// Its vCPUs' contexts, in vCPU id order (a PV domain; empty for an
    /// HVM domain, whose vCPUs are in `hvm`).
    pub vcpus: Vec<VcpuContext>,
    /// The gpfn of its start-info page.
    pub start_info: Gpfn,
    /// Paused by the toolstack: it stays paused.
    pub paused: bool,
    /// What the guest reported about itself.
    pub reports: GuestReports,
    /// The device frames it may map (its I/O memory permission).
    pub mmio: Vec<MfnRange>,
    /// The device frames its p2m maps in the hole at guest frame ==
    /// machine frame.
    pub identity: Vec<MfnRange>,
    /// `None` for a PV domain; what the hypervisor rebuilds an HVM domain
    /// around besides.
    pub hvm: Option<RestoredHvm>,
}

/// What an HVM domain is rebuilt around: its nested tables stay where they
/// are (the pass checked and typed them), a VMCB per vCPU is built from its
/// context, and a running migration goes on with its bitmap in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredHvm {
    /// The root of its nested page tables: the nCR3 of every VMCB.
    pub ncr3: Mfn,
    /// Each vCPU's architectural state, in vCPU id order, with its flags
    /// (`ONLINE`, `BLOCKED`) and pending events from the vCPU's record.
    pub vcpus: Vec<(HvmContext, handover_abi::VcpuFlags, u64)>,
    /// Its log-dirty bitmap while log-dirty mode is on (bit `i`: RAM index
    /// `i` written since the last clean).
    pub log_dirty: Option<MfnRange>,
    /// Every frame of its nested tables, in run order.
    pub tables: Vec<Mfn>,
}

/// Rebuilds domain `d` of a verified state. Refuses a run in the domain's
/// PCI hole, one that reaches past its memory limit (its p2m is sized by the
/// limit, never by a number the state could inflate) and a vCPU context
/// [`vcpu::restore`] refuses.
/// A state read from ABI 1.1 or older has every hole at the default, 3 GiB
/// (`handover_abi::DEFAULT_HOLE`).
pub fn restore(d: &Domain) -> Result<Restored, IncomingError> {
    let hole = Hole::new(d.hole).map_err(|error| IncomingError::BadHole {
        domain: d.id,
        error,
    })?;
    for run in d.runs.iter().filter(|r| r.kind.has_guest_frames()) {
        check_run(d, run, hole)?;
    }
    let (vcpus, hvm) = match &d.hvm {
        None => (
            d.vcpus
                .iter()
                .map(|v| vcpu::restore(d.id, v))
                .collect::<Result<Vec<_>, _>>()?,
            None,
        ),
        // The records are blank (the decode checked it): the registers
        // are the contexts'.
        Some(h) => (
            Vec::new(),
            Some(RestoredHvm {
                ncr3: h.ncr3,
                vcpus: d
                    .vcpus
                    .iter()
                    .zip(&h.vcpus)
                    .map(|(v, &ctx)| (ctx, v.flags, v.pending_events))
                    .collect(),
                log_dirty: h.log_dirty.map(|l| l.bitmap),
                tables: d.frames_of(RunKind::P2m).collect(),
            }),
        ),
    };
    Ok(Restored {
        id: d.id,
        name: d.name.clone(),
        privileged: d.flags.contains(DomainFlags::PRIVILEGED),
        max_frames: d.max_frames,
        p2m: p2m_of(&d.runs, hole),
        hole,
        vcpus,
        start_info: d.start_info,
        paused: d.paused,
        reports: d.reports,
        mmio: d.mmio.clone(),
        identity: d.identity.clone(),
        hvm,
    })
}

/// Refuses a run of `d` with a gpfn in `hole` or a RAM index at or beyond
/// `d`'s limit.
fn check_run(d: &Domain, run: &MemRun, hole: Hole) -> Result<(), IncomingError> {
    if run.count == 0 {
        return Ok(());
    }
    let first = run.first_gpfn;
    let last = Gpfn(first.0.saturating_add(run.count - 1));
    // Its first gpfn at or above the hole's start, if the hole holds it.
    let gpfn = Gpfn(first.0.max(hole.start().0));
    if gpfn <= last && hole.contains(gpfn) {
        return Err(IncomingError::GpfnInHole {
            domain: d.id,
            gpfn,
            hole,
        });
    }
    match hole.index_of(last) {
        Some(index) if index < d.max_frames => Ok(()),
        _ => Err(IncomingError::GpfnBeyondLimit {
            domain: d.id,
            gpfn: last,
            max_frames: d.max_frames,
        }),
    }
}

/// A domain's p2m from its runs, dense by RAM index (`hvlu_types::hole`):
/// `p2m[i]` is the mfn of RAM index `i`, `u64::MAX` for an index no run
/// covers; as long as the highest index + 1. A frame whose gpfn lies in
/// `hole` is no RAM and is left out ([`restore`] refuses such a run first).
pub fn p2m_of(runs: &[MemRun], hole: Hole) -> Vec<u64> {
    // Nested page-table and log-dirty runs have no guest frames.
    let runs = || runs.iter().filter(|r| r.kind.has_guest_frames());
    let ram = |run: &MemRun, i: u64| hole.index_of(Gpfn(run.first_gpfn.0 + i));
    let len = runs()
        .filter(|r| r.count > 0)
        .filter_map(|r| ram(r, r.count - 1))
        .map(|last| last + 1)
        .max()
        .unwrap_or(0);
    let mut p2m = alloc::vec![u64::MAX; len as usize];
    for run in runs() {
        for i in 0..run.count {
            if let Some(index) = ram(run, i) {
                p2m[index as usize] = run.first_mfn.0 + i;
            }
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
