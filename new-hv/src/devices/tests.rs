use super::*;
use alloc::vec;
use alloc::vec::Vec;
use handover_abi::{
    ConsoleRing, Domain, GuestReports, HvGlobals, LuRegion, Machine, MemRun, RamRange, RamType,
    RunKind, TimeBase, DEFAULT_HOLE,
};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

fn bar(index: u8, base: u64, size: u64) -> PciBar {
    PciBar {
        index,
        base,
        size,
        flags: 0,
    }
}

/// edu at 00:01.0 (BAR 0, 1 MiB), a function at 00:02.0 with BAR 1 (64 KiB)
/// and a 64-bit BAR 4 above 4 GiB.
fn machine() -> Vec<PciDevice> {
    vec![
        PciDevice {
            bdf: 1 << 3,
            vendor: 0x1234,
            device: 0x11e8,
            class: 0x00_ff00,
            bars: vec![bar(0, 0xfea0_0000, 0x10_0000)],
        },
        PciDevice {
            bdf: 2 << 3,
            vendor: 0x1af4,
            device: 0x1041,
            class: 0x02_0000,
            bars: vec![
                bar(1, 0xfebf_0000, 0x1_0000),
                PciBar {
                    flags: PciBar::MEM64 | PciBar::PREFETCHABLE,
                    ..bar(4, 0x8_0000_0000, 0x4000)
                },
            ],
        },
    ]
}

#[test]
fn the_same_devices_in_any_order_and_more_found_are_fine() {
    let recorded = machine();
    assert_eq!(compare(&recorded, &recorded), Ok(()));
    let mut found = machine();
    found.reverse();
    found[0].bars.reverse();
    found.push(PciDevice {
        bdf: 3 << 3,
        vendor: 0x8086,
        device: 0x10d3,
        class: 0x02_0000,
        bars: vec![bar(0, 0xfeb8_0000, 0x2_0000)],
    });
    assert_eq!(compare(&recorded, &found), Ok(()));
    assert_eq!(compare(&[], &found), Ok(()));
}

#[test]
fn a_recorded_device_that_is_gone_is_named() {
    let recorded = machine();
    let found = &recorded[1..];
    let e = compare(&recorded, found).unwrap_err();
    assert_eq!(
        e,
        DeviceChange::Vanished {
            device: Bdf(0x08),
            vendor: 0x1234,
            id: 0x11e8
        }
    );
    assert_eq!(e.device(), Bdf(0x08));
    assert_eq!(
        e.to_string(),
        "device 00:01.0 (1234:11e8) was recorded but is gone"
    );
}

#[test]
fn another_function_at_the_address_is_named() {
    let recorded = machine();
    let mut found = machine();
    found[1].class = 0x01_0802;
    let e = compare(&recorded, &found).unwrap_err();
    assert_eq!(
        e,
        DeviceChange::Replaced {
            device: Bdf(0x10),
            recorded: (0x1af4, 0x1041, 0x02_0000),
            found: (0x1af4, 0x1041, 0x01_0802)
        }
    );
    assert_eq!(
        e.to_string(),
        "device 00:02.0 was 1af4:1041 class 020000, it is now 1af4:1041 class 010802"
    );
}

#[test]
fn a_bar_gone_moved_resized_reflagged_or_new_is_named() {
    let recorded = machine();
    let high = recorded[1].bars[1];

    let mut found = machine();
    found[1].bars.pop();
    let e = compare(&recorded, &found).unwrap_err();
    assert_eq!(
        e,
        DeviceChange::BarGone {
            device: Bdf(0x10),
            index: 4,
            recorded: high
        }
    );
    assert_eq!(
        e.to_string(),
        "device 00:02.0 BAR 4 (0x800000000+0x4000 (64-bit, prefetchable)) was recorded but is gone"
    );

    for change in [
        |b: &mut PciBar| b.base += b.size,
        |b: &mut PciBar| b.size *= 2,
        |b: &mut PciBar| b.flags &= !PciBar::PREFETCHABLE,
    ] {
        let mut found = machine();
        change(&mut found[1].bars[1]);
        let moved = found[1].bars[1];
        assert_eq!(
            compare(&recorded, &found),
            Err(DeviceChange::BarMoved {
                device: Bdf(0x10),
                index: 4,
                recorded: high,
                found: moved
            })
        );
    }
    let mut found = machine();
    found[0].bars[0].base = 0xfe00_0000;
    assert_eq!(
        compare(&recorded, &found).unwrap_err().to_string(),
        "device 00:01.0 BAR 0 moved: recorded at 0xfea00000+0x100000, found at 0xfe000000+0x100000"
    );

    let mut found = machine();
    found[0].bars.push(bar(2, 0xfeb0_0000, 0x1000));
    assert_eq!(
        compare(&recorded, &found),
        Err(DeviceChange::BarAppeared {
            device: Bdf(0x08),
            index: 2,
            found: bar(2, 0xfeb0_0000, 0x1000)
        })
    );
}

#[test]
fn the_first_change_in_the_recorded_order_is_the_one_named() {
    let recorded = machine();
    let mut found = machine();
    found[1].bars.clear();
    found[0].vendor = 0x8086;
    assert!(matches!(
        compare(&recorded, &found),
        Err(DeviceChange::Replaced {
            device: Bdf(0x08),
            ..
        })
    ));
}

