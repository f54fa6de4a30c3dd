//! The staging area: where a loaded image and the handover state sit in the
//! live-update region.
//!
//! The area is a free gap of the region, laid out at one of its ends:
//!
//! - at the bottom ([`End::Bottom`]): `[image][argument page][trampoline
//!   page][entry tables][state]`, the state area taking the rest of the gap;
//! - at the top ([`End::Top`]): `[state][argument page][trampoline
//!   page][entry tables][image]`, the image ending at the gap's end and the
//!   state area holding what the load reserved for it.
//!
//! The image is at one end, the state at the other; the incoming image's
//! boot allocator treats the hull of both as one hole, and once it has
//! consumed the state returns all of it but its own image to the region's
//! free space (`new_hv::staging`). [`choose_end`] picks the end away from
//! the running image, so that the images alternate between the two ends of
//! the free space and the live-update capacity after every update is the
//! same: the region minus the boot allocations minus one image. The state
//! may grow between load and exec, so the load keeps room for twice the
//! current estimate.
//!
//! # Landing
//!
//! An image arrives (from a boot module, or from dom0's memory) as a file
//! whose size is the only thing known before it is read. It is copied,
//! unchecked, straight into the region — never into the hypervisor's heap,
//! which is a few MiB — at the end of the gap opposite the one it will be
//! staged at ([`landing`]), checked there (signature, then validation) and
//! staged from there. The landing stays clear of the image staged before,
//! so that a refused load leaves that one staged; the new staged image must
//! stay clear of the landing ([`Staging::clear_of`]), so the gap must hold
//! the file and the new image side by side. Both refusals give the sizes.
//!
//! The entry tables grow with the machine: their direct map covers all of
//! RAM with 2 MiB pages, one L2 table per GiB and one L3 per 512 GiB
//! ([`table_frames`], which the load sizes from the end of RAM and the
//! image's mappings).

use alloc::vec::Vec;

use boot_allocator::PhysRange;
use handover_abi::entry::EntryArgs;
use hvlu_types::PAGE_SIZE;

use crate::image::{ImageLimits, Mapping};

use handover_abi::entry::DIRECT_MAP_BASE;
use hvlu_types::pte::{L4_ENTRY_SPAN as L4_SPAN, NO_EXECUTE, ONE_GIB, TWO_MIB, WRITABLE};
use hvlu_types::table_plan::{self, Map};

use crate::exec::Segment;

/// Entry-table frames besides the direct map and the image: the new root,
/// and the tables of the trampoline's identity mapping
/// ([`trampoline_map`]: an L3, an L2 and an L1) in each of the two roots
/// (the new one and the running hypervisor's).
pub const FIXED_TABLE_FRAMES: u64 = 1 + 2 * 3;

/// Virtual areas [`image_limits`] assumes an image's mappings form: its
/// cold-boot stub at its physical address and everything else in the upper
/// half (`hv/linker.ld`). An image laid out otherwise is sized exactly by
/// [`table_frames`] when it is staged.
pub const LIMIT_IMAGE_AREAS: u64 = 2;

/// The entry tables' mappings but the trampoline (the entry contract,
/// `docs/abi.md` §5): each segment at its link address in 4 KiB pages onto
/// its staged copy, writable; the direct map of `[0, ram_end)` at
/// `DIRECT_MAP_BASE` in 2 MiB pages, no-execute. [`table_frames`] counts
/// them; `hv/src/arch/kexec.rs` builds [`entry_maps_for`].
pub fn entry_maps(segments: impl IntoIterator<Item = Segment>, ram_end: u64) -> Vec<Map> {
    entry_maps_for(segments, ram_end, false)
}

