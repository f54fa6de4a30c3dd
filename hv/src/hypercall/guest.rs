//! `read_guest` (dom0): bytes of a domain's memory named by guest frame
//! number, which the hypervisor translates itself (`Domain::translate`),
//! so that dom0's tools can read a domain whose guest-physical map it does
//! not hold (an HVM domain's nested tables, issue #16) the same way as a
//! PV domain's.

use alloc::format;

use hvlu_types::{DomId, Gpfn, PAGE_SIZE};
use pv_abi::call::GuestBuf;
use pv_abi::hypercall::Error;

use super::copy_to_guest;
use crate::arch::phys;
use crate::hv::Hv;

/// `read_guest(domid, gpfn, offset, buf, len)`: copies `out.len` bytes
/// (decoding kept them within the frame) from byte `offset` of domain
/// `domid`'s frame `gpfn` to the caller's `out`; returns how many. Reads
/// only a RAM frame the domain owns: every other gpfn is refused with the
/// reason (`last_error`).
pub fn do_read_guest(
    hv: &mut Hv,
    domid: DomId,
    gpfn: Gpfn,
    offset: u64,
    out: GuestBuf,
) -> Result<u64, Error> {
    let Some(dom) = hv.domains.get(&domid) else {
        return hv.refuse_with(Error::NotFound, format!("there is no domain d{domid}"));
    };
    let mfn = match dom.translate(gpfn) {
        Ok(mfn) => mfn,
        Err(e) => return hv.refuse_with(e.error(), format!("d{domid}: {e}")),
    };
    // The translation gives the domain's own frames only; a frame the
    // frametable does not give it is a hypervisor bug, never read.
    let owned = hv
        .mem
        .frametable
        .get(mfn.0 as usize)
        .is_some_and(|f| f.is_owned_by(domid));
    if !owned {
        return hv.refuse_with(
            Error::Failed,
            format!("BUG: d{domid}'s {gpfn} translates to {mfn}, which it does not own"),
        );
    }
    let mut bytes = [0u8; PAGE_SIZE as usize];
    let bytes = &mut bytes[..out.len as usize];
    if phys::read(mfn.addr() + offset, bytes).is_err() {
        return hv.refuse_with(
            Error::Failed,
            format!("d{domid}'s {gpfn} ({mfn}) cannot be read"),
        );
    }
    copy_to_guest(hv, out.addr, bytes)?;
    Ok(out.len)
}
