//! A simulated host for the production update sequence: a random machine of
//! `frame_ownership::testkit` with a live-update region large enough for a
//! real incoming boot, physical memory that backs every page written, PCI
//! devices whose BARs are the machine's device ranges, and both platforms
//! of an update over it — [`Sim`] implements `old_hv::exec::Platform` and
//! `new_hv::enter::Platform`, so the tests run `old_hv::exec::exec` then
//! `new_hv::enter` exactly as the hypervisor does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;

use boot_allocator::PhysRange;
use frame_ownership::testkit::{random_machine, Machine, SimMemory};
use frame_ownership::FrameInfo;
use handover_abi::entry::{EntryArgs, Watchdog, ENTRY_ARGS_SIZE};
use handover_abi::note::ImageNote;
use handover_abi::{
    BuildId, GuestReports, HandoverState, HvGlobals, LuRegion, PciBar, PciDevice, RetiredDomain,
    RunKind, TimeBase, DEFAULT_HOLE, HOLE_END, MIN_HOLE,
};
use hvlu_types::hole::Hole;
use hvlu_types::pte::Level;
use hvlu_types::table_plan::{self, build, BuildError, Map, TableMemory};
use hvlu_types::VcpuContext;
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange, PAGE_SIZE};
use new_hv::boot::{BootMemory, IMAGE_VBASE};
use new_hv::Entered;
use old_hv::exec::{EntryPlan, Fault, JumpDetail, MachineView};
use old_hv::handover::{self, DomainInput};
use old_hv::image::{ImageInfo, Mapping, SegmentFlags};
use old_hv::staging::{self, End, Staging};

/// Frames of the live-update region the simulation adds (8 MiB).
pub const REGION_FRAMES: u64 = 2048;
/// The staged image's span.
pub const IMAGE_SPAN: u64 = 3 * PAGE_SIZE;
/// Where the image is linked (`hv/linker.ld`'s upper half).
const KERNEL_VBASE: u64 = 0xffff_ffff_8010_0000;

/// A frametable entry a previous image left in the region, before the
/// incoming image initialises it: it claims the frame for domain 1.
pub const LEFT_OVER: FrameInfo = FrameInfo::new(
    Some(hvlu_types::DomId(1)),
    frame_ownership::PageType::None,
    0,
    9,
    frame_ownership::FrameFlags::EMPTY,
);
/// An M2P entry a previous image left.
pub const LEFT_OVER_M2P: u64 = 0x5a5a;

/// Why the simulated machine refused an access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError(pub String);

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the old side of the simulation knows about one domain.
#[derive(Clone, Debug)]
pub struct Dom {
    pub id: DomId,
    pub name: String,
    pub p2m: Vec<u64>,
    pub max_frames: u64,
    pub vcpus: Vec<VcpuContext>,
    pub start_info: Gpfn,
    pub paused: bool,
    pub reports: GuestReports,
    /// The device ranges it may map (the machine's domain's).
    pub mmio: Vec<MfnRange>,
    /// Its PCI hole, and the device ranges it maps there.
    pub hole: Gpfn,
    pub identity: Vec<MfnRange>,
}

/// What [`Sim::outside_region`] compares: the old side's frametable and
/// M2P, each page table's contents, a fold of every other page written.
pub type Outside = (Vec<FrameInfo>, Vec<u64>, Vec<(u64, Vec<u64>)>, Vec<u64>);

