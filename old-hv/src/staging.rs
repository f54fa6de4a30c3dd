//! The staging area: where a loaded image and the handover state sit in the
//! live-update region.
//!
//! The area is a free gap of the region, laid out as
//! `[image][argument page][trampoline page][entry tables][state]`; the
//! incoming image's boot allocator treats `[image, end of state)` as one
//! hole. The state may grow between load and exec, so the load keeps room
//! for twice the current estimate.

use boot_allocator::PhysRange;
use handover_abi::entry::EntryArgs;
use handover_abi::PAGE_SIZE;

use crate::image::ImageLimits;

/// Frames set aside in the staging area for the entry page tables.
pub const TABLE_FRAMES: u64 = 64;

/// Where a staged update sits in the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staging {
    /// The image span.
    pub image: PhysRange,
    /// The argument page.
    pub args: u64,
    /// The trampoline page.
    pub trampoline: u64,
    /// Frames for the entry tables.
    pub tables: PhysRange,
    /// The state area: the rest of the gap.
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
}

fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Bytes the area needs after the image for a state of about
/// `state_estimate` bytes: the argument and trampoline pages, the entry
/// tables and twice the estimate plus a page.
pub fn reserve(state_estimate: u64) -> u64 {
    2 * PAGE_SIZE + TABLE_FRAMES * PAGE_SIZE + page_up(2 * state_estimate + 4096)
}

/// The limits an image must meet to be staged in `gap` with room for the
/// state ([`reserve`]).
pub fn image_limits(gap: PhysRange, state_estimate: u64) -> ImageLimits {
    ImageLimits {
        max_span: gap.size.saturating_sub(reserve(state_estimate)),
    }
}

impl Staging {
    /// Lays out an image of `image_span` bytes at the start of `gap`, the
    /// state area taking the rest; refuses if the state area would be
    /// smaller than [`reserve`] leaves for it.
    pub fn plan(
        gap: PhysRange,
        image_span: u64,
        state_estimate: u64,
    ) -> Result<Staging, StagingError> {
        let image_bytes = page_up(image_span);
        let needed = image_bytes.saturating_add(reserve(state_estimate));
        if needed > gap.size {
            return Err(StagingError::DoesNotFit {
                needed,
                gap: gap.size,
            });
        }
        let image = PhysRange::new(gap.start, image_bytes);
        let args = image.end();
        let trampoline = args + PAGE_SIZE;
        let tables = PhysRange::new(trampoline + PAGE_SIZE, TABLE_FRAMES * PAGE_SIZE);
        let state = PhysRange::from_bounds(tables.end(), gap.end());
        Ok(Staging {
            image,
            args,
            trampoline,
            tables,
            state,
        })
    }

    /// Bytes after the image: the two pages, the tables and the state area.
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
    /// of `state_len` bytes: `[image, end of state rounded up to a page)`.
    pub fn hole(&self, state_len: u64) -> PhysRange {
        PhysRange::from_bounds(self.image.start, page_up(self.state.start + state_len))
    }
}
