//! Body of ABI version 1.0 — **frozen**: `tests/golden/v1_0.bin` holds a blob
//! of it. Do not change a type, a field, its order or a variant here; add a
//! new version module instead (see [`crate::body`]).
//!
//! Postcard writes the fields in declaration order: unsigned integers as
//! LEB128 varints (`u8` as one raw byte), `String`/`Vec` as a varint length
//! then the elements, enums as a varint variant index then the variant's
//! fields, newtypes as their inner value. `docs/abi.md` lists every field.
//!
//! The invariants a decoded state must meet are checked by
//! [`HandoverState::validate`]; each is documented on the field it concerns.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::types::{MemRun, RunKind};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

/// Most bytes a domain name may have.
pub const MAX_NAME_LEN: usize = 32;

/// Everything the outgoing hypervisor hands to the incoming one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverState {
    /// The machine as the producer saw it, and where the update sits in it.
    pub machine: Machine,
    /// Hypervisor-wide state that must continue.
    pub globals: HvGlobals,
    /// Every domain, in any order. Domain ids are unique.
    pub domains: Vec<Domain>,
}

/// The physical machine and the live-update region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The RAM map (firmware memory map) as the producer saw it, in bytes.
    /// Entries are non-empty, do not wrap around, and are sorted by base
    /// without overlapping.
    pub ram_map: Vec<RamRange>,
    /// The live-update region and what it holds.
    pub region: LuRegion,
}

/// One entry of the RAM map: `[base, base + size)` in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RamRange {
    /// Physical address of the first byte.
    pub base: u64,
    /// Number of bytes; never zero.
    pub size: u64,
    /// What the firmware says the range is.
    pub kind: RamType,
}

impl RamRange {
    /// One past the last byte, or `None` if that wraps around.
    pub const fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
}

/// The type of a RAM map entry, after the E820 types.
///
/// Only [`RamType::Usable`] is RAM for the invariants: domain memory and the
/// live-update region lie in it, MMIO ranges lie outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RamType {
    /// Usable RAM (E820 type 1).
    Usable,
    /// Reserved by the firmware (E820 type 2).
    Reserved,
    /// ACPI tables, reclaimable once read (E820 type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (E820 type 4).
    AcpiNvs,
    /// Memory reported bad (E820 type 5).
    Unusable,
    /// Any other E820 type, kept as the firmware gave it.
    Other(u32),
}

impl RamType {
    /// The type of an E820 entry type number.
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RamType::Usable,
            2 => RamType::Reserved,
            3 => RamType::AcpiReclaimable,
            4 => RamType::AcpiNvs,
            5 => RamType::Unusable,
            other => RamType::Other(other),
        }
    }
}

/// The live-update region: one physically contiguous range reserved at boot,
/// from which the early allocators of every image draw.
///
/// Invariants: `base` and `size` are multiples of [`crate::PAGE_SIZE`]; the
/// region lies in usable RAM; `image` and `state` are non-empty, lie inside
/// the region and do not overlap each other; the state range is large enough
/// for the whole blob (header and body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LuRegion {
    /// Physical address of the region's first byte.
    pub base: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// The frames that hold the incoming image.
    pub image: MfnRange,
    /// The frames that hold this blob (header first).
    pub state: MfnRange,
}

impl LuRegion {
    /// The frames of the region (`None` if it wraps around `u64`).
    pub const fn frames(&self) -> Option<MfnRange> {
        match self.base.checked_add(self.size) {
            Some(_) => Some(MfnRange::new(
                Mfn::containing(self.base),
                self.size >> hvlu_types::PAGE_SHIFT,
            )),
            None => None,
        }
    }
}

/// Hypervisor-wide state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HvGlobals {
    /// The id the next created domain gets; above every domain's id.
    pub next_domid: DomId,
    /// Where the time of the outgoing hypervisor stood, so that guest time
    /// continues.
    pub time: TimeBase,
}

/// A point in time read at the moment of serialising.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeBase {
    /// The TSC value at that moment.
    pub tsc: u64,
    /// TSC frequency in kHz; never zero.
    pub tsc_khz: u64,
    /// The hypervisor's system time in nanoseconds at that moment.
    pub system_time_ns: u64,
}

