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
//! When the last entry is initialised, the work left for that moment runs
//! (the update's report line, whose release figures it completes).

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use frame_ownership::lazy::CHUNK;

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
    /// TSC when the last entry was initialised.
    pub done_tsc: u64,
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
    }
}

impl Hv {
    /// Initialises one chunk; returns whether entries are left. The work
    /// left for after the resume (`crate::deferred`) runs first, so that
    /// its lines come before the report's.
    pub fn settle_step(&mut self) -> bool {
        if self.mem.unsettled.is_settled() && self.settling.on_done.is_none() {
            return false;
        }
        deferred::run(self);
        let start = cpu::rdtsc();
        let n = self.mem.settle_some(CHUNK);
        let end = cpu::rdtsc();
        let s = &mut self.settling.so_far;
        s.busy_tsc += end - start;
        s.steps += u64::from(n > 0);
        if !self.mem.unsettled.is_settled() {
            return true;
        }
        s.done_tsc = end;
        let settled = *s;
        if let Some(work) = self.settling.on_done.take() {
            work(self, settled);
        }
        false
    }

    /// Initialises every entry left (for what needs the whole table).
    pub fn settle_all(&mut self) {
        while self.settle_step() {}
    }

    /// From the idle loop: one chunk with interrupts on. Returns whether
    /// it did any work (the idle loop then looks for a runnable vCPU again
    /// instead of waiting).
    pub fn settle_idle(&mut self) -> bool {
        if self.options.lu_settle_on_demand
            || (self.mem.unsettled.is_settled() && self.settling.on_done.is_none())
        {
            return false;
        }
        arch_trap::with_interrupts(|| self.settle_step());
        true
    }

    /// From the timer tick: once per round of the run queue, a time slice
    /// of initialisation with interrupts on, until the next tick.
    pub fn settle_turn(&mut self) {
        if self.options.lu_settle_on_demand
            || (self.mem.unsettled.is_settled() && self.settling.on_done.is_none())
        {
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
