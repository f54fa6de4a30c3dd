//! The whole handover on simulated machines: the production outgoing
//! sequence (`old_hv::exec::exec`) stages a random machine's update on a
//! simulated host (`sim`), and the incoming role's pieces — verify, the
//! pass, the p2m, the report — are checked one by one on what it wrote, and
//! each refusal on a copy of it made wrong in one way. The whole incoming
//! sequence on the same host is `tests/update.rs`.

mod by_the_doc;
mod sim;

use frame_ownership::testkit::Machine;
use frame_ownership::{frametable_digest, FrameInfo};
use handover_abi::entry::{EntryArgs, ENTRY_ARGS_SIZE};
use handover_abi::version::{AbiVersion, VersionRange};
use handover_abi::READS;
use handover_abi::{BuildId, HandoverState, Producer};
use hvlu_types::hole::Hole;
use hvlu_types::{pte::Level, DomId, Gpfn, Mfn, MfnRange, PAGE_SIZE};
use new_hv::{InTimes, IncomingError, Report};
use old_hv::handover;
use old_hv::staging::End;
use sim::Sim;

/// A staged update of a random machine: what the old side wrote.
struct Staged {
    machine: Machine,
    /// The old side's tables.
    frametable: Vec<FrameInfo>,
    m2p: Vec<u64>,
    state: HandoverState,
    blob: Vec<u8>,
    args: EntryArgs,
}

impl Staged {
    fn image(&self) -> MfnRange {
        MfnRange::new(
            Mfn::containing(self.args.image_phys),
            self.args.image_len.div_ceil(PAGE_SIZE),
        )
    }

    fn state_area(&self) -> MfnRange {
        self.state.machine.region.state
    }

    fn args_bytes(&self) -> [u8; ENTRY_ARGS_SIZE] {
        self.args.to_bytes()
    }
}

/// The update of the machine of `seed` as `old_hv::exec::exec` stages it,
/// read back from the simulated memory; `None` for a machine the state
/// cannot carry.
fn try_stage(seed: u64, domains: usize) -> Option<Staged> {
    let mut sim = Sim::new(seed, domains)?;
    let info = Sim::image();
    let staging = sim.stage(&info, End::Bottom);
    let args_phys = old_hv::exec::exec(&mut sim, &info, &staging).expect("exec jumps");
    let mut raw = [0u8; ENTRY_ARGS_SIZE];
    sim.read_phys(args_phys, &mut raw).unwrap();
    let args = EntryArgs::from_bytes(&raw).expect("a valid argument page");
    let mut blob = vec![0u8; args.state_len as usize];
    sim.read_phys(args.state_phys, &mut blob).unwrap();
    let state = handover_abi::decode(&blob).expect("a valid state").state;
    Some(Staged {
        machine: sim.machine,
        frametable: sim.frametable,
        m2p: sim.m2p,
        state,
        blob,
        args,
    })
}

fn stage(seed: u64, domains: usize) -> Staged {
    (seed..)
        .find_map(|s| try_stage(s, domains))
        .expect("a machine")
}

#[test]
fn round_trip_on_random_machines() {
    let mut tested = 0;
    for seed in 0..32 {
        let domains = 1 + (seed % 4) as usize;
        // A state cannot carry domain id 0xffff (no next id above it).
        let Some(s) = try_stage(seed, domains) else {
            continue;
        };
        tested += 1;
        let m = &s.machine;
        let (args, state) = new_hv::verify(&s.args_bytes(), &s.blob, READS).expect("verified");
        assert_eq!(state, s.state, "seed {seed}");
        let staged = new_hv::staged_range(&args).unwrap();
        assert_eq!(staged.start, s.image().start.addr());
        assert!(staged.end() <= s.state_area().end() * PAGE_SIZE);
        assert_eq!(new_hv::ram::of_state(&state), m.ram, "seed {seed}");

        let (mut ft, mut m2p) = m.new_tables();
        let layout = m.layout().unwrap();
        let adopted = new_hv::adopt(&layout, &state, &m.memory, &mut ft, &mut m2p, args.digest)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(adopted.digest, args.digest, "seed {seed}");
        // The independent scan of the whole new table agrees too, once
        // the entries the update left are initialised.
        let mut unsettled = adopted.unsettled.clone();
        unsettled.settle_all(&mut ft, &mut m2p, |_| {});
        assert_eq!(frametable_digest(&ft, &m2p), args.digest, "seed {seed}");
        assert_eq!(adopted.digest, frametable_digest(&s.frametable, &s.m2p));
        assert_eq!(ft, s.frametable, "seed {seed}: frametables differ");
        assert_eq!(m2p, s.m2p, "seed {seed}: M2Ps differ");
        let owned = ft.iter().filter(|f| f.is_owned()).count() as u64;
        assert_eq!(adopted.report.frames_owned, owned);

        // Free = RAM minus owned, region and reserved frames.
        let mut expected = Vec::new();
        for r in &m.ram {
            for mfn in r.start.0..r.end() {
                let taken = ft[mfn as usize].is_owned()
                    || m.region.contains(Mfn(mfn))
                    || m.hv_reserved.iter().any(|h| h.contains(Mfn(mfn)));
                if !taken {
                    expected.push(mfn);
                }
            }
        }
        let free: Vec<u64> = adopted
            .free
            .iter()
            .flat_map(|r| r.start.0..r.end())
            .collect();
        assert_eq!(free, expected, "seed {seed}");

        // Each domain's p2m comes back; its L4s are its L4 runs' frames.
        for (d, sd) in state.domains.iter().zip(&m.domains) {
            let p2m = new_hv::p2m_of(&d.runs, Hole::DEFAULT);
            for r in &sd.runs {
                for i in 0..r.count {
                    assert_eq!(p2m[(r.first_gpfn.0 + i) as usize], r.first_mfn.0 + i);
                }
            }
            let mut l4s: Vec<Mfn> = new_hv::l4_frames(d).collect();
            l4s.sort();
            let mut want: Vec<Mfn> = sd.tables_of(Level::L4).collect();
            want.sort();
            let want: Vec<Mfn> = want
                .into_iter()
                .filter(|t| ft[t.0 as usize].is_owned())
                .collect();
            assert_eq!(l4s, want, "seed {seed}");
        }
    }
    assert!(tested >= 20, "only {tested} machines tested");
}

