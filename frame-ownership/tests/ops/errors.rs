//! One test per `OpError` variant: each provokes exactly that error on the
//! tiny machine, checks every field, that the message names the frame and
//! the domain, and that the refused operation changed nothing (frametable,
//! M2P, page-table memory).

use frame_ownership::pte;
use frame_ownership::{
    collect_domains, DomainContext, EntryError, EntryRef, Error, FrameClass, FrameFlags, FrameInfo,
    OpError, PageType, RangeList,
};
use handover_abi::RunKind;
use hvlu_types::{pte::Level, Gpfn, Mfn, MfnRange};

use crate::tiny::{entry, Tiny, D1, D2, D2_L1, L1, L2, L3, L4, RO, RW};

fn at(table: Mfn, level: Level, index: u16) -> EntryRef {
    EntryRef {
        domain: D1,
        table,
        level,
        index,
    }
}

#[test]
fn frame_beyond_the_frametable() {
    let mut t = Tiny::with_trees();
    let want = OpError::OutOfRange {
        domain: D1,
        mfn: Mfn(0x1000),
    };
    t.refused(want, &["dom1", "0x1000"], |t| {
        t.update(D1, Mfn(0x1000), 0, 0)
    });
    t.refused(want, &[], |t| t.pin(D1, Mfn(0x1000), Level::L1));
    t.refused(want, &[], |t| t.claim(D1, Mfn(0x1000), Gpfn(1)));
    // Non-RAM frames below the end of the table are unowned, not out of range.
    let want = OpError::OutOfRange {
        domain: D1,
        mfn: Mfn(70),
    };
    t.refused(want, &["0x46"], |t| t.claim(D1, Mfn(70), Gpfn(1)));
}

#[test]
fn frame_of_another_domain_or_of_nobody() {
    let mut t = Tiny::with_trees();
    let want = OpError::NotOwner {
        domain: D1,
        mfn: D2_L1,
        owner: Some(D2),
    };
    t.refused(want, &["dom1", "dom2", "0x14"], |t| {
        t.update(D1, D2_L1, 1, entry(Mfn(22), RO))
    });
    t.refused(want, &[], |t| t.unpin(D1, D2_L1));
    t.refused(want, &[], |t| t.cr3(D1, D2_L1, Some(L4)));
    let want = OpError::NotOwner {
        domain: D1,
        mfn: Mfn(40),
        owner: None,
    };
    t.refused(want, &["dom1", "0x28", "no domain"], |t| {
        t.pin(D1, Mfn(40), Level::L1)
    });
    t.refused(want, &[], |t| t.release_data(D1, Mfn(40)));
}

#[test]
fn entry_update_of_a_data_frame() {
    let mut t = Tiny::with_trees();
    let want = OpError::NotPageTable {
        domain: D1,
        mfn: Mfn(4),
        found: PageType::Writable,
    };
    t.refused(want, &["dom1", "0x4", "not a page table"], |t| {
        t.update(D1, Mfn(4), 0, 0)
    });
    let want = OpError::NotPageTable {
        domain: D1,
        mfn: Mfn(6),
        found: PageType::None,
    };
    t.refused(want, &["0x6"], |t| t.release_table(D1, Mfn(6)));
}

#[test]
fn entry_index_beyond_the_table() {
    let mut t = Tiny::with_trees();
    let want = OpError::BadIndex {
        domain: D1,
        table: L1,
        index: 512,
    };
    t.refused(want, &["dom1", "0xa", "512"], |t| {
        t.update(D1, L1, 512, entry(Mfn(6), RO))
    });
}

#[test]
fn entry_update_in_a_hypervisor_slot() {
    let mut t = Tiny::with_trees();
    for index in [256, 300, 511] {
        let want = OpError::HvSlot {
            domain: D1,
            table: L4,
            index,
        };
        t.refused(want, &["dom1", "0xd", "hypervisor"], |t| {
            t.update(D1, L4, index, 0)
        });
    }
}

