//! The domain builder: a PV guest from an ELF image.
//!
//! The builder gives the guest `pages` frames from the page allocator and
//! lays out its pages — numbered by RAM index (`hvlu_types::hole`): page
//! `n` is gpfn `n` below the domain's PCI hole and `n + (4 GiB − hole)`
//! from it on, so the guest's page numbers skip the hole and the physmap
//! and mfn list stay dense — as
//!
//! | pages | what |
//! |---|---|
//! | 0 ([`START_INFO_GPFN`]) | start-info page |
//! | 1.. | page → mfn list |
//! | .. | the ELF image, then the initial stack |
//! | `pt_first_gpfn`.. | page tables: L1s, L2s, L3s, the L4 |
//! | `first_free_gpfn`.. | free for the guest |
//!
//! and the virtual layout of `pv_abi::start_info` ([`plan`] computes it
//! from the size and the image alone). Every frame is claimed for the
//! domain as it leaves the page allocator (`frame_ownership::claim_data`,
//! as `increase_reservation` does); the builder writes the frames, then
//! types its page tables through the live frametable operations — pins
//! them bottom-up (L1s, L2s, L3s, the L4), each pin checking every entry
//! by the rules the pass uses, then drops every pin but the L4's and makes
//! the L4 the vCPU's CR3 (`pin`, `unpin`, `use_as_cr3`). The result is the
//! frametable the pass rebuilds from the domain's runs (Invariant 12; the
//! host tests compare the two), and a domain the operations refuse is
//! never started.
//!
//! Before any frame is taken, the domain's frame space ([`P2m`]: its p2m and
//! free-index list, sized by its memory limit of 125 % of its pages, and
//! its PCI hole) is
//! reserved on the heap; a domain the machine cannot back — not enough free
//! frames, or not enough heap — is refused with both numbers.
//!
//! A build that fails once frames are taken gives every frame it claimed
//! back the way a destroyed domain's go ([`MemParts::release_domain`]:
//! `frame_ownership::release_domain`, then the page allocator), whatever
//! the failure left them holding. A frame the claim refused is not the
//! domain's and stays out of the page allocator: the frametable says it is
//! not free.
//!
//! The builder reaches guest memory only through [`GuestMemory`]; the
//! hypervisor's is the direct map (`machine`, bare-metal only), the host
//! tests' a simulated memory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use frame_ownership::{DomainContext, OpError, PageTableReader};
use goblin::elf::{program_header::PT_LOAD, Elf};
use handover_abi::RunKind;
use hvlu_types::hole::Hole;
use hvlu_types::pte::{Level, NO_EXECUTE, PRESENT, USER, WRITABLE};
use hvlu_types::{DomId, Gpfn, Mfn};
use hvlu_types::{VcpuContext, PAGE_SIZE};
use pv_abi::start_info::{
    StartInfo, IMAGE_BASE, PHYSMAP_VA, SIF_PRIVILEGED, STACK_PAGES, STACK_TOP, START_INFO_MAGIC,
    START_INFO_VA, WINDOW_PAGES, WINDOW_VA,
};

use zerocopy::IntoBytes;

pub mod hvm;
#[cfg(target_os = "none")]
mod machine;
mod tables;
#[cfg(test)]
mod tests;

#[cfg(target_os = "none")]
pub use machine::PhysMemory;

use super::p2m::{self, P2m, P2mError};
use crate::mm::{heap, MemParts};

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
    pages.saturating_add(pages / 4)
}

/// The guest memory the builder writes: the frames it took, reached by
/// machine address (mfn × [`PAGE_SIZE`] + offset), and read back as page tables by
/// the frametable operations that type them.
pub trait GuestMemory: PageTableReader {
    /// Why a write was refused.
    type Error: core::fmt::Display + core::fmt::Debug;

