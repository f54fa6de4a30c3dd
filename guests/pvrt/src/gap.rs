//! The pause a guest sees: gaps in its own work, timed with its own clock,
//! and the one that held a live update.
//!
//! The clock is the TSC: a PV guest reads it in ring 3 (the hypervisor
//! leaves CR4.TSD clear) and an HVM guest reads it without an exit (RDTSC
//! is not intercepted, the offset is 0), and it runs on, unchanged, across
//! an update. A guest marks ([`Gaps::mark`]) after every piece of its own
//! work (a page checked); the time between two marks is a *gap*, in which
//! the guest did not run (or ran only a hypercall). Most gaps are one
//! step's length. Some are the other vCPUs' turns: one CPU, round robin, a
//! timer tick each, so with `n` busy domains an ordinary gap is about `n`
//! ticks. One gap per update holds the update.
//!
//! Which one: a gap longer than an eighth of a tick (the guest's own
//! estimate of a tick in TSC cycles, [`Gaps::tsc_per_tick`]) makes the
//! guest look at once at the hypervisor it runs on (`sysinfo`: its build id
//! and its tick count, which every new instance starts from 0). A new
//! instance means that the gap that just ended held the update: it is that
//! update's pause ([`Pause`]). Every gap a look finds no update behind is
//! ordinary scheduling; the largest since the last heartbeat is kept
//! ([`Gaps::take_ordinary`]). Until the guest knows a tick's length (the
//! first second of ticks it sees) it looks after every mark. The estimate
//! is the TSC over the ticks of one instance across the longest span seen,
//! a second at least, kept from one instance to the next (the TSC's rate
//! does not change); it
//! is only good to some per cent — a hypervisor that holds interrupts off
//! loses ticks, and the timer may catch up on them in a burst — which is
//! plenty for the threshold. Figures meant to be compared are printed in
//! TSC cycles, for the reader to convert at the hypervisor's calibrated
//! rate.
//!
//! [`Gaps`] is the arithmetic alone (host-tested); [`Meter`] reads the TSC,
//! makes the `sysinfo` call and prints a pause as `update-pause N:
//! gap_tsc=… gap_us=… hv=…` (`N`: the updates this guest has seen).

use core::fmt;

use pv_abi::hypercall::SysInfo;

/// Ticks a tick's length is estimated over, at least: a second at the
/// default 100 Hz.
const CALIBRATION_TICKS: u64 = 100;

/// A gap longer than a tick divided by this is looked at.
const LOOK_FRACTION: u64 = 8;

/// The hypervisor instance a guest last saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Instance {
    build_id: u64,
    ticks: u64,
}

/// The gap that held a live update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    /// The updates this guest has seen, this one included.
    pub n: u64,
    /// The gap, in TSC cycles.
    pub tsc: u64,
    /// The gap in µs by the guest's estimate of the TSC rate, if it has one.
    pub us: Option<u64>,
    /// The new hypervisor's build id (first 8 bytes).
    pub build_id: u64,
}

impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update-pause {}: gap_tsc={} gap_us=", self.n, self.tsc)?;
        match self.us {
            Some(us) => write!(f, "{us}")?,
            None => f.write_str("unknown")?,
        }
        write!(f, " hv={:016x}", self.build_id)
    }
}

/// Gaps between marks, by TSC readings the caller passes.
#[derive(Clone, Debug, Default)]
pub struct Gaps {
    /// The TSC at the last mark.
    last: u64,
    /// The largest gap since the last look at the instance.
    window: u64,
    /// The largest gap that held no update since [`Gaps::take_ordinary`].
    ordinary: u64,
    instance: Option<Instance>,
    /// (ticks, TSC) at the first look at this instance.
    origin: Option<(u64, u64)>,
    tsc_per_tick: u64,
    /// The ticks `tsc_per_tick` was measured over.
    span: u64,
    tick_hz: u64,
    updates: u64,
}

impl Gaps {
    /// Gaps from TSC reading `now` on.
    pub fn new(now: u64) -> Gaps {
        Gaps {
            last: now,
            ..Gaps::default()
        }
    }

