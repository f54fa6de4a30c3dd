//! `devices` (dom0): the PCI functions found at boot and who may map their
//! memory; and `domctl iomem_permit`: granting and revoking a domain's I/O
//! memory (`crate::iomem`).

use alloc::format;
use alloc::vec::Vec;

use frame_ownership::PageType;
use hvlu_types::pte::{Pte, ENTRIES};
use hvlu_types::{DomId, Mfn, MfnRange};
use pv_abi::call::GuestArray;
use pv_abi::hypercall::{
    BarInfo, DeviceInfo, Error, BARS, BAR_64, BAR_IO, BAR_PREFETCHABLE, BAR_PRESENT,
    MAX_MAPPABLE,
};
use zerocopy::IntoBytes;

use super::copy_to_guest;
use crate::arch::phys;
use crate::domain::Domain;
use crate::hv::Hv;
use crate::iomem::{self, range_text};
use crate::mm::heap;
use crate::pci::{Bar, BarKind, Device};

/// `devices(out, count)`: up to `count` records, in address order; returns
/// how many functions there are.
pub fn do_devices(hv: &mut Hv, out: GuestArray) -> Result<u64, Error> {
    let mut infos: Vec<DeviceInfo> = Vec::new();
    heap::reserve(&mut infos, hv.devices.len())?;
    infos.extend(hv.devices.iter().map(|d| info(d, hv.domains.values())));
    let n = (out.count as usize).min(infos.len());
    copy_to_guest(hv, out.addr, infos[..n].as_bytes())?;
    Ok(infos.len() as u64)
}

fn info<'a>(d: &Device, domains: impl Iterator<Item = &'a Domain> + Clone) -> DeviceInfo {
    let mut bars = [BarInfo::default(); BARS];
    for bar in &d.bars {
        if let Some(slot) = bars.get_mut(usize::from(bar.index)) {
            *slot = bar_info(bar, domains.clone());
        }
    }
    DeviceInfo {
        bdf: d.bdf.packed(),
        vendor: d.vendor,
        device: d.device,
        class: d.class,
        bars,
    }
}

fn bar_info<'a>(bar: &Bar, domains: impl Iterator<Item = &'a Domain>) -> BarInfo {
    let flags = BAR_PRESENT
        | match bar.kind {
            BarKind::Io => BAR_IO,
            BarKind::Memory64 => BAR_64,
            BarKind::Memory32 => 0,
        }
        | if bar.prefetchable { BAR_PREFETCHABLE } else { 0 };
    let mut info = BarInfo {
        base: bar.base,
        size: bar.size,
        flags,
        ..BarInfo::default()
    };
    if let Some(frames) = bar.frames() {
        let mut n = 0usize;
        for d in domains.filter(|d| d.mmio.iter().any(|r| r.overlaps(frames))) {
            if n < MAX_MAPPABLE {
                info.mappable[n] = d.id.0;
            }
            n += 1;
        }
        // There are fewer domains than domain ids.
        info.mappable_count = n as u16;
    }
    info
}

/// `domctl iomem_permit(id, first, count, allow)`: grants (`allow`) or
/// revokes domain `id`'s permission to map `count` device frames from
/// `first`. Refused, with the reason for `last_error`, when the range is
/// not device memory, `id` is no domain or dom0, or (revoke) the domain
/// still maps a frame of it.
pub fn iomem_permit(
    hv: &mut Hv,
    id: DomId,
    first: Mfn,
    count: u64,
    allow: bool,
) -> Result<u64, Error> {
    let range = MfnRange::new(first, count);
    let what = range_text(range);
    let Some(dom) = hv.domains.get(&id) else {
        return hv.refuse_with(Error::NotFound, format!("there is no domain d{id}"));
    };
    if dom.privileged {
        return hv.refuse_with(
            Error::Invalid,
            format!("d{id} is the control domain: it holds every memory BAR for good"),
        );
    }
    if dom.hvm.is_some() {
        // Its nested tables are built once, from its frame space: a grant
        // would show in its memory map and fault at the first access.
        return hv.refuse_with(
            Error::Invalid,
            format!("d{id} is an HVM domain: device memory is not passed through to HVM domains"),
        );
    }
    if let Some(why) = iomem::not_device_memory(&hv.devices, &hv.mem.ram, range) {
        return hv.refuse_with(Error::Invalid, why);
    }
    if allow {
        let Some(dom) = hv.domains.get_mut(&id) else {
            return Err(Error::Failed);
        };
        let mut mmio = dom.mmio.clone();
        heap::reserve(&mut mmio, 1)?;
        iomem::grant(&mut mmio, range);
        if let Err(e) = dom.set_mmio(mmio) {
            return hv.refuse_with(
                Error::Limit,
                format!("d{id} cannot have {what} mapped identity in its PCI hole: {e}"),
            );
        }
        crate::hvprintln!("d{id} may map {what}");
        return Ok(0);
    }
    if !dom.mmio.iter().any(|r| r.overlaps(range)) {
        return hv.refuse_with(
            Error::Invalid,
            format!("d{id} holds no frame of {what}: nothing to revoke"),
        );
    }
    if let Some((table, index, mfn)) = mapping_in(hv, dom, range) {
        return hv.refuse_with(
            Error::Busy,
            format!(
                "d{id} still maps mfn {mfn:#x} of {what} (entry {index} of its L1 table mfn \
                 {table:#x}): unmap it first"
            ),
        );
    }
    let Some(dom) = hv.domains.get_mut(&id) else {
        return Err(Error::Failed);
    };
    let mut mmio = dom.mmio.clone();
    heap::reserve(&mut mmio, 1)?;
    let held = iomem::revoke(&mut mmio, range);
    // A range cut in two can take the identity entries past their limit.
    if let Err(e) = dom.set_mmio(mmio) {
        return hv.refuse_with(
            Error::Limit,
            format!("d{id} cannot have {what} revoked: its identity entries would not fit: {e}"),
        );
    }
    crate::hvprintln!("d{id} may no longer map {what} ({held} frames were its)");
    Ok(0)
}

/// The first present entry of one of `dom`'s L1 tables — the frames its
/// p2m holds that the frametable types `L1` — that maps a frame of
/// `range`: (table, index, frame). A scan of the domain's frames and of
/// every L1 table's 512 entries: this is a hypercall, not the blackout.
pub(crate) fn mapping_in(hv: &Hv, dom: &Domain, range: MfnRange) -> Option<(u64, usize, u64)> {
    let mut entries = [0u8; 8 * ENTRIES];
    for mfn in dom.p2m.mfns() {
        let is_l1 = hv
            .mem
            .frametable
            .get(mfn as usize)
            .is_some_and(|f| f.is_owned_by(dom.id) && f.page_type() == Some(PageType::L1));
        if !is_l1 || phys::read(Mfn(mfn).addr(), &mut entries).is_err() {
            continue;
        }
        for (index, raw) in entries.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(raw);
            let e = Pte(u64::from_le_bytes(word));
            if e.is_present() && range.contains(e.mfn()) {
                return Some((mfn, index, e.mfn().0));
            }
        }
    }
    None
}
