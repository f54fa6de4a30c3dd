//! Log-dirty tracking of an HVM domain, as live migration uses it (Xen's
//! nested-paging log-dirty): `enable` write-protects every RAM leaf of the
//! nested tables; a write then faults (`NPF`), and [`write_fault`] marks
//! the page dirty in the bitmap and makes its leaf writable again; `peek`
//! reports the dirty pages; `clean` reports them, empties the bitmap and
//! write-protects every page again; `off` makes every page writable and
//! frees the bitmap.
//!
//! The bitmap is one bit per RAM index of the domain (`hvlu_types::hole`),
//! in machine-contiguous frames the hypervisor takes from its page
//! allocator (the handover state records them as one range, ABI 1.3). What holds
//! between two calls — the invariant a live update carries and the single
//! pass checks — is: a RAM leaf is writable only if its bit is set.

use alloc::vec::Vec;

use hvlu_types::pte::WRITABLE;
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange, PAGE_SIZE};
use pv_abi::call::{GuestArray, LogDirtyOp};
use pv_abi::hypercall::Error;

use frame_ownership::PageType;

use crate::arch::phys;
use crate::domain::builder::PhysMemory;
use crate::domain::npt::RAM_FLAGS;
use crate::domain::Domain;
use crate::hv::Hv;

/// Bits in a bitmap frame.
const BITS_PER_FRAME: u64 = PAGE_SIZE * 8;

/// The bitmap of a tracked domain.
#[derive(Debug)]
pub struct LogDirty {
    /// Its frames, one after the other: bit `i` of the bitmap is bit
    /// `i % 8` of byte `i / 8`, RAM index `i`. The bitmap is the only
    /// record: the dirty count is read from it when asked
    /// ([`LogDirty::dirty`]), so an update adopts it as it is.
    pub frames: MfnRange,
}

impl LogDirty {
    /// The bitmap a live update handed over, in place.
    pub fn adopt(frames: MfnRange) -> LogDirty {
        LogDirty { frames }
    }

    /// The dirty RAM indices below `limit`, ascending: the bitmap read a
    /// word at a time.
    pub fn dirty(&self, limit: u64) -> impl Iterator<Item = u64> + '_ {
        let words = limit.min(self.frames.count * BITS_PER_FRAME).div_ceil(64);
        (0..words).flat_map(move |w| {
            let mut bytes = [0u8; 8];
            let word = match phys::read(self.frames.start.addr() + 8 * w, &mut bytes) {
                Ok(()) => u64::from_le_bytes(bytes),
                Err(_) => 0,
            };
            (0..64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| 64 * w + b)
                .filter(move |&i| i < limit)
        })
    }

    /// Where bit `i` lives: the byte's physical address and its mask.
    fn byte(&self, i: u64) -> Option<(u64, u8)> {
        (i < self.frames.count * BITS_PER_FRAME)
            .then(|| (self.frames.start.addr() + i / 8, 1 << (i % 8)))
    }

    /// Marks RAM index `i` dirty.
    fn set(&self, i: u64) {
        let Some((addr, mask)) = self.byte(i) else {
            return;
        };
        let mut b = [0u8];
        if phys::read(addr, &mut b).is_ok() && b[0] & mask == 0 {
            b[0] |= mask;
            let _ = phys::write(addr, &b);
        }
    }

    /// Empties the bitmap.
    fn clear(&mut self) {
        let _ = phys::zero(self.frames.start.addr(), self.frames.count * PAGE_SIZE);
    }
}

/// The hypervisor wrote `len` bytes at guest-physical `gpa` of `dom` (a
/// hypercall's output): those pages are dirty, as if the guest had
/// written them (their leaves stay as they are: read-only and dirty is
/// allowed, writable and clean is not).
pub fn written(dom: &Domain, gpa: u64, len: u64) {
    let Some(ld) = dom.hvm.as_ref().and_then(|h| h.log_dirty.as_ref()) else {
        return;
    };
    if len == 0 {
        return;
    }
    let hole = dom.hole();
    for gpfn in gpa / PAGE_SIZE..=(gpa + len - 1) / PAGE_SIZE {
        if let Some(i) = hole.index_of(Gpfn(gpfn)) {
            ld.set(i);
        }
    }
}

