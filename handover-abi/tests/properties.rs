//! Property tests: random valid states round-trip; damaged blobs are refused
//! and never make the decoder panic.

mod common;

use std::collections::BTreeMap;

use common::reseal_body;
use handover_abi::body::current::{
    default_identity, default_mmio, device_memory, ConsoleRing, Domain, DomainFlags, GpRegs,
    GuestReports, HandoverState, HvGlobals, HvmContext, HvmDomain, LogDirty, LuRegion, Machine,
    PciBar, PciDevice, PinnedTable, RamRange, RamType, RetiredDomain, TimeBase, Vcpu, VcpuFlags,
    DEFAULT_HOLE, HOLE_END,
};
use handover_abi::body::{carried, Inexpressible};
use handover_abi::{
    decode, encode, encode_as, encoded_len, encoded_len_as, AbiVersion, BuildId, DecodeError,
    EncodeError, MemRun, Producer, RunKind, StateError, CURRENT, HEADER_SIZE, NO_GPFN,
};
use hvlu_types::hvm::{attrib, cr0, cr4, efer, eventinj};
use hvlu_types::{DomId, Gpfn, HvmContextError, Mfn, MfnRange};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;

#[derive(Clone, Debug)]
struct RunShape {
    count: u64,
    mfn_gap: u64,
    gpfn_gap: u64,
    pinned: bool,
}

#[derive(Clone, Debug)]
struct VcpuShape {
    id_gap: u32,
    flags: u32,
    regs: [u64; 15],
    other: [u64; 7],
    cr3: Index,
}

#[derive(Clone, Debug)]
struct DomShape {
    id_gap: u16,
    privileged: bool,
    name: String,
    kinds: [Vec<RunShape>; 5],
    vcpus: Vec<VcpuShape>,
    mmio: Vec<(u64, u64)>,
    /// Picks of device memory: a BAR, and where in it.
    grants: Vec<(Index, Index, Index)>,
    console: [u32; 4],
    start_info: (Index, Index),
    slack: u64,
    /// 0: the hole moved (to `hole`); 1: the page tables above 4 GiB; 2:
    /// MMIO ranges granted (not the default); 3: the last identity range
    /// of the default left out; else none of these.
    oddity: u8,
    /// Where a moved hole starts, in 2 MiB units (at least 16 MiB).
    hole: u64,
    /// An HVM domain's part: its data runs are its RAM, its page-table
    /// runs and pins are left out.
    hvm: Option<HvmShape>,
}

#[derive(Clone, Debug)]
struct HvmShape {
    /// The nested tables' runs.
    p2m: Vec<RunShape>,
    /// Which of their frames is the root.
    ncr3: Index,
    /// One context for each vCPU (the first as many as it has).
    contexts: Vec<HvmContext>,
    /// Log-dirty on, its bitmap split into two runs at this frame (taken
    /// modulo its size; 0: one run).
    log_dirty: Option<u64>,
}

#[derive(Clone, Debug)]
struct DevShape {
    bdf_gap: u16,
    ids: (u16, u16, u32),
    /// Each BAR: log2 of its size in pages, its flags.
    bars: Vec<(u32, u32)>,
}

fn dev_shape() -> impl Strategy<Value = DevShape> {
    (
        0..40u16,
        (any::<u16>(), any::<u16>(), 0..=0xff_ffffu32),
        vec((0..5u32, 0..4u32), 0..4),
    )
        .prop_map(|(bdf_gap, ids, bars)| DevShape { bdf_gap, ids, bars })
}

fn run_shape(max_count: u64) -> impl Strategy<Value = RunShape> {
    (1..=max_count, 0..16u64, 0..16u64, any::<bool>()).prop_map(
        |(count, mfn_gap, gpfn_gap, pinned)| RunShape {
            count,
            mfn_gap,
            gpfn_gap,
            pinned,
        },
    )
}

