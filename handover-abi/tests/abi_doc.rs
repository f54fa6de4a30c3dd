//! The worked examples and size figures of `docs/abi.md`, made here from
//! the real encoder so that they cannot drift from it.
//!
//! Each generated part of the document lies between the lines
//! `<!-- generated: NAME -->` and `<!-- end: NAME -->`. The tests build the
//! part, check that the listing's bytes are exactly what the encoder (or
//! the note writer) produces, and compare it with the document. After a
//! deliberate change, `HVLU_BLESS_DOCS=1 cargo test -p handover-abi --test
//! abi_doc` writes the new parts into the document (and still fails if the
//! listing and the encoder disagree).

// The golden state files build on each other and include each other.
#![allow(clippy::duplicate_mod)]

use std::fmt::Write as _;
use std::path::PathBuf;

use handover_abi::body::v1_0;
use handover_abi::body::v1_2::{
    Domain, GuestReports, HandoverState, HvGlobals, PciBar, PciDevice, RetiredDomain, DEFAULT_HOLE,
};
use handover_abi::body::v1_3::{HvmDomain, LogDirty};
use handover_abi::header::offset;
use handover_abi::note::{ImageNote, CONTRACT, DESC_OFFSET, DESC_SIZE, NHDR_SIZE};
use handover_abi::{
    decode, encode_as, encoded_len_as, AbiVersion, BuildId, ConsoleRing, DomainFlags, GpRegs,
    LuRegion, Machine, MemRun, PinnedTable, Producer, RamRange, RamType, RunKind, TimeBase, Vcpu,
    VcpuFlags, VersionRange, HEADER_SIZE,
};
use hvlu_types::regs::{DescriptorTable, HvmContext, Segment};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};
use serde::Serialize;

#[path = "golden/state_v1_2.rs"]
#[allow(dead_code, reason = "only the state is used here")]
mod golden_v1_2;

const V1_0: AbiVersion = AbiVersion::new(1, 0);
const V1_1: AbiVersion = AbiVersion::new(1, 1);
const V1_2: AbiVersion = AbiVersion::new(1, 2);

/// The build id of the examples (a content hash, as `cargo xtask build`
/// stamps one).
const BUILD: [u8; 16] = [
    0x9a, 0xde, 0x53, 0x11, 0x52, 0x56, 0x0e, 0x50, 0xcc, 0xb9, 0x7d, 0x4d, 0xcc, 0x2c, 0xa1, 0xc0,
];

/// The small state of the example: what a hypervisor writes for dom0 alone
/// on a 64 MiB machine with QEMU's `edu` device, after one domU came and
/// went.
fn example_state() -> HandoverState {
    let reports = |checks: u64, expected_refusals: u64| GuestReports {
        checks,
        expected_refusals,
        ..GuestReports::default()
    };
    let run = |mfn: u64, count: u64, gpfn: u64, kind: RunKind| MemRun {
        first_mfn: Mfn(mfn),
        count,
        first_gpfn: Gpfn(gpfn),
        kind,
    };
    // The edu device's BAR 0, which dom0 may map and maps in its hole.
    let edu = MfnRange::new(Mfn(0xfea00), 0x100);
    HandoverState {
        machine: Machine {
            ram_map: vec![
                RamRange {
                    base: 0,
                    size: 0x9_f000,
                    kind: RamType::Usable,
                },
                RamRange {
                    base: 0x10_0000,
                    size: 0x3f0_0000,
                    kind: RamType::Usable,
                },
            ],
            region: LuRegion {
                base: 0x300_0000,
                size: 0x100_0000,
                image: MfnRange::new(Mfn(0x3000), 0x300),
                state: MfnRange::new(Mfn(0x3f00), 0x10),
            },
        },
        globals: HvGlobals {
            next_domid: DomId(2),
            time: TimeBase {
                tsc: 0x12_3456_789a,
                tsc_khz: 2_000_000,
                system_time_ns: 5_000_000_000,
            },
            cmdline: "lu_region=16M".into(),
        },
        domains: vec![Domain {
            id: DomId(0),
            flags: DomainFlags::PRIVILEGED.union(DomainFlags::PV),
            name: "dom0".into(),
            max_frames: 0x800,
            runs: vec![
                run(0x1000, 0x7fb, 0, RunKind::Data),
                run(0x17fb, 1, 0x7fb, RunKind::L1),
                run(0x17fc, 1, 0x7fc, RunKind::L2),
                run(0x17fd, 1, 0x7fd, RunKind::L3),
                run(0x17fe, 1, 0x7fe, RunKind::L4),
            ],
            pinned: vec![PinnedTable {
                mfn: Mfn(0x17fe),
                level: RunKind::L4,
            }],
            mmio: vec![edu],
            start_info: Gpfn(0x7fa),
            vcpus: vec![Vcpu {
                id: 0,
                regs: GpRegs {
                    rsi: 0x7f_a000,
                    ..GpRegs::default()
                },
                rip: 0x40_0000,
                rflags: 0x202,
                rsp: 0x7f_0000,
                cr3: Mfn(0x17fe),
                fs_base: 0,
                gs_base: 0,
                kernel_gs_base: 0,
                pending_events: 0,
                flags: VcpuFlags::ONLINE,
            }],
            console: ConsoleRing {
                in_cons: 0,
                in_prod: 0,
                out_cons: 42,
                out_prod: 42,
            },
            paused: false,
            reports: reports(300, 0),
            hole: DEFAULT_HOLE,
            identity: vec![edu],
        }],
        retired: vec![RetiredDomain {
            id: DomId(1),
            name: "domu".into(),
            reports: reports(7, 2),
        }],
        devices: vec![PciDevice {
            bdf: 1 << 3,
            vendor: 0x1234,
            device: 0x11e8,
            class: 0x00_ff00,
            bars: vec![PciBar {
                index: 0,
                base: 0xfea0_0000,
                size: 0x10_0000,
                flags: 0,
            }],
        }],
    }
}

