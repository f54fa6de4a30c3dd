//! The structural invariants of a handover state.
//!
//! [`HandoverState::validate`] checks them in this order and reports the first
//! that fails, naming the domain (by id), the run, pin, vCPU, MMIO or
//! identity range (by index in its list, vCPUs by id), the device (by
//! bus/device/function) and the BAR (by register index):
//!
//! 1. the RAM map: entries non-empty, not wrapping, sorted and disjoint;
//! 2. the live-update region: page aligned, inside usable RAM; the image and
//!    state ranges non-empty, inside the region, apart from each other;
//! 3. the time base: a non-zero TSC frequency;
//! 4. the hypervisor's records (v1.1): the command line's length, the number
//!    of retired domains, each retired name's length, in list order;
//! 5. the devices (v1.2), in list order: the class code, each BAR (its
//!    register index, flags, size, alignment, below 2^52 bytes, clear of
//!    usable RAM), no BAR register taken twice; then bus/device/function
//!    unique, and no two BARs of any devices overlapping;
//! 6. domain ids: unique, all below the next domain id;
//! 7. retired domains' ids: unique, none a live domain's id (an id at or
//!    above the next domain id is allowed: see `docs/abi.md` §2.4);
//! 8. each domain, in list order: flags (the PV flag set exactly on a
//!    domain without an HVM part, v1.3), name, its PCI hole (v1.2), each run
//!    (non-empty, not wrapping, bottom-up kind order, no guest frame for a
//!    nested page-table or log-dirty run (v1.3), a kind its domain may have
//!    (v1.3), inside usable RAM, outside the region), machine frames of its
//!    runs disjoint, guest frames of its runs disjoint, guest frame count
//!    within the limit, each run's guest
//!    frames clear of the hole and inside the domain's guest RAM, start-info
//!    page in a data run, each pinned table in a run of its level (an L4 pin
//!    in an L4 run), no frame pinned twice, each vCPU's flags and (a PV
//!    domain's) CR3, vCPU ids unique, an HVM domain's part (v1.3: one
//!    context per vCPU, each vCPU's record blank and its context one
//!    `VMRUN` enters, `HvmContext::check`, the nested root in a P2m
//!    run, the log-dirty bitmap's size and runs), each MMIO range non-empty, below 2^52 bytes, clear of
//!    usable RAM and — when devices are listed — inside the device memory,
//!    each identity range (v1.2) non-empty, after the one before, inside the
//!    hole and inside one of the domain's MMIO ranges;
//! 9. the machine frames of all runs of all domains disjoint.
//!
//! Every check that relates many items sorts a copy (O(n log n)) and looks
//! items up by binary search; nothing walks frames one by one.

use alloc::vec::Vec;
use core::fmt;

use crate::body::current::{
    device_memory, hole_is_valid, Bdf, Domain, DomainFlags, HandoverState, HvmDomain, LogDirty,
    LuRegion, PciBar, PciDevice, RamRange, RamType, HOLE_ALIGN, HOLE_END, MAX_BAR_INDEX,
    MAX_CMDLINE_LEN, MAX_NAME_LEN, MAX_RETIRED, MIN_BAR_SIZE, MIN_HOLE,
};
use crate::types::{RunKind, NO_GPFN};
#[cfg(doc)]
use hvlu_types::regs::HvmContext;
use hvlu_types::{DomId, Gpfn, HvmContextError, Mfn, MfnRange, MFN_LIMIT, PAGE_SHIFT, PAGE_SIZE};

/// Names one memory run: the domain's id and the run's index in its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunRef {
    /// The domain that holds the run.
    pub domain: DomId,
    /// Index of the run in the domain's run list.
    pub run: usize,
}

impl fmt::Display for RunRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {} run {}", self.domain, self.run)
    }
}

/// Names one BAR: its device's bus/device/function and its register index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BarRef {
    /// The device.
    pub device: Bdf,
    /// The BAR's register index.
    pub index: u8,
}

impl fmt::Display for BarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {} BAR {}", self.device, self.index)
    }
}