fn vcpu_shape() -> impl Strategy<Value = VcpuShape> {
    (
        0..3u32,
        0..4u32,
        any::<[u64; 15]>(),
        any::<[u64; 7]>(),
        any::<Index>(),
    )
        .prop_map(|(id_gap, flags, regs, other, cr3)| VcpuShape {
            id_gap,
            flags,
            regs,
            other,
            cr3,
        })
}

/// The general registers of an array, in the order of [`GpRegs`].
fn gp_regs(regs: [u64; 15]) -> GpRegs {
    let [rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15] = regs;
    GpRegs {
        rax,
        rbx,
        rcx,
        rdx,
        rsi,
        rdi,
        rbp,
        r8,
        r9,
        r10,
        r11,
        r12,
        r13,
        r14,
        r15,
    }
}

/// An HVM vCPU's context `VMRUN` enters (`HvmContext::check` passes it):
/// the boot contract's 32-bit protected mode with paging off, or a 64-bit
/// kernel or user in long mode; random registers, control-register bits
/// among the defined ones, an event of each defined type or none, a PAT of
/// memory types.
fn hvm_context() -> impl Strategy<Value = HvmContext> {
    (
        (any::<bool>(), any::<[u64; 15]>()),
        any::<[u64; 4]>(),
        (any::<u64>(), any::<u64>(), any::<bool>()),
        (any::<u32>(), any::<u32>(), 0..=3u8, any::<bool>()),
        (0..6u8, any::<u8>(), any::<u32>()),
        proptest::array::uniform8(0..6usize),
        any::<[u64; 10]>(),
    )
        .prop_map(
            |(
                (long, regs),
                [rip, rsp, cr2, cr3],
                (cr4_bits, efer_bits, caches_off),
                (dr6, dr7, cpl, interrupt_shadow),
                (event, vector, error),
                pat,
                msrs,
            )| {
                let mut c = HvmContext::flat_protected(rip & 0xffff_ffff, 0x08, 0x10);
                c.regs = gp_regs(regs);
                c.rsp = rsp;
                c.cr2 = cr2;
                c.cr3 = cr3 & ((1 << 52) - 1);
                c.cr4 = cr4_bits & cr4::DEFINED;
                c.efer = efer_bits & (efer::SCE | efer::NXE);
                if caches_off {
                    c.cr0 |= cr0::CD | cr0::NW;
                }
                (c.dr6, c.dr7) = (u64::from(dr6), u64::from(dr7));
                (c.cpl, c.interrupt_shadow) = (cpl, interrupt_shadow);
                if long {
                    c.cr0 |= cr0::MP | cr0::NE | cr0::WP | cr0::PG;
                    c.cr4 |= cr4::PAE;
                    c.efer |= efer::LME | efer::LMA;
                    c.cs.attrib = attrib::CODE32 & !attrib::D | attrib::L;
                    // Sign-extended from bit 47: canonical with 4 and 5
                    // levels.
                    c.rip = ((rip << 16) as i64 >> 16) as u64;
                }
                let (vector, error) = (u64::from(vector), u64::from(error) << 32);
                let ty = |t: u64| eventinj::VALID | t << eventinj::TYPE_SHIFT;
                c.pending_event = match event {
                    0 => 0,
                    1 => ty(eventinj::TYPE_INTR) | vector,
                    2 => ty(eventinj::TYPE_NMI) | 2,
                    // An exception (0..=30 but the NMI) with its error code.
                    3 => match vector % 31 {
                        2 => ty(eventinj::TYPE_EXCEPTION) | 14 | eventinj::EV | error,
                        v => ty(eventinj::TYPE_EXCEPTION) | v,
                    },
                    4 => ty(eventinj::TYPE_SOFT) | vector,
                    // Not valid: whatever else it holds is ignored.
                    _ => (error >> 32) & !eventinj::VALID,
                };
                const MEMORY_TYPES: [u64; 6] = [0, 1, 4, 5, 6, 7];
                c.pat = pat
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| MEMORY_TYPES[t] << (8 * i))
                    .sum();
                [
                    c.star,
                    c.lstar,
                    c.cstar,
                    c.sfmask,
                    c.kernel_gs_base,
                    c.sysenter_cs,
                    c.sysenter_esp,
                    c.sysenter_eip,
                    c.fs.base,
                    c.gs.base,
                ] = msrs;
                c
            },
        )
}

