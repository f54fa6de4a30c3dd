//! Frame numbers, physical addresses and domain ids.

use core::fmt;

use crate::{PAGE_SHIFT, PAGE_SIZE};

/// A physical (machine) address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    /// The frame that holds this address.
    pub const fn frame(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }

    /// The byte offset inside its frame.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }

    /// Whether the address is the first byte of a frame.
    pub const fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }

    /// The address rounded down to its frame's first byte.
    pub const fn align_down(self) -> PhysAddr {
        PhysAddr(self.0 & !(PAGE_SIZE - 1))
    }

    /// The address rounded up to a frame boundary, or `None` past `u64::MAX`.
    pub const fn checked_align_up(self) -> Option<PhysAddr> {
        match self.0.checked_add(PAGE_SIZE - 1) {
            Some(v) => Some(PhysAddr(v & !(PAGE_SIZE - 1))),
            None => None,
        }
    }
}

/// A machine frame number: physical address >> 12.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Mfn(pub u64);

impl Mfn {
    /// The physical address of the first byte of this frame, as a number.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The physical address of the first byte of this frame.
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
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

impl From<Mfn> for PhysAddr {
    fn from(mfn: Mfn) -> PhysAddr {
        mfn.phys()
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

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
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
    use proptest::prelude::*;

    #[test]
    fn addresses_and_frames_convert_both_ways() {
        assert_eq!(Mfn(0x12345).addr(), 0x1234_5000);
        assert_eq!(Mfn(0x12345).phys(), PhysAddr(0x1234_5000));
        assert_eq!(PhysAddr::from(Mfn(7)).frame(), Mfn(7));
        assert_eq!(Mfn::containing(0x1234_5fff), Mfn(0x12345));
        assert_eq!(PhysAddr(0x1234_5678).page_offset(), 0x678);
        assert_eq!(PhysAddr(0x1234_5678).align_down(), PhysAddr(0x1234_5000));
        assert_eq!(
            PhysAddr(0x1234_5678).checked_align_up(),
            Some(PhysAddr(0x1234_6000))
        );
        assert_eq!(PhysAddr(u64::MAX).checked_align_up(), None);
        assert_eq!(Mfn(u64::MAX).checked_add(1), None);
    }

    #[test]
    fn display_names_what_a_value_is() {
        assert_eq!(Mfn(0x10).to_string(), "mfn 0x10");
        assert_eq!(Gpfn(0x10).to_string(), "gpfn 0x10");
        assert_eq!(DomId(3).to_string(), "3");
        assert_eq!(PhysAddr(0x1000).to_string(), "0x1000");
    }

    proptest! {
        #[test]
        fn frame_of_an_address_holds_it(a in any::<u64>()) {
            let p = PhysAddr(a);
            prop_assert!(p.frame().addr() <= a);
            prop_assert_eq!(p.frame().addr() + p.page_offset(), a);
            prop_assert_eq!(p.frame().phys().frame(), p.frame());
        }
    }
}
