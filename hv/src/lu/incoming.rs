//! The incoming role on this hardware: the platform of `new_hv::enter`,
//! which holds the order (argument page, restricted boot, verify, the
//! guests' tables checked, the pass, every domain restored, resume). This
//! module supplies what touches the hardware — physical memory, the heap,
//! page tables and frametable claimed from the region, the hypervisor slots
//! of the guest L4s, the clock — and builds the hypervisor around the
//! restored domains. The frametable and M2P entries of every frame the
//! state does not name, and the free RAM among them, are initialised after
//! the guests run again (`crate::settle`); the update's report line is
//! printed when that is done.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::convert::Infallible;

use boot_allocator::PhysRange;
use frame_ownership::FrameInfo;
use handover_abi::entry::{EntryArgs, Watchdog, ENTRY_ARGS_SIZE};
use handover_abi::{PciDevice, RamRange, RamType};
use hvlu_types::{DomId, Mfn, MfnRange, PAGE_SIZE};
use new_hv::boot::BootMemory;
use new_hv::domain::Restored;
use new_hv::enter::Platform;
use new_hv::{Entered, InTimes, Report};
use pv_abi::exit::Outcome;
use pv_abi::hypercall::MemoryMapEntry;

use core::sync::atomic::{AtomicU64, Ordering};

use handover_abi::marker::Marker;

use crate::arch::{self, cpu, paging, phys, stack};
use crate::cmdline::Options;
use crate::domain::{Domain, P2m, Vcpu};
use crate::hv::{Hv, StartError};
use crate::mm::{self, BootSteps, MemError};
use crate::{build_id, hvprintln, modules};

/// What the incoming side of an update leaves for its first timer tick.
#[derive(Debug)]
struct PendingRelease {
    /// Free RAM: the complement of the domains' runs, handed to the page
    /// allocator as its entries are initialised (`crate::settle`).
    ranges: Vec<MfnRange>,
    /// The entry arguments (the old side's figures).
    args: EntryArgs,
    /// The incoming side's timestamps.
    times: InTimes,
    /// The new side's owned-frame digest after the pass (checked equal to
    /// the old side's before the resume).
    digest: u64,
    /// The way back this was, if it was one.
    rollback: Option<Rollback>,
    /// Frames owned after the pass.
    frames: u64,
    /// The page allocator's free frames when the domains were rebuilt,
    /// before any guest ran (the domUs' short turns come before the
    /// report, and a guest may take a frame in its turn).
    free_after: u64,
    /// What the PCI walk inside the blackout found, to say.
    pci_lines: Vec<alloc::string::String>,
    /// Runs in the state.
    runs: u64,
    /// Bytes of the boot stack the incoming boot used at most.
    stack_used: Option<u64>,
}

/// The sequence number of the update being rolled back ([`roll_back`]),
/// 0 on an ordinary entry.
static ROLLING_BACK: AtomicU64 = AtomicU64::new(0);

/// Stops with a diagnostic: a state that fails verification never runs.
/// On the way back ([`roll_back`]) the machine is reset instead, the
/// marker cleared: the next boot is a cold one.
fn refuse(what: core::fmt::Arguments<'_>) -> ! {
    let rolling_back = ROLLING_BACK.load(Ordering::Relaxed);
    if rolling_back != 0 {
        // Perhaps before there is a heap: the reason is written into a
        // buffer on the stack.
        let mut line = FixedText::default();
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!("the way back from update {rolling_back} failed: {what}"),
        );
        hvprintln!("lu: {}", line.as_str());
        hvprintln!(
            "lu: no guest will run on a state that could not be verified; the machine resets and boots cold"
        );
        crate::lu::record_failed_way_back(line.as_str());
        crate::lu::clear_marker();
        cpu::reset()
    }
    hvprintln!("live update REFUSED by the incoming image: {what}");
    hvprintln!("no guest will run on a state that could not be verified; stopping");
    cpu::exit(Outcome::Refused)
}

