//! Every error message names what it is about.

use std::string::ToString;

use handover_abi::RunKind;
use hvlu_types::{pte::Level, DomId, Mfn};

use super::rules::at;
use crate::{EntryError, Error, FrameClass, OpError, PageType};

#[test]
fn every_error_message_is_specific() {
    let at1 = at(Level::L1, 5);
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
        Error::Entry {
            at: at1,
            source: EntryError::ForeignTarget {
                target: Mfn(0xabc),
                found: FrameClass::OtherDomain(DomId(4)),
            },
        },
        Error::Entry {
            at: at(Level::L2, 5),
            source: EntryError::TypeMismatch {
                target: Mfn(0xabc),
                expected: RunKind::L1,
                found: RunKind::Data,
            },
        },
        Error::Entry {
            at: at1,
            source: EntryError::WritablePageTable {
                target: Mfn(0xabc),
                kind: RunKind::L2,
            },
        },
        Error::Entry {
            at: at1,
            source: EntryError::MmioNotPermitted { target: Mfn(0xabc) },
        },
        Error::Entry {
            at: at1,
            source: EntryError::MmioCacheable {
                target: Mfn(0xabc),
                entry: 0x8000_0000_00ab_c007,
            },
        },
        Error::Entry {
            at: at(Level::L2, 5),
            source: EntryError::Superpage {
                entry: 0x8000_0000_00ab_c081,
            },
        },
        Error::Entry {
            at: at1,
            source: EntryError::GlobalMapping {
                entry: 0x8000_0000_00ab_c101,
            },
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
    let region = EntryError::ForeignTarget {
        target: Mfn(0xabc),
        found: FrameClass::Region,
    };
    assert_eq!(
        Error::Entry {
            at: at1,
            source: region
        }
        .to_string(),
        "dom1: entry 5 of L1 table mfn 0x64 points at mfn 0xabc, a frame of the live-update region"
    );
    // The live operations wrap the same rule error the same way.
    assert_eq!(
        OpError::Entry {
            at: at1,
            source: region
        }
        .to_string(),
        Error::Entry {
            at: at1,
            source: region
        }
        .to_string()
    );
    assert_eq!(
        OpError::StaleEntry {
            at: at1,
            source: region
        }
        .to_string(),
        "dom1: entry 5 of L1 table mfn 0x64: the value already there no longer passes the type \
         rules (it points at mfn 0xabc, a frame of the live-update region); the live state is \
         inconsistent"
    );
    // Messages whose wording depends on a field.
    let twice = |first, second| {
        Error::OwnedTwice {
            mfn: Mfn(0xabc),
            first: DomId(first),
            second: DomId(second),
        }
        .to_string()
    };
    assert_eq!(twice(4, 5), "dom5: mfn 0xabc is already claimed by dom4");
    assert_eq!(
        twice(4, 4),
        "dom4: mfn 0xabc is already claimed by dom4 (two of its runs overlap)"
    );
    let not_owner = |owner| {
        OpError::NotOwner {
            domain: DomId(1),
            mfn: Mfn(0xabc),
            owner,
        }
        .to_string()
    };
    assert_eq!(
        not_owner(Some(DomId(2))),
        "dom1: mfn 0xabc is not the domain's, it belongs to dom2"
    );
    assert_eq!(
        not_owner(None),
        "dom1: mfn 0xabc is not the domain's, it belongs to no domain"
    );
    let corrupt = |domain| {
        OpError::Corrupt {
            domain,
            mfn: Mfn(0xabc),
            what: "its owner value is illegal",
        }
        .to_string()
    };
    assert_eq!(
        corrupt(None),
        "frametable entry of mfn 0xabc is corrupt: its owner value is illegal"
    );
    assert_eq!(
        corrupt(Some(DomId(3))),
        "dom3: frametable entry of mfn 0xabc is corrupt: its owner value is illegal"
    );
    let busy = |pinned| {
        OpError::Busy {
            domain: DomId(1),
            mfn: Mfn(0xabc),
            page_type: PageType::L4,
            type_count: 2,
            ref_count: 3,
            pinned,
        }
        .to_string()
    };
    assert!(
        busy(true).contains("reference count 3, pinned)"),
        "{}",
        busy(true)
    );
    assert!(
        busy(false).contains("reference count 3)"),
        "{}",
        busy(false)
    );
}