/// [`entry_maps`], with the direct map's whole gigabytes in 1 GiB pages if
/// `gib_pages` (a CPU that has them): the same addresses mapped, fewer
/// tables and entries to write (a 64 GiB machine: 64 entries in place of
/// 32768), so never more frames than [`table_frames`] counts.
pub fn entry_maps_for(
    segments: impl IntoIterator<Item = Segment>,
    ram_end: u64,
    gib_pages: bool,
) -> Vec<Map> {
    let mut maps: Vec<Map> = segments
        .into_iter()
        .map(|s| Map::small(s.vaddr, s.phys, s.len, WRITABLE))
        .collect();
    let direct = ram_end.div_ceil(TWO_MIB) * TWO_MIB;
    let gib = if gib_pages {
        direct & !(ONE_GIB - 1)
    } else {
        0
    };
    if gib > 0 {
        maps.push(Map {
            leaf: hvlu_types::pte::Level::L3,
            ..Map::huge(DIRECT_MAP_BASE, 0, gib, WRITABLE | NO_EXECUTE)
        });
    }
    if direct > gib {
        maps.push(Map::huge(
            DIRECT_MAP_BASE + gib,
            gib,
            direct - gib,
            WRITABLE | NO_EXECUTE,
        ));
    }
    maps
}

/// The trampoline page's identity mapping (executable, read-only).
pub fn trampoline_map(page: u64) -> Map {
    Map::small(page, page, PAGE_SIZE, 0)
}

/// Entry-table frames the direct map of `[0, ram_end)` takes with 2 MiB
/// pages: one L2 per GiB and one L3 per 512 GiB.
pub fn direct_map_table_frames(ram_end: u64) -> u64 {
    table_plan::frames(&entry_maps([], ram_end))
}

/// The entry-table frames of a jump (`hv/src/arch/kexec.rs`: `prepare`)
/// for a machine whose RAM ends at byte `ram_end` to an image with
/// `mappings`: [`FIXED_TABLE_FRAMES`] and the tables of [`entry_maps`]
/// (exact for the new root; the trampoline's may share some).
pub fn table_frames(ram_end: u64, mappings: &[Mapping]) -> u64 {
    let segments = mappings.iter().map(|m| Segment {
        vaddr: m.vaddr,
        len: m.len,
        phys: m.offset,
    });
    FIXED_TABLE_FRAMES + table_plan::frames(&entry_maps(segments, ram_end))
}

/// An upper bound of [`table_frames`] for an image of `span` bytes whose
/// mappings form at most [`LIMIT_IMAGE_AREAS`] contiguous virtual areas:
/// each area of `len` bytes touches at most `len / unit + 2` units of each
/// level.
pub fn table_frames_for_span(ram_end: u64, span: u64) -> u64 {
    let per_level = |unit: u64| span.div_ceil(unit) + 2 * LIMIT_IMAGE_AREAS;
    FIXED_TABLE_FRAMES
        + direct_map_table_frames(ram_end)
        + per_level(L4_SPAN)
        + per_level(ONE_GIB)
        + per_level(TWO_MIB)
}

/// Which end of the gap the image is staged at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The image at the gap's start, the state area after it.
    Bottom,
    /// The image at the gap's end, the state area before it.
    Top,
}

/// The end of `gap` away from the running image `running` (its physical
/// span): the bottom if the running image starts where the gap ends, the
/// top otherwise (in particular for a cold-boot image outside the region).
/// After an update staged at the top the free space ends at the image, so
/// the next one is staged at the bottom, and the reverse.
pub fn choose_end(gap: PhysRange, running: PhysRange) -> End {
    if running.start == gap.end() {
        End::Bottom
    } else {
        End::Top
    }
}

/// Which of the image and the state comes first in the staging area: the
/// staging layouts of an image's note (`handover_abi::note::Layouts`). The
/// bottom end is always image first; at the top the state comes first,
/// unless the incoming image's contract accepts only the image first (the
/// 1.0 release refuses a state below its image): then the whole bottom
/// layout `[image][argument page][trampoline page][entry tables][state]` is
/// placed to end at the gap's end (`crate::image::Contract::order_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `[image] … [state]`.
    ImageFirst,
    /// `[state] … [image]`.
    StateFirst,
}

impl core::fmt::Display for Order {
    /// `image first` or `state first`, as `lu load` prints it.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Order::ImageFirst => "image first",
            Order::StateFirst => "state first",
        })
    }
}

/// Where a staged update sits in the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staging {
    /// Which end of the gap it was staged at.
    pub end: End,
    /// Which of the image and the state comes first.
    pub order: Order,
    /// The image span.
    pub image: PhysRange,
    /// The argument page.
    pub args: u64,
    /// The trampoline page.
    pub trampoline: u64,
    /// Frames for the entry tables.
    pub tables: PhysRange,
    /// The state area: the rest of the gap (bottom), or what the load
    /// reserved for the state (top).
    pub state: PhysRange,
}

