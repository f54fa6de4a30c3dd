//! The scheduler: a round-robin run queue of vCPUs, the vCPU on the CPU,
//! switching between them, and idling when none can run.
//!
//! There is one CPU. A switch happens inside a trap: [`Hv::schedule`] saves
//! the trap frame into the vCPU that was running and loads the next one's
//! into it, so `iretq` resumes the other context.
//!
//! **Short turns around an update.** A vCPU waits a whole round of the run
//! queue for the CPU, a tick per domain. Around a live update that wait
//! would add to the blackout the guests see: the domains that ran first in
//! the round before the pause, and those that run last after the resume,
//! would see their gap grow by a round. So the domUs get a short turn of
//! their own time each ([`TURN_US`], [`TURN_US_HVM`]), in domain order,
//! right before the pause (`lu exec` yields to them once it is ready, and
//! runs the update when the caller gets the CPU back) and right after the
//! resume, before anything else: every guest's
//! gap is then the blackout and about one short turn per other guest
//! ([`Hv::give_turns`]). A short turn ends by the PIT's one-shot count,
//! which is not a tick (`arch::timer::one_shot`).

use alloc::collections::VecDeque;

use hvlu_types::DomId;

use crate::arch::trap::{self, TrapFrame};
use crate::arch::{cpu, paging, timer as arch_timer};
use crate::domain::{Domain, Vcpu};
use crate::hv::Hv;
use crate::hvprintln;

/// A vCPU: its domain and its index in the domain.
pub type VcpuRef = (DomId, usize);

/// The length of a short turn around an update for a PV vCPU, in the
/// guest's own time (the hypervisor's work in its traps is not counted):
/// enough for a domU to finish the step of its check it was in (a page
/// remapped and compared) and notice the gap under TCG, short enough that
/// many domUs' turns stay a small part of the blackout
/// (`docs/performance.md`, "The guests' view"). Measured: a PV domU makes
/// 7–18 calls in 150–300 µs of such a turn, but the first domU after a
/// resume only 2 (its first step is slow under TCG, for a reason not
/// found), and at 150–200 µs it missed now and then.
pub const TURN_US: u64 = 300;

/// The same for an HVM vCPU, whose time in the guest includes, under TCG,
/// the emulated world switch (`VMRUN` with a TLB flush, then nested
/// walks for every page it touches): at 150 µs an HVM domU often did not
/// finish one step and waited a round.
pub const TURN_US_HVM: u64 = 500;

/// The run queue and the running vCPU.
#[derive(Debug, Default)]
pub struct Sched {
    /// The vCPU on the CPU.
    pub current: Option<VcpuRef>,
    /// Runnable vCPUs waiting for the CPU, in the order they run.
    pub run_queue: VecDeque<VcpuRef>,
    /// vCPUs given a short turn, in order, before the run queue.
    pub turns: VecDeque<VcpuRef>,
    /// Whether the vCPU on the CPU is on a short turn.
    pub on_turn: bool,
    /// TSC cycles of its own time the vCPU on a short turn has left.
    turn_left: u64,
    /// The length of the turn under way.
    turn_us: u64,
    /// Whether the hypervisor has the CPU in the vCPU's turn (its time is
    /// not counted).
    turn_in_hv: bool,
    /// The TSC when it last entered (or re-entered) the guest.
    turn_since: u64,
}

impl Sched {
    /// Queues vCPU `vcpu` of domain `dom` behind the others.
    pub fn enqueue(&mut self, dom: DomId, vcpu: usize) {
        self.run_queue.push_back((dom, vcpu));
    }

    /// Forgets every vCPU of `dom`; returns whether one of them was on the
    /// CPU (its page tables are loaded).
    pub fn forget_domain(&mut self, dom: DomId) -> bool {
        self.run_queue.retain(|(d, _)| *d != dom);
        self.turns.retain(|(d, _)| *d != dom);
        let was_current = self.current.is_some_and(|(d, _)| d == dom);
        if was_current {
            self.current = None;
        }
        was_current
    }

    /// The domain of the running vCPU.
    pub fn current_domain(&self) -> Option<DomId> {
        self.current.map(|(d, _)| d)
    }

