//! One test per error variant: take a valid generated machine, corrupt it in
//! one specific way, and check that the pass reports exactly that error
//! (variant and every field), with a message that names the frame.

use frame_ownership::pte::{self, Pte};
use frame_ownership::rules::guest_slots;
use frame_ownership::testkit::{random_machine, Machine};
use frame_ownership::{
    EntryError, EntryRef, Error, FrameClass, FrameFlags, FrameInfo, PageType, RangeList,
    M2P_INVALID,
};
use handover_abi::RunKind;
use hvlu_types::{pte::Level, Gpfn, Mfn};

/// The first valid 4-domain machine (by seed) for which `pick` finds what a
/// test needs.
pub(crate) fn machine_with<T>(pick: impl Fn(&Machine) -> Option<T>) -> (Machine, T) {
    for seed in 0..500 {
        let m = random_machine(seed, 4);
        if let Some(t) = pick(&m) {
            assert!(
                m.run_pass().result.is_ok(),
                "seed {seed} not valid to begin with"
            );
            return (m, t);
        }
    }
    panic!("no generated machine has what this test needs");
}

fn any_machine() -> Machine {
    machine_with(|_| Some(())).0
}

fn run(m: &Machine) -> Error {
    match m.run_pass().result {
        Ok(_) => panic!("corrupted machine accepted"),
        Err(e) => e,
    }
}

/// Runs the pass, checks the error, and checks that its message names
/// `names` (typically the frame in hex).
fn expect(m: &Machine, want: Error, names: &str) {
    let got = run(m);
    assert_eq!(got, want);
    let msg = got.to_string();
    assert!(
        msg.contains(names),
        "message {msg:?} does not name {names:?}"
    );
}

fn hex(mfn: Mfn) -> String {
    format!("{:#x}", mfn.0)
}

/// Present lower-half entries of domain `d`'s tables of `level`:
/// (table, index, value).
fn entries(m: &Machine, d: usize, level: Level) -> Vec<(Mfn, usize, u64)> {
    let mut out = Vec::new();
    for t in m.domains[d].tables_of(level) {
        let table = m.memory.table(t).expect("table frame backed");
        for (i, &e) in table[..guest_slots(level)].iter().enumerate() {
            if e & pte::PRESENT != 0 {
                out.push((t, i, e));
            }
        }
    }
    out
}

/// The first present entry of `level` in domain `d` whose target satisfies
/// `pred` (given the target's owner domain index and run kind).
fn find_entry(
    m: &Machine,
    d: usize,
    level: Level,
    pred: impl Fn(u64, Option<(usize, RunKind)>) -> bool,
) -> Option<(Mfn, usize, u64)> {
    entries(m, d, level)
        .into_iter()
        .find(|&(_, _, e)| pred(e, m.owner_of(Pte(e).mfn())))
}

pub(crate) fn set_entry(m: &mut Machine, table: Mfn, index: usize, value: u64) {
    m.memory.table_mut(table)[index] = value;
}

pub(crate) fn with_target(entry: u64, target: Mfn) -> u64 {
    (entry & !pte::ADDR_MASK) | Pte::new(target, 0).0
}

pub(crate) fn at(m: &Machine, d: usize, table: Mfn, level: Level, index: usize) -> EntryRef {
    EntryRef {
        domain: m.domains[d].id,
        table,
        level,
        index: index as u16,
    }
}

pub(crate) fn data_entry(m: &Machine, d: usize) -> Option<(Mfn, usize, u64)> {
    find_entry(m, d, Level::L1, |_, o| o == Some((d, RunKind::Data)))
}

// ---------------------------------------------------------------- layout

#[test]
fn unsorted_ram_ranges() {
    let mut m = any_machine();
    m.ram.swap(0, 1);
    expect(
        &m,
        Error::Unsorted {
            list: RangeList::Ram,
            index: 1,
        },
        "RAM ranges",
    );
}

#[test]
fn unsorted_hv_reserved_ranges() {
    let mut m = any_machine();
    let first = m.hv_reserved[0];
    m.hv_reserved.push(first);
    let index = m.hv_reserved.len() - 1;
    expect(
        &m,
        Error::Unsorted {
            list: RangeList::HvReserved,
            index,
        },
        "hv-reserved ranges",
    );
}

#[test]
fn unsorted_mmio_ranges() {
    let (mut m, d) = machine_with(|m| m.domains.iter().position(|d| !d.mmio.is_empty()));
    let first = m.domains[d].mmio[0];
    m.domains[d].mmio.push(first);
    let index = m.domains[d].mmio.len() - 1;
    let id = m.domains[d].id;
    expect(
        &m,
        Error::Unsorted {
            list: RangeList::Mmio(id),
            index,
        },
        &format!("MMIO ranges of dom{}", id.0),
    );
}

