//! The interface between the reference hypervisor, its PV guests and the
//! QEMU test harness.
//!
//! Everything that two of these three parties must agree on is defined here
//! once: hypercall numbers and error codes, the start-info page and guest
//! virtual layout, and the codes with which a run ends in QEMU.

#![no_std]
#![forbid(unsafe_code)]

pub mod exit;
pub mod hypercall;
pub mod start_info;
