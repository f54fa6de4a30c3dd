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

use alloc::format;
use alloc::string::{String, ToString};

use handover_abi::marker::{Marker, MARKER_SIZE};

use crate::arch::phys;
use crate::cmdline::UPDATE_MARKER_PHYS;
use crate::hvprintln;

/// On a cold boot: whether an update that armed the watchdog never
/// confirmed — its marker (`handover_abi::marker`) is still at
/// [`UPDATE_MARKER_PHYS`], so the machine reset after that update's jump,
/// before the new image ran its guests (it hung or faulted). Says so,
/// clears the marker (the next reset must not find it again) and returns
/// the line `lu status` shows. There is no way back yet (issue 18): the
/// boot goes on cold and the guests of before the reset are gone.
pub fn unconfirmed_update() -> Option<String> {
    let mut b = [0u8; MARKER_SIZE];
    phys::read(UPDATE_MARKER_PHYS, &mut b).ok()?;
    let line = match Marker::from_bytes(&b) {
        Ok(None) => return None,
        Ok(Some(m)) => format!(
            "update {} to build {} did not confirm: the machine reset after its jump; cold boot",
            m.sequence,
            &m.to_build_id.to_string()[..16]
        ),
        Err(e) => format!("a damaged update marker ({e}); cold boot"),
    };
    if let Err(e) = phys::write(UPDATE_MARKER_PHYS, &[0; MARKER_SIZE]) {
        hvprintln!("lu: cannot clear the update marker at {UPDATE_MARKER_PHYS:#x}: {e}");
    }
    hvprintln!("lu: {line}");
    Some(line)
}
