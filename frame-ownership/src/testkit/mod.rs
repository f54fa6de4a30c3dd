//! Simulated machines for tests and benchmarks (feature `testkit`).
//!
//! A [`Machine`] is a RAM map with holes, a live-update region, hv-reserved
//! ranges, device (MMIO) ranges, a simulated physical memory that backs the
//! page-table frames ([`SimMemory`]), and domains whose page tables are real
//! x86-64 4-level tables in that memory. Two builders:
//! - [`random_machine`]: small random machines that exercise every rule
//!   (tests);
//! - [`synthetic_machine`]: large regular guests of a given total size
//!   (benchmark);
//! - [`physmap_machine`]: small synthetic guests made irregular, whose L1
//!   entries come in stretches of every length (tests of the pass's
//!   run-by-run path).
//!
//! Everything here is test support: it panics (with a message) when asked
//! for a machine it cannot build, and is never part of a hypervisor build.

mod memory;
mod random;
mod synthetic;

use alloc::vec;
use alloc::vec::Vec;

use handover_abi::{MemRun, RunKind};
use hvlu_types::{pte::Level, DomId, Mfn, MfnRange};

pub use memory::SimMemory;
pub use random::{random_hvm_machine, random_machine};
pub use synthetic::{physmap_machine, synthetic_machine};

use crate::{
    rebuild, DomainView, Error, FrameInfo, HvmView, MachineLayout, PassReport, M2P_INVALID,
};

/// One simulated domain: the handover-state view of it plus what the
/// builder knows about its tables.
#[derive(Clone, Debug)]
pub struct SimDomain {
    /// Its id.
    pub id: DomId,
    /// Its runs, bottom-up.
    pub runs: Vec<MemRun>,
    /// The MMIO ranges it may map, sorted.
    pub mmio: Vec<MfnRange>,
    /// Its pinned tables.
    pub pinned: Vec<(Mfn, RunKind)>,
    /// The CR3 of each vCPU.
    pub vcpu_cr3: Vec<Mfn>,
    /// Every page-table frame, with its level.
    pub tables: Vec<(Mfn, Level)>,
    /// Every data frame.
    pub data: Vec<Mfn>,
    /// `None` for a PV domain; an HVM domain's nested tables and bitmap.
    pub hvm: Option<SimHvm>,
}

/// What an HVM [`SimDomain`] has besides (its view's [`HvmView`]).
#[derive(Clone, Debug)]
pub struct SimHvm {
    /// The root of its nested tables.
    pub ncr3: Mfn,
    /// Every nested table frame, root first.
    pub p2m: Vec<Mfn>,
    /// Its log-dirty bitmap, when log-dirty mode is on.
    pub log_dirty: Option<MfnRange>,
    /// Its RAM frames.
    pub max_frames: u64,
    /// The first gpfn of its PCI hole.
    pub hole: hvlu_types::Gpfn,
    /// The device frames it maps in the hole, sorted.
    pub identity: Vec<MfnRange>,
}

impl SimDomain {
    /// The borrowed view the pass takes.
    pub fn view(&self) -> DomainView<'_> {
        let view = DomainView::new(
            self.id,
            &self.runs,
            &self.mmio,
            &self.pinned,
            &self.vcpu_cr3,
        );
        match &self.hvm {
            None => view,
            Some(h) => view.with_hvm(HvmView {
                ncr3: h.ncr3,
                log_dirty: h.log_dirty,
                max_frames: h.max_frames,
                hole: h.hole,
                identity: &h.identity,
            }),
        }
    }

    /// The tables of `level`.
    pub fn tables_of(&self, level: Level) -> impl Iterator<Item = Mfn> + '_ {
        self.tables
            .iter()
            .filter(move |t| t.1 == level)
            .map(|t| t.0)
    }
}

/// A simulated machine.
#[derive(Debug)]
pub struct Machine {
    /// RAM ranges, sorted, disjoint.
    pub ram: Vec<MfnRange>,
    /// Non-RAM gaps between (and before) the RAM ranges, below the end of RAM.
    pub holes: Vec<MfnRange>,
    /// The live-update region.
    pub region: MfnRange,
    /// hv-reserved ranges, sorted, disjoint.
    pub hv_reserved: Vec<MfnRange>,
    /// Device MMIO ranges (not RAM), sorted.
    pub devices: Vec<MfnRange>,
    /// Frametable (and M2P) length to allocate.
    pub frametable_len: usize,
    /// The page-table frames' contents.
    pub memory: SimMemory,
    /// The domains, in handover order.
    pub domains: Vec<SimDomain>,
}

/// The tables after a pass, and its result.
#[derive(Debug)]
pub struct PassOutcome {
    /// What [`rebuild`] returned.
    pub result: Result<PassReport, Error>,
    /// The frametable it built.
    pub frametable: Vec<FrameInfo>,
    /// The M2P it built (initialised to [`M2P_INVALID`]).
    pub m2p: Vec<u64>,
}

impl Machine {
    /// The layout the pass takes.
    pub fn layout(&self) -> Result<MachineLayout<'_>, Error> {
        MachineLayout::new(&self.ram, self.region, &self.hv_reserved)
    }

    /// The domain views the pass takes.
    pub fn views(&self) -> Vec<DomainView<'_>> {
        self.domains.iter().map(SimDomain::view).collect()
    }

    /// A zeroed frametable and an M2P filled with [`M2P_INVALID`], of
    /// [`Machine::frametable_len`] entries.
    pub fn new_tables(&self) -> (Vec<FrameInfo>, Vec<u64>) {
        (
            vec![FrameInfo::UNOWNED; self.frametable_len],
            vec![M2P_INVALID; self.frametable_len],
        )
    }

    /// Runs the pass on fresh tables.
    pub fn run_pass(&self) -> PassOutcome {
        let (frametable, m2p) = self.new_tables();
        self.run_pass_on(frametable, m2p)
    }

    /// Runs the pass on the given tables (for tests that corrupt them).
    pub fn run_pass_on(&self, mut frametable: Vec<FrameInfo>, mut m2p: Vec<u64>) -> PassOutcome {
        let views = self.views();
        let result = self
            .layout()
            .and_then(|layout| rebuild(&layout, &views, &self.memory, &mut frametable, &mut m2p));
        PassOutcome {
            result,
            frametable,
            m2p,
        }
    }

    /// One past the last RAM frame.
    pub fn ram_end(&self) -> u64 {
        self.ram.iter().map(|r| r.end()).max().unwrap_or(0)
    }

    /// The domain that owns `mfn` according to the runs, with the run kind.
    pub fn owner_of(&self, mfn: Mfn) -> Option<(usize, RunKind)> {
        self.domains.iter().enumerate().find_map(|(i, d)| {
            d.runs
                .iter()
                .find(|r| r.mfns().contains(mfn))
                .map(|r| (i, r.kind))
        })
    }
}

/// Groups frames of one kind into runs of consecutive mfns, splitting where
/// `split` says so, and returns them (gpfns still 0).
pub(crate) fn runs_of(
    mut mfns: Vec<u64>,
    kind: RunKind,
    mut split: impl FnMut() -> bool,
) -> Vec<MemRun> {
    mfns.sort_unstable();
    let mut runs: Vec<MemRun> = Vec::new();
    for m in mfns {
        match runs.last_mut() {
            Some(r) if r.first_mfn.0 + r.count == m && !split() => r.count += 1,
            _ => runs.push(MemRun {
                first_mfn: Mfn(m),
                count: 1,
                first_gpfn: hvlu_types::Gpfn(0),
                kind,
            }),
        }
    }
    runs
}