fn producer() -> Producer {
    Producer {
        build_id: BuildId(BUILD),
        abi: handover_abi::CURRENT,
    }
}

/// `state` (a state of 1.2's types: the example has no HVM domain) in
/// this build's types, encoded as `version`.
fn encode(version: AbiVersion, state: &HandoverState) -> Vec<u8> {
    let state = handover_abi::HandoverState::from(state.clone());
    let mut buf = vec![0u8; encoded_len_as(version, &state).expect("len")];
    encode_as(version, &state, &producer(), &mut buf).expect("encode");
    buf
}

/// One line of a listing: bytes, what they are, and the version that
/// added them.
struct Line {
    bytes: Vec<u8>,
    what: String,
    since: AbiVersion,
}

/// A listing of bytes, field by field, each field's bytes made by
/// serializing that field alone with postcard (for the body) or taken from
/// the encoded header (for the header).
struct Listing {
    lines: Vec<Line>,
    /// Nesting of the fields being listed, as indentation.
    depth: usize,
    /// The version that added the fields being listed.
    since: AbiVersion,
}

impl Default for Listing {
    fn default() -> Self {
        Listing {
            lines: Vec::new(),
            depth: 0,
            since: V1_0,
        }
    }
}

impl Listing {
    fn raw(&mut self, bytes: &[u8], what: impl Into<String>) {
        let what = format!("{}{}", "  ".repeat(self.depth), what.into());
        self.lines.push(Line {
            bytes: bytes.to_vec(),
            what,
            since: self.since,
        });
    }

    /// A field: its postcard bytes, its name and its value as shown.
    fn field<T: Serialize>(&mut self, name: &str, value: &T, shown: impl std::fmt::Display) {
        let bytes = postcard::to_allocvec(value).expect("serialize");
        self.raw(&bytes, format!("{name} = {shown}"));
    }

    /// A list's length, then `f` for its elements, one level deeper.
    fn list<T>(&mut self, name: &str, items: &[T], mut f: impl FnMut(&mut Self, usize, &T)) {
        let bytes = postcard::to_allocvec(&items.len()).expect("serialize");
        self.raw(&bytes, format!("{name}: {} (length)", items.len()));
        self.depth += 1;
        for (i, item) in items.iter().enumerate() {
            f(self, i, item);
        }
        self.depth -= 1;
    }

    /// A string: its length, then its bytes.
    fn string(&mut self, name: &str, s: &str) {
        let bytes = postcard::to_allocvec(&s.len()).expect("serialize");
        self.raw(&bytes, format!("{name}: {} bytes", s.len()));
        self.raw(s.as_bytes(), format!("  \"{s}\""));
    }

    /// The bytes of the lines `version` has.
    fn bytes(&self, version: AbiVersion) -> Vec<u8> {
        self.lines
            .iter()
            .filter(|l| l.since <= version)
            .flat_map(|l| l.bytes.iter().copied())
            .collect()
    }

