//! A tiny hand-built machine for the error and behaviour tests.
//!
//! ```text
//! mfn   0..4    hv-reserved
//!       4..48   free RAM (domain frames come from here)
//!      48..56   live-update region
//!      56..64   free RAM
//!      64..80   not RAM; 70..72 is dom1's permitted MMIO
//! ```
//!
//! [`Tiny::with_trees`] gives dom1 a 4-level tree built with the operations
//! themselves (data 4..10, L1 10, L2 11, L3 12, L4 13 pinned and in CR3;
//! the L1 maps data 4 writable, data 5 read-only, its own L2 read-only and
//! MMIO 70) and dom2 one pinned L1 (frame 20) mapping its data 21.

use frame_ownership::pte::{self, Pte};
use frame_ownership::testkit::SimMemory;
use frame_ownership::{
    ops, DomainContext, FrameInfo, MachineLayout, OpError, PageTableReader, PageType, M2P_INVALID,
};
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange};

pub const D1: DomId = DomId(1);
pub const D2: DomId = DomId(2);
pub const FRAMES: usize = 64;

pub const L1: Mfn = Mfn(10);
pub const L2: Mfn = Mfn(11);
pub const L3: Mfn = Mfn(12);
pub const L4: Mfn = Mfn(13);
pub const D2_L1: Mfn = Mfn(20);

/// Entry flags of a leaf mapping.
pub const RO: u64 = pte::PRESENT | pte::USER;
pub const RW: u64 = pte::PRESENT | pte::USER | pte::WRITABLE;
/// Uncacheable (PWT and PCD, PAT clear): what a mapping of device memory
/// must be.
pub const UC: u64 = frame_ownership::MMIO_CACHE;

pub fn entry(target: Mfn, flags: u64) -> u64 {
    Pte::new(target, flags).0
}

/// Everything an operation may touch, for "a refused operation changes
/// nothing".
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    frametable: Vec<FrameInfo>,
    m2p: Vec<u64>,
    memory: Vec<[u64; 512]>,
}

#[derive(Debug)]
pub struct Tiny {
    pub ram: Vec<MfnRange>,
    pub region: MfnRange,
    pub reserved: Vec<MfnRange>,
    pub mmio1: Vec<MfnRange>,
    pub mmio2: Vec<MfnRange>,
    pub ft: Vec<FrameInfo>,
    pub m2p: Vec<u64>,
    pub mem: SimMemory,
}

impl Tiny {
    pub fn empty() -> Tiny {
        Tiny {
            ram: vec![MfnRange::new(Mfn(0), 64)],
            region: MfnRange::new(Mfn(48), 8),
            reserved: vec![MfnRange::new(Mfn(0), 4)],
            mmio1: vec![MfnRange::new(Mfn(70), 2)],
            mmio2: Vec::new(),
            ft: vec![FrameInfo::UNOWNED; FRAMES],
            m2p: vec![M2P_INVALID; FRAMES],
            mem: SimMemory::new(),
        }
    }

    pub fn with_trees() -> Tiny {
        let mut t = Tiny::empty();
        for m in 4..14 {
            t.claim(D1, Mfn(m), Gpfn(m)).unwrap();
        }
        // Bottom-up, both ways a guest may do it: pin an empty table and
        // fill it, or fill a data frame and pin it.
        t.pin(D1, L1, Level::L1).unwrap();
        t.update(D1, L1, 0, entry(Mfn(4), RW)).unwrap();
        t.update(D1, L1, 1, entry(Mfn(5), RO)).unwrap();
        t.update(D1, L1, 2, entry(L2, RO)).unwrap();
        t.update(D1, L1, 3, entry(Mfn(70), RW | UC)).unwrap();
        t.mem.table_mut(L2)[7] = entry(L1, RW);
        t.pin(D1, L2, Level::L2).unwrap();
        t.mem.table_mut(L3)[0] = entry(L2, RW);
        t.pin(D1, L3, Level::L3).unwrap();
        t.mem.table_mut(L4)[1] = entry(L3, RW);
        t.mem.table_mut(L4)[300] = u64::MAX; // hypervisor slot: never looked at
        t.pin(D1, L4, Level::L4).unwrap();
        // Only the root stays pinned; the parents keep the others typed.
        for m in [L1, L2, L3] {
            t.unpin(D1, m).unwrap();
        }
        t.cr3(D1, L4, None).unwrap();

        for m in 20..24 {
            t.claim(D2, Mfn(m), Gpfn(100 + m)).unwrap();
        }
        t.pin(D2, D2_L1, Level::L1).unwrap();
        t.update(D2, D2_L1, 0, entry(Mfn(21), RW)).unwrap();
        t
    }

