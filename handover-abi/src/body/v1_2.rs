//! Body of ABI version 1.2 — **frozen** once `tests/golden/v1_2.bin` exists:
//! do not change a type, a field, its order or a variant here; add a new
//! version module instead (see [`crate::body`]). The functions below the
//! types compute from them and may grow.
//!
//! 1.2 only adds to 1.1 (the version rule): device memory and guest memory
//! maps, so that a domain that drives a device keeps its view of it.
//!
//! - [`HandoverState`] gains `devices`: the machine's PCI devices as the
//!   writer enumerated them ([`PciDevice`], with their memory BARs,
//!   [`PciBar`]). The incoming image enumerates again and compares
//!   (`new_hv::devices`).
//! - [`Domain`] gains `hole`, the first guest frame of the domain's PCI
//!   hole `[hole, 4 GiB)` (its guest memory map: [`memory_map`]), and
//!   `identity`, the device frames mapped into that hole at guest frame ==
//!   machine frame.
//!
//! Everything else is v1.1's type, re-exported. A 1.1 (or 1.0) blob
//! decodes into these types with the hole at [`DEFAULT_HOLE`], no identity
//! entries and no devices (`From<v1_1::HandoverState>`). A state is written
//! as 1.1 or 1.0 through a borrowing view of the older fields
//! ([`crate::body`]), which refuses what an older reader would get wrong
//! (a hole elsewhere than the default, guest RAM above the hole, device
//! access other than the default, [`Domain::has_default_access`]) and
//! drops the device list.
//!
//! **Device memory** is the frames of the memory BARs ([`device_memory`]).
//! It is never RAM: a BAR touches no usable RAM, and the frametable never
//! owns, types, counts or releases a frame of it (`docs/invariants.md`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::v1_1;
pub use super::v1_1::{
    ConsoleRing, DomainFlags, GpRegs, GuestReports, HvGlobals, LuRegion, Machine, PinnedTable,
    RamRange, RamType, RetiredDomain, TimeBase, Vcpu, VcpuFlags, MAX_CMDLINE_LEN, MAX_NAME_LEN,
    MAX_RETIRED,
};
use crate::types::MemRun;
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange, PAGE_SHIFT, PAGE_SIZE};

/// The hole's rules are `hvlu_types::hole`'s, which the hypervisor's frame
/// space keeps too: one past the last guest frame of every PCI hole
/// ([`HOLE_END`], 4 GiB), the lowest start ([`MIN_HOLE`], 16 MiB) and the
/// alignment of a start ([`HOLE_ALIGN`] frames, 2 MiB).
pub use hvlu_types::hole::{HOLE_ALIGN, HOLE_END, MIN_HOLE};
/// The hole a domain gets unless it asks for another, and the hole of every
/// domain of a 1.0 or 1.1 state: 3 GiB.
pub const DEFAULT_HOLE: Gpfn = hvlu_types::hole::Hole::DEFAULT.start();
/// The highest BAR register index of a PCI function (type 0 header).
pub const MAX_BAR_INDEX: u8 = 5;
/// The smallest BAR the hypervisor records: one page.
pub const MIN_BAR_SIZE: u64 = PAGE_SIZE;

/// Everything the outgoing hypervisor hands to the incoming one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverState {
    /// The machine as the producer saw it, and where the update sits in it.
    pub machine: Machine,
    /// Hypervisor-wide state that must continue.
    pub globals: HvGlobals,
    /// Every domain, in any order. Domain ids are unique.
    pub domains: Vec<Domain>,
    /// Domains destroyed before the update, whose reports still count; at
    /// most [`MAX_RETIRED`].
    pub retired: Vec<RetiredDomain>,
    /// The machine's PCI devices as the writer enumerated them, in any
    /// order: bus/device/function unique, BARs valid and apart from each
    /// other and from usable RAM. When the list is not empty, every MMIO
    /// range of every domain lies in the device memory ([`device_memory`]).
    pub devices: Vec<PciDevice>,
}

