//! Memory: the live-update region, the boot allocator, the hypervisor's page
//! tables, the frametable, the heap and the page allocator.
//!
//! The order of a boot (`docs/design.md` section 3): choose the region; the boot
//! allocator sees only it; the heap, then page tables, frametable and M2P
//! come from it (`new_hv::boot::Boot`, [`BootSteps`]); the boot allocator is
//! retired and its report kept; only then does the page allocator receive
//! the rest of RAM. A cold boot takes this path with no holes in the region;
//! the incoming side of a live update takes it with the incoming image and
//! state as holes.

//!
//! On the host only what needs no hardware is built: [`Memory`] and
//! [`MemParts`] as types, the page allocator ([`pages`]), the heap's
//! [`heap::Exhausted`]; the boot steps, which claim and map physical memory,
//! are the bare-metal image's.

pub mod heap;
pub mod pages;

use alloc::vec::Vec;

use boot_allocator::{HandOff, PhysRange};
use frame_ownership::lazy::{self, Unsettled};
use frame_ownership::{FrameInfo, MachineLayout, OpError};
use hvlu_types::{DomId, Mfn, MfnRange};

use pages::PageAllocator;

bare_metal! {
    use hvlu_types::PAGE_SIZE;

    use crate::arch::{self, paging, phys};
    use crate::boot_info::{BootInfo, E820_RAM};

    // The heap's size and every other boot size: `new_hv::boot`.
    use hvlu_types::pte::TWO_MIB;
    /// Memory below this is left to firmware (start info, tables).
    const LOW_RESERVED: u64 = 1 << 20;
    /// The region is placed below this, where the boot stub's map reaches.
    const REGION_CEILING: u64 = 4 << 30;
}

/// Everything the hypervisor knows about memory after boot.
#[derive(Debug)]
pub struct Memory {
    /// RAM ranges, sorted, page-granular.
    pub ram: Vec<MfnRange>,
    /// The live-update region.
    pub region: PhysRange,
    /// Frames the hypervisor keeps outside the region: firmware memory and
    /// the running image.
    pub reserved: Vec<MfnRange>,
    /// The frametable, indexed by mfn.
    pub frametable: &'static mut [FrameInfo],
    /// Machine-to-guest frame map, indexed by mfn.
    pub m2p: &'static mut [u64],
    /// Free frames outside the region.
    pub pages: PageAllocator,
    /// What the boot allocator handed out, and the region's free gaps.
    pub handoff: HandOff,
    /// The frametable and M2P entries not initialised yet after an update,
    /// with the free RAM among them (Invariant 29): settled a chunk at a
    /// time in the background ([`Memory::settle_some`]), or around a frame
    /// the moment a guest names it ([`Memory::settle_at`]). Empty after a
    /// cold boot.
    pub unsettled: Unsettled,
}

/// The parts of [`Memory`] that the frametable operations use together.
#[derive(Debug)]
pub struct MemParts<'a> {
    /// RAM, region and reserved ranges, for the type rules.
    pub layout: MachineLayout<'a>,
    /// The frametable.
    pub frametable: &'a mut [FrameInfo],
    /// The M2P.
    pub m2p: &'a mut [u64],
    /// The page allocator.
    pub pages: &'a mut PageAllocator,
}

impl Memory {
    /// Makes the frametable and M2P entries of `mfn` (and its chunk)
    /// initialised, handing free frames among them to the page allocator.
    /// Every frame number a guest supplies goes through here before its
    /// entry is read (Invariant 29); a binary search when the entry already
    /// is, nothing once everything is.
    pub fn settle_at(&mut self, mfn: Mfn) {
        if self.unsettled.is_settled() {
            return;
        }
        let pages = &mut self.pages;
        self.unsettled
            .settle_at(self.frametable, self.m2p, mfn, |r| pages.release(r));
    }

    /// Initialises up to `budget` entries left by the update; returns how
    /// many (0 once everything is).
    pub fn settle_some(&mut self, budget: u64) -> u64 {
        if self.unsettled.is_settled() {
            return 0;
        }
        let pages = &mut self.pages;
        self.unsettled
            .settle_some(self.frametable, self.m2p, budget, |r| pages.release(r))
    }

    /// Initialises every entry left, for what reads entries a guest may
    /// name without them being checked one by one (a pin). `Hv::settle_all`
    /// does the same with the update's accounting.
    pub fn settle_all(&mut self) {
        while self.settle_some(u64::MAX) > 0 {}
    }

    /// Free frames: the page allocator's and those not handed to it yet.
    pub fn free_frames(&self) -> u64 {
        self.pages.free_frames() + self.unsettled.free_frames()
    }