    /// The listing as text: offset (from `base`), up to 8 bytes in hex a
    /// line, and what they are; lines added after 1.0 are marked with the
    /// version that added them.
    fn text(&self, base: usize) -> String {
        let mut out = String::new();
        let mut at = base;
        for line in &self.lines {
            let mark = if line.since > V1_0 {
                format!("  ({})", line.since)
            } else {
                String::new()
            };
            if line.bytes.is_empty() {
                // A heading: a struct whose fields follow.
                let _ = writeln!(out, "{at:04x}  {:<24} {}{mark}", "", line.what);
                continue;
            }
            for (n, chunk) in line.bytes.chunks(8).enumerate() {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                let what = if n == 0 {
                    format!("{}{mark}", line.what)
                } else {
                    String::new()
                };
                let text = format!("{:04x}  {:<24} {what}", at, hex.join(" "));
                let _ = writeln!(out, "{}", text.trim_end());
                at += chunk.len();
            }
        }
        out
    }
}

fn kind_name(kind: RunKind) -> String {
    format!("{} ({kind:?})", kind as u8)
}

fn reports_lines(l: &mut Listing, r: &GuestReports) {
    l.field("checks", &r.checks, r.checks);
    l.field("mismatches", &r.mismatches, r.mismatches);
    l.field(
        "expected_refusals",
        &r.expected_refusals,
        r.expected_refusals,
    );
    l.field(
        "unexpected_refusals",
        &r.unexpected_refusals,
        r.unexpected_refusals,
    );
    l.field("regressions", &r.regressions, r.regressions);
    l.field(
        "unexpected_faults",
        &r.unexpected_faults,
        r.unexpected_faults,
    );
    l.field("expect_fault", &r.expect_fault, r.expect_fault);
}

