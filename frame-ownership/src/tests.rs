//! Unit tests: the entry layout, the counting primitives, the PTE format,
//! each type rule on a hand-made lookup, the layout lookups, the digest.
//! The pass itself is tested against simulated machines in `tests/pass/`.

use std::collections::BTreeMap;
use std::string::ToString;

use handover_abi::{DomId, Mfn, MfnRange, RunKind};

use crate::layout::MachineLayout;
use crate::pte::{self, Pte};
use crate::rules::{check_entry, EntryEffect, EntryRef, FrameClass, FrameLookup, PtLevel};
use crate::{frametable_digest, CountError, Digest, Error, FrameFlags, FrameInfo, PageType};

// ---------------------------------------------------------------- FrameInfo

#[test]
fn frame_info_is_16_bytes_and_zero_means_unowned() {
    assert_eq!(core::mem::size_of::<FrameInfo>(), 16);
    let z = FrameInfo::default();
    assert_eq!(z, FrameInfo::UNOWNED);
    assert_eq!(z.owner(), None);
    assert!(!z.is_owned());
    assert_eq!(z.page_type(), Some(PageType::None));
    assert_eq!((z.type_count(), z.ref_count()), (0, 0));
}

#[test]
fn owner_encoding_distinguishes_dom0_from_none_and_covers_every_id() {
    for id in [0u16, 1, 0x7FF0, 0xFFFE, 0xFFFF] {
        let f = FrameInfo::new(Some(DomId(id)), PageType::None, 0, 1, FrameFlags::EMPTY);
        assert_eq!(f.owner(), Some(DomId(id)));
        assert!(f.is_owned_by(DomId(id)));
        assert!(f.is_owned());
    }
    let dom0 = FrameInfo::new(Some(DomId::DOM0), PageType::None, 0, 1, FrameFlags::EMPTY);
    assert_ne!(dom0, FrameInfo::UNOWNED);
    assert!(!FrameInfo::UNOWNED.is_owned_by(DomId::DOM0));
}

#[test]
fn page_type_bytes_are_stable() {
    let all = [
        (PageType::None, 0),
        (PageType::Writable, 1),
        (PageType::L1, 2),
        (PageType::L2, 3),
        (PageType::L3, 4),
        (PageType::L4, 5),
    ];
    for (t, b) in all {
        assert_eq!(t.to_byte(), b);
        assert_eq!(PageType::from_byte(b), Some(t));
    }
    // 6 is reserved for P2m (HVM), everything above is illegal.
    for b in 6..=255 {
        assert_eq!(PageType::from_byte(b), None);
    }
}

#[test]
fn flags_reject_reserved_bits() {
    assert_eq!(FrameFlags::from_bits(1), Some(FrameFlags::PINNED));
    for b in 2..=255u8 {
        assert_eq!(FrameFlags::from_bits(b), None);
    }
    let f = FrameFlags::EMPTY.union(FrameFlags::PINNED);
    assert!(f.contains(FrameFlags::PINNED));
    assert_eq!(f.difference(FrameFlags::PINNED), FrameFlags::EMPTY);
}

#[test]
fn claim_keeps_counts_taken_before() {
    let mut f = FrameInfo::UNOWNED;
    // Two read-only L1 mappings of a table not yet claimed.
    f.get_ref(None).unwrap();
    f.get_ref(None).unwrap();
    f.claim(DomId(3), RunKind::L2).unwrap();
    assert_eq!(f.owner(), Some(DomId(3)));
    assert_eq!(f.page_type(), Some(PageType::L2));
    assert_eq!((f.type_count(), f.ref_count()), (0, 3));
}

#[test]
fn writable_type_comes_and_goes_with_writable_mappings() {
    let mut f = FrameInfo::UNOWNED;
    f.claim(DomId(1), RunKind::Data).unwrap();
    f.get_ref(None).unwrap();
    assert_eq!(f.page_type(), Some(PageType::None));
    f.get_ref(Some(PageType::Writable)).unwrap();
    f.get_ref(Some(PageType::Writable)).unwrap();
    assert_eq!(f.page_type(), Some(PageType::Writable));
    assert_eq!((f.type_count(), f.ref_count()), (2, 4));
    f.put_ref(Some(PageType::Writable)).unwrap();
    assert_eq!(f.page_type(), Some(PageType::Writable));
    f.put_ref(Some(PageType::Writable)).unwrap();
    assert_eq!(f.page_type(), Some(PageType::None));
    assert_eq!((f.type_count(), f.ref_count()), (0, 2));
    // A type reference of a type the frame does not have cannot be dropped.
    assert_eq!(
        f.put_ref(Some(PageType::Writable)),
        Err(CountError::Underflow)
    );
    f.put_ref(None).unwrap();
    f.put_ref(None).unwrap();
    assert_eq!(f.put_ref(None), Err(CountError::Underflow));
}

