//! The hypervisor's state and what it does on each entry: scheduling,
//! hypercalls, domain lifecycle.
//!
//! There is one CPU and the hypervisor runs with interrupts off, so all state
//! sits in one [`Hv`] behind a lock that is never contended: every entry
//! from a guest takes it, handles the trap, picks what runs next and
//! releases it before `iretq`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use frame_ownership::FrameInfo;
use handover_abi::{DomId, Mfn};
use pv_abi::exit::Outcome;
use pv_abi::hypercall::{DomainInfo, DomctlOp, Error, Hypercall, MmuUpdate, Report, SysInfo};
use spin::Mutex;

use crate::arch::trap::{TrapFrame, SYSCALL_VECTOR};
use crate::arch::{cpu, paging, serial, timer};
use crate::cmdline::{LogLevel, Options};
use crate::domain::build::{self, Spec};
use crate::domain::Domain;
use crate::mm::Memory;
use crate::modules::{self, Module};
use crate::{guest_mem, hvprintln, mmu};

/// NMIs seen (ignored).
pub static NMIS: AtomicU64 = AtomicU64::new(0);

/// Timer ticks since boot; also counted while idle, without the lock.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// The hypervisor state.
pub static HV: Mutex<Option<Hv>> = Mutex::new(None);

/// Default memory of a domU, in KiB.
pub const DEFAULT_DOMU_KIB: u64 = 4096;
/// Memory of dom0, in KiB.
pub const DOM0_KIB: u64 = 8192;

/// Everything the hypervisor keeps.
#[derive(Debug)]
pub struct Hv {
    /// Memory.
    pub mem: Memory,
    /// Live domains by id.
    pub domains: BTreeMap<u16, Domain>,
    /// The next domain id to hand out.
    pub next_domid: u16,
    /// The vCPU on the CPU: (domain, vcpu index).
    pub current: Option<(u16, usize)>,
    /// Runnable vCPUs waiting for the CPU.
    pub run_queue: VecDeque<(u16, usize)>,
    /// Boot modules.
    pub modules: Vec<Module>,
    /// Console input for dom0.
    pub console_in: VecDeque<u8>,
    /// Options from the command line.
    pub options: Options,
    /// TSC frequency.
    pub tsc_khz: u64,
    /// TSC when this hypervisor started.
    pub boot_tsc: u64,
    /// Reports of domains already destroyed: (id, name, reports).
    pub past_reports: Vec<(u16, String, crate::domain::Reports)>,
    /// The outgoing live-update role's state.
    pub lu: crate::lu::outgoing::LuState,
    /// Live updates since cold boot.
    pub lu_sequence: u64,
    /// After a live update: RAM to release at the first tick, and the
    /// figures of the update's report.
    pub pending_release: Option<PendingRelease>,
}

/// What the incoming side of an update leaves for its first timer tick.
#[derive(Debug)]
pub struct PendingRelease {
    /// Free RAM: the complement of the domains' runs.
    pub ranges: Vec<handover_abi::MfnRange>,
    /// The entry arguments (the old side's figures).
    pub args: handover_abi::entry::EntryArgs,
    /// The incoming side's timestamps.
    pub times: crate::lu::incoming::InTimes,
    /// The digest after the pass.
    pub digest: u64,
    /// Frames owned after the pass.
    pub frames: u64,
    /// Runs in the state.
    pub runs: u64,
}

impl Hv {
    fn log_debug(&self) -> bool {
        self.options.log_level >= LogLevel::Debug
    }

    /// Builds a domain from module `name` and queues its vCPU.
    pub fn create_domain(
        &mut self,
        module: &str,
        kib: u64,
        cmdline: &str,
        privileged: bool,
    ) -> Result<u16, Error> {
        let module = self
            .modules
            .iter()
            .find(|m| m.name == module)
            .cloned()
            .ok_or(Error::NotFound)?;
        let image = modules::read(&module).map_err(|e| {
            hvprintln!("cannot read module {}: {e}", module.name);
            Error::Failed
        })?;
        let id = self.next_domid;
        if self.domains.contains_key(&id) || id == u16::MAX {
            return Err(Error::Limit);
        }
        let spec = Spec {
            id: DomId(id),
            name: &module.name,
            image: &image,
            pages: kib / 4,
            privileged,
            cmdline,
        };
        let domain = build::build(&spec, &mut self.mem).map_err(|e| {
            hvprintln!("cannot build d{id} from {}: {e}", module.name);
            match e {
                build::BuildError::NoMemory { .. } => Error::NoMemory,
                build::BuildError::TooSmall { .. } => Error::Invalid,
                _ => Error::Failed,
            }
        })?;
        hvprintln!(
            "d{id} created from module {} ({} KiB, {} frames, L4 mfn {:#x})",
            module.name,
            kib,
            domain.frames(),
            domain.vcpus[0].cr3.0
        );
        self.domains.insert(id, domain);
        self.next_domid = id + 1;
        self.run_queue.push_back((id, 0));
        Ok(id)
    }

