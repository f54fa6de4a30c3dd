//! `lu exec`: pause, serialise, pre-flight, the checks before the point of
//! no return, the entry tables, the argument page and the jump. Any failure
//! before the jump cancels ([`ExecError`]): the caller gets the error and
//! every domain runs on.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::entry::EntryArgs;
use handover_abi::{AbiVersion, HandoverState, Mfn, MfnRange, Producer, PAGE_SIZE};
use old_hv::handover;
use old_hv::staging::Staging;
use pv_abi::hypercall::Error;

use crate::arch::kexec::{self, Mapping, Plan};
use crate::arch::trap::TrapFrame;
use crate::arch::{cpu, phys};
use crate::cmdline::LogLevel;
use crate::cmdline::{ExecStep, Inject};
use crate::hv::{Hv, Loaded};
use crate::{build_id, hvprintln};

/// Why `lu exec` was cancelled before the point of no return. Every
/// domain runs on.
#[derive(Debug, thiserror::Error)]
enum ExecError {
    /// The state could not be encoded into the staging area.
    #[error("{0}")]
    Serialise(old_hv::handover::SerialiseError),
    /// Physical memory of the staging area could not be reached.
    #[error("{step}: {error}")]
    Phys {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        error: phys::PhysError,
    },
    /// The state read back is not the state written.
    #[error("{0}")]
    Preflight(old_hv::handover::PreflightError),
    /// The entry page tables could not be built.
    #[error("entry tables: {0}")]
    EntryTables(kexec::PrepareError),
    /// The argument page would describe a staged range the new image
    /// refuses.
    #[error("{0}")]
    Staged(new_hv::IncomingError),
    /// A check before the point of no return failed (`old_hv::checks`).
    #[error("{0}")]
    Check(old_hv::checks::CheckError),
}

/// A physical-memory failure during `step`.
fn phys_step(step: &'static str) -> impl FnOnce(phys::PhysError) -> ExecError {
    move |error| ExecError::Phys { step, error }
}

impl Hv {
    /// `lu exec`: `frame` is the caller's context. Returns only on
    /// cancellation.
    pub fn lu_exec(&mut self, frame: &mut TrapFrame) -> Result<u64, Error> {
        let tsc_pause = cpu::rdtsc();
        let Some(loaded) = self.lu.loaded.take() else {
            return self.refuse(
                Error::NotFound,
                String::from("nothing is loaded: `lu load <image>` first"),
            );
        };
        // Pause: the caller's context is saved with the result it will see
        // in the new hypervisor; every other vCPU is already stopped.
        let mut saved = *frame;
        saved.regs.rax = 0;
        if let Some(vcpu) = self.current_vcpu_mut() {
            vcpu.frame = saved;
        }
        let tsc_paused = cpu::rdtsc();
        match self.exec_staged(&loaded, tsc_pause, tsc_paused) {
            Ok(never) => match never {},
            Err(error) => {
                self.lu.loaded = Some(loaded);
                if matches!(self.options.lu_inject, Some(Inject::Fail(_))) {
                    // Spent: the next update runs without it.
                    self.options.lu_inject = None;
                }
                self.refuse(
                    Error::Failed,
                    alloc::format!("update cancelled, every domain runs on: {error}"),
                )
            }
        }
    }

