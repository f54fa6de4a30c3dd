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

/// Where the way back leaves why it failed, for the cold boot the reset
/// after it starts: a record in the marker's page, after the marker
/// (`magic "HVLUFAIL"`, the text's length and CRC32C, then the text, at
/// most [`FAILED_TEXT_MAX`] bytes). The same image writes and reads it
/// (the cold-boot one), so it is this hypervisor's, not the ABI's.
const FAILED_PHYS: u64 = UPDATE_MARKER_PHYS + 0x100;
const FAILED_MAGIC: [u8; 8] = *b"HVLUFAIL";
/// The longest text the record keeps (a longer one is cut).
pub const FAILED_TEXT_MAX: usize = 256;

/// Records why the way back failed (`text`, cut to [`FAILED_TEXT_MAX`]
/// bytes at a character boundary), before the reset that boots cold.
pub fn record_failed_way_back(text: &str) {
    let mut keep = text.len().min(FAILED_TEXT_MAX);
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let text = &text.as_bytes()[..keep];
    let mut b = [0u8; 16 + FAILED_TEXT_MAX];
    b[..8].copy_from_slice(&FAILED_MAGIC);
    b[8..12].copy_from_slice(&(keep as u32).to_le_bytes());
    b[12..16].copy_from_slice(&hvlu_types::crc32c::crc32c(text).to_le_bytes());
    b[16..16 + keep].copy_from_slice(text);
    if let Err(e) = phys::write(FAILED_PHYS, &b) {
        hvprintln!("lu: cannot record why the way back failed: {e}");
    }
}

/// On a cold boot: why the way back failed before the reset that started
/// it, if it left a record ([`record_failed_way_back`]); the record is
/// cleared.
pub fn take_failed_way_back() -> Option<alloc::string::String> {
    let mut b = [0u8; 16 + FAILED_TEXT_MAX];
    phys::read(FAILED_PHYS, &mut b).ok()?;
    if b[..8] != FAILED_MAGIC {
        return None;
    }
    let _ = phys::write(FAILED_PHYS, &[0; 16]);
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    let crc = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    let text = b.get(16..16 + len)?;
    if len > FAILED_TEXT_MAX || hvlu_types::crc32c::crc32c(text) != crc {
        return None;
    }
    core::str::from_utf8(text).ok().map(alloc::string::String::from)
}