fn hvm_shape() -> impl Strategy<Value = HvmShape> {
    (
        vec(run_shape(8), 1..3),
        any::<Index>(),
        vec(hvm_context(), 4),
        proptest::option::of(0..4u64),
    )
        .prop_map(|(p2m, ncr3, contexts, log_dirty)| HvmShape {
            p2m,
            ncr3,
            contexts,
            log_dirty,
        })
}

fn dom_shape() -> impl Strategy<Value = DomShape> {
    let kinds = (
        vec(run_shape(64), 1..4),
        vec(run_shape(8), 0..3),
        vec(run_shape(4), 0..3),
        vec(run_shape(2), 0..2),
        vec(run_shape(2), 1..3),
    );
    (
        (0..3u16, any::<bool>(), "[a-z0-9 -]{0,32}"),
        kinds,
        vec(vcpu_shape(), 0..4),
        vec((0..0x1000u64, 1..16u64), 0..3),
        vec(any::<(Index, Index, Index)>(), 0..3),
        any::<[u32; 4]>(),
        (any::<Index>(), any::<Index>()),
        0..100u64,
        (0..12u8, 8..2048u64),
        proptest::option::weighted(0.3, hvm_shape()),
    )
        .prop_map(
            |(
                (id_gap, privileged, name),
                (d, l1, l2, l3, l4),
                vcpus,
                mmio,
                grants,
                console,
                start_info,
                slack,
                (oddity, hole),
                hvm,
            )| {
                DomShape {
                    id_gap,
                    privileged,
                    name,
                    kinds: [d, l1, l2, l3, l4],
                    vcpus,
                    mmio,
                    grants,
                    console,
                    start_info,
                    slack,
                    oddity,
                    hole,
                    hvm,
                }
            },
        )
}

/// Lays out the devices: bus/device/function growing, each BAR aligned to
/// its size, 32-bit ones from 3 GiB up (in every hole), 64-bit ones from
/// 1 TiB up.
fn build_devices(shapes: Vec<DevShape>) -> Vec<PciDevice> {
    let (mut low, mut high) = (0xc000_0000u64, 1u64 << 40);
    let mut bdf = 0u16;
    shapes
        .into_iter()
        .map(|shape| {
            bdf += shape.bdf_gap + 1;
            let mut index = 0u8;
            let bars = shape
                .bars
                .iter()
                .filter_map(|&(pages, flags)| {
                    let bar = PciBar {
                        index,
                        base: 0,
                        size: 4096 << pages,
                        flags,
                    };
                    index += bar.registers();
                    let next = if flags & PciBar::MEM64 != 0 {
                        &mut high
                    } else {
                        &mut low
                    };
                    let base = next.next_multiple_of(bar.size);
                    *next = base + bar.size;
                    (index <= 6).then_some(PciBar { base, ..bar })
                })
                .collect();
            PciDevice {
                bdf,
                vendor: shape.ids.0,
                device: shape.ids.1,
                class: shape.ids.2,
                bars,
            }
        })
        .collect()
}

const KINDS: [RunKind; 5] = [
    RunKind::Data,
    RunKind::L1,
    RunKind::L2,
    RunKind::L3,
    RunKind::L4,
];

