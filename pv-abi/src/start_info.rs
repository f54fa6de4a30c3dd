//! The start-info page a PV domain finds at [`START_INFO_VA`], and the
//! virtual layout the domain builder gives every guest.
//!
//! | virtual address | what |
//! |---|---|
//! | [`START_INFO_VA`] | this page (read-write) |
//! | [`STACK_TOP`] - [`STACK_PAGES`] pages | the initial stack |
//! | [`IMAGE_BASE`] | the guest ELF image |
//! | [`PHYSMAP_VA`] + page * 4096 | every page of the guest, data read-write, page tables read-only |
//!
//! The page → mfn list is an array of `u64` at `PHYSMAP_VA + mfn_list_gpfn * 4096`.
//!
//! The guest's pages are numbered `0..nr_pages` by RAM index
//! (`hvlu_types::hole`): page `n` is gpfn `n` below the domain's PCI hole,
//! and gpfn `n + (4 GiB − hole) / 4 KiB` from the hole's start on — the
//! RAM ranges of its memory map (`memory_map`), in order. The fields named
//! `*_gpfn` below are page numbers; they are the gpfns themselves below the
//! hole, where the builder's pages always lie for a domain smaller than
//! its hole's start.

/// Where the start-info page is mapped.
pub const START_INFO_VA: u64 = 0x0020_0000;
/// Top of the initial stack.
pub const STACK_TOP: u64 = 0x0040_0000;
/// Pages of initial stack.
pub const STACK_PAGES: u64 = 16;
/// Where guest images are linked.
pub const IMAGE_BASE: u64 = 0x0040_0000;
/// Where every guest page is mapped, by page number (L4 slot 2).
pub const PHYSMAP_VA: u64 = 0x0000_0100_0000_0000;
/// Magic of the start-info page.
pub const START_INFO_MAGIC: u64 = 0x6876_6c75_5056_0001; // "hvluPV", v1
/// Flag: the domain is privileged (dom0).
pub const SIF_PRIVILEGED: u64 = 1;

/// The start-info page.
///
/// The `zerocopy` derives check at compile time that it has no padding and
/// that all-zero is a valid value, so the hypervisor copies its bytes as is.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    zerocopy::FromZeros,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u64,
    /// The domain's id.
    pub domid: u64,
    /// `SIF_*` flags.
    pub flags: u64,
    /// Number of guest pages (page numbers `0..nr_pages`).
    pub nr_pages: u64,
    /// First page of the page → mfn list.
    pub mfn_list_gpfn: u64,
    /// Number of page-table pages, at gpfns `pt_first_gpfn..+pt_count`.
    pub pt_first_gpfn: u64,
    /// Number of page-table pages.
    pub pt_count: u64,
    /// The mfn of the L4 the vCPU starts on.
    pub l4_mfn: u64,
    /// The first gpfn the guest may use freely (nothing of the builder's
    /// lives at or above it, up to `nr_pages`).
    pub first_free_gpfn: u64,
    /// The guest virtual address of an L1-mapped window the guest may remap
    /// through `mmu_update`: [`WINDOW_PAGES`] pages, initially unmapped.
    pub window_va: u64,
    /// The machine address of the L1 entry that maps the window's first page.
    pub window_pte_maddr: u64,
    /// The command line, NUL terminated.
    pub cmdline: [u8; CMDLINE_BYTES],
}

/// `SIF_HVM`: the domain is hardware-virtualised (AMD SVM with nested
/// paging). Its start-info page is at guest-physical [`HVM_START_INFO_GPA`]
/// (`ebx` holds it at entry), `nr_pages` is its RAM below its PCI hole,
/// `first_free_gpfn` the first page after its image; the PV fields (mfn
/// list, page tables, window) are zero: an HVM guest builds its own paging
/// and never sees a machine frame.
pub const SIF_HVM: u64 = 2;

/// The ELF note that makes an image an HVM guest (like Xen's PVH entry
/// note): a note section with this name and type [`HVM_NOTE_TYPE`], no
/// descriptor; the entry is the ELF entry. An image without it is a PV
/// guest.
pub const HVM_NOTE_NAME: &str = "hvlu-hvm";
/// The type of the note [`HVM_NOTE_NAME`].
pub const HVM_NOTE_TYPE: u32 = 1;

/// Where an HVM guest's image must lie: from 1 MiB up (its ELF segments'
/// physical addresses are guest-physical addresses).
pub const HVM_IMAGE_BASE: u64 = 0x0010_0000;
/// The guest-physical address of an HVM guest's start-info page.
pub const HVM_START_INFO_GPA: u64 = 0x1000;
/// The HVM boot contract: the guest starts in 32-bit protected mode with
/// paging off, flat 4 GiB code (selector [`HVM_BOOT_CS`]) and data
/// ([`HVM_BOOT_DS`]) segments, interrupts off, at its ELF entry (a
/// guest-physical address), `ebx` = [`HVM_START_INFO_GPA`]. No GDT or IDT is
/// loaded (limits 0): the guest loads its own before it reloads a segment.
/// Its hypercalls are `vmmcall` with the PV convention (`rax` the number,
/// arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`; the result in `rax`) and
/// guest-physical addresses for pointers.
pub const HVM_BOOT_CS: u16 = 0x08;
/// The data selector of the HVM boot contract ([`HVM_BOOT_CS`]).
pub const HVM_BOOT_DS: u16 = 0x10;

/// Bytes of [`StartInfo::cmdline`], its NUL included: a domain's command
/// line has at most one byte less.
pub const CMDLINE_BYTES: usize = 128;

/// Pages in the remapping window.
pub const WINDOW_PAGES: u64 = 64;
/// Where the remapping window is.
pub const WINDOW_VA: u64 = 0x0060_0000;

impl Default for StartInfo {
    fn default() -> Self {
        StartInfo {
            magic: 0,
            domid: 0,
            flags: 0,
            nr_pages: 0,
            mfn_list_gpfn: 0,
            pt_first_gpfn: 0,
            pt_count: 0,
            l4_mfn: 0,
            first_free_gpfn: 0,
            window_va: 0,
            window_pte_maddr: 0,
            cmdline: [0; CMDLINE_BYTES],
        }
    }
}
