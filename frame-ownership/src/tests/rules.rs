//! Each PV type rule on a hand-made lookup.

use std::collections::BTreeMap;

use handover_abi::RunKind;
use hvlu_types::{pte::Level, DomId, Mfn};

use crate::pte::{self, Pte};
use crate::rules::{check_entry, EntryEffect, EntryError, EntryRef, FrameClass, FrameLookup};
use crate::PageType;

/// A hand-made lookup: frames by class.
struct MapLookup(BTreeMap<u64, FrameClass>);

impl FrameLookup for MapLookup {
    fn classify(&self, mfn: Mfn) -> FrameClass {
        self.0
            .get(&mfn.0)
            .copied()
            .unwrap_or(FrameClass::ForbiddenMmio)
    }
}

const DATA: u64 = 10;
const L1T: u64 = 11;
const L2T: u64 = 12;
const L3T: u64 = 13;
const L4T: u64 = 14;
const OTHER: u64 = 20;
const FREE: u64 = 21;
const REGION: u64 = 22;
const RESERVED: u64 = 23;
const MMIO: u64 = 30;

fn lookup() -> MapLookup {
    MapLookup(
        [
            (DATA, FrameClass::Own(RunKind::Data)),
            (L1T, FrameClass::Own(RunKind::L1)),
            (L2T, FrameClass::Own(RunKind::L2)),
            (L3T, FrameClass::Own(RunKind::L3)),
            (L4T, FrameClass::Own(RunKind::L4)),
            (OTHER, FrameClass::OtherDomain(DomId(9))),
            (FREE, FrameClass::Unowned),
            (REGION, FrameClass::Region),
            (RESERVED, FrameClass::HvReserved),
            (MMIO, FrameClass::PermittedMmio),
        ]
        .into_iter()
        .collect(),
    )
}

pub(super) fn at(level: Level, index: u16) -> EntryRef {
    EntryRef {
        domain: DomId(1),
        table: Mfn(100),
        level,
        index,
    }
}

fn e(mfn: u64, flags: u64) -> u64 {
    Pte::new(Mfn(mfn), flags).0
}

const P: u64 = pte::PRESENT;
const RW: u64 = pte::WRITABLE;

#[test]
fn rule_non_present_entries_count_nothing() {
    for level in Level::ALL {
        for v in [0, !P, e(OTHER, RW | pte::HUGE)] {
            assert_eq!(
                check_entry(&lookup(), at(level, 0), v),
                Ok(EntryEffect::NotPresent)
            );
        }
    }
}

#[test]
fn rule_hv_slots_are_skipped() {
    for i in [256u16, 300, 511] {
        assert_eq!(
            check_entry(&lookup(), at(Level::L4, i), u64::MAX),
            Ok(EntryEffect::HvSlot)
        );
    }
    // Slot 255 is the guest's.
    assert!(check_entry(&lookup(), at(Level::L4, 255), e(OTHER, P)).is_err());
    // Only L4s have hypervisor slots.
    assert!(check_entry(&lookup(), at(Level::L3, 300), e(OTHER, P)).is_err());
}

#[test]
fn rule_l1_data_mappings() {
    let l = lookup();
    assert_eq!(
        check_entry(&l, at(Level::L1, 0), e(DATA, P)),
        Ok(EntryEffect::Frame {
            target: Mfn(DATA),
            typed: None
        })
    );
    assert_eq!(
        check_entry(&l, at(Level::L1, 0), e(DATA, P | RW | pte::HUGE)),
        Ok(EntryEffect::Frame {
            target: Mfn(DATA),
            typed: Some(PageType::Writable)
        })
    );
}

#[test]
fn rule_l1_read_only_table_mappings() {
    let l = lookup();
    for (t, kind) in [
        (L1T, RunKind::L1),
        (L2T, RunKind::L2),
        (L3T, RunKind::L3),
        (L4T, RunKind::L4),
    ] {
        assert_eq!(
            check_entry(&l, at(Level::L1, 0), e(t, P)),
            Ok(EntryEffect::Frame {
                target: Mfn(t),
                typed: None
            })
        );
        assert_eq!(
            check_entry(&l, at(Level::L1, 7), e(t, P | RW)),
            Err(EntryError::WritablePageTable {
                target: Mfn(t),
                kind
            })
        );
    }
}

/// PWT and PCD: what an L1 entry of device memory must carry.
const UC: u64 = pte::WRITE_THROUGH | pte::CACHE_DISABLE;

