//! [`PhysRange`] and the frame size: the shared vocabulary (`hvlu-types`).

pub use hvlu_types::{PhysRange, PAGE_SHIFT, PAGE_SIZE};