/// A simulated host: one machine, its memory, the old hypervisor's view of
/// itself and, once entered, the new one's.
pub struct Sim {
    pub machine: Machine,
    /// Contents of every page that is not a page table (zeros until
    /// written).
    pub pages: BTreeMap<u64, Box<[u8; PAGE_SIZE as usize]>>,
    /// The old hypervisor's frametable and M2P.
    pub frametable: Vec<FrameInfo>,
    pub m2p: Vec<u64>,
    pub domains: Vec<Dom>,
    pub retired: Vec<RetiredDomain>,
    /// The PCI devices the old hypervisor recorded at boot.
    pub devices: Vec<PciDevice>,
    /// The PCI devices a scan finds now (both sides scan).
    pub found: Vec<PciDevice>,
    pub globals: HvGlobals,
    /// Frames the old page allocator has free (managed minus in use).
    pub free_frames: u64,
    /// The generation of the free frames (`Platform::free_generation`),
    /// and how many times their digest was taken.
    pub free_changes: u64,
    pub free_digests: std::cell::Cell<u32>,
    pub fault: Option<Fault>,
    pub clock: std::cell::Cell<u64>,
    pub log: Vec<String>,
    /// Pauses and resumes seen.
    pub paused: u32,
    pub resumed: u32,
    /// The new side: its frametable and M2P, the heap and page-table
    /// blocks it claimed, the L4s it rewrote.
    pub new_frametable: Vec<FrameInfo>,
    pub new_m2p: Vec<u64>,
    pub heap: Option<PhysRange>,
    pub page_table_block: Option<PhysRange>,
    /// The root of the page tables the new side built in that block.
    pub new_root: Option<u64>,
    /// The running hypervisor's own root (outside the simulated RAM,
    /// like the real one's frames outside the region), where the entry
    /// tables map the trampoline too.
    pub hv_root: Box<[u64; 512]>,
    /// The root of the entry tables the old side built.
    pub entry_root: Option<u64>,
    pub l4s_rewritten: Vec<Mfn>,
    /// The last jump.
    pub jumped: Option<(EntryPlan, JumpDetail)>,
    /// The machine's watchdog, if it has one (`MachineView::watchdog`).
    pub watchdog: Option<Watchdog>,
    /// The watchdog's arming and disarming, in order, with the clock, and
    /// whether it was armed when the guests resumed.
    pub watchdog_events: Vec<(&'static str, Watchdog, u64)>,
    pub armed_at_resume: Option<Watchdog>,
}

fn vcpu(i: usize, cr3: Mfn) -> VcpuContext {
    let mut ctx = VcpuContext::at_entry(0x40_0000 + i as u64, 0x7fff_0000, cr3);
    ctx.regs.rbx = i as u64 * 3;
    ctx
}

/// PCI devices whose memory BARs are exactly the frame ranges `ranges`:
/// each range cut into the fewest naturally aligned power-of-two blocks, a
/// block a 32-bit BAR, six BARs to a function, functions numbered from
/// 00:01.0 on.
pub fn pci_devices(ranges: &[MfnRange]) -> Vec<PciDevice> {
    let mut blocks = Vec::new();
    for r in ranges {
        let (mut at, end) = (r.start.0, r.end());
        while at < end {
            let align = if at == 0 {
                1 << 40
            } else {
                1 << at.trailing_zeros()
            };
            let fits = 1 << (63 - (end - at).leading_zeros());
            let frames: u64 = align.min(fits);
            blocks.push((at, frames));
            at += frames;
        }
    }
    blocks
        .chunks(6)
        .zip(1u16..)
        .map(|(bars, n)| PciDevice {
            bdf: n << 3,
            vendor: 0x1b36,
            device: 0x0100 + n,
            class: 0xff_0000,
            bars: bars
                .iter()
                .zip(0u8..)
                .map(|(&(at, frames), index)| PciBar {
                    index,
                    base: at * PAGE_SIZE,
                    size: frames * PAGE_SIZE,
                    flags: 0,
                })
                .collect(),
        })
        .collect()
}

/// The random machine of `seed`, or `None` when it has a domain the state
/// cannot carry (id 0xffff: no next id above it).
pub fn machine(seed: u64, domains: usize) -> Option<Machine> {
    let mut m = random_machine(seed, domains);
    if m.domains.iter().any(|d| d.id.0 == u16::MAX) {
        return None;
    }
    // A region large enough for the incoming boot (heap, page tables,
    // frametable, M2P) and the staging area: a RAM range of its own, 2 MiB
    // aligned, above everything else. The random region becomes free RAM.
    let top = m
        .devices
        .iter()
        .map(|d| d.end())
        .chain([m.frametable_len as u64, m.ram_end()])
        .max()
        .unwrap_or(0);
    let start = (top + 64).next_multiple_of(512);
    let region = MfnRange::new(Mfn(start), REGION_FRAMES);
    m.holes
        .push(MfnRange::new(Mfn(m.ram_end()), start - m.ram_end()));
    m.ram.push(region);
    m.region = region;
    m.frametable_len = region.end() as usize;
    Some(m)
}

impl Sim {
    /// A host running the machine of `seed` with `domains` domains: its
    /// frametable built by the pass, each domain's p2m from its runs.
    pub fn new(seed: u64, domains: usize) -> Option<Sim> {
        let machine = machine(seed, domains)?;
        let out = machine.run_pass();
        out.result.as_ref().expect("the random machine passes");
        let doms: Vec<Dom> = machine
            .domains
            .iter()
            .map(|d| {
                let p2m = new_hv::p2m_of(&d.runs, Hole::DEFAULT);
                // Every other domain has its hole at 16 MiB (its frames
                // all lie below) and maps there the device ranges it may
                // map that lie in it; the others the default hole.
                let (hole, identity) = if (seed + u64::from(d.id.0)).is_multiple_of(2)
                    && p2m.len() as u64 <= MIN_HOLE.0
                {
                    let identity = d
                        .mmio
                        .iter()
                        .copied()
                        .filter(|m| m.start.0 >= MIN_HOLE.0 && m.end() <= HOLE_END.0)
                        .collect();
                    (MIN_HOLE, identity)
                } else {
                    (DEFAULT_HOLE, Vec::new())
                };
                Dom {
                    id: d.id,
                    name: format!("d{}", d.id.0),
                    max_frames: p2m.len() as u64 * 2,
                    p2m,
                    vcpus: d
                        .vcpu_cr3
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| vcpu(i, c))
                        .collect(),
                    start_info: d
                        .runs
                        .iter()
                        .find(|r| r.kind == RunKind::Data && r.count > 0)
                        .map_or(Gpfn(0), |r| r.first_gpfn),
                    paused: (seed + u64::from(d.id.0)).is_multiple_of(3),
                    reports: GuestReports {
                        checks: seed + 1,
                        regressions: u64::from(d.id.0),
                        ..GuestReports::default()
                    },
                    mmio: d.mmio.clone(),
                    hole,
                    identity,
                }
            })
            .collect();
        let devices = pci_devices(&machine.devices);
        let layout = machine.layout().expect("a valid layout");
        let managed = old_hv::checks::managed_frames(&layout);
        let in_runs: u64 = machine
            .domains
            .iter()
            .flat_map(|d| d.runs.iter())
            .map(|r| r.count)
            .sum();
        let next = doms.iter().map(|d| d.id.0 + 1).max().unwrap_or(1);
        Some(Sim {
            free_frames: managed - in_runs,
            free_changes: 0,
            free_digests: std::cell::Cell::new(0),
            frametable: out.frametable,
            m2p: out.m2p,
            domains: doms,
            retired: vec![RetiredDomain {
                id: DomId(next),
                name: "gone".into(),
                reports: GuestReports {
                    mismatches: 0,
                    checks: seed,
                    ..GuestReports::default()
                },
            }],
            globals: HvGlobals {
                next_domid: DomId(next.saturating_add(1)),
                time: TimeBase {
                    tsc: 1,
                    tsc_khz: 1_000_000,
                    system_time_ns: seed * 1000,
                },
                cmdline: format!("loglvl=debug timer_hz={}", 100 + seed % 7),
            },
            found: devices.clone(),
            devices,
            machine,
            pages: BTreeMap::new(),
            fault: None,
            clock: std::cell::Cell::new(1_000),
            log: Vec::new(),
            paused: 0,
            resumed: 0,
            new_frametable: Vec::new(),
            new_m2p: Vec::new(),
            heap: None,
            page_table_block: None,
            new_root: None,
            hv_root: Box::new([0; 512]),
            entry_root: None,
            l4s_rewritten: Vec::new(),
            jumped: None,
            watchdog: None,
            watchdog_events: Vec::new(),
            armed_at_resume: None,
        })
    }

