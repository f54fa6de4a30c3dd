//! The memory hypercalls: page-table updates, pins, base pointer switches
//! and reservations, over `frame_ownership`'s incremental type operations.
//!
//! Page-table types are sticky (Invariants 13–18 in `docs/invariants.md`): a
//! frame becomes a table of level n only by `pin_table`, which validates
//! every entry first; `unpin_table` drops the pin and, if nothing else
//! references the table, releases it back to data. Entries of L2..L4 tables
//! may point only at tables of the level below, so a guest builds a new
//! address space bottom-up: fill data frames, unmap them, pin the L1s, then
//! the L2s that point at them, and so on.

use frame_ownership::{DomainContext, EntryError, OpError, PageType, PtLevel};
use handover_abi::{Gpfn, Mfn};
use hvlu_types::pte;
use pv_abi::hypercall::{Error, MmuUpdate};

use crate::arch::{paging, phys};
use crate::domain::Domain;
use crate::hvprintln;
use crate::mm::Memory;

/// Most requests one `mmu_update` call handles.
pub const MAX_BATCH: usize = 512;

/// The guest-visible error for a refused operation. Errors that mean the
/// hypervisor's own state is inconsistent are logged as bugs.
pub fn error_of(e: &OpError) -> Error {
    match e {
        OpError::OutOfRange { .. } | OpError::NotOwner { .. } => Error::NotOwner,
        OpError::Entry {
            source: EntryError::ForeignTarget { .. },
            ..
        } => Error::NotOwner,
        OpError::Entry { .. }
        | OpError::NotPageTable { .. }
        | OpError::LevelMismatch { .. }
        | OpError::WritableData { .. }
        | OpError::NotL4 { .. } => Error::TypeViolation,
        OpError::Busy { .. } | OpError::TableInUse { .. } | OpError::Pinned { .. } => Error::Busy,
        OpError::BadIndex { .. }
        | OpError::HvSlot { .. }
        | OpError::NotPinned { .. }
        | OpError::GpfnInvalid { .. } => Error::Invalid,
        _ => {
            hvprintln!("BUG: frametable operation failed: {e}");
            Error::Failed
        }
    }
}

fn context(dom: &Domain) -> Result<DomainContext<'_>, Error> {
    DomainContext::new(dom.id, &[]).map_err(|_| Error::Failed)
}