/// A way in which a handover state breaks its invariants: one variant per
/// invariant, each naming where it broke, in the order
/// [`HandoverState::validate`] checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A RAM map entry has size zero.
    #[error("RAM map entry {entry} is empty")]
    RamMapEntryEmpty {
        /// Index of the entry.
        entry: usize,
    },
    /// A RAM map entry's end does not fit in 64 bits.
    #[error("RAM map entry {entry} extends past the end of the 64-bit address space")]
    RamMapEntryWraps {
        /// Index of the entry.
        entry: usize,
    },
    /// A RAM map entry starts before the previous one ends.
    #[error("RAM map entry {entry} starts before the previous entry ends (entries must be sorted and disjoint)")]
    RamMapOutOfOrder {
        /// Index of the entry.
        entry: usize,
    },
    /// The live-update region's base or size is not a multiple of the page size.
    #[error("live-update region (base {base:#x}, size {size:#x}) is not page aligned")]
    RegionNotAligned {
        /// Region base in bytes.
        base: u64,
        /// Region size in bytes.
        size: u64,
    },
    /// The live-update region is not entirely usable RAM.
    #[error("live-update region (base {base:#x}, size {size:#x}) is not inside usable RAM")]
    RegionOutsideRam {
        /// Region base in bytes.
        base: u64,
        /// Region size in bytes.
        size: u64,
    },
    /// The incoming image range has no frames.
    #[error("the incoming image range is empty")]
    ImageEmpty,
    /// The incoming image does not lie inside the region.
    #[error("the incoming image ({image}) is not inside the live-update region")]
    ImageOutsideRegion {
        /// The image's frames.
        image: MfnRange,
    },
    /// The state range has no frames.
    #[error("the handover state range is empty")]
    StateEmpty,
    /// The state does not lie inside the region.
    #[error("the handover state ({state}) is not inside the live-update region")]
    StateOutsideRegion {
        /// The state's frames.
        state: MfnRange,
    },
    /// The image and the state share frames.
    #[error("the incoming image ({image}) overlaps the handover state ({state})")]
    ImageOverlapsState {
        /// The image's frames.
        image: MfnRange,
        /// The state's frames.
        state: MfnRange,
    },
    /// The time base has a TSC frequency of zero.
    #[error("the time base has a TSC frequency of zero")]
    ZeroTscFrequency,
    /// The hypervisor command line is longer than [`MAX_CMDLINE_LEN`] bytes.
    #[error(
        "the hypervisor command line is {len} bytes long, more than the limit of {MAX_CMDLINE_LEN}"
    )]
    CmdlineTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// More than [`MAX_RETIRED`] retired domains.
    #[error("{count} retired domains, more than the limit of {MAX_RETIRED}")]
    TooManyRetired {
        /// How many the state lists.
        count: usize,
    },
    /// A retired domain's name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("retired domain {index}: name is {len} bytes long, more than the limit of 32")]
    RetiredNameTooLong {
        /// Its index in the list.
        index: usize,
        /// The name's length in bytes.
        len: usize,
    },
    /// A device's class code does not fit in 24 bits.
    #[error("device {device}: class code {class:#x} does not fit in 24 bits")]
    DeviceClassTooWide {
        /// The device.
        device: Bdf,
        /// Its class code.
        class: u32,
    },
    /// A BAR's register index is past the last BAR register (a 64-bit
    /// BAR takes two registers, so it cannot be the last).
    #[error(
        "{bar}: a {bits}-bit BAR at register {index}, past the last BAR register ({MAX_BAR_INDEX})"
    )]
    BadBarIndex {
        /// The BAR.
        bar: BarRef,
        /// Its register index.
        index: u8,
        /// 32 or 64.
        bits: u8,
    },
    /// A BAR has flag bits this version does not know.
    #[error("{bar}: unknown flag bits {bits:#x}")]
    BadBarFlags {
        /// The BAR.
        bar: BarRef,
        /// The unknown bits.
        bits: u32,
    },
    /// A BAR's size is not a power of two of at least a page.
    #[error("{bar}: size {size:#x} is not a power of two of at least {MIN_BAR_SIZE:#x} bytes")]
    BadBarSize {
        /// The BAR.
        bar: BarRef,
        /// Its size in bytes.
        size: u64,
    },
    /// A BAR's base is not a multiple of its size.
    #[error("{bar}: base {base:#x} is not a multiple of its size {size:#x}")]
    BarNotAligned {
        /// The BAR.
        bar: BarRef,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// A BAR reaches past the 52-bit physical address space.
    #[error("{bar} ({base:#x}+{size:#x}) reaches past the 52-bit physical address space")]
    BarBeyondPhysical {
        /// The BAR.
        bar: BarRef,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// A BAR touches usable RAM.
    #[error("{bar} ({base:#x}+{size:#x}) overlaps usable RAM")]
    BarOverlapsRam {
        /// The BAR.
        bar: BarRef,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// Two BARs of one device take the same BAR register.
    #[error("{bar}: its BAR register is taken by another BAR of the device")]
    BarRegisterTaken {
        /// The BAR that comes second in register order.
        bar: BarRef,
    },
    /// Two devices have the same bus/device/function.
    #[error("device {device} appears more than once")]
    DuplicateDevice {
        /// The repeated bus/device/function.
        device: Bdf,
    },
    /// Two BARs share bytes.
    #[error("{first} and {second} overlap")]
    BarsOverlap {
        /// The BAR that starts lower.
        first: BarRef,
        /// The other.
        second: BarRef,
    },
    /// Two domains have the same id.
    #[error("domain {domain} appears more than once")]
    DuplicateDomain {
        /// The repeated id.
        domain: DomId,
    },
    /// The next domain id is not above a domain's id.
    #[error("next domain id {next} is not above the id of domain {domain}")]
    NextDomidTooLow {
        /// The next domain id of the state.
        next: DomId,
        /// The highest domain id present.
        domain: DomId,
    },
    /// Two retired domains have the same id.
    #[error("retired domain id {domain} appears more than once")]
    DuplicateRetired {
        /// The repeated id.
        domain: DomId,
    },
    /// A retired domain has the id of a live domain: ids are never reused.
    #[error("retired domain {index} has id {domain}, the id of a live domain")]
    RetiredIsLive {
        /// Its index in the retired list.
        index: usize,
        /// The id.
        domain: DomId,
    },
    /// A domain has flag bits this version does not know.
    #[error("domain {domain}: unknown flag bits {bits:#x}")]
    BadDomainFlags {
        /// The domain.
        domain: DomId,
        /// The unknown bits.
        bits: u32,
    },
    /// A domain without an HVM part has the PV flag clear (every domain
    /// of v1.0 to v1.2 is PV).
    #[error(
        "domain {domain}: PV flag clear, but the domain has no HVM part (a domain is PV or HVM)"
    )]
    NotPv {
        /// The domain.
        domain: DomId,
    },
    /// An HVM domain has the PV flag set.
    #[error("domain {domain}: an HVM domain with the PV flag set (a domain is PV or HVM)")]
    HvmWithPvFlag {
        /// The domain.
        domain: DomId,
    },
    /// A domain's name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("domain {domain}: name is {len} bytes long, more than the limit of 32")]
    NameTooLong {
        /// The domain.
        domain: DomId,
        /// The name's length in bytes.
        len: usize,
    },
    /// A domain's PCI hole does not start on a multiple of 2 MiB between
    /// 16 MiB and 4 GiB.
    #[error("domain {domain}: its PCI hole starts at {hole}, not a multiple of {HOLE_ALIGN:#x} frames from {MIN_HOLE} up to below {HOLE_END}")]
    BadHole {
        /// The domain.
        domain: DomId,
        /// The hole's first guest frame.
        hole: Gpfn,
    },
    /// A run has no frames.
    #[error("{run} is empty")]
    EmptyRun {
        /// The run.
        run: RunRef,
    },
    /// A run's machine or guest frame numbers wrap around `u64`.
    #[error("{run}: its frame numbers wrap around 64 bits")]
    RunWraps {
        /// The run.
        run: RunRef,
    },
    /// A run's kind comes before the kind of the run before it.
    #[error("{run}: a {kind:?} run after a {previous:?} run (runs must be data, L1, L2, L3, L4 in that order)")]
    RunsOutOfOrder {
        /// The run.
        run: RunRef,
        /// Its kind.
        kind: RunKind,
        /// The kind of the run before it.
        previous: RunKind,
    },
    /// A nested page-table or log-dirty run names a guest frame: those
    /// frames have none, and the run's `first_gpfn` must be `NO_GPFN`.
    #[error("{run}: a {kind:?} run has no guest frames, but its first_gpfn is {gpfn:#x}, not NO_GPFN ({:#x})", NO_GPFN.0)]
    RunGpfnNotNone {
        /// The run.
        run: RunRef,
        /// Its kind.
        kind: RunKind,
        /// Its `first_gpfn`.
        gpfn: u64,
    },
    /// A PV domain has a nested page-table or log-dirty run.
    #[error("{run}: a {kind:?} run in a PV domain (only an HVM domain has nested page tables and a log-dirty bitmap)")]
    HvmRunInPvDomain {
        /// The run.
        run: RunRef,
        /// Its kind.
        kind: RunKind,
    },
    /// An HVM domain has a guest page-table (L1..L4) run.
    #[error("{run}: a {kind:?} run in an HVM domain (its page tables are in its own memory; the hypervisor's are P2m runs)")]
    PvTableRunInHvmDomain {
        /// The run.
        run: RunRef,
        /// Its kind.
        kind: RunKind,
    },
    /// A run is not entirely inside usable RAM.
    #[error("{run} ({mfns}) is not inside usable RAM")]
    RunOutsideRam {
        /// The run.
        run: RunRef,
        /// Its machine frames.
        mfns: MfnRange,
    },
    /// A run shares frames with the live-update region.
    #[error("{run} ({mfns}) lies in the live-update region")]
    RunInRegion {
        /// The run.
        run: RunRef,
        /// Its machine frames.
        mfns: MfnRange,
    },
    /// Two runs (of one domain or of two) share machine frames.
    #[error("{first} and {second} share machine frames")]
    RunsOverlap {
        /// The run that starts lower.
        first: RunRef,
        /// The other run.
        second: RunRef,
    },
    /// Two runs of one domain share guest frames.
    #[error("domain {domain}: runs {run} and {other} share guest frames")]
    GuestFramesOverlap {
        /// The domain.
        domain: DomId,
        /// The run that starts lower in guest frames.
        run: usize,
        /// The other run.
        other: usize,
    },
    /// A domain's runs hold more guest frames than its limit (nested
    /// page-table and log-dirty frames do not count).
    #[error("domain {domain}: its runs hold {frames} guest frames, above its limit of {max}")]
    TooManyFrames {
        /// The domain.
        domain: DomId,
        /// Frames in its runs.
        frames: u64,
        /// Its limit.
        max: u64,
    },
    /// A run has a guest frame in the domain's PCI hole, where the guest
    /// has no RAM.
    #[error("domain {domain}: run {run} has guest frame {gpfn} in the domain's PCI hole [{hole}, 4 GiB)")]
    GpfnInHole {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The run's lowest guest frame in the hole.
        gpfn: Gpfn,
        /// The hole's first guest frame.
        hole: Gpfn,
    },
    /// A run reaches a guest frame past the domain's guest RAM: its guest
    /// frames are `0..max_frames`, or, when the limit reaches the hole,
    /// below the hole and `max_frames - hole` frames from 4 GiB up (its
    /// p2m is sized by the limit, never by a number the state could
    /// inflate).
    #[error(
        "domain {domain}: run {run} reaches guest frame {gpfn}, beyond its limit of {max} frames"
    )]
    GpfnBeyondLimit {
        /// The domain.
        domain: DomId,
        /// Index of the run.
        run: usize,
        /// The run's highest guest frame.
        gpfn: Gpfn,
        /// Its limit.
        max: u64,
    },
    /// A domain's start-info page is not in one of its data runs.
    #[error("domain {domain}: start-info page ({gpfn}) is not in one of its data runs")]
    StartInfoNotInData {
        /// The domain.
        domain: DomId,
        /// The start-info page's guest frame.
        gpfn: Gpfn,
    },
    /// A pinned table names the data kind as its level.
    #[error("domain {domain}: pinned table {pin} has level Data, not a page-table level")]
    PinNotPageTable {
        /// The domain.
        domain: DomId,
        /// Index of the pin.
        pin: usize,
    },
    /// A pinned L1, L2 or L3 table is not in a run of its level.
    #[error(
        "domain {domain}: pinned table {pin} ({mfn}) is not in one of the domain's {level:?} runs"
    )]
    PinNotInRun {
        /// The domain.
        domain: DomId,
        /// Index of the pin.
        pin: usize,
        /// The pinned frame.
        mfn: Mfn,
        /// The level it was pinned as.
        level: RunKind,
    },
    /// A pinned root (L4) is not in one of the domain's L4 runs.
    #[error("domain {domain}: pinned root {pin} ({mfn}) is not among the domain's L4 runs")]
    RootNotInL4Run {
        /// The domain.
        domain: DomId,
        /// Index of the pin.
        pin: usize,
        /// The pinned frame.
        mfn: Mfn,
    },
    /// A frame is pinned more than once.
    #[error("domain {domain}: {mfn} is pinned more than once")]
    DuplicatePin {
        /// The domain.
        domain: DomId,
        /// The frame.
        mfn: Mfn,
    },
    /// A vCPU has flag bits this version does not know.
    #[error("domain {domain} vcpu {vcpu}: unknown flag bits {bits:#x}")]
    BadVcpuFlags {
        /// The domain.
        domain: DomId,
        /// The vCPU's id.
        vcpu: u32,
        /// The unknown bits.
        bits: u32,
    },
    /// A vCPU's CR3 is not in one of the domain's L4 runs.
    #[error("domain {domain} vcpu {vcpu}: cr3 ({cr3}) is not among the domain's L4 runs")]
    Cr3NotInL4Run {
        /// The domain.
        domain: DomId,
        /// The vCPU's id.
        vcpu: u32,
        /// The CR3 frame.
        cr3: Mfn,
    },
    /// Two vCPUs of one domain have the same id.
    #[error("domain {domain}: vcpu {vcpu} appears more than once")]
    DuplicateVcpu {
        /// The domain.
        domain: DomId,
        /// The repeated vCPU id.
        vcpu: u32,
    },
    /// An HVM domain has not one context per vCPU.
    #[error("domain {domain}: {contexts} HVM vCPU contexts for {vcpus} vCPUs (one per vCPU, in the same order)")]
    HvmVcpuCount {
        /// The domain.
        domain: DomId,
        /// Its vCPUs.
        vcpus: usize,
        /// Its HVM contexts.
        contexts: usize,
    },
    /// An HVM domain's vCPU record has registers or a CR3 other than the
    /// blank record's (its registers are in its HVM context).
    #[error("domain {domain} vcpu {vcpu}: an HVM vCPU's record must be blank: every register zero and cr3 the nested root {ncr3} (its state is its HVM context)")]
    HvmVcpuNotBlank {
        /// The domain.
        domain: DomId,
        /// The vCPU's id.
        vcpu: u32,
        /// The domain's nested root.
        ncr3: Mfn,
    },
    /// An HVM vCPU's context is one `VMRUN` would refuse to enter
    /// ([`HvmContext::check`], whose error names the rule and the value).
    #[error("domain {domain} vcpu {vcpu}: its HVM context cannot be entered: {error}")]
    BadHvmContext {
        /// The domain.
        domain: DomId,
        /// The vCPU's id.
        vcpu: u32,
        /// The rule it breaks.
        error: HvmContextError,
    },
    /// An HVM domain's nested root is not in one of its P2m runs.
    #[error("domain {domain}: the nested page-table root (ncr3, {ncr3}) is not among the domain's P2m runs")]
    Ncr3NotInP2mRun {
        /// The domain.
        domain: DomId,
        /// The root.
        ncr3: Mfn,
    },
    /// An HVM domain's log-dirty bitmap has not one bit per RAM frame,
    /// rounded up to whole frames.
    #[error("domain {domain}: its log-dirty bitmap ({bitmap}) has {} frames, but {expected} hold one bit per frame of its {max_frames} RAM frames", .bitmap.count)]
    LogDirtyBitmapSize {
        /// The domain.
        domain: DomId,
        /// The bitmap.
        bitmap: MfnRange,
        /// The frames it must have.
        expected: u64,
        /// The domain's RAM frames (its limit).
        max_frames: u64,
    },
    /// A log-dirty run lies outside the domain's bitmap.
    #[error("{run} ({mfns}) is a LogDirty run outside the domain's log-dirty bitmap ({bitmap})")]
    LogDirtyRunOutsideBitmap {
        /// The run.
        run: RunRef,
        /// Its frames.
        mfns: MfnRange,
        /// The bitmap.
        bitmap: MfnRange,
    },
    /// The log-dirty runs do not hold every frame of the bitmap.
    #[error("domain {domain}: its LogDirty runs hold {frames} frames, its log-dirty bitmap ({bitmap}) has {}", .bitmap.count)]
    LogDirtyBitmapNotInRuns {
        /// The domain.
        domain: DomId,
        /// The bitmap.
        bitmap: MfnRange,
        /// Frames of its LogDirty runs.
        frames: u64,
    },
    /// A domain without log-dirty mode (or a PV domain) has a log-dirty
    /// run.
    #[error("{run}: a LogDirty run, but the domain's log-dirty mode is off (it has no bitmap)")]
    LogDirtyRunWithoutBitmap {
        /// The run.
        run: RunRef,
    },
    /// An MMIO range has no frames.
    #[error("domain {domain}: MMIO range {range} is empty")]
    EmptyMmioRange {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
    },
    /// An MMIO range reaches past the 52-bit physical address space.
    #[error("domain {domain}: MMIO range {range} ({mfns}) reaches past the 52-bit physical address space")]
    MmioBeyondPhysical {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
        /// Its frames.
        mfns: MfnRange,
    },
    /// An MMIO range overlaps usable RAM.
    #[error("domain {domain}: MMIO range {range} ({mfns}) overlaps usable RAM")]
    MmioOverlapsRam {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
        /// Its frames.
        mfns: MfnRange,
    },
    /// An MMIO range is not device memory, though the state lists the
    /// devices.
    #[error("domain {domain}: MMIO range {range} ({mfns}) is not inside the device memory of the listed devices")]
    MmioOutsideDevices {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
        /// Its frames.
        mfns: MfnRange,
    },
    /// An identity range has no frames.
    #[error("domain {domain}: identity range {range} is empty")]
    EmptyIdentityRange {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
    },
    /// An identity range starts before the one before it ends.
    #[error("domain {domain}: identity range {range} starts before the one before it ends (identity ranges must be sorted and disjoint)")]
    IdentityOutOfOrder {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
    },
    /// An identity range is not inside the domain's PCI hole.
    #[error("domain {domain}: identity range {range} ({mfns}) is not inside the domain's PCI hole [{hole}, 4 GiB)")]
    IdentityOutsideHole {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
        /// Its frames (machine and guest: they are the same).
        mfns: MfnRange,
        /// The hole's first guest frame.
        hole: Gpfn,
    },
    /// An identity range is not inside one of the domain's MMIO ranges.
    #[error("domain {domain}: identity range {range} ({mfns}) is not inside one of the domain's MMIO ranges")]
    IdentityOutsideMmio {
        /// The domain.
        domain: DomId,
        /// Index of the range.
        range: usize,
        /// Its frames.
        mfns: MfnRange,
    },
}

