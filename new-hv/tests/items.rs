//! One round-trip test per item of the handover state: the outgoing role's
//! `old_hv::<item>` saves it on a simulated machine and the incoming role's
//! `new_hv::<item>` restores it. The whole handover (encode, decode, the
//! pass, the digest) is `round_trip.rs`; here each pair is checked on its
//! own, so that a field one side carries and the other drops fails here,
//! by name.

use frame_ownership::testkit::random_machine;
use frame_ownership::{rebuild, state_view, FrameInfo};
use handover_abi::entry::EntryArgs;
use handover_abi::{GpRegs, GuestReports, RunKind};
use hvlu_types::canonical::{LOWER_HALF_END, UPPER_HALF_START};
use hvlu_types::hole::Hole;
use hvlu_types::regs::rflags;
use hvlu_types::{ContextError, PhysRange, VcpuContext};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange, PAGE_SIZE};
use new_hv::IncomingError;
use old_hv::domain::DomainInput;
use old_hv::staging::{End, Staging};
use proptest::prelude::*;

/// A context whose every field holds a different value, all of them legal
/// for a guest: a field dropped or swapped by either side shows.
fn distinct_context(seed: u64) -> VcpuContext {
    let v = |i: u64| 0x1000 * (seed + 1) + i * 8;
    VcpuContext {
        regs: GpRegs {
            rax: v(1),
            rbx: v(2),
            rcx: v(3),
            rdx: v(4),
            rsi: v(5),
            rdi: v(6),
            rbp: v(7),
            r8: v(8),
            r9: v(9),
            r10: v(10),
            r11: v(11),
            r12: v(12),
            r13: v(13),
            r14: v(14),
            r15: v(15),
        },
        rip: v(16),
        rsp: v(17),
        rflags: rflags::RESERVED_ONE | rflags::IF | rflags::ZF | ((seed & 1) * rflags::CF),
        cr3: Mfn(v(18)),
        fs_base: v(19),
        gs_base: v(20),
        kernel_gs_base: v(21),
    }
}

#[test]
fn vcpu_round_trip() {
    for seed in 0..16 {
        let ctx = distinct_context(seed);
        let saved = old_hv::vcpu::save(seed as u32, &ctx);
        assert_eq!(saved.id, seed as u32);
        assert_eq!(new_hv::vcpu::restore(DomId(1), &saved), Ok(ctx));
    }
}

#[test]
fn vcpu_restore_refuses_what_would_fault_the_hypervisor() {
    let saved = old_hv::vcpu::save(0, &distinct_context(0));
    for (register, set) in [
        (
            "rip",
            (|v, x| v.rip = x) as fn(&mut handover_abi::Vcpu, u64),
        ),
        ("rsp", |v, x| v.rsp = x),
        ("fs_base", |v, x| v.fs_base = x),
        ("gs_base", |v, x| v.gs_base = x),
        ("kernel_gs_base", |v, x| v.kernel_gs_base = x),
    ] {
        for value in [LOWER_HALF_END, UPPER_HALF_START, u64::MAX] {
            let mut bad = saved;
            set(&mut bad, value);
            assert_eq!(
                new_hv::vcpu::restore(DomId(3), &bad),
                Err(IncomingError::Vcpu {
                    domain: DomId(3),
                    vcpu: 0,
                    error: ContextError::NotGuestAddress { register, value }
                })
            );
        }
    }
    for flags in [rflags::IOPL, rflags::VM, 1 << 3, 1 << 22, 1 << 63] {
        let mut bad = saved;
        bad.rflags |= flags;
        let e = new_hv::vcpu::restore(DomId(3), &bad).unwrap_err();
        assert!(
            matches!(
                e,
                IncomingError::Vcpu {
                    error: ContextError::Flags { .. },
                    ..
                }
            ),
            "{flags:#x}"
        );
        assert!(e.to_string().starts_with("d3 vCPU 0: rflags"), "{e}");
    }
}