/// A valid state: a 64 MiB machine, dom0 (privileged) and a domU, each one
/// data frame and one L4, no devices.
fn state() -> HandoverState {
    let domain = |id: u16, flags: DomainFlags, mfn: u64| Domain {
        id: DomId(id),
        flags,
        name: alloc::format!("d{id}"),
        max_frames: 16,
        runs: vec![
            MemRun {
                first_mfn: Mfn(mfn),
                count: 1,
                first_gpfn: Gpfn(0),
                kind: RunKind::Data,
            },
            MemRun {
                first_mfn: Mfn(mfn + 1),
                count: 1,
                first_gpfn: Gpfn(1),
                kind: RunKind::L4,
            },
        ],
        pinned: vec![],
        mmio: vec![],
        start_info: Gpfn(0),
        vcpus: vec![],
        console: ConsoleRing::default(),
        paused: false,
        reports: GuestReports::default(),
        hole: DEFAULT_HOLE,
        identity: vec![],
        hvm: None,
    };
    HandoverState {
        machine: Machine {
            ram_map: vec![RamRange {
                base: 0,
                size: 0x400_0000,
                kind: RamType::Usable,
            }],
            region: LuRegion {
                base: 0x200_0000,
                size: 0x100_0000,
                image: MfnRange::new(Mfn(0x2000), 0x10),
                state: MfnRange::new(Mfn(0x2010), 0x10),
            },
        },
        globals: HvGlobals {
            next_domid: DomId(2),
            time: TimeBase {
                tsc: 1,
                tsc_khz: 1,
                system_time_ns: 0,
            },
            cmdline: alloc::string::String::new(),
        },
        domains: vec![
            domain(0, DomainFlags::PRIVILEGED.union(DomainFlags::PV), 0x1000),
            domain(1, DomainFlags::PV, 0x1100),
        ],
        retired: vec![],
        devices: vec![],
    }
}

#[test]
fn an_older_state_gets_the_devices_found_and_dom0_its_default_access() {
    let mut s = state();
    s.validate().unwrap();
    let found = machine();
    for minor in [0, 1] {
        let mut s = s.clone();
        adopt(&mut s, AbiVersion::new(1, minor), &found).unwrap();
        assert_eq!(s.devices, found);
        assert_eq!(
            s.domains[0].mmio,
            [
                MfnRange::new(Mfn(0xfea00), 0x100),
                MfnRange::new(Mfn(0xfebf0), 0x10),
                MfnRange::new(Mfn(0x80_0000), 4)
            ]
        );
        // The BAR above 4 GiB has no guest frame.
        assert_eq!(s.domains[0].identity, s.domains[0].mmio[..2]);
        assert!(s.domains[1].mmio.is_empty() && s.domains[1].identity.is_empty());
        assert_eq!(s.domains[0].has_default_access(&found), (true, true));
    }
    // What the state had is replaced, not kept: a 1.1 state's dom0 MMIO
    // ranges are what the writer checked were its default.
    s.domains[0].mmio = vec![MfnRange::new(Mfn(0xfed00), 1)];
    adopt(&mut s, AbiVersion::new(1, 1), &found).unwrap();
    assert_eq!(s.domains[0].mmio.len(), 3);
}

#[test]
fn devices_found_that_do_not_fit_an_older_state_are_refused() {
    // A BAR over RAM.
    let mut found = machine();
    found[0].bars[0].base = 0x100_0000;
    let mut s = state();
    assert!(matches!(
        adopt(&mut s, AbiVersion::new(1, 1), &found),
        Err(DeviceError::Invalid(StateError::BarOverlapsRam { .. }))
    ));
    // A domU whose MMIO range is no device's.
    let mut s = state();
    s.domains[1].mmio = vec![MfnRange::new(Mfn(0xfed00), 1)];
    let e = adopt(&mut s, AbiVersion::new(1, 1), &machine()).unwrap_err();
    assert!(
        matches!(
            e,
            DeviceError::Invalid(StateError::MmioOutsideDevices { .. })
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("the devices found do not fit the state: domain 1: MMIO range 0"));
}

#[test]
fn a_1_2_state_keeps_its_list_and_has_it_compared() {
    let mut s = state();
    s.devices = machine();
    s.domains[0].set_default_access(&s.devices.clone());
    s.validate().unwrap();
    let before = s.clone();
    let mut found = machine();
    found.push(PciDevice {
        bdf: 0x100,
        vendor: 1,
        device: 2,
        class: 3,
        bars: vec![],
    });
    adopt(&mut s, AbiVersion::new(1, 2), &found).unwrap();
    assert_eq!(s, before, "nothing changes");
    found.remove(0);
    assert_eq!(
        adopt(&mut s, AbiVersion::new(1, 2), &found),
        Err(DeviceError::Changed(DeviceChange::Vanished {
            device: Bdf(0x08),
            vendor: 0x1234,
            id: 0x11e8
        }))
    );
}

#[test]
fn the_known_device_memory_is_the_bars_never_a_domains_shorter_grant() {
    let mut s = state();
    s.devices = machine();
    s.domains[0].set_default_access(&s.devices.clone());
    // d1 holds the first page of edu's BAR only: it starts where the BAR
    // does, and must not pass for it.
    s.domains[1].mmio = vec![MfnRange::new(Mfn(0xfea00), 1)];
    assert_eq!(
        known(&s),
        vec![
            MfnRange::new(Mfn(0xfea00), 256),
            MfnRange::new(Mfn(0xfebf0), 16),
            MfnRange::new(Mfn(0x80_0000), 4),
        ]
    );
    // An older state lists no device: nothing is known, whatever the
    // domains hold.
    s.devices.clear();
    assert!(known(&s).is_empty());
}
