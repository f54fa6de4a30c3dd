//! Frame numbers and domain ids. Physical addresses are plain `u64`s
//! (a frame's is [`Mfn::addr`]); ranges of them are `PhysRange`.

use core::fmt;

use crate::PAGE_SHIFT;

/// A machine frame number: physical address >> 12.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Mfn(pub u64);

impl Mfn {
    /// The physical address of the first byte of this frame, as a number.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame that holds physical address `addr`.
    pub const fn containing(addr: u64) -> Self {
        Mfn(addr >> PAGE_SHIFT)
    }

    /// The frame `n` frames further on, or `None` past `u64::MAX`.
    pub const fn checked_add(self, n: u64) -> Option<Mfn> {
        match self.0.checked_add(n) {
            Some(v) => Some(Mfn(v)),
            None => None,
        }
    }
}

/// A guest pseudo-physical frame number, as a PV guest numbers its own pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Gpfn(pub u64);

impl Gpfn {
    /// The frame as an index into a per-domain table (a p2m), or `None` if
    /// it does not fit in a `usize`.
    pub fn index(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }
}

/// A domain identifier. Domain 0 is the privileged control domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DomId(pub u16);

impl DomId {
    /// The control domain.
    pub const DOM0: DomId = DomId(0);
    /// Not a domain: the value no domain is ever given.
    pub const INVALID: DomId = DomId(u16::MAX);
}

impl fmt::Display for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfn {:#x}", self.0)
    }
}

impl fmt::Display for Gpfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpfn {:#x}", self.0)
    }
}

/// The bare number; diagnostics add their own prefix (`d3`, `dom3`).
impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PAGE_SIZE;
    use proptest::prelude::*;

    #[test]
    fn addresses_and_frames_convert_both_ways() {
        assert_eq!(Mfn(0x12345).addr(), 0x1234_5000);
        assert_eq!(Mfn::containing(0x1234_5fff), Mfn(0x12345));
        assert_eq!(Mfn::containing(Mfn(7).addr()), Mfn(7));
        assert_eq!(Mfn(u64::MAX).checked_add(1), None);
    }

    #[test]
    fn display_names_what_a_value_is() {
        assert_eq!(Mfn(0x10).to_string(), "mfn 0x10");
        assert_eq!(Gpfn(0x10).to_string(), "gpfn 0x10");
        assert_eq!(DomId(3).to_string(), "3");
    }

    proptest! {
        #[test]
        fn frame_of_an_address_holds_it(a in any::<u64>()) {
            let f = Mfn::containing(a);
            prop_assert!(f.addr() <= a);
            prop_assert_eq!(f.addr() + (a & (PAGE_SIZE - 1)), a);
            prop_assert_eq!(Mfn::containing(f.addr()), f);
        }
    }
}
