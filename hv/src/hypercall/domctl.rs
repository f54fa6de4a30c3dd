//! `domctl` (dom0): create, destroy, pause and list domains, list modules.

use alloc::format;
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
        DomctlOp::Destroy | DomctlOp::Pause | DomctlOp::Unpause => {
            let verb = match op {
                DomctlOp::Destroy => "destroyed",
                DomctlOp::Pause => "paused",
                _ => "unpaused",
            };
            let id = domid(hv, a[1])?;
            let Some(dom) = hv.domains.get_mut(&id) else {
                return hv.refuse_with(Error::NotFound, format!("there is no domain d{id}"));
            };
            if dom.privileged {
                return hv.refuse_with(
                    Error::Invalid,
                    format!("d{id} is the control domain: it cannot be {verb}"),
                );
            }
            if op == DomctlOp::Destroy {
                hv.destroy_domain(id).map(|()| 0)
            } else {
                dom.paused = op == DomctlOp::Pause;
                Ok(0)
            }
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

fn domid(hv: &mut Hv, arg: u64) -> Result<DomId, Error> {
    match u16::try_from(arg) {
        Ok(id) => Ok(DomId(id)),
        Err(_) => hv.refuse_with(
            Error::Invalid,
            format!("{arg} is not a domain id (they go up to {})", u16::MAX),
        ),
    }
}

/// `create(buf, len, kib)`: `buf` holds the module name, then optionally a
/// NUL and the domain's command line. A domain the machine cannot back (its
/// frames, or its frame space on the hypervisor heap) is refused with
/// `Error::NoMemory`. Every refusal says why (`last_error`).
fn create(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    if a[2] > MAX_CREATE_ARGS {
        return hv.refuse_with(
            Error::Invalid,
            format!(
                "the module name and command line are {} bytes, more than {MAX_CREATE_ARGS}",
                a[2]
            ),
        );
    }
    let mut buf = heap::zeroed(a[2] as usize)?;
    copy_from_guest(hv, a[1], &mut buf)?;
    let (name, cmdline) = match buf.iter().position(|&b| b == 0) {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (&buf[..], &[][..]),
    };
    let (Ok(name), Ok(cmdline)) = (core::str::from_utf8(name), core::str::from_utf8(cmdline))
    else {
        return hv.refuse_with(
            Error::Invalid,
            String::from("the module name or the command line is not UTF-8"),
        );
    };
    let room = pv_abi::start_info::StartInfo::default().cmdline.len() - 1;
    if cmdline.len() > room {
        return hv.refuse_with(
            Error::Invalid,
            format!(
                "the command line has {} bytes, more than the {room} a domain's start info holds",
                cmdline.len()
            ),
        );
    }
    let kib = a[3];
    if kib == 0 {
        return hv.refuse_with(
            Error::Invalid,
            format!("a domain of 0 KiB: give its memory in KiB (the toolstack's default is {DEFAULT_DOMU_KIB})"),
        );
    }
    if !kib.is_multiple_of(4) {
        return hv.refuse_with(
            Error::Invalid,
            format!("{kib} KiB is not a whole number of 4 KiB pages"),
        );
    }
    if kib > MAX_DOMAIN_KIB {
        return hv.refuse_with(
            Error::Invalid,
            format!("{kib} KiB is more than the {MAX_DOMAIN_KIB} KiB a domain may have"),
        );
    }
    match hv.create_domain(name, kib, cmdline, false) {
        Ok(id) => Ok(u64::from(id.0)),
        Err(e) => {
            if hv.last_error.is_empty() {
                hv.set_last_error(e.name());
            }
            Err(e)
        }
    }
}

/// Most bytes of `create`'s module name and command line together.
const MAX_CREATE_ARGS: u64 = 256;
/// Most memory of a domain, in KiB (1 GiB).
const MAX_DOMAIN_KIB: u64 = 1 << 20;

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
