//! One test per refusal of an HVM domain (Invariant 28): a valid machine
//! of a PV and an HVM domain, corrupted in one way, refused with exactly
//! that error, whose message names the domain and the frame.

use frame_ownership::pte::{self, Pte};
use frame_ownership::testkit::{random_hvm_machine, Machine};
use frame_ownership::{EntryRef, Error, FrameClass, NestedError};
use handover_abi::{MemRun, RunKind, NO_GPFN};
use hvlu_types::hole::Hole;
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange};

/// The first machine (by seed) of a PV and an HVM domain, the HVM domain
/// with log-dirty `on`, for which `pick` finds what the test needs.
fn machine_with<T>(log_dirty: bool, pick: impl Fn(&Machine) -> Option<T>) -> (Machine, T) {
    for seed in 0..200 {
        // The first HVM domain has log-dirty on, the second off: drop the
        // one not wanted (its frames are then simply nobody's).
        let mut m = random_hvm_machine(seed, 1, 2);
        m.domains.remove(if log_dirty { 2 } else { 1 });
        if let Some(t) = pick(&m) {
            assert!(m.run_pass().result.is_ok(), "seed {seed} not valid");
            return (m, t);
        }
    }
    panic!("no generated machine has what this test needs");
}

/// The first machine of [`machine_with`] and its HVM domain's index.
fn any_machine(log_dirty: bool) -> (Machine, usize) {
    let (m, _) = machine_with(log_dirty, |_| Some(()));
    let d = hvm_index(&m);
    (m, d)
}

/// The HVM domain's index in a machine from [`machine_with`].
fn hvm_index(m: &Machine) -> usize {
    m.domains.iter().position(|d| d.hvm.is_some()).unwrap()
}

/// [`expect`] of the nested-entry refusal `source` of the entry `at`
/// holding `entry`.
fn expect_nested(m: &Machine, at: EntryRef, entry: u64, source: NestedError, names: &str) {
    expect(m, Error::Nested { at, entry, source }, names);
}

/// Runs the pass and checks the error and that its message names `names`.
fn expect(m: &Machine, want: Error, names: &str) {
    let got = m.run_pass().result.expect_err("corrupted machine accepted");
    assert_eq!(got, want);
    let msg = got.to_string();
    assert!(msg.contains(names), "{msg:?} does not name {names:?}");
    assert!(
        msg.contains(&format!("dom{}", domain_of(&want))),
        "{msg:?} names no domain"
    );
}

fn domain_of(e: &Error) -> DomId {
    match *e {
        Error::Nested { at, .. } => at.domain,
        Error::HvmRunInPvDomain { domain, .. }
        | Error::PvTableInHvmDomain { domain, .. }
        | Error::BadHole { domain, .. }
        | Error::GpfnTwice { domain, .. }
        | Error::HvmCr3 { domain, .. }
        | Error::BadNcr3 { domain, .. }
        | Error::LogDirtyBitmapSize { domain, .. }
        | Error::BadLogDirtyFrame { domain, .. }
        | Error::RamNotMapped { domain, .. }
        | Error::P2mUnreached { domain, .. } => domain,
        _ => panic!("not an HVM error: {e:?}"),
    }
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

/// A present nested entry: where it is, the gpfn it starts at, its value.
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: EntryRef,
    gpfn: u64,
    value: u64,
}

/// Every present entry of the HVM domain `d`'s nested tables, walked from
/// the root in entry order.
fn nested(m: &Machine, d: usize) -> Vec<Entry> {
    fn walk(m: &Machine, d: usize, table: Mfn, level: Level, base: u64, out: &mut Vec<Entry>) {
        let t = *m.memory.table(table).expect("a nested table");
        for (i, &value) in t.iter().enumerate() {
            if value & pte::PRESENT == 0 {
                continue;
            }
            let gpfn = base + ((i as u64) << (9 * (level.number() - 1)));
            out.push(Entry {
                at: EntryRef {
                    domain: m.domains[d].id,
                    table,
                    level,
                    index: i as u16,
                },
                gpfn,
                value,
            });
            if let Some(below) = level.below() {
                walk(m, d, Pte(value).mfn(), below, gpfn, out);
            }
        }
    }
    let mut out = Vec::new();
    let root = m.domains[d].hvm.as_ref().unwrap().ncr3;
    walk(m, d, root, Level::L4, 0, &mut out);
    out
}