    pub fn layout(&self) -> MachineLayout<'_> {
        MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap()
    }

    pub fn frame(&self, m: Mfn) -> FrameInfo {
        self.ft[m.0 as usize]
    }

    pub fn update(
        &mut self,
        d: DomId,
        table: Mfn,
        index: usize,
        value: u64,
    ) -> Result<(), OpError> {
        let layout = MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap();
        let mmio = if d == D1 { &self.mmio1 } else { &self.mmio2 };
        let dom = DomainContext::new(d, mmio).unwrap();
        ops::update_entry(
            &layout,
            &mut self.ft,
            &mut self.mem,
            &dom,
            table,
            index,
            value,
        )
    }

    pub fn pin(&mut self, d: DomId, m: Mfn, level: Level) -> Result<(), OpError> {
        let layout = MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap();
        let mmio = if d == D1 { &self.mmio1 } else { &self.mmio2 };
        let dom = DomainContext::new(d, mmio).unwrap();
        ops::pin(&layout, &mut self.ft, &self.mem, &dom, m, level)
    }

    pub fn unpin(&mut self, d: DomId, m: Mfn) -> Result<(), OpError> {
        ops::unpin(&mut self.ft, d, m)
    }

    pub fn release_table(&mut self, d: DomId, m: Mfn) -> Result<(), OpError> {
        let layout = MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap();
        let mmio = if d == D1 { &self.mmio1 } else { &self.mmio2 };
        let dom = DomainContext::new(d, mmio).unwrap();
        ops::release_table(&layout, &mut self.ft, &self.mem, &dom, m)
    }

    pub fn cr3(&mut self, d: DomId, new: Mfn, old: Option<Mfn>) -> Result<(), OpError> {
        ops::use_as_cr3(&mut self.ft, d, new, old)
    }

    pub fn claim(&mut self, d: DomId, m: Mfn, gpfn: Gpfn) -> Result<(), OpError> {
        let layout = MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap();
        let mmio = if d == D1 { &self.mmio1 } else { &self.mmio2 };
        let dom = DomainContext::new(d, mmio).unwrap();
        ops::claim_data(&layout, &mut self.ft, &mut self.m2p, &dom, m, gpfn)
    }

    pub fn claim_hvm(&mut self, d: DomId, m: Mfn, ty: PageType) -> Result<(), OpError> {
        let layout = MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap();
        let mmio = if d == D1 { &self.mmio1 } else { &self.mmio2 };
        let dom = DomainContext::new(d, mmio).unwrap();
        ops::claim_hvm_frame(&layout, &mut self.ft, &mut self.m2p, &dom, m, ty)
    }

    pub fn release_hvm(&mut self, d: DomId, m: Mfn, ty: PageType) -> Result<(), OpError> {
        ops::release_hvm_frame(&mut self.ft, &mut self.m2p, d, m, ty)
    }

    pub fn release_data(&mut self, d: DomId, m: Mfn) -> Result<(), OpError> {
        ops::release_data(&mut self.ft, &mut self.m2p, d, m)
    }

    pub fn release_domain(&mut self, d: DomId, p2m: &[u64]) -> Result<u64, OpError> {
        ops::release_domain(&mut self.ft, &mut self.m2p, d, p2m)
    }

    /// Domain `d`'s p2m, as the hypervisor keeps it: `p2m[gpfn]` is the mfn,
    /// `u64::MAX` for a gpfn without a frame.
    pub fn p2m(&self, d: DomId) -> Vec<u64> {
        let mut p2m = Vec::new();
        for (mfn, fi) in self.ft.iter().enumerate() {
            if fi.is_owned_by(d) {
                let gpfn = self.m2p[mfn] as usize;
                if p2m.len() <= gpfn {
                    p2m.resize(gpfn + 1, u64::MAX);
                }
                p2m[gpfn] = mfn as u64;
            }
        }
        p2m
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            frametable: self.ft.clone(),
            m2p: self.m2p.clone(),
            memory: (0..80).map(|m| *self.mem.read_table(Mfn(m))).collect(),
        }
    }

    /// Runs `op`, which must be refused with `want`; checks that nothing
    /// changed and that the message names `names` (each of them).
    pub fn refused(
        &mut self,
        want: OpError,
        names: &[&str],
        op: impl FnOnce(&mut Tiny) -> Result<(), OpError>,
    ) {
        let before = self.snapshot();
        let got = op(self);
        assert_eq!(got, Err(want));
        assert!(
            self.snapshot() == before,
            "refused operation changed the state ({want:?})"
        );
        let msg = want.to_string();
        for n in names {
            assert!(msg.contains(n), "message {msg:?} does not name {n:?}");
        }
    }
}
