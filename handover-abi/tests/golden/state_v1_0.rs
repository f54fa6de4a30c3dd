//! The state encoded in `v1_0.bin`, defined once: `examples/make-golden.rs`
//! encodes it and `tests/golden.rs` compares the committed blob with it.
//!
//! Frozen with the blob: never edit this file (see `README.md` here).

use handover_abi::body::v1_0::{
    ConsoleRing, Domain, DomainFlags, GpRegs, HandoverState, HvGlobals, LuRegion, Machine,
    PinnedTable, RamRange, RamType, TimeBase, Vcpu, VcpuFlags,
};
use handover_abi::{AbiVersion, BuildId, MemRun, Producer, RunKind};
use hvlu_types::{DomId, Gpfn, Mfn, MfnRange};

/// The version of the blob.
pub const VERSION: AbiVersion = AbiVersion::new(1, 0);

/// Who wrote the blob.
pub fn producer() -> Producer {
    Producer {
        build_id: BuildId(*b"hvlu-golden-v1.0"),
        abi: VERSION,
    }
}

fn run(first_mfn: u64, count: u64, first_gpfn: u64, kind: RunKind) -> MemRun {
    MemRun {
        first_mfn: Mfn(first_mfn),
        count,
        first_gpfn: Gpfn(first_gpfn),
        kind,
    }
}

fn pin(mfn: u64, level: RunKind) -> PinnedTable {
    PinnedTable {
        mfn: Mfn(mfn),
        level,
    }
}

fn ram(base: u64, size: u64, kind: RamType) -> RamRange {
    RamRange { base, size, kind }
}

/// Registers that differ from each other and from vCPU to vCPU, small and
/// large, so that varints of every length appear.
fn regs(seed: u64) -> GpRegs {
    let r = |i: u64| {
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(i as u32 * 4)
            ^ i
    };
    GpRegs {
        rax: r(0),
        rbx: 1,
        rcx: 0x7f,
        rdx: 0x80,
        rsi: r(4),
        rdi: r(5),
        rbp: 0x0000_7fff_ffff_e000,
        r8: r(7),
        r9: 0,
        r10: u64::MAX,
        r11: 0x202,
        r12: r(11),
        r13: r(12),
        r14: r(13),
        r15: seed,
    }
}

fn vcpu(id: u32, cr3: u64, flags: VcpuFlags, seed: u64) -> Vcpu {
    Vcpu {
        id,
        regs: regs(seed),
        rip: 0x0000_0000_0040_1000 + seed * 0x10,
        rflags: 0x246,
        rsp: 0x0000_7fff_ffff_f000 - seed * 0x100,
        cr3: Mfn(cr3),
        fs_base: 0x0000_7f00_0000_0000 + seed,
        gs_base: 0,
        kernel_gs_base: 0xffff_8000_0000_0000 | seed << 12,
        pending_events: 1 << (seed % 64) | 1,
        flags,
    }
}

/// The golden v1.0 state: dom0 and two domUs.
pub fn state() -> HandoverState {
    use RunKind::{Data, L1, L2, L3, L4};
    let pv = DomainFlags::PV;
    HandoverState {
        machine: Machine {
            ram_map: vec![
                ram(0x0, 0x9_fc00, RamType::Usable),
                ram(0x9_fc00, 0x400, RamType::Reserved),
                ram(0xf_0000, 0x1_0000, RamType::Reserved),
                ram(0x10_0000, 0x3fe0_0000, RamType::Usable),
                ram(0x3ff0_0000, 0x10_0000, RamType::AcpiReclaimable),
                ram(0xfeff_c000, 0x4000, RamType::Reserved),
                ram(0xfffc_0000, 0x4_0000, RamType::Other(7)),
                ram(0x1_0000_0000, 0x4000_0000, RamType::Usable),
            ],
            region: LuRegion {
                base: 0x0200_0000,
                size: 0x0100_0000,
                image: MfnRange::new(Mfn(0x2800), 0x300),
                state: MfnRange::new(Mfn(0x2c00), 0x10),
            },
        },
        globals: HvGlobals {
            next_domid: DomId(4),
            time: TimeBase {
                tsc: 0x0000_1234_5678_9abc,
                tsc_khz: 2_100_000,
                system_time_ns: 123_456_789_000,
            },
        },
        domains: vec![
            Domain {
                id: DomId(0),
                flags: DomainFlags::PRIVILEGED.union(pv),
                name: "dom0".into(),
                max_frames: 0x1_0000,
                runs: vec![
                    run(0x4000, 0x800, 0x0, Data),
                    run(0x5000, 0x400, 0x800, Data),
                    run(0x10_0000, 0x200, 0xc00, Data),
                    run(0x4800, 4, 0x1000, L1),
                    run(0x4900, 2, 0x1004, L1),
                    run(0x4a00, 2, 0x1010, L2),
                    run(0x4a10, 1, 0x1012, L2),
                    run(0x4b00, 1, 0x1020, L3),
                    run(0x4b10, 1, 0x1021, L3),
                    run(0x4c00, 1, 0x1030, L4),
                    run(0x4c10, 1, 0x1031, L4),
                ],
                pinned: vec![pin(0x4c00, L4), pin(0x4c10, L4), pin(0x4b10, L3)],
                mmio: vec![
                    MfnRange::new(Mfn(0xfebf0), 0x10),
                    MfnRange::new(Mfn(0xfed00), 1),
                ],
                start_info: Gpfn(0x10),
                vcpus: vec![
                    vcpu(0, 0x4c00, VcpuFlags::ONLINE, 1),
                    vcpu(1, 0x4c10, VcpuFlags::ONLINE.union(VcpuFlags::BLOCKED), 2),
                ],
                console: ConsoleRing {
                    in_cons: 17,
                    in_prod: 17,
                    out_cons: 4000,
                    out_prod: 4107,
                },
            },
            Domain {
                id: DomId(1),
                flags: pv,
                name: "domu-1".into(),
                max_frames: 0x2000,
                runs: vec![
                    run(0x6000, 0x1000, 0x0, Data),
                    run(0x8000, 0x100, 0x1000, Data),
                    run(0x7000, 8, 0x1100, L1),
                    run(0x7010, 2, 0x1108, L1),
                    run(0x7020, 1, 0x1110, L2),
                    run(0x7028, 1, 0x1111, L2),
                    run(0x7030, 1, 0x1120, L3),
                    run(0x7040, 1, 0x1130, L4),
                ],
                pinned: vec![pin(0x7040, L4)],
                mmio: vec![],
                start_info: Gpfn(0xfff),
                vcpus: vec![vcpu(0, 0x7040, VcpuFlags::ONLINE, 3)],
                console: ConsoleRing {
                    in_cons: 0,
                    in_prod: 3,
                    out_cons: 0xffff_fff0,
                    out_prod: 0x0000_0010,
                },
            },
            Domain {
                id: DomId(3),
                flags: pv,
                name: "domu-2: above 4 GiB".into(),
                max_frames: 0x800,
                runs: vec![
                    run(0x10_0400, 0x400, 0x0, Data),
                    run(0x9000, 2, 0x400, L1),
                    run(0x9002, 1, 0x402, L2),
                    run(0x9003, 1, 0x403, L3),
                    run(0x9004, 1, 0x404, L4),
                ],
                pinned: vec![pin(0x9004, L4)],
                mmio: vec![],
                start_info: Gpfn(0x0),
                vcpus: vec![vcpu(0, 0x9004, VcpuFlags::default(), 4)],
                console: ConsoleRing::default(),
            },
        ],
    }
}
