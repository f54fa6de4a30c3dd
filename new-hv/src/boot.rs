//! Boot needs: what the restricted boot of an incoming image takes from the
//! live-update region, and the order it takes it in.
//!
//! The incoming image's boot allocator (first fit, `boot_allocator`) sees
//! the region minus the staged range. It allocates, in this order:
//!
//! 1. the heap ([`heap_bytes`]: it grows with RAM, 2 MiB aligned) — first,
//!    so the state can be decoded and verified ([`Boot::heap_on`]);
//! 2. the page tables, one block of [`BootNeeds::page_table_frames`] frames
//!    (the count of [`hv_plan`], the direct map over RAM, the local APIC
//!    page and the image bounded by its span), then the frametable and the
//!    M2P, one entry per frame up to the end of RAM ([`Boot::tables_on`]).
//!
//! [`needs`] sizes it all from the RAM map and the image's span; both roles
//! call it: the incoming image to boot, the outgoing one before the point of
//! no return to dry-run the same sequence ([`dry_run`]) against the region
//! minus the range it staged. Because the allocator is deterministic, a dry
//! run that succeeds is exactly the boot the new image will make. A cold
//! boot takes the same steps on the whole region ([`Boot::cold`]); an
//! update to a 1.0 image dry-runs that release's own boot ([`Model`]).

use boot_allocator::{BootAllocError, BootAllocator, HandOff, PhysRange};
use frame_ownership::FrameInfo;
use hvlu_types::{MfnRange, PAGE_SIZE};

/// The fixed part of the hypervisor heap: what is not per frame of RAM —
/// the image a load reads and validates, the handover state of an update
/// (built, encoded, read back and decoded), consoles, scheduling, and the
/// headroom a new domain must leave.
pub const HEAP_BASE: u64 = TWO_MIB;
/// Heap bytes per frame of RAM: each domain's p2m (8 bytes) and free-gpfn
/// list (4 bytes) are reserved for its whole limit, 125 % of its pages, so
/// domains holding all of RAM need 15 bytes a frame; the page allocator's
/// bitmap takes one bit more.
pub const HEAP_PER_FRAME: u64 = 16;
/// Alignment of the heap (and of the direct map's pages).
pub const HEAP_ALIGN: u64 = TWO_MIB;

/// Bytes of the hypervisor heap of a machine with `frames` frames (one
/// past the highest RAM frame): [`HEAP_BASE`] and [`HEAP_PER_FRAME`] for
/// each, whole pages. A domain the heap cannot back is refused when it is
/// created, never failed later.
pub const fn heap_bytes(frames: u64) -> u64 {
    HEAP_BASE
        .saturating_add(frames.saturating_mul(HEAP_PER_FRAME))
        .div_ceil(PAGE_SIZE)
        .saturating_mul(PAGE_SIZE)
}

/// Pages of the heap of a machine whose RAM ends at byte `ram_end`: what
/// the incoming image takes before it has read the RAM map (the argument
/// page's `ram_end`), the same as [`needs`] computes from the map.
pub const fn heap_pages(ram_end: u64) -> u64 {
    heap_bytes(ram_end.div_ceil(PAGE_SIZE)) / PAGE_SIZE
}

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use handover_abi::entry::DIRECT_MAP_BASE;
use handover_abi::note::BootModel;
use hvlu_types::pte::{
    CACHE_DISABLE, GLOBAL, NO_EXECUTE, ONE_GIB, TWO_MIB, WRITABLE, WRITE_THROUGH,
};
use hvlu_types::table_plan::{self, Map};

/// What an image's boot takes from the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootNeeds {
    /// Pages of the heap.
    pub heap_pages: u64,
    /// Frames for the hypervisor's page tables (an upper bound).
    pub page_table_frames: u64,
    /// Entries of the frametable and of the M2P: one past the highest RAM
    /// frame.
    pub frames: u64,
    /// Pages of the frametable.
    pub frametable_pages: u64,
    /// Pages of the M2P.
    pub m2p_pages: u64,
}

impl BootNeeds {
    /// Bytes of all of it (alignment padding aside).
    pub fn bytes(&self) -> u64 {
        (self.heap_pages + self.page_table_frames + self.frametable_pages + self.m2p_pages)
            * PAGE_SIZE
    }
}

/// Where the hypervisor image is linked (`hv/linker.ld`): its upper-half
/// part at this plus its physical link address, in L4 slot 511.
pub const IMAGE_VBASE: u64 = 0xffff_ffff_8000_0000;
/// The local APIC's registers (physical), which the hypervisor maps
/// uncached at their direct-map address.
pub const LAPIC_PHYS: u64 = 0xfee0_0000;