#[test]
fn frametable_too_small() {
    let m = any_machine();
    let end = m.ram_end() as usize;
    let (mut ft, m2p) = m.new_tables();
    ft.truncate(end - 1);
    let err = m.run_pass_on(ft, m2p.clone()).result.unwrap_err();
    let want = Error::BeyondFrametable {
        mfn: Mfn(end as u64 - 1),
        frametable_len: end as u64 - 1,
        m2p_len: m2p.len() as u64,
    };
    assert_eq!(err, want);
    assert!(err.to_string().contains(&hex(Mfn(end as u64 - 1))));
    // The M2P table too.
    let (ft, mut m2p) = m.new_tables();
    m2p.truncate(10);
    let first_ram_above = m.ram.iter().find(|r| r.end() > 10).unwrap();
    let err = m.run_pass_on(ft.clone(), m2p).result.unwrap_err();
    assert_eq!(
        err,
        Error::BeyondFrametable {
            mfn: Mfn(first_ram_above.start.0.max(10)),
            frametable_len: ft.len() as u64,
            m2p_len: 10,
        }
    );
}

// ---------------------------------------------------------------- domains and runs

#[test]
fn duplicate_domain_id() {
    let mut m = any_machine();
    let id = m.domains[0].id;
    m.domains[2].id = id;
    expect(
        &m,
        Error::DuplicateDomain { domain: id },
        &format!("dom{}", id.0),
    );
}

#[test]
fn runs_not_bottom_up() {
    let mut m = any_machine();
    let runs = &mut m.domains[0].runs;
    let l4 = runs.pop().unwrap();
    assert_eq!(l4.kind, RunKind::L4);
    runs.insert(0, l4);
    let kind = runs[1].kind;
    expect(
        &m,
        Error::RunsNotBottomUp {
            domain: m.domains[0].id,
            run: 1,
            kind,
            previous: RunKind::L4,
        },
        "bottom-up",
    );
}

#[test]
fn run_outside_ram() {
    let (mut m, hole) = machine_with(|m| m.holes.first().copied());
    m.domains[0].runs[0].first_mfn = hole.start;
    expect(
        &m,
        Error::OutsideRam {
            domain: m.domains[0].id,
            run: 0,
            mfn: hole.start,
        },
        &hex(hole.start),
    );
}

#[test]
fn run_beyond_ram_end() {
    let mut m = any_machine();
    let end = Mfn(m.ram_end());
    let last = m.domains[0].runs.len() - 1;
    m.domains[0].runs[last].first_mfn = end;
    expect(
        &m,
        Error::OutsideRam {
            domain: m.domains[0].id,
            run: last,
            mfn: end,
        },
        &hex(end),
    );
}

#[test]
fn run_inside_region() {
    let mut m = any_machine();
    let start = m.region.start;
    m.domains[0].runs[0].first_mfn = start;
    expect(
        &m,
        Error::InRegion {
            domain: m.domains[0].id,
            run: 0,
            mfn: start,
        },
        &hex(start),
    );
}

#[test]
fn run_hv_reserved() {
    let mut m = any_machine();
    let start = m.hv_reserved[0].start;
    m.domains[0].runs[0].first_mfn = start;
    expect(
        &m,
        Error::HvReserved {
            domain: m.domains[0].id,
            run: 0,
            mfn: start,
        },
        &hex(start),
    );
}

#[test]
fn frame_owned_by_two_domains() {
    let mut m = any_machine();
    let stolen = m.domains[0].runs[0];
    m.domains[1].runs.insert(0, stolen);
    expect(
        &m,
        Error::OwnedTwice {
            mfn: stolen.first_mfn,
            first: m.domains[0].id,
            second: m.domains[1].id,
        },
        &hex(stolen.first_mfn),
    );
}

#[test]
fn frame_claimed_twice_by_one_domain() {
    let mut m = any_machine();
    let again = m.domains[0].runs[0];
    m.domains[0].runs.insert(0, again);
    let id = m.domains[0].id;
    expect(
        &m,
        Error::OwnedTwice {
            mfn: again.first_mfn,
            first: id,
            second: id,
        },
        "two of its runs",
    );
}