/// The RAM leaves (not in the hole) of the HVM domain `d`.
fn ram_leaves(m: &Machine, d: usize) -> Vec<Entry> {
    let hvm = m.domains[d].hvm.as_ref().unwrap();
    let hole = Hole::new(hvm.hole).unwrap();
    nested(m, d)
        .into_iter()
        .filter(|e| e.at.level == Level::L1 && !hole.contains(Gpfn(e.gpfn)))
        .collect()
}

fn set(m: &mut Machine, e: Entry, value: u64) {
    m.memory.table_mut(e.at.table)[usize::from(e.at.index)] = value;
}

/// A RAM frame no run, region or reserved range has.
fn free_frame(m: &Machine, after: u64) -> Mfn {
    let taken = |mfn: Mfn| {
        m.region.contains(mfn)
            || m.hv_reserved.iter().any(|r| r.contains(mfn))
            || m.domains
                .iter()
                .any(|d| d.runs.iter().any(|r| r.mfns().contains(mfn)))
    };
    m.ram
        .iter()
        .flat_map(|r| r.start.0..r.end())
        .map(Mfn)
        .find(|&mfn| mfn.0 > after && !taken(mfn))
        .expect("a free frame")
}

/// Gives the HVM domain `d` a new nested table frame (a P2m run of its
/// own, after its others): an empty table.
fn new_table(m: &mut Machine, d: usize) -> Mfn {
    let mfn = free_frame(m, 0);
    m.memory.table_mut(mfn);
    let runs = &mut m.domains[d].runs;
    let at = runs.iter().rposition(|r| r.kind == RunKind::P2m).unwrap() + 1;
    runs.insert(
        at,
        MemRun {
            first_mfn: mfn,
            count: 1,
            first_gpfn: NO_GPFN,
            kind: RunKind::P2m,
        },
    );
    mfn
}

/// Makes `gpfn` map `value` in the HVM domain `d`'s tables, creating the
/// tables on the way; returns the leaf's place.
fn put_leaf(m: &mut Machine, d: usize, gpfn: u64, value: u64) -> EntryRef {
    let mut table = m.domains[d].hvm.as_ref().unwrap().ncr3;
    for level in [Level::L4, Level::L3, Level::L2] {
        let i = ((gpfn >> (9 * (level.number() - 1))) & 511) as usize;
        let e = m.memory.table_mut(table)[i];
        table = if e & pte::PRESENT != 0 {
            Pte(e).mfn()
        } else {
            let t = new_table(m, d);
            let flags = pte::PRESENT | pte::USER | pte::WRITABLE;
            m.memory.table_mut(table)[i] = Pte::new(t, flags).0;
            t
        };
    }
    let i = (gpfn & 511) as usize;
    m.memory.table_mut(table)[i] = value;
    EntryRef {
        domain: m.domains[d].id,
        table,
        level: Level::L1,
        index: i as u16,
    }
}

#[test]
fn a_nested_entry_without_the_user_bit() {
    let (mut m, d) = any_machine(true);
    let e = nested(&m, d)[0];
    set(&mut m, e, e.value & !pte::USER);
    expect_nested(
        &m,
        e.at,
        e.value & !pte::USER,
        NestedError::UserClear,
        &hex(e.at.table.0),
    );
}

#[test]
fn a_nested_large_page() {
    let (mut m, d) = any_machine(true);
    let e = nested(&m, d)
        .into_iter()
        .find(|e| e.at.level == Level::L2)
        .unwrap();
    set(&mut m, e, e.value | pte::HUGE);
    expect_nested(
        &m,
        e.at,
        e.value | pte::HUGE,
        NestedError::LargePage,
        &hex(e.at.table.0),
    );
}

#[test]
fn a_nested_entry_pointing_at_a_data_frame() {
    let (mut m, d) = any_machine(true);
    let e = nested(&m, d)[0];
    let target = m.domains[d].data[0];
    let value = Pte::new(target, e.value).0;
    set(&mut m, e, value);
    expect_nested(
        &m,
        e.at,
        value,
        NestedError::NotP2mTable {
            target,
            found: FrameClass::Own(RunKind::Data),
        },
        &hex(target.0),
    );
}