/// Applies `reqs` in order; stops at the first refused one. Returns how
/// many were applied, or the error of the first request if none was.
pub fn mmu_update(mem: &mut Memory, dom: &Domain, reqs: &[MmuUpdate]) -> Result<u64, Error> {
    let ctx = context(dom)?;
    let mut done = 0;
    for req in reqs {
        let result = (|| {
            if req.ptr % 8 != 0 {
                return Err(Error::Invalid);
            }
            // Global mappings would survive the switch to another domain's
            // address space.
            if req.val & pte::PRESENT != 0 && req.val & pte::GLOBAL != 0 {
                return Err(Error::Invalid);
            }
            let parts = mem.parts();
            frame_ownership::update_entry(
                &parts.layout,
                parts.frametable,
                &mut phys::table_reader(),
                &ctx,
                Mfn(req.ptr >> 12),
                ((req.ptr & 0xfff) / 8) as usize,
                req.val,
            )
            .map_err(|e| error_of(&e))
        })();
        match result {
            Ok(()) => done += 1,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    if done > 0 {
        paging::flush_guest_tlb();
    }
    Ok(done)
}

fn level_of(n: u64) -> Result<PtLevel, Error> {
    match n {
        1 => Ok(PtLevel::L1),
        2 => Ok(PtLevel::L2),
        3 => Ok(PtLevel::L3),
        4 => Ok(PtLevel::L4),
        _ => Err(Error::Invalid),
    }
}

/// Validates and pins `mfn` as a table of `level`. A new L4 gets the
/// hypervisor's slots written into it.
pub fn pin_table(mem: &mut Memory, dom: &Domain, mfn: Mfn, level: u64) -> Result<u64, Error> {
    let level = level_of(level)?;
    let ctx = context(dom)?;
    let parts = mem.parts();
    frame_ownership::pin(
        &parts.layout,
        parts.frametable,
        &phys::table_reader(),
        &ctx,
        mfn,
        level,
    )
    .map_err(|e| error_of(&e))?;
    if level == PtLevel::L4 {
        // The guest could have written anything into the upper half while
        // the frame was data; the type rules ignore those slots, the
        // hypervisor owns them.
        paging::install_hv_slots(mfn.addr()).map_err(|_| Error::Failed)?;
    }
    Ok(0)
}

/// Unpins `mfn`; if nothing references it any more it becomes data again.
pub fn unpin_table(mem: &mut Memory, dom: &Domain, mfn: Mfn) -> Result<u64, Error> {
    frame_ownership::unpin(mem.frametable, dom.id, mfn).map_err(|e| error_of(&e))?;
    let unreferenced = mem
        .frametable
        .get(mfn.0 as usize)
        .is_some_and(|f| f.type_count() == 0);
    if unreferenced {
        let ctx = context(dom)?;
        let parts = mem.parts();
        frame_ownership::release_table(
            &parts.layout,
            parts.frametable,
            &phys::table_reader(),
            &ctx,
            mfn,
        )
        .map_err(|e| error_of(&e))?;
        paging::flush_guest_tlb();
    }
    Ok(0)
}

/// Switches vCPU `vcpu` of `dom` to the pinned L4 `mfn`.
pub fn new_baseptr(
    mem: &mut Memory,
    dom: &mut Domain,
    vcpu: usize,
    mfn: Mfn,
) -> Result<u64, Error> {
    let frame = mem.frametable.get(mfn.0 as usize).ok_or(Error::NotOwner)?;
    if !frame.is_owned_by(dom.id) {
        return Err(Error::NotOwner);
    }
    if frame.page_type() != Some(PageType::L4) || !frame.is_pinned() {
        return Err(Error::TypeViolation);
    }
    let v = dom.vcpus.get_mut(vcpu).ok_or(Error::Failed)?;
    frame_ownership::use_as_cr3(mem.frametable, dom.id, mfn, Some(v.cr3))
        .map_err(|e| error_of(&e))?;
    v.cr3 = mfn;
    paging::load_guest_root(mfn.addr()).map_err(|e| {
        hvprintln!(
            "BUG: d{} pinned L4 {:#x} cannot be loaded: {e}",
            dom.id,
            mfn.0
        );
        Error::Failed
    })?;
    Ok(0)
}

/// Gives `dom` up to `count` new zeroed frames, appended to its guest frame
/// space; returns their mfns.
pub fn increase_reservation(
    mem: &mut Memory,
    dom: &mut Domain,
    count: usize,
) -> Result<alloc::vec::Vec<u64>, Error> {
    if dom.frames() + count as u64 > dom.max_frames {
        return Err(Error::Limit);
    }
    let ctx = DomainContext::new(dom.id, &[]).map_err(|_| Error::Failed)?;
    let mut given = alloc::vec::Vec::with_capacity(count);
    for _ in 0..count {
        let Some(mfn) = mem.pages.alloc() else { break };
        if phys::zero(mfn.addr(), 4096).is_err() {
            mem.pages.free(mfn);
            return Err(Error::Failed);
        }
        // Reuse a guest frame number given back earlier, so the p2m stays
        // within the memory limit however often frames come and go.
        let gpfn = Gpfn(
            dom.p2m
                .iter()
                .position(|&m| m == u64::MAX)
                .unwrap_or(dom.p2m.len()) as u64,
        );
        let parts = mem.parts();
        if let Err(e) =
            frame_ownership::claim_data(&parts.layout, parts.frametable, parts.m2p, &ctx, mfn, gpfn)
        {
            parts.pages.free(mfn);
            return Err(error_of(&e));
        }
        match dom.p2m.get_mut(gpfn.0 as usize) {
            Some(slot) => *slot = mfn.0,
            None => dom.p2m.push(mfn.0),
        }
        given.push(mfn.0);
    }
    if given.is_empty() && count > 0 {
        return Err(Error::NoMemory);
    }
    Ok(given)
}

/// Takes back frames of `dom` that are unmapped, untyped and unpinned.
/// Stops at the first refused one; returns how many were taken.
pub fn decrease_reservation(
    mem: &mut Memory,
    dom: &mut Domain,
    mfns: &[u64],
) -> Result<u64, Error> {
    let mut done = 0;
    for &mfn in mfns {
        // The guest frame, from the M2P, before the release clears it.
        let gpfn = mem.m2p.get(mfn as usize).copied();
        let result = frame_ownership::release_data(mem.frametable, mem.m2p, dom.id, Mfn(mfn))
            .map_err(|e| error_of(&e));
        match result {
            Ok(()) => {
                if let Some(slot) = gpfn.and_then(|g| dom.p2m.get_mut(g as usize)) {
                    *slot = u64::MAX;
                }
                mem.pages.free(Mfn(mfn));
                done += 1;
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}
