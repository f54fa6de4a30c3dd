//! One test per rule of [`HvmContext::check`], each from a valid context
//! with one thing changed, and the two valid contexts themselves.

use super::*;
use crate::regs::{DescriptorTable, Segment};

/// 64-bit code, execute/read, accessed.
const CODE64: u16 = attrib::CODE32 & !attrib::D | attrib::L;

/// Where an HVM guest starts (the hypervisor's `boot_context` is this and
/// the start-info address in `rbx`): 32-bit protected mode, paging off,
/// flat segments, EFER zero.
fn boot32() -> HvmContext {
    HvmContext::flat_protected(0x10_0000, 0x08, 0x10)
}

/// A 64-bit kernel in ring 0: paging and PAE on, EFER.LME and LMA, CS.L.
fn long_mode() -> HvmContext {
    HvmContext {
        rip: 0xffff_ffff_8010_0000,
        rsp: 0xffff_ffff_8020_0000,
        cr0: cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::AM | cr0::PG,
        cr3: 0x1000,
        cr4: cr4::PAE | cr4::PGE,
        efer: efer::SCE | efer::LME | efer::LMA | efer::NXE,
        cs: Segment {
            attrib: CODE64,
            ..boot32().cs
        },
        gdtr: DescriptorTable {
            limit: 0x37,
            base: 0xffff_ffff_8040_1000,
        },
        ..boot32()
    }
}

fn with(base: HvmContext, change: impl FnOnce(&mut HvmContext)) -> HvmContext {
    let mut ctx = base;
    change(&mut ctx);
    ctx
}

#[test]
fn the_32_bit_boot_context_is_valid() {
    assert_eq!(boot32().check(), Ok(()));
}

#[test]
fn a_long_mode_context_is_valid() {
    assert_eq!(long_mode().check(), Ok(()));
}

