//! The live-update hypercalls (dom0 only: the dispatcher refuses them to
//! any other domain) and the host link dom0's tool receives images over.
//! The work is `crate::lu::outgoing`'s; these copy arguments and results.

use alloc::string::ToString;

use pv_abi::call::GuestBuf;
use pv_abi::hypercall::Error;
use zerocopy::IntoBytes;

use super::{caller, copy_from_guest, copy_to_guest};
use crate::hostlink;
use crate::hv::Hv;
use crate::lu::outgoing::ImageSource;
use crate::mm::heap;

/// `lu_load(name, len, force)`: stages boot module `name` (its length
/// checked in decoding); the build whose update was rolled back only if
/// `force`.
pub fn do_lu_load(hv: &mut Hv, name: GuestBuf, force: bool) -> Result<u64, Error> {
    let mut bytes = heap::zeroed(name.len as usize)?;
    copy_from_guest(hv, name.addr, &mut bytes)?;
    match pv_abi::call::module_name(&bytes) {
        Ok(name) => hv.lu_load(name, force),
        Err(e) => hv.refuse(e.error(), e.to_string()),
    }
}

/// `lu_load_buffer(buf, len, name, name_len)`: stages the image in the
/// caller's memory, called `name` in the log and in refusals (dom0 names an
/// image from the host link by its transfer: `host link transfer #… (N
/// bytes, CRC32C …)`), or by its size if the caller gives no name. The
/// bytes go straight from there to the live-update region, whatever their
/// number (`Hv::lu_load_from` refuses a file that does not fit there).
pub fn do_lu_load_buffer(hv: &mut Hv, image: GuestBuf, name: GuestBuf) -> Result<u64, Error> {
    let mut bytes = heap::zeroed(name.len as usize)?;
    copy_from_guest(hv, name.addr, &mut bytes)?;
    let name = match pv_abi::call::module_name(&bytes) {
        Ok("") => alloc::format!("an image of {} bytes from dom0's memory", image.len),
        Ok(name) => name.to_string(),
        Err(e) => return hv.refuse(e.error(), e.to_string()),
    };
    // dom0, the only caller, is PV.
    let (owner, crate::guest_mem::Space::Pv(cr3)) = caller(hv)? else {
        return Err(Error::NoSys);
    };
    let source = ImageSource::Guest {
        owner,
        cr3,
        va: image.addr,
        len: image.len,
    };
    hv.lu_load_from(&name, source, false)
}

/// `lu_status(buf, len)`: up to `len` bytes of a `LuStatus`.
pub fn do_lu_status(hv: &mut Hv, buf: GuestBuf) -> Result<u64, Error> {
    let status = hv.lu_status();
    let bytes = status.as_bytes();
    let n = (buf.len as usize).min(bytes.len());
    copy_to_guest(hv, buf.addr, &bytes[..n])?;
    Ok(n as u64)
}

/// `hostlink_read(buf, len)`: the bytes waiting on the host link
/// (`crate::hostlink`: the virtio-serial port or COM2), at most `len`.
pub fn do_hostlink_read(hv: &mut Hv, buf: GuestBuf) -> Result<u64, Error> {
    let mut bytes = heap::zeroed(buf.len as usize)?;
    let n = hostlink::read(hv.options.hostlink, &mut bytes);
    copy_to_guest(hv, buf.addr, &bytes[..n])?;
    Ok(n as u64)
}

/// `hostlink_write(buf, len)`: sends as many of the bytes (at most 4096)
/// as the host link's device takes without waiting, and returns how
/// many: 0 when the host is not reading. The hypervisor never waits for the
/// host; the caller decides how long to retry.
pub fn do_hostlink_write(hv: &mut Hv, buf: GuestBuf) -> Result<u64, Error> {
    let len = buf.len as usize;
    let mut bytes = heap::zeroed(len)?;
    copy_from_guest(hv, buf.addr, &mut bytes)?;
    Ok(hostlink::write(hv.options.hostlink, &bytes) as u64)
}
