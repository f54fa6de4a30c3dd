//! The hvlu handover format.
//!
//! This crate owns every byte that crosses a live update: the header and the
//! versioned body of the handover state, the CRC32C that guards them, the
//! `HVLU` ELF note that every hypervisor image carries, and the rules that
//! decide which versions two images can exchange.
//!
//! It has no `unsafe` and no dependency on a CPU: everything here is tested on
//! the host. The byte-level specification is `docs/abi.md`; this crate's
//! `DESIGN.md` says how the code is arranged.
//!
//! # A blob
//!
//! ```text
//! +----------------------+------------------------------------------+
//! | header (64 bytes)    | body (body_len bytes, postcard)           |
//! | fixed layout, LE,    | versioned serde types, e.g. body::v1_0   |
//! | CRC32C of itself     | guarded by the header's body CRC32C      |
//! +----------------------+------------------------------------------+
//! ```
//!
//! The header layout is drawn in [`header`].
//!
//! # Version rule
//!
//! A reader of version M.n accepts a blob of version M.m with m ≤ n; an image
//! advertises in its `HVLU` note the range of versions it reads, and the
//! writer writes the highest version that lies both in its own write range
//! and in the reader's range ([`negotiate`]), or refuses the update if none
//! does.
//!
//! # Writing and reading
//!
//! - [`encode`] / [`encode_as`] write header + body into a caller-provided
//!   buffer and never allocate; [`encoded_len`] says how much room is needed.
//! - [`read_header`] checks a header alone and tells the total length, so that
//!   an incoming image can learn how far the state extends before it has a
//!   heap; [`decode`] checks everything, in the order documented on
//!   [`DecodeError`], and returns the state only if it is valid.
//! - [`HandoverState::validate`] checks the structural invariants of a state
//!   in memory ([`StateError`]).
//! - [`note`] builds and parses the `HVLU` ELF note.
//! - [`entry`] fixes the live-update entry contract and its argument page.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod body;
pub mod crc;
mod decode;
mod encode;
pub mod entry;
pub mod header;
pub mod marker;
pub mod marks;
pub mod note;
pub mod types;
mod validate;
pub mod version;

pub use body::current::*;
pub use decode::{decode, read_header, DecodeError, Decoded};
pub use encode::{encode, encode_as, encoded_len, encoded_len_as, EncodeError};
pub use header::{BuildId, Header, Producer, HEADER_SIZE, MAGIC};
pub use types::*;
pub use validate::{BarRef, RunRef, StateError};
pub use version::{negotiate, AbiVersion, VersionRange, CURRENT, READS, WRITES};
