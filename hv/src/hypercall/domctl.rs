//! `domctl` (dom0): create, destroy, pause and list domains, list modules.

use alloc::string::String;
use alloc::vec::Vec;

use handover_abi::DomId;
use pv_abi::hypercall::{DomainInfo, DomctlOp, Error};
use zerocopy::IntoBytes;

use super::{copy_from_guest, copy_to_guest, require_privileged, Args};
use crate::domain::{Domain, DEFAULT_DOMU_KIB};
use crate::hv::Hv;
use crate::mm::heap;

/// `domctl(op, arg0, arg1, arg2)`: the operation's arguments are `a[1..]`.
pub fn do_domctl(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    require_privileged(hv)?;
    let op = DomctlOp::from_number(a[0]).ok_or(Error::NoSys)?;
    match op {
        DomctlOp::Create => create(hv, a),
        DomctlOp::Destroy => {
            let id = domid(a[1])?;
            if hv.domains.get(&id).is_some_and(|d| d.privileged) {
                return Err(Error::Invalid);
            }
            hv.destroy_domain(id).map(|()| 0)
        }
        DomctlOp::Pause | DomctlOp::Unpause => {
            let id = domid(a[1])?;
            let dom = hv.domains.get_mut(&id).ok_or(Error::NotFound)?;
            if dom.privileged {
                return Err(Error::Invalid);
            }
            dom.paused = op == DomctlOp::Pause;
            Ok(0)
        }
        DomctlOp::List => list(hv, a),
        DomctlOp::Modules => {
            let mut text = String::new();
            for m in &hv.modules {
                text.push_str(&m.name);
                text.push('\n');
            }
            if text.len() > a[2] as usize {
                return Err(Error::TooSmall);
            }
            copy_to_guest(hv, a[1], text.as_bytes())?;
            Ok(text.len() as u64)
        }
    }
}

fn domid(arg: u64) -> Result<DomId, Error> {
    u16::try_from(arg).map(DomId).map_err(|_| Error::Invalid)
}

/// `create(buf, len, kib)`: `buf` holds the module name, then optionally a
/// NUL and the domain's command line. A domain the machine cannot back (its
/// frames, or its frame space on the hypervisor heap) is refused with
/// `Error::NoMemory`; the hypervisor log has the numbers.
fn create(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    let len = a[2].min(256) as usize;
    let mut buf = heap::zeroed(len)?;
    copy_from_guest(hv, a[1], &mut buf)?;
    let (name, cmdline) = match buf.iter().position(|&b| b == 0) {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (&buf[..], &[][..]),
    };
    let name = core::str::from_utf8(name).map_err(|_| Error::Invalid)?;
    let cmdline = core::str::from_utf8(cmdline).map_err(|_| Error::Invalid)?;
    let kib = if a[3] == 0 { DEFAULT_DOMU_KIB } else { a[3] };
    if kib % 4 != 0 || kib > 1 << 20 {
        return Err(Error::Invalid);
    }
    hv.create_domain(name, kib, cmdline, false)
        .map(|id| u64::from(id.0))
}

/// `list(buf, count)`: up to `count` entries; returns how many domains there
/// are.
fn list(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    let mut infos: Vec<DomainInfo> = Vec::new();
    heap::reserve(&mut infos, hv.domains.len())?;
    infos.extend(hv.domains.values().map(info));
    let n = (a[2] as usize).min(infos.len());
    copy_to_guest(hv, a[1], infos[..n].as_bytes())?;
    Ok(infos.len() as u64)
}

fn info(dom: &Domain) -> DomainInfo {
    let mut name = [0u8; 32];
    let n = dom.name.len().min(31);
    name[..n].copy_from_slice(&dom.name.as_bytes()[..n]);
    DomainInfo {
        id: dom.id.0,
        paused: u8::from(dom.paused),
        privileged: u8::from(dom.privileged),
        vcpus: dom.vcpus.len() as u32,
        frames: dom.frames(),
        max_frames: dom.max_frames,
        name,
    }
}
