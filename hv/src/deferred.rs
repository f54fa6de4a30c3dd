//! Work left for after a live update's resume, and the rule that no guest
//! request is answered before it is done.
//!
//! The incoming side of an update resumes the guests before it has handed
//! free RAM to the page allocator, listed the boot modules and printed the
//! update's report (`docs/design.md` section 1, step 7): the blackout need
//! not wait for them. It leaves that work here ([`Deferred::push`]); the
//! work runs once, in the order it was left, at the first timer tick
//! ([`run`]) or before the first hypercall is answered ([`answer`], which
//! every hypercall goes through), whichever comes first. So a request that
//! arrives before the first tick — `modules`, `create` or `live-update`
//! sent the moment `lu exec: done` is printed — sees every module and all
//! free RAM, never a half-ready hypervisor. The one exception is the short
//! turns the domUs get right after the resume (`crate::sched`): their calls
//! are answered without it (nothing they can ask needs it), and the work
//! runs at the first tick after the turns.

use alloc::boxed::Box;
use alloc::collections::VecDeque;

/// One piece of deferred work on a state `S`.
type Work<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Work left on a state `S` for later, oldest first.
pub struct Deferred<S>(VecDeque<Work<S>>);

impl<S> Deferred<S> {
    /// Nothing left.
    pub const fn new() -> Self {
        Deferred(VecDeque::new())
    }

    /// Leaves `work` for later, after the work already left.
    pub fn push(&mut self, work: impl FnOnce(&mut S) + Send + 'static) {
        self.0.push_back(Box::new(work));
    }

    /// Whether no work is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S> Default for Deferred<S> {
    fn default() -> Self {
        Deferred::new()
    }
}

impl<S> core::fmt::Debug for Deferred<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Deferred({} left)", self.0.len())
    }
}

/// A state that keeps its own deferred work.
pub trait Defers: Sized {
    /// The work left on it.
    fn deferred(&mut self) -> &mut Deferred<Self>;
}

/// Runs every piece of work left on `state`, oldest first, including work
/// a piece leaves while it runs; each runs once.
pub fn run<S: Defers>(state: &mut S) {
    while let Some(work) = state.deferred().0.pop_front() {
        work(state);
    }
}

/// Answers `request` on `state` once every piece of deferred work has run:
/// how the hypervisor answers a hypercall.
pub fn answer<S: Defers, R>(state: &mut S, request: impl FnOnce(&mut S) -> R) -> R {
    run(state);
    request(state)
}

#[cfg(test)]
mod tests;
