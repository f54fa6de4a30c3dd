//! `report`, `set_segment_base` and `sysinfo`: what a guest tells the
//! hypervisor about itself, and what it asks of it.

use core::sync::atomic::Ordering;

use handover_abi::DomId;
use hvlu_types::canonical::is_lower_half;
use pv_abi::hypercall::{Error, Report, SysInfo};
use zerocopy::IntoBytes;

use super::{copy_to_guest, Args};
use crate::arch::cpu;
use crate::hv::Hv;
use crate::{build_id, hvprintln, trap};

/// `report(kind, value)`: a self-check result, kept for the poweroff
/// summary.
pub fn do_report(hv: &mut Hv, d: DomId, a: Args) -> Result<u64, Error> {
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    let r = &mut dom.reports;
    match a[0] {
        x if x == Report::Checks as u64 => {
            if a[1] < r.checks {
                r.regressions += 1;
            }
            r.checks = a[1];
        }
        x if x == Report::Mismatches as u64 => r.mismatches = r.mismatches.max(a[1]),
        x if x == Report::ExpectedRefusal as u64 => r.expected_refusals += 1,
        x if x == Report::ExpectFault as u64 => r.expect_fault = true,
        x if x == Report::UnexpectedResult as u64 => {
            hvprintln!("d{d} reports an unexpected result in test {}", a[1]);
            r.unexpected_refusals += 1
        }
        _ => return Err(Error::Invalid),
    }
    Ok(0)
}

/// `set_segment_base(which, base)`: FS (0) or GS (1) of the calling vCPU,
/// a lower-half address.
pub fn do_set_segment_base(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    if !is_lower_half(a[1]) {
        return Err(Error::Invalid);
    }
    let vcpu = hv.current_vcpu_mut().ok_or(Error::Failed)?;
    match a[0] {
        0 => vcpu.fs_base = a[1],
        1 => vcpu.gs_base = a[1],
        _ => return Err(Error::Invalid),
    }
    cpu::set_guest_segment_bases(vcpu.fs_base, vcpu.gs_base);
    Ok(0)
}

/// `sysinfo(buf, len)`: up to `len` bytes of a [`SysInfo`]. Every figure
/// is a counter (the page allocator's free count, each domain's frame
/// count): the cost does not grow with the domains' memory.
pub fn do_sysinfo(hv: &mut Hv, a: Args) -> Result<u64, Error> {
    let info = SysInfo {
        free_frames: hv.mem.pages.free_frames(),
        owned_frames: hv.owned_frames(),
        domains: hv.domains.len() as u64,
        build_id: build_id::short(),
        ticks: trap::TICKS.load(Ordering::Relaxed),
        tick_hz: u64::from(hv.options.timer_hz),
    };
    let bytes = info.as_bytes();
    let n = (a[1] as usize).min(bytes.len());
    copy_to_guest(hv, a[0], &bytes[..n])?;
    Ok(n as u64)
}
