//! Hypercall arguments, decoded: a raw call — its number and the five
//! argument words of [`crate::hypercall`]'s convention — becomes one
//! [`Call`], a variant per hypercall with typed fields, or a
//! [`DecodeError`] that says which argument is wrong.
//!
//! The hypervisor decodes every call once, before any handler runs, and its
//! handlers take the typed fields. Only what depends on the argument words
//! alone is checked here; what needs the hypervisor's state is checked after
//! decoding, by the hypervisor: whether the caller is dom0
//! ([`Hypercall::dom0_only`], checked *before* decoding, so that another
//! domain gets [`Error::Permission`] whatever its arguments), whether a
//! buffer lies in the caller's memory ([`Error::BadAddress`]), whether a
//! frame or a domain exists and whose it is.
//!
//! Two kinds of bounds:
//!
//! - **cut**: a longer length is taken as the bound, and the call does that
//!   much and says so in its result: `console_write` and `console_read`
//!   ([`MAX_CONSOLE_IO`]), `hostlink_read` ([`MAX_HOSTLINK_READ`]),
//!   `hostlink_write` ([`MAX_HOSTLINK_WRITE`]), the requests of
//!   `mmu_update` and the frames of `increase_reservation` and
//!   `decrease_reservation` ([`MAX_BATCH`]), the answers of `sysinfo`,
//!   `lu_status` and `last_error` (their size), `domctl list`
//!   ([`MAX_LIST`]), `devices` ([`MAX_DEVICES`]), the room of `memory_map`
//!   and `machine_memory_map` ([`MAX_MEMORY_MAP`]), the bytes of
//!   `read_guest` (up to the end of the guest frame);
//! - **refused** ([`Error::Invalid`]): `lu_load`'s module name
//!   ([`MAX_MODULE_NAME`]), `domctl create`'s name and command line ([`MAX_CREATE_ARGS`]) and its
//!   memory size (not 0, whole pages, at most [`MAX_DOMAIN_KIB`]) and its
//!   PCI hole (`hvlu_types::hole`: on 2 MiB, from 16 MiB, below 4 GiB),
//!   a domain id above `u16::MAX`, a page-table level outside 1..=4, a segment other
//!   than FS (0) or GS (1), a segment base in the upper half, an unknown
//!   report kind, `domctl iomem_permit` of no frame, of frames past
//!   [`MFN_LIMIT`] or with an `allow` word other than 0 or 1, a
//!   `read_guest` offset outside the page; an unknown hypercall or
//!   `domctl` operation is [`Error::NoSys`].
//!
//! Argument words a call does not use are ignored.
//!
//! What the hypervisor copies from the guest and then interprets has its own
//! decoder: the requests of `mmu_update` ([`MmuUpdate::decode`],
//! [`mmu_updates`]), the frame list of `decrease_reservation`
//! ([`mfn_list`]), `domctl create`'s name and command line
//! ([`CreateArgs::decode`]) and `lu_load`'s module name ([`module_name`]).
//!
//! [`Call::encode`] is the way back, which the guests' runtime makes its
//! calls with: a decoded call encodes to words that decode to the same
//! call.

use core::fmt;

use hvlu_types::canonical::is_lower_half;
use hvlu_types::hole::{Hole, HoleError};
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MFN_LIMIT, PAGE_SIZE};

use crate::hypercall::{
    DomctlOp, Error, Hypercall, LuStatus, MmuUpdate, Report, SysInfo, MAX_ERROR_MESSAGE,
};
use crate::start_info::CMDLINE_BYTES;

/// The five argument words, `rdi`, `rsi`, `rdx`, `r10`, `r8`.
pub type Args = [u64; 5];

/// Most bytes one `console_write` prints or one `console_read` reads.
pub const MAX_CONSOLE_IO: u64 = 4096;
/// Most bytes one `hostlink_read` reads.
pub const MAX_HOSTLINK_READ: u64 = 64 * 1024;
/// Most bytes one `hostlink_write` sends.
pub const MAX_HOSTLINK_WRITE: u64 = 4096;
/// Most requests one `mmu_update` handles, and most frames one
/// `increase_reservation` or `decrease_reservation` moves.
pub const MAX_BATCH: u64 = 512;
/// Most entries `domctl list` fills: there are no more domains than domain
/// ids.
pub const MAX_LIST: u64 = 1 << 16;
/// Most records `devices` fills: there are no more PCI functions than
/// addresses (256 buses of 32 devices of 8 functions).
pub const MAX_DEVICES: u64 = 1 << 16;
/// Longest module name `lu_load` takes, in bytes.
pub const MAX_MODULE_NAME: u64 = 256;
/// Most bytes of `domctl create`'s module name and command line together.
pub const MAX_CREATE_ARGS: u64 = 256;
/// Most memory of a domain, in KiB (1 GiB).
pub const MAX_DOMAIN_KIB: u64 = 1 << 20;
/// The memory dom0's toolstack gives a domU unless told otherwise, in KiB.
pub const DEFAULT_DOMU_KIB: u64 = 4096;
/// Most entries `memory_map` and `machine_memory_map` fill: more room is
/// fine, the answer is never longer (a domain's map has at most this many
/// entries, and the hypervisor keeps no more of the firmware's).
pub const MAX_MEMORY_MAP: u64 = 128;
/// Longest command line of a domain, in bytes (its start info holds it with
/// a NUL).
pub const MAX_CMDLINE: usize = CMDLINE_BYTES - 1;

