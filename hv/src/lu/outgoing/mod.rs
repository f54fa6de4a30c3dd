//! The outgoing role: load, status, unload and exec.
//!
//! **Load** checks the image's signature (`old_hv::signature`: a trailer
//! by one of `build_id::TRUSTED_KEYS`), validates the image (`old_hv::image`: ELF64, x86_64, segments
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

use handover_abi::{HandoverState, LuRegion};
use hvlu_types::{Mfn, MfnRange};
use old_hv::handover::{self, DomainInput};
use old_hv::image::{self, StagingArea};
use old_hv::staging::{self as staging_layout, Staging};
use pv_abi::hypercall::{Error, LuStatus};

use crate::arch::fwcfg::{self, FwFile};
use crate::arch::{cpu, phys, stack};
use crate::domain::Vcpu;
use crate::hv::{Hv, Loaded};
use crate::{build_id, guest_mem, hvprintln};

mod exec;

pub use exec::ExecCall;

/// Where the bytes of an image to load come from.
pub enum ImageSource<'a> {
    /// A boot module, read by fw_cfg DMA.
    Module(&'a FwFile),
    /// `len` bytes of the calling domain's memory at virtual `va`.
    Guest {
        /// The domain.
        owner: hvlu_types::DomId,
        /// Its root table.
        cr3: Mfn,
        /// Where the bytes are.
        va: u64,
        /// How many.
        len: u64,
    },
}

impl ImageSource<'_> {
    /// The file's length.
    fn len(&self) -> u64 {
        match self {
            ImageSource::Module(file) => u64::from(file.size),
            ImageSource::Guest { len, .. } => *len,
        }
    }

    /// Copies the whole file to RAM at `paddr`; a refusal is the error the
    /// caller gets (`BadAddress` for a buffer not all in the caller's
    /// memory) and why.
    fn copy_to(&self, hv: &Hv, paddr: u64) -> Result<(), (Error, String)> {
        match *self {
            ImageSource::Module(file) => fwcfg::read_file_to_phys(file, paddr)
                .map_err(|e| (Error::Failed, alloc::format!("{e}"))),
            ImageSource::Guest {
                owner,
                cr3,
                va,
                len,
            } => guest_mem::read_to_phys(hv.mem.frametable, owner, guest_mem::Space::Pv(cr3), va, len, paddr).map_err(
                |e| {
                    let why = if e == Error::BadAddress {
                        alloc::format!(
                            "the {len} bytes at {va:#x} are not all in the caller's memory"
                        )
                    } else {
                        alloc::format!(
                            "copying the {len} bytes at {va:#x} into the live-update region failed"
                        )
                    };
                    (e, why)
                },
            ),
        }
    }
}