    /// Writes `bytes` at machine address `maddr` (within one frame).
    fn write(&mut self, maddr: u64, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Zeroes `len` bytes from machine address `maddr`.
    fn zero(&mut self, maddr: u64, len: u64) -> Result<(), Self::Error>;

    /// Writes the hypervisor's own L4 entries, slots
    /// `frame_ownership::rules::HV_L4_FIRST_SLOT..512`, which every guest L4
    /// carries, into the guest L4 `l4`.
    fn install_hv_slots(&mut self, l4: Mfn) -> Result<(), Self::Error>;

    /// Bytes the hypervisor heap has free now.
    fn heap_free(&self) -> u64;
}

/// Why a domain could not be built. `E` is the memory's write error
/// ([`GuestMemory::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E> {
    /// The image is not an ELF64 x86_64 executable.
    #[error("bad guest image: {0}")]
    BadElf(&'static str),
    /// A loadable segment lies outside `[IMAGE_BASE, IMAGE_LIMIT)`.
    #[error(
        "segment at {vaddr:#x} ({memsz:#x} bytes) is outside {IMAGE_BASE:#x}..{IMAGE_LIMIT:#x}"
    )]
    SegmentOutOfRange { vaddr: u64, memsz: u64 },
    /// An HVM image's loadable segment lies outside its guest RAM from
    /// `pv_abi::start_info::HVM_IMAGE_BASE`.
    #[error(
        "segment at guest-physical {paddr:#x} ({memsz:#x} bytes) is outside the guest's RAM from {base:#x} to {ram_end:#x}",
        base = pv_abi::start_info::HVM_IMAGE_BASE
    )]
    HvmSegmentOutOfRange {
        paddr: u64,
        memsz: u64,
        ram_end: u64,
    },
    /// The nested page tables of an HVM domain could not be built.
    #[error("nested page tables: {0}")]
    Npt(super::npt::NptError),
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
    /// A frametable operation refused a frame or a table of the new domain:
    /// a frame the page allocator should not have had, or a builder bug.
    #[error("the frametable refused the new domain: {0}")]
    Refused(OpError),
    /// A frame could not be written.
    #[error("cannot write guest memory: {0}")]
    Memory(E),
    /// The build failed and its frames could not be given back either:
    /// they stay out of use (the frametable disagrees with the builder's
    /// own record of them).
    #[error("{error}; its {frames} frames stay out of use, they cannot be given back: {release}")]
    Stranded {
        /// Why the build failed.
        error: String,
        /// Frames the domain had.
        frames: u64,
        /// Why they could not be given back.
        release: OpError,
    },
}

impl<E> BuildError<E> {
    /// What the `domctl create` that asked for the build returns: no memory
    /// (frames or heap), a size that cannot be (too small, a limit that
    /// cannot be represented), or a failure.
    pub fn error(&self) -> pv_abi::hypercall::Error {
        use pv_abi::hypercall::Error;
        match self {
            BuildError::NoMemory { .. } | BuildError::NoHeap(_) => Error::NoMemory,
            BuildError::TooSmall { .. } | BuildError::Limit(_) => Error::Invalid,
            _ => Error::Failed,
        }
    }
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
    /// Its PCI hole.
    pub hole: Hole,
}

/// A built domain: its frames, claimed and typed in the frametable, and
/// how its one vCPU starts.
#[derive(Debug)]
pub struct Built {
    /// Its frame space: every frame, by RAM index (its page number).
    pub p2m: P2m,
    /// The gpfn of its start-info page ([`START_INFO_GPFN`]).
    pub start_info: Gpfn,
    /// Its vCPU's first context: the image's entry in ring 3, on the
    /// initial stack, the start-info address in `rdi`, the L4 as CR3.
    pub vcpu: VcpuContext,
}