/// `len` bytes at guest virtual address `addr`: the caller's buffer, which
/// the hypervisor reads or fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestBuf {
    /// Guest virtual address of the first byte.
    pub addr: u64,
    /// Length in bytes, within the call's bound.
    pub len: u64,
}

impl GuestBuf {
    /// `len` bytes at `addr`, refused with `too_long(len)` above `max`.
    fn at_most(
        addr: u64,
        len: u64,
        max: u64,
        too_long: impl FnOnce(u64) -> DecodeError,
    ) -> Result<GuestBuf, DecodeError> {
        if len > max {
            return Err(too_long(len));
        }
        Ok(GuestBuf { addr, len })
    }
}

/// `count` records at guest virtual address `addr` (each of the size the
/// call says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestArray {
    /// Guest virtual address of the first record.
    pub addr: u64,
    /// Number of records, within the call's bound.
    pub count: u64,
}

impl GuestArray {
    /// Room for `count` records at `addr`, cut at `max`.
    fn cut(addr: u64, count: u64, max: u64) -> GuestArray {
        GuestArray {
            addr,
            count: count.min(max),
        }
    }
}

/// A domain id argument: a number up to `u16::MAX`.
fn domain_id(arg: u64) -> Result<DomId, DecodeError> {
    u16::try_from(arg)
        .map(DomId)
        .map_err(|_| DecodeError::NotADomainId { arg })
}

/// A segment whose base `set_segment_base` sets (its first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(u64)]
pub enum Segment {
    /// FS.
    Fs = 0,
    /// GS.
    Gs = 1,
}

/// A `domctl` operation with its arguments (`arg0..arg2` of the call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domctl {
    /// Builds a domain of `kib` KiB (not 0, whole pages, at most
    /// [`MAX_DOMAIN_KIB`]) from the module named in `args` (at most
    /// [`MAX_CREATE_ARGS`] bytes, see [`CreateArgs`]), its PCI hole from
    /// `hole` (`arg3`: the hole's first byte; 0, what a caller from before
    /// the hole existed leaves in that word, is the default hole at 3 GiB).
    Create {
        /// The module name and command line.
        args: GuestBuf,
        /// The domain's memory in KiB.
        kib: u64,
        /// Its PCI hole; `None` for the default.
        hole: Option<Hole>,
    },
    /// Destroys domain `id`.
    Destroy {
        /// The domain.
        id: DomId,
    },
    /// Pauses domain `id`.
    Pause {
        /// The domain.
        id: DomId,
    },
    /// Unpauses domain `id`.
    Unpause {
        /// The domain.
        id: DomId,
    },
    /// Fills up to `out.count` (at most [`MAX_LIST`]) `DomainInfo`s.
    List {
        /// Where the entries go.
        out: GuestArray,
    },
    /// The boot-module names, if they fit in `out.len` bytes (a room: not
    /// cut, the answer is refused if it is longer).
    Modules {
        /// Where the names go.
        out: GuestBuf,
    },
    /// Grants (`allow`) or revokes domain `id`'s permission to map the
    /// `count` (not 0) device frames from `first`.
    IomemPermit {
        /// The domain.
        id: DomId,
        /// The first frame.
        first: Mfn,
        /// How many frames; `first + count` stays below
        /// [`hvlu_types::MFN_LIMIT`].
        count: u64,
        /// Grant (true) or revoke (false).
        allow: bool,
    },
    /// Log-dirty tracking of HVM domain `id` (Xen's `shadow_op`):
    /// `op`; for `peek` and `clean`, the first dirty guest frames go to
    /// `out` (at most [`MAX_DIRTY_OUT`]).
    LogDirty {
        /// The domain.
        id: DomId,
        /// What to do.
        op: LogDirtyOp,
        /// Where the first dirty gpfns (`u64`s) go.
        out: GuestArray,
    },
}

/// The most dirty guest frames one `domctl log_dirty` lists.
pub const MAX_DIRTY_OUT: u64 = 1 << 16;

/// What `domctl log_dirty` does (`LogDirtyOp::from_repr(n)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::FromRepr)]
#[repr(u64)]
pub enum LogDirtyOp {
    /// Starts tracking: every RAM page write-protected, the bitmap empty.
    Enable = 0,
    /// Reports the dirty pages (count and the first ones), changes nothing.
    Peek = 1,
    /// Reports them like `Peek`, then empties the bitmap and
    /// write-protects every page again.
    Clean = 2,
    /// Stops tracking: every page writable, the bitmap freed.
    Off = 3,
}

impl Domctl {
    /// The operation's number.
    pub fn op(&self) -> DomctlOp {
        match self {
            Domctl::Create { .. } => DomctlOp::Create,
            Domctl::Destroy { .. } => DomctlOp::Destroy,
            Domctl::Pause { .. } => DomctlOp::Pause,
            Domctl::Unpause { .. } => DomctlOp::Unpause,
            Domctl::List { .. } => DomctlOp::List,
            Domctl::Modules { .. } => DomctlOp::Modules,
            Domctl::IomemPermit { .. } => DomctlOp::IomemPermit,
            Domctl::LogDirty { .. } => DomctlOp::LogDirty,
        }
    }

