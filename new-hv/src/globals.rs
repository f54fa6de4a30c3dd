//! Globals: the hypervisor's own state back from the handover state
//! (`old_hv::globals::save` wrote it) — its command line, the next domain
//! id, the TSC of the cold boot so that uptime goes on — and the retired
//! domains' reports.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::{HvGlobals, RetiredDomain};
use hvlu_types::DomId;

/// The globals as the incoming hypervisor takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Globals {
    /// The command line the first image was booted with (less what is never
    /// handed on).
    pub cmdline: String,
    /// The next domain id to hand out.
    pub next_domid: DomId,
    /// The TSC at the cold boot: uptime is `now - boot_tsc`.
    pub boot_tsc: u64,
}

/// The globals of a verified state.
pub fn restore(g: &HvGlobals) -> Globals {
    let time = g.time;
    Globals {
        cmdline: g.cmdline.clone(),
        next_domid: g.next_domid,
        boot_tsc: time.tsc.saturating_sub(hvlu_types::time::ns_to_tsc(
            time.system_time_ns,
            time.tsc_khz,
        )),
    }
}

/// The retired domains' reports of a verified state (the decoder bounds
/// their number).
pub fn restore_retired(retired: &[RetiredDomain]) -> Vec<RetiredDomain> {
    retired.to_vec()
}
