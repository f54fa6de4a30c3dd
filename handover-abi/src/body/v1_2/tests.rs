use super::*;

fn bar(index: u8, base: u64, size: u64, flags: u32) -> PciBar {
    PciBar {
        index,
        base,
        size,
        flags,
    }
}

fn device(bdf: u16, bars: Vec<PciBar>) -> PciDevice {
    PciDevice {
        bdf,
        vendor: 0x1234,
        device: 0x11e8,
        class: 0xff00,
        bars,
    }
}

fn frames(start: u64, count: u64) -> MfnRange {
    MfnRange::new(Mfn(start), count)
}

#[test]
fn a_domain_below_its_hole_has_one_ram_range() {
    let map = memory_map(DEFAULT_HOLE, 0x800);
    assert_eq!(
        map.ram().collect::<Vec<_>>(),
        [GpfnRange {
            start: Gpfn(0),
            count: 0x800
        }]
    );
    assert_eq!(map.ram_end(), 0x800);
    assert_eq!(
        map.hole,
        GpfnRange {
            start: DEFAULT_HOLE,
            count: 0x4_0000
        }
    );
    assert!(map.is_ram(Gpfn(0), 0x800));
    assert!(!map.is_ram(Gpfn(0x7ff), 2));
}

#[test]
fn the_frames_the_hole_leaves_out_go_above_4_gib() {
    // 4 GiB of RAM with the hole at 3 GiB: 3 GiB below it, 1 GiB from 4 GiB.
    let map = memory_map(DEFAULT_HOLE, 0x10_0000);
    assert_eq!(map.low.end(), 0xc_0000);
    assert_eq!(map.high.start, HOLE_END);
    assert_eq!(map.high.count, 0x4_0000);
    assert_eq!(map.ram_end(), 0x14_0000);
    assert!(map.is_ram(Gpfn(0x10_0000), 0x4_0000));
    assert!(!map.is_ram(Gpfn(0xc_0000), 1), "the hole is no RAM");
    assert!(
        !map.is_ram(Gpfn(0xb_ffff), 2),
        "a range across the hole's start"
    );
    assert!(map.hole.meets(0xb_ffff, 2) && !map.hole.meets(0xb_ffff, 1));
    // Exactly up to the hole: no RAM above it.
    let map = memory_map(MIN_HOLE, MIN_HOLE.0);
    assert_eq!(map.ram().count(), 1);
    // A limit near the top of u64 does not wrap.
    let map = memory_map(MIN_HOLE, u64::MAX);
    assert_eq!(map.high.end(), u64::MAX);
    assert!(!map.is_ram(Gpfn(u64::MAX), 1));
}

#[test]
fn a_hole_is_2_mib_aligned_from_16_mib_to_below_4_gib() {
    assert!(hole_is_valid(DEFAULT_HOLE));
    assert!(hole_is_valid(MIN_HOLE));
    assert!(hole_is_valid(Gpfn(HOLE_END.0 - HOLE_ALIGN)));
    assert!(!hole_is_valid(HOLE_END));
    assert!(!hole_is_valid(Gpfn(MIN_HOLE.0 - HOLE_ALIGN)));
    assert!(!hole_is_valid(Gpfn(DEFAULT_HOLE.0 + 1)));
    assert!(!hole_is_valid(Gpfn(0)));
}

#[test]
fn device_memory_is_sorted_and_merges_what_touches() {
    let devices = [
        device(0x10, vec![bar(0, 0xfeb0_0000, 0x1000, 0)]),
        device(
            0x08,
            vec![
                bar(0, 0xfea0_0000, 0x10_0000, 0),
                bar(2, 0x80_0000_0000, 0x4000, PciBar::MEM64),
            ],
        ),
        device(0x18, vec![]),
        device(0x20, vec![bar(1, 0xfec0_0000, 0x1000, 0)]),
    ];
    assert_eq!(
        device_memory(&devices),
        [
            frames(0xfea00, 0x101),
            frames(0xfec00, 1),
            frames(0x800_0000, 4)
        ]
    );
    assert!(device_memory(&[]).is_empty());
}

#[test]
fn the_default_access_is_the_device_memory_for_a_privileged_domain_only() {
    let devices = [
        device(0x08, vec![bar(0, 0xfea0_0000, 0x10_0000, 0)]),
        device(0x10, vec![bar(4, 0x1_0000_0000, 0x1000, PciBar::MEM64)]),
    ];
    let dom0 = DomainFlags::PRIVILEGED.union(DomainFlags::PV);
    assert_eq!(
        default_mmio(dom0, &devices),
        [frames(0xfea00, 0x100), frames(0x10_0000, 1)]
    );
    // The BAR at 4 GiB has no guest frame: it is past the hole.
    assert_eq!(
        default_identity(dom0, &devices, DEFAULT_HOLE),
        [frames(0xfea00, 0x100)]
    );
    // A hole above a BAR leaves it out; one starting in it cuts it.
    assert!(default_identity(dom0, &devices, Gpfn(0xfec00)).is_empty());
    assert_eq!(
        default_identity(dom0, &devices, Gpfn(0xfea80)),
        [frames(0xfea80, 0x80)]
    );
    assert!(default_mmio(DomainFlags::PV, &devices).is_empty());
    assert!(default_identity(DomainFlags::PV, &devices, DEFAULT_HOLE).is_empty());
}