    /// TSC cycles per timer tick by the guest's own estimate (ticks and
    /// TSC both counted by one instance); 0 until it has one.
    pub fn tsc_per_tick(&self) -> u64 {
        self.tsc_per_tick
    }

    /// µs of `tsc` cycles by the guest's estimate, if it has one.
    pub fn us(&self, tsc: u64) -> Option<u64> {
        let per_second = u128::from(self.tsc_per_tick) * u128::from(self.tick_hz);
        (per_second > 0).then(|| (u128::from(tsc) * 1_000_000 / per_second) as u64)
    }

    /// A mark at TSC reading `now`; `true`: the gap since the last mark is
    /// long enough to have held an update, look at the instance now
    /// ([`Gaps::look`]).
    pub fn mark(&mut self, now: u64) -> bool {
        let gap = now.saturating_sub(self.last);
        self.last = now;
        self.window = self.window.max(gap);
        gap > self.tsc_per_tick / LOOK_FRACTION
    }

    /// A look at the instance `info` describes, at TSC reading `now`: the
    /// pause, if it is a new instance (another build id, or fewer ticks
    /// than the last look saw).
    pub fn look(&mut self, info: &SysInfo, now: u64) -> Option<Pause> {
        let seen = Instance {
            build_id: info.build_id,
            ticks: info.ticks,
        };
        let new = self
            .instance
            .is_some_and(|i| i.build_id != seen.build_id || seen.ticks < i.ticks);
        self.instance = Some(seen);
        self.tick_hz = info.tick_hz;
        let gap = core::mem::take(&mut self.window);
        if new {
            self.origin = None;
        }
        match self.origin {
            None => self.origin = Some((info.ticks, now)),
            // The longest span yet: a burst of ticks weighs least there.
            Some((ticks, tsc))
                if info.ticks >= ticks + CALIBRATION_TICKS && info.ticks - ticks > self.span =>
            {
                self.span = info.ticks - ticks;
                self.tsc_per_tick = now.saturating_sub(tsc) / self.span;
            }
            Some(_) => {}
        }
        if !new {
            self.ordinary = self.ordinary.max(gap);
            return None;
        }
        self.updates += 1;
        Some(Pause {
            n: self.updates,
            tsc: gap,
            us: self.us(gap),
            build_id: info.build_id,
        })
    }

    /// The largest gap that held no update since the last call, in TSC
    /// cycles (what the heartbeat prints).
    pub fn take_ordinary(&mut self) -> u64 {
        core::mem::take(&mut self.ordinary)
    }
}

/// Reads the TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter; the hypervisor lets
    // a guest execute it (CR4.TSD clear for PV guests in ring 3; not
    // intercepted for HVM guests).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// [`Gaps`] on the TSC, looking with `sysinfo` and printing each pause.
#[derive(Clone, Debug)]
pub struct Meter {
    gaps: Gaps,
}

impl Meter {
    /// Gaps from now on.
    pub fn new() -> Meter {
        Meter {
            gaps: Gaps::new(rdtsc()),
        }
    }

    /// Starts the next gap now: the guest's own long work before (filling
    /// its memory) is no gap.
    pub fn restart(&mut self) {
        self.gaps.last = rdtsc();
    }

    /// A mark after a piece of the guest's work ([`Gaps::mark`]); looks at
    /// the instance if the gap asks for it.
    pub fn mark(&mut self) {
        if self.gaps.mark(rdtsc()) {
            if let Ok(info) = crate::hc::sysinfo() {
                self.look(&info);
            }
        }
    }

    /// A look at the instance with a `sysinfo` the guest made anyway;
    /// prints the pause if there is a new instance.
    pub fn look(&mut self, info: &SysInfo) {
        if let Some(pause) = self.gaps.look(info, rdtsc()) {
            crate::println!("{pause}");
        }
    }

    /// The heartbeat's field: `sched_gap_tsc=` the largest gap that held
    /// no update since the last heartbeat, in TSC cycles.
    pub fn heartbeat_field(&mut self) -> SchedGap {
        SchedGap(self.gaps.take_ordinary())
    }
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

/// `sched_gap_tsc=N` in a heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct SchedGap(u64);

impl fmt::Display for SchedGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sched_gap_tsc={}", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::ToString;

    use super::*;

