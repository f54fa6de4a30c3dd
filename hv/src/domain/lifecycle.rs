//! A domain's life: created from a boot module, destroyed (by the
//! toolstack, its own shutdown or a fatal fault), and the summary of every
//! domain's self-check reports with which the system powers off.

use alloc::string::String;
use alloc::vec::Vec;

use alloc::vec;

use handover_abi::{RetiredDomain, MAX_RETIRED};
use hvlu_types::hole::Hole;
use hvlu_types::DomId;
use pv_abi::exit::Outcome;
use pv_abi::hypercall::Error;

use super::builder::{self, PhysMemory, Spec};
use super::{Domain, Reports, Vcpu};
use crate::arch::{cpu, paging};
use crate::hv::Hv;
use crate::{hvprintln, modules};

/// Memory of dom0, in KiB.
pub const DOM0_KIB: u64 = 8192;

impl Hv {
    /// Builds a domain from module `name`, its PCI hole at `hole` for good,
    /// and queues its vCPU.
    pub fn create_domain(
        &mut self,
        module: &str,
        kib: u64,
        cmdline: &str,
        privileged: bool,
        hole: Hole,
    ) -> Result<DomId, Error> {
        let Some(module) = self.modules.iter().find(|m| m.name == module).cloned() else {
            let names: Vec<&str> = self.modules.iter().map(|m| m.name.as_str()).collect();
            let message = alloc::format!(
                "there is no boot module `{module}`; the boot modules are: {}",
                names.join(", ")
            );
            return self.refuse_with(Error::NotFound, message);
        };
        let image = match modules::read(&module) {
            Ok(image) => image,
            Err(e) => {
                let message = alloc::format!("cannot read module `{}`: {e}", module.name);
                return self.refuse_with(Error::Failed, message);
            }
        };
        let Some(id) = super::fresh_id(self.next_domid, &self.retired, |id| {
            self.domains.contains_key(&id)
        }) else {
            return self.refuse_with(
                Error::Limit,
                alloc::format!("no domain id is left (from d{})", self.next_domid),
            );
        };
        let spec = Spec {
            id,
            name: &module.name,
            image: &image,
            pages: kib / 4,
            privileged,
            cmdline,
            hole,
        };
        if builder::hvm::is_hvm(&image) {
            return self.create_hvm(&spec);
        }
        // A new domain's frames come from all free RAM (Invariant 29).
        self.settle_all();
        let built = builder::build(&spec, &mut self.mem.parts(), &mut PhysMemory::default());
        let domain = match built {
            Ok(b) => {
                let mut d = Domain::new(
                    id,
                    &module.name,
                    privileged,
                    b.p2m,
                    b.start_info,
                    vec![Vcpu::from_context(&b.vcpu)],
                );
                // dom0 drives the machine: every memory BAR is its to map,
                // for good, and mapped identity in its PCI hole where it
                // lies there; the handover state's default access
                // (`handover_abi::default_mmio`), which an update through
                // an older release gives back. Another domain gets none
                // until dom0 grants it (`domctl iomem_permit`).
                let flags = if privileged {
                    handover_abi::DomainFlags::PRIVILEGED
                } else {
                    handover_abi::DomainFlags::PV
                };
                let listed = crate::devices::handover(&self.devices);
                if let Err(e) = d.set_mmio(handover_abi::default_mmio(flags, &listed)) {
                    crate::hvprintln!("d{id}: no device memory: it cannot be mapped identity: {e}");
                }
                d
            }
            Err(e) => {
                let error = e.error();
                let message = match e {
                    builder::BuildError::TooSmall { needed, .. } => alloc::format!(
                        "{kib} KiB is too little for module `{}`: the minimum is {} KiB",
                        module.name,
                        needed * 4
                    ),
                    e => alloc::format!("cannot build d{id} from `{}`: {e}", module.name),
                };
                return self.refuse_with(error, message);
            }
        };
        let heap = crate::mm::heap::stats();
        hvprintln!(
            "d{id} created from module {} ({} KiB, {} frames, limit {}, PCI hole {}, L4 mfn {:#x}; heap {} of {} KiB in use)",
            module.name,
            kib,
            domain.frames(),
            domain.max_frames,
            domain.hole(),
            domain.vcpus[0].cr3.0,
            heap.used >> 10,
            heap.size >> 10
        );
        self.domains.insert(id, domain);
        self.next_domid = DomId(id.0 + 1);
        self.sched.enqueue(id, 0);
        Ok(id)
    }