    /// A host whose state ABI 1.0 and 1.1 can carry, from the first seed
    /// at or after `seed` that gives one: no domU may map device memory,
    /// dom0 may map all of it (its default access; the device ranges lie
    /// below every hole, so it maps none in its hole), every hole is at
    /// 3 GiB, nothing is paused.
    pub fn for_older(seed: u64, domains: usize) -> Sim {
        (seed..)
            .find_map(|s| {
                let mut sim = Sim::new(s, domains)?;
                if sim
                    .domains
                    .iter()
                    .any(|d| d.id != DomId::DOM0 && !d.mmio.is_empty())
                {
                    return None;
                }
                let memory = handover_abi::device_memory(&sim.devices);
                for d in &mut sim.domains {
                    d.hole = DEFAULT_HOLE;
                    d.identity.clear();
                    d.paused = false;
                    if d.id == DomId::DOM0 {
                        d.mmio = memory.clone();
                    }
                }
                Some(sim)
            })
            .expect("a machine whose domUs map no device")
    }

    /// An image to update to: one upper-half mapping of [`IMAGE_SPAN`].
    /// A page for the update marker: the first the hypervisor keeps
    /// outside the region (no guest's, no allocation's).
    pub fn marker_page(&self) -> u64 {
        self.machine.hv_reserved[0].start.addr()
    }

