//! The domain builder for HVM guests (AMD SVM with nested paging).
//!
//! An HVM guest is an ELF image whose loadable segments are placed at their
//! physical addresses, which are guest-physical addresses from
//! [`HVM_IMAGE_BASE`]. The builder takes the guest's frames exactly as for
//! a PV guest (each claimed as a data frame at its gpfn, `take_frames`),
//! zeroes them, copies the image, writes the start-info page at
//! [`HVM_START_INFO_GPA`] and builds the nested page tables that map every
//! RAM frame ([`Npt::build`]); it makes no page table of the guest's own —
//! the guest builds its paging itself, from the boot contract of
//! `pv_abi::start_info::HVM_BOOT_CS`: 32-bit protected mode, paging off.

use alloc::vec::Vec;

use goblin::elf::{program_header::PT_LOAD, Elf};
use hvlu_types::regs::HvmContext;
use hvlu_types::{Gpfn, PAGE_SIZE};
use pv_abi::start_info::{
    StartInfo, HVM_BOOT_CS, HVM_BOOT_DS, HVM_IMAGE_BASE, HVM_NOTE_NAME, HVM_NOTE_TYPE,
    HVM_START_INFO_GPA, SIF_HVM, SIF_PRIVILEGED, START_INFO_MAGIC,
};
use zerocopy::IntoBytes;

use super::{
    frame_space, give_back, take_frames, BuildError, Guest, GuestMemory, Spec, MIN_FREE_PAGES,
};
use crate::domain::npt::Npt;
use crate::domain::p2m::P2m;
use crate::mm::MemParts;
use frame_ownership::{DomainContext, PageType};

/// A built HVM domain: its frames (claimed as data in the frametable), its
/// nested page tables, and how its one vCPU starts.
#[derive(Debug)]
pub struct BuiltHvm {
    /// Its frame space.
    pub p2m: P2m,
    /// The gpfn of its start-info page.
    pub start_info: Gpfn,
    /// Its nested page tables.
    pub npt: Npt,
    /// Its vCPU's first context (the boot contract).
    pub vcpu: HvmContext,
}

/// The first context of an HVM guest: the boot contract of
/// `pv_abi::start_info::HVM_BOOT_CS` (32-bit protected mode, paging off,
/// flat segments, `rbx` the start-info page's address).
pub fn boot_context(entry: u64) -> HvmContext {
    let mut ctx = HvmContext::flat_protected(entry, HVM_BOOT_CS, HVM_BOOT_DS);
    ctx.regs.rbx = HVM_START_INFO_GPA;
    ctx
}

/// Whether `image` is an HVM guest: an ELF file with the note
/// `pv_abi::start_info::HVM_NOTE_NAME`.
pub fn is_hvm(image: &[u8]) -> bool {
    let Ok(elf) = Elf::parse(image) else {
        return false;
    };
    let Some(notes) = elf.iter_note_sections(image, None) else {
        return false;
    };
    notes
        .flatten()
        .any(|n| n.name == HVM_NOTE_NAME && n.n_type == HVM_NOTE_TYPE)
}

/// Checks an HVM image for a guest of `pages` pages below its hole: its
/// segments within its RAM from [`HVM_IMAGE_BASE`], its entry inside one.
/// Returns the ELF and the end of the image (guest-physical).
fn check_image<E>(image: &[u8], ram_end: u64) -> Result<(Elf<'_>, u64), BuildError<E>> {
    let elf = Elf::parse(image).map_err(|_| BuildError::BadElf("not a parsable ELF file"))?;
    if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(BuildError::BadElf("not an x86_64 ELF64 image"));
    }
    let mut image_end = HVM_IMAGE_BASE;
    let mut entry_inside = false;
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let end = ph.p_paddr.checked_add(ph.p_memsz);
        if ph.p_paddr < HVM_IMAGE_BASE
            || end.is_none_or(|e| e > ram_end)
            || ph.p_filesz > ph.p_memsz
        {
            return Err(BuildError::HvmSegmentOutOfRange {
                paddr: ph.p_paddr,
                memsz: ph.p_memsz,
                ram_end,
            });
        }
        if ph
            .p_offset
            .checked_add(ph.p_filesz)
            .is_none_or(|e| e > image.len() as u64)
        {
            return Err(BuildError::BadElf(
                "a segment lies beyond the end of the file",
            ));
        }
        entry_inside |= (ph.p_paddr..ph.p_paddr + ph.p_memsz).contains(&elf.entry);
        image_end = image_end.max(end.unwrap_or(0));
    }
    if !entry_inside {
        return Err(BuildError::BadElf("the entry point is outside the image"));
    }
    Ok((elf, image_end))
}