#[test]
fn counts_never_wrap() {
    let mut f = FrameInfo::new(Some(DomId(1)), PageType::L1, 0, u32::MAX, FrameFlags::EMPTY);
    let before = f;
    assert_eq!(f.get_ref(Some(PageType::L1)), Err(CountError::Overflow));
    assert_eq!(f, before, "a failed get_ref changes nothing");
    let mut g = FrameInfo::new(Some(DomId(1)), PageType::L1, u32::MAX, 5, FrameFlags::EMPTY);
    let before = g;
    assert_eq!(g.get_ref(Some(PageType::L1)), Err(CountError::Overflow));
    assert_eq!(g, before);
    let mut h = FrameInfo::new(None, PageType::None, 0, u32::MAX, FrameFlags::EMPTY);
    assert_eq!(h.claim(DomId(0), RunKind::Data), Err(CountError::Overflow));
}

#[test]
fn pinned_flag() {
    let mut f = FrameInfo::new(Some(DomId(1)), PageType::L4, 0, 1, FrameFlags::EMPTY);
    f.set_pinned(true);
    assert!(f.is_pinned());
    assert_eq!(f.flags(), FrameFlags::PINNED);
    f.set_pinned(false);
    assert!(!f.is_pinned());
}

#[test]
fn debug_shows_illegal_values() {
    let s = std::format!("{:?}", FrameInfo::UNOWNED);
    assert!(s.contains("none"), "{s}");
}

// ---------------------------------------------------------------- PTE

#[test]
fn pte_fields() {
    let p = Pte::new(
        Mfn(0xF_FFFF_FFFF),
        pte::PRESENT | pte::WRITABLE | pte::NO_EXECUTE,
    );
    assert!(p.is_present());
    assert!(p.is_writable());
    assert!(!p.has_huge_bit());
    assert_eq!(p.mfn(), Mfn(0xF_FFFF_FFFF));
    assert_eq!(p.0 >> 63, 1);
    // Address bits above 51 are not part of the frame number.
    assert_eq!(Pte(0xFFF0_0000_0000_1001).mfn(), Mfn(1));
    assert!(Pte(pte::HUGE).has_huge_bit());
}

// ---------------------------------------------------------------- rules

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

fn at(level: PtLevel, index: u16) -> EntryRef {
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
    for level in [PtLevel::L1, PtLevel::L2, PtLevel::L3, PtLevel::L4] {
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
            check_entry(&lookup(), at(PtLevel::L4, i), u64::MAX),
            Ok(EntryEffect::HvSlot)
        );
    }
    // Slot 255 is the guest's.
    assert!(check_entry(&lookup(), at(PtLevel::L4, 255), e(OTHER, P)).is_err());
    // Only L4s have hypervisor slots.
    assert!(check_entry(&lookup(), at(PtLevel::L3, 300), e(OTHER, P)).is_err());
}

#[test]
fn rule_l1_data_mappings() {
    let l = lookup();
    assert_eq!(
        check_entry(&l, at(PtLevel::L1, 0), e(DATA, P)),
        Ok(EntryEffect::Frame {
            target: Mfn(DATA),
            typed: None
        })
    );
    assert_eq!(
        check_entry(&l, at(PtLevel::L1, 0), e(DATA, P | RW | pte::HUGE)),
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
            check_entry(&l, at(PtLevel::L1, 0), e(t, P)),
            Ok(EntryEffect::Frame {
                target: Mfn(t),
                typed: None
            })
        );
        assert_eq!(
            check_entry(&l, at(PtLevel::L1, 7), e(t, P | RW)),
            Err(Error::WritablePageTable {
                at: at(PtLevel::L1, 7),
                target: Mfn(t),
                kind
            })
        );
    }
}