#[test]
fn gpfn_out_of_range() {
    let (mut m, _) = machine_with(|m| (m.domains[0].runs[0].count >= 2).then_some(()));
    let r = &mut m.domains[0].runs[0];
    r.first_gpfn = Gpfn(u64::MAX - 1);
    let mfn = Mfn(r.first_mfn.0 + 1);
    expect(
        &m,
        Error::GpfnOutOfRange {
            domain: m.domains[0].id,
            run: 0,
            mfn,
        },
        &hex(mfn),
    );
    m.domains[0].runs[0].first_gpfn = Gpfn(u64::MAX);
    let first = m.domains[0].runs[0].first_mfn;
    assert_eq!(
        run(&m),
        Error::GpfnOutOfRange {
            domain: m.domains[0].id,
            run: 0,
            mfn: first,
        }
    );
}

// ---------------------------------------------------------------- entries

#[test]
fn entry_points_at_another_domains_frame() {
    let (mut m, (table, index, e)) = machine_with(|m| data_entry(m, 1));
    let target = m.domains[0].data[0];
    set_entry(&mut m, table, index, with_target(e, target));
    let want = Error::Entry {
        at: at(&m, 1, table, Level::L1, index),
        source: EntryError::ForeignTarget {
            target,
            found: FrameClass::OtherDomain(m.domains[0].id),
        },
    };
    expect(&m, want, &format!("dom{}", m.domains[0].id.0));
}

#[test]
fn entry_points_at_a_later_domains_frame() {
    // Domain 1 claims its frames after domain 0's tables are checked: for
    // domain 0 such a frame is not (yet) anybody's.
    let (mut m, (table, index, e)) = machine_with(|m| data_entry(m, 0));
    let target = m.domains[1].data[0];
    set_entry(&mut m, table, index, with_target(e, target));
    let want = Error::Entry {
        at: at(&m, 0, table, Level::L1, index),
        source: EntryError::ForeignTarget {
            target,
            found: FrameClass::Unowned,
        },
    };
    expect(&m, want, &hex(target));
}

#[test]
fn entry_points_at_free_region_and_reserved_frames() {
    let (m0, (table, index, e)) = machine_with(|m| data_entry(m, 0));
    let layout_free = {
        let layout = m0.layout().unwrap();
        frame_ownership::free_ranges(&layout, &m0.views())
    };
    let cases = [
        (layout_free[0].start, FrameClass::Unowned),
        (m0.region.start, FrameClass::Region),
        (m0.hv_reserved[0].start, FrameClass::HvReserved),
    ];
    let seed_machine = || machine_with(|m| data_entry(m, 0)).0;
    for (target, found) in cases {
        let mut m = seed_machine();
        set_entry(&mut m, table, index, with_target(e, target));
        let want = Error::Entry {
            at: at(&m, 0, table, Level::L1, index),
            source: EntryError::ForeignTarget { target, found },
        };
        expect(&m, want, &hex(target));
    }
}

#[test]
fn upper_entry_type_mismatch() {
    // L2 entry -> a data frame; L3 entry -> an L1; L4 entry -> an L4.
    for (level, to) in [
        (Level::L2, RunKind::Data),
        (Level::L3, RunKind::L1),
        (Level::L4, RunKind::L4),
    ] {
        let (mut m, (table, index, e)) = machine_with(|m| find_entry(m, 0, level, |_, _| true));
        let target = match to {
            RunKind::Data => m.domains[0].data[0],
            _ => m.domains[0].tables_of(to.level().unwrap()).next().unwrap(),
        };
        set_entry(&mut m, table, index, with_target(e, target));
        let want = Error::Entry {
            at: at(&m, 0, table, level, index),
            source: EntryError::TypeMismatch {
                target,
                expected: RunKind::of_level(level.below().unwrap()),
                found: to,
            },
        };
        expect(&m, want, &hex(target));
    }
}

#[test]
fn upper_entry_pointing_at_a_table_not_yet_written() {
    // An entry of the first L2 table the pass reads points at the last L2
    // table it will read: the target is found through the run index, not
    // the frametable.
    let (mut m, (table, index, e, target)) = machine_with(|m| {
        let l2_runs: Vec<_> = m.domains[0]
            .runs
            .iter()
            .filter(|r| r.kind == RunKind::L2)
            .collect();
        let first = l2_runs.first()?.first_mfn;
        let last_run = l2_runs.last()?;
        let target = Mfn(last_run.first_mfn.0 + last_run.count - 1);
        if target == first {
            return None;
        }
        let (index, &e) = m
            .memory
            .table(first)?
            .iter()
            .enumerate()
            .find(|(_, &e)| e & pte::PRESENT != 0)?;
        Some((first, index, e, target))
    });
    set_entry(&mut m, table, index, with_target(e, target));
    assert_eq!(
        run(&m),
        Error::Entry {
            at: at(&m, 0, table, Level::L2, index),
            source: EntryError::TypeMismatch {
                target,
                expected: RunKind::L1,
                found: RunKind::L2,
            }
        }
    );
}