/// The incoming platform: the boot's steps (the frametable and M2P once
/// claimed) and the guests' page tables.
struct Incoming {
    steps: BootSteps,
    reader: phys::TableReader,
    /// How deep the boot goes on the boot stack (its guard page is mapped
    /// by the entry tables until this image's own tables are loaded).
    depth: Option<stack::Depth>,
    /// RAM, as the boot's page-table step was given it.
    ram: Vec<MfnRange>,
    /// The TSC frequency the argument page gives.
    tsc_khz: u64,
    /// The PCI walk (`Platform::devices`): the devices for `Hv::devices`,
    /// its lines printed after the resume.
    found: crate::devices::Walk,
    /// The way back, if this is one ([`roll_back`]).
    rollback: Option<Rollback>,
}

/// What the way back knows beside the argument page.
#[derive(Clone, Copy, Debug)]
struct Rollback {
    /// The marker of the update that never confirmed.
    marker: Marker,
    /// This boot's PVH start info (its memory map: where BARs may go).
    start_info: u64,
    /// TSC when this boot began, after the reset.
    boot_tsc: u64,
    /// When this boot began on the TSC as set back ([`Platform::locate`]).
    began: u64,
}

/// The incoming path. `args_phys` is the argument page (entry contract).
pub fn enter(args_phys: u64) -> ! {
    let depth = stack::Depth::start();
    crate::console::init();
    arch::gdt::init();
    run(args_phys, depth, None)
}

/// Runs `new_hv::enter` on the argument page at `args_phys`: an update's
/// entry, or (`rollback`) the way back.
fn run(args_phys: u64, depth: Option<stack::Depth>, rollback: Option<Rollback>) -> ! {
    let mut platform = Incoming {
        // The frametable and M2P as they are: only the entries of the
        // frames the state names are initialised before the resume.
        steps: BootSteps {
            lazy: true,
            ..BootSteps::default()
        },
        reader: phys::table_reader(),
        depth,
        ram: Vec::new(),
        tsc_khz: 0,
        found: crate::devices::Walk::default(),
        rollback,
    };
    match new_hv::enter(&mut platform, args_phys, build_id::READS) {
        Ok(never) => match never {},
        Err(e) => refuse(format_args!("{e}")),
    }
}

/// The way back (issue 18). A cold boot found `marker`: an update that
/// armed the watchdog jumped and never confirmed, and the machine reset.
/// The guests' memory, their tables and the handover state are still in
/// RAM: this image — the cold-boot one, where the reset loaded it — runs
/// the incoming path on that state, exactly as the new image would have
/// (`new_hv::enter`: argument page, restricted boot, verify, the guests'
/// tables, the pass, restore, resume), with three differences the
/// platform makes (`Platform::locate`, `Platform::devices`): the image is
/// not the staged one, the PCI BARs, which the reset cleared, are placed
/// again as the cold boot placed them, and a TSC the reset took back is
/// set forward. Called
/// before the cold boot allocates anything; on any refusal it resets the
/// machine with the marker cleared, so the next boot is a cold one.
pub fn roll_back(
    marker: Marker,
    start_info: u64,
    boot_tsc: u64,
    depth: Option<stack::Depth>,
) -> ! {
    ROLLING_BACK.store(marker.sequence.max(1), Ordering::Relaxed);
    hvprintln!(
        "lu: update {} to build {} did not confirm: the machine reset after its jump; rolling back from the state in the live-update region",
        marker.sequence,
        ShortId(marker.to_build_id)
    );
    let rollback = Rollback {
        marker,
        start_info,
        boot_tsc,
        began: boot_tsc,
    };
    run(marker.args_phys, depth, Some(rollback))
}

/// Text written without the heap, cut at [`crate::lu::FAILED_TEXT_MAX`]
/// bytes.
struct FixedText {
    bytes: [u8; crate::lu::FAILED_TEXT_MAX],
    len: usize,
}

impl Default for FixedText {
    fn default() -> Self {
        FixedText {
            bytes: [0; crate::lu::FAILED_TEXT_MAX],
            len: 0,
        }
    }
}

