//! Frames entering and leaving a domain: one data frame at a time
//! ([`claim_data`], [`release_data`]), or all of a domain's frames when it
//! is destroyed ([`release_domain`]) (Invariant 16).

use hvlu_types::{DomId, Gpfn, Mfn};

use super::lookup::LiveLookup;
use super::refs::{owned, page_type_of};
use super::DomainContext;
use crate::error::OpError;
use crate::frame::{FrameFlags, FrameInfo};
use crate::layout::MachineLayout;
use crate::page_type::PageType;
use crate::pass::M2P_INVALID;
use crate::rules::{FrameClass, FrameLookup};

/// Gives the free frame `mfn`, fresh from the page allocator, to `dom` as a
/// data frame with guest frame number `gpfn` (`increase_reservation`, domain
/// build).
///
/// The frame must be RAM outside the live-update region and the hv-reserved
/// ranges ([`OpError::NotDomainRam`]), owned by nobody
/// ([`OpError::AlreadyOwned`]) with an all-zero entry, and `gpfn` must not be
/// [`M2P_INVALID`]. Afterwards: owner `dom`, type `None`, type count 0,
/// reference count 1 (the allocation reference), `m2p[mfn] = gpfn`
/// (Invariants 1, 4, 10, 16). Its contents are whatever the allocator left;
/// they count for nothing until it is pinned.
pub fn claim_data(
    layout: &MachineLayout<'_>,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    dom: &DomainContext<'_>,
    mfn: Mfn,
    gpfn: Gpfn,
) -> Result<(), OpError> {
    let domain = dom.id;
    let i = claimable(layout, frametable, m2p, dom, mfn)?;
    if gpfn.0 == M2P_INVALID {
        return Err(OpError::GpfnInvalid { domain, mfn });
    }
    frametable[i] = FrameInfo::new(Some(domain), PageType::None, 0, 1, FrameFlags::EMPTY);
    m2p[i] = gpfn.0;
    Ok(())
}

/// The index of `mfn` if `dom` may claim it fresh from the page allocator:
/// within the frametable and the M2P ([`OpError::OutOfRange`]), RAM
/// outside the live-update region and the hv-reserved ranges
/// ([`OpError::NotDomainRam`]), owned by nobody ([`OpError::AlreadyOwned`])
/// with an all-zero entry ([`OpError::Corrupt`]). The one check both
/// claims make ([`claim_data`], [`claim_hvm_frame`]).
fn claimable(
    layout: &MachineLayout<'_>,
    frametable: &[FrameInfo],
    m2p: &[u64],
    dom: &DomainContext<'_>,
    mfn: Mfn,
) -> Result<usize, OpError> {
    let domain = dom.id;
    let i =
        index(mfn, frametable.len().min(m2p.len())).ok_or(OpError::OutOfRange { domain, mfn })?;
    match LiveLookup::new(layout, frametable, dom).classify(mfn) {
        FrameClass::Unowned => {}
        FrameClass::Own(_) => {
            return Err(OpError::AlreadyOwned {
                domain,
                mfn,
                owner: domain,
            })
        }
        FrameClass::OtherDomain(owner) => return Err(OpError::AlreadyOwned { domain, mfn, owner }),
        found => return Err(OpError::NotDomainRam { domain, mfn, found }),
    }
    if frametable[i] != FrameInfo::UNOWNED {
        return Err(OpError::Corrupt {
            domain: Some(domain),
            mfn,
            what: "a frame nobody owns has counts, a type or flags",
        });
    }
    Ok(i)
}

/// The counts a frame of an HVM domain's own structures has (Invariant
/// 28): a nested page-table frame (`P2m`) type count 1 and reference count
/// 2 (the entry that reaches it, or `ncr3`, and the allocation); a
/// log-dirty bitmap frame (`LogDirty`) type count 0 and reference count 1.
/// `None` for any other type.
pub const fn hvm_frame_counts(page_type: PageType) -> Option<(u32, u32)> {
    match page_type {
        PageType::P2m => Some((1, 2)),
        PageType::LogDirty => Some((0, 1)),
        _ => None,
    }
}

/// Gives the free frame `mfn`, fresh from the page allocator, to HVM
/// domain `dom` as a frame of its nested page tables (`PageType::P2m`) or
/// of its log-dirty bitmap (`PageType::LogDirty`): no guest frame
/// (`m2p[mfn]` stays [`M2P_INVALID`]), the counts of
/// [`hvm_frame_counts`]. The hypervisor builds what the frame holds; its
/// guest never maps it (the frame is in no guest frame's place). Refused
/// like [`claim_data`]: a frame that is not domain RAM, owned, or with a
/// non-zero entry; another type is [`OpError::NotHvmFrame`].
pub fn claim_hvm_frame(
    layout: &MachineLayout<'_>,
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    dom: &DomainContext<'_>,
    mfn: Mfn,
    page_type: PageType,
) -> Result<(), OpError> {
    let domain = dom.id;
    let Some((type_count, ref_count)) = hvm_frame_counts(page_type) else {
        return Err(OpError::NotHvmFrame {
            domain,
            mfn,
            page_type,
        });
    };
    let i = claimable(layout, frametable, m2p, dom, mfn)?;
    if m2p[i] != M2P_INVALID {
        return Err(OpError::Corrupt {
            domain: Some(domain),
            mfn,
            what: "a frame nobody owns has a guest frame",
        });
    }
    frametable[i] = FrameInfo::new(
        Some(domain),
        page_type,
        type_count,
        ref_count,
        FrameFlags::EMPTY,
    );
    Ok(())
}

