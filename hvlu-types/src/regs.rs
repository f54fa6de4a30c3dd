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
