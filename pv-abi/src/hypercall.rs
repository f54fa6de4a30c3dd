//! Hypercalls: numbers, arguments and error codes.
//!
//! A PV guest makes a hypercall with `syscall`: the number in `rax`, up to
//! five arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8` (`rcx` and `r11` are
//! clobbered by `syscall` itself). The result comes back in `rax`: a value
//! `>= 0` on success, or the negated [`Error`] code. Every other register is
//! preserved.
//!
//! Every pointer argument is a guest virtual address; the hypervisor checks
//! that the whole buffer lies in memory the caller owns and has mapped, and
//! refuses with [`Error::BadAddress`] otherwise.
//!
//! How the argument words decode, what bounds each length and which words
//! are refused, is [`crate::call`]'s: the hypervisor decodes every call
//! there, and the guests encode theirs there. A call only dom0 may make
//! ([`Hypercall::dom0_only`]) is refused to any other domain with
//! [`Error::Permission`] before its arguments are looked at.

/// Hypercall numbers; `Hypercall::from_repr(n)` is the hypercall with
/// number `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(u64)]
pub enum Hypercall {
    /// `console_write(buf, len)`: prints bytes on the console, prefixed with
    /// the caller's `(dN)`. Returns the number of bytes written.
    ConsoleWrite = 1,
    /// `console_read(buf, len)`: reads waiting console input (dom0 only
    /// receives input). Returns the number of bytes read, 0 if none.
    ConsoleRead = 2,
    /// `yield()`: gives up the rest of the time slice.
    Yield = 3,
    /// `mmu_update(reqs, count)`: writes page-table entries, see
    /// [`MmuUpdate`]. Returns the number of requests done; stops at the
    /// first refused one and returns its error. An L1 entry may map device
    /// memory (a frame outside RAM) only inside the caller's I/O memory
    /// ([`Error::Permission`] otherwise) and only uncacheable: PCD and PWT
    /// set, PAT clear ([`Error::TypeViolation`] otherwise).
    MmuUpdate = 4,
    /// `pin_table(mfn, level)`: validates and pins a page table of `level`
    /// (1..=4) that the caller owns. The caller's start-info page is refused
    /// with [`Error::Permission`]: it must stay a data frame.
    PinTable = 5,
    /// `unpin_table(mfn)`: drops the pin.
    UnpinTable = 6,
    /// `new_baseptr(mfn)`: switches the calling vCPU to the pinned L4 `mfn`.
    NewBaseptr = 7,
    /// `increase_reservation(mfns_out, count)`: gives the caller up to
    /// `count` (at most 512) new zeroed frames (writes their mfns). Returns
    /// the number given; [`Error::Limit`] if they would take the caller past
    /// its memory limit, [`Error::NoMemory`] if no frame (or no hypervisor
    /// memory for the answer) is left.
    IncreaseReservation = 8,
    /// `decrease_reservation(mfns, count)`: gives frames back (at most 512).
    /// A frame that is still mapped, typed or pinned is refused
    /// ([`Error::Busy`]), and so is the caller's start-info page, always
    /// ([`Error::Permission`]): the handover state of a live update must
    /// find it among the caller's data frames.
    DecreaseReservation = 9,
    /// `domctl(op, arg0, arg1, arg2)`: domain control, dom0 only; see
    /// [`DomctlOp`].
    Domctl = 10,
    /// `shutdown(code)`: ends the calling domain (0 = clean).
    Shutdown = 11,
    /// `poweroff()`: ends the whole system, dom0 only; the hypervisor prints
    /// a summary of every domain's reports and exits.
    Poweroff = 12,
    /// `report(kind, value)`: a guest's self-check result, see [`Report`].
    Report = 13,
    /// `set_segment_base(which, base)`: sets the FS (0) or GS (1) base of the
    /// calling vCPU to a lower-half address.
    SetSegmentBase = 14,
    /// `sysinfo(buf, len)`: fills a [`SysInfo`].
    SysInfo = 15,
    /// `lu_load(name, len, force)`: validates boot module `name` as a
    /// hypervisor image and stages it in the live-update region (dom0
    /// only). Nothing is paused. A refused image leaves the system as it
    /// was; the reason is in [`LuStatus::message`]. The build an update went
    /// to that was rolled back after a reset is refused unless `force` is 1
    /// (the word was unused before it, so callers that leave it 0 are
    /// unchanged).
    LuLoad = 16,
    /// `lu_status(buf, len)`: fills a [`LuStatus`] (dom0 only).
    LuStatus = 17,
    /// `lu_unload()`: forgets the staged image (dom0 only).
    LuUnload = 18,
    /// `lu_exec()`: performs the update to the staged image (dom0 only).
    /// Returns 0 in the new hypervisor; an error means the update was
    /// cancelled before the point of no return and every domain runs on.
    LuExec = 19,
    /// `hostlink_read(buf, len)`: bytes waiting on the host link (a
    /// virtio-serial port, or the second serial port), 0 if none (dom0
    /// only).
    HostlinkRead = 20,
    /// `hostlink_write(buf, len)`: sends to the host as many of the bytes
    /// (at most 4096) as the link takes without waiting; returns how many,
    /// 0 while the host is not reading (dom0 only). The hypervisor never
    /// waits on the link: the caller retries, and gives up, as it sees fit.
    HostlinkWrite = 21,
    /// `lu_load_buffer(buf, len)`: like [`Hypercall::LuLoad`], with the image
    /// in the caller's memory instead of a boot module (dom0 only). The
    /// bytes are copied straight into the live-update region: an image that
    /// does not fit there is refused with the sizes, whatever its length.
    LuLoadBuffer = 22,
    /// `last_error(buf, len)`: the reason the caller's last refused
    /// `domctl`, `read_guest` or live-update call (`lu_load`,
    /// `lu_load_buffer`, `lu_unload`, `lu_exec`) was refused, as text, at most
    /// [`MAX_ERROR_MESSAGE`] bytes (dom0 only). Copies up to `len` bytes and
    /// returns the message's whole length: a result above `len` means the
    /// copy is cut. Empty after a call that succeeded.
    LastError = 23,
    /// `memory_map(domid, entries, count)`: fills up to `count`
    /// [`MemoryMapEntry`]s with domain `domid`'s memory map — its RAM, its
    /// PCI hole, the device memory mapped identity inside the hole
    /// ([`MapKind`]) — sorted by address, disjoint. A domU may ask for
    /// itself only (another `domid` is refused with [`Error::Permission`]);
    /// dom0 may ask for any domain ([`Error::NotFound`] for none). Returns
    /// the number of entries; a `count` below it is refused with
    /// [`Error::TooSmall`] and nothing is written.
    MemoryMap = 25,
    /// `machine_memory_map(entries, count)`: fills up to `count`
    /// [`MemoryMapEntry`]s with the machine's memory map as the hypervisor
    /// read it, each `kind` the firmware's E820 type (1 RAM, 2 reserved,
    /// 3 ACPI reclaimable, 4 ACPI NVS, 5 unusable, others as given); dom0
    /// only. Returns the number of entries; a `count` below it is refused
    /// with [`Error::TooSmall`] and nothing is written. After a live update
    /// the hypervisor knows the map its predecessor handed over (the
    /// state's RAM map, docs/abi.md §2.3).
    MachineMemoryMap = 26,
    /// `devices(out, count)`: fills up to `count` [`DeviceInfo`]s, one per
    /// PCI function the hypervisor found at boot, in address order; returns
    /// how many there are (dom0 only).
    Devices = 24,
    /// `read_guest(domid, gpfn, offset, buf, len)`: copies up to `len`
    /// bytes of domain `domid`'s guest frame `gpfn`, from byte `offset` of
    /// the frame (below 4096; the copy stops at the frame's end), into the
    /// caller's buffer (dom0 only; what dom0's `peek` prints). Returns the
    /// number of bytes copied. The hypervisor translates the gpfn itself
    /// (a PV domain's p2m; an HVM domain's nested tables, issue #16) and
    /// reads only RAM the domain owns; each refusal says why
    /// (`last_error`):
    ///
    /// | the gpfn is | error |
    /// |---|---|
    /// | in the domain's PCI hole, no device memory there | [`Error::Invalid`] |
    /// | past the domain's RAM (its memory limit) | [`Error::Invalid`] |
    /// | device memory mapped identity in the hole (a BAR: dom0 maps device memory itself, this call never reads a device register) | [`Error::Permission`] |
    /// | a RAM frame the domain does not have (never had, or gave back) | [`Error::NotFound`] |
    ///
    /// and a `domid` with no domain is [`Error::NotFound`].
    ReadGuest = 27,
}

