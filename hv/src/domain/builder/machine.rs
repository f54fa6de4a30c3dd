//! The builder's guest memory on this machine: the direct map
//! (`arch::phys`), the hypervisor's L4 slots (`arch::paging`) and the heap.

use frame_ownership::PageTableReader;
use hvlu_types::Mfn;

use super::GuestMemory;
use crate::arch::{paging, phys};
use crate::mm::heap;

/// Guest frames through the direct map.
#[derive(Debug)]
pub struct PhysMemory(phys::TableReader);

impl Default for PhysMemory {
    /// The direct map.
    fn default() -> PhysMemory {
        PhysMemory(phys::table_reader())
    }
}

impl PageTableReader for PhysMemory {
    fn read_table(&self, mfn: Mfn) -> &[u64; 512] {
        self.0.read_table(mfn)
    }
}

impl GuestMemory for PhysMemory {
    type Error = phys::PhysError;

    fn write(&mut self, maddr: u64, bytes: &[u8]) -> Result<(), phys::PhysError> {
        phys::write(maddr, bytes)
    }

    fn zero(&mut self, maddr: u64, len: u64) -> Result<(), phys::PhysError> {
        phys::zero(maddr, len)
    }

    fn install_hv_slots(&mut self, l4: Mfn) -> Result<(), phys::PhysError> {
        paging::install_hv_slots(l4.addr())
    }

    fn heap_free(&self) -> u64 {
        heap::free()
    }
}
