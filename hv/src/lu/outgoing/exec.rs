//! `lu exec` on this hardware: the outgoing platform of
//! `old_hv::exec::exec`, which holds the order of the update (pause,
//! serialise, pre-flight, checks, entry tables, argument page, jump) and
//! every fault injection point. This module only supplies what touches the
//! hardware: the caller's context, physical memory, the guests' page tables
//! through the direct map, the entry tables and the jump (`arch::kexec`),
//! the clock and the console. Any failure before the jump cancels: the
//! caller gets the error and every domain runs on.

use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;

use frame_ownership::FrameInfo;
use handover_abi::entry::Watchdog;
use handover_abi::{HandoverState, PciDevice};
use hvlu_types::{DomId, Mfn, MfnRange, PAGE_SIZE};
use old_hv::exec::{EntryPlan, Fault, JumpDetail, MachineView, Platform};
use pv_abi::hypercall::Error;

use crate::arch::kexec::{self, PrepareError};
use crate::arch::trap::TrapFrame;
use crate::arch::{cpu, phys};
use crate::cmdline::LogLevel;
use crate::hv::{Hv, Loaded};
use crate::{build_id, hvprintln};

/// Why the hardware could not do a step of the update.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// Physical memory.
    #[error("{0}")]
    Phys(phys::PhysError),
    /// The entry tables.
    #[error("{0}")]
    Tables(PrepareError),
}

/// The outgoing platform: the hypervisor, the caller's context and the
/// module being updated to.
struct Outgoing<'a> {
    hv: &'a mut Hv,
    caller: TrapFrame,
    module: &'a str,
    reader: phys::TableReader,
}

/// What became of an `lu exec` call.
pub enum ExecCall {
    /// The update is ready and the guests get their last short turns
    /// (`crate::sched`): `frame` is another vCPU's now, and the caller,
    /// first in the run queue after the turns, makes the same call again,
    /// which runs the update.
    Turns,
    /// The update was cancelled (or refused): the caller's result.
    Cancelled(Result<u64, Error>),
}

impl Hv {
    /// `lu exec`: `frame` is the caller's context. Returns only on
    /// cancellation, or to let the guests have their last short turns
    /// before the pause ([`ExecCall::Turns`]): the first call makes the
    /// update ready (`old_hv::exec::ready`, nothing paused), gives every
    /// runnable domU a short turn and sets the caller to make the call
    /// again when they are over; that call runs the update
    /// (`old_hv::exec::go`).
    pub fn lu_exec(&mut self, frame: &mut TrapFrame) -> ExecCall {
        // What the previous update left need not be finished: the state
        // reads only the domains' own frames, whose entries are
        // initialised, and the free count and digest count the free RAM
        // not handed to the allocator yet (Invariant 29). Its line says
        // how far it got.
        self.settle_interrupted();
        let Some(loaded) = self.lu.loaded.take() else {
            return ExecCall::Cancelled(self.refuse(
                Error::NotFound,
                alloc::string::String::from("nothing is loaded: `lu load <image>` first"),
            ));
        };
        if let Some(message) = self.mapping_not_carried(loaded.info.version) {
            self.lu.loaded = Some(loaded);
            self.lu.ready = None;
            return ExecCall::Cancelled(self.refuse(Error::Invalid, message));
        }
        let ready = match self.lu.ready.take() {
            // The call made again after the turns.
            Some(ready) => ready,
            None => match self.platform(frame, &loaded, |p, l| {
                old_hv::exec::ready(p, &l.info, &l.staging)
            }) {
                Ok(ready) if self.wants_turns() => {
                    self.lu.loaded = Some(loaded);
                    self.lu.ready = Some(ready);
                    self.yield_for_turns(frame);
                    return ExecCall::Turns;
                }
                Ok(ready) => ready,
                Err(error) => return self.exec_cancelled(loaded, error),
            },
        };
        let error = match self.platform(frame, &loaded, |p, l| {
            old_hv::exec::go(p, &l.info, &l.staging, ready)
        }) {
            Ok(never) => match never {},
            Err(error) => error,
        };
        self.exec_cancelled(loaded, error)
    }

