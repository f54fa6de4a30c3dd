//! What accepted operations do to the counts, and the run collection, on
//! the tiny machine. Every test ends by checking that the pass rebuilds the
//! live table from the collected runs.

use frame_ownership::pte;
use frame_ownership::{
    collect_domains, domain_runs, FrameFlags, FrameInfo, OwnedDomain, PageType, M2P_INVALID,
};
use handover_abi::{MemRun, RunKind};
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn};

use crate::equivalence::assert_rebuild_matches;
use crate::tiny::{entry, Tiny, D1, D2, D2_L1, L1, L2, L3, L4, RO, RW, UC};

fn info(d: DomId, t: PageType, tc: u32, rc: u32, pinned: bool) -> FrameInfo {
    let flags = if pinned {
        FrameFlags::PINNED
    } else {
        FrameFlags::EMPTY
    };
    FrameInfo::new(Some(d), t, tc, rc, flags)
}

/// The pass rebuilds `t`'s table, with dom1's vCPU on `cr3`.
fn rebuilds(t: &Tiny, cr3: &[Mfn]) {
    assert_rebuild_matches(
        "tiny",
        &t.layout(),
        &t.ft,
        &t.m2p,
        &t.mem,
        &[(D1, &t.mmio1, cr3.to_vec()), (D2, &t.mmio2, Vec::new())],
    );
}

#[test]
fn built_trees_have_the_counts_of_the_rules() {
    let t = Tiny::with_trees();
    let want = [
        (4, info(D1, PageType::Writable, 1, 2, false)),
        (5, info(D1, PageType::None, 0, 2, false)),
        (6, info(D1, PageType::None, 0, 1, false)),
        // Typed by the L2's entry; its pin is gone.
        (10, info(D1, PageType::L1, 1, 2, false)),
        // The L3's entry, and the L1's read-only mapping.
        (11, info(D1, PageType::L2, 1, 3, false)),
        (12, info(D1, PageType::L3, 1, 2, false)),
        // Pin and CR3.
        (13, info(D1, PageType::L4, 2, 3, true)),
        (20, info(D2, PageType::L1, 1, 2, true)),
        (21, info(D2, PageType::Writable, 1, 2, false)),
        (22, info(D2, PageType::None, 0, 1, false)),
    ];
    for (m, fi) in want {
        assert_eq!(t.frame(Mfn(m)), fi, "mfn {m:#x}");
    }
    // MMIO frames and frames nobody claimed have no entry.
    assert_eq!(t.frame(Mfn(30)), FrameInfo::UNOWNED);
    assert_eq!(t.m2p[21], 121);
    rebuilds(&t, &[L4]);
}

#[test]
fn remapping_the_same_target_keeps_the_counts() {
    let mut t = Tiny::with_trees();
    let before = t.frame(Mfn(4));
    t.update(D1, L1, 0, entry(Mfn(4), RW | 1 << 5)).unwrap();
    assert_eq!(t.frame(Mfn(4)), before);
    // Read-only now: the last writable mapping is gone.
    t.update(D1, L1, 0, entry(Mfn(4), RO)).unwrap();
    assert_eq!(t.frame(Mfn(4)), info(D1, PageType::None, 0, 2, false));
    t.update(D1, L1, 0, 0).unwrap();
    assert_eq!(t.frame(Mfn(4)), info(D1, PageType::None, 0, 1, false));
    rebuilds(&t, &[L4]);
}

#[test]
fn writable_type_lasts_as_long_as_a_writable_mapping() {
    let mut t = Tiny::with_trees();
    t.update(D1, L1, 10, entry(Mfn(6), RW)).unwrap();
    t.update(D1, L1, 11, entry(Mfn(6), RW)).unwrap();
    t.update(D1, L1, 12, entry(Mfn(6), RO)).unwrap();
    assert_eq!(t.frame(Mfn(6)), info(D1, PageType::Writable, 2, 4, false));
    t.update(D1, L1, 10, 0).unwrap();
    assert_eq!(t.frame(Mfn(6)), info(D1, PageType::Writable, 1, 3, false));
    rebuilds(&t, &[L4]);
    t.update(D1, L1, 11, 0).unwrap();
    assert_eq!(t.frame(Mfn(6)), info(D1, PageType::None, 0, 2, false));
    rebuilds(&t, &[L4]);
}

