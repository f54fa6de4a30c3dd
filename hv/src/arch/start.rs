//! The two ways into the hypervisor's Rust code, as symbols the assembly
//! entries call: the PVH boot stub (`arch::boot`) calls `hv_entry64`, the
//! live-update entry (`arch::kexec`) calls `hv_lu_main`; and the `HVLU` ELF
//! note that tells an older hypervisor where that live-update entry is.
//!
//! Exporting an unmangled symbol and placing a static in a chosen section
//! are `unsafe_code` (a clash with another symbol or section is undefined
//! behaviour), which is why these live in the arch layer; the entries only
//! hand over to safe code.

use handover_abi::note::HvluNote;
use handover_abi::BuildId;

use crate::build_id::PROVISIONAL_ID;

extern "C" {
    /// The live-update entry (`arch::kexec`).
    fn hv_lu_entry() -> !;
}

/// The `HVLU` note: what an old hypervisor reads to decide whether it can
/// hand over to this image, where to enter it, and what this image reads
/// when entered (this tree's contract: `handover_abi::note::CONTRACT`).
#[used]
#[link_section = ".note.hvlu"]
static HVLU_NOTE: HvluNote<unsafe extern "C" fn() -> !> = HvluNote::new(
    crate::build_id::READS,
    crate::build_id::WRITES,
    handover_abi::note::CONTRACT,
    hv_lu_entry,
    PROVISIONAL_ID,
);

/// This image's build id: what its note holds, which `cargo xtask build`
/// stamps after linking (`docs/abi.md` §4.2), not [`PROVISIONAL_ID`].
pub fn build_id() -> BuildId {
    // SAFETY: the pointer is to a field of a `static`, so it is valid for
    // reads for the whole run, aligned (a byte array) and initialised; the
    // static lies in a read-only segment that nothing writes while the image
    // runs. The read is volatile because the field is stamped into the file
    // after the compiler saw its initial value, which it could otherwise
    // use instead of reading memory.
    BuildId(unsafe { core::ptr::read_volatile(HVLU_NOTE.build_id_field()) })
}

/// The first Rust code of a cold boot: in long mode, in the upper half, on
/// the boot stack, with the physical address of the PVH start-info
/// structure.
#[no_mangle]
extern "C" fn hv_entry64(start_info: u64) -> ! {
    crate::cold_boot(start_info)
}

/// The first Rust code after a live update: on the boot stack, with the
/// physical address of the entry argument page.
#[no_mangle]
extern "C" fn hv_lu_main(args_phys: u64) -> ! {
    crate::lu_boot(args_phys)
}
