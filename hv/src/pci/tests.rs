//! The walk against a simulated configuration space: functions with the
//! BAR behaviour of real hardware (writes keep only the address bits a BAR
//! implements, the type bits are read-only), and a log of every write.

use std::collections::BTreeMap;

use super::*;

/// What one BAR register pair of a simulated function implements.
#[derive(Clone, Copy, Debug)]
enum SimBar {
    /// Nothing: reads 0 whatever is written.
    None,
    /// 32-bit memory of `size` bytes (a power of two, at least 16).
    Mem32 { size: u64, prefetchable: bool },
    /// 64-bit memory of `size` bytes, the register and the next.
    Mem64 { size: u64 },
    /// I/O ports, `size` of them.
    Io { size: u64 },
    /// The upper half of the 64-bit BAR before it.
    Upper,
}

#[derive(Clone, Debug)]
struct SimFunction {
    id: u32,
    class: u32,
    header: u32,
    command: u32,
    /// A bridge's secondary bus (type 1 header).
    secondary: u8,
    bars: [SimBar; 6],
    /// The address each BAR holds (for a 64-bit BAR, both halves).
    values: [u64; 6],
}

impl SimFunction {
    fn new(vendor: u16, device: u16, class: u16) -> SimFunction {
        SimFunction {
            id: u32::from(device) << 16 | u32::from(vendor),
            class: u32::from(class) << 16,
            header: 0,
            command: 0,
            secondary: 0,
            bars: [SimBar::None; 6],
            values: [0; 6],
        }
    }

    fn bar(mut self, i: usize, bar: SimBar) -> SimFunction {
        self.bars[i] = bar;
        if let SimBar::Mem64 { .. } = bar {
            self.bars[i + 1] = SimBar::Upper;
        }
        self
    }

    fn at(mut self, i: usize, base: u64) -> SimFunction {
        self.values[i] = base;
        self
    }

    fn command(mut self, command: u32) -> SimFunction {
        self.command = command;
        self
    }

    /// A PCI-to-PCI bridge (header type 1) to bus `secondary`.
    fn bridge_to(mut self, secondary: u8) -> SimFunction {
        self.header = (self.header & 0x80) | 1;
        self.secondary = secondary;
        self
    }

    fn multi(mut self) -> SimFunction {
        self.header |= 0x80;
        self
    }

    fn header(mut self, header: u32) -> SimFunction {
        self.header = (self.header & 0x80) | header;
        self
    }

    fn read_bar(&self, i: usize) -> u32 {
        match self.bars[i] {
            SimBar::None => 0,
            SimBar::Mem32 { prefetchable, .. } => {
                self.values[i] as u32 & !0xf | if prefetchable { 0x8 } else { 0 }
            }
            SimBar::Mem64 { .. } => self.values[i] as u32 & !0xf | 0x4,
            SimBar::Upper => (self.values[i - 1] >> 32) as u32,
            SimBar::Io { .. } => self.values[i] as u32 & !0x3 | 0x1,
        }
    }

    fn write_bar(&mut self, i: usize, value: u32) {
        match self.bars[i] {
            SimBar::None => {}
            SimBar::Mem32 { size, .. } => self.values[i] = u64::from(value) & !(size - 1),
            SimBar::Io { size } => self.values[i] = u64::from(value) & 0xffff & !(size - 1),
            SimBar::Mem64 { size } => {
                let v = (self.values[i] & !0xffff_ffff) | u64::from(value);
                self.values[i] = v & !(size - 1);
            }
            SimBar::Upper => {
                let SimBar::Mem64 { size } = self.bars[i - 1] else {
                    unreachable!()
                };
                let v = (self.values[i - 1] & 0xffff_ffff) | u64::from(value) << 32;
                self.values[i - 1] = v & !(size - 1);
            }
        }
    }
}

/// A configuration space: functions by address; every other address reads
/// all-ones, as ECAM does where nothing answers.
#[derive(Debug, Default)]
struct SimSpace {
    functions: BTreeMap<Bdf, SimFunction>,
    /// Every write: (function, offset, value).
    writes: Vec<(Bdf, u16, u32)>,
}

