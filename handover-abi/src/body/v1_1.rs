//! Body of ABI version 1.1 — **frozen** once `tests/golden/v1_1.bin` exists:
//! do not change a type, a field, its order or a variant here; add a new
//! version module instead (see [`crate::body`]).
//!
//! 1.1 only adds to 1.0 (the version rule): what a domain *is* beyond its
//! memory and vCPUs, and the hypervisor's own records, so that nothing is
//! lost across an update.
//!
//! - [`Domain`] gains `paused` (the toolstack paused it: it stays paused)
//!   and `reports` (what the guest reported about itself, [`GuestReports`]).
//! - [`HvGlobals`] gains `cmdline`, the hypervisor command line the new
//!   image parses again (log level, timer rate, …).
//! - [`HandoverState`] gains `retired`: the reports of domains destroyed
//!   before the update ([`RetiredDomain`]), at most [`MAX_RETIRED`].
//!
//! Everything else is v1.0's type, re-exported. A 1.0 blob decodes into
//! these types with every addition empty (`From<v1_0::HandoverState>`); a
//! state is written as 1.0 through a borrowing view of v1.0's fields
//! ([`crate::body`]), which refuses a paused domain (1.0 would resume it)
//! and drops the hypervisor's records (its reports, command line and
//! retired domains), which are not the guests'.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::v1_0;
pub use super::v1_0::{
    ConsoleRing, DomainFlags, GpRegs, LuRegion, Machine, PinnedTable, RamRange, RamType, TimeBase,
    Vcpu, VcpuFlags, MAX_NAME_LEN,
};
use crate::types::MemRun;
use hvlu_types::{DomId, Gpfn, MfnRange};

/// Most bytes of the hypervisor command line.
pub const MAX_CMDLINE_LEN: usize = 1024;
/// Most retired domains a state lists.
pub const MAX_RETIRED: usize = 256;

/// Everything the outgoing hypervisor hands to the incoming one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverState {
    /// The machine as the producer saw it, and where the update sits in it.
    pub machine: Machine,
    /// Hypervisor-wide state that must continue.
    pub globals: HvGlobals,
    /// Every domain, in any order. Domain ids are unique.
    pub domains: Vec<Domain>,
    /// Domains destroyed before the update, whose reports still count; at
    /// most [`MAX_RETIRED`].
    pub retired: Vec<RetiredDomain>,
}

/// Hypervisor-wide state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HvGlobals {
    /// The id the next created domain gets; above every domain's id.
    pub next_domid: DomId,
    /// Where the time of the outgoing hypervisor stood, so that guest time
    /// (and the hypervisor's uptime since cold boot) continues.
    pub time: TimeBase,
    /// The hypervisor command line, at most [`MAX_CMDLINE_LEN`] bytes.
    pub cmdline: String,
}

/// One domain and everything needed to rebuild it around its memory.
///
/// The fields up to `console` are v1.0's, with v1.0's invariants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain's id; unique and below [`HvGlobals::next_domid`].
    pub id: DomId,
    /// Domain flags; only known bits, and [`DomainFlags::PV`] set.
    pub flags: DomainFlags,
    /// A name for people; at most [`MAX_NAME_LEN`] bytes of UTF-8.
    pub name: String,
    /// The most frames the domain may own.
    pub max_frames: u64,
    /// The domain's memory, bottom-up (see `v1_0::Domain::runs`).
    pub runs: Vec<MemRun>,
    /// Pinned page tables (see `v1_0::Domain::pinned`).
    pub pinned: Vec<PinnedTable>,
    /// Machine frames outside RAM that the domain may map (device MMIO).
    pub mmio: Vec<MfnRange>,
    /// Guest frame of the start-info page; lies in one of the domain's data runs.
    pub start_info: Gpfn,
    /// The domain's virtual CPUs; ids are unique.
    pub vcpus: Vec<Vcpu>,
    /// Positions in the domain's console rings.
    pub console: ConsoleRing,
    /// The toolstack paused the domain: it does not run until unpaused.
    pub paused: bool,
    /// What the guest reported about itself.
    pub reports: GuestReports,
}

impl Domain {
    /// Total frames in the domain's runs (saturating).
    pub fn frames(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.count))
    }
}

/// The counters of a guest's self-checks, as it reported them (the
/// reference guests check their own memory and report through a
/// hypercall). Plain counters: any value is valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuestReports {
    /// Memory checks done.
    pub checks: u64,
    /// Mismatches found.
    pub mismatches: u64,
    /// Refusal tests that got the expected error.
    pub expected_refusals: u64,
    /// Refusal tests that did not.
    pub unexpected_refusals: u64,
    /// Times the check count went backwards.
    pub regressions: u64,
    /// Faults the guest did not announce.
    pub unexpected_faults: u64,
    /// The guest announced that it will fault on purpose.
    pub expect_fault: bool,
}

/// A domain destroyed before the update: who it was and what it reported.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetiredDomain {
    /// Its id.
    pub id: DomId,
    /// Its name; at most [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Its last reports.
    pub reports: GuestReports,
}

impl From<v1_0::Domain> for Domain {
    fn from(d: v1_0::Domain) -> Domain {
        let v1_0::Domain {
            id,
            flags,
            name,
            max_frames,
            runs,
            pinned,
            mmio,
            start_info,
            vcpus,
            console,
        } = d;
        Domain {
            id,
            flags,
            name,
            max_frames,
            runs,
            pinned,
            mmio,
            start_info,
            vcpus,
            console,
            paused: false,
            reports: GuestReports::default(),
        }
    }
}

/// A 1.0 state in 1.1's types: no domain paused, no reports, no command
/// line, no retired domain.
impl From<v1_0::HandoverState> for HandoverState {
    fn from(s: v1_0::HandoverState) -> HandoverState {
        HandoverState {
            machine: s.machine,
            globals: HvGlobals {
                next_domid: s.globals.next_domid,
                time: s.globals.time,
                cmdline: String::new(),
            },
            domains: s.domains.into_iter().map(Domain::from).collect(),
            retired: Vec::new(),
        }
    }
}
