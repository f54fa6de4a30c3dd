//! The frames of an HVM domain's own structures (Invariant 28): claimed
//! with their type's counts and no guest frame, released only as claimed,
//! and released with the domain.

use frame_ownership::{hvm_frame_counts, FrameInfo, OpError, PageType, M2P_INVALID};
use hvlu_types::Mfn;

use crate::tiny::{Tiny, D1, D2};

#[test]
fn nested_table_and_bitmap_frames_get_their_counts_and_no_guest_frame() {
    let mut t = Tiny::empty();
    t.claim_hvm(D1, Mfn(30), PageType::P2m).unwrap();
    t.claim_hvm(D1, Mfn(31), PageType::LogDirty).unwrap();
    for (m, ty) in [(30, PageType::P2m), (31, PageType::LogDirty)] {
        let f = t.frame(Mfn(m));
        let (type_count, ref_count) = hvm_frame_counts(ty).unwrap();
        assert!(f.is_owned_by(D1));
        assert_eq!(f.page_type(), Some(ty));
        assert_eq!((f.type_count(), f.ref_count()), (type_count, ref_count));
        assert_eq!(t.m2p[m as usize], M2P_INVALID);
    }
    assert_eq!(hvm_frame_counts(PageType::P2m), Some((1, 2)));
    assert_eq!(hvm_frame_counts(PageType::LogDirty), Some((0, 1)));
    assert_eq!(hvm_frame_counts(PageType::L1), None);
    // Released as claimed: free again.
    t.release_hvm(D1, Mfn(31), PageType::LogDirty).unwrap();
    assert_eq!(t.frame(Mfn(31)), FrameInfo::UNOWNED);
    // And with the domain, whatever their type.
    assert_eq!(t.release_domain(D1, &[30]), Ok(1));
    assert_eq!(t.frame(Mfn(30)), FrameInfo::UNOWNED);
}

#[test]
fn a_wrong_type_an_owned_frame_or_a_release_as_the_other_kind_is_refused() {
    let mut t = Tiny::empty();
    t.refused(
        OpError::NotHvmFrame {
            domain: D1,
            mfn: Mfn(30),
            page_type: PageType::L1,
        },
        &["P2m and LogDirty"],
        |t| t.claim_hvm(D1, Mfn(30), PageType::L1),
    );
    t.claim_hvm(D1, Mfn(30), PageType::P2m).unwrap();
    t.refused(
        OpError::AlreadyOwned {
            domain: D2,
            mfn: Mfn(30),
            owner: D1,
        },
        &[],
        |t| t.claim_hvm(D2, Mfn(30), PageType::P2m),
    );
    t.refused(
        OpError::HvmFrameInUse {
            domain: D1,
            mfn: Mfn(30),
            expected: PageType::LogDirty,
            page_type: PageType::P2m,
            type_count: 1,
            ref_count: 2,
        },
        &["log-dirty", "P2m"],
        |t| t.release_hvm(D1, Mfn(30), PageType::LogDirty),
    );
    // Not RAM, the region.
    assert!(matches!(
        t.claim_hvm(D1, Mfn(50), PageType::P2m),
        Err(OpError::NotDomainRam { .. })
    ));
}
