//! The scheduler: a round-robin run queue of vCPUs, the vCPU on the CPU,
//! switching between them, and idling when none can run.
//!
//! There is one CPU. A switch happens inside a trap: [`Hv::schedule`] saves
//! the trap frame into the vCPU that was running and loads the next one's
//! into it, so `iretq` resumes the other context.

use alloc::collections::VecDeque;

use hvlu_types::DomId;

use crate::arch::trap::{self, TrapFrame};
use crate::arch::{cpu, paging};
use crate::domain::{Domain, Vcpu};
use crate::hv::Hv;
use crate::hvprintln;

/// A vCPU: its domain and its index in the domain.
pub type VcpuRef = (DomId, usize);

/// The run queue and the running vCPU.
#[derive(Debug, Default)]
pub struct Sched {
    /// The vCPU on the CPU.
    pub current: Option<VcpuRef>,
    /// Runnable vCPUs waiting for the CPU, in the order they run.
    pub run_queue: VecDeque<VcpuRef>,
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
            let runnable = self
                .sched
                .run_queue
                .iter()
                .position(|(d, _)| self.domains.get(d).is_some_and(|dom| !dom.paused));
            let Some(i) = runnable else {
                self.idle();
                continue;
            };
            let Some((d, v)) = self.sched.run_queue.remove(i) else {
                continue;
            };
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
