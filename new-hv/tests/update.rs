//! The production update sequence on a simulated host: `old_hv::exec::exec`
//! then `new_hv::enter`, the very functions the hypervisor runs, over
//! random machines — every fault the hypervisor's `lu_inject=` offers, each
//! checked where the hypervisor catches it, and a property test that every
//! update either arrives with an identical frametable or is refused with
//! the old machine untouched.

mod sim;

use handover_abi::entry::{Watchdog, WatchdogDevice, ENTRY_ARGS_V3, ENTRY_ARGS_VERSION};
use handover_abi::marker::{Marker, MarkerError, MARKER_SIZE};
use handover_abi::BuildId;
use handover_abi::{DecodeError, DomainFlags, RunKind};
use hvlu_types::{Mfn, PAGE_SIZE};
use new_hv::devices::{DeviceChange, DeviceError};
use new_hv::{Entered, IncomingError};
use old_hv::checks::CheckError;
use old_hv::exec::{exec, ExecError, Fault, Step};
use old_hv::handover::{PreflightError, SerialiseError};
use old_hv::staging::End;
use proptest::prelude::*;
use sim::{Sim, SimError};

/// Runs `exec` on `sim` with `fault`; on a jump, `enter` on the same
/// memory.
fn update(
    sim: &mut Sim,
    end: End,
    fault: Option<Fault>,
) -> Result<Result<Entered, IncomingError>, ExecError<SimError>> {
    let info = Sim::image();
    let staging = sim.stage(&info, end);
    sim.fault = fault;
    let args = exec(sim, &info, &staging)?;
    Ok(new_hv::enter(sim, args, handover_abi::READS))
}

fn host(seed: u64, domains: usize) -> Sim {
    (seed..)
        .find_map(|s| Sim::new(s, domains))
        .expect("a machine")
}

/// What an arrived update must show: the new frametable and M2P equal the
/// old ones, the state is the old side's, every domain and vCPU is back,
/// every L4 was given the new slots, and free RAM is the complement of the
/// runs.
fn check_arrived(sim: &Sim, e: &Entered) {
    assert_eq!(sim.new_frametable, sim.frametable, "frametables differ");
    assert_eq!(sim.new_m2p, sim.m2p, "M2Ps differ");
    assert_eq!(e.adopted.digest, e.args.digest);
    // The independent scan of the whole table, once every entry is
    // initialised (the simulation's resume settles them).
    assert_eq!(
        frame_ownership::frametable_digest(&sim.new_frametable, &sim.new_m2p),
        e.args.digest
    );
    assert_eq!(e.ram, sim.machine.ram);
    assert_eq!(e.state.globals, sim.globals);
    assert_eq!(e.state.retired, sim.retired);
    assert_eq!(e.state.devices, sim.devices, "the devices recorded arrive");
    assert_eq!(e.devices, sim.found, "the devices found are handed on");
    assert_eq!(e.domains.len(), sim.domains.len());
    for (r, d) in e.domains.iter().zip(&sim.domains) {
        assert_eq!(r.id, d.id);
        assert_eq!(r.name, d.name);
        assert_eq!(r.vcpus, d.vcpus);
        assert_eq!(r.paused, d.paused);
        assert_eq!(r.reports, d.reports);
        assert_eq!(r.max_frames, d.max_frames);
        assert_eq!(r.mmio, d.mmio, "d{}", d.id);
        assert_eq!(
            (r.hole.start(), &r.identity),
            (d.hole, &d.identity),
            "d{}",
            d.id
        );
        // The p2m comes back, up to its last mapped gpfn.
        let last = d
            .p2m
            .iter()
            .rposition(|&m| m != u64::MAX)
            .map_or(0, |i| i + 1);
        assert_eq!(r.p2m[..], d.p2m[..last], "d{}", d.id);
    }
    let mut l4s: Vec<Mfn> = e.state.domains.iter().flat_map(new_hv::l4_frames).collect();
    let mut rewritten = sim.l4s_rewritten.clone();
    l4s.sort();
    rewritten.sort();
    assert_eq!(rewritten, l4s);
    let free: u64 = e.adopted.free.iter().map(|r| r.count).sum();
    assert_eq!(free, sim.free_frames);
    // The boot stayed inside the region and off the staged range.
    let region = boot_allocator::PhysRange::from(sim.machine.region);
    let staged = new_hv::staged_range(&e.args).unwrap();
    for r in [sim.heap.unwrap(), sim.page_table_block.unwrap()] {
        assert!(
            region.contains_range(r) && !r.overlaps(staged),
            "{r} vs {staged}"
        );
    }
    assert_eq!(sim.paused, 1);
    assert_eq!(sim.resumed, 0);
}