proptest! {
    #[test]
    fn ram_round_trip(raw in proptest::collection::vec((1u64..64, 1u64..4096), 0..12)) {
        // Sorted, disjoint frame ranges with gaps between them.
        let mut next = 0u64;
        let ram: Vec<MfnRange> = raw
            .iter()
            .map(|&(gap, count)| {
                let r = MfnRange::new(Mfn(next + gap), count);
                next = r.end();
                r
            })
            .collect();
        let saved = old_hv::ram::save(&ram);
        prop_assert_eq!(new_hv::ram::restore(&saved), ram.clone());
        prop_assert_eq!(old_hv::ram::end(&ram), next * PAGE_SIZE);
    }

    #[test]
    fn staging_round_trip(
        gap_start in 0u64..(1 << 20),
        gap_pages in 100u64..4096,
        image_span in 1u64..(64 * PAGE_SIZE),
        estimate in 0u64..8192,
        state_len in 64u64..8192,
        top in any::<bool>(),
        tables in 8u64..128,
    ) {
        let gap = PhysRange::new(gap_start * PAGE_SIZE, gap_pages * PAGE_SIZE);
        let region = PhysRange::new(gap.start.saturating_sub(PAGE_SIZE * 3), gap.size + PAGE_SIZE * 5);
        let end = if top { End::Top } else { End::Bottom };
        let Ok(staging) = Staging::plan_at(end, gap, image_span, estimate, tables) else {
            return Ok(());
        };
        prop_assume!(state_len <= staging.state.size);
        let mut args = EntryArgs::default();
        staging.place(region, state_len, &mut args);
        let hole = staging.hole(state_len);
        prop_assert_eq!(new_hv::staging::staged_range(&args), Ok(hole));
        prop_assert!(gap.contains_range(hole));
        // The image touches the gap's end it was staged at.
        match end {
            End::Bottom => prop_assert_eq!(staging.image.start, gap.start),
            End::Top => prop_assert_eq!(staging.image.end(), gap.end()),
        }
        // Once consumed, all of the hole but the image is free again.
        let consumed = new_hv::staging::consumed_range(&args, hole);
        prop_assert_eq!(consumed.size + staging.image.size, hole.size);
        prop_assert!(hole.contains_range(consumed));
        prop_assert!(!consumed.contains(staging.image.start));
    }
}

fn inputs_of(m: &frame_ownership::testkit::Machine) -> Vec<(Vec<u64>, String)> {
    m.domains
        .iter()
        .map(|d| {
            (
                new_hv::p2m_of(&d.runs, Hole::DEFAULT),
                format!("dom{}", d.id.0),
            )
        })
        .collect()
}

#[test]
fn domain_round_trip() {
    for seed in 0..24 {
        let m = random_machine(seed, 1 + (seed % 4) as usize);
        let out = m.run_pass();
        if out.result.is_err() {
            continue;
        }
        for (sd, (p2m, name)) in m.domains.iter().zip(inputs_of(&m)) {
            let vcpus: Vec<VcpuContext> = sd
                .vcpu_cr3
                .iter()
                .zip(0..)
                .map(|(&cr3, i)| VcpuContext {
                    cr3,
                    ..distinct_context(i)
                })
                .collect();
            let input = DomainInput {
                id: sd.id,
                privileged: sd.id == DomId::DOM0,
                name: &name,
                max_frames: p2m.len() as u64 + 7,
                p2m: &p2m,
                mmio: &sd.mmio,
                vcpus: vcpus.clone(),
                start_info: Gpfn(seed % 3),
                // A hole moved from its default on every other seed; the
                // random machine's devices lie below any hole, so nothing
                // is mapped in it.
                hole: if seed % 2 == 0 {
                    Hole::DEFAULT
                } else {
                    Hole::new(Gpfn(0x8_0000)).unwrap()
                },
                identity: &[],
                paused: seed % 2 == 1,
                reports: GuestReports {
                    checks: seed * 1000 + 1,
                    mismatches: seed % 2,
                    expected_refusals: seed,
                    unexpected_refusals: seed / 3,
                    regressions: seed % 5,
                    unexpected_faults: seed / 7,
                    expect_fault: seed % 4 == 0,
                },
                hvm: None,
            };
            let saved = old_hv::domain::save(input.clone(), &out.frametable);
            let back = new_hv::domain::restore(&saved).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.id, input.id);
            assert_eq!(back.name, name);
            assert_eq!(back.privileged, input.privileged);
            assert_eq!(back.max_frames, input.max_frames);
            assert_eq!(back.start_info, input.start_info);
            assert_eq!(back.paused, input.paused);
            assert_eq!(back.reports, input.reports);
            assert_eq!(back.vcpus, vcpus);
            assert_eq!(back.mmio, input.mmio);
            assert_eq!((back.hole, back.identity.len()), (input.hole, 0));
            // The p2m comes back up to its highest frame.
            let used = p2m
                .iter()
                .rposition(|&m| m != u64::MAX)
                .map_or(0, |i| i + 1);
            assert_eq!(back.p2m, p2m[..used], "seed {seed} d{}", sd.id.0);
            // Runs carry the frames' types.
            for run in &saved.runs {
                for i in 0..run.count {
                    let t = out.frametable[(run.first_mfn.0 + i) as usize].page_type();
                    assert_eq!(t.map_or(RunKind::Data, |t| t.run_kind()), run.kind);
                }
            }
        }
    }
}

