//! The errors of this crate, one type per layer:
//!
//! - [`EntryError`] (defined with the rules, [`crate::rules`]): why one
//!   page-table entry breaks a PV type rule. Shared by the two layers
//!   above, which wrap it with the entry's [`crate::EntryRef`].
//! - [`Error`]: why the pass ([`crate::rebuild`]) or a machine layout
//!   refuses its input.
//! - [`OpError`]: why a live operation ([`crate::ops`]) is refused.
//! - [`crate::CountError`]: a reference count would leave its range (the
//!   counting primitives of [`crate::FrameInfo`]).
//!
//! The error types depend only on the vocabulary below them (page types,
//! the rules' [`crate::FrameClass`] and [`crate::EntryRef`]); no module they
//! describe is imported here.

use core::fmt;

use hvlu_types::DomId;

mod ops;
mod pass;

pub use crate::rules::EntryError;
pub use ops::OpError;
pub use pass::Error;

/// Which sorted list of ranges an [`Error::Unsorted`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeList {
    /// The machine's RAM ranges.
    Ram,
    /// The hv-reserved ranges.
    HvReserved,
    /// The MMIO ranges a domain may map.
    Mmio(DomId),
}

impl fmt::Display for RangeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeList::Ram => f.write_str("RAM ranges"),
            RangeList::HvReserved => f.write_str("hv-reserved ranges"),
            RangeList::Mmio(d) => write!(f, "MMIO ranges of dom{d}"),
        }
    }
}

/// A frame's owner in a message: `dom<n>`, or `no domain`.
struct OwnerName(Option<DomId>);

impl fmt::Display for OwnerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "dom{d}"),
            None => f.write_str("no domain"),
        }
    }
}

/// The domain prefix of a message, `dom<n>: `, when there is a domain.
struct DomPrefix(Option<DomId>);

impl fmt::Display for DomPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "dom{d}: "),
            None => Ok(()),
        }
    }
}
