//! The memory hypercalls: page-table updates, pins, base pointer switches
//! and reservations. The type rules are `crate::mmu`'s; these copy the
//! requests in and the results out.

use alloc::vec::Vec;

use handover_abi::{DomId, Mfn};
use pv_abi::hypercall::{Error, MmuUpdate};

use super::{copy_from_guest, copy_to_guest, le64, Args};
use crate::hv::Hv;
use crate::mmu;

/// `mmu_update(reqs, count)`.
pub fn do_mmu_update(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let count = (a[1] as usize).min(mmu::MAX_BATCH);
    let mut bytes = alloc::vec![0u8; count * 16];
    copy_from_guest(hv, a[0], &mut bytes)?;
    let reqs: Vec<MmuUpdate> = bytes
        .chunks_exact(16)
        .map(|c| MmuUpdate {
            ptr: le64(&c[..8]),
            val: le64(&c[8..]),
        })
        .collect();
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
    copy_to_guest(hv, a[0], &alloc::vec![0u8; count * 8])?;
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    let mfns = mmu::increase_reservation(&mut hv.mem, dom, count)?;
    let bytes: Vec<u8> = mfns.iter().flat_map(|m| m.to_le_bytes()).collect();
    copy_to_guest(hv, a[0], &bytes)?;
    Ok(mfns.len() as u64)
}

/// `decrease_reservation(mfns, count)`.
pub fn do_decrease_reservation(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let count = (a[1] as usize).min(mmu::MAX_BATCH);
    let mut bytes = alloc::vec![0u8; count * 8];
    copy_from_guest(hv, a[0], &mut bytes)?;
    let mfns: Vec<u64> = bytes.chunks_exact(8).map(le64).collect();
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    mmu::decrease_reservation(&mut hv.mem, dom, &mfns)
}
