//! `domctl` (dom0): create, destroy, pause and list domains, list modules,
//! grant and revoke I/O memory (`super::devices`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hvlu_types::hole::Hole;
use pv_abi::call::{CreateArgs, Domctl, GuestArray, GuestBuf};
use pv_abi::hypercall::{DomainInfo, Error};
use zerocopy::IntoBytes;

use super::{copy_from_guest, copy_to_guest};
use crate::domain::Domain;
use crate::hv::Hv;
use crate::mm::heap;

/// `domctl(op, arg0, arg1, arg2, arg3)`, decoded.
pub fn do_domctl(hv: &mut Hv, op: Domctl) -> Result<u64, Error> {
    match op {
        Domctl::Create { args, kib, hole } => create(hv, args, kib, hole.unwrap_or_default()),
        Domctl::Destroy { id } | Domctl::Pause { id } | Domctl::Unpause { id } => {
            let verb = match op {
                Domctl::Destroy { .. } => "destroyed",
                Domctl::Pause { .. } => "paused",
                _ => "unpaused",
            };
            let Some(dom) = hv.domains.get_mut(&id) else {
                return hv.refuse_with(Error::NotFound, format!("there is no domain d{id}"));
            };
            if dom.privileged {
                return hv.refuse_with(
                    Error::Invalid,
                    format!("d{id} is the control domain: it cannot be {verb}"),
                );
            }
            match op {
                Domctl::Destroy { .. } => hv.destroy_domain(id).map(|()| 0),
                _ => {
                    dom.paused = matches!(op, Domctl::Pause { .. });
                    Ok(0)
                }
            }
        }
        Domctl::List { out } => list(hv, out),
        Domctl::IomemPermit {
            id,
            first,
            count,
            allow,
        } => super::devices::iomem_permit(hv, id, first, count, allow),
        Domctl::LogDirty { id, op, out } => crate::hvm::logdirty::domctl(hv, id, op, out),
        Domctl::Modules { out } => {
            let mut text = String::new();
            for m in &hv.modules {
                text.push_str(&m.name);
                text.push('\n');
            }
            if text.len() as u64 > out.len {
                return Err(Error::TooSmall);
            }
            copy_to_guest(hv, out.addr, text.as_bytes())?;
            Ok(text.len() as u64)
        }
    }
}

/// `create(buf, len, kib, hole)`: `buf` holds the module name, then
/// optionally a NUL and the domain's command line
/// (`pv_abi::call::CreateArgs`); its length, `kib` and the PCI hole were
/// checked in decoding. A domain the machine cannot back (its frames, or
/// its frame space on the hypervisor heap) is refused with
/// `Error::NoMemory`. Every refusal says why (`last_error`).
fn create(hv: &mut Hv, args: GuestBuf, kib: u64, hole: Hole) -> Result<u64, Error> {
    let mut buf = heap::zeroed(args.len as usize)?;
    copy_from_guest(hv, args.addr, &mut buf)?;
    let CreateArgs { name, cmdline } = match CreateArgs::decode(&buf) {
        Ok(args) => args,
        Err(e) => return hv.refuse_with(e.error(), e.to_string()),
    };
    match hv.create_domain(name, kib, cmdline, false, hole) {
        Ok(id) => Ok(u64::from(id.0)),
        Err(e) => {
            if hv.last_error.is_empty() {
                hv.set_last_error(e.name());
            }
            Err(e)
        }
    }
}

/// `list(buf, count)`: up to `count` entries; returns how many domains there
/// are.
fn list(hv: &mut Hv, out: GuestArray) -> Result<u64, Error> {
    let mut infos: Vec<DomainInfo> = Vec::new();
    heap::reserve(&mut infos, hv.domains.len())?;
    infos.extend(hv.domains.values().map(info));
    let n = (out.count as usize).min(infos.len());
    copy_to_guest(hv, out.addr, infos[..n].as_bytes())?;
    Ok(infos.len() as u64)
}

fn info(dom: &Domain) -> DomainInfo {
    let mut name = [0u8; 32];
    let n = dom.name.len().min(31);
    name[..n].copy_from_slice(&dom.name.as_bytes()[..n]);
    DomainInfo {
        id: dom.id.0,
        paused: u8::from(dom.paused),
        flags: if dom.privileged {
            pv_abi::hypercall::DOMINFO_PRIVILEGED
        } else {
            0
        } | if dom.hvm.is_some() {
            pv_abi::hypercall::DOMINFO_HVM
        } else {
            0
        },
        vcpus: dom.vcpus.len() as u32,
        frames: dom.frames(),
        max_frames: dom.max_frames,
        name,
    }
}
