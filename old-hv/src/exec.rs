//! `lu exec`: the outgoing side of an update, in order, written once.
//!
//! [`exec`] is `docs/design.md` section 1 step 2, generic over a
//! [`Platform`] that offers only what the hypervisor alone can do: the
//! clock, pausing and resuming the guests, its view of itself (the state of
//! its domains, its frametable, its memory map), physical memory, the
//! guests' page tables, the entry tables and the jump. The reference
//! hypervisor implements it on the hardware; the host tests implement it on
//! a simulated machine and run this very function.
//!
//! The order:
//!
//! 0. before anything is paused ([`ready`]): the machine's **devices**
//!    rescanned and compared with those the state records
//!    ([`Platform::devices`], `new_hv::devices::compare`); a **dry run** of
//!    steps 2 and 3 on the state as it is now, so that whatever they would
//!    refuse is refused before the pause (and the code the blackout runs
//!    has run once); the **entry tables** built in the staging area's table
//!    frames and the free-frame digest taken (both walk structures as large
//!    as RAM, and nothing a pause changes is in them: never inside the
//!    blackout). The platform may let the guests run between this and the
//!    rest ([`go`]): the free-frame digest is taken again if the free
//!    frames changed;
//! 1. **pause** every vCPU;
//! 2. **serialise** the handover state into the staging area
//!    ([`handover::serialise`], the version negotiated at load);
//! 3. **pre-flight**: read it back, decode and compare it, take the
//!    owned-frame digest ([`handover::preflight`]); the other checks before
//!    the point of no return ([`checks::before_jump`]: vCPUs, every frame in
//!    use in some run, the new image's boot dry-run on the region minus
//!    what the argument page will describe); the digest of the guests'
//!    page tables ([`new_hv::tables::digest`]);
//! 4. the **argument page** written, and the **jump**.
//!
//! Any failure before the jump resumes every vCPU paused and returns an
//! [`ExecError`]: nothing is lost. Fault injection is a [`Fault`] the
//! platform hands in once; it acts at the named point of this sequence
//! ([`Step`] for the failures before the jump, the other variants for the
//! corruptions after the pre-flight that the new image must catch).

use alloc::vec::Vec;
use core::fmt;

use boot_allocator::PhysRange;
use frame_ownership::{FrameInfo, MachineLayout, PageTableReader};
use handover_abi::entry::{EntryArgs, Watchdog, ENTRY_ARGS_V4};
use handover_abi::marker::Marker;
use handover_abi::marks::{Marks, MARKS_OFFSET};
use handover_abi::{AbiVersion, BuildId, HandoverState, PciDevice, Producer, RunKind};
use hvlu_types::table_plan::Map;
use hvlu_types::PAGE_SIZE;
use hvlu_types::{DomId, Mfn, MfnRange};
use new_hv::boot::BootPlan;
use new_hv::devices::DeviceChange;
use new_hv::IncomingError;

use crate::checks::{self, CheckError};
use crate::handover::{self, PreflightError, SerialiseError};
use crate::image::ImageInfo;
use crate::staging::Staging;

/// A step of [`exec`] before the point of no return that a [`Fault`] can
/// make fail for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `fail-too-large`: the state area is taken as 64 bytes, so the
    /// serialiser refuses a state that does not fit.
    TooLarge,
    /// `fail-encode`: the state is encoded as a version this build does
    /// not write, so the encoder refuses.
    Encode,
    /// `fail-preflight`: one byte of the state read back is changed before
    /// the pre-flight decodes it.
    Preflight,
    /// `fail-boot`: the new image's boot is dry-run for a machine with
    /// 4 TiB more RAM, so it cannot fit the region.
    Boot,
    /// `fail-tables`: the entry tables get no frame to be built in.
    Tables,
}