impl HandoverState {
    /// Checks every structural invariant (listed in the module documentation
    /// of this crate's `validate.rs` and in `docs/abi.md`) and returns the
    /// first that fails.
    pub fn validate(&self) -> Result<(), StateError> {
        check_ram_map(&self.machine.ram_map)?;
        let ram = UsableRam::new(&self.machine.ram_map);
        let region = check_region(&self.machine.region, &ram)?;
        if self.globals.time.tsc_khz == 0 {
            return Err(StateError::ZeroTscFrequency);
        }
        check_records(self)?;
        check_devices(&self.devices, &ram)?;
        let devices = (!self.devices.is_empty()).then(|| device_memory(&self.devices));
        let live = check_domain_ids(self)?;
        check_retired_ids(self, &live)?;
        for domain in &self.domains {
            check_domain(domain, &ram, region, devices.as_deref())?;
        }
        check_runs_disjoint(&self.domains)
    }
}

/// A half-open interval of frame numbers `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Usable RAM in frames, computed once from a checked RAM map.
struct UsableRam {
    /// Frames wholly inside usable RAM (rounded inwards), sorted, merged.
    inner: Vec<Span>,
    /// Frames touching usable RAM at all (rounded outwards), sorted by start;
    /// their ends never decrease.
    outer: Vec<Span>,
}