/// Where everything goes in a guest of a given size: page numbers (RAM
/// indices) and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The page → mfn list: first page, pages.
    pub mfn_list: (u64, u64),
    /// The image: first page, pages.
    pub image: (u64, u64),
    /// The initial stack: first page, pages.
    pub stack: (u64, u64),
    /// L2 indices (2 MiB slots) of the low area that get an L1.
    pub l1_low: Vec<u64>,
    /// L1 tables of the physmap.
    pub l1_physmap: u64,
    /// L2 tables of the physmap.
    pub l2_physmap: u64,
    /// The first page-table page.
    pub pt_first: u64,
    /// Page-table frames: the low L1s, the physmap's L1s and L2s, the low
    /// L2, two L3s, the L4.
    pub pt_count: u64,
    /// The first page left free for the guest.
    pub first_free: u64,
}

/// The layout of a guest of `pages` pages whose image ends at virtual
/// address `image_end`, or [`BuildError::TooSmall`] if the pages cannot hold
/// it and [`MIN_FREE_PAGES`] free pages besides.
pub fn plan<E>(pages: u64, image_end: u64) -> Result<Layout, BuildError<E>> {
    let mfn_list_pages = pages.saturating_mul(8).div_ceil(PAGE_SIZE);
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
    let layout = Layout {
        mfn_list,
        image,
        stack,
        l1_low,
        l1_physmap,
        l2_physmap,
        pt_first,
        pt_count,
        first_free: pt_first + pt_count,
    };
    let needed = layout.first_free + MIN_FREE_PAGES;
    if pages < needed {
        return Err(BuildError::TooSmall { pages, needed });
    }
    Ok(layout)
}

/// Checks that `image` is an x86_64 ELF64 executable whose loadable
/// segments lie in `[IMAGE_BASE, IMAGE_LIMIT)` and inside the file, with
/// its entry inside them; returns it parsed and where its last segment
/// ends (at least one page past `IMAGE_BASE`).
fn check_image<E>(image: &[u8]) -> Result<(Elf<'_>, u64), BuildError<E>> {
    let elf = Elf::parse(image).map_err(|_| BuildError::BadElf("not a parsable ELF file"))?;
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
        if file_end.is_none_or(|e| e > image.len() as u64) {
            return Err(BuildError::BadElf(
                "a segment lies beyond the end of the file",
            ));
        }
        image_end = image_end.max(end.unwrap_or(0));
    }
    if !(IMAGE_BASE..image_end).contains(&elf.entry) {
        return Err(BuildError::BadElf("the entry point is outside the image"));
    }
    Ok((elf, image_end))
}

/// The builder's view of a guest under construction: its frames and the
/// memory they are written through.
struct Guest<'m, M> {
    p2m: P2m,
    mem: &'m mut M,
}

impl<M: GuestMemory> Guest<'_, M> {
    /// The mfn of the guest's page `page` (a RAM index).
    fn mfn(&self, page: u64) -> u64 {
        self.p2m.ram()[page as usize]
    }

    /// The machine address of the guest's page `page`.
    fn maddr(&self, page: u64) -> u64 {
        self.mfn(page) << 12
    }

    fn write(&mut self, maddr: u64, bytes: &[u8]) -> Result<(), BuildError<M::Error>> {
        self.mem.write(maddr, bytes).map_err(BuildError::Memory)
    }

    fn set(&mut self, table: u64, index: u64, value: u64) -> Result<(), BuildError<M::Error>> {
        self.write(self.maddr(table) + 8 * index, &value.to_le_bytes())
    }
}

/// Writes `words` little-endian from machine address `maddr` (all within
/// one frame), 64 at a time: a small buffer, not a page, on the stack.
fn write_words<M: GuestMemory>(
    mem: &mut M,
    maddr: u64,
    words: impl Iterator<Item = u64>,
) -> Result<(), BuildError<M::Error>> {
    let mut buf = [0u8; 512];
    let (mut at, mut n) = (maddr, 0);
    for word in words {
        buf[n..n + 8].copy_from_slice(&word.to_le_bytes());
        n += 8;
        if n == buf.len() {
            mem.write(at, &buf).map_err(BuildError::Memory)?;
            (at, n) = (at + n as u64, 0);
        }
    }
    if n > 0 {
        mem.write(at, &buf[..n]).map_err(BuildError::Memory)?;
    }
    Ok(())
}