/// Sets or clears the write permission of every RAM leaf of `dom`'s
/// nested tables.
fn protect_all(dom: &mut Domain, writable: bool) -> Result<(), Error> {
    let Some(h) = dom.hvm.as_mut() else {
        return Err(Error::Invalid);
    };
    let mut mem = PhysMemory::default();
    for (gpfn, mfn) in dom.p2m.entries() {
        let leaf = Mfn(mfn).addr() | RAM_FLAGS;
        let entry = if writable { leaf } else { leaf & !WRITABLE };
        h.npt
            .set(&mut mem, &mut || None, gpfn, entry)
            .map_err(|_| Error::Failed)?;
    }
    h.flush = true;
    Ok(())
}

/// A write fault at `gpfn` of `dom`: if log-dirty tracks it and `gpfn` is
/// RAM whose leaf is write-protected, marks it dirty and makes it writable
/// (the guest retries the write). Returns whether it was that.
pub fn write_fault(dom: &mut Domain, gpfn: Gpfn) -> bool {
    let Some(index) = dom.hole().index_of(gpfn) else {
        return false;
    };
    let Some(mfn) = dom.p2m.get(gpfn) else {
        return false;
    };
    let Some(h) = dom.hvm.as_mut() else {
        return false;
    };
    let Some(ld) = h.log_dirty.as_mut() else {
        return false;
    };
    let mut mem = PhysMemory::default();
    match h.npt.get(&mem, gpfn) {
        Ok(e) if e & WRITABLE == 0 && e != 0 => {}
        _ => return false,
    }
    ld.set(index);
    let leaf = Mfn(mfn).addr() | RAM_FLAGS;
    if h.npt.set(&mut mem, &mut || None, gpfn, leaf).is_err() {
        return false;
    }
    h.flush = true;
    true
}

