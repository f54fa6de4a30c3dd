//! The incoming role: this image entered through its live-update entry.
//!
//! The order is DESIGN.md section 1, steps 3 to 7: a boot allocator over
//! the region minus what the old hypervisor staged; the heap, so the state
//! can be decoded and verified before anything else is built; the
//! hypervisor's page tables, frametable and M2P; the single frametable pass
//! over the handover state; the domains rebuilt around their preserved
//! frames (the hypervisor slots of every guest L4 rewritten); resume. The
//! rest of RAM is released at the first timer tick, after the guests run
//! again, and the update's report line is printed then.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use boot_allocator::PhysRange;
use handover_abi::entry::{EntryArgs, ENTRY_ARGS_SIZE};
use handover_abi::{HandoverState, Mfn, MfnRange, RamType, RunKind, PAGE_SIZE};
use pv_abi::exit::Outcome;

use super::us;
use crate::arch::trap::TrapFrame;
use crate::arch::{self, cpu, paging, phys};
use crate::cmdline::Options;
use crate::domain::{Domain, Reports, Vcpu};
use crate::hv::{Hv, PendingRelease};
use crate::mm::{self, BootMem};
use crate::{build_id, hvprintln, modules};

/// Stops with a diagnostic: a state that fails verification never runs.
fn refuse(what: core::fmt::Arguments<'_>) -> ! {
    hvprintln!("live update REFUSED by the incoming image: {what}");
    hvprintln!("no guest will run on a state that could not be verified; stopping");
    cpu::exit(Outcome::Refused)
}

/// Timestamps of the incoming side.
#[derive(Clone, Copy, Debug, Default)]
pub struct InTimes {
    /// Entry reached.
    pub entry: u64,
    /// Heap ready (first part of the restricted boot).
    pub heap: u64,
    /// State decoded and verified.
    pub verified: u64,
    /// Page tables, frametable and M2P ready.
    pub booted: u64,
    /// Frametable pass done.
    pub pass: u64,
    /// Domains rebuilt, ready to run.
    pub resumed: u64,
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
    let args = match EntryArgs::from_bytes(&raw) {
        Ok(args) => args,
        Err(e) => refuse(format_args!("{e}")),
    };
    arch::set_image_phys(args.image_phys);
    let (image_start, image_end) = arch::image_range();
    phys::set_image_range(image_start, image_end);
    phys::set_direct_map(args.ram_end);
    hvprintln!(
        "hvlu hypervisor {} entered by live update #{} (image at {:#x}, state at {:#x}, {} bytes)",
        build_id::BUILD_TEXT,
        args.sequence,
        args.image_phys,
        args.state_phys,
        args.state_len
    );

    let region = PhysRange::new(args.region_base, args.region_size);
    let staged_end = args
        .state_phys
        .saturating_add(args.state_len)
        .div_ceil(PAGE_SIZE)
        * PAGE_SIZE;
    if args.state_phys < args.image_phys
        || !region.contains_range(PhysRange::from_bounds(args.image_phys, staged_end))
    {
        refuse(format_args!(
            "staged image and state are not inside the region in order"
        ));
    }
    let staged = PhysRange::from_bounds(args.image_phys, staged_end);
    let mut boot = match BootMem::new(region, &[staged]) {
        Ok(b) => b,
        Err(e) => refuse(format_args!("boot allocator: {e}")),
    };
    if let Err(e) = boot.heap() {
        refuse(format_args!("heap: {e}"));
    }
    t.heap = cpu::rdtsc();

    let state = verify(&args);
    t.verified = cpu::rdtsc();

    let ram: Vec<MfnRange> = state
        .machine
        .ram_map
        .iter()
        .filter(|r| r.kind == RamType::Usable)
        .filter_map(|r| {
            let start = r.base.div_ceil(PAGE_SIZE);
            let end = r.base.saturating_add(r.size) / PAGE_SIZE;
            (end > start).then(|| MfnRange::new(Mfn(start), end - start))
        })
        .collect();
    if let Err(e) = boot.page_tables(&ram) {
        refuse(format_args!("page tables: {e}"));
    }
    let mut mem = match boot.finish(ram, mm::reserved_ranges(region)) {
        Ok(m) => m,
        Err(e) => refuse(format_args!("frametable: {e}")),
    };
    t.booted = cpu::rdtsc();

