//! What a live update leaves to initialise — the frametable and M2P
//! entries of every frame the handover state does not name, and the free
//! RAM among them (`frame_ownership::lazy`, Invariant 29) — done in the
//! hypervisor's own time after the guests run again, never inside the
//! blackout and never with interrupts off for longer than one chunk:
//!
//! - while nothing is runnable, the idle loop initialises a chunk at a
//!   time ([`Hv::settle_idle`]);
//! - while guests keep the CPU busy, the initialisation takes one time
//!   slice per round of the run queue, as one more vCPU would
//!   ([`Hv::settle_turn`], from the timer tick), with interrupts on: the
//!   next tick ends it;
//! - anything that needs an entry before then initialises it on the spot:
//!   a frame a guest names ([`crate::mm::Memory::settle_at`]), a frame the
//!   page allocator must hand out ([`crate::mm::Memory::alloc`]), or all of
//!   them for what needs the whole table ([`Hv::settle_all`]: a new domain,
//!   the outgoing side of the next update).
//!
//! With `lu_settle=demand` (for tests) only the last way runs.
//!
//! Then, the same way, the whole table is audited a chunk at a time
//! ([`audit`]): every entry that says a frame is owned must be backed by
//! its owner — the domain exists and its p2m maps the entry's M2P gpfn to
//! that frame, or (no guest frame) the entry is one of its nested tables
//! or log-dirty frames. It is the check independent of the runs that a
//! scan of the whole table inside the blackout used to give; each chunk is
//! audited while no guest runs, so each entry is checked against a
//! consistent hypervisor.
//!
//! When the last entry is initialised and audited, the work left for that
//! moment runs (the update's `lu-settled` line).

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use frame_ownership::lazy::CHUNK;
use frame_ownership::PageType;

use crate::arch::{cpu, trap as arch_trap};
use crate::deferred;
use crate::hv::Hv;
use crate::trap::TICKS;

/// What is known of the initialisation when it ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settled {
    /// TSC ticks spent initialising.
    pub busy_tsc: u64,
    /// Chunks initialised.
    pub steps: u64,
    /// Background time slices taken.
    pub turns: u64,
    /// TSC when the last entry was initialised and audited.
    pub done_tsc: u64,
    /// Entries audited that say their frame is owned.
    pub owned: u64,
    /// Of those, entries their owner does not back (0 unless the
    /// frametable is wrong).
    pub unbacked: u64,
    /// The first unbacked entry's frame.
    pub first_unbacked: Option<u64>,
}

/// Work for the moment the initialisation ends.
type OnDone = Box<dyn FnOnce(&mut Hv, Settled) + Send>;

/// The state of the initialisation an update left.
#[derive(Default)]
pub struct Settling {
    /// What it took so far.
    so_far: Settled,
    /// Timer ticks since its last time slice.
    since_turn: usize,
    /// The next entry to audit, once every entry is initialised; `None`
    /// when there is no audit to do.
    audit_next: Option<u64>,
    /// Work for the moment it ends.
    on_done: Option<OnDone>,
}

impl core::fmt::Debug for Settling {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Settling")
            .field("so_far", &self.so_far)
            .field("on_done", &self.on_done.is_some())
            .finish()
    }
}

impl Settling {
    /// Leaves `work` for the moment every entry is initialised.
    pub fn when_done(&mut self, work: impl FnOnce(&mut Hv, Settled) + Send + 'static) {
        self.on_done = Some(Box::new(work));
        self.audit_next = Some(0);
    }

    /// Whether nothing is left to do.
    fn idle(&self, hv_settled: bool) -> bool {
        hv_settled && self.on_done.is_none()
    }
}

impl Hv {
    /// Initialises one chunk; returns whether entries are left. The work
    /// left for after the resume (`crate::deferred`) runs first, so that
    /// its lines come before the report's.
    pub fn settle_step(&mut self) -> bool {
        if self.settling.idle(self.mem.unsettled.is_settled()) {
            return false;
        }
        deferred::run(self);
        let start = cpu::rdtsc();
        let left = if !self.mem.unsettled.is_settled() {
            self.mem.settle_some(CHUNK);
            true
        } else {
            self.audit_step()
        };
        let end = cpu::rdtsc();
        let s = &mut self.settling.so_far;
        s.busy_tsc += end - start;
        s.steps += 1;
        if left {
            return true;
        }
        s.done_tsc = end;
        let settled = *s;
        if let Some(work) = self.settling.on_done.take() {
            work(self, settled);
        }
        false
    }

    /// Audits the next chunk of the table; returns whether entries are
    /// left.
    fn audit_step(&mut self) -> bool {
        let Some(from) = self.settling.audit_next else {
            return false;
        };
        let to = (from + CHUNK).min(self.mem.frametable.len() as u64);
        for mfn in from..to {
            let fi = self.mem.frametable[mfn as usize];
            let Some(owner) = fi.owner() else {
                continue;
            };
            let gpfn = self.mem.m2p[mfn as usize];
            let backed = self.domains.get(&owner).is_some_and(|d| {
                if gpfn == frame_ownership::M2P_INVALID {
                    d.hvm.is_some()
                        && matches!(fi.page_type(), Some(PageType::P2m | PageType::LogDirty))
                } else {
                    d.p2m.get(hvlu_types::Gpfn(gpfn)) == Some(mfn)
                }
            });
            let s = &mut self.settling.so_far;
            s.owned += 1;
            if !backed {
                s.unbacked += 1;
                s.first_unbacked.get_or_insert(mfn);
            }
        }
        let more = to < self.mem.frametable.len() as u64;
        self.settling.audit_next = more.then_some(to);
        more
    }

    /// Initialises every entry left (for what needs the whole table).
    pub fn settle_all(&mut self) {
        while self.settle_step() {}
    }

    /// From the idle loop: one chunk with interrupts on. Returns whether
    /// it did any work (the idle loop then looks for a runnable vCPU again
    /// instead of waiting).
    pub fn settle_idle(&mut self) -> bool {
        if self.options.lu_settle_on_demand || self.settling.idle(self.mem.unsettled.is_settled()) {
            return false;
        }
        arch_trap::with_interrupts(|| self.settle_step());
        true
    }

    /// From the timer tick: once per round of the run queue, a time slice
    /// of initialisation with interrupts on, until the next tick.
    pub fn settle_turn(&mut self) {
        if self.options.lu_settle_on_demand || self.settling.idle(self.mem.unsettled.is_settled()) {
            return;
        }
        self.settling.since_turn += 1;
        if self.settling.since_turn <= self.sched.run_queue.len() {
            return;
        }
        self.settling.since_turn = 0;
        self.settling.so_far.turns += 1;
        let tick = TICKS.load(Ordering::Relaxed);
        arch_trap::with_interrupts(|| {
            while self.settle_step() && TICKS.load(Ordering::Relaxed) == tick {}
        });
    }
}
