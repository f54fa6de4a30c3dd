//! The pass on tables whose entries outside the named frames hold whatever
//! a previous image left (Invariant 29): it reads and writes only the named
//! entries, so it gives the same result as on zeroed tables, and an entry
//! that claims a frame no run names for the domain does not make a
//! mapping of it legal.

use frame_ownership::lazy::{init_named, named_ranges, Unsettled};
use frame_ownership::testkit::{random_machine, Machine};
use frame_ownership::{
    frametable_digest, owned_digest, EntryError, Error, FrameClass, FrameFlags, FrameInfo, PageType,
};
use hvlu_types::DomId;

/// Tables of the machine's size full of entries that claim `owner` and an
/// L1 type, with the named frames' entries initialised.
fn dirty_tables(m: &Machine, owner: DomId) -> (Vec<FrameInfo>, Vec<u64>) {
    let (ft, m2p) = m.new_tables();
    let junk = FrameInfo::new(Some(owner), PageType::None, 0, 7, FrameFlags::EMPTY);
    let mut ft = vec![junk; ft.len()];
    let mut m2p = vec![0x1234; m2p.len()];
    init_named(&mut ft, &mut m2p, &named_ranges(&m.views()));
    (ft, m2p)
}

#[test]
fn the_pass_on_dirty_tables_equals_the_pass_on_zeroed_tables_once_settled() {
    for seed in 0..60 {
        let m = random_machine(seed, 4);
        let clean = m.run_pass();
        let Ok(report) = &clean.result else {
            panic!("seed {seed}: valid machine refused");
        };
        let owner = m.domains[0].id;
        let (ft, m2p) = dirty_tables(&m, owner);
        let mut dirty = m.run_pass_on(ft, m2p);
        assert_eq!(dirty.result.as_ref(), Ok(report), "seed {seed}");
        let views = m.views();
        assert_eq!(
            owned_digest(&dirty.frametable, &dirty.m2p, &views),
            owned_digest(&clean.frametable, &clean.m2p, &views),
            "seed {seed}"
        );
        let layout = m.layout().unwrap();
        let free = frame_ownership::free_ranges(&layout, &views);
        let mut unsettled =
            Unsettled::after_update(dirty.frametable.len() as u64, &named_ranges(&views), &free);
        let mut released = Vec::new();
        unsettled.settle_all(&mut dirty.frametable, &mut dirty.m2p, |r| released.push(r));
        assert_eq!(dirty.frametable, clean.frametable, "seed {seed}");
        assert_eq!(dirty.m2p, clean.m2p, "seed {seed}");
        assert_eq!(
            frametable_digest(&dirty.frametable, &dirty.m2p),
            frametable_digest(&clean.frametable, &clean.m2p)
        );
        assert_eq!(frame_ownership::lazy::merged(released), free, "seed {seed}");
    }
}

#[test]
fn a_dirty_entry_that_claims_a_free_frame_for_the_domain_does_not_make_its_mapping_legal() {
    use super::errors::{at, data_entry, machine_with, set_entry, with_target};
    let (mut m, (table, index, e)) = machine_with(|m| data_entry(m, 0));
    let layout = m.layout().unwrap();
    let target = frame_ownership::free_ranges(&layout, &m.views())[0].start;
    set_entry(&mut m, table, index, with_target(e, target));
    // Every entry outside the named frames says domain 0 owns it.
    let (ft, m2p) = dirty_tables(&m, m.domains[0].id);
    let want = Error::Entry {
        at: at(&m, 0, table, hvlu_types::pte::Level::L1, index),
        source: EntryError::ForeignTarget {
            target,
            found: FrameClass::Unowned,
        },
    };
    assert_eq!(m.run_pass_on(ft, m2p).result, Err(want));
}
