//! Test-only triggers of the hypervisor's self-protection, for the QEMU
//! tests in `tests/tests/self_protection.rs`: a stack overflow, a fault in
//! the hypervisor, and probing the physical accessors with the hypervisor's
//! own page tables.
//!
//! The switch is the fw_cfg file [`FILE`], which only the host can create
//! (`-fw_cfg name=opt/hvlu-test/selftest,string=WORDS`): no guest, dom0
//! included, can make one, and without it nothing here runs. Unlike the
//! command line it is there for every image of a run, cold-booted or
//! entered by a live update. `crate::trap` reads it at each image's first
//! timer tick.

use core::arch::asm;
use hvlu_types::PAGE_SIZE;

use super::phys::{self, PhysError};

/// The fw_cfg file that holds the requests (see `crate::trap`).
pub const FILE: &str = "opt/hvlu-test/selftest";

/// An address no address space maps: L4 slot 384, between the direct map
/// (256) and the image (511); guests own slots 0..256 only.
pub const UNMAPPED: u64 = 0xffff_c000_0000_0000;

/// Reads the 64-bit word at `vaddr` with a plain load — for the self-test,
/// an address that is not mapped ([`UNMAPPED`]), so the load faults in the
/// hypervisor.
pub fn load(vaddr: u64) -> u64 {
    let value: u64;
    // SAFETY: the load is in assembly, so it cannot break a Rust aliasing
    // rule whatever `vaddr` is; at an unmapped address it raises a page
    // fault, which `crate::trap` reports before stopping the machine (it
    // never returns here), and at a mapped one it only reads.
    unsafe {
        asm!("mov {0}, [{1}]", out(reg) value, in(reg) vaddr, options(nostack, readonly, preserves_flags))
    };
    value
}

/// Recurses until the current stack overflows into its guard page.
pub fn overflow_stack() -> ! {
    /// 512 bytes of frame per level, kept by `black_box`; the recursion is
    /// not a tail call (its result is used), so it cannot become a loop.
    fn deeper(depth: u64) -> u64 {
        let frame = core::hint::black_box([depth; 64]);
        if core::hint::black_box(depth) == u64::MAX {
            return frame[0];
        }
        core::hint::black_box(deeper(depth + 1)) ^ frame[1]
    }
    let _ = deeper(0);
    panic!("self-test: the stack did not overflow")
}

/// What [`probe_tables`] found: every access refused.
#[derive(Clone, Copy, Debug)]
pub struct TablesRefused {
    /// The hypervisor's root table.
    pub root: u64,
    /// Frames recorded as the hypervisor's page tables.
    pub frames: u64,
    /// Ranges they are recorded as.
    pub ranges: usize,
    /// Frames probed (the root, the first and last of each range).
    pub probed: usize,
    /// Accesses tried, all refused.
    pub accesses: usize,
    /// One of the refusals.
    pub example: PhysError,
}

/// An access to a page-table frame that was not refused.
#[derive(Clone, Copy, Debug)]
pub struct NotRefused {
    /// Which accessor.
    pub access: &'static str,
    /// The frame.
    pub paddr: u64,
}

/// One access to try.
type Attempt<'a> = dyn Fn() -> Result<(), PhysError> + 'a;

/// Tries every public physical accessor on the hypervisor's root table and
/// on the first and last frame of each recorded page-table range. Writes
/// would put back the bytes that are there, so even an accepted one
/// changes nothing but `zero`, which comes last.
pub fn probe_tables() -> Result<TablesRefused, NotRefused> {
    let root = super::paging::hv_root();
    let mut frames = 0;
    let mut ranges = 0;
    for (start, end) in phys::table_ranges() {
        frames += (end - start) / PAGE_SIZE;
        ranges += 1;
    }
    let targets = core::iter::once(root)
        .chain(phys::table_ranges().flat_map(|(start, end)| [start, end - PAGE_SIZE]));
    let mut probed = 0;
    let mut accesses = 0;
    let mut example = None;
    for paddr in targets {
        probed += 1;
        let current = phys::table_read_u64(paddr).unwrap_or(0);
        let attempts: [(&str, &Attempt<'_>); 5] = [
            ("read", &|| phys::read(paddr, &mut [0u8; 8])),
            ("read_u64", &|| phys::read_u64(paddr).map(|_| ())),
            ("write", &|| phys::write(paddr, &current.to_le_bytes())),
            ("write_u64", &|| phys::write_u64(paddr, current)),
            ("zero", &|| phys::zero(paddr, PAGE_SIZE)),
        ];
        // In order, stopping at the first access that is not refused.
        for (access, attempt) in attempts {
            accesses += 1;
            match attempt() {
                Ok(()) => return Err(NotRefused { access, paddr }),
                Err(e) => {
                    example.get_or_insert(e);
                }
            }
        }
    }
    Ok(TablesRefused {
        root,
        frames,
        ranges,
        probed,
        accesses,
        example: example.unwrap_or(PhysError::TooManyClaims),
    })
}