/// A fault to inject into an update (the hypervisor's `lu_inject=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `fail-<step>`: [`Step`] fails; the update is cancelled.
    Fail(Step),
    /// A vCPU's instruction pointer in the state (not the vCPU itself) is a
    /// hypervisor address: the checks before the jump cancel.
    Vcpu,
    /// One bit of the staged state's body, after the pre-flight: the new
    /// image's CRC check refuses.
    State,
    /// The owned-frame digest in the argument page: the new image's digest
    /// check after the pass refuses.
    Digest,
    /// One bit of a domU's highest data page: nothing in the hypervisor
    /// checks guest data, the domU's own checker must report it.
    Guest,
    /// One bit of a guest page-table frame the state lists, after its
    /// digest was taken: the new image refuses before the pass.
    Table,
    /// One bit of the argument page: the new image refuses it (its CRC).
    Args,
}

impl Fault {
    /// Every fault with its `lu_inject=` name.
    pub const NAMES: [(&'static str, Fault); 11] = [
        ("state", Fault::State),
        ("digest", Fault::Digest),
        ("guest", Fault::Guest),
        ("vcpu", Fault::Vcpu),
        ("args", Fault::Args),
        ("table", Fault::Table),
        ("fail-too-large", Fault::Fail(Step::TooLarge)),
        ("fail-encode", Fault::Fail(Step::Encode)),
        ("fail-preflight", Fault::Fail(Step::Preflight)),
        ("fail-boot", Fault::Fail(Step::Boot)),
        ("fail-tables", Fault::Fail(Step::Tables)),
    ];

    /// The fault named `name` ([`Fault::NAMES`]).
    pub fn from_name(name: &str) -> Option<Fault> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, f)| f)
    }

    /// `true` for a fault that cancels the update before the jump.
    pub fn cancels(self) -> bool {
        matches!(self, Fault::Fail(_) | Fault::Vcpu)
    }
}

/// What the platform tells [`exec`] about the machine it runs on.
#[derive(Clone, Copy, Debug)]
pub struct MachineView<'a> {
    /// Usable RAM, sorted frame ranges.
    pub ram: &'a [MfnRange],
    /// The live-update region.
    pub region: PhysRange,
    /// Frames the hypervisor keeps outside the region (firmware, the
    /// running image when it is outside the region).
    pub reserved: &'a [MfnRange],
    /// Free frames of the page allocator.
    pub free_frames: u64,
    /// This image's frames outside the region (the new image frees them).
    pub image_frames_out: u64,
    /// The TSC's frequency.
    pub tsc_khz: u64,
    /// Updates since cold boot, before this one.
    pub sequence: u64,
    /// This image's build id.
    pub build_id: BuildId,
    /// The vCPU whose call runs the update (its domain and index): the
    /// update marker names it, for an image that resumes the state after a
    /// reset to answer.
    pub caller: (DomId, u16),
    /// The watchdog to arm right before the jump, if the machine has one
    /// (armed only for an image that reads argument page 4, which names it
    /// to the image: `handover_abi::entry`, "The watchdog").
    pub watchdog: Option<Watchdog>,
}

/// One piece of the new image to map at its link address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Link address.
    pub vaddr: u64,
    /// Bytes (whole pages).
    pub len: u64,
    /// Where the staged copy is.
    pub phys: u64,
}

/// What the entry tables must map (the entry contract, `docs/abi.md` §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPlan {
    /// The new image's segments.
    pub segments: Vec<Segment>,
    /// The direct map covers `[0, ram_end)`.
    pub ram_end: u64,
    /// The trampoline page.
    pub trampoline: u64,
    /// The argument page.
    pub args: u64,
    /// The new image's live-update entry (a link address inside
    /// `segments`).
    pub entry: u64,
    /// The frames the tables may be built in.
    pub frames: PhysRange,
}

impl EntryPlan {
    /// The mappings of the new root but the trampoline
    /// ([`crate::staging::entry_maps`]).
    pub fn maps(&self) -> Vec<Map> {
        crate::staging::entry_maps(self.segments.iter().copied(), self.ram_end)
    }

    /// [`EntryPlan::maps`], the direct map in 1 GiB pages where whole
    /// gigabytes allow if `gib_pages` (`staging::entry_maps_for`).
    pub fn maps_for(&self, gib_pages: bool) -> Vec<Map> {
        crate::staging::entry_maps_for(self.segments.iter().copied(), self.ram_end, gib_pages)
    }

