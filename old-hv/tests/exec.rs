//! The exec step's pure parts: the staging layout, serialisation and the
//! pre-flight check, and their refusals.

use boot_allocator::PhysRange;
use handover_abi::{
    AbiVersion, BuildId, DomId, HandoverState, HvGlobals, LuRegion, Machine, Mfn, MfnRange,
    Producer, RamRange, RamType, TimeBase, PAGE_SIZE,
};
use old_hv::handover::{self, PreflightError, SerialiseError};
use old_hv::staging::{self, Staging, StagingError, TABLE_FRAMES};

const REGION: u64 = 0x100_0000;

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
        },
        domains: Vec::new(),
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
    let st = Staging::plan(gap, 0x5_3000, 10_000).unwrap();
    assert_eq!(st.image, PhysRange::new(REGION, 0x5_3000));
    assert_eq!(st.args, REGION + 0x5_3000);
    assert_eq!(st.trampoline, st.args + PAGE_SIZE);
    assert_eq!(
        st.tables,
        PhysRange::new(st.trampoline + PAGE_SIZE, TABLE_FRAMES * PAGE_SIZE)
    );
    assert_eq!(st.state.start, st.tables.end());
    assert_eq!(st.state.end(), gap.end());
    assert_eq!(st.after_image(), gap.size - st.image.size);
    // What validation allows always fits.
    let max = staging::image_limits(gap, 10_000).max_span;
    assert!(Staging::plan(gap, max, 10_000).is_ok());
    assert!(Staging::plan(gap, max + PAGE_SIZE, 10_000).is_err());
}

#[test]
fn staging_that_does_not_fit_is_refused() {
    let gap = PhysRange::new(REGION, 0x4_0000);
    let e = Staging::plan(gap, 0x2_0000, 0).unwrap_err();
    let needed = 0x2_0000 + staging::reserve(0);
    assert_eq!(
        e,
        StagingError::DoesNotFit {
            needed,
            gap: 0x4_0000
        }
    );
    assert!(e.to_string().starts_with("the staging area needs"), "{e}");
    assert_eq!(staging::image_limits(gap, 0).max_span, 0);
}