/// Why an image cannot be staged in a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StagingError {
    /// The image, the two pages, the tables and room for the state do not
    /// fit the gap.
    #[error("the staging area needs {needed} bytes, the region's largest free gap has {gap}")]
    DoesNotFit {
        /// Bytes needed.
        needed: u64,
        /// Bytes the gap has.
        gap: u64,
    },
    /// The file to load does not fit where it would land.
    #[error("the image file is {file_len} bytes; the live-update region has room for {room} to receive it (its largest free gap is {gap} bytes{})", if *.staged > 0 { " and the image staged now takes part of it" } else { "" })]
    FileDoesNotFit {
        /// The file's length.
        file_len: u64,
        /// Bytes it could take.
        room: u64,
        /// The gap's size.
        gap: u64,
        /// Bytes of the gap the image staged before takes (0 if none).
        staged: u64,
    },
    /// The image the file describes, staged, would overlap the file itself.
    #[error("the image file ({file_len} bytes) and the image it stages ({span} bytes) do not both fit the region's largest free gap ({gap} bytes)")]
    LandingOverlap {
        /// The file's length.
        file_len: u64,
        /// The staged image's span.
        span: u64,
        /// The gap's size.
        gap: u64,
    },
}

/// Where a file of `file_len` bytes lands to be checked before it is
/// staged at `end` of `gap` (see [Landing](self#landing)): page aligned, at
/// the opposite end of the gap, clear of `keep` (the image staged before,
/// if any). Refuses with the room there is, before anything is read.
pub fn landing(
    gap: PhysRange,
    end: End,
    file_len: u64,
    keep: Option<PhysRange>,
) -> Result<PhysRange, StagingError> {
    let keep = keep.filter(|k| k.overlaps(gap));
    // The room runs from the landing's end of the gap to the nearest
    // byte of `keep`.
    let room = match (end, keep) {
        (_, None) => gap.size,
        (End::Top, Some(k)) => k.start.saturating_sub(gap.start),
        (End::Bottom, Some(k)) => gap.end().saturating_sub(k.end()),
    };
    // Page aligned at both ends of the gap (a gap of the boot allocator is).
    let room = room / PAGE_SIZE * PAGE_SIZE;
    let len = file_len.checked_next_multiple_of(PAGE_SIZE);
    match len {
        Some(len) if file_len > 0 && len <= room => Ok(match end {
            End::Top => PhysRange::new(gap.start, len),
            End::Bottom => PhysRange::from_bounds(gap.end() - len, gap.end()),
        }),
        _ => Err(StagingError::FileDoesNotFit {
            file_len,
            room,
            gap: gap.size,
            staged: keep.map_or(0, |k| k.size),
        }),
    }
}

fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Bytes the area needs besides the image for a state of about
/// `state_estimate` bytes and `tables` entry-table frames
/// ([`table_frames`]): the argument and trampoline pages, the entry tables
/// and twice the estimate plus a page.
pub fn reserve(state_estimate: u64, tables: u64) -> u64 {
    (2 + tables) * PAGE_SIZE + state_reserve(state_estimate)
}

/// The state area's part of [`reserve`]: twice the estimate plus a page.
fn state_reserve(state_estimate: u64) -> u64 {
    page_up(2 * state_estimate + PAGE_SIZE)
}

/// The limits an image must meet to be staged in `gap` with room for the
/// state ([`reserve`]) and the entry tables of a machine whose RAM ends at
/// `ram_end`: the largest span (a whole number of pages) that fits with the
/// tables [`table_frames_for_span`] bounds. An image laid out like this
/// one (at most [`LIMIT_IMAGE_AREAS`] virtual areas) that passes also fits
/// [`Staging::plan_at`] with its exact [`table_frames`].
pub fn image_limits(gap: PhysRange, state_estimate: u64, ram_end: u64) -> ImageLimits {
    let fits = |span: u64| {
        span.saturating_add(reserve(
            state_estimate,
            table_frames_for_span(ram_end, span),
        )) <= gap.size
    };
    if !fits(0) {
        return ImageLimits { max_span: 0 };
    }
    // What is needed grows with the span: the largest page count that
    // fits, by bisection.
    let (mut lo, mut hi) = (0u64, gap.size / PAGE_SIZE);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid * PAGE_SIZE) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    ImageLimits {
        max_span: lo * PAGE_SIZE,
    }
}