    /// The watchdog as its last event left it.
    pub fn armed(&self) -> Option<Watchdog> {
        self.watchdog_events
            .last()
            .filter(|(what, _, _)| *what == "arm")
            .map(|&(_, w, _)| w)
    }

    pub fn image() -> ImageInfo {
        let note = ImageNote {
            reads: handover_abi::READS,
            writes: Some(handover_abi::WRITES),
            contract: Some(handover_abi::note::CONTRACT),
            entry: KERNEL_VBASE + 16,
            build_id: BuildId([9; 16]),
        };
        ImageInfo {
            version: handover_abi::CURRENT,
            note,
            contract: old_hv::image::Contract::agree(&note).expect("this tree's contract"),
            phys_start: 0x10_0000,
            span: IMAGE_SPAN,
            entry_offset: 16,
            segments: Vec::new(),
            mappings: vec![Mapping {
                vaddr: KERNEL_VBASE,
                len: IMAGE_SPAN,
                offset: 0,
                flags: SegmentFlags::R,
            }],
            file_len: IMAGE_SPAN,
        }
    }

    /// The image staged at `end` of the region, as `lu load` stages it.
    pub fn stage(&self, info: &ImageInfo, end: End) -> Staging {
        let gap = PhysRange::from(self.machine.region);
        let dummy = MfnRange::new(Mfn(0), 1);
        let estimate = handover_abi::encoded_len(&self.build_state(dummy, dummy))
            .expect("the state encodes") as u64;
        let ram_end = old_hv::ram::end(&self.machine.ram);
        let tables = staging::table_frames(ram_end, &info.mappings);
        Staging::plan_ordered(
            end,
            info.contract
                .order_at(end)
                .expect("an order the image accepts"),
            gap,
            info.span,
            estimate,
            tables,
        )
        .expect("the image fits")
    }

    pub fn build_state(&self, image: MfnRange, state: MfnRange) -> HandoverState {
        let r = self.machine.region;
        let region = LuRegion {
            base: r.start.addr(),
            size: r.count * PAGE_SIZE,
            image,
            state,
        };
        let inputs = self.domains.iter().map(|d| DomainInput {
            id: d.id,
            privileged: d.id == DomId::DOM0,
            name: &d.name,
            max_frames: d.max_frames,
            p2m: &d.p2m,
            mmio: &d.mmio,
            hole: Hole::new(d.hole).expect("the sim's holes keep the rules"),
            identity: &d.identity,
            vcpus: d.vcpus.clone(),
            start_info: d.start_info,
            paused: d.paused,
            reports: d.reports,
            hvm: None,
        });
        handover::handover_state(
            &self.machine.ram,
            region,
            self.globals.clone(),
            inputs,
            self.retired.clone(),
            self.devices.clone(),
            &self.frametable,
        )
    }