impl UsableRam {
    fn new(map: &[RamRange]) -> Self {
        let mut inner: Vec<Span> = Vec::new();
        let mut outer = Vec::new();
        for entry in map.iter().filter(|e| e.kind == RamType::Usable) {
            // Checked by `check_ram_map`: the end does not wrap.
            let end = entry.base.saturating_add(entry.size);
            let first = entry.base.div_ceil(PAGE_SIZE);
            let last = end >> PAGE_SHIFT;
            if first < last {
                match inner.last_mut() {
                    Some(prev) if prev.end == first => prev.end = last,
                    _ => inner.push(Span {
                        start: first,
                        end: last,
                    }),
                }
            }
            outer.push(Span {
                start: entry.base >> PAGE_SHIFT,
                end: end.div_ceil(PAGE_SIZE),
            });
        }
        UsableRam { inner, outer }
    }

    /// Whether every frame of the non-empty `span` is usable RAM.
    fn contains(&self, span: Span) -> bool {
        let idx = self.inner.partition_point(|r| r.start <= span.start);
        idx > 0 && self.inner[idx - 1].end >= span.end
    }

    /// Whether any frame of `span` touches usable RAM.
    fn touches(&self, span: Span) -> bool {
        let idx = self.outer.partition_point(|r| r.end <= span.start);
        self.outer.get(idx).is_some_and(|r| r.start < span.end)
    }
}