/// Builds a domain from `spec`, taking its frames from `mem` and writing
/// them through `memory`.
pub fn build<M: GuestMemory>(
    spec: &Spec<'_>,
    mem: &mut MemParts<'_>,
    memory: &mut M,
) -> Result<Built, BuildError<M::Error>> {
    let (elf, image_end) = check_image(spec.image)?;
    let layout = plan(spec.pages, image_end)?;
    let p2m = frame_space(spec, mem, memory)?;
    let mut guest = Guest { p2m, mem: memory };
    match fill(spec, &elf, &layout, mem, &mut guest) {
        Ok(vcpu) => Ok(Built {
            p2m: guest.p2m,
            start_info: Gpfn(START_INFO_GPFN),
            vcpu,
        }),
        Err(error) => Err(give_back(mem, spec.id, &guest.p2m, error)),
    }
}

/// The frame space of a domain of `spec.pages` pages, sized by its limit,
/// before any frame is taken: refused if the machine cannot back it (not
/// enough free frames, or not enough heap).
fn frame_space<M: GuestMemory>(
    spec: &Spec<'_>,
    mem: &MemParts<'_>,
    memory: &M,
) -> Result<P2m, BuildError<M::Error>> {
    let free = mem.pages.free_frames();
    if free < spec.pages {
        return Err(BuildError::NoMemory {
            pages: spec.pages,
            free,
        });
    }
    let limit = max_frames(spec.pages);
    let needed = p2m::heap_bytes(limit) + HEAP_HEADROOM;
    let free = memory.heap_free();
    if free < needed {
        return Err(BuildError::NoHeap(heap::Exhausted { needed, free }));
    }
    P2m::with_limit(limit, spec.hole).map_err(|e| match e {
        P2mError::NoHeap { needed } => BuildError::NoHeap(heap::Exhausted {
            needed: needed + HEAP_HEADROOM,
            free: memory.heap_free(),
        }),
        e => BuildError::Limit(e),
    })
}

/// Takes the guest's frames, writes them and types its tables; returns
/// its vCPU's first context. On failure the frames taken so far are in
/// `guest.p2m`, for [`give_back`].
fn fill<M: GuestMemory>(
    spec: &Spec<'_>,
    elf: &Elf<'_>,
    layout: &Layout,
    mem: &mut MemParts<'_>,
    guest: &mut Guest<'_, M>,
) -> Result<VcpuContext, BuildError<M::Error>> {
    let Ok(dom) = DomainContext::new(spec.id, &[]) else {
        unreachable!("an empty list of MMIO ranges is sorted")
    };
    take_frames(spec, &dom, mem, guest)?;
    let vcpu = write_guest(spec, elf, layout, guest)?;
    // Here rather than with the L4's other entries: the deepest calls of a
    // build stay apart (a debug build creates dom0 on the 64 KiB boot
    // stack).
    guest
        .mem
        .install_hv_slots(vcpu.cr3)
        .map_err(BuildError::Memory)?;
    type_tables(&dom, layout, mem, guest)?;
    Ok(vcpu)
}

/// Takes `spec.pages` frames from the page allocator, each claimed for the
/// domain as a data frame at the next gpfn as it is taken.
fn take_frames<M: GuestMemory>(
    spec: &Spec<'_>,
    dom: &DomainContext<'_>,
    mem: &mut MemParts<'_>,
    guest: &mut Guest<'_, M>,
) -> Result<(), BuildError<M::Error>> {
    let no_memory = |free| BuildError::NoMemory {
        pages: spec.pages,
        free,
    };
    for _ in 0..spec.pages {
        // Below the limit, which is above the pages.
        let gpfn = guest
            .p2m
            .next_gpfn()
            .ok_or(no_memory(mem.pages.free_frames()))?;
        let mfn = mem.pages.alloc().ok_or(no_memory(0))?;
        // A frame the claim refuses is not this domain's and, by the
        // frametable, not free either: it stays out of the allocator.
        frame_ownership::claim_data(&mem.layout, mem.frametable, mem.m2p, dom, mfn, gpfn)
            .map_err(BuildError::Refused)?;
        guest.p2m.add(mfn.0);
    }
    Ok(())
}

