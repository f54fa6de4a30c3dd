//! One test per structural invariant: each changes one thing in a valid
//! state, encodes it (with correct checksums), and expects `decode` to refuse
//! it with exactly that `StateError` variant, naming the domain, run, pin,
//! vCPU or range.

mod common;

use common::{invalid, sample};
use handover_abi::body::v1_0::{DomainFlags, PinnedTable, RamRange, RamType, VcpuFlags};
use handover_abi::body::v1_2::{Bdf, PciBar, HOLE_END};
use handover_abi::{decode, BarRef, RunKind, RunRef, StateError};
use hvlu_types::hvm::efer;
use hvlu_types::{DomId, Gpfn, HvmContextError, Mfn, MfnRange, MFN_LIMIT};

const DOM0: usize = 0;
const DOMU1: usize = 1; // id 1
const DOMU2: usize = 2; // id 3, its hole at 16 MiB, its tables above 4 GiB
const HVM: usize = 3; // id 4, HVM, log-dirty on: runs data, data, P2m, P2m, LogDirty

// The sample's devices, by index in its list.
const EDU: usize = 1; // 00:01.0, BAR 0: 1 MiB at 0xfea00000
const NET: usize = 2; // 00:02.0, BAR 1: 64 KiB; BAR 4: 64-bit, 1 MiB at 512 GiB
const SMBUS: usize = 3; // 00:1f.3, BAR 0: 4 KiB at 0xfed00000
const NVME: usize = 4; // 01:00.0, BAR 2: 8 MiB at 0xfe000000

fn bar_ref(bdf: u16, index: u8) -> BarRef {
    BarRef {
        device: Bdf(bdf),
        index,
    }
}

fn run_ref(domain: u16, run: usize) -> RunRef {
    RunRef {
        domain: DomId(domain),
        run,
    }
}

#[test]
fn sample_is_valid() {
    let state = sample();
    assert_eq!(state.validate(), Ok(()));
    assert!(decode(&common::encode_vec(&state)).is_ok());
}

#[test]
fn domain_order_does_not_matter() {
    let mut state = sample();
    state.domains.reverse();
    assert_eq!(state.validate(), Ok(()));
}

#[test]
fn no_domains_is_valid() {
    let mut state = sample();
    state.domains.clear();
    assert_eq!(state.validate(), Ok(()));
}

#[test]
fn empty_ram_map_entry() {
    let mut s = sample();
    s.machine.ram_map[1].size = 0;
    assert_eq!(invalid(&s), StateError::RamMapEntryEmpty { entry: 1 });
}

#[test]
fn ram_map_entry_wrapping_around() {
    let mut s = sample();
    s.machine.ram_map.push(RamRange {
        base: u64::MAX - 0xfff,
        size: 0x2000,
        kind: RamType::Reserved,
    });
    assert_eq!(invalid(&s), StateError::RamMapEntryWraps { entry: 8 });
}

#[test]
fn ram_map_out_of_order() {
    let mut s = sample();
    s.machine.ram_map.swap(0, 1);
    assert_eq!(invalid(&s), StateError::RamMapOutOfOrder { entry: 1 });
}

#[test]
fn ram_map_entries_overlapping() {
    let mut s = sample();
    s.machine.ram_map[1].base -= 0x400;
    assert_eq!(invalid(&s), StateError::RamMapOutOfOrder { entry: 1 });
}

#[test]
fn region_not_page_aligned() {
    let mut s = sample();
    s.machine.region.size += 0x800;
    assert_eq!(
        invalid(&s),
        StateError::RegionNotAligned {
            base: 0x0200_0000,
            size: 0x0100_0800
        }
    );
}

#[test]
fn region_outside_usable_ram() {
    let mut s = sample();
    s.machine.region.base = 0x3ff0_0000; // ACPI tables
    s.machine.region.size = 0x10_0000;
    assert_eq!(
        invalid(&s),
        StateError::RegionOutsideRam {
            base: 0x3ff0_0000,
            size: 0x10_0000
        }
    );
}

#[test]
fn empty_image_range() {
    let mut s = sample();
    s.machine.region.image.count = 0;
    assert_eq!(invalid(&s), StateError::ImageEmpty);
}

#[test]
fn image_outside_region() {
    let mut s = sample();
    s.machine.region.image = MfnRange::new(Mfn(0x2f00), 0x300);
    assert_eq!(
        invalid(&s),
        StateError::ImageOutsideRegion {
            image: MfnRange::new(Mfn(0x2f00), 0x300)
        }
    );
}

#[test]
fn empty_state_range() {
    let mut s = sample();
    s.machine.region.state.count = 0;
    assert_eq!(invalid(&s), StateError::StateEmpty);
}

#[test]
fn state_outside_region() {
    let mut s = sample();
    s.machine.region.state.start = Mfn(0x1000);
    assert_eq!(
        invalid(&s),
        StateError::StateOutsideRegion {
            state: MfnRange::new(Mfn(0x1000), 0x10)
        }
    );
}

