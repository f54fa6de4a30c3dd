//! Globals: what the hypervisor itself carries across an update — the
//! command line it was booted with, the next domain id, the time base that
//! makes uptime count from the cold boot — and the reports of domains
//! destroyed earlier. Restored by `new_hv::globals`.

use alloc::vec::Vec;

use handover_abi::{HvGlobals, RetiredDomain, TimeBase, MAX_RETIRED};
use hvlu_types::DomId;

/// Command-line options that belong to one image only and are never handed
/// on (fault injection is for that image's tests).
pub const NOT_HANDED_ON: &[&str] = &["lu_inject"];

/// What the hypervisor knows of its globals.
#[derive(Clone, Copy, Debug)]
pub struct GlobalsInput<'a> {
    /// Its command line.
    pub cmdline: &'a str,
    /// The next domain id it would hand out.
    pub next_domid: DomId,
    /// The TSC now.
    pub tsc: u64,
    /// The TSC's frequency.
    pub tsc_khz: u64,
    /// The TSC at the cold boot (uptime counts from there).
    pub boot_tsc: u64,
}

/// The state's globals: the command line without the options
/// [`NOT_HANDED_ON`], the next domain id, and the time since the cold boot.
pub fn save(g: GlobalsInput<'_>) -> HvGlobals {
    let cmdline = g
        .cmdline
        .split_ascii_whitespace()
        .filter(|w| {
            let key = w.split_once('=').map_or(*w, |(k, _)| k);
            !NOT_HANDED_ON.contains(&key)
        })
        .collect::<Vec<_>>()
        .join(" ");
    HvGlobals {
        next_domid: g.next_domid,
        time: TimeBase {
            tsc: g.tsc,
            tsc_khz: g.tsc_khz,
            system_time_ns: hvlu_types::time::tsc_to_ns(
                g.tsc.saturating_sub(g.boot_tsc),
                g.tsc_khz,
            ),
        },
        cmdline,
    }
}

/// The retired domains' reports, at most [`MAX_RETIRED`] (the newest kept:
/// the hypervisor retires in order, so they are the last).
pub fn save_retired(retired: &[RetiredDomain]) -> Vec<RetiredDomain> {
    retired[retired.len().saturating_sub(MAX_RETIRED)..].to_vec()
}
