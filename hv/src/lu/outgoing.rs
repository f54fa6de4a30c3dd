//! The outgoing role: load, status, unload and exec.
//!
//! **Load** validates the image (`old_hv::image`: ELF64, x86_64, segments
//! that fit, an `HVLU` note whose range includes a version this image
//! writes, an entry in an executable segment) and stages it in the region's
//! largest free gap, at the end away from the running image, before
//! anything is paused. **Exec** pauses every vCPU (there is one CPU: the
//! others are already stopped at a trap boundary, and the caller's context
//! is saved with its result set to 0), serialises the handover state into
//! the staging area, decodes it back and checks it (pre-flight, with the
//! owned-frame digest), checks the rest of what can be checked before the
//! point of no return (`old_hv::checks`: vCPU contexts, every frame in use
//! in some run, a dry run of the new image's boot), builds the entry tables,
//! takes the free-frame digest and jumps. Any failure before the jump
//! cancels: the caller gets the error, `lu status` shows it, and every
//! domain runs on.
//!
//! The staging layout, the handover state, its encoding and the pre-flight
//! check are `old_hv`'s; this module reads and writes physical memory,
//! saves the caller's context, builds the entry tables and jumps.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::entry::EntryArgs;
use handover_abi::{
    HandoverState, HvGlobals, LuRegion, Mfn, MfnRange, Producer, TimeBase, PAGE_SIZE,
};
use old_hv::handover::{self, DomainInput};
use old_hv::image::{self, StagingArea};
use old_hv::staging::{self as staging_layout, Staging};
use pv_abi::hypercall::{Error, LuStatus};

use crate::arch::kexec::{self, Mapping, Plan};
use crate::arch::trap::TrapFrame;
use crate::arch::{cpu, phys};
use crate::cmdline::Inject;
use crate::domain::Vcpu;
use crate::hv::{Hv, Loaded};
use crate::{build_id, hvprintln, modules};

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

struct Area {
    base: u64,
    len: u64,
}

impl StagingArea for Area {
    type Error = phys::PhysError;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Self::Error> {
        if offset.saturating_add(bytes.len() as u64) > self.len {
            return Err(phys::PhysError::Unmapped {
                paddr: self.base + offset,
                len: bytes.len() as u64,
            });
        }
        phys::write(self.base + offset, bytes)
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        if offset.saturating_add(len) > self.len {
            return Err(phys::PhysError::Unmapped {
                paddr: self.base + offset,
                len,
            });
        }
        phys::zero(self.base + offset, len)
    }
}

impl Hv {
    /// Records and logs a refusal of a live-update operation.
    pub(crate) fn refuse<T>(&mut self, error: Error, message: String) -> Result<T, Error> {
        hvprintln!("lu: {message}");
        self.lu.message = message;
        Err(error)
    }

    /// Builds the handover state of the running system: the machine, the
    /// globals and every domain (`old_hv::handover`: runs and pins from each
    /// domain's own frames, vCPUs from their saved contexts).
    pub fn handover_state(&self, image: MfnRange, state: MfnRange) -> HandoverState {
        let now = cpu::rdtsc();
        let globals = HvGlobals {
            next_domid: self.next_domid,
            time: TimeBase {
                tsc: now,
                tsc_khz: self.tsc_khz,
                system_time_ns: hvlu_types::time::tsc_to_ns(
                    now.saturating_sub(self.boot_tsc),
                    self.tsc_khz,
                ),
            },
            cmdline: self.cmdline.clone(),
        };
        let region = LuRegion {
            base: self.mem.region.start,
            size: self.mem.region.size,
            image,
            state,
        };
        let domains = self.domains.values().map(|dom| DomainInput {
            id: dom.id,
            privileged: dom.privileged,
            name: &dom.name,
            max_frames: dom.max_frames,
            p2m: &dom.p2m,
            mmio: &[],
            vcpus: dom.vcpus.iter().map(Vcpu::context).collect(),
            start_info: dom.start_info,
            paused: dom.paused,
            reports: dom.reports,
        });
        handover::handover_state(
            &self.mem.ram,
            region,
            globals,
            domains,
            self.retired.clone(),
            self.mem.frametable,
        )
    }

    fn state_estimate(&self) -> u64 {
        let dummy = MfnRange::new(Mfn(0), 1);
        handover_abi::encoded_len(&self.handover_state(dummy, dummy)).unwrap_or(0) as u64
    }

    /// `lu load <module>`.
    pub fn lu_load(&mut self, module: &str) -> Result<u64, Error> {
        self.lu.loaded = None;
        let Some(m) = self.modules.iter().find(|m| m.name == module).cloned() else {
            return self.refuse(Error::NotFound, alloc::format!("no boot module `{module}`"));
        };
        let bytes = match modules::read(&m) {
            Ok(b) => b,
            Err(e) => {
                return self.refuse(
                    Error::Failed,
                    alloc::format!("cannot read module `{module}`: {e}"),
                )
            }
        };
        self.lu_load_bytes(module, &bytes)
    }