#[test]
fn a_nested_table_reached_twice() {
    let (mut m, d) = any_machine(true);
    let first = nested(&m, d)[0];
    let root = m.domains[d].hvm.as_ref().unwrap().ncr3;
    // A second root slot pointing at the same L3.
    let slot = (0..512)
        .find(|&i| m.memory.table(root).unwrap()[i] & pte::PRESENT == 0)
        .unwrap();
    m.memory.table_mut(root)[slot] = first.value;
    let at = EntryRef {
        index: slot as u16,
        ..first.at
    };
    expect(
        &m,
        Error::Nested {
            at,
            entry: first.value,
            source: NestedError::TableTwice {
                target: Pte(first.value).mfn(),
            },
        },
        &hex(Pte(first.value).mfn().0),
    );
}

#[test]
fn a_leaf_in_the_hole_that_is_not_an_identity_entry() {
    let (mut m, d) = any_machine(true);
    let gpfn = m.domains[d].hvm.as_ref().unwrap().hole.0 + 3;
    let value = Pte::new(
        Mfn(gpfn),
        pte::PRESENT | pte::USER | frame_ownership::MMIO_CACHE,
    )
    .0;
    let at = put_leaf(&mut m, d, gpfn, value);
    expect(
        &m,
        Error::Nested {
            at,
            entry: value,
            source: NestedError::HoleNotIdentity {
                gpfn: Gpfn(gpfn),
                target: Mfn(gpfn),
            },
        },
        &hex(gpfn),
    );
}

/// An identity range the domain's tables map, on device memory past RAM
/// (given to its MMIO ranges when `permitted`), and one leaf of it.
fn with_identity(permitted: bool, flags: u64) -> (Machine, usize, EntryRef, u64, u64) {
    let (mut m, d) = any_machine(true);
    let gpfn = (m.frametable_len as u64 + 200).max(0x1000 + 200);
    let range = MfnRange::new(Mfn(gpfn), 1);
    // Past every device: the sorted list stays sorted.
    m.domains[d].hvm.as_mut().unwrap().identity.push(range);
    if permitted {
        m.domains[d].mmio.push(range);
    }
    let value = Pte::new(Mfn(gpfn), pte::PRESENT | pte::USER | flags).0;
    let at = put_leaf(&mut m, d, gpfn, value);
    (m, d, at, gpfn, value)
}

#[test]
fn an_identity_entry_that_is_not_permitted_device_memory() {
    let (m, _, at, gpfn, value) = with_identity(false, frame_ownership::MMIO_CACHE);
    expect(
        &m,
        Error::Nested {
            at,
            entry: value,
            source: NestedError::HoleNotMmio {
                gpfn: Gpfn(gpfn),
                target: Mfn(gpfn),
                found: FrameClass::ForbiddenMmio,
            },
        },
        &hex(gpfn),
    );
}

#[test]
fn an_identity_entry_mapped_cacheable() {
    let (m, _, at, gpfn, value) = with_identity(true, pte::WRITE_THROUGH);
    expect(
        &m,
        Error::Nested {
            at,
            entry: value,
            source: NestedError::MmioCacheable { gpfn: Gpfn(gpfn) },
        },
        &hex(gpfn),
    );
    // Uncacheable, it passes.
    let (m, ..) = with_identity(true, frame_ownership::MMIO_CACHE);
    assert!(m.run_pass().result.is_ok());
}

#[test]
fn a_leaf_beyond_the_ram() {
    let (mut m, d) = any_machine(true);
    let h = m.domains[d].hvm.as_ref().unwrap();
    let gpfn = Hole::new(h.hole).unwrap().gpfn_of(h.max_frames).unwrap().0;
    let target = m.domains[d].data[0];
    let value = Pte::new(target, pte::PRESENT | pte::USER).0;
    let at = put_leaf(&mut m, d, gpfn, value);
    expect(
        &m,
        Error::Nested {
            at,
            entry: value,
            source: NestedError::BeyondRam { gpfn: Gpfn(gpfn) },
        },
        &hex(gpfn),
    );
}

#[test]
fn a_leaf_of_ram_no_run_gives() {
    let (mut m, d) = any_machine(true);
    let mapped: Vec<u64> = ram_leaves(&m, d).iter().map(|e| e.gpfn).collect();
    let gpfn = (0..).find(|g| !mapped.contains(g)).unwrap();
    let target = free_frame(&m, 0);
    let value = Pte::new(target, pte::PRESENT | pte::USER).0;
    let at = put_leaf(&mut m, d, gpfn, value);
    expect(
        &m,
        Error::Nested {
            at,
            entry: value,
            source: NestedError::UnbackedRam {
                gpfn: Gpfn(gpfn),
                target,
            },
        },
        &hex(gpfn),
    );
}