    /// Runs `f` on the outgoing platform of the call in `frame`.
    fn platform<R>(
        &mut self,
        frame: &TrapFrame,
        loaded: &Loaded,
        f: impl FnOnce(&mut Outgoing<'_>, &Loaded) -> R,
    ) -> R {
        let mut platform = Outgoing {
            hv: self,
            caller: *frame,
            module: &loaded.module,
            reader: phys::table_reader(),
        };
        f(&mut platform, loaded)
    }

    /// Whether the update, ready, gives the domUs their last short turns
    /// first: if any can run, and the caller can make its call again (a PV
    /// caller's `syscall` is the two bytes before its rip; the caller is
    /// dom0, which is PV).
    fn wants_turns(&mut self) -> bool {
        self.current_domain().is_some_and(|d| d.hvm.is_none()) && self.give_turns() > 0
    }

    /// Sets the caller in `frame` to make its call again, first in the run
    /// queue once the short turns are over, and switches `frame` to the
    /// first turn.
    fn yield_for_turns(&mut self, frame: &mut TrapFrame) {
        frame.rip = frame.rip.wrapping_sub(2);
        if let Some(caller) = self.sched.current {
            self.sched.run_queue.push_front(caller);
        }
        self.schedule(frame, false);
    }

    /// The update was cancelled with `error`: the image stays loaded, the
    /// caller gets the refusal.
    fn exec_cancelled(&mut self, loaded: Loaded, error: old_hv::exec::ExecError<HwError>) -> ExecCall {
        let message = alloc::format!("update cancelled, every domain runs on: {error}");
        self.lu.loaded = Some(loaded);
        ExecCall::Cancelled(self.refuse(Error::Failed, message))
    }

    /// Why an update written as `version` cannot carry a device mapping,
    /// before anything is paused: the 1.0 and 1.1 releases check a
    /// domain's MMIO ranges in their pass and then forget them, and write
    /// them empty, so the update back would find the mapping without a
    /// permission. A hop through them keeps the default access only while
    /// nothing maps device memory (an L1 scan per domain: not the
    /// blackout).
    fn mapping_not_carried(&self, version: handover_abi::AbiVersion) -> Option<alloc::string::String> {
        if version >= handover_abi::AbiVersion::new(1, 2) {
            return None;
        }
        self.domains.values().find_map(|dom| {
            dom.mmio.iter().find_map(|&range| {
                crate::hypercall::devices::mapping_in(self, dom, range).map(|(table, index, mfn)| {
                    alloc::format!(
                        "handover {version} cannot carry d{}'s mapping of device memory mfn \
                         {mfn:#x} (entry {index} of its L1 table mfn {table:#x}): the image it \
                         goes to forgets I/O memory permissions; unmap it first (dom0: `edu \
                         unmap`); nothing was paused",
                        dom.id
                    )
                })
            })
        })
    }

    /// This image's frames outside the region: a cold-boot image's, which
    /// the new image frees; none once the image runs from the region.
    fn image_out(&self) -> Option<MfnRange> {
        let (start, end) = crate::arch::image_range();
        (!self.mem.region.contains(start)).then(|| {
            MfnRange::new(
                Mfn::containing(start),
                end.div_ceil(PAGE_SIZE) - start / PAGE_SIZE,
            )
        })
    }
}

impl Platform for Outgoing<'_> {
    type Error = HwError;
    type Prepared = kexec::Prepared;
    type Jumped = Infallible;
    type Tables = phys::TableReader;

    fn now(&self) -> u64 {
        cpu::rdtsc()
    }

    /// One CPU: every other vCPU is already stopped at a trap boundary; the
    /// caller's context is saved with the result it will see in the new
    /// hypervisor.
    fn pause(&mut self) {
        let mut saved = self.caller;
        saved.regs.rax = 0;
        if let Some(vcpu) = self.hv.current_vcpu_mut() {
            vcpu.frame = saved;
        }
    }

    /// The caller returns with the error; the others were never stopped
    /// for longer than the call.
    fn resume(&mut self) {}