/// The body of `s`, field by field, in the order of docs/abi.md §2.3–2.5.
fn body_listing(s: &HandoverState) -> Listing {
    let mut l = Listing::default();
    l.raw(&[], "machine");
    l.depth += 1;
    l.list("ram_map", &s.machine.ram_map, |l, i, r| {
        l.field(
            &format!("[{i}].base"),
            &r.base,
            format_args!("{:#x}", r.base),
        );
        l.field(
            &format!("[{i}].size"),
            &r.size,
            format_args!("{:#x}", r.size),
        );
        l.field(
            &format!("[{i}].kind"),
            &r.kind,
            format_args!("{:?}", r.kind),
        );
    });
    let region = &s.machine.region;
    l.field(
        "region.base",
        &region.base,
        format_args!("{:#x}", region.base),
    );
    l.field(
        "region.size",
        &region.size,
        format_args!("{:#x}", region.size),
    );
    for (name, range) in [("image", region.image), ("state", region.state)] {
        l.field(
            &format!("region.{name}.start"),
            &range.start,
            format_args!("{:#x}", range.start.0),
        );
        l.field(
            &format!("region.{name}.count"),
            &range.count,
            format_args!("{:#x}", range.count),
        );
    }
    l.depth -= 1;
    l.raw(&[], "globals");
    l.depth += 1;
    let g = &s.globals;
    l.field("next_domid", &g.next_domid, g.next_domid.0);
    l.field("time.tsc", &g.time.tsc, format_args!("{:#x}", g.time.tsc));
    l.field("time.tsc_khz", &g.time.tsc_khz, g.time.tsc_khz);
    l.field(
        "time.system_time_ns",
        &g.time.system_time_ns,
        g.time.system_time_ns,
    );
    l.since = V1_1;
    l.string("cmdline", &g.cmdline);
    l.since = V1_0;
    l.depth -= 1;
    l.list("domains", &s.domains, |l, i, d| {
        l.field(&format!("[{i}].id"), &d.id, d.id.0);
        l.depth += 1;
        l.field("flags", &d.flags, format_args!("{:#x}", d.flags.0));
        l.string("name", &d.name);
        l.field(
            "max_frames",
            &d.max_frames,
            format_args!("{:#x}", d.max_frames),
        );
        l.list("runs", &d.runs, |l, i, r| {
            l.field(
                &format!("[{i}].first_mfn"),
                &r.first_mfn,
                format_args!("{:#x}", r.first_mfn.0),
            );
            l.field(
                &format!("[{i}].count"),
                &r.count,
                format_args!("{:#x}", r.count),
            );
            l.field(
                &format!("[{i}].first_gpfn"),
                &r.first_gpfn,
                format_args!("{:#x}", r.first_gpfn.0),
            );
            l.field(&format!("[{i}].kind"), &r.kind, kind_name(r.kind));
        });
        l.list("pinned", &d.pinned, |l, i, p| {
            l.field(
                &format!("[{i}].mfn"),
                &p.mfn,
                format_args!("{:#x}", p.mfn.0),
            );
            l.field(&format!("[{i}].level"), &p.level, kind_name(p.level));
        });
        range_list(l, "mmio", &d.mmio);
        l.field(
            "start_info",
            &d.start_info,
            format_args!("{:#x}", d.start_info.0),
        );
        l.list("vcpus", &d.vcpus, |l, i, v| {
            l.field(&format!("[{i}].id"), &v.id, v.id);
            l.field(
                &format!("[{i}].regs"),
                &v.regs,
                format_args!(
                    "rax … r15, 15 varints (rsi = {:#x}, the rest 0)",
                    v.regs.rsi
                ),
            );
            for (name, value) in [("rip", v.rip), ("rflags", v.rflags), ("rsp", v.rsp)] {
                l.field(&format!("[{i}].{name}"), &value, format_args!("{value:#x}"));
            }
            l.field(
                &format!("[{i}].cr3"),
                &v.cr3,
                format_args!("{:#x}", v.cr3.0),
            );
            for (name, value) in [
                ("fs_base", v.fs_base),
                ("gs_base", v.gs_base),
                ("kernel_gs_base", v.kernel_gs_base),
                ("pending_events", v.pending_events),
            ] {
                l.field(&format!("[{i}].{name}"), &value, format_args!("{value:#x}"));
            }
            l.field(
                &format!("[{i}].flags"),
                &v.flags,
                format_args!("{:#x}", v.flags.0),
            );
        });
        let c = &d.console;
        for (name, value) in [
            ("in_cons", c.in_cons),
            ("in_prod", c.in_prod),
            ("out_cons", c.out_cons),
            ("out_prod", c.out_prod),
        ] {
            l.field(&format!("console.{name}"), &value, value);
        }
        l.since = V1_1;
        l.field("paused", &d.paused, d.paused);
        l.raw(&[], "reports");
        l.depth += 1;
        reports_lines(l, &d.reports);
        l.depth -= 1;
        l.since = V1_2;
        l.field("hole", &d.hole, format_args!("{:#x}", d.hole.0));
        range_list(l, "identity", &d.identity);
        l.since = V1_0;
        l.depth -= 1;
    });
    l.since = V1_1;
    l.list("retired", &s.retired, |l, i, r| {
        l.field(&format!("[{i}].id"), &r.id, r.id.0);
        l.depth += 1;
        l.string("name", &r.name);
        l.raw(&[], "reports");
        l.depth += 1;
        reports_lines(l, &r.reports);
        l.depth -= 2;
    });
    l.since = V1_2;
    l.list("devices", &s.devices, |l, i, d| {
        l.field(
            &format!("[{i}].bdf"),
            &d.bdf,
            format_args!("{:#x} ({})", d.bdf, d.address()),
        );
        l.depth += 1;
        l.field("vendor", &d.vendor, format_args!("{:#06x}", d.vendor));
        l.field("device", &d.device, format_args!("{:#06x}", d.device));
        l.field("class", &d.class, format_args!("{:#08x}", d.class));
        l.list("bars", &d.bars, |l, i, b| {
            l.field(&format!("[{i}].index"), &b.index, b.index);
            l.field(
                &format!("[{i}].base"),
                &b.base,
                format_args!("{:#x}", b.base),
            );
            l.field(
                &format!("[{i}].size"),
                &b.size,
                format_args!("{:#x}", b.size),
            );
            l.field(
                &format!("[{i}].flags"),
                &b.flags,
                format_args!("{:#x}", b.flags),
            );
        });
        l.depth -= 1;
    });
    l
}

/// A list of frame ranges (`mmio`, `identity`).
fn range_list(l: &mut Listing, name: &str, ranges: &[MfnRange]) {
    l.list(name, ranges, |l, i, m| {
        l.field(
            &format!("[{i}].start"),
            &m.start,
            format_args!("{:#x}", m.start.0),
        );
        l.field(
            &format!("[{i}].count"),
            &m.count,
            format_args!("{:#x}", m.count),
        );
    });
}