/// Flags of the direct map's 2 MiB pages.
const DIRECT_MAP_FLAGS: u64 = WRITABLE | GLOBAL | NO_EXECUTE;
/// Flags of the local APIC's page: uncached.
const LAPIC_FLAGS: u64 = WRITABLE | CACHE_DISABLE | WRITE_THROUGH | NO_EXECUTE;

/// The 2 MiB-aligned physical spans the direct map of `ram` (sorted frame
/// ranges) covers: each range from its 2 MiB-aligned start up to its end
/// rounded up to 2 MiB, spans that touch merged.
fn direct_map_spans(ram: &[MfnRange]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for r in ram.iter().filter(|r| !r.is_empty()) {
        let start = r.start.addr() & !(TWO_MIB - 1);
        let end = (r.end() * PAGE_SIZE).div_ceil(TWO_MIB) * TWO_MIB;
        match spans.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((start, end)),
        }
    }
    spans
}

/// The highest physical address (exclusive) the hypervisor's direct map
/// of `ram` covers.
pub fn direct_map_end(ram: &[MfnRange]) -> u64 {
    direct_map_spans(ram).last().map_or(0, |s| s.1)
}

/// The hypervisor's own address space as a table plan
/// (`hv/src/arch/paging.rs` builds it): the direct map of `ram` (sorted
/// frame ranges) at [`DIRECT_MAP_BASE`] in 2 MiB pages, the local APIC's
/// page uncached at its direct-map address, and the image's mappings
/// `image` ([`image_maps`]). Its table count bounds that of
/// [`hv_plan_for`] with 1 GiB pages: what the boot reserves.
pub fn hv_plan(ram: &[MfnRange], image: &[Map]) -> Vec<Map> {
    hv_plan_for(ram, image, false)
}

/// [`hv_plan`], with the direct map in 1 GiB pages wherever a whole
/// aligned gigabyte of it lies inside one span if `gib_pages` (a CPU with
/// 1 GiB pages): on a 64 GiB machine 64 entries and no L2 table in place
/// of 32768 entries in 64 tables. Never more tables than [`hv_plan`].
pub fn hv_plan_for(ram: &[MfnRange], image: &[Map], gib_pages: bool) -> Vec<Map> {
    let mut plan: Vec<Map> = Vec::new();
    for (start, end) in direct_map_spans(ram) {
        let huge = |from: u64, to: u64| {
            Map::huge(DIRECT_MAP_BASE + from, from, to - from, DIRECT_MAP_FLAGS)
        };
        let (gib_start, gib_end) = (start.next_multiple_of(ONE_GIB), end & !(ONE_GIB - 1));
        if !gib_pages || gib_start >= gib_end {
            plan.push(huge(start, end));
            continue;
        }
        if start < gib_start {
            plan.push(huge(start, gib_start));
        }
        plan.push(Map {
            leaf: hvlu_types::pte::Level::L3,
            ..huge(gib_start, gib_end)
        });
        if gib_end < end {
            plan.push(huge(gib_end, end));
        }
    }
    plan.push(Map::small(
        DIRECT_MAP_BASE + LAPIC_PHYS,
        LAPIC_PHYS,
        PAGE_SIZE,
        LAPIC_FLAGS,
    ));
    plan.extend_from_slice(image);
    plan
}

/// The mappings of the image's pages `[start, end)` (virtual, page
/// aligned) at physical `va - virt_minus_phys`, each page with the flags
/// `flags_of(va)` gives, or left out where it gives `None` (a stack's
/// guard page); consecutive pages with the same flags are one mapping.
pub fn image_maps(
    start: u64,
    end: u64,
    virt_minus_phys: u64,
    flags_of: impl Fn(u64) -> Option<u64>,
) -> Vec<Map> {
    let mut maps: Vec<Map> = Vec::new();
    for va in (start..end).step_by(PAGE_SIZE as usize) {
        let Some(flags) = flags_of(va) else {
            continue;
        };
        match maps.last_mut() {
            Some(m) if m.flags == flags && m.va + m.len == va => m.len += PAGE_SIZE,
            _ => maps.push(Map::small(
                va,
                va.wrapping_sub(virt_minus_phys),
                PAGE_SIZE,
                flags,
            )),
        }
    }
    maps
}