    fn info(build_id: u64, ticks: u64) -> SysInfo {
        SysInfo {
            build_id,
            ticks,
            tick_hz: 100,
            ..SysInfo::default()
        }
    }

    /// Ticks of 1,000,000 cycles (a 100 MHz TSC at 100 Hz).
    const TICK: u64 = 1_000_000;
    /// The tick of the look that calibrates.
    const C: u64 = CALIBRATION_TICKS;

    /// Gaps that know a tick's length: a look at tick 0 and one at tick
    /// `C`, a long gap before it.
    fn calibrated() -> Gaps {
        let mut g = Gaps::new(0);
        assert_eq!(g.look(&info(7, 0), 0), None);
        assert!(g.mark(TICK / 100), "uncalibrated, every gap is looked at");
        assert_eq!(g.look(&info(7, 0), TICK / 100), None);
        assert!(g.mark(C * TICK));
        assert_eq!(g.look(&info(7, C), C * TICK), None);
        assert_eq!(g.tsc_per_tick(), TICK);
        g.take_ordinary();
        g
    }

    #[test]
    fn short_gaps_ask_for_no_look_and_long_ones_do() {
        let mut g = calibrated();
        let mut now = C * TICK;
        now += TICK / 10;
        assert!(!g.mark(now));
        now += TICK / 4;
        assert!(g.mark(now));
    }

    #[test]
    fn a_new_build_id_makes_the_gap_before_the_look_the_updates_pause() {
        let mut g = calibrated();
        let mut now = C * TICK;
        for _ in 0..10 {
            now += 1000;
            g.mark(now);
        }
        // An ordinary turn of the others, 3 ticks.
        now += 3 * TICK - 10_000;
        assert!(g.mark(now));
        assert_eq!(g.look(&info(7, C + 3), now), None);
        // The update: 5 ticks, another image whose ticks start again.
        now += 5 * TICK;
        assert!(g.mark(now));
        let pause = g.look(&info(8, 1), now).expect("a new instance");
        assert_eq!(pause.n, 1);
        assert_eq!(pause.tsc, 5 * TICK);
        assert_eq!(pause.us, Some(50_000));
        assert_eq!(pause.build_id, 8);
        assert_eq!(
            pause.to_string(),
            "update-pause 1: gap_tsc=5000000 gap_us=50000 hv=0000000000000008"
        );
        // The heartbeat's figure is the ordinary turn, not the update.
        assert_eq!(g.take_ordinary(), 3 * TICK - 10_000);
        assert_eq!(g.take_ordinary(), 0);
        assert_eq!(SchedGap(3 * TICK).to_string(), "sched_gap_tsc=3000000");
    }

    #[test]
    fn a_burst_of_ticks_after_an_update_leaves_the_estimate_alone() {
        let mut g = calibrated();
        let mut now = C * TICK + 5 * TICK;
        assert!(g.mark(now));
        assert!(g.look(&info(8, 0), now).is_some());
        // The timer catches up: 40 ticks in a tenth of one.
        now += TICK / 10;
        g.mark(now);
        assert_eq!(g.look(&info(8, 40), now), None);
        assert_eq!(g.tsc_per_tick(), TICK);
        // A gap of a quarter tick is still looked at.
        now += TICK / 4;
        assert!(g.mark(now));
    }

    #[test]
    fn the_same_image_again_is_seen_by_its_ticks_starting_over() {
        let mut g = calibrated();
        let now = C * TICK + 4 * TICK;
        assert!(g.mark(now));
        let pause = g.look(&info(7, 2), now).expect("ticks went back");
        assert_eq!((pause.n, pause.tsc), (1, 4 * TICK));
        // The next look, on the same instance, finds nothing new.
        assert!(!g.mark(now + 100));
        assert_eq!(g.look(&info(7, 3), now + 100), None);
    }

    #[test]
    fn without_a_ticks_length_the_pause_has_no_us() {
        let mut g = Gaps::new(0);
        assert_eq!(g.look(&info(1, 5), 0), None);
        assert!(g.mark(777));
        let pause = g.look(&info(2, 0), 777).expect("a new build id");
        assert_eq!(pause.us, None);
        assert!(pause.to_string().contains("gap_us=unknown"));
    }
}