/// The header of `blob`, field by field (docs/abi.md §2.1).
fn header_listing(blob: &[u8]) -> Listing {
    let h = handover_abi::read_header(blob).expect("a header");
    let fields = [
        ("magic", offset::MAGIC, "\"HVLUSTAT\"".to_string()),
        ("abi_major", offset::ABI_MAJOR, h.version.major.to_string()),
        ("abi_minor", offset::ABI_MINOR, h.version.minor.to_string()),
        (
            "header_size",
            offset::HEADER_SIZE,
            h.header_size.to_string(),
        ),
        ("body_len", offset::BODY_LEN, h.body_len.to_string()),
        (
            "body_crc",
            offset::BODY_CRC,
            format!("{:#010x}", h.body_crc),
        ),
        (
            "header_crc",
            offset::HEADER_CRC,
            format!("{:#010x}", h.header_crc),
        ),
        (
            "producer_build",
            offset::PRODUCER_BUILD,
            "the writer's build id".into(),
        ),
        (
            "producer_major",
            offset::PRODUCER_MAJOR,
            h.producer.abi.major.to_string(),
        ),
        (
            "producer_minor",
            offset::PRODUCER_MINOR,
            h.producer.abi.minor.to_string(),
        ),
        ("reserved", offset::RESERVED, "zero".into()),
    ];
    let mut l = Listing::default();
    for (i, (name, at, shown)) in fields.iter().enumerate() {
        // A field runs to the next one's offset, the last to the header's end.
        let end = fields.get(i + 1).map_or(HEADER_SIZE, |f| f.1);
        l.raw(&blob[*at..end], format!("{name} = {shown}"));
    }
    l
}

/// The example of §2.6: the state as a 1.2 blob, listed, and what changes
/// when it is written as 1.1 or 1.0.
fn example_state_part() -> String {
    let state = example_state();
    let blob = encode(V1_2, &state);
    let header = header_listing(&blob);
    let body = body_listing(&state);
    assert_eq!(
        header.bytes(V1_2),
        blob[..HEADER_SIZE],
        "the header listing"
    );
    assert_eq!(body.bytes(V1_2), blob[HEADER_SIZE..], "the body listing");
    let mut out = String::from("```text\n");
    out.push_str(&header.text(0));
    out.push_str(&body.text(HEADER_SIZE));
    out.push_str("```\n\n");
    let mut older = Vec::new();
    for version in [V1_1, V1_0] {
        let older_blob = encode(version, &state);
        assert_eq!(
            body.bytes(version),
            older_blob[HEADER_SIZE..],
            "the {version} body is the lines it has"
        );
        let h = handover_abi::read_header(&older_blob).expect("an older header");
        older.push(format!(
            "`abi_minor` = {}, `body_len` = {}, `body_crc` = {:#010x} and `header_crc` = {:#010x}",
            version.minor, h.body_len, h.body_crc, h.header_crc
        ));
    }
    out.push_str(&wrap(&format!(
        "The blob is {} bytes (a {}-byte body). Written as 1.1 (§2.5: the \
         device list dropped; the hole is the default and dom0's identity \
         entries are the default of a privileged domain, what a 1.1 state \
         gives back), the body is the lines not marked (1.2), {} bytes, and \
         the header differs in {}. Written as 1.0 (§2.4: the command line, \
         the reports and the retired domain dropped too), the body is the \
         lines not marked at all, {} bytes, and the header differs in {}. \
         `producer_minor` stays {} (this build's own version).",
        blob.len(),
        blob.len() - HEADER_SIZE,
        body.bytes(V1_1).len(),
        older[0],
        body.bytes(V1_0).len(),
        older[1],
        handover_abi::CURRENT.minor,
    )));
    out
}

