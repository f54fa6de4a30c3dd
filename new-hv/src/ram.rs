//! RAM map: the state's RAM map back into the frames this hypervisor may
//! use (`old_hv::ram::save` wrote it).

use alloc::vec::Vec;

use handover_abi::{HandoverState, RamRange, RamType};
use hvlu_types::MfnRange;
use hvlu_types::PhysRange;

/// The usable RAM of a RAM map, as whole frames (partial pages at either
/// end dropped, ranges without a whole frame skipped).
pub fn restore(ram_map: &[RamRange]) -> Vec<MfnRange> {
    ram_map
        .iter()
        .filter(|r| r.kind == RamType::Usable)
        .filter_map(|r| PhysRange::new(r.base, r.size).inner_frames())
        .collect()
}

/// The usable RAM of a decoded state ([`restore`] of its RAM map).
pub fn of_state(state: &HandoverState) -> Vec<MfnRange> {
    restore(&state.machine.ram_map)
}