#[test]
fn a_leaf_naming_another_frame_than_the_runs() {
    let (mut m, _) = machine_with(true, |m| {
        (m.domains[hvm_index(m)].data.len() > 1).then_some(())
    });
    let d = hvm_index(&m);
    let e = ram_leaves(&m, d)[0];
    let expected = Pte(e.value).mfn();
    let target = *m.domains[d].data.iter().find(|&&f| f != expected).unwrap();
    let value = Pte::new(target, e.value).0;
    set(&mut m, e, value);
    expect_nested(
        &m,
        e.at,
        value,
        NestedError::WrongFrame {
            gpfn: Gpfn(e.gpfn),
            target,
            expected,
        },
        &hex(target.0),
    );
}

#[test]
fn a_leaf_naming_a_nested_table_or_the_bitmap() {
    for kind in [RunKind::P2m, RunKind::LogDirty] {
        let (mut m, d) = any_machine(true);
        let e = ram_leaves(&m, d)[0];
        let h = m.domains[d].hvm.as_ref().unwrap();
        let target = match kind {
            RunKind::P2m => h.ncr3,
            _ => h.log_dirty.unwrap().start,
        };
        let value = Pte::new(target, e.value).0;
        set(&mut m, e, value);
        expect_nested(
            &m,
            e.at,
            value,
            NestedError::HypervisorFrame {
                gpfn: Gpfn(e.gpfn),
                target,
                kind,
            },
            &hex(target.0),
        );
    }
}

#[test]
fn a_read_only_ram_leaf_while_log_dirty_is_off() {
    let (mut m, d) = any_machine(false);
    assert!(m.domains[d].hvm.as_ref().unwrap().log_dirty.is_none());
    let e = ram_leaves(&m, d)[0];
    set(&mut m, e, e.value & !pte::WRITABLE);
    expect_nested(
        &m,
        e.at,
        e.value & !pte::WRITABLE,
        NestedError::ReadOnlyRam { gpfn: Gpfn(e.gpfn) },
        &hex(e.gpfn),
    );
}

#[test]
fn a_writable_clean_page_while_log_dirty_is_on() {
    let (mut m, e) = machine_with(true, |m| {
        let d = hvm_index(m);
        ram_leaves(m, d)
            .into_iter()
            .find(|e| e.value & pte::WRITABLE != 0)
    });
    let d = hvm_index(&m);
    let h = m.domains[d].hvm.clone().unwrap();
    let index = Hole::new(h.hole).unwrap().index_of(Gpfn(e.gpfn)).unwrap();
    let bitmap = h.log_dirty.unwrap();
    m.memory.table_mut(Mfn(bitmap.start.0 + index / 32768))[((index % 32768) / 64) as usize] &=
        !(1 << (index % 64));
    expect_nested(
        &m,
        e.at,
        e.value,
        NestedError::CleanWritable {
            gpfn: Gpfn(e.gpfn),
            index,
        },
        &hex(e.gpfn),
    );
}

#[test]
fn ram_of_the_runs_left_unmapped() {
    // The first RAM leaf (a later leaf then finds it skipped) and the last
    // (the end of the walk does).
    for last in [false, true] {
        let (mut m, d) = any_machine(true);
        let leaves = ram_leaves(&m, d);
        let e = if last {
            leaves[leaves.len() - 1]
        } else {
            leaves[0]
        };
        set(&mut m, e, e.value & !pte::PRESENT);
        expect(
            &m,
            Error::RamNotMapped {
                domain: m.domains[d].id,
                gpfn: Gpfn(e.gpfn),
                mfn: Pte(e.value).mfn(),
            },
            &hex(e.gpfn),
        );
    }
}

#[test]
fn a_nested_table_never_reached() {
    let (mut m, d) = any_machine(true);
    let mfn = new_table(&mut m, d);
    expect(
        &m,
        Error::P2mUnreached {
            domain: m.domains[d].id,
            mfn,
        },
        &hex(mfn.0),
    );
}