/// The note of §4.1, field by field.
fn example_note_part() -> String {
    let note = ImageNote {
        reads: VersionRange::new(V1_0, V1_2),
        writes: Some(VersionRange::new(V1_0, V1_2)),
        contract: Some(CONTRACT),
        entry: 0xffff_ffff_8015_07c1,
        build_id: BuildId(BUILD),
    };
    let bytes = note.to_note_bytes();
    let mut l = Listing::default();
    let mut at = 0;
    let mut take = |l: &mut Listing, len: usize, what: String| {
        l.raw(&bytes[at..at + len], what);
        at += len;
    };
    take(&mut l, 4, "namesz = 5".into());
    take(&mut l, 4, format!("descsz = {DESC_SIZE}"));
    take(&mut l, 4, "type = 1".into());
    take(
        &mut l,
        DESC_OFFSET - NHDR_SIZE,
        "name = \"HVLU\\0\", 3 bytes of padding".into(),
    );
    take(&mut l, 4, "desc.version = 1".into());
    for (name, v) in [("min", note.reads.min), ("max", note.reads.max)] {
        take(&mut l, 2, format!("desc.{name}_major = {}", v.major));
        take(&mut l, 2, format!("desc.{name}_minor = {}", v.minor));
    }
    take(&mut l, 8, format!("desc.entry = {:#x}", note.entry));
    take(&mut l, 16, "desc.build_id".into());
    let writes = note.writes.expect("writes");
    for (name, v) in [("min", writes.min), ("max", writes.max)] {
        take(&mut l, 2, format!("desc.writes_{name}_major = {}", v.major));
        take(&mut l, 2, format!("desc.writes_{name}_minor = {}", v.minor));
    }
    let c = note.contract.expect("contract");
    take(
        &mut l,
        4,
        format!("desc.args_versions = {:#x}: {}", c.args.0, c.args),
    );
    take(
        &mut l,
        2,
        format!("desc.layouts = {:#x}: {}", c.layouts.0, c.layouts),
    );
    take(&mut l, 2, format!("desc.boot_model = {}", c.boot));
    assert_eq!(at, bytes.len(), "every byte of the note listed");
    assert_eq!(l.bytes(V1_2), bytes.as_slice());
    assert_eq!(handover_abi::note::parse_note(&bytes), Ok(note));
    format!("```text\n{}```\n", l.text(0))
}

/// `text` as lines of at most 76 characters, broken at spaces.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 76 {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Encoded size of `value` in bytes.
fn size<T: Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).expect("serialize").len()
}