#[test]
fn image_overlapping_state() {
    let mut s = sample();
    s.machine.region.state.start = Mfn(0x2aff);
    assert_eq!(
        invalid(&s),
        StateError::ImageOverlapsState {
            image: MfnRange::new(Mfn(0x2800), 0x300),
            state: MfnRange::new(Mfn(0x2aff), 0x10)
        }
    );
}

#[test]
fn zero_tsc_frequency() {
    let mut s = sample();
    s.globals.time.tsc_khz = 0;
    assert_eq!(invalid(&s), StateError::ZeroTscFrequency);
}

#[test]
fn device_class_code_wider_than_24_bits() {
    let mut s = sample();
    s.devices[EDU].class = 0x100_ff00;
    assert_eq!(
        invalid(&s),
        StateError::DeviceClassTooWide {
            device: Bdf(0x08),
            class: 0x100_ff00
        }
    );
}

#[test]
fn bar_past_the_last_register() {
    let mut s = sample();
    s.devices[EDU].bars[0].index = 6;
    assert_eq!(
        invalid(&s),
        StateError::BadBarIndex {
            bar: bar_ref(0x08, 6),
            index: 6,
            bits: 32
        }
    );
    // A 64-bit BAR takes two registers: it cannot be the last.
    let mut s = sample();
    s.devices[NET].bars[1].index = 5;
    assert_eq!(
        invalid(&s),
        StateError::BadBarIndex {
            bar: bar_ref(0x10, 5),
            index: 5,
            bits: 64
        }
    );
}

#[test]
fn unknown_bar_flag_bits() {
    let mut s = sample();
    s.devices[EDU].bars[0].flags = 0x4;
    assert_eq!(
        invalid(&s),
        StateError::BadBarFlags {
            bar: bar_ref(0x08, 0),
            bits: 0x4
        }
    );
}

#[test]
fn bar_size_not_a_power_of_two_of_a_page_or_more() {
    for size in [0x3000, 0x800, 0] {
        let mut s = sample();
        s.devices[EDU].bars[0].size = size;
        assert_eq!(
            invalid(&s),
            StateError::BadBarSize {
                bar: bar_ref(0x08, 0),
                size
            }
        );
    }
}

#[test]
fn bar_not_aligned_to_its_size() {
    let mut s = sample();
    s.devices[EDU].bars[0].base = 0xfea8_0000;
    assert_eq!(
        invalid(&s),
        StateError::BarNotAligned {
            bar: bar_ref(0x08, 0),
            base: 0xfea8_0000,
            size: 0x10_0000
        }
    );
}