#[test]
fn an_update_arrives_with_the_same_frametable_at_either_end() {
    for (seed, end) in [
        (1, End::Bottom),
        (2, End::Top),
        (3, End::Bottom),
        (4, End::Top),
    ] {
        let mut sim = host(seed, 1 + seed as usize % 4);
        let entered = update(&mut sim, end, None)
            .expect("exec jumps")
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        check_arrived(&sim, &entered);
        assert!(sim.log.is_empty(), "{:?}", sim.log);
        let t = entered.times;
        assert!(t.entry < t.heap && t.heap < t.verified && t.verified < t.booted);
        assert!(t.booted < t.pass && t.pass < t.resumed);
    }
}

/// The machine's watchdog, its marker on a page the hypervisor keeps.
fn watchdog(sim: &Sim) -> Watchdog {
    Watchdog {
        device: WatchdogDevice::Ib700,
        deadline_ms: 10_000,
        marker_phys: sim.marker_page(),
    }
}

/// The update marker on `sim`'s marker page.
fn marker(sim: &Sim) -> Result<Option<Marker>, MarkerError> {
    let mut b = [0u8; MARKER_SIZE];
    sim.read_phys(sim.marker_page(), &mut b).unwrap();
    Marker::from_bytes(&b)
}

/// With a watchdog on the machine, the old side arms it after everything
/// it checks and right before the jump, the argument page names it, and
/// the new side disarms it after the pass, before the guests run.
#[test]
fn the_watchdog_is_armed_at_the_jump_and_disarmed_before_the_guests_run() {
    let mut sim = host(30, 3);
    let w = watchdog(&sim);
    sim.watchdog = Some(w);
    let info = Sim::image();
    assert_eq!(info.contract.args_version, ENTRY_ARGS_VERSION);
    let staging = sim.stage(&info, End::Top);
    let args = exec(&mut sim, &info, &staging).unwrap();
    // Armed once, as the last thing before the jump.
    assert_eq!(sim.armed(), Some(w));
    let (_, detail) = sim.jumped.as_ref().unwrap();
    assert_eq!(detail.watchdog, Some(w));
    let armed_at = sim.watchdog_events[0].2;
    // The marker names the update, for the image a reset would boot.
    assert_eq!(
        marker(&sim),
        Ok(Some(Marker {
            sequence: 8,
            args_phys: args,
            from_build_id: BuildId([7; 16]),
            to_build_id: info.note.build_id,
            deadline_ms: 10_000,
            caller: (hvlu_types::DomId(0), 0),
        }))
    );
    let e = new_hv::enter(&mut sim, args, handover_abi::READS).unwrap();
    check_arrived(&sim, &e);
    assert_eq!(e.args.watchdog, Some(w));
    assert!(
        armed_at > e.args.tsc_jump,
        "armed after every step before the jump"
    );
    let events: Vec<_> = sim
        .watchdog_events
        .iter()
        .map(|&(w, d, _)| (w, d))
        .collect();
    assert_eq!(events, [("arm", w), ("disarm", w)]);
    assert!(sim.watchdog_events[1].2 > e.times.pass, "after the pass");
    assert_eq!(sim.armed_at_resume, None);
    // Confirmed: the marker is gone.
    assert_eq!(marker(&sim), Ok(None));
}

/// An image that reads no argument page 4 (every release up to 1.3) does
/// not know the watchdog: it gets page 3 and nothing is armed for it.
#[test]
fn an_image_that_reads_no_page_4_is_never_armed_for() {
    let mut sim = host(31, 2);
    sim.watchdog = Some(watchdog(&sim));
    let mut info = Sim::image();
    info.contract.args_version = ENTRY_ARGS_V3;
    let staging = sim.stage(&info, End::Top);
    let args = exec(&mut sim, &info, &staging).unwrap();
    assert!(sim.watchdog_events.is_empty());
    assert_eq!(sim.jumped.as_ref().unwrap().1.watchdog, None);
    let e = new_hv::enter(&mut sim, args, handover_abi::READS).unwrap();
    check_arrived(&sim, &e);
    assert_eq!(e.args.watchdog, None);
    assert!(sim.watchdog_events.is_empty());
    assert_eq!(marker(&sim), Ok(None));
}

