//! A deliberately simple, multi-pass reference for the frametable: it exists
//! only here, shares no code with the pass beyond the `FrameInfo`
//! constructor (and the PTE bit names of `hvlu_types::pte`), and keeps its
//! state in maps rather than in a frametable.
//!
//! Pass 1 sets owners and gpfns from the runs. Pass 2 sets types from the
//! run kinds. Pass 3 visits every page table of every domain and counts each
//! present entry on its target. Pass 4 adds pins and CR3s. Only then is a
//! frametable assembled. It assumes a valid machine (the generator's).

use std::collections::BTreeMap;

use frame_ownership::pte;
use frame_ownership::testkit::Machine;
use frame_ownership::{FrameFlags, FrameInfo, PageType, M2P_INVALID};
use handover_abi::RunKind;
use hvlu_types::DomId;
use hvlu_types::PAGE_SHIFT;

#[derive(Clone, Copy, Debug)]
struct Owned {
    domain: DomId,
    kind: RunKind,
    gpfn: u64,
}

#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    writable: bool,
    type_count: u32,
    ref_count: u32,
    pinned: bool,
}

/// The expected frametable and M2P, and how many MMIO entries there are.
pub struct Expected {
    pub frametable: Vec<FrameInfo>,
    pub m2p: Vec<u64>,
    pub mmio_entries: u64,
    pub tables: u64,
}

pub fn reference(m: &Machine) -> Expected {
    // Pass 1: owners and gpfns.
    let mut owned: BTreeMap<u64, Owned> = BTreeMap::new();
    for d in &m.domains {
        for r in &d.runs {
            for k in 0..r.count {
                let prev = owned.insert(
                    r.first_mfn.0 + k,
                    Owned {
                        domain: d.id,
                        kind: r.kind,
                        gpfn: r.first_gpfn.0.wrapping_add(k),
                    },
                );
                assert!(prev.is_none(), "generator claimed a frame twice");
            }
        }
    }
    // Pass 2: types, and the allocation reference.
    let mut counts: BTreeMap<u64, Counts> = owned
        .keys()
        .map(|&mfn| {
            (
                mfn,
                Counts {
                    ref_count: 1,
                    ..Counts::default()
                },
            )
        })
        .collect();
    // Pass 3: every entry of every table.
    let mut mmio_entries = 0;
    let mut tables = 0;
    for d in &m.domains {
        // An HVM domain's nested tables: every P2m frame is reached once
        // (the root by the nCR3), and nothing else is counted.
        for r in d.runs.iter().filter(|r| r.kind == RunKind::P2m) {
            for k in 0..r.count {
                let c = counts.get_mut(&(r.first_mfn.0 + k)).unwrap();
                c.type_count += 1;
                c.ref_count += 1;
            }
        }
        for r in d.runs.iter().filter(|r| r.kind.is_page_table()) {
            // The level as a number: this reference counts in plain integers.
            let level = r.kind.level().unwrap().number();
            for k in 0..r.count {
                tables += 1;
                let table = m.memory.table(hvlu_types::Mfn(r.first_mfn.0 + k));
                let Some(table) = table else { continue };
                let slots = if level == 4 { 256 } else { 512 };
                for &e in &table[..slots] {
                    if e & pte::PRESENT == 0 {
                        continue;
                    }
                    let target = (e & pte::ADDR_MASK) >> PAGE_SHIFT;
                    match owned.get(&target) {
                        Some(o) if o.domain == d.id => {
                            let c = counts.get_mut(&target).unwrap();
                            c.ref_count += 1;
                            if level > 1 {
                                assert_eq!(o.kind.level().map(|l| l.number()), Some(level - 1));
                                c.type_count += 1;
                            } else if e & pte::WRITABLE != 0 {
                                assert_eq!(o.kind, RunKind::Data);
                                c.type_count += 1;
                                c.writable = true;
                            }
                        }
                        Some(_) => panic!("generator made a cross-domain entry"),
                        None => {
                            assert_eq!(level, 1, "non-owned target above L1");
                            assert!(m
                                .devices
                                .iter()
                                .any(|r| r.contains(hvlu_types::Mfn(target))));
                            mmio_entries += 1;
                        }
                    }
                }
            }
        }
        // Pass 4: pins and CR3s.
        for &(mfn, _) in &d.pinned {
            let c = counts.get_mut(&mfn.0).unwrap();
            c.type_count += 1;
            c.ref_count += 1;
            c.pinned = true;
        }
        // An HVM domain's vCPUs take no reference; its identity leaves
        // map device memory (counted as MMIO entries).
        if let Some(h) = &d.hvm {
            mmio_entries += h.identity.iter().map(|r| r.count).sum::<u64>();
            continue;
        }
        for &mfn in &d.vcpu_cr3 {
            let c = counts.get_mut(&mfn.0).unwrap();
            c.type_count += 1;
            c.ref_count += 1;
        }
    }

    let mut frametable = vec![FrameInfo::UNOWNED; m.frametable_len];
    let mut m2p = vec![M2P_INVALID; m.frametable_len];
    for (&mfn, o) in &owned {
        let c = counts[&mfn];
        let page_type = match o.kind {
            RunKind::Data if c.writable => PageType::Writable,
            RunKind::Data => PageType::None,
            RunKind::L1 => PageType::L1,
            RunKind::L2 => PageType::L2,
            RunKind::L3 => PageType::L3,
            RunKind::L4 => PageType::L4,
            RunKind::P2m => PageType::P2m,
            RunKind::LogDirty => PageType::LogDirty,
        };
        let flags = if c.pinned {
            FrameFlags::PINNED
        } else {
            FrameFlags::EMPTY
        };
        frametable[mfn as usize] =
            FrameInfo::new(Some(o.domain), page_type, c.type_count, c.ref_count, flags);
        m2p[mfn as usize] = if o.kind.has_guest_frames() {
            o.gpfn
        } else {
            M2P_INVALID
        };
    }
    Expected {
        frametable,
        m2p,
        mmio_entries,
        tables,
    }
}
