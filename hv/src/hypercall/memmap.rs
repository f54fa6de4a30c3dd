//! `memory_map` and `machine_memory_map`: a domain's memory map (its RAM,
//! its PCI hole, device memory mapped identity inside it) and the machine's
//! as the hypervisor read it.

use alloc::vec::Vec;

use hvlu_types::DomId;
use pv_abi::call::GuestArray;
use pv_abi::hypercall::{Error, MemoryMapEntry};
use zerocopy::IntoBytes;

use super::copy_to_guest;
use crate::hv::Hv;
use crate::mm::heap;

/// `memory_map(domid, entries, count)` from domain `d`: a domU may ask for
/// itself only; dom0 for any domain.
pub fn do_memory_map(hv: &mut Hv, d: DomId, domid: DomId, out: GuestArray) -> Result<u64, Error> {
    let privileged = hv.domains.get(&d).is_some_and(|dom| dom.privileged);
    if domid != d && !privileged {
        return Err(Error::Permission);
    }
    let dom = hv.domains.get(&domid).ok_or(Error::NotFound)?;
    let mut entries: Vec<MemoryMapEntry> = Vec::new();
    for e in dom.p2m.memory_map() {
        heap::reserve(&mut entries, 1)?;
        entries.push(e);
    }
    answer(hv, &entries, out)
}

/// `machine_memory_map(entries, count)` (dom0).
pub fn do_machine_memory_map(hv: &mut Hv, out: GuestArray) -> Result<u64, Error> {
    let mut entries: Vec<MemoryMapEntry> = Vec::new();
    heap::reserve(&mut entries, hv.machine_map.len())?;
    entries.extend_from_slice(&hv.machine_map);
    answer(hv, &entries, out)
}

/// Copies `entries` to `out` if they fit (else [`Error::TooSmall`], nothing
/// written); returns their number.
fn answer(hv: &Hv, entries: &[MemoryMapEntry], out: GuestArray) -> Result<u64, Error> {
    if entries.len() as u64 > out.count {
        return Err(Error::TooSmall);
    }
    copy_to_guest(hv, out.addr, entries.as_bytes())?;
    Ok(entries.len() as u64)
}