/// A marker page in a guest's memory or in the region would be written by
/// the old side and cleared by the new one: the update is cancelled before
/// anything pauses.
#[test]
fn a_marker_page_a_guest_or_the_region_holds_cancels() {
    let mut sim = host(32, 2);
    let info = Sim::image();
    let staging = sim.stage(&info, End::Top);
    let state = sim.build_state(staging_image(&staging), staging_state(&staging));
    let guest = state.domains[0].runs[0].first_mfn.addr();
    let region = state.machine.region.base;
    for (page, why) in [
        (guest, "in a domain's memory"),
        (region, "inside the live-update region"),
    ] {
        sim.watchdog = Some(Watchdog {
            marker_phys: page,
            ..watchdog(&sim)
        });
        let before = sim.outside_region();
        let e = exec(&mut sim, &info, &staging).unwrap_err();
        assert!(
            matches!(
                &e,
                ExecError::Check(CheckError::Marker(IncomingError::MarkerMisplaced {
                    marker_phys,
                    why: w
                })) if *marker_phys == page && *w == why
            ),
            "{e}"
        );
        assert!(sim.watchdog_events.is_empty());
        assert!(sim.outside_region() == before);
    }
}

fn staging_image(s: &old_hv::staging::Staging) -> hvlu_types::MfnRange {
    hvlu_types::MfnRange::new(Mfn::containing(s.image.start), s.image.size / PAGE_SIZE)
}

fn staging_state(s: &old_hv::staging::Staging) -> hvlu_types::MfnRange {
    hvlu_types::MfnRange::new(Mfn::containing(s.state.start), s.state.size / PAGE_SIZE)
}

/// The tables both sides build, walked back: the entry tables map what
/// the entry contract promises (the image at its link addresses, all RAM
/// at the direct-map base, the trampoline where it is in both roots), and
/// the new image's own tables map its image and RAM the same way.
#[test]
fn the_tables_built_map_what_the_contract_promises() {
    let mut sim = host(11, 2);
    update(&mut sim, End::Top, None).unwrap().unwrap();
    let (plan, _) = sim.jumped.clone().unwrap();
    let entry_root = sim.entry_root.unwrap();
    let new_root = sim.new_root.unwrap();
    let direct = handover_abi::entry::DIRECT_MAP_BASE;
    for s in &plan.segments {
        for off in [0, s.len - 1] {
            assert_eq!(sim.translate(entry_root, s.vaddr + off), Some(s.phys + off));
            assert_eq!(sim.translate(new_root, s.vaddr + off), Some(s.phys + off));
        }
    }
    let inside = plan.entry - plan.segments[0].vaddr + plan.segments[0].phys;
    assert_eq!(sim.translate(entry_root, plan.entry), Some(inside));
    for r in sim.machine.ram.clone() {
        let last = r.end() * PAGE_SIZE - 1;
        for pa in [r.start.addr(), last] {
            assert_eq!(sim.translate(entry_root, direct + pa), Some(pa));
            assert_eq!(sim.translate(new_root, direct + pa), Some(pa));
        }
    }
    let t = plan.trampoline;
    assert_eq!(sim.translate(entry_root, t + 5), Some(t + 5));
    assert_eq!(sim.translate(sim::HV_ROOT, t + 5), Some(t + 5));
    // The new image's own tables do not keep the trampoline, and map the
    // local APIC's page.
    assert_eq!(sim.translate(new_root, t), None);
    let apic = new_hv::boot::LAPIC_PHYS;
    assert_eq!(sim.translate(new_root, direct + apic), Some(apic));
}