impl Staging {
    /// Lays out an image of `image_span` bytes at the start of `gap`, the
    /// state area taking the rest ([`Staging::plan_at`] with
    /// [`End::Bottom`]).
    pub fn plan(
        gap: PhysRange,
        image_span: u64,
        state_estimate: u64,
        tables: u64,
    ) -> Result<Staging, StagingError> {
        Self::plan_at(End::Bottom, gap, image_span, state_estimate, tables)
    }

    /// Lays out an image of `image_span` bytes at `end` of `gap`, with
    /// `tables` frames for the entry tables ([`table_frames`]): at the
    /// bottom the state area takes the rest of the gap; at the top the image
    /// ends at the gap's end and the state area is what [`reserve`] keeps
    /// for it, just below the tables. Refuses if the image and [`reserve`]
    /// do not fit the gap.
    pub fn plan_at(
        end: End,
        gap: PhysRange,
        image_span: u64,
        state_estimate: u64,
        tables: u64,
    ) -> Result<Staging, StagingError> {
        Self::plan_ordered(
            end,
            Order::StateFirst,
            gap,
            image_span,
            state_estimate,
            tables,
        )
    }

    /// [`Staging::plan_at`] with the top end's `order` chosen (the bottom
    /// is always image first): what an incoming image's contract asks for
    /// (`crate::image::Contract::order_at`).
    pub fn plan_ordered(
        end: End,
        order: Order,
        gap: PhysRange,
        image_span: u64,
        state_estimate: u64,
        tables: u64,
    ) -> Result<Staging, StagingError> {
        let image_bytes = page_up(image_span);
        let needed = image_bytes.saturating_add(reserve(state_estimate, tables));
        if needed > gap.size {
            return Err(StagingError::DoesNotFit {
                needed,
                gap: gap.size,
            });
        }
        let table_bytes = tables * PAGE_SIZE;
        let order = match end {
            End::Bottom => Order::ImageFirst,
            End::Top => order,
        };
        // The image-first layout from `start`, the state area up to `end`.
        let image_first = |start: u64, state_end: u64| {
            let image = PhysRange::new(start, image_bytes);
            let args = image.end();
            let trampoline = args + PAGE_SIZE;
            let tables = PhysRange::new(trampoline + PAGE_SIZE, table_bytes);
            let state = PhysRange::from_bounds(tables.end(), state_end);
            (image, args, trampoline, tables, state)
        };
        let (image, args, trampoline, tables, state) = match (end, order) {
            (End::Bottom, _) => image_first(gap.start, gap.end()),
            (End::Top, Order::ImageFirst) => {
                let state_bytes = state_reserve(state_estimate);
                let start = gap.end() - state_bytes - table_bytes - 2 * PAGE_SIZE - image_bytes;
                image_first(start, gap.end())
            }
            (End::Top, Order::StateFirst) => {
                let image = PhysRange::from_bounds(gap.end() - image_bytes, gap.end());
                let tables = PhysRange::from_bounds(image.start - table_bytes, image.start);
                let trampoline = tables.start - PAGE_SIZE;
                let args = trampoline - PAGE_SIZE;
                let state_bytes = state_reserve(state_estimate);
                let state = PhysRange::from_bounds(args - state_bytes, args);
                (image, args, trampoline, tables, state)
            }
        };
        let staging = Staging {
            end,
            order,
            image,
            args,
            trampoline,
            tables,
            state,
        };
        Ok(staging)
    }