    /// Destroys domain `id`: frees its frames, forgets its vCPUs.
    pub fn destroy_domain(&mut self, id: u16) -> Result<(), Error> {
        let domain = self.domains.remove(&id).ok_or(Error::NotFound)?;
        self.run_queue.retain(|(d, _)| *d != id);
        if self.current.is_some_and(|(d, _)| d == id) {
            self.current = None;
            // Its tables are loaded: leave them before they are freed.
            paging::load_hv_root();
        }
        for &mfn in domain.p2m.iter().filter(|&&m| m != u64::MAX) {
            self.mem.frametable[mfn as usize] = FrameInfo::UNOWNED;
            self.mem.m2p[mfn as usize] = u64::MAX;
            self.mem.pages.free(Mfn(mfn));
        }
        hvprintln!(
            "d{id} destroyed, {} frames freed, free frames {}",
            domain.frames(),
            self.mem.pages.free_frames()
        );
        self.past_reports
            .push((id, domain.name.clone(), domain.reports));
        Ok(())
    }

    /// Frames owned by all domains.
    pub fn owned_frames(&self) -> u64 {
        self.domains.values().map(Domain::frames).sum()
    }

    fn poll_console(&mut self) {
        while let Some(byte) = serial::try_read_byte() {
            if self.console_in.len() < 4096 {
                self.console_in
                    .push_back(if byte == b'\r' { b'\n' } else { byte });
            }
        }
    }

    /// Saves `frame` into the current vCPU and loads the next runnable one
    /// into `frame`; idles while there is none.
    fn schedule(&mut self, frame: &mut TrapFrame, requeue_current: bool) {
        if let Some((d, v)) = self.current.take() {
            if let Some(vcpu) = self
                .domains
                .get_mut(&d)
                .and_then(|dom| dom.vcpus.get_mut(v))
            {
                vcpu.frame = *frame;
                if requeue_current {
                    self.run_queue.push_back((d, v));
                }
            }
        }
        loop {
            let runnable = self
                .run_queue
                .iter()
                .position(|(d, _)| self.domains.get(d).is_some_and(|dom| !dom.paused));
            if let Some(i) = runnable {
                let Some((d, v)) = self.run_queue.remove(i) else {
                    continue;
                };
                let Some(vcpu) = self.domains.get(&d).and_then(|dom| dom.vcpus.get(v)) else {
                    continue;
                };
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
                self.current = Some((d, v));
                return;
            }
            if self.domains.is_empty() {
                hvprintln!("no domain left: powering off");
                self.poweroff();
            }
            if !self.domains.values().any(|d| d.privileged)
                && self.domains.values().all(|d| d.paused)
            {
                hvprintln!(
                    "dom0 is gone and every domain is paused: nothing can run again, powering off"
                );
                self.poweroff();
            }
            // Nothing runnable: wait for the timer (or input) with the lock
            // held; the nested interrupt only counts the tick.
            crate::arch::trap::wait_for_interrupt();
            self.poll_console();
        }
    }

