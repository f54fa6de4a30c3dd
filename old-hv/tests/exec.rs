//! The exec step's pure parts: the staging layout, serialisation and the
//! pre-flight check, and their refusals.

use boot_allocator::PhysRange;
use handover_abi::{
    AbiVersion, BuildId, HandoverState, HvGlobals, LuRegion, Machine, Producer, RamRange, RamType,
    TimeBase,
};
use hvlu_types::{DomId, Mfn, MfnRange, PAGE_SIZE};
use old_hv::handover::{self, PreflightError, SerialiseError};
use old_hv::image::{Mapping, SegmentFlags};
use old_hv::staging::{self, Staging, StagingError};

const REGION: u64 = 0x100_0000;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Entry-table frames of the layouts that do not depend on them.
const TABLES: u64 = 64;
/// The link address of the hypervisor's upper half (`hv/linker.ld`).
const KERNEL_VBASE: u64 = 0xffff_ffff_8000_0000;

fn mapping(vaddr: u64, len: u64) -> Mapping {
    Mapping {
        vaddr,
        len,
        offset: 0,
        flags: SegmentFlags::R,
    }
}

/// The mappings of an image laid out like the hypervisor: a cold-boot stub
/// of one page at 1 MiB, then `upper` bytes in the upper half.
fn hv_like(upper: u64) -> Vec<Mapping> {
    vec![
        mapping(MIB, PAGE_SIZE),
        mapping(KERNEL_VBASE + MIB + PAGE_SIZE, upper),
    ]
}

fn state() -> HandoverState {
    HandoverState {
        machine: Machine {
            ram_map: vec![RamRange {
                base: 0,
                size: 0x400_0000,
                kind: RamType::Usable,
            }],
            region: LuRegion {
                base: REGION,
                size: 0x80_0000,
                image: MfnRange::new(Mfn::containing(REGION), 16),
                state: MfnRange::new(Mfn(Mfn::containing(REGION).0 + 100), 100),
            },
        },
        globals: HvGlobals {
            next_domid: DomId(1),
            time: TimeBase {
                tsc: 1,
                tsc_khz: 1000,
                system_time_ns: 0,
            },
            cmdline: String::new(),
        },
        domains: Vec::new(),
        retired: Vec::new(),
        devices: Vec::new(),
    }
}

fn producer() -> Producer {
    Producer::this_build(BuildId([1; 16]))
}

#[test]
fn serialise_then_preflight_gives_the_digest_of_no_frames() {
    let s = state();
    let blob = handover::serialise(handover_abi::CURRENT, &s, &producer(), 1 << 20).unwrap();
    assert_eq!(blob.len(), handover_abi::encoded_len(&s).unwrap());
    let digest = handover::preflight(&blob, &s, &[], &[]).unwrap();
    assert_eq!(digest, frame_ownership::frametable_digest(&[], &[]));
}

#[test]
fn a_state_that_does_not_fit_is_refused() {
    let s = state();
    let len = handover_abi::encoded_len(&s).unwrap();
    let e =
        handover::serialise(handover_abi::CURRENT, &s, &producer(), len as u64 - 1).unwrap_err();
    assert_eq!(
        e,
        SerialiseError::TooLarge {
            needed: len,
            capacity: len as u64 - 1
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "the state needs {len} bytes, the staging area has {}",
            len - 1
        )
    );
}

#[test]
fn a_version_this_build_does_not_write_is_refused() {
    let e = handover::serialise(AbiVersion::new(9, 0), &state(), &producer(), 1 << 20).unwrap_err();
    assert!(matches!(e, SerialiseError::Encode(_)), "{e:?}");
}

#[test]
fn preflight_refuses_a_corrupted_blob() {
    let s = state();
    let mut blob = handover::serialise(handover_abi::CURRENT, &s, &producer(), 1 << 20).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    let e = handover::preflight(&blob, &s, &[], &[]).unwrap_err();
    assert!(matches!(e, PreflightError::Decode(_)), "{e:?}");
    assert!(e.to_string().starts_with("pre-flight: "), "{e}");
}

