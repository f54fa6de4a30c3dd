//! The hypercall table: one `do_*` handler per call, grouped by subject,
//! like Xen's.
//!
//! | file | hypercalls |
//! |---|---|
//! | [`console`] | `console_write`, `console_read` |
//! | [`memory`] | `mmu_update`, `pin_table`, `unpin_table`, `new_baseptr`, `increase_reservation`, `decrease_reservation` |
//! | [`sched`] | `yield`, `shutdown`, `poweroff` |
//! | [`domctl`] | `domctl` and its operations (`iomem_permit` in [`devices`]) |
//! | [`devices`] | `devices` |
//! | [`info`] | `report`, `set_segment_base`, `sysinfo` |
//! | [`lu`] | `lu_load`, `lu_load_buffer`, `lu_status`, `lu_unload`, `lu_exec`, `hostlink_read`, `hostlink_write` |
//! | [`memmap`] | `memory_map`, `machine_memory_map` |
//! | [`guest`] | `read_guest` |
//! | here | `last_error` |
//!
//! The calling convention is `pv_abi::hypercall`'s: the number in `rax`,
//! arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, the result in `rax` —
//! [`return_value`] is the one place a result becomes that word. The
//! arguments are decoded once, by `pv_abi::call` (host-tested and fuzzed),
//! and the handlers take them typed and within their bounds; they check
//! what needs the hypervisor's state. Only dom0 may make the calls
//! `Hypercall::dom0_only` names: [`hypercall`] refuses them to any other
//! domain before it decodes. This is the top layer: it may call into every
//! subsystem, none calls into it.

mod console;
pub(crate) mod devices;
mod domctl;
mod guest;
mod info;
mod lu;
mod memmap;
mod memory;
mod sched;

use alloc::string::ToString;

use hvlu_types::DomId;
use pv_abi::call::{Call, DecodeError, GuestBuf};
use pv_abi::hypercall::{Error, Hypercall};

use crate::arch::trap::TrapFrame;
use crate::cmdline::LogLevel;
use crate::hv::Hv;
use crate::guest_mem::Space;
use crate::lu::outgoing::ExecCall;
use crate::{deferred, guest_mem, hvprintln};

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
///
/// Work left for after an update's resume ([`Hv::defer`]) runs first, so
/// that every call sees the hypervisor whole. A call only dom0 may make is
/// refused to any other domain next (`Hypercall::dom0_only`); then the arguments are decoded once
/// (`pv_abi::call`), and the handler gets them typed.
pub fn hypercall(hv: &mut Hv, frame: &mut TrapFrame) {
    // What the incoming side of an update left for after the guests
    // resumed (free RAM, the boot modules, the report) is done before any
    // guest's first call is answered: no call sees it half done. Except
    // during the short turns right after the resume, which only domUs get
    // (`crate::sched`): the work would stretch the turn of the first domU
    // that calls into the pause of all the others, and nothing a domU can
    // ask needs it (free RAM is initialised on demand, Invariant 29; the
    // modules and the report are dom0's).
    hv.turn_trap_in();
    if hv.sched.in_turns() {
        answer(hv, frame);
    } else {
        deferred::answer(hv, |hv| answer(hv, frame));
    }
    hv.turn_trap_out();
}

