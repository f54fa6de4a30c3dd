//! The pass agrees with the reference on random machines.

use frame_ownership::testkit::{physmap_machine, random_hvm_machine, random_machine, Machine};
use frame_ownership::{frametable_digest, owned_digest, FrameInfo, PageType, M2P_INVALID};

use crate::reference::reference;

/// Number of random machines; each has [`DOMAINS`] domains.
const MACHINES: u64 = 250;
const DOMAINS: usize = 4;

/// What the random machines exercised, summed over all of them: the test
/// fails if the generator stops producing one of these situations.
#[derive(Default, Debug)]
struct Coverage {
    domains: u64,
    writable_data: u64,
    data_mapped_twice: u64,
    unmapped_data: u64,
    read_only_table_maps: u64,
    shared_tables: u64,
    unreferenced_tables: u64,
    pinned_below_l4: u64,
    mmio_entries: u64,
    unowned_in_frametable: u64,
}

/// The digest, re-implemented from its documentation in `digest.rs`.
fn digest_by_the_doc(frametable: &[FrameInfo], m2p: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut n: u64 = 0;
    let fold = |h: &mut u64, w: u64| {
        let x = (*h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        *h = x ^ (x >> 32);
    };
    for (mfn, fi) in frametable.iter().enumerate() {
        if fi.owner().is_none() {
            continue;
        }
        let owner = u64::from(fi.owner().unwrap().0) + 1;
        let t = u64::from(fi.page_type().unwrap().to_byte());
        let flags = u64::from(fi.flags().bits());
        fold(&mut h, mfn as u64);
        fold(&mut h, owner | t << 32 | flags << 40);
        fold(
            &mut h,
            u64::from(fi.type_count()) | u64::from(fi.ref_count()) << 32,
        );
        fold(&mut h, m2p[mfn]);
        n += 1;
    }
    fold(&mut h, n);
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn check_machine(seed: u64, m: &Machine, cov: &mut Coverage) {
    let out = m.run_pass();
    let report = match out.result {
        Ok(r) => r,
        Err(e) => panic!("seed {seed}: valid machine refused: {e}"),
    };
    let exp = reference(m);

    for (mfn, (got, want)) in out.frametable.iter().zip(&exp.frametable).enumerate() {
        assert_eq!(got, want, "seed {seed}: frametable differs at mfn {mfn:#x}");
        assert_eq!(
            out.m2p[mfn], exp.m2p[mfn],
            "seed {seed}: M2P differs at mfn {mfn:#x}"
        );
    }
    let d_pass = frametable_digest(&out.frametable, &out.m2p);
    assert_eq!(
        d_pass,
        frametable_digest(&exp.frametable, &exp.m2p),
        "seed {seed}"
    );
    assert_eq!(
        d_pass,
        owned_digest(&out.frametable, &out.m2p, &m.views()),
        "seed {seed}"
    );
    assert_eq!(
        d_pass,
        digest_by_the_doc(&out.frametable, &out.m2p),
        "seed {seed}"
    );

    let owned = exp.frametable.iter().filter(|f| f.is_owned()).count() as u64;
    let run_frames: u64 = m
        .domains
        .iter()
        .flat_map(|d| &d.runs)
        .map(|r| r.count)
        .sum();
    assert_eq!(report.frames_owned, owned, "seed {seed}");
    assert_eq!(report.frames_owned, run_frames, "seed {seed}");
    assert_eq!(report.tables_read, exp.tables, "seed {seed}");
    assert_eq!(report.mmio_entries, exp.mmio_entries, "seed {seed}");
    assert_eq!(report.domains.len(), m.domains.len());
    for (dr, d) in report.domains.iter().zip(&m.domains) {
        assert_eq!(dr.id, d.id);
        assert_eq!(dr.data_frames, d.data.len() as u64);
        assert_eq!(dr.tables.iter().sum::<u64>(), d.tables.len() as u64);
        assert_eq!(dr.pins, d.pinned.len() as u64);
        assert_eq!(dr.vcpus, d.vcpu_cr3.len() as u64);
        if let Some(h) = &d.hvm {
            // Every nested table read once, every RAM frame and identity
            // frame a leaf.
            assert_eq!(dr.p2m_tables, h.p2m.len() as u64, "seed {seed}");
            let identity: u64 = h.identity.iter().map(|r| r.count).sum();
            assert_eq!(dr.p2m_leaves, d.data.len() as u64 + identity);
            assert_eq!(
                dr.log_dirty_frames,
                h.log_dirty.map_or(0, |b| b.count),
                "seed {seed}"
            );
        }
    }

    // Coverage.
    cov.domains += m.domains.len() as u64;
    cov.mmio_entries += report.mmio_entries;
    for (mfn, fi) in out.frametable.iter().enumerate() {
        if !fi.is_owned() {
            assert_eq!(*fi, FrameInfo::UNOWNED);
            assert_eq!(out.m2p[mfn], M2P_INVALID);
            cov.unowned_in_frametable += 1;
            continue;
        }
        let t = fi.page_type().unwrap();
        match t {
            PageType::Writable => cov.writable_data += 1,
            PageType::None if fi.ref_count() == 1 => cov.unmapped_data += 1,
            _ => {}
        }
        let mappings = fi.ref_count() - 1 - fi.type_count() * u32::from(t.level().is_some());
        if t.level().is_none() && fi.ref_count() >= 3 {
            cov.data_mapped_twice += 1;
        }
        if t.level().is_some() {
            let pins_and_cr3 = u32::from(fi.is_pinned());
            if t != PageType::L4 && fi.type_count() - pins_and_cr3 >= 2 {
                cov.shared_tables += 1;
            }
            if fi.type_count() == 0 {
                cov.unreferenced_tables += 1;
            }
            if fi.is_pinned() && t != PageType::L4 {
                cov.pinned_below_l4 += 1;
            }
            cov.read_only_table_maps += u64::from(mappings);
        }
    }
}

#[test]
fn pass_matches_reference_on_1000_random_domains() {
    let mut cov = Coverage::default();
    for seed in 0..MACHINES {
        let m = random_machine(seed, DOMAINS);
        check_machine(seed, &m, &mut cov);
    }
    println!("coverage over {MACHINES} machines: {cov:#?}");
    assert_eq!(cov.domains, MACHINES * DOMAINS as u64);
    assert!(cov.domains >= 1000);
    let c = &cov;
    for (what, n) in [
        ("writable data", c.writable_data),
        ("data mapped twice", c.data_mapped_twice),
        ("unmapped data", c.unmapped_data),
        ("read-only maps of tables", c.read_only_table_maps),
        ("shared tables", c.shared_tables),
        ("unreferenced tables", c.unreferenced_tables),
        ("pins below L4", c.pinned_below_l4),
        ("MMIO entries", c.mmio_entries),
        ("unowned frames", c.unowned_in_frametable),
    ] {
        assert!(n > 0, "the generator never produced {what}: {cov:?}");
    }
}

#[test]
fn machines_with_one_and_many_domains() {
    let mut cov = Coverage::default();
    for seed in 1000..1020 {
        for domains in [1, 2, 7] {
            let m = random_machine(seed * 10 + domains as u64, domains);
            check_machine(seed, &m, &mut cov);
            // The same counts with HVM domains: one, or all of them.
            for hvm in [1, domains] {
                let m = random_hvm_machine(seed * 10 + domains as u64, domains - hvm, hvm);
                check_machine(seed, &m, &mut cov);
            }
        }
    }
}

#[test]
fn generator_is_deterministic() {
    let a = random_machine(42, 4);
    let b = random_machine(42, 4);
    let da = frametable_digest(&a.run_pass().frametable, &a.run_pass().m2p);
    let db = frametable_digest(&b.run_pass().frametable, &b.run_pass().m2p);
    assert_eq!(da, db);
    let c = random_machine(43, 4);
    assert_ne!(
        da,
        frametable_digest(&c.run_pass().frametable, &c.run_pass().m2p)
    );
}

#[test]
fn synthetic_machine_passes_and_matches_reference() {
    let m = frame_ownership::testkit::synthetic_machine(1 << 14, 3);
    let mut cov = Coverage::default();
    check_machine(0, &m, &mut cov);
}

/// Guests whose L1 entries map long stretches of frames, cut and
/// overlapping at random (`testkit::physmap_machine`): what the pass
/// checks stretch by stretch rather than entry by entry.
#[test]
fn physmap_machines_match_reference() {
    let mut cov = Coverage::default();
    for seed in 0..12 {
        let m = physmap_machine(seed, 1 + seed as usize % 3);
        check_machine(seed, &m, &mut cov);
    }
    for (what, n) in [
        ("writable data", cov.writable_data),
        ("data mapped twice", cov.data_mapped_twice),
        ("unmapped data", cov.unmapped_data),
        ("read-only maps of tables", cov.read_only_table_maps),
    ] {
        assert!(n > 0, "physmap machines never had {what}: {cov:?}");
    }
}

/// HVM domains beside PV ones: the pass (its nested walk included) agrees
/// with the reference on 120 machines of 2 PV and 2 HVM domains, half of
/// those with log-dirty on.
#[test]
fn pass_matches_reference_with_hvm_domains() {
    let mut cov = Coverage::default();
    let (mut identity, mut log_dirty, mut read_only) = (0u64, 0u64, 0u64);
    for seed in 5000..5120 {
        let m = random_hvm_machine(seed, 2, 2);
        check_machine(seed, &m, &mut cov);
        for d in m.domains.iter().filter_map(|d| d.hvm.as_ref()) {
            identity += d.identity.len() as u64;
            log_dirty += u64::from(d.log_dirty.is_some());
        }
        let out = m.run_pass();
        let report = out.result.expect("valid");
        for (dr, d) in report.domains.iter().zip(&m.domains) {
            if d.hvm.is_some() {
                read_only += d.data.len() as u64 - dr.writable_mappings;
            }
        }
    }
    assert!(identity > 0, "no identity range was generated");
    assert!(log_dirty > 0, "no log-dirty domain was generated");
    assert!(read_only > 0, "no read-only RAM leaf was generated");
}
