//! The domain builder: a PV guest from an ELF image.
//!
//! The builder gives the guest `pages` frames from the page allocator and
//! lays out its pseudo-physical space as
//!
//! | gpfns | what |
//! |---|---|
//! | 0 ([`START_INFO_GPFN`]) | start-info page |
//! | 1.. | gpfn → mfn list |
//! | .. | the ELF image, then the initial stack |
//! | `pt_first_gpfn`.. | page tables: L1s, L2s, L3s, the L4 |
//! | `first_free_gpfn`.. | free for the guest |
//!
//! and the virtual layout of `pv_abi::start_info`. It writes the page tables
//! and then hands the domain to `frame_ownership::rebuild` — the same pass
//! that adopts domains after a live update — which claims every frame, types
//! the tables, checks every entry and takes every count. A domain the pass
//! would refuse is never started.
//!
//! Before any frame is taken, the domain's frame space ([`P2m`]: its p2m and
//! free-gpfn list, sized by its memory limit of 125 % of its pages) is
//! reserved on the heap; a domain the machine cannot back — not enough free
//! frames, or not enough heap — is refused with both numbers.

use alloc::vec;
use alloc::vec::Vec;
use hvlu_types::PAGE_SIZE;

use frame_ownership::DomainView;
use goblin::elf::{program_header::PT_LOAD, Elf};
use handover_abi::{DomId, Gpfn, Mfn, RunKind};
use hvlu_types::pte::{NO_EXECUTE, PRESENT, USER, WRITABLE};
use pv_abi::start_info::{
    StartInfo, IMAGE_BASE, PHYSMAP_VA, SIF_PRIVILEGED, STACK_PAGES, STACK_TOP, START_INFO_MAGIC,
    START_INFO_VA, WINDOW_PAGES, WINDOW_VA,
};

use zerocopy::IntoBytes;

mod tables;

use super::p2m::{self, P2m, P2mError};
use super::{Domain, Vcpu};
use crate::arch::paging;
use crate::arch::phys;
use crate::arch::trap::TrapFrame;
use crate::mm::{heap, Memory};

/// Largest image the layout allows: it must end below the window.
const IMAGE_LIMIT: u64 = WINDOW_VA;
/// The fewest free pages a guest gets beyond the builder's own.
const MIN_FREE_PAGES: u64 = 16;
/// Where the builder puts the start-info page.
pub const START_INFO_GPFN: u64 = 0;
/// Heap that must stay free after a new domain's frame space is reserved:
/// for its name, vCPU, console line and scheduling, and for the
/// hypervisor's own small allocations.
const HEAP_HEADROOM: u64 = 256 << 10;

/// A domain's memory limit for `pages` pages: room to grow by a quarter
/// with `increase_reservation`.
pub fn max_frames(pages: u64) -> u64 {
    pages + pages / 4
}

/// Why a domain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The image is not an ELF64 x86_64 executable.
    #[error("bad guest image: {0}")]
    BadElf(&'static str),
    /// A loadable segment lies outside `[IMAGE_BASE, IMAGE_LIMIT)`.
    #[error(
        "segment at {vaddr:#x} ({memsz:#x} bytes) is outside {IMAGE_BASE:#x}..{IMAGE_LIMIT:#x}"
    )]
    SegmentOutOfRange { vaddr: u64, memsz: u64 },
    /// The requested memory cannot hold the layout plus a minimum of free
    /// pages.
    #[error("{pages} pages is too little memory: at least {needed} are needed")]
    TooSmall { pages: u64, needed: u64 },
    /// Not enough free frames.
    #[error("{pages} pages asked for, {free} free")]
    NoMemory { pages: u64, free: u64 },
    /// The heap cannot hold the domain's frame space (p2m and free list).
    #[error(
        "its p2m and free-gpfn list and {headroom} KiB of headroom do not fit: {0}",
        headroom = HEAP_HEADROOM >> 10
    )]
    NoHeap(heap::Exhausted),
    /// The memory limit cannot be represented.
    #[error("{0}")]
    Limit(P2mError),
    /// The pass refused the built domain (a builder bug).
    #[error("the frametable pass refused the new domain: {0}")]
    Refused(frame_ownership::Error),
    /// A frame could not be written.
    #[error("cannot write guest memory: {0}")]
    Phys(#[from] phys::PhysError),
}