fn domain(flags: DomainFlags) -> Domain {
    Domain {
        id: DomId(0),
        flags,
        name: String::new(),
        max_frames: 0,
        runs: Vec::new(),
        pinned: Vec::new(),
        mmio: Vec::new(),
        start_info: Gpfn(0),
        vcpus: Vec::new(),
        console: ConsoleRing::default(),
        paused: false,
        reports: GuestReports::default(),
        hole: DEFAULT_HOLE,
        identity: Vec::new(),
    }
}

#[test]
fn the_default_access_is_recognised_without_building_it() {
    let devices = [
        device(0x08, vec![bar(0, 0xfea0_0000, 0x10_0000, 0)]),
        device(0x10, vec![bar(1, 0xfeb0_0000, 0x1000, 0)]),
        device(0x18, vec![bar(4, 0x1_0000_0000, 0x1000, PciBar::MEM64)]),
    ];
    let mut d = domain(DomainFlags::PRIVILEGED.union(DomainFlags::PV));
    assert_eq!(d.has_default_access(&devices), (false, false));
    d.set_default_access(&devices);
    assert_eq!(d.mmio, [frames(0xfea00, 0x101), frames(0x10_0000, 1)]);
    assert_eq!(d.has_default_access(&devices), (true, true));
    // The same frames cut differently are not the default: the list is.
    let merged = d.mmio.clone();
    d.mmio = vec![frames(0xfea00, 0x100), frames(0xfeb00, 1), merged[1]];
    assert_eq!(d.has_default_access(&devices), (false, true));
    // One frame more, one frame less, out of order.
    d.mmio = vec![frames(0xfea00, 0x102), merged[1]];
    assert!(!d.has_default_access(&devices).0);
    d.mmio = vec![frames(0xfea00, 0x100), merged[1]];
    assert!(!d.has_default_access(&devices).0);
    d.mmio = vec![merged[1], merged[0]];
    assert!(!d.has_default_access(&devices).0);
    d.mmio = merged;
    d.identity.push(frames(0xfec00, 1));
    assert_eq!(d.has_default_access(&devices), (true, false));
    // With no devices the default of every domain is nothing.
    d.set_default_access(&[]);
    assert!(d.mmio.is_empty() && d.identity.is_empty());
    assert_eq!(d.has_default_access(&[]), (true, true));
    let mut u = domain(DomainFlags::PV);
    assert_eq!(u.has_default_access(&devices), (true, true));
    u.mmio.push(frames(0xfea00, 0x100));
    assert_eq!(u.has_default_access(&devices), (false, true));
}

#[test]
fn a_bar_is_its_frames_and_its_registers() {
    let b = bar(
        4,
        0x80_0000_0000,
        0x10_0000,
        PciBar::MEM64 | PciBar::PREFETCHABLE,
    );
    assert_eq!(b.frames(), frames(0x800_0000, 0x100));
    assert_eq!(b.registers(), 2);
    assert_eq!(bar(0, 0, 0x1000, PciBar::PREFETCHABLE).registers(), 1);
    // An unaligned BAR covers the frames it touches; one at the top of the
    // address space does not wrap.
    assert_eq!(bar(0, 0x1800, 0x1000, 0).frames(), frames(1, 2));
    assert_eq!(
        bar(0, u64::MAX - 0xfff, 0x2000, 0).frames(),
        frames(0xf_ffff_ffff_ffff, 1)
    );
}

#[test]
fn a_bdf_reads_as_bus_device_function() {
    assert_eq!(Bdf(0x08).to_string(), "00:01.0");
    assert_eq!(Bdf(0x1f << 3 | 3).to_string(), "00:1f.3");
    assert_eq!(Bdf(0xff_ff).to_string(), "ff:1f.7");
    let d = device(1 << 8 | 2 << 3 | 1, vec![]);
    assert_eq!(
        (
            d.address().bus(),
            d.address().device(),
            d.address().function()
        ),
        (1, 2, 1)
    );
}

#[test]
fn an_older_state_gets_the_default_hole_and_nothing_else() {
    let old = v1_1::HandoverState {
        machine: Machine {
            ram_map: Vec::new(),
            region: LuRegion {
                base: 0,
                size: 0,
                image: frames(0, 0),
                state: frames(0, 0),
            },
        },
        globals: HvGlobals {
            next_domid: DomId(1),
            time: TimeBase {
                tsc: 0,
                tsc_khz: 1,
                system_time_ns: 0,
            },
            cmdline: String::new(),
        },
        domains: Vec::new(),
        retired: Vec::new(),
    };
    let mut with_domain = old.clone();
    with_domain.domains.push(v1_1::Domain {
        id: DomId(0),
        flags: DomainFlags::PV,
        name: "dom0".into(),
        max_frames: 0x10,
        runs: Vec::new(),
        pinned: Vec::new(),
        mmio: vec![frames(0xfee00, 1)],
        start_info: Gpfn(0),
        vcpus: Vec::new(),
        console: ConsoleRing::default(),
        paused: true,
        reports: GuestReports::default(),
    });
    let new = HandoverState::from(with_domain);
    assert!(new.devices.is_empty());
    let d = &new.domains[0];
    assert_eq!((d.hole, d.identity.len()), (DEFAULT_HOLE, 0));
    assert_eq!(d.mmio, [frames(0xfee00, 1)], "the MMIO ranges stay");
    assert!(d.paused);
}