#[test]
fn an_entry_left_uninitialised_shows_in_the_independent_digest() {
    // The owned-frame digest follows the runs, so an entry outside them
    // that still holds what a previous image left passes the check; the
    // scan of the whole table sees it until the entry is initialised.
    let s = stage(5, 2);
    let m = &s.machine;
    let (args, state) = new_hv::verify(&s.args_bytes(), &s.blob, READS).expect("verified");
    let (mut ft, mut m2p) = m.new_tables();
    let in_runs = |mfn: u64| {
        state
            .domains
            .iter()
            .flat_map(|d| d.runs.iter())
            .any(|r| r.mfns().contains(Mfn(mfn)))
    };
    let stray = (0..ft.len() as u64)
        .rev()
        .find(|&mfn| !in_runs(mfn))
        .expect("a frame outside the runs");
    ft[stray as usize]
        .claim(DomId(1), handover_abi::RunKind::Data)
        .unwrap();
    let layout = m.layout().unwrap();
    let adopted = new_hv::adopt(&layout, &state, &m.memory, &mut ft, &mut m2p, args.digest)
        .expect("the check over the runs passes");
    assert_eq!(adopted.digest, args.digest);
    assert!(adopted.unsettled.contains(Mfn(stray)));
    let scan = frametable_digest(&ft, &m2p);
    assert_ne!(scan, args.digest);
    let report = new_hv::Report {
        digest_new: scan,
        ..new_hv::Report::new(&args, &new_hv::InTimes::default(), (0, 0), BuildId([8; 16]))
    };
    assert!(report.to_string().contains(" digest_equal=no "), "{report}");
    let mut unsettled = adopted.unsettled.clone();
    unsettled.settle_all(&mut ft, &mut m2p, |_| {});
    assert_eq!(frametable_digest(&ft, &m2p), args.digest);
}

fn verify_err(args: &EntryArgs, blob: &[u8]) -> IncomingError {
    new_hv::verify(&args.to_bytes(), blob, READS).expect_err("refused")
}

#[test]
fn bad_argument_page_is_refused() {
    let s = stage(1, 2);
    let mut raw = s.args_bytes();
    raw[40] ^= 1;
    let e = new_hv::verify(&raw, &s.blob, READS).unwrap_err();
    assert!(matches!(e, IncomingError::Args(_)), "{e:?}");
    assert!(e.to_string().contains("CRC32C mismatch"), "{e}");
}

#[test]
fn image_overlapping_the_state_is_refused() {
    let s = stage(2, 1);
    let mut a = s.args;
    a.image_phys = a.state_phys - PAGE_SIZE;
    a.image_len = 2 * PAGE_SIZE;
    let e = verify_err(&a, &s.blob);
    assert!(matches!(e, IncomingError::StagedOverlap { .. }), "{e:?}");
    assert!(e.to_string().contains("overlap"), "{e}");
}