    /// A short turn of `us` microseconds begins now (the caller arms the
    /// PIT's one-shot count).
    pub fn start_turn(&mut self, us: u64, tsc_khz: u64) {
        self.on_turn = true;
        self.turn_in_hv = false;
        self.turn_left = us * tsc_khz / 1000;
        self.turn_us = us;
        self.turn_since = cpu::rdtsc();
    }

    /// A trap from the vCPU on a short turn (or an HVM vCPU's exit): the
    /// time since it entered the guest was its own, counted against its
    /// turn (once: a trap inside the handling of another counts nothing
    /// more).
    pub fn trap_in(&mut self) {
        if self.on_turn && !self.turn_in_hv {
            let ran = cpu::rdtsc().saturating_sub(self.turn_since);
            self.turn_left = self.turn_left.saturating_sub(ran);
            self.turn_in_hv = true;
        }
    }

    /// Back to the vCPU on a short turn (or into an HVM vCPU): its time
    /// runs again.
    pub fn trap_out(&mut self) {
        if self.on_turn {
            self.turn_in_hv = false;
            self.turn_since = cpu::rdtsc();
        }
    }

    /// Whether short turns are under way (one running or some waiting).
    pub fn in_turns(&self) -> bool {
        self.on_turn || !self.turns.is_empty()
    }
}

impl Hv {
    /// Queues every vCPU of every domain, by domain id.
    pub fn enqueue_all(&mut self) {
        for dom in self.domains.values() {
            for v in 0..dom.vcpus.len() {
                self.sched.enqueue(dom.id, v);
            }
        }
    }

    /// Gives every queued vCPU of every unprivileged domain that is not
    /// paused a short turn ([`Hv::turn_us`]), in domain order, before the rest
    /// of the run queue; returns how many. Each goes back to the run
    /// queue's end when its turn is over.
    pub fn give_turns(&mut self) -> usize {
        let domains = &self.domains;
        let turn = |(d, _): &VcpuRef| {
            domains
                .get(d)
                .is_some_and(|dom| !dom.privileged && !dom.paused)
        };
        let mut turns: alloc::vec::Vec<VcpuRef> =
            self.sched.run_queue.iter().copied().filter(turn).collect();
        turns.sort_unstable();
        self.sched.run_queue.retain(|v| !turn(v));
        self.sched.turns.extend(turns);
        self.sched.turns.len()
    }

    /// Takes the next vCPU to run: the next short turn's, or the first in
    /// the run queue of a domain that is not paused; says which. Ends the
    /// short turns (the PIT back to the tick) when none is left.
    pub(crate) fn pick(&mut self) -> Option<(VcpuRef, bool)> {
        while let Some(v) = self.sched.turns.pop_front() {
            if self.domains.get(&v.0).is_some_and(|dom| !dom.paused) {
                return Some((v, true));
            }
            // Paused since: it waits in the run queue like the others.
            self.sched.run_queue.push_back(v);
        }
        let i = self
            .sched
            .run_queue
            .iter()
            .position(|(d, _)| self.domains.get(d).is_some_and(|dom| !dom.paused))?;
        Some((self.sched.run_queue.remove(i)?, false))
    }

    /// The domain of the running vCPU.
    pub fn current_domain(&self) -> Option<&Domain> {
        let (d, _) = self.sched.current?;
        self.domains.get(&d)
    }

    /// The running vCPU.
    pub fn current_vcpu(&self) -> Option<&Vcpu> {
        let (d, v) = self.sched.current?;
        self.domains.get(&d)?.vcpus.get(v)
    }

    /// The running vCPU, to change its saved state.
    pub fn current_vcpu_mut(&mut self) -> Option<&mut Vcpu> {
        let (d, v) = self.sched.current?;
        self.domains.get_mut(&d)?.vcpus.get_mut(v)
    }

