//! The x86-64 page-table entry format, as far as the PV type rules read it:
//! the shared definition (`hvlu_types::pte`).
//!
//! Only `P`, `RW`, `G`, bit 7 (`HUGE`: PS in L2/L3 entries, reserved in L4
//! entries, PAT in L1 entries), the address and — in an L1 entry that maps
//! device memory — `PWT` and `PCD` are interpreted by the rules; the other
//! bits are the guest's business.

pub use hvlu_types::pte::*;