/// One domain and everything needed to rebuild it around its memory.
///
/// The fields up to `reports` are v1.1's, with v1.1's invariants but one:
/// a run's guest frames lie in the domain's guest RAM ([`memory_map`]),
/// which is `0..max_frames` unless the limit reaches the hole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain's id; unique and below [`HvGlobals::next_domid`].
    pub id: DomId,
    /// Domain flags; only known bits, and [`DomainFlags::PV`] set.
    pub flags: DomainFlags,
    /// A name for people; at most [`MAX_NAME_LEN`] bytes of UTF-8.
    pub name: String,
    /// The most frames the domain may own; also the size of its guest RAM.
    pub max_frames: u64,
    /// The domain's memory, bottom-up (see `v1_0::Domain::runs`); no guest
    /// frame in the hole, every guest frame in the domain's guest RAM.
    pub runs: Vec<MemRun>,
    /// Pinned page tables (see `v1_0::Domain::pinned`).
    pub pinned: Vec<PinnedTable>,
    /// Machine frames outside RAM that the domain may map (device MMIO, the
    /// I/O memory permission); inside the device memory when devices are
    /// listed.
    pub mmio: Vec<MfnRange>,
    /// Guest frame of the start-info page; lies in one of the domain's data runs.
    pub start_info: Gpfn,
    /// The domain's virtual CPUs; ids are unique.
    pub vcpus: Vec<Vcpu>,
    /// Positions in the domain's console rings.
    pub console: ConsoleRing,
    /// The toolstack paused the domain: it does not run until unpaused.
    pub paused: bool,
    /// What the guest reported about itself.
    pub reports: GuestReports,
    /// The first guest frame of the domain's PCI hole, which runs to
    /// [`HOLE_END`]: a multiple of [`HOLE_ALIGN`], at least [`MIN_HOLE`],
    /// below [`HOLE_END`]. Chosen when the domain is created; never changes.
    pub hole: Gpfn,
    /// Device frames mapped in the hole at guest frame == machine frame:
    /// non-empty, sorted, disjoint, inside the hole and each inside one of
    /// the domain's `mmio` ranges.
    pub identity: Vec<MfnRange>,
}

impl Domain {
    /// Total frames in the domain's runs (saturating).
    pub fn frames(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.count))
    }

    /// The domain's guest memory map, from its hole and its limit.
    pub fn memory_map(&self) -> GuestMemoryMap {
        memory_map(self.hole, self.max_frames)
    }

    /// Whether the domain's device access is what a reader that cannot
    /// carry it gives back ([`default_mmio`], [`default_identity`]) given
    /// the machine's `devices`: `(mmio, identity)`.
    ///
    /// Does not allocate. Exact when the BARs do not overlap each other
    /// (a valid state's); with overlapping BARs (a state the pre-flight
    /// decode refuses anyway) it may call a non-default access default.
    pub fn has_default_access(&self, devices: &[PciDevice]) -> (bool, bool) {
        has_default_access(self.flags, self.hole, &self.mmio, &self.identity, devices)
    }

    /// Gives the domain the device access a reader that cannot carry it
    /// gives back, given the machine's `devices` ([`default_mmio`],
    /// [`default_identity`]).
    pub fn set_default_access(&mut self, devices: &[PciDevice]) {
        self.mmio = default_mmio(self.flags, devices);
        self.identity = default_identity(self.flags, devices, self.hole);
    }
}

/// Whether a domain with `flags`, its hole at `hole`, MMIO ranges `mmio`
/// and identity entries `identity` has the default device access given
/// `devices`: `(mmio, identity)` ([`Domain::has_default_access`], which
/// the domains of later versions share).
pub fn has_default_access(
    flags: DomainFlags,
    hole: Gpfn,
    mmio: &[MfnRange],
    identity: &[MfnRange],
    devices: &[PciDevice],
) -> (bool, bool) {
    if !flags.contains(DomainFlags::PRIVILEGED) {
        return (mmio.is_empty(), identity.is_empty());
    }
    let bars = || {
        devices
            .iter()
            .flat_map(|d| d.bars.iter())
            .map(PciBar::frames)
    };
    let hole = MfnRange::new(Mfn(hole.0), HOLE_END.0.saturating_sub(hole.0));
    (
        is_canonical_union(mmio, bars()),
        is_canonical_union(identity, bars().map(|b| intersection(b, hole))),
    )
}

/// One PCI function with its memory BARs, as the hypervisor enumerated it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PciDevice {
    /// Bus, device and function: `bus << 8 | device << 3 | function`.
    pub bdf: u16,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// `class << 16 | subclass << 8 | prog-if`; below 2^24.
    pub class: u32,
    /// Its memory BARs (I/O BARs are not listed), in any order.
    pub bars: Vec<PciBar>,
}

impl PciDevice {
    /// Its bus/device/function, printable.
    pub const fn address(&self) -> Bdf {
        Bdf(self.bdf)
    }
}

/// One memory BAR: `[base, base + size)` in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PciBar {
    /// The BAR register: 0 to [`MAX_BAR_INDEX`]; a 64-bit BAR takes this
    /// register and the next, so it is at most 4.
    pub index: u8,
    /// Physical address of the first byte; a multiple of `size`.
    pub base: u64,
    /// Bytes; a power of two, at least [`MIN_BAR_SIZE`]. Ends at or below
    /// 2^52.
    pub size: u64,
    /// [`PciBar::MEM64`], [`PciBar::PREFETCHABLE`]; no other bit.
    pub flags: u32,
}