/// Takes a frame [`claim_hvm_frame`] gave `domain` as `page_type` away
/// again and makes it free (log-dirty turned off), for the caller to
/// return to the page allocator: it must be `domain`'s, of that type, with
/// exactly that type's counts ([`OpError::HvmFrameInUse`] otherwise).
pub fn release_hvm_frame(
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    domain: DomId,
    mfn: Mfn,
    page_type: PageType,
) -> Result<(), OpError> {
    let Some((type_count, ref_count)) = hvm_frame_counts(page_type) else {
        return Err(OpError::NotHvmFrame {
            domain,
            mfn,
            page_type,
        });
    };
    let fi = owned(frametable, domain, mfn)?;
    let i = index(mfn, m2p.len()).ok_or(OpError::OutOfRange { domain, mfn })?;
    let found = page_type_of(&fi, domain, mfn)?;
    if found != page_type
        || fi.type_count() != type_count
        || fi.ref_count() != ref_count
        || fi.is_pinned()
    {
        return Err(OpError::HvmFrameInUse {
            domain,
            mfn,
            expected: page_type,
            page_type: found,
            type_count: fi.type_count(),
            ref_count: fi.ref_count(),
        });
    }
    frametable[i] = FrameInfo::UNOWNED;
    m2p[i] = M2P_INVALID;
    Ok(())
}

/// Takes the data frame `mfn` away from `domain` and makes it free
/// (`decrease_reservation`), for the caller to return to the page allocator.
///
/// Only a frame held by its allocation alone may go (Invariants 4, 16): type
/// `None`, type count 0, reference count exactly 1, not pinned — no
/// mapping, no table type, no pin, no CR3. Otherwise [`OpError::Busy`],
/// naming the counts. Afterwards the entry is [`FrameInfo::UNOWNED`] and
/// `m2p[mfn]` is [`M2P_INVALID`].
pub fn release_data(
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    domain: DomId,
    mfn: Mfn,
) -> Result<(), OpError> {
    let fi = owned(frametable, domain, mfn)?;
    let i = index(mfn, m2p.len()).ok_or(OpError::OutOfRange { domain, mfn })?;
    let page_type = page_type_of(&fi, domain, mfn)?;
    if page_type != PageType::None || fi.type_count() != 0 || fi.ref_count() != 1 || fi.is_pinned()
    {
        return Err(OpError::Busy {
            domain,
            mfn,
            page_type,
            type_count: fi.type_count(),
            ref_count: fi.ref_count(),
            pinned: fi.is_pinned(),
        });
    }
    frametable[i] = FrameInfo::UNOWNED;
    m2p[i] = M2P_INVALID;
    Ok(())
}

/// Takes every frame of the destroyed domain `domain` away at once and makes
/// them free, whatever they hold (domain destruction); returns how many
/// frames were released, for the caller to return them to the page
/// allocator and check the number against its own record.
///
/// `p2m` lists the domain's frames: the mfn of each guest frame, with
/// [`M2P_INVALID`] (`u64::MAX`) for a guest frame without one (as the
/// hypervisor's p2m holds them; the index is not interpreted, and a frame
/// listed twice is released once). It must list **every** frame the domain
/// owns: a frame left out keeps its owner and its counts, which may include
/// references of the released tables.
///
/// Every frame is checked before the first is written: it must lie within
/// the frametable and the M2P ([`OpError::OutOfRange`]) and belong to
/// `domain` ([`OpError::NotOwner`]); otherwise nothing is changed. Then each
/// entry becomes [`FrameInfo::UNOWNED`] (no owner, type `None`, both counts
/// 0, not pinned) and its M2P entry [`M2P_INVALID`], as [`release_data`]
/// leaves a frame.
///
/// Unlike [`release_data`], a frame may still be mapped, typed, pinned or in
/// a CR3: every reference to a domain's frame is held by the domain itself
/// (its own tables' entries, Invariant 6; MMIO entries hold none, Invariant
/// 8; its pins and its vCPUs' CR3s, Invariant 5), and all of them go with
/// it, so no frame of another domain changes and the table stays the one
/// the pass would rebuild from the remaining domains. The caller must no
/// longer run the domain: its vCPUs are forgotten and no CPU has one of its
/// tables loaded.
pub fn release_domain(
    frametable: &mut [FrameInfo],
    m2p: &mut [u64],
    domain: DomId,
    p2m: &[u64],
) -> Result<u64, OpError> {
    let frames = || p2m.iter().filter(|&&m| m != M2P_INVALID).map(|&m| Mfn(m));
    // Invariant 15: every frame checked before the first is written.
    for mfn in frames() {
        owned(frametable, domain, mfn)?;
        index(mfn, m2p.len()).ok_or(OpError::OutOfRange { domain, mfn })?;
    }
    let mut released = 0;
    for mfn in frames() {
        let i = index(mfn, m2p.len());
        let (Some(i), Some(fi)) = (i, i.and_then(|i| frametable.get_mut(i))) else {
            continue;
        };
        if !fi.is_owned_by(domain) {
            // Listed twice: released already.
            continue;
        }
        *fi = FrameInfo::UNOWNED;
        m2p[i] = M2P_INVALID;
        released += 1;
    }
    Ok(released)
}

/// The index of `mfn` in a table of `len` entries, `None` beyond its end.
fn index(mfn: Mfn, len: usize) -> Option<usize> {
    usize::try_from(mfn.0).ok().filter(|&i| i < len)
}