/// Answers the hypercall in `frame`, the deferred work done.
fn answer(hv: &mut Hv, frame: &mut TrapFrame) {
    let r = &frame.regs;
    let nr = r.rax;
    let args = [r.rdi, r.rsi, r.rdx, r.r10, r.r8];
    let Some(d) = hv.sched.current_domain() else {
        return;
    };
    let number = Hypercall::from_repr(nr);
    // The calls whose refusals `last_error` explains start with none.
    let explained = matches!(
        number,
        Some(
            Hypercall::Domctl
                | Hypercall::ReadGuest
                | Hypercall::LuLoad
                | Hypercall::LuLoadBuffer
                | Hypercall::LuUnload
                | Hypercall::LuExec
        )
    );
    if explained && require_privileged(hv).is_ok() {
        hv.last_error.clear();
    }
    let hvm = hv.current_domain().is_some_and(|dom| dom.hvm.is_some());
    let result = if number.is_some_and(Hypercall::dom0_only) && require_privileged(hv).is_err() {
        Err(Error::Permission)
    } else if hvm && number.is_some_and(pv_only) {
        // Its memory is the nested tables', which only the hypervisor
        // changes: a PV page-table or reservation call has nothing to act
        // on, and typing one of its frames as a page table would be wrong.
        Err(Error::NoSys)
    } else {
        match Call::decode(nr, args) {
            // These leave `frame` to the scheduler.
            Ok(Call::Yield) => return sched::do_yield(hv, frame),
            Ok(Call::Shutdown { code }) => return sched::do_shutdown(hv, frame, d, code),
            // Returns only if the update was cancelled, or to give the
            // guests their last turns (the caller makes the call again).
            Ok(Call::LuExec) => match hv.lu_exec(frame) {
                ExecCall::Turns => return,
                ExecCall::Cancelled(result) => result,
            },
            Ok(call) => dispatch(hv, d, call),
            Err(e) => refuse_arguments(hv, number, e),
        }
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

/// The calls only a PV domain makes: its page tables, its reservation (an
/// HVM domain's frames are its nested tables'), its segment bases (an HVM
/// guest loads its own).
fn pv_only(call: Hypercall) -> bool {
    matches!(
        call,
        Hypercall::MmuUpdate
            | Hypercall::PinTable
            | Hypercall::UnpinTable
            | Hypercall::NewBaseptr
            | Hypercall::IncreaseReservation
            | Hypercall::DecreaseReservation
            | Hypercall::SetSegmentBase
    )
}

/// Runs `call` for domain `d` (the calls that may switch the caller's
/// context, `yield`, `shutdown` and `lu_exec`, are [`answer`]'s).
fn dispatch(hv: &mut Hv, d: DomId, call: Call) -> Result<u64, Error> {
    match call {
        Call::ConsoleWrite { buf } => console::do_console_write(hv, d, buf),
        Call::ConsoleRead { buf } => console::do_console_read(hv, buf),
        Call::MmuUpdate { reqs } => memory::do_mmu_update(hv, d, reqs),
        Call::PinTable { mfn, level } => memory::do_pin_table(hv, d, mfn, level),
        Call::UnpinTable { mfn } => memory::do_unpin_table(hv, d, mfn),
        Call::NewBaseptr { mfn } => memory::do_new_baseptr(hv, d, mfn),
        Call::IncreaseReservation { mfns_out } => memory::do_increase_reservation(hv, d, mfns_out),
        Call::DecreaseReservation { mfns } => memory::do_decrease_reservation(hv, d, mfns),
        Call::Domctl(op) => domctl::do_domctl(hv, op),
        Call::Poweroff => sched::do_poweroff(hv),
        Call::Report { kind, value } => info::do_report(hv, d, kind, value),
        Call::SetSegmentBase { which, base } => info::do_set_segment_base(hv, which, base),
        Call::SysInfo { buf } => info::do_sysinfo(hv, buf),
        Call::LuLoad { name, force } => lu::do_lu_load(hv, name, force),
        Call::LuLoadBuffer { image, name } => lu::do_lu_load_buffer(hv, image, name),
        Call::LuStatus { buf } => lu::do_lu_status(hv, buf),
        Call::LuUnload => hv.lu_unload(),
        Call::HostlinkRead { buf } => lu::do_hostlink_read(hv, buf),
        Call::HostlinkWrite { buf } => lu::do_hostlink_write(hv, buf),
        Call::LastError { buf } => do_last_error(hv, buf),
        Call::MemoryMap { domid, out } => memmap::do_memory_map(hv, d, domid, out),
        Call::MachineMemoryMap { out } => memmap::do_machine_memory_map(hv, out),
        Call::Devices { out } => devices::do_devices(hv, out),
        Call::ReadGuest {
            domid,
            gpfn,
            offset,
            out,
        } => guest::do_read_guest(hv, domid, gpfn, offset, out),
        Call::Yield | Call::Shutdown { .. } | Call::LuExec => {
            hvprintln!("BUG: {call:?} reached the dispatch table");
            Err(Error::Failed)
        }
    }
}

/// Refuses a call whose argument words did not decode; says why where the
/// hypervisor explains that refusal
/// ([`DecodeError::explained`]): as a live-update refusal for the
/// live-update calls, as a domctl refusal otherwise.
fn refuse_arguments(hv: &mut Hv, call: Option<Hypercall>, e: DecodeError) -> Result<u64, Error> {
    if !e.explained() {
        return Err(e.error());
    }
    match call {
        Some(Hypercall::LuLoad | Hypercall::LuLoadBuffer) => hv.refuse(e.error(), e.to_string()),
        _ => hv.refuse_with(e.error(), e.to_string()),
    }
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
/// `domctl`, `read_guest` or live-update call was refused; returns its
/// whole length.
fn do_last_error(hv: &mut Hv, buf: GuestBuf) -> Result<u64, Error> {
    let bytes = hv.last_error.as_bytes();
    let n = (buf.len as usize).min(bytes.len());
    let total = bytes.len() as u64;
    copy_to_guest(hv, buf.addr, &hv.last_error.as_bytes()[..n])?;
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

/// The caller's domain id and how its pointers translate, for
/// guest-memory access.
fn caller(hv: &Hv) -> Result<(DomId, Space<'_>), Error> {
    let dom = hv.current_domain().ok_or(Error::Failed)?;
    if dom.hvm.is_some() {
        return Ok((dom.id, Space::Hvm(&dom.p2m)));
    }
    let vcpu = hv.current_vcpu().ok_or(Error::Failed)?;
    Ok((dom.id, Space::Pv(vcpu.cr3)))
}

/// Copies `buf.len()` bytes from the caller's address `va`.
fn copy_from_guest(hv: &Hv, va: u64, buf: &mut [u8]) -> Result<(), Error> {
    let (id, cr3) = caller(hv)?;
    guest_mem::read(hv.mem.frametable, id, cr3, va, buf)
}

/// Copies `data` to the caller's address `va` (all of it or nothing).
pub(crate) fn copy_out(hv: &Hv, va: u64, data: &[u8]) -> Result<(), Error> {
    copy_to_guest(hv, va, data)
}

/// Copies `data` to the caller's address `va` (all of it or nothing).
fn copy_to_guest(hv: &Hv, va: u64, data: &[u8]) -> Result<(), Error> {
    let (id, space) = caller(hv)?;
    guest_mem::write(hv.mem.frametable, id, space, va, data)?;
    if let (Space::Hvm(_), Some(dom)) = (space, hv.current_domain()) {
        crate::hvm::logdirty::written(dom, va, data.len() as u64);
    }
    Ok(())
}
