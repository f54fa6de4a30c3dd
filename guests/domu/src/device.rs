//! A driver domU (`edu=ADDR`): drives QEMU's edu device at BAR address
//! `ADDR`, which dom0 grants it (`iomem permit`), once a heartbeat.
//!
//! Until the grant, mapping the BAR is refused for permission
//! (`Permission`); it tries again at every heartbeat and says so once.
//! Once granted, it first maps the BAR cacheable, which the hypervisor
//! must refuse for its memory type (`TypeViolation`: probe 16), then
//! uncacheable at its window slot [`DEVICE_SLOT`], where the mapping stays
//! — across live updates too. Every check counts; a failed one is a
//! mismatch of the domain's report.

use pvrt::edu::{self, CACHEABLE, UNCACHEABLE};
use pvrt::hvlu_types::PAGE_SIZE;
use pvrt::println;
use pvrt::pv_abi::hypercall::{Error, Report};
use pvrt::{hc, start_info};

use crate::DEVICE_SLOT;

/// Where the driver is.
#[derive(Debug)]
enum State {
    /// No permission yet; whether it said so.
    Waiting { said: bool },
    /// Mapped at [`DEVICE_SLOT`].
    Mapped,
    /// Refused for another reason than permission: it stops trying.
    Broken,
}

/// The driver.
#[derive(Debug)]
pub struct Driver {
    bar: u64,
    state: State,
    /// Checks done.
    pub checks: u64,
    /// Checks failed (and mappings that failed once permitted).
    pub failures: u64,
    fresh: u64,
}

/// The probe that maps the BAR cacheable once permitted.
const PROBE_CACHEABLE: u64 = 16;

impl Driver {
    /// A driver of the edu device whose BAR 0 is at `bar`.
    pub fn new(bar: u64) -> Driver {
        Driver {
            bar,
            state: State::Waiting { said: false },
            checks: 0,
            failures: 0,
            fresh: 0x6564_7500 ^ start_info().domid,
        }
    }

    /// One step: map if it may now, then check the device.
    pub fn step(&mut self) {
        if let State::Waiting { said } = self.state {
            self.state = self.try_map(said);
        }
        if !matches!(self.state, State::Mapped) {
            return;
        }
        self.fresh = self
            .fresh
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        match edu::check(DEVICE_SLOT, self.fresh) {
            Ok(_) => self.checks += 1,
            Err(f) => {
                self.checks += 1;
                self.failures += 1;
                println!("edu: check {} FAILED: {f}", self.checks);
            }
        }
    }

    fn try_map(&mut self, said: bool) -> State {
        let mfn = self.bar / PAGE_SIZE;
        match edu::map(DEVICE_SLOT, mfn, CACHEABLE) {
            Err(Error::Permission) => {
                if !said {
                    println!("edu: no permission to map {:#x} yet; waiting", self.bar);
                }
                return State::Waiting { said: true };
            }
            Err(Error::TypeViolation) => {
                println!(
                    "probe {PROBE_CACHEABLE} (map device memory cacheable): refused with `{}` as expected",
                    Error::TypeViolation.name()
                );
                let _ = hc::report(Report::ExpectedRefusal, PROBE_CACHEABLE);
            }
            other => {
                println!(
                    "probe {PROBE_CACHEABLE} (map device memory cacheable): expected `{}`, got {other:?}",
                    Error::TypeViolation.name()
                );
                let _ = hc::report(Report::UnexpectedResult, PROBE_CACHEABLE);
                let _ = edu::map(DEVICE_SLOT, 0, 0);
            }
        }
        match edu::map(DEVICE_SLOT, mfn, UNCACHEABLE) {
            Ok(_) => {
                println!(
                    "edu: bar0 {:#x} mapped uncacheable at {:#x}",
                    self.bar,
                    start_info().window_va + DEVICE_SLOT * PAGE_SIZE
                );
                State::Mapped
            }
            Err(e) => {
                println!("edu: cannot map {:#x} uncacheable: {}", self.bar, e.name());
                self.failures += 1;
                State::Broken
            }
        }
    }
}