    fn fault(&mut self) -> Option<Fault> {
        let fault = self.hv.options.lu_inject;
        if matches!(fault, Some(Fault::Fail(_))) {
            // Spent: the next update runs without it.
            self.hv.options.lu_inject = None;
        }
        fault
    }

    fn state(&self, image: MfnRange, state: MfnRange) -> HandoverState {
        self.hv.handover_state(image, state)
    }

    /// This hypervisor enumerates no PCI device yet (issue #15): it
    /// records none, and a scan finds none.
    /// The devices as they are now, nothing written, the BARs' sizes
    /// those recorded at boot.
    fn devices(&mut self) -> Result<Vec<PciDevice>, HwError> {
        let known: Vec<MfnRange> = crate::pci::memory_frames(&self.hv.devices);
        let now = crate::devices::rescan(&known, &self.hv.mem.ram, false, self.hv.tsc_khz);
        now.print();
        Ok(crate::devices::handover(&now.devices))
    }

    fn frametable(&self) -> (&[FrameInfo], &[u64]) {
        (self.hv.mem.frametable, self.hv.mem.m2p)
    }

    fn tables(&self) -> &phys::TableReader {
        &self.reader
    }

    fn machine(&self) -> MachineView<'_> {
        let hv = &*self.hv;
        MachineView {
            ram: &hv.mem.ram,
            region: hv.mem.region,
            reserved: &hv.mem.reserved,
            free_frames: hv.mem.free_frames(),
            image_frames_out: hv.image_out().map_or(0, |r| r.count),
            tsc_khz: hv.tsc_khz,
            sequence: hv.lu_sequence,
            build_id: build_id::id(),
            watchdog: hv.options.lu_watchdog,
            caller: hv
                .sched
                .current
                .map_or((DomId(0), 0), |(d, v)| (d, v as u16)),
        }
    }

    /// The page allocator's free frames and this image's frames outside
    /// the region (a bitmap pass, a word at a time).
    fn free_generation(&self) -> u64 {
        self.hv.mem.pages.generation()
    }

    fn free_digest(&self) -> u64 {
        let hv = &*self.hv;
        // Free RAM whose entries are not initialised yet is free too.
        new_hv::free::digest_of(
            hv.mem
                .pages
                .free_runs()
                .chain(hv.mem.unsettled.free().iter().copied())
                .chain(hv.image_out()),
        )
    }

    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), HwError> {
        phys::read(paddr, buf).map_err(HwError::Phys)
    }

    fn write(&mut self, paddr: u64, bytes: &[u8]) -> Result<(), HwError> {
        phys::write(paddr, bytes).map_err(HwError::Phys)
    }

    fn entry_tables(&mut self, plan: &EntryPlan) -> Result<kexec::Prepared, HwError> {
        kexec::prepare(plan).map_err(HwError::Tables)
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        hvprintln!("{line}");
    }

    /// Inside the blackout every console byte is an emulated port write:
    /// one short line marks the jump (the last words of an image whose
    /// successor never reports), the detail is for `loglvl=debug`; the new
    /// image's report carries the state size, digest and free frames.
    fn arm_watchdog(&mut self, watchdog: Watchdog) {
        crate::arch::watchdog::arm(watchdog);
    }

    fn jump(&mut self, prepared: kexec::Prepared, d: &JumpDetail) -> Infallible {
        let watchdog = d.watchdog.map(|w| {
            alloc::format!(
                "the watchdog ({}) armed for {} s, ",
                w.device.name(),
                w.deadline_ms / 1000
            )
        });
        let watchdog = watchdog.as_deref().unwrap_or("");
        if self.hv.options.log_level < LogLevel::Debug {
            hvprintln!("lu: exec `{}`: {watchdog}jumping", self.module);
        } else {
            hvprintln!(
                "lu: exec `{}`: state {} bytes, digest {:#018x}, free frames {}, the new image's boot fits ({:#x}..{:#x}), {watchdog}jumping",
                self.module,
                d.state_len,
                d.digest,
                d.free_frames,
                d.boot.heap.start.min(d.boot.m2p.start),
                d.boot.heap.end().max(d.boot.m2p.end())
            );
        }
        prepared.jump()
    }
}