    fn in_ram(&self, paddr: u64, len: u64) -> Result<(), SimError> {
        let end = paddr.checked_add(len).ok_or(SimError("overflow".into()))?;
        let ok = self.machine.ram.iter().any(|r| {
            let r = PhysRange::from(*r);
            r.start <= paddr && end <= r.end()
        });
        if ok {
            Ok(())
        } else {
            Err(SimError(format!(
                "{paddr:#x}+{len:#x} is not in RAM of the simulated machine"
            )))
        }
    }

    /// Reads `buf.len()` bytes at `paddr`, page tables included.
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), SimError> {
        self.in_ram(paddr, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = paddr + i as u64;
            let (page, off) = (a / PAGE_SIZE, (a % PAGE_SIZE) as usize);
            *b = match self.machine.memory.table(Mfn(page)) {
                Some(t) => t[off / 8].to_le_bytes()[off % 8],
                None => self.pages.get(&page).map_or(0, |p| p[off]),
            };
        }
        Ok(())
    }

    /// Writes `bytes` at `paddr`, page tables included.
    pub fn write_phys(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), SimError> {
        self.in_ram(paddr, bytes.len() as u64)?;
        for (i, &b) in bytes.iter().enumerate() {
            let a = paddr + i as u64;
            let (page, off) = (a / PAGE_SIZE, (a % PAGE_SIZE) as usize);
            if self.machine.memory.table(Mfn(page)).is_some() {
                let t = self.machine.memory.table_mut(Mfn(page));
                let mut w = t[off / 8].to_le_bytes();
                w[off % 8] = b;
                t[off / 8] = u64::from_le_bytes(w);
            } else {
                self.pages
                    .entry(page)
                    .or_insert_with(|| Box::new([0; PAGE_SIZE as usize]))[off] = b;
            }
        }
        Ok(())
    }

    /// Page tables in the simulated memory, new ones from `frames`.
    pub fn tables_in(&mut self, frames: PhysRange) -> SimTables<'_> {
        SimTables {
            out_of_frames: "no frame left for page tables",
            next: frames.start,
            end: frames.end(),
            sim: self,
        }
    }

    /// Where `va` leads under `root` in the simulated memory.
    pub fn translate(&mut self, root: u64, va: u64) -> Option<u64> {
        let mut tables = self.tables_in(PhysRange::new(0, 0));
        table_plan::translate(root, va, &mut tables)
            .unwrap()
            .map(|(pa, _)| pa)
    }

    fn tick(&self) -> u64 {
        let t = self.clock.get() + 1_000;
        self.clock.set(t);
        t
    }

    /// Everything of the machine outside the live-update region that an
    /// update must leave as it found it: the old side's tables, every page
    /// table's contents, every other page written.
    pub fn outside_region(&self) -> Outside {
        let region = self.machine.region;
        let tables = self
            .machine
            .domains
            .iter()
            .flat_map(|d| d.tables.iter())
            .map(|&(mfn, _)| {
                (
                    mfn.0,
                    self.machine
                        .memory
                        .table(mfn)
                        .map_or_else(Vec::new, |t| t.to_vec()),
                )
            })
            .collect();
        let pages = self
            .pages
            .iter()
            .filter(|(p, _)| !region.contains(Mfn(**p)))
            .map(|(p, bytes)| p ^ bytes.iter().map(|&b| u64::from(b)).sum::<u64>())
            .collect();
        (self.frametable.clone(), self.m2p.clone(), tables, pages)
    }
}

/// Stands for the running hypervisor's root, which is not in the
/// simulated RAM ([`Sim::hv_root`]).
pub const HV_ROOT: u64 = !(PAGE_SIZE - 1);

/// Table frames in the simulated memory, handed out from a range.
pub struct SimTables<'a> {
    sim: &'a mut Sim,
    next: u64,
    end: u64,
    /// The refusal when the range is used up.
    pub out_of_frames: &'static str,
}