    /// Checks that staging this image writes nothing of `landing`, where
    /// the file of `file_len` bytes it is staged from lies (see
    /// [`landing`]); `gap` is the gap both are in. Only the image is
    /// written at load: the rest of the area is written at exec, when the
    /// file is no longer needed.
    pub fn clear_of(
        &self,
        landing: PhysRange,
        file_len: u64,
        gap: PhysRange,
    ) -> Result<(), StagingError> {
        if self.image.overlaps(landing) {
            return Err(StagingError::LandingOverlap {
                file_len,
                span: self.image.size,
                gap: gap.size,
            });
        }
        Ok(())
    }

    /// Bytes of the area besides the image: the two pages, the tables and
    /// the state area.
    pub fn after_image(&self) -> u64 {
        self.state.size + self.tables.size + 2 * PAGE_SIZE
    }

    /// Records where the update sits in the entry arguments: the region
    /// (`region`, the whole live-update region), the image and the state of
    /// `state_len` bytes. The incoming side reads these back with
    /// `new_hv::staging::staged_range`.
    pub fn place(&self, region: PhysRange, state_len: u64, args: &mut EntryArgs) {
        args.region_base = region.start;
        args.region_size = region.size;
        args.image_phys = self.image.start;
        args.image_len = self.image.size;
        args.state_phys = self.state.start;
        args.state_len = state_len;
    }

