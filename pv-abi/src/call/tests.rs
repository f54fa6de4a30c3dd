//! The decoder against the hypervisor's rules: every number, both sides of
//! every bound, the reasons the hypervisor gives; then properties over any
//! words.

extern crate std;
use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

#[test]
fn a_create_size_is_decimal_kib_or_refused() {
    assert_eq!(create_size("4096"), Ok(Some(4096)));
    assert_eq!(create_size("0"), Ok(Some(0)));
    // Command-line words, not sizes.
    for word in ["probe", "grow", "-v", "--verbose", "+x", "", "k4"] {
        assert_eq!(create_size(word), Ok(None), "{word}");
    }
    // Meant as a size, and not one: refused, never taken as an argument.
    for word in [
        "-4096",
        "+4096",
        "4k",
        "4K",
        "0x1000",
        "4096.0",
        "4_096",
        "99999999999999999999999",
    ] {
        let e = create_size(word).unwrap_err();
        assert_eq!(e, NotASize(word));
        assert!(
            e.to_string().starts_with(&std::format!(
                "`{word}` is not a memory size: give whole KiB"
            )),
            "{e}"
        );
    }
}
use crate::hypercall::DomainInfo;

const ADDR: u64 = 0x7000_1000;

fn decode(nr: Hypercall, a: [u64; 5]) -> Result<Call, DecodeError> {
    Call::decode(nr as u64, a)
}

fn buf(len: u64) -> GuestBuf {
    GuestBuf { addr: ADDR, len }
}

#[test]
fn unknown_numbers_are_nosys() {
    for nr in [0, 28, 0x100, u64::MAX, 1 << 63] {
        let e = Call::decode(nr, [0; 5]).unwrap_err();
        assert_eq!(e, DecodeError::UnknownCall { nr });
        assert_eq!(e.error(), Error::NoSys);
        assert!(!e.explained());
    }
}

#[test]
fn cut_lengths_stop_at_their_bound() {
    let size = |n: usize| n as u64;
    let cases = [
        (Hypercall::ConsoleWrite, MAX_CONSOLE_IO),
        (Hypercall::ConsoleRead, MAX_CONSOLE_IO),
        (Hypercall::HostlinkRead, MAX_HOSTLINK_READ),
        (Hypercall::HostlinkWrite, MAX_HOSTLINK_WRITE),
        (Hypercall::MmuUpdate, MAX_BATCH),
        (Hypercall::IncreaseReservation, MAX_BATCH),
        (Hypercall::DecreaseReservation, MAX_BATCH),
        (Hypercall::SysInfo, size(size_of::<SysInfo>())),
        (Hypercall::LuStatus, size(size_of::<LuStatus>())),
        (Hypercall::LastError, size(MAX_ERROR_MESSAGE)),
        (Hypercall::MachineMemoryMap, MAX_MEMORY_MAP),
    ];
    assert_eq!(MAX_CONSOLE_IO, 4096);
    assert_eq!(MAX_HOSTLINK_READ, 64 * 1024);
    assert_eq!(MAX_HOSTLINK_WRITE, 4096);
    assert_eq!(MAX_BATCH, 512);
    for (h, max) in cases {
        for (asked, got) in [
            (0, 0),
            (1, 1),
            (max - 1, max - 1),
            (max, max),
            (max + 1, max),
            (u64::MAX, max),
        ] {
            let call = decode(h, [ADDR, asked, 7, 7, 7]).unwrap();
            assert_eq!(call.encode().1, [ADDR, got, 0, 0, 0], "{h:?} of {asked}");
        }
    }
}