    /// Decodes `domctl(op, arg0, arg1, arg2, arg3)`.
    fn decode(op: u64, a: [u64; 4]) -> Result<Domctl, DecodeError> {
        let op = DomctlOp::from_repr(op).ok_or(DecodeError::UnknownDomctl { op })?;
        let id = || domain_id(a[0]);
        Ok(match op {
            DomctlOp::Create => {
                let args = GuestBuf::at_most(a[0], a[1], MAX_CREATE_ARGS, |len| {
                    DecodeError::CreateArgsTooLong { len }
                })?;
                let kib = a[2];
                if kib == 0 {
                    return Err(DecodeError::ZeroMemory);
                }
                if !kib.is_multiple_of(4) {
                    return Err(DecodeError::PartialPage { kib });
                }
                if kib > MAX_DOMAIN_KIB {
                    return Err(DecodeError::TooMuchMemory { kib });
                }
                let hole = match a[3] {
                    0 => None,
                    addr => Some(Hole::at_addr(addr).map_err(DecodeError::Hole)?),
                };
                Domctl::Create { args, kib, hole }
            }
            DomctlOp::Destroy => Domctl::Destroy { id: id()? },
            DomctlOp::Pause => Domctl::Pause { id: id()? },
            DomctlOp::Unpause => Domctl::Unpause { id: id()? },
            DomctlOp::List => Domctl::List {
                out: GuestArray::cut(a[0], a[1], MAX_LIST),
            },
            DomctlOp::Modules => Domctl::Modules {
                out: GuestBuf {
                    addr: a[0],
                    len: a[1],
                },
            },
            DomctlOp::IomemPermit => {
                let id = id()?;
                let (first, count) = (a[1], a[2]);
                if count == 0 || first.checked_add(count).is_none_or(|end| end > MFN_LIMIT) {
                    return Err(DecodeError::IomemRange { first, count });
                }
                let allow = match a[3] {
                    0 => false,
                    1 => true,
                    arg => return Err(DecodeError::IomemAllow { arg }),
                };
                Domctl::IomemPermit {
                    id,
                    first: Mfn(first),
                    count,
                    allow,
                }
            }
            DomctlOp::LogDirty => Domctl::LogDirty {
                id: id()?,
                op: LogDirtyOp::from_repr(a[1]).ok_or(DecodeError::LogDirtyOp { arg: a[1] })?,
                out: GuestArray::cut(a[2], a[3], MAX_DIRTY_OUT),
            },
        })
    }

    /// `arg0..arg3`.
    fn encode(&self) -> [u64; 4] {
        match *self {
            Domctl::Create { args, kib, hole } => {
                [args.addr, args.len, kib, hole.map_or(0, Hole::addr)]
            }
            Domctl::Destroy { id } | Domctl::Pause { id } | Domctl::Unpause { id } => {
                [u64::from(id.0), 0, 0, 0]
            }
            Domctl::List { out } => [out.addr, out.count, 0, 0],
            Domctl::Modules { out } => [out.addr, out.len, 0, 0],
            Domctl::IomemPermit {
                id,
                first,
                count,
                allow,
            } => [u64::from(id.0), first.0, count, u64::from(allow)],
            Domctl::LogDirty { id, op, out } => [u64::from(id.0), op as u64, out.addr, out.count],
        }
    }
}