impl TableMemory for SimTables<'_> {
    type Error = SimError;

    fn new_table(&mut self) -> Result<u64, SimError> {
        if self.next >= self.end {
            return Err(SimError(self.out_of_frames.into()));
        }
        let frame = self.next;
        self.sim.write_phys(frame, &[0; PAGE_SIZE as usize])?;
        self.next += PAGE_SIZE;
        Ok(frame)
    }

    fn read_entry(&mut self, table: u64, index: usize) -> Result<u64, SimError> {
        if table == HV_ROOT {
            return Ok(self.sim.hv_root[index]);
        }
        let mut e = [0u8; 8];
        self.sim.read_phys(table + 8 * index as u64, &mut e)?;
        Ok(u64::from_le_bytes(e))
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) -> Result<(), SimError> {
        if table == HV_ROOT {
            self.sim.hv_root[index] = value;
            return Ok(());
        }
        self.sim
            .write_phys(table + 8 * index as u64, &value.to_le_bytes())
    }
}

impl From<BuildError<SimError>> for SimError {
    fn from(e: BuildError<SimError>) -> SimError {
        match e {
            BuildError::Plan(e) => SimError(e.to_string()),
            BuildError::Memory(e) => e,
        }
    }
}

impl old_hv::exec::Platform for Sim {
    type Error = SimError;
    type Prepared = EntryPlan;
    type Jumped = u64;
    type Tables = SimMemory;

    fn now(&self) -> u64 {
        self.tick()
    }

    fn pause(&mut self) {
        self.paused += 1;
    }

    fn resume(&mut self) {
        self.resumed += 1;
    }

    fn fault(&mut self) -> Option<Fault> {
        self.fault
    }

    fn state(&self, image: MfnRange, state: MfnRange) -> HandoverState {
        self.build_state(image, state)
    }

    fn devices(&mut self) -> Result<Vec<PciDevice>, SimError> {
        Ok(self.found.clone())
    }

    fn frametable(&self) -> (&[FrameInfo], &[u64]) {
        (&self.frametable, &self.m2p)
    }

    fn tables(&self) -> &SimMemory {
        &self.machine.memory
    }

    fn machine(&self) -> MachineView<'_> {
        MachineView {
            ram: &self.machine.ram,
            region: PhysRange::from(self.machine.region),
            reserved: &self.machine.hv_reserved,
            free_frames: self.free_frames,
            image_frames_out: 0,
            tsc_khz: 1_000_000,
            sequence: 7,
            build_id: BuildId([7; 16]),
            watchdog: self.watchdog,
            caller: (DomId(0), 0),
        }
    }

    fn free_digest(&self) -> u64 {
        self.free_digests.set(self.free_digests.get() + 1);
        0x5eed
    }

    fn free_generation(&self) -> u64 {
        self.free_changes
    }

    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), SimError> {
        self.read_phys(paddr, buf)
    }

    fn write(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), SimError> {
        self.write_phys(paddr, bytes)
    }

    fn entry_tables(&mut self, plan: &EntryPlan) -> Result<EntryPlan, SimError> {
        // What `hv/src/arch/kexec.rs` does, through the same plan and
        // walker, in the simulated memory.
        let mut tables = self.tables_in(plan.frames);
        tables.out_of_frames = "no frame left in the staging area for the entry page tables";
        let root = tables.new_table()?;
        build(root, &plan.maps_for(true), &mut tables)?;
        let trampoline = [plan.trampoline_map()];
        build(root, &trampoline, &mut tables)?;
        tables.write_entry(HV_ROOT, Level::L4.index(plan.trampoline), 0)?;
        build(HV_ROOT, &trampoline, &mut tables)?;
        self.entry_root = Some(root);
        Ok(plan.clone())
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.log.push(line.to_string());
    }

    fn arm_watchdog(&mut self, watchdog: Watchdog) {
        assert_eq!(self.armed(), None, "armed twice");
        self.watchdog_events.push(("arm", watchdog, self.tick()));
    }

    fn jump(&mut self, prepared: EntryPlan, detail: &JumpDetail) -> u64 {
        let args = prepared.args;
        self.jumped = Some((prepared, *detail));
        args
    }
}

impl BootMemory for Sim {
    type Error = SimError;

    fn heap(&mut self, range: PhysRange) -> Result<(), SimError> {
        self.in_ram(range.start, range.size)?;
        self.heap = Some(range);
        Ok(())
    }

