//! The x86-64 page-table entry format (4-level paging).
//!
//! ```text
//!  63  62..52  51..............12  11..9  8  7   6  5  4   3   2  1  0
//! [NX][avail][ physical frame    ][avail][G][PS][D][A][PCD][PWT][US][RW][P]
//! ```
//!
//! Bit 7 is `PS` (page size) in L2 and L3 entries, reserved in L4 entries
//! and `PAT` in L1 entries. The hypervisor builds its own tables with these
//! bits, the PV rules (`frame-ownership`) read the guests' with them, and the
//! guests write theirs with them.

use core::fmt;

use crate::{Mfn, PAGE_SHIFT};

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable (read/write).
pub const WRITABLE: u64 = 1 << 1;
/// User-accessible.
pub const USER: u64 = 1 << 2;
/// Write-through.
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Cache disable.
pub const CACHE_DISABLE: u64 = 1 << 4;
/// Accessed.
pub const ACCESSED: u64 = 1 << 5;
/// Dirty (leaf entries).
pub const DIRTY: u64 = 1 << 6;
/// Page size: the entry maps a 2 MiB (L2) or 1 GiB (L3) superpage. In an
/// L1 entry this bit is PAT.
pub const HUGE: u64 = 1 << 7;
/// Global (leaf entries).
pub const GLOBAL: u64 = 1 << 8;
/// No-execute.
pub const NO_EXECUTE: u64 = 1 << 63;
/// The physical address bits 12..=51.
pub const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Entries in one page table.
pub const ENTRIES: usize = 512;

/// One page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pte(pub u64);

impl Pte {
    /// An entry mapping `mfn` with the given flag bits (the address bits of
    /// `flags` are ignored).
    pub const fn new(mfn: Mfn, flags: u64) -> Pte {
        Pte(((mfn.0 << PAGE_SHIFT) & ADDR_MASK) | (flags & !ADDR_MASK))
    }

    /// Whether the present bit is set.
    pub const fn is_present(self) -> bool {
        self.0 & PRESENT != 0
    }

    /// Whether the read/write bit is set.
    pub const fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }

    /// Whether bit 7 is set (PS in L2/L3 entries, reserved in L4, PAT in L1).
    pub const fn has_huge_bit(self) -> bool {
        self.0 & HUGE != 0
    }

    /// The machine frame the entry points at (address bits 12..=51).
    pub const fn mfn(self) -> Mfn {
        Mfn((self.0 & ADDR_MASK) >> PAGE_SHIFT)
    }

    /// The physical address the entry points at.
    pub const fn addr(self) -> u64 {
        self.0 & ADDR_MASK
    }
}

/// A level of 4-level paging, and the geometry of its tables: what one
/// entry spans and which entry translates an address. Every table builder
/// and every count of table frames (the hypervisor's, the entry tables')
/// takes its spans from here; the PV type rules (`frame-ownership`) and
/// `pin_table`'s argument (`pv-abi`, as its [`number`](Level::number)) name
/// a table's level with it. It prints as `L1` .. `L4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Entries map 4 KiB pages.
    L1 = 1,
    /// Entries map 2 MiB (an L1 table, or a huge page).
    L2 = 2,
    /// Entries map 1 GiB (an L2 table).
    L3 = 3,
    /// Entries map 512 GiB (an L3 table).
    L4 = 4,
}

impl Level {
    /// Every level, leaf first.
    pub const ALL: [Level; 4] = [Level::L1, Level::L2, Level::L3, Level::L4];

    /// 1 for L1 … 4 for L4.
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The level numbered `n` (1 for L1 … 4 for L4), or `None` for any
    /// other number (0 included).
    pub const fn from_number(n: u64) -> Option<Level> {
        match n {
            1 => Some(Level::L1),
            2 => Some(Level::L2),
            3 => Some(Level::L3),
            4 => Some(Level::L4),
            _ => None,
        }
    }

    /// The level one down, whose tables this level's entries point at, or
    /// `None` for L1 (whose entries map pages).
    pub const fn below(self) -> Option<Level> {
        match self {
            Level::L1 => None,
            Level::L2 => Some(Level::L1),
            Level::L3 => Some(Level::L2),
            Level::L4 => Some(Level::L3),
        }
    }

    /// The virtual-address bit where this level's index starts.
    pub const fn shift(self) -> u32 {
        PAGE_SHIFT + 9 * (self.number() - 1)
    }

    /// Bytes one entry of a table of this level maps: 4 KiB, 2 MiB, 1 GiB,
    /// 512 GiB.
    pub const fn entry_span(self) -> u64 {
        1 << self.shift()
    }

    /// The index of the entry that translates `va` in a table of this level.
    pub const fn index(self, va: u64) -> usize {
        ((va >> self.shift()) & 511) as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.number())
    }
}

/// 2 MiB: what an L2 entry (a huge page, an L1 table) maps.
pub const TWO_MIB: u64 = Level::L2.entry_span();
/// 1 GiB: what an L3 entry (an L2 table) maps.
pub const ONE_GIB: u64 = Level::L3.entry_span();
/// 512 GiB: what an L4 entry (an L3 table) maps.
pub const L4_ENTRY_SPAN: u64 = Level::L4.entry_span();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_fields() {
        let e = Pte::new(
            Mfn(0x1234),
            PRESENT | WRITABLE | NO_EXECUTE | 0xfff0_0000_0000_0000,
        );
        assert!(e.is_present() && e.is_writable() && !e.has_huge_bit());
        assert_eq!(e.mfn(), Mfn(0x1234));
        assert_eq!(e.addr(), 0x123_4000);
        // Address bits in the flags are dropped, not merged.
        assert_eq!(Pte::new(Mfn(1), 0x5000 | PRESENT).mfn(), Mfn(1));
    }

    #[test]
    fn indices_of_each_level() {
        let va = 0xffff_8000_0000_0000u64 | (3 << 30) | (5 << 21) | (7 << 12);
        assert_eq!(Level::L4.index(va), 256);
        assert_eq!(Level::L3.index(va), 3);
        assert_eq!(Level::L2.index(va), 5);
        assert_eq!(Level::L1.index(va), 7);
    }

    #[test]
    fn spans_of_each_level() {
        let spans: [u64; 4] = Level::ALL.map(Level::entry_span);
        assert_eq!(spans, [crate::PAGE_SIZE, 2 << 20, 1 << 30, 1 << 39]);
        assert_eq!(
            (TWO_MIB, ONE_GIB, L4_ENTRY_SPAN),
            (2 << 20, 1 << 30, 1 << 39)
        );
    }

    #[test]
    fn a_level_is_its_number_and_back() {
        for level in Level::ALL {
            assert_eq!(Level::from_number(u64::from(level.number())), Some(level));
            assert_eq!(level.to_string(), format!("L{}", level.number()));
        }
        for n in [0, 5, 6, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(Level::from_number(n), None, "{n}");
        }
        assert_eq!(Level::ALL.map(|l| l.number()), [1, 2, 3, 4]);
    }

    #[test]
    fn below_steps_down_to_l1() {
        assert_eq!(
            Level::ALL.map(Level::below),
            [None, Some(Level::L1), Some(Level::L2), Some(Level::L3)]
        );
    }
}
