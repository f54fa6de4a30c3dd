//! dom0's device commands: `devices` (the PCI functions the hypervisor
//! found, and which domains may map their memory), `edu` (drive QEMU's edu
//! device once), `edu watch <ms>` / `edu watch off` (keep checking it
//! between console commands) and `iomem permit|revoke <id> <mfn> <count>`
//! (a domain's I/O memory).
//!
//! dom0 maps edu's BAR 0 (its first page: every register it uses) at its
//! window slot [`SLOT`], uncacheable, once, and keeps the mapping: across
//! live updates the device stays mapped in dom0's tables while the watch
//! goes on. edu has one liveness register and one factorial unit: while a
//! domU drives it (`iomem permit`, a domU's `edu=`), dom0 leaves it alone,
//! or the two drivers' checks would read each other's values. Every check
//! is counted; dom0 reports the counts as its own
//! self-checks (`report` `Checks` and `Mismatches`), which the handover
//! state carries, so the poweroff summary's `report d0` line counts every
//! check since the cold boot and a failed one fails the verdict.

use pvrt::edu::{self, UNCACHEABLE};
use pvrt::hc;
use pvrt::hvlu_types::{DomId, PAGE_SIZE};
use pvrt::println;
use pvrt::pv_abi::hypercall::{
    DeviceInfo, Report, BAR_64, BAR_IO, BAR_PREFETCHABLE, BAR_PRESENT, MAX_MAPPABLE,
};

use crate::reason;

/// The window slot dom0 maps the device at.
pub const SLOT: u64 = 0;
/// Functions `devices` lists at most.
const MAX_LISTED: usize = 32;
/// A watch prints a summary line every this many checks.
const SUMMARY_EVERY: u64 = 10;

/// A size as `1M`, `4K`, or bytes.
struct Size(u64);

