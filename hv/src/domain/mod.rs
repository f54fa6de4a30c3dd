//! PV domains: their memory, vCPUs, consoles and self-check reports; how
//! they are built ([`builder`]) and created and destroyed ([`lifecycle`]).
//!
//! On the host the builder and the frame space are built alone: a
//! `Domain` has vCPUs, whose register frame is the bare-metal image's.

pub mod builder;
pub mod npt;
pub mod p2m;

pub use p2m::{P2m, TranslateError};

bare_metal! {
    pub mod lifecycle;
    mod vcpu;

    use alloc::string::String;
    use alloc::vec::Vec;

    use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

    pub use lifecycle::DOM0_KIB;
    pub use vcpu::Vcpu;
}

/// What a domain reported about itself (`report` hypercall): the counters
/// the handover state carries (ABI 1.1), so they survive an update.
pub type Reports = handover_abi::GuestReports;

/// Whether a domain's self-checks are clean: no mismatch, no unexpected
/// result, no regression of its check count, no unannounced fault.
pub fn clean(r: &Reports) -> bool {
    r.mismatches == 0
        && r.unexpected_refusals == 0
        && r.regressions == 0
        && r.unexpected_faults == 0
}

/// The id a new domain gets: `next` (the state's `next_domid`), or the
/// first id above it that neither a live domain (`live`) nor a retired
/// record holds. Ids are never given twice: a retired id is normally below
/// `next`, but a handover state may carry one at or above it (docs/abi.md
/// §2.4), and a live domain with a retired domain's id would make this
/// hypervisor's own next state invalid (`RetiredIsLive`). `None` when no id
/// below [`DomId::INVALID`] is left.
pub fn fresh_id(
    next: hvlu_types::DomId,
    retired: &[handover_abi::RetiredDomain],
    live: impl Fn(hvlu_types::DomId) -> bool,
) -> Option<hvlu_types::DomId> {
    let taken = |id| live(id) || retired.iter().any(|r| r.id == id);
    (next.0..hvlu_types::DomId::INVALID.0)
        .map(hvlu_types::DomId)
        .find(|&id| !taken(id))
}

#[cfg(test)]
mod tests {
    use super::fresh_id;
    use handover_abi::RetiredDomain;
    use hvlu_types::DomId;

    fn retired(id: u16) -> RetiredDomain {
        RetiredDomain {
            id: DomId(id),
            name: "gone".into(),
            reports: Default::default(),
        }
    }

    #[test]
    fn the_next_id_when_it_is_free() {
        assert_eq!(fresh_id(DomId(4), &[retired(2)], |_| false), Some(DomId(4)));
    }

    #[test]
    fn ids_held_by_a_retired_record_or_a_live_domain_are_skipped() {
        let gone = [retired(4), retired(6), retired(u16::MAX)];
        assert_eq!(
            fresh_id(DomId(4), &gone, |id| id == DomId(5)),
            Some(DomId(7))
        );
    }

    #[test]
    fn none_when_every_id_is_taken() {
        assert_eq!(fresh_id(DomId::INVALID, &[], |_| false), None);
        assert_eq!(fresh_id(DomId(0xfffe), &[retired(0xfffe)], |_| false), None);
    }
}

#[cfg(target_os = "none")]
/// A PV domain.
#[derive(Debug)]
pub struct Domain {
    /// Its id.
    pub id: DomId,
    /// Its name (the module it was built from).
    pub name: String,
    /// Whether it may use privileged hypercalls (dom0).
    pub privileged: bool,
    /// Memory limit in frames.
    pub max_frames: u64,
    /// Its guest frame space ([`P2m`]): RAM gpfn → machine frame, dense by
    /// RAM index, with the free RAM indices and the frame count; its PCI
    /// hole, chosen at create and never changed ([`Domain::hole`]); the
    /// device frames mapped identity in the hole. Changes only through its
    /// methods.
    pub p2m: P2m,
    /// The gpfn of its start-info page: where the builder put it, or what
    /// the handover state says. The domain may not give it back
    /// (`decrease_reservation`) nor make it a page table (`pin_table`): the
    /// handover state must find it among its data frames.
    pub start_info: Gpfn,
    /// Its vCPUs.
    pub vcpus: Vec<Vcpu>,
    /// Paused by the toolstack.
    pub paused: bool,
    /// Console output not yet ended by a newline.
    pub console_line: Vec<u8>,
    /// Self-check reports.
    pub reports: Reports,
    /// The device frames (outside RAM) the domain may map, sorted and
    /// disjoint: its I/O memory permission (Xen's `iomem_caps`). Its L1
    /// entries may name these frames and no other frame outside RAM
    /// (Invariant 8); the handover state carries them (`Domain::mmio`).
    pub mmio: Vec<MfnRange>,
    /// An HVM domain's nested page tables and ASID (`crate::hvm`); `None`
    /// for a PV domain.
    pub hvm: Option<crate::hvm::HvmDomain>,
}

