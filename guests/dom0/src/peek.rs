//! `peek <id> <gpfn> [offset]`: one 64-bit word of a domain's memory, named
//! by guest frame number (`read_guest`): the hypervisor translates the
//! gpfn and reads RAM the domain owns, or says why there is none to read.

use pvrt::hc;
use pvrt::hvlu_types::{DomId, PAGE_SIZE};
use pvrt::println;

use crate::devices::number;
use crate::reason;

/// `peek <id> <gpfn> [offset]`: the word at byte `offset` (default 0; a
/// multiple of 8 below 4096) of domain `id`'s frame `gpfn`, the numbers
/// decimal or hex with `0x`. Prints `peek dN gpfn G +O: 0x…` (16 hex
/// digits), or `peek dN gpfn G: refused: <reason> (<error>)` with the
/// hypervisor's reason.
pub fn peek(id: &str, gpfn: &str, offset: Option<&str>) {
    let (Some(id), Some(gpfn), Some(offset)) = (
        id.parse::<u16>().ok().map(DomId),
        number(gpfn),
        offset.map_or(Some(0), number),
    ) else {
        println!(
            "peek: give a domain id, a gpfn and optionally a byte offset (decimal, or hex with 0x)"
        );
        return;
    };
    if !offset.is_multiple_of(8) || offset >= PAGE_SIZE {
        println!(
            "peek d{id} gpfn {gpfn:#x}: offset {offset:#x} is not a multiple of 8 below {PAGE_SIZE:#x}"
        );
        return;
    }
    let mut word = [0u8; 8];
    match hc::read_guest(id, gpfn, offset, &mut word) {
        Ok(8) => println!(
            "peek d{id} gpfn {gpfn:#x} +{offset:#x}: {:#018x}",
            u64::from_le_bytes(word)
        ),
        // An aligned word below the frame's end is always whole.
        Ok(n) => println!("peek d{id} gpfn {gpfn:#x} +{offset:#x}: only {n} of 8 bytes came"),
        Err(e) => println!(
            "peek d{id} gpfn {gpfn:#x}: refused: {} ({})",
            reason(),
            e.name()
        ),
    }
}