#[test]
fn state_outside_region_is_refused() {
    let s = stage(3, 1);
    let mut a = s.args;
    a.state_len = a.region_size;
    let e = verify_err(&a, &s.blob);
    assert!(
        matches!(e, IncomingError::StagedOutsideRegion { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("not inside the region"), "{e}");
}

#[test]
fn region_mismatch_is_refused() {
    let s = stage(4, 1);
    let mut a = s.args;
    a.region_size += PAGE_SIZE;
    let e = verify_err(&a, &s.blob);
    assert!(matches!(e, IncomingError::RegionMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("the state's region"), "{e}");
}

#[test]
fn image_mismatch_is_refused() {
    let s = stage(5, 1);
    let mut a = s.args;
    a.image_len -= PAGE_SIZE;
    let e = verify_err(&a, &s.blob);
    assert!(matches!(e, IncomingError::ImageMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("the state's image"), "{e}");
}

#[test]
fn misplaced_state_is_refused() {
    // The state lists its area one page above where the argument page puts it.
    let s = stage(6, 1);
    let mut state = s.state.clone();
    let listed = state.machine.region.state;
    state.machine.region.state = MfnRange::new(Mfn(listed.start.0 + 1), listed.count - 1);
    let blob = handover::serialise(
        handover_abi::CURRENT,
        &state,
        &Producer::this_build(BuildId([7; 16])),
        1 << 20,
    )
    .unwrap();
    let mut a = s.args;
    a.state_len = blob.len() as u64;
    let e = verify_err(&a, &blob);
    assert!(matches!(e, IncomingError::StateMisplaced { .. }), "{e:?}");
    assert!(e.to_string().contains("not where the state says"), "{e}");
}

#[test]
fn corrupted_body_is_refused() {
    let s = stage(7, 2);
    let mut blob = s.blob.clone();
    blob[handover_abi::HEADER_SIZE + 5] ^= 0x10;
    let e = verify_err(&s.args, &blob);
    assert!(matches!(e, IncomingError::Decode(_)), "{e:?}");
    // The QEMU test looks for this phrase.
    assert!(e.to_string().contains("body CRC mismatch"), "{e}");
}

#[test]
fn digest_mismatch_is_refused() {
    let s = stage(8, 2);
    let m = &s.machine;
    let (mut ft, mut m2p) = m.new_tables();
    let e = new_hv::adopt(
        &m.layout().unwrap(),
        &s.state,
        &m.memory,
        &mut ft,
        &mut m2p,
        s.args.digest ^ 1,
    )
    .unwrap_err();
    assert!(matches!(e, IncomingError::DigestMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("digest"), "{e}");
}

#[test]
fn a_state_the_pass_refuses_is_refused() {
    let s = stage(9, 1);
    let m = &s.machine;
    let mut state = s.state.clone();
    // A data run inside the live-update region.
    state.domains[0].runs.insert(
        0,
        handover_abi::MemRun {
            first_mfn: m.region.start,
            count: 1,
            first_gpfn: Gpfn(1 << 30),
            kind: handover_abi::RunKind::Data,
        },
    );
    let (mut ft, mut m2p) = m.new_tables();
    let e = new_hv::adopt(
        &m.layout().unwrap(),
        &state,
        &m.memory,
        &mut ft,
        &mut m2p,
        0,
    )
    .unwrap_err();
    assert!(matches!(e, IncomingError::Pass(_)), "{e:?}");
    assert!(e.to_string().starts_with("frametable pass: "), "{e}");
}

#[test]
fn report_line_keeps_its_fields_in_order() {
    let mut s = stage(10, 1);
    // The outgoing side's figures, as a hypervisor with a 1 GHz TSC took
    // them.
    s.args = EntryArgs {
        tsc_khz: 1_000_000,
        tsc_pause: 1_000,
        tsc_paused: 2_000,
        tsc_serialised: 3_000,
        tsc_preflight: 4_000,
        tsc_jump: 5_000,
        free_frames: 10,
        sequence: 1,
        free_digest: Some(0),
        ..s.args
    };
    let t = InTimes {
        entry: 6_000,
        heap: 7_000,
        verified: 8_000,
        booted: 9_000,
        pass: 10_000,
        resumed: 11_000,
        ..InTimes::default()
    };
    let r = Report {
        frames: 5,
        runs: 3,
        digest_new: s.args.digest,
        free_after: 10,
        ..Report::new(&s.args, &t, (12_000, 14_000), BuildId([0xab; 16]))
    };
    let line = r.to_string();
    let names: Vec<&str> = line
        .strip_prefix("lu-report ")
        .unwrap()
        .split(' ')
        .map(|f| f.split('=').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "seq",
            "from",
            "to",
            "pause_us",
            "serialise_us",
            "preflight_us",
            "jump_us",
            "boot_us",
            "verify_us",
            "pass_us",
            "resume_us",
            "blackout_us",
            "release_us",
            "state_bytes",
            "frames",
            "runs",
            "digest_old",
            "digest_new",
            "digest_equal",
            "free_before",
            "image_frames_released",
            "free_after",
            "free_digest_old",
            "free_digest_new",
            "free_equal",
            "capacity_kib"
        ]
    );
    assert!(line.starts_with("lu-report seq=1 from=0707070707070707 to=abababababababab pause_us=1 serialise_us=1 preflight_us=1 jump_us=2 boot_us=2 verify_us=1 pass_us=1 resume_us=1 blackout_us=10 release_us=2 "), "{line}");
    assert!(line.contains(" digest_equal=yes "), "{line}");
    assert!(
        line.ends_with(
            " free_before=10 image_frames_released=0 free_after=10 \
             free_digest_old=0x0000000000000000 free_digest_new=0x0000000000000000 \
             free_equal=yes capacity_kib=0"
        ),
        "{line}"
    );
}

#[test]
fn the_report_line_ends_with_every_sub_step_of_both_sides() {
    let s = stage(1, 2);
    let args = EntryArgs {
        tsc_khz: 1_000,
        tsc_pause: 1_000,
        tsc_paused: 2_000,
        ..s.args
    };
    let mut t = InTimes {
        entry: 6_000,
        resumed: 11_000,
        ..InTimes::default()
    };
    t.out.mark("collect", 2_500);
    t.out.mark("encode", 4_000);
    t.marks.mark("heap", 7_000);
    t.marks.mark("pagetbls", 10_000);
    let line = Report::new(&args, &t, (0, 0), BuildId([1; 16])).to_string();
    assert!(
        line.ends_with(
            " capacity_kib=0 out_collect_us=500 out_encode_us=1500 in_heap_us=1000 in_pagetbls_us=3000"
        ),
        "{line}"
    );
}

#[test]
fn a_version_this_image_does_not_read_is_refused() {
    // An image whose note said it reads only 1.0 gets a 1.2 state (a
    // state without an HVM domain is written as 1.2 by a writer of 1.3).
    let s = stage(3, 2);
    let only_1_0 = VersionRange::single(AbiVersion::new(1, 0));
    let e = new_hv::verify(&s.args_bytes(), &s.blob, only_1_0).unwrap_err();
    assert_eq!(
        e,
        IncomingError::VersionNotRead {
            found: AbiVersion::new(1, 2),
            reads: only_1_0
        }
    );
    assert_eq!(
        e.to_string(),
        "the state is ABI 1.2, this image reads 1.0..=1.0"
    );
}

#[test]
fn a_changed_page_table_bit_is_refused_before_the_pass() {
    let mut s = stage(5, 3);
    let memory = &mut s.machine.memory;
    let digest = s.args.tables_digest.expect("a version 3 page carries it");
    assert_eq!(
        new_hv::tables::check(&s.state, &*memory, digest),
        Ok(digest)
    );
    // Any bit of any listed table frame: here one of the last L1's entries.
    let l1 = s
        .state
        .domains
        .iter()
        .flat_map(|d| &d.runs)
        .filter(|r| r.kind == handover_abi::RunKind::L1)
        .map(|r| Mfn(r.first_mfn.0 + r.count - 1))
        .next_back()
        .expect("an L1");
    memory.table_mut(l1)[300] ^= 1 << 62;
    let e = new_hv::tables::check(&s.state, &*memory, digest).unwrap_err();
    assert!(
        matches!(e, IncomingError::TablesChanged { expected, .. } if expected == digest),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("the guests' page-table frames changed"));
}

/// The page-table digest, re-implemented from its description in
/// docs/abi.md §5.2: every table frame of the runs, in run order, folds its
/// number and its entries (an L4 its guest slots 0..256).
fn tables_digest_by_the_doc(s: &Staged) -> u64 {
    use frame_ownership::PageTableReader;
    let mut words = Vec::new();
    for run in s.state.domains.iter().flat_map(|d| &d.runs) {
        let slots = match run.kind {
            handover_abi::RunKind::Data => continue,
            handover_abi::RunKind::L4 => 256,
            _ => 512,
        };
        for mfn in run.first_mfn.0..run.first_mfn.0 + run.count {
            words.push(mfn);
            words.extend_from_slice(&s.machine.memory.read_table(Mfn(mfn))[..slots]);
        }
    }
    by_the_doc::digest(0x9e6c_63d0_676a_9a99, words)
}

#[test]
fn the_tables_digest_is_the_documented_one() {
    for seed in 0..8 {
        let s = stage(seed, 3);
        assert_eq!(
            s.args.tables_digest,
            Some(tables_digest_by_the_doc(&s)),
            "seed {seed}"
        );
    }
}