/// What to build.
#[derive(Debug)]
pub struct Spec<'a> {
    /// The domain id.
    pub id: DomId,
    /// Its name.
    pub name: &'a str,
    /// The ELF image.
    pub image: &'a [u8],
    /// Pages of memory.
    pub pages: u64,
    /// Whether it is dom0.
    pub privileged: bool,
    /// Its command line.
    pub cmdline: &'a str,
}

struct Layout {
    mfn_list: (u64, u64),
    image: (u64, u64),
    stack: (u64, u64),
    l1_low: Vec<u64>, // L2 indices (2 MiB slots) of the low area that get an L1
    l1_physmap: u64,
    l2_physmap: u64,
    pt_first: u64,
    pt_count: u64,
    first_free: u64,
}

fn plan(pages: u64, image_end: u64) -> Layout {
    let mfn_list_pages = (pages * 8).div_ceil(PAGE_SIZE);
    let image_pages = (image_end - IMAGE_BASE).div_ceil(PAGE_SIZE);
    let mfn_list = (1, mfn_list_pages);
    let image = (mfn_list.0 + mfn_list.1, image_pages);
    let stack = (image.0 + image.1, STACK_PAGES);
    let mut l1_low: Vec<u64> = Vec::new();
    for va in [START_INFO_VA, STACK_TOP - STACK_PAGES * PAGE_SIZE]
        .into_iter()
        .chain((IMAGE_BASE..image_end).step_by(2 << 20))
        .chain([
            image_end - 1,
            WINDOW_VA,
            WINDOW_VA + WINDOW_PAGES * PAGE_SIZE - 1,
        ])
    {
        let slot = va >> 21;
        if !l1_low.contains(&slot) {
            l1_low.push(slot);
        }
    }
    l1_low.sort_unstable();
    let l1_physmap = pages.div_ceil(512);
    let l2_physmap = l1_physmap.div_ceil(512);
    // L1s, then L2s (low + physmap), two L3s, one L4.
    let pt_count = l1_low.len() as u64 + l1_physmap + 1 + l2_physmap + 2 + 1;
    let pt_first = stack.0 + stack.1;
    Layout {
        mfn_list,
        image,
        stack,
        l1_low,
        l1_physmap,
        l2_physmap,
        pt_first,
        pt_count,
        first_free: pt_first + pt_count,
    }
}

/// The builder's view of a guest under construction.
struct Guest {
    p2m: P2m,
}

impl Guest {
    fn maddr(&self, gpfn: u64) -> u64 {
        self.p2m[gpfn as usize] << 12
    }

    fn set(&self, table_gpfn: u64, index: u64, value: u64) -> Result<(), BuildError> {
        phys::write_u64(self.maddr(table_gpfn) + 8 * index, value)?;
        Ok(())
    }
}

/// Builds a domain from `spec`, taking its frames from `mem`.
pub fn build(spec: &Spec<'_>, mem: &mut Memory) -> Result<Domain, BuildError> {
    let elf = Elf::parse(spec.image).map_err(|_| BuildError::BadElf("not a parsable ELF file"))?;
    if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(BuildError::BadElf("not an x86_64 ELF64 image"));
    }
    let mut image_end = IMAGE_BASE + PAGE_SIZE;
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let end = ph.p_vaddr.checked_add(ph.p_memsz);
        if ph.p_vaddr < IMAGE_BASE
            || end.is_none_or(|e| e > IMAGE_LIMIT)
            || ph.p_filesz > ph.p_memsz
        {
            return Err(BuildError::SegmentOutOfRange {
                vaddr: ph.p_vaddr,
                memsz: ph.p_memsz,
            });
        }
        let file_end = ph.p_offset.checked_add(ph.p_filesz);
        if file_end.is_none_or(|e| e > spec.image.len() as u64) {
            return Err(BuildError::BadElf(
                "a segment lies beyond the end of the file",
            ));
        }
        image_end = image_end.max(end.unwrap_or(0));
    }
    if !(IMAGE_BASE..image_end).contains(&elf.entry) {
        return Err(BuildError::BadElf("the entry point is outside the image"));
    }

    let layout = plan(spec.pages, image_end);
    let needed = layout.first_free + MIN_FREE_PAGES;
    if spec.pages < needed {
        return Err(BuildError::TooSmall {
            pages: spec.pages,
            needed,
        });
    }
    if mem.pages.free_frames() < spec.pages {
        return Err(BuildError::NoMemory {
            pages: spec.pages,
            free: mem.pages.free_frames(),
        });
    }
    // The frame space, sized by the limit, before any frame is taken.
    let limit = max_frames(spec.pages);
    let needed = p2m::heap_bytes(limit) + HEAP_HEADROOM;
    let free = heap::free();
    if free < needed {
        return Err(BuildError::NoHeap(heap::Exhausted { needed, free }));
    }
    let mut p2m = P2m::with_limit(limit).map_err(|e| match e {
        P2mError::NoHeap(e) => BuildError::NoHeap(heap::Exhausted {
            needed: e.needed + HEAP_HEADROOM,
            ..e
        }),
        e => BuildError::Limit(e),
    })?;
    for _ in 0..spec.pages {
        let Some(mfn) = mem.pages.alloc() else {
            unreachable!("free frames were counted")
        };
        if p2m.add(mfn.0).is_none() {
            unreachable!("the limit is above the pages")
        }
    }
    let guest = Guest { p2m };
    let frame = match write_guest(spec, &elf, &layout, &guest) {
        Ok(frame) => frame,
        Err(e) => return Err(give_back(mem, guest.p2m, e)),
    };
    adopt(spec, &layout, guest, frame, mem).map_err(|(e, p2m)| give_back(mem, p2m, e))
}