impl SimSpace {
    fn with(mut self, bdf: Bdf, f: SimFunction) -> SimSpace {
        self.functions.insert(bdf, f);
        self
    }

    /// A host bridge at 00:00.0 (1b36:0008, class 0600, no BARs).
    fn bridge() -> SimSpace {
        SimSpace::default().with(Bdf::new(0, 0, 0), SimFunction::new(0x1b36, 0x0008, 0x0600))
    }

    fn function(&self, bdf: Bdf) -> &SimFunction {
        &self.functions[&bdf]
    }
}

impl ConfigSpace for SimSpace {
    fn read(&mut self, f: Bdf, offset: u16) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned read");
        let Some(func) = self.functions.get(&f) else {
            return u32::MAX;
        };
        match offset {
            ID => func.id,
            COMMAND => func.command,
            CLASS => func.class,
            HEADER => func.header << 16,
            BUS_NUMBERS if func.header & 0x7f == 1 => u32::from(func.secondary) << 8,
            0x10..=0x24 => func.read_bar(usize::from((offset - BAR0) / 4)),
            _ => 0,
        }
    }

    fn write(&mut self, f: Bdf, offset: u16, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned write");
        self.writes.push((f, offset, value));
        let Some(func) = self.functions.get_mut(&f) else {
            return;
        };
        match offset {
            COMMAND => func.command = value & 0xffff,
            0x10..=0x24 => func.write_bar(usize::from((offset - BAR0) / 4), value),
            _ => {}
        }
    }
}

const MIB: u64 = 1 << 20;
/// microvm's 32-bit MMIO window.
const WINDOW: PhysRange = PhysRange::new(0xc000_0000, 0x2000_0000);
const EDU: Bdf = Bdf::new(0, 1, 0);

fn edu() -> SimFunction {
    SimFunction::new(0x1234, 0x11e8, 0x00ff).bar(
        0,
        SimBar::Mem32 {
            size: MIB,
            prefetchable: false,
        },
    )
}

/// 512 MiB of RAM at 0.
fn ram() -> Vec<PhysRange> {
    vec![PhysRange::new(0, 512 * MIB)]
}

fn cold(space: &mut SimSpace) -> Scan {
    scan(space, 256, Mode::Assign { window: WINDOW }, &ram()).expect("a host bridge")
}

#[test]
fn a_cold_boot_places_the_edu_bar_in_the_window_and_turns_decoding_on() {
    let mut space = SimSpace::bridge().with(EDU, edu());
    let found = cold(&mut space);
    assert_eq!(found.notes, Vec::<String>::new());
    assert_eq!(found.devices.len(), 2);
    assert_eq!(found.devices[0].to_string(), "00:00.0 1b36:0008 class 0600");
    assert_eq!(
        found.devices[1].to_string(),
        "00:01.0 1234:11e8 class 00ff bar0 0xc0000000+1M"
    );
    let f = space.function(EDU);
    assert_eq!(f.values[0], 0xc000_0000, "the BAR holds its new base");
    assert_eq!(f.command & COMMAND_MEMORY, COMMAND_MEMORY);
    assert_eq!(f.command & COMMAND_IO, 0);
    assert_eq!(
        memory_frames(&found.devices),
        vec![MfnRange::new(Mfn(0xc0000), 256)]
    );
}

#[test]
fn no_host_bridge_is_an_error_and_nothing_is_written() {
    let mut space = SimSpace::default().with(EDU, edu());
    assert_eq!(
        scan(&mut space, 256, Mode::Assign { window: WINDOW }, &ram()),
        Err(ScanError::NoHostBridge)
    );
    assert!(space.writes.is_empty());
}

/// Memory where nothing answers may read as zeroes rather than all-ones.
#[test]
fn a_vendor_of_zero_is_no_function() {
    struct Zeroes;
    impl ConfigSpace for Zeroes {
        fn read(&mut self, _: Bdf, _: u16) -> u32 {
            0
        }
        fn write(&mut self, _: Bdf, _: u16, _: u32) {
            panic!("nothing may be written where nothing answers");
        }
    }
    assert_eq!(
        scan(&mut Zeroes, 256, Mode::Assign { window: WINDOW }, &ram()),
        Err(ScanError::NoHostBridge)
    );
}