    let views = super::views(&state);
    let parts = mem.parts();
    let report = match frame_ownership::rebuild(
        &parts.layout,
        &views,
        &phys::table_reader(),
        parts.frametable,
        parts.m2p,
    ) {
        Ok(r) => r,
        Err(e) => refuse(format_args!("frametable pass: {e}")),
    };
    let digest = frame_ownership::owned_digest(mem.frametable, mem.m2p, &views);
    t.pass = cpu::rdtsc();
    if digest != args.digest {
        refuse(format_args!(
            "owned-frame digest {digest:#018x} differs from the old hypervisor's {:#018x}",
            args.digest
        ));
    }

    let free = {
        let parts = mem.parts();
        frame_ownership::free_ranges(&parts.layout, &views)
    };
    let runs: usize = state.domains.iter().map(|d| d.runs.len()).sum();
    drop(views);
    let domains = rebuild_domains(&state);
    let mut hv = Hv {
        mem,
        domains,
        next_domid: state.globals.next_domid.0,
        current: None,
        run_queue: VecDeque::new(),
        // Read at the first tick, outside the blackout.
        modules: Vec::new(),
        console_in: VecDeque::new(),
        options: Options::default(),
        tsc_khz: args.tsc_khz,
        boot_tsc: t.entry,
        past_reports: Vec::new(),
        lu: super::outgoing::LuState::default(),
        lu_sequence: args.sequence,
        pending_release: None,
    };
    for dom in hv.domains.values() {
        for v in 0..dom.vcpus.len() {
            hv.run_queue.push_back((dom.id.0, v));
        }
    }
    t.resumed = cpu::rdtsc();
    hv.pending_release = Some(PendingRelease {
        ranges: free,
        args,
        times: t,
        digest,
        frames: report.frames_owned,
        runs: runs as u64,
    });
    let Some((d, v)) = hv.run_queue.pop_front() else {
        refuse(format_args!("the state has no vCPU to run"))
    };
    let vcpu = hv.domains[&d].vcpus[v].clone();
    if let Err(e) = paging::load_guest_root(vcpu.cr3.addr()) {
        refuse(format_args!("d{d} vCPU {v}: its L4 cannot be loaded: {e}"));
    }
    cpu::set_guest_segment_bases(vcpu.fs_base, vcpu.gs_base);
    hv.current = Some((d, v));
    *crate::hv::HV.lock() = Some(hv);
    arch::lapic::init_virtual_wire();
    arch::timer::start(Options::default().timer_hz);
    arch::trap::enter(&vcpu.frame)
}

/// Reads, decodes and verifies the handover state; refuses on any failure.
fn verify(args: &EntryArgs) -> HandoverState {
    let mut bytes = alloc::vec![0u8; args.state_len as usize];
    if let Err(e) = phys::read(args.state_phys, &mut bytes) {
        refuse(format_args!("state unreadable: {e}"));
    }
    let decoded = match handover_abi::decode(&bytes) {
        Ok(d) => d,
        Err(e) => refuse(format_args!("handover state: {e}")),
    };
    let r = &decoded.state.machine.region;
    let image = MfnRange::new(
        Mfn::containing(args.image_phys),
        args.image_len.div_ceil(PAGE_SIZE),
    );
    if r.base != args.region_base || r.size != args.region_size || r.image != image {
        refuse(format_args!(
            "the state's region {:#x}+{:#x} (image {:?}) disagrees with the entry arguments {:#x}+{:#x} (image {:?})",
            r.base, r.size, r.image, args.region_base, args.region_size, image
        ));
    }
    if !r.state.contains(Mfn::containing(args.state_phys)) {
        refuse(format_args!("the state is not where the state says it is"));
    }
    decoded.state
}