/// The image mapping whose tables bound those of any image of
/// `image_bytes` in slot 511: one area of that length placed one page
/// before a 1 GiB boundary, so that it touches as many 2 MiB and 1 GiB
/// units as an area of its length can. The image's own sections lie in
/// one such area (its span), so they never need more tables.
fn image_bound(image_bytes: u64) -> Map {
    let len = image_bytes
        .div_ceil(PAGE_SIZE)
        .max(1)
        .saturating_mul(PAGE_SIZE)
        .min(ONE_GIB + PAGE_SIZE);
    Map::small(IMAGE_VBASE + ONE_GIB - PAGE_SIZE, 0, len, 0)
}

/// The page-table frames of an image whose span is `image_bytes` over
/// `ram` (sorted frame ranges): the root and the tables of [`hv_plan`]
/// with the image's mappings bounded by one area of its span, so at least
/// what the image's real sections take.
pub fn page_table_frames(ram: &[MfnRange], image_bytes: u64) -> u64 {
    1 + table_plan::frames(&hv_plan(ram, &[image_bound(image_bytes)]))
}

/// The boot needs of an image of `image_bytes` over `ram` (sorted frame
/// ranges).
pub fn needs(ram: &[MfnRange], image_bytes: u64) -> BootNeeds {
    let frames = ram.iter().map(|r| r.end()).max().unwrap_or(0);
    BootNeeds {
        heap_pages: heap_bytes(frames) / PAGE_SIZE,
        page_table_frames: page_table_frames(ram, image_bytes),
        frames,
        frametable_pages: (frames * core::mem::size_of::<FrameInfo>() as u64).div_ceil(PAGE_SIZE),
        m2p_pages: (frames * 8).div_ceil(PAGE_SIZE),
    }
}

/// Which allocation of the boot failed, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {error}")]
pub struct BootError {
    /// `"boot allocator"`, `"heap"`, `"page tables"`, `"frametable"` or
    /// `"m2p"`.
    pub what: &'static str,
    /// The allocator's refusal.
    pub error: BootAllocError,
}

fn step(what: &'static str) -> impl FnOnce(BootAllocError) -> BootError {
    move |error| BootError { what, error }
}

/// The heap of `pages` pages ([`heap_pages`], [`BootNeeds::heap_pages`]):
/// the first allocation of an incoming boot.
fn alloc_heap<const H: usize, const A: usize>(
    alloc: &mut BootAllocator<H, A>,
    pages: u64,
) -> Result<PhysRange, BootError> {
    alloc
        .alloc_pages_tagged(pages, HEAP_ALIGN, "heap")
        .map_err(step("heap"))
}

/// The frametable and the M2P, in that order.
fn alloc_frametable<const H: usize, const A: usize>(
    alloc: &mut BootAllocator<H, A>,
    needs: &BootNeeds,
) -> Result<(PhysRange, PhysRange), BootError> {
    let ft = alloc
        .alloc_pages_tagged(needs.frametable_pages.max(1), PAGE_SIZE, "frametable")
        .map_err(step("frametable"))?;
    let m2p = alloc
        .alloc_pages_tagged(needs.m2p_pages.max(1), PAGE_SIZE, "m2p")
        .map_err(step("m2p"))?;
    Ok((ft, m2p))
}

/// Where an incoming boot's allocations land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// The heap.
    pub heap: PhysRange,
    /// The page-table frames.
    pub page_tables: PhysRange,
    /// The frametable.
    pub frametable: PhysRange,
    /// The M2P.
    pub m2p: PhysRange,
}

/// The allocations after the heap (page tables, frametable, M2P), in the
/// incoming boot's order.
fn alloc_tables<const H: usize, const A: usize>(
    alloc: &mut BootAllocator<H, A>,
    needs: &BootNeeds,
) -> Result<(PhysRange, PhysRange, PhysRange), BootError> {
    let pt = alloc
        .alloc_pages_tagged(needs.page_table_frames, PAGE_SIZE, "page tables")
        .map_err(step("page tables"))?;
    let (ft, m2p) = alloc_frametable(alloc, needs)?;
    Ok((pt, ft, m2p))
}

