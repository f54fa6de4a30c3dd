//! Canonical virtual addresses under 4-level paging (48-bit virtual
//! addresses): bits 63..=47 all equal. The lower half belongs to guests, the
//! upper half to the hypervisor.

/// One past the last lower-half (guest) address.
pub const LOWER_HALF_END: u64 = 0x0000_8000_0000_0000;
/// The first upper-half (hypervisor) address.
pub const UPPER_HALF_START: u64 = 0xffff_8000_0000_0000;

/// Whether `va` is canonical.
pub const fn is_canonical(va: u64) -> bool {
    va < LOWER_HALF_END || va >= UPPER_HALF_START
}

/// Whether `va` is in the lower half: canonical and a guest address.
pub const fn is_lower_half(va: u64) -> bool {
    va < LOWER_HALF_END
}

/// Whether `[va, va + len)` lies wholly in the lower half (an empty range
/// at [`LOWER_HALF_END`] does).
pub const fn range_is_lower_half(va: u64, len: u64) -> bool {
    match va.checked_add(len) {
        Some(end) => end <= LOWER_HALF_END,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hole_is_not_canonical() {
        assert!(is_canonical(0) && is_canonical(LOWER_HALF_END - 1));
        assert!(!is_canonical(LOWER_HALF_END) && !is_canonical(UPPER_HALF_START - 1));
        assert!(is_canonical(UPPER_HALF_START) && is_canonical(u64::MAX));
        assert!(is_lower_half(LOWER_HALF_END - 1) && !is_lower_half(UPPER_HALF_START));
        assert!(range_is_lower_half(LOWER_HALF_END - 8, 8));
        assert!(!range_is_lower_half(LOWER_HALF_END - 8, 9));
        assert!(!range_is_lower_half(u64::MAX, 2));
    }
}
