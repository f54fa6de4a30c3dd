//! The hypercall table: one `do_*` handler per call, grouped by subject,
//! like Xen's.
//!
//! | file | hypercalls |
//! |---|---|
//! | [`console`] | `console_write`, `console_read` |
//! | [`memory`] | `mmu_update`, `pin_table`, `unpin_table`, `new_baseptr`, `increase_reservation`, `decrease_reservation` |
//! | [`sched`] | `yield`, `shutdown`, `poweroff` |
//! | [`domctl`] | `domctl` and its operations |
//! | [`info`] | `report`, `set_segment_base`, `sysinfo` |
//! | [`lu`] | `lu_load`, `lu_load_buffer`, `lu_status`, `lu_unload`, `lu_exec`, `hostlink_read`, `hostlink_write` |
//! | here | `last_error` |
//!
//! The calling convention is `pv_abi::hypercall`'s: the number in `rax`,
//! arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, the result in `rax` —
//! [`return_value`] is the one place a result becomes that word. This is the
//! top layer: it may call into every subsystem, none calls into it.

mod console;
mod domctl;
mod info;
mod lu;
mod memory;
mod sched;

use handover_abi::{DomId, Mfn};
use pv_abi::hypercall::{Error, Hypercall};

use crate::arch::trap::TrapFrame;
use crate::cmdline::LogLevel;
use crate::hv::Hv;
use crate::{guest_mem, hvprintln};

/// The five argument registers, in order.
type Args = [u64; 5];

/// What the guest finds in `rax`: the value on success, the negated error
/// code on failure.
pub fn return_value(result: Result<u64, Error>) -> u64 {
    match result {
        Ok(v) => v,
        Err(e) => (-(e as i64)) as u64,
    }
}

/// Handles the hypercall in `frame` (the caller's context, the current
/// vCPU's): sets its result, or switches `frame` to another vCPU.
pub fn hypercall(hv: &mut Hv, frame: &mut TrapFrame) {
    let r = &frame.regs;
    let nr = r.rax;
    let a: Args = [r.rdi, r.rsi, r.rdx, r.r10, r.r8];
    let Some(d) = hv.sched.current_domain() else {
        return;
    };
    let call = Hypercall::from_number(nr);
    // The calls whose refusals `last_error` explains start with none.
    let explained = matches!(
        call,
        Some(
            Hypercall::Domctl
                | Hypercall::LuLoad
                | Hypercall::LuLoadBuffer
                | Hypercall::LuUnload
                | Hypercall::LuExec
        )
    );
    if explained && require_privileged(hv).is_ok() {
        hv.last_error.clear();
    }
    let result = match call {
        None => Err(Error::NoSys),
        // These leave `frame` to the scheduler or to the update.
        Some(Hypercall::Yield) => return sched::do_yield(hv, frame),
        Some(Hypercall::Shutdown) => return sched::do_shutdown(hv, frame, d, a),
        Some(Hypercall::LuExec) => {
            let result = lu::do_lu_exec(hv, frame);
            explain(hv, &result);
            frame.regs.rax = return_value(result);
            return;
        }
        Some(Hypercall::ConsoleWrite) => console::do_console_write(hv, d, a),
        Some(Hypercall::ConsoleRead) => console::do_console_read(hv, a),
        Some(Hypercall::MmuUpdate) => memory::do_mmu_update(hv, d, a),
        Some(Hypercall::PinTable) => memory::do_pin_table(hv, d, a),
        Some(Hypercall::UnpinTable) => memory::do_unpin_table(hv, d, a),
        Some(Hypercall::NewBaseptr) => memory::do_new_baseptr(hv, d, a),
        Some(Hypercall::IncreaseReservation) => memory::do_increase_reservation(hv, d, a),
        Some(Hypercall::DecreaseReservation) => memory::do_decrease_reservation(hv, d, a),
        Some(Hypercall::Domctl) => domctl::do_domctl(hv, a),
        Some(Hypercall::Poweroff) => sched::do_poweroff(hv),
        Some(Hypercall::Report) => info::do_report(hv, d, a),
        Some(Hypercall::SetSegmentBase) => info::do_set_segment_base(hv, a),
        Some(Hypercall::SysInfo) => info::do_sysinfo(hv, a),
        Some(Hypercall::LuLoad) => lu::do_lu_load(hv, a),
        Some(Hypercall::LuLoadBuffer) => lu::do_lu_load_buffer(hv, a),
        Some(Hypercall::LuStatus) => lu::do_lu_status(hv, a),
        Some(Hypercall::LuUnload) => lu::do_lu_unload(hv),
        Some(Hypercall::HostlinkRead) => lu::do_hostlink_read(hv, a),
        Some(Hypercall::HostlinkWrite) => lu::do_hostlink_write(hv, a),
        Some(Hypercall::LastError) => do_last_error(hv, a),
    };
    if explained {
        explain(hv, &result);
    }
    if let Err(e) = result {
        if hv.options.log_level >= LogLevel::Debug {
            hvprintln!("d{d}: hypercall {nr} refused: {}", e.name());
        }
    }
    frame.regs.rax = return_value(result);
}

/// Gives a refusal that set no reason of its own at least the error's name,
/// so that `last_error` is never empty after a refused call.
fn explain(hv: &mut Hv, result: &Result<u64, Error>) {
    if let Err(e) = result {
        if hv.last_error.is_empty() && require_privileged(hv).is_ok() {
            hv.set_last_error(e.name());
        }
    }
}

/// `last_error(buf, len)` (dom0): up to `len` bytes of the reason the last
/// `domctl` or live-update call was refused; returns its whole length.
fn do_last_error(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    require_privileged(hv)?;
    let bytes = hv.last_error.as_bytes();
    let n = (a[1] as usize).min(bytes.len());
    let total = bytes.len() as u64;
    copy_to_guest(hv, a[0], &hv.last_error.as_bytes()[..n])?;
    Ok(total)
}

/// Refuses unless the caller is dom0.
fn require_privileged(hv: &Hv) -> Result<(), Error> {
    if hv.current_domain().is_some_and(|d| d.privileged) {
        Ok(())
    } else {
        Err(Error::Permission)
    }
}

/// The caller's domain id and root table, for guest-memory access.
fn caller(hv: &Hv) -> Result<(DomId, Mfn), Error> {
    let dom = hv.current_domain().ok_or(Error::Failed)?;
    let vcpu = hv.current_vcpu().ok_or(Error::Failed)?;
    Ok((dom.id, vcpu.cr3))
}

/// Copies `buf.len()` bytes from the caller's address `va`.
fn copy_from_guest(hv: &Hv, va: u64, buf: &mut [u8]) -> Result<(), Error> {
    let (id, cr3) = caller(hv)?;
    guest_mem::read(hv.mem.frametable, id, cr3, va, buf)
}

/// Copies `data` to the caller's address `va` (all of it or nothing).
fn copy_to_guest(hv: &Hv, va: u64, data: &[u8]) -> Result<(), Error> {
    let (id, cr3) = caller(hv)?;
    guest_mem::write(hv.mem.frametable, id, cr3, va, data)
}

/// A little-endian `u64` from the first 8 bytes of `bytes`.
fn le64(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}