/// What a boot's memory steps ask of the machine: turning region memory
/// into the heap, building and loading the page tables, taking the
/// frametable. The hypervisor implements it for both of its boots; the
/// host tests for a simulated machine.
pub trait BootMemory {
    /// Why memory could not be claimed or written.
    type Error: fmt::Display;
    /// Makes `range` (region memory) the hypervisor's heap.
    fn heap(&mut self, range: PhysRange) -> Result<(), Self::Error>;
    /// Builds and loads the hypervisor's page tables ([`hv_plan`]) over
    /// `ram` in the frames of `block`.
    fn page_tables(&mut self, block: PhysRange, ram: &[MfnRange]) -> Result<(), Self::Error>;
    /// Takes `frametable` and `m2p` (region memory) as the frametable and
    /// the M2P, of `frames` entries each: zeroed and filled with
    /// `frame_ownership::M2P_INVALID` on a cold boot; as they are on an
    /// incoming image, whose pass initialises the named frames' entries and
    /// the rest after the resume (`frame_ownership::lazy`, Invariant 29).
    fn frametable(
        &mut self,
        frametable: PhysRange,
        m2p: PhysRange,
        frames: u64,
    ) -> Result<(), Self::Error>;
}

/// Why a step of a boot failed: the region had no room for it, or the
/// machine could not take what it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The boot allocator refused.
    #[error("{0}")]
    Alloc(#[from] BootError),
    /// The machine refused (`BootMemory`).
    #[error("{step}: {error}")]
    Platform {
        /// `"the heap"`, `"page tables"` or `"frametable"`.
        step: &'static str,
        /// The machine's reason.
        error: String,
    },
}

fn on<E: fmt::Display>(step: &'static str) -> impl FnOnce(E) -> StepError {
    move |e| StepError::Platform {
        step,
        error: e.to_string(),
    }
}

/// The boot of an image, in its one order, for both ways in: a boot
/// allocator over the region (minus the staged range of an update), the
/// heap first ([`Boot::heap_on`]: an incoming image decodes the state with
/// it), then the page tables, the frametable and the M2P
/// ([`Boot::tables_on`]). [`crate::enter`] and the hypervisor's cold boot
/// run these steps on the hardware; [`dry_run`] runs the same allocations
/// on addresses only, before the point of no return, so the two cannot
/// disagree.
#[derive(Debug)]
pub struct Boot {
    alloc: BootAllocator,
}

impl Boot {
    /// A boot allocator over `region` minus `staged` (what
    /// `staging::staged_range` gives the new image).
    pub fn new(region: PhysRange, staged: PhysRange) -> Result<Boot, BootError> {
        Ok(Boot {
            alloc: BootAllocator::new(region, &[staged]).map_err(step("boot allocator"))?,
        })
    }

    /// A boot allocator over all of `region`: a cold boot's.
    pub fn cold(region: PhysRange) -> Result<Boot, BootError> {
        Ok(Boot {
            alloc: BootAllocator::new(region, &[]).map_err(step("boot allocator"))?,
        })
    }

    /// The heap of `pages` pages ([`heap_pages`], [`BootNeeds::heap_pages`]):
    /// the first allocation.
    pub fn heap(&mut self, pages: u64) -> Result<PhysRange, BootError> {
        alloc_heap(&mut self.alloc, pages)
    }

    /// The page tables, the frametable and the M2P of `needs`, in that
    /// order.
    pub fn tables(
        &mut self,
        needs: &BootNeeds,
    ) -> Result<(PhysRange, PhysRange, PhysRange), BootError> {
        alloc_tables(&mut self.alloc, needs)
    }

    /// [`Boot::heap`], handed to the machine as its heap.
    pub fn heap_on<M: BootMemory>(&mut self, m: &mut M, pages: u64) -> Result<(), StepError> {
        let heap = self.heap(pages)?;
        m.heap(heap).map_err(on("the heap"))
    }

    /// [`Boot::tables`], handed to the machine: its page tables over `ram`
    /// loaded, its frametable and M2P taken.
    pub fn tables_on<M: BootMemory>(
        &mut self,
        m: &mut M,
        needs: &BootNeeds,
        ram: &[MfnRange],
    ) -> Result<(), StepError> {
        self.tables_on_with(m, needs, ram, |_| {})
    }

    /// [`Boot::tables_on`], calling `between` once the page tables are
    /// loaded and before the frametable is taken (to time the steps).
    pub fn tables_on_with<M: BootMemory>(
        &mut self,
        m: &mut M,
        needs: &BootNeeds,
        ram: &[MfnRange],
        between: impl FnOnce(&mut M),
    ) -> Result<(), StepError> {
        let (pt, ft, m2p) = self.tables(needs)?;
        m.page_tables(pt, ram).map_err(on("page tables"))?;
        between(m);
        m.frametable(ft, m2p, needs.frames)
            .map_err(on("frametable"))
    }

    /// Retires the allocator: what it handed out and the free gaps.
    pub fn finish(self) -> HandOff {
        self.alloc.finish()
    }
}