    /// A free frame, initialising entries until one is released if the
    /// page allocator has none.
    pub fn alloc(&mut self) -> Option<Mfn> {
        loop {
            if let Some(mfn) = self.pages.alloc() {
                return Some(mfn);
            }
            if self.settle_some(lazy::CHUNK) == 0 {
                return None;
            }
        }
    }

    /// Borrows the layout together with the mutable tables.
    pub fn parts(&mut self) -> MemParts<'_> {
        // The ranges were checked sorted and disjoint when memory was set up.
        let layout = MachineLayout::new(&self.ram, region_mfns(self.region), &self.reserved)
            .unwrap_or_else(|e| panic!("memory layout became invalid: {e}"));
        MemParts {
            layout,
            frametable: self.frametable,
            m2p: self.m2p,
            pages: &mut self.pages,
        }
    }
}

#[cfg(target_os = "none")]
/// Why memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// No RAM range below 4 GiB can hold a region of the requested size.
    #[error(
        "no RAM range below 4 GiB can hold a live-update region of {} MiB",
        .size >> 20
    )]
    NoRoomForRegion { size: u64 },
    /// A step of the boot (`new_hv::boot::Boot`) failed.
    #[error("{0}")]
    Boot(#[from] new_hv::boot::StepError),
    /// The hypervisor's page tables could not be built.
    #[error("page tables: {0}")]
    Paging(paging::PagingError),
    /// Claiming memory for Rust data failed.
    #[error("{0}")]
    Phys(#[from] phys::PhysError),
    /// The memory map is not sorted and disjoint.
    #[error("memory map: {0}")]
    Layout(frame_ownership::Error),
}

#[cfg(target_os = "none")]
/// RAM ranges of the memory map, trimmed to whole pages.
pub fn ram_ranges(info: &BootInfo) -> impl Iterator<Item = MfnRange> + '_ {
    info.memmap()
        .iter()
        .filter(|e| e.kind == E820_RAM)
        .filter_map(|e| PhysRange::new(e.addr, e.size).inner_frames())
}

/// The region as a range of frames.
pub fn region_mfns(region: PhysRange) -> MfnRange {
    region.covering_frames()
}

#[cfg(target_os = "none")]
/// Chooses the live-update region on a cold boot: the top of the highest RAM
/// range below 4 GiB that can hold it, 2 MiB aligned, clear of low memory
/// and the image.
pub fn choose_region(info: &BootInfo, size: u64) -> Result<PhysRange, MemError> {
    let (_, image_end) = arch::image_range();
    let floor = image_end.max(LOW_RESERVED);
    let mut best: Option<PhysRange> = None;
    for ram in ram_ranges(info) {
        let start = ram.start.addr().max(floor);
        let end = (ram.end() * PAGE_SIZE).min(REGION_CEILING) & !(TWO_MIB - 1);
        if end >= start + size && end - size >= start {
            let candidate = PhysRange::new(end - size, size);
            if best.is_none_or(|b| candidate.start > b.start) {
                best = Some(candidate);
            }
        }
    }
    best.ok_or(MemError::NoRoomForRegion { size })
}

/// The steps of a boot that take memory from the region, on this
/// hardware: `new_hv::boot::Boot` holds their order (heap, then page
/// tables, frametable and M2P) and sizes for both boots, cold and
/// incoming, and the outgoing side dry-runs it before the point of no
/// return.
#[cfg(target_os = "none")]
#[derive(Debug, Default)]
pub struct BootSteps {
    /// Whether the frametable and M2P are taken as they are, initialised
    /// later (an incoming image: `frame_ownership::lazy`), rather than
    /// zeroed when claimed (a cold boot).
    pub lazy: bool,
    /// The frametable, once claimed.
    pub frametable: &'static mut [FrameInfo],
    /// The M2P, once claimed.
    pub m2p: &'static mut [u64],
}

#[cfg(target_os = "none")]
impl new_hv::boot::BootMemory for BootSteps {
    type Error = MemError;

    fn heap(&mut self, range: PhysRange) -> Result<(), MemError> {
        take_heap(range)
    }

    fn page_tables(&mut self, block: PhysRange, ram: &[MfnRange]) -> Result<(), MemError> {
        load_page_tables(block, ram)
    }

    fn frametable(&mut self, ft: PhysRange, m2p: PhysRange, frames: u64) -> Result<(), MemError> {
        (self.frametable, self.m2p) = if self.lazy {
            (
                phys::claim_slice_as_is::<FrameInfo>(ft.start, frames as usize)?,
                phys::claim_slice_as_is::<u64>(m2p.start, frames as usize)?,
            )
        } else {
            claim_frametable(ft, m2p, frames)?
        };
        Ok(())
    }
}