/// Longest reason [`Hypercall::LastError`] gives; the hypervisor shortens a
/// longer one and says so at its end.
pub const MAX_ERROR_MESSAGE: usize = 1024;

impl Hypercall {
    /// Whether only dom0 may make this call: any other caller is refused
    /// with [`Error::Permission`], whatever its arguments (the hypervisor
    /// checks this before it decodes them).
    pub fn dom0_only(self) -> bool {
        use Hypercall::*;
        matches!(
            self,
            ConsoleRead
                | Domctl
                | Poweroff
                | LuLoad
                | LuStatus
                | LuUnload
                | LuExec
                | HostlinkRead
                | HostlinkWrite
                | LuLoadBuffer
                | LastError
                | MachineMemoryMap
                | Devices
                | ReadGuest
        )
    }
}

/// Why a hypercall was refused. Returned negated in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(i64)]
pub enum Error {
    /// The caller is not allowed to do this (not dom0; or, from
    /// `mmu_update`, a mapping of device memory outside its I/O memory).
    Permission = 1,
    /// No such hypercall or sub-operation.
    NoSys = 2,
    /// A pointer argument is outside the caller's memory.
    BadAddress = 3,
    /// An argument is out of range.
    Invalid = 4,
    /// The frame is not the caller's.
    NotOwner = 5,
    /// The entry would break the page-type rules (see frame-ownership).
    TypeViolation = 6,
    /// The frame is still in use (mapped, typed or pinned).
    Busy = 7,
    /// Out of memory.
    NoMemory = 8,
    /// No such domain, module or object.
    NotFound = 9,
    /// The domain's memory limit is reached.
    Limit = 10,
    /// The operation failed for a reason the hypervisor logged.
    Failed = 11,
    /// The buffer is too small for the result.
    TooSmall = 12,
}