/// The size figures of §2.2, each the smallest and the largest encoding.
fn sizes_part() -> String {
    let run = |n: u64, kind| MemRun {
        first_mfn: Mfn(n),
        count: n,
        first_gpfn: Gpfn(n),
        kind,
    };
    let vcpu = |n: u64, m: u32| Vcpu {
        id: m,
        regs: GpRegs {
            rax: n,
            rbx: n,
            rcx: n,
            rdx: n,
            rsi: n,
            rdi: n,
            rbp: n,
            r8: n,
            r9: n,
            r10: n,
            r11: n,
            r12: n,
            r13: n,
            r14: n,
            r15: n,
        },
        rip: n,
        rflags: n,
        rsp: n,
        cr3: Mfn(n),
        fs_base: n,
        gs_base: n,
        kernel_gs_base: n,
        pending_events: n,
        flags: VcpuFlags(m),
    };
    let reports = |n: u64| GuestReports {
        checks: n,
        mismatches: n,
        expected_refusals: n,
        unexpected_refusals: n,
        regressions: n,
        unexpected_faults: n,
        expect_fault: n != 0,
    };
    let domain = |n: u64, h: u16, m: u32| Domain {
        id: DomId(h),
        flags: DomainFlags(m),
        name: String::new(),
        max_frames: n,
        runs: vec![],
        pinned: vec![],
        mmio: vec![],
        start_info: Gpfn(n),
        vcpus: vec![],
        console: ConsoleRing {
            in_cons: m,
            in_prod: m,
            out_cons: m,
            out_prod: m,
        },
        paused: n != 0,
        reports: reports(n),
        hole: Gpfn(n),
        identity: vec![],
    };
    // A 1.1 domain is the 1.2 one without its last two fields, a 1.0
    // domain the 1.1 one without its last two.
    let domain_1_1 = |n: u64, h: u16, m: u32| {
        let d = domain(n, h, m);
        size(&d) - size(&d.hole) - size(&d.identity)
    };
    let domain_1_0 = |n: u64, h: u16, m: u32| {
        let d = domain(n, h, m);
        domain_1_1(n, h, m) - size(&d.paused) - size(&d.reports)
    };
    let device = |h: u16, m: u32| PciDevice {
        bdf: h,
        vendor: h,
        device: h,
        class: m,
        bars: vec![],
    };
    let bar = |n: u64, b: u8, m: u32| PciBar {
        index: b,
        base: n,
        size: n,
        flags: m,
    };
    let retired = |n: u64, h: u16| RetiredDomain {
        id: DomId(h),
        name: String::new(),
        reports: reports(n),
    };
    let globals = |n: u64, h: u16| v1_0::HvGlobals {
        next_domid: DomId(h),
        time: TimeBase {
            tsc: n,
            tsc_khz: n,
            system_time_ns: n,
        },
    };
    let pin = |n: u64| PinnedTable {
        mfn: Mfn(n),
        level: RunKind::L4,
    };
    let globals_1_1 = |n: u64, h: u16| HvGlobals {
        next_domid: DomId(h),
        time: globals(n, h).time,
        cmdline: String::new(),
    };
    let (n, h, m) = (u64::MAX, u16::MAX, u32::MAX);
    let hvm = |n: u64, log_dirty: bool| HvmDomain {
        ncr3: Mfn(n),
        vcpus: vec![],
        log_dirty: log_dirty.then_some(LogDirty {
            bitmap: MfnRange::new(Mfn(n), n),
        }),
    };
    let context = |n: u64, b: u8, m: u32, h: u16| {
        let segment = Segment {
            selector: h,
            attrib: h,
            limit: m,
            base: n,
        };
        let table = DescriptorTable { limit: m, base: n };
        HvmContext {
            regs: vcpu(n, m).regs,
            rip: n,
            rsp: n,
            rflags: n,
            cr0: n,
            cr2: n,
            cr3: n,
            cr4: n,
            efer: n,
            dr6: n,
            dr7: n,
            es: segment,
            cs: segment,
            ss: segment,
            ds: segment,
            fs: segment,
            gs: segment,
            tr: segment,
            ldtr: segment,
            gdtr: table,
            idtr: table,
            cpl: b,
            star: n,
            lstar: n,
            cstar: n,
            sfmask: n,
            kernel_gs_base: n,
            sysenter_cs: n,
            sysenter_esp: n,
            sysenter_eip: n,
            pat: n,
            pending_event: n,
            interrupt_shadow: n != 0,
            fpu: hvlu_types::regs::FxState([[n; 32]; 2]),
        }
    };
    // A 1.3 domain is the 1.2 one and its HVM part (`None`: one byte).
    let domain_1_3 =
        |n: u64, h: u16, m: u32, part: Option<HvmDomain>| size(&domain(n, h, m)) + size(&part);
    let rows: [(&str, usize, usize); 16] = [
        (
            "a memory run",
            size(&run(0, RunKind::Data)),
            size(&run(n, RunKind::L4)),
        ),
        ("a pinned table", size(&pin(0)), size(&pin(n))),
        (
            "an MMIO or identity range",
            size(&MfnRange::new(Mfn(0), 0)),
            size(&MfnRange::new(Mfn(n), n)),
        ),
        ("a vCPU", size(&vcpu(0, 0)), size(&vcpu(n, m))),
        (
            "a domain in 1.0, with an empty name and empty lists",
            domain_1_0(0, 0, 0),
            domain_1_0(n, h, m),
        ),
        (
            "a domain in 1.1, with an empty name and empty lists",
            domain_1_1(0, 0, 0),
            domain_1_1(n, h, m),
        ),
        (
            "a domain in 1.2, with an empty name and empty lists",
            size(&domain(0, 0, 0)),
            size(&domain(n, h, m)),
        ),
        (
            "a PV domain in 1.3, with an empty name and empty lists",
            domain_1_3(0, 0, 0, None),
            domain_1_3(n, h, m, None),
        ),
        (
            "an HVM domain in 1.3, with an empty name and empty lists, log-dirty off",
            domain_1_3(0, 0, 0, Some(hvm(0, false))),
            domain_1_3(n, h, m, Some(hvm(n, false))),
        ),
        (
            "the same, log-dirty on",
            domain_1_3(0, 0, 0, Some(hvm(0, true))),
            domain_1_3(n, h, m, Some(hvm(n, true))),
        ),
        (
            "an HVM vCPU context (1.3)",
            size(&context(0, 0, 0, 0)),
            size(&context(n, u8::MAX, m, h)),
        ),
        (
            "a PCI device (1.2), without BARs",
            size(&device(0, 0)),
            size(&device(h, m)),
        ),
        (
            "a BAR (1.2)",
            size(&bar(0, 0, 0)),
            size(&bar(n, u8::MAX, m)),
        ),
        (
            "a retired domain (1.1), with an empty name",
            size(&retired(0, 0)),
            size(&retired(n, h)),
        ),
        (
            "`globals` in 1.0",
            size(&globals(0, 0)),
            size(&globals(n, h)),
        ),
        (
            "`globals` in 1.1, with an empty command line",
            size(&globals_1_1(0, 0)),
            size(&globals_1_1(n, h)),
        ),
    ];
    let mut out = String::from("| item | bytes |\n|---|---:|\n");
    for (what, min, max) in rows {
        let _ = writeln!(out, "| {what} | {min}–{max} |");
    }
    let v1_2 = golden_v1_2::state();
    let golden = |name: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        std::fs::read(path).expect("golden blob").len()
    };
    out.push('\n');
    out.push_str(&wrap(&format!(
        "A name or a command line adds its bytes and one more length byte \
         from 128 bytes on (a length of 128 to 16383 is a 2-byte varint); \
         each list adds its elements, and its length byte likewise. The \
         golden blobs: `v1_0.bin` (3 domains, 24 runs, 4 vCPUs) is {} bytes, \
         `v1_1.bin` (the same state with the 1.1 additions) is {} bytes, \
         `v1_2.bin` (that state with the 1.2 additions: {} devices, {} BARs, \
         {} MMIO and {} identity ranges) is {} bytes, `v1_3.bin` (that state \
         and an HVM domain with 2 vCPUs, 5 runs and log-dirty on) is {} bytes.",
        golden("v1_0.bin"),
        golden("v1_1.bin"),
        v1_2.devices.len(),
        v1_2.devices.iter().map(|d| d.bars.len()).sum::<usize>(),
        v1_2.domains.iter().map(|d| d.mmio.len()).sum::<usize>(),
        v1_2.domains.iter().map(|d| d.identity.len()).sum::<usize>(),
        golden("v1_2.bin"),
        golden("v1_3.bin")
    )));
    out
}

