//! Hypercalls (see `pv_abi::hypercall` for the convention).

use core::arch::asm;

use pv_abi::hypercall::{
    DomainInfo, DomctlOp, Error, Hypercall, LuStatus, MmuUpdate, Report, SysInfo,
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

fn call(nr: Hypercall, a0: u64, a1: u64, a2: u64, a3: u64) -> HcResult {
    // SAFETY: used only for hypercalls whose pointer arguments, if any,
    // come from the typed wrappers below (slices the caller owns).
    decode(unsafe { raw(nr as u64, a0, a1, a2, a3, 0) })
}

/// Prints `bytes` on the console.
pub fn console_write(bytes: &[u8]) -> HcResult {
    call(
        Hypercall::ConsoleWrite,
        bytes.as_ptr() as u64,
        bytes.len() as u64,
        0,
        0,
    )
}

/// Reads waiting console input into `buf`.
pub fn console_read(buf: &mut [u8]) -> HcResult {
    call(
        Hypercall::ConsoleRead,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
    )
}

/// Gives up the time slice.
pub fn yield_now() {
    let _ = call(Hypercall::Yield, 0, 0, 0, 0);
}

/// Writes page-table entries.
pub fn mmu_update(reqs: &[MmuUpdate]) -> HcResult {
    call(
        Hypercall::MmuUpdate,
        reqs.as_ptr() as u64,
        reqs.len() as u64,
        0,
        0,
    )
}

/// Pins a page table.
pub fn pin_table(mfn: u64, level: u64) -> HcResult {
    call(Hypercall::PinTable, mfn, level, 0, 0)
}

/// Unpins a page table.
pub fn unpin_table(mfn: u64) -> HcResult {
    call(Hypercall::UnpinTable, mfn, 0, 0, 0)
}

/// Switches to another pinned L4.
pub fn new_baseptr(mfn: u64) -> HcResult {
    call(Hypercall::NewBaseptr, mfn, 0, 0, 0)
}

/// Asks for `out.len()` new frames.
pub fn increase_reservation(out: &mut [u64]) -> HcResult {
    call(
        Hypercall::IncreaseReservation,
        out.as_mut_ptr() as u64,
        out.len() as u64,
        0,
        0,
    )
}

/// Gives frames back.
pub fn decrease_reservation(mfns: &[u64]) -> HcResult {
    call(
        Hypercall::DecreaseReservation,
        mfns.as_ptr() as u64,
        mfns.len() as u64,
        0,
        0,
    )
}

/// Creates a domain from boot module `name` with `mem_kib` of memory.
pub fn domctl_create(name: &str, mem_kib: u64, cmdline: &str) -> HcResult {
    // The module name and the command line travel as one buffer:
    // "name\0cmdline". What does not fit is refused, never cut.
    let mut buf = [0u8; 256];
    let (n, c) = (name.len(), cmdline.len());
    if n + 1 + c > buf.len() {
        return Err(Error::TooSmall);
    }
    buf[..n].copy_from_slice(name.as_bytes());
    buf[n + 1..n + 1 + c].copy_from_slice(cmdline.as_bytes());
    call(
        Hypercall::Domctl,
        DomctlOp::Create as u64,
        buf.as_ptr() as u64,
        (n + 1 + c) as u64,
        mem_kib,
    )
}

/// Why the last refused domctl or live-update call was refused: copies up
/// to `buf.len()` bytes of the reason and returns its whole length (more
/// than `buf.len()` if the copy is cut).
pub fn last_error(buf: &mut [u8]) -> HcResult {
    call(
        Hypercall::LastError,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
    )
}

/// A domctl on domain `id` (destroy, pause, unpause).
pub fn domctl_id(op: DomctlOp, id: u64) -> HcResult {
    call(Hypercall::Domctl, op as u64, id, 0, 0)
}

/// Lists domains into `out`; returns how many there are.
pub fn domctl_list(out: &mut [DomainInfo]) -> HcResult {
    call(
        Hypercall::Domctl,
        DomctlOp::List as u64,
        out.as_mut_ptr() as u64,
        out.len() as u64,
        0,
    )
}

/// The boot-module names, newline separated, into `buf`; returns the length.
pub fn domctl_modules(buf: &mut [u8]) -> HcResult {
    call(
        Hypercall::Domctl,
        DomctlOp::Modules as u64,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
    )
}

/// Ends this domain.
pub fn shutdown(code: u64) -> ! {
    loop {
        let _ = call(Hypercall::Shutdown, code, 0, 0, 0);
    }
}

/// Ends the system (dom0 only).
pub fn poweroff() -> HcResult {
    call(Hypercall::Poweroff, 0, 0, 0, 0)
}

/// Reports a self-check figure.
pub fn report(kind: Report, value: u64) -> HcResult {
    call(Hypercall::Report, kind as u64, value, 0, 0)
}

/// System information.
pub fn sysinfo() -> Result<SysInfo, Error> {
    let mut info = SysInfo::default();
    call(
        Hypercall::SysInfo,
        &mut info as *mut SysInfo as u64,
        core::mem::size_of::<SysInfo>() as u64,
        0,
        0,
    )?;
    Ok(info)
}

/// Stages boot module `name` for a live update.
pub fn lu_load(name: &str) -> HcResult {
    call(
        Hypercall::LuLoad,
        name.as_ptr() as u64,
        name.len() as u64,
        0,
        0,
    )
}

/// The live-update status.
pub fn lu_status() -> Result<LuStatus, Error> {
    let mut status = LuStatus::default();
    call(
        Hypercall::LuStatus,
        &mut status as *mut LuStatus as u64,
        core::mem::size_of::<LuStatus>() as u64,
        0,
        0,
    )?;
    Ok(status)
}

/// Forgets the staged image.
pub fn lu_unload() -> HcResult {
    call(Hypercall::LuUnload, 0, 0, 0, 0)
}

/// Performs the staged update; returns in the new hypervisor.
pub fn lu_exec() -> HcResult {
    call(Hypercall::LuExec, 0, 0, 0, 0)
}

/// Reads bytes waiting on the host link.
pub fn hostlink_read(buf: &mut [u8]) -> HcResult {
    call(
        Hypercall::HostlinkRead,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
    )
}

/// Sends bytes to the host over the host link.
pub fn hostlink_write(bytes: &[u8]) -> HcResult {
    call(
        Hypercall::HostlinkWrite,
        bytes.as_ptr() as u64,
        bytes.len() as u64,
        0,
        0,
    )
}

/// Stages the hypervisor image at guest virtual address `va`, `len` bytes.
///
/// # Safety
/// `va..va + len` must be memory of this guest that it does not change
/// while the call runs (the hypervisor only reads it).
pub unsafe fn lu_load_buffer(va: u64, len: u64) -> HcResult {
    call(Hypercall::LuLoadBuffer, va, len, 0, 0)
}

/// Stages the hypervisor image held in the first `len` bytes of this guest's
/// free area (see [`crate::mem::free_area`], written with
/// [`crate::mem::free_area_write`]) for a live update.
///
/// # Panics
/// If `len` is larger than the free area.
pub fn lu_load_free_area(len: u64) -> HcResult {
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
    unsafe { lu_load_buffer(va, len) }
}