#[test]
fn entry_that_breaks_a_type_rule() {
    let mut t = Tiny::with_trees();
    let foreign = |target, found| EntryError::ForeignTarget { target, found };
    let cases = [
        (
            L1,
            entry(Mfn(21), RO),
            foreign(Mfn(21), FrameClass::OtherDomain(D2)),
        ),
        (L1, entry(Mfn(50), RO), foreign(Mfn(50), FrameClass::Region)),
        (
            L1,
            entry(Mfn(2), RO),
            foreign(Mfn(2), FrameClass::HvReserved),
        ),
        (
            L1,
            entry(Mfn(40), RO),
            foreign(Mfn(40), FrameClass::Unowned),
        ),
        (
            L2,
            entry(Mfn(6), RW),
            EntryError::TypeMismatch {
                target: Mfn(6),
                expected: RunKind::L1,
                found: RunKind::Data,
            },
        ),
        (
            L1,
            entry(L3, RW),
            EntryError::WritablePageTable {
                target: L3,
                kind: RunKind::L3,
            },
        ),
        (
            L1,
            entry(Mfn(72), RO),
            EntryError::MmioNotPermitted { target: Mfn(72) },
        ),
        (
            L3,
            entry(Mfn(70), RW),
            EntryError::MmioNotPermitted { target: Mfn(70) },
        ),
        (
            L3,
            entry(L2, RW | pte::HUGE),
            EntryError::Superpage {
                entry: entry(L2, RW | pte::HUGE),
            },
        ),
        (
            L1,
            entry(Mfn(6), RO | pte::GLOBAL),
            EntryError::GlobalMapping {
                entry: entry(Mfn(6), RO | pte::GLOBAL),
            },
        ),
    ];
    let level = |table| match table {
        L1 => Level::L1,
        L2 => Level::L2,
        _ => Level::L3,
    };
    for (table, value, source) in cases {
        let want = OpError::Entry {
            at: at(table, level(table), 9),
            source,
        };
        t.refused(
            want,
            &["dom1", "entry 9", &format!("{:#x}", table.0)],
            |t| t.update(D1, table, 9, value),
        );
    }
    // Replacing a valid entry by a refused one keeps the old one and its
    // references.
    t.refused(
        OpError::Entry {
            at: at(L1, Level::L1, 0),
            source: EntryError::WritablePageTable {
                target: L1,
                kind: RunKind::L1,
            },
        },
        &["0xa"],
        |t| t.update(D1, L1, 0, entry(L1, RW)),
    );
}

#[test]
fn pin_of_a_frame_whose_entries_break_a_type_rule() {
    let mut t = Tiny::with_trees();
    // A data frame that maps itself writable: as an L1 it would let the
    // guest write its own page table.
    t.mem.table_mut(Mfn(7))[3] = entry(Mfn(7), RW);
    let want = OpError::Entry {
        at: at(Mfn(7), Level::L1, 3),
        source: EntryError::WritablePageTable {
            target: Mfn(7),
            kind: RunKind::L1,
        },
    };
    t.refused(want, &["dom1", "0x7"], |t| t.pin(D1, Mfn(7), Level::L1));
    // An entry that is fine for one level and wrong for another; valid
    // entries before the bad one take nothing.
    t.mem.table_mut(Mfn(7))[3] = entry(L1, RW);
    t.mem.table_mut(Mfn(7))[4] = entry(L3, RW);
    let want = OpError::Entry {
        at: at(Mfn(7), Level::L2, 4),
        source: EntryError::TypeMismatch {
            target: L3,
            expected: RunKind::L1,
            found: RunKind::L3,
        },
    };
    t.refused(want, &["0x7", "0xc"], |t| t.pin(D1, Mfn(7), Level::L2));
    // A table's reference to itself is refused as the pass refuses it: the
    // frame being pinned already counts as a table of the pinned level.
    t.mem.table_mut(Mfn(7))[3] = 0;
    t.mem.table_mut(Mfn(7))[4] = entry(Mfn(7), RW);
    let want = OpError::Entry {
        at: at(Mfn(7), Level::L4, 4),
        source: EntryError::TypeMismatch {
            target: Mfn(7),
            expected: RunKind::L3,
            found: RunKind::L4,
        },
    };
    t.refused(want, &["0x7"], |t| t.pin(D1, Mfn(7), Level::L4));
}