/// A hypercall with its arguments, decoded and checked (see the module
/// documentation for the bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `console_write(buf, len)`, at most [`MAX_CONSOLE_IO`] bytes.
    ConsoleWrite {
        /// The bytes to print.
        buf: GuestBuf,
    },
    /// `console_read(buf, len)`, at most [`MAX_CONSOLE_IO`] bytes.
    ConsoleRead {
        /// Where the input goes.
        buf: GuestBuf,
    },
    /// `yield()`.
    Yield,
    /// `mmu_update(reqs, count)`, at most [`MAX_BATCH`] [`MmuUpdate`]s.
    MmuUpdate {
        /// The requests.
        reqs: GuestArray,
    },
    /// `pin_table(mfn, level)`.
    PinTable {
        /// The table.
        mfn: Mfn,
        /// Its level: the second argument is its
        /// [`number`](Level::number), 1 for L1 … 4 for L4 (L4 being the
        /// root `new_baseptr` switches to).
        level: Level,
    },
    /// `unpin_table(mfn)`.
    UnpinTable {
        /// The table.
        mfn: Mfn,
    },
    /// `new_baseptr(mfn)`.
    NewBaseptr {
        /// The pinned L4.
        mfn: Mfn,
    },
    /// `increase_reservation(mfns_out, count)`, at most [`MAX_BATCH`]
    /// frames.
    IncreaseReservation {
        /// Where the new frames' mfns go (`u64` each).
        mfns_out: GuestArray,
    },
    /// `decrease_reservation(mfns, count)`, at most [`MAX_BATCH`] frames.
    DecreaseReservation {
        /// The frames given back ([`mfn_list`]).
        mfns: GuestArray,
    },
    /// `domctl(op, arg0, arg1, arg2)`.
    Domctl(Domctl),
    /// `shutdown(code)`.
    Shutdown {
        /// 0 for a clean end.
        code: u64,
    },
    /// `poweroff()`.
    Poweroff,
    /// `report(kind, value)`.
    Report {
        /// What is reported.
        kind: Report,
        /// Its figure.
        value: u64,
    },
    /// `set_segment_base(which, base)`.
    SetSegmentBase {
        /// FS or GS.
        which: Segment,
        /// A lower-half address.
        base: u64,
    },
    /// `sysinfo(buf, len)`, at most the size of a [`SysInfo`].
    SysInfo {
        /// Where the answer goes.
        buf: GuestBuf,
    },
    /// `lu_load(name, len, force)`, a name of at most [`MAX_MODULE_NAME`]
    /// bytes ([`module_name`]).
    LuLoad {
        /// The module name.
        name: GuestBuf,
        /// Load it even if it is the build whose update was rolled back
        /// (1; 0 refuses that build).
        force: bool,
    },
    /// `lu_status(buf, len)`, at most the size of a [`LuStatus`].
    LuStatus {
        /// Where the answer goes.
        buf: GuestBuf,
    },
    /// `lu_unload()`.
    LuUnload,
    /// `lu_exec()`.
    LuExec,
    /// `hostlink_read(buf, len)`, at most [`MAX_HOSTLINK_READ`] bytes.
    HostlinkRead {
        /// Where the bytes go.
        buf: GuestBuf,
    },
    /// `hostlink_write(buf, len)`, at most [`MAX_HOSTLINK_WRITE`] bytes.
    HostlinkWrite {
        /// The bytes to send.
        buf: GuestBuf,
    },
    /// `lu_load_buffer(buf, len, name, name_len)`, an image of any length:
    /// the hypervisor copies it straight into the live-update region and
    /// refuses, with the sizes, one that does not fit there (0 is passed on
    /// too, and refused as empty). `name` (at most [`MAX_MODULE_NAME`]
    /// bytes, [`module_name`]) is what the hypervisor's log and messages
    /// call the image — dom0 names an image from the host link by its
    /// transfer; a `name_len` of 0 (what a caller from before the name
    /// existed leaves in that word) names it by its size.
    LuLoadBuffer {
        /// The image.
        image: GuestBuf,
        /// Its name; empty if none.
        name: GuestBuf,
    },
    /// `last_error(buf, len)`, at most [`MAX_ERROR_MESSAGE`] bytes.
    LastError {
        /// Where the reason goes.
        buf: GuestBuf,
    },
    /// `memory_map(domid, entries, count)`, room for at most
    /// [`MAX_MEMORY_MAP`] entries.
    MemoryMap {
        /// The domain whose map is asked for.
        domid: DomId,
        /// Where the `MemoryMapEntry`s go.
        out: GuestArray,
    },
    /// `machine_memory_map(entries, count)`, room for at most
    /// [`MAX_MEMORY_MAP`] entries.
    MachineMemoryMap {
        /// Where the `MemoryMapEntry`s go.
        out: GuestArray,
    },
    /// `devices(out, count)`, at most [`MAX_DEVICES`] `DeviceInfo`s.
    Devices {
        /// Where the records go.
        out: GuestArray,
    },
    /// `read_guest(domid, gpfn, offset, buf, len)`: bytes of another
    /// domain's frame, from `offset` (below [`PAGE_SIZE`]); `out.len` is
    /// cut at the frame's end (`PAGE_SIZE - offset`).
    ReadGuest {
        /// The domain whose memory is read.
        domid: DomId,
        /// Its guest frame (any number: the hypervisor says what is
        /// there).
        gpfn: Gpfn,
        /// The first byte within the frame, below [`PAGE_SIZE`].
        offset: u64,
        /// Where the bytes go.
        out: GuestBuf,
    },
}