fn check_ram_map(map: &[RamRange]) -> Result<(), StateError> {
    let mut prev_end = 0u64;
    for (entry, range) in map.iter().enumerate() {
        if range.size == 0 {
            return Err(StateError::RamMapEntryEmpty { entry });
        }
        let Some(end) = range.end() else {
            return Err(StateError::RamMapEntryWraps { entry });
        };
        if entry > 0 && range.base < prev_end {
            return Err(StateError::RamMapOutOfOrder { entry });
        }
        prev_end = end;
    }
    Ok(())
}

/// Checks the region and returns its frames.
fn check_region(region: &LuRegion, ram: &UsableRam) -> Result<Span, StateError> {
    let (base, size) = (region.base, region.size);
    if base % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
        return Err(StateError::RegionNotAligned { base, size });
    }
    let Some(end) = base.checked_add(size) else {
        return Err(StateError::RegionOutsideRam { base, size });
    };
    let frames = Span {
        start: base >> PAGE_SHIFT,
        end: end >> PAGE_SHIFT,
    };
    if size != 0 && !ram.contains(frames) {
        return Err(StateError::RegionOutsideRam { base, size });
    }
    let inside =
        |r: MfnRange| r.start.0 >= frames.start && span_of(r).is_some_and(|s| s.end <= frames.end);
    let (image, state) = (region.image, region.state);
    if image.is_empty() {
        return Err(StateError::ImageEmpty);
    }
    if !inside(image) {
        return Err(StateError::ImageOutsideRegion { image });
    }
    if state.is_empty() {
        return Err(StateError::StateEmpty);
    }
    if !inside(state) {
        return Err(StateError::StateOutsideRegion { state });
    }
    if image.overlaps(state) {
        return Err(StateError::ImageOverlapsState { image, state });
    }
    Ok(frames)
}

/// The frames of `r`, or `None` if its end wraps around.
fn span_of(r: MfnRange) -> Option<Span> {
    Some(Span {
        start: r.start.0,
        end: r.start.0.checked_add(r.count)?,
    })
}

/// Checks the live domains' ids and returns them sorted.
fn check_domain_ids(state: &HandoverState) -> Result<Vec<DomId>, StateError> {
    let mut ids: Vec<DomId> = state.domains.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(StateError::DuplicateDomain { domain: pair[0] });
    }
    match ids.last() {
        Some(&highest) if state.globals.next_domid <= highest => Err(StateError::NextDomidTooLow {
            next: state.globals.next_domid,
            domain: highest,
        }),
        _ => Ok(ids),
    }
}

/// Checks the retired domains' ids against each other and against `live`,
/// the live domains' ids, sorted. A retired id may be at or above the next
/// domain id: the hypervisor names the record that folds the oldest ones
/// [`DomId::INVALID`], and the released v1.1 golden blob carries one such
/// id; a writer never gives a new domain an id a retired record holds.
fn check_retired_ids(state: &HandoverState, live: &[DomId]) -> Result<(), StateError> {
    let mut ids: Vec<DomId> = state.retired.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(StateError::DuplicateRetired { domain: pair[0] });
    }
    match state
        .retired
        .iter()
        .enumerate()
        .find(|(_, r)| live.binary_search(&r.id).is_ok())
    {
        Some((index, r)) => Err(StateError::RetiredIsLive {
            index,
            domain: r.id,
        }),
        None => Ok(()),
    }
}

/// A run reduced to what the lookups need.
#[derive(Clone, Copy, Debug)]
struct Placed {
    frames: Span,
    kind: RunKind,
    run: usize,
}

/// Finds the run containing frame `n` in `sorted`, which is sorted by start
/// and disjoint.
fn lookup(sorted: &[Placed], n: u64) -> Option<&Placed> {
    let idx = sorted.partition_point(|p| p.frames.start <= n);
    let candidate = sorted.get(idx.checked_sub(1)?)?;
    (n < candidate.frames.end).then_some(candidate)
}