/// The one domain of random machine 5 as the outgoing side saves it, its
/// limit its p2m's length.
fn saved_domain_of_machine_5() -> handover_abi::Domain {
    let m = random_machine(5, 1);
    let out = m.run_pass();
    let sd = &m.domains[0];
    let p2m = new_hv::p2m_of(&sd.runs, Hole::DEFAULT);
    old_hv::domain::save(
        DomainInput {
            id: sd.id,
            privileged: false,
            name: "d",
            max_frames: p2m.len() as u64,
            p2m: &p2m,
            hole: Hole::DEFAULT,
            mmio: &sd.mmio,
            vcpus: Vec::new(),
            start_info: Gpfn(0),
            identity: &[],
            paused: false,
            reports: GuestReports::default(),
            hvm: None,
        },
        &out.frametable,
    )
}

#[test]
fn domain_restore_refuses_a_run_past_the_limit() {
    let mut saved = saved_domain_of_machine_5();
    assert!(new_hv::domain::restore(&saved).is_ok());
    saved.max_frames -= 1;
    let e = new_hv::domain::restore(&saved).unwrap_err();
    assert!(matches!(e, IncomingError::GpfnBeyondLimit { .. }), "{e}");
    // A run moved into the hole: RAM is never there.
    saved.max_frames += 1;
    saved.runs[0].first_gpfn = handover_abi::DEFAULT_HOLE;
    let e = new_hv::domain::restore(&saved).unwrap_err();
    assert!(matches!(e, IncomingError::GpfnInHole { .. }), "{e}");
    // A hole that breaks the rules (below 16 MiB) is refused as such.
    saved.hole = Gpfn(512);
    let e = new_hv::domain::restore(&saved).unwrap_err();
    assert!(matches!(e, IncomingError::BadHole { .. }), "{e}");
}

/// A data run of `count` frames from `mfn` at `gpfn`.
fn data_run(mfn: u64, count: u64, gpfn: u64) -> handover_abi::MemRun {
    handover_abi::MemRun {
        first_mfn: Mfn(mfn),
        count,
        first_gpfn: Gpfn(gpfn),
        kind: RunKind::Data,
    }
}

#[test]
fn runs_by_ram_index_become_gpfns_cut_at_the_hole() {
    use hvlu_types::hole::{HOLE_END, MIN_HOLE};
    let hole = Hole::new(MIN_HOLE).unwrap();
    let h = MIN_HOLE.0;
    // Below, across and above the hole's start, by RAM index.
    let by_index = vec![
        data_run(100, 10, 0),
        data_run(500, 20, h - 5),
        data_run(900, 3, h + 40),
    ];
    let runs = old_hv::domain::ram_runs_to_gpfns(by_index.clone(), hole);
    assert_eq!(
        runs,
        [
            data_run(100, 10, 0),
            data_run(500, 5, h - 5),
            data_run(505, 15, HOLE_END.0),
            data_run(900, 3, HOLE_END.0 + 40),
        ]
    );
    // Back by RAM index: the p2m the runs were made of.
    let p2m = new_hv::p2m_of(&runs, hole);
    assert_eq!(p2m.len() as u64, h + 43);
    for r in &by_index {
        for i in 0..r.count {
            assert_eq!(p2m[(r.first_gpfn.0 + i) as usize], r.first_mfn.0 + i);
        }
    }
    // With the default hole nothing moves.
    let same = old_hv::domain::ram_runs_to_gpfns(by_index.clone(), Hole::DEFAULT);
    assert_eq!(same, by_index);
}

#[test]
fn domain_restore_refuses_ram_in_the_hole() {
    let mut saved = saved_domain_of_machine_5();
    let hole = Hole::DEFAULT.start().0;
    // A limit far above the hole, so that only the hole refuses.
    saved.max_frames = 1 << 21;
    for (first, bad) in [(hole, hole), (hole - 1, hole), (0xf_ffff, 0xf_ffff)] {
        saved.runs[0].first_gpfn = Gpfn(first);
        saved.runs[0].count = saved.runs[0].count.max(2);
        let e = new_hv::domain::restore(&saved).unwrap_err();
        assert!(
            matches!(e, IncomingError::GpfnInHole { gpfn, .. } if gpfn == Gpfn(bad)),
            "{e}"
        );
    }
    // From 4 GiB it is RAM again: RAM index = gpfn − 1 GiB of frames.
    saved.runs[0].first_gpfn = hvlu_types::hole::HOLE_END;
    let r = new_hv::domain::restore(&saved).unwrap();
    assert_eq!(r.hole, Hole::DEFAULT);
    assert_eq!(r.p2m[hole as usize], saved.runs[0].first_mfn.0);
    assert_eq!(
        IncomingError::GpfnInHole {
            domain: DomId(1),
            gpfn: Gpfn(hole),
            hole: Hole::DEFAULT
        }
        .to_string(),
        "d1: a run holds gpfn 0xc0000, inside its PCI hole [0xc0000000, 4 GiB)"
    );
}