impl core::fmt::Display for Size {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
            if n >= 1 << shift && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// The functions the hypervisor reports, and how many there are.
fn read_devices(out: &mut [DeviceInfo; MAX_LISTED]) -> Result<usize, ()> {
    match hc::devices(out) {
        Ok(total) => Ok(total as usize),
        Err(e) => {
            println!("devices: error: {}", e.name());
            Err(())
        }
    }
}

/// `devices`: one line per function, `00:01.0 1234:11e8 class 00ff bar0
/// 0xc0000000+1M mappable by d0`.
pub fn list() {
    let mut out = [DeviceInfo::default(); MAX_LISTED];
    let Ok(total) = read_devices(&mut out) else {
        return;
    };
    if total == 0 {
        println!("devices: none (no PCI host bridge answers, or nothing behind it)");
        return;
    }
    for d in out.iter().take(total.min(MAX_LISTED)) {
        print_device(d);
    }
    if total > MAX_LISTED {
        println!("devices: {total} functions, the first {MAX_LISTED} listed");
    }
}

fn push(line: &mut Line, args: core::fmt::Arguments<'_>) {
    let _ = core::fmt::Write::write_fmt(line, args);
}

fn print_device(d: &DeviceInfo) {
    let mut line = Line::new();
    push(
        &mut line,
        format_args!(
            "{:02x}:{:02x}.{} {:04x}:{:04x} class {:04x}",
            d.bdf >> 8,
            (d.bdf >> 3) & 31,
            d.bdf & 7,
            d.vendor,
            d.device,
            d.class
        ),
    );
    for (i, bar) in d.bars.iter().enumerate() {
        if bar.flags & BAR_PRESENT == 0 {
            continue;
        }
        let io = if bar.flags & BAR_IO != 0 { " io" } else { "" };
        push(&mut line, format_args!(" bar{i}{io} {:#x}+", bar.base));
        if bar.size == 0 {
            push(&mut line, format_args!("?"));
        } else {
            push(&mut line, format_args!("{}", Size(bar.size)));
        }
        if bar.flags & BAR_64 != 0 {
            push(&mut line, format_args!(" 64-bit"));
        }
        if bar.flags & BAR_PREFETCHABLE != 0 {
            push(&mut line, format_args!(" prefetchable"));
        }
        if bar.flags & BAR_IO != 0 {
            continue;
        }
        let n = usize::from(bar.mappable_count);
        if n == 0 {
            push(&mut line, format_args!(" mappable by nobody"));
        }
        for (k, id) in bar.mappable.iter().take(n.min(MAX_MAPPABLE)).enumerate() {
            let sep = if k == 0 { " mappable by " } else { "," };
            push(&mut line, format_args!("{sep}d{id}"));
        }
        if n > MAX_MAPPABLE {
            push(&mut line, format_args!(" and {} more", n - MAX_MAPPABLE));
        }
    }
    println!("{}", line.as_str());
}

/// A line built piece by piece.
type Line = crate::text::Text<512>;

/// dom0's hold on the edu device: where it is mapped, the watch, the
/// counts.
#[derive(Debug, Default)]
pub struct Edu {
    /// The BAR 0 address mapped at [`SLOT`], once mapped.
    mapped: Option<u64>,
    /// Checks done and failed, since dom0 started (its memory survives
    /// updates, so these do too).
    checks: u64,
    failures: u64,
    /// The watch: (interval in ticks, tick of the last check).
    watch: Option<(u64, u64)>,
    /// A fresh value for each check.
    fresh: u64,
}

impl Edu {
    /// Maps BAR 0 of the first edu function if it is not mapped yet;
    /// returns its address, or says why not.
    fn map(&mut self) -> Option<u64> {
        if let Some(base) = self.mapped {
            return Some(base);
        }
        let mut out = [DeviceInfo::default(); MAX_LISTED];
        let total = read_devices(&mut out).ok()?;
        let Some((d, base)) = edu::find(&out[..total.min(MAX_LISTED)]) else {
            println!("edu: no edu device (1234:11e8) with a memory BAR 0");
            return None;
        };
        let mfn = base / PAGE_SIZE;
        if let Err(e) = edu::map(SLOT, mfn, UNCACHEABLE) {
            println!("edu: cannot map bar0 {base:#x}: {}", e.name());
            return None;
        }
        println!(
            "edu: {:02x}:{:02x}.{} bar0 {base:#x} mapped uncacheable at {:#x}",
            d.bdf >> 8,
            (d.bdf >> 3) & 31,
            d.bdf & 7,
            pvrt::start_info().window_va + SLOT * PAGE_SIZE
        );
        self.mapped = Some(base);
        Some(base)
    }

    /// One check, counted and reported; prints its result if `verbose`,
    /// a failure always. Without a device to map (the reason is printed)
    /// there is no check, and nothing is counted.
    fn check(&mut self, verbose: bool) -> bool {
        if self.map().is_none() {
            return false;
        }
        self.fresh = self
            .fresh
            .wrapping_add(hc::sysinfo().map_or(1, |i| i.ticks | 1))
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let result = edu::check(SLOT, self.fresh);
        self.checks += 1;
        let ok = match result {
            Ok(c) => {
                if verbose {
                    println!("edu: {c}");
                }
                true
            }
            Err(f) => {
                self.failures += 1;
                println!("edu: check {} FAILED: {f}", self.checks);
                false
            }
        };
        self.report();
        ok
    }

    fn report(&self) {
        let _ = hc::report(Report::Checks, self.checks);
        let _ = hc::report(Report::Mismatches, self.failures);
    }

    /// `edu`: one check, printed.
    pub fn once(&mut self) {
        if self.check(true) {
            println!(
                "edu: check passed ({} checks, {} failed)",
                self.checks, self.failures
            );
        }
    }

