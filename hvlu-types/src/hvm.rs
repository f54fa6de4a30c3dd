//! What an HVM vCPU's context ([`HvmContext`]) must be for AMD SVM's
//! `VMRUN` to enter it: the rules in one place ([`HvmContext::check`]).
//!
//! `VMRUN` checks the guest state of the VMCB before it enters the guest
//! (AMD64 APM vol. 2, §15.5.1, "Canonicalization and Consistency Checks")
//! and exits with `VMEXIT_INVALID` on an illegal combination; with nested
//! paging on it also checks the guest PAT (§15.25, "Nested Paging and
//! VMRUN/#VMEXIT"). A hypervisor builds its VMCB from a context
//! (`hv::hvm::HvmVcpu::new`): what the context carries must pass those
//! checks, and what the hypervisor adds — EFER.SVME, its intercepts, the
//! ASID, the permission maps — is its own. A live update checks every
//! context of the handover state with this before any domain pauses and
//! again in the incoming image (`handover_abi`'s state validation), so a
//! context `VMRUN` would refuse never reaches the jump.
//!
//! The rules, in the order [`HvmContext::check`] applies them:
//!
//! | rule | error |
//! |---|---|
//! | EFER has only SCE, LME, LMA, NXE ([`efer::GUEST`]; SVME is the hypervisor's) | [`HvmContextError::EferReserved`] |
//! | CR0 bits 63:32 clear | [`HvmContextError::Cr0High`] |
//! | not CR0.NW with CR0.CD clear | [`HvmContextError::Cr0NwWithoutCd`] |
//! | CR3 bits 63:52 clear (above the 52-bit physical address) | [`HvmContextError::Cr3Reserved`] |
//! | CR4 only the bits of [`cr4::DEFINED`] | [`HvmContextError::Cr4Reserved`] |
//! | DR6 bits 63:32 clear | [`HvmContextError::Dr6High`] |
//! | DR7 bits 63:32 clear | [`HvmContextError::Dr7High`] |
//! | EFER.LME and CR0.PG: CR4.PAE set | [`HvmContextError::LongModeWithoutPae`] |
//! | EFER.LME and CR0.PG: CR0.PE set | [`HvmContextError::LongModeWithoutPe`] |
//! | EFER.LME and CR0.PG: not both CS.L and CS.D | [`HvmContextError::LongModeCsLAndD`] |
//! | EFER.LMA is EFER.LME and CR0.PG | [`HvmContextError::LmaMismatch`] |
//! | in long mode (LMA), RIP canonical (57 bits with CR4.LA57, else 48) | [`HvmContextError::RipNotCanonical`] |
//! | CPL at most 3 | [`HvmContextError::BadCpl`] |
//! | a valid event (bit 31): bits 30:12 clear | [`HvmContextError::EventReservedBits`] |
//! | a valid event: type 0 (interrupt), 2 (NMI), 3 (exception) or 4 (software interrupt) | [`HvmContextError::EventType`] |
//! | a valid exception event: vector not 2 (NMI) and below 31 | [`HvmContextError::EventVector`] |
//! | each PAT entry a memory type: 0, 1, 4, 5, 6 or 7 | [`HvmContextError::PatReserved`] |
//!
//! What `VMRUN` checks that a context does not carry is left out (EFER.SVME,
//! the VMRUN intercept, the ASID, the permission maps' addresses), and so is
//! what depends on the processor (CR3 bits above its own physical-address
//! width, CR4 bits of features it lacks: a guest on this processor could
//! not have set them). `VMRUN` canonicalizes segment bases rather than
//! refusing them, so they are not checked. RSP is not checked either: a
//! `mov` to RSP does not fault, so a guest in long mode can hold a
//! non-canonical one that `VMRUN` loads as it is (its next stack access
//! faults in the guest, as it would without an update).

use crate::regs::{DescriptorTable, HvmContext, Segment};

/// EFER bits.
pub mod efer {
    /// System-call extensions.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// Secure virtual machine enable: the hypervisor's, set in every
    /// VMCB it builds and never part of a context.
    pub const SVME: u64 = 1 << 12;
    /// The bits a guest's EFER may have: what the hypervisor keeps of a
    /// guest's writes (it refuses any other bit).
    pub const GUEST: u64 = SCE | LME | LMA | NXE;
}