#[test]
fn bar_beyond_physical_addresses() {
    for (base, size) in [(1 << 52, 0x10_0000), (1 << 63, 1 << 63)] {
        let mut s = sample();
        s.devices[NET].bars[1].base = base;
        s.devices[NET].bars[1].size = size;
        assert_eq!(
            invalid(&s),
            StateError::BarBeyondPhysical {
                bar: bar_ref(0x10, 4),
                base,
                size
            }
        );
    }
    // Up to the last byte below 2^52 is fine (as device memory goes).
    let mut s = sample();
    s.devices[NET].bars[1].base = (1 << 52) - 0x10_0000;
    s.domains[DOM0].mmio[4].start = Mfn((1 << 40) - 0x100);
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn bar_overlapping_usable_ram() {
    let mut s = sample();
    s.devices[EDU].bars[0].base = 0x3fe0_0000;
    assert_eq!(
        invalid(&s),
        StateError::BarOverlapsRam {
            bar: bar_ref(0x08, 0),
            base: 0x3fe0_0000,
            size: 0x10_0000
        }
    );
}

#[test]
fn bar_register_taken_twice() {
    // 00:02.0's BAR 4 is 64 bits: it takes register 5 too.
    let mut s = sample();
    s.devices[NET].bars.push(PciBar {
        index: 5,
        base: 0xfeb0_0000,
        size: 0x1000,
        flags: 0,
    });
    assert_eq!(
        invalid(&s),
        StateError::BarRegisterTaken {
            bar: bar_ref(0x10, 5)
        }
    );
}

#[test]
fn duplicate_device() {
    let mut s = sample();
    s.devices[NVME].bdf = 0x08;
    assert_eq!(
        invalid(&s),
        StateError::DuplicateDevice { device: Bdf(0x08) }
    );
}

#[test]
fn bars_overlapping() {
    let mut s = sample();
    s.devices[SMBUS].bars[0].base = 0xfea0_1000;
    assert_eq!(
        invalid(&s),
        StateError::BarsOverlap {
            first: bar_ref(0x08, 0),
            second: bar_ref(0xfb, 0)
        }
    );
}

#[test]
fn the_devices_are_checked_after_the_records_and_before_the_domain_ids() {
    let mut s = sample();
    s.devices[EDU].bars[0].flags = 0x8;
    s.domains[DOMU2].id = DomId(1);
    assert!(matches!(invalid(&s), StateError::BadBarFlags { .. }));
    s.globals.cmdline = "x".repeat(1025);
    assert_eq!(invalid(&s), StateError::CmdlineTooLong { len: 1025 });
}

#[test]
fn duplicate_domain_id() {
    let mut s = sample();
    s.domains[DOMU2].id = DomId(1);
    assert_eq!(
        invalid(&s),
        StateError::DuplicateDomain { domain: DomId(1) }
    );
}

#[test]
fn next_domid_not_above_every_domain() {
    let mut s = sample();
    s.globals.next_domid = DomId(3);
    assert_eq!(
        invalid(&s),
        StateError::NextDomidTooLow {
            next: DomId(3),
            domain: DomId(4)
        }
    );
}

#[test]
fn command_line_too_long() {
    let mut s = sample();
    s.globals.cmdline = "x".repeat(1025);
    assert_eq!(invalid(&s), StateError::CmdlineTooLong { len: 1025 });
    s.globals.cmdline.pop();
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn too_many_retired_domains() {
    let mut s = sample();
    let template = s.retired[0].clone();
    s.retired = (0..257)
        .map(|i| handover_abi::RetiredDomain {
            id: DomId(100 + i),
            ..template.clone()
        })
        .collect();
    assert_eq!(invalid(&s), StateError::TooManyRetired { count: 257 });
    s.retired.pop();
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn retired_name_too_long() {
    let mut s = sample();
    s.retired[1].name = "n".repeat(33);
    assert_eq!(
        invalid(&s),
        StateError::RetiredNameTooLong { index: 1, len: 33 }
    );
}

#[test]
fn duplicate_retired_id() {
    let mut s = sample();
    s.retired[1].id = s.retired[0].id;
    assert_eq!(
        invalid(&s),
        StateError::DuplicateRetired { domain: DomId(2) }
    );
}

#[test]
fn retired_id_of_a_live_domain() {
    let mut s = sample();
    s.retired[1].id = DomId(3);
    assert_eq!(
        invalid(&s),
        StateError::RetiredIsLive {
            index: 1,
            domain: DomId(3)
        }
    );
}

#[test]
fn retired_ids_at_or_above_next_domid_are_allowed() {
    // The golden v1.1 state has 0xfffe with next domid 4; the hypervisor's
    // fold of its oldest records is named `DomId::INVALID`.
    let mut s = sample();
    assert!(s.retired.iter().any(|r| r.id >= s.globals.next_domid));
    s.retired[0].id = s.globals.next_domid;
    s.retired[1].id = DomId::INVALID;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn the_records_are_checked_before_the_domain_ids() {
    // Two faults: a command line too long and a duplicate domain id. The
    // records come first (docs/abi.md §3).
    let mut s = sample();
    s.globals.cmdline = "x".repeat(1025);
    s.domains[DOMU2].id = DomId(1);
    assert_eq!(invalid(&s), StateError::CmdlineTooLong { len: 1025 });
}

#[test]
fn the_retired_ids_are_checked_after_the_domain_ids_and_before_the_domains() {
    let mut s = sample();
    s.retired[1].id = DomId(3);
    s.domains[DOMU1].flags = DomainFlags(0);
    assert!(matches!(invalid(&s), StateError::RetiredIsLive { .. }));
    s.globals.next_domid = DomId(3);
    assert!(matches!(invalid(&s), StateError::NextDomidTooLow { .. }));
}

#[test]
fn unknown_domain_flag_bits() {
    let mut s = sample();
    s.domains[DOMU1].flags = DomainFlags(DomainFlags::PV.0 | 0x100);
    assert_eq!(
        invalid(&s),
        StateError::BadDomainFlags {
            domain: DomId(1),
            bits: 0x100
        }
    );
}

#[test]
fn domain_not_pv() {
    let mut s = sample();
    s.domains[DOMU1].flags = DomainFlags(0);
    assert_eq!(invalid(&s), StateError::NotPv { domain: DomId(1) });
}

#[test]
fn domain_name_too_long() {
    let mut s = sample();
    s.domains[DOMU1].name = "x".repeat(33);
    assert_eq!(
        invalid(&s),
        StateError::NameTooLong {
            domain: DomId(1),
            len: 33
        }
    );
    s.domains[DOMU1].name = "é".repeat(16); // 32 bytes: the limit is in bytes
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn hole_not_2_mib_aligned_between_16_mib_and_4_gib() {
    for hole in [0x1001, 0x800, HOLE_END.0] {
        let mut s = sample();
        s.domains[DOMU2].hole = Gpfn(hole);
        assert_eq!(
            invalid(&s),
            StateError::BadHole {
                domain: DomId(3),
                hole: Gpfn(hole)
            }
        );
    }
}

#[test]
fn the_hole_is_checked_before_the_runs() {
    let mut s = sample();
    s.domains[DOMU1].runs[1].count = 0;
    s.domains[DOMU1].hole = Gpfn(0);
    assert!(matches!(invalid(&s), StateError::BadHole { .. }));
}

#[test]
fn empty_run() {
    let mut s = sample();
    s.domains[DOMU1].runs[1].count = 0;
    assert_eq!(invalid(&s), StateError::EmptyRun { run: run_ref(1, 1) });
}

#[test]
fn run_wrapping_around() {
    let mut s = sample();
    s.domains[DOMU1].runs[0].first_gpfn = Gpfn(u64::MAX - 10);
    assert_eq!(invalid(&s), StateError::RunWraps { run: run_ref(1, 0) });
}

#[test]
fn runs_not_bottom_up() {
    let mut s = sample();
    s.domains[DOMU2].runs.swap(0, 1);
    assert_eq!(
        invalid(&s),
        StateError::RunsOutOfOrder {
            run: run_ref(3, 1),
            kind: RunKind::Data,
            previous: RunKind::L1
        }
    );
}

#[test]
fn run_outside_usable_ram() {
    let mut s = sample();
    s.domains[DOMU2].runs[0].first_mfn = Mfn(0x3ff00); // ACPI tables
    assert_eq!(
        invalid(&s),
        StateError::RunOutsideRam {
            run: run_ref(3, 0),
            mfns: MfnRange::new(Mfn(0x3ff00), 0x400)
        }
    );
}

#[test]
fn run_on_a_partly_usable_frame() {
    // Usable RAM ends at 0x9fc00: frame 0x9f is only partly RAM.
    let mut s = sample();
    s.domains[DOMU2].runs[1].first_mfn = Mfn(0x9e);
    assert_eq!(
        invalid(&s),
        StateError::RunOutsideRam {
            run: run_ref(3, 1),
            mfns: MfnRange::new(Mfn(0x9e), 2)
        }
    );
}

#[test]
fn run_inside_the_live_update_region() {
    let mut s = sample();
    s.domains[DOMU1].runs[1].first_mfn = Mfn(0x2fff);
    assert_eq!(
        invalid(&s),
        StateError::RunInRegion {
            run: run_ref(1, 1),
            mfns: MfnRange::new(Mfn(0x2fff), 0x100)
        }
    );
}

#[test]
fn runs_overlapping_within_a_domain() {
    let mut s = sample();
    s.domains[DOMU1].runs[1].first_mfn = Mfn(0x6ff0);
    assert_eq!(
        invalid(&s),
        StateError::RunsOverlap {
            first: run_ref(1, 0),
            second: run_ref(1, 1)
        }
    );
}

#[test]
fn runs_overlapping_across_domains() {
    let mut s = sample();
    s.domains[DOMU2].runs[1].first_mfn = Mfn(0x4801); // in dom0's first L1 run
    assert_eq!(
        invalid(&s),
        StateError::RunsOverlap {
            first: run_ref(0, 3),
            second: run_ref(3, 1)
        }
    );
}

#[test]
fn guest_frames_overlapping_within_a_domain() {
    let mut s = sample();
    s.domains[DOMU1].runs[1].first_gpfn = Gpfn(0xff0);
    assert_eq!(
        invalid(&s),
        StateError::GuestFramesOverlap {
            domain: DomId(1),
            run: 0,
            other: 1
        }
    );
}

#[test]
fn more_frames_than_the_memory_limit() {
    let mut s = sample();
    s.domains[DOMU2].max_frames = 0x404;
    assert_eq!(
        invalid(&s),
        StateError::TooManyFrames {
            domain: DomId(3),
            frames: 0x405,
            max: 0x404
        }
    );
}

#[test]
fn a_guest_frame_beyond_the_memory_limit() {
    let mut s = sample();
    // The L4 run of domain 1 (limit 0x2000) moved to the first gpfn past it.
    s.domains[DOMU1].runs[7].first_gpfn = Gpfn(0x2000);
    assert_eq!(
        invalid(&s),
        StateError::GpfnBeyondLimit {
            domain: DomId(1),
            run: 7,
            gpfn: Gpfn(0x2000),
            max: 0x2000
        }
    );
    // The last gpfn below the limit is fine.
    s.domains[DOMU1].runs[7].first_gpfn = Gpfn(0x1fff);
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn a_guest_frame_past_the_ram_above_the_hole() {
    // Domain 3: a hole at 16 MiB and a limit of 0x1800 frames, so RAM
    // below 16 MiB and 0x800 frames from 4 GiB.
    let mut s = sample();
    s.domains[DOMU2].runs[4].first_gpfn = Gpfn(0x10_0800);
    assert_eq!(
        invalid(&s),
        StateError::GpfnBeyondLimit {
            domain: DomId(3),
            run: 4,
            gpfn: Gpfn(0x10_0800),
            max: 0x1800
        }
    );
    s.domains[DOMU2].runs[4].first_gpfn = Gpfn(0x10_07ff);
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn a_guest_frame_in_the_hole() {
    let mut s = sample();
    s.domains[DOMU1].runs[7].first_gpfn = Gpfn(0xc_0000);
    assert_eq!(
        invalid(&s),
        StateError::GpfnInHole {
            domain: DomId(1),
            run: 7,
            gpfn: Gpfn(0xc_0000),
            hole: Gpfn(0xc_0000)
        }
    );
    // A run across the hole's start: its first frame in the hole is named.
    let mut s = sample();
    s.domains[DOMU2].runs[0].first_gpfn = Gpfn(0xe00);
    assert_eq!(
        invalid(&s),
        StateError::GpfnInHole {
            domain: DomId(3),
            run: 0,
            gpfn: Gpfn(0x1000),
            hole: Gpfn(0x1000)
        }
    );
}

#[test]
fn start_info_in_a_page_table_run() {
    let mut s = sample();
    s.domains[DOMU1].start_info = Gpfn(0x1100); // first L1 frame
    assert_eq!(
        invalid(&s),
        StateError::StartInfoNotInData {
            domain: DomId(1),
            gpfn: Gpfn(0x1100)
        }
    );
}

#[test]
fn pinned_table_of_level_data() {
    let mut s = sample();
    s.domains[DOM0].pinned.push(PinnedTable {
        mfn: Mfn(0x4000),
        level: RunKind::Data,
    });
    assert_eq!(
        invalid(&s),
        StateError::PinNotPageTable {
            domain: DomId(0),
            pin: 3
        }
    );
}

#[test]
fn pinned_table_not_in_a_run_of_its_level() {
    let mut s = sample();
    s.domains[DOM0].pinned[2].level = RunKind::L2; // 0x4b10 is an L3 frame
    assert_eq!(
        invalid(&s),
        StateError::PinNotInRun {
            domain: DomId(0),
            pin: 2,
            mfn: Mfn(0x4b10),
            level: RunKind::L2
        }
    );
}

#[test]
fn pinned_root_not_among_l4_runs() {
    let mut s = sample();
    s.domains[DOMU1].pinned[0].mfn = Mfn(0x7030); // an L3 frame
    assert_eq!(
        invalid(&s),
        StateError::RootNotInL4Run {
            domain: DomId(1),
            pin: 0,
            mfn: Mfn(0x7030)
        }
    );
}

#[test]
fn pinned_root_of_another_domain() {
    let mut s = sample();
    s.domains[DOMU1].pinned[0].mfn = Mfn(0x9004); // domu-2's L4
    assert_eq!(
        invalid(&s),
        StateError::RootNotInL4Run {
            domain: DomId(1),
            pin: 0,
            mfn: Mfn(0x9004)
        }
    );
}

#[test]
fn table_pinned_twice() {
    let mut s = sample();
    s.domains[DOM0].pinned.push(PinnedTable {
        mfn: Mfn(0x4c00),
        level: RunKind::L4,
    });
    assert_eq!(
        invalid(&s),
        StateError::DuplicatePin {
            domain: DomId(0),
            mfn: Mfn(0x4c00)
        }
    );
}

#[test]
fn unknown_vcpu_flag_bits() {
    let mut s = sample();
    s.domains[DOM0].vcpus[1].flags = VcpuFlags(VcpuFlags::ONLINE.0 | 0x80);
    assert_eq!(
        invalid(&s),
        StateError::BadVcpuFlags {
            domain: DomId(0),
            vcpu: 1,
            bits: 0x80
        }
    );
}

#[test]
fn vcpu_cr3_not_among_l4_runs() {
    let mut s = sample();
    s.domains[DOM0].vcpus[1].cr3 = Mfn(0x4b00);
    assert_eq!(
        invalid(&s),
        StateError::Cr3NotInL4Run {
            domain: DomId(0),
            vcpu: 1,
            cr3: Mfn(0x4b00)
        }
    );
}

#[test]
fn duplicate_vcpu_id() {
    let mut s = sample();
    s.domains[DOM0].vcpus[1].id = 0;
    assert_eq!(
        invalid(&s),
        StateError::DuplicateVcpu {
            domain: DomId(0),
            vcpu: 0
        }
    );
}

#[test]
fn empty_mmio_range() {
    let mut s = sample();
    s.domains[DOM0].mmio[1].count = 0;
    assert_eq!(
        invalid(&s),
        StateError::EmptyMmioRange {
            domain: DomId(0),
            range: 1
        }
    );
}

#[test]
fn mmio_range_beyond_physical_addresses() {
    let mut s = sample();
    s.domains[DOM0].mmio[1] = MfnRange::new(Mfn(MFN_LIMIT - 1), 2);
    assert_eq!(
        invalid(&s),
        StateError::MmioBeyondPhysical {
            domain: DomId(0),
            range: 1,
            mfns: MfnRange::new(Mfn(MFN_LIMIT - 1), 2)
        }
    );
}

#[test]
fn mmio_range_overlapping_ram() {
    // Frame 0x9f is partly usable RAM: it may not be MMIO either.
    let mut s = sample();
    s.domains[DOMU2].mmio.push(MfnRange::new(Mfn(0x9f), 1));
    assert_eq!(
        invalid(&s),
        StateError::MmioOverlapsRam {
            domain: DomId(3),
            range: 0,
            mfns: MfnRange::new(Mfn(0x9f), 1)
        }
    );
}

#[test]
fn mmio_range_outside_the_device_memory() {
    // Between the edu BAR and 00:02.0's: no device's.
    let mut s = sample();
    s.domains[DOMU1].mmio[0] = MfnRange::new(Mfn(0xfeb00), 1);
    s.domains[DOMU1].identity.clear();
    assert_eq!(
        invalid(&s),
        StateError::MmioOutsideDevices {
            domain: DomId(1),
            range: 0,
            mfns: MfnRange::new(Mfn(0xfeb00), 1)
        }
    );
    // A state that lists no device says nothing of device memory.
    s.devices.clear();
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn empty_identity_range() {
    let mut s = sample();
    s.domains[DOM0].identity[2].count = 0;
    assert_eq!(
        invalid(&s),
        StateError::EmptyIdentityRange {
            domain: DomId(0),
            range: 2
        }
    );
}

#[test]
fn identity_ranges_out_of_order() {
    let mut s = sample();
    s.domains[DOM0].identity.swap(0, 1);
    assert_eq!(
        invalid(&s),
        StateError::IdentityOutOfOrder {
            domain: DomId(0),
            range: 1
        }
    );
    // Overlapping ranges are out of order too.
    let mut s = sample();
    let edu = s.domains[DOMU1].identity[0];
    s.domains[DOMU1].identity.push(edu);
    assert_eq!(
        invalid(&s),
        StateError::IdentityOutOfOrder {
            domain: DomId(1),
            range: 1
        }
    );
}

#[test]
fn identity_range_outside_the_hole() {
    // The 64-bit BAR at 512 GiB: dom0 may map it, but it has no guest
    // frame.
    let mut s = sample();
    let high = s.domains[DOM0].mmio[4];
    s.domains[DOM0].identity.push(high);
    assert_eq!(
        invalid(&s),
        StateError::IdentityOutsideHole {
            domain: DomId(0),
            range: 4,
            mfns: high,
            hole: Gpfn(0xc_0000)
        }
    );
    // A hole above the BAR.
    let mut s = sample();
    s.domains[DOMU1].hole = Gpfn(0xfec00);
    assert_eq!(
        invalid(&s),
        StateError::IdentityOutsideHole {
            domain: DomId(1),
            range: 0,
            mfns: MfnRange::new(Mfn(0xfea00), 0x100),
            hole: Gpfn(0xfec00)
        }
    );
}

#[test]
fn identity_range_outside_the_mmio_ranges() {
    let mut s = sample();
    s.domains[DOMU1].identity[0].count += 1;
    assert_eq!(
        invalid(&s),
        StateError::IdentityOutsideMmio {
            domain: DomId(1),
            range: 0,
            mfns: MfnRange::new(Mfn(0xfea00), 0x101)
        }
    );
    // Two MMIO ranges that together hold it are not one.
    let mut s = sample();
    s.domains[DOMU1].mmio = vec![
        MfnRange::new(Mfn(0xfea80), 0x80),
        MfnRange::new(Mfn(0xfea00), 0x80),
    ];
    assert!(matches!(
        invalid(&s),
        StateError::IdentityOutsideMmio { .. }
    ));
    // One that holds it among others, in any order, is enough.
    s.domains[DOMU1]
        .mmio
        .push(MfnRange::new(Mfn(0xfea00), 0x100));
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn runs_of_two_domains_overlapping_are_checked_after_every_domain() {
    // Overlap across domains is the last check: a later domain's own fault
    // is reported first.
    let mut s = sample();
    s.domains[DOMU2].runs[1].first_mfn = Mfn(0x4801); // in dom0's first L1 run
    s.domains[DOMU2].vcpus[0].flags = VcpuFlags(0x80);
    assert!(matches!(invalid(&s), StateError::BadVcpuFlags { .. }));
}

#[test]
fn errors_name_what_is_wrong() {
    let e = StateError::RunsOverlap {
        first: run_ref(0, 3),
        second: run_ref(3, 1),
    };
    assert_eq!(
        e.to_string(),
        "domain 0 run 3 and domain 3 run 1 share machine frames"
    );
    let e = StateError::Cr3NotInL4Run {
        domain: DomId(0),
        vcpu: 1,
        cr3: Mfn(0x4b00),
    };
    assert_eq!(
        e.to_string(),
        "domain 0 vcpu 1: cr3 (mfn 0x4b00) is not among the domain's L4 runs"
    );
    let e = StateError::BarsOverlap {
        first: bar_ref(0x08, 0),
        second: bar_ref(0xfb, 0),
    };
    assert_eq!(
        e.to_string(),
        "device 00:01.0 BAR 0 and device 00:1f.3 BAR 0 overlap"
    );
    let e = StateError::GpfnInHole {
        domain: DomId(3),
        run: 0,
        gpfn: Gpfn(0x1000),
        hole: Gpfn(0x1000),
    };
    assert_eq!(
        e.to_string(),
        "domain 3: run 0 has guest frame gpfn 0x1000 in the domain's PCI hole [gpfn 0x1000, 4 GiB)"
    );
    let e = StateError::BadHole {
        domain: DomId(3),
        hole: Gpfn(0x1001),
    };
    assert_eq!(
        e.to_string(),
        "domain 3: its PCI hole starts at gpfn 0x1001, not a multiple of 0x200 frames from \
         gpfn 0x1000 up to below gpfn 0x100000"
    );
}

// ---- HVM domains (1.3) ----

#[test]
fn hvm_domain_with_the_pv_flag() {
    let mut s = sample();
    s.domains[HVM].flags = DomainFlags::PV;
    assert_eq!(invalid(&s), StateError::HvmWithPvFlag { domain: DomId(4) });
}

#[test]
fn pv_domain_without_the_pv_flag_names_the_kinds() {
    let e = StateError::NotPv { domain: DomId(1) };
    assert_eq!(
        e.to_string(),
        "domain 1: PV flag clear, but the domain has no HVM part (a domain is PV or HVM)"
    );
}

#[test]
fn p2m_run_with_a_guest_frame() {
    let mut s = sample();
    s.domains[HVM].runs[3].first_gpfn = Gpfn(0x900);
    assert_eq!(
        invalid(&s),
        StateError::RunGpfnNotNone {
            run: run_ref(4, 3),
            kind: RunKind::P2m,
            gpfn: 0x900
        }
    );
}

#[test]
fn p2m_or_log_dirty_run_in_a_pv_domain() {
    for kind in [RunKind::P2m, RunKind::LogDirty] {
        let mut s = sample();
        let end = s.domains[DOMU1].runs.len();
        s.domains[DOMU1].runs.push(handover_abi::MemRun {
            first_mfn: Mfn(0xd000),
            count: 1,
            first_gpfn: handover_abi::NO_GPFN,
            kind,
        });
        assert_eq!(
            invalid(&s),
            StateError::HvmRunInPvDomain {
                run: run_ref(1, end),
                kind
            }
        );
    }
}

#[test]
fn guest_page_table_run_in_an_hvm_domain() {
    let mut s = sample();
    s.domains[HVM].runs.insert(
        2,
        handover_abi::MemRun {
            first_mfn: Mfn(0xd000),
            count: 1,
            first_gpfn: Gpfn(0x800),
            kind: RunKind::L1,
        },
    );
    assert_eq!(
        invalid(&s),
        StateError::PvTableRunInHvmDomain {
            run: run_ref(4, 2),
            kind: RunKind::L1
        }
    );
}

#[test]
fn log_dirty_run_before_a_p2m_run() {
    let mut s = sample();
    s.domains[HVM].runs.swap(3, 4);
    assert_eq!(
        invalid(&s),
        StateError::RunsOutOfOrder {
            run: run_ref(4, 4),
            kind: RunKind::P2m,
            previous: RunKind::LogDirty
        }
    );
}

#[test]
fn nested_tables_and_bitmap_do_not_count_against_the_limit() {
    // 0x900 guest frames and 10 more: a limit of 0x900 holds it.
    let mut s = sample();
    let hvm = &mut s.domains[HVM];
    assert_eq!(hvm.guest_frames(), 0x900);
    assert_eq!(hvm.frames(), 0x90a);
    // Keep every run inside the smaller RAM: move the high run down.
    hvm.max_frames = 0x4900;
    hvm.runs[1].first_gpfn = Gpfn(0x10_0000);
    hvm.hvm.as_mut().unwrap().log_dirty = None;
    hvm.runs.pop();
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn hvm_contexts_not_one_per_vcpu() {
    let mut s = sample();
    s.domains[HVM].hvm.as_mut().unwrap().vcpus.pop();
    assert_eq!(
        invalid(&s),
        StateError::HvmVcpuCount {
            domain: DomId(4),
            vcpus: 2,
            contexts: 1
        }
    );
}

#[test]
fn hvm_vcpu_record_not_blank() {
    let mut s = sample();
    s.domains[HVM].vcpus[1].rip = 0x1000;
    let blank_but_cr3 = |s: &mut handover_abi::HandoverState| {
        s.domains[HVM].vcpus[1].rip = 0;
        s.domains[HVM].vcpus[1].cr3 = Mfn(0xc010);
    };
    let expected = StateError::HvmVcpuNotBlank {
        domain: DomId(4),
        vcpu: 1,
        ncr3: Mfn(0xc000),
    };
    assert_eq!(invalid(&s), expected);
    blank_but_cr3(&mut s);
    assert_eq!(invalid(&s), expected);
}

#[test]
fn ncr3_not_in_a_p2m_run() {
    for ncr3 in [Mfn(0xa000), Mfn(0xc020), Mfn(0xd000)] {
        let mut s = sample();
        let hvm = &mut s.domains[HVM];
        hvm.hvm.as_mut().unwrap().ncr3 = ncr3;
        for v in &mut hvm.vcpus {
            v.cr3 = ncr3;
        }
        assert_eq!(
            invalid(&s),
            StateError::Ncr3NotInP2mRun {
                domain: DomId(4),
                ncr3
            }
        );
    }
}

#[test]
fn log_dirty_bitmap_of_the_wrong_size() {
    let mut s = sample();
    s.domains[HVM].max_frames = 0x1_0001;
    assert_eq!(
        invalid(&s),
        StateError::LogDirtyBitmapSize {
            domain: DomId(4),
            bitmap: MfnRange::new(Mfn(0xc020), 2),
            expected: 3,
            max_frames: 0x1_0001
        }
    );
}

#[test]
fn log_dirty_run_outside_the_bitmap() {
    let mut s = sample();
    s.domains[HVM].runs[4] = handover_abi::MemRun {
        first_mfn: Mfn(0xc021),
        count: 2,
        first_gpfn: handover_abi::NO_GPFN,
        kind: RunKind::LogDirty,
    };
    assert_eq!(
        invalid(&s),
        StateError::LogDirtyRunOutsideBitmap {
            run: run_ref(4, 4),
            mfns: MfnRange::new(Mfn(0xc021), 2),
            bitmap: MfnRange::new(Mfn(0xc020), 2)
        }
    );
}

#[test]
fn log_dirty_bitmap_not_all_in_runs() {
    let mut s = sample();
    s.domains[HVM].runs[4].count = 1;
    assert_eq!(
        invalid(&s),
        StateError::LogDirtyBitmapNotInRuns {
            domain: DomId(4),
            bitmap: MfnRange::new(Mfn(0xc020), 2),
            frames: 1
        }
    );
}

#[test]
fn log_dirty_run_while_log_dirty_is_off() {
    let mut s = sample();
    s.domains[HVM].hvm.as_mut().unwrap().log_dirty = None;
    assert_eq!(
        invalid(&s),
        StateError::LogDirtyRunWithoutBitmap { run: run_ref(4, 4) }
    );
}

#[test]
fn hvm_domain_without_log_dirty_is_valid() {
    let mut s = sample();
    s.domains[HVM].hvm.as_mut().unwrap().log_dirty = None;
    s.domains[HVM].runs.pop();
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn hvm_context_vmrun_would_refuse() {
    // vCPU 1 (real mode) with EFER.SVME, which is the hypervisor's.
    let mut s = sample();
    s.domains[HVM].hvm.as_mut().unwrap().vcpus[1].efer = efer::SVME;
    assert_eq!(
        invalid(&s),
        StateError::BadHvmContext {
            domain: DomId(4),
            vcpu: 1,
            error: HvmContextError::EferReserved { efer: efer::SVME }
        }
    );
    // vCPU 0 (long mode) with LMA clear.
    let mut s = sample();
    let ctx = &mut s.domains[HVM].hvm.as_mut().unwrap().vcpus[0];
    ctx.efer &= !efer::LMA;
    let (efer, cr0) = (ctx.efer, ctx.cr0);
    assert_eq!(
        invalid(&s),
        StateError::BadHvmContext {
            domain: DomId(4),
            vcpu: 0,
            error: HvmContextError::LmaMismatch { efer, cr0 }
        }
    );
}

#[test]
fn hvm_contexts_are_checked_with_their_vcpu_records() {
    // vCPU 0's context is bad and vCPU 1's record not blank: vCPU 0 is
    // reported, record and context of one vCPU after the other.
    let mut s = sample();
    s.domains[HVM].hvm.as_mut().unwrap().vcpus[0].cpl = 4;
    s.domains[HVM].vcpus[1].rip = 0x1000;
    assert_eq!(
        invalid(&s),
        StateError::BadHvmContext {
            domain: DomId(4),
            vcpu: 0,
            error: HvmContextError::BadCpl { cpl: 4 }
        }
    );
    // A record that is not blank comes before its own context.
    s.domains[HVM].vcpus[0].rip = 0x1000;
    assert!(matches!(
        invalid(&s),
        StateError::HvmVcpuNotBlank { vcpu: 0, .. }
    ));
}

#[test]
fn hvm_context_errors_name_the_vcpu_and_the_value() {
    let e = StateError::BadHvmContext {
        domain: DomId(4),
        vcpu: 1,
        error: HvmContextError::Cr0NwWithoutCd { cr0: 0x2000_0011 },
    };
    assert_eq!(
        e.to_string(),
        "domain 4 vcpu 1: its HVM context cannot be entered: cr0 0x20000011 has NW set and CD clear"
    );
}
