//! The frametable entry, its counting primitives, the PTE format.

use handover_abi::RunKind;
use hvlu_types::{pte::Level, DomId, Mfn};

use crate::pte::{self, Pte};
use crate::{CountError, FrameFlags, FrameInfo, PageType};

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
        (PageType::P2m, 6),
        (PageType::LogDirty, 7),
    ];
    for (t, b) in all {
        assert_eq!(t.to_byte(), b);
        assert_eq!(PageType::from_repr(b), Some(t));
        // A type is its run's kind and back.
        assert_eq!(PageType::of_run(t.run_kind()).run_kind(), t.run_kind());
    }
    assert_eq!(PageType::of_run(RunKind::P2m), PageType::P2m);
    assert_eq!(PageType::of_run(RunKind::LogDirty), PageType::LogDirty);
    assert_eq!(PageType::P2m.level(), None);
    // Everything above 7 is illegal.
    for b in 8..=255 {
        assert_eq!(PageType::from_repr(b), None);
    }
}

#[test]
fn a_level_ties_a_table_type_to_its_run_kind() {
    for level in Level::ALL {
        let t = PageType::of_level(level);
        assert_eq!(t.level(), Some(level));
        assert_eq!(t.to_string(), level.to_string());
        assert_eq!(t.run_kind(), RunKind::of_level(level));
        assert_eq!(PageType::of_run(RunKind::of_level(level)), t);
    }
    for data in [PageType::None, PageType::Writable] {
        assert_eq!((data.level(), data.run_kind()), (None, RunKind::Data));
    }
    assert_eq!(PageType::of_run(RunKind::Data), PageType::None);
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
