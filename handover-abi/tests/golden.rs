//! The committed golden blobs decode to their known states and, for the
//! versions this build writes, re-encode to the same bytes.

// Each state file builds on the one before and includes its file too.
#![allow(clippy::duplicate_mod)]

#[path = "golden/state_v1_0.rs"]
mod golden;
#[path = "golden/state_v1_1.rs"]
mod golden_v1_1;
#[path = "golden/state_v1_2.rs"]
mod golden_v1_2;
#[path = "golden/state_v1_3.rs"]
mod golden_v1_3;

use handover_abi::body::v1_2::{default_identity, default_mmio, DEFAULT_HOLE};
use handover_abi::body::{carried, dropped, Dropped, Inexpressible};
use handover_abi::{
    decode, encode_as, AbiVersion, DecodeError, DomainFlags, EncodeError, HandoverState, Header,
    HEADER_SIZE, MAGIC,
};
use hvlu_types::{DomId, Gpfn};

const V1_0: &[u8] = include_bytes!("golden/v1_0.bin");
const V1_1: &[u8] = include_bytes!("golden/v1_1.bin");
const V1_2: &[u8] = include_bytes!("golden/v1_2.bin");
const V1_3: &[u8] = include_bytes!("golden/v1_3.bin");

/// The golden v1.2 state in this build's types.
fn v1_2_state() -> HandoverState {
    HandoverState::from(golden_v1_2::state())
}