    /// The trampoline's identity mapping, in both roots.
    pub fn trampoline_map(&self) -> Map {
        crate::staging::trampoline_map(self.trampoline)
    }
}

/// What [`exec`] knows just before it jumps (for the platform's last
/// words; inside the blackout it should print little).
#[derive(Clone, Copy, Debug)]
pub struct JumpDetail {
    /// Bytes of the state.
    pub state_len: u64,
    /// The owned-frame digest.
    pub digest: u64,
    /// Free frames of the page allocator.
    pub free_frames: u64,
    /// Where the new image's boot will land.
    pub boot: BootPlan,
    /// The watchdog the argument page names, armed right before the jump.
    pub watchdog: Option<Watchdog>,
}

/// What the hypervisor offers the outgoing side of an update.
pub trait Platform {
    /// Why physical memory, or the entry tables, could not be written.
    type Error: fmt::Display;
    /// Entry tables built and ready to jump through.
    type Prepared;
    /// What [`Platform::jump`] returns: nothing on the hardware (it does
    /// not return); the simulated jump on the host.
    type Jumped;
    /// The guests' page tables.
    type Tables: PageTableReader;

    /// The clock (TSC).
    fn now(&self) -> u64;
    /// Stops every vCPU at a safe point; the caller's context will see
    /// result 0 when it runs again.
    fn pause(&mut self);
    /// Lets every vCPU run again after a cancelled update.
    fn resume(&mut self);
    /// The fault to inject into this update, if any (asked once).
    fn fault(&mut self) -> Option<Fault>;
    /// The handover state of the running system, with `image` and `state`
    /// as the staged image and state area.
    fn state(&self, image: MfnRange, state: MfnRange) -> HandoverState;
    /// Scans the machine's PCI devices and their memory BARs again, now
    /// (the state's `devices` are those the hypervisor recorded at boot).
    fn devices(&mut self) -> Result<Vec<PciDevice>, Self::Error>;
    /// The frametable and the M2P.
    fn frametable(&self) -> (&[FrameInfo], &[u64]);
    /// The guests' page tables.
    fn tables(&self) -> &Self::Tables;
    /// The machine.
    fn machine(&self) -> MachineView<'_>;
    /// The free-frame digest the new image must reproduce
    /// (`new_hv::free::digest_of` over the page allocator's free frames and
    /// this image's frames outside the region); asked before the pause,
    /// and again if [`Platform::free_generation`] changed since.
    fn free_digest(&self) -> u64;
    /// A number that changes whenever the free frames may have changed
    /// (an allocation, a free): what [`Platform::free_digest`] depends on.
    fn free_generation(&self) -> u64;
    /// Reads physical memory.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Writes physical memory.
    fn write(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Builds the entry tables of `plan` in `plan.frames`.
    fn entry_tables(&mut self, plan: &EntryPlan) -> Result<Self::Prepared, Self::Error>;
    /// A line for the log.
    fn log(&mut self, line: fmt::Arguments<'_>);
    /// Arms `watchdog`, right before the jump: from here the incoming image
    /// has its deadline to disarm it, or the machine resets.
    fn arm_watchdog(&mut self, watchdog: Watchdog);
    /// The point of no return.
    fn jump(&mut self, prepared: Self::Prepared, detail: &JumpDetail) -> Self::Jumped;
}

/// Why an update was cancelled before the point of no return. Every
/// domain runs on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecError<E: fmt::Display> {
    /// The state of the running system cannot be handed over as the
    /// negotiated version (or does not fit): found before anything was
    /// paused.
    #[error("refused before pausing anything: {0}")]
    BeforePause(SerialiseError),
    /// A PCI device the hypervisor recorded is gone or changed: the
    /// guests' device mappings would name what is no longer there. Found
    /// before anything was paused.
    #[error("refused before pausing anything: the machine's devices changed: {0}")]
    DeviceChanged(DeviceChange),
    /// The state could not be encoded into the staging area.
    #[error("{0}")]
    Serialise(SerialiseError),
    /// Physical memory of the staging area could not be reached.
    #[error("{step}: {error}")]
    Phys {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        error: E,
    },
    /// The state read back is not the state written.
    #[error("{0}")]
    Preflight(PreflightError),
    /// The argument page would describe a staged range the new image
    /// refuses.
    #[error("{0}")]
    Staged(IncomingError),
    /// A check before the point of no return failed.
    #[error("{0}")]
    Check(CheckError),
    /// The entry page tables could not be built.
    #[error("entry tables: {0}")]
    EntryTables(E),
}

/// Timestamps of the outgoing side, carried in the argument page; the
/// sub-steps' in its trailer (`handover_abi::marks`).
#[derive(Clone, Copy, Debug, Default)]
struct Times {
    pause: u64,
    paused: u64,
    serialised: u64,
    preflight: u64,
    jump: u64,
    marks: Marks,
}

/// Runs the update of the image `info`, staged at `staging`: [`ready`],
/// then [`go`] (pause, serialise, pre-flight, checks, argument page,
/// jump). Returns what the jump returns, or — before the point of no
/// return — the reason it was cancelled, with every vCPU resumed.
pub fn exec<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    staging: &Staging,
) -> Result<P::Jumped, ExecError<P::Error>> {
    let ready = ready(p, info, staging)?;
    go(p, info, staging, ready)
}

