//! A domain's life: created from a boot module, destroyed (by the
//! toolstack, its own shutdown or a fatal fault), and the summary of every
//! domain's self-check reports with which the system powers off.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::{DomId, Mfn};
use pv_abi::exit::Outcome;
use pv_abi::hypercall::Error;

use super::build::{self, Spec};
use super::{Domain, Reports};
use crate::arch::{cpu, paging};
use crate::hv::Hv;
use crate::{hvprintln, modules};

/// Default memory of a domU, in KiB.
pub const DEFAULT_DOMU_KIB: u64 = 4096;
/// Memory of dom0, in KiB.
pub const DOM0_KIB: u64 = 8192;

impl Hv {
    /// Builds a domain from module `name` and queues its vCPU.
    pub fn create_domain(
        &mut self,
        module: &str,
        kib: u64,
        cmdline: &str,
        privileged: bool,
    ) -> Result<DomId, Error> {
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
        if self.domains.contains_key(&id) || id == DomId::INVALID {
            return Err(Error::Limit);
        }
        let spec = Spec {
            id,
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
        self.next_domid = DomId(id.0 + 1);
        self.sched.enqueue(id, 0);
        Ok(id)
    }

    /// Destroys domain `id`: frees its frames, forgets its vCPUs.
    pub fn destroy_domain(&mut self, id: DomId) -> Result<(), Error> {
        let domain = self.domains.remove(&id).ok_or(Error::NotFound)?;
        if self.sched.forget_domain(id) {
            // Its tables are loaded: leave them before they are freed.
            paging::load_hv_root();
        }
        let mem = &mut self.mem;
        match frame_ownership::release_domain(mem.frametable, mem.m2p, id, &domain.p2m) {
            Ok(_) => {
                for &mfn in domain.p2m.iter().filter(|&&m| m != u64::MAX) {
                    self.mem.pages.free(Mfn(mfn));
                }
            }
            // The frametable disagrees with the domain's own record: no
            // frame of it can be trusted to be free, so none is reused.
            Err(e) => {
                hvprintln!("BUG: d{id}'s frames cannot be released ({e}); they stay out of use")
            }
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

    /// Prints every domain's self-check reports and ends the run: pass if all
    /// are clean.
    pub fn poweroff(&mut self) -> ! {
        let mut clean = true;
        let live: Vec<(DomId, String, Reports)> = self
            .domains
            .values()
            .map(|d| (d.id, d.name.clone(), d.reports))
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
}