#[test]
fn bus_0_the_buses_behind_bridges_and_every_function_of_a_multi_function_device_are_walked() {
    let mut space = SimSpace::bridge()
        .with(
            Bdf::new(0, 3, 0),
            SimFunction::new(0x8086, 1, 0x0200).multi(),
        )
        .with(Bdf::new(0, 3, 5), SimFunction::new(0x8086, 2, 0x0200))
        // Function 2 of a single-function device is not looked at.
        .with(Bdf::new(0, 4, 0), SimFunction::new(0x8086, 3, 0x0200))
        .with(Bdf::new(0, 4, 2), SimFunction::new(0x8086, 4, 0x0200))
        // Behind the bridge at 00:05.0: walked.
        .with(
            Bdf::new(0, 5, 0),
            SimFunction::new(0x8086, 6, 0x0604).bridge_to(7),
        )
        .with(Bdf::new(7, 31, 0), SimFunction::new(0x8086, 5, 0x0200))
        // On a bus no bridge leads to: not looked for.
        .with(Bdf::new(9, 0, 0), SimFunction::new(0x8086, 7, 0x0200));
    let found = cold(&mut space);
    let ids: Vec<(String, u16)> = found
        .devices
        .iter()
        .map(|d| (d.bdf.to_string(), d.device))
        .collect();
    let want = [
        ("00:00.0", 8),
        ("00:03.0", 1),
        ("00:03.5", 2),
        ("00:04.0", 3),
        ("00:05.0", 6),
        ("07:1f.0", 5),
    ];
    assert_eq!(
        ids,
        want.map(|(b, d)| (b.to_string(), d)).to_vec(),
        "{found:?}"
    );
    // Buses beyond the window's are not read.
    let found = scan(&mut space, 4, Mode::Assign { window: WINDOW }, &ram()).unwrap();
    assert!(found.devices.iter().all(|d| d.bdf.bus < 4));
}

#[test]
fn bars_are_placed_largest_first_aligned_to_their_size_64_bit_ones_included() {
    let dev = SimFunction::new(0x1af4, 0x1000, 0x0200)
        .bar(
            0,
            SimBar::Mem32 {
                size: 4096,
                prefetchable: false,
            },
        )
        .bar(1, SimBar::Io { size: 32 })
        .bar(2, SimBar::Mem64 { size: 16 * MIB })
        .bar(
            4,
            SimBar::Mem32 {
                size: 2 * MIB,
                prefetchable: true,
            },
        );
    let mut space = SimSpace::bridge()
        .with(EDU, edu())
        .with(Bdf::new(0, 2, 0), dev);
    let found = cold(&mut space);
    assert_eq!(
        found.devices[2].to_string(),
        "00:02.0 1af4:1000 class 0200 bar0 0xc1300000+4K bar1 io 0x0+32 \
         bar2 0xc0000000+16M 64-bit bar4 0xc1000000+2M prefetchable"
    );
    assert_eq!(
        found.devices[1].to_string(),
        "00:01.0 1234:11e8 class 00ff bar0 0xc1200000+1M"
    );
    let frames = memory_frames(&found.devices);
    for w in frames.windows(2) {
        assert!(w[0].end() <= w[1].start.0, "overlap: {frames:?}");
    }
    let f = space.function(Bdf::new(0, 2, 0));
    assert_eq!(f.values[2], 0xc000_0000);
    // Memory decoding on; I/O decoding stays as it was (off): the I/O BAR
    // is recorded, not placed.
    assert_eq!(f.command & (COMMAND_MEMORY | COMMAND_IO), COMMAND_MEMORY);
}

