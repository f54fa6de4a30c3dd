//! Hypercalls (see `pv_abi::hypercall` for the convention), each built as a
//! `pv_abi::call::Call` and encoded as the hypervisor decodes it.

use core::arch::asm;

use hvlu_types::{pte::Level, DomId, Gpfn, Mfn};
use pv_abi::call::{Call, CreateArgs, Domctl, GuestArray, GuestBuf, LogDirtyOp, MAX_CREATE_ARGS};
use pv_abi::hypercall::{
    DeviceInfo, DomainInfo, Error, LuStatus, MemoryMapEntry, MmuUpdate, Report, SysInfo,
};

/// The result of a hypercall.
pub type HcResult = Result<u64, Error>;

/// The result of a hypercall from its raw return value (`rax`): a
/// non-negative count or value, or a negative error code.
pub(crate) fn decode(rax: i64) -> HcResult {
    if rax >= 0 {
        Ok(rax as u64)
    } else {
        Err(Error::from_code(rax).unwrap_or(Error::Failed))
    }
}

/// Makes hypercall `nr` with raw arguments.
///
/// # Safety
/// Pointer arguments must describe guest memory the hypervisor may write
/// (for calls that write) without breaking any Rust reference the guest
/// holds.
pub unsafe fn raw(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    let rax: i64;
    if crate::hvm::is_hvm() {
        // SAFETY: `vmmcall` exits to the hypervisor, which preserves every
        // register but rax and writes only memory the caller described
        // (the caller's obligation).
        unsafe {
            asm!(
                "vmmcall",
                inlateout("rax") nr as i64 => rax,
                in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3, in("r8") a4,
                options(nostack),
            );
        }
        return rax;
    }
    // SAFETY: `syscall` enters the hypervisor, which preserves every
    // register but rax, rcx and r11, and writes only memory the caller
    // described (the caller's obligation).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => rax,
            in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3, in("r8") a4,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    rax
}

/// Makes `call`, encoded as the hypervisor decodes it
/// (`pv_abi::call::Call::encode`).
fn call(call: Call) -> HcResult {
    let (nr, a) = call.encode();
    // SAFETY: used only for calls whose pointer arguments, if any, come
    // from the typed wrappers below (slices the caller owns).
    decode(unsafe { raw(nr, a[0], a[1], a[2], a[3], a[4]) })
}

/// A buffer of the caller's that the hypervisor reads.
fn bytes_in(bytes: &[u8]) -> GuestBuf {
    GuestBuf {
        addr: bytes.as_ptr() as u64,
        len: bytes.len() as u64,
    }
}

/// A buffer of the caller's that the hypervisor fills.
fn bytes_out(buf: &mut [u8]) -> GuestBuf {
    GuestBuf {
        addr: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
    }
}

/// A value of the caller's that the hypervisor fills with bytes.
fn value_out<T>(value: &mut T) -> GuestBuf {
    GuestBuf {
        addr: value as *mut T as u64,
        len: core::mem::size_of::<T>() as u64,
    }
}

/// Records of the caller's.
fn array<T>(records: &[T]) -> GuestArray {
    GuestArray {
        addr: records.as_ptr() as u64,
        count: records.len() as u64,
    }
}

/// Prints `bytes` on the console.
pub fn console_write(bytes: &[u8]) -> HcResult {
    call(Call::ConsoleWrite {
        buf: bytes_in(bytes),
    })
}

/// Reads waiting console input into `buf`.
pub fn console_read(buf: &mut [u8]) -> HcResult {
    call(Call::ConsoleRead {
        buf: bytes_out(buf),
    })
}

/// Gives up the time slice.
pub fn yield_now() {
    let _ = call(Call::Yield);
}

/// Writes page-table entries.
pub fn mmu_update(reqs: &[MmuUpdate]) -> HcResult {
    call(Call::MmuUpdate { reqs: array(reqs) })
}

/// Pins a page table.
pub fn pin_table(mfn: u64, level: Level) -> HcResult {
    call(Call::PinTable {
        mfn: Mfn(mfn),
        level,
    })
}