/// Lays the shapes out in a fixed machine: usable RAM below 640 KiB and
/// from 1 MiB to 2 GiB, the region at 32 MiB, domain memory from 48 MiB up,
/// MMIO at 3 GiB.
fn build(
    shapes: Vec<DomShape>,
    devices: Vec<DevShape>,
    reverse: bool,
    next_gap: u16,
    time: (u64, u64, u64),
) -> HandoverState {
    let devices = build_devices(devices);
    let bars: Vec<MfnRange> = devices
        .iter()
        .flat_map(|d| d.bars.iter())
        .map(PciBar::frames)
        .collect();
    let mut mfn = 0x3000u64;
    let mut last_id: Option<u16> = None;
    let mut domains = Vec::new();
    for shape in shapes {
        let id = match last_id {
            None => shape.id_gap,
            Some(prev) => prev + 1 + shape.id_gap,
        };
        last_id = Some(id);
        let hole = if shape.oddity == 0 {
            Gpfn(shape.hole * 512)
        } else {
            DEFAULT_HOLE
        };
        let mut gpfn = 0u64;
        let mut runs = Vec::new();
        let mut pinned = Vec::new();
        // An HVM domain has data runs only (and its own below); with the
        // oddity 1 its last data run is above 4 GiB.
        let kinds = match shape.hvm {
            Some(_) => 1,
            None => KINDS.len(),
        };
        for (kind, list) in KINDS.iter().zip(&shape.kinds).take(kinds) {
            if shape.oddity == 1 && *kind == RunKind::L1 {
                gpfn = HOLE_END.0;
            }
            for (i, r) in list.iter().enumerate() {
                if shape.oddity == 1 && shape.hvm.is_some() && i > 0 && i + 1 == list.len() {
                    gpfn = HOLE_END.0;
                }
                let run = MemRun {
                    first_mfn: Mfn(mfn + r.mfn_gap),
                    count: r.count,
                    first_gpfn: Gpfn(gpfn + r.gpfn_gap),
                    kind: *kind,
                };
                mfn = run.first_mfn.0 + r.count;
                gpfn = run.first_gpfn.0 + r.count;
                if kind.is_page_table() && r.pinned {
                    pinned.push(PinnedTable {
                        mfn: run.first_mfn,
                        level: *kind,
                    });
                }
                runs.push(run);
            }
        }
        // Frames of the runs with guest frames (an HVM domain's nested
        // tables and bitmap come after).
        let frames: u64 = runs.iter().map(|r| r.count).sum();
        let p2m_start = runs.len();
        if let Some(h) = &shape.hvm {
            for r in &h.p2m {
                let run = MemRun {
                    first_mfn: Mfn(mfn + r.mfn_gap),
                    count: r.count,
                    first_gpfn: NO_GPFN,
                    kind: RunKind::P2m,
                };
                mfn = run.first_mfn.0 + r.count;
                runs.push(run);
            }
        }
        let ncr3 = shape.hvm.as_ref().map(|h| {
            let p2m = &runs[p2m_start..];
            let total: u64 = p2m.iter().map(|r| r.count).sum();
            let mut at = h.ncr3.index(total as usize) as u64;
            let run = p2m
                .iter()
                .find(|r| {
                    let here = at < r.count;
                    if !here {
                        at -= r.count;
                    }
                    here
                })
                .expect("a frame of the P2m runs");
            Mfn(run.first_mfn.0 + at)
        });
        let pick = |kind: RunKind, which: &Index| {
            let of_kind: Vec<&MemRun> = runs.iter().filter(|r| r.kind == kind).collect();
            *of_kind[which.index(of_kind.len())]
        };
        let data_run = pick(RunKind::Data, &shape.start_info.0);
        let start_info =
            Gpfn(data_run.first_gpfn.0 + shape.start_info.1.index(data_run.count as usize) as u64);
        let mut vcpu_id = 0u32;
        let vcpus: Vec<Vcpu> = shape
            .vcpus
            .iter()
            .map(|v| {
                vcpu_id += v.id_gap + 1;
                let [rip, rflags, rsp, fs_base, gs_base, kernel_gs_base, pending_events] = v.other;
                if let Some(ncr3) = ncr3 {
                    return HvmDomain::blank_vcpu(
                        ncr3,
                        vcpu_id,
                        VcpuFlags(v.flags),
                        pending_events,
                    );
                }
                Vcpu {
                    id: vcpu_id,
                    regs: gp_regs(v.regs),
                    rip,
                    rflags,
                    rsp,
                    cr3: {
                        let root = pick(RunKind::L4, &v.cr3);
                        Mfn(root.first_mfn.0 + v.cr3.index(root.count as usize) as u64)
                    },
                    fs_base,
                    gs_base,
                    kernel_gs_base,
                    pending_events,
                    flags: VcpuFlags(v.flags),
                }
            })
            .collect();
        let mut flags = match shape.hvm {
            Some(_) => DomainFlags(0),
            None => DomainFlags::PV,
        };
        if shape.privileged {
            flags = flags.union(DomainFlags::PRIVILEGED);
        }
        let [in_cons, in_prod, out_cons, out_prod] = shape.console;
        // Every guest frame is in the guest RAM (the last run ends highest:
        // gpfns only grow; the low runs end far below any hole).
        let max_frames = if gpfn >= HOLE_END.0 {
            hole.0 + (gpfn - HOLE_END.0)
        } else {
            frames.max(gpfn)
        } + shape.slack;
        let hvm = shape.hvm.as_ref().zip(ncr3).map(|(h, ncr3)| {
            let log_dirty = h.log_dirty.map(|split| {
                let bitmap = MfnRange::new(Mfn(mfn), LogDirty::frames_for(max_frames));
                let split = split % bitmap.count;
                for (start, count) in [(0, split), (split, bitmap.count - split)] {
                    if count > 0 {
                        runs.push(MemRun {
                            first_mfn: Mfn(bitmap.start.0 + start),
                            count,
                            first_gpfn: NO_GPFN,
                            kind: RunKind::LogDirty,
                        });
                    }
                }
                mfn = bitmap.end();
                LogDirty { bitmap }
            });
            HvmDomain {
                ncr3,
                vcpus: h.contexts[..vcpus.len()].to_vec(),
                log_dirty,
            }
        });
        let (mmio, identity) = if shape.oddity == 2 {
            // Grants: device memory when devices are listed, else any
            // frames above RAM; mapped in the hole where they lie in it.
            let mmio: Vec<MfnRange> = if devices.is_empty() {
                shape
                    .mmio
                    .iter()
                    .map(|&(at, count)| MfnRange::new(Mfn(0xc0000 + at), count))
                    .collect()
            } else {
                shape
                    .grants
                    .iter()
                    .filter(|_| !bars.is_empty())
                    .map(|(bar, skip, count)| {
                        let b = bars[bar.index(bars.len())];
                        let skip = skip.index(b.count as usize) as u64;
                        let count = 1 + count.index((b.count - skip) as usize) as u64;
                        MfnRange::new(Mfn(b.start.0 + skip), count)
                    })
                    .collect()
            };
            let mut identity: Vec<MfnRange> = mmio
                .iter()
                .copied()
                .filter(|m| m.start.0 >= hole.0 && m.end() <= HOLE_END.0)
                .collect();
            identity.sort();
            identity.dedup_by(|b, a| b.start.0 < a.end());
            (mmio, identity)
        } else {
            let mut identity = default_identity(flags, &devices, hole);
            if shape.oddity == 3 {
                // One BAR fewer mapped in the hole than the default.
                identity.pop();
            }
            (default_mmio(flags, &devices), identity)
        };
        domains.push(Domain {
            id: DomId(id),
            flags,
            name: shape.name,
            max_frames,
            runs,
            pinned,
            mmio,
            start_info,
            vcpus,
            console: ConsoleRing {
                in_cons,
                in_prod,
                out_cons,
                out_prod,
            },
            paused: shape.slack % 3 == 1,
            reports: GuestReports {
                checks: u64::from(in_cons) << 20 | u64::from(out_prod),
                mismatches: u64::from(in_prod % 3),
                expected_refusals: u64::from(out_cons),
                unexpected_refusals: shape.slack % 2,
                regressions: 0,
                unexpected_faults: u64::from(in_prod) * 7,
                expect_fault: shape.privileged,
            },
            hole,
            identity,
            hvm,
        });
    }
    let retired = domains
        .iter()
        .filter(|d| d.reports.mismatches == 1)
        .map(|d| RetiredDomain {
            id: DomId(d.id.0.wrapping_add(1000)),
            name: d.name.clone(),
            reports: d.reports,
        })
        .collect();
    if reverse {
        domains.reverse();
    }
    HandoverState {
        machine: Machine {
            ram_map: vec![
                RamRange {
                    base: 0,
                    size: 0x9_fc00,
                    kind: RamType::Usable,
                },
                RamRange {
                    base: 0xf_0000,
                    size: 0x1_0000,
                    kind: RamType::Reserved,
                },
                RamRange {
                    base: 0x10_0000,
                    size: 0x7ff0_0000,
                    kind: RamType::Usable,
                },
            ],
            region: LuRegion {
                base: 0x0200_0000,
                size: 0x0100_0000,
                image: MfnRange::new(Mfn(0x2000), 0x400),
                // Room for any generated blob.
                state: MfnRange::new(Mfn(0x2400), 0x100),
            },
        },
        globals: HvGlobals {
            next_domid: DomId(last_id.map_or(0, |id| id + 1) + next_gap),
            time: TimeBase {
                tsc: time.0,
                tsc_khz: time.1,
                system_time_ns: time.2,
            },
            cmdline: format!("loglvl=info timer_hz={}", time.0 % 1000),
        },
        domains,
        retired,
        devices,
    }
}