/// The first overlapping neighbours in `sorted` (sorted by start).
fn first_overlap(sorted: &[Placed]) -> Option<(&Placed, &Placed)> {
    sorted
        .windows(2)
        .find(|w| w[1].frames.start < w[0].frames.end)
        .map(|w| (&w[0], &w[1]))
}

/// Checks a domain. `devices` is the device memory when the state lists
/// devices (sorted, merged).
fn check_domain(
    domain: &Domain,
    ram: &UsableRam,
    region: Span,
    devices: Option<&[MfnRange]>,
) -> Result<(), StateError> {
    let id = domain.id;
    let unknown = domain.flags.unknown_bits();
    if unknown != 0 {
        return Err(StateError::BadDomainFlags {
            domain: id,
            bits: unknown,
        });
    }
    match (domain.flags.contains(DomainFlags::PV), domain.is_hvm()) {
        (false, false) => return Err(StateError::NotPv { domain: id }),
        (true, true) => return Err(StateError::HvmWithPvFlag { domain: id }),
        _ => {}
    }
    if domain.name.len() > MAX_NAME_LEN {
        return Err(StateError::NameTooLong {
            domain: id,
            len: domain.name.len(),
        });
    }
    if !hole_is_valid(domain.hole) {
        return Err(StateError::BadHole {
            domain: id,
            hole: domain.hole,
        });
    }

    let mut by_mfn = Vec::with_capacity(domain.runs.len());
    let mut by_gpfn = Vec::with_capacity(domain.runs.len());
    let mut previous = RunKind::Data;
    for (i, run) in domain.runs.iter().enumerate() {
        let at = RunRef { domain: id, run: i };
        if run.count == 0 {
            return Err(StateError::EmptyRun { run: at });
        }
        let guest = run.kind.has_guest_frames();
        // A run without guest frames has none to wrap (its first_gpfn is
        // NO_GPFN, checked below).
        let gpfn_end = match guest {
            true => run.first_gpfn.0.checked_add(run.count),
            false => Some(0),
        };
        let (Some(mfn_end), Some(gpfn_end)) = (run.first_mfn.0.checked_add(run.count), gpfn_end)
        else {
            return Err(StateError::RunWraps { run: at });
        };
        if run.kind < previous {
            return Err(StateError::RunsOutOfOrder {
                run: at,
                kind: run.kind,
                previous,
            });
        }
        previous = run.kind;
        check_run_kind(domain, run, at)?;
        let frames = Span {
            start: run.first_mfn.0,
            end: mfn_end,
        };
        if !ram.contains(frames) {
            return Err(StateError::RunOutsideRam {
                run: at,
                mfns: run.mfns(),
            });
        }
        if frames.overlaps(region) {
            return Err(StateError::RunInRegion {
                run: at,
                mfns: run.mfns(),
            });
        }
        by_mfn.push(Placed {
            frames,
            kind: run.kind,
            run: i,
        });
        if guest {
            by_gpfn.push(Placed {
                frames: Span {
                    start: run.first_gpfn.0,
                    end: gpfn_end,
                },
                kind: run.kind,
                run: i,
            });
        }
    }

    by_mfn.sort_unstable_by_key(|p| (p.frames.start, p.run));
    if let Some((a, b)) = first_overlap(&by_mfn) {
        return Err(StateError::RunsOverlap {
            first: RunRef {
                domain: id,
                run: a.run,
            },
            second: RunRef {
                domain: id,
                run: b.run,
            },
        });
    }
    by_gpfn.sort_unstable_by_key(|p| (p.frames.start, p.run));
    if let Some((a, b)) = first_overlap(&by_gpfn) {
        return Err(StateError::GuestFramesOverlap {
            domain: id,
            run: a.run,
            other: b.run,
        });
    }

    let frames = domain.guest_frames();
    if frames > domain.max_frames {
        return Err(StateError::TooManyFrames {
            domain: id,
            frames,
            max: domain.max_frames,
        });
    }
    let map = domain.memory_map();
    let guest_runs = domain.runs.iter().enumerate();
    for (run, r) in guest_runs.filter(|(_, r)| r.kind.has_guest_frames()) {
        if map.hole.meets(r.first_gpfn.0, r.count) {
            return Err(StateError::GpfnInHole {
                domain: id,
                run,
                gpfn: r.first_gpfn.max(domain.hole),
                hole: domain.hole,
            });
        }
        if !map.is_ram(r.first_gpfn, r.count) {
            // Runs do not wrap (checked above).
            return Err(StateError::GpfnBeyondLimit {
                domain: id,
                run,
                gpfn: Gpfn(r.first_gpfn.0 + r.count - 1),
                max: domain.max_frames,
            });
        }
    }
    if lookup(&by_gpfn, domain.start_info.0).map(|p| p.kind) != Some(RunKind::Data) {
        return Err(StateError::StartInfoNotInData {
            domain: id,
            gpfn: domain.start_info,
        });
    }

    for (pin, table) in domain.pinned.iter().enumerate() {
        if !table.level.is_page_table() {
            return Err(StateError::PinNotPageTable { domain: id, pin });
        }
        if lookup(&by_mfn, table.mfn.0).map(|p| p.kind) != Some(table.level) {
            return Err(if table.level == RunKind::L4 {
                StateError::RootNotInL4Run {
                    domain: id,
                    pin,
                    mfn: table.mfn,
                }
            } else {
                StateError::PinNotInRun {
                    domain: id,
                    pin,
                    mfn: table.mfn,
                    level: table.level,
                }
            });
        }
    }
    let mut pinned: Vec<Mfn> = domain.pinned.iter().map(|p| p.mfn).collect();
    pinned.sort_unstable();
    if let Some(pair) = pinned.windows(2).find(|w| w[0] == w[1]) {
        return Err(StateError::DuplicatePin {
            domain: id,
            mfn: pair[0],
        });
    }

    for vcpu in &domain.vcpus {
        let unknown = vcpu.flags.unknown_bits();
        if unknown != 0 {
            return Err(StateError::BadVcpuFlags {
                domain: id,
                vcpu: vcpu.id,
                bits: unknown,
            });
        }
        if !domain.is_hvm() && lookup(&by_mfn, vcpu.cr3.0).map(|p| p.kind) != Some(RunKind::L4) {
            return Err(StateError::Cr3NotInL4Run {
                domain: id,
                vcpu: vcpu.id,
                cr3: vcpu.cr3,
            });
        }
    }
    let mut vcpu_ids: Vec<u32> = domain.vcpus.iter().map(|v| v.id).collect();
    vcpu_ids.sort_unstable();
    if let Some(pair) = vcpu_ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(StateError::DuplicateVcpu {
            domain: id,
            vcpu: pair[0],
        });
    }
    if let Some(hvm) = &domain.hvm {
        check_hvm(domain, hvm, &by_mfn)?;
    }

    for (range, &mfns) in domain.mmio.iter().enumerate() {
        if mfns.is_empty() {
            return Err(StateError::EmptyMmioRange { domain: id, range });
        }
        let span = match span_of(mfns) {
            Some(span) if span.end <= MFN_LIMIT => span,
            _ => {
                return Err(StateError::MmioBeyondPhysical {
                    domain: id,
                    range,
                    mfns,
                })
            }
        };
        if ram.touches(span) {
            return Err(StateError::MmioOverlapsRam {
                domain: id,
                range,
                mfns,
            });
        }
        if devices.is_some_and(|memory| !inside_one(memory, span)) {
            return Err(StateError::MmioOutsideDevices {
                domain: id,
                range,
                mfns,
            });
        }
    }
    check_identity(domain)
}