    fn exec_staged(
        &mut self,
        l: &Loaded,
        tsc_pause: u64,
        tsc_paused: u64,
    ) -> Result<core::convert::Infallible, ExecError> {
        let s = &l.staging;
        let image = MfnRange::new(Mfn::containing(s.image.start), s.image.size / PAGE_SIZE);
        let state_area = MfnRange::new(Mfn::containing(s.state.start), s.state.size / PAGE_SIZE);
        let mut state = self.handover_state(image, state_area);
        if self.options.lu_inject == Some(Inject::Vcpu) {
            // A context no guest can have, in the state only: the checks
            // before the jump must cancel.
            if let Some(v) = state
                .domains
                .iter_mut()
                .flat_map(|d| d.vcpus.iter_mut())
                .last()
            {
                v.rip = hvlu_types::canonical::UPPER_HALF_START;
                hvprintln!(
                    "lu: fault injection: a vCPU's rip in the state is a hypervisor address"
                );
            }
        }
        let fail = |step| {
            let on = self.options.lu_inject == Some(Inject::Fail(step));
            if on {
                hvprintln!("lu: fault injection: making {step:?} fail");
            }
            on
        };
        let producer = Producer::this_build(build_id::BUILD_ID);
        let version = if fail(ExecStep::Encode) {
            AbiVersion::new(l.info.version.major, 99)
        } else {
            l.info.version
        };
        let capacity = if fail(ExecStep::TooLarge) {
            64
        } else {
            s.state.size
        };
        let blob = handover::serialise(version, &state, &producer, capacity)
            .map_err(ExecError::Serialise)?;
        let len = blob.len();
        phys::write(s.state.start, &blob).map_err(phys_step("writing the state"))?;
        let tsc_serialised = cpu::rdtsc();

        // Pre-flight: read back what the new image will read, decode and
        // check it, and take the digest of the owned frames it lists.
        let mut back = alloc::vec![0u8; len];
        phys::read(s.state.start, &mut back).map_err(phys_step("reading the state back"))?;
        if fail(ExecStep::Preflight) {
            let at = back.len() / 2;
            back[at] ^= 0x40;
        }
        let digest = handover::preflight(&back, &state, self.mem.frametable, self.mem.m2p)
            .map_err(ExecError::Preflight)?;
        let boot = self.check_before_jump(s, &state, len as u64, fail(ExecStep::Boot))?;
        // The guests' tables stay in place: the new image checks that they
        // are exactly these.
        let tables_digest = new_hv::tables::digest(&state, &phys::table_reader());
        let tsc_preflight = cpu::rdtsc();

        let segments: Vec<Mapping> = l
            .info
            .mappings
            .iter()
            .map(|m| Mapping {
                vaddr: m.vaddr,
                len: m.len,
                phys: s.image.start + m.offset,
            })
            .collect();
        let mut next_table = if fail(ExecStep::Tables) {
            s.tables.end()
        } else {
            s.tables.start
        };
        let mut alloc = || {
            (next_table < s.tables.end()).then(|| {
                next_table += PAGE_SIZE;
                next_table - PAGE_SIZE
            })
        };
        let ram_end = old_hv::ram::end(&self.mem.ram);
        let plan = Plan {
            segments: &segments,
            ram_end,
            trampoline: s.trampoline,
            args: s.args,
            entry: l.info.note.entry,
        };
        let prepared = kexec::prepare(&plan, &mut alloc).map_err(ExecError::EntryTables)?;
        // Inside the blackout every console byte is an emulated port
        // write: one short line marks the jump (the last words of an image
        // whose successor never reports), the detail is for `loglvl=debug`;
        // the new image's report carries the state size, digest and free
        // frames.
        if self.options.log_level < LogLevel::Debug {
            hvprintln!("lu: exec `{}`: jumping", l.module);
        } else {
            hvprintln!(
                "lu: exec `{}`: state {len} bytes, digest {digest:#018x}, free frames {}, the new image's boot fits ({:#x}..{:#x}): jumping",
                l.module,
                self.mem.pages.free_frames(),
                boot.heap.start.min(boot.m2p.start),
                boot.heap.end().max(boot.m2p.end())
            );
        }
        let tsc_jump = cpu::rdtsc();
        let mut args = EntryArgs {
            ram_end,
            digest,
            tsc_khz: self.tsc_khz,
            tsc_pause,
            tsc_paused,
            tsc_serialised,
            tsc_preflight,
            tsc_jump,
            free_frames: self.mem.pages.free_frames(),
            sequence: self.lu_sequence + 1,
            image_frames_out: self.image_out().map_or(0, |r| r.count),
            from_build_id: build_id::BUILD_ID,
            // The frames the new image must find free: this page
            // allocator's free frames and this image's frames outside the
            // region (a bitmap pass, a word at a time).
            tables_digest,
            free_digest: new_hv::free::digest_of(
                self.mem.pages.free_runs().chain(self.image_out()),
            ),
            ..EntryArgs::default()
        };
        s.place(self.mem.region, len as u64, &mut args);
        match self.options.lu_inject {
            Some(Inject::State) => {
                // A flipped bit at a pseudo-random place of the body, as if
                // memory were corrupted after the pre-flight check.
                let body = len as u64 - handover_abi::HEADER_SIZE as u64;
                let (offset, bit) = spot(tsc_jump, body);
                let at = s.state.start + handover_abi::HEADER_SIZE as u64 + offset;
                flip_bit(at, bit)?;
                hvprintln!(
                    "lu: fault injection: flipped bit {bit} of the staged state at {at:#x} (body offset {offset})"
                );
            }
            Some(Inject::Digest) => {
                args.digest ^= 1;
                hvprintln!("lu: fault injection: corrupted the digest in the argument page");
            }
            Some(Inject::Guest) => self.inject_guest_bit()?,
            Some(Inject::Table) => {
                // A bit of a guest page-table frame, after its digest was
                // taken: the new image must refuse before the pass.
                let tables: Vec<Mfn> = state
                    .domains
                    .iter()
                    .flat_map(|d| d.runs.iter())
                    .filter(|r| r.kind.is_page_table() && r.kind != handover_abi::RunKind::L4)
                    .flat_map(|r| (0..r.count).map(move |i| Mfn(r.first_mfn.0 + i)))
                    .collect();
                let (pick, bit) = spot(tsc_jump, tables.len() as u64);
                let (offset, _) = spot(tsc_jump.rotate_left(17), PAGE_SIZE);
                if let Some(&mfn) = tables.get(pick as usize) {
                    flip_bit(mfn.addr() + offset, bit)?;
                    hvprintln!(
                        "lu: fault injection: flipped bit {bit} of guest page-table frame {mfn} at offset {offset}"
                    );
                }
            }
            Some(Inject::Args | Inject::Vcpu | Inject::Fail(_)) | None => {}
        }
        phys::write(s.args, &args.to_bytes()).map_err(phys_step("writing the argument page"))?;
        if self.options.lu_inject == Some(Inject::Args) {
            let (offset, bit) = spot(tsc_jump, handover_abi::entry::ENTRY_ARGS_SIZE as u64);
            flip_bit(s.args + offset, bit)?;
            hvprintln!(
                "lu: fault injection: flipped bit {bit} of the argument page at offset {offset}"
            );
        }
        // The point of no return.
        prepared.jump()
    }
}

