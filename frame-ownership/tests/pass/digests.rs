//! The two digests computed in one walk (`owned_and_frametable_digests`)
//! are bit for bit the two computed apart, and each is its definition:
//! on random machines after the pass, and on the same tables damaged at
//! random (frames owned outside every run, frames of runs not owned,
//! illegal fields, an M2P shorter than the frametable).

use std::collections::BTreeSet;

use frame_ownership::testkit::{physmap_machine, random_hvm_machine, random_machine, Machine};
use frame_ownership::{
    frametable_digest, owned_and_frametable_digests, owned_digest, Digest, FrameFlags, FrameInfo,
    PageType,
};
use hvlu_types::{DomId, Mfn};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `owned_digest` by its documentation: the owned frames among those of
/// the runs, each once, in increasing mfn order.
fn owned_by_the_doc(m: &Machine, frametable: &[FrameInfo], m2p: &[u64]) -> u64 {
    let frames: BTreeSet<u64> = m
        .domains
        .iter()
        .flat_map(|d| &d.runs)
        .flat_map(|r| r.first_mfn.0..r.first_mfn.0 + r.count)
        .collect();
    let mut d = Digest::new();
    for mfn in frames {
        let Some(fi) = frametable.get(mfn as usize) else {
            continue;
        };
        if fi.is_owned() {
            d.add_frame(
                Mfn(mfn),
                fi,
                m2p.get(mfn as usize).copied().unwrap_or(u64::MAX),
            );
        }
    }
    d.finish()
}

fn check(m: &Machine, frametable: &[FrameInfo], m2p: &[u64], what: &str) {
    let views = m.views();
    let (owned, scan) = owned_and_frametable_digests(frametable, m2p, &views);
    assert_eq!(
        owned,
        owned_digest(frametable, m2p, &views),
        "{what}: owned"
    );
    assert_eq!(
        scan,
        frametable_digest(frametable, m2p),
        "{what}: frametable"
    );
    assert_eq!(
        owned,
        owned_by_the_doc(m, frametable, m2p),
        "{what}: owned by the doc"
    );
}

#[test]
fn one_walk_gives_both_digests() {
    let mut rng = SmallRng::seed_from_u64(3);
    let (mut damaged, mut differ) = (0, 0);
    for seed in 0..90 {
        let m = match seed % 3 {
            0 => random_machine(seed, 4),
            1 => random_hvm_machine(seed, 2, 2),
            _ => physmap_machine(seed, 2),
        };
        let out = m.run_pass();
        out.result.expect("valid machine");
        let (mut ft, mut m2p) = (out.frametable, out.m2p);
        check(&m, &ft, &m2p, &format!("seed {seed}"));
        let (owned, scan) = owned_and_frametable_digests(&ft, &m2p, &m.views());
        assert_eq!(owned, scan, "seed {seed}: a valid table");

        // Damage: some frames anywhere made owned (or their fields
        // illegal), some made unowned; sometimes a short M2P.
        for _ in 0..rng.random_range(1..6) {
            let mfn = rng.random_range(0..ft.len());
            ft[mfn] = match rng.random_range(0..4) {
                0 => FrameInfo::UNOWNED,
                1 => FrameInfo::new(Some(DomId(7)), PageType::None, 0, 1, FrameFlags::EMPTY),
                2 => FrameInfo::new(None, PageType::L2, 3, 0, FrameFlags::PINNED),
                _ => FrameInfo::new(
                    Some(DomId(0xFFFF)),
                    PageType::Writable,
                    1,
                    2,
                    FrameFlags::EMPTY,
                ),
            };
        }
        if rng.random_bool(0.3) {
            m2p.truncate(rng.random_range(0..m2p.len()));
        }
        check(&m, &ft, &m2p, &format!("seed {seed}, damaged"));
        let (owned, scan) = owned_and_frametable_digests(&ft, &m2p, &m.views());
        damaged += 1;
        differ += u32::from(owned != scan);
    }
    // The damage reached frames outside the runs in some machines: the two
    // digests then differ, and each still equals its own function.
    assert!(differ > 0 && damaged > differ, "{differ} of {damaged}");
}
