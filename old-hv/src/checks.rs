//! What the outgoing side checks before the point of no return, beyond the
//! pre-flight decode of the state ([`crate::handover::preflight`], which
//! re-validates every structural rule of `docs/abi.md` section 3, every
//! run's guest frames below the domain's limit among them):
//!
//! - [`vcpus`]: every vCPU context is one the incoming image will load —
//!   the very check its restore makes (`new_hv::vcpu::restore`,
//!   `VcpuContext::check_guest`);
//! - [`boot_fits`]: the new image's restricted boot (heap, page tables,
//!   frametable, M2P, sized by `new_hv::boot::needs`) fits the region minus
//!   the staged range, by a dry run of the same allocation sequence on the
//!   boot allocator (`new_hv::boot::dry_run`);
//! - [`owned_frames`]: every frame in use is in some run — the frames the
//!   page allocator has handed out (its managed frames minus its free
//!   count, both kept as it goes: no frame scan) equal the frames of the
//!   domains' runs, so no owned frame is left out of the state.
//!
//! [`before_jump`] makes all three. Any failure cancels the update and
//! every domain runs on; the incoming image checks all of it again and
//! trusts none of it.
//!
//! One check comes earlier still, before anything is paused
//! (`crate::exec`): the machine's PCI devices are scanned again and each
//! one the state records must be found as it was
//! (`new_hv::devices::compare`, which the incoming image runs on its own
//! scan too); a device gone or moved is refused, naming it.

use boot_allocator::PhysRange;
use frame_ownership::MachineLayout;
use handover_abi::HandoverState;
use hvlu_types::MfnRange;
use new_hv::boot::{BootError, BootNeeds, BootPlan};
use new_hv::IncomingError;

/// Why the update is cancelled before the jump.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A vCPU context the incoming image would refuse to load.
    #[error("{0}")]
    Vcpu(IncomingError),
    /// The incoming image's boot would not fit the region minus the staged
    /// range.
    #[error("the new image's boot needs {} KiB of the region outside the staged range and does not fit: {error}", .needs.bytes() >> 10)]
    BootDoesNotFit {
        /// What the boot needs.
        needs: BootNeeds,
        /// The allocation that fails.
        error: BootError,
    },
    /// The frames in use are not the frames of the runs: some owned frame
    /// is in no run (or a run lists a frame not in use).
    #[error("{in_use} frames are in use but the domains' runs hold {in_runs}: the state would not describe every owned frame")]
    OwnedNotInRuns {
        /// Frames handed out by the page allocator.
        in_use: u64,
        /// Frames of all runs.
        in_runs: u64,
    },
    /// The hypervisor's memory map is not sorted and disjoint.
    #[error("memory layout: {0}")]
    Layout(frame_ownership::Error),
    /// The update marker's page, which the incoming image clears, is not a
    /// page outside the region and every guest's memory
    /// (`new_hv::verify::marker_placement`).
    #[error("{0}")]
    Marker(IncomingError),
}

/// Every vCPU of `state` passes the incoming image's restore
/// (`new_hv::vcpu::restore`).
pub fn vcpus(state: &HandoverState) -> Result<(), CheckError> {
    for d in &state.domains {
        for v in &d.vcpus {
            new_hv::vcpu::restore(d.id, v).map_err(CheckError::Vcpu)?;
        }
    }
    Ok(())
}

/// The boot of an image of `image_bytes` over `ram`, as `model` boots,
/// dry-run on the region minus `staged` (what the incoming image will compute from the argument
/// page, `new_hv::staging::staged_range`): where it lands, or why not.
pub fn boot_fits(
    model: new_hv::boot::Model,
    region: PhysRange,
    staged: PhysRange,
    ram: &[MfnRange],
    image_bytes: u64,
) -> Result<BootPlan, CheckError> {
    let needs = model.needs(ram, image_bytes);
    model
        .dry_run(region, staged, &needs)
        .map_err(|error| CheckError::BootDoesNotFit { needs, error })
}

/// The frames the page allocator manages: RAM minus the region and the
/// hv-reserved ranges (what it was given at boot, free or handed out).
pub fn managed_frames(layout: &MachineLayout<'_>) -> u64 {
    frame_ownership::free_ranges::<(hvlu_types::Mfn, handover_abi::RunKind), hvlu_types::Mfn>(
        layout,
        &[],
    )
    .iter()
    .map(|r| r.count)
    .sum()
}

/// The frames of `state`'s runs equal `in_use`, the frames handed out by
/// the page allocator (`managed - free`; every one is owned by a domain
/// from the moment it leaves the allocator until it returns).
pub fn owned_frames(state: &HandoverState, in_use: u64) -> Result<(), CheckError> {
    let in_runs: u64 = state.domains.iter().map(|d| d.frames()).sum();
    if in_runs != in_use {
        return Err(CheckError::OwnedNotInRuns { in_use, in_runs });
    }
    Ok(())
}

/// All the checks, in order: vCPUs, frames in use, the boot dry run.
/// Returns the dry run's plan.
pub fn before_jump(
    state: &HandoverState,
    in_use: u64,
    model: new_hv::boot::Model,
    region: PhysRange,
    staged: PhysRange,
    ram: &[MfnRange],
    image_bytes: u64,
) -> Result<BootPlan, CheckError> {
    vcpus(state)?;
    owned_frames(state, in_use)?;
    boot_fits(model, region, staged, ram, image_bytes)
}