/// The path of the document.
fn abi_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/abi.md")
}

/// Checks that the part `name` of the document is `text`; with
/// `HVLU_BLESS_DOCS=1`, writes it there instead.
fn check_part(name: &str, text: &str) {
    // The tests run in parallel: one reads and writes the document at a time.
    static DOC: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = DOC.lock().unwrap_or_else(|e| e.into_inner());
    let path = abi_md();
    let doc = std::fs::read_to_string(&path).expect("docs/abi.md");
    let begin = format!("<!-- generated: {name} -->\n");
    let end = format!("<!-- end: {name} -->");
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/abi.md has no line `{}`", begin.trim()))
        + begin.len();
    let stop = start
        + doc[start..]
            .find(&end)
            .unwrap_or_else(|| panic!("docs/abi.md has no line `{end}` after its begin"));
    if doc[start..stop] == *text {
        return;
    }
    if std::env::var_os("HVLU_BLESS_DOCS").is_some_and(|v| v == "1") {
        let updated = format!("{}{text}{}", &doc[..start], &doc[stop..]);
        std::fs::write(&path, updated).expect("write docs/abi.md");
        return;
    }
    panic!(
        "docs/abi.md's part `{name}` is not what the code produces; run \
         `HVLU_BLESS_DOCS=1 cargo test -p handover-abi --test abi_doc` to \
         write it. The code's version:\n{text}"
    );
}

#[test]
fn the_example_state_is_valid_and_decodes_to_itself() {
    let state = example_state();
    let decoded = decode(&encode(V1_2, &state)).expect("the example decodes");
    assert_eq!(decoded.state, state.clone().into());
    // A state without an HVM domain is written as 1.2 even to a reader of
    // 1.3.
    assert_eq!(
        handover_abi::body::writes_as(handover_abi::CURRENT, &decoded.state),
        V1_2
    );
    assert_eq!(decoded.header.producer, producer());
    // The state range holds the blob; the RAM map is what a hypervisor
    // writes: usable RAM only, whole frames.
    assert!(state
        .machine
        .ram_map
        .iter()
        .all(|r| r.kind == RamType::Usable && r.base % 4096 == 0 && r.size % 4096 == 0));
}

#[test]
fn docs_example_state() {
    check_part("example-state", &example_state_part());
}

#[test]
fn docs_example_note() {
    check_part("example-note", &example_note_part());
}

#[test]
fn docs_sizes() {
    check_part("sizes", &sizes_part());
}