#[test]
fn rule_mmio() {
    let l = lookup();
    assert_eq!(
        check_entry(&l, at(PtLevel::L1, 0), e(MMIO, P | RW)),
        Ok(EntryEffect::Mmio(Mfn(MMIO)))
    );
    assert_eq!(
        check_entry(&l, at(PtLevel::L1, 0), e(999, P)),
        Err(Error::MmioNotPermitted {
            at: at(PtLevel::L1, 0),
            target: Mfn(999)
        })
    );
    assert_eq!(
        check_entry(&l, at(PtLevel::L2, 0), e(MMIO, P)),
        Err(Error::MmioNotPermitted {
            at: at(PtLevel::L2, 0),
            target: Mfn(MMIO)
        })
    );
}

#[test]
fn rule_foreign_targets() {
    let l = lookup();
    for level in [PtLevel::L1, PtLevel::L2, PtLevel::L3, PtLevel::L4] {
        for (t, found) in [
            (OTHER, FrameClass::OtherDomain(DomId(9))),
            (FREE, FrameClass::Unowned),
            (REGION, FrameClass::Region),
            (RESERVED, FrameClass::HvReserved),
        ] {
            assert_eq!(
                check_entry(&l, at(level, 1), e(t, P)),
                Err(Error::ForeignTarget {
                    at: at(level, 1),
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
    for level in [PtLevel::L2, PtLevel::L3, PtLevel::L4] {
        let want = level.below().unwrap();
        for (t, kind) in tables {
            for flags in [P, P | RW] {
                let got = check_entry(&l, at(level, 3), e(t, flags));
                if kind == want.run_kind() {
                    assert_eq!(
                        got,
                        Ok(EntryEffect::Frame {
                            target: Mfn(t),
                            typed: Some(want.page_type())
                        })
                    );
                } else {
                    assert_eq!(
                        got,
                        Err(Error::TypeMismatch {
                            at: at(level, 3),
                            target: Mfn(t),
                            expected: want.run_kind(),
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
    for (level, t) in [(PtLevel::L2, L1T), (PtLevel::L3, L2T), (PtLevel::L4, L3T)] {
        let v = e(t, P | pte::HUGE);
        assert_eq!(
            check_entry(&l, at(level, 0), v),
            Err(Error::Superpage {
                at: at(level, 0),
                entry: v
            })
        );
    }
}

// ---------------------------------------------------------------- layout

#[test]
fn layout_lookups() {
    let ram = [
        MfnRange::new(Mfn(0), 10),
        MfnRange::new(Mfn(10), 0),
        MfnRange::new(Mfn(10), 10),
        MfnRange::new(Mfn(30), 10),
    ];
    let reserved = [MfnRange::new(Mfn(2), 2), MfnRange::new(Mfn(34), 1)];
    let l = MachineLayout::new(&ram, MfnRange::new(Mfn(15), 3), &reserved).unwrap();
    assert!(l.is_ram(Mfn(0)) && l.is_ram(Mfn(19)) && !l.is_ram(Mfn(20)) && l.is_ram(Mfn(39)));
    assert!(!l.is_ram(Mfn(40)));
    assert_eq!(l.first_non_ram(MfnRange::new(Mfn(5), 10)), None);
    assert_eq!(l.first_non_ram(MfnRange::new(Mfn(5), 20)), Some(Mfn(20)));
    assert_eq!(l.first_non_ram(MfnRange::new(Mfn(25), 2)), Some(Mfn(25)));
    assert_eq!(l.first_in_region(MfnRange::new(Mfn(10), 6)), Some(Mfn(15)));
    assert_eq!(l.first_in_region(MfnRange::new(Mfn(16), 6)), Some(Mfn(16)));
    assert_eq!(l.first_in_region(MfnRange::new(Mfn(18), 6)), None);
    assert_eq!(l.first_hv_reserved(MfnRange::new(Mfn(0), 3)), Some(Mfn(2)));
    assert_eq!(l.first_hv_reserved(MfnRange::new(Mfn(4), 30)), None);
    assert_eq!(
        l.first_hv_reserved(MfnRange::new(Mfn(4), 31)),
        Some(Mfn(34))
    );
    assert!(l.is_hv_reserved(Mfn(3)) && !l.is_hv_reserved(Mfn(4)));
    assert_eq!(l.ram_end(), 40);
}

#[test]
fn layout_refuses_unsorted_lists() {
    let ram = [MfnRange::new(Mfn(10), 10), MfnRange::new(Mfn(15), 10)];
    assert_eq!(
        MachineLayout::new(&ram, MfnRange::default(), &[]).unwrap_err(),
        Error::Unsorted {
            list: crate::RangeList::Ram,
            index: 1
        }
    );
}

// ---------------------------------------------------------------- digest

#[test]
fn digest_covers_every_field_of_owned_frames_only() {
    let base = FrameInfo::new(Some(DomId(2)), PageType::L1, 3, 5, FrameFlags::PINNED);
    let mut ft = std::vec![FrameInfo::UNOWNED; 8];
    let mut m2p = std::vec![crate::M2P_INVALID; 8];
    ft[3] = base;
    m2p[3] = 77;
    let d0 = frametable_digest(&ft, &m2p);
    let variants = [
        FrameInfo::new(Some(DomId(3)), PageType::L1, 3, 5, FrameFlags::PINNED),
        FrameInfo::new(Some(DomId(2)), PageType::L2, 3, 5, FrameFlags::PINNED),
        FrameInfo::new(Some(DomId(2)), PageType::L1, 4, 5, FrameFlags::PINNED),
        FrameInfo::new(Some(DomId(2)), PageType::L1, 3, 6, FrameFlags::PINNED),
        FrameInfo::new(Some(DomId(2)), PageType::L1, 3, 5, FrameFlags::EMPTY),
    ];
    for v in variants {
        let mut ft2 = ft.clone();
        ft2[3] = v;
        assert_ne!(frametable_digest(&ft2, &m2p), d0, "{v:?}");
    }
    let mut m2 = m2p.clone();
    m2[3] = 78;
    assert_ne!(frametable_digest(&ft, &m2), d0);
    // The same frame at another mfn.
    let mut ft3 = std::vec![FrameInfo::UNOWNED; 8];
    ft3[4] = base;
    let mut m3 = std::vec![crate::M2P_INVALID; 8];
    m3[4] = 77;
    assert_ne!(frametable_digest(&ft3, &m3), d0);
    // Unowned frames and their M2P entries are not covered.
    let mut m4 = m2p.clone();
    m4[5] = 1234;
    assert_eq!(frametable_digest(&ft, &m4), d0);
    // Empty tables of any length agree.
    assert_eq!(frametable_digest(&[], &[]), Digest::new().finish());
    assert_eq!(
        frametable_digest(&[FrameInfo::UNOWNED; 4], &[0; 4]),
        Digest::new().finish()
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn every_error_message_is_specific() {
    let at1 = at(PtLevel::L1, 5);
    let errors = [
        Error::Unsorted {
            list: crate::RangeList::Mmio(DomId(4)),
            index: 2,
        },
        Error::BeyondFrametable {
            mfn: Mfn(0xabc),
            frametable_len: 10,
            m2p_len: 10,
        },
        Error::DuplicateDomain { domain: DomId(4) },
        Error::RunsNotBottomUp {
            domain: DomId(4),
            run: 2,
            kind: RunKind::Data,
            previous: RunKind::L1,
        },
        Error::OutsideRam {
            domain: DomId(4),
            run: 1,
            mfn: Mfn(0xabc),
        },
        Error::InRegion {
            domain: DomId(4),
            run: 1,
            mfn: Mfn(0xabc),
        },
        Error::HvReserved {
            domain: DomId(4),
            run: 1,
            mfn: Mfn(0xabc),
        },
        Error::OwnedTwice {
            mfn: Mfn(0xabc),
            first: DomId(4),
            second: DomId(5),
        },
        Error::GpfnOutOfRange {
            domain: DomId(4),
            run: 1,
            mfn: Mfn(0xabc),
        },
        Error::ForeignTarget {
            at: at1,
            target: Mfn(0xabc),
            found: FrameClass::OtherDomain(DomId(4)),
        },
        Error::TypeMismatch {
            at: at(PtLevel::L2, 5),
            target: Mfn(0xabc),
            expected: RunKind::L1,
            found: RunKind::Data,
        },
        Error::WritablePageTable {
            at: at1,
            target: Mfn(0xabc),
            kind: RunKind::L2,
        },
        Error::MmioNotPermitted {
            at: at1,
            target: Mfn(0xabc),
        },
        Error::Superpage {
            at: at(PtLevel::L2, 5),
            entry: 0x8000_0000_00ab_c081,
        },
        Error::BadPin {
            domain: DomId(4),
            mfn: Mfn(0xabc),
            pinned_as: RunKind::L4,
            found: FrameClass::Own(RunKind::L3),
        },
        Error::PinnedTwice {
            domain: DomId(4),
            mfn: Mfn(0xabc),
        },
        Error::BadCr3 {
            domain: DomId(4),
            vcpu: 1,
            mfn: Mfn(0xabc),
            found: FrameClass::Unowned,
        },
        Error::CountOverflow {
            mfn: Mfn(0xabc),
            domain: DomId(4),
        },
    ];
    for err in errors {
        let msg = err.to_string();
        if !matches!(err, Error::BeyondFrametable { .. }) {
            assert!(msg.contains("dom4") || msg.contains("dom1:"), "{msg}");
        }
        if !matches!(
            err,
            Error::Unsorted { .. } | Error::DuplicateDomain { .. } | Error::RunsNotBottomUp { .. }
        ) {
            assert!(msg.contains("0xabc"), "{msg}");
        }
    }
    let entry_msg = Error::ForeignTarget {
        at: at1,
        target: Mfn(0xabc),
        found: FrameClass::Region,
    }
    .to_string();
    assert_eq!(
        entry_msg,
        "dom1: entry 5 of L1 table mfn 0x64 points at mfn 0xabc, a frame of the live-update region"
    );
}

#[test]
fn p2m_runs_group_bottom_up_contiguous_in_mfn_and_gpfn() {
    use handover_abi::{Gpfn, MemRun};
    // gpfn:   0    1    2    3     4    5    6
    let p2m = [10, 11, 13, u64::MAX, 20, 21, 12];
    let kind = |g: u64| match g {
        4 | 5 => RunKind::L1,
        6 => RunKind::L4,
        _ => RunKind::Data,
    };
    let run = |m, c, g, kind| MemRun {
        first_mfn: Mfn(m),
        count: c,
        first_gpfn: Gpfn(g),
        kind,
    };
    let runs = crate::p2m_runs(&p2m, kind);
    assert_eq!(
        runs,
        [
            run(10, 2, 0, RunKind::Data),
            run(13, 1, 2, RunKind::Data),
            run(20, 2, 4, RunKind::L1),
            run(12, 1, 6, RunKind::L4),
        ]
    );
    let mut ft = alloc::vec![FrameInfo::UNOWNED; 22];
    let pinned = FrameInfo::new(Some(DomId(1)), PageType::L1, 1, 1, FrameFlags::PINNED);
    ft[21] = pinned;
    ft[12] = pinned;
    ft[10] = pinned;
    assert_eq!(
        crate::pinned_in(&ft, &runs),
        [(Mfn(21), RunKind::L1), (Mfn(12), RunKind::L4)]
    );
}

/// `p2m_runs` against its definition: for each kind bottom-up, the frames
/// of that kind in gpfn order, merged where both mfn and gpfn continue.
#[test]
fn p2m_runs_match_their_definition() {
    use handover_abi::{Gpfn, MemRun};
    let kinds = [
        RunKind::Data,
        RunKind::L1,
        RunKind::L2,
        RunKind::L3,
        RunKind::L4,
    ];
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let len = (next() % 300) as usize;
        let mut mfn = next() % 1000;
        let p2m: std::vec::Vec<u64> = (0..len)
            .map(|_| {
                mfn += if next() % 4 == 0 { 1 + next() % 5 } else { 1 };
                if next() % 10 == 0 {
                    u64::MAX
                } else {
                    mfn
                }
            })
            .collect();
        let kind_of: std::vec::Vec<RunKind> =
            (0..len).map(|_| kinds[(next() % 5) as usize]).collect();
        let mut expected: std::vec::Vec<MemRun> = std::vec::Vec::new();
        for k in kinds {
            for (g, &m) in p2m.iter().enumerate() {
                if m == u64::MAX || kind_of[g] != k {
                    continue;
                }
                match expected.last_mut() {
                    Some(r)
                        if r.kind == k
                            && r.first_mfn.0 + r.count == m
                            && r.first_gpfn.0 + r.count == g as u64 =>
                    {
                        r.count += 1
                    }
                    _ => expected.push(MemRun {
                        first_mfn: Mfn(m),
                        count: 1,
                        first_gpfn: Gpfn(g as u64),
                        kind: k,
                    }),
                }
            }
        }
        assert_eq!(crate::p2m_runs(&p2m, |g| kind_of[g as usize]), expected);
    }
}