/// Gives the frames of a domain that could not be built back as a
/// destroyed domain's go ([`MemParts::release_domain`]), whatever the
/// failure left them holding; returns `error`, or
/// [`BuildError::Stranded`] if they could not be given back.
fn give_back<E: core::fmt::Display>(
    mem: &mut MemParts<'_>,
    id: DomId,
    p2m: &P2m,
    error: BuildError<E>,
) -> BuildError<E> {
    match mem.release_domain(id, p2m.ram()) {
        Ok(_) => error,
        Err(release) => BuildError::Stranded {
            error: error.to_string(),
            frames: p2m.frames(),
            release,
        },
    }
}

/// Writes every frame of the guest: zeroes, image, start info, mfn list,
/// page tables. Returns the vCPU's first context.
fn write_guest<M: GuestMemory>(
    spec: &Spec<'_>,
    elf: &Elf<'_>,
    layout: &Layout,
    guest: &mut Guest<'_, M>,
) -> Result<VcpuContext, BuildError<M::Error>> {
    for page in 0..spec.pages {
        let maddr = guest.maddr(page);
        guest
            .mem
            .zero(maddr, PAGE_SIZE)
            .map_err(BuildError::Memory)?;
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
                guest.write(guest.maddr(layout.image.0 + page) + offset, &rest[..n])?;
                rest = &rest[n..];
                va += n as u64;
            }
        }
    }
    // The page → mfn list, a page at a time.
    for (page, mfns) in guest.p2m.ram().chunks(512).enumerate() {
        let maddr = guest.maddr(layout.mfn_list.0 + page as u64);
        write_words(guest.mem, maddr, mfns.iter().copied())?;
    }
    tables::write_tables(spec, elf, layout, guest)
}

/// Types the guest's page tables through the frametable operations: pins
/// them bottom-up, each pin checking every entry (Invariants 13 and 14),
/// unpins all but the L4 (their parents keep them typed) and makes the L4
/// the vCPU's CR3 — the frametable the pass builds from the domain's runs
/// with the L4 pinned and in one CR3.
fn type_tables<M: GuestMemory>(
    dom: &DomainContext<'_>,
    layout: &Layout,
    mem: &mut MemParts<'_>,
    guest: &Guest<'_, M>,
) -> Result<(), BuildError<M::Error>> {
    let id = dom.id();
    let kind = tables::table_kinds(layout);
    let tables = || {
        (layout.pt_first..layout.first_free).filter_map(|page| {
            let level = kind(page).level()?;
            Some((Mfn(guest.mfn(page)), level))
        })
    };
    let refused = BuildError::Refused;
    for (mfn, level) in tables() {
        frame_ownership::pin(&mem.layout, mem.frametable, &*guest.mem, dom, mfn, level)
            .map_err(refused)?;
    }
    for (mfn, _) in tables().filter(|t| t.1 != Level::L4) {
        frame_ownership::unpin(mem.frametable, id, mfn).map_err(refused)?;
    }
    let l4 = Mfn(guest.mfn(layout.first_free - 1));
    debug_assert_eq!(kind(layout.first_free - 1), RunKind::L4);
    frame_ownership::use_as_cr3(mem.frametable, id, l4, None).map_err(refused)
}

/// The first context of a guest's vCPU: `entry` in ring 3 with interrupts
/// on, on the initial stack, the start-info address in `rdi`.
fn first_context(entry: u64, cr3: Mfn) -> VcpuContext {
    let mut ctx = VcpuContext::at_entry(entry, STACK_TOP, cr3);
    ctx.regs.rdi = START_INFO_VA;
    ctx
}
