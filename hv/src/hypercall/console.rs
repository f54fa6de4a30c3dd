//! `console_write` and `console_read`.

use alloc::string::String;

use hvlu_types::DomId;
use pv_abi::call::GuestBuf;
use pv_abi::hypercall::Error;

use super::{copy_from_guest, copy_to_guest};
use crate::console;
use crate::hv::Hv;
use crate::mm::heap;

/// Longest line a domain's console keeps before its newline.
const MAX_LINE: usize = 2048;

/// `console_write(buf, len)`: prints whole lines, `(dN) ` prefixed; keeps
/// the rest until its newline.
pub fn do_console_write(hv: &mut Hv, d: DomId, from: GuestBuf) -> Result<u64, Error> {
    let len = from.len as usize;
    let mut buf = heap::zeroed(len)?;
    copy_from_guest(hv, from.addr, &mut buf)?;
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    for &b in &buf {
        if b == b'\n' {
            console::domain_print(d, &String::from_utf8_lossy(&dom.console_line));
            dom.console_line.clear();
        } else if dom.console_line.len() < MAX_LINE && dom.console_line.try_reserve(1).is_ok() {
            dom.console_line.push(b);
        }
    }
    Ok(len as u64)
}

/// `console_read(buf, len)` (dom0): the console input waiting.
pub fn do_console_read(hv: &mut Hv, to: GuestBuf) -> Result<u64, Error> {
    hv.console_in.poll();
    let bytes = hv.console_in.peek(to.len as usize);
    copy_to_guest(hv, to.addr, &bytes)?;
    hv.console_in.consume(bytes.len());
    Ok(bytes.len() as u64)
}
