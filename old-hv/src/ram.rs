//! RAM map: the hypervisor's usable RAM, as whole frames, into the state's
//! RAM map. Restored by `new_hv::ram`.

use alloc::vec::Vec;

use handover_abi::{RamRange, RamType};
use hvlu_types::MfnRange;
use hvlu_types::PhysRange;

/// The state's RAM map of `ram` (sorted frame ranges, all usable).
pub fn save(ram: &[MfnRange]) -> Vec<RamRange> {
    ram.iter()
        .map(|&r| {
            let bytes = PhysRange::from(r);
            RamRange {
                base: bytes.start,
                size: bytes.size,
                kind: RamType::Usable,
            }
        })
        .collect()
}

/// One past the highest RAM byte: how far the entry tables' direct map of
/// RAM must reach.
pub fn end(ram: &[MfnRange]) -> u64 {
    ram.iter()
        .map(|&r| PhysRange::from(r).end())
        .max()
        .unwrap_or(0)
}