impl Error {
    /// The error a negative `rax` stands for.
    pub fn from_code(code: i64) -> Option<Error> {
        code.checked_neg().and_then(Error::from_repr)
    }

    /// A short name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Error::Permission => "permission denied",
            Error::NoSys => "no such hypercall",
            Error::BadAddress => "bad address",
            Error::Invalid => "invalid argument",
            Error::NotOwner => "frame not owned by caller",
            Error::TypeViolation => "page type violation",
            Error::Busy => "frame busy",
            Error::NoMemory => "out of memory",
            Error::NotFound => "not found",
            Error::Limit => "memory limit reached",
            Error::Failed => "failed",
            Error::TooSmall => "buffer too small",
        }
    }
}

/// One `mmu_update` request: write `val` into the page-table entry at
/// machine address `ptr` (the entry's frame `<< 12 | index * 8`). The
/// hypervisor reads it from the guest's bytes and checks it with
/// [`MmuUpdate::decode`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct MmuUpdate {
    /// Machine address of the entry.
    pub ptr: u64,
    /// New entry value.
    pub val: u64,
}

/// `domctl` operations; `DomctlOp::from_repr(n)` is the operation with
/// number `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(u64)]
pub enum DomctlOp {
    /// `create(name_ptr, name_len, mem_kib)`: builds a domain from the boot
    /// module `name` with `mem_kib` KiB (a multiple of 4; 0 and sizes below
    /// what the module needs are refused). Returns the new domain id.
    Create = 1,
    /// `destroy(id)`.
    Destroy = 2,
    /// `pause(id)`.
    Pause = 3,
    /// `unpause(id)`.
    Unpause = 4,
    /// `list(buf, count)`: fills up to `count` [`DomainInfo`]; returns how
    /// many domains there are.
    List = 5,
    /// `modules(buf, len)`: the boot-module names, newline separated;
    /// returns the length.
    Modules = 6,
    /// `iomem_permit(id, first_mfn, count, allow)`: grants (`allow` 1) or
    /// revokes (`allow` 0) domain `id`'s permission to map the device
    /// frames `first_mfn..first_mfn + count` (its I/O memory, like Xen's
    /// `iomem_caps`; `count` not 0). The range must be device memory — all
    /// inside one memory BAR the hypervisor recorded; a RAM frame never is
    /// — and `id` another domain than dom0 (which holds every BAR for
    /// good). A revoke is refused while the domain's L1 tables still map a
    /// frame of the range. Every refusal says why (`last_error`).
    IomemPermit = 9,
    /// `log_dirty(id, op, out, count)`: log-dirty tracking of HVM domain
    /// `id`, as live migration uses it (Xen's `shadow_op`): `op` 0 starts
    /// it (every RAM page write-protected in the nested tables, the bitmap
    /// empty; a write then marks the page dirty and makes it writable
    /// again), 1 peeks (the dirty count; the first dirty gpfns, ascending,
    /// to `out`), 2 cleans (a peek, then the bitmap emptied and every page
    /// write-protected again), 3 stops it (every page writable, the bitmap
    /// freed). Returns the dirty count (0 for on and off). Refused for a
    /// PV domain (`Invalid`), a domain that is not tracked (peek, clean,
    /// off: `Invalid`), one already tracked (on: `Busy`).
    LogDirty = 10,
}