    /// Saves `frame` into the current vCPU and loads the next runnable one
    /// into `frame`; idles while there is none.
    pub fn schedule(&mut self, frame: &mut TrapFrame, requeue_current: bool) {
        if let Some((d, v)) = self.sched.current.take() {
            if let Some(vcpu) = self
                .domains
                .get_mut(&d)
                .and_then(|dom| dom.vcpus.get_mut(v))
            {
                match vcpu.hvm.as_deref_mut() {
                    Some(h) => h.absorb(frame),
                    None => vcpu.frame = *frame,
                }
                if requeue_current {
                    self.sched.enqueue(d, v);
                }
            }
        }
        loop {
            let Some(((d, v), turn)) = self.pick() else {
                self.end_turns();
                self.idle();
                continue;
            };
            if turn {
                if !self.sched.on_turn {
                    // A tick pending since before would end the first
                    // turn at once.
                    trap::take_pending_interrupts();
                }
                let us = self.turn_us(d, v);
                self.sched.start_turn(us, self.tsc_khz);
                arch_timer::one_shot(us);
            } else {
                self.end_turns();
            }
            self.sched.on_turn = turn;
            let Some(vcpu) = self.domains.get(&d).and_then(|dom| dom.vcpus.get(v)) else {
                continue;
            };
            if let Some(h) = vcpu.hvm.as_deref() {
                // `crate::hvm::run` enters it; the frame stands for it
                // until then.
                *frame = crate::hvm::synth_frame(h);
                self.sched.current = Some((d, v));
                return;
            }
            *frame = vcpu.frame;
            if let Err(e) = paging::load_guest_root(vcpu.cr3.addr()) {
                hvprintln!(
                    "d{d} has an invalid root {:#x} ({e}): destroying it",
                    vcpu.cr3.0
                );
                let _ = self.destroy_domain(d);
                continue;
            }
            cpu::set_guest_segment_bases(vcpu.fs_base, vcpu.gs_base);
            self.sched.current = Some((d, v));
            return;
        }
    }

    /// The length of a short turn for vCPU `v` of `d`: [`TURN_US`], or
    /// [`TURN_US_HVM`] for an HVM vCPU.
    pub fn turn_us(&self, d: DomId, v: usize) -> u64 {
        let hvm = self
            .domains
            .get(&d)
            .and_then(|dom| dom.vcpus.get(v))
            .is_some_and(|c| c.hvm.is_some());
        if hvm {
            TURN_US_HVM
        } else {
            TURN_US
        }
    }

    /// A trap from the vCPU on a short turn ([`Sched::trap_in`]).
    pub fn turn_trap_in(&mut self) {
        self.sched.trap_in();
    }

    /// Back to the vCPU on a short turn ([`Sched::trap_out`]).
    pub fn turn_trap_out(&mut self) {
        self.sched.trap_out();
    }

    /// The one-shot count of a short turn ran out: whether the turn is
    /// over. A turn is [`Hv::turn_us`] of the guest's own time: what the
    /// hypervisor spent in its calls meanwhile (under TCG the first run of
    /// the incoming image's code, translated, can take longer than a turn)
    /// is given back, the count re-armed for what is left.
    pub fn turn_over(&mut self) -> bool {
        self.turn_trap_in();
        let left_us = self.sched.turn_left * 1000 / self.tsc_khz.max(1);
        if !self.sched.on_turn || left_us < self.sched.turn_us / 10 {
            return true;
        }
        arch_timer::one_shot(left_us);
        self.turn_trap_out();
        false
    }

    /// The short turns are over: the PIT back to the tick.
    fn end_turns(&mut self) {
        self.sched.on_turn = false;
        if arch_timer::one_shot_armed() {
            arch_timer::periodic(self.options.timer_hz);
        }
    }

    /// Nothing is runnable: powers off if nothing ever can be again, else
    /// initialises a chunk of what an update left, or waits for the timer
    /// (or input).
    fn idle(&mut self) {
        if self.domains.is_empty() {
            hvprintln!("no domain left: powering off");
            self.poweroff();
        }
        if !self.domains.values().any(|d| d.privileged) && self.domains.values().all(|d| d.paused) {
            hvprintln!(
                "dom0 is gone and every domain is paused: nothing can run again, powering off"
            );
            self.poweroff();
        }
        // What an update left to initialise, a chunk at a time, first.
        if self.settle_idle() {
            // Typed input still reaches dom0 between chunks.
            self.console_in.poll();
            return;
        }
        // The lock stays held; the nested interrupt only counts the tick.
        trap::wait_for_interrupt();
        self.console_in.poll();
    }
}
