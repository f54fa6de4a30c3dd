//! The layout lookups and the digest.

use hvlu_types::{DomId, Mfn, MfnRange};

use crate::layout::MachineLayout;
use crate::{frametable_digest, Digest, Error, FrameFlags, FrameInfo, PageType};

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