fn encode(version: AbiVersion, state: &HandoverState) -> Result<Vec<u8>, EncodeError> {
    let mut buf = vec![0u8; 64 * 1024];
    let producer = if version == golden::VERSION {
        golden::producer()
    } else if version == golden_v1_1::VERSION {
        golden_v1_1::producer()
    } else if version == golden_v1_2::VERSION {
        golden_v1_2::producer()
    } else {
        golden_v1_3::producer()
    };
    let len = encode_as(version, state, &producer, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// `state` on a machine with the devices whose memory is exactly the older
/// golden states' dom0 MMIO ranges, every privileged domain's access the
/// default there (`golden_v1_2::on_older_devices`): the MMIO ranges, which
/// the older blobs carry, are unchanged.
fn on_older_devices(state: HandoverState) -> HandoverState {
    let older = handover_abi::body::v1_2::HandoverState {
        machine: state.machine.clone(),
        globals: state.globals.clone(),
        domains: state
            .domains
            .iter()
            .map(|d| handover_abi::body::v1_2::Domain {
                id: d.id,
                flags: d.flags,
                name: d.name.clone(),
                max_frames: d.max_frames,
                runs: d.runs.clone(),
                pinned: d.pinned.clone(),
                mmio: d.mmio.clone(),
                start_info: d.start_info,
                vcpus: d.vcpus.clone(),
                console: d.console,
                paused: d.paused,
                reports: d.reports,
                hole: d.hole,
                identity: d.identity.clone(),
            })
            .collect(),
        retired: state.retired.clone(),
        devices: state.devices.clone(),
    };
    let adopted = HandoverState::from(golden_v1_2::on_older_devices(older));
    for (d, b) in adopted.domains.iter().zip(&state.domains) {
        assert_eq!(
            d.mmio, b.mmio,
            "d{}: the blob's MMIO ranges are the default",
            d.id
        );
    }
    adopted
}

#[test]
fn v1_0_decodes_to_the_known_state() {
    let decoded = decode(V1_0).expect("the golden v1.0 blob decodes");
    // A 1.0 blob becomes this build's types with every v1.1 and v1.2
    // addition empty or at its default.
    let expected = HandoverState::from(golden::state());
    assert_eq!(decoded.state, expected);
    assert!(decoded.state.domains.iter().all(|d| !d.paused));
    assert!(decoded.state.retired.is_empty() && decoded.state.globals.cmdline.is_empty());
    assert!(decoded.state.devices.is_empty());
    assert!(decoded
        .state
        .domains
        .iter()
        .all(|d| d.hole == DEFAULT_HOLE && d.identity.is_empty()));
    assert_eq!(decoded.header.version, AbiVersion::new(1, 0));
    assert_eq!(decoded.header.producer, golden::producer());
    assert_eq!(decoded.header.body_len as usize, V1_0.len() - HEADER_SIZE);
}

#[test]
fn v1_0_reencodes_to_the_same_bytes() {
    let state = on_older_devices(HandoverState::from(golden::state()));
    assert_eq!(
        encode(golden::VERSION, &state).expect("encode"),
        V1_0,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn v1_1_decodes_to_the_known_state() {
    let decoded = decode(V1_1).expect("the golden v1.1 blob decodes");
    assert_eq!(
        decoded.state,
        HandoverState::from(golden_v1_1::state()),
        "a 1.1 blob becomes this build's types with the v1.2 additions at their defaults"
    );
    assert_eq!(decoded.header.version, AbiVersion::new(1, 1));
    assert_eq!(decoded.header.producer, golden_v1_1::producer());
}

#[test]
fn v1_1_reencodes_to_the_same_bytes() {
    let state = on_older_devices(HandoverState::from(golden_v1_1::state()));
    assert_eq!(
        encode(golden_v1_1::VERSION, &state).expect("encode"),
        V1_1,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn an_older_state_whose_dom0_maps_devices_nobody_listed_is_not_written_back_as_it() {
    // Decoded alone, the older blobs' dom0 may map device memory while no
    // device is listed: its access is not the default (none, with no
    // devices), so 1.1 and 1.0 cannot carry it. An image gives it the
    // devices it finds first (`new_hv::devices::adopt`).
    for (version, blob) in [(golden::VERSION, V1_0), (golden_v1_1::VERSION, V1_1)] {
        let mut state = decode(blob).expect("decodes").state;
        for d in &mut state.domains {
            d.paused = false;
        }
        assert_eq!(
            encode(version, &state),
            Err(EncodeError::Inexpressible {
                version,
                what: Inexpressible::MmioNotDefault {
                    version,
                    domain: DomId(0)
                },
            })
        );
    }
}

#[test]
fn v1_2_decodes_to_the_known_state() {
    let decoded = decode(V1_2).expect("the golden v1.2 blob decodes");
    assert_eq!(decoded.state, v1_2_state());
    assert_eq!(decoded.header.version, AbiVersion::new(1, 2));
    assert_eq!(decoded.header.producer, golden_v1_2::producer());
}

#[test]
fn v1_2_reencodes_to_the_same_bytes() {
    assert_eq!(
        encode(golden_v1_2::VERSION, &v1_2_state()).expect("encode"),
        V1_2,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn v1_1_state_is_complete() {
    // Every addition of v1.1 is exercised by its blob.
    let state = golden_v1_1::state();
    assert!(state.domains.iter().any(|d| d.paused));
    assert!(state.domains.iter().any(|d| !d.paused));
    assert!(state.domains.iter().all(|d| d.reports.checks > 0));
    assert!(state.domains.iter().any(|d| d.reports.expect_fault));
    assert!(!state.globals.cmdline.is_empty());
    assert_eq!(state.retired.len(), 2);
}

#[test]
fn v1_2_state_is_complete() {
    // Every addition of v1.2 is exercised by its blob.
    use handover_abi::PciBar;
    let state = golden_v1_2::state();
    let bars = || state.devices.iter().flat_map(|d| d.bars.iter());
    assert!(state.devices.iter().any(|d| d.bars.is_empty()));
    assert!(state.devices.iter().any(|d| d.bars.len() > 1));
    assert!(state.devices.iter().any(|d| d.bdf >> 8 != 0));
    assert!(bars().any(|b| b.flags == PciBar::MEM64 | PciBar::PREFETCHABLE));
    assert!(bars().any(|b| b.flags == PciBar::PREFETCHABLE));
    assert!(bars().any(|b| b.base >= 1 << 32));
    assert!(state.domains.iter().any(|d| d.hole != DEFAULT_HOLE));
    assert!(state
        .domains
        .iter()
        .any(|d| d.runs.iter().any(|r| r.first_gpfn >= Gpfn(1 << 20))));
    // The privileged domain has the default access; a domU was granted
    // some device memory and maps it in its hole.
    let dom0 = &state.domains[0];
    assert!(dom0.flags.contains(DomainFlags::PRIVILEGED));
    assert_eq!(dom0.mmio, default_mmio(dom0.flags, &state.devices));
    assert_eq!(
        dom0.identity,
        default_identity(dom0.flags, &state.devices, dom0.hole)
    );
    assert_ne!(
        dom0.mmio, dom0.identity,
        "a BAR above 4 GiB is not in the hole"
    );
    assert!(state
        .domains
        .iter()
        .any(|d| !d.flags.contains(DomainFlags::PRIVILEGED) && !d.identity.is_empty()));
}

#[test]
fn a_paused_domain_cannot_be_written_as_v1_0() {
    let state = on_older_devices(HandoverState::from(golden_v1_1::state()));
    assert_eq!(
        encode(golden::VERSION, &state),
        Err(EncodeError::Inexpressible {
            version: AbiVersion::new(1, 0),
            what: Inexpressible::PausedDomain(DomId(3)),
        })
    );
    let e = handover_abi::encoded_len_as(golden::VERSION, &state).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ABI 1.0 cannot carry this state: d3 is paused, and ABI 1.0 cannot say so \
         (the new image would resume it)"
    );
}

/// What the golden 1.2 state has that 1.1 cannot say, one thing at a time,
/// in the order the writer looks: each is refused, naming the domain and
/// the version; with all of it undone 1.1 and 1.0 carry the state.
#[test]
fn what_1_1_cannot_say_is_refused_one_thing_at_a_time() {
    let v1_1 = golden_v1_1::VERSION;
    let mut state = v1_2_state();
    for d in &mut state.domains {
        d.paused = false;
    }
    let refused = |state: &HandoverState| match encode(v1_1, state) {
        Err(EncodeError::Inexpressible { version, what }) => {
            assert_eq!(version, v1_1);
            assert_eq!(
                encode(golden::VERSION, state),
                Err(EncodeError::Inexpressible {
                    version: golden::VERSION,
                    what: match what {
                        Inexpressible::HoleNotDefault { domain, hole, .. } => {
                            Inexpressible::HoleNotDefault {
                                version: golden::VERSION,
                                domain,
                                hole,
                            }
                        }
                        Inexpressible::RamAboveHole { domain, gpfn, .. } => {
                            Inexpressible::RamAboveHole {
                                version: golden::VERSION,
                                domain,
                                gpfn,
                            }
                        }
                        Inexpressible::MmioNotDefault { domain, .. } => {
                            Inexpressible::MmioNotDefault {
                                version: golden::VERSION,
                                domain,
                            }
                        }
                        Inexpressible::IdentityNotDefault { domain, .. } => {
                            Inexpressible::IdentityNotDefault {
                                version: golden::VERSION,
                                domain,
                            }
                        }
                        other => other,
                    },
                }),
                "1.0 refuses what 1.1 refuses"
            );
            what
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    // d1 was granted a BAR: not the default of a domU.
    assert_eq!(
        refused(&state),
        Inexpressible::MmioNotDefault {
            version: v1_1,
            domain: DomId(1)
        }
    );
    state.domains[1].mmio.clear();
    assert_eq!(
        refused(&state),
        Inexpressible::IdentityNotDefault {
            version: v1_1,
            domain: DomId(1)
        }
    );
    state.domains[1].identity.clear();
    // d3's hole is at 16 MiB.
    assert_eq!(
        refused(&state),
        Inexpressible::HoleNotDefault {
            version: v1_1,
            domain: DomId(3),
            hole: Gpfn(0x1000)
        }
    );
    // At the default hole, its page tables are still above it.
    state.domains[2].hole = DEFAULT_HOLE;
    assert_eq!(
        refused(&state),
        Inexpressible::RamAboveHole {
            version: v1_1,
            domain: DomId(3),
            gpfn: Gpfn(0x10_0000)
        }
    );
    let e = handover_abi::encoded_len_as(v1_1, &state).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ABI 1.1 cannot carry this state: d3 has guest RAM at gpfn 0x100000, above its PCI \
         hole, and ABI 1.1 cannot say so (its reader refuses a guest frame past the domain's \
         limit)"
    );
    for r in &mut state.domains[2].runs {
        if r.first_gpfn >= Gpfn(0x10_0000) {
            r.first_gpfn = Gpfn(r.first_gpfn.0 - 0x10_0000 + 0x400);
        }
    }
    // dom0 maps all device memory but one BAR in its hole.
    let all = state.domains[0].identity.clone();
    state.domains[0].identity.pop();
    assert_eq!(
        refused(&state),
        Inexpressible::IdentityNotDefault {
            version: v1_1,
            domain: DomId(0)
        }
    );
    state.domains[0].identity = all;
    // dom0 may map one range more than the device memory.
    state.domains[0]
        .mmio
        .push(hvlu_types::MfnRange::new(hvlu_types::Mfn(0xfee00), 1));
    assert_eq!(
        refused(&state),
        Inexpressible::MmioNotDefault {
            version: v1_1,
            domain: DomId(0)
        }
    );
    state.domains[0].mmio.pop();
    // Now 1.1 carries it: the reader gets the state without the device
    // list, with every hole at the default and no identity entry (none
    // differs from what it had but dom0's, the default it gets back).
    let back = decode(&encode(v1_1, &state).expect("encode"))
        .expect("decode")
        .state;
    assert_eq!(back, *carried(v1_1, &state));
    assert!(back.devices.is_empty() && back.domains[0].identity.is_empty());
    assert_eq!(back.domains[0].mmio, state.domains[0].mmio);
    assert_eq!(
        dropped(v1_1, &state),
        Dropped {
            devices: 5,
            ..Dropped::default()
        }
    );
    assert_eq!(
        dropped(v1_1, &state).to_string(),
        "the device list (5 device(s): the new image cannot compare what it finds with it)"
    );
    // And 1.0 too.
    let back = decode(&encode(golden::VERSION, &state).expect("encode"))
        .expect("decode")
        .state;
    assert_eq!(back, *carried(golden::VERSION, &state));
}

#[test]
fn writing_v1_0_drops_the_hypervisors_records_only() {
    // Nothing paused: 1.0 carries every guest-visible field, and drops the
    // reports, the command line and the retired domains.
    let mut state = on_older_devices(HandoverState::from(golden_v1_1::state()));
    for d in &mut state.domains {
        d.paused = false;
    }
    let back = decode(&encode(golden::VERSION, &state).expect("encode"))
        .expect("decode")
        .state;
    let mut expected = state.clone();
    expected.globals.cmdline.clear();
    expected.retired.clear();
    expected.devices.clear();
    for d in &mut expected.domains {
        d.reports = Default::default();
        d.identity.clear();
    }
    assert_eq!(back, expected);
    assert_eq!(carried(golden::VERSION, &state).into_owned(), expected);
    // What is dropped, as the writer announces it before pausing.
    let dropped_1_0 = dropped(golden::VERSION, &state);
    assert_eq!(
        dropped_1_0,
        Dropped {
            cmdline: !state.globals.cmdline.is_empty(),
            reports: state
                .domains
                .iter()
                .filter(|d| d.reports != Default::default())
                .count(),
            retired: state.retired.len(),
            devices: state.devices.len(),
        }
    );
    assert!(
        !dropped_1_0.is_empty(),
        "the golden 1.1 state has records to drop"
    );
    assert!(dropped(golden::VERSION, &expected).is_empty());
    assert!(dropped(golden_v1_2::VERSION, &state).is_empty());
    let text = Dropped {
        cmdline: true,
        reports: 2,
        retired: 1,
        devices: 0,
    }
    .to_string();
    assert_eq!(
        text,
        "the command line, the reports of 2 domain(s), 1 retired domain(s)"
    );
    // And 1.2 carries it all.
    let back = decode(&encode(golden_v1_2::VERSION, &state).expect("encode"))
        .expect("decode")
        .state;
    assert_eq!(back, state);
}

#[test]
fn v1_0_header_is_as_documented() {
    assert_eq!(&V1_0[0..8], &MAGIC);
    assert_eq!(&V1_0[8..12], &[1, 0, 0, 0], "version 1.0");
    assert_eq!(&V1_0[12..16], &64u32.to_le_bytes(), "header size");
    assert_eq!(&V1_0[52..64], &[0; 12], "reserved");
    let header = Header::from_bytes_unchecked(V1_0[..HEADER_SIZE].try_into().expect("header"));
    assert_eq!(
        header.body_crc,
        handover_abi::crc::crc32c(&V1_0[HEADER_SIZE..])
    );
}

#[test]
fn v1_0_state_is_complete() {
    // The golden state covers what the format can say: keep it that way for
    // every new version's blob.
    use handover_abi::RunKind;
    let state = HandoverState::from(golden::state());
    let dom0 = &state.domains[0];
    for kind in [
        RunKind::Data,
        RunKind::L1,
        RunKind::L2,
        RunKind::L3,
        RunKind::L4,
    ] {
        assert!(
            dom0.runs.iter().filter(|r| r.kind == kind).count() >= 2,
            "{kind:?}"
        );
    }
    assert_eq!(state.domains.len(), 3);
    assert_eq!(dom0.vcpus.len(), 2);
    assert!(!dom0.mmio.is_empty());
    assert!(state
        .domains
        .iter()
        .all(|d| d.pinned.iter().any(|p| p.level == RunKind::L4)));
}

#[test]
fn v1_3_decodes_to_the_known_state() {
    let decoded = decode(V1_3).expect("the golden v1.3 blob decodes");
    assert_eq!(decoded.state, golden_v1_3::state());
    assert_eq!(decoded.header.version, AbiVersion::new(1, 3));
    assert_eq!(decoded.header.producer, golden_v1_3::producer());
}

#[test]
fn v1_3_reencodes_to_the_same_bytes() {
    assert_eq!(
        encode(golden_v1_3::VERSION, &golden_v1_3::state()).expect("encode"),
        V1_3,
        "re-encoding the golden state changed its bytes"
    );
}

#[test]
fn v1_3_state_is_complete() {
    // Every addition of v1.3 is exercised by its blob: a PV and an HVM
    // domain side by side, log-dirty on, both kinds of run in more than
    // one run, vCPU contexts with an event to inject and without.
    use handover_abi::RunKind;
    let state = golden_v1_3::state();
    assert!(state.domains.iter().any(|d| d.hvm.is_none()));
    let hvm = state
        .domains
        .iter()
        .find(|d| d.hvm.is_some())
        .expect("an HVM domain");
    let part = hvm.hvm.as_ref().expect("its HVM part");
    assert!(part.log_dirty.is_some());
    assert!(hvm.runs.iter().filter(|r| r.kind == RunKind::P2m).count() >= 2);
    assert!(hvm.runs.iter().any(|r| r.kind == RunKind::LogDirty));
    assert!(part.vcpus.len() >= 2);
    assert!(part
        .vcpus
        .iter()
        .any(|c| c.pending_event != 0 && c.interrupt_shadow));
    assert!(part
        .vcpus
        .iter()
        .any(|c| c.pending_event == 0 && !c.interrupt_shadow));
    assert!(hvm.hole != DEFAULT_HOLE);
    assert_eq!(state.validate(), Ok(()));
}

/// An HVM domain cannot be written as any older version: the writer
/// refuses it naming the domain, before anything is written (and the
/// outgoing side before it pauses anything).
#[test]
fn an_hvm_domain_cannot_be_written_as_an_older_version() {
    let state = golden_v1_3::state();
    for version in [golden_v1_2::VERSION, golden_v1_1::VERSION, golden::VERSION] {
        let mut state = state.clone();
        for d in &mut state.domains {
            d.paused = false;
        }
        let expected = EncodeError::Inexpressible {
            version,
            what: Inexpressible::HvmDomain {
                version,
                domain: DomId(4),
            },
        };
        // In 1.1 and 1.0 the PV domains' device access goes first; drop it.
        for d in state.domains.iter_mut().filter(|d| d.hvm.is_none()) {
            if version < golden_v1_2::VERSION {
                d.hole = DEFAULT_HOLE;
                d.mmio.clear();
                d.identity.clear();
                d.runs.retain(|r| r.first_gpfn < Gpfn(0xc0000));
            }
        }
        state.devices.clear();
        assert_eq!(encode(version, &state), Err(expected.clone()), "{version}");
        assert_eq!(handover_abi::encoded_len_as(version, &state), Err(expected));
    }
    let e = handover_abi::encoded_len_as(golden_v1_2::VERSION, &state).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ABI 1.2 cannot carry this state: d4 is an HVM domain, and ABI 1.2 cannot describe \
         one (a reader of 1.2 knows no nested page tables, no HVM vCPU state and no log-dirty \
         bitmap)"
    );
}

/// A state with no HVM domain is written as 1.2 to a reader of 1.3, byte
/// for byte what it was before 1.3; one with an HVM domain as 1.3.
#[test]
fn a_pv_only_state_is_written_as_1_2() {
    use handover_abi::body::writes_as;
    let v1_3 = golden_v1_3::VERSION;
    let pv = v1_2_state();
    assert_eq!(writes_as(v1_3, &pv), golden_v1_2::VERSION);
    assert_eq!(
        encode(writes_as(v1_3, &pv), &pv).expect("encode"),
        V1_2,
        "a PV-only state keeps its 1.2 bytes"
    );
    assert_eq!(writes_as(v1_3, &golden_v1_3::state()), v1_3);
    // An older negotiated version stays what it is (and refuses an HVM
    // domain when it is written).
    for older in [golden::VERSION, golden_v1_1::VERSION] {
        assert_eq!(writes_as(older, &pv), older);
        assert_eq!(writes_as(older, &golden_v1_3::state()), older);
    }
    // A domain that holds a run of a 1.3 kind needs 1.3 too (the state is
    // invalid, but the writer does not make it 1.2 and lose the run).
    let mut odd = pv.clone();
    odd.domains[1].runs.push(handover_abi::MemRun {
        first_mfn: hvlu_types::Mfn(0xd000),
        count: 1,
        first_gpfn: handover_abi::NO_GPFN,
        kind: handover_abi::RunKind::P2m,
    });
    assert_eq!(writes_as(v1_3, &odd), v1_3);
    // 1.2 carries a PV-only state whole, and drops nothing of it.
    assert!(dropped(golden_v1_2::VERSION, &pv).is_empty());
    assert!(matches!(
        carried(golden_v1_2::VERSION, &pv),
        std::borrow::Cow::Borrowed(_)
    ));
}

/// A body of 1.0, 1.1 or 1.2 whose run or pin holds a kind 1.3 added
/// (`P2m` = 5, `LogDirty` = 6) is refused as malformed, exactly as a byte
/// no version knows (7) is: the readers of those versions never knew 5
/// and 6 either.
#[test]
fn an_older_body_with_a_kind_of_1_3_is_malformed() {
    use handover_abi::body::{v1_0, v1_1, v1_2};
    use handover_abi::header::Producer;
    use handover_abi::RunKind;

    fn blob<T: serde::Serialize>(version: AbiVersion, body: &T) -> Vec<u8> {
        let body = postcard::to_allocvec(body).expect("serialize");
        let producer = Producer {
            build_id: handover_abi::BuildId([7; 16]),
            abi: version,
        };
        let mut blob = Header::new(version, &body, producer).to_bytes().to_vec();
        blob.extend_from_slice(&body);
        blob
    }
    /// The blob with the byte `from` at `at` made `to` and its CRCs made
    /// good again.
    fn with_byte(version: AbiVersion, blob: &[u8], at: usize, to: u8) -> Vec<u8> {
        let mut body = blob[HEADER_SIZE..].to_vec();
        body[at - HEADER_SIZE] = to;
        let producer = Header::from_bytes_unchecked(blob[..HEADER_SIZE].try_into().unwrap());
        let mut out = Header::new(version, &body, producer.producer)
            .to_bytes()
            .to_vec();
        out.extend_from_slice(&body);
        out
    }
    let malformed = |version: AbiVersion, good: Vec<u8>, bad: Vec<u8>| {
        assert!(decode(&good).is_ok(), "{version}: the good blob decodes");
        // The byte that differs between a run of kind L4 and one of P2m.
        let at = (HEADER_SIZE..good.len())
            .find(|&i| good[i] != bad[i])
            .expect("a differing byte");
        assert_eq!((good[at], bad[at]), (4, 5), "{version}");
        let unknown = decode(&with_byte(version, &good, at, 7));
        assert!(
            matches!(unknown, Err(DecodeError::MalformedBody(_))),
            "{version}: {unknown:?}"
        );
        for kind in [5, 6] {
            assert_eq!(
                decode(&with_byte(version, &good, at, kind)),
                unknown,
                "{version}: kind {kind} is refused as an unknown one is"
            );
        }
    };
    let last_run = |runs: &mut Vec<handover_abi::MemRun>| {
        let last = runs.last_mut().expect("a run");
        assert_eq!(last.kind, RunKind::L4);
        last.kind = RunKind::P2m;
    };

    let good = golden::state();
    let mut bad = good.clone();
    last_run(&mut bad.domains[2].runs);
    malformed(
        golden::VERSION,
        blob::<v1_0::HandoverState>(golden::VERSION, &good),
        blob::<v1_0::HandoverState>(golden::VERSION, &bad),
    );
    let good = golden_v1_1::state();
    let mut bad = good.clone();
    last_run(&mut bad.domains[2].runs);
    malformed(
        golden_v1_1::VERSION,
        blob::<v1_1::HandoverState>(golden_v1_1::VERSION, &good),
        blob::<v1_1::HandoverState>(golden_v1_1::VERSION, &bad),
    );
    let good = golden_v1_2::state();
    let mut bad = good.clone();
    last_run(&mut bad.domains[2].runs);
    malformed(
        golden_v1_2::VERSION,
        blob::<v1_2::HandoverState>(golden_v1_2::VERSION, &good),
        blob::<v1_2::HandoverState>(golden_v1_2::VERSION, &bad),
    );
    // A pin's level too.
    let good = golden_v1_2::state();
    let mut bad = good.clone();
    bad.domains[2].pinned[0].level = RunKind::LogDirty;
    let (good, bad) = (
        blob::<v1_2::HandoverState>(golden_v1_2::VERSION, &good),
        blob::<v1_2::HandoverState>(golden_v1_2::VERSION, &bad),
    );
    assert!(matches!(decode(&bad), Err(DecodeError::MalformedBody(_))));
    assert!(decode(&good).is_ok());
}