/// Returns the frames of a domain that could not be built to the page
/// allocator: a pass that failed part-way may have claimed some of them.
fn give_back(mem: &mut Memory, p2m: P2m, e: BuildError) -> BuildError {
    for mfn in p2m.mfns() {
        mem.frametable[mfn as usize] = frame_ownership::FrameInfo::UNOWNED;
        mem.m2p[mfn as usize] = frame_ownership::M2P_INVALID;
        mem.pages.free(Mfn(mfn));
    }
    e
}

/// Writes every frame of the guest: zeroes, image, start info, mfn list,
/// page tables. Returns the initial register frame.
fn write_guest(
    spec: &Spec<'_>,
    elf: &Elf<'_>,
    layout: &Layout,
    guest: &Guest,
) -> Result<TrapFrame, BuildError> {
    (|| -> Result<TrapFrame, BuildError> {
        for gpfn in 0..spec.pages {
            phys::zero(guest.maddr(gpfn), PAGE_SIZE)?;
        }
        // The image, segment by segment.
        for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
            let bytes = &spec.image[ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize];
            for (i, chunk) in bytes.chunks(PAGE_SIZE as usize).enumerate() {
                // Copy page-piece by page-piece: the guest's frames are not
                // contiguous in machine memory.
                let mut va = ph.p_vaddr + i as u64 * PAGE_SIZE;
                let mut rest = chunk;
                while !rest.is_empty() {
                    let page = (va - IMAGE_BASE) / PAGE_SIZE;
                    let offset = va % PAGE_SIZE;
                    let n = rest.len().min((PAGE_SIZE - offset) as usize);
                    phys::write(guest.maddr(layout.image.0 + page) + offset, &rest[..n])?;
                    rest = &rest[n..];
                    va += n as u64;
                }
            }
        }
        // The gpfn → mfn list, a page at a time.
        for (page, mfns) in guest.p2m.chunks(512).enumerate() {
            let bytes = tables::page_bytes(mfns.iter().copied());
            phys::write(
                guest.maddr(layout.mfn_list.0 + page as u64),
                &bytes[..mfns.len() * 8],
            )?;
        }
        tables::write_tables(spec, elf, layout, guest)
    })()
}

/// Hands the written guest to the frametable pass and makes it a domain.
fn adopt(
    spec: &Spec<'_>,
    layout: &Layout,
    guest: Guest,
    frame: TrapFrame,
    mem: &mut Memory,
) -> Result<Domain, (BuildError, P2m)> {
    let mut domain = Domain::new(
        spec.id,
        spec.name,
        spec.privileged,
        guest.p2m,
        Gpfn(START_INFO_GPFN),
        Vec::new(),
    );
    // Runs straight from the plan: everything is data except the tables.
    let l4 = Mfn(domain.p2m[(layout.first_free - 1) as usize]);
    let kinds = tables::table_kinds(layout);
    let runs = frame_ownership::p2m_runs(&domain.p2m, kinds);
    let pinned = [(l4, RunKind::L4)];
    let cr3 = [l4];
    let view = DomainView::new(spec.id, &runs, &[], &pinned, &cr3);
    let parts = mem.parts();
    if let Err(e) = frame_ownership::rebuild(
        &parts.layout,
        core::slice::from_ref(&view),
        &phys::table_reader(),
        parts.frametable,
        parts.m2p,
    ) {
        return Err((BuildError::Refused(e), domain.p2m));
    }
    domain.vcpus = vec![Vcpu::new(frame, l4)];
    Ok(domain)
}