#[cfg(target_os = "none")]
impl BootSteps {
    /// Memory after a boot: `ram`, the `region` and what is `reserved`
    /// outside it, the claimed frametable and M2P, the boot allocator's
    /// report, a page allocator for `frames` frames with no free frame yet
    /// (see [`Memory::release`]), and the entries left to initialise
    /// (`unsettled`, with the free RAM the page allocator receives as they
    /// are).
    pub fn into_memory(
        self,
        ram: Vec<MfnRange>,
        region: PhysRange,
        reserved: Vec<MfnRange>,
        handoff: HandOff,
        frames: u64,
        unsettled: Unsettled,
    ) -> Result<Memory, MemError> {
        MachineLayout::new(&ram, region_mfns(region), &reserved).map_err(MemError::Layout)?;
        Ok(Memory {
            ram,
            region,
            reserved,
            frametable: self.frametable,
            m2p: self.m2p,
            pages: PageAllocator::new(frames),
            handoff,
            unsettled,
        })
    }
}

#[cfg(target_os = "none")]
/// Makes `heap` (region memory) the global allocator's. The direct map
/// must not move afterwards.
pub fn take_heap(heap: PhysRange) -> Result<(), MemError> {
    heap::init(phys::claim_uninit(heap.start, heap.size)?);
    Ok(())
}

#[cfg(target_os = "none")]
/// Builds and loads the hypervisor's page tables over `ram` in the frames
/// of `block` (more would be refused).
pub fn load_page_tables(block: PhysRange, ram: &[MfnRange]) -> Result<(), MemError> {
    let mut next = block.start;
    let mut alloc_frame = || {
        (next < block.end()).then(|| {
            next += PAGE_SIZE;
            next - PAGE_SIZE
        })
    };
    paging::build_and_load(ram, &mut alloc_frame).map_err(MemError::Paging)?;
    Ok(())
}

#[cfg(target_os = "none")]
/// The frametable and M2P of `frames` entries each at `ft` and `m2p`
/// (region memory): the first zeroed, the second filled with
/// [`frame_ownership::M2P_INVALID`].
pub fn claim_frametable(
    ft: PhysRange,
    m2p: PhysRange,
    frames: u64,
) -> Result<(&'static mut [FrameInfo], &'static mut [u64]), MemError> {
    let frametable = phys::claim_slice::<FrameInfo>(ft.start, frames as usize)?;
    let m2p = phys::claim_slice::<u64>(m2p.start, frames as usize)?;
    m2p.fill(frame_ownership::M2P_INVALID);
    Ok((frametable, m2p))
}

#[cfg(target_os = "none")]
/// Frames the hypervisor keeps outside the region: firmware memory below
/// 1 MiB, and the running image when it is not inside the region (a cold
/// boot's image).
pub fn reserved_ranges(region: PhysRange) -> Vec<MfnRange> {
    let (image_start, image_end) = arch::image_range();
    let mut reserved = alloc::vec![MfnRange::new(Mfn(0), LOW_RESERVED / PAGE_SIZE)];
    if !region.contains(image_start) {
        let start = Mfn::containing(image_start);
        reserved.push(MfnRange::new(
            start,
            image_end.div_ceil(PAGE_SIZE) - start.0,
        ));
    }
    reserved
}

impl Memory {
    /// Hands `ranges` to the page allocator.
    pub fn release(&mut self, ranges: &[MfnRange]) {
        for range in ranges {
            self.pages.release(*range);
        }
    }
}

impl MemParts<'_> {
    /// Takes every frame `p2m` lists (`u64::MAX` for none) away from
    /// `domain` and gives it back to the page allocator: a destroyed
    /// domain's frames, or those of a domain whose build failed part-way.
    /// One path for both: `frame_ownership::release_domain`, then the page
    /// allocator. Returns how many frames went back.
    ///
    /// If the frametable disagrees with `p2m` (a frame listed is not
    /// `domain`'s), nothing changes and no frame goes back: none of them
    /// can be trusted to be free.
    pub fn release_domain(&mut self, domain: DomId, p2m: &[u64]) -> Result<u64, OpError> {
        let released = frame_ownership::release_domain(self.frametable, self.m2p, domain, p2m)?;
        for &mfn in p2m.iter().filter(|&&m| m != frame_ownership::M2P_INVALID) {
            self.pages.free(Mfn(mfn));
        }
        Ok(released)
    }
}