impl Call {
    /// Decodes hypercall `nr` with arguments `a`.
    pub fn decode(nr: u64, a: Args) -> Result<Call, DecodeError> {
        let call = Hypercall::from_repr(nr).ok_or(DecodeError::UnknownCall { nr })?;
        let buf = |max: u64| GuestBuf {
            addr: a[0],
            len: a[1].min(max),
        };
        let array = GuestArray::cut(a[0], a[1], MAX_BATCH);
        Ok(match call {
            Hypercall::ConsoleWrite => Call::ConsoleWrite {
                buf: buf(MAX_CONSOLE_IO),
            },
            Hypercall::ConsoleRead => Call::ConsoleRead {
                buf: buf(MAX_CONSOLE_IO),
            },
            Hypercall::Yield => Call::Yield,
            Hypercall::MmuUpdate => Call::MmuUpdate { reqs: array },
            Hypercall::PinTable => Call::PinTable {
                mfn: Mfn(a[0]),
                level: Level::from_number(a[1]).ok_or(DecodeError::TableLevel { level: a[1] })?,
            },
            Hypercall::UnpinTable => Call::UnpinTable { mfn: Mfn(a[0]) },
            Hypercall::NewBaseptr => Call::NewBaseptr { mfn: Mfn(a[0]) },
            Hypercall::IncreaseReservation => Call::IncreaseReservation { mfns_out: array },
            Hypercall::DecreaseReservation => Call::DecreaseReservation { mfns: array },
            Hypercall::Domctl => Call::Domctl(Domctl::decode(a[0], [a[1], a[2], a[3], a[4]])?),
            Hypercall::Shutdown => Call::Shutdown { code: a[0] },
            Hypercall::Poweroff => Call::Poweroff,
            Hypercall::Report => Call::Report {
                kind: Report::from_repr(a[0]).ok_or(DecodeError::ReportKind { kind: a[0] })?,
                value: a[1],
            },
            Hypercall::SetSegmentBase => {
                let base = a[1];
                if !is_lower_half(base) {
                    return Err(DecodeError::SegmentBase { base });
                }
                let which = Segment::from_repr(a[0]).ok_or(DecodeError::Segment { which: a[0] })?;
                Call::SetSegmentBase { which, base }
            }
            Hypercall::SysInfo => Call::SysInfo {
                buf: buf(size_of::<SysInfo>() as u64),
            },
            Hypercall::LuLoad => Call::LuLoad {
                name: GuestBuf::at_most(a[0], a[1], MAX_MODULE_NAME, |len| {
                    DecodeError::ModuleNameTooLong { len }
                })?,
                force: match a[2] {
                    0 => false,
                    1 => true,
                    arg => return Err(DecodeError::LoadForce { arg }),
                },
            },
            Hypercall::LuStatus => Call::LuStatus {
                buf: buf(size_of::<LuStatus>() as u64),
            },
            Hypercall::LuUnload => Call::LuUnload,
            Hypercall::LuExec => Call::LuExec,
            Hypercall::HostlinkRead => Call::HostlinkRead {
                buf: buf(MAX_HOSTLINK_READ),
            },
            Hypercall::HostlinkWrite => Call::HostlinkWrite {
                buf: buf(MAX_HOSTLINK_WRITE),
            },
            Hypercall::LuLoadBuffer => Call::LuLoadBuffer {
                image: GuestBuf {
                    addr: a[0],
                    len: a[1],
                },
                name: GuestBuf::at_most(a[2], a[3], MAX_MODULE_NAME, |len| {
                    DecodeError::ModuleNameTooLong { len }
                })?,
            },
            Hypercall::LastError => Call::LastError {
                buf: buf(MAX_ERROR_MESSAGE as u64),
            },
            Hypercall::MemoryMap => Call::MemoryMap {
                // Not explained: any domain may make this call.
                domid: domain_id(a[0]).map_err(|_| DecodeError::MapDomainId { arg: a[0] })?,
                out: GuestArray::cut(a[1], a[2], MAX_MEMORY_MAP),
            },
            Hypercall::MachineMemoryMap => Call::MachineMemoryMap {
                out: GuestArray::cut(a[0], a[1], MAX_MEMORY_MAP),
            },
            Hypercall::Devices => Call::Devices {
                out: GuestArray {
                    addr: a[0],
                    count: a[1].min(MAX_DEVICES),
                },
            },
            Hypercall::ReadGuest => {
                let domid = domain_id(a[0])?;
                let offset = a[2];
                if offset >= PAGE_SIZE {
                    return Err(DecodeError::PageOffset { offset });
                }
                Call::ReadGuest {
                    domid,
                    gpfn: Gpfn(a[1]),
                    offset,
                    out: GuestBuf {
                        addr: a[3],
                        len: a[4].min(PAGE_SIZE - offset),
                    },
                }
            }
        })
    }

    /// The hypercall's number.
    pub fn hypercall(&self) -> Hypercall {
        match self {
            Call::ConsoleWrite { .. } => Hypercall::ConsoleWrite,
            Call::ConsoleRead { .. } => Hypercall::ConsoleRead,
            Call::Yield => Hypercall::Yield,
            Call::MmuUpdate { .. } => Hypercall::MmuUpdate,
            Call::PinTable { .. } => Hypercall::PinTable,
            Call::UnpinTable { .. } => Hypercall::UnpinTable,
            Call::NewBaseptr { .. } => Hypercall::NewBaseptr,
            Call::IncreaseReservation { .. } => Hypercall::IncreaseReservation,
            Call::DecreaseReservation { .. } => Hypercall::DecreaseReservation,
            Call::Domctl(_) => Hypercall::Domctl,
            Call::Shutdown { .. } => Hypercall::Shutdown,
            Call::Poweroff => Hypercall::Poweroff,
            Call::Report { .. } => Hypercall::Report,
            Call::SetSegmentBase { .. } => Hypercall::SetSegmentBase,
            Call::SysInfo { .. } => Hypercall::SysInfo,
            Call::LuLoad { .. } => Hypercall::LuLoad,
            Call::LuStatus { .. } => Hypercall::LuStatus,
            Call::LuUnload => Hypercall::LuUnload,
            Call::LuExec => Hypercall::LuExec,
            Call::HostlinkRead { .. } => Hypercall::HostlinkRead,
            Call::HostlinkWrite { .. } => Hypercall::HostlinkWrite,
            Call::LuLoadBuffer { .. } => Hypercall::LuLoadBuffer,
            Call::LastError { .. } => Hypercall::LastError,
            Call::MemoryMap { .. } => Hypercall::MemoryMap,
            Call::MachineMemoryMap { .. } => Hypercall::MachineMemoryMap,
            Call::Devices { .. } => Hypercall::Devices,
            Call::ReadGuest { .. } => Hypercall::ReadGuest,
        }
    }