impl Hv {
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

    /// The checks before the point of no return (`old_hv::checks`): every
    /// vCPU context loadable by the new image, every frame in use in some
    /// run, and the new image's boot dry-run on the region minus the range
    /// the argument page will describe (`new_hv::staging::staged_range`,
    /// the incoming image's own computation). Returns where that boot will
    /// land.
    fn check_before_jump(
        &self,
        s: &Staging,
        state: &HandoverState,
        state_len: u64,
        inject_huge_ram: bool,
    ) -> Result<new_hv::boot::BootPlan, ExecError> {
        let mut placed = EntryArgs::default();
        s.place(self.mem.region, state_len, &mut placed);
        let staged = new_hv::staging::staged_range(&placed).map_err(ExecError::Staged)?;
        // The frames the page allocator has handed out: every one belongs
        // to a domain from the moment it leaves the allocator (a count, not
        // a frame scan).
        let layout = frame_ownership::MachineLayout::new(
            &self.mem.ram,
            crate::mm::region_mfns(self.mem.region),
            &self.mem.reserved,
        )
        .unwrap_or_else(|e| panic!("memory layout became invalid: {e}"));
        let in_use =
            old_hv::checks::managed_frames(&layout).saturating_sub(self.mem.pages.free_frames());
        // `lu_inject=fail-boot`: 4 TiB more RAM for the new image to cover.
        let mut ram = self.mem.ram.clone();
        if inject_huge_ram {
            let end = ram.last().map_or(0, |r| r.end());
            ram.push(MfnRange::new(Mfn(end), 1 << 30));
        }
        old_hv::checks::before_jump(state, in_use, self.mem.region, staged, &ram, s.image.size)
            .map_err(ExecError::Check)
    }

    /// `lu_inject=guest`: flips one bit of the first domU's highest data
    /// page (a page its checker owns), as if memory changed during the
    /// update. Nothing in the hypervisor's checks covers guest data; the
    /// domU's own checker must report it.
    fn inject_guest_bit(&self) -> Result<(), ExecError> {
        let target = self
            .domains
            .values()
            .filter(|d| !d.privileged)
            .find_map(|d| {
                let (gpfn, &mfn) = d.p2m.iter().enumerate().rev().find(|&(_, &mfn)| {
                    self.mem.frametable.get(mfn as usize).is_some_and(|f| {
                        f.is_owned_by(d.id)
                            && matches!(
                                f.page_type(),
                                Some(frame_ownership::PageType::None)
                                    | Some(frame_ownership::PageType::Writable)
                            )
                    })
                })?;
                Some((d.id, gpfn, mfn))
            });
        let Some((dom, gpfn, mfn)) = target else {
            hvprintln!("lu: fault injection: no domU to corrupt");
            return Ok(());
        };
        let at = Mfn(mfn).addr();
        let mut byte = [0u8; 1];
        phys::read(at, &mut byte).map_err(phys_step("fault injection"))?;
        phys::write(at, &[byte[0] ^ 0x01]).map_err(phys_step("fault injection"))?;
        hvprintln!(
            "lu: fault injection: flipped a bit of d{dom}'s memory at gpfn {gpfn} (mfn {mfn:#x})"
        );
        Ok(())
    }
}

/// A pseudo-random byte offset below `len` and bit, from `seed` (a TSC
/// value): where a fault injection flips a bit.
fn spot(seed: u64, len: u64) -> (u64, u8) {
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % len.max(1), (x >> 59) as u8 & 7)
}

/// Flips bit `bit` of the byte at physical address `at`.
fn flip_bit(at: u64, bit: u8) -> Result<(), ExecError> {
    let mut byte = [0u8; 1];
    phys::read(at, &mut byte).map_err(phys_step("fault injection"))?;
    phys::write(at, &[byte[0] ^ (1 << bit)]).map_err(phys_step("fault injection"))
}