#[test]
fn pin_or_release_of_a_pinned_table() {
    let mut t = Tiny::with_trees();
    let want = OpError::Pinned {
        domain: D1,
        mfn: L4,
        level: Level::L4,
    };
    t.refused(want, &["dom1", "0xd", "pinned as L4"], |t| {
        t.pin(D1, L4, Level::L4)
    });
    // Even at another level: it is pinned first of all.
    t.refused(want, &[], |t| t.pin(D1, L4, Level::L1));
    t.refused(want, &[], |t| t.release_table(D1, L4));
}

#[test]
fn unpin_of_a_frame_not_pinned() {
    let mut t = Tiny::with_trees();
    for m in [L1, Mfn(6)] {
        let want = OpError::NotPinned { domain: D1, mfn: m };
        t.refused(want, &["dom1", &format!("{:#x}", m.0)], |t| t.unpin(D1, m));
    }
}

#[test]
fn pin_at_another_level_than_the_tables() {
    let mut t = Tiny::with_trees();
    let want = OpError::LevelMismatch {
        domain: D1,
        mfn: L1,
        requested: Level::L2,
        found: Level::L1,
    };
    t.refused(want, &["dom1", "0xa", "L2", "L1"], |t| {
        t.pin(D1, L1, Level::L2)
    });
}

#[test]
fn pin_of_writable_data() {
    let mut t = Tiny::with_trees();
    t.update(D1, L1, 8, entry(Mfn(4), RW)).unwrap();
    let want = OpError::WritableData {
        domain: D1,
        mfn: Mfn(4),
        mappings: 2,
    };
    t.refused(want, &["dom1", "0x4", "2 L1 entries"], |t| {
        t.pin(D1, Mfn(4), Level::L1)
    });
}

#[test]
fn release_of_a_table_still_referenced() {
    let mut t = Tiny::with_trees();
    let want = OpError::TableInUse {
        domain: D1,
        mfn: L2,
        level: Level::L2,
        type_count: 1,
    };
    t.refused(want, &["dom1", "0xb", "1 entries"], |t| {
        t.release_table(D1, L2)
    });
}

#[test]
fn cr3_of_a_frame_that_is_not_an_l4() {
    let mut t = Tiny::with_trees();
    for (m, found) in [(L3, PageType::L3), (Mfn(6), PageType::None)] {
        let want = OpError::NotL4 {
            domain: D1,
            mfn: m,
            found,
        };
        t.refused(want, &["dom1", &format!("{:#x}", m.0)], |t| {
            t.cr3(D1, m, Some(L4))
        });
    }
}

#[test]
fn claim_of_a_frame_that_is_not_free_ram() {
    let mut t = Tiny::empty();
    // A frametable that covers the MMIO frames too.
    t.ft.resize(80, FrameInfo::UNOWNED);
    t.m2p.resize(80, frame_ownership::M2P_INVALID);
    for (m, found) in [
        (Mfn(50), FrameClass::Region),
        (Mfn(3), FrameClass::HvReserved),
        (Mfn(70), FrameClass::PermittedMmio),
        (Mfn(66), FrameClass::ForbiddenMmio),
    ] {
        let want = OpError::NotDomainRam {
            domain: D1,
            mfn: m,
            found,
        };
        t.refused(want, &["dom1", &format!("{:#x}", m.0)], |t| {
            t.claim(D1, m, Gpfn(0))
        });
    }
}

#[test]
fn claim_of_an_owned_frame() {
    let mut t = Tiny::with_trees();
    let want = OpError::AlreadyOwned {
        domain: D1,
        mfn: Mfn(22),
        owner: D2,
    };
    t.refused(want, &["dom1", "dom2", "0x16"], |t| {
        t.claim(D1, Mfn(22), Gpfn(0))
    });
    let want = OpError::AlreadyOwned {
        domain: D1,
        mfn: Mfn(6),
        owner: D1,
    };
    t.refused(want, &["0x6"], |t| t.claim(D1, Mfn(6), Gpfn(0)));
}