/// One domain and everything needed to rebuild it around its memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain's id; unique and below [`HvGlobals::next_domid`].
    pub id: DomId,
    /// Domain flags; only known bits, and [`DomainFlags::PV`] set in v1.0.
    pub flags: DomainFlags,
    /// A name for people; at most [`MAX_NAME_LEN`] bytes of UTF-8.
    pub name: String,
    /// The most frames the domain may own (its runs together, page tables
    /// included).
    pub max_frames: u64,
    /// The domain's memory, bottom-up: all [`RunKind::Data`] runs, then L1,
    /// L2, L3, L4. Each run is non-empty, lies in usable RAM outside the
    /// live-update region, and overlaps no other run of any domain in machine
    /// frames nor another run of this domain in guest frames.
    pub runs: Vec<MemRun>,
    /// Pinned page tables: each names a page-table level and a frame that
    /// lies in a run of exactly that kind; no frame is pinned twice.
    pub pinned: Vec<PinnedTable>,
    /// Machine frames outside RAM that the domain may map (device MMIO).
    /// Each range is non-empty, below 2^52 bytes and overlaps no usable RAM.
    /// These frames are never owned, counted or released.
    pub mmio: Vec<MfnRange>,
    /// Guest frame of the start-info page; lies in one of the domain's data runs.
    pub start_info: Gpfn,
    /// The domain's virtual CPUs; ids are unique.
    pub vcpus: Vec<Vcpu>,
    /// Positions in the domain's console rings.
    pub console: ConsoleRing,
}

impl Domain {
    /// Total frames in the domain's runs (saturating).
    pub fn frames(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.count))
    }
}

/// Flags of a domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DomainFlags(pub u32);

impl DomainFlags {
    /// The domain may control others (dom0).
    pub const PRIVILEGED: DomainFlags = DomainFlags(1 << 0);
    /// The domain is paravirtualised (every domain of v1.0 is).
    pub const PV: DomainFlags = DomainFlags(1 << 1);
    /// Every bit this version knows.
    pub const KNOWN: DomainFlags = DomainFlags(Self::PRIVILEGED.0 | Self::PV.0);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: DomainFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits this version does not know (zero in a valid state).
    pub const fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN.0
    }

    /// The union of both sets of flags.
    pub const fn union(self, other: DomainFlags) -> DomainFlags {
        DomainFlags(self.0 | other.0)
    }
}

/// A page-table frame the guest has pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PinnedTable {
    /// The pinned frame.
    pub mfn: Mfn,
    /// Its level: a page-table kind (L1..L4), never data.
    pub level: RunKind,
}

/// The state of one virtual CPU of a PV domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vcpu {
    /// The vCPU's id within its domain; unique in the domain.
    pub id: u32,
    /// General-purpose registers other than `rsp`.
    pub regs: GpRegs,
    /// Instruction pointer.
    pub rip: u64,
    /// Flags register.
    pub rflags: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// The root page table: lies in one of the domain's L4 runs.
    pub cr3: Mfn,
    /// FS segment base.
    pub fs_base: u64,
    /// GS segment base in effect.
    pub gs_base: u64,
    /// The other GS base, swapped in by `swapgs` (the guest kernel's).
    pub kernel_gs_base: u64,
    /// Bitmap of pending events (event channels 0..64).
    pub pending_events: u64,
    /// vCPU flags; only known bits.
    pub flags: VcpuFlags,
}

/// The register file, defined once for every layer (see `hvlu_types::GpRegs`);
/// its wire shape is fixed by the golden blob of this version.
pub use hvlu_types::GpRegs;

/// Flags of a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VcpuFlags(pub u32);

impl VcpuFlags {
    /// The vCPU has been brought up and is scheduled.
    pub const ONLINE: VcpuFlags = VcpuFlags(1 << 0);
    /// The vCPU is blocked waiting for an event.
    pub const BLOCKED: VcpuFlags = VcpuFlags(1 << 1);
    /// Every bit this version knows.
    pub const KNOWN: VcpuFlags = VcpuFlags(Self::ONLINE.0 | Self::BLOCKED.0);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: VcpuFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits this version does not know (zero in a valid state).
    pub const fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN.0
    }

    /// The union of both sets of flags.
    pub const fn union(self, other: VcpuFlags) -> VcpuFlags {
        VcpuFlags(self.0 | other.0)
    }
}

/// Producer and consumer positions of a domain's console rings (free-running
/// counters, as in Xen's `xencons_interface`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsoleRing {
    /// Input ring: next byte the guest reads.
    pub in_cons: u32,
    /// Input ring: next byte the hypervisor writes.
    pub in_prod: u32,
    /// Output ring: next byte the hypervisor reads.
    pub out_cons: u32,
    /// Output ring: next byte the guest writes.
    pub out_prod: u32,
}