/// CR0 bits.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// Extension type (always one on current processors).
    pub const ET: u64 = 1 << 4;
    /// Numeric error.
    pub const NE: u64 = 1 << 5;
    /// Write protect.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    /// Physical-address extension.
    pub const PAE: u64 = 1 << 5;
    /// Global pages.
    pub const PGE: u64 = 1 << 7;
    /// 5-level paging (57-bit virtual addresses).
    pub const LA57: u64 = 1 << 12;
    /// The bits CR4 defines on AMD64 (APM vol. 2, §3.1.3, "CR4
    /// Register"): VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR,
    /// OSXMMEXCPT, UMIP, LA57 (bits 0–12), FSGSBASE, PCIDE, OSXSAVE
    /// (16–18), SMEP, SMAP, PKE, CET (20–23). Every other bit is reserved
    /// and must be zero: `VMRUN` refuses a CR4 with one set.
    pub const DEFINED: u64 = 0x1fff | 0x7 << 16 | 0xf << 20;
}

/// The VMCB's packed segment attributes (type, S, DPL, P in bits 0–7;
/// AVL, L, D/B, G in bits 8–11).
pub mod attrib {
    /// 64-bit code segment.
    pub const L: u16 = 1 << 9;
    /// Default operand size 32 bits (D/B).
    pub const D: u16 = 1 << 10;
    /// Present, code or data (S), 32-bit (D/B), 4 KiB granularity (G).
    const FLAT: u16 = 1 << 7 | 1 << 4 | D | 1 << 11;
    /// Flat 32-bit code: execute/read, accessed.
    pub const CODE32: u16 = FLAT | 0xb;
    /// Flat data: read/write, accessed.
    pub const DATA: u16 = FLAT | 0x3;
    /// A busy 32-bit TSS, present.
    pub const TSS_BUSY: u16 = 1 << 7 | 0xb;
    /// An LDT, present.
    pub const LDT: u16 = 1 << 7 | 0x2;
}

/// The PAT at reset.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// The VMCB's EVENTINJ format (APM vol. 2, §15.20, "Event Injection"):
/// vector in bits 7:0, type in 10:8, error code valid in 11, bits 30:12
/// reserved, valid in 31, the error code in 63:32.
pub mod eventinj {
    /// The vector.
    pub const VECTOR: u64 = 0xff;
    /// Where the type is.
    pub const TYPE_SHIFT: u32 = 8;
    /// The type, once shifted down.
    pub const TYPE_MASK: u64 = 0x7;
    /// Type: external or virtual interrupt.
    pub const TYPE_INTR: u64 = 0;
    /// Type: NMI.
    pub const TYPE_NMI: u64 = 2;
    /// Type: exception (fault or trap).
    pub const TYPE_EXCEPTION: u64 = 3;
    /// Type: software interrupt (`INTn`).
    pub const TYPE_SOFT: u64 = 4;
    /// The error code in bits 63:32 is pushed.
    pub const EV: u64 = 1 << 11;
    /// Reserved, must be zero.
    pub const RESERVED: u64 = 0x7fff_f000;
    /// The event is to be injected.
    pub const VALID: u64 = 1 << 31;
}