fn valid_state() -> impl Strategy<Value = HandoverState> {
    (
        vec(dom_shape(), 0..5),
        vec(dev_shape(), 0..4),
        any::<bool>(),
        0..3u16,
        (any::<u64>(), 1..=u64::MAX, any::<u64>()),
    )
        .prop_map(|(shapes, devices, reverse, next_gap, time)| {
            build(shapes, devices, reverse, next_gap, time)
        })
}

/// What `version` (1.0, 1.1 or 1.2) cannot say of `state`, found as the
/// writer must find it — paused domains first for 1.0, then domain by
/// domain whether it is an HVM domain and (before 1.2) its hole, its RAM
/// above the hole, its MMIO ranges and its identity entries — against the
/// defaults computed on their own.
fn cannot_say(version: AbiVersion, state: &HandoverState) -> Option<Inexpressible> {
    if version.minor == 0 {
        if let Some(d) = state.domains.iter().find(|d| d.paused) {
            return Some(Inexpressible::PausedDomain(d.id));
        }
    }
    state.domains.iter().find_map(|d| {
        let domain = d.id;
        if d.hvm.is_some() {
            return Some(Inexpressible::HvmDomain { version, domain });
        }
        if version.minor == 2 {
            return None;
        }
        if d.hole != DEFAULT_HOLE {
            return Some(Inexpressible::HoleNotDefault {
                version,
                domain,
                hole: d.hole,
            });
        }
        if let Some(gpfn) = d
            .runs
            .iter()
            .map(|r| r.first_gpfn)
            .filter(|&g| g >= d.hole)
            .min()
        {
            return Some(Inexpressible::RamAboveHole {
                version,
                domain,
                gpfn,
            });
        }
        if d.mmio != default_mmio(d.flags, &state.devices) {
            return Some(Inexpressible::MmioNotDefault { version, domain });
        }
        if d.identity != default_identity(d.flags, &state.devices, d.hole) {
            return Some(Inexpressible::IdentityNotDefault { version, domain });
        }
        None
    })
}