/// An argument page of version 1 — what the 1.0 release writes — is read:
/// the update arrives with the same frametable, the guests' tables are
/// checked by the pass alone (said in the note), and the free frames by
/// their count.
#[test]
fn a_version_1_argument_page_arrives_without_its_digests() {
    use handover_abi::entry::{EntryArgs, ENTRY_ARGS_SIZE, ENTRY_ARGS_V1};
    let mut sim = host(12, 3);
    let info = Sim::image();
    let staging = sim.stage(&info, End::Bottom);
    let args_phys = exec(&mut sim, &info, &staging).unwrap();
    let mut raw = [0u8; ENTRY_ARGS_SIZE];
    sim.read_phys(args_phys, &mut raw).unwrap();
    let args = EntryArgs::from_bytes(&raw).unwrap();
    let (v1, len) = args.to_bytes_as(ENTRY_ARGS_V1).unwrap();
    sim.write_phys(args_phys, &v1[..ENTRY_ARGS_SIZE]).unwrap();
    assert_eq!(len, 176);
    let e = new_hv::enter(&mut sim, args_phys, handover_abi::READS).unwrap();
    check_arrived(&sim, &e);
    assert_eq!((e.args.tables_digest, e.args.free_digest), (None, None));
    assert!(
        e.note
            .as_deref()
            .is_some_and(|n| n.contains("carries no digest of the guests' page tables")),
        "{:?}",
        e.note
    );
}

/// An image whose note is the 1.0 release's short form is held to the 1.0
/// contract (the one contract inferred, not stated) before anything is
/// paused: its boot (a fixed 8 MiB heap) is dry-run as it boots, and on this
/// machine's 8 MiB region it does not fit, so the update is cancelled with
/// that reason and every vCPU runs on.
#[test]
fn a_1_0_image_is_held_to_its_own_boot_before_the_pause() {
    let mut sim = Sim::for_older(13, 2);
    let before = sim.outside_region();
    let mut info = Sim::image();
    info.note.writes = None;
    info.note.contract = None;
    info.version = handover_abi::AbiVersion::new(1, 0);
    info.contract = old_hv::image::Contract::agree(&info.note).unwrap();
    assert_eq!(
        info.contract,
        old_hv::image::Contract {
            args_version: handover_abi::entry::ENTRY_ARGS_V1,
            layouts: handover_abi::note::Layouts::IMAGE_FIRST,
            boot: new_hv::boot::Model::Release1_0,
            stated: false,
        }
    );
    let staging = sim.stage(&info, End::Top);
    assert_eq!(staging.order, old_hv::staging::Order::ImageFirst);
    let e = exec(&mut sim, &info, &staging).unwrap_err();
    assert!(
        matches!(&e, ExecError::Check(CheckError::BootDoesNotFit { error, .. }) if error.what == "heap"),
        "{e}"
    );
    assert_eq!(sim.paused, sim.resumed);
    assert!(sim.jumped.is_none());
    assert_eq!(sim.outside_region(), before);
}

/// Each failure before the point of no return: the update is cancelled with
/// its reason, every vCPU resumed, nothing outside the staging area touched,
/// and the next attempt, without the fault, arrives.
#[test]
fn every_failure_before_the_jump_cancels_and_loses_nothing() {
    type Expect = fn(&ExecError<SimError>) -> bool;
    let cases: [(Fault, Expect); 6] = [
        (Fault::Fail(Step::TooLarge), |e| {
            matches!(
                e,
                ExecError::Serialise(SerialiseError::TooLarge { capacity: 64, .. })
            )
        }),
        (Fault::Fail(Step::Encode), |e| {
            matches!(e, ExecError::Serialise(SerialiseError::Encode(_)))
        }),
        (Fault::Fail(Step::Preflight), |e| {
            matches!(e, ExecError::Preflight(PreflightError::Decode(_)))
        }),
        (Fault::Fail(Step::Boot), |e| {
            matches!(e, ExecError::Check(CheckError::BootDoesNotFit { .. }))
        }),
        (Fault::Fail(Step::Tables), |e| {
            matches!(e, ExecError::EntryTables(_))
        }),
        (Fault::Vcpu, |e| {
            matches!(e, ExecError::Check(CheckError::Vcpu(_)))
        }),
    ];
    for (i, (fault, expected)) in cases.into_iter().enumerate() {
        let mut sim = host(10 + i as u64, 3);
        sim.watchdog = Some(watchdog(&sim));
        let before = sim.outside_region();
        let err = update(&mut sim, End::Top, Some(fault)).expect_err("cancelled");
        assert!(expected(&err), "{fault:?}: {err}");
        assert!(fault.cancels());
        // A cancelled update never arms the watchdog nor leaves a marker.
        assert!(sim.watchdog_events.is_empty(), "{fault:?}");
        assert_eq!(marker(&sim), Ok(None), "{fault:?}");
        // The entry tables are built before the pause.
        let paused = u32::from(fault != Fault::Fail(Step::Tables));
        assert_eq!((sim.paused, sim.resumed), (paused, paused), "{fault:?}");
        assert!(sim.jumped.is_none());
        assert!(
            sim.outside_region() == before,
            "{fault:?} touched the machine"
        );
        assert!(!sim.log.is_empty(), "{fault:?} says what it injects");
        // The second attempt works.
        sim.paused = 0;
        sim.resumed = 0;
        let entered = update(&mut sim, End::Top, None).unwrap().unwrap();
        check_arrived(&sim, &entered);
    }
}

