//! The frametable and the single pass. (Being written.)
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