/// Hypervisor domains around the preserved frames of `state`.
fn rebuild_domains(state: &HandoverState) -> BTreeMap<u16, Domain> {
    let mut domains = BTreeMap::new();
    for d in &state.domains {
        let gpfns = d
            .runs
            .iter()
            .map(|r| r.first_gpfn.0 + r.count)
            .max()
            .unwrap_or(0);
        let mut p2m = alloc::vec![u64::MAX; gpfns as usize];
        for run in &d.runs {
            for i in 0..run.count {
                p2m[(run.first_gpfn.0 + i) as usize] = run.first_mfn.0 + i;
            }
            if run.kind == RunKind::L4 {
                // Every guest L4 carries this hypervisor's upper half.
                for i in 0..run.count {
                    if let Err(e) = paging::install_hv_slots(Mfn(run.first_mfn.0 + i).addr()) {
                        refuse(format_args!("d{}: cannot rewrite an L4: {e}", d.id.0));
                    }
                }
            }
        }
        let vcpus = d
            .vcpus
            .iter()
            .map(|v| {
                let r = &v.regs;
                let mut frame = TrapFrame::user(v.rip, v.rsp);
                frame.rflags = (v.rflags & !0x3000) | arch::trap::RFLAGS_IF | 0x2;
                (frame.rax, frame.rbx, frame.rcx, frame.rdx) = (r.rax, r.rbx, r.rcx, r.rdx);
                (frame.rsi, frame.rdi, frame.rbp) = (r.rsi, r.rdi, r.rbp);
                (frame.r8, frame.r9, frame.r10, frame.r11) = (r.r8, r.r9, r.r10, r.r11);
                (frame.r12, frame.r13, frame.r14, frame.r15) = (r.r12, r.r13, r.r14, r.r15);
                Vcpu {
                    frame,
                    cr3: v.cr3,
                    fs_base: v.fs_base,
                    gs_base: v.gs_base,
                }
            })
            .collect();
        let domain = Domain {
            id: d.id,
            name: String::from(d.name.as_str()),
            privileged: d.flags.contains(handover_abi::DomainFlags::PRIVILEGED),
            max_frames: d.max_frames,
            p2m,
            vcpus,
            paused: false,
            console_line: Vec::new(),
            reports: Reports::default(),
        };
        domains.insert(d.id.0, domain);
    }
    domains
}

/// Releases free RAM and prints the update's report line; called at the
/// first timer tick after the guests resumed. Then lists the boot modules
/// (fw_cfg's directory), which the blackout need not wait for.
pub fn release(hv: &mut Hv, pending: PendingRelease) {
    report_release(hv, pending);
    hv.modules = modules::discover();
}

fn report_release(hv: &mut Hv, pending: PendingRelease) {
    let t_release = cpu::rdtsc();
    hv.mem.release(&pending.ranges);
    let t_done = cpu::rdtsc();
    let (a, t, khz) = (&pending.args, &pending.times, pending.args.tsc_khz);
    let free_after = hv.mem.pages.free_frames();
    let equal = pending.digest == a.digest;
    // The count before the update plus the old image's frames outside the
    // region, which only a cold-boot image has.
    let free_expected = a.free_frames + a.image_frames_out;
    hvprintln!(
        "lu-report seq={} from={} to={} pause_us={} serialise_us={} preflight_us={} jump_us={} boot_us={} verify_us={} pass_us={} resume_us={} blackout_us={} release_us={} state_bytes={} frames={} runs={} digest_old={:#018x} digest_new={:#018x} digest_equal={} free_before={} image_frames_released={} free_after={} free_equal={}",
        a.sequence,
        short(&a.from_build_id),
        short(&build_id::BUILD_ID),
        us(a.tsc_pause, a.tsc_paused, khz),
        us(a.tsc_paused, a.tsc_serialised, khz),
        us(a.tsc_serialised, a.tsc_preflight, khz),
        us(a.tsc_preflight, t.entry, khz),
        us(t.entry, t.heap, khz) + us(t.verified, t.booted, khz),
        us(t.heap, t.verified, khz),
        us(t.booted, t.pass, khz),
        us(t.pass, t.resumed, khz),
        us(a.tsc_pause, t.resumed, khz),
        us(t_release, t_done, khz),
        a.state_len,
        pending.frames,
        pending.runs,
        a.digest,
        pending.digest,
        if equal { "yes" } else { "no" },
        a.free_frames,
        a.image_frames_out,
        free_after,
        if free_after == free_expected { "yes" } else { "no" },
    );
}

fn short(id: &handover_abi::BuildId) -> String {
    id.0[..8]
        .iter()
        .map(|b| alloc::format!("{b:02x}"))
        .collect()
}