/// A machine that only records where the boot's steps put things: what
/// [`dry_run`] runs the steps on.
#[derive(Debug, Default)]
struct Recorder {
    heap: PhysRange,
    page_tables: PhysRange,
    frametable: PhysRange,
    m2p: PhysRange,
}

impl BootMemory for Recorder {
    type Error = core::convert::Infallible;

    fn heap(&mut self, range: PhysRange) -> Result<(), Self::Error> {
        self.heap = range;
        Ok(())
    }

    fn page_tables(&mut self, block: PhysRange, _ram: &[MfnRange]) -> Result<(), Self::Error> {
        self.page_tables = block;
        Ok(())
    }

    fn frametable(
        &mut self,
        frametable: PhysRange,
        m2p: PhysRange,
        _frames: u64,
    ) -> Result<(), Self::Error> {
        (self.frametable, self.m2p) = (frametable, m2p);
        Ok(())
    }
}

/// The incoming boot of `needs` on the region minus `staged`: [`Boot`]'s
/// own steps ([`Boot::heap_on`], [`Boot::tables_on`]) in [`crate::enter`]'s
/// order, on a machine that only records where each allocation lands — or
/// which one does not fit. Nothing is touched.
pub fn dry_run(
    region: PhysRange,
    staged: PhysRange,
    needs: &BootNeeds,
) -> Result<BootPlan, BootError> {
    let mut boot = Boot::new(region, staged)?;
    let mut m = Recorder::default();
    let only_alloc = |e: StepError| match e {
        StepError::Alloc(e) => e,
        StepError::Platform { .. } => unreachable!("the recorder refuses nothing"),
    };
    boot.heap_on(&mut m, needs.heap_pages).map_err(only_alloc)?;
    boot.tables_on(&mut m, needs, &[]).map_err(only_alloc)?;
    Ok(BootPlan {
        heap: m.heap,
        page_tables: m.page_tables,
        frametable: m.frametable,
        m2p: m.m2p,
    })
}

/// Whose boot an update's dry run models: this tree's, or the 1.0
/// release's, which an update to a 1.0 image must fit (its own code sizes
/// and places it: an 8 MiB heap first, then the page tables a frame at a
/// time, the frametable and the M2P, with a boot allocator of 64 records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// [`needs`] and [`dry_run`].
    Current,
    /// The 1.0 release (git 15a2f57, `hv/src/mm/mod.rs`).
    Release1_0,
}

/// The 1.0 release's heap: a fixed 8 MiB.
pub const RELEASE_1_0_HEAP: u64 = 8 << 20;

impl Model {
    /// Every model, oldest first.
    pub const ALL: [Model; 2] = [Model::Release1_0, Model::Current];

    /// The id an image's `HVLU` note gives this model
    /// (`handover_abi::note::BootModel`).
    pub const fn id(self) -> BootModel {
        match self {
            Model::Release1_0 => BootModel::RELEASE_1_0,
            Model::Current => BootModel::CURRENT,
        }
    }