/// Why `VMRUN` would refuse an [`HvmContext`] (the value it refuses is
/// named). One variant per rule of the module's table, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HvmContextError {
    /// EFER has a bit other than SCE, LME, LMA and NXE.
    #[error("efer {efer:#x} has bits other than SCE, LME, LMA and NXE ({:#x}; SVME is the hypervisor's)", efer::GUEST)]
    EferReserved {
        /// EFER.
        efer: u64,
    },
    /// CR0 has bits 63:32 set.
    #[error("cr0 {cr0:#x} has bits 63:32 set")]
    Cr0High {
        /// CR0.
        cr0: u64,
    },
    /// CR0.NW is set while CR0.CD is clear.
    #[error("cr0 {cr0:#x} has NW set and CD clear")]
    Cr0NwWithoutCd {
        /// CR0.
        cr0: u64,
    },
    /// CR3 has bits above the 52-bit physical address set.
    #[error("cr3 {cr3:#x} has bits 63:52 set (above the 52-bit physical address)")]
    Cr3Reserved {
        /// CR3.
        cr3: u64,
    },
    /// CR4 has reserved bits set.
    #[error("cr4 {cr4:#x} has reserved bits {:#x}", .cr4 & !cr4::DEFINED)]
    Cr4Reserved {
        /// CR4.
        cr4: u64,
    },
    /// DR6 has bits 63:32 set.
    #[error("dr6 {dr6:#x} has bits 63:32 set")]
    Dr6High {
        /// DR6.
        dr6: u64,
    },
    /// DR7 has bits 63:32 set.
    #[error("dr7 {dr7:#x} has bits 63:32 set")]
    Dr7High {
        /// DR7.
        dr7: u64,
    },
    /// EFER.LME and CR0.PG are set, CR4.PAE is clear.
    #[error("efer.LME and cr0.PG are set, but cr4 {cr4:#x} has PAE clear")]
    LongModeWithoutPae {
        /// CR4.
        cr4: u64,
    },
    /// EFER.LME and CR0.PG are set, CR0.PE is clear.
    #[error("efer.LME is set and cr0 {cr0:#x} has PG set but PE clear")]
    LongModeWithoutPe {
        /// CR0.
        cr0: u64,
    },
    /// EFER.LME and CR0.PG are set, and CS has both L and D.
    #[error("efer.LME and cr0.PG are set, and cs (attributes {attrib:#x}) has both L and D set")]
    LongModeCsLAndD {
        /// CS's attributes.
        attrib: u16,
    },
    /// EFER.LMA is not EFER.LME and CR0.PG.
    #[error("efer {efer:#x} has LMA {}, but LME and cr0.PG (cr0 {cr0:#x}) make it {}", .efer & efer::LMA != 0, .efer & efer::LME != 0 && .cr0 & cr0::PG != 0)]
    LmaMismatch {
        /// EFER.
        efer: u64,
        /// CR0.
        cr0: u64,
    },
    /// In long mode, RIP is not canonical.
    #[error("rip {rip:#x} is not canonical, in long mode")]
    RipNotCanonical {
        /// RIP.
        rip: u64,
    },
    /// The CPL is above 3.
    #[error("cpl {cpl} is above 3")]
    BadCpl {
        /// The CPL.
        cpl: u8,
    },
    /// A valid event to inject has reserved bits 30:12 set.
    #[error("the event to inject {event:#x} has reserved bits 30:12 set")]
    EventReservedBits {
        /// The event (EVENTINJ).
        event: u64,
    },
    /// A valid event to inject has a reserved type (1, 5, 6 or 7).
    #[error("the event to inject {event:#x} has the reserved type {}", (.event >> eventinj::TYPE_SHIFT) & eventinj::TYPE_MASK)]
    EventType {
        /// The event (EVENTINJ).
        event: u64,
    },
    /// A valid exception to inject has a vector that is not an exception:
    /// 2 (the NMI) or 31 and above.
    #[error("the event to inject {event:#x} is an exception with vector {}, which is not one (2 is the NMI; exceptions are below 31)", .event & eventinj::VECTOR)]
    EventVector {
        /// The event (EVENTINJ).
        event: u64,
    },
    /// A PAT entry holds a reserved memory type (2, 3, or 8 and above).
    #[error("pat {pat:#x} has entry {entry} of reserved memory type {:#x}", (.pat >> (8 * .entry)) & 0xff)]
    PatReserved {
        /// The PAT.
        pat: u64,
        /// The entry (0–7, byte `entry` of the PAT).
        entry: u32,
    },
}

/// Whether `va` is canonical for `bits`-bit virtual addresses: bits
/// 63..=bits-1 all equal.
const fn is_canonical_for(va: u64, bits: u32) -> bool {
    let shift = 64 - bits;
    (((va << shift) as i64) >> shift) as u64 == va
}

/// Whether `t` is a memory type a PAT entry may hold: UC, WC, WT, WP, WB,
/// UC-.
const fn is_memory_type(t: u64) -> bool {
    matches!(t, 0 | 1 | 4..=7)
}

