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
use handover_abi::{HandoverState, PciDevice};
use hvlu_types::{Mfn, MfnRange, PAGE_SIZE};
use old_hv::exec::{EntryPlan, Fault, JumpDetail, MachineView, Platform};
use pv_abi::hypercall::Error;

use crate::arch::kexec::{self, PrepareError};
use crate::arch::trap::TrapFrame;
use crate::arch::{cpu, phys};
use crate::cmdline::LogLevel;
use crate::hv::Hv;
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

impl Hv {
    /// `lu exec`: `frame` is the caller's context. Returns only on
    /// cancellation.
    pub fn lu_exec(&mut self, frame: &mut TrapFrame) -> Result<u64, Error> {
        // The previous update's entries all initialised and its free RAM
        // all the page allocator's: the state, the free digest and the
        // free count are read off them (Invariant 29). Before anything
        // pauses.
        self.settle_all();
        let Some(loaded) = self.lu.loaded.take() else {
            return self.refuse(
                Error::NotFound,
                alloc::string::String::from("nothing is loaded: `lu load <image>` first"),
            );
        };
        if let Some(message) = self.mapping_not_carried(loaded.info.version) {
            self.lu.loaded = Some(loaded);
            return self.refuse(Error::Invalid, message);
        }
        let mut platform = Outgoing {
            hv: self,
            caller: *frame,
            module: &loaded.module,
            reader: phys::table_reader(),
        };
        match old_hv::exec::exec(&mut platform, &loaded.info, &loaded.staging) {
            Ok(never) => match never {},
            Err(error) => {
                let message = alloc::format!("update cancelled, every domain runs on: {error}");
                self.lu.loaded = Some(loaded);
                self.refuse(Error::Failed, message)
            }
        }
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
            free_frames: hv.mem.pages.free_frames(),
            image_frames_out: hv.image_out().map_or(0, |r| r.count),
            tsc_khz: hv.tsc_khz,
            sequence: hv.lu_sequence,
            build_id: build_id::id(),
        }
    }

    /// The page allocator's free frames and this image's frames outside
    /// the region (a bitmap pass, a word at a time).
    fn free_digest(&self) -> u64 {
        let hv = &*self.hv;
        new_hv::free::digest_of(hv.mem.pages.free_runs().chain(hv.image_out()))
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
    fn jump(&mut self, prepared: kexec::Prepared, d: &JumpDetail) -> Infallible {
        if self.hv.options.log_level < LogLevel::Debug {
            hvprintln!("lu: exec `{}`: jumping", self.module);
        } else {
            hvprintln!(
                "lu: exec `{}`: state {} bytes, digest {:#018x}, free frames {}, the new image's boot fits ({:#x}..{:#x}): jumping",
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