#[test]
fn an_ncr3_that_is_not_a_nested_table() {
    let (mut m, d) = any_machine(true);
    let mfn = m.domains[d].data[0];
    m.domains[d].hvm.as_mut().unwrap().ncr3 = mfn;
    for c in &mut m.domains[d].vcpu_cr3 {
        *c = mfn;
    }
    expect(
        &m,
        Error::BadNcr3 {
            domain: m.domains[d].id,
            mfn,
            found: FrameClass::Own(RunKind::Data),
        },
        &hex(mfn.0),
    );
}

#[test]
fn an_hvm_vcpu_on_another_root() {
    let (mut m, d) = any_machine(true);
    let mfn = m.domains[d].data[0];
    let ncr3 = m.domains[d].hvm.as_ref().unwrap().ncr3;
    m.domains[d].vcpu_cr3[0] = mfn;
    expect(
        &m,
        Error::HvmCr3 {
            domain: m.domains[d].id,
            vcpu: 0,
            mfn,
            ncr3,
        },
        &hex(mfn.0),
    );
}

#[test]
fn a_log_dirty_bitmap_of_the_wrong_size_or_frames() {
    let (mut m, d) = any_machine(true);
    let h = m.domains[d].hvm.clone().unwrap();
    let bitmap = h.log_dirty.unwrap();
    m.domains[d].hvm.as_mut().unwrap().max_frames = bitmap.count * 32768 + 1;
    expect(
        &m,
        Error::LogDirtyBitmapSize {
            domain: m.domains[d].id,
            frames: bitmap.count,
            expected: bitmap.count + 1,
            max_frames: bitmap.count * 32768 + 1,
        },
        &(bitmap.count * 32768 + 1).to_string(),
    );
    m.domains[d].hvm.as_mut().unwrap().max_frames = h.max_frames;
    let data = m.domains[d].data[0];
    m.domains[d].hvm.as_mut().unwrap().log_dirty = Some(MfnRange::new(data, bitmap.count));
    expect(
        &m,
        Error::BadLogDirtyFrame {
            domain: m.domains[d].id,
            mfn: data,
            found: FrameClass::Own(RunKind::Data),
        },
        &hex(data.0),
    );
}

#[test]
fn nested_runs_in_a_pv_domain_and_guest_tables_in_an_hvm_domain() {
    let (mut m, d) = any_machine(true);
    let pv = 1 - d;
    let frame = free_frame(&m, 0);
    let end = m.domains[pv].runs.len();
    m.domains[pv].runs.push(MemRun {
        first_mfn: frame,
        count: 1,
        first_gpfn: NO_GPFN,
        kind: RunKind::LogDirty,
    });
    expect(
        &m,
        Error::HvmRunInPvDomain {
            domain: m.domains[pv].id,
            run: end,
            kind: RunKind::LogDirty,
        },
        "LogDirty",
    );
    m.domains[pv].runs.pop();
    let data_runs = m.domains[d]
        .runs
        .iter()
        .filter(|r| r.kind == RunKind::Data)
        .count();
    m.domains[d].runs.insert(
        data_runs,
        MemRun {
            first_mfn: frame,
            count: 1,
            first_gpfn: Gpfn(0x7fff_0000),
            kind: RunKind::L1,
        },
    );
    expect(
        &m,
        Error::PvTableInHvmDomain {
            domain: m.domains[d].id,
            run: data_runs,
            kind: RunKind::L1,
        },
        "L1",
    );
}

#[test]
fn two_data_runs_giving_one_guest_frame() {
    let (mut m, d) = any_machine(true);
    let frame = free_frame(&m, 0);
    let first = m.domains[d].runs[0];
    let gpfn = Gpfn(first.first_gpfn.0 + first.count - 1);
    m.domains[d].runs.insert(
        0,
        MemRun {
            first_mfn: frame,
            count: 1,
            first_gpfn: gpfn,
            kind: RunKind::Data,
        },
    );
    expect(
        &m,
        Error::GpfnTwice {
            domain: m.domains[d].id,
            gpfn,
        },
        &hex(gpfn.0),
    );
}

#[test]
fn an_hvm_domain_with_a_bad_hole() {
    let (mut m, d) = any_machine(true);
    m.domains[d].hvm.as_mut().unwrap().hole = Gpfn(0x1001);
    expect(
        &m,
        Error::BadHole {
            domain: m.domains[d].id,
            hole: Gpfn(0x1001),
        },
        "0x1001",
    );
}
