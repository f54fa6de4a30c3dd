//! The incoming side of an update, in order, written once.
//!
//! [`enter`] is `docs/design.md` section 1 steps 3 to 6, generic over a
//! [`Platform`] that offers only what the hypervisor alone can do: the
//! clock, physical memory, turning region memory into its heap, page tables
//! and frametable, the guests' page tables, rewriting the hypervisor slots
//! of a guest L4, and resuming the guests. The reference hypervisor
//! implements it on the hardware; the host tests on a simulated machine,
//! running this very function after `old_hv::exec::exec`.
//!
//! The order:
//!
//! 1. the **argument page** ([`read_args`]) and the staged range the boot
//!    allocator must leave alone ([`staged_range`]);
//! 2. the **restricted boot**, first part: the heap ([`Boot::heap`]), so
//!    the state can be decoded;
//! 3. **verify** the state ([`verify_state`]);
//! 4. the **restricted boot**, second part: page tables, frametable, M2P
//!    ([`Boot::tables`]); the staged range but the image is free again
//!    ([`consumed_range`]);
//! 5. the machine's **devices** enumerated ([`Platform::devices`]) and
//!    taken into the state ([`devices::adopt`]: compared with what a 1.2
//!    state recorded; an older state gets them and its privileged domains
//!    their default access, which the pass then checks mappings against);
//! 6. the guests' **page tables unchanged** ([`tables::check`]);
//! 7. the **pass** ([`adopt`]);
//! 8. every **domain restored** ([`domain::restore`]) and its L4s given
//!    this hypervisor's slots;
//! 9. **resume** ([`Platform::resume`]).
//!
//! Release of the rest of RAM comes after the guests run, from
//! [`Entered::adopted`]'s free ranges. The old side dry-runs steps 2 and 4
//! with the same [`Boot`] before the point of no return
//! ([`boot::dry_run`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use boot_allocator::{HandOff, PhysRange};
use frame_ownership::{FrameInfo, MachineLayout, PageTableReader};
use handover_abi::entry::{EntryArgs, Watchdog, ENTRY_ARGS_SIZE};
use handover_abi::marker::MARKER_SIZE;
use handover_abi::marks::{Marks, MARKS_MAX_BYTES, MARKS_OFFSET};
use handover_abi::version::VersionRange;
use handover_abi::{HandoverState, PciDevice};
use hvlu_types::{Mfn, MfnRange};

use crate::boot::{self, Boot, BootMemory};
use crate::devices;
use crate::domain::{self, Restored};
use crate::staging::{consumed_range, staged_range};
use crate::{adopt_marked, ram, read_args, tables, verify_state, Adopted, InTimes, IncomingError};

/// What the hypervisor offers the incoming side of an update: the boot's
/// memory steps ([`BootMemory`], as a cold boot has them) and the rest.
pub trait Platform: BootMemory {
    /// The guests' page tables.
    type Tables: PageTableReader;
    /// What [`Platform::resume`] returns: nothing on the hardware (the
    /// guests run); the restored machine on the host.
    type Resumed;