#[test]
fn rule_mmio() {
    let l = lookup();
    assert_eq!(
        check_entry(&l, at(Level::L1, 0), e(MMIO, P | RW | UC)),
        Ok(EntryEffect::Mmio(Mfn(MMIO)))
    );
    assert_eq!(
        check_entry(
            &l,
            at(Level::L1, 0),
            e(MMIO, P | UC | pte::NO_EXECUTE | pte::USER)
        ),
        Ok(EntryEffect::Mmio(Mfn(MMIO)))
    );
    assert_eq!(
        check_entry(&l, at(Level::L1, 0), e(999, P | UC)),
        Err(EntryError::MmioNotPermitted { target: Mfn(999) })
    );
    assert_eq!(
        check_entry(&l, at(Level::L1, 0), e(999, P)),
        Err(EntryError::MmioNotPermitted { target: Mfn(999) })
    );
    assert_eq!(
        check_entry(&l, at(Level::L2, 0), e(MMIO, P)),
        Err(EntryError::MmioNotPermitted { target: Mfn(MMIO) })
    );
}

/// Rule 7's memory type: every combination of PWT, PCD and PAT but
/// PWT | PCD (PAT entry 3, UC) maps device memory cacheable, or
/// write-combined, or write-through: refused, naming the entry. RAM frames
/// take any memory type.
#[test]
fn rule_mmio_must_be_uncacheable() {
    let l = lookup();
    for bits in 0..8u64 {
        let flags = (if bits & 1 != 0 { pte::WRITE_THROUGH } else { 0 })
            | (if bits & 2 != 0 { pte::CACHE_DISABLE } else { 0 })
            | (if bits & 4 != 0 { pte::HUGE } else { 0 });
        let entry = e(MMIO, P | RW | flags);
        let want = if flags == UC {
            Ok(EntryEffect::Mmio(Mfn(MMIO)))
        } else {
            Err(EntryError::MmioCacheable {
                target: Mfn(MMIO),
                entry,
            })
        };
        assert_eq!(check_entry(&l, at(Level::L1, 3), entry), want, "{flags:#x}");
        assert!(
            check_entry(&l, at(Level::L1, 3), e(DATA, P | RW | flags)).is_ok(),
            "RAM takes any memory type: {flags:#x}"
        );
    }
    // Permission is checked first: a frame outside the ranges is refused
    // for that, whatever its memory type.
    assert_eq!(
        check_entry(&l, at(Level::L1, 0), e(999, P)),
        Err(EntryError::MmioNotPermitted { target: Mfn(999) })
    );
}

#[test]
fn rule_foreign_targets() {
    let l = lookup();
    for level in Level::ALL {
        for (t, found) in [
            (OTHER, FrameClass::OtherDomain(DomId(9))),
            (FREE, FrameClass::Unowned),
            (REGION, FrameClass::Region),
            (RESERVED, FrameClass::HvReserved),
        ] {
            assert_eq!(
                check_entry(&l, at(level, 1), e(t, P)),
                Err(EntryError::ForeignTarget {
                    target: Mfn(t),
                    found
                })
            );
        }
    }
}

#[test]
fn rule_upper_levels_point_one_level_down() {
    let l = lookup();
    let tables = [
        (DATA, RunKind::Data),
        (L1T, RunKind::L1),
        (L2T, RunKind::L2),
        (L3T, RunKind::L3),
        (L4T, RunKind::L4),
    ];
    for level in [Level::L2, Level::L3, Level::L4] {
        let want = level.below().unwrap();
        for (t, kind) in tables {
            for flags in [P, P | RW] {
                let got = check_entry(&l, at(level, 3), e(t, flags));
                if kind == RunKind::of_level(want) {
                    assert_eq!(
                        got,
                        Ok(EntryEffect::Frame {
                            target: Mfn(t),
                            typed: Some(PageType::of_level(want))
                        })
                    );
                } else {
                    assert_eq!(
                        got,
                        Err(EntryError::TypeMismatch {
                            target: Mfn(t),
                            expected: RunKind::of_level(want),
                            found: kind
                        })
                    );
                }
            }
        }
    }
}

#[test]
fn rule_superpages_refused_above_l1() {
    let l = lookup();
    for (level, t) in [(Level::L2, L1T), (Level::L3, L2T), (Level::L4, L3T)] {
        let v = e(t, P | pte::HUGE);
        assert_eq!(
            check_entry(&l, at(level, 0), v),
            Err(EntryError::Superpage { entry: v })
        );
    }
}