/// The messages the operator sees are the ones the hypervisor printed
/// before the sequence moved into the framework.
#[test]
fn cancellations_say_why() {
    let mut sim = host(20, 2);
    let e = update(&mut sim, End::Bottom, Some(Fault::Fail(Step::Tables))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "entry tables: no frame left in the staging area for the entry page tables"
    );
    let e = update(&mut sim, End::Bottom, Some(Fault::Fail(Step::Boot))).unwrap_err();
    assert!(
        e.to_string().starts_with("the new image's boot needs"),
        "{e}"
    );
    let e = update(&mut sim, End::Bottom, Some(Fault::Vcpu)).unwrap_err();
    assert!(e.to_string().contains("vCPU"), "{e}");
}

/// The corruptions after the pre-flight: the jump happens, the new image
/// catches each at its own check and runs nothing.
#[test]
fn every_corruption_after_the_pre_flight_is_refused_by_the_new_image() {
    let mut sim = host(30, 3);
    match update(&mut sim, End::Top, Some(Fault::State)).unwrap() {
        Err(IncomingError::Decode(DecodeError::BodyCrcMismatch { .. })) => {}
        other => panic!("state: {other:?}"),
    }
    let mut sim = host(31, 3);
    match update(&mut sim, End::Bottom, Some(Fault::Args)).unwrap() {
        Err(IncomingError::Args(_)) => {}
        other => panic!("args: {other:?}"),
    }
    let mut sim = host(32, 3);
    match update(&mut sim, End::Top, Some(Fault::Digest)).unwrap() {
        Err(IncomingError::DigestMismatch { computed, expected }) => {
            assert_eq!(computed ^ 1, expected)
        }
        other => panic!("digest: {other:?}"),
    }
    let mut sim = host(33, 3);
    match update(&mut sim, End::Bottom, Some(Fault::Table)).unwrap() {
        Err(IncomingError::TablesChanged { .. }) => {}
        other => panic!("table: {other:?}"),
    }
    // The new image's checks do not cover guest data: the update arrives,
    // and exactly one bit of the first domU's highest data page differs.
    let mut sim = host(34, 3);
    let target = sim
        .machine
        .domains
        .iter()
        .find(|d| d.id.0 != 0)
        .and_then(|d| {
            d.runs
                .iter()
                .filter(|r| r.kind == RunKind::Data && r.count > 0)
                .max_by_key(|r| r.first_gpfn.0 + r.count)
                .map(|r| Mfn(r.first_mfn.0 + r.count - 1))
        })
        .expect("a domU with data");
    let entered = update(&mut sim, End::Top, Some(Fault::Guest))
        .unwrap()
        .unwrap();
    check_arrived(&sim, &entered);
    let mut byte = [0u8; 1];
    sim.read_phys(target.addr(), &mut byte).unwrap();
    assert_eq!(byte[0], 1, "{:?}", sim.log);
    assert!(entered
        .state
        .domains
        .iter()
        .any(|d| !d.flags.contains(DomainFlags::PRIVILEGED)));
}

/// Every fault has its `lu_inject=` name, and the names map back.
#[test]
fn faults_have_names() {
    for (name, fault) in Fault::NAMES {
        assert_eq!(Fault::from_name(name), Some(fault));
    }
    assert_eq!(Fault::from_name("fail-jump"), None);
}

