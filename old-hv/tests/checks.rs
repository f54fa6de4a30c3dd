//! The checks before the point of no return (`old_hv::checks`): one test
//! per refusal, on a simulated machine's state, and the staging layouts
//! they rely on.

use boot_allocator::PhysRange;
use frame_ownership::testkit::random_machine;
use handover_abi::{
    BuildId, DecodeError, GuestReports, HandoverState, HvGlobals, LuRegion, Producer, RunKind,
    StateError, TimeBase,
};
use hvlu_types::hole::Hole;
use hvlu_types::{ContextError, VcpuContext};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange, PAGE_SIZE};
use new_hv::boot::Model;
use new_hv::IncomingError;
use old_hv::checks::{self, CheckError};
use old_hv::handover::{self, DomainInput, PreflightError};
use old_hv::staging::{choose_end, End, Staging};

const MIB: u64 = 1 << 20;
/// Entry-table frames the staging layouts here set aside.
const TABLES: u64 = 64;

fn context(cr3: Mfn) -> VcpuContext {
    VcpuContext::at_entry(0x40_0000, 0x7fff_0000, cr3)
}

/// The handover state of a random simulated machine, its domains' limits
/// `limit(p2m length)`.
fn state_with(seed: u64, limit: impl Fn(u64) -> u64) -> HandoverState {
    let machine = random_machine(seed, 2);
    let out = machine.run_pass();
    out.result.as_ref().expect("the random machine passes");
    let p2ms: Vec<Vec<u64>> = machine
        .domains
        .iter()
        .map(|d| new_hv::p2m_of(&d.runs, Hole::DEFAULT))
        .collect();
    let inputs = machine
        .domains
        .iter()
        .zip(&p2ms)
        .map(|(d, p2m)| DomainInput {
            id: d.id,
            privileged: d.id == DomId::DOM0,
            name: "d",
            max_frames: limit(p2m.len() as u64),
            p2m,
            hole: Hole::DEFAULT,
            mmio: &d.mmio,
            vcpus: d.vcpu_cr3.iter().map(|&c| context(c)).collect(),
            start_info: d
                .runs
                .iter()
                .find(|r| r.kind == RunKind::Data && r.count > 0)
                .map_or(Gpfn(0), |r| r.first_gpfn),
            identity: &[],
            paused: false,
            reports: GuestReports::default(),
            hvm: None,
        });
    let r = machine.region;
    let region = LuRegion {
        base: r.start.addr(),
        size: r.count * PAGE_SIZE,
        image: MfnRange::new(r.start, 1),
        state: MfnRange::new(Mfn(r.start.0 + 1), r.count - 1),
    };
    let globals = HvGlobals {
        next_domid: DomId(u16::MAX),
        time: TimeBase {
            tsc: 1,
            tsc_khz: 1_000_000,
            system_time_ns: 0,
        },
        cmdline: String::new(),
    };
    handover::handover_state(
        &machine.ram,
        region,
        globals,
        inputs,
        Vec::new(),
        Vec::new(),
        &out.frametable,
    )
}

fn state() -> HandoverState {
    let s = state_with(3, |len| len);
    assert!(s.domains.iter().any(|d| !d.vcpus.is_empty()));
    s
}

fn frames_of(s: &HandoverState) -> u64 {
    s.domains.iter().map(|d| d.frames()).sum()
}

#[test]
fn a_sound_state_passes_every_check() {
    let s = state();
    let ram = [MfnRange::new(Mfn(0), 512 * MIB / PAGE_SIZE)];
    let region = PhysRange::new(448 * MIB, 64 * MIB);
    let staged = PhysRange::new(510 * MIB, 2 * MIB);
    let plan =
        checks::before_jump(&s, frames_of(&s), Model::Current, region, staged, &ram, MIB).unwrap();
    assert_eq!(plan.heap.start, region.start);
}

#[test]
fn a_vcpu_the_new_image_would_not_load_is_refused() {
    let mut s = state();
    let d = s.domains.iter_mut().find(|d| !d.vcpus.is_empty()).unwrap();
    let id = d.id;
    d.vcpus[0].rip = 0xffff_8000_0000_1000;
    let e = checks::vcpus(&s).unwrap_err();
    assert_eq!(
        e,
        CheckError::Vcpu(IncomingError::Vcpu {
            domain: id,
            vcpu: 0,
            error: ContextError::NotGuestAddress {
                register: "rip",
                value: 0xffff_8000_0000_1000
            }
        })
    );
    assert_eq!(
        e.to_string(),
        format!("d{id} vCPU 0: rip 0xffff800000001000 is not a guest address")
    );
    // Through the whole check too, before anything else is looked at.
    let e = checks::before_jump(
        &s,
        0,
        Model::Current,
        PhysRange::new(0, 0),
        PhysRange::new(0, 0),
        &[],
        0,
    );
    assert!(matches!(e, Err(CheckError::Vcpu(_))), "{e:?}");
}

