//! `yield`, `shutdown` and `poweroff`: what the caller does with the CPU.

use hvlu_types::DomId;
use pv_abi::hypercall::Error;

use super::return_value;
use crate::arch::trap::TrapFrame;
use crate::hv::Hv;
use crate::hvprintln;

/// `yield()`: the caller resumes with 0 after the others had their turn.
pub fn do_yield(hv: &mut Hv, frame: &mut TrapFrame) {
    frame.regs.rax = return_value(Ok(0));
    hv.schedule(frame, true);
}

/// `shutdown(code)`: ends the calling domain; never returns to it.
pub fn do_shutdown(hv: &mut Hv, frame: &mut TrapFrame, d: DomId, code: u64) {
    hvprintln!("d{d} shut down with code {code}");
    let _ = hv.destroy_domain(d);
    hv.schedule(frame, false);
}

/// `poweroff()` (dom0): ends the run with every domain's reports.
pub fn do_poweroff(hv: &mut Hv) -> Result<u64, Error> {
    hv.poweroff()
}