#[test]
fn pin_validates_a_data_frame_as_the_pass_would() {
    let mut t = Tiny::with_trees();
    // An L1 that maps itself read-only (PV guests read their own tables),
    // a data frame writable, and an MMIO frame uncacheable; non-present
    // junk is fine.
    t.mem.table_mut(Mfn(7))[0] = entry(Mfn(7), RO);
    t.mem.table_mut(Mfn(7))[1] = entry(Mfn(8), RW);
    t.mem.table_mut(Mfn(7))[2] = entry(Mfn(71), RW | UC);
    t.mem.table_mut(Mfn(7))[3] = !pte::PRESENT;
    t.pin(D1, Mfn(7), Level::L1).unwrap();
    // The allocation, its own mapping, the pin.
    assert_eq!(t.frame(Mfn(7)), info(D1, PageType::L1, 1, 3, true));
    assert_eq!(t.frame(Mfn(8)), info(D1, PageType::Writable, 1, 2, false));
    rebuilds(&t, &[L4]);
    // Pinning a typed table only adds the pin.
    t.unpin(D1, Mfn(7)).unwrap();
    assert_eq!(t.frame(Mfn(7)), info(D1, PageType::L1, 0, 2, false));
    t.pin(D1, Mfn(7), Level::L1).unwrap();
    assert_eq!(t.frame(Mfn(7)), info(D1, PageType::L1, 1, 3, true));
    rebuilds(&t, &[L4]);
}

#[test]
fn release_drops_the_entries_and_keeps_the_childrens_types() {
    let mut t = Tiny::with_trees();
    // Unlink the L2 from the L3; it is idle now but still an L2.
    t.update(D1, L3, 0, 0).unwrap();
    assert_eq!(t.frame(L2), info(D1, PageType::L2, 0, 2, false));
    rebuilds(&t, &[L4]);
    t.release_table(D1, L2).unwrap();
    // Data now; the L1's read-only mapping of it still holds a reference.
    assert_eq!(t.frame(L2), info(D1, PageType::None, 0, 2, false));
    // Its child lost the type reference but stays an L1.
    assert_eq!(t.frame(L1), info(D1, PageType::L1, 0, 1, false));
    rebuilds(&t, &[L4]);
    // Its contents are ordinary data now: the guest may write them.
    t.mem.table_mut(L2)[7] = entry(Mfn(33), RW);
    rebuilds(&t, &[L4]);

    // dom2: unpin, then release; the mapped data loses its writable type.
    t.unpin(D2, D2_L1).unwrap();
    assert_eq!(t.frame(D2_L1), info(D2, PageType::L1, 0, 1, false));
    t.release_table(D2, D2_L1).unwrap();
    assert_eq!(t.frame(D2_L1), info(D2, PageType::None, 0, 1, false));
    assert_eq!(t.frame(Mfn(21)), info(D2, PageType::None, 0, 1, false));
    rebuilds(&t, &[L4]);
    // And it can go back to the allocator.
    t.release_data(D2, D2_L1).unwrap();
    assert_eq!(t.frame(D2_L1), FrameInfo::UNOWNED);
    assert_eq!(t.m2p[D2_L1.0 as usize], M2P_INVALID);
    rebuilds(&t, &[L4]);
}

#[test]
fn cr3_switch_moves_one_typed_reference() {
    let mut t = Tiny::with_trees();
    t.claim(D1, Mfn(30), Gpfn(30)).unwrap();
    t.mem.table_mut(Mfn(30))[0] = entry(L3, RW);
    t.pin(D1, Mfn(30), Level::L4).unwrap();
    t.unpin(D1, Mfn(30)).unwrap();
    assert_eq!(t.frame(L3), info(D1, PageType::L3, 2, 3, false));
    t.cr3(D1, Mfn(30), Some(L4)).unwrap();
    assert_eq!(t.frame(L4), info(D1, PageType::L4, 1, 2, true));
    assert_eq!(t.frame(Mfn(30)), info(D1, PageType::L4, 1, 2, false));
    rebuilds(&t, &[Mfn(30)]);
    // Reloading the same root changes nothing.
    t.cr3(D1, Mfn(30), Some(Mfn(30))).unwrap();
    assert_eq!(t.frame(Mfn(30)), info(D1, PageType::L4, 1, 2, false));
    // A second vCPU.
    t.cr3(D1, L4, None).unwrap();
    rebuilds(&t, &[Mfn(30), L4]);
}