fn blob(state: &HandoverState) -> Vec<u8> {
    let mut buf = vec![0u8; encoded_len(state).expect("len")];
    let producer = Producer::this_build(BuildId([7; 16]));
    encode(state, &producer, &mut buf).expect("encode");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_valid_states_round_trip(state in valid_state()) {
        prop_assert_eq!(state.validate(), Ok(()));
        let b = blob(&state);
        let decoded = decode(&b).expect("a valid state decodes");
        prop_assert_eq!(decoded.header.version, CURRENT);
        prop_assert_eq!(decoded.state, state);
    }

    #[test]
    fn a_context_vmrun_would_refuse_is_named(
        state in valid_state(),
        which in any::<Index>(),
        bit in 12..64u32,
    ) {
        // One HVM vCPU's EFER gets a bit that is not the guest's: the
        // state is refused, naming that domain and vCPU, on both sides
        // (validation, and the decoder of the blob).
        let mut state = state;
        let targets: Vec<(usize, usize)> = state
            .domains
            .iter()
            .enumerate()
            .flat_map(|(d, dom)| (0..dom.hvm.as_ref().map_or(0, |h| h.vcpus.len())).map(move |v| (d, v)))
            .collect();
        prop_assume!(!targets.is_empty());
        let (d, v) = targets[which.index(targets.len())];
        let domain = &mut state.domains[d];
        let ctx = &mut domain.hvm.as_mut().expect("an HVM domain").vcpus[v];
        ctx.efer |= 1 << bit;
        let expected = StateError::BadHvmContext {
            domain: domain.id,
            vcpu: domain.vcpus[v].id,
            error: HvmContextError::EferReserved { efer: ctx.efer },
        };
        prop_assert_eq!(state.validate(), Err(expected));
        prop_assert_eq!(decode(&blob(&state)).err(), Some(DecodeError::Invalid(expected)));
    }

    #[test]
    fn random_states_written_as_older_minors_keep_what_a_guest_sees(
        state in valid_state(),
        minor in 0..3u16,
    ) {
        let version = AbiVersion::new(1, minor);
        let producer = Producer::this_build(BuildId([7; 16]));
        match (cannot_say(version, &state), encoded_len_as(version, &state)) {
            (Some(what), Err(e)) => {
                prop_assert_eq!(e, EncodeError::Inexpressible { version, what });
            }
            (None, Ok(len)) => {
                let mut buf = vec![0u8; len];
                encode_as(version, &state, &producer, &mut buf).expect("encode");
                let back = decode(&buf).expect("decode").state;
                // What the reader gets: 1.2 all of it; before 1.2 no
                // device list, the default hole, no identity entry; for
                // 1.0 no records either.
                let mut expected = state.clone();
                if minor < 2 {
                    expected.devices.clear();
                    for d in &mut expected.domains {
                        d.identity.clear();
                    }
                }
                if minor == 0 {
                    expected.globals.cmdline.clear();
                    expected.retired.clear();
                    for d in &mut expected.domains {
                        d.reports = GuestReports::default();
                    }
                }
                prop_assert_eq!(&back, &expected);
                prop_assert_eq!(&*carried(version, &state), &expected);
            }
            (what, len) => prop_assert!(false, "refusal {what:?} but {len:?}"),
        }
    }

    #[test]
    fn the_device_memory_is_sorted_merged_and_every_bar_in_it(state in valid_state()) {
        let memory = device_memory(&state.devices);
        prop_assert!(memory.windows(2).all(|w| w[0].end() < w[1].start.0));
        let bar_frames: u64 = state
            .devices
            .iter()
            .flat_map(|d| d.bars.iter())
            .map(|b| {
                let f = b.frames();
                prop_assert!(memory.iter().any(|m| m.start <= f.start && f.end() <= m.end()));
                Ok(f.count)
            })
            .sum::<Result<u64, TestCaseError>>()?;
        prop_assert_eq!(memory.iter().map(|m| m.count).sum::<u64>(), bar_frames);
    }

    #[test]
    fn a_changed_body_byte_is_always_caught(state in valid_state(), at in any::<Index>(), xor in 1..=255u8) {
        let mut b = blob(&state);
        let i = HEADER_SIZE + at.index(b.len() - HEADER_SIZE);
        b[i] ^= xor;
        let is_crc_mismatch = matches!(decode(&b), Err(DecodeError::BodyCrcMismatch { .. }));
        prop_assert!(is_crc_mismatch);
    }

    #[test]
    fn random_body_flips_are_caught(state in valid_state(), flips in vec((any::<Index>(), 1..=255u8), 1..16)) {
        let mut b = blob(&state);
        let body = b.len() - HEADER_SIZE;
        let mut merged = BTreeMap::new();
        for (at, xor) in flips {
            *merged.entry(HEADER_SIZE + at.index(body)).or_insert(0u8) ^= xor;
        }
        prop_assume!(merged.values().any(|&x| x != 0));
        for (i, x) in merged {
            b[i] ^= x;
        }
        let is_crc_mismatch = matches!(decode(&b), Err(DecodeError::BodyCrcMismatch { .. }));
        prop_assert!(is_crc_mismatch);
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused(state in valid_state(), at in any::<Index>(), xor in 1..=255u8) {
        let mut b = blob(&state);
        let i = at.index(b.len());
        b[i] ^= xor;
        prop_assert!(decode(&b).is_err());
    }

    #[test]
    fn every_cut_is_refused(state in valid_state(), at in any::<Index>()) {
        let b = blob(&state);
        let cut = at.index(b.len());
        prop_assert!(decode(&b[..cut]).is_err());
    }

    #[test]
    fn resealed_corruption_never_panics(state in valid_state(), flips in vec((any::<Index>(), any::<u8>()), 1..8)) {
        // The checksums cannot see this: the decoder and the invariants must
        // cope with whatever postcard makes of it.
        let mut b = blob(&state);
        let body = b.len() - HEADER_SIZE;
        for (at, value) in flips {
            b[HEADER_SIZE + at.index(body)] = value;
        }
        reseal_body(&mut b);
        if let Ok(decoded) = decode(&b) {
            prop_assert_eq!(decoded.state.validate(), Ok(()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_sealed_bodies_never_panic(body in vec(any::<u8>(), 0..512)) {
        let mut b = blob(&common::sample())[..HEADER_SIZE].to_vec();
        b.extend_from_slice(&body);
        reseal_body(&mut b);
        let _ = decode(&b);
    }
}

#[test]
fn the_generator_makes_pv_and_hvm_domains_with_and_without_log_dirty() {
    // The properties above see every kind of domain: PV, HVM without and
    // with log-dirty, HVM vCPUs in both modes.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = valid_state();
    let (mut pv, mut hvm, mut log_dirty, mut long, mut vcpus) = (0, 0, 0, 0, 0);
    for _ in 0..64 {
        let state = strategy.new_tree(&mut runner).expect("a state").current();
        for h in state.domains.iter().map(|d| d.hvm.as_ref()) {
            let Some(h) = h else {
                pv += 1;
                continue;
            };
            hvm += 1;
            log_dirty += usize::from(h.log_dirty.is_some());
            vcpus += h.vcpus.len();
            long += h.vcpus.iter().filter(|c| c.efer & efer::LMA != 0).count();
        }
    }
    assert!(
        pv > 0 && hvm > log_dirty && log_dirty > 0,
        "{pv} PV, {hvm} HVM ({log_dirty} log-dirty)"
    );
    assert!(
        vcpus > long && long > 0,
        "{vcpus} HVM vCPUs, {long} in long mode"
    );
}