/// What [`ready`] leaves for [`go`]: the entry tables, the free-frame
/// digest with the generation of the free frames it was taken at, the
/// fault to inject and the steps' marks.
#[derive(Debug)]
pub struct Ready<T> {
    tables: T,
    fault: Option<Fault>,
    free: (u64, u64),
    marks: Marks,
}

/// Everything of an update that can be done before the pause, nothing
/// paused: the devices rescanned and compared, a **dry run** of the steps
/// the blackout will take (the state serialised into the staging area,
/// read back, decoded and compared, the checks before the jump, the
/// tables' digest — so that whatever they would refuse is refused now,
/// and the code the blackout runs has run once), the entry tables and the
/// free-frame digest.
///
/// The guests may run between [`ready`] and [`go`] (the hypervisor gives
/// each a last turn, so that none has been waiting when the blackout
/// starts): nothing in [`Ready`] depends on them but the free-frame
/// digest, which [`go`] takes again if the free frames changed
/// ([`Platform::free_generation`]), and [`go`] serialises and checks the
/// state as it is at the pause.
pub fn ready<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    staging: &Staging,
) -> Result<Ready<P::Prepared>, ExecError<P::Error>> {
    let fault = p.fault();
    // The steps before the pause are timed too: the guests do not run
    // while they do, so they see them in their pause.
    let mut marks = Marks::new();
    marks.mark("start", p.now());
    before_pause(p, info, staging, &mut marks)?;
    // Neither depends on anything a pause can change, and both cost a walk
    // over all of RAM (the direct map, the free-frame bitmap): taken
    // before the pause, never inside the blackout.
    let tables = entry_tables(p, info, staging, fault)?;
    marks.mark("entrytbl", p.now());
    let free = (p.free_generation(), p.free_digest());
    marks.mark("freedig", p.now());
    Ok(Ready {
        tables,
        fault,
        free,
        marks,
    })
}

/// The update from the pause to the jump, after [`ready`]: the free-frame
/// digest again if the free frames changed since, then pause, serialise,
/// pre-flight, checks, argument page, jump.
pub fn go<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    staging: &Staging,
    ready: Ready<P::Prepared>,
) -> Result<P::Jumped, ExecError<P::Error>> {
    let Ready {
        tables,
        fault,
        free: (generation, digest),
        mut marks,
    } = ready;
    // The guests' last turns, if the platform gave them.
    marks.mark("turns", p.now());
    let free_digest = if p.free_generation() == generation {
        digest
    } else {
        p.free_digest()
    };
    let mut t = Times {
        pause: p.now(),
        marks,
        ..Times::default()
    };
    t.marks.mark("freedig2", t.pause);
    p.pause();
    t.paused = p.now();
    t.marks.mark("vcpus", t.paused);
    match prepare(p, info, staging, fault, &mut t, tables, free_digest) {
        Ok((prepared, detail)) => {
            if let Some(w) = detail.watchdog {
                p.arm_watchdog(w);
            }
            Ok(p.jump(prepared, &detail))
        }
        Err(e) => {
            p.resume();
            Err(e)
        }
    }
}

