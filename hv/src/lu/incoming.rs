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
//!
//! Every check, the pass and the report line are `new_hv`'s; this module
//! reads physical memory, builds this hypervisor's memory and page tables,
//! rewrites the guest L4s, schedules and prints.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::entry::{EntryArgs, ENTRY_ARGS_SIZE};
use handover_abi::{HandoverState, PAGE_SIZE};
pub use new_hv::InTimes;
use new_hv::Report;
use pv_abi::exit::Outcome;

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
    hvprintln!(
        "hvlu hypervisor {} entered by live update #{} (image at {:#x}, state at {:#x}, {} bytes)",
        build_id::BUILD_TEXT,
        args.sequence,
        args.image_phys,
        args.state_phys,
        args.state_len
    );

    let staged = new_hv::staged_range(&args).unwrap_or_else(|e| refuse(format_args!("{e}")));
    let region = boot_allocator::PhysRange::new(args.region_base, args.region_size);
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

    let ram = new_hv::ram_ranges(&state);
    if let Err(e) = boot.page_tables(&ram) {
        refuse(format_args!("page tables: {e}"));
    }
    let mut mem = match boot.finish(ram, mm::reserved_ranges(region)) {
        Ok(m) => m,
        Err(e) => refuse(format_args!("frametable: {e}")),
    };
    t.booted = cpu::rdtsc();

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
        ranges: adopted.free,
        args,
        times: t,
        digest: adopted.digest,
        frames: adopted.report.frames_owned,
        runs: adopted.runs,
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
    new_hv::verify_state(args, &bytes).unwrap_or_else(|e| refuse(format_args!("{e}")))
}

/// Hypervisor domains around the preserved frames of `state`.
fn rebuild_domains(state: &HandoverState) -> BTreeMap<u16, Domain> {
    let mut domains = BTreeMap::new();
    for d in &state.domains {
        let p2m = new_hv::p2m_of(&d.runs);
        // Every guest L4 carries this hypervisor's upper half.
        for l4 in new_hv::l4_frames(d) {
            if let Err(e) = paging::install_hv_slots(l4.addr()) {
                refuse(format_args!("d{}: cannot rewrite an L4: {e}", d.id.0));
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
    let report = Report {
        frames: pending.frames,
        runs: pending.runs,
        digest_new: pending.digest,
        free_after: hv.mem.pages.free_frames(),
        ..Report::new(
            &pending.args,
            &pending.times,
            (t_release, t_done),
            build_id::BUILD_ID,
        )
    };
    hvprintln!("{report}");
}