impl HvmContext {
    /// A vCPU about to run 32-bit code at `entry` in protected mode with
    /// paging off: flat 4 GiB segments (code selector `code`, every data
    /// segment `data`), a busy TSS and an LDT of limit zero, CR0 PE and
    /// ET, DR6 and DR7 and the PAT at their reset values, interrupts off,
    /// every other register zero. Where an HVM guest starts (the
    /// hypervisor's domain builder adds what its boot contract passes in
    /// registers).
    pub fn flat_protected(entry: u64, code: u16, data: u16) -> HvmContext {
        let flat = |selector, attrib| Segment {
            selector,
            attrib,
            limit: 0xffff_ffff,
            base: 0,
        };
        let data = flat(data, attrib::DATA);
        HvmContext {
            rip: entry,
            rflags: crate::regs::rflags::RESERVED_ONE,
            cr0: cr0::PE | cr0::ET,
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            cs: flat(code, attrib::CODE32),
            ds: data,
            es: data,
            ss: data,
            fs: data,
            gs: data,
            tr: Segment {
                attrib: attrib::TSS_BUSY,
                limit: 0x67,
                ..Segment::default()
            },
            ldtr: Segment {
                attrib: attrib::LDT,
                ..Segment::default()
            },
            gdtr: DescriptorTable::default(),
            idtr: DescriptorTable::default(),
            pat: PAT_RESET,
            ..HvmContext::default()
        }
    }

    /// Checks that `VMRUN` can enter this context once the hypervisor adds
    /// its part (EFER.SVME): the rules of the module documentation
    /// ([`crate::hvm`]), in its order; the first that fails is returned.
    pub fn check(&self) -> Result<(), HvmContextError> {
        use HvmContextError as E;
        let (efer, cr0, cr4) = (self.efer, self.cr0, self.cr4);
        if efer & !efer::GUEST != 0 {
            return Err(E::EferReserved { efer });
        }
        if cr0 >> 32 != 0 {
            return Err(E::Cr0High { cr0 });
        }
        if cr0 & (cr0::CD | cr0::NW) == cr0::NW {
            return Err(E::Cr0NwWithoutCd { cr0 });
        }
        if self.cr3 >> crate::PHYS_ADDR_BITS != 0 {
            return Err(E::Cr3Reserved { cr3: self.cr3 });
        }
        if cr4 & !cr4::DEFINED != 0 {
            return Err(E::Cr4Reserved { cr4 });
        }
        if self.dr6 >> 32 != 0 {
            return Err(E::Dr6High { dr6: self.dr6 });
        }
        if self.dr7 >> 32 != 0 {
            return Err(E::Dr7High { dr7: self.dr7 });
        }
        let long = efer & efer::LME != 0 && cr0 & cr0::PG != 0;
        if long {
            if cr4 & cr4::PAE == 0 {
                return Err(E::LongModeWithoutPae { cr4 });
            }
            if cr0 & cr0::PE == 0 {
                return Err(E::LongModeWithoutPe { cr0 });
            }
            let attrib = self.cs.attrib;
            if attrib & (attrib::L | attrib::D) == attrib::L | attrib::D {
                return Err(E::LongModeCsLAndD { attrib });
            }
        }
        if (efer & efer::LMA != 0) != long {
            return Err(E::LmaMismatch { efer, cr0 });
        }
        let va_bits = if cr4 & cr4::LA57 != 0 { 57 } else { 48 };
        if long && !is_canonical_for(self.rip, va_bits) {
            return Err(E::RipNotCanonical { rip: self.rip });
        }
        if self.cpl > 3 {
            return Err(E::BadCpl { cpl: self.cpl });
        }
        self.check_event()?;
        match (0..8).find(|i| !is_memory_type((self.pat >> (8 * i)) & 0xff)) {
            Some(entry) => Err(E::PatReserved {
                pat: self.pat,
                entry,
            }),
            None => Ok(()),
        }
    }

    /// The event to inject, if one is: no reserved bit, a defined type, an
    /// exception's vector an exception's (APM vol. 2, §15.20: `VMRUN`
    /// refuses a reserved type and an exception whose vector is not one;
    /// QEMU's TCG refuses vector 31 as well).
    fn check_event(&self) -> Result<(), HvmContextError> {
        use HvmContextError as E;
        let event = self.pending_event;
        if event & eventinj::VALID == 0 {
            return Ok(());
        }
        if event & eventinj::RESERVED != 0 {
            return Err(E::EventReservedBits { event });
        }
        match (event >> eventinj::TYPE_SHIFT) & eventinj::TYPE_MASK {
            eventinj::TYPE_INTR | eventinj::TYPE_NMI | eventinj::TYPE_SOFT => Ok(()),
            eventinj::TYPE_EXCEPTION => match event & eventinj::VECTOR {
                2 | 31.. => Err(E::EventVector { event }),
                _ => Ok(()),
            },
            _ => Err(E::EventType { event }),
        }
    }
}

#[cfg(test)]
mod tests;