#[test]
fn flags_a_guest_cannot_have_are_refused() {
    let mut s = state();
    let d = s.domains.iter_mut().find(|d| !d.vcpus.is_empty()).unwrap();
    d.vcpus[0].rflags |= 3 << 12; // IOPL 3
    let e = checks::vcpus(&s).unwrap_err();
    assert!(
        matches!(
            e,
            CheckError::Vcpu(IncomingError::Vcpu {
                error: ContextError::Flags { .. },
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn an_owned_frame_in_no_run_is_refused() {
    let s = state();
    let in_runs = frames_of(&s);
    assert_eq!(checks::owned_frames(&s, in_runs), Ok(()));
    let e = checks::owned_frames(&s, in_runs + 1).unwrap_err();
    assert_eq!(
        e,
        CheckError::OwnedNotInRuns {
            in_use: in_runs + 1,
            in_runs
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{} frames are in use but the domains' runs hold {in_runs}: the state would not describe every owned frame",
            in_runs + 1
        )
    );
}

#[test]
fn a_boot_that_does_not_fit_is_refused() {
    // 64 MiB of region, a 60 MiB staged range in its middle: the heap
    // (4 MiB with 512 MiB of RAM, 2 MiB aligned) fits on neither side.
    let ram = [MfnRange::new(Mfn(0), 512 * MIB / PAGE_SIZE)];
    let region = PhysRange::new(448 * MIB, 64 * MIB);
    let staged = PhysRange::new(450 * MIB, 60 * MIB);
    let e = checks::boot_fits(Model::Current, region, staged, &ram, MIB).unwrap_err();
    let CheckError::BootDoesNotFit { needs, error } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(error.what, "heap");
    assert_eq!(needs.frames, 512 * MIB / PAGE_SIZE);
    assert!(
        e.to_string().starts_with(&format!(
            "the new image's boot needs {} KiB of the region outside the staged range and does not fit: heap: live-update region exhausted",
            needs.bytes() >> 10
        )),
        "{e}"
    );
    // The heap of 8 GiB of RAM (34 MiB) fits, its frametable (32 MiB)
    // does not.
    let big = [MfnRange::new(Mfn(0), 8192 * MIB / PAGE_SIZE)];
    let staged = PhysRange::new(500 * MIB, 12 * MIB);
    let e = checks::boot_fits(Model::Current, region, staged, &big, MIB).unwrap_err();
    assert!(
        matches!(&e, CheckError::BootDoesNotFit { error, .. } if error.what == "frametable"),
        "{e:?}"
    );
    // With the staged range at the top, all of it fits.
    let staged = PhysRange::new(510 * MIB, 2 * MIB);
    assert!(checks::boot_fits(Model::Current, region, staged, &ram, MIB).is_ok());
}

#[test]
fn a_run_beyond_its_domains_limit_is_refused_by_the_preflight() {
    // Limits below the highest guest frame of every domain.
    let s = state_with(3, |len| len - 1);
    let blob = handover::serialise(
        handover_abi::CURRENT,
        &s,
        &Producer::this_build(BuildId([1; 16])),
        1 << 20,
    )
    .unwrap();
    let e = handover::preflight(&blob, &s, &[], &[]).unwrap_err();
    assert!(
        matches!(
            e,
            PreflightError::Decode(DecodeError::Invalid(StateError::GpfnBeyondLimit { .. }))
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("beyond its limit"), "{e}");
}

#[test]
fn managed_frames_are_ram_minus_region_and_reserved() {
    let m = random_machine(4, 1);
    let layout = m.layout().unwrap();
    let ram: u64 = m.ram.iter().map(|r| r.count).sum();
    let free_of_domains = frame_ownership::free_ranges(&layout, &m.views());
    let owned: u64 = m
        .domains
        .iter()
        .flat_map(|d| d.runs.iter())
        .map(|r| r.count)
        .sum();
    let managed = checks::managed_frames(&layout);
    assert!(managed < ram);
    assert_eq!(
        managed,
        free_of_domains.iter().map(|r| r.count).sum::<u64>() + owned
    );
}

#[test]
fn images_alternate_between_the_ends_of_the_free_space() {
    // Region [0, 64 MiB), boot allocations [0, 12 MiB).
    let region_end = 64 * MIB;
    let allocs_end = 12 * MIB;
    let span = 700 << 10;
    let estimate = 600;
    // Cold boot: the running image is outside the region: stage at the top.
    let gap = PhysRange::from_bounds(allocs_end, region_end);
    assert_eq!(choose_end(gap, PhysRange::new(MIB, span)), End::Top);
    let top = Staging::plan_at(End::Top, gap, span, estimate, TABLES).unwrap();
    assert_eq!(top.image.end(), region_end);
    assert!(top.state.end() <= top.args && top.args < top.trampoline);
    assert!(top.trampoline < top.tables.start && top.tables.end() == top.image.start);
    let hole = top.hole(500);
    assert_eq!(hole, PhysRange::from_bounds(top.state.start, region_end));
    assert_eq!(top.after_image() + top.image.size, hole.size);

    // After it, the free space ends at the new image: stage at the bottom.
    let gap = PhysRange::from_bounds(allocs_end, top.image.start);
    assert_eq!(choose_end(gap, top.image), End::Bottom);
    let bottom = Staging::plan_at(End::Bottom, gap, span, estimate, TABLES).unwrap();
    assert_eq!(bottom.image.start, allocs_end);
    assert_eq!(bottom.state.end(), gap.end());
    assert_eq!(
        bottom.hole(500),
        PhysRange::from_bounds(allocs_end, bottom.state.start + PAGE_SIZE)
    );

    // After that one the free space starts after the image: the top again,
    // and the gap is as large as after the first update.
    let gap2 = PhysRange::from_bounds(bottom.image.end(), region_end);
    assert_eq!(choose_end(gap2, bottom.image), End::Top);
    assert_eq!(gap2.size, gap.size);
}

#[test]
fn a_top_staging_that_does_not_fit_is_refused() {
    let gap = PhysRange::new(16 * MIB, 0x4_0000);
    assert!(Staging::plan_at(End::Top, gap, 0x2_0000, 0, TABLES).is_err());
}