impl FixedText {
    fn as_str(&self) -> &str {
        // Only whole characters are appended (`write_str`).
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Write for FixedText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.bytes.len() - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// A build id's short form, as the report prints it (its first 8 bytes in
/// hex), written without the heap: the way back says it before there is
/// one.
struct ShortId(handover_abi::BuildId);

impl core::fmt::Display for ShortId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0 .0[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl BootMemory for Incoming {
    type Error = MemError;

    fn heap(&mut self, range: PhysRange) -> Result<(), MemError> {
        self.steps.heap(range)
    }

    fn page_tables(&mut self, block: PhysRange, ram: &[MfnRange]) -> Result<(), MemError> {
        self.ram = ram.to_vec();
        self.steps.page_tables(block, ram)
    }

    fn frametable(&mut self, ft: PhysRange, m2p: PhysRange, frames: u64) -> Result<(), MemError> {
        self.steps.frametable(ft, m2p, frames)
    }
}

impl Platform for Incoming {
    type Tables = phys::TableReader;
    type Resumed = Infallible;

    fn now(&self) -> u64 {
        cpu::rdtsc()
    }

    fn clock(&self) -> fn() -> u64 {
        cpu::rdtsc
    }

    fn read_args(&mut self, paddr: u64) -> Result<[u8; ENTRY_ARGS_SIZE], MemError> {
        // The entry tables map all RAM at the direct-map base; the argument
        // page is inside the region.
        phys::set_direct_map(paddr + PAGE_SIZE);
        let mut raw = [0u8; ENTRY_ARGS_SIZE];
        phys::read(paddr, &mut raw)?;
        Ok(raw)
    }

    fn locate(&mut self, args: &EntryArgs) {
        self.tsc_khz = args.tsc_khz;
        let Some(rb) = self.rollback.as_mut() else {
            arch::set_image_phys(args.image_phys);
            let (image_start, image_end) = arch::image_range();
            phys::set_image_range(image_start, image_end);
            phys::set_direct_map(args.ram_end);
            return;
        };
        // The way back: this image is where the reset loaded it (its range
        // recorded by the cold boot), and the boot stub maps the first
        // 4 GiB, where the region is, until this image's own tables.
        phys::set_direct_map(args.ram_end.min(4 << 30));
        if args.sequence != rb.marker.sequence {
            refuse(format_args!(
                "the marker names update {} and its argument page update {}",
                rb.marker.sequence, args.sequence
            ));
        }
        // A reset may restart the TSC (a CPU's does; QEMU's TCG keeps it
        // running): if it went back, set it to where it was at the jump
        // plus the deadline, so the guests' clock does not go back.
        let before = cpu::rdtsc();
        if before >= args.tsc_jump {
            return;
        }
        let want = args
            .tsc_jump
            .saturating_add(u64::from(rb.marker.deadline_ms) * args.tsc_khz);
        let now = cpu::set_tsc(want);
        if now < args.tsc_jump {
            hvprintln!(
                "lu: the TSC went back over the reset and could not be set forward to {want} (it reads {now}): the guests see their clock go back"
            );
        }
        rb.began = now.saturating_sub(before.saturating_sub(rb.boot_tsc));
    }

    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        Ok(phys::read(paddr, buf)?)
    }

    /// The devices as they are, nothing moved, the BARs' sizes those the
    /// state records — or, for a BAR it does not (a state from a release
    /// that did not know PCI), sized now: no guest runs until the resume.
    /// Kept for the hypervisor's own list (`Hv::devices`).
    fn devices(&mut self, known: &[MfnRange]) -> Result<Vec<PciDevice>, MemError> {
        self.found = match &self.rollback {
            None => crate::devices::rescan(known, &self.ram, true, self.tsc_khz),
            // The reset cleared the BARs: placed again by the cold boot's
            // walk, which over the same machine places them where it did
            // (the state's devices are checked against them next).
            Some(rb) => {
                let info = crate::boot_info::BootInfo::from_pvh(rb.start_info).unwrap_or_else(
                    |e| refuse(format_args!("cannot read the PVH start info again: {e}")),
                );
                let taken: Vec<PhysRange> = info
                    .memmap()
                    .iter()
                    .map(|e| PhysRange::new(e.addr, e.size))
                    .collect();
                crate::devices::discover(
                    crate::pci::Mode::Assign {
                        window: crate::devices::window(),
                    },
                    &taken,
                    self.tsc_khz,
                )
            }
        };
        Ok(crate::devices::handover(&self.found.devices))
    }

    fn reserved(&self, region: PhysRange) -> Vec<MfnRange> {
        mm::reserved_ranges(region)
    }

    fn adopt_view(&mut self) -> (&phys::TableReader, &mut [FrameInfo], &mut [u64]) {
        (&self.reader, self.steps.frametable, self.steps.m2p)
    }

    fn install_hv_slots(&mut self, l4: Mfn) -> Result<(), MemError> {
        Ok(paging::install_hv_slots(l4.addr())?)
    }

    fn disarm_watchdog(&mut self, watchdog: Watchdog) {
        crate::arch::watchdog::disarm(watchdog);
    }

    fn write(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), MemError> {
        Ok(phys::write(paddr, bytes)?)
    }

    /// Builds the hypervisor around the restored domains and runs them.
    fn resume(&mut self, e: Entered) -> Infallible {
        if let Some(note) = &e.note {
            hvprintln!("{note}");
        }
        let region = PhysRange::new(e.args.region_base, e.args.region_size);
        if self.depth.is_some_and(|d| d.exhausted()) {
            refuse(format_args!(
                "the boot stack overflowed before its guard page was unmapped"
            ));
        }
        let mut times = e.times;
        let steps = core::mem::take(&mut self.steps);
        let mem = steps
            .into_memory(
                e.ram,
                region,
                e.reserved,
                e.handoff,
                e.frames,
                e.adopted.unsettled,
            )
            .unwrap_or_else(|err| refuse(format_args!("memory: {err}")));
        times.marks.mark("memory", cpu::rdtsc());
        // The boot modules are read at the first tick, outside the
        // blackout. The predecessor's command line goes on (log level,
        // timer rate, …); its uptime too: this image "booted" when the
        // first one did.
        let g = new_hv::globals::restore(&e.state.globals);
        let options = options_of(&g.cmdline);
        let mut hv = Hv::new(
            mem,
            &g.cmdline,
            options,
            Vec::new(),
            e.args.tsc_khz,
            g.boot_tsc,
        );
        times.marks.mark("hvnew", cpu::rdtsc());
        hv.domains = rebuild_domains(e.domains, &hv);
        times.marks.mark("domains", cpu::rdtsc());
        let walk = core::mem::take(&mut self.found);
        hv.devices = walk.devices;
        hv.machine_map = machine_map(&e.state.machine.ram_map);
        hv.retired = new_hv::globals::restore_retired(&e.state.retired);
        hv.next_domid = g.next_domid;
        hv.lu_sequence = e.args.sequence;
        if let Some(rb) = &self.rollback {
            answer_rolled_back(&mut hv, &rb.marker);
        }
        hv.enqueue_all();
        // The domUs first, a short turn each (`crate::sched`): none waits
        // a round of the run queue after the blackout.
        hv.give_turns();
        times.resumed = cpu::rdtsc();
        times.marks.mark("queue", times.resumed);
        let pending = PendingRelease {
            rollback: self.rollback,
            frames: e.adopted.report.frames_owned,
            free_after: hv.mem.free_frames(),
            ranges: e.adopted.free,
            args: e.args,
            times,
            digest: e.adopted.digest,
            runs: e.adopted.runs,
            stack_used: self.depth.map(|d| d.deepest()),
            pci_lines: walk.lines,
        };
        hv.defer(move |hv| release(hv, pending));
        match hv.start() {
            Ok(never) => match never {},
            Err(StartError::NoVcpu) => refuse(format_args!("the state has no vCPU to run")),
            Err(StartError::Root {
                domain: d,
                vcpu: v,
                error: err,
            }) => refuse(format_args!(
                "d{d} vCPU {v}: its L4 cannot be loaded: {err}"
            )),
        }
    }
}

/// The way back's answer to the `lu exec` call that ran the update: the
/// caller the marker names (dom0's vCPU, paused with result 0 as if the
/// update had arrived) gets `Failed`, and `last_error` and `lu status` say
/// which update failed and that the state was rolled back.
fn answer_rolled_back(hv: &mut Hv, marker: &Marker) {
    let message = alloc::format!(
        "update {} to build {} failed: the machine reset after its jump; rolled back",
        marker.sequence,
        ShortId(marker.to_build_id)
    );
    let (d, v) = marker.caller;
    match hv
        .domains
        .get_mut(&d)
        .and_then(|dom| dom.vcpus.get_mut(usize::from(v)))
    {
        Some(vcpu) => {
            vcpu.frame.regs.rax = crate::hypercall::return_value(Err(
                pv_abi::hypercall::Error::Failed,
            ));
        }
        None => hvprintln!(
            "lu: the caller the update marker names, d{d} vCPU {v}, is not in the state: no call is answered"
        ),
    }
    hv.set_last_error(&message);
    hv.lu.message = message;
    hv.lu.rolled_back = Some((marker.to_build_id, marker.sequence));
}

/// The options of the handed-over command line, or the defaults (said in
/// the log) if it does not parse.
fn options_of(cmdline: &str) -> Options {
    Options::parse(cmdline).unwrap_or_else(|err| {
        hvprintln!(
            "the handed-over command line `{cmdline}` does not parse ({err}): using defaults"
        );
        Options::default()
    })
}

/// The machine's memory map as the state hands it over (its RAM map, each
/// entry with its E820 type), for `machine_memory_map`: at most
/// `pv_abi::call::MAX_MEMORY_MAP` entries, the rest said in the log.
fn machine_map(ram_map: &[RamRange]) -> Vec<MemoryMapEntry> {
    const MAX: usize = pv_abi::call::MAX_MEMORY_MAP as usize;
    if ram_map.len() > MAX {
        hvprintln!(
            "the handed-over RAM map has {} entries: machine_memory_map gives the first {MAX}",
            ram_map.len()
        );
    }
    ram_map
        .iter()
        .take(MAX)
        .map(|r| MemoryMapEntry {
            base: r.base,
            size: r.size,
            kind: match r.kind {
                RamType::Usable => 1,
                RamType::Reserved => 2,
                RamType::AcpiReclaimable => 3,
                RamType::AcpiNvs => 4,
                RamType::Unusable => 5,
                RamType::Other(kind) => kind,
            },
            reserved: 0,
        })
        .collect()
}

/// Hypervisor domains around the preserved frames, as `new_hv::enter`
/// restored them (their L4s already given this hypervisor's upper half).
fn rebuild_domains(restored: Vec<Restored>, hv: &Hv) -> BTreeMap<DomId, Domain> {
    let mut domains = BTreeMap::new();
    for r in restored {
        let (vcpus, hvm) = match &r.hvm {
            None => (r.vcpus.iter().map(Vcpu::from_context).collect(), None),
            Some(h) => rebuild_hvm(r.id, h, hv),
        };
        // The frame space is sized by the limit, as the builder sized it.
        let mut p2m = P2m::from_map(r.p2m, r.max_frames, r.hole).unwrap_or_else(|e| {
            let free = mm::heap::free() >> 10;
            refuse(format_args!(
                "d{}: its frame space: {e} ({free} KiB free)",
                r.id
            ))
        });
        // The state's identity entries: inside the hole, sorted and
        // disjoint (verified), so only a full heap refuses one.
        for &range in &r.identity {
            if let Err(e) = p2m.add_identity(range) {
                refuse(format_args!("d{}: identity entries: {e}", r.id));
            }
        }
        let mut domain = Domain::new(r.id, &r.name, r.privileged, p2m, r.start_info, vcpus);
        domain.paused = r.paused;
        domain.reports = r.reports;
        domain.mmio = r.mmio;
        domain.hvm = hvm;
        domains.insert(r.id, domain);
    }
    domains
}

/// An HVM domain's vCPUs and part, around its nested tables where they are
/// (the pass checked and typed them) and its log-dirty bitmap where it is:
/// a new VMCB per vCPU from its context, with this image's intercepts and
/// permission maps.
fn rebuild_hvm(
    id: DomId,
    h: &new_hv::domain::RestoredHvm,
    hv: &Hv,
) -> (Vec<Vcpu>, Option<crate::hvm::HvmDomain>) {
    let Some(host) = hv.svm.as_ref() else {
        refuse(format_args!(
            "d{id} is an HVM domain and this CPU runs none (no AMD SVM with nested paging)"
        ))
    };
    let asid = crate::hvm::asid_for(id, hv.asids);
    let vcpus = h
        .vcpus
        .iter()
        .map(|(ctx, _, _)| Vcpu::hvm(crate::hvm::HvmVcpu::new(ctx, host, h.ncr3, asid)))
        .collect();
    let log_dirty = h.log_dirty.map(crate::hvm::logdirty::LogDirty::adopt);
    let part = crate::hvm::HvmDomain {
        npt: crate::domain::npt::Npt::adopt(h.ncr3, h.tables.clone()),
        asid,
        flush: true,
        log_dirty,
    };
    (vcpus, Some(part))
}

/// Says which image entered and prints the update's report line; called
/// at the first timer tick after the guests resumed ([`Hv::defer`]), so
/// that none of it is printed inside the blackout; leaves the `lu-settled`
/// line for when every entry the update left is initialised
/// (`crate::settle`). Then lists the boot modules (fw_cfg's directory),
/// which the blackout need not wait for.
fn release(hv: &mut Hv, mut pending: PendingRelease) {
    let args = &pending.args;
    if let Some(rb) = pending.rollback {
        hvprintln!(
            "lu: update {} to build {} failed (the machine reset after its jump: the watchdog, or a fault): rolled back to build {} in {} ms after the reset; every domain runs again",
            args.sequence,
            ShortId(rb.marker.to_build_id),
            ShortId(build_id::id()),
            new_hv::report::us(rb.began, pending.times.resumed, args.tsc_khz) / 1000
        );
        hv.modules = modules::discover();
        return;
    }
    hvprintln!(
        "hvlu hypervisor {} entered by live update #{} (image at {:#x}, state at {:#x}, {} bytes)",
        build_id::BUILD_TEXT,
        args.sequence,
        args.image_phys,
        args.state_phys,
        args.state_len
    );
    if let Some(used) = pending.stack_used {
        hvprintln!(
            "lu: the incoming boot took at most {} KiB of the {} KiB boot stack",
            used >> 10,
            stack::STACK_SIZE >> 10
        );
    }
    let pci_lines = core::mem::take(&mut pending.pci_lines);
    let (seq, resumed, khz) = (
        pending.args.sequence,
        pending.times.resumed,
        pending.args.tsc_khz,
    );
    report_release(hv, pending);
    hv.settling.when_done(move |hv, settled| {
        let us = |from, to| new_hv::report::us(from, to, khz);
        hvprintln!(
            "lu-settled seq={seq} settle_us={} settled_us={} steps={} turns={} free_frames={} audited={} audit_owned={} audit_unbacked={} audit_equal={} complete={}",
            us(0, settled.busy_tsc),
            us(resumed, settled.done_tsc),
            settled.steps,
            settled.turns,
            hv.mem.free_frames(),
            settled.audited,
            settled.owned,
            settled.unbacked,
            if settled.unbacked == 0 { "yes" } else { "no" },
            if settled.complete {
                "yes"
            } else {
                "no (the next update began)"
            }
        );
        if let Some(mfn) = settled.first_unbacked {
            hvprintln!("lu: the frametable says frame {mfn:#x} is owned, and its owner does not back it");
        }
    });
    report_holes(hv);
    hv.modules = modules::discover();
    for line in &pci_lines {
        hvprintln!("{line}");
    }
}

/// The update's report line, at the first tick after the resume. Free RAM
/// whose entries are not initialised yet counts as free (Invariant 29);
/// the `lu-settled` line says when they all are.
fn report_release(hv: &mut Hv, pending: PendingRelease) {
    let report = Report {
        frames: pending.frames,
        runs: pending.runs,
        digest_new: pending.digest,
        free_after: pending.free_after,
        free_digest_new: new_hv::free::digest_of(pending.ranges.iter().copied()),
        capacity: hv.mem.handoff.largest_free_gap().map_or(0, |g| g.size),
        ..Report::new(&pending.args, &pending.times, (0, 0), build_id::id())
    };
    hvprintln!("{report}");
    if hv.options.log_level >= crate::cmdline::LogLevel::Debug {
        for (phase, tag, us) in report.steps() {
            hvprintln!("lu: update {} {phase} step {tag}: {us} us", report.seq);
        }
    }
}

/// Says, for each domain rebuilt, where its PCI hole is and what a lookup
/// of the hole's first gpfn finds: no frame, or (a BAR mapped there) the
/// device frame itself — never RAM (`P2m::get`).
fn report_holes(hv: &Hv) {
    for d in hv.domains.values() {
        let hole = d.hole();
        let gpfn = hole.start();
        let found = match d.p2m.get(gpfn) {
            None => "has no frame",
            Some(_) => "maps device memory identity",
        };
        hvprintln!("d{}: PCI hole {hole}: {gpfn} {found}", d.id);
    }
}