#[test]
fn writable_mapping_of_a_page_table() {
    let (mut m, (table, index, e)) = machine_with(|m| {
        find_entry(
            m,
            0,
            Level::L1,
            |_, o| matches!(o, Some((0, k)) if k != RunKind::Data),
        )
    });
    set_entry(&mut m, table, index, e | pte::WRITABLE);
    let target = Pte(e).mfn();
    let kind = m.owner_of(target).unwrap().1;
    expect(
        &m,
        Error::Entry {
            at: at(&m, 0, table, Level::L1, index),
            source: EntryError::WritablePageTable { target, kind },
        },
        "writable",
    );
}

#[test]
fn mmio_outside_the_permitted_ranges() {
    let far = Mfn(1 << 39);
    let (mut m, (table, index, e)) = machine_with(|m| data_entry(m, 0));
    set_entry(&mut m, table, index, with_target(e, far));
    expect(
        &m,
        Error::Entry {
            at: at(&m, 0, table, Level::L1, index),
            source: EntryError::MmioNotPermitted { target: far },
        },
        "only inside the domain's MMIO ranges",
    );

    // A device range that exists but is not this domain's.
    let (mut m, ((table, index, e), dev)) = machine_with(|m| {
        let dev = m
            .devices
            .iter()
            .find(|r| !m.domains[0].mmio.contains(r))
            .copied()?;
        Some((data_entry(m, 0)?, dev))
    });
    set_entry(&mut m, table, index, with_target(e, dev.start));
    assert_eq!(
        run(&m),
        Error::Entry {
            at: at(&m, 0, table, Level::L1, index),
            source: EntryError::MmioNotPermitted { target: dev.start }
        }
    );
}

/// A permitted device frame mapped with any memory type but uncacheable
/// (PWT and PCD set, PAT clear) is refused, naming the entry.
#[test]
fn mmio_mapped_cacheable() {
    for (what, bits) in [
        ("write-back", 0),
        ("write-through", pte::WRITE_THROUGH),
        ("UC- (PCD alone)", pte::CACHE_DISABLE),
        (
            "PAT set",
            pte::WRITE_THROUGH | pte::CACHE_DISABLE | pte::HUGE,
        ),
    ] {
        let (mut m, ((table, index, e), dev)) =
            machine_with(|m| Some((data_entry(m, 0)?, *m.domains[0].mmio.first()?)));
        let entry = (with_target(e, dev.start) & !frame_ownership::MMIO_CACHE_BITS) | bits;
        set_entry(&mut m, table, index, entry);
        assert_eq!(
            run(&m),
            Error::Entry {
                at: at(&m, 0, table, Level::L1, index),
                source: EntryError::MmioCacheable {
                    target: dev.start,
                    entry,
                },
            },
            "{what}"
        );
        // The same entry uncacheable passes.
        set_entry(
            &mut m,
            table,
            index,
            (entry & !frame_ownership::MMIO_CACHE_BITS) | frame_ownership::MMIO_CACHE,
        );
        assert!(m.run_pass().result.is_ok(), "{what}, made uncacheable");
    }
}

#[test]
fn mmio_in_an_upper_entry() {
    let (mut m, ((table, index, e), dev)) = machine_with(|m| {
        Some((
            find_entry(m, 0, Level::L2, |_, _| true)?,
            *m.domains[0].mmio.first()?,
        ))
    });
    set_entry(&mut m, table, index, with_target(e, dev.start));
    expect(
        &m,
        Error::Entry {
            at: at(&m, 0, table, Level::L2, index),
            source: EntryError::MmioNotPermitted { target: dev.start },
        },
        "only L1 entries may map MMIO",
    );
}

#[test]
fn superpage_refused() {
    for level in [Level::L2, Level::L3, Level::L4] {
        let (mut m, (table, index, e)) = machine_with(|m| find_entry(m, 0, level, |_, _| true));
        let entry = e | pte::HUGE;
        set_entry(&mut m, table, index, entry);
        expect(
            &m,
            Error::Entry {
                at: at(&m, 0, table, level, index),
                source: EntryError::Superpage { entry },
            },
            "PS bit",
        );
    }
}

#[test]
fn global_l1_entry_refused() {
    let (mut m, (table, index, e)) = machine_with(|m| data_entry(m, 0));
    let entry = e | pte::GLOBAL;
    set_entry(&mut m, table, index, entry);
    expect(
        &m,
        Error::Entry {
            at: at(&m, 0, table, Level::L1, index),
            source: EntryError::GlobalMapping { entry },
        },
        "G bit",
    );
}