impl PciBar {
    /// The BAR is 64 bits wide (it takes two BAR registers).
    pub const MEM64: u32 = 1 << 0;
    /// The BAR is prefetchable.
    pub const PREFETCHABLE: u32 = 1 << 1;
    /// Every flag this version knows.
    pub const KNOWN_FLAGS: u32 = Self::MEM64 | Self::PREFETCHABLE;

    /// The frames of the BAR: those its bytes touch (saturating at the top
    /// of the address space). A valid BAR is page aligned, so exactly its
    /// bytes.
    pub const fn frames(&self) -> MfnRange {
        let start = self.base >> PAGE_SHIFT;
        let end = self.base.saturating_add(self.size).div_ceil(PAGE_SIZE);
        MfnRange::new(Mfn(start), end.saturating_sub(start))
    }

    /// The BAR registers it takes: 1, or 2 for a 64-bit BAR.
    pub const fn registers(&self) -> u8 {
        if self.flags & Self::MEM64 != 0 {
            2
        } else {
            1
        }
    }
}

/// A PCI bus/device/function, shown as `bb:dd.f` in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf(pub u16);

impl Bdf {
    /// The bus.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The device on the bus (0..32).
    pub const fn device(self) -> u8 {
        (self.0 >> 3) as u8 & 0x1f
    }

    /// The function of the device (0..8).
    pub const fn function(self) -> u8 {
        self.0 as u8 & 0x7
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

/// A half-open range of guest frames `[start, start + count)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpfnRange {
    /// The first guest frame.
    pub start: Gpfn,
    /// Frames; zero is an empty range.
    pub count: u64,
}

impl GpfnRange {
    /// One past the last frame (saturating).
    pub const fn end(self) -> u64 {
        self.start.0.saturating_add(self.count)
    }

    /// Whether `[first, first + count)` (not wrapping) lies in this range.
    pub const fn holds(self, first: u64, count: u64) -> bool {
        match first.checked_add(count) {
            Some(end) => first >= self.start.0 && end <= self.end(),
            None => false,
        }
    }

    /// Whether `[first, first + count)` shares a frame with this range.
    pub const fn meets(self, first: u64, count: u64) -> bool {
        first < self.end() && self.start.0 < first.saturating_add(count) && count > 0
    }
}

/// A domain's guest memory map: what its guest frames are.
///
/// RAM is `[0, min(max_frames, hole))` and, for the frames of the limit the
/// hole leaves out, `[4 GiB, 4 GiB + max_frames - hole)`; the hole is
/// `[hole, 4 GiB)`: no RAM there, device frames only where `identity` maps
/// them. Every other guest frame is nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestMemoryMap {
    /// RAM below the hole.
    pub low: GpfnRange,
    /// RAM from 4 GiB up (empty if the limit ends below the hole).
    pub high: GpfnRange,
    /// The PCI hole.
    pub hole: GpfnRange,
}

impl GuestMemoryMap {
    /// The non-empty RAM ranges, in increasing order.
    pub fn ram(&self) -> impl Iterator<Item = GpfnRange> {
        [self.low, self.high].into_iter().filter(|r| r.count > 0)
    }

    /// Whether the frames `[first, first + count)` are all RAM.
    pub fn is_ram(&self, first: Gpfn, count: u64) -> bool {
        self.low.holds(first.0, count) || self.high.holds(first.0, count)
    }

    /// One past the highest RAM frame.
    pub fn ram_end(&self) -> u64 {
        self.ram().map(GpfnRange::end).max().unwrap_or(0)
    }
}

/// The guest memory map of a domain whose hole starts at `hole` and whose
/// limit is `max_frames` ([`GuestMemoryMap`]).
pub const fn memory_map(hole: Gpfn, max_frames: u64) -> GuestMemoryMap {
    let low = if max_frames < hole.0 {
        max_frames
    } else {
        hole.0
    };
    GuestMemoryMap {
        low: GpfnRange {
            start: Gpfn(0),
            count: low,
        },
        high: GpfnRange {
            start: HOLE_END,
            count: max_frames - low,
        },
        hole: GpfnRange {
            start: hole,
            count: HOLE_END.0.saturating_sub(hole.0),
        },
    }
}

/// Whether `hole` can start a domain's PCI hole: a multiple of
/// [`HOLE_ALIGN`], at least [`MIN_HOLE`], below [`HOLE_END`].
pub const fn hole_is_valid(hole: Gpfn) -> bool {
    hvlu_types::hole::Hole::new(hole).is_ok()
}