#[test]
fn pins_round_trip() {
    let mut pinned_somewhere = 0;
    for seed in 0..24 {
        let m = random_machine(seed, 1 + (seed % 4) as usize);
        let out = m.run_pass();
        if out.result.is_err() {
            continue;
        }
        let inputs = inputs_of(&m);
        let saved: Vec<handover_abi::Domain> = m
            .domains
            .iter()
            .zip(&inputs)
            .map(|(sd, (p2m, name))| {
                old_hv::domain::save(
                    DomainInput {
                        id: sd.id,
                        privileged: false,
                        name,
                        max_frames: p2m.len() as u64,
                        p2m,
                        hole: Hole::DEFAULT,
                        mmio: &sd.mmio,
                        vcpus: sd
                            .vcpu_cr3
                            .iter()
                            .map(|&cr3| VcpuContext {
                                cr3,
                                ..distinct_context(0)
                            })
                            .collect(),
                        start_info: Gpfn(0),
                        identity: &[],
                        paused: false,
                        reports: GuestReports::default(),
                        hvm: None,
                    },
                    &out.frametable,
                )
            })
            .collect();
        // What the old frametable holds pinned is what is saved …
        for (sd, d) in m.domains.iter().zip(&saved) {
            let mut want: Vec<(Mfn, RunKind)> = sd.pinned.clone();
            want.sort();
            let mut got: Vec<(Mfn, RunKind)> = d.pinned.iter().map(|p| (p.mfn, p.level)).collect();
            got.sort();
            assert_eq!(got, want, "seed {seed}");
            pinned_somewhere += got.len();
        }
        // … and a pass over the saved domains on fresh tables pins exactly it.
        let (mut ft, mut m2p): (Vec<FrameInfo>, Vec<u64>) = m.new_tables();
        let views: Vec<_> = saved.iter().map(state_view).collect();
        rebuild(&m.layout().unwrap(), &views, &m.memory, &mut ft, &mut m2p)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for d in &saved {
            assert_eq!(new_hv::pins::pinned(&ft, d), d.pinned, "seed {seed}");
        }
    }
    assert!(pinned_somewhere > 0, "no machine had a pin");
}

proptest! {
    /// The globals: the command line but fault injection, the next domain
    /// id, and a time base that puts the incoming image's cold boot where
    /// the first image's was (to a microsecond of rounding).
    #[test]
    fn globals_round_trip(
        khz in 1_000u64..10_000_000,
        boot in 0u64..1 << 50,
        uptime in 0u64..1 << 45,
        next in 1u16..0xfff0,
        inject in any::<bool>(),
    ) {
        let line = if inject {
            "loglvl=debug lu_inject=state timer_hz=250"
        } else {
            "loglvl=debug timer_hz=250"
        };
        let saved = old_hv::globals::save(old_hv::globals::GlobalsInput {
            cmdline: line,
            next_domid: DomId(next),
            tsc: boot + uptime,
            tsc_khz: khz,
            boot_tsc: boot,
        });
        let g = new_hv::globals::restore(&saved);
        prop_assert_eq!(g.cmdline.as_str(), "loglvl=debug timer_hz=250");
        prop_assert_eq!(g.next_domid, DomId(next));
        // ns → ticks loses at most a microsecond's worth of ticks.
        let slack = khz / 1000 + 1;
        prop_assert!(g.boot_tsc.abs_diff(boot) <= slack, "{} vs {}", g.boot_tsc, boot);
    }
}