    /// The clock (TSC).
    fn now(&self) -> u64;
    /// The same clock as a function, for the steps that run while the
    /// platform is borrowed (the pass's marks).
    fn clock(&self) -> fn() -> u64;
    /// Reads the argument page at `paddr` (the entry tables map it).
    fn read_args(&mut self, paddr: u64) -> Result<[u8; ENTRY_ARGS_SIZE], Self::Error>;
    /// This image is staged where `args` says, and RAM ends at
    /// `args.ram_end`: the platform's view of physical memory follows.
    fn locate(&mut self, args: &EntryArgs);
    /// Reads physical memory.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Enumerates the machine's PCI devices and their memory BARs, as this
    /// image finds them (its own page tables are loaded), writing nothing
    /// to them: guests may be driving them. `known` is the device memory
    /// the state records, one range per BAR the previous hypervisor knew
    /// and every domain's MMIO ranges ([`devices::known`]): it gives the
    /// sizes of BARs that could not be read without writing them.
    fn devices(&mut self, known: &[MfnRange]) -> Result<Vec<PciDevice>, Self::Error>;
    /// Frames the hypervisor keeps outside `region` (firmware memory, an
    /// image outside the region).
    fn reserved(&self, region: PhysRange) -> Vec<MfnRange>;
    /// The guests' page tables, the frametable and the M2P, together.
    fn adopt_view(&mut self) -> (&Self::Tables, &mut [FrameInfo], &mut [u64]);
    /// Rewrites the hypervisor's slots of the guest L4 `l4`.
    fn install_hv_slots(&mut self, l4: Mfn) -> Result<(), Self::Error>;
    /// Disarms `watchdog`, which the old side armed right before the jump
    /// (argument page 4): the state is verified and adopted, the guests
    /// are about to run.
    fn disarm_watchdog(&mut self, watchdog: Watchdog);
    /// Writes physical memory (the update marker's page, once confirmed;
    /// nothing else).
    fn write(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Rebuilds the domains around their preserved frames and lets them
    /// run.
    fn resume(&mut self, entered: Entered) -> Self::Resumed;
}

/// What [`enter`] made of the update, for [`Platform::resume`] and the
/// release of RAM after it.
#[derive(Debug)]
pub struct Entered {
    /// The argument page.
    pub args: EntryArgs,
    /// The verified state, with the devices taken in
    /// ([`devices::adopt`]).
    pub state: HandoverState,
    /// The PCI devices this image found: every device the state lists is
    /// among them, unchanged; a device found but not recorded is here only.
    pub devices: Vec<PciDevice>,
    /// Usable RAM, from the state.
    pub ram: Vec<MfnRange>,
    /// The frames the hypervisor keeps outside the region.
    pub reserved: Vec<MfnRange>,
    /// The boot allocator's report: what it handed out and the region's
    /// free gaps (the staging area consumed is free again).
    pub handoff: HandOff,
    /// The frametable and M2P entries: one past the highest RAM frame.
    pub frames: u64,
    /// What the pass made of the state: its report, digests and the free
    /// RAM to release once the guests run.
    pub adopted: Adopted,
    /// The domains, as the hypervisor rebuilds them.
    pub domains: Vec<Restored>,
    /// The incoming side's timestamps (`resumed` is the platform's).
    pub times: InTimes,
    /// A note on the boot that is no refusal (the consumed staging area
    /// that stays reserved), for the log.
    pub note: Option<String>,
}

/// A platform failure during `step`.
fn platform<E: fmt::Display>(step: &'static str) -> impl FnOnce(E) -> IncomingError {
    move |e| IncomingError::Platform {
        step,
        error: e.to_string(),
    }
}

/// Enters this image through its live-update entry with the argument page
/// at `args_phys`, reading the state versions `reads`. On any refusal
/// nothing has run: the caller stops with the error's diagnostic.
pub fn enter<P: Platform>(
    p: &mut P,
    args_phys: u64,
    reads: VersionRange,
) -> Result<P::Resumed, IncomingError> {
    let mut t = InTimes {
        entry: p.now(),
        ..InTimes::default()
    };
    let raw = p
        .read_args(args_phys)
        .map_err(platform("reading the argument page"))?;
    let args = read_args(&raw)?;
    p.locate(&args);
    // The old side's sub-steps, if it wrote them (a measurement: a missing
    // or damaged trailer is no trailer).
    let mut trailer = [0u8; MARKS_MAX_BYTES];
    if p.read(args_phys + MARKS_OFFSET as u64, &mut trailer)
        .is_ok()
    {
        t.out = Marks::from_bytes(&trailer).unwrap_or_default();
    }

    // The restricted boot: the region minus what the old side staged.
    let staged = staged_range(&args)?;
    let region = PhysRange::new(args.region_base, args.region_size);
    let mut boot = Boot::new(region, staged)?;
    // Sized from the end of RAM before the RAM map is known; checked
    // against the map below.
    let heap_pages = boot::heap_pages(args.ram_end);
    boot.heap_on(p, heap_pages)?;
    t.heap = p.now();
    t.marks.mark("heap", t.heap);

    let mut bytes = alloc::vec![0u8; args.state_len as usize];
    p.read(args.state_phys, &mut bytes)
        .map_err(platform("reading the state"))?;
    t.marks.mark("read", p.now());
    let decoded = verify_state(&args, &bytes, reads)?;
    let (read, mut state) = (decoded.header.version, decoded.state);
    drop(bytes);
    if let Some(w) = args.watchdog {
        // Before this image writes the page, and before anything else.
        crate::verify::marker_placement(&state, w.marker_phys)?;
    }
    t.verified = p.now();
    t.marks.mark("decode", t.verified);

    // Sized from the state's RAM, as the old side dry-ran it.
    let ram = ram::of_state(&state);
    let needs = boot::needs(&ram, args.image_len);
    if needs.heap_pages != heap_pages {
        return Err(IncomingError::RamEndMismatch {
            ram_end: args.ram_end,
            frames: needs.frames,
        });
    }
    boot.tables_on_with(p, &needs, &ram, |p| t.marks.mark("pagetbls", p.now()))?;
    t.marks.mark("frametbl", p.now());
    // The state is decoded and the entry tables are no longer in use: all
    // of the staged range but this image is free region again.
    let mut handoff = boot.finish();
    let consumed = consumed_range(&args, staged);
    let note = handoff
        .release_hole(consumed)
        .err()
        .map(|e| alloc::format!("lu: the consumed staging area {consumed} stays reserved: {e}"));
    t.booted = p.now();
    t.marks.mark("handoff", t.booted);

    // The devices, before the pass checks the guests' MMIO mappings
    // against each domain's ranges.
    let found = p
        .devices(&devices::known(&state))
        .map_err(platform("enumerating the PCI devices"))?;
    devices::adopt(&mut state, read, &found)?;
    t.marks.mark("devices", p.now());

    let reserved = p.reserved(region);
    let layout = MachineLayout::new(&ram, region.covering_frames(), &reserved)
        .map_err(IncomingError::Pass)?;
    let clock = p.clock();
    let (reader, frametable, m2p) = p.adopt_view();
    // The guests' tables are where they were: exactly as the old side
    // paused them, or nothing runs. A version 1 argument page (the 1.0
    // release's) carries no digest of them: the pass alone checks them.
    let mut note = note;
    match args.tables_digest {
        Some(expected) => {
            tables::check(&state, reader, expected)?;
        }
        None => {
            let line = "lu: the old image's argument page (version 1) carries no digest of the guests' page tables: the pass alone checks them";
            note = Some(note.map_or_else(|| line.into(), |n| alloc::format!("{n}\n{line}")));
        }
    }
    t.marks.mark("tblcheck", clock());
    let adopted = adopt_marked(
        &layout,
        &state,
        reader,
        frametable,
        m2p,
        args.digest,
        (&mut t.marks, clock),
    )?;
    t.pass = p.now();

    let mut domains = Vec::with_capacity(state.domains.len());
    for d in &state.domains {
        domains.push(domain::restore(d)?);
        for l4 in domain::l4_frames(d) {
            p.install_hv_slots(l4).map_err(|e| IncomingError::L4 {
                domain: d.id,
                error: e.to_string(),
            })?;
        }
    }
    t.marks.mark("restore", p.now());
    // Everything this image could refuse has been checked: from here the
    // guests run on it. The update is confirmed: no watchdog, no marker.
    if let Some(w) = args.watchdog {
        p.disarm_watchdog(w);
        p.write(w.marker_phys, &[0; MARKER_SIZE])
            .map_err(platform("clearing the update marker"))?;
    }
    Ok(p.resume(Entered {
        args,
        ram,
        reserved,
        handoff,
        frames: needs.frames,
        adopted,
        domains,
        times: t,
        note,
        state,
        devices: found,
    }))
}