#[test]
fn a_64_bit_bar_above_4_gib_keeps_its_upper_half() {
    let dev = SimFunction::new(0x1af4, 0x1001, 0x0200)
        .bar(0, SimBar::Mem64 { size: 64 * 1024 })
        .at(0, 0xc0_0001_0000);
    let mut space = SimSpace::bridge().with(EDU, dev);
    let found = cold(&mut space);
    assert_eq!(
        found.devices[1].to_string(),
        "00:01.0 1af4:1001 class 0200 bar0 0xc000010000+64K 64-bit"
    );
    assert_eq!(space.function(EDU).values[0], 0xc0_0001_0000);
}

#[test]
fn a_bar_smaller_than_a_page_gets_a_page_of_its_own() {
    let tiny = |device| {
        SimFunction::new(0x1234, device, 0x0880).bar(
            0,
            SimBar::Mem32 {
                size: 256,
                prefetchable: false,
            },
        )
    };
    let mut space = SimSpace::bridge()
        .with(Bdf::new(0, 1, 0), tiny(1))
        .with(Bdf::new(0, 2, 0), tiny(2));
    let found = cold(&mut space);
    assert_eq!(
        memory_frames(&found.devices),
        vec![
            MfnRange::new(Mfn(0xc0000), 1),
            MfnRange::new(Mfn(0xc0001), 1)
        ]
    );
}

#[test]
fn a_firmware_placement_is_kept_unless_it_overlaps_ram_or_another_bar() {
    let at = |device, base| {
        SimFunction::new(0x1234, device, 0x00ff)
            .bar(
                0,
                SimBar::Mem32 {
                    size: MIB,
                    prefetchable: false,
                },
            )
            .at(0, base)
    };
    let mut space = SimSpace::bridge()
        // Valid: kept.
        .with(Bdf::new(0, 1, 0), at(1, 0xd000_0000))
        // Over RAM: placed anew.
        .with(Bdf::new(0, 2, 0), at(2, 0x0010_0000))
        // Over the first: placed anew.
        .with(Bdf::new(0, 3, 0), at(3, 0xd000_0000));
    let found = cold(&mut space);
    let bases: Vec<u64> = found.devices[1..].iter().map(|d| d.bars[0].base).collect();
    assert_eq!(bases, vec![0xd000_0000, 0xc000_0000, 0xc010_0000]);
}

#[test]
fn a_bar_that_finds_no_room_leaves_its_function_without_memory_decoding() {
    let big = SimFunction::new(0x1234, 0x0bad, 0x0300)
        .bar(0, SimBar::Mem64 { size: 1 << 30 })
        .bar(
            2,
            SimBar::Mem32 {
                size: MIB,
                prefetchable: false,
            },
        )
        .command(COMMAND_MEMORY);
    let mut space = SimSpace::bridge()
        .with(EDU, edu())
        .with(Bdf::new(0, 2, 0), big);
    let found = cold(&mut space);
    assert_eq!(
        found.notes,
        vec![format!(
            "00:02.0 bar0 (1G) finds no room in the window {WINDOW}: its memory decoding stays off"
        )]
    );
    assert_eq!(found.devices[2].bars, vec![]);
    assert_eq!(
        space.function(Bdf::new(0, 2, 0)).command & COMMAND_MEMORY,
        0
    );
    // The others are placed as if it were not there.
    assert_eq!(
        found.devices[1].to_string(),
        "00:01.0 1234:11e8 class 00ff bar0 0xc0000000+1M"
    );
}

#[test]
fn a_64_bit_bar_in_the_last_slot_is_left_out() {
    let mut bad = SimFunction::new(0x1234, 0x0bad, 0x0300);
    bad.values[5] = 0;
    bad.bars[5] = SimBar::Mem64 { size: MIB };
    let mut space = SimSpace::bridge().with(EDU, bad);
    let found = cold(&mut space);
    assert_eq!(
        found.notes,
        vec!["00:01.0 bar5 is 64-bit but is its header's last BAR: left out".to_string()]
    );
    assert!(found.devices[1].bars.is_empty());
}