    /// Builds the HVM domain of `spec` and queues its vCPU.
    fn create_hvm(&mut self, spec: &Spec<'_>) -> Result<DomId, Error> {
        let id = spec.id;
        if spec.privileged {
            return self.refuse_with(
                Error::Invalid,
                alloc::format!("`{}` is an HVM guest: dom0 must be PV", spec.name),
            );
        }
        if self.svm.is_none() {
            return self.refuse_with(
                Error::NoSys,
                alloc::format!(
                    "`{}` is an HVM guest and this CPU runs none (no AMD SVM with nested paging)",
                    spec.name
                ),
            );
        }
        self.settle_all();
        let built = builder::hvm::build(spec, &mut self.mem.parts(), &mut PhysMemory::default());
        let b = match built {
            Ok(b) => b,
            Err(e) => {
                let error = e.error();
                let message = alloc::format!("cannot build HVM d{id} from `{}`: {e}", spec.name);
                return self.refuse_with(error, message);
            }
        };
        let asid = crate::hvm::asid_for(id, self.asids);
        let Some(host) = self.svm.as_ref() else {
            unreachable!("checked above")
        };
        let vcpu = crate::hvm::HvmVcpu::new(&b.vcpu, host, b.npt.root(), asid);
        let mut domain = Domain::new(
            id,
            spec.name,
            false,
            b.p2m,
            b.start_info,
            vec![Vcpu::hvm(vcpu)],
        );
        hvprintln!(
            "d{id} created from module {} (HVM, {} KiB, {} frames, limit {}, PCI hole {}, nCR3 mfn {:#x}, {} nested-table frames, ASID {asid})",
            spec.name,
            spec.pages * 4,
            domain.frames(),
            domain.max_frames,
            domain.hole(),
            b.npt.root().0,
            b.npt.tables().len(),
        );
        domain.hvm = Some(crate::hvm::HvmDomain {
            npt: b.npt,
            asid,
            flush: true,
            log_dirty: None,
        });
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
        // If the frametable disagrees with the domain's own record, no
        // frame of it can be trusted to be free, so none is reused.
        // Every frame it owns: its RAM, then an HVM domain's nested tables
        // and log-dirty bitmap (a list as long as those alone: no copy of
        // the p2m, and nothing the domain can make large).
        if let Err(e) = self.mem.parts().release_domain(id, domain.p2m.ram()) {
            hvprintln!("BUG: d{id}'s frames cannot be released ({e}); they stay out of use")
        }
        if let Some(h) = &domain.hvm {
            let mut own: alloc::vec::Vec<u64> = h.npt.tables().iter().map(|t| t.0).collect();
            if let Some(ld) = &h.log_dirty {
                own.extend(ld.frames.start.0..ld.frames.end());
            }
            if let Err(e) = self.mem.parts().release_domain(id, &own) {
                hvprintln!(
                    "BUG: d{id}'s nested tables or bitmap cannot be released ({e}); they stay out of use"
                )
            }
        }
        hvprintln!(
            "d{id} destroyed, {} frames freed, free frames {}",
            domain.frames(),
            self.mem.free_frames()
        );
        self.retire(RetiredDomain {
            id,
            name: domain.name.clone(),
            reports: domain.reports,
        });
        Ok(())
    }

    /// Keeps a destroyed domain's reports for the poweroff verdict. The list
    /// is bounded (it crosses updates in the handover state): past
    /// `MAX_RETIRED` entries the oldest two are folded into one, whose
    /// counters are their sums, named `earlier`.
    fn retire(&mut self, gone: RetiredDomain) {
        if self.retired.len() == MAX_RETIRED {
            let a = self.retired.remove(0);
            let b = &mut self.retired[0];
            let (x, y) = (&a.reports, &mut b.reports);
            y.checks = y.checks.saturating_add(x.checks);
            y.mismatches = y.mismatches.saturating_add(x.mismatches);
            y.expected_refusals = y.expected_refusals.saturating_add(x.expected_refusals);
            y.unexpected_refusals = y.unexpected_refusals.saturating_add(x.unexpected_refusals);
            y.regressions = y.regressions.saturating_add(x.regressions);
            y.unexpected_faults = y.unexpected_faults.saturating_add(x.unexpected_faults);
            b.id = DomId::INVALID;
            b.name = String::from("earlier");
        }
        self.retired.push(gone);
    }

    /// Frames owned by all domains: the domains' counters, no p2m is
    /// scanned.
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
        let retired = self
            .retired
            .iter()
            .map(|r| (r.id, r.name.clone(), r.reports));
        for (id, name, r) in retired.chain(live) {
            hvprintln!(
                "report d{id} ({name}): checks={} mismatches={} regressions={} refusals_ok={} refusals_bad={} unexpected_faults={}",
                r.checks,
                r.mismatches,
                r.regressions,
                r.expected_refusals,
                r.unexpected_refusals,
                r.unexpected_faults
            );
            clean &= super::clean(&r);
        }
        let uptime_ms = cpu::rdtsc().saturating_sub(self.boot_tsc) / self.tsc_khz.max(1);
        hvprintln!(
            "poweroff: uptime {uptime_ms} ms since cold boot, {} live updates, {} domains, free frames {}, verdict {}",
            self.lu_sequence,
            self.domains.len(),
            self.mem.free_frames(),
            if clean { "PASS" } else { "FAIL" }
        );
        cpu::exit(if clean { Outcome::Pass } else { Outcome::Fail })
    }
}
