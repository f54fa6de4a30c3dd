//! Live update: the outgoing role (load, status, unload, exec) and the
//! incoming role (the entry, verify, the pass, rebuild, resume, release).
//!
//! Both roles are in every image, so an updated hypervisor can be updated
//! again. The framework's format and rules live in `handover-abi` and
//! `frame-ownership`, the roles' hardware-independent logic in `old-hv`
//! (staging layout, handover state, serialisation, pre-flight) and `new-hv`
//! (entry contract, verification, the pass and the digest check, p2m
//! reconstruction, the report line); this module is the reference
//! hypervisor's use of them: physical memory, page tables, the jump, the
//! scheduler and the console.
//!
//! The staging area is the region's largest free gap at load time, the
//! image at the end away from the running image: `[image][argument
//! page][trampoline page][entry tables][state]` at the bottom,
//! `[state][argument page][trampoline page][entry tables][image]` at the top
//! (`old_hv::staging`). The incoming image's boot allocator treats the hull
//! of image and state as one hole (`new_hv::staged_range`) and returns all
//! of it but the image once the state is consumed
//! (`new_hv::staging::consumed_range`), so the capacity stays the same
//! from one update to the next.

pub mod incoming;
pub mod outgoing;

use handover_abi::marker::{Marker, MarkerError, MARKER_SIZE};

use crate::arch::phys;
use crate::cmdline::UPDATE_MARKER_PHYS;
use crate::hvprintln;

/// The update marker (`handover_abi::marker`) at [`UPDATE_MARKER_PHYS`]:
/// an update that armed the watchdog and never confirmed, whose machine
/// reset after the jump (the new image hung or faulted). Read on a cold
/// boot before anything is allocated (no heap).
pub fn read_marker() -> Result<Option<Marker>, MarkerError> {
    let mut b = [0u8; MARKER_SIZE];
    if phys::read(UPDATE_MARKER_PHYS, &mut b).is_err() {
        return Ok(None);
    }
    Marker::from_bytes(&b)
}

/// Zeroes the update marker: the update it named is dealt with (rolled
/// back, or given up with the reason said), and the next reset must not
/// find it again.
pub fn clear_marker() {
    if let Err(e) = phys::write(UPDATE_MARKER_PHYS, &[0; MARKER_SIZE]) {
        hvprintln!("lu: cannot clear the update marker at {UPDATE_MARKER_PHYS:#x}: {e}");
    }
}