/// The device memory of `devices`: the frames of every BAR, sorted, ranges
/// that overlap or touch merged into one.
pub fn device_memory(devices: &[PciDevice]) -> Vec<MfnRange> {
    let mut bars: Vec<MfnRange> = devices
        .iter()
        .flat_map(|d| d.bars.iter())
        .map(PciBar::frames)
        .filter(|r| !r.is_empty())
        .collect();
    bars.sort_unstable();
    let mut merged: Vec<MfnRange> = Vec::with_capacity(bars.len());
    for r in bars {
        match merged.last_mut() {
            Some(last) if r.start.0 <= last.end() => {
                last.count = last.count.max(r.end() - last.start.0);
            }
            _ => merged.push(r),
        }
    }
    merged
}

/// The MMIO ranges a domain with `flags` gets by default: all the device
/// memory of `devices` for a privileged domain, nothing for another.
pub fn default_mmio(flags: DomainFlags, devices: &[PciDevice]) -> Vec<MfnRange> {
    if flags.contains(DomainFlags::PRIVILEGED) {
        device_memory(devices)
    } else {
        Vec::new()
    }
}

/// The identity entries a domain with `flags` and a hole at `hole` gets by
/// default: for a privileged domain, the device memory of `devices` that
/// lies in its hole (a BAR above 4 GiB can be mapped through its page
/// tables but has no guest frame); nothing for another.
pub fn default_identity(flags: DomainFlags, devices: &[PciDevice], hole: Gpfn) -> Vec<MfnRange> {
    let hole = MfnRange::new(Mfn(hole.0), HOLE_END.0.saturating_sub(hole.0));
    default_mmio(flags, devices)
        .into_iter()
        .map(|r| intersection(r, hole))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The frames both ranges hold (empty, at `a`'s start, if none).
fn intersection(a: MfnRange, b: MfnRange) -> MfnRange {
    let start = a.start.0.max(b.start.0);
    let end = a.end().min(b.end());
    if start < end {
        MfnRange::new(Mfn(start), end - start)
    } else {
        MfnRange::new(a.start, 0)
    }
}

/// Whether `ranges` is the canonical list of the union of `pieces`: sorted,
/// non-empty, each apart from the next by at least a frame, each piece
/// inside one range, and as many frames in all as the pieces hold. Exact
/// when the pieces do not overlap each other. Does not allocate.
fn is_canonical_union(ranges: &[MfnRange], pieces: impl Iterator<Item = MfnRange>) -> bool {
    let canonical = ranges.iter().all(|r| !r.is_empty())
        && ranges.windows(2).all(|w| w[1].start.0 > w[0].end());
    if !canonical {
        return false;
    }
    let mut piece_frames = 0u128;
    for p in pieces.filter(|p| !p.is_empty()) {
        let at = ranges.partition_point(|r| r.start <= p.start);
        let inside = at
            .checked_sub(1)
            .is_some_and(|i| ranges[i].end() >= p.end());
        if !inside {
            return false;
        }
        piece_frames += u128::from(p.count);
    }
    let range_frames: u128 = ranges.iter().map(|r| u128::from(r.count)).sum();
    range_frames == piece_frames
}

impl From<v1_1::Domain> for Domain {
    fn from(d: v1_1::Domain) -> Domain {
        let v1_1::Domain {
            id,
            flags,
            name,
            max_frames,
            runs,
            pinned,
            mmio,
            start_info,
            vcpus,
            console,
            paused,
            reports,
        } = d;
        Domain {
            id,
            flags,
            name,
            max_frames,
            runs,
            pinned,
            mmio,
            start_info,
            vcpus,
            console,
            paused,
            reports,
            hole: DEFAULT_HOLE,
            identity: Vec::new(),
        }
    }
}

/// A 1.1 state in 1.2's types: every hole at [`DEFAULT_HOLE`], no identity
/// entry, no device listed (the incoming image lists what it finds and
/// gives the privileged domains their default access: `new_hv::devices`).
impl From<v1_1::HandoverState> for HandoverState {
    fn from(s: v1_1::HandoverState) -> HandoverState {
        HandoverState {
            machine: s.machine,
            globals: s.globals,
            domains: s.domains.into_iter().map(Domain::from).collect(),
            retired: s.retired,
            devices: Vec::new(),
        }
    }
}

/// A 1.0 state in 1.2's types, through 1.1's.
impl From<super::v1_0::HandoverState> for HandoverState {
    fn from(s: super::v1_0::HandoverState) -> HandoverState {
        v1_1::HandoverState::from(s).into()
    }
}

#[cfg(test)]
mod tests;
