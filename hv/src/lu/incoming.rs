//! The incoming role: this image entered through its live-update entry.
//!
//! The order is `docs/design.md` section 1, steps 3 to 7: a boot allocator over
//! the region minus what the old hypervisor staged; the heap, so the state
//! can be decoded and verified before anything else is built; the
//! hypervisor's page tables, frametable and M2P; the single frametable pass
//! over the handover state; the domains rebuilt around their preserved
//! frames (the hypervisor slots of every guest L4 rewritten); resume. The
//! rest of RAM is released at the first timer tick, after the guests run
//! again, and the update's report line is printed then. Once the state is
//! decoded and this image runs on its own page tables, the staged range
//! but this image (state, argument page, entry tables) goes back to the
//! region's free space, so the capacity for the next update is the same
//! after every update.
//!
//! Every check, the pass and the report line are `new_hv`'s; this module
//! reads physical memory, builds this hypervisor's memory and page tables,
//! rewrites the guest L4s, schedules and prints.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use handover_abi::entry::{EntryArgs, ENTRY_ARGS_SIZE};
use handover_abi::{DomId, HandoverState, PAGE_SIZE};
use new_hv::{InTimes, Report};
use pv_abi::exit::Outcome;

use crate::arch::{self, cpu, paging, phys};
use crate::cmdline::Options;
use crate::domain::{Domain, P2m, Vcpu};
use crate::hv::{Hv, StartError};
use crate::mm::{self, BootMem};
use crate::{build_id, hvprintln, modules};

/// What the incoming side of an update leaves for its first timer tick.
#[derive(Debug)]
struct PendingRelease {
    /// Free RAM: the complement of the domains' runs.
    ranges: Vec<handover_abi::MfnRange>,
    /// The entry arguments (the old side's figures).
    args: EntryArgs,
    /// The incoming side's timestamps.
    times: InTimes,
    /// The digest of the whole frametable after the pass, by a scan
    /// independent of the runs and of the check.
    digest: u64,
    /// Frames owned after the pass.
    frames: u64,
    /// Runs in the state.
    runs: u64,
}

/// Stops with a diagnostic: a state that fails verification never runs.
fn refuse(what: core::fmt::Arguments<'_>) -> ! {
    hvprintln!("live update REFUSED by the incoming image: {what}");
    hvprintln!("no guest will run on a state that could not be verified; stopping");
    cpu::exit(Outcome::Refused)
}

/// The incoming path. `args_phys` is the argument page (entry contract).
pub fn enter(args_phys: u64) -> ! {
    let mut t = InTimes {
        entry: cpu::rdtsc(),
        ..InTimes::default()
    };
    crate::console::init();
    arch::gdt::init();
    // The entry tables map all RAM at the direct-map base; the argument page
    // is inside the region.
    phys::set_direct_map(args_phys + PAGE_SIZE);
    let mut raw = [0u8; ENTRY_ARGS_SIZE];
    if let Err(e) = phys::read(args_phys, &mut raw) {
        refuse(format_args!(
            "argument page at {args_phys:#x} unreadable: {e}"
        ));
    }
    let args = new_hv::read_args(&raw).unwrap_or_else(|e| refuse(format_args!("{e}")));
    arch::set_image_phys(args.image_phys);
    let (image_start, image_end) = arch::image_range();
    phys::set_image_range(image_start, image_end);
    phys::set_direct_map(args.ram_end);
    // Printed at the first tick (`release`), not here: inside the blackout
    // every console byte is an emulated port write.

    let staged =
        new_hv::staging::staged_range(&args).unwrap_or_else(|e| refuse(format_args!("{e}")));
    let region = boot_allocator::PhysRange::new(args.region_base, args.region_size);
    let mut boot = match BootMem::new(region, &[staged]) {
        Ok(b) => b,
        Err(e) => refuse(format_args!("boot allocator: {e}")),
    };
    // Sized from the end of RAM, as the outgoing side's dry run sized it.
    if let Err(e) = boot.heap(new_hv::boot::heap_pages(args.ram_end)) {
        refuse(format_args!("boot: {e}"));
    }
    t.heap = cpu::rdtsc();

    let state = verify(&args);
    t.verified = cpu::rdtsc();

    // The boot needs, as the old side dry-ran them (`new_hv::boot`).
    let ram = new_hv::ram::of_state(&state);
    let needs = new_hv::boot::needs(&ram, args.image_len);
    if let Err(e) = boot.page_tables(&ram, &needs) {
        refuse(format_args!("boot: {e}"));
    }
    let mut mem = match boot.finish(ram, mm::reserved_ranges(region), &needs) {
        Ok(m) => m,
        Err(e) => refuse(format_args!("boot: {e}")),
    };
    // The state is decoded and the entry tables are no longer in use: all
    // of the staged range but this image is free region again.
    let consumed = new_hv::staging::consumed_range(&args, staged);
    if let Err(e) = mem.handoff.release_hole(consumed) {
        hvprintln!("lu: the consumed staging area {consumed} stays reserved: {e}");
    }
    t.booted = cpu::rdtsc();

    // The guests' tables are where they were: exactly as the old side
    // paused them, or nothing runs.
    new_hv::tables::check(&state, &phys::table_reader(), args.tables_digest)
        .unwrap_or_else(|e| refuse(format_args!("{e}")));

    let parts = mem.parts();
    let adopted = new_hv::adopt(
        &parts.layout,
        &state,
        &phys::table_reader(),
        parts.frametable,
        parts.m2p,
        args.digest,
    )
    .unwrap_or_else(|e| refuse(format_args!("{e}")));
    t.pass = cpu::rdtsc();

    // The boot modules are read at the first tick, outside the blackout.
    // The predecessor's command line goes on (log level, timer rate, …);
    // its uptime too: this image "booted" when the first one did.
    let cmdline = state.globals.cmdline.as_str();
    let options = Options::parse(cmdline).unwrap_or_else(|e| {
        hvprintln!("the handed-over command line `{cmdline}` does not parse ({e}): using defaults");
        Options::default()
    });
    let time = state.globals.time;
    let boot_tsc = time.tsc.saturating_sub(hvlu_types::time::ns_to_tsc(
        time.system_time_ns,
        time.tsc_khz,
    ));
    let mut hv = Hv::new(mem, cmdline, options, Vec::new(), args.tsc_khz, boot_tsc);
    hv.domains = rebuild_domains(&state);
    hv.retired = state.retired.clone();
    hv.next_domid = state.globals.next_domid;
    hv.lu_sequence = args.sequence;
    hv.enqueue_all();
    t.resumed = cpu::rdtsc();
    let pending = PendingRelease {
        ranges: adopted.free,
        args,
        times: t,
        digest: adopted.digest_scan,
        frames: adopted.report.frames_owned,
        runs: adopted.runs,
    };
    hv.defer(move |hv| release(hv, pending));
    match hv.start() {
        Ok(never) => match never {},
        Err(StartError::NoVcpu) => refuse(format_args!("the state has no vCPU to run")),
        Err(StartError::Root {
            domain: d,
            vcpu: v,
            error: e,
        }) => refuse(format_args!("d{d} vCPU {v}: its L4 cannot be loaded: {e}")),
    }
}