    /// The model a note's id names, if this build knows it.
    pub fn from_id(id: BootModel) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.id() == id)
    }

    /// The boot needs of an image of `image_bytes` over `ram` under this
    /// model. The 1.0 release maps the same address space as this tree
    /// (the direct map, the local APIC page, the image by section), so its
    /// page tables are bounded by [`page_table_frames`] too.
    pub fn needs(self, ram: &[MfnRange], image_bytes: u64) -> BootNeeds {
        let n = needs(ram, image_bytes);
        match self {
            Model::Current => n,
            Model::Release1_0 => BootNeeds {
                heap_pages: RELEASE_1_0_HEAP / PAGE_SIZE,
                ..n
            },
        }
    }

    /// The boot of `needs` on the region minus `staged`, dry-run under this
    /// model: where it lands, or which allocation does not fit.
    pub fn dry_run(
        self,
        region: PhysRange,
        staged: PhysRange,
        needs: &BootNeeds,
    ) -> Result<BootPlan, BootError> {
        match self {
            Model::Current => dry_run(region, staged, needs),
            Model::Release1_0 => {
                let mut a: BootAllocator<8, 64> =
                    BootAllocator::new(region, &[staged]).map_err(step("boot allocator"))?;
                let heap = alloc_heap(&mut a, needs.heap_pages)?;
                let mut page_tables = PhysRange::new(heap.end(), 0);
                for i in 0..needs.page_table_frames {
                    let frame = a
                        .alloc_pages_tagged(1, PAGE_SIZE, "page tables")
                        .map_err(step("page tables"))?;
                    page_tables = if i == 0 {
                        frame
                    } else {
                        PhysRange::from_bounds(
                            page_tables.start.min(frame.start),
                            page_tables.end().max(frame.end()),
                        )
                    };
                }
                let (frametable, m2p) = alloc_frametable(&mut a, needs)?;
                Ok(BootPlan {
                    heap,
                    page_tables,
                    frametable,
                    m2p,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvlu_types::Mfn;

    const MIB: u64 = 1 << 20;

    #[test]
    fn models_are_the_ids_of_the_notes() {
        // This tree's note states this tree's boot; the 1.0 release's
        // contract, the 1.0 boot.
        assert_eq!(
            Model::from_id(handover_abi::note::CONTRACT.boot),
            Some(Model::Current)
        );
        assert_eq!(
            Model::from_id(handover_abi::note::NoteContract::RELEASE_1_0.boot),
            Some(Model::Release1_0)
        );
        assert_eq!(Model::from_id(BootModel(3)), None);
        for m in Model::ALL {
            assert_eq!(Model::from_id(m.id()), Some(m));
        }
    }

    fn frames(start_mib: u64, mib: u64) -> MfnRange {
        MfnRange::new(Mfn(start_mib * MIB / PAGE_SIZE), mib * MIB / PAGE_SIZE)
    }

    #[test]
    fn needs_of_a_512_mib_machine() {
        // QEMU microvm with 512 MiB: RAM below 640 KiB and from 1 MiB.
        let ram = [
            MfnRange::new(Mfn(0), 0x9f),
            MfnRange::new(Mfn(0x100), (512 * MIB / PAGE_SIZE) - 0x100),
        ];
        let n = needs(&ram, 700 << 10);
        assert_eq!(n.frames, 131_072);
        assert_eq!(n.frametable_pages, 512); // 16 bytes a frame
        assert_eq!(n.m2p_pages, 256); // 8 bytes a frame
                                      // 2 MiB and 16 bytes a frame (2 MiB).
        assert_eq!(n.heap_pages, 1024);
        assert_eq!(heap_pages(512 * MIB), n.heap_pages);
        // The root; L3s for slots 256 and 511; L2s for the direct map's
        // GiB, the APIC's (GiB 3) and two for the image (bounded as if it
        // crossed a GiB); L1s for the APIC and the image's two 2 MiB pages.
        assert_eq!(n.page_table_frames, 1 + 2 + (1 + 1 + 2) + (1 + 2));
        assert_eq!(n.bytes(), (1024 + 10 + 512 + 256) * PAGE_SIZE);
    }

    #[test]
    fn the_heap_grows_with_ram() {
        assert_eq!(heap_bytes(0), HEAP_BASE);
        assert_eq!(heap_bytes(1), HEAP_BASE + PAGE_SIZE);
        // 64 GiB: 16 Mi frames, 256 MiB and the base.
        assert_eq!(heap_bytes(16 << 20), HEAP_BASE + (256 << 20));
        assert_eq!(heap_pages(64 << 30), heap_bytes(16 << 20) / PAGE_SIZE);
        // The incoming image sizes it from the end of RAM as `needs` does
        // from the map.
        let ram = [frames(1, 1023), frames(4096, 4096)];
        assert_eq!(needs(&ram, MIB).heap_pages, heap_pages(8 << 30));
        // Saturates, never wraps.
        assert_eq!(heap_bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn page_tables_grow_with_every_gib_of_ram_and_the_image() {
        let small = page_table_frames(&[frames(0, 512)], 1);
        assert_eq!(page_table_frames(&[frames(0, 1024)], 1), small);
        assert_eq!(page_table_frames(&[frames(0, 1025)], 1), small + 1);
        // Two ranges in the same GiB count it once.
        assert_eq!(
            page_table_frames(&[frames(0, 100), frames(200, 100)], 1),
            small
        );
        // A range that starts inside a 2 MiB page maps it from its start.
        let r = MfnRange::new(Mfn((ONE_GIB + MIB) / PAGE_SIZE), 1);
        assert_eq!(page_table_frames(&[frames(0, 512), r], 1), small + 1);
        // An image of 4 MiB and a page, bounded as if it started a page
        // before a GiB: one more L2, and L1s for three 2 MiB pages, not one.
        assert_eq!(page_table_frames(&[frames(0, 512)], 4 * MIB + 1), small + 3);
        // No RAM: the root, the APIC's L3, L2 and L1, the image's.
        assert_eq!(page_table_frames(&[], 0), 1 + 3 + 3);
    }

    #[test]
    fn image_pages_with_the_same_flags_are_one_mapping_and_guards_none() {
        let base = IMAGE_VBASE + MIB;
        let guard = base + 5 * PAGE_SIZE;
        let flags = |va: u64| match va {
            _ if va == guard => None,
            _ if va < base + 2 * PAGE_SIZE => Some(GLOBAL),
            _ => Some(WRITABLE | GLOBAL),
        };
        let delta = IMAGE_VBASE;
        let maps = image_maps(base, base + 8 * PAGE_SIZE, delta, flags);
        assert_eq!(
            maps,
            [
                Map::small(base, MIB, 2 * PAGE_SIZE, GLOBAL),
                Map::small(
                    base + 2 * PAGE_SIZE,
                    MIB + 2 * PAGE_SIZE,
                    3 * PAGE_SIZE,
                    WRITABLE | GLOBAL
                ),
                Map::small(
                    guard + PAGE_SIZE,
                    MIB + 6 * PAGE_SIZE,
                    2 * PAGE_SIZE,
                    WRITABLE | GLOBAL
                ),
            ]
        );
        assert!(image_maps(base, base, delta, flags).is_empty());
    }

    #[test]
    fn the_plan_of_a_machine_is_sound_and_merges_the_first_2_mib() {
        // microvm: RAM below 640 KiB and from 1 MiB share the first 2 MiB
        // page of the direct map; mapped once.
        let ram = [
            MfnRange::new(Mfn(0), 0x9f),
            frames(1, 3071),
            frames(4096, 1024),
        ];
        assert_eq!(direct_map_end(&ram), 5 * 1024 * MIB);
        let plan = hv_plan(&ram, &[]);
        table_plan::check(&plan).unwrap();
        assert_eq!(
            plan[0],
            Map::huge(DIRECT_MAP_BASE, 0, 3 * 1024 * MIB, DIRECT_MAP_FLAGS)
        );
        assert_eq!(plan[1].va, DIRECT_MAP_BASE + 4 * 1024 * MIB);
        assert_eq!(plan[2].pa, LAPIC_PHYS);
        assert_eq!(direct_map_end(&[]), 0);
    }

    #[test]
    fn gib_pages_map_the_same_addresses_with_fewer_tables() {
        // microvm's map of a 64 GiB machine, and one whose spans are not
        // gigabyte-aligned.
        for ram in [
            [
                MfnRange::new(Mfn(0), 0x9f),
                frames(1, 3071),
                frames(4096, 64 * 1024),
            ],
            [
                MfnRange::new(Mfn(0), 0x9f),
                frames(1, 1535),
                frames(4200, 6000),
            ],
        ] {
            let small = hv_plan(&ram, &[]);
            let big = hv_plan_for(&ram, &[], true);
            table_plan::check(&big).unwrap();
            assert!(table_plan::frames(&big) <= table_plan::frames(&small));
            // The same bytes mapped, at the same places.
            let covered = |plan: &[Map]| {
                let mut v: Vec<(u64, u64, u64)> = plan
                    .iter()
                    .filter(|m| m.pa != LAPIC_PHYS)
                    .map(|m| (m.va, m.pa, m.len))
                    .collect();
                v.sort_unstable();
                let mut merged: Vec<(u64, u64, u64)> = Vec::new();
                for (va, pa, len) in v {
                    match merged.last_mut() {
                        Some(l) if l.0 + l.2 == va && l.1 + l.2 == pa => l.2 += len,
                        _ => merged.push((va, pa, len)),
                    }
                }
                merged
            };
            assert_eq!(covered(&big), covered(&small));
        }
        // 64 GiB from 4 GiB: 1 GiB pages, no L2 table for them.
        let ram = [frames(4096, 64 * 1024)];
        let big = hv_plan_for(&ram, &[], true);
        assert_eq!(big[0].leaf, hvlu_types::pte::Level::L3);
        assert_eq!(big[0].len, 64 * ONE_GIB);
        assert!(table_plan::frames(&big) < 4);
    }

    proptest::proptest! {
        /// The sections of any image laid out in a span of `span` bytes
        /// anywhere in slot 511 — pages left out for guards, flags changing
        /// anywhere — take no more table frames than `page_table_frames`
        /// reserves for that span.
        #[test]
        fn real_sections_never_need_more_than_the_bound(
            start_page in 0u64..(2 * ONE_GIB / PAGE_SIZE - 2048),
            pages in 1u64..1024,
            cuts in proptest::collection::vec(0u64..1024, 0..6),
            gib in 1u64..70,
        ) {
            let start = IMAGE_VBASE + start_page * PAGE_SIZE;
            let end = start + pages * PAGE_SIZE;
            let flags = |va: u64| {
                let page = (va - start) / PAGE_SIZE;
                let part = cuts.iter().filter(|&&c| c <= page).count() as u64;
                (!cuts.contains(&(page + 1000))).then_some(part % 3)
            };
            let image = image_maps(start, end, IMAGE_VBASE, flags);
            // microvm's map: below 640 KiB, 1 MiB to 3 GiB, from 4 GiB.
            let ram = [MfnRange::new(Mfn(0), 0x9f), frames(1, 3071), frames(4096, gib * 1024)];
            let plan = hv_plan(&ram, &image);
            table_plan::check(&plan).unwrap();
            let with_root = 1 + table_plan::frames(&plan);
            proptest::prop_assert!(with_root <= page_table_frames(&ram, pages * PAGE_SIZE));
        }
    }

    #[test]
    fn the_1_0_release_s_boot_is_dry_run_as_it_boots() {
        let region = PhysRange::new(448 * MIB, 64 * MIB);
        let staged = PhysRange::new(500 * MIB, 4 * MIB);
        let ram = [frames(1, 511)];
        let n = Model::Release1_0.needs(&ram, MIB);
        assert_eq!(n.heap_pages * PAGE_SIZE, RELEASE_1_0_HEAP);
        assert_eq!(n.page_table_frames, needs(&ram, MIB).page_table_frames);
        let plan = Model::Release1_0.dry_run(region, staged, &n).unwrap();
        assert_eq!(plan.heap, PhysRange::new(448 * MIB, 8 * MIB));
        assert_eq!(
            plan.page_tables,
            PhysRange::new(456 * MIB, n.page_table_frames * PAGE_SIZE)
        );
        assert_eq!(plan.frametable.start, plan.page_tables.end());
        // Its fixed heap does not fit a small region, and says so.
        let small = PhysRange::new(448 * MIB, 8 * MIB);
        let e = Model::Release1_0
            .dry_run(small, PhysRange::new(455 * MIB, MIB), &n)
            .unwrap_err();
        assert_eq!(e.what, "heap");
        // This tree's model is the plain dry run.
        let cur = Model::Current.needs(&ram, MIB);
        assert_eq!(
            Model::Current.dry_run(region, staged, &cur),
            dry_run(region, staged, &cur)
        );
    }

    #[test]
    fn the_dry_run_is_first_fit_in_the_boot_order() {
        let region = PhysRange::new(448 * MIB, 64 * MIB);
        let staged = PhysRange::new(508 * MIB, 2 * MIB);
        let n = needs(&[frames(1, 511)], MIB);
        let plan = dry_run(region, staged, &n).unwrap();
        assert_eq!(plan.heap, PhysRange::new(448 * MIB, heap_bytes(n.frames)));
        assert_eq!(plan.page_tables.start, plan.heap.end());
        assert_eq!(plan.frametable.start, plan.page_tables.end());
        assert_eq!(plan.m2p.start, plan.frametable.end());
        // The same sequence on a real allocator lands at the same places.
        let mut a: BootAllocator = BootAllocator::new(region, &[staged]).unwrap();
        assert_eq!(alloc_heap(&mut a, n.heap_pages), Ok(plan.heap));
        assert_eq!(
            alloc_tables(&mut a, &n),
            Ok((plan.page_tables, plan.frametable, plan.m2p))
        );
    }

    #[test]
    fn a_dry_run_that_does_not_fit_names_the_allocation() {
        // 12 MiB region, the staged range in its middle: the heap of 1 GiB
        // of RAM (6 MiB) fits below it, its frametable (4 MiB) nowhere.
        let region = PhysRange::new(64 * MIB, 12 * MIB);
        let staged = PhysRange::new(72 * MIB, 2 * MIB);
        let n = needs(&[frames(0, 1 << 10)], MIB);
        let e = dry_run(region, staged, &n).unwrap_err();
        assert_eq!(e.what, "frametable");
        assert!(matches!(e.error, BootAllocError::Exhausted { .. }), "{e:?}");
        assert!(e
            .to_string()
            .starts_with("frametable: live-update region exhausted"));
        // A heap that fits neither below nor above the hole.
        let staged = PhysRange::new(65 * MIB, 10 * MIB);
        let e = dry_run(region, staged, &needs(&[frames(0, 16)], MIB)).unwrap_err();
        assert_eq!(e.what, "heap");
        // A staged range outside the region.
        let e = dry_run(region, PhysRange::new(0, MIB), &n).unwrap_err();
        assert_eq!(e.what, "boot allocator");
    }
}
