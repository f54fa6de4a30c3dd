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
//!
//! Reservations cost what they are asked for, not what the domain holds:
//! the domain's frame space ([`crate::domain::P2m`]) hands out and takes back
//! guest frame numbers without scanning its p2m and keeps the frame count,
//! and nothing here allocates more than the request's result. The start-info
//! page must stay a data frame of its domain (the handover state lists it
//! among the data runs): it can be neither given back nor pinned
//! ([`Error::Permission`]).

use frame_ownership::{DomainContext, EntryError, OpError, PageType};
use hvlu_types::{pte::Level, Gpfn, Mfn, PAGE_SIZE};
use pv_abi::call::EntryWrite;
use pv_abi::hypercall::Error;

use crate::arch::{paging, phys};
use crate::domain::Domain;
use crate::hvprintln;
use crate::mm::{heap, Memory};

/// The guest-visible error for a refused operation. Errors that mean the
/// hypervisor's own state is inconsistent are logged as bugs.
pub fn error_of(e: &OpError) -> Error {
    match e {
        OpError::OutOfRange { .. } | OpError::NotOwner { .. } => Error::NotOwner,
        OpError::Entry {
            source: EntryError::ForeignTarget { .. },
            ..
        } => Error::NotOwner,
        // Device memory outside the caller's I/O memory permission.
        OpError::Entry {
            source: EntryError::MmioNotPermitted { .. },
            ..
        } => Error::Permission,
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
    DomainContext::new(dom.id, &dom.mmio).map_err(|_| Error::Failed)
}

/// Applies `writes` in order; stops at the first refused one (a request
/// that did not decode, `pv_abi::call::MmuUpdate::decode`, is refused
/// there). Returns how many were applied, or the error of the first request
/// if none was.
pub fn mmu_update(
    mem: &mut Memory,
    dom: &Domain,
    writes: &[Result<EntryWrite, Error>],
) -> Result<u64, Error> {
    let ctx = context(dom)?;
    let mut done = 0;
    for write in writes {
        let result = write.and_then(|w| {
            // The frames the guest names: their entries initialised first
            // (Invariant 29).
            mem.settle_at(w.table);
            let target = hvlu_types::pte::Pte(w.val);
            if target.is_present() {
                mem.settle_at(target.mfn());
            }
            let parts = mem.parts();
            frame_ownership::update_entry(
                &parts.layout,
                parts.frametable,
                &mut phys::table_reader(),
                &ctx,
                w.table,
                w.index,
                w.val,
            )
            .map_err(|e| error_of(&e))
        });
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

/// Whether `mfn` is `dom`'s start-info page (its frame, at the start-info
/// gpfn in the M2P).
fn is_start_info(mem: &mut Memory, dom: &Domain, mfn: Mfn) -> bool {
    mem.settle_at(mfn);
    let i = mfn.0 as usize;
    mem.frametable.get(i).is_some_and(|f| f.is_owned_by(dom.id))
        && mem.m2p.get(i) == Some(&dom.start_info.0)
}

/// Validates and pins `mfn` as a table of `level`. A new L4 gets the
/// hypervisor's slots written into it. The start-info page is refused
/// ([`Error::Permission`]).
pub fn pin_table(
    mem: &mut Memory,
    dom: &Domain,
    mfn: Mfn,
    level: Level,
) -> Result<u64, Error> {
    if is_start_info(mem, dom, mfn) {
        return Err(Error::Permission);
    }
    // Validation reads the entry of every frame the table maps, any of
    // which the guest may name: all entries initialised first.
    mem.settle_all();
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
    if level == Level::L4 {
        // The guest could have written anything into the upper half while
        // the frame was data; the type rules ignore those slots, the
        // hypervisor owns them.
        paging::install_hv_slots(mfn.addr()).map_err(|_| Error::Failed)?;
    }
    Ok(0)
}

/// Unpins `mfn`; if nothing references it any more it becomes data again.
pub fn unpin_table(mem: &mut Memory, dom: &Domain, mfn: Mfn) -> Result<u64, Error> {
    mem.settle_at(mfn);
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
    mem.settle_at(mfn);
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

/// Gives `dom` up to `count` new zeroed frames, at the lowest guest frame
/// numbers given back earlier, then past the end of its p2m (which stays
/// within the memory limit however often frames come and go); returns
/// their mfns. The cost is `count` frames: the frame space finds each gpfn
/// without a scan, and the result is the only allocation.
pub fn increase_reservation(
    mem: &mut Memory,
    dom: &mut Domain,
    count: usize,
) -> Result<alloc::vec::Vec<u64>, Error> {
    if dom.frames() + count as u64 > dom.max_frames {
        return Err(Error::Limit);
    }
    // Claiming RAM consults no MMIO range: the context needs none, and
    // must not borrow the domain that `one` changes.
    let ctx = DomainContext::new(dom.id, &[]).map_err(|_| Error::Failed)?;
    let mut given = alloc::vec::Vec::new();
    heap::reserve(&mut given, count)?;
    // One frame: the lowest free gpfn, a zeroed frame, claimed.
    let mut one = |dom: &mut Domain| -> Result<Option<u64>, Error> {
        let Some(gpfn) = dom.p2m.next_gpfn() else {
            return Ok(None);
        };
        let Some(mfn) = mem.alloc() else {
            return Ok(None);
        };
        if phys::zero(mfn.addr(), PAGE_SIZE).is_err() {
            mem.pages.free(mfn);
            return Err(Error::Failed);
        }
        let parts = mem.parts();
        if let Err(e) =
            frame_ownership::claim_data(&parts.layout, parts.frametable, parts.m2p, &ctx, mfn, gpfn)
        {
            parts.pages.free(mfn);
            return Err(error_of(&e));
        }
        if dom.p2m.add(mfn.0) != Some(gpfn) {
            hvprintln!(
                "BUG: d{} frame space moved under increase_reservation",
                dom.id
            );
            return Err(Error::Failed);
        }
        Ok(Some(mfn.0))
    };
    for _ in 0..count {
        match one(dom) {
            Ok(Some(mfn)) => given.push(mfn),
            Ok(None) => break,
            // The frames given so far are the guest's: it learns them.
            Err(e) if given.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    if given.is_empty() && count > 0 {
        return Err(Error::NoMemory);
    }
    Ok(given)
}

/// Takes back frames of `dom` that are unmapped, untyped and unpinned.
/// Stops at the first refused one; returns how many were taken. The
/// start-info page is refused ([`Error::Permission`]): the handover state
/// must find it among the domain's data frames.
pub fn decrease_reservation(
    mem: &mut Memory,
    dom: &mut Domain,
    mfns: &[u64],
) -> Result<u64, Error> {
    let mut done = 0;
    for &mfn in mfns {
        // The guest frame, from the M2P, before the release clears it.
        let gpfn = mem.m2p.get(mfn as usize).copied();
        let result = if is_start_info(mem, dom, Mfn(mfn)) {
            Err(Error::Permission)
        } else {
            frame_ownership::release_data(mem.frametable, mem.m2p, dom.id, Mfn(mfn))
                .map_err(|e| error_of(&e))
        };
        match result {
            Ok(()) => {
                match gpfn.filter(|&g| dom.p2m.get(Gpfn(g)) == Some(mfn)) {
                    Some(g) => {
                        dom.p2m.remove(Gpfn(g));
                    }
                    None => hvprintln!(
                        "BUG: d{} gave back mfn {mfn:#x}, which its p2m does not hold at gpfn {gpfn:?}",
                        dom.id
                    ),
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
