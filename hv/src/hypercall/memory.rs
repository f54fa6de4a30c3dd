//! The memory hypercalls: page-table updates, pins, base pointer switches
//! and reservations. The type rules are `crate::mmu`'s; these copy the
//! requests in and the results out. Every buffer whose size the guest
//! chooses is taken from the heap fallibly (`Error::NoMemory`).

use alloc::vec::Vec;

use handover_abi::{DomId, Mfn};
use pv_abi::hypercall::{Error, MmuUpdate};

use super::{copy_from_guest, copy_to_guest, le64, Args};
use crate::hv::Hv;
use crate::mm::heap;
use crate::mmu;

/// `mmu_update(reqs, count)`.
pub fn do_mmu_update(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let count = (a[1] as usize).min(mmu::MAX_BATCH);
    let mut bytes = heap::zeroed(count * 16)?;
    copy_from_guest(hv, a[0], &mut bytes)?;
    let mut reqs: Vec<MmuUpdate> = Vec::new();
    heap::reserve(&mut reqs, count)?;
    reqs.extend(bytes.chunks_exact(16).map(|c| MmuUpdate {
        ptr: le64(&c[..8]),
        val: le64(&c[8..]),
    }));
    let dom = hv.domains.get(&d).ok_or(Error::Failed)?;
    mmu::mmu_update(&mut hv.mem, dom, &reqs)
}

/// `pin_table(mfn, level)`.
pub fn do_pin_table(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let dom = hv.domains.get(&d).ok_or(Error::Failed)?;
    mmu::pin_table(&mut hv.mem, dom, Mfn(a[0]), a[1])
}

/// `unpin_table(mfn)`.
pub fn do_unpin_table(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let dom = hv.domains.get(&d).ok_or(Error::Failed)?;
    mmu::unpin_table(&mut hv.mem, dom, Mfn(a[0]))
}

/// `new_baseptr(mfn)`: for the calling vCPU.
pub fn do_new_baseptr(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let (_, v) = hv.sched.current.ok_or(Error::Failed)?;
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    mmu::new_baseptr(&mut hv.mem, dom, v, Mfn(a[0]))
}

/// `increase_reservation(mfns_out, count)`.
pub fn do_increase_reservation(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let count = (a[1] as usize).min(mmu::MAX_BATCH);
    // Check the output buffer before taking any frame.
    let mut bytes = heap::zeroed(count * 8)?;
    copy_to_guest(hv, a[0], &bytes)?;
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    let mfns = mmu::increase_reservation(&mut hv.mem, dom, count)?;
    for (chunk, m) in bytes.chunks_exact_mut(8).zip(&mfns) {
        chunk.copy_from_slice(&m.to_le_bytes());
    }
    copy_to_guest(hv, a[0], &bytes[..mfns.len() * 8])?;
    Ok(mfns.len() as u64)
}

/// `decrease_reservation(mfns, count)`.
pub fn do_decrease_reservation(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let count = (a[1] as usize).min(mmu::MAX_BATCH);
    let mut bytes = heap::zeroed(count * 8)?;
    copy_from_guest(hv, a[0], &mut bytes)?;
    let mut mfns: Vec<u64> = Vec::new();
    heap::reserve(&mut mfns, count)?;
    mfns.extend(bytes.chunks_exact(8).map(le64));
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    mmu::decrease_reservation(&mut hv.mem, dom, &mfns)
}