#[test]
fn bridges_have_two_bars_and_other_headers_none() {
    let bridge = SimFunction::new(0x1b36, 0x000c, 0x0604)
        .header(1)
        .bar(
            0,
            SimBar::Mem32 {
                size: 4096,
                prefetchable: false,
            },
        )
        .bar(
            2,
            SimBar::Mem32 {
                size: 4096,
                prefetchable: false,
            },
        );
    let cardbus = SimFunction::new(0x1234, 0x0002, 0x0607).header(2).bar(
        0,
        SimBar::Mem32 {
            size: 4096,
            prefetchable: false,
        },
    );
    let mut space = SimSpace::bridge()
        .with(Bdf::new(0, 1, 0), bridge)
        .with(Bdf::new(0, 2, 0), cardbus);
    let found = cold(&mut space);
    assert_eq!(found.devices[1].bars.len(), 1, "BAR 2 is not a bridge's");
    assert!(found.devices[2].bars.is_empty());
    assert_eq!(
        found.notes,
        vec![
            "00:01.0 is a PCI bridge: devices behind it are not configured".to_string(),
            "00:02.0 has header type 0x2: its BARs are not read".to_string()
        ]
    );
}

#[test]
fn an_update_boot_writes_nothing_and_sizes_bars_from_the_record() {
    let mut space = SimSpace::bridge().with(EDU, edu());
    let first = cold(&mut space);
    let known = memory_frames(&first.devices);
    space.writes.clear();
    let again = scan(
        &mut space,
        256,
        Mode::Keep {
            known: &known,
            size_unknown: false,
        },
        &ram(),
    )
    .unwrap();
    assert!(space.writes.is_empty(), "{:?}", space.writes);
    assert_eq!(again, first);
}

#[test]
fn an_update_boot_leaves_out_what_it_cannot_size_or_what_does_not_decode() {
    let placed = |device: u32| edu().at(0, 0xc000_0000 + u64::from(device) * MIB);
    let mut space = SimSpace::bridge()
        // Not recorded: its size is unknown.
        .with(Bdf::new(0, 1, 0), placed(1).command(COMMAND_MEMORY))
        // Recorded, but memory decoding is off.
        .with(Bdf::new(0, 2, 0), placed(2))
        // Never assigned (a release that did not know PCI booted cold):
        // the register reads 0, like one not implemented.
        .with(Bdf::new(0, 3, 0), edu().command(COMMAND_MEMORY))
        // A 64-bit BAR never assigned: it reads as one, at 0.
        .with(
            Bdf::new(0, 6, 0),
            SimFunction::new(0x1234, 6, 0x00ff)
                .bar(0, SimBar::Mem64 { size: MIB })
                .command(COMMAND_MEMORY),
        )
        // Recorded and decoding, but over RAM.
        .with(
            Bdf::new(0, 4, 0),
            edu().at(0, 0x10_0000).command(COMMAND_MEMORY),
        )
        // Recorded and decoding.
        .with(Bdf::new(0, 5, 0), placed(5).command(COMMAND_MEMORY));
    let known = [
        MfnRange::new(Mfn(0x100), 256),
        MfnRange::new(Mfn(0xc0200), 256),
        MfnRange::new(Mfn(0xc0500), 256),
    ];
    let found = scan(
        &mut space,
        256,
        Mode::Keep {
            known: &known,
            size_unknown: false,
        },
        &ram(),
    )
    .unwrap();
    assert!(space.writes.is_empty());
    assert_eq!(
        found.notes,
        vec![
            "00:01.0 bar0 at 0xc0100000 was not recorded by the previous hypervisor (its size \
             is unknown without writing the BAR): left out"
                .to_string(),
            "00:02.0 bar0 does not decode (memory decoding is off): left alone".to_string(),
            format!(
                "00:04.0 bar0 at 0x100000+1M overlaps {}, which is not free address space: left out",
                PhysRange::new(0, 512 * MIB)
            ),
            "00:06.0 bar0 is not assigned: left alone".to_string(),
        ]
    );
    assert!(found.devices[3].bars.is_empty());
    assert_eq!(
        memory_frames(&found.devices),
        vec![MfnRange::new(Mfn(0xc0500), 256)]
    );
}