    /// The number and argument words of this call, unused words 0. A field
    /// past its bound is sent as it is: the hypervisor cuts or refuses it.
    pub fn encode(&self) -> (u64, Args) {
        let nr = self.hypercall() as u64;
        let args = match *self {
            Call::ConsoleWrite { buf }
            | Call::ConsoleRead { buf }
            | Call::SysInfo { buf }
            | Call::LuStatus { buf }
            | Call::HostlinkRead { buf }
            | Call::HostlinkWrite { buf }
            | Call::LastError { buf } => [buf.addr, buf.len, 0, 0, 0],
            Call::LuLoad { name, force } => [name.addr, name.len, u64::from(force), 0, 0],
            Call::LuLoadBuffer { image, name } => [image.addr, image.len, name.addr, name.len, 0],
            Call::MmuUpdate { reqs: array }
            | Call::IncreaseReservation { mfns_out: array }
            | Call::DecreaseReservation { mfns: array }
            | Call::MachineMemoryMap { out: array }
            | Call::Devices { out: array } => [array.addr, array.count, 0, 0, 0],
            Call::MemoryMap { domid, out } => [u64::from(domid.0), out.addr, out.count, 0, 0],
            Call::PinTable { mfn, level } => [mfn.0, u64::from(level.number()), 0, 0, 0],
            Call::UnpinTable { mfn } | Call::NewBaseptr { mfn } => [mfn.0, 0, 0, 0, 0],
            Call::Domctl(op) => {
                let [a0, a1, a2, a3] = op.encode();
                [op.op() as u64, a0, a1, a2, a3]
            }
            Call::Shutdown { code } => [code, 0, 0, 0, 0],
            Call::Report { kind, value } => [kind as u64, value, 0, 0, 0],
            Call::SetSegmentBase { which, base } => [which as u64, base, 0, 0, 0],
            Call::ReadGuest {
                domid,
                gpfn,
                offset,
                out,
            } => [u64::from(domid.0), gpfn.0, offset, out.addr, out.len],
            Call::Yield | Call::Poweroff | Call::LuUnload | Call::LuExec => [0; 5],
        };
        (nr, args)
    }
}

/// Why a call's arguments, or the bytes they point at, are refused. One
/// variant per check; [`DecodeError::error`] is what the caller gets, and
/// the `Display` text is the reason `last_error` gives where
/// [`DecodeError::explained`] says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No hypercall has this number.
    UnknownCall {
        /// The number.
        nr: u64,
    },
    /// No `domctl` operation has this number.
    UnknownDomctl {
        /// The number.
        op: u64,
    },
    /// A domain id above `u16::MAX`.
    NotADomainId {
        /// The argument.
        arg: u64,
    },
    /// `memory_map` of a domain id above `u16::MAX` (a call any domain
    /// makes: its refusal is not explained).
    MapDomainId {
        /// The argument.
        arg: u64,
    },
    /// `domctl create`'s name and command line are longer than
    /// [`MAX_CREATE_ARGS`].
    CreateArgsTooLong {
        /// Their length.
        len: u64,
    },
    /// `domctl create` of 0 KiB.
    ZeroMemory,
    /// `domctl create` of a size that is not whole 4 KiB pages.
    PartialPage {
        /// The size in KiB.
        kib: u64,
    },
    /// `domctl create` of more than [`MAX_DOMAIN_KIB`].
    TooMuchMemory {
        /// The size in KiB.
        kib: u64,
    },
    /// `domctl create` of a PCI hole that breaks the hole's rules.
    Hole(HoleError),
    /// `domctl create`'s module name or command line is not UTF-8.
    CreateArgsNotUtf8,
    /// `domctl create`'s command line is longer than [`MAX_CMDLINE`].
    CommandLineTooLong {
        /// Its length.
        len: usize,
    },
    /// `pin_table` of a level outside 1..=4.
    TableLevel {
        /// The level.
        level: u64,
    },
    /// `set_segment_base` of a segment other than 0 (FS) or 1 (GS).
    Segment {
        /// The argument.
        which: u64,
    },
    /// `set_segment_base` to an address outside the lower half.
    SegmentBase {
        /// The address.
        base: u64,
    },
    /// `report` of an unknown kind.
    ReportKind {
        /// The kind.
        kind: u64,
    },
    /// `lu_load`'s module name is longer than [`MAX_MODULE_NAME`].
    ModuleNameTooLong {
        /// Its length.
        len: u64,
    },
    /// `lu_load`'s module name is not UTF-8.
    ModuleNameNotUtf8,
    /// `lu_load` with a `force` word other than 0 or 1.
    LoadForce {
        /// The word.
        arg: u64,
    },
    /// `domctl iomem_permit` of no frame, or of frames past
    /// [`hvlu_types::MFN_LIMIT`].
    IomemRange {
        /// The first frame.
        first: u64,
        /// The count.
        count: u64,
    },
    /// `domctl iomem_permit` with an `allow` word other than 0 or 1.
    IomemAllow {
        /// The word.
        arg: u64,
    },
    /// `domctl log_dirty` with an operation word that names none.
    LogDirtyOp {
        /// The word.
        arg: u64,
    },
    /// `read_guest` from a byte past the frame's end.
    PageOffset {
        /// The offset.
        offset: u64,
    },
    /// An `mmu_update` request whose entry address is not 8-byte aligned.
    MisalignedEntry {
        /// The request's `ptr`.
        ptr: u64,
    },
    /// An `mmu_update` request for a present global mapping, which would
    /// survive the switch to another domain's address space.
    GlobalMapping {
        /// The request's `val`.
        val: u64,
    },
}

impl DecodeError {
    /// What the caller gets.
    pub fn error(self) -> Error {
        match self {
            DecodeError::UnknownCall { .. } | DecodeError::UnknownDomctl { .. } => Error::NoSys,
            _ => Error::Invalid,
        }
    }