#[test]
fn pat_bit_in_l1_and_junk_in_hv_slots_are_fine() {
    let (mut m, (table, index, e)) = machine_with(|m| data_entry(m, 0));
    set_entry(&mut m, table, index, e | pte::HUGE);
    let root = m.domains[0].tables_of(Level::L4).next().unwrap();
    for slot in 256..512 {
        set_entry(&mut m, root, slot, u64::MAX);
    }
    assert!(m.run_pass().result.is_ok());
}

// ---------------------------------------------------------------- roots

#[test]
fn pin_of_a_data_frame() {
    let mut m = any_machine();
    let mfn = m.domains[0].data[0];
    m.domains[0].pinned.push((mfn, RunKind::L1));
    expect(
        &m,
        Error::BadPin {
            domain: m.domains[0].id,
            mfn,
            pinned_as: RunKind::L1,
            found: FrameClass::Own(RunKind::Data),
        },
        &hex(mfn),
    );
}

#[test]
fn pin_at_the_wrong_level_or_of_a_foreign_frame() {
    let mut m = any_machine();
    let l4 = m.domains[0].tables_of(Level::L4).next().unwrap();
    m.domains[0].pinned.insert(0, (l4, RunKind::L3));
    assert_eq!(
        run(&m),
        Error::BadPin {
            domain: m.domains[0].id,
            mfn: l4,
            pinned_as: RunKind::L3,
            found: FrameClass::Own(RunKind::L4),
        }
    );
    let mut m = any_machine();
    let l4 = m.domains[0].tables_of(Level::L4).next().unwrap();
    m.domains[1].pinned.insert(0, (l4, RunKind::L4));
    assert_eq!(
        run(&m),
        Error::BadPin {
            domain: m.domains[1].id,
            mfn: l4,
            pinned_as: RunKind::L4,
            found: FrameClass::OtherDomain(m.domains[0].id),
        }
    );
    let mut m = any_machine();
    m.domains[0].pinned.insert(0, (l4, RunKind::Data));
    assert_eq!(
        run(&m),
        Error::BadPin {
            domain: m.domains[0].id,
            mfn: l4,
            pinned_as: RunKind::Data,
            found: FrameClass::Own(RunKind::L4),
        }
    );
}

#[test]
fn pinned_twice() {
    let (mut m, pin) = machine_with(|m| m.domains[0].pinned.first().copied());
    m.domains[0].pinned.push(pin);
    expect(
        &m,
        Error::PinnedTwice {
            domain: m.domains[0].id,
            mfn: pin.0,
        },
        "pinned twice",
    );
}

#[test]
fn cr3_not_an_l4() {
    let (mut m, l3) = machine_with(|m| m.domains[0].tables_of(Level::L3).next());
    m.domains[0].vcpu_cr3.push(l3);
    let vcpu = m.domains[0].vcpu_cr3.len() - 1;
    expect(
        &m,
        Error::BadCr3 {
            domain: m.domains[0].id,
            vcpu,
            mfn: l3,
            found: FrameClass::Own(RunKind::L3),
        },
        &format!("vcpu {vcpu}"),
    );
    // Outside RAM altogether.
    let mut m = any_machine();
    let far = Mfn(1 << 39);
    m.domains[0].vcpu_cr3[0] = far;
    assert_eq!(
        run(&m),
        Error::BadCr3 {
            domain: m.domains[0].id,
            vcpu: 0,
            mfn: far,
            found: FrameClass::ForbiddenMmio,
        }
    );
}

#[test]
fn count_overflow() {
    // The one input that can push a count past u32::MAX in a test-sized
    // machine is a frametable that was not zeroed: preset the reference
    // count of the first data frame.
    let m = any_machine();
    let mfn = m.domains[0].runs[0].first_mfn;
    let (mut ft, m2p) = m.new_tables();
    ft[mfn.0 as usize] = FrameInfo::new(None, PageType::None, 0, u32::MAX, FrameFlags::EMPTY);
    let err = m.run_pass_on(ft, m2p).result.unwrap_err();
    assert_eq!(
        err,
        Error::CountOverflow {
            mfn,
            domain: m.domains[0].id,
        }
    );
    assert!(err.to_string().contains(&hex(mfn)));
}

#[test]
fn valid_machine_writes_m2p_only_for_owned_frames() {
    let m = any_machine();
    let out = m.run_pass();
    out.result.unwrap();
    for (i, fi) in out.frametable.iter().enumerate() {
        assert_eq!(fi.is_owned(), out.m2p[i] != M2P_INVALID, "mfn {i:#x}");
    }
}