/// An image that passed the load's checks, with its place.
struct Checked<'b> {
    /// The image, without its signature trailer.
    bytes: &'b [u8],
    info: old_hv::image::ImageInfo,
    staging: Staging,
    /// What the update keeps beside the image.
    handover_bytes: u64,
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
        self.set_last_error(&message);
        self.lu.message = message;
        Err(error)
    }

    /// Builds the handover state of the running system: the machine, the
    /// globals and every domain (`old_hv::handover`: runs and pins from each
    /// domain's own frames, vCPUs from their saved contexts).
    pub fn handover_state(&self, image: MfnRange, state: MfnRange) -> HandoverState {
        let globals = old_hv::globals::save(old_hv::globals::GlobalsInput {
            cmdline: &self.cmdline,
            next_domid: self.next_domid,
            tsc: cpu::rdtsc(),
            tsc_khz: self.tsc_khz,
            boot_tsc: self.boot_tsc,
        });
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
            p2m: dom.p2m.ram(),
            hole: dom.hole(),
            mmio: &dom.mmio,
            identity: dom.p2m.identity(),
            // An HVM domain's vCPUs are in its HVM part.
            vcpus: match dom.hvm {
                None => dom.vcpus.iter().map(Vcpu::context).collect(),
                Some(_) => alloc::vec::Vec::new(),
            },
            start_info: dom.start_info,
            paused: dom.paused,
            reports: dom.reports,
            hvm: dom.hvm.as_ref().map(|h| old_hv::domain::HvmInput {
                ncr3: h.npt.root(),
                tables: h.npt.tables(),
                vcpus: dom
                    .vcpus
                    .iter()
                    .filter_map(|v| v.hvm.as_ref().map(|x| x.context()))
                    .collect(),
                log_dirty: h.log_dirty.as_ref().map(|l| l.frames),
            }),
        });
        handover::handover_state(
            &self.mem.ram,
            region,
            globals,
            domains,
            old_hv::globals::save_retired(&self.retired),
            crate::devices::handover(&self.devices),
            self.mem.frametable,
        )
    }

    fn state_estimate(&self) -> u64 {
        let dummy = MfnRange::new(Mfn(0), 1);
        handover_abi::encoded_len(&self.handover_state(dummy, dummy)).unwrap_or(0) as u64
    }

    /// `lu load <module> [force]`: the boot module `module`. A refusal
    /// leaves the image staged before, if any, staged. The build whose
    /// update was rolled back is refused unless `force`.
    pub fn lu_load(&mut self, module: &str, force: bool) -> Result<u64, Error> {
        let Some(m) = self.modules.iter().find(|m| m.name == module).cloned() else {
            let names: alloc::vec::Vec<&str> =
                self.modules.iter().map(|m| m.name.as_str()).collect();
            let message = alloc::format!(
                "there is no boot module `{module}`; the boot modules are: {}{}",
                names.join(", "),
                self.still_staged()
            );
            return self.refuse(Error::NotFound, message);
        };
        self.lu_load_from(module, ImageSource::Module(&m.file), force)
    }

    /// Validates and stages the image `source` holds, named `module` in
    /// logs (`lu load` of a boot module, or an image dom0 received from the
    /// host).
    ///
    /// The file goes straight from its source into the live-update region
    /// (`old_hv::staging::landing`: the end of the free gap opposite the
    /// staging, clear of the image staged before), never through the heap,
    /// so no size can exhaust it: one that does not fit there is refused
    /// with the sizes before a byte is read. It is checked where it landed
    /// (signature, then validation) and staged from there. Until the image
    /// is valid and has a place, the image staged before (if any) stays
    /// staged; it is dropped only when the new one is written.
    ///
    /// The stack the load needs (the signature check is the deepest part)
    /// is measured every time and printed: `lu: loading `…` took at most N
    /// KiB of the 64 KiB kernel stack`.
    pub fn lu_load_from(
        &mut self,
        module: &str,
        source: ImageSource<'_>,
        force: bool,
    ) -> Result<u64, Error> {
        let depth = stack::Depth::start();
        let result = self.load_from(module, source, force);
        if let Some(d) = depth {
            hvprintln!(
                "lu: loading `{module}` took at most {} KiB of the {} KiB {} stack",
                d.deepest().div_ceil(1024),
                stack::STACK_SIZE >> 10,
                d.stack().name()
            );
        }
        result
    }

    fn load_from(
        &mut self,
        module: &str,
        source: ImageSource<'_>,
        force: bool,
    ) -> Result<u64, Error> {
        let len = source.len();
        if len == 0 {
            let message = alloc::format!(
                "`{module}` refused: the image is empty (0 bytes){}",
                self.still_staged()
            );
            return self.refuse(Error::Invalid, message);
        }
        let Some(gap) = self.mem.handoff.largest_free_gap() else {
            let message = alloc::format!(
                "the live-update region has no free gap{}",
                self.still_staged()
            );
            return self.refuse(Error::NoMemory, message);
        };
        // The end of the gap away from the running image, so that images
        // alternate between the two ends of the free space and the capacity
        // stays the same from one update to the next.
        let running = {
            let (start, end) = crate::arch::image_range();
            boot_allocator::PhysRange::from_bounds(start, end)
        };
        let end = staging_layout::choose_end(gap, running);
        let keep = self.lu.loaded.as_ref().map(|l| l.staging.image);
        let landing = match staging_layout::landing(gap, end, len, keep) {
            Ok(l) => l,
            Err(e) => {
                let message = alloc::format!("`{module}` refused: {e}{}", self.still_staged());
                return self.refuse(Error::NoMemory, message);
            }
        };
        if let Err((error, why)) = source.copy_to(self, landing.start) {
            let message = alloc::format!("cannot read `{module}`: {why}{}", self.still_staged());
            return self.refuse(error, message);
        }
        let checked = phys::lend(landing.start, len, |bytes| {
            self.load_landed(module, bytes, (gap, end, landing), force)
        });
        match checked {
            Ok(result) => result,
            Err(e) => {
                let message = alloc::format!(
                    "cannot read `{module}` where it landed: {e}{}",
                    self.still_staged()
                );
                self.refuse(Error::Failed, message)
            }
        }
    }

    /// Checks the file `bytes` (where it landed, `landing`, in `gap`) and
    /// stages it at `end` of `gap`; the build whose update was rolled back
    /// only if `force`.
    fn load_landed(
        &mut self,
        module: &str,
        bytes: &[u8],
        (gap, end, landing): (
            boot_allocator::PhysRange,
            staging_layout::End,
            boot_allocator::PhysRange,
        ),
        force: bool,
    ) -> Result<u64, Error> {
        let checked = self.check_landed(module, bytes, gap, end, landing)?;
        if let Some((build, seq)) = self.lu.rolled_back {
            if checked.info.note.build_id == build && !force {
                let message = alloc::format!(
                    "`{module}` refused: build {} is the one update {seq} went to, rolled back after the machine reset (`lu load {module} force` loads it all the same){}",
                    hex(&build.0[..8]),
                    self.still_staged()
                );
                return self.refuse(Error::Invalid, message);
            }
        }
        self.stage_checked(module, checked)
    }

    /// The signature, the validation and the place of the file `bytes`
    /// (where it landed, `landing`, in `gap`) at `end` of `gap`. Nothing is
    /// written: a refusal leaves the image staged before staged.
    fn check_landed<'b>(
        &mut self,
        module: &str,
        bytes: &'b [u8],
        gap: boot_allocator::PhysRange,
        end: staging_layout::End,
        landing: boot_allocator::PhysRange,
    ) -> Result<Checked<'b>, Error> {
        // Only an image signed by a key built into this one is considered;
        // the rest of the load sees the image without its trailer.
        let file_len = bytes.len() as u64;
        let bytes = match old_hv::signature::verify(bytes, build_id::TRUSTED_KEYS) {
            Ok(image) => image,
            Err(e) => {
                let message = alloc::format!("`{module}` refused: {e}{}", self.still_staged());
                return self.refuse(Error::Invalid, message);
            }
        };
        let estimate = self.state_estimate();
        // The state may grow between load and exec: keep room for twice it.
        // The entry tables grow with RAM (their direct map covers all of it).
        let ram_end = old_hv::ram::end(&self.mem.ram);
        let limits = old_hv::staging::image_limits(gap, estimate, ram_end);
        let info = match image::validate(bytes, build_id::WRITES, &limits) {
            Ok(info) => info,
            Err(e) => {
                let message = alloc::format!("`{module}` refused: {e}{}", self.still_staged());
                return self.refuse(Error::Invalid, message);
            }
        };
        // The layout at this end of the gap that the image's contract
        // accepts.
        let order = match info.contract.order_at(end) {
            Ok(order) => order,
            Err(e) => {
                let message = alloc::format!("`{module}` refused: {e}{}", self.still_staged());
                return self.refuse(Error::Invalid, message);
            }
        };
        let tables = staging_layout::table_frames(ram_end, &info.mappings);
        // What the update keeps beside the image, at either end of the gap:
        // the one figure the `lu: loaded` line and `lu status` give.
        let handover_bytes = staging_layout::reserve(estimate, tables);
        match Staging::plan_ordered(end, order, gap, info.span, estimate, tables)
            .and_then(|s| s.clear_of(landing, file_len, gap).map(|()| s))
        {
            Ok(staging) => Ok(Checked {
                bytes,
                info,
                staging,
                handover_bytes,
            }),
            Err(e) => {
                let message = alloc::format!("`{module}`: {e}{}", self.still_staged());
                self.refuse(Error::NoMemory, message)
            }
        }
    }

    /// Stages a checked image: from here on the image staged before is
    /// gone.
    fn stage_checked(&mut self, module: &str, c: Checked<'_>) -> Result<u64, Error> {
        // Staging writes where the image staged before may lie (and where
        // an update of it made ready built its entry tables).
        self.lu.ready = None;
        if let Some(old) = self.lu.loaded.take() {
            hvprintln!("lu: `{}` is replaced by `{module}`", old.module);
        }
        let image = c.staging.image;
        let mut area = Area {
            base: image.start,
            len: image.size,
        };
        if let Err(e) = image::stage(&c.info, c.bytes, &mut area) {
            return self.refuse(
                Error::Failed,
                alloc::format!("staging `{module}` failed: {e}; nothing is staged now"),
            );
        }
        let info = c.info;
        let reads = info.note.reads;
        let writes: &dyn core::fmt::Display = match &info.note.writes {
            Some(w) => w,
            None => &"unstated (an older note)",
        };
        let contract = &info.contract;
        let implied = if contract.stated {
            ""
        } else {
            " (the 1.0 release's contract: its note predates the field)"
        };
        hvprintln!(
            "lu: loaded `{module}`: build {}, reads ABI {}..={}, writes ABI {writes}, writing {}, argument page v{}, {}, boot model {}{implied}, image {} KiB at {:#x}, handover area {} KiB",
            hex(&info.note.build_id.0[..8]),
            reads.min,
            reads.max,
            info.version,
            contract.args_version,
            c.staging.order,
            contract.boot.id().0,
            image.size.div_ceil(1024),
            image.start,
            c.handover_bytes.div_ceil(1024)
        );
        self.lu.message.clear();
        self.lu.loaded = Some(Loaded {
            module: String::from(module),
            info,
            staging: c.staging,
            handover_bytes: c.handover_bytes,
        });
        Ok(0)
    }

    /// The end of a load refusal's message: what stays staged.
    fn still_staged(&self) -> String {
        match &self.lu.loaded {
            Some(l) => alloc::format!("; `{}` stays staged", l.module),
            None => String::new(),
        }
    }

    /// `lu unload`.
    pub fn lu_unload(&mut self) -> Result<u64, Error> {
        self.lu.ready = None;
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
            running_build_id: build_id::id().0,
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
            st.handover_bytes = l.handover_bytes;
        }
        let n = self.lu.message.len().min(st.message.len() - 1);
        st.message[..n].copy_from_slice(&self.lu.message.as_bytes()[..n]);
        st
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
}