#[test]
fn claim_with_the_invalid_gpfn() {
    let mut t = Tiny::with_trees();
    let want = OpError::GpfnInvalid {
        domain: D1,
        mfn: Mfn(30),
    };
    t.refused(want, &["dom1", "0x1e"], |t| {
        t.claim(D1, Mfn(30), Gpfn(u64::MAX))
    });
    // One below is a legal gpfn.
    t.claim(D1, Mfn(30), Gpfn(u64::MAX - 1)).unwrap();
}

#[test]
fn release_of_a_frame_in_use() {
    let mut t = Tiny::with_trees();
    let busy = |m: u64, page_type, type_count, ref_count, pinned| OpError::Busy {
        domain: D1,
        mfn: Mfn(m),
        page_type,
        type_count,
        ref_count,
        pinned,
    };
    // Mapped writable, mapped read-only, a table, a pinned table in CR3.
    for want in [
        busy(4, PageType::Writable, 1, 2, false),
        busy(5, PageType::None, 0, 2, false),
        busy(10, PageType::L1, 1, 2, false),
        busy(13, PageType::L4, 2, 3, true),
    ] {
        let OpError::Busy { mfn, .. } = want else {
            unreachable!()
        };
        t.refused(
            want,
            &["dom1", &format!("{:#x}", mfn.0), "reference count"],
            |t| t.release_data(D1, mfn),
        );
    }
    // An idle table is still a table: it must be released as one first.
    let mut t = Tiny::with_trees();
    t.update(D1, L2, 7, 0).unwrap();
    t.refused(busy(10, PageType::L1, 0, 1, false), &["L1"], |t| {
        t.release_data(D1, L1)
    });
    t.release_table(D1, L1).unwrap();
    t.release_data(D1, L1).unwrap();
}

#[test]
fn domain_release_listing_a_frame_not_the_domains() {
    let mut t = Tiny::with_trees();
    // The bad frame comes last: nothing before it may have been released.
    let with = |extra: u64| {
        let mut p2m = t.p2m(D1);
        p2m.push(extra);
        p2m
    };
    let (of_d2, free, beyond) = (with(D2_L1.0), with(40), with(0x1000));
    let want = OpError::NotOwner {
        domain: D1,
        mfn: D2_L1,
        owner: Some(D2),
    };
    t.refused(want, &["dom1", "dom2", "0x14"], |t| {
        t.release_domain(D1, &of_d2).map(drop)
    });
    let want = OpError::NotOwner {
        domain: D1,
        mfn: Mfn(40),
        owner: None,
    };
    t.refused(want, &["dom1", "0x28", "no domain"], |t| {
        t.release_domain(D1, &free).map(drop)
    });
    let want = OpError::OutOfRange {
        domain: D1,
        mfn: Mfn(0x1000),
    };
    t.refused(want, &["dom1", "0x1000"], |t| {
        t.release_domain(D1, &beyond).map(drop)
    });
    // Another domain's whole p2m.
    let d2 = t.p2m(D2);
    let want = OpError::NotOwner {
        domain: D1,
        mfn: D2_L1,
        owner: Some(D2),
    };
    t.refused(want, &[], |t| t.release_domain(D1, &d2).map(drop));
}

#[test]
fn reference_count_full() {
    let mut t = Tiny::with_trees();
    // Frame 6 at the limit of its reference count.
    t.ft[6] = FrameInfo::new(Some(D1), PageType::None, 0, u32::MAX, FrameFlags::EMPTY);
    let want = OpError::CountOverflow {
        domain: D1,
        mfn: Mfn(6),
    };
    t.refused(want, &["dom1", "0x6", "u32::MAX"], |t| {
        t.update(D1, L1, 0, entry(Mfn(6), RO))
    });
    // A pin that has taken references for earlier entries gives them back.
    t.mem.table_mut(Mfn(8))[0] = entry(Mfn(5), RW);
    t.mem.table_mut(Mfn(8))[1] = entry(Mfn(9), RO);
    t.mem.table_mut(Mfn(8))[2] = entry(Mfn(6), RO);
    t.refused(want, &[], |t| t.pin(D1, Mfn(8), Level::L1));
    // The pin's own reference.
    t.ft[6] = FrameInfo::new(Some(D1), PageType::L1, 0, u32::MAX, FrameFlags::EMPTY);
    t.refused(want, &[], |t| t.pin(D1, Mfn(6), Level::L1));
}