/// Builds an HVM domain from `spec`, taking its frames and its nested
/// page-table frames from `mem` and writing them through `memory`.
pub fn build<M: GuestMemory>(
    spec: &Spec<'_>,
    mem: &mut MemParts<'_>,
    memory: &mut M,
) -> Result<BuiltHvm, BuildError<M::Error>> {
    // The image lies in RAM below the hole (its pages are its gpfns there).
    let ram_end = spec.pages.min(spec.hole.start().0) * PAGE_SIZE;
    let (elf, image_end) = check_image(spec.image, ram_end)?;
    let first_free = image_end.div_ceil(PAGE_SIZE);
    let needed = first_free + MIN_FREE_PAGES;
    if spec.pages < needed {
        return Err(BuildError::TooSmall {
            pages: spec.pages,
            needed,
        });
    }
    let p2m = frame_space(spec, mem, memory)?;
    let mut guest = Guest { p2m, mem: memory };
    let Ok(dom) = DomainContext::new(spec.id, &[]) else {
        unreachable!("an empty list of MMIO ranges is sorted")
    };
    let filled = take_frames(spec, &dom, mem, &mut guest)
        .and_then(|()| write_guest(spec, &elf, first_free, &mut guest));
    if let Err(error) = filled {
        return Err(give_back(mem, spec.id, &guest.p2m, error));
    }
    // The nested tables, each frame claimed for the domain as a P2m frame
    // as it leaves the page allocator (Invariant 28).
    let mut taken: Vec<u64> = Vec::new();
    let mut refused = None;
    let mut alloc = || {
        let m = mem.pages.alloc()?;
        match frame_ownership::claim_hvm_frame(
            &mem.layout,
            mem.frametable,
            mem.m2p,
            &dom,
            m,
            PageType::P2m,
        ) {
            Ok(()) => {
                taken.push(m.0);
                Some(m)
            }
            Err(e) => {
                // Not free by the frametable: it stays out of the allocator.
                refused = Some(e);
                None
            }
        }
    };
    let built = Npt::build(&guest.p2m, guest.mem, &mut alloc);
    match (built, refused) {
        (Ok(npt), _) => Ok(BuiltHvm {
            p2m: guest.p2m,
            start_info: Gpfn(HVM_START_INFO_GPA / PAGE_SIZE),
            npt,
            vcpu: boot_context(elf.entry),
        }),
        (Err(e), refused) => {
            let error = refused.map_or(BuildError::Npt(e), BuildError::Refused);
            let mut all: Vec<u64> = guest.p2m.ram().to_vec();
            all.extend(taken);
            match mem.release_domain(spec.id, &all) {
                Ok(_) => Err(error),
                Err(release) => Err(BuildError::Stranded {
                    error: alloc::string::ToString::to_string(&error),
                    frames: all.len() as u64,
                    release,
                }),
            }
        }
    }
}

/// Zeroes every page, copies the image's segments to their guest-physical
/// addresses, writes the start-info page.
fn write_guest<M: GuestMemory>(
    spec: &Spec<'_>,
    elf: &Elf<'_>,
    first_free: u64,
    guest: &mut Guest<'_, M>,
) -> Result<(), BuildError<M::Error>> {
    for page in 0..spec.pages {
        let maddr = guest.maddr(page);
        guest
            .mem
            .zero(maddr, PAGE_SIZE)
            .map_err(BuildError::Memory)?;
    }
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let bytes = &spec.image[ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize];
        let mut gpa = ph.p_paddr;
        let mut rest = bytes;
        while !rest.is_empty() {
            let offset = gpa % PAGE_SIZE;
            let n = rest.len().min((PAGE_SIZE - offset) as usize);
            guest.write(guest.maddr(gpa / PAGE_SIZE) + offset, &rest[..n])?;
            rest = &rest[n..];
            gpa += n as u64;
        }
    }
    let mut si = StartInfo {
        magic: START_INFO_MAGIC,
        domid: u64::from(spec.id.0),
        flags: SIF_HVM | if spec.privileged { SIF_PRIVILEGED } else { 0 },
        nr_pages: spec.pages,
        first_free_gpfn: first_free,
        ..StartInfo::default()
    };
    let n = spec.cmdline.len().min(si.cmdline.len() - 1);
    si.cmdline[..n].copy_from_slice(&spec.cmdline.as_bytes()[..n]);
    guest.write(guest.maddr(HVM_START_INFO_GPA / PAGE_SIZE), si.as_bytes())
}