    /// What the incoming image's boot allocator must leave alone for a state
    /// of `state_len` bytes (what `new_hv::staging::staged_range` computes
    /// from the entry arguments): `[image, end of state rounded up to a
    /// page)` image first, `[state, end of image)` state first.
    pub fn hole(&self, state_len: u64) -> PhysRange {
        match self.order {
            Order::ImageFirst => {
                PhysRange::from_bounds(self.image.start, page_up(self.state.start + state_len))
            }
            Order::StateFirst => PhysRange::from_bounds(self.state.start, self.image.end()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_tables_in_gib_pages_map_the_same_with_fewer_frames() {
        let seg = Segment {
            vaddr: 0xffff_ffff_8010_0000,
            len: 3 * MIB,
            phys: 448 * MIB,
        };
        for ram_end in [512 * MIB, 3 * ONE_GIB + 2 * MIB, 65 * ONE_GIB] {
            let small = entry_maps([seg], ram_end);
            let big = entry_maps_for([seg], ram_end, true);
            table_plan::check(&big).unwrap();
            assert!(table_plan::frames(&big) <= table_plan::frames(&small));
            let bytes = |m: &[Map]| m.iter().map(|m| m.len).sum::<u64>();
            assert_eq!(bytes(&big), bytes(&small), "ram_end {ram_end:#x}");
        }
        let big = entry_maps_for([], 64 * ONE_GIB, true);
        assert_eq!(big.len(), 1);
        assert!(table_plan::frames(&big) < 4);
    }

    #[test]
    fn image_first_at_the_top_keeps_the_bottom_layout_and_ends_at_the_gap_s_end() {
        let g = PhysRange::new(448 * MIB, 64 * MIB);
        let s = Staging::plan_ordered(End::Top, Order::ImageFirst, g, 3 * MIB, 4096, 20).unwrap();
        assert_eq!(s.order, Order::ImageFirst);
        assert_eq!(s.args, s.image.end());
        assert_eq!(s.trampoline, s.args + PAGE_SIZE);
        assert_eq!(s.tables.start, s.trampoline + PAGE_SIZE);
        assert_eq!(s.state.start, s.tables.end());
        assert_eq!(s.state.end(), g.end());
        assert_eq!(s.state.size, state_reserve(4096));
        // The hole the incoming image computes runs from the image on.
        assert_eq!(s.hole(100).start, s.image.start);
        assert_eq!(s.hole(100).end(), s.state.start + PAGE_SIZE);
        // The bottom is image first whatever is asked.
        let b =
            Staging::plan_ordered(End::Bottom, Order::StateFirst, g, 3 * MIB, 4096, 20).unwrap();
        assert_eq!((b.order, b.image.start), (Order::ImageFirst, g.start));
        // The top's default is the state first.
        assert_eq!(
            Staging::plan_at(End::Top, g, 3 * MIB, 4096, 20)
                .unwrap()
                .order,
            Order::StateFirst
        );
    }
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn gap() -> PhysRange {
        PhysRange::new(0x400_0000, 54 * MIB)
    }

    #[test]
    fn the_file_lands_at_the_end_opposite_the_staging() {
        let g = gap();
        // 5000 bytes take two whole pages; one page, one.
        let at_bottom = landing(g, End::Top, 5000, None).unwrap();
        assert_eq!(at_bottom, PhysRange::new(g.start, 2 * PAGE_SIZE));
        let at_top = landing(g, End::Bottom, PAGE_SIZE, None).unwrap();
        assert_eq!(at_top, PhysRange::from_bounds(g.end() - PAGE_SIZE, g.end()));
    }

    #[test]
    fn a_file_larger_than_the_gap_is_refused_with_the_sizes() {
        let g = gap();
        let err = landing(g, End::Top, 64 * MIB, None).unwrap_err();
        assert_eq!(
            err,
            StagingError::FileDoesNotFit {
                file_len: 64 * MIB,
                room: 54 * MIB,
                gap: 54 * MIB,
                staged: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "the image file is 67108864 bytes; the live-update region has room for 56623104 to receive it (its largest free gap is 56623104 bytes)"
        );
        for len in [0, u64::MAX, u64::MAX - 4095] {
            assert!(landing(g, End::Top, len, None).is_err(), "{len}");
        }
    }

    #[test]
    fn the_landing_stays_clear_of_the_image_staged_before() {
        let g = gap();
        // Staged at the top, 40 MiB from the gap's start: 40 MiB of room.
        let staged = PhysRange::new(g.start + 40 * MIB, 2 * MIB);
        assert!(landing(g, End::Top, 40 * MIB, Some(staged)).is_ok());
        let err = landing(g, End::Top, 40 * MIB + 1, Some(staged)).unwrap_err();
        assert!(
            err.to_string()
                .contains("the image staged now takes part of it"),
            "{err}"
        );
        // An image staged outside the gap takes none of it.
        let elsewhere = PhysRange::new(0x100_0000, MIB);
        assert!(landing(g, End::Top, 54 * MIB, Some(elsewhere)).is_ok());
    }

    #[test]
    fn an_image_staged_over_its_own_file_is_refused() {
        let g = gap();
        let file = landing(g, End::Top, 30 * MIB, None).unwrap();
        let staging = Staging::plan_at(End::Top, g, 30 * MIB, 4096, 20).unwrap();
        assert_eq!(
            staging.clear_of(file, 30 * MIB, g),
            Err(StagingError::LandingOverlap {
                file_len: 30 * MIB,
                span: 30 * MIB,
                gap: 54 * MIB
            })
        );
    }

    proptest! {
        /// A landing is inside the gap, page aligned, holds the file and
        /// misses what is kept; a staging at the other end misses the
        /// landing exactly when file and image fit side by side.
        #[test]
        fn landings_are_where_they_may_be(
            gap_pages in 1u64..20_000,
            file_len in 1u64..(100 * MIB),
            span_pages in 1u64..10_000,
            top in any::<bool>(),
            keep_pages in proptest::option::of(1u64..5000),
        ) {
            let g = PhysRange::new(0x1000_0000, gap_pages * PAGE_SIZE);
            let end = if top { End::Top } else { End::Bottom };
            let keep = keep_pages.map(|n| {
                let len = (n * PAGE_SIZE).min(g.size);
                match end {
                    End::Top => PhysRange::from_bounds(g.end() - len, g.end()),
                    End::Bottom => PhysRange::new(g.start, len),
                }
            });
            if let Ok(l) = landing(g, end, file_len, keep) {
                prop_assert!(g.contains_range(l));
                prop_assert!(l.size >= file_len && l.size - file_len < PAGE_SIZE);
                prop_assert_eq!(l.start % PAGE_SIZE, 0);
                if let Some(k) = keep {
                    prop_assert!(!l.overlaps(k));
                }
                if let Ok(s) = Staging::plan_at(end, g, span_pages * PAGE_SIZE, 0, 0) {
                    let fits = l.size + s.image.size <= g.size;
                    prop_assert_eq!(s.clear_of(l, file_len, g).is_ok(), fits);
                }
            } else {
                let room = keep.map_or(g.size, |k| g.size - k.size);
                prop_assert!(file_len.next_multiple_of(PAGE_SIZE) > room);
            }
        }
    }
}
