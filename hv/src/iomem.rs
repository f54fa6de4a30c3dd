//! A domain's I/O memory permission (Xen's `iomem_caps`): the device frames
//! its L1 entries may map (`frame_ownership`'s rule 7), kept as sorted,
//! disjoint frame ranges in `Domain::mmio` and carried by the handover
//! state.
//!
//! What may be granted is device memory: a range inside one memory BAR the
//! hypervisor recorded at boot ([`crate::pci::bar_holding`]), never RAM.
//! dom0 holds all device memory from its creation (the handover state's
//! default, `handover_abi::default_mmio`); `domctl
//! iomem_permit` grants and revokes ranges of the other domains
//! ([`grant`], [`revoke`]); the hypervisor refuses a revoke while the
//! domain still maps a frame of it (the bare-metal handler scans the
//! domain's L1 tables first), so a domain's ranges never shrink under a
//! mapping (Invariant 15).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hvlu_types::{Mfn, MfnRange};

use crate::pci::{self, Device};

/// Why `range` cannot be granted: it is not device memory. `None` when it
/// is: all inside one memory BAR of `devices`, and no frame of it RAM
/// (`ram`, sorted).
pub fn not_device_memory(devices: &[Device], ram: &[MfnRange], range: MfnRange) -> Option<String> {
    let what = range_text(range);
    if let Some(r) = ram.iter().find(|r| r.overlaps(range)) {
        let first = Mfn(range.start.0.max(r.start.0));
        return Some(format!(
            "{what} holds RAM (mfn {:#x}): RAM is never device memory",
            first.0
        ));
    }
    match pci::bar_holding(devices, range) {
        Some(_) => None,
        None if devices.iter().all(|d| d.bars.iter().all(|b| !b.is_memory())) => Some(format!(
            "{what} is not device memory: this machine has no memory BAR"
        )),
        None => Some(format!(
            "{what} is not device memory: it is not all inside one memory BAR (`devices` lists them)"
        )),
    }
}

/// `mfns [start, end)`, the way refusals name a range.
pub fn range_text(range: MfnRange) -> String {
    format!("mfns [{:#x}, {:#x})", range.start.0, range.end())
}

/// Adds `range` to `ranges` (sorted, disjoint), merging what it overlaps or
/// touches: they stay sorted and disjoint.
pub fn grant(ranges: &mut Vec<MfnRange>, range: MfnRange) {
    if range.is_empty() {
        return;
    }
    let (mut start, mut end) = (range.start.0, range.end());
    ranges.retain(|r| {
        let meets = r.start.0 <= end && start <= r.end();
        if meets {
            start = start.min(r.start.0);
            end = end.max(r.end());
        }
        !meets
    });
    let at = ranges.partition_point(|r| r.start.0 < start);
    ranges.insert(at, MfnRange::new(Mfn(start), end - start));
}

/// Takes `range` out of `ranges` (sorted, disjoint), splitting a range it
/// cuts through; returns how many frames of it were held.
pub fn revoke(ranges: &mut Vec<MfnRange>, range: MfnRange) -> u64 {
    let mut held = 0;
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for r in ranges.drain(..) {
        if !r.overlaps(range) {
            out.push(r);
            continue;
        }
        let (cut_start, cut_end) = (r.start.0.max(range.start.0), r.end().min(range.end()));
        held += cut_end - cut_start;
        if r.start.0 < cut_start {
            out.push(MfnRange::new(r.start, cut_start - r.start.0));
        }
        if cut_end < r.end() {
            out.push(MfnRange::new(Mfn(cut_end), r.end() - cut_end));
        }
    }
    *ranges = out;
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{Bar, BarKind, Bdf};
    use alloc::vec;

    fn r(start: u64, count: u64) -> MfnRange {
        MfnRange::new(Mfn(start), count)
    }

    fn edu() -> Vec<Device> {
        vec![Device {
            bdf: Bdf::new(0, 1, 0),
            vendor: 0x1234,
            device: 0x11e8,
            class: 0x00ff,
            header: 0,
            bars: vec![
                Bar {
                    index: 0,
                    kind: BarKind::Memory32,
                    prefetchable: false,
                    base: 0xc000_0000,
                    size: 1 << 20,
                },
                Bar {
                    index: 1,
                    kind: BarKind::Io,
                    prefetchable: false,
                    base: 0xc000,
                    size: 32,
                },
            ],
        }]
    }

    #[test]
    fn device_memory_is_inside_one_memory_bar_and_never_ram() {
        let ram = [r(0, 0x20000)];
        let d = edu();
        assert_eq!(not_device_memory(&d, &ram, r(0xc0000, 256)), None);
        assert_eq!(not_device_memory(&d, &ram, r(0xc0010, 1)), None);
        assert_eq!(
            not_device_memory(&d, &ram, r(0xc00ff, 2)).unwrap(),
            "mfns [0xc00ff, 0xc0101) is not device memory: it is not all inside one memory BAR \
             (`devices` lists them)"
        );
        assert_eq!(
            not_device_memory(&d, &ram, r(0x1000, 1)).unwrap(),
            "mfns [0x1000, 0x1001) holds RAM (mfn 0x1000): RAM is never device memory"
        );
        // An I/O BAR is not memory: port 0xc000 is no frame.
        assert!(not_device_memory(&d, &ram, r(0xc, 1)).is_some());
        assert_eq!(
            not_device_memory(&[], &ram, r(0xc0000, 1)).unwrap(),
            "mfns [0xc0000, 0xc0001) is not device memory: this machine has no memory BAR"
        );
    }

    /// A RAM frame is refused even where a (faulty) BAR claims it.
    #[test]
    fn ram_wins_over_a_bar() {
        let mut d = edu();
        d[0].bars[0].base = 0x10_0000;
        let ram = [r(0, 0x20000)];
        assert!(not_device_memory(&d, &ram, r(0x100, 1))
            .unwrap()
            .contains("RAM is never device memory"));
    }

    #[test]
    fn grants_merge_and_stay_sorted() {
        let mut v = Vec::new();
        grant(&mut v, r(20, 5));
        grant(&mut v, r(5, 5));
        grant(&mut v, r(40, 1));
        assert_eq!(v, vec![r(5, 5), r(20, 5), r(40, 1)]);
        // Touching merges; overlapping merges; one spanning several too.
        grant(&mut v, r(10, 2));
        assert_eq!(v, vec![r(5, 7), r(20, 5), r(40, 1)]);
        grant(&mut v, r(11, 30));
        assert_eq!(v, vec![r(5, 36)]);
        grant(&mut v, r(0, 0));
        assert_eq!(v, vec![r(5, 36)]);
    }

    #[test]
    fn revokes_cut_and_count_what_was_held() {
        let mut v = vec![r(0, 10), r(20, 10)];
        assert_eq!(revoke(&mut v, r(3, 2)), 2);
        assert_eq!(v, vec![r(0, 3), r(5, 5), r(20, 10)]);
        assert_eq!(revoke(&mut v, r(8, 14)), 4);
        assert_eq!(v, vec![r(0, 3), r(5, 3), r(22, 8)]);
        assert_eq!(revoke(&mut v, r(100, 5)), 0);
        assert_eq!(revoke(&mut v, r(0, 100)), 14);
        assert!(v.is_empty());
    }
}