/// Reads, decodes and verifies the handover state; refuses on any failure.
fn verify(args: &EntryArgs) -> HandoverState {
    let mut bytes = alloc::vec![0u8; args.state_len as usize];
    if let Err(e) = phys::read(args.state_phys, &mut bytes) {
        refuse(format_args!("state unreadable: {e}"));
    }
    new_hv::verify_state(args, &bytes, build_id::READS)
        .unwrap_or_else(|e| refuse(format_args!("{e}")))
}

/// Hypervisor domains around the preserved frames of `state`: each domain
/// as `new_hv::domain::restore` checks and rebuilds it, its L4s given this
/// hypervisor's upper half.
fn rebuild_domains(state: &HandoverState) -> BTreeMap<DomId, Domain> {
    let mut domains = BTreeMap::new();
    for d in &state.domains {
        let r = new_hv::domain::restore(d).unwrap_or_else(|e| refuse(format_args!("{e}")));
        for l4 in new_hv::domain::l4_frames(d) {
            if let Err(e) = paging::install_hv_slots(l4.addr()) {
                refuse(format_args!("d{}: cannot rewrite an L4: {e}", d.id));
            }
        }
        let vcpus = r.vcpus.iter().map(Vcpu::from_context).collect();
        // The frame space is sized by the limit, as the builder sized it.
        let p2m = P2m::from_map(r.p2m, r.max_frames)
            .unwrap_or_else(|e| refuse(format_args!("d{}: its frame space: {e}", r.id)));
        let mut domain = Domain::new(r.id, &r.name, r.privileged, p2m, r.start_info, vcpus);
        domain.paused = r.paused;
        domain.reports = r.reports;
        domains.insert(r.id, domain);
    }
    domains
}

/// Says which image entered, releases free RAM and prints the update's
/// report line; called at the first timer tick after the guests resumed
/// ([`Hv::defer`]), so that none of it is printed inside the blackout. Then lists the
/// boot modules (fw_cfg's directory), which the blackout need not wait for.
fn release(hv: &mut Hv, pending: PendingRelease) {
    let args = &pending.args;
    hvprintln!(
        "hvlu hypervisor {} entered by live update #{} (image at {:#x}, state at {:#x}, {} bytes)",
        build_id::BUILD_TEXT,
        args.sequence,
        args.image_phys,
        args.state_phys,
        args.state_len
    );
    report_release(hv, pending);
    hv.modules = modules::discover();
}

fn report_release(hv: &mut Hv, pending: PendingRelease) {
    let t_release = cpu::rdtsc();
    hv.mem.release(&pending.ranges);
    let t_done = cpu::rdtsc();
    let report = Report {
        frames: pending.frames,
        runs: pending.runs,
        digest_new: pending.digest,
        free_after: hv.mem.pages.free_frames(),
        free_digest_new: new_hv::free::digest_of(pending.ranges.iter().copied()),
        capacity: hv.mem.handoff.largest_free_gap().map_or(0, |g| g.size),
        ..Report::new(
            &pending.args,
            &pending.times,
            (t_release, t_done),
            build_id::BUILD_ID,
        )
    };
    hvprintln!("{report}");
}