#[test]
fn lu_load_takes_a_name_of_at_most_256_bytes() {
    assert_eq!(
        decode(Hypercall::LuLoad, [ADDR, 256, 0, 0, 0]),
        Ok(Call::LuLoad {
            name: buf(256),
            force: false
        })
    );
    assert_eq!(
        decode(Hypercall::LuLoad, [ADDR, 0, 1, 0, 0]),
        Ok(Call::LuLoad {
            name: buf(0),
            force: true
        })
    );
    for arg in [2, u64::MAX] {
        let e = decode(Hypercall::LuLoad, [ADDR, 4, arg, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::LoadForce { arg });
        assert!(e.explained() && e.error() == Error::Invalid);
        assert_eq!(e.to_string(), format!("{arg} is neither 1 (force) nor 0"));
    }
    for len in [257, u64::MAX] {
        let e = decode(Hypercall::LuLoad, [ADDR, len, 0, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::ModuleNameTooLong { len });
        assert_eq!(e.error(), Error::Invalid);
        assert!(e.explained());
    }
    assert_eq!(
        DecodeError::ModuleNameTooLong { len: 257 }.to_string(),
        "a module name of 257 bytes is longer than 256"
    );
}

#[test]
fn lu_load_buffer_takes_an_image_of_any_length() {
    // The hypervisor refuses, with the sizes, what does not fit its
    // live-update region; decoding has no bound of its own to add.
    for len in [0, 1, 16 << 20, u64::MAX] {
        assert_eq!(
            decode(Hypercall::LuLoadBuffer, [ADDR, len, 0, 0, 0]),
            Ok(Call::LuLoadBuffer {
                image: buf(len),
                name: GuestBuf { addr: 0, len: 0 }
            })
        );
    }
}

#[test]
fn lu_load_buffer_takes_a_name_of_at_most_256_bytes() {
    // Any length: the decoder puts no bound on the image (the live-update
    // region does).
    const IMAGE_LEN: u64 = 4096;
    let named = Call::LuLoadBuffer {
        image: buf(IMAGE_LEN),
        name: GuestBuf {
            addr: 0x5000,
            len: 256,
        },
    };
    assert_eq!(
        decode(Hypercall::LuLoadBuffer, [ADDR, IMAGE_LEN, 0x5000, 256, 0]),
        Ok(named)
    );
    assert_eq!(named.encode().1, [ADDR, IMAGE_LEN, 0x5000, 256, 0]);
    for len in [257, u64::MAX] {
        let e = decode(Hypercall::LuLoadBuffer, [ADDR, IMAGE_LEN, 0x5000, len, 0]).unwrap_err();
        assert_eq!(e, DecodeError::ModuleNameTooLong { len });
    }
}

#[test]
fn pin_table_takes_levels_1_to_4() {
    for level in 1..=4 {
        let call = decode(Hypercall::PinTable, [9, level, 0, 0, 0]).unwrap();
        let Call::PinTable { mfn, level: l } = call else {
            panic!("{call:?}")
        };
        assert_eq!((mfn, u64::from(l.number())), (Mfn(9), level));
        assert_eq!(call.encode().1, [9, level, 0, 0, 0]);
    }
    for level in [0, 5, u64::MAX] {
        let e = decode(Hypercall::PinTable, [9, level, 0, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::TableLevel { level });
        assert_eq!(e.error(), Error::Invalid);
        assert!(!e.explained());
    }
}

#[test]
fn frame_calls_take_any_mfn() {
    for mfn in [0, 1, u64::MAX] {
        assert_eq!(
            decode(Hypercall::UnpinTable, [mfn, 5, 5, 5, 5]),
            Ok(Call::UnpinTable { mfn: Mfn(mfn) })
        );
        assert_eq!(
            decode(Hypercall::NewBaseptr, [mfn, 5, 5, 5, 5]),
            Ok(Call::NewBaseptr { mfn: Mfn(mfn) })
        );
    }
}

#[test]
fn set_segment_base_takes_fs_or_gs_and_a_lower_half_base() {
    let end = hvlu_types::canonical::LOWER_HALF_END;
    assert_eq!(
        decode(Hypercall::SetSegmentBase, [0, end - 1, 0, 0, 0]),
        Ok(Call::SetSegmentBase {
            which: Segment::Fs,
            base: end - 1
        })
    );
    assert_eq!(
        decode(Hypercall::SetSegmentBase, [1, 0, 0, 0, 0]),
        Ok(Call::SetSegmentBase {
            which: Segment::Gs,
            base: 0
        })
    );
    for base in [end, hvlu_types::canonical::UPPER_HALF_START, u64::MAX] {
        let e = decode(Hypercall::SetSegmentBase, [0, base, 0, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::SegmentBase { base });
        assert_eq!(e.error(), Error::Invalid);
    }
    for which in [2, u64::MAX] {
        let e = decode(Hypercall::SetSegmentBase, [which, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::Segment { which });
        assert_eq!(e.error(), Error::Invalid);
    }
}

#[test]
fn report_takes_its_five_kinds() {
    for kind in 1..=5 {
        let call = decode(Hypercall::Report, [kind, 42, 0, 0, 0]).unwrap();
        let Call::Report { kind: k, value } = call else {
            panic!("{call:?}")
        };
        assert_eq!((k as u64, value), (kind, 42));
    }
    for kind in [0, 6, u64::MAX] {
        let e = decode(Hypercall::Report, [kind, 42, 0, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::ReportKind { kind });
        assert_eq!(e.error(), Error::Invalid);
    }
}

#[test]
fn shutdown_takes_any_code() {
    for code in [0, 3, u64::MAX] {
        assert_eq!(
            decode(Hypercall::Shutdown, [code, 1, 1, 1, 1]),
            Ok(Call::Shutdown { code })
        );
    }
}

fn domctl(op: u64, a: [u64; 3]) -> Result<Call, DecodeError> {
    decode(Hypercall::Domctl, [op, a[0], a[1], a[2], 0])
}

fn create_with_hole(kib: u64, hole: u64) -> Result<Call, DecodeError> {
    decode(
        Hypercall::Domctl,
        [DomctlOp::Create as u64, ADDR, 4, kib, hole],
    )
}

#[test]
fn domctl_operations_decode_and_unknown_ones_are_nosys() {
    for op in (1..=6).chain([9, 10]) {
        let a = match DomctlOp::from_repr(op).unwrap() {
            DomctlOp::Create => [ADDR, 4, 4096],
            _ => [1, 2, 3],
        };
        let Ok(Call::Domctl(d)) = domctl(op, a) else {
            panic!("op {op}")
        };
        assert_eq!(d.op() as u64, op);
    }
    for op in [0, 11, u64::MAX] {
        let e = domctl(op, [0; 3]).unwrap_err();
        assert_eq!(e, DecodeError::UnknownDomctl { op });
        assert_eq!(e.error(), Error::NoSys);
        assert!(!e.explained());
    }
}

#[test]
fn log_dirty_decodes_its_four_operations_and_explains_any_other() {
    for (word, op) in [
        (0, LogDirtyOp::Enable),
        (1, LogDirtyOp::Peek),
        (2, LogDirtyOp::Clean),
        (3, LogDirtyOp::Off),
    ] {
        let call = decode(
            Hypercall::Domctl,
            [DomctlOp::LogDirty as u64, 3, word, ADDR, MAX_DIRTY_OUT + 5],
        );
        let want = Call::Domctl(Domctl::LogDirty {
            id: DomId(3),
            op,
            out: GuestArray {
                addr: ADDR,
                count: MAX_DIRTY_OUT,
            },
        });
        assert_eq!(call, Ok(want));
        let (nr, args) = want.encode();
        assert_eq!(Call::decode(nr, args), Ok(want));
    }
    let e = domctl(DomctlOp::LogDirty as u64, [3, 4, 0]).unwrap_err();
    assert_eq!(e, DecodeError::LogDirtyOp { arg: 4 });
    assert_eq!(e.error(), Error::Invalid);
    assert!(e.explained());
}

#[test]
fn domain_ids_go_up_to_u16_max() {
    for (op, make) in [
        (
            DomctlOp::Destroy,
            (|id| Domctl::Destroy { id }) as fn(DomId) -> Domctl,
        ),
        (DomctlOp::Pause, |id| Domctl::Pause { id }),
        (DomctlOp::Unpause, |id| Domctl::Unpause { id }),
    ] {
        for id in [0, 1, 65535] {
            assert_eq!(
                domctl(op as u64, [id, 9, 9]),
                Ok(Call::Domctl(make(DomId(id as u16))))
            );
        }
        for arg in [65536, u64::MAX] {
            let e = domctl(op as u64, [arg, 0, 0]).unwrap_err();
            assert_eq!(e, DecodeError::NotADomainId { arg });
            assert_eq!(e.error(), Error::Invalid);
            assert!(e.explained());
        }
    }
    assert_eq!(
        DecodeError::NotADomainId { arg: 65536 }.to_string(),
        "65536 is not a domain id (they go up to 65535)"
    );
}

#[test]
fn domctl_iomem_permit_takes_a_domain_a_range_and_0_or_1() {
    let op = DomctlOp::IomemPermit as u64;
    let permit = |a: [u64; 4]| decode(Hypercall::Domctl, [op, a[0], a[1], a[2], a[3]]);
    for (allow, word) in [(false, 0), (true, 1)] {
        assert_eq!(
            permit([3, 0xc0000, 256, word]),
            Ok(Call::Domctl(Domctl::IomemPermit {
                id: DomId(3),
                first: Mfn(0xc0000),
                count: 256,
                allow
            }))
        );
    }
    // The last frame there is.
    assert!(permit([1, hvlu_types::MFN_LIMIT - 1, 1, 1]).is_ok());
    for (first, count) in [
        (0xc0000, 0),
        (hvlu_types::MFN_LIMIT, 1),
        (hvlu_types::MFN_LIMIT - 1, 2),
        (u64::MAX, 2),
    ] {
        let e = permit([1, first, count, 1]).unwrap_err();
        assert_eq!(e, DecodeError::IomemRange { first, count });
        assert!(e.explained() && e.error() == Error::Invalid);
    }
    for arg in [2, u64::MAX] {
        let e = permit([1, 0xc0000, 1, arg]).unwrap_err();
        assert_eq!(e, DecodeError::IomemAllow { arg });
        assert!(e.explained());
        assert_eq!(
            e.to_string(),
            format!("{arg} is neither 1 (grant) nor 0 (revoke)")
        );
    }
    assert_eq!(
        permit([65536, 0xc0000, 1, 1]),
        Err(DecodeError::NotADomainId { arg: 65536 })
    );
    assert_eq!(
        DecodeError::IomemRange {
            first: 0xc0000,
            count: 0
        }
        .to_string(),
        "0 frames from mfn 0xc0000 are no range of frames (not empty, below mfn 0x10000000000)"
    );
}

#[test]
fn devices_is_cut_at_the_number_of_pci_addresses() {
    for (asked, got) in [
        (0, 0),
        (3, 3),
        (MAX_DEVICES, MAX_DEVICES),
        (u64::MAX, MAX_DEVICES),
    ] {
        assert_eq!(
            decode(Hypercall::Devices, [ADDR, asked, 9, 9, 9]),
            Ok(Call::Devices {
                out: GuestArray {
                    addr: ADDR,
                    count: got
                }
            })
        );
    }
}

#[test]
fn read_guest_takes_a_domain_a_gpfn_and_an_offset_within_the_page() {
    let read = |a: [u64; 5]| decode(Hypercall::ReadGuest, a);
    let call = |domid: u16, gpfn: u64, offset: u64, len: u64| {
        Ok(Call::ReadGuest {
            domid: DomId(domid),
            gpfn: Gpfn(gpfn),
            offset,
            out: buf(len),
        })
    };
    // Any gpfn: what lies there is the hypervisor's to say.
    for gpfn in [0, 0xc0000, u64::MAX] {
        assert_eq!(read([1, gpfn, 0, ADDR, 8]), call(1, gpfn, 0, 8));
    }
    assert_eq!(read([65535, 3, 4088, ADDR, 8]), call(65535, 3, 4088, 8));
    // The bytes stop at the frame's end.
    for (offset, asked, got) in [
        (0, 4096, 4096),
        (0, 4097, 4096),
        (0, u64::MAX, 4096),
        (8, 4096, 4088),
        (4095, 2, 1),
        (4095, 0, 0),
    ] {
        assert_eq!(
            read([2, 7, offset, ADDR, asked]),
            call(2, 7, offset, got),
            "offset {offset}, {asked} bytes"
        );
        assert_eq!(
            call(2, 7, offset, got).unwrap().encode(),
            (27, [2, 7, offset, ADDR, got])
        );
    }
    for offset in [4096, 4104, u64::MAX] {
        let e = read([1, 0, offset, ADDR, 8]).unwrap_err();
        assert_eq!(e, DecodeError::PageOffset { offset });
        assert_eq!(e.error(), Error::Invalid);
        assert!(e.explained());
    }
    assert_eq!(
        DecodeError::PageOffset { offset: 4096 }.to_string(),
        "offset 0x1000 is not within a page (below 0x1000)"
    );
    for arg in [65536, u64::MAX] {
        let e = read([arg, 0, 0, ADDR, 8]).unwrap_err();
        assert_eq!(e, DecodeError::NotADomainId { arg });
        assert!(e.explained());
    }
}

#[test]
fn domctl_list_is_cut_at_the_number_of_domain_ids() {
    assert_eq!(MAX_LIST, u64::from(u16::MAX) + 1);
    for (asked, got) in [(0, 0), (3, 3), (MAX_LIST, MAX_LIST), (u64::MAX, MAX_LIST)] {
        assert_eq!(
            domctl(DomctlOp::List as u64, [ADDR, asked, 9]),
            Ok(Call::Domctl(Domctl::List {
                out: GuestArray {
                    addr: ADDR,
                    count: got
                }
            }))
        );
    }
    assert!(size_of::<DomainInfo>() as u64 * MAX_LIST < 1 << 32);
}

#[test]
fn domctl_modules_keeps_its_room_as_given() {
    for len in [0, 512, u64::MAX] {
        assert_eq!(
            domctl(DomctlOp::Modules as u64, [ADDR, len, 9]),
            Ok(Call::Domctl(Domctl::Modules { out: buf(len) }))
        );
    }
}

#[test]
fn domctl_create_checks_its_lengths_and_memory() {
    let create = |len, kib| domctl(DomctlOp::Create as u64, [ADDR, len, kib]);
    for (len, kib) in [(0, 4), (256, 4), (10, MAX_DOMAIN_KIB), (10, 4096)] {
        assert_eq!(
            create(len, kib),
            Ok(Call::Domctl(Domctl::Create {
                args: buf(len),
                kib,
                hole: None
            }))
        );
    }
    let refused = [
        (257, 4096, DecodeError::CreateArgsTooLong { len: 257 }),
        (
            u64::MAX,
            0,
            DecodeError::CreateArgsTooLong { len: u64::MAX },
        ),
        (10, 0, DecodeError::ZeroMemory),
        (10, 4098, DecodeError::PartialPage { kib: 4098 }),
        (10, 1, DecodeError::PartialPage { kib: 1 }),
        (
            10,
            MAX_DOMAIN_KIB + 4,
            DecodeError::TooMuchMemory {
                kib: MAX_DOMAIN_KIB + 4,
            },
        ),
        (
            10,
            u64::MAX - 3,
            DecodeError::TooMuchMemory { kib: u64::MAX - 3 },
        ),
    ];
    for (len, kib, expected) in refused {
        let e = create(len, kib).unwrap_err();
        assert_eq!(e, expected);
        assert_eq!(e.error(), Error::Invalid);
        assert!(e.explained());
    }
}

#[test]
fn domctl_create_takes_a_hole_start_or_0_for_the_default() {
    let created = |hole| {
        Ok(Call::Domctl(Domctl::Create {
            args: buf(4),
            kib: 65536,
            hole,
        }))
    };
    assert_eq!(create_with_hole(65536, 0), created(None));
    for addr in [16 << 20, 1 << 30, 3 << 30, (4 << 30) - (2 << 20)] {
        let hole = Hole::at_addr(addr).unwrap();
        assert_eq!(create_with_hole(65536, addr), created(Some(hole)));
        assert_eq!(created(Some(hole)).unwrap().encode().1[4], addr);
    }
    let refused = [
        (5 << 20, HoleError::TooLow { addr: 5 << 20 }),
        (
            (1 << 30) + 4096,
            HoleError::Unaligned {
                addr: (1 << 30) + 4096,
            },
        ),
        (4 << 30, HoleError::TooHigh { addr: 4 << 30 }),
        (u64::MAX, HoleError::TooHigh { addr: u64::MAX }),
    ];
    for (addr, error) in refused {
        let e = create_with_hole(65536, addr).unwrap_err();
        assert_eq!(e, DecodeError::Hole(error), "{addr:#x}");
        assert_eq!(e.error(), Error::Invalid);
        assert!(e.explained());
        assert_eq!(e.to_string(), error.to_string());
    }
}

#[test]
fn a_hole_size_has_a_unit_or_is_hex_bytes() {
    for (word, bytes) in [
        ("3G", 3 << 30),
        ("3g", 3 << 30),
        ("3072M", 3 << 30),
        ("3145728K", 3 << 30),
        ("16m", 16 << 20),
        ("0xc0000000", 3 << 30),
        ("5M", 5 << 20),
    ] {
        assert_eq!(hole_size(word), Ok(bytes), "{word}");
    }
    for word in [
        "",
        "3",
        "G",
        "3GB",
        "0",
        "0G",
        "0x",
        "0x0",
        "-1G",
        "1.5G",
        "0xg",
        "99999999999G",
    ] {
        let e = hole_size(word).unwrap_err();
        assert_eq!(e, NotAHoleSize(word));
        assert!(
            e.to_string().starts_with(&std::format!(
                "`hole={word}` is not where a PCI hole may start"
            )),
            "{e}"
        );
    }
}

#[test]
fn memory_map_names_a_domain_and_is_cut_at_its_bound() {
    for (asked, got) in [
        (0, 0),
        (4, 4),
        (MAX_MEMORY_MAP, MAX_MEMORY_MAP),
        (u64::MAX, MAX_MEMORY_MAP),
    ] {
        assert_eq!(
            decode(Hypercall::MemoryMap, [3, ADDR, asked, 9, 9]),
            Ok(Call::MemoryMap {
                domid: DomId(3),
                out: GuestArray {
                    addr: ADDR,
                    count: got
                }
            })
        );
    }
    for arg in [65536, u64::MAX] {
        let e = decode(Hypercall::MemoryMap, [arg, ADDR, 4, 0, 0]).unwrap_err();
        assert_eq!(e, DecodeError::MapDomainId { arg });
        assert_eq!(e.error(), Error::Invalid);
        // A domU's refusal is no reason for dom0's `last_error`.
        assert!(!e.explained());
    }
}

#[test]
fn memory_map_entries_are_24_bytes_named_by_kind() {
    use crate::hypercall::{e820_name, MapKind, MemoryMapEntry};
    use zerocopy::IntoBytes;
    let e = MemoryMapEntry::new(0xc000_0000, 0x4000_0000, MapKind::PciHole);
    assert_eq!(e.end(), 1 << 32);
    let bytes = e.as_bytes();
    assert_eq!(bytes.len(), 24);
    assert_eq!(&bytes[16..24], &[2, 0, 0, 0, 0, 0, 0, 0]);
    for (n, name) in [(1, "ram"), (2, "pci-hole"), (3, "device")] {
        assert_eq!(MapKind::from_repr(n).map(MapKind::name), Some(name));
    }
    assert_eq!(MapKind::from_repr(4), None);
    assert_eq!(e820_name(1), Some("ram"));
    assert_eq!(e820_name(4), Some("acpi-nvs"));
    assert_eq!(e820_name(0xf0), None);
}

#[test]
fn refusals_give_the_reasons_the_hypervisor_gave() {
    let cases = [
        (
            DecodeError::CreateArgsTooLong { len: 300 },
            "the module name and command line are 300 bytes, more than 256",
        ),
        (
            DecodeError::ZeroMemory,
            "a domain of 0 KiB: give its memory in KiB (the toolstack's default is 4096)",
        ),
        (
            DecodeError::PartialPage { kib: 4098 },
            "4098 KiB is not a whole number of 4 KiB pages",
        ),
        (
            DecodeError::TooMuchMemory { kib: 1048580 },
            "1048580 KiB is more than the 1048576 KiB a domain may have",
        ),
        (
            DecodeError::CreateArgsNotUtf8,
            "the module name or the command line is not UTF-8",
        ),
        (
            DecodeError::CommandLineTooLong { len: 128 },
            "the command line has 128 bytes, more than the 127 a domain's start info holds",
        ),
        (
            DecodeError::ModuleNameNotUtf8,
            "the module name is not UTF-8",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
        assert!(e.explained());
        assert!(text.len() <= MAX_ERROR_MESSAGE);
    }
}

/// Arguments every call takes, none of the used words 0: an address and a
/// length, a level, a kind, a segment, a domctl.
fn usual_args(h: Hypercall) -> [u64; 5] {
    match h {
        Hypercall::PinTable => [ADDR, 2, 0, 0, 0],
        Hypercall::Report => [2, 5, 0, 0, 0],
        Hypercall::Domctl => [DomctlOp::Create as u64, ADDR, 5, 8, 3 << 30],
        Hypercall::SetSegmentBase => [1, ADDR, 0, 0, 0],
        Hypercall::LuLoadBuffer => [ADDR, 5, ADDR, 3, 0],
        Hypercall::MemoryMap => [1, ADDR, 5, 0, 0],
        Hypercall::ReadGuest => [1, 0x400, 8, ADDR, 5],
        _ => [ADDR, 5, 0, 0, 0],
    }
}

#[test]
fn every_number_decodes_to_its_call() {
    for nr in 1..=27 {
        let h = Hypercall::from_repr(nr).unwrap();
        let call = Call::decode(nr, usual_args(h)).unwrap();
        assert_eq!(call.hypercall(), h);
        assert_eq!(call.encode().0, nr);
    }
}

#[test]
fn unused_words_are_ignored() {
    for nr in 1..=27 {
        let h = Hypercall::from_repr(nr).unwrap();
        let call = Call::decode(nr, usual_args(h)).unwrap();
        // The words the encoding leaves 0 are the unused ones, but for
        // `lu_load`'s `force` word, whose 0 is a value.
        let mut noisy = call.encode().1.map(|w| if w == 0 { u64::MAX } else { w });
        if h == Hypercall::LuLoad {
            noisy[2] = 0;
        }
        assert_eq!(Call::decode(nr, noisy), Ok(call), "{h:?}");
    }
}

#[test]
fn dom0_only_calls_are_the_ones_the_abi_names() {
    let dom0: [u64; 14] = [2, 10, 12, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26, 27];
    for nr in 1..=27 {
        let h = Hypercall::from_repr(nr).unwrap();
        assert_eq!(h.dom0_only(), dom0.contains(&nr), "{h:?}");
    }
}

#[test]
fn mmu_requests_must_be_aligned_and_not_global() {
    let ok = MmuUpdate {
        ptr: (7 << 12) | (511 * 8),
        val: 0x1234_5000 | hvlu_types::pte::PRESENT,
    };
    assert_eq!(
        ok.decode(),
        Ok(EntryWrite {
            table: Mfn(7),
            index: 511,
            val: ok.val
        })
    );
    assert_eq!(ok.decode().unwrap().encode(), ok);
    for ptr in [1, 4, (7 << 12) | 0xffc] {
        let req = MmuUpdate { ptr, val: 0 };
        let e = req.decode().unwrap_err();
        assert_eq!(e, DecodeError::MisalignedEntry { ptr });
        assert_eq!(e.error(), Error::Invalid);
        assert!(!e.explained());
    }
    let global = hvlu_types::pte::PRESENT | hvlu_types::pte::GLOBAL;
    let e = MmuUpdate {
        ptr: 8,
        val: global,
    }
    .decode()
    .unwrap_err();
    assert_eq!(e, DecodeError::GlobalMapping { val: global });
    assert_eq!(e.error(), Error::Invalid);
    // Not present: the global bit means nothing yet.
    assert!(MmuUpdate {
        ptr: 8,
        val: hvlu_types::pte::GLOBAL
    }
    .decode()
    .is_ok());
}

#[test]
fn mmu_requests_are_read_from_bytes_one_by_one() {
    let reqs = [
        MmuUpdate {
            ptr: 0x2008,
            val: 3,
        },
        MmuUpdate {
            ptr: 0x2009,
            val: 3,
        },
        MmuUpdate {
            ptr: 0x3010,
            val: 0,
        },
    ];
    let mut bytes = [0u8; 49];
    for (r, chunk) in reqs.iter().zip(bytes.chunks_exact_mut(16)) {
        chunk[..8].copy_from_slice(&r.ptr.to_le_bytes());
        chunk[8..].copy_from_slice(&r.val.to_le_bytes());
    }
    let decoded: Vec<_> = mmu_updates(&bytes).collect();
    assert_eq!(
        decoded,
        [
            reqs[0].decode(),
            Err(DecodeError::MisalignedEntry { ptr: 0x2009 }),
            reqs[2].decode()
        ]
    );
    assert_eq!(mmu_updates(&bytes[..15]).count(), 0);
}

#[test]
fn mfn_lists_are_little_endian_words() {
    let bytes = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 9];
    assert!(mfn_list(&bytes).eq([1, 0x8000_0000_0000_0100]));
}

#[test]
fn create_args_are_a_name_then_a_command_line() {
    assert_eq!(
        CreateArgs::decode(b"domu"),
        Ok(CreateArgs {
            name: "domu",
            cmdline: ""
        })
    );
    assert_eq!(
        CreateArgs::decode(b"domu\0probe x=1"),
        Ok(CreateArgs {
            name: "domu",
            cmdline: "probe x=1"
        })
    );
    // Only the first NUL splits.
    assert_eq!(
        CreateArgs::decode(b"a\0b\0c"),
        Ok(CreateArgs {
            name: "a",
            cmdline: "b\0c"
        })
    );
    assert_eq!(
        CreateArgs::decode(b"\xff\0x"),
        Err(DecodeError::CreateArgsNotUtf8)
    );
    assert_eq!(
        CreateArgs::decode(b"domu\0\xc3"),
        Err(DecodeError::CreateArgsNotUtf8)
    );
    let mut bytes = [b'c'; 5 + MAX_CMDLINE + 1];
    bytes[4] = 0;
    assert_eq!(
        CreateArgs::decode(&bytes[..5 + MAX_CMDLINE]).map(|a| a.cmdline.len()),
        Ok(MAX_CMDLINE)
    );
    assert_eq!(
        CreateArgs::decode(&bytes),
        Err(DecodeError::CommandLineTooLong {
            len: MAX_CMDLINE + 1
        })
    );
}

#[test]
fn create_args_encode_to_what_decodes_to_them() {
    let args = CreateArgs {
        name: "domu",
        cmdline: "probe",
    };
    let mut out = [0u8; 10];
    assert_eq!(args.encode(&mut out), Some(10));
    assert_eq!(&out, b"domu\0probe");
    assert_eq!(CreateArgs::decode(&out), Ok(args));
    assert_eq!(args.encode(&mut [0u8; 9]), None);
}

#[test]
fn module_names_must_be_utf8() {
    assert_eq!(module_name(b"hv-b"), Ok("hv-b"));
    assert_eq!(module_name(b""), Ok(""));
    assert_eq!(module_name(b"hv\xff"), Err(DecodeError::ModuleNameNotUtf8));
}

/// Numbers around the known ones, and any.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..=29, 1 => any::<u64>()]
}

/// Words near the bounds, small ones, and any.
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0u64..=8,
        2 => prop::sample::select(vec![
            MAX_BATCH, MAX_CONSOLE_IO, MAX_HOSTLINK_READ, MAX_MODULE_NAME,
            MAX_DOMAIN_KIB, MAX_LIST, u64::from(u16::MAX), hvlu_types::canonical::LOWER_HALF_END,
            MAX_MEMORY_MAP, 3 << 30, 16 << 20,
        ])
        .prop_flat_map(|b| (b - 1)..=(b + 1)),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn a_decoded_call_encodes_to_itself_within_its_bounds(
        nr in number(),
        a in prop::array::uniform5(word()),
    ) {
        match Call::decode(nr, a) {
            Ok(call) => {
                prop_assert_eq!(call.hypercall() as u64, nr);
                let (nr2, a2) = call.encode();
                prop_assert_eq!(nr2, nr);
                prop_assert_eq!(Call::decode(nr2, a2), Ok(call));
                let bounded = match call {
                    Call::ConsoleWrite { buf } | Call::ConsoleRead { buf } => buf.len <= MAX_CONSOLE_IO,
                    Call::HostlinkRead { buf } => buf.len <= MAX_HOSTLINK_READ,
                    Call::HostlinkWrite { buf } => buf.len <= MAX_HOSTLINK_WRITE,
                    Call::LuLoad { name, .. } => name.len <= MAX_MODULE_NAME,
                    Call::LuLoadBuffer { .. } => true,
                    Call::MmuUpdate { reqs: x }
                    | Call::IncreaseReservation { mfns_out: x }
                    | Call::DecreaseReservation { mfns: x } => x.count <= MAX_BATCH,
                    Call::Domctl(Domctl::Create { args, kib, hole }) => {
                        args.len <= MAX_CREATE_ARGS
                            && kib > 0
                            && kib % 4 == 0
                            && kib <= MAX_DOMAIN_KIB
                            && hole.is_none_or(|h| Hole::new(h.start()) == Ok(h))
                    }
                    Call::MemoryMap { out, .. } | Call::MachineMemoryMap { out } => {
                        out.count <= MAX_MEMORY_MAP
                    }
                    Call::Domctl(Domctl::List { out }) => out.count <= MAX_LIST,
                    Call::Domctl(Domctl::IomemPermit { count, first, .. }) => {
                        count > 0 && first.0 + count <= hvlu_types::MFN_LIMIT
                    }
                    Call::Devices { out } => out.count <= MAX_DEVICES,
                    Call::ReadGuest { offset, out, .. } => {
                        offset < PAGE_SIZE && offset + out.len <= PAGE_SIZE
                    }
                    Call::SetSegmentBase { base, .. } => base < hvlu_types::canonical::LOWER_HALF_END,
                    _ => true,
                };
                prop_assert!(bounded, "{:?}", call);
            }
            Err(e) => {
                let known = Hypercall::from_repr(nr).is_some();
                prop_assert_eq!(e == DecodeError::UnknownCall { nr }, !known);
                prop_assert!(matches!(e.error(), Error::NoSys | Error::Invalid));
                prop_assert!(e.to_string().len() <= MAX_ERROR_MESSAGE);
            }
        }
    }

    #[test]
    fn any_mmu_bytes_decode_to_checked_writes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(mmu_updates(&bytes).count(), bytes.len() / 16);
        for w in mmu_updates(&bytes).flatten() {
            prop_assert!(w.index < 512);
            prop_assert_eq!(w.encode().decode(), Ok(w));
        }
    }

    #[test]
    fn any_create_bytes_decode_to_what_encodes_back(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(args) = CreateArgs::decode(&bytes) {
            prop_assert!(!args.name.contains('\0'));
            prop_assert!(args.cmdline.len() <= MAX_CMDLINE);
            let mut out = [0u8; 300];
            let n = args.encode(&mut out).unwrap();
            prop_assert_eq!(CreateArgs::decode(&out[..n]), Ok(args));
        }
    }
}