/// Whether `fault` makes `step` fail; says so in the log.
fn injected<P: Platform>(p: &mut P, fault: Option<Fault>, step: Step) -> bool {
    let on = fault == Some(Fault::Fail(step));
    if on {
        p.log(format_args!("lu: fault injection: making {step:?} fail"));
    }
    on
}

/// The entry page tables of the staged image `info` at `s` (its segments,
/// the direct map up to the end of RAM, the trampoline): built before the
/// pause, since nothing in them depends on the paused state.
fn entry_tables<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    s: &Staging,
    fault: Option<Fault>,
) -> Result<P::Prepared, ExecError<P::Error>> {
    let m = p.machine();
    let ram_end = crate::ram::end(m.ram);
    let plan = EntryPlan {
        segments: info
            .mappings
            .iter()
            .map(|m| Segment {
                vaddr: m.vaddr,
                len: m.len,
                phys: s.image.start + m.offset,
            })
            .collect(),
        ram_end,
        trampoline: s.trampoline,
        args: s.args,
        entry: info.note.entry,
        frames: if injected(p, fault, Step::Tables) {
            PhysRange::new(s.tables.end(), 0)
        } else {
            s.tables
        },
    };
    p.entry_tables(&plan).map_err(ExecError::EntryTables)
}

/// What can be known before anything is paused is checked before: every
/// PCI device the hypervisor recorded is still there as it was (a rescan
/// now); the state of the running system, taken once outside the blackout,
/// goes through the blackout's own steps (the dry run: [`stage`]) — it
/// must be expressible in the negotiated version, fit the state area,
/// decode back to itself and pass the checks before the jump; what the
/// version drops of the hypervisor's own records is said. The blackout
/// runs the same steps again on the state at the pause (it can have
/// changed in between), where a refusal resumes every vCPU.
fn before_pause<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    s: &Staging,
    marks: &mut Marks,
) -> Result<(), ExecError<P::Error>> {
    let image = MfnRange::new(Mfn::containing(s.image.start), s.image.size / PAGE_SIZE);
    let area = MfnRange::new(Mfn::containing(s.state.start), s.state.size / PAGE_SIZE);
    let state = p.state(image, area);
    let found = p
        .devices()
        .map_err(phys_step("rescanning the PCI devices"))?;
    new_hv::devices::compare(&state.devices, &found).map_err(ExecError::DeviceChanged)?;
    marks.mark("devices", p.now());
    let dropped =
        handover_abi::body::dropped(handover_abi::body::writes_as(info.version, &state), &state);
    // The dry run: what the blackout will do with the state, done on the
    // state as it is now, into the staging area (which nothing reads until
    // the argument page names it). A state the negotiated version cannot
    // say (`handover_abi::body::writes_as`, `expressible`: one with an HVM
    // domain below 1.3), one that does not fit the area, or one any check
    // before the jump refuses is refused here, before the pause.
    stage(p, info, s, &state, None, &mut Times::default()).map_err(|e| match e {
        ExecError::Serialise(e) => ExecError::BeforePause(e),
        e => e,
    })?;
    marks.mark("dryrun", p.now());
    if !dropped.is_empty() {
        p.log(format_args!(
            "lu: handover {} does not carry the hypervisor's own records: it drops {dropped} \
             (docs/operator-guide.md, \"Releases\")",
            handover_abi::body::writes_as(info.version, &state)
        ));
    }
    Ok(())
}

/// What [`stage`] made of a state: its length in the staging area, the
/// owned-frame digest, where the new image's boot will land and the
/// digest of the guests' page tables.
struct Staged {
    len: u64,
    digest: u64,
    boot: BootPlan,
    tables_digest: u64,
}