#[test]
fn retired_reports_round_trip_and_keep_the_newest() {
    let retired: Vec<handover_abi::RetiredDomain> = (0..handover_abi::MAX_RETIRED as u16 + 5)
        .map(|i| handover_abi::RetiredDomain {
            id: DomId(i + 1),
            name: format!("d{i}"),
            reports: GuestReports {
                checks: u64::from(i),
                mismatches: u64::from(i % 2),
                ..GuestReports::default()
            },
        })
        .collect();
    let saved = old_hv::globals::save_retired(&retired);
    assert_eq!(saved.len(), handover_abi::MAX_RETIRED);
    assert_eq!(saved[..], retired[5..]);
    assert_eq!(new_hv::globals::restore_retired(&saved), saved);
    let few = &retired[..3];
    assert_eq!(
        new_hv::globals::restore_retired(&old_hv::globals::save_retired(few)),
        few
    );
}

/// An HVM domain: saved by the outgoing side (its RAM runs, then its nested
/// tables as P2m runs and its bitmap as LogDirty runs, blank vCPU records,
/// its contexts in the HVM part) and restored by the incoming side, every
/// field of the HVM part named; its nested frames are no RAM of its p2m.
#[test]
fn an_hvm_domain_round_trips() {
    use handover_abi::{HvmDomain, VcpuFlags, NO_GPFN};
    use hvlu_types::regs::{DescriptorTable, HvmContext, Segment};
    use old_hv::domain::HvmInput;

    let context = |n: u64| HvmContext {
        regs: GpRegs {
            rax: n,
            r15: n + 1,
            ..GpRegs::default()
        },
        rip: 0x1000 + n,
        rsp: 0x2000 + n,
        rflags: 0x202,
        cr0: 0x8005_0033,
        cr3: 0x10_0000 + n,
        cr4: 0x6a0,
        efer: 0xd01,
        cs: Segment {
            selector: 8,
            attrib: 0xa9b,
            limit: u32::MAX,
            base: 0,
        },
        gdtr: DescriptorTable {
            limit: 0x37,
            base: 0x3000,
        },
        cpl: 0,
        lstar: 0x4000 + n,
        pat: 0x0007_0406_0007_0406,
        pending_event: n << 31,
        interrupt_shadow: n == 1,
        ..HvmContext::default()
    };
    let p2m = [0x100, 0x101, 0x102, u64::MAX, 0x104];
    let tables = [Mfn(0x200), Mfn(0x201), Mfn(0x203)];
    let bitmap = MfnRange::new(Mfn(0x300), 1);
    let contexts = vec![context(0), context(1)];
    let input = DomainInput {
        id: DomId(7),
        privileged: false,
        name: "hvm",
        max_frames: 0x10,
        p2m: &p2m,
        hole: Hole::DEFAULT,
        mmio: &[],
        identity: &[],
        vcpus: Vec::new(),
        start_info: Gpfn(0),
        paused: false,
        reports: GuestReports::default(),
        hvm: Some(HvmInput {
            ncr3: tables[0],
            tables: &tables,
            vcpus: contexts.clone(),
            log_dirty: Some(bitmap),
        }),
    };
    let saved = old_hv::domain::save(input, &[]);
    assert!(!saved.flags.contains(handover_abi::DomainFlags::PV));
    let kinds: Vec<(RunKind, u64, u64, Gpfn)> = saved
        .runs
        .iter()
        .map(|r| (r.kind, r.first_mfn.0, r.count, r.first_gpfn))
        .collect();
    assert_eq!(
        kinds,
        [
            (RunKind::Data, 0x100, 3, Gpfn(0)),
            (RunKind::Data, 0x104, 1, Gpfn(4)),
            (RunKind::P2m, 0x200, 2, NO_GPFN),
            (RunKind::P2m, 0x203, 1, NO_GPFN),
            (RunKind::LogDirty, 0x300, 1, NO_GPFN),
        ]
    );
    for (id, v) in (0u32..).zip(&saved.vcpus) {
        assert_eq!(
            *v,
            HvmDomain::blank_vcpu(tables[0], id, VcpuFlags::ONLINE, 0)
        );
    }
    let part = saved.hvm.as_ref().expect("an HVM part");
    assert_eq!(part.vcpus, contexts);

    let back = new_hv::domain::restore(&saved).expect("restores");
    assert!(back.vcpus.is_empty(), "no PV context for an HVM vCPU");
    assert_eq!(back.p2m, p2m, "its RAM, without its nested frames");
    let new_hv::RestoredHvm {
        ncr3,
        vcpus,
        log_dirty,
        tables: restored_tables,
    } = back.hvm.expect("an HVM part");
    assert_eq!(ncr3, tables[0]);
    assert_eq!(
        vcpus,
        contexts
            .iter()
            .map(|&c| (c, VcpuFlags::ONLINE, 0))
            .collect::<Vec<_>>()
    );
    assert_eq!(log_dirty, Some(bitmap));
    assert_eq!(restored_tables, tables);
}
