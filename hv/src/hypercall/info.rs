//! `report`, `set_segment_base` and `sysinfo`: what a guest tells the
//! hypervisor about itself, and what it asks of it.

use core::sync::atomic::Ordering;

use hvlu_types::DomId;
use pv_abi::call::{GuestBuf, Segment};
use pv_abi::hypercall::{Error, Report, SysInfo};
use zerocopy::IntoBytes;

use super::copy_to_guest;
use crate::arch::cpu;
use crate::hv::Hv;
use crate::{build_id, hvprintln, trap};

/// `report(kind, value)`: a self-check result, kept for the poweroff
/// summary.
pub fn do_report(hv: &mut Hv, d: DomId, kind: Report, value: u64) -> Result<u64, Error> {
    let dom = hv.domains.get_mut(&d).ok_or(Error::Failed)?;
    let r = &mut dom.reports;
    match kind {
        Report::Checks => {
            if value < r.checks {
                r.regressions += 1;
            }
            r.checks = value;
        }
        Report::Mismatches => r.mismatches = r.mismatches.max(value),
        Report::ExpectedRefusal => r.expected_refusals += 1,
        Report::ExpectFault => r.expect_fault = true,
        Report::UnexpectedResult => {
            hvprintln!("d{d} reports an unexpected result in test {value}");
            r.unexpected_refusals += 1
        }
    }
    Ok(0)
}

/// `set_segment_base(which, base)`: FS (0) or GS (1) of the calling vCPU,
/// a lower-half address.
pub fn do_set_segment_base(hv: &mut Hv, which: Segment, base: u64) -> Result<u64, Error> {
    let vcpu = hv.current_vcpu_mut().ok_or(Error::Failed)?;
    match which {
        Segment::Fs => vcpu.fs_base = base,
        Segment::Gs => vcpu.gs_base = base,
    }
    cpu::set_guest_segment_bases(vcpu.fs_base, vcpu.gs_base);
    Ok(0)
}

/// `sysinfo(buf, len)`: up to `len` bytes of a [`SysInfo`]. Every figure
/// is a counter (the page allocator's free count, each domain's frame
/// count): the cost does not grow with the domains' memory.
pub fn do_sysinfo(hv: &mut Hv, to: GuestBuf) -> Result<u64, Error> {
    let info = SysInfo {
        free_frames: hv.mem.free_frames(),
        owned_frames: hv.owned_frames(),
        domains: hv.domains.len() as u64,
        build_id: build_id::short(),
        ticks: trap::TICKS.load(Ordering::Relaxed),
        tick_hz: u64::from(hv.options.timer_hz),
    };
    let bytes = info.as_bytes();
    let n = (to.len as usize).min(bytes.len());
    copy_to_guest(hv, to.addr, &bytes[..n])?;
    Ok(n as u64)
}
