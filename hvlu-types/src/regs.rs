//! The general-purpose register file.

/// General-purpose registers, `rsp` excepted (it travels with the interrupt
/// frame).
///
/// One definition for every layer: the hypervisor's trap frame embeds it
/// (so its layout is the order the trap entry saves the registers in, and
/// `#[repr(C)]` keeps it so), the handover body carries it, and the
/// live-update roles copy it whole. A register added here changes the
/// handover body's wire shape, which the golden blobs in `handover-abi`
/// refuse until a new ABI version carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GpRegs {
    /// `rax`.
    pub rax: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `r8`.
    pub r8: u64,
    /// `r9`.
    pub r9: u64,
    /// `r10`.
    pub r10: u64,
    /// `r11`.
    pub r11: u64,
    /// `r12`.
    pub r12: u64,
    /// `r13`.
    pub r13: u64,
    /// `r14`.
    pub r14: u64,
    /// `r15`.
    pub r15: u64,
}

/// Fifteen registers, no padding: the trap entry's save area.
const _: () = assert!(core::mem::size_of::<GpRegs>() == 15 * 8);

/// What the hypervisor keeps of a PV vCPU while it does not run: the whole
/// architectural state a guest can change and expects back.
///
/// The hypervisor converts its trap frame to and from this in one place;
/// the outgoing role saves it into the handover state and the incoming role
/// restores it from there (`old_hv::vcpu`, `new_hv::vcpu`), each naming
/// every field, so a field added here does not compile until both sides
/// carry it, and their round-trip test fails until they carry it right.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuContext {
    /// General-purpose registers.
    pub regs: GpRegs,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// The root page table (an L4 the domain owns, pinned by use as CR3).
    pub cr3: crate::Mfn,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// The GS base `swapgs` exchanges with.
    pub kernel_gs_base: u64,
}

/// RFLAGS bits.
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Always one.
    pub const RESERVED_ONE: u64 = 1 << 1;
    /// Parity.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap (single step).
    pub const TF: u64 = 1 << 8;
    /// Interrupts enabled.
    pub const IF: u64 = 1 << 9;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// CPUID available.
    pub const ID: u64 = 1 << 21;

    /// The bits a PV guest's saved flags may have: what ring 3 can set
    /// (arithmetic flags, TF, DF, NT, RF, AC, ID), IF and the reserved one.
    /// Never IOPL, VM or anything undefined: a context carrying them did
    /// not come from a guest.
    pub const GUEST_ALLOWED: u64 =
        CF | RESERVED_ONE | PF | AF | ZF | SF | TF | IF | DF | OF | NT | RF | AC | ID;
}

/// Why a [`VcpuContext`] cannot be a PV guest's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextError {
    /// An address register holds something outside the guest (lower) half:
    /// loading it would fault in the hypervisor (`iretq` to a non-canonical
    /// address, `wrmsr` of a non-canonical base) or hand the guest a
    /// hypervisor address.
    NotGuestAddress {
        /// The register's name.
        register: &'static str,
        /// Its value.
        value: u64,
    },
    /// The flags have bits a guest cannot set ([`rflags::GUEST_ALLOWED`]).
    Flags {
        /// The flags.
        rflags: u64,
    },
}

impl core::fmt::Display for ContextError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ContextError::NotGuestAddress { register, value } => {
                write!(f, "{register} {value:#x} is not a guest address")
            }
            ContextError::Flags { rflags: v } => write!(
                f,
                "rflags {v:#x} has bits a guest cannot have (allowed {:#x})",
                rflags::GUEST_ALLOWED
            ),
        }
    }
}

impl VcpuContext {
    /// A vCPU about to run guest code at `rip` on the stack `rsp` under
    /// the page tables `cr3`, with interrupts on and every other register
    /// zero: where a guest's first vCPU starts.
    pub fn at_entry(rip: u64, rsp: u64, cr3: crate::Mfn) -> VcpuContext {
        VcpuContext {
            rip,
            rsp,
            rflags: rflags::IF | rflags::RESERVED_ONE,
            cr3,
            ..VcpuContext::default()
        }
    }

    /// Checks that this can be a PV guest's context: `rip`, `rsp` and the
    /// segment bases in the guest half, flags within
    /// [`rflags::GUEST_ALLOWED`]. Both live-update roles run it: the
    /// outgoing one before the point of no return, the incoming one before
    /// it loads anything.
    pub fn check_guest(&self) -> Result<(), ContextError> {
        for (register, value) in [
            ("rip", self.rip),
            ("rsp", self.rsp),
            ("fs_base", self.fs_base),
            ("gs_base", self.gs_base),
            ("kernel_gs_base", self.kernel_gs_base),
        ] {
            if !crate::canonical::is_lower_half(value) {
                return Err(ContextError::NotGuestAddress { register, value });
            }
        }
        if self.rflags & !rflags::GUEST_ALLOWED != 0 {
            return Err(ContextError::Flags {
                rflags: self.rflags,
            });
        }
        Ok(())
    }
}