    /// `edu watch <ms>`: a check every `ms` between console commands.
    pub fn watch(&mut self, ms: u64) {
        let hz = hc::sysinfo().map_or(100, |i| i.tick_hz.max(1));
        let ticks = (ms * hz).div_ceil(1000).max(1);
        if self.map().is_none() {
            return;
        }
        self.watch = Some((ticks, 0));
        println!("edu watch: a check every {ms} ms ({ticks} ticks)");
    }

    /// `edu watch off`.
    pub fn unwatch(&mut self) {
        self.watch = None;
        println!(
            "edu watch: off after {} checks, {} failed",
            self.checks, self.failures
        );
    }

    /// `edu unmap`: stops the watch and takes BAR 0 out of dom0's tables,
    /// so that nothing of dom0 maps device memory — what an update to a
    /// release that forgets I/O memory permissions (1.0, 1.1) needs. The
    /// next `edu` maps it again.
    pub fn unmap(&mut self) {
        if self.watch.is_some() {
            self.unwatch();
        }
        let Some(base) = self.mapped.take() else {
            println!("edu: bar0 is not mapped");
            return;
        };
        match edu::map(SLOT, 0, 0) {
            Ok(_) => println!("edu: bar0 {base:#x} unmapped"),
            Err(e) => {
                self.mapped = Some(base);
                println!("edu: cannot unmap bar0 {base:#x}: {}", e.name());
            }
        }
    }

    /// `edu watch` alone: where the watch is.
    pub fn status(&self) {
        let state = if self.watch.is_some() { "on" } else { "off" };
        println!(
            "edu watch: {state}, {} checks, {} failed",
            self.checks, self.failures
        );
    }

    /// Called from dom0's loop: a check if the watch is on and its time has
    /// come. Timer ticks start again from 0 at every live update, so a tick
    /// count below the last check's also means "due".
    pub fn poll(&mut self) {
        let Some((interval, last)) = self.watch else {
            return;
        };
        let Ok(now) = hc::sysinfo().map(|i| i.ticks) else {
            return;
        };
        if now >= last && now - last < interval {
            return;
        }
        self.watch = Some((interval, now));
        self.check(false);
        if self.checks.is_multiple_of(SUMMARY_EVERY) {
            println!(
                "edu watch: {} checks, {} failed",
                self.checks, self.failures
            );
        }
    }
}

/// A frame number or count: decimal, or hex with `0x`.
pub(crate) fn number(word: &str) -> Option<u64> {
    match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// `iomem permit|revoke <id> <first_mfn> <count>`.
pub fn iomem(op: &str, id: &str, first: &str, count: &str) {
    let allow = op == "permit";
    let (Some(id), Some(first), Some(count)) = (
        id.parse::<u16>().ok().map(DomId),
        number(first),
        number(count),
    ) else {
        println!(
            "iomem {op}: give a domain id, a first frame and a count (decimal, or hex with 0x)"
        );
        return;
    };
    match hc::iomem_permit(id, first, count, allow) {
        Ok(_) => println!(
            "iomem {op} d{id} mfns [{first:#x}, {:#x}): done",
            first.saturating_add(count)
        ),
        Err(e) => println!("iomem {op} d{id}: error: {}: {}", e.name(), reason()),
    }
}

/// The window slot `map` uses (the edu mapping keeps [`SLOT`]).
const PROBE_SLOT: u64 = SLOT + 1;

/// `map <mfn>`: maps machine frame `mfn` read-only into the window and
/// takes the mapping away again; says which happened, or why the
/// hypervisor refused it.
pub fn try_map(mfn: &str) {
    let Some(mfn) = number(mfn) else {
        println!("map: {mfn} is not a frame number (decimal, or hex with 0x)");
        return;
    };
    match edu::map(PROBE_SLOT, mfn, pvrt::hvlu_types::pte::PRESENT) {
        Ok(_) => {
            let _ = edu::map(PROBE_SLOT, 0, 0);
            println!("map {mfn:#x}: mapped, then unmapped");
        }
        Err(e) => println!("map {mfn:#x}: refused: {}", e.name()),
    }
}