    /// Whether the hypervisor gives this refusal's `Display` text as its
    /// reason (for `last_error`, and on its console); the others leave the
    /// reason to the error's name, as every refusal of a call `last_error`
    /// does not explain does.
    pub fn explained(self) -> bool {
        matches!(
            self,
            DecodeError::NotADomainId { .. }
                | DecodeError::CreateArgsTooLong { .. }
                | DecodeError::ZeroMemory
                | DecodeError::PartialPage { .. }
                | DecodeError::TooMuchMemory { .. }
                | DecodeError::Hole(_)
                | DecodeError::CreateArgsNotUtf8
                | DecodeError::CommandLineTooLong { .. }
                | DecodeError::ModuleNameTooLong { .. }
                | DecodeError::ModuleNameNotUtf8
                | DecodeError::LoadForce { .. }
                | DecodeError::IomemRange { .. }
                | DecodeError::IomemAllow { .. }
                | DecodeError::LogDirtyOp { .. }
                | DecodeError::PageOffset { .. }
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::UnknownCall { nr } => write!(f, "there is no hypercall {nr}"),
            DecodeError::UnknownDomctl { op } => write!(f, "there is no domctl operation {op}"),
            DecodeError::NotADomainId { arg } | DecodeError::MapDomainId { arg } => {
                write!(f, "{arg} is not a domain id (they go up to {})", u16::MAX)
            }
            DecodeError::CreateArgsTooLong { len } => write!(
                f,
                "the module name and command line are {len} bytes, more than {MAX_CREATE_ARGS}"
            ),
            DecodeError::ZeroMemory => write!(
                f,
                "a domain of 0 KiB: give its memory in KiB (the toolstack's default is \
                 {DEFAULT_DOMU_KIB})"
            ),
            DecodeError::PartialPage { kib } => {
                write!(f, "{kib} KiB is not a whole number of 4 KiB pages")
            }
            DecodeError::TooMuchMemory { kib } => write!(
                f,
                "{kib} KiB is more than the {MAX_DOMAIN_KIB} KiB a domain may have"
            ),
            DecodeError::Hole(e) => write!(f, "{e}"),
            DecodeError::CreateArgsNotUtf8 => {
                write!(f, "the module name or the command line is not UTF-8")
            }
            DecodeError::CommandLineTooLong { len } => write!(
                f,
                "the command line has {len} bytes, more than the {MAX_CMDLINE} a domain's \
                 start info holds"
            ),
            DecodeError::TableLevel { level } => {
                write!(f, "{level} is not a page-table level (1 to 4)")
            }
            DecodeError::Segment { which } => {
                write!(f, "segment {which} is neither FS (0) nor GS (1)")
            }
            DecodeError::SegmentBase { base } => {
                write!(f, "segment base {base:#x} is not a lower-half address")
            }
            DecodeError::ReportKind { kind } => write!(f, "there is no report kind {kind}"),
            DecodeError::ModuleNameTooLong { len } => write!(
                f,
                "a module name of {len} bytes is longer than {MAX_MODULE_NAME}"
            ),
            DecodeError::ModuleNameNotUtf8 => write!(f, "the module name is not UTF-8"),
            DecodeError::LoadForce { arg } => {
                write!(f, "{arg} is neither 1 (force) nor 0")
            }
            DecodeError::IomemRange { first, count } => write!(
                f,
                "{count} frames from mfn {first:#x} are no range of frames (not empty, below \
                 mfn {MFN_LIMIT:#x})"
            ),
            DecodeError::IomemAllow { arg } => {
                write!(f, "{arg} is neither 1 (grant) nor 0 (revoke)")
            }
            DecodeError::LogDirtyOp { arg } => write!(
                f,
                "{arg} is no log-dirty operation (0 on, 1 peek, 2 clean, 3 off)"
            ),
            DecodeError::PageOffset { offset } => write!(
                f,
                "offset {offset:#x} is not within a page (below {PAGE_SIZE:#x})"
            ),
            DecodeError::MisalignedEntry { ptr } => {
                write!(f, "entry address {ptr:#x} is not 8-byte aligned")
            }
            DecodeError::GlobalMapping { val } => {
                write!(f, "entry {val:#x} is a present global mapping")
            }
        }
    }
}

/// One `mmu_update` request, checked: write `val` into entry `index` of
/// the page-table frame `table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryWrite {
    /// The page-table frame.
    pub table: Mfn,
    /// The entry, 0..512.
    pub index: usize,
    /// The new entry.
    pub val: u64,
}

impl EntryWrite {
    /// The request that asks for this write.
    pub fn encode(self) -> MmuUpdate {
        MmuUpdate {
            ptr: (self.table.0 << 12) | (self.index as u64 * 8),
            val: self.val,
        }
    }
}

impl MmuUpdate {
    /// Bytes of one request in the guest's array.
    pub const SIZE: usize = size_of::<MmuUpdate>();

    /// Checks the request: its entry address is 8-byte aligned, and it
    /// asks for no present global mapping.
    pub fn decode(self) -> Result<EntryWrite, DecodeError> {
        if !self.ptr.is_multiple_of(8) {
            return Err(DecodeError::MisalignedEntry { ptr: self.ptr });
        }
        if self.val & hvlu_types::pte::PRESENT != 0 && self.val & hvlu_types::pte::GLOBAL != 0 {
            return Err(DecodeError::GlobalMapping { val: self.val });
        }
        Ok(EntryWrite {
            table: Mfn(self.ptr >> 12),
            index: ((self.ptr & 0xfff) / 8) as usize,
            val: self.val,
        })
    }
}