#[test]
fn entry_already_in_a_table_breaks_the_rules() {
    let mut t = Tiny::with_trees();
    // Written behind the frametable's back: a mapping of dom2's frame.
    t.mem.table_mut(L1)[5] = entry(Mfn(22), RW);
    let stale = at(L1, Level::L1, 5);
    let want = OpError::StaleEntry {
        at: stale,
        source: EntryError::ForeignTarget {
            target: Mfn(22),
            found: FrameClass::OtherDomain(D2),
        },
    };
    t.refused(
        want,
        &["dom1", "entry 5", "0xa", "0x16", "inconsistent"],
        |t| t.update(D1, L1, 5, 0),
    );
    // Releasing the table meets it too (after the one reference goes).
    t.update(D1, L2, 7, 0).unwrap();
    t.refused(want, &[], |t| t.release_table(D1, L1));
}

#[test]
fn frametable_entry_out_of_its_legal_range() {
    let mut t = Tiny::with_trees();
    // The caller's record of a vCPU's CR3 disagrees with the frametable.
    let want = OpError::Corrupt {
        domain: Some(D1),
        mfn: L3,
        what: "the previous CR3 is not an L4 of the domain holding a type reference",
    };
    t.refused(want, &["dom1", "0xc", "corrupt"], |t| {
        t.cr3(D1, L4, Some(L3))
    });
    // A data frame of type None with a type count.
    t.ft[6] = FrameInfo::new(Some(D1), PageType::None, 1, 2, FrameFlags::EMPTY);
    let want = OpError::Corrupt {
        domain: Some(D1),
        mfn: Mfn(6),
        what: "a data frame of type none has a type count or the pinned flag",
    };
    t.refused(want, &["0x6"], |t| t.pin(D1, Mfn(6), Level::L1));
    // A pinned table whose counts do not hold the pin.
    t.ft[6] = FrameInfo::new(Some(D1), PageType::L1, 0, 1, FrameFlags::PINNED);
    let want = OpError::Corrupt {
        domain: Some(D1),
        mfn: Mfn(6),
        what: "a reference to drop is not held (count underflow or wrong type)",
    };
    t.refused(want, &["0x6"], |t| t.unpin(D1, Mfn(6)));
    // A free frame with counts.
    t.ft[40] = FrameInfo::new(None, PageType::None, 0, 1, FrameFlags::EMPTY);
    let want = OpError::Corrupt {
        domain: Some(D1),
        mfn: Mfn(40),
        what: "a frame nobody owns has counts, a type or flags",
    };
    t.refused(want, &["0x28"], |t| t.claim(D1, Mfn(40), Gpfn(1)));
    // An owned frame without an M2P entry cannot be described by a run.
    t.m2p[7] = frame_ownership::M2P_INVALID;
    assert_eq!(
        collect_domains(&t.ft, &t.m2p),
        Err(OpError::Corrupt {
            domain: Some(D1),
            mfn: Mfn(7),
            what: "an owned frame has no M2P entry",
        })
    );
}

#[test]
fn domain_context_with_unsorted_mmio_ranges() {
    let mmio = [MfnRange::new(Mfn(70), 4), MfnRange::new(Mfn(72), 1)];
    assert_eq!(
        DomainContext::new(D1, &mmio),
        Err(Error::Unsorted {
            list: RangeList::Mmio(D1),
            index: 1
        })
    );
    let ok = [MfnRange::new(Mfn(70), 2), MfnRange::new(Mfn(72), 1)];
    assert_eq!(DomainContext::new(D1, &ok).unwrap().mmio(), &ok);
}