/// One domain, as `domctl list` reports it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromZeros,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct DomainInfo {
    /// Domain id.
    pub id: u16,
    /// 1 if paused.
    pub paused: u8,
    /// Flags: [`DOMINFO_PRIVILEGED`], [`DOMINFO_HVM`]. (Before issue #16
    /// this byte was "1 if privileged"; no dom0 of any release reads it.)
    pub flags: u8,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Frames owned.
    pub frames: u64,
    /// Memory limit in frames.
    pub max_frames: u64,
    /// The domain's name, NUL padded.
    pub name: [u8; 32],
}

/// [`DomainInfo::flags`]: the domain is dom0.
pub const DOMINFO_PRIVILEGED: u8 = 1 << 0;
/// [`DomainInfo::flags`]: the domain is HVM (AMD SVM with nested paging).
pub const DOMINFO_HVM: u8 = 1 << 1;

/// What a [`MemoryMapEntry`] of a domain's memory map (`memory_map`) is;
/// `MapKind::from_repr(n)` is the kind with number `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(u32)]
pub enum MapKind {
    /// RAM of the domain: below its PCI hole, and from 4 GiB for a domain
    /// larger than the hole's start.
    Ram = 1,
    /// The PCI hole, `[start, 4 GiB)`, where no RAM is: its guest frames
    /// have no frame, but for device memory mapped there.
    PciHole = 2,
    /// Device memory (a BAR given to the domain) mapped identity (guest
    /// frame == machine frame) inside the PCI hole.
    Device = 3,
}

impl MapKind {
    /// A short name, as dom0 prints it.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Ram => "ram",
            MapKind::PciHole => "pci-hole",
            MapKind::Device => "device",
        }
    }
}

/// One entry of a memory map (`memory_map`, `machine_memory_map`), after
/// E820: bytes `[base, base + size)` and their kind — a [`MapKind`] for a
/// domain's map, the firmware's E820 type for the machine's.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct MemoryMapEntry {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the bytes are.
    pub kind: u32,
    /// 0.
    pub reserved: u32,
}

hvlu_types::assert_layout!(MemoryMapEntry, 24, { base: 0, size: 8, kind: 16, reserved: 20 });

impl MemoryMapEntry {
    /// Bytes `[base, base + size)` of a domain's map, of `kind`.
    pub const fn new(base: u64, size: u64, kind: MapKind) -> MemoryMapEntry {
        MemoryMapEntry {
            base,
            size,
            kind: kind as u32,
            reserved: 0,
        }
    }

    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// The name of an E820 type of the machine's memory map
/// (`machine_memory_map`), `None` for a type E820 does not name.
pub fn e820_name(kind: u32) -> Option<&'static str> {
    Some(match kind {
        1 => "ram",
        2 => "reserved",
        3 => "acpi",
        4 => "acpi-nvs",
        5 => "unusable",
        _ => return None,
    })
}

/// One BAR of a [`DeviceInfo`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromZeros,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct BarInfo {
    /// Its base address (a port number for an I/O BAR).
    pub base: u64,
    /// Bytes it decodes: whole pages for a memory BAR; 0 for an I/O BAR
    /// whose size the hypervisor does not know (read after an update).
    pub size: u64,
    /// `BAR_*` flags; 0 for a BAR slot that decodes nothing (or the upper
    /// half of a 64-bit BAR).
    pub flags: u32,
    /// How many domains may map (some of) it: the length of the whole list,
    /// of which `mappable` holds the first [`MAX_MAPPABLE`].
    pub mappable_count: u16,
    /// The ids of the domains whose I/O memory holds (some of) its frames,
    /// in id order.
    pub mappable: [u16; MAX_MAPPABLE],
}

