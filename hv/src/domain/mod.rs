//! PV domains: their memory, vCPUs, consoles and self-check reports; how
//! they are built ([`build`]) and created and destroyed ([`lifecycle`]).

pub mod build;
pub mod lifecycle;
mod vcpu;

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::DomId;

pub use lifecycle::{DEFAULT_DOMU_KIB, DOM0_KIB};
pub use vcpu::Vcpu;

/// What a domain reported about itself (`report` hypercall).
#[derive(Clone, Copy, Debug, Default)]
pub struct Reports {
    /// Memory checks done (must never go back).
    pub checks: u64,
    /// Mismatches found (must stay 0).
    pub mismatches: u64,
    /// Refusal tests that got the expected error.
    pub expected_refusals: u64,
    /// Refusal tests that did not.
    pub unexpected: u64,
    /// Times `checks` went backwards.
    pub regressions: u64,
    /// The guest announced a deliberate fault.
    pub expect_fault: bool,
    /// The guest faulted without announcing it.
    pub unexpected_faults: u64,
}

impl Reports {
    /// Whether the domain's self-checks are clean.
    pub fn clean(&self) -> bool {
        self.mismatches == 0
            && self.unexpected == 0
            && self.regressions == 0
            && self.unexpected_faults == 0
    }
}

/// A PV domain.
#[derive(Debug)]
pub struct Domain {
    /// Its id.
    pub id: DomId,
    /// Its name (the module it was built from).
    pub name: String,
    /// Whether it may use privileged hypercalls (dom0).
    pub privileged: bool,
    /// Memory limit in frames.
    pub max_frames: u64,
    /// Guest frame → machine frame; `u64::MAX` for a gpfn with no frame.
    pub p2m: Vec<u64>,
    /// Its vCPUs.
    pub vcpus: Vec<Vcpu>,
    /// Paused by the toolstack.
    pub paused: bool,
    /// Console output not yet ended by a newline.
    pub console_line: Vec<u8>,
    /// Self-check reports.
    pub reports: Reports,
}

impl Domain {
    /// A running (not paused) domain around the frames of `p2m`, with no
    /// console output and no reports yet: built by the domain builder, or
    /// rebuilt around preserved frames after a live update.
    pub fn new(
        id: DomId,
        name: &str,
        privileged: bool,
        max_frames: u64,
        p2m: Vec<u64>,
        vcpus: Vec<Vcpu>,
    ) -> Domain {
        Domain {
            id,
            name: String::from(name),
            privileged,
            max_frames,
            p2m,
            vcpus,
            paused: false,
            console_line: Vec::new(),
            reports: Reports::default(),
        }
    }

    /// Frames the domain owns.
    pub fn frames(&self) -> u64 {
        self.p2m.iter().filter(|&&m| m != u64::MAX).count() as u64
    }
}
