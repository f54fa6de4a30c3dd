//! The runs of a p2m.

use handover_abi::RunKind;
use hvlu_types::{DomId, Mfn};

use crate::{FrameFlags, FrameInfo, PageType};

#[test]
fn p2m_runs_group_bottom_up_contiguous_in_mfn_and_gpfn() {
    use handover_abi::MemRun;
    use hvlu_types::Gpfn;
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
    use handover_abi::MemRun;
    use hvlu_types::Gpfn;
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

/// `p2m_domain`: the kinds and pins of a p2m's frames read off the
/// frametable, as the outgoing hypervisor describes a domain.
#[test]
fn p2m_domain_reads_kinds_and_pins_off_the_frametable() {
    use handover_abi::MemRun;
    use hvlu_types::Gpfn;
    let d = DomId(3);
    let mut ft = alloc::vec![FrameInfo::UNOWNED; 16];
    for m in [4, 5, 6] {
        ft[m] = FrameInfo::new(Some(d), PageType::None, 0, 1, FrameFlags::EMPTY);
    }
    ft[5] = FrameInfo::new(Some(d), PageType::Writable, 1, 2, FrameFlags::EMPTY);
    ft[7] = FrameInfo::new(Some(d), PageType::L1, 1, 2, FrameFlags::EMPTY);
    ft[8] = FrameInfo::new(Some(d), PageType::L4, 1, 2, FrameFlags::PINNED);
    // gpfn:   0  1  2  3         4  5
    let p2m = [4, 5, 6, u64::MAX, 8, 7];
    let got = crate::p2m_domain(&ft, d, &p2m);
    let run = |m, c, g, kind| MemRun {
        first_mfn: Mfn(m),
        count: c,
        first_gpfn: Gpfn(g),
        kind,
    };
    assert_eq!(got.id, d);
    assert_eq!(
        got.runs,
        [
            // None and Writable are both data.
            run(4, 3, 0, RunKind::Data),
            run(7, 1, 5, RunKind::L1),
            run(8, 1, 4, RunKind::L4),
        ]
    );
    assert_eq!(got.pinned, [(Mfn(8), RunKind::L4)]);
    // The same as the frametable scan, here even in the same order.
    let m2p: alloc::vec::Vec<u64> = (0..16u64)
        .map(|m| match m {
            4..=6 => m - 4,
            7 => 5,
            8 => 4,
            _ => crate::M2P_INVALID,
        })
        .collect();
    assert_eq!(crate::collect_domains(&ft, &m2p).unwrap(), [got]);
}
