//! The state encoded in `v1_2.bin`, defined once: `examples/make-golden.rs`
//! encodes it and `tests/golden.rs` compares the committed blob with it.
//!
//! It is the v1.1 golden state with everything v1.2 adds filled in: five
//! PCI devices (one without a BAR, one on bus 1, one with a 64-bit
//! prefetchable BAR above 4 GiB and a 32-bit one), dom0 with the default
//! access to all their memory, d1 a driver domain granted one BAR and
//! mapping it in its hole, d3 with its hole at 16 MiB and its page tables
//! above 4 GiB.
//!
//! Frozen with the blob: never edit this file (see `README.md` here).

use handover_abi::body::v1_2::{Domain, DomainFlags, HandoverState, PciBar, PciDevice, MIN_HOLE};
use handover_abi::{AbiVersion, BuildId, Producer, RunKind};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

#[path = "state_v1_1.rs"]
#[allow(
    dead_code,
    reason = "only the v1.1 state is used here, not its version or producer"
)]
pub mod v1_1;

/// The version of the blob.
pub const VERSION: AbiVersion = AbiVersion::new(1, 2);

/// Who wrote the blob.
pub fn producer() -> Producer {
    Producer {
        build_id: BuildId(*b"hvlu-golden-v1.2"),
        abi: VERSION,
    }
}

fn bar(index: u8, base: u64, size: u64, flags: u32) -> PciBar {
    PciBar {
        index,
        base,
        size,
        flags,
    }
}

/// The devices whose memory is exactly the MMIO ranges of the v1.0 and v1.1
/// golden states' dom0 (a 64 KiB and a 4 KiB BAR): on a machine with them,
/// those states' device access is the default.
pub fn older_devices() -> Vec<PciDevice> {
    vec![
        PciDevice {
            bdf: 2 << 3,
            vendor: 0x1af4,
            device: 0x1041,
            class: 0x02_0000,
            bars: vec![bar(1, 0xfebf_0000, 0x1_0000, 0)],
        },
        PciDevice {
            bdf: 0x1f << 3 | 3,
            vendor: 0x8086,
            device: 0x2930,
            class: 0x0c_0500,
            bars: vec![bar(0, 0xfed0_0000, 0x1000, 0)],
        },
    ]
}

/// `state` (of the v1.0 or v1.1 golden blob) on a machine with
/// [`older_devices`], every privileged domain's access the default there —
/// what `new_hv::devices::adopt` makes of such a state on such a machine.
/// The MMIO ranges stay what they were; dom0 maps them in its hole.
pub fn on_older_devices(mut state: HandoverState) -> HandoverState {
    state.devices = older_devices();
    for d in &mut state.domains {
        if d.flags.contains(DomainFlags::PRIVILEGED) {
            d.set_default_access(&state.devices);
        }
    }
    state
}

/// The machine's devices.
pub fn devices() -> Vec<PciDevice> {
    let mut devices = older_devices();
    // The second BAR of 00:02.0: 64-bit, prefetchable, at 512 GiB.
    devices[0].bars.push(bar(
        4,
        0x80_0000_0000,
        0x10_0000,
        PciBar::MEM64 | PciBar::PREFETCHABLE,
    ));
    devices.insert(
        0,
        PciDevice {
            bdf: 0,
            vendor: 0x8086,
            device: 0x29c0,
            class: 0x06_0000,
            bars: vec![],
        },
    );
    devices.insert(
        1,
        PciDevice {
            bdf: 1 << 3,
            vendor: 0x1234,
            device: 0x11e8,
            class: 0x00_ff00,
            bars: vec![bar(0, 0xfea0_0000, 0x10_0000, 0)],
        },
    );
    devices.push(PciDevice {
        bdf: 1 << 8,
        vendor: 0x1b36,
        device: 0x0010,
        class: 0x01_0802,
        bars: vec![bar(2, 0xfe00_0000, 0x80_0000, PciBar::PREFETCHABLE)],
    });
    devices
}

/// The state of the blob.
pub fn state() -> HandoverState {
    let old = HandoverState::from(v1_1::state());
    let devices = devices();
    let edu = MfnRange::new(Mfn(0xfea00), 0x100);
    let domains = old
        .domains
        .into_iter()
        .map(|d| match d.id.0 {
            // All the device memory, the part below 4 GiB mapped in the
            // hole (the default of a privileged domain).
            0 => Domain {
                mmio: vec![
                    MfnRange::new(Mfn(0xfe000), 0x800),
                    edu,
                    MfnRange::new(Mfn(0xfebf0), 0x10),
                    MfnRange::new(Mfn(0xfed00), 1),
                    MfnRange::new(Mfn(0x800_0000), 0x100),
                ],
                identity: vec![
                    MfnRange::new(Mfn(0xfe000), 0x800),
                    edu,
                    MfnRange::new(Mfn(0xfebf0), 0x10),
                    MfnRange::new(Mfn(0xfed00), 1),
                ],
                ..d
            },
            1 => Domain {
                mmio: vec![edu],
                identity: vec![edu],
                ..d
            },
            _ => {
                assert_eq!(d.id, DomId(3));
                // The page tables above 4 GiB, past a hole at 16 MiB.
                let runs = d
                    .runs
                    .into_iter()
                    .map(|mut r| {
                        if r.kind != RunKind::Data {
                            r.first_gpfn = Gpfn(r.first_gpfn.0 - 0x400 + 0x10_0000);
                        }
                        r
                    })
                    .collect();
                Domain {
                    max_frames: 0x1800,
                    runs,
                    hole: MIN_HOLE,
                    ..d
                }
            }
        })
        .collect();
    HandoverState {
        domains,
        devices,
        ..old
    }
}