/// A segment register as AMD SVM's VMCB keeps it: the selector, the
/// attributes in the VMCB's packed form (type, S, DPL, P in bits 0–7; AVL,
/// L, D/B, G in bits 8–11), the limit and the base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Segment {
    /// The selector.
    pub selector: u16,
    /// The attributes, packed as the VMCB packs them.
    pub attrib: u16,
    /// The limit (bytes, already scaled by G).
    pub limit: u32,
    /// The base.
    pub base: u64,
}

/// A descriptor-table register (GDTR, IDTR): limit and base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DescriptorTable {
    /// The limit.
    pub limit: u32,
    /// The base.
    pub base: u64,
}

/// An HVM vCPU's x87, MMX and SSE state: the 512-byte image `FXSAVE`
/// writes (control and status words, the eight x87/MMX registers, MXCSR,
/// XMM0–15), as 64 little-endian words. `VMRUN` does not switch it: the
/// hypervisor saves and restores it around each guest's turn, so no guest
/// sees another's, and a live update carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FxState(pub [[u64; 32]; 2]);

impl FxState {
    /// The state after `FNINIT` and at reset: FCW 0x037f, MXCSR 0x1f80,
    /// every register zero.
    pub const RESET: FxState = {
        let mut w = [[0u64; 32]; 2];
        w[0][0] = 0x037f;
        w[0][3] = 0x1f80;
        FxState(w)
    };

    /// The 512 bytes, in `FXSAVE` layout.
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut out = [0u8; 512];
        for (i, w) in self.0.iter().flatten().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The state from an `FXSAVE` image.
    pub fn from_bytes(bytes: &[u8; 512]) -> FxState {
        let mut w = [[0u64; 32]; 2];
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w[i / 32][i % 32] = u64::from_le_bytes(b);
        }
        FxState(w)
    }
}

impl Default for FxState {
    /// [`FxState::RESET`].
    fn default() -> FxState {
        FxState::RESET
    }
}

/// What the hypervisor keeps of an HVM vCPU while it does not run: the
/// architectural state of AMD SVM's VMCB state-save area that a guest can
/// change and expects back, plus the general registers VMRUN does not
/// switch, the event the hypervisor was about to inject and the interrupt
/// shadow. Never a copy of the VMCB itself: the incoming hypervisor builds
/// its own VMCB from this (its control area, intercepts and the nested
/// page-table root are the hypervisor's, not the guest's).
///
/// Like [`VcpuContext`], the hypervisor converts to and from this in one
/// place and the live-update roles name every field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HvmContext {
    /// General-purpose registers (`rax` included: the VMCB's copy).
    pub regs: GpRegs,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// CR0 as the guest sees it.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// The guest's own CR3 (a guest-physical address).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER as the guest sees it (SVME, which the hypervisor adds, is not
    /// part of it).
    pub efer: u64,
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
    /// The segment registers.
    pub es: Segment,
    /// `cs`.
    pub cs: Segment,
    /// `ss`.
    pub ss: Segment,
    /// `ds`.
    pub ds: Segment,
    /// `fs`.
    pub fs: Segment,
    /// `gs`.
    pub gs: Segment,
    /// The task register.
    pub tr: Segment,
    /// The LDT register.
    pub ldtr: Segment,
    /// GDTR.
    pub gdtr: DescriptorTable,
    /// IDTR.
    pub idtr: DescriptorTable,
    /// The current privilege level.
    pub cpl: u8,
    /// `STAR`.
    pub star: u64,
    /// `LSTAR`.
    pub lstar: u64,
    /// `CSTAR`.
    pub cstar: u64,
    /// `SFMASK`.
    pub sfmask: u64,
    /// `KernelGSbase`.
    pub kernel_gs_base: u64,
    /// `SYSENTER_CS`.
    pub sysenter_cs: u64,
    /// `SYSENTER_ESP`.
    pub sysenter_esp: u64,
    /// `SYSENTER_EIP`.
    pub sysenter_eip: u64,
    /// The guest's PAT.
    pub pat: u64,
    /// An event the hypervisor is to inject at the next entry, in the
    /// VMCB's EVENTINJ format (bit 31 valid); 0 for none.
    pub pending_event: u64,
    /// Whether the guest is in an interrupt shadow (after `sti` or a move
    /// to `ss`).
    pub interrupt_shadow: bool,
    /// Its x87/SSE state.
    pub fpu: FxState,
}

#[cfg(test)]
mod fx_tests {
    use super::FxState;

    #[test]
    fn the_fxsave_image_round_trips_and_the_reset_state_has_its_two_words() {
        let mut bytes = [0u8; 512];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        assert_eq!(FxState::from_bytes(&bytes).to_bytes(), bytes);
        let reset = FxState::RESET.to_bytes();
        assert_eq!(u16::from_le_bytes([reset[0], reset[1]]), 0x037f, "FCW");
        assert_eq!(
            u32::from_le_bytes([reset[24], reset[25], reset[26], reset[27]]),
            0x1f80,
            "MXCSR"
        );
        assert_eq!(FxState::default(), FxState::RESET);
    }
}