#[test]
fn preflight_refuses_a_blob_of_another_state() {
    let s = state();
    let blob = handover::serialise(handover_abi::CURRENT, &s, &producer(), 1 << 20).unwrap();
    let mut other = s.clone();
    other.globals.next_domid = DomId(2);
    let e = handover::preflight(&blob, &other, &[], &[]).unwrap_err();
    assert_eq!(e, PreflightError::Differs);
    assert_eq!(
        e.to_string(),
        "pre-flight: the decoded state differs from the one written"
    );
}

#[test]
fn staging_layout_follows_the_gap() {
    let gap = PhysRange::new(REGION, 0x80_0000);
    let st = Staging::plan(gap, 0x5_3000, 10_000, TABLES).unwrap();
    assert_eq!(st.image, PhysRange::new(REGION, 0x5_3000));
    assert_eq!(st.args, REGION + 0x5_3000);
    assert_eq!(st.trampoline, st.args + PAGE_SIZE);
    assert_eq!(
        st.tables,
        PhysRange::new(st.trampoline + PAGE_SIZE, TABLES * PAGE_SIZE)
    );
    assert_eq!(st.state.start, st.tables.end());
    assert_eq!(st.state.end(), gap.end());
    assert_eq!(st.after_image(), gap.size - st.image.size);
}

#[test]
fn what_validation_allows_fits_with_its_exact_tables() {
    for ram_end in [64 * MIB, 4 * GIB, 65 * GIB, 600 * GIB, 4096 * GIB] {
        for gap_size in [8 * MIB, 0x80_0000 + 0x1_3000, 64 * MIB] {
            let gap = PhysRange::new(REGION, gap_size);
            let max = staging::image_limits(gap, 10_000, ram_end).max_span;
            assert_eq!(max % PAGE_SIZE, 0);
            let least = PAGE_SIZE
                + staging::reserve(10_000, staging::table_frames_for_span(ram_end, PAGE_SIZE));
            if least > gap_size {
                // The tables of that much RAM do not fit the gap at all.
                assert_eq!(max, 0, "ram_end {ram_end:#x} gap {gap_size:#x}");
                continue;
            }
            assert!(max > 0, "ram_end {ram_end:#x} gap {gap_size:#x}");
            let tables = staging::table_frames(ram_end, &hv_like(max - PAGE_SIZE));
            assert!(tables <= staging::table_frames_for_span(ram_end, max));
            assert!(Staging::plan(gap, max, 10_000, tables).is_ok());
            // One page more does not fit even with the bound's tables.
            let more = staging::table_frames_for_span(ram_end, max + PAGE_SIZE);
            assert!(Staging::plan(gap, max + PAGE_SIZE, 10_000, more).is_err());
        }
    }
}

#[test]
fn entry_tables_grow_with_every_gib_of_ram() {
    let image = hv_like(700 << 10);
    let base = staging::table_frames(0, &image);
    // The root and the trampoline's tables in both roots; the stub's L3,
    // L2 and L1; the upper half's L3, L2 and one L1 (700 KiB in one 2 MiB).
    assert_eq!(base, staging::FIXED_TABLE_FRAMES + 3 + 3);
    // One L3 and one L2 for the first GiB, then an L2 per GiB.
    assert_eq!(staging::table_frames(512 * MIB, &image), base + 2);
    assert_eq!(staging::table_frames(GIB, &image), base + 2);
    assert_eq!(staging::table_frames(GIB + 1, &image), base + 3);
    // QEMU microvm with 64 GiB: RAM to 65 GiB (the 3..4 GiB hole).
    assert_eq!(staging::table_frames(65 * GIB, &image), base + 1 + 65);
    // Past 512 GiB a second L3.
    assert_eq!(staging::table_frames(513 * GIB, &image), base + 2 + 513);
    assert_eq!(
        staging::direct_map_table_frames(4096 * GIB),
        8 + 4096,
        "4 TiB: 8 L3s, 4096 L2s"
    );
    // The fixed 64 frames of old ended at about 53 GiB.
    assert!(staging::table_frames(50 * GIB, &image) <= 64);
    assert!(staging::table_frames(53 * GIB, &image) > 64);
}