/// Unpins a page table.
pub fn unpin_table(mfn: u64) -> HcResult {
    call(Call::UnpinTable { mfn: Mfn(mfn) })
}

/// Switches to another pinned L4.
pub fn new_baseptr(mfn: u64) -> HcResult {
    call(Call::NewBaseptr { mfn: Mfn(mfn) })
}

/// Asks for `out.len()` new frames.
pub fn increase_reservation(out: &mut [u64]) -> HcResult {
    call(Call::IncreaseReservation {
        mfns_out: array(out),
    })
}

/// Gives frames back.
pub fn decrease_reservation(mfns: &[u64]) -> HcResult {
    call(Call::DecreaseReservation { mfns: array(mfns) })
}

/// Creates a domain from boot module `name` with `mem_kib` of memory, its
/// PCI hole from byte `hole` (0 for the default). The hole goes as given:
/// the hypervisor checks it, and says why it refuses one (`last_error`).
pub fn domctl_create(name: &str, mem_kib: u64, cmdline: &str, hole: u64) -> HcResult {
    // The module name and the command line travel as one buffer:
    // "name\0cmdline". What does not fit is refused, never cut.
    let mut buf = [0u8; MAX_CREATE_ARGS as usize];
    let len = CreateArgs { name, cmdline }
        .encode(&mut buf)
        .ok_or(Error::TooSmall)?;
    let (nr, mut a) = Call::Domctl(Domctl::Create {
        args: bytes_in(&buf[..len]),
        kib: mem_kib,
        hole: None,
    })
    .encode();
    // The hole's word (`arg3`), unchecked here.
    a[4] = hole;
    // SAFETY: the only pointer is `buf`, which the hypervisor only reads.
    decode(unsafe { raw(nr, a[0], a[1], a[2], a[3], a[4]) })
}

/// Domain `domid`'s memory map into `out`; returns how many entries it has
/// ([`Error::TooSmall`] if `out` cannot hold them all).
pub fn memory_map(domid: DomId, out: &mut [MemoryMapEntry]) -> HcResult {
    call(Call::MemoryMap {
        domid,
        out: array(out),
    })
}

/// The machine's memory map into `out` (dom0 only); returns how many
/// entries it has ([`Error::TooSmall`] if `out` cannot hold them all).
pub fn machine_memory_map(out: &mut [MemoryMapEntry]) -> HcResult {
    call(Call::MachineMemoryMap { out: array(out) })
}

/// Copies `buf.len()` bytes of domain `domid`'s guest frame `gpfn` from
/// byte `offset` of it (below 4096; the copy stops at the frame's end) into
/// `buf` (dom0 only); returns how many were copied. The hypervisor says why
/// it refuses a gpfn (`last_error`).
pub fn read_guest(domid: DomId, gpfn: u64, offset: u64, buf: &mut [u8]) -> HcResult {
    call(Call::ReadGuest {
        domid,
        gpfn: Gpfn(gpfn),
        offset,
        out: bytes_out(buf),
    })
}

/// Why the last refused domctl, read_guest or live-update call was refused: copies up
/// to `buf.len()` bytes of the reason and returns its whole length (more
/// than `buf.len()` if the copy is cut).
pub fn last_error(buf: &mut [u8]) -> HcResult {
    call(Call::LastError {
        buf: bytes_out(buf),
    })
}

/// A domctl that names only a domain (destroy, pause, unpause) or none.
pub fn domctl(op: Domctl) -> HcResult {
    call(Call::Domctl(op))
}

/// Lists domains into `out`; returns how many there are.
pub fn domctl_list(out: &mut [DomainInfo]) -> HcResult {
    call(Call::Domctl(Domctl::List { out: array(out) }))
}

/// The boot-module names, newline separated, into `buf`; returns the length.
pub fn domctl_modules(buf: &mut [u8]) -> HcResult {
    call(Call::Domctl(Domctl::Modules {
        out: bytes_out(buf),
    }))
}

/// The PCI functions the hypervisor found, into `out`; returns how many
/// there are (dom0 only).
pub fn devices(out: &mut [DeviceInfo]) -> HcResult {
    call(Call::Devices { out: array(out) })
}