/// A frame handed out but in no run is caught by the dry run, before
/// anything is paused.
#[test]
fn a_frame_in_use_in_no_run_cancels() {
    let mut sim = host(40, 2);
    sim.free_frames -= 1;
    let e = update(&mut sim, End::Top, None).unwrap_err();
    assert!(
        matches!(e, ExecError::Check(CheckError::OwnedNotInRuns { .. })),
        "{e}"
    );
    assert_eq!((sim.paused, sim.resumed), (0, 0), "found before the pause");
}

/// The guests run between `ready` and `go` (their last turns): what they
/// changed is handed over as it is at the pause, and the free-frame digest
/// is taken again only if the free frames changed.
#[test]
fn what_changes_between_ready_and_go_is_handed_over_as_at_the_pause() {
    for free_changed in [false, true] {
        let mut sim = host(43, 3);
        let info = Sim::image();
        let staging = sim.stage(&info, End::Top);
        sim.fault = None;
        let ready = old_hv::exec::ready(&mut sim, &info, &staging).expect("ready");
        assert_eq!((sim.paused, sim.free_digests.get()), (0, 1));
        // A guest's last turn: a register changes, and perhaps the free
        // frames (an allocation and a free: the same count).
        sim.domains[1].vcpus[0].regs.rbx = 0x5151;
        if free_changed {
            sim.free_changes += 1;
        }
        let args = old_hv::exec::go(&mut sim, &info, &staging, ready).expect("go");
        assert_eq!(sim.free_digests.get(), 1 + u32::from(free_changed));
        let entered = new_hv::enter(&mut sim, args, handover_abi::READS).expect("enter");
        check_arrived(&sim, &entered);
        assert_eq!(entered.domains[1].vcpus[0].regs.rbx, 0x5151);
    }
}

/// A state placed where the argument page does not say, or a state area too
/// small, never reaches the jump.
#[test]
fn a_state_that_does_not_fit_its_area_cancels() {
    let mut sim = host(41, 2);
    let info = Sim::image();
    let mut staging = sim.stage(&info, End::Bottom);
    staging.state.size = PAGE_SIZE / 8;
    sim.fault = None;
    let e = exec(&mut sim, &info, &staging).unwrap_err();
    assert!(
        matches!(e, ExecError::BeforePause(SerialiseError::TooLarge { .. })),
        "{e}"
    );
    assert_eq!((sim.paused, sim.resumed), (0, 0), "found before the pause");
}

/// Handing over in 1.0 (to an image that reads only 1.0): a paused domain,
/// and a domU that may map device memory, which 1.0 cannot say, are
/// refused before anything is paused; with neither the update goes on, and
/// what 1.0 drops of the hypervisor's records (reports, command line,
/// retired domains) and the device list are said before the pause.
#[test]
fn what_1_0_cannot_say_is_refused_before_the_pause_and_what_it_drops_is_said() {
    let v1_0 = handover_abi::AbiVersion::new(1, 0);
    let mut sim = Sim::for_older(42, 3);
    sim.globals.cmdline = "loglvl=debug".into();
    sim.domains[1].paused = true;
    sim.fault = None;
    let mut info = Sim::image();
    info.version = v1_0;
    let staging = sim.stage(&info, End::Top);
    let e = exec(&mut sim, &info, &staging).unwrap_err();
    assert!(
        matches!(&e, ExecError::BeforePause(SerialiseError::Encode(_))),
        "{e}"
    );
    assert!(e.to_string().contains("is paused"), "{e}");
    assert_eq!((sim.paused, sim.resumed), (0, 0), "nothing was paused");

    for d in &mut sim.domains {
        d.paused = false;
    }
    // A domU granted a device range (its tables map none of it).
    let granted = handover_abi::device_memory(&sim.devices)[0];
    sim.domains[1].mmio.push(granted);
    let e = exec(&mut sim, &info, &staging).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "d{} may map other device memory than the default",
            sim.domains[1].id
        )),
        "{e}"
    );
    assert_eq!((sim.paused, sim.resumed), (0, 0), "nothing was paused");
    sim.domains[1].mmio.clear();

    sim.log.clear();
    let staging = sim.stage(&info, End::Top);
    exec(&mut sim, &info, &staging).unwrap();
    assert_eq!(sim.paused, 1);
    assert!(
        sim.log
            .iter()
            .any(|l| l.contains("handover 1.0") && l.contains("the device list")),
        "{:?}",
        sim.log
    );
    let said = sim
        .log
        .iter()
        .position(|l| l.contains("handover 1.0 does not carry") && l.contains("the command line"))
        .unwrap_or_else(|| panic!("{:?}", sim.log));
    assert!(
        sim.log[said].contains("the reports of"),
        "{}",
        sim.log[said]
    );
}