#[test]
fn the_image_tables_count_the_units_its_mappings_touch() {
    let t = |m: &[Mapping]| staging::table_frames(0, m) - staging::FIXED_TABLE_FRAMES;
    assert_eq!(t(&[]), 0);
    assert_eq!(t(&[mapping(0, PAGE_SIZE)]), 3);
    // Two pages on either side of a 2 MiB boundary: two L1s.
    assert_eq!(t(&[mapping(2 * MIB - PAGE_SIZE, 2 * PAGE_SIZE)]), 4);
    // ... of a GiB boundary: two L2s and two L1s.
    assert_eq!(t(&[mapping(GIB - PAGE_SIZE, 2 * PAGE_SIZE)]), 5);
    // Mappings sharing units count them once, in any order.
    let a = mapping(KERNEL_VBASE, PAGE_SIZE);
    let b = mapping(KERNEL_VBASE + 4 * PAGE_SIZE, PAGE_SIZE);
    assert_eq!(t(&[a, b]), 3);
    assert_eq!(t(&[b, a]), 3);
    // 5 MiB from a 2 MiB boundary: three L1s.
    assert_eq!(t(&[mapping(KERNEL_VBASE, 5 * MIB)]), 1 + 1 + 3);
    // The span bound holds for two areas anywhere.
    for span in [PAGE_SIZE, 2 * MIB, 3 * MIB + PAGE_SIZE, 3 * GIB] {
        let half = span / 2 / PAGE_SIZE * PAGE_SIZE;
        let image = [
            mapping(GIB - PAGE_SIZE, half.max(PAGE_SIZE)),
            mapping(KERNEL_VBASE - PAGE_SIZE, span - half),
        ];
        assert!(
            staging::table_frames(0, &image) <= staging::table_frames_for_span(0, span),
            "span {span:#x}"
        );
    }
}

#[test]
fn a_64_gib_machine_stages_in_a_region_that_holds_its_tables() {
    let ram_end = 65 * GIB;
    let image = hv_like(700 << 10);
    let tables = staging::table_frames(ram_end, &image);
    let gap = PhysRange::new(3 * GIB - 64 * MIB, 4 * MIB);
    let st = Staging::plan(gap, 764 << 10, 2_000, tables).unwrap();
    assert_eq!(st.tables.size, tables * PAGE_SIZE);
    assert!(st.state.size >= 2 * 2_000);
    // The same gap with the fixed 64 frames of old would have been too few.
    assert!(tables > 64);
}

#[test]
fn staging_that_does_not_fit_is_refused() {
    let gap = PhysRange::new(REGION, 0x4_0000);
    let e = Staging::plan(gap, 0x2_0000, 0, TABLES).unwrap_err();
    let needed = 0x2_0000 + staging::reserve(0, TABLES);
    assert_eq!(
        e,
        StagingError::DoesNotFit {
            needed,
            gap: 0x4_0000
        }
    );
    assert!(e.to_string().starts_with("the staging area needs"), "{e}");
    // The limit leaves exactly the reserve for an image of that span.
    let max = staging::image_limits(gap, 0, 64 * MIB).max_span;
    assert_eq!(
        max + staging::reserve(0, staging::table_frames_for_span(64 * MIB, max)),
        gap.size
    );
    // A machine so large that its entry tables alone fill the gap.
    let gap = PhysRange::new(REGION, 8 * MIB);
    assert_eq!(staging::image_limits(gap, 0, 1 << 52).max_span, 0);
}

#[test]
fn preflight_of_a_1_0_blob_expects_what_1_0_carries() {
    // Written as 1.0, the hypervisor's records are dropped: the pre-flight
    // compares with the state as 1.0 carries it, not with the original.
    let mut s = state();
    s.globals.cmdline = "loglvl=debug".into();
    let v1_0 = handover_abi::AbiVersion::new(1, 0);
    let blob = handover::serialise(v1_0, &s, &producer(), 1 << 16).unwrap();
    handover::preflight(&blob, &s, &[], &[]).expect("1.0 pre-flight passes");
    // A real difference is still one.
    let mut other = s.clone();
    other.globals.next_domid = DomId(9);
    assert!(handover::preflight(&blob, &other, &[], &[]).is_err());
}
