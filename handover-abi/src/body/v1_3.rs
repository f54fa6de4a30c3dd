//! Body of ABI version 1.3 — **frozen** once `tests/golden/v1_3.bin` exists:
//! do not change a type, a field, its order or a variant here; add a new
//! version module instead (see [`crate::body`]). The functions below the
//! types compute from them and may grow.
//!
//! 1.3 only adds to 1.2 (the version rule): HVM domains, run by AMD SVM
//! with nested paging.
//!
//! - [`Domain`] gains `hvm`: `None` for a PV domain; for an HVM domain its
//!   [`HvmDomain`] — the root of its nested page tables (`ncr3`), the
//!   architectural state of each vCPU ([`HvmContext`]) and, while a
//!   migration tracks its writes, where its log-dirty bitmap is
//!   ([`LogDirty`]).
//! - [`crate::RunKind`] gains `P2m` (the frames of the nested page tables,
//!   every level) and `LogDirty` (the bitmap's frames). Their runs come
//!   after the L4 runs, in that order, and have no guest frame
//!   (`first_gpfn` is [`crate::NO_GPFN`]).
//!
//! The tables and the bitmap stay where they are across an update, like a
//! PV domain's page tables: the state records their frames, never a copy.
//!
//! Everything else is v1.2's type, re-exported. A 1.2 (or older) blob
//! decodes into these types with every domain PV (`hvm` `None`,
//! `From<v1_2::HandoverState>`). A state is written as 1.2 or older through
//! a borrowing view of the older fields ([`crate::body`]), which refuses an
//! HVM domain: no older reader can run one.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::v1_2;
pub use super::v1_2::{
    default_identity, default_mmio, device_memory, hole_is_valid, memory_map, Bdf, ConsoleRing,
    DomainFlags, GpRegs, GpfnRange, GuestMemoryMap, GuestReports, HvGlobals, LuRegion, Machine,
    PciBar, PciDevice, PinnedTable, RamRange, RamType, RetiredDomain, TimeBase, Vcpu, VcpuFlags,
    DEFAULT_HOLE, HOLE_ALIGN, HOLE_END, MAX_BAR_INDEX, MAX_CMDLINE_LEN, MAX_NAME_LEN, MAX_RETIRED,
    MIN_BAR_SIZE, MIN_HOLE,
};
use crate::types::{MemRun, RunKind};
pub use hvlu_types::regs::{DescriptorTable, HvmContext, Segment};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange, PAGE_SIZE};

/// RAM indices one log-dirty bitmap frame covers: 8 bits per byte.
pub const LOG_DIRTY_BITS_PER_FRAME: u64 = PAGE_SIZE * 8;

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
    /// The machine's PCI devices as the writer enumerated them (see
    /// `v1_2::HandoverState::devices`).
    pub devices: Vec<PciDevice>,
}

/// One domain and everything needed to rebuild it around its memory.
///
/// The fields up to `identity` are v1.2's, with v1.2's invariants but for
/// an HVM domain: its `flags` have [`DomainFlags::PV`] clear, it has no
/// guest (L1..L4) page-table runs and no pins, and each of its `vcpus` is
/// only a vCPU's id, flags and pending events (the rest of the record is
/// zero, `cr3` is the domain's `ncr3`: [`HvmDomain::blank_vcpu`]); its
/// registers are in `hvm.vcpus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain's id; unique and below [`HvGlobals::next_domid`].
    pub id: DomId,
    /// Domain flags; only known bits; [`DomainFlags::PV`] set exactly when
    /// `hvm` is `None`.
    pub flags: DomainFlags,
    /// A name for people; at most [`MAX_NAME_LEN`] bytes of UTF-8.
    pub name: String,
    /// The most guest frames the domain may own; also the size of its guest
    /// RAM. Nested page-table and log-dirty frames do not count.
    pub max_frames: u64,
    /// The domain's memory, bottom-up: data, L1, L2, L3, L4 (a PV domain),
    /// then P2m and LogDirty (an HVM domain).
    pub runs: Vec<MemRun>,
    /// Pinned page tables (see `v1_0::Domain::pinned`); none for an HVM
    /// domain.
    pub pinned: Vec<PinnedTable>,
    /// Machine frames outside RAM that the domain may map (see
    /// `v1_2::Domain::mmio`).
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
    /// The first guest frame of the domain's PCI hole (see
    /// `v1_2::Domain::hole`).
    pub hole: Gpfn,
    /// Device frames mapped in the hole at guest frame == machine frame
    /// (see `v1_2::Domain::identity`); for an HVM domain, the only present
    /// entries of its nested tables in the hole.
    pub identity: Vec<MfnRange>,
    /// `None` for a PV domain; what an HVM domain has besides.
    pub hvm: Option<HvmDomain>,
}

/// What an HVM domain has that a PV domain does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HvmDomain {
    /// The root (the level-4 table) of the domain's nested page tables: a
    /// frame of one of its [`RunKind::P2m`] runs.
    pub ncr3: Mfn,
    /// The architectural state of each vCPU, in the order of the domain's
    /// `vcpus` (as many).
    pub vcpus: Vec<HvmContext>,
    /// The log-dirty bitmap, while log-dirty mode is on; `None` when it is
    /// off.
    pub log_dirty: Option<LogDirty>,
}