/// A host with devices whose domains map some of them in their PCI hole.
fn host_with_identity(seed: u64) -> Sim {
    (seed..)
        .find_map(|s| {
            Sim::new(s, 3).filter(|sim| {
                !sim.devices.is_empty()
                    && sim.domains.iter().any(|d| !d.identity.is_empty())
                    && sim
                        .domains
                        .iter()
                        .any(|d| d.hole == handover_abi::DEFAULT_HOLE)
            })
        })
        .expect("a machine with identity entries")
}

/// The devices, the holes and the identity entries arrive as the old side
/// recorded them, next to an identical frametable.
#[test]
fn devices_holes_and_identity_entries_arrive_as_recorded() {
    let mut sim = host_with_identity(50);
    let entered = update(&mut sim, End::Top, None).unwrap().unwrap();
    check_arrived(&sim, &entered);
    assert!(entered.state.devices.iter().all(|d| !d.bars.is_empty()));
    assert!(entered
        .domains
        .iter()
        .any(|r| r.hole.start() == handover_abi::MIN_HOLE && !r.identity.is_empty()));
}

/// A device the old side recorded that is gone or has moved when it
/// rescans, just before pausing: the update is refused, naming the device,
/// and nothing is paused or touched. Once the machine is back as recorded,
/// the update arrives.
#[test]
fn a_device_gone_or_moved_is_refused_before_the_pause() {
    let mut sim = host_with_identity(60);
    let before = sim.outside_region();
    let info = Sim::image();
    let staging = sim.stage(&info, End::Bottom);
    let gone = sim.found.remove(0);
    let e = exec(&mut sim, &info, &staging).unwrap_err();
    assert_eq!(
        e,
        ExecError::DeviceChanged(DeviceChange::Vanished {
            device: gone.address(),
            vendor: gone.vendor,
            id: gone.device
        })
    );
    assert_eq!(
        e.to_string(),
        format!(
            "refused before pausing anything: the machine's devices changed: device {} \
             ({:04x}:{:04x}) was recorded but is gone",
            gone.address(),
            gone.vendor,
            gone.device
        )
    );
    sim.found.insert(0, gone);
    // A BAR moved by its own size.
    let recorded = sim.found[0].bars[0];
    sim.found[0].bars[0].base += recorded.size;
    let e = exec(&mut sim, &info, &staging).unwrap_err();
    assert!(
        matches!(&e, ExecError::DeviceChanged(DeviceChange::BarMoved { recorded: r, .. }) if *r == recorded),
        "{e}"
    );
    assert!(e.to_string().contains("BAR 0 moved: recorded at"), "{e}");
    assert_eq!((sim.paused, sim.resumed), (0, 0), "nothing was paused");
    assert!(sim.jumped.is_none());
    assert!(sim.outside_region() == before);
    sim.found[0].bars[0] = recorded;
    let entered = update(&mut sim, End::Bottom, None).unwrap().unwrap();
    check_arrived(&sim, &entered);
}

/// A device found that was not recorded changes nothing the guests see:
/// the update arrives, and the new image has it among those it found.
#[test]
fn a_device_found_but_not_recorded_is_fine() {
    let mut sim = host_with_identity(70);
    sim.found.push(extra_device());
    let entered = update(&mut sim, End::Top, None).unwrap().unwrap();
    check_arrived(&sim, &entered);
    assert_eq!(entered.devices.last(), Some(&extra_device()));
    assert!(!entered.state.devices.contains(&extra_device()));
}

/// A function with a 64-bit BAR far above the simulated RAM.
fn extra_device() -> handover_abi::PciDevice {
    handover_abi::PciDevice {
        bdf: 0x100,
        vendor: 0x1234,
        device: 0x11e8,
        class: 0xff00,
        bars: vec![handover_abi::PciBar {
            index: 0,
            base: 0x80_0000_0000,
            size: 0x10_0000,
            flags: handover_abi::PciBar::MEM64,
        }],
    }
}