/// `domctl log_dirty`: see `pv_abi::hypercall::DomctlOp::LogDirty`.
pub fn domctl(hv: &mut Hv, id: DomId, op: LogDirtyOp, out: GuestArray) -> Result<u64, Error> {
    let Some(dom) = hv.domains.get(&id) else {
        return hv.refuse_with(Error::NotFound, alloc::format!("there is no domain d{id}"));
    };
    let Some(h) = dom.hvm.as_ref() else {
        return hv.refuse_with(
            Error::Invalid,
            alloc::format!("d{id} is a PV domain: log-dirty tracks an HVM domain's nested tables"),
        );
    };
    match (op, h.log_dirty.is_some()) {
        (LogDirtyOp::Enable, true) => {
            return hv.refuse_with(Error::Busy, alloc::format!("d{id} is tracked already"));
        }
        (LogDirtyOp::Peek | LogDirtyOp::Clean | LogDirtyOp::Off, false) => {
            return hv.refuse_with(
                Error::Invalid,
                alloc::format!("d{id} is not tracked: `logdirty {id} on` first"),
            );
        }
        _ => {}
    }
    match op {
        LogDirtyOp::Enable => {
            let n = dom.p2m.limit().div_ceil(BITS_PER_FRAME);
            // A contiguous run: all free RAM the allocator's first.
            hv.settle_all();
            let Some(frames) = hv.mem.pages.alloc_run(n) else {
                return hv.refuse_with(
                    Error::NoMemory,
                    alloc::format!("no {n} contiguous free frames for d{id}'s dirty bitmap"),
                );
            };
            // The domain's, as LogDirty frames (Invariant 28).
            let Ok(ctx) = frame_ownership::DomainContext::new(id, &[]) else {
                unreachable!("an empty list of MMIO ranges is sorted")
            };
            let parts = hv.mem.parts();
            let mut claimed = 0;
            let refused = (frames.start.0..frames.end()).find_map(|m| {
                let r = frame_ownership::claim_hvm_frame(
                    &parts.layout,
                    parts.frametable,
                    parts.m2p,
                    &ctx,
                    Mfn(m),
                    PageType::LogDirty,
                );
                claimed += u64::from(r.is_ok());
                r.err()
            });
            if let Some(e) = refused {
                // Those claimed go back; the refused one is not free by the
                // frametable and stays out of the allocator; those after it
                // were never claimed.
                for m in frames.start.0..frames.end() {
                    let k = m - frames.start.0;
                    if k < claimed {
                        let _ = frame_ownership::release_hvm_frame(
                            parts.frametable,
                            parts.m2p,
                            id,
                            Mfn(m),
                            PageType::LogDirty,
                        );
                    }
                    if k != claimed {
                        parts.pages.free(Mfn(m));
                    }
                }
                return hv.refuse_with(
                    Error::Failed,
                    alloc::format!("d{id}'s dirty bitmap frames were refused: {e}"),
                );
            }
            let _ = phys::zero(frames.start.addr(), n * PAGE_SIZE);
            let dom = hv.domains.get_mut(&id).ok_or(Error::NotFound)?;
            if let Some(h) = dom.hvm.as_mut() {
                h.log_dirty = Some(LogDirty { frames });
            }
            protect_all(dom, false)?;
            Ok(0)
        }
        LogDirtyOp::Peek | LogDirtyOp::Clean => {
            let limit = dom.p2m.limit();
            let dirty = h
                .log_dirty
                .as_ref()
                .map_or(0, |l| l.dirty(limit).count() as u64);
            if op == LogDirtyOp::Clean && out.count != 0 && out.count < dirty {
                // Cleaning pages the caller never heard of would lose them.
                return hv.refuse_with(
                    Error::TooSmall,
                    alloc::format!(
                        "d{id} has {dirty} dirty pages and the list has room for {}: a clean must list them all (or none: room 0 cleans without a list)",
                        out.count
                    ),
                );
            }
            let dirty = list(hv, id, out)?;
            if op == LogDirtyOp::Clean {
                let dom = hv.domains.get_mut(&id).ok_or(Error::NotFound)?;
                if let Some(ld) = dom.hvm.as_mut().and_then(|h| h.log_dirty.as_mut()) {
                    ld.clear();
                }
                protect_all(dom, false)?;
            }
            Ok(dirty)
        }
        LogDirtyOp::Off => {
            let dom = hv.domains.get_mut(&id).ok_or(Error::NotFound)?;
            protect_all(dom, true)?;
            if let Some(ld) = dom.hvm.as_mut().and_then(|h| h.log_dirty.take()) {
                let parts = hv.mem.parts();
                for m in ld.frames.start.0..ld.frames.end() {
                    if let Err(e) = frame_ownership::release_hvm_frame(
                        parts.frametable,
                        parts.m2p,
                        id,
                        Mfn(m),
                        PageType::LogDirty,
                    ) {
                        crate::hvprintln!(
                            "BUG: d{id}'s bitmap frame {m:#x} cannot be released ({e}); it stays out of use"
                        );
                        continue;
                    }
                    parts.pages.free(Mfn(m));
                }
            }
            Ok(0)
        }
    }
}

/// Writes the first dirty gpfns of `id` (ascending) to `out`; returns the
/// dirty count.
fn list(hv: &mut Hv, id: DomId, out: GuestArray) -> Result<u64, Error> {
    let dom = hv.domains.get(&id).ok_or(Error::NotFound)?;
    let ld = dom
        .hvm
        .as_ref()
        .and_then(|h| h.log_dirty.as_ref())
        .ok_or(Error::Invalid)?;
    let hole = dom.hole();
    let mut first: Vec<u8> = Vec::new();
    let mut dirty = 0u64;
    for i in ld.dirty(dom.p2m.limit()) {
        if dirty < out.count {
            if let Some(g) = hole.gpfn_of(i) {
                first.extend_from_slice(&g.0.to_le_bytes());
            }
        }
        dirty += 1;
    }
    crate::hypercall::copy_out(hv, out.addr, &first)?;
    Ok(dirty)
}