/// A run's `first_gpfn` if it has no guest frames, and whether its domain
/// (PV or HVM) may have a run of its kind.
fn check_run_kind(domain: &Domain, run: &crate::MemRun, at: RunRef) -> Result<(), StateError> {
    let kind = run.kind;
    if !kind.has_guest_frames() && run.first_gpfn != NO_GPFN {
        return Err(StateError::RunGpfnNotNone {
            run: at,
            kind,
            gpfn: run.first_gpfn.0,
        });
    }
    match (
        domain.is_hvm(),
        kind.has_guest_frames(),
        kind.is_page_table(),
    ) {
        (false, false, _) => Err(StateError::HvmRunInPvDomain { run: at, kind }),
        (true, _, true) => Err(StateError::PvTableRunInHvmDomain { run: at, kind }),
        _ => Ok(()),
    }
}

/// An HVM domain's own part (v1.3): one context per vCPU, each vCPU's
/// record blank and its context one `VMRUN` enters
/// ([`HvmContext::check`]), the nested root in a P2m run, and the log-dirty bitmap
/// exactly its LogDirty runs, of one bit per RAM frame.
fn check_hvm(domain: &Domain, hvm: &HvmDomain, by_mfn: &[Placed]) -> Result<(), StateError> {
    let id = domain.id;
    if hvm.vcpus.len() != domain.vcpus.len() {
        return Err(StateError::HvmVcpuCount {
            domain: id,
            vcpus: domain.vcpus.len(),
            contexts: hvm.vcpus.len(),
        });
    }
    for (v, context) in domain.vcpus.iter().zip(&hvm.vcpus) {
        if *v != HvmDomain::blank_vcpu(hvm.ncr3, v.id, v.flags, v.pending_events) {
            return Err(StateError::HvmVcpuNotBlank {
                domain: id,
                vcpu: v.id,
                ncr3: hvm.ncr3,
            });
        }
        context.check().map_err(|error| StateError::BadHvmContext {
            domain: id,
            vcpu: v.id,
            error,
        })?;
    }
    if lookup(by_mfn, hvm.ncr3.0).map(|p| p.kind) != Some(RunKind::P2m) {
        return Err(StateError::Ncr3NotInP2mRun {
            domain: id,
            ncr3: hvm.ncr3,
        });
    }
    let log_dirty_runs = || {
        domain
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == RunKind::LogDirty)
    };
    let Some(LogDirty { bitmap }) = hvm.log_dirty else {
        return match log_dirty_runs().next() {
            Some((run, _)) => Err(StateError::LogDirtyRunWithoutBitmap {
                run: RunRef { domain: id, run },
            }),
            None => Ok(()),
        };
    };
    let expected = LogDirty::frames_for(domain.max_frames);
    if bitmap.count != expected {
        return Err(StateError::LogDirtyBitmapSize {
            domain: id,
            bitmap,
            expected,
            max_frames: domain.max_frames,
        });
    }
    let mut frames = 0u64;
    for (run, r) in log_dirty_runs() {
        // Runs do not wrap (checked with the runs).
        if r.first_mfn < bitmap.start || r.mfns().end() > bitmap.end() {
            return Err(StateError::LogDirtyRunOutsideBitmap {
                run: RunRef { domain: id, run },
                mfns: r.mfns(),
                bitmap,
            });
        }
        frames += r.count;
    }
    // The runs are disjoint and inside the bitmap: as many frames is all
    // of it.
    if frames != bitmap.count {
        return Err(StateError::LogDirtyBitmapNotInRuns {
            domain: id,
            bitmap,
            frames,
        });
    }
    Ok(())
}

/// Whether `span` lies inside one of `sorted` (sorted by start, disjoint).
fn inside_one(sorted: &[MfnRange], span: Span) -> bool {
    let idx = sorted.partition_point(|r| r.start.0 <= span.start);
    idx.checked_sub(1)
        .is_some_and(|i| sorted[i].end() >= span.end)
}