    /// Prints every domain's self-check reports and ends the run: pass if all
    /// are clean.
    pub fn poweroff(&mut self) -> ! {
        let mut clean = true;
        let live: Vec<(u16, String, crate::domain::Reports)> = self
            .domains
            .values()
            .map(|d| (d.id.0, d.name.clone(), d.reports))
            .collect();
        for (id, name, r) in self.past_reports.iter().chain(live.iter()) {
            hvprintln!(
                "report d{id} ({name}): checks={} mismatches={} regressions={} refusals_ok={} refusals_bad={} unexpected_faults={}",
                r.checks,
                r.mismatches,
                r.regressions,
                r.expected_refusals,
                r.unexpected,
                r.unexpected_faults
            );
            clean &= r.clean();
        }
        let uptime_ms = cpu::rdtsc().saturating_sub(self.boot_tsc) / self.tsc_khz.max(1);
        hvprintln!(
            "poweroff: uptime {uptime_ms} ms, {} domains, free frames {}, verdict {}",
            self.domains.len(),
            self.mem.pages.free_frames(),
            if clean { "PASS" } else { "FAIL" }
        );
        cpu::exit(if clean { Outcome::Pass } else { Outcome::Fail })
    }

    fn current_domain(&self) -> Option<&Domain> {
        self.current.and_then(|(d, _)| self.domains.get(&d))
    }

    /// The current domain's id and cr3, for guest-memory access.
    fn caller(&self) -> Option<(DomId, Mfn)> {
        let (d, v) = self.current?;
        let dom = self.domains.get(&d)?;
        Some((dom.id, dom.vcpus.get(v)?.cr3))
    }

    fn read_guest(&self, va: u64, buf: &mut [u8]) -> Result<(), Error> {
        let (id, cr3) = self.caller().ok_or(Error::Failed)?;
        guest_mem::read(self.mem.frametable, id, cr3, va, buf)
    }

    fn write_guest(&self, va: u64, data: &[u8]) -> Result<(), Error> {
        let (id, cr3) = self.caller().ok_or(Error::Failed)?;
        guest_mem::write(self.mem.frametable, id, cr3, va, data)
    }

    /// Handles the trap in `frame`.
    pub fn handle(&mut self, frame: &mut TrapFrame) {
        match frame.vector {
            v if v == timer::TIMER_VECTOR => {
                timer::eoi(v);
                if let Some(pending) = self.pending_release.take() {
                    crate::lu::incoming::release(self, pending);
                }
                self.poll_console();
                self.schedule(frame, true);
            }
            SYSCALL_VECTOR => {
                self.hypercall(frame);
                // `iretq` to a non-canonical address faults in ring 0 on
                // real CPUs: a guest that arranged for one (a `syscall` at
                // the very top of the lower half) has faulted.
                if frame.user_mode() && frame.rip >= 0x0000_8000_0000_0000 {
                    let (d, _) = self.current.unwrap_or((u16::MAX, 0));
                    hvprintln!(
                        "d{d} would return to non-canonical rip {:#x}: destroying it",
                        frame.rip
                    );
                    if let Some(dom) = self.domains.get_mut(&d) {
                        dom.reports.unexpected_faults += 1;
                    }
                    let _ = self.destroy_domain(d);
                    self.schedule(frame, false);
                }
            }
            v if v < 32 => {
                let (d, _) = self.current.unwrap_or((u16::MAX, 0));
                crate::trap::report(frame, &alloc::format!("d{d}"));
                hvprintln!(
                    "d{d} took a fatal {}: destroying it",
                    crate::trap::exception_name(v)
                );
                if let Some(dom) = self.domains.get_mut(&d) {
                    if !dom.reports.expect_fault {
                        dom.reports.unexpected_faults += 1;
                    }
                }
                let _ = self.destroy_domain(d);
                self.schedule(frame, false);
            }
            v => {
                if !timer::is_spurious(v) {
                    hvprintln!("unexpected interrupt {v} from a guest");
                    timer::eoi(v);
                }
            }
        }
    }

