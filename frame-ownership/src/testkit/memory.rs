//! Simulated physical memory: only page-table frames are backed.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;

use hvlu_types::Mfn;

use crate::ops::PageTableMemory;
use crate::pass::PageTableReader;
use crate::rules::ENTRIES_PER_TABLE;

/// One 4 KiB page table.
pub type Table = [u64; ENTRIES_PER_TABLE];

static ZERO_TABLE: Table = [0; ENTRIES_PER_TABLE];

/// Physical memory where only page-table frames have contents; reading any
/// other frame yields zeros (an all-non-present table).
///
/// Tables are kept sorted by mfn; a lookup first tries the frame after the
/// previous hit, so reading tables in mfn order (what the pass does within a
/// run) costs O(1) per table, close to a direct map.
#[derive(Debug, Default)]
pub struct SimMemory {
    tables: Vec<(u64, Box<Table>)>,
    hint: Cell<usize>,
}

impl SimMemory {
    /// Empty memory.
    pub fn new() -> SimMemory {
        SimMemory::default()
    }

    fn position(&self, mfn: u64) -> Result<usize, usize> {
        let h = self.hint.get();
        if let Some((m, _)) = self.tables.get(h) {
            if *m == mfn {
                return Ok(h);
            }
        }
        if let Some((m, _)) = self.tables.get(h + 1) {
            if *m == mfn {
                self.hint.set(h + 1);
                return Ok(h + 1);
            }
        }
        let r = self.tables.binary_search_by_key(&mfn, |t| t.0);
        if let Ok(i) = r {
            self.hint.set(i);
        }
        r
    }

    /// The table at `mfn`, creating a zeroed one if needed.
    pub fn table_mut(&mut self, mfn: Mfn) -> &mut Table {
        let i = match self.position(mfn.0) {
            Ok(i) => i,
            Err(i) => {
                self.tables
                    .insert(i, (mfn.0, Box::new([0; ENTRIES_PER_TABLE])));
                i
            }
        };
        &mut self.tables[i].1
    }

    /// The table at `mfn`, if that frame is backed.
    pub fn table(&self, mfn: Mfn) -> Option<&Table> {
        self.position(mfn.0).ok().map(|i| &*self.tables[i].1)
    }

    /// Appends a table at `mfn`, which must be above every backed frame
    /// (fast path for builders that allocate in order).
    pub fn push(&mut self, mfn: Mfn, table: Box<Table>) {
        assert!(
            self.tables.last().is_none_or(|t| t.0 < mfn.0),
            "SimMemory::push out of order"
        );
        self.tables.push((mfn.0, table));
    }

    /// Number of backed frames.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether no frame is backed.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl PageTableReader for SimMemory {
    fn read_table(&self, mfn: Mfn) -> &Table {
        self.table(mfn).unwrap_or(&ZERO_TABLE)
    }
}

impl PageTableMemory for SimMemory {
    fn write_entry(&mut self, table: Mfn, index: usize, value: u64) {
        self.table_mut(table)[index] = value;
    }
}