#[test]
fn a_real_mode_context_with_caches_off_is_valid() {
    // The reset state: CD and NW both set, paging and protection off.
    let ctx = with(boot32(), |c| {
        c.cr0 = cr0::CD | cr0::NW | cr0::ET;
        c.cs = Segment {
            selector: 0xf000,
            attrib: 0x9b,
            limit: 0xffff,
            base: 0xffff_0000,
        };
        c.rip = 0xfff0;
    });
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn efer_with_a_bit_not_the_guests() {
    for bit in [efer::SVME, 1 << 14, 1 << 1, 1 << 63] {
        let efer = long_mode().efer | bit;
        let ctx = with(long_mode(), |c| c.efer = efer);
        assert_eq!(ctx.check(), Err(HvmContextError::EferReserved { efer }));
    }
}

#[test]
fn cr0_with_bits_above_31() {
    let cr0 = long_mode().cr0 | 1 << 32;
    let ctx = with(long_mode(), |c| c.cr0 = cr0);
    assert_eq!(ctx.check(), Err(HvmContextError::Cr0High { cr0 }));
}

#[test]
fn cr0_not_write_through_with_caching_on() {
    let cr0 = boot32().cr0 | cr0::NW;
    let ctx = with(boot32(), |c| c.cr0 = cr0);
    assert_eq!(ctx.check(), Err(HvmContextError::Cr0NwWithoutCd { cr0 }));
    let ctx = with(boot32(), |c| c.cr0 = cr0 | cr0::CD);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn cr3_above_the_physical_address() {
    let ctx = with(long_mode(), |c| c.cr3 = (1 << 52) - 0x1000);
    assert_eq!(ctx.check(), Ok(()));
    let cr3 = 1 << 52 | 0x1000;
    let ctx = with(long_mode(), |c| c.cr3 = cr3);
    assert_eq!(ctx.check(), Err(HvmContextError::Cr3Reserved { cr3 }));
}

#[test]
fn cr4_with_a_reserved_bit() {
    // Every defined bit at once is not refused.
    let ctx = with(long_mode(), |c| c.cr4 = cr4::DEFINED);
    assert_eq!(ctx.check(), Ok(()));
    // VMXE and SMXE (Intel's), 19, 24 and above are reserved on AMD64.
    for bit in [13, 14, 15, 19, 24, 32, 63] {
        let cr4 = long_mode().cr4 | 1 << bit;
        let ctx = with(long_mode(), |c| c.cr4 = cr4);
        assert_eq!(ctx.check(), Err(HvmContextError::Cr4Reserved { cr4 }));
    }
}

#[test]
fn dr6_with_bits_above_31() {
    let dr6 = 0x1_ffff_0ff0;
    let ctx = with(boot32(), |c| c.dr6 = dr6);
    assert_eq!(ctx.check(), Err(HvmContextError::Dr6High { dr6 }));
}

#[test]
fn dr7_with_bits_above_31() {
    let dr7 = 1 << 40 | 0x400;
    let ctx = with(boot32(), |c| c.dr7 = dr7);
    assert_eq!(ctx.check(), Err(HvmContextError::Dr7High { dr7 }));
}

#[test]
fn long_mode_without_pae() {
    let cr4 = cr4::PGE;
    let ctx = with(long_mode(), |c| c.cr4 = cr4);
    assert_eq!(
        ctx.check(),
        Err(HvmContextError::LongModeWithoutPae { cr4 })
    );
}

#[test]
fn long_mode_without_protection() {
    let cr0 = long_mode().cr0 & !cr0::PE;
    let ctx = with(long_mode(), |c| c.cr0 = cr0);
    assert_eq!(ctx.check(), Err(HvmContextError::LongModeWithoutPe { cr0 }));
    // Paging without protection is allowed outside long mode ("paged real
    // mode", which VMRUN loads).
    let ctx = with(boot32(), |c| c.cr0 = cr0::ET | cr0::PG);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn long_mode_code_segment_with_l_and_d() {
    let attrib = CODE64 | attrib::D;
    let ctx = with(long_mode(), |c| c.cs.attrib = attrib);
    assert_eq!(
        ctx.check(),
        Err(HvmContextError::LongModeCsLAndD { attrib })
    );
    // Compatibility mode (D without L) is fine, and so is L and D with
    // long mode off (CS.L means nothing there).
    let ctx = with(long_mode(), |c| c.cs.attrib = attrib::CODE32);
    assert_eq!(ctx.check(), Ok(()));
    let ctx = with(boot32(), |c| c.cs.attrib = attrib);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn lma_that_is_not_lme_and_paging() {
    // LMA without paging.
    let (efer, cr0) = (efer::LME | efer::LMA, boot32().cr0);
    let ctx = with(boot32(), |c| c.efer = efer);
    assert_eq!(ctx.check(), Err(HvmContextError::LmaMismatch { efer, cr0 }));
    // LME and paging without LMA.
    let efer = long_mode().efer & !efer::LMA;
    let ctx = with(long_mode(), |c| c.efer = efer);
    let cr0 = long_mode().cr0;
    assert_eq!(ctx.check(), Err(HvmContextError::LmaMismatch { efer, cr0 }));
    // LME before paging is switched on, without LMA: the step before long
    // mode.
    let ctx = with(boot32(), |c| c.efer = efer::LME);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn non_canonical_rip_in_long_mode() {
    for rip in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_ffff, 1 << 63] {
        let ctx = with(long_mode(), |c| c.rip = rip);
        assert_eq!(ctx.check(), Err(HvmContextError::RipNotCanonical { rip }));
    }
    // 5-level paging widens the canonical range to 57 bits.
    let rip = 0x00ff_0000_0000_0000;
    let ctx = with(long_mode(), |c| {
        c.rip = rip;
        c.cr4 |= cr4::LA57;
    });
    assert_eq!(ctx.check(), Ok(()));
    let ctx = with(ctx, |c| c.rip = 1 << 56);
    assert_eq!(
        ctx.check(),
        Err(HvmContextError::RipNotCanonical { rip: 1 << 56 })
    );
    // Outside long mode RIP is not an address VMRUN checks.
    let ctx = with(boot32(), |c| c.rip = 1 << 63);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn non_canonical_rsp_is_the_guests_own_fault() {
    // A `mov` to RSP does not fault; VMRUN loads it as it is.
    let ctx = with(long_mode(), |c| c.rsp = 0x0000_8000_0000_0000);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn cpl_above_3() {
    let ctx = with(long_mode(), |c| c.cpl = 3);
    assert_eq!(ctx.check(), Ok(()));
    let ctx = with(long_mode(), |c| c.cpl = 4);
    assert_eq!(ctx.check(), Err(HvmContextError::BadCpl { cpl: 4 }));
}

#[test]
fn events_of_every_defined_type_are_valid() {
    let v = eventinj::VALID;
    for event in [
        v | 0x20,                                   // external interrupt 0x20
        v | 2 << 8 | 2,                             // NMI
        v | 3 << 8 | 14 | eventinj::EV | 0x2 << 32, // #PF, error code 2
        v | 3 << 8,                                 // #DE
        v | 3 << 8 | 30,                            // #SX
        v | 4 << 8 | 0x80,                          // int 0x80
        0x7fff_ffff,                                // not valid: the rest is ignored
    ] {
        let ctx = with(long_mode(), |c| c.pending_event = event);
        assert_eq!(ctx.check(), Ok(()), "event {event:#x}");
    }
}

#[test]
fn event_with_reserved_bits() {
    for bits in [1 << 12, 1 << 30] {
        let event = eventinj::VALID | 0x20 | bits;
        let ctx = with(long_mode(), |c| c.pending_event = event);
        assert_eq!(
            ctx.check(),
            Err(HvmContextError::EventReservedBits { event })
        );
    }
}

#[test]
fn event_of_a_reserved_type() {
    for ty in [1, 5, 6, 7] {
        let event = eventinj::VALID | ty << 8 | 0x20;
        let ctx = with(long_mode(), |c| c.pending_event = event);
        assert_eq!(ctx.check(), Err(HvmContextError::EventType { event }));
    }
}

#[test]
fn exception_event_whose_vector_is_no_exception() {
    for vector in [2, 31, 32, 0xff] {
        let event = eventinj::VALID | 3 << 8 | vector;
        let ctx = with(long_mode(), |c| c.pending_event = event);
        assert_eq!(ctx.check(), Err(HvmContextError::EventVector { event }));
    }
}

#[test]
fn pat_with_a_reserved_memory_type() {
    for (entry, ty) in [(0, 2), (3, 3), (7, 8), (5, 0xff)] {
        let pat = PAT_RESET & !(0xff << (8 * entry)) | ty << (8 * entry);
        let ctx = with(boot32(), |c| c.pat = pat);
        assert_eq!(
            ctx.check(),
            Err(HvmContextError::PatReserved { pat, entry })
        );
    }
    // Every memory type in some entry.
    let ctx = with(boot32(), |c| c.pat = 0x0706_0504_0100_0607);
    assert_eq!(ctx.check(), Ok(()));
}

#[test]
fn the_first_broken_rule_is_reported() {
    // EFER comes before CR0.
    let ctx = with(long_mode(), |c| {
        c.efer |= efer::SVME;
        c.cr0 |= 1 << 40;
    });
    assert!(matches!(
        ctx.check(),
        Err(HvmContextError::EferReserved { .. })
    ));
}

#[test]
fn errors_name_the_value() {
    let msg = |ctx: HvmContext| ctx.check().unwrap_err().to_string();
    assert_eq!(
        msg(with(long_mode(), |c| c.efer |= efer::SVME)),
        "efer 0x1d01 has bits other than SCE, LME, LMA and NXE (0xd01; SVME is the hypervisor's)"
    );
    assert_eq!(
        msg(with(long_mode(), |c| c.cr4 |= 1 << 13)),
        "cr4 0x20a0 has reserved bits 0x2000"
    );
    assert_eq!(
        msg(with(boot32(), |c| c.efer = efer::LMA)),
        "efer 0x400 has LMA true, but LME and cr0.PG (cr0 0x11) make it false"
    );
    assert_eq!(
        msg(with(long_mode(), |c| c.pending_event = eventinj::VALID | 5 << 8)),
        "the event to inject 0x80000500 has the reserved type 5"
    );
    assert_eq!(
        msg(with(long_mode(), |c| c.pending_event =
            eventinj::VALID | 3 << 8 | 2)),
        "the event to inject 0x80000302 is an exception with vector 2, which is not one \
         (2 is the NMI; exceptions are below 31)"
    );
    assert_eq!(
        msg(with(boot32(), |c| c.pat = 0x0007_0406_0007_0402)),
        "pat 0x7040600070402 has entry 0 of reserved memory type 0x2"
    );
}
