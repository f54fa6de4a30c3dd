//! Guest pointers: every buffer a guest passes is translated in software —
//! a PV guest's through its own page tables, each page present,
//! user-accessible and writable if the hypervisor writes it; an HVM guest's
//! (a guest-physical address) through its frame space — and each page must
//! be a frame the guest owns.

use frame_ownership::FrameInfo;
use hvlu_types::{DomId, Gpfn, Mfn};

use crate::domain::P2m;
use hvlu_types::PAGE_SIZE;
use pv_abi::hypercall::Error;

use hvlu_types::canonical::is_lower_half;
use hvlu_types::pte::{Level, ADDR_MASK, HUGE, PRESENT, USER, WRITABLE};

use crate::arch::phys;

/// How a domain's pointers are translated.
#[derive(Clone, Copy)]
pub enum Space<'a> {
    /// A PV guest's virtual addresses, through the page tables at this root.
    Pv(Mfn),
    /// An HVM guest's guest-physical addresses, through its frame space.
    Hvm(&'a P2m),
}

/// Translates guest address `addr` to a machine address, checking the
/// mapping and ownership.
pub fn translate(
    frametable: &[FrameInfo],
    owner: DomId,
    space: Space<'_>,
    addr: u64,
    write: bool,
) -> Result<u64, Error> {
    let maddr = match space {
        Space::Pv(cr3) => walk(cr3, addr, write)?,
        Space::Hvm(p2m) => {
            let mfn = p2m
                .get(Gpfn(addr / PAGE_SIZE))
                .ok_or(Error::BadAddress)?;
            Mfn(mfn).addr() + (addr & 0xfff)
        }
    };
    let mfn = Mfn::containing(maddr);
    if !frametable
        .get(mfn.0 as usize)
        .is_some_and(|f| f.is_owned_by(owner))
    {
        return Err(Error::BadAddress);
    }
    Ok(maddr)
}

/// Walks a PV guest's page tables from `cr3` for `va`.
fn walk(cr3: Mfn, va: u64, write: bool) -> Result<u64, Error> {
    // Lower half only: the upper half is the hypervisor's.
    if !is_lower_half(va) {
        return Err(Error::BadAddress);
    }
    let mut table = cr3.addr();
    for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
        let index = level.index(va) as u64;
        let entry = phys::read_u64(table + 8 * index).map_err(|_| Error::BadAddress)?;
        if entry & PRESENT == 0 || entry & USER == 0 || (write && entry & WRITABLE == 0) {
            return Err(Error::BadAddress);
        }
        if level > Level::L1 && entry & HUGE != 0 {
            return Err(Error::BadAddress);
        }
        table = entry & ADDR_MASK;
    }
    Ok(table + (va & 0xfff))
}

/// Copies `buf.len()` bytes from guest address `va`.
pub fn read(
    frametable: &[FrameInfo],
    owner: DomId,
    space: Space<'_>,
    va: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    let mut done = 0;
    while done < buf.len() {
        let addr = va.checked_add(done as u64).ok_or(Error::BadAddress)?;
        let maddr = translate(frametable, owner, space, addr, false)?;
        let n = (buf.len() - done).min((PAGE_SIZE - (addr & 0xfff)) as usize);
        phys::read(maddr, &mut buf[done..done + n]).map_err(|_| Error::BadAddress)?;
        done += n;
    }
    Ok(())
}

/// Copies `len` bytes from guest address `va` to RAM at `paddr`, a page
/// at a time through a buffer on the stack (for images, which may be larger
/// than the heap). Every page is checked as it is reached: on a refusal the
/// bytes before it have been copied.
pub fn read_to_phys(
    frametable: &[FrameInfo],
    owner: DomId,
    space: Space<'_>,
    va: u64,
    len: u64,
    paddr: u64,
) -> Result<(), Error> {
    let mut chunk = [0u8; PAGE_SIZE as usize];
    let mut done = 0;
    while done < len {
        let addr = va.checked_add(done).ok_or(Error::BadAddress)?;
        // Up to the guest page's end, so each chunk is one translation.
        let n = (len - done).min(PAGE_SIZE - (addr & 0xfff)) as usize;
        read(frametable, owner, space, addr, &mut chunk[..n])?;
        phys::write(paddr + done, &chunk[..n]).map_err(|_| Error::Failed)?;
        done += n as u64;
    }
    Ok(())
}

/// Copies `data` to guest address `va`.
pub fn write(
    frametable: &[FrameInfo],
    owner: DomId,
    space: Space<'_>,
    va: u64,
    data: &[u8],
) -> Result<(), Error> {
    // Check every page before writing any, so a refused call changes nothing.
    let mut addr = va;
    let end = va.checked_add(data.len() as u64).ok_or(Error::BadAddress)?;
    while addr < end {
        translate(frametable, owner, space, addr, true)?;
        addr = (addr & !0xfff) + PAGE_SIZE;
    }
    let mut done = 0;
    while done < data.len() {
        let addr = va + done as u64;
        let maddr = translate(frametable, owner, space, addr, true)?;
        let n = (data.len() - done).min((PAGE_SIZE - (addr & 0xfff)) as usize);
        phys::write(maddr, &data[done..done + n]).map_err(|_| Error::BadAddress)?;
        done += n;
    }
    Ok(())
}