    /// Validates and stages the image in `bytes`, named `module` in logs
    /// (`lu load` of a boot module, or an image dom0 received from the host).
    pub fn lu_load_bytes(&mut self, module: &str, bytes: &[u8]) -> Result<u64, Error> {
        self.lu.loaded = None;
        let Some(gap) = self.mem.handoff.largest_free_gap() else {
            return self.refuse(
                Error::NoMemory,
                String::from("the live-update region has no free gap"),
            );
        };
        let estimate = self.state_estimate();
        // The state may grow between load and exec: keep room for twice it.
        // The entry tables grow with RAM (their direct map covers all of it).
        let ram_end = old_hv::ram::end(&self.mem.ram);
        let limits = old_hv::staging::image_limits(gap, estimate, ram_end);
        let info = match image::validate(bytes, build_id::WRITES, &limits) {
            Ok(info) => info,
            Err(e) => {
                return self.refuse(Error::Invalid, alloc::format!("`{module}` refused: {e}"))
            }
        };
        // The end of the gap away from the running image, so that images
        // alternate between the two ends of the free space and the capacity
        // stays the same from one update to the next.
        let running = {
            let (start, end) = crate::arch::image_range();
            boot_allocator::PhysRange::from_bounds(start, end)
        };
        let end = staging_layout::choose_end(gap, running);
        let tables = staging_layout::table_frames(ram_end, &info.mappings);
        let staging = match Staging::plan_at(end, gap, info.span, estimate, tables) {
            Ok(s) => s,
            Err(e) => return self.refuse(Error::NoMemory, alloc::format!("`{module}`: {e}")),
        };
        let (image, state) = (staging.image, staging.state);
        let mut area = Area {
            base: image.start,
            len: image.size,
        };
        if let Err(e) = image::stage(&info, bytes, &mut area) {
            return self.refuse(
                Error::Failed,
                alloc::format!("staging `{module}` failed: {e}"),
            );
        }
        let reads = info.note.reads;
        let writes: &dyn core::fmt::Display = match &info.note.writes {
            Some(w) => w,
            None => &"unstated (an older note)",
        };
        hvprintln!(
            "lu: loaded `{module}`: build {}, reads ABI {}..={}, writes ABI {writes}, writing {}, image {} KiB at {:#x}, state area {} KiB",
            hex(&info.note.build_id.0[..8]),
            reads.min,
            reads.max,
            info.version,
            image.size >> 10,
            image.start,
            state.size >> 10
        );
        self.lu.message.clear();
        self.lu.loaded = Some(Loaded {
            module: String::from(module),
            info,
            staging,
        });
        Ok(0)
    }

    /// `lu unload`.
    pub fn lu_unload(&mut self) -> Result<u64, Error> {
        match self.lu.loaded.take() {
            Some(l) => {
                hvprintln!("lu: unloaded `{}`", l.module);
                Ok(0)
            }
            None => self.refuse(Error::NotFound, String::from("nothing is loaded")),
        }
    }

    /// `lu status`.
    pub fn lu_status(&self) -> LuStatus {
        let mut st = LuStatus {
            running_build_id: build_id::BUILD_ID.0,
            capacity: self.mem.handoff.largest_free_gap().map_or(0, |g| g.size),
            state_needed: self.state_estimate(),
            sequence: self.lu_sequence,
            ..LuStatus::default()
        };
        if let Some(l) = &self.lu.loaded {
            let r = l.info.note.reads;
            st.loaded = 1;
            st.staged_build_id = l.info.note.build_id.0;
            st.staged_reads = [r.min.major, r.min.minor, r.max.major, r.max.minor];
            st.version = [l.info.version.major, l.info.version.minor, 0, 0];
            st.image_bytes = l.staging.image.size;
            st.state_bytes = l.staging.after_image();
        }
        let n = self.lu.message.len().min(st.message.len() - 1);
        st.message[..n].copy_from_slice(&self.lu.message.as_bytes()[..n]);
        st
    }

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
        let producer = Producer::this_build(build_id::BUILD_ID);
        let blob = handover::serialise(l.info.version, &state, &producer, s.state.size)
            .map_err(ExecError::Serialise)?;
        let len = blob.len();
        phys::write(s.state.start, &blob).map_err(phys_step("writing the state"))?;
        let tsc_serialised = cpu::rdtsc();

        // Pre-flight: read back what the new image will read, decode and
        // check it, and take the digest of the owned frames it lists.
        let mut back = alloc::vec![0u8; len];
        phys::read(s.state.start, &mut back).map_err(phys_step("reading the state back"))?;
        let digest = handover::preflight(&back, &state, self.mem.frametable, self.mem.m2p)
            .map_err(ExecError::Preflight)?;
        let boot = self.check_before_jump(s, &state, len as u64)?;
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
        let mut next_table = s.tables.start;
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
        hvprintln!(
            "lu: exec `{}`: state {len} bytes, digest {digest:#018x}, free frames {}, the new image's boot fits ({:#x}..{:#x}): jumping",
            l.module,
            self.mem.pages.free_frames(),
            boot.heap.start.min(boot.m2p.start),
            boot.heap.end().max(boot.m2p.end())
        );
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
            free_digest: new_hv::free::digest_of(
                self.mem.pages.free_runs().chain(self.image_out()),
            ),
            ..EntryArgs::default()
        };
        s.place(self.mem.region, len as u64, &mut args);
        match self.options.lu_inject {
            Some(Inject::State) => {
                // A flipped bit in the body, as if memory were corrupted
                // after the pre-flight check.
                let at = s.state.start + handover_abi::HEADER_SIZE as u64 + 5;
                let mut byte = [0u8; 1];
                phys::read(at, &mut byte).map_err(phys_step("fault injection"))?;
                phys::write(at, &[byte[0] ^ 0x10]).map_err(phys_step("fault injection"))?;
                hvprintln!("lu: fault injection: flipped a bit of the staged state at {at:#x}");
            }
            Some(Inject::Digest) => {
                args.digest ^= 1;
                hvprintln!("lu: fault injection: corrupted the digest in the argument page");
            }
            Some(Inject::Guest) => self.inject_guest_bit()?,
            Some(Inject::Vcpu) | None => {}
        }
        phys::write(s.args, &args.to_bytes()).map_err(phys_step("writing the argument page"))?;
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
        old_hv::checks::before_jump(
            state,
            in_use,
            self.mem.region,
            staged,
            &self.mem.ram,
            s.image.size,
        )
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
}
