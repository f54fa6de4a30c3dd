//! The x86-64 page-table entry format, as far as the PV type rules read it.
//!
//! ```text
//!  63  62..52  51..............12  11..9  8  7   6  5  4  3  2  1  0
//! [NX][avail][ physical frame    ][avail][G][PS][D][A][..][..][US][RW][P]
//! ```
//!
//! Bit 7 is `PS` (page size) in L2 and L3 entries, reserved in L4 entries and
//! `PAT` in L1 entries. Only `P`, `RW`, `PS` and the address are interpreted
//! by the rules; the other bits are the guest's business.

use handover_abi::Mfn;

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable (read/write).
pub const WRITABLE: u64 = 1 << 1;
/// User-accessible.
pub const USER: u64 = 1 << 2;
/// Accessed.
pub const ACCESSED: u64 = 1 << 5;
/// Dirty (L1 entries).
pub const DIRTY: u64 = 1 << 6;
/// Page size: the entry maps a 2 MiB (L2) or 1 GiB (L3) superpage. In an L1
/// entry this bit is PAT and means nothing to the rules.
pub const PAGE_SIZE: u64 = 1 << 7;
/// Global (L1 entries).
pub const GLOBAL: u64 = 1 << 8;
/// No-execute.
pub const NO_EXECUTE: u64 = 1 << 63;
/// The physical address bits 12..=51.
pub const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// One page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pte(pub u64);

impl Pte {
    /// An entry mapping `mfn` with the given flag bits (the address bits of
    /// `flags` are ignored).
    pub const fn new(mfn: Mfn, flags: u64) -> Pte {
        Pte(((mfn.0 << 12) & ADDR_MASK) | (flags & !ADDR_MASK))
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
    pub const fn has_page_size_bit(self) -> bool {
        self.0 & PAGE_SIZE != 0
    }

    /// The machine frame the entry points at (address bits 12..=51).
    pub const fn mfn(self) -> Mfn {
        Mfn((self.0 & ADDR_MASK) >> 12)
    }
}
