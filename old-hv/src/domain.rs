//! Domain: one domain as the hypervisor keeps it — its p2m, whose frames'
//! types give its runs, its pins and its vCPUs — into the state. Restored
//! by `new_hv::domain`.
//!
//! The hypervisor keeps a domain's p2m dense by RAM index, its PCI hole
//! skipped (`hvlu_types::hole`); the state's runs name gpfns, so a run is
//! cut where the RAM indices jump over the hole ([`ram_runs_to_gpfns`]).

use alloc::string::String;
use alloc::vec::Vec;

use frame_ownership::{frame_runs, p2m_domain, FrameInfo};
use handover_abi::{
    ConsoleRing, DomainFlags, GuestReports, HvmDomain, LogDirty, MemRun, RunKind, VcpuFlags,
};
use hvlu_types::hole::{Hole, HOLE_END};
use hvlu_types::regs::HvmContext;
use hvlu_types::VcpuContext;
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

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
    /// Its vCPUs' saved contexts, in vCPU id order (a PV domain; empty for
    /// an HVM domain, whose vCPUs are in `hvm`).
    pub vcpus: Vec<VcpuContext>,
    /// The gpfn of its start-info page.
    pub start_info: Gpfn,
    /// Paused by the toolstack.
    pub paused: bool,
    /// What the guest reported about itself.
    pub reports: GuestReports,
    /// `None` for a PV domain; an HVM domain's nested tables, vCPUs and
    /// log-dirty bitmap.
    pub hvm: Option<HvmInput<'a>>,
}

/// What an HVM domain has besides: the state gets its nested root, one
/// context per vCPU, its nested page-table frames as P2m runs and its
/// log-dirty bitmap as LogDirty runs (after its data runs, in that order).
#[derive(Clone, Debug)]
pub struct HvmInput<'a> {
    /// The root (level 4) of its nested page tables, one of `tables`.
    pub ncr3: Mfn,
    /// Every frame of its nested page tables, every level (any order: the
    /// runs follow it, so frames in increasing order give fewest runs).
    /// Their frametable entries are type `P2m`, type count 1, reference
    /// count 2, and their M2P entries `M2P_INVALID` (Invariant 28).
    pub tables: &'a [Mfn],
    /// Its vCPUs' saved contexts, in vCPU id order.
    pub vcpus: Vec<HvmContext>,
    /// Its log-dirty bitmap while log-dirty mode is on: `ceil(max_frames /
    /// 32768)` frames, bit `i` RAM index `i`; frametable type `LogDirty`,
    /// type count 0, reference count 1, M2P `M2P_INVALID`.
    pub log_dirty: Option<MfnRange>,
}

/// One domain of the handover state: runs from its p2m grouped by the page
/// types `frametable` holds for its frames and pins from the `PINNED` flags
/// of its page-table frames (frame-ownership's [`p2m_domain`], the path
/// its equivalence property checks against the pass), their RAM indices
/// made gpfns ([`ram_runs_to_gpfns`]); vCPUs from their contexts.
///
/// An HVM domain ([`DomainInput::hvm`]) gets its RAM runs the same way,
/// then its nested tables' frames as P2m runs and its bitmap's as LogDirty
/// runs ([`frame_runs`]); its flags without `PV`, its vCPU records blank
/// (`HvmDomain::blank_vcpu`) and its contexts in the HVM part.
pub fn save(d: DomainInput<'_>, frametable: &[FrameInfo]) -> handover_abi::Domain {
    let owned = p2m_domain(frametable, d.id, d.p2m);
    let pinned = pins::save(&owned.pinned);
    let mut flags = match d.hvm {
        None => DomainFlags::PV,
        Some(_) => DomainFlags::default(),
    };
    if d.privileged {
        flags = flags.union(DomainFlags::PRIVILEGED);
    }
    let mut runs = ram_runs_to_gpfns(owned.runs, d.hole);
    let (vcpus, hvm) = match d.hvm {
        None => (
            d.vcpus
                .iter()
                .zip(0u32..)
                .map(|(ctx, id)| vcpu::save(id, ctx))
                .collect(),
            None,
        ),
        Some(h) => {
            runs.extend(frame_runs(h.tables.iter().copied(), RunKind::P2m));
            if let Some(bitmap) = h.log_dirty {
                runs.extend(frame_runs(
                    (0..bitmap.count).map(|k| Mfn(bitmap.start.0 + k)),
                    RunKind::LogDirty,
                ));
            }
            let vcpus = (0u32..)
                .take(h.vcpus.len())
                .map(|id| HvmDomain::blank_vcpu(h.ncr3, id, VcpuFlags::ONLINE, 0))
                .collect();
            let part = HvmDomain {
                ncr3: h.ncr3,
                // The handover body carries `HvmContext` itself (its serde
                // shape is the wire's, which the golden 1.3 blob fixes): no
                // conversion to keep in step.
                vcpus: h.vcpus,
                log_dirty: h.log_dirty.map(|bitmap| LogDirty { bitmap }),
            };
            (vcpus, Some(part))
        }
    };
    handover_abi::Domain {
        id: d.id,
        flags,
        name: String::from(d.name),
        max_frames: d.max_frames,
        runs,
        pinned,
        mmio: d.mmio.to_vec(),
        start_info: d.start_info,
        vcpus,
        console: ConsoleRing::default(),
        paused: d.paused,
        reports: d.reports,
        hole: d.hole.start(),
        identity: d.identity.to_vec(),
        hvm,
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