/// Serialises `state` into the staging area as the version negotiated at
/// load (1.2 for a state without an HVM domain,
/// `handover_abi::body::writes_as`), reads it back, decodes and compares it
/// (pre-flight, with the owned-frame digest), makes the checks before the
/// point of no return and takes the digest of the guests' page tables:
/// inside the blackout with `fault`, and before the pause as the dry run
/// (no fault).
fn stage<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    s: &Staging,
    state: &HandoverState,
    fault: Option<Fault>,
    t: &mut Times,
) -> Result<Staged, ExecError<P::Error>> {
    let fail = |p: &mut P, step: Step| injected(p, fault, step);
    let producer = Producer::this_build(p.machine().build_id);
    let version = if fail(p, Step::Encode) {
        AbiVersion::new(info.version.major, 99)
    } else {
        handover_abi::body::writes_as(info.version, state)
    };
    let capacity = if fail(p, Step::TooLarge) {
        64
    } else {
        s.state.size
    };
    let blob =
        handover::serialise(version, state, &producer, capacity).map_err(ExecError::Serialise)?;
    let len = blob.len() as u64;
    t.marks.mark("encode", p.now());
    p.write(s.state.start, &blob)
        .map_err(phys_step("writing the state"))?;
    drop(blob);
    t.serialised = p.now();
    t.marks.mark("write", t.serialised);

    // Pre-flight: what the new image will read, decoded and compared.
    let mut back = alloc::vec![0u8; len as usize];
    p.read(s.state.start, &mut back)
        .map_err(phys_step("reading the state back"))?;
    if fail(p, Step::Preflight) {
        let at = back.len() / 2;
        back[at] ^= 0x40;
    }
    t.marks.mark("readback", p.now());
    let (frametable, m2p) = p.frametable();
    let digest =
        handover::preflight(&back, state, frametable, m2p).map_err(ExecError::Preflight)?;
    drop(back);
    t.marks.mark("compare", p.now());
    let huge_ram = fail(p, Step::Boot);
    let boot = check_before_jump(p, s, state, len, huge_ram, info.contract.boot)?;
    if let Some(w) = watchdog(p, info) {
        // The page the incoming image will clear is no guest's.
        new_hv::verify::marker_placement(state, w.marker_phys)
            .map_err(|e| ExecError::Check(CheckError::Marker(e)))?;
    }
    t.marks.mark("checks", p.now());
    // The guests' tables stay in place: the new image checks that they are
    // exactly these.
    let tables_digest = new_hv::tables::digest(state, p.tables());
    t.preflight = p.now();
    t.marks.mark("tables", t.preflight);
    Ok(Staged {
        len,
        digest,
        boot,
        tables_digest,
    })
}