#[test]
fn device_memory_is_a_range_inside_one_bar() {
    let mut space = SimSpace::bridge().with(EDU, edu());
    let found = cold(&mut space);
    let d = &found.devices;
    assert!(bar_holding(d, MfnRange::new(Mfn(0xc0000), 256)).is_some());
    assert!(bar_holding(d, MfnRange::new(Mfn(0xc00ff), 1)).is_some());
    assert!(bar_holding(d, MfnRange::new(Mfn(0xc00ff), 2)).is_none());
    assert!(bar_holding(d, MfnRange::new(Mfn(0xbffff), 2)).is_none());
    assert!(bar_holding(d, MfnRange::new(Mfn(0xc0000), 0)).is_none());
    assert!(bar_holding(d, MfnRange::new(Mfn(0x100), 1)).is_none());
}

#[test]
fn addresses_pack_and_print() {
    let b = Bdf::new(0x12, 0x1f, 7);
    assert_eq!(b.to_string(), "12:1f.7");
    assert_eq!(Bdf::from_packed(b.packed()), b);
    assert_eq!(b.ecam_offset(), 0x12 << 20 | 0x1f << 15 | 7 << 12);
    assert_eq!(Size(MIB).to_string(), "1M");
    assert_eq!(Size(48 * 1024).to_string(), "48K");
    assert_eq!(Size(1 << 31).to_string(), "2G");
    assert_eq!(Size(100).to_string(), "100");
}

#[test]
fn while_nothing_runs_an_unrecorded_bar_is_sized_and_its_decoding_restored() {
    // After an update through a release that did not know PCI: the BAR is
    // where the last cold boot put it, decoding, and nobody recorded it.
    let mut space = SimSpace::bridge().with(EDU, edu().at(0, 0xc000_0000).command(COMMAND_MEMORY));
    let quiet = Mode::Keep {
        known: &[],
        size_unknown: true,
    };
    let found = scan(&mut space, 256, quiet, &ram()).unwrap();
    assert_eq!(
        memory_frames(&found.devices),
        vec![MfnRange::new(Mfn(0xc0000), 256)]
    );
    assert_eq!(
        found.notes,
        vec![
            "00:01.0 bar0 at 0xc0000000 was not recorded: sized (1M) while nothing runs, its \
             decoding restored"
                .to_string()
        ]
    );
    // The BAR is where it was, and decodes as before.
    let edu_writes: Vec<_> = space.writes.iter().filter(|w| w.0 == EDU).collect();
    assert_eq!(
        edu_writes.first().map(|w| (w.1, w.2 & COMMAND_MEMORY)),
        Some((COMMAND, 0))
    );
    assert_eq!(
        edu_writes.last().map(|w| (w.1, w.2 & COMMAND_MEMORY)),
        Some((COMMAND, COMMAND_MEMORY))
    );
    let again = scan(
        &mut space,
        256,
        Mode::Keep {
            known: &memory_frames(&found.devices),
            size_unknown: false,
        },
        &ram(),
    )
    .unwrap();
    assert_eq!(again.devices, found.devices);
}

#[test]
fn a_bar_sized_while_nothing_runs_must_be_aligned_to_its_page_or_is_left_out() {
    // Firmware put a 256-byte BAR off a page boundary; as device memory it
    // would be a page, which that base is not aligned to.
    let small = SimFunction::new(0x1234, 0x11e8, 0x00ff)
        .bar(
            0,
            SimBar::Mem32 {
                size: 256,
                prefetchable: false,
            },
        )
        .at(0, 0xc000_0100)
        .command(COMMAND_MEMORY);
    let mut space = SimSpace::bridge().with(EDU, small);
    let quiet = Mode::Keep {
        known: &[],
        size_unknown: true,
    };
    let found = scan(&mut space, 256, quiet, &ram()).unwrap();
    assert!(memory_frames(&found.devices).is_empty(), "{found:?}");
    assert!(
        found.notes.iter().any(|n| n
            == "00:01.0 bar0 at 0xc0000100+4K is not aligned to its size or ends past 2^52: left out"),
        "{:?}",
        found.notes
    );
}