    fn page_tables(&mut self, block: PhysRange, ram: &[MfnRange]) -> Result<(), SimError> {
        assert_eq!(ram, self.machine.ram.as_slice());
        // The new image's own tables (`hv/src/arch/paging.rs`), its image
        // being the segments the old side staged, in the block sized for
        // it: a count too low fails here as it would on the hardware.
        let (plan, _) = self.jumped.as_ref().expect("entered after a jump");
        let image: Vec<Map> = plan
            .segments
            .iter()
            .filter(|s| s.vaddr >= IMAGE_VBASE)
            .map(|s| Map::small(s.vaddr, s.phys, s.len, 0))
            .collect();
        let plan = new_hv::boot::hv_plan(ram, &image);
        let mut tables = self.tables_in(block);
        let root = tables.new_table()?;
        build(root, &plan, &mut tables)?;
        self.page_table_block = Some(block);
        self.new_root = Some(root);
        Ok(())
    }

    fn frametable(&mut self, ft: PhysRange, m2p: PhysRange, frames: u64) -> Result<(), SimError> {
        self.in_ram(ft.start, ft.size)?;
        self.in_ram(m2p.start, m2p.size)?;
        assert!(ft.size >= frames * 16 && m2p.size >= frames * 8);
        // What a previous image left in the region: entries that claim
        // frames for a domain. Only the named frames' are initialised
        // inside the blackout; the rest after the resume.
        self.new_frametable = vec![LEFT_OVER; frames as usize];
        self.new_m2p = vec![LEFT_OVER_M2P; frames as usize];
        Ok(())
    }
}

/// The clock of the steps that run while the simulated platform is
/// borrowed: a counter of its own.
fn sim_clock() -> u64 {
    static CLOCK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    CLOCK.fetch_add(1_000, core::sync::atomic::Ordering::Relaxed)
}

impl new_hv::enter::Platform for Sim {
    type Tables = SimMemory;
    type Resumed = Entered;

    fn now(&self) -> u64 {
        self.tick()
    }

    fn clock(&self) -> fn() -> u64 {
        sim_clock
    }

    fn read_args(&mut self, paddr: u64) -> Result<[u8; ENTRY_ARGS_SIZE], SimError> {
        let mut raw = [0u8; ENTRY_ARGS_SIZE];
        self.read_phys(paddr, &mut raw)?;
        Ok(raw)
    }

    fn locate(&mut self, _args: &EntryArgs) {}

    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), SimError> {
        self.read_phys(paddr, buf)
    }

    fn devices(&mut self, _known: &[MfnRange]) -> Result<Vec<PciDevice>, SimError> {
        Ok(self.found.clone())
    }

    fn reserved(&self, _region: PhysRange) -> Vec<MfnRange> {
        self.machine.hv_reserved.clone()
    }

    fn adopt_view(&mut self) -> (&SimMemory, &mut [FrameInfo], &mut [u64]) {
        (
            &self.machine.memory,
            &mut self.new_frametable,
            &mut self.new_m2p,
        )
    }

    fn install_hv_slots(&mut self, l4: Mfn) -> Result<(), SimError> {
        let t = self.machine.memory.table_mut(l4);
        for e in &mut t[256..] {
            *e = 0;
        }
        self.l4s_rewritten.push(l4);
        Ok(())
    }

    /// Resumes, then initialises every entry the update left, as the
    /// hypervisor does once the guests run ([`Entered::adopted`]'s
    /// `unsettled`, on a copy so the test sees what was left).
    fn disarm_watchdog(&mut self, watchdog: Watchdog) {
        assert_eq!(self.armed(), Some(watchdog), "disarmed what was not armed");
        self.watchdog_events.push(("disarm", watchdog, self.tick()));
    }

    fn write(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), SimError> {
        self.write_phys(paddr, bytes)
    }

    fn resume(&mut self, mut entered: Entered) -> Entered {
        self.armed_at_resume = self.armed();
        entered.times.resumed = self.tick();
        let mut unsettled = entered.adopted.unsettled.clone();
        unsettled.settle_all(&mut self.new_frametable, &mut self.new_m2p, |_| {});
        entered
    }
}