/// Everything of [`exec`] between the pause and the jump.
fn prepare<P: Platform>(
    p: &mut P,
    info: &ImageInfo,
    s: &Staging,
    fault: Option<Fault>,
    t: &mut Times,
    prepared: P::Prepared,
    free_digest: u64,
) -> Result<(P::Prepared, JumpDetail), ExecError<P::Error>> {
    let image = MfnRange::new(Mfn::containing(s.image.start), s.image.size / PAGE_SIZE);
    let area = MfnRange::new(Mfn::containing(s.state.start), s.state.size / PAGE_SIZE);
    let mut state = p.state(image, area);
    if fault == Some(Fault::Vcpu) {
        corrupt_vcpu(p, &mut state);
    }
    t.marks.mark("collect", p.now());
    let Staged {
        len,
        digest,
        boot,
        tables_digest,
    } = stage(p, info, s, &state, fault, t)?;

    let ram_end = crate::ram::end(p.machine().ram);

    let watchdog = watchdog(p, info);
    let m = p.machine();
    let detail = JumpDetail {
        state_len: len,
        digest,
        free_frames: m.free_frames,
        boot,
        watchdog,
    };
    t.jump = p.now();
    let mut args = EntryArgs {
        ram_end,
        digest,
        tsc_khz: m.tsc_khz,
        tsc_pause: t.pause,
        tsc_paused: t.paused,
        tsc_serialised: t.serialised,
        tsc_preflight: t.preflight,
        tsc_jump: t.jump,
        free_frames: m.free_frames,
        sequence: m.sequence + 1,
        image_frames_out: m.image_frames_out,
        from_build_id: m.build_id,
        tables_digest: Some(tables_digest),
        free_digest: Some(free_digest),
        watchdog,
        ..EntryArgs::default()
    };
    s.place(m.region, len, &mut args);
    let seed = t.jump;
    match fault {
        Some(Fault::State) => {
            // A flipped bit at a pseudo-random place of the body, as if
            // memory were corrupted after the pre-flight check.
            let body = len - handover_abi::HEADER_SIZE as u64;
            let (offset, bit) = spot(seed, body);
            let at = s.state.start + handover_abi::HEADER_SIZE as u64 + offset;
            flip_bit(p, at, bit)?;
            p.log(format_args!(
                "lu: fault injection: flipped bit {bit} of the staged state at {at:#x} (body offset {offset})"
            ));
        }
        Some(Fault::Digest) => {
            args.digest ^= 1;
            p.log(format_args!(
                "lu: fault injection: corrupted the digest in the argument page"
            ));
        }
        Some(Fault::Guest) => corrupt_guest(p, &state)?,
        Some(Fault::Table) => corrupt_table(p, &state, seed)?,
        Some(Fault::Args | Fault::Vcpu | Fault::Fail(_)) | None => {}
    }
    // The version agreed from the incoming image's note (version 1 for the
    // 1.0 release, which carries neither the free nor the tables digest).
    let (page, page_len) = args
        .to_bytes_as(info.contract.args_version)
        .expect("an agreed version is one this crate writes (`image::WRITES_ARGS`)");
    p.write(s.args, &page[..page_len])
        .map_err(phys_step("writing the argument page"))?;
    if let Some(w) = watchdog {
        // What a reset before the new image confirms leaves for the image
        // that boots next (`handover_abi::marker`).
        let marker = Marker {
            sequence: args.sequence,
            args_phys: s.args,
            from_build_id: args.from_build_id,
            to_build_id: info.note.build_id,
            deadline_ms: w.deadline_ms,
            caller: p.machine().caller,
        };
        p.write(w.marker_phys, &marker.to_bytes())
            .map_err(phys_step("writing the update marker"))?;
    }
    // The sub-steps' timestamps, in the page's trailer (a measurement: an
    // image that does not read it ignores it).
    let (marks, marks_len) = t.marks.to_bytes();
    p.write(s.args + MARKS_OFFSET as u64, &marks[..marks_len])
        .map_err(phys_step("writing the argument page"))?;
    if fault == Some(Fault::Args) {
        let (offset, bit) = spot(seed, page_len as u64);
        flip_bit(p, s.args + offset, bit)?;
        p.log(format_args!(
            "lu: fault injection: flipped bit {bit} of the argument page at offset {offset}"
        ));
    }
    Ok((prepared, detail))
}

/// The watchdog to arm for `info`: the machine's, if it has one and the
/// image reads argument page 4 (only such an image knows to disarm it).
fn watchdog<P: Platform>(p: &P, info: &ImageInfo) -> Option<Watchdog> {
    p.machine()
        .watchdog
        .filter(|_| info.contract.args_version >= ENTRY_ARGS_V4)
}

/// A physical-memory failure during `step`.
fn phys_step<E: fmt::Display>(step: &'static str) -> impl FnOnce(E) -> ExecError<E> {
    move |error| ExecError::Phys { step, error }
}

/// The checks before the point of no return ([`checks::before_jump`]) on
/// the region minus the range the argument page will describe
/// (`new_hv::staging::staged_range`, the incoming image's own
/// computation). `huge_ram` is `fail-boot`: 4 TiB more RAM for the new
/// image to cover. Returns where the new image's boot will land.
fn check_before_jump<P: Platform>(
    p: &P,
    s: &Staging,
    state: &HandoverState,
    state_len: u64,
    huge_ram: bool,
    model: new_hv::boot::Model,
) -> Result<BootPlan, ExecError<P::Error>> {
    let m = p.machine();
    let mut placed = EntryArgs::default();
    s.place(m.region, state_len, &mut placed);
    let staged = new_hv::staging::staged_range(&placed).map_err(ExecError::Staged)?;
    // The frames the page allocator has handed out: every one belongs to a
    // domain from the moment it leaves the allocator (a count, not a frame
    // scan).
    let layout = MachineLayout::new(m.ram, m.region.covering_frames(), m.reserved)
        .map_err(|e| ExecError::Check(CheckError::Layout(e)))?;
    let in_use = checks::managed_frames(&layout).saturating_sub(m.free_frames);
    let mut ram = m.ram.to_vec();
    if huge_ram {
        let end = ram.last().map_or(0, |r| r.end());
        ram.push(MfnRange::new(Mfn(end), 1 << 30));
    }
    checks::before_jump(state, in_use, model, m.region, staged, &ram, s.image.size)
        .map_err(ExecError::Check)
}

