//! An HVM domain's nested page tables (AMD's nested paging): guest frame →
//! machine frame, four levels of 4 KiB leaves, built from the domain's
//! frame space ([`P2m`]) and kept in frames the domain is charged for
//! (its P2M-table frames, which its own P2M never maps: the guest cannot
//! reach them).
//!
//! Entries have the long-mode format; nested paging wants `U` at every
//! level. A RAM leaf is `P|W|U` (write-protected while log-dirty tracks
//! the domain), a device leaf in the PCI hole `P|W|U|PWT|PCD`
//! (uncacheable), an intermediate entry `P|W|U`.
//!
//! The tables are reached through [`GuestMemory`], so the host tests build
//! them in a simulated memory.

use alloc::vec::Vec;

use hvlu_types::pte::{ADDR_MASK, HUGE, PRESENT, USER, WRITABLE};
use hvlu_types::{Gpfn, Mfn, PAGE_SIZE};

use super::builder::GuestMemory;
use super::p2m::P2m;

/// Page-level write-through.
pub const PWT: u64 = 1 << 3;
/// Page-level cache disable.
pub const PCD: u64 = 1 << 4;
/// The flags of an intermediate entry.
pub const TABLE_FLAGS: u64 = PRESENT | WRITABLE | USER;
/// The flags of a RAM leaf.
pub const RAM_FLAGS: u64 = PRESENT | WRITABLE | USER;
/// The flags of a device leaf.
pub const DEVICE_FLAGS: u64 = PRESENT | WRITABLE | USER | PWT | PCD;

/// The index of `gpfn` in the table of `level` (1 = leaf table).
fn index(gpfn: u64, level: u32) -> u64 {
    (gpfn >> (9 * (level - 1))) & 0x1ff
}

/// Why the nested tables could not be changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NptError {
    /// No frame for a table.
    #[error("no free frame for a nested page table")]
    NoFrame,
    /// The guest frame is beyond what four levels map.
    #[error("guest frame {0:#x} is beyond the nested tables' reach")]
    OutOfReach(u64),
    /// A table frame could not be written.
    #[error("a nested page-table frame could not be written")]
    Memory,
    /// An entry on the way is a large page (never made here).
    #[error("a large-page entry on the way to guest frame {0:#x}")]
    Large(u64),
}

/// The nested page tables of one domain.
#[derive(Clone, Debug)]
pub struct Npt {
    /// The root (what the VMCB's nCR3 holds).
    root: Mfn,
    /// Every table frame, the root first.
    tables: Vec<Mfn>,
}

impl Npt {
    /// Empty tables: a zeroed root from `alloc`.
    pub fn new<M: GuestMemory>(
        mem: &mut M,
        alloc: &mut impl FnMut() -> Option<Mfn>,
    ) -> Result<Npt, NptError> {
        let root = new_table(mem, alloc)?;
        Ok(Npt {
            root,
            tables: alloc::vec![root],
        })
    }

    /// Tables that already exist in memory (a live update's): `root` and
    /// every frame below it, `tables`.
    pub fn adopt(root: Mfn, tables: Vec<Mfn>) -> Npt {
        Npt { root, tables }
    }

    /// Tables mapping every RAM frame of `p2m` writable and its identity
    /// device ranges uncacheable.
    pub fn build<M: GuestMemory>(
        p2m: &P2m,
        mem: &mut M,
        alloc: &mut impl FnMut() -> Option<Mfn>,
    ) -> Result<Npt, NptError> {
        let mut npt = Npt::new(mem, alloc)?;
        for (gpfn, mfn) in p2m.entries() {
            npt.set(mem, alloc, gpfn, Mfn(mfn).addr() | RAM_FLAGS)?;
        }
        for r in p2m.identity() {
            for f in r.start.0..r.end() {
                npt.set(mem, alloc, Gpfn(f), Mfn(f).addr() | DEVICE_FLAGS)?;
            }
        }
        Ok(npt)
    }

    /// The root.
    pub fn root(&self) -> Mfn {
        self.root
    }

    /// Every table frame, the root first.
    pub fn tables(&self) -> &[Mfn] {
        &self.tables
    }

    /// The leaf table holding `gpfn`'s entry, if the tables reach it.
    fn leaf_table<M: GuestMemory>(&self, mem: &M, gpfn: u64) -> Result<Option<Mfn>, NptError> {
        if gpfn >> 36 != 0 {
            return Err(NptError::OutOfReach(gpfn));
        }
        let mut table = self.root;
        for level in [4, 3, 2] {
            let e = mem.read_table(table)[index(gpfn, level) as usize];
            if e & PRESENT == 0 {
                return Ok(None);
            }
            if e & HUGE != 0 {
                return Err(NptError::Large(gpfn));
            }
            table = Mfn::containing(e & ADDR_MASK);
        }
        Ok(Some(table))
    }

    /// The leaf entry of `gpfn` (0 where nothing is mapped).
    pub fn get<M: GuestMemory>(&self, mem: &M, gpfn: Gpfn) -> Result<u64, NptError> {
        Ok(match self.leaf_table(mem, gpfn.0)? {
            Some(t) => mem.read_table(t)[index(gpfn.0, 1) as usize],
            None => 0,
        })
    }

    /// Sets the leaf entry of `gpfn` to `entry`, making the tables on the
    /// way from `alloc`.
    pub fn set<M: GuestMemory>(
        &mut self,
        mem: &mut M,
        alloc: &mut impl FnMut() -> Option<Mfn>,
        gpfn: Gpfn,
        entry: u64,
    ) -> Result<(), NptError> {
        let g = gpfn.0;
        if g >> 36 != 0 {
            return Err(NptError::OutOfReach(g));
        }
        let mut table = self.root;
        for level in [4, 3, 2] {
            let slot = index(g, level);
            let e = mem.read_table(table)[slot as usize];
            if e & HUGE != 0 {
                return Err(NptError::Large(g));
            }
            table = if e & PRESENT != 0 {
                Mfn::containing(e & ADDR_MASK)
            } else {
                let t = new_table(mem, alloc)?;
                self.tables.push(t);
                write(mem, table, slot, t.addr() | TABLE_FLAGS)?;
                t
            };
        }
        write(mem, table, index(g, 1), entry)
    }
}

/// A zeroed table frame from `alloc`.
fn new_table<M: GuestMemory>(
    mem: &mut M,
    alloc: &mut impl FnMut() -> Option<Mfn>,
) -> Result<Mfn, NptError> {
    let t = alloc().ok_or(NptError::NoFrame)?;
    mem.zero(t.addr(), PAGE_SIZE)
        .map_err(|_| NptError::Memory)?;
    Ok(t)
}

/// Writes entry `slot` of `table`.
fn write<M: GuestMemory>(mem: &mut M, table: Mfn, slot: u64, value: u64) -> Result<(), NptError> {
    mem.write(table.addr() + 8 * slot, &value.to_le_bytes())
        .map_err(|_| NptError::Memory)
}