/// Where an HVM domain's log-dirty bitmap is.
///
/// The bitmap has one bit per RAM index of the domain (`hvlu_types::hole`):
/// bit `i` is bit `i % 8` of byte `i / 8` of the bitmap, which is the
/// frames of `bitmap` one after the other; set means RAM index `i` was
/// written since the bitmap was last cleaned. It has exactly
/// `ceil(max_frames / 32768)` frames ([`LogDirty::frames_for`]); bits past
/// `max_frames` mean nothing. Its frames are the domain's
/// [`RunKind::LogDirty`] runs, and nothing else is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogDirty {
    /// The bitmap's machine frames.
    pub bitmap: MfnRange,
}

impl LogDirty {
    /// The frames a bitmap for a domain of `max_frames` RAM frames has.
    pub const fn frames_for(max_frames: u64) -> u64 {
        max_frames.div_ceil(LOG_DIRTY_BITS_PER_FRAME)
    }
}

impl HvmDomain {
    /// The record an HVM domain's vCPU `id` has in the domain's `vcpus`:
    /// its id, flags and pending events, every register zero and `cr3` the
    /// domain's nested root `ncr3` (its registers are in
    /// [`HvmDomain::vcpus`]).
    pub const fn blank_vcpu(ncr3: Mfn, id: u32, flags: VcpuFlags, pending_events: u64) -> Vcpu {
        Vcpu {
            id,
            regs: GpRegs {
                rax: 0,
                rbx: 0,
                rcx: 0,
                rdx: 0,
                rsi: 0,
                rdi: 0,
                rbp: 0,
                r8: 0,
                r9: 0,
                r10: 0,
                r11: 0,
                r12: 0,
                r13: 0,
                r14: 0,
                r15: 0,
            },
            rip: 0,
            rflags: 0,
            rsp: 0,
            cr3: ncr3,
            fs_base: 0,
            gs_base: 0,
            kernel_gs_base: 0,
            pending_events,
            flags,
        }
    }
}

impl Domain {
    /// Total frames in the domain's runs (saturating), nested page tables
    /// and log-dirty bitmap included: every frame the domain owns.
    pub fn frames(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.count))
    }

    /// Frames in the runs that have guest frames (saturating): what
    /// `max_frames` limits.
    pub fn guest_frames(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.kind.has_guest_frames())
            .fold(0u64, |sum, r| sum.saturating_add(r.count))
    }

    /// Whether the domain is an HVM domain.
    pub const fn is_hvm(&self) -> bool {
        self.hvm.is_some()
    }

    /// Whether the domain needs ABI 1.3 to be described: an HVM domain, or
    /// a run or pin of a kind 1.3 added.
    pub fn needs_1_3(&self) -> bool {
        self.hvm.is_some()
            || self.runs.iter().any(|r| !r.kind.before_1_3())
            || self.pinned.iter().any(|p| !p.level.before_1_3())
    }

    /// The domain's guest memory map, from its hole and its limit.
    pub fn memory_map(&self) -> GuestMemoryMap {
        memory_map(self.hole, self.max_frames)
    }

    /// See `v1_2::Domain::has_default_access`.
    pub fn has_default_access(&self, devices: &[PciDevice]) -> (bool, bool) {
        v1_2::has_default_access(self.flags, self.hole, &self.mmio, &self.identity, devices)
    }

    /// See `v1_2::Domain::set_default_access`.
    pub fn set_default_access(&mut self, devices: &[PciDevice]) {
        self.mmio = default_mmio(self.flags, devices);
        self.identity = default_identity(self.flags, devices, self.hole);
    }

    /// The frames of the domain's runs of `kind`, in run order.
    pub fn frames_of(&self, kind: RunKind) -> impl Iterator<Item = Mfn> + '_ {
        self.runs
            .iter()
            .filter(move |r| r.kind == kind)
            .flat_map(|r| (0..r.count).map(move |i| Mfn(r.first_mfn.0 + i)))
    }
}

impl From<v1_2::Domain> for Domain {
    fn from(d: v1_2::Domain) -> Domain {
        let v1_2::Domain {
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
            hole,
            identity,
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
            hole,
            identity,
            hvm: None,
        }
    }
}

/// A 1.2 state in 1.3's types: every domain PV.
impl From<v1_2::HandoverState> for HandoverState {
    fn from(s: v1_2::HandoverState) -> HandoverState {
        HandoverState {
            machine: s.machine,
            globals: s.globals,
            domains: s.domains.into_iter().map(Domain::from).collect(),
            retired: s.retired,
            devices: s.devices,
        }
    }
}

/// A 1.1 state in 1.3's types, through 1.2's.
impl From<super::v1_1::HandoverState> for HandoverState {
    fn from(s: super::v1_1::HandoverState) -> HandoverState {
        v1_2::HandoverState::from(s).into()
    }
}

/// A 1.0 state in 1.3's types, through 1.2's.
impl From<super::v1_0::HandoverState> for HandoverState {
    fn from(s: super::v1_0::HandoverState) -> HandoverState {
        v1_2::HandoverState::from(s).into()
    }
}