#[cfg(target_os = "none")]
impl Domain {
    /// A running (not paused) domain around the frames of `p2m` (whose
    /// limit is the domain's), its start-info page at `start_info`, with no
    /// console output and no reports yet: built by the domain builder, or
    /// rebuilt around preserved frames after a live update.
    pub fn new(
        id: DomId,
        name: &str,
        privileged: bool,
        p2m: P2m,
        start_info: Gpfn,
        vcpus: Vec<Vcpu>,
    ) -> Domain {
        Domain {
            id,
            name: String::from(name),
            privileged,
            max_frames: p2m.limit(),
            p2m,
            start_info,
            vcpus,
            paused: false,
            console_line: Vec::new(),
            reports: Reports::default(),
            mmio: Vec::new(),
            hvm: None,
        }
    }

    /// Frames the domain owns (a counter: no scan).
    pub fn frames(&self) -> u64 {
        self.p2m.frames()
    }

    /// The machine frame of the domain's RAM at guest frame `gpfn`, or
    /// what the gpfn is instead (its PCI hole, device memory mapped there,
    /// past its RAM, RAM without a frame): the one translation dom0's
    /// `read_guest` goes through. What the gpfn is comes from the frame
    /// space ([`P2m::translate`]: the refusals); the frame itself, for an
    /// HVM domain, from a walk of its nested page tables — the machine
    /// frame the guest reaches at that gpfn — and for a PV domain from the
    /// frame space, which is its P2M.
    pub fn translate(&self, gpfn: Gpfn) -> Result<Mfn, TranslateError> {
        let mfn = self.p2m.translate(gpfn)?;
        let Some(h) = &self.hvm else {
            return Ok(mfn);
        };
        let reader = builder::PhysMemory::default();
        match h.npt.get(&reader, gpfn) {
            Ok(e) if e & hvlu_types::pte::PRESENT != 0 => {
                Ok(Mfn::containing(e & hvlu_types::pte::ADDR_MASK))
            }
            _ => Err(TranslateError::NotNested { gpfn }),
        }
    }

    /// Its PCI hole, `[hole, 4 GiB)` in gpfn space, where its RAM never is.
    pub fn hole(&self) -> hvlu_types::hole::Hole {
        self.p2m.hole()
    }

    /// Gives the domain the I/O memory `mmio` (sorted, disjoint) and maps
    /// identity in its PCI hole exactly the parts of it that lie there: a
    /// BAR given to the domain appears at guest frame == machine frame
    /// (what the handover state's `identity` says, and what `memory_map`
    /// reports). If the identity entries cannot follow (too many ranges, a
    /// full heap), nothing changes.
    pub fn set_mmio(&mut self, mmio: Vec<MfnRange>) -> Result<(), p2m::IdentityError> {
        let before = core::mem::replace(&mut self.mmio, mmio);
        if let Err(e) = self.sync_identity() {
            self.mmio = before;
            // What held before fits again.
            let _ = self.sync_identity();
            return Err(e);
        }
        Ok(())
    }

    /// Maps identity in the domain's PCI hole exactly the parts of its I/O
    /// memory that lie there ([`Domain::set_mmio`]).
    fn sync_identity(&mut self) -> Result<(), p2m::IdentityError> {
        let hole = self.hole();
        let end = hvlu_types::hole::HOLE_END.0;
        let old: Vec<MfnRange> = self.p2m.identity().to_vec();
        for r in old {
            self.p2m.remove_identity(r)?;
        }
        for r in &self.mmio {
            let start = r.start.0.max(hole.start().0);
            let stop = r.end().min(end);
            if start < stop {
                self.p2m
                    .add_identity(MfnRange::new(hvlu_types::Mfn(start), stop - start))?;
            }
        }
        Ok(())
    }
}