/// `vcpu`: the last vCPU's rip in the state becomes a hypervisor address.
fn corrupt_vcpu<P: Platform>(p: &mut P, state: &mut HandoverState) {
    if let Some(v) = state
        .domains
        .iter_mut()
        .flat_map(|d| d.vcpus.iter_mut())
        .last()
    {
        v.rip = hvlu_types::canonical::UPPER_HALF_START;
        p.log(format_args!(
            "lu: fault injection: a vCPU's rip in the state is a hypervisor address"
        ));
    }
}

/// `guest`: flips the lowest bit of the first byte of the first domU's
/// highest data page (a page its checker owns), as if memory changed
/// during the update.
fn corrupt_guest<P: Platform>(p: &mut P, state: &HandoverState) -> Result<(), ExecError<P::Error>> {
    let target = state
        .domains
        .iter()
        .filter(|d| !d.flags.contains(handover_abi::DomainFlags::PRIVILEGED))
        .find_map(|d| {
            let run = d
                .runs
                .iter()
                .filter(|r| r.kind == RunKind::Data && r.count > 0)
                .max_by_key(|r| r.first_gpfn.0 + r.count)?;
            let last = run.count - 1;
            Some((d.id, run.first_gpfn.0 + last, Mfn(run.first_mfn.0 + last)))
        });
    let Some((dom, gpfn, mfn)) = target else {
        p.log(format_args!("lu: fault injection: no domU to corrupt"));
        return Ok(());
    };
    flip_bit(p, mfn.addr(), 0)?;
    p.log(format_args!(
        "lu: fault injection: flipped a bit of d{dom}'s memory at gpfn {gpfn} (mfn {:#x})",
        mfn.0
    ));
    Ok(())
}

/// `table`: one bit of a guest page-table frame below L4, after its digest
/// was taken: the new image must refuse before the pass.
fn corrupt_table<P: Platform>(
    p: &mut P,
    state: &HandoverState,
    seed: u64,
) -> Result<(), ExecError<P::Error>> {
    let tables: Vec<Mfn> = state
        .domains
        .iter()
        .flat_map(|d| d.runs.iter())
        .filter(|r| r.kind.is_page_table() && r.kind != RunKind::L4)
        .flat_map(|r| (0..r.count).map(move |i| Mfn(r.first_mfn.0 + i)))
        .collect();
    let (pick, bit) = spot(seed, tables.len() as u64);
    let (offset, _) = spot(seed.rotate_left(17), PAGE_SIZE);
    if let Some(&mfn) = tables.get(pick as usize) {
        flip_bit(p, mfn.addr() + offset, bit)?;
        p.log(format_args!(
            "lu: fault injection: flipped bit {bit} of guest page-table frame {mfn} at offset {offset}"
        ));
    }
    Ok(())
}

/// A pseudo-random byte offset below `len` and bit, from `seed` (a TSC
/// value): where a fault injection flips a bit.
pub fn spot(seed: u64, len: u64) -> (u64, u8) {
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % len.max(1), (x >> 59) as u8 & 7)
}

/// Flips bit `bit` of the byte at physical address `at`.
fn flip_bit<P: Platform>(p: &mut P, at: u64, bit: u8) -> Result<(), ExecError<P::Error>> {
    let mut byte = [0u8; 1];
    p.read(at, &mut byte)
        .map_err(phys_step("fault injection"))?;
    p.write(at, &[byte[0] ^ (1 << bit)])
        .map_err(phys_step("fault injection"))
}