/// The requests of `mmu_update` in the bytes copied from the guest, each
/// decoded on its own: the hypervisor applies them in order and stops at
/// the first refused one. A tail shorter than a request is ignored.
pub fn mmu_updates(bytes: &[u8]) -> impl Iterator<Item = Result<EntryWrite, DecodeError>> + '_ {
    bytes.chunks_exact(MmuUpdate::SIZE).map(|c| {
        use zerocopy::FromBytes;
        // `chunks_exact` gives whole requests, and any 16 bytes are one.
        MmuUpdate::read_from_bytes(c).unwrap_or_default().decode()
    })
}

/// The frame numbers of `decrease_reservation` (little-endian `u64`s) in the
/// bytes copied from the guest. A tail shorter than 8 bytes is ignored.
pub fn mfn_list(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    })
}

/// `lu_load`'s module name, from the bytes copied from the guest.
pub fn module_name(bytes: &[u8]) -> Result<&str, DecodeError> {
    core::str::from_utf8(bytes).map_err(|_| DecodeError::ModuleNameNotUtf8)
}

/// `domctl create`'s buffer: the module name, then optionally a NUL and the
/// domain's command line (at most [`MAX_CMDLINE`] bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateArgs<'a> {
    /// The boot module to build the domain from.
    pub name: &'a str,
    /// The domain's command line.
    pub cmdline: &'a str,
}

impl<'a> CreateArgs<'a> {
    /// Reads the bytes copied from the guest: everything up to the first
    /// NUL is the name, the rest the command line.
    pub fn decode(bytes: &'a [u8]) -> Result<CreateArgs<'a>, DecodeError> {
        let (name, cmdline) = match bytes.iter().position(|&b| b == 0) {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (bytes, &[][..]),
        };
        let (Ok(name), Ok(cmdline)) = (core::str::from_utf8(name), core::str::from_utf8(cmdline))
        else {
            return Err(DecodeError::CreateArgsNotUtf8);
        };
        if cmdline.len() > MAX_CMDLINE {
            return Err(DecodeError::CommandLineTooLong { len: cmdline.len() });
        }
        Ok(CreateArgs { name, cmdline })
    }

    /// Writes `name`, a NUL and `cmdline` at the start of `out`; returns the
    /// length, or `None` if they do not fit.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let (n, c) = (self.name.len(), self.cmdline.len());
        let len = n.checked_add(1)?.checked_add(c)?;
        let out = out.get_mut(..len)?;
        out[..n].copy_from_slice(self.name.as_bytes());
        out[n] = 0;
        out[n + 1..].copy_from_slice(self.cmdline.as_bytes());
        Some(len)
    }
}

/// A word given as `create`'s memory size that is not one: signed, in
/// hex, with a unit or otherwise not whole KiB in decimal digits, or too
/// large for a number ([`create_size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotASize<'a>(pub &'a str);

impl fmt::Display for NotASize<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a memory size: give whole KiB in decimal digits (e.g. 4096; at most {MAX_DOMAIN_KIB})",
            self.0
        )
    }
}

/// How dom0's `create <module> [mem_kib] [args...]` reads the word after
/// the module: `Ok(Some(kib))` for decimal digits; `Ok(None)` for a word
/// that is not meant as a size (it does not start with a digit, nor with
/// `-` or `+` and a digit), which then begins the domain's command line;
/// and an error for a word that looks like a size but is not one —
/// `-4096`, `4k`, `0x1000`, `4096.5`, a number beyond `u64` — rather than
/// creating a domain of the default size with that word as its command
/// line. The hypervisor checks the size itself (not 0, whole pages, at
/// most [`MAX_DOMAIN_KIB`]).
pub fn create_size(word: &str) -> Result<Option<u64>, NotASize<'_>> {
    let b = word.as_bytes();
    let numeric = match b {
        [d, ..] if d.is_ascii_digit() => true,
        [b'-' | b'+', d, ..] => d.is_ascii_digit(),
        _ => false,
    };
    if !numeric {
        return Ok(None);
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return Err(NotASize(word));
    }
    word.parse().map(Some).map_err(|_| NotASize(word))
}

/// A word given as `create`'s `hole=` that is not a size: not decimal
/// digits with a unit `K`, `M` or `G` (KiB, MiB, GiB) nor `0x` and hex
/// digits (bytes), 0, or too large for a number ([`hole_size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAHoleSize<'a>(pub &'a str);

impl fmt::Display for NotAHoleSize<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`hole={}` is not where a PCI hole may start: give a size with a unit \
             (e.g. hole=3G, hole=512M) or bytes in hex (hole=0xc0000000)",
            self.0
        )
    }
}

/// How dom0's `create ... hole=<size>` reads the size after `hole=`: its
/// bytes, for `domctl create`'s `hole` word. `3G`, `3072M`, `3145728K`
/// (upper or lower case unit) and `0xc0000000` are 3 GiB. The hypervisor
/// checks the hole's rules itself (`hvlu_types::hole`) and says which one a
/// refused start breaks; 0, which that word reserves for the default, is
/// refused here.
pub fn hole_size(word: &str) -> Result<u64, NotAHoleSize<'_>> {
    let bad = || NotAHoleSize(word);
    let bytes = if let Some(hex) = word.strip_prefix("0x") {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(hex, 16).map_err(|_| bad())?
    } else {
        let (digits, unit) = word.split_at(word.len().saturating_sub(1));
        let shift = match unit {
            "K" | "k" => 10,
            "M" | "m" => 20,
            "G" | "g" => 30,
            _ => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_mul(1 << shift).ok_or_else(bad)?
    };
    if bytes == 0 {
        return Err(bad());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