#[test]
fn claim_and_release_of_data_round_trip() {
    let mut t = Tiny::with_trees();
    let before = t.snapshot();
    t.claim(D2, Mfn(40), Gpfn(7)).unwrap();
    assert_eq!(t.frame(Mfn(40)), info(D2, PageType::None, 0, 1, false));
    assert_eq!(t.m2p[40], 7);
    rebuilds(&t, &[L4]);
    t.release_data(D2, Mfn(40)).unwrap();
    assert_eq!(t.snapshot(), before);
}

#[test]
fn domain_release_frees_every_frame_whatever_it_holds() {
    let mut t = Tiny::with_trees();
    let d2_before: Vec<FrameInfo> = (20..24).map(|m| t.frame(Mfn(m))).collect();
    // Dom1's frames are mapped, typed, pinned and in a CR3; its p2m lists
    // them with holes (gpfns 0..4), and a frame listed twice goes once.
    let mut p2m = t.p2m(D1);
    assert_eq!(p2m.len(), 14);
    p2m.push(Mfn(4).0);
    assert_eq!(t.release_domain(D1, &p2m), Ok(10));
    for m in 4..14 {
        assert_eq!(t.frame(Mfn(m)), FrameInfo::UNOWNED, "mfn {m:#x}");
        assert_eq!(t.m2p[m as usize], M2P_INVALID, "mfn {m:#x}");
    }
    let d2_after: Vec<FrameInfo> = (20..24).map(|m| t.frame(Mfn(m))).collect();
    assert_eq!(d2_after, d2_before, "another domain's frames do not change");
    // The pass rebuilds the same table from the remaining domain (dom1's
    // vCPU is gone with it).
    rebuilds(&t, &[]);
    // The frames are free RAM again, with all-zero entries: they can be
    // claimed again, by any domain.
    t.claim(D2, Mfn(13), Gpfn(200)).unwrap();
    t.claim(D1, Mfn(4), Gpfn(0)).unwrap();
    rebuilds(&t, &[]);
    // A domain without frames releases nothing.
    assert_eq!(t.release_domain(DomId(9), &[]), Ok(0));
    assert_eq!(t.release_domain(DomId(9), &[u64::MAX; 3]), Ok(0));
}

#[test]
fn runs_follow_types_and_contiguous_mfns_and_gpfns() {
    let mut t = Tiny::with_trees();
    // gpfns 1000, 1001, then a jump: two runs. (Every gpfn once, as in a
    // p2m: the check at the end also reads the runs from one.)
    t.claim(D1, Mfn(30), Gpfn(1000)).unwrap();
    t.claim(D1, Mfn(31), Gpfn(1001)).unwrap();
    t.claim(D1, Mfn(32), Gpfn(500)).unwrap();
    let run = |m: u64, count: u64, g: u64, kind| MemRun {
        first_mfn: Mfn(m),
        count,
        first_gpfn: Gpfn(g),
        kind,
    };
    let want = vec![
        OwnedDomain {
            id: D1,
            runs: vec![
                // Data of both types, machine order.
                run(4, 6, 4, RunKind::Data),
                run(30, 2, 1000, RunKind::Data),
                run(32, 1, 500, RunKind::Data),
                // Contiguous with the data and each other, but of other kinds.
                run(10, 1, 10, RunKind::L1),
                run(11, 1, 11, RunKind::L2),
                run(12, 1, 12, RunKind::L3),
                run(13, 1, 13, RunKind::L4),
            ],
            pinned: vec![(L4, RunKind::L4)],
        },
        OwnedDomain {
            id: D2,
            runs: vec![run(21, 3, 121, RunKind::Data), run(20, 1, 120, RunKind::L1)],
            pinned: vec![(D2_L1, RunKind::L1)],
        },
    ];
    let got = collect_domains(&t.ft, &t.m2p).unwrap();
    assert_eq!(got, want);
    assert_eq!(domain_runs(&t.ft, &t.m2p, D1).unwrap(), want[0].runs);
    assert_eq!(domain_runs(&t.ft, &t.m2p, D2).unwrap(), want[1].runs);
    assert_eq!(domain_runs(&t.ft, &t.m2p, DomId(9)).unwrap(), Vec::new());
    rebuilds(&t, &[L4]);
}