    fn hypercall(&mut self, frame: &mut TrapFrame) {
        let nr = frame.rax;
        let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8];
        let Some((d, _)) = self.current else { return };
        let result = match Hypercall::from_number(nr) {
            None => Err(Error::NoSys),
            Some(Hypercall::Yield) => {
                frame.rax = 0;
                self.schedule(frame, true);
                return;
            }
            Some(Hypercall::LuExec) => {
                let result = self.require_privileged().and_then(|()| self.lu_exec(frame));
                frame.rax = match result {
                    Ok(v) => v,
                    Err(e) => (-(e as i64)) as u64,
                };
                return;
            }
            Some(Hypercall::Shutdown) => {
                hvprintln!("d{d} shut down with code {}", args[0]);
                let _ = self.destroy_domain(d);
                self.schedule(frame, false);
                return;
            }
            Some(call) => self.dispatch(call, d, args),
        };
        if let Err(e) = result {
            if self.log_debug() {
                hvprintln!("d{d}: hypercall {nr} refused: {}", e.name());
            }
        }
        frame.rax = match result {
            Ok(v) => v,
            Err(e) => (-(e as i64)) as u64,
        };
    }

    fn require_privileged(&self) -> Result<(), Error> {
        if self.current_domain().is_some_and(|d| d.privileged) {
            Ok(())
        } else {
            Err(Error::Permission)
        }
    }

    fn dispatch(&mut self, call: Hypercall, d: u16, a: [u64; 5]) -> Result<u64, Error> {
        match call {
            Hypercall::ConsoleWrite => {
                let len = a[1].min(4096) as usize;
                let mut buf = alloc::vec![0u8; len];
                self.read_guest(a[0], &mut buf)?;
                let dom = self.domains.get_mut(&d).ok_or(Error::Failed)?;
                for &b in &buf {
                    if b == b'\n' {
                        let line = String::from_utf8_lossy(&dom.console_line).into_owned();
                        crate::console::domain_print(d, &line);
                        dom.console_line.clear();
                    } else if dom.console_line.len() < 1024 {
                        dom.console_line.push(b);
                    }
                }
                Ok(len as u64)
            }
            Hypercall::ConsoleRead => {
                self.require_privileged()?;
                self.poll_console();
                let n = (a[1] as usize).min(self.console_in.len()).min(4096);
                let bytes: Vec<u8> = self.console_in.iter().take(n).copied().collect();
                self.write_guest(a[0], &bytes)?;
                self.console_in.drain(..n);
                Ok(n as u64)
            }
            Hypercall::Poweroff => {
                self.require_privileged()?;
                self.poweroff()
            }
            Hypercall::Report => {
                let dom = self.domains.get_mut(&d).ok_or(Error::Failed)?;
                let r = &mut dom.reports;
                match a[0] {
                    x if x == Report::Checks as u64 => {
                        if a[1] < r.checks {
                            r.regressions += 1;
                        }
                        r.checks = a[1];
                    }
                    x if x == Report::Mismatches as u64 => r.mismatches = r.mismatches.max(a[1]),
                    x if x == Report::ExpectedRefusal as u64 => r.expected_refusals += 1,
                    x if x == Report::ExpectFault as u64 => r.expect_fault = true,
                    x if x == Report::UnexpectedResult as u64 => {
                        hvprintln!("d{d} reports an unexpected result in test {}", a[1]);
                        r.unexpected += 1
                    }
                    _ => return Err(Error::Invalid),
                }
                Ok(0)
            }
            Hypercall::SysInfo => {
                let info = SysInfo {
                    free_frames: self.mem.pages.free_frames(),
                    owned_frames: self.owned_frames(),
                    domains: self.domains.len() as u64,
                    build_id: crate::build_id::short(),
                    ticks: TICKS.load(Ordering::Relaxed),
                    tick_hz: u64::from(self.options.timer_hz),
                };
                let bytes = crate::arch::phys::as_bytes(&info);
                let n = (a[1] as usize).min(bytes.len());
                self.write_guest(a[0], &bytes[..n])?;
                Ok(n as u64)
            }
            Hypercall::SetSegmentBase => {
                if a[1] >= 0x0000_8000_0000_0000 {
                    return Err(Error::Invalid);
                }
                let (_, v) = self.current.ok_or(Error::Failed)?;
                let vcpu = self
                    .domains
                    .get_mut(&d)
                    .and_then(|dom| dom.vcpus.get_mut(v))
                    .ok_or(Error::Failed)?;
                match a[0] {
                    0 => vcpu.fs_base = a[1],
                    1 => vcpu.gs_base = a[1],
                    _ => return Err(Error::Invalid),
                }
                cpu::set_guest_segment_bases(vcpu.fs_base, vcpu.gs_base);
                Ok(0)
            }
            Hypercall::Domctl => {
                self.require_privileged()?;
                self.domctl(a)
            }
            Hypercall::MmuUpdate => {
                let count = (a[1] as usize).min(mmu::MAX_BATCH);
                let mut bytes = alloc::vec![0u8; count * 16];
                self.read_guest(a[0], &mut bytes)?;
                let reqs: Vec<MmuUpdate> = bytes
                    .chunks_exact(16)
                    .map(|c| MmuUpdate {
                        ptr: le64(&c[..8]),
                        val: le64(&c[8..]),
                    })
                    .collect();
                let dom = self.domains.get(&d).ok_or(Error::Failed)?;
                mmu::mmu_update(&mut self.mem, dom, &reqs)
            }
            Hypercall::PinTable => {
                let dom = self.domains.get(&d).ok_or(Error::Failed)?;
                mmu::pin_table(&mut self.mem, dom, Mfn(a[0]), a[1])
            }
            Hypercall::UnpinTable => {
                let dom = self.domains.get(&d).ok_or(Error::Failed)?;
                mmu::unpin_table(&mut self.mem, dom, Mfn(a[0]))
            }
            Hypercall::NewBaseptr => {
                let (_, v) = self.current.ok_or(Error::Failed)?;
                let dom = self.domains.get_mut(&d).ok_or(Error::Failed)?;
                mmu::new_baseptr(&mut self.mem, dom, v, Mfn(a[0]))
            }
            Hypercall::IncreaseReservation => {
                let count = (a[1] as usize).min(mmu::MAX_BATCH);
                // Check the output buffer before taking any frame.
                self.write_guest(a[0], &alloc::vec![0u8; count * 8])?;
                let dom = self.domains.get_mut(&d).ok_or(Error::Failed)?;
                let mfns = mmu::increase_reservation(&mut self.mem, dom, count)?;
                let bytes: Vec<u8> = mfns.iter().flat_map(|m| m.to_le_bytes()).collect();
                self.write_guest(a[0], &bytes)?;
                Ok(mfns.len() as u64)
            }
            Hypercall::DecreaseReservation => {
                let count = (a[1] as usize).min(mmu::MAX_BATCH);
                let mut bytes = alloc::vec![0u8; count * 8];
                self.read_guest(a[0], &mut bytes)?;
                let mfns: Vec<u64> = bytes.chunks_exact(8).map(le64).collect();
                let dom = self.domains.get_mut(&d).ok_or(Error::Failed)?;
                mmu::decrease_reservation(&mut self.mem, dom, &mfns)
            }
            Hypercall::LuLoad => {
                self.require_privileged()?;
                let len = a[1].min(64) as usize;
                let mut name = alloc::vec![0u8; len];
                self.read_guest(a[0], &mut name)?;
                let name = String::from_utf8(name).map_err(|_| Error::Invalid)?;
                self.lu_load(&name)
            }
            Hypercall::LuStatus => {
                self.require_privileged()?;
                let status = self.lu_status();
                let bytes = crate::arch::phys::as_bytes(&status);
                let n = (a[1] as usize).min(bytes.len());
                self.write_guest(a[0], &bytes[..n])?;
                Ok(n as u64)
            }
            Hypercall::HostlinkRead => {
                self.require_privileged()?;
                let max = (a[1] as usize).min(64 * 1024);
                let mut bytes = Vec::new();
                while bytes.len() < max {
                    match serial::read_from(serial::Uart::Com2) {
                        Some(b) => bytes.push(b),
                        None => break,
                    }
                }
                self.write_guest(a[0], &bytes)?;
                Ok(bytes.len() as u64)
            }
            Hypercall::HostlinkWrite => {
                self.require_privileged()?;
                let len = a[1].min(4096) as usize;
                let mut bytes = alloc::vec![0u8; len];
                self.read_guest(a[0], &mut bytes)?;
                for b in bytes {
                    serial::write_to(serial::Uart::Com2, b);
                }
                Ok(len as u64)
            }
            Hypercall::LuLoadBuffer => {
                self.require_privileged()?;
                let len = a[1] as usize;
                if len > 16 << 20 {
                    return self.refuse(
                        Error::Invalid,
                        alloc::format!("an image of {len} bytes is too large"),
                    );
                }
                let mut bytes = alloc::vec![0u8; len];
                self.read_guest(a[0], &mut bytes)?;
                self.lu_load_bytes("(from dom0)", &bytes)
            }
            Hypercall::LuUnload => {
                self.require_privileged()?;
                self.lu_unload()
            }
            Hypercall::Yield | Hypercall::Shutdown | Hypercall::LuExec => Err(Error::Invalid),
        }
    }

    fn domctl(&mut self, a: [u64; 5]) -> Result<u64, Error> {
        let op = DomctlOp::from_number(a[0]).ok_or(Error::NoSys)?;
        match op {
            DomctlOp::Create => {
                let len = a[2].min(256) as usize;
                let mut buf = alloc::vec![0u8; len];
                self.read_guest(a[1], &mut buf)?;
                let (name, cmdline) = match buf.iter().position(|&b| b == 0) {
                    Some(i) => (&buf[..i], &buf[i + 1..]),
                    None => (&buf[..], &[][..]),
                };
                let name = core::str::from_utf8(name).map_err(|_| Error::Invalid)?;
                let cmdline = core::str::from_utf8(cmdline).map_err(|_| Error::Invalid)?;
                let kib = if a[3] == 0 { DEFAULT_DOMU_KIB } else { a[3] };
                if kib % 4 != 0 || kib > 1 << 20 {
                    return Err(Error::Invalid);
                }
                self.create_domain(name, kib, cmdline, false).map(u64::from)
            }
            DomctlOp::Destroy => {
                let id = u16::try_from(a[1]).map_err(|_| Error::Invalid)?;
                if self.domains.get(&id).is_some_and(|d| d.privileged) {
                    return Err(Error::Invalid);
                }
                self.destroy_domain(id).map(|()| 0)
            }
            DomctlOp::Pause | DomctlOp::Unpause => {
                let id = u16::try_from(a[1]).map_err(|_| Error::Invalid)?;
                let dom = self.domains.get_mut(&id).ok_or(Error::NotFound)?;
                if dom.privileged {
                    return Err(Error::Invalid);
                }
                dom.paused = op == DomctlOp::Pause;
                Ok(0)
            }
            DomctlOp::List => {
                let infos: Vec<DomainInfo> = self
                    .domains
                    .values()
                    .map(|dom| {
                        let mut name = [0u8; 32];
                        let n = dom.name.len().min(31);
                        name[..n].copy_from_slice(&dom.name.as_bytes()[..n]);
                        DomainInfo {
                            id: dom.id.0,
                            paused: u8::from(dom.paused),
                            privileged: u8::from(dom.privileged),
                            vcpus: dom.vcpus.len() as u32,
                            frames: dom.frames(),
                            max_frames: dom.max_frames,
                            name,
                        }
                    })
                    .collect();
                let n = (a[2] as usize).min(infos.len());
                let mut bytes = Vec::with_capacity(n * core::mem::size_of::<DomainInfo>());
                for info in &infos[..n] {
                    bytes.extend_from_slice(crate::arch::phys::as_bytes(info));
                }
                self.write_guest(a[1], &bytes)?;
                Ok(infos.len() as u64)
            }
            DomctlOp::Modules => {
                let mut text = String::new();
                for m in &self.modules {
                    text.push_str(&m.name);
                    text.push('\n');
                }
                if text.len() > a[2] as usize {
                    return Err(Error::TooSmall);
                }
                self.write_guest(a[1], text.as_bytes())?;
                Ok(text.len() as u64)
            }
        }
    }
}

fn le64(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

/// Entry from the trap layer.
pub fn on_trap(frame: &mut TrapFrame) {
    if frame.vector == 2 {
        // NMI: nothing here raises one on purpose; it must not take the
        // lock (it can arrive while the lock is held). Resume.
        NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if frame.vector == timer::TIMER_VECTOR {
        TICKS.fetch_add(1, Ordering::Relaxed);
    }
    if frame.vector >= 32 && !frame.user_mode() {
        // An interrupt while idle (the idle loop holds the lock): count,
        // acknowledge unless spurious, return to the idle loop.
        if !timer::is_spurious(frame.vector) {
            timer::eoi(frame.vector);
        }
        return;
    }
    let mut guard = HV.lock();
    match guard.as_mut() {
        Some(hv) => hv.handle(frame),
        None => {
            drop(guard);
            crate::trap::report(frame, "early boot");
            cpu::exit(Outcome::Panic);
        }
    }
}