/// A device that changes after the old side's last look, between its
/// pre-flight and the new image's scan: the new image stops before the
/// pass, naming it (nothing runs on a machine the state does not
/// describe).
#[test]
fn a_device_that_changes_after_the_pre_flight_stops_the_new_image() {
    let mut sim = host_with_identity(80);
    let info = Sim::image();
    let staging = sim.stage(&info, End::Top);
    let args = exec(&mut sim, &info, &staging).unwrap();
    let bar = sim.found[0].bars[0];
    sim.found[0].bars.clear();
    match new_hv::enter(&mut sim, args, handover_abi::READS) {
        Err(e @ IncomingError::Devices(DeviceError::Changed(DeviceChange::BarGone { .. }))) => {
            assert!(
                e.to_string().starts_with(&format!(
                    "devices: device {} BAR {} ({:#x}+{:#x}) was recorded but is gone",
                    sim.found[0].address(),
                    bar.index,
                    bar.base,
                    bar.size
                )),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        sim.new_frametable.iter().all(|f| *f == sim::LEFT_OVER),
        "no pass ran"
    );
}

/// Handing over in 1.1 (to an image that reads only 1.1), then reading
/// it: the state lists no device, so the new image takes those it finds
/// (here one more than the old side recorded) and gives dom0 its default
/// access to them before the pass; the domUs keep theirs (none). Every
/// frame arrives as it was.
#[test]
fn a_1_1_state_gets_the_devices_found_and_dom0_its_default_access() {
    let v1_1 = handover_abi::AbiVersion::new(1, 1);
    let mut sim = Sim::for_older(90, 3);
    let mut info = Sim::image();
    info.version = v1_1;
    let staging = sim.stage(&info, End::Top);
    let args = exec(&mut sim, &info, &staging).unwrap();
    assert!(
        sim.log
            .iter()
            .any(|l| l.contains("handover 1.1") && l.contains("the device list")),
        "{:?}",
        sim.log
    );
    sim.found.push(extra_device());
    let e = new_hv::enter(&mut sim, args, handover_abi::READS).unwrap();
    assert_eq!(e.args.state_len, sim.jumped.as_ref().unwrap().1.state_len);
    assert_eq!(e.state.devices, sim.found);
    assert_eq!(sim.new_frametable, sim.frametable, "frametables differ");
    for (r, d) in e.domains.iter().zip(&sim.domains) {
        if r.privileged {
            assert_eq!(r.mmio, handover_abi::device_memory(&sim.found));
            assert_eq!(r.mmio.len(), d.mmio.len() + 1, "the extra BAR is dom0's");
        } else {
            assert!(r.mmio.is_empty());
        }
        assert_eq!(
            (r.hole.start(), r.identity.len()),
            (handover_abi::DEFAULT_HOLE, 0)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random machines (domains, runs, pins, paused domains, retired
    /// reports) through `exec` and `enter`: with no fault the frametables
    /// are equal; with a fault that cancels, the old machine is untouched
    /// and runs on.
    #[test]
    fn updates_arrive_or_leave_the_machine_untouched(
        seed in 0u64..10_000,
        domains in 1usize..5,
        top in any::<bool>(),
        fault in proptest::option::of(0usize..6),
    ) {
        let cancelling = [
            Fault::Fail(Step::TooLarge),
            Fault::Fail(Step::Encode),
            Fault::Fail(Step::Preflight),
            Fault::Fail(Step::Boot),
            Fault::Fail(Step::Tables),
            Fault::Vcpu,
        ];
        let Some(mut sim) = Sim::new(seed, domains) else { return Ok(()) };
        let end = if top { End::Top } else { End::Bottom };
        let before = sim.outside_region();
        match fault.map(|i| cancelling[i]) {
            None => {
                let entered = update(&mut sim, end, None)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check_arrived(&sim, &entered);
            }
            Some(f) => {
                prop_assert!(update(&mut sim, end, Some(f)).is_err());
                let paused = u32::from(f != Fault::Fail(Step::Tables));
                prop_assert_eq!((sim.paused, sim.resumed), (paused, paused));
                prop_assert!(sim.outside_region() == before);
            }
        }
    }
}