/// A domain's identity entries: each non-empty, after the one before,
/// inside the hole and inside one of the domain's MMIO ranges (checked
/// after them: each is non-empty and does not wrap).
fn check_identity(domain: &Domain) -> Result<(), StateError> {
    let id = domain.id;
    // The MMIO ranges by start, each with the highest end of it and those
    // before it: a range lies inside one of them iff the highest end of
    // those that start at or before it reaches its end.
    let mut mmio: Vec<(u64, u64)> = domain.mmio.iter().map(|r| (r.start.0, r.end())).collect();
    mmio.sort_unstable();
    let mut reach = 0;
    for m in &mut mmio {
        reach = reach.max(m.1);
        m.1 = reach;
    }
    let hole = domain.memory_map().hole;
    let mut prev_end = 0u64;
    for (range, &mfns) in domain.identity.iter().enumerate() {
        if mfns.is_empty() {
            return Err(StateError::EmptyIdentityRange { domain: id, range });
        }
        if range > 0 && mfns.start.0 < prev_end {
            return Err(StateError::IdentityOutOfOrder { domain: id, range });
        }
        prev_end = mfns.end();
        if !hole.holds(mfns.start.0, mfns.count) {
            return Err(StateError::IdentityOutsideHole {
                domain: id,
                range,
                mfns,
                hole: domain.hole,
            });
        }
        let at = mmio.partition_point(|m| m.0 <= mfns.start.0);
        if at.checked_sub(1).is_none_or(|i| mmio[i].1 < mfns.end()) {
            return Err(StateError::IdentityOutsideMmio {
                domain: id,
                range,
                mfns,
            });
        }
    }
    Ok(())
}

/// The device list (v1.2): each device's class and BARs, in list order;
/// then unique bus/device/function and no two BARs overlapping, over all
/// devices (*sorted*).
fn check_devices(devices: &[PciDevice], ram: &UsableRam) -> Result<(), StateError> {
    let mut all: Vec<(u64, u64, BarRef)> = Vec::new();
    for d in devices {
        let device = d.address();
        if d.class > 0xff_ffff {
            return Err(StateError::DeviceClassTooWide {
                device,
                class: d.class,
            });
        }
        let mut registers: Vec<(u8, u8)> = Vec::with_capacity(d.bars.len());
        for b in &d.bars {
            let bar = BarRef {
                device,
                index: b.index,
            };
            check_bar(b, bar, ram)?;
            registers.push((b.index, b.index + b.registers() - 1));
            all.push((b.base, b.base + b.size, bar));
        }
        registers.sort_unstable();
        if let Some(w) = registers.windows(2).find(|w| w[1].0 <= w[0].1) {
            return Err(StateError::BarRegisterTaken {
                bar: BarRef {
                    device,
                    index: w[1].0,
                },
            });
        }
    }
    let mut bdfs: Vec<Bdf> = devices.iter().map(PciDevice::address).collect();
    bdfs.sort_unstable();
    if let Some(w) = bdfs.windows(2).find(|w| w[0] == w[1]) {
        return Err(StateError::DuplicateDevice { device: w[0] });
    }
    all.sort_unstable_by_key(|&(base, end, bar)| (base, end, bar.device, bar.index));
    match all.windows(2).find(|w| w[1].0 < w[0].1) {
        Some(w) => Err(StateError::BarsOverlap {
            first: w[0].2,
            second: w[1].2,
        }),
        None => Ok(()),
    }
}

/// One BAR on its own: register index, flags, size, alignment, below 2^52
/// bytes, clear of usable RAM.
fn check_bar(b: &PciBar, bar: BarRef, ram: &UsableRam) -> Result<(), StateError> {
    if b.index > MAX_BAR_INDEX + 1 - b.registers() {
        return Err(StateError::BadBarIndex {
            bar,
            index: b.index,
            bits: 32 * b.registers(),
        });
    }
    let unknown = b.flags & !PciBar::KNOWN_FLAGS;
    if unknown != 0 {
        return Err(StateError::BadBarFlags { bar, bits: unknown });
    }
    let (base, size) = (b.base, b.size);
    if !size.is_power_of_two() || size < MIN_BAR_SIZE {
        return Err(StateError::BadBarSize { bar, size });
    }
    if base % size != 0 {
        return Err(StateError::BarNotAligned { bar, base, size });
    }
    if base
        .checked_add(size)
        .is_none_or(|end| end > MFN_LIMIT << PAGE_SHIFT)
    {
        return Err(StateError::BarBeyondPhysical { bar, base, size });
    }
    let frames = b.frames();
    let span = Span {
        start: frames.start.0,
        end: frames.end(),
    };
    if ram.touches(span) {
        return Err(StateError::BarOverlapsRam { bar, base, size });
    }
    Ok(())
}

/// Checks that no two runs of different domains share machine frames (runs of
/// one domain were checked with their domain).
fn check_runs_disjoint(domains: &[Domain]) -> Result<(), StateError> {
    let total = domains.iter().map(|d| d.runs.len()).sum();
    let mut all: Vec<(u64, u64, usize, usize)> = Vec::with_capacity(total);
    for (d, domain) in domains.iter().enumerate() {
        for (r, run) in domain.runs.iter().enumerate() {
            // Checked per domain: the end does not wrap.
            all.push((
                run.first_mfn.0,
                run.first_mfn.0.saturating_add(run.count),
                d,
                r,
            ));
        }
    }
    all.sort_unstable();
    match all.windows(2).find(|w| w[1].0 < w[0].1) {
        Some(w) => Err(StateError::RunsOverlap {
            first: RunRef {
                domain: domains[w[0].2].id,
                run: w[0].3,
            },
            second: RunRef {
                domain: domains[w[1].2].id,
                run: w[1].3,
            },
        }),
        None => Ok(()),
    }
}

/// The hypervisor's own records (v1.1): command line and retired domains
/// within their limits.
fn check_records(state: &HandoverState) -> Result<(), StateError> {
    let len = state.globals.cmdline.len();
    if len > MAX_CMDLINE_LEN {
        return Err(StateError::CmdlineTooLong { len });
    }
    if state.retired.len() > MAX_RETIRED {
        return Err(StateError::TooManyRetired {
            count: state.retired.len(),
        });
    }
    for (index, r) in state.retired.iter().enumerate() {
        if r.name.len() > MAX_NAME_LEN {
            return Err(StateError::RetiredNameTooLong {
                index,
                len: r.name.len(),
            });
        }
    }
    Ok(())
}