/// Grants (`allow`) or revokes domain `id`'s permission to map the `count`
/// device frames from `first` (dom0 only).
pub fn iomem_permit(id: DomId, first: u64, count: u64, allow: bool) -> HcResult {
    call(Call::Domctl(Domctl::IomemPermit {
        id,
        first: Mfn(first),
        count,
        allow,
    }))
}

/// `domctl log_dirty` of HVM domain `id` (dom0 only): `op`; for peek and
/// clean the first dirty gpfns fill `out`. Returns the dirty count.
pub fn log_dirty(id: DomId, op: LogDirtyOp, out: &mut [u64]) -> HcResult {
    call(Call::Domctl(Domctl::LogDirty {
        id,
        op,
        out: GuestArray {
            addr: out.as_mut_ptr() as u64,
            count: out.len() as u64,
        },
    }))
}

/// Ends this domain.
pub fn shutdown(code: u64) -> ! {
    loop {
        let _ = call(Call::Shutdown { code });
    }
}

/// Ends the system (dom0 only).
pub fn poweroff() -> HcResult {
    call(Call::Poweroff)
}

/// Reports a self-check figure.
pub fn report(kind: Report, value: u64) -> HcResult {
    call(Call::Report { kind, value })
}

/// System information.
pub fn sysinfo() -> Result<SysInfo, Error> {
    let mut info = SysInfo::default();
    call(Call::SysInfo {
        buf: value_out(&mut info),
    })?;
    Ok(info)
}

/// Stages boot module `name` for a live update (`force`: even the build
/// whose update was rolled back).
pub fn lu_load(name: &str, force: bool) -> HcResult {
    call(Call::LuLoad {
        name: bytes_in(name.as_bytes()),
        force,
    })
}

/// The live-update status.
pub fn lu_status() -> Result<LuStatus, Error> {
    let mut status = LuStatus::default();
    call(Call::LuStatus {
        buf: value_out(&mut status),
    })?;
    Ok(status)
}

/// Forgets the staged image.
pub fn lu_unload() -> HcResult {
    call(Call::LuUnload)
}

/// Performs the staged update; returns in the new hypervisor.
pub fn lu_exec() -> HcResult {
    call(Call::LuExec)
}

/// Reads bytes waiting on the host link.
pub fn hostlink_read(buf: &mut [u8]) -> HcResult {
    call(Call::HostlinkRead {
        buf: bytes_out(buf),
    })
}

/// Sends bytes to the host over the host link.
pub fn hostlink_write(bytes: &[u8]) -> HcResult {
    call(Call::HostlinkWrite {
        buf: bytes_in(bytes),
    })
}

/// Stages the hypervisor image at guest virtual address `va`, `len` bytes,
/// which the hypervisor's log and messages call `name`.
///
/// # Safety
/// `va..va + len` must be memory of this guest that it does not change
/// while the call runs (the hypervisor only reads it).
pub unsafe fn lu_load_buffer(va: u64, len: u64, name: &str) -> HcResult {
    call(Call::LuLoadBuffer {
        image: GuestBuf { addr: va, len },
        name: bytes_in(name.as_bytes()),
    })
}

/// Stages the hypervisor image held in the first `len` bytes of this guest's
/// free area (see [`crate::mem::free_area`], written with
/// [`crate::mem::free_area_write`]) for a live update; the hypervisor's
/// log and messages call it `name`.
///
/// # Panics
/// If `len` is larger than the free area.
pub fn lu_load_free_area(len: u64, name: &str) -> HcResult {
    let (va, room) = crate::mem::free_area();
    assert!(
        len <= room,
        "an image of {len} bytes is beyond the free area"
    );
    // SAFETY: `va..va + len` is the guest's free area (checked above), which
    // is mapped in the physmap and only ever accessed through `crate::mem`
    // with volatile accesses: no Rust reference points into it. The guest is
    // single-threaded and this call is synchronous, so nothing changes the
    // area while the hypervisor reads it.
    unsafe { lu_load_buffer(va, len, name) }
}