/// Domain ids one [`BarInfo`] lists.
pub const MAX_MAPPABLE: usize = 5;
/// [`BarInfo::flags`]: the slot decodes something.
pub const BAR_PRESENT: u32 = 1 << 0;
/// [`BarInfo::flags`]: I/O ports, not memory.
pub const BAR_IO: u32 = 1 << 1;
/// [`BarInfo::flags`]: a 64-bit memory BAR (it takes the next slot too).
pub const BAR_64: u32 = 1 << 2;
/// [`BarInfo::flags`]: prefetchable memory.
pub const BAR_PREFETCHABLE: u32 = 1 << 3;
/// BAR slots of a [`DeviceInfo`] (a type-0 header's).
pub const BARS: usize = 6;

/// One PCI function, as `devices` reports it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromZeros,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct DeviceInfo {
    /// Bus << 8 | device << 3 | function.
    pub bdf: u16,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Base class << 8 | subclass.
    pub class: u16,
    /// Its BARs, by index.
    pub bars: [BarInfo; BARS],
}

/// Guest self-check reports, `report(kind, value)`;
/// `Report::from_repr(n)` is the report kind with number `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(u64)]
pub enum Report {
    /// Total memory checks done so far (must never go back).
    Checks = 1,
    /// Mismatches found so far (must stay 0).
    Mismatches = 2,
    /// A refusal test passed: the hypercall was refused with the expected
    /// error (value = test number).
    ExpectedRefusal = 3,
    /// A refusal test failed (value = test number).
    UnexpectedResult = 4,
    /// The guest is about to fault on purpose (fault-isolation test): its
    /// next exception ends it without counting as a failure.
    ExpectFault = 5,
}

/// System information, `sysinfo(buf, len)`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromZeros,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct SysInfo {
    /// Free frames in the page allocator.
    pub free_frames: u64,
    /// Frames owned by domains.
    pub owned_frames: u64,
    /// Number of domains.
    pub domains: u64,
    /// Hypervisor build id (first 8 bytes).
    pub build_id: u64,
    /// Timer ticks since boot of this hypervisor instance.
    pub ticks: u64,
    /// Timer ticks per second.
    pub tick_hz: u64,
}

/// Live-update status, `lu_status(buf, len)`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    zerocopy::FromZeros,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct LuStatus {
    /// 1 if an image is staged.
    pub loaded: u64,
    /// The running image's build id.
    pub running_build_id: [u8; 16],
    /// The staged image's build id.
    pub staged_build_id: [u8; 16],
    /// ABI range the staged image reads: min major, min minor, max major,
    /// max minor.
    pub staged_reads: [u16; 4],
    /// The version the update will write: major, minor, 0, 0.
    pub version: [u16; 4],
    /// The live-update capacity: the region's largest free gap, in bytes.
    pub capacity: u64,
    /// Bytes of the staged image span.
    pub image_bytes: u64,
    /// Bytes of the handover area: what the update keeps beside the image
    /// (the argument and trampoline pages, the entry tables, and room for
    /// the state: twice the estimate at load, plus a page) — the figure the
    /// hypervisor's `lu: loaded` line gives too, the same at either end of
    /// the region it is staged at.
    pub handover_bytes: u64,
    /// Bytes the state would take now.
    pub state_needed: u64,
    /// Updates since cold boot.
    pub sequence: u64,
    /// The last refusal or failure, NUL padded.
    pub message: [u8; 128],
}

impl Default for LuStatus {
    fn default() -> Self {
        LuStatus {
            loaded: 0,
            running_build_id: [0; 16],
            staged_build_id: [0; 16],
            staged_reads: [0; 4],
            version: [0; 4],
            capacity: 0,
            image_bytes: 0,
            handover_bytes: 0,
            state_needed: 0,
            sequence: 0,
            message: [0; 128],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_negative_rax_is_its_error_and_nothing_else_is_one() {
        for code in 1..=12 {
            let e = Error::from_code(-code).unwrap();
            assert_eq!(e as i64, code);
        }
        for code in [0, 1, 12, -13, i64::MIN, i64::MAX] {
            assert_eq!(Error::from_code(code), None, "{code}");
        }
    }
}
