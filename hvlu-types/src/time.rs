//! TSC ticks and nanoseconds, without overflow (the products are taken in
//! 128 bits, so hours of uptime at any TSC rate convert exactly).

/// Nanoseconds in `ticks` TSC ticks at `tsc_khz` (0 if the rate is 0).
pub const fn tsc_to_ns(ticks: u64, tsc_khz: u64) -> u64 {
    if tsc_khz == 0 {
        return 0;
    }
    let ns = ticks as u128 * 1_000_000 / tsc_khz as u128;
    if ns > u64::MAX as u128 {
        u64::MAX
    } else {
        ns as u64
    }
}

/// TSC ticks in `ns` nanoseconds at `tsc_khz`.
pub const fn ns_to_tsc(ns: u64, tsc_khz: u64) -> u64 {
    let ticks = ns as u128 * tsc_khz as u128 / 1_000_000;
    if ticks > u64::MAX as u128 {
        u64::MAX
    } else {
        ticks as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        // 3 GHz: 3e9 ticks a second.
        assert_eq!(tsc_to_ns(3_000_000_000, 3_000_000), 1_000_000_000);
        assert_eq!(ns_to_tsc(1_000_000_000, 3_000_000), 3_000_000_000);
        // Ten days at 3 GHz does not overflow.
        let ten_days = 10 * 86_400 * 3_000_000_000u64;
        assert_eq!(tsc_to_ns(ten_days, 3_000_000), 10 * 86_400 * 1_000_000_000);
        assert_eq!(tsc_to_ns(5, 0), 0);
        assert_eq!(ns_to_tsc(u64::MAX, u64::MAX), u64::MAX);
    }
}
