//! The state encoded in `v1_3.bin`, defined once: `examples/make-golden.rs`
//! encodes it and `tests/golden.rs` compares the committed blob with it.
//!
//! It is the v1.2 golden state (three PV domains) with an HVM domain added:
//! d4, two vCPUs (one in long mode, one halted in real mode with an event
//! to inject and an interrupt shadow), RAM below and above a hole at
//! 64 MiB, eight nested page-table frames in two runs, log-dirty on with
//! its two-frame bitmap.
//!
//! Frozen with the blob: never edit this file (see `README.md` here).

use handover_abi::body::v1_3::{
    Domain, DomainFlags, HandoverState, HvmDomain, LogDirty, VcpuFlags,
};
use handover_abi::{AbiVersion, BuildId, MemRun, Producer, RunKind, NO_GPFN};
use hvlu_types::regs::{DescriptorTable, FxState, HvmContext, Segment};
use hvlu_types::{DomId, GpRegs, Gpfn, Mfn, MfnRange};

#[path = "state_v1_2.rs"]
#[allow(
    dead_code,
    reason = "only the v1.2 state is used here, not its version or producer"
)]
pub mod v1_2;

/// The version of the blob.
pub const VERSION: AbiVersion = AbiVersion::new(1, 3);

/// Who wrote the blob.
pub fn producer() -> Producer {
    Producer {
        build_id: BuildId(*b"hvlu-golden-v1.3"),
        abi: VERSION,
    }
}

fn run(first_mfn: u64, count: u64, first_gpfn: Gpfn, kind: RunKind) -> MemRun {
    MemRun {
        first_mfn: Mfn(first_mfn),
        count,
        first_gpfn,
        kind,
    }
}

fn segment(selector: u16, attrib: u16, limit: u32, base: u64) -> Segment {
    Segment {
        selector,
        attrib,
        limit,
        base,
    }
}

/// vCPU 0: a 64-bit kernel running in ring 0.
fn long_mode() -> HvmContext {
    let data = segment(0x10, 0x0c93, 0xffff_ffff, 0);
    HvmContext {
        regs: GpRegs {
            rax: 0x1122_3344,
            rbx: 7,
            rcx: 0xffff_ffff_8000_1000,
            rdi: 0x4000,
            r15: u64::MAX,
            ..GpRegs::default()
        },
        rip: 0xffff_ffff_8010_0abc,
        rsp: 0xffff_ffff_8020_0000,
        rflags: 0x246,
        cr0: 0x8005_0033,
        cr2: 0x7fff_f000,
        cr3: 0x10_0000,
        cr4: 0x6a0,
        efer: 0xd01,
        dr6: 0xffff_0ff0,
        dr7: 0x400,
        es: data,
        cs: segment(0x08, 0x0a9b, 0xffff_ffff, 0),
        ss: data,
        ds: data,
        fs: segment(0, 0, 0, 0x7f00_0000_1000),
        gs: segment(0, 0, 0, 0xffff_ffff_8030_0000),
        tr: segment(0x28, 0x008b, 0x67, 0xffff_ffff_8040_0000),
        ldtr: segment(0, 0x0082, 0, 0),
        gdtr: DescriptorTable {
            limit: 0x37,
            base: 0xffff_ffff_8040_1000,
        },
        idtr: DescriptorTable {
            limit: 0xfff,
            base: 0xffff_ffff_8040_2000,
        },
        cpl: 0,
        star: 0x0023_0010_0000_0000,
        lstar: 0xffff_ffff_8010_0000,
        cstar: 0,
        sfmask: 0x4_7700,
        kernel_gs_base: 0x7f00_0000_2000,
        sysenter_cs: 0,
        sysenter_esp: 0,
        sysenter_eip: 0,
        pat: 0x0007_0406_0007_0406,
        pending_event: 0,
        interrupt_shadow: false,
        // x87 and SSE in use: FCW and MXCSR at their reset values, ST0
        // holding 1.0 (mantissa, exponent), XMM0 a pattern.
        fpu: {
            let mut fpu = FxState::RESET;
            fpu.0[0][4] = 0x8000_0000_0000_0000;
            fpu.0[0][5] = 0x3fff;
            fpu.0[0][20] = 0x0123_4567_89ab_cdef;
            fpu.0[0][21] = 0xfedc_ba98_7654_3210;
            fpu
        },
    }
}

/// vCPU 1: halted at the reset vector in real mode, an external
/// interrupt (vector 0x20) to inject, in an interrupt shadow.
fn real_mode() -> HvmContext {
    let data = segment(0, 0x0093, 0xffff, 0);
    HvmContext {
        rip: 0xfff0,
        rflags: 0x2,
        cr0: 0x6000_0010,
        es: data,
        cs: segment(0xf000, 0x009b, 0xffff, 0xffff_0000),
        ss: data,
        ds: data,
        fs: data,
        gs: data,
        tr: segment(0, 0x008b, 0xffff, 0),
        ldtr: segment(0, 0x0082, 0xffff, 0),
        gdtr: DescriptorTable {
            limit: 0xffff,
            base: 0,
        },
        idtr: DescriptorTable {
            limit: 0x3ff,
            base: 0,
        },
        pat: 0x0007_0406_0007_0406,
        pending_event: 0x8000_0020,
        interrupt_shadow: true,
        ..HvmContext::default()
    }
}

/// The HVM domain: RAM below its hole at 64 MiB and above 4 GiB.
fn hvm_domain() -> Domain {
    use RunKind::{Data, LogDirty as Bitmap, P2m};
    let ncr3 = Mfn(0xc000);
    let hvm = HvmDomain {
        ncr3,
        vcpus: vec![long_mode(), real_mode()],
        log_dirty: Some(LogDirty {
            bitmap: MfnRange::new(Mfn(0xc020), 2),
        }),
    };
    Domain {
        id: DomId(4),
        flags: DomainFlags::default(),
        name: "hvm-1".into(),
        max_frames: 0x9000,
        runs: vec![
            run(0xa000, 0x800, Gpfn(0), Data),
            run(0xb000, 0x100, Gpfn(0x10_4f00), Data),
            run(0xc000, 6, NO_GPFN, P2m),
            run(0xc010, 2, NO_GPFN, P2m),
            run(0xc020, 2, NO_GPFN, Bitmap),
        ],
        pinned: vec![],
        mmio: vec![],
        start_info: Gpfn(0x7ff),
        vcpus: vec![
            HvmDomain::blank_vcpu(ncr3, 0, VcpuFlags::ONLINE, 0),
            HvmDomain::blank_vcpu(ncr3, 1, VcpuFlags::ONLINE.union(VcpuFlags::BLOCKED), 1),
        ],
        console: Default::default(),
        paused: false,
        reports: Default::default(),
        hole: Gpfn(0x4000),
        identity: vec![],
        hvm: Some(hvm),
    }
}

/// The state of the blob.
pub fn state() -> HandoverState {
    let mut state = HandoverState::from(v1_2::state());
    state.domains.push(hvm_domain());
    state.globals.next_domid = DomId(5);
    state
}
