//! The early allocator. (Being written.)
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
