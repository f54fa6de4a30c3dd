//! The memory hypercalls: page-table updates, pins, base pointer switches
//! and reservations. The type rules are `crate::mmu`'s; these copy the
//! requests in and the results out. Every buffer whose size the guest
//! chooses is taken from the heap fallibly (`Error::NoMemory`).

use alloc::vec::Vec;

use hvlu_types::{pte::Level, DomId, Mfn};
use pv_abi::call::{self, EntryWrite, GuestArray};
use pv_abi::hypercall::{Error, MmuUpdate};

use super::{copy_from_guest, copy_to_guest};
use crate::hv::Hv;
use crate::mm::heap;
use crate::mmu;

/// `mmu_update(reqs, count)`: each request is decoded on its own
/// (`pv_abi::call::mmu_updates`), so that the ones before a refused one
/// are applied.
pub fn do_mmu_update(hv: &mut Hv, d: DomId, reqs: GuestArray) -> Result<u64, Error> {
    let count = reqs.count as usize;
    let mut bytes = heap::zeroed(count * MmuUpdate::SIZE)?;
    copy_from_guest(hv, reqs.addr, &mut bytes)?;
    let mut writes: Vec<Result<EntryWrite, Error>> = Vec::new();
    heap::reserve(&mut writes, count)?;
    writes.extend(call::mmu_updates(&bytes).map(|w| w.map_err(|e| e.error())));
    let dom = hv.domains.get(&d).ok_or(Error::Failed)?;
    mmu::mmu_update(&mut hv.mem, dom, &writes)
}

/// `pin_table(mfn, level)`.
pub fn do_pin_table(hv: &mut Hv, d: DomId, mfn: Mfn, level: Level) -> Result<u64, Error> {
    let dom = hv.domains.get(&d).ok_or(Error::Failed)?;
    mmu::pin_table(&mut hv.mem, dom, mfn, level)
}

/// `unpin_table(mfn)`.
pub fn do_unpin_table(hv: &mut Hv, d: DomId, mfn: Mfn) -> Result<u64, Error> {
    let dom = hv.domains.get(&d).ok_or(Error::Failed)?;
    mmu::unpin_table(&mut hv.mem, dom, mfn)
}

/// `new_baseptr(mfn)`: for the calling vCPU.
pub fn do_new_baseptr(hv: &mut Hv, d: DomId, mfn: Mfn) -> Result<u64, Error> {
    let (_, v) = hv.sched.current.ok_or(Error::Failed)?;
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    mmu::new_baseptr(&mut hv.mem, dom, v, mfn)
}

/// `increase_reservation(mfns_out, count)`.
pub fn do_increase_reservation(hv: &mut Hv, d: DomId, out: GuestArray) -> Result<u64, Error> {
    let count = out.count as usize;
    // Check the output buffer before taking any frame.
    let mut bytes = heap::zeroed(count * 8)?;
    copy_to_guest(hv, out.addr, &bytes)?;
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    let mfns = mmu::increase_reservation(&mut hv.mem, dom, count)?;
    for (chunk, m) in bytes.chunks_exact_mut(8).zip(&mfns) {
        chunk.copy_from_slice(&m.to_le_bytes());
    }
    copy_to_guest(hv, out.addr, &bytes[..mfns.len() * 8])?;
    Ok(mfns.len() as u64)
}

/// `decrease_reservation(mfns, count)`.
pub fn do_decrease_reservation(hv: &mut Hv, d: DomId, list: GuestArray) -> Result<u64, Error> {
    let count = list.count as usize;
    let mut bytes = heap::zeroed(count * 8)?;
    copy_from_guest(hv, list.addr, &mut bytes)?;
    let mut mfns: Vec<u64> = Vec::new();
    heap::reserve(&mut mfns, count)?;
    mfns.extend(call::mfn_list(&bytes));
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    mmu::decrease_reservation(&mut hv.mem, dom, &mfns)
}
