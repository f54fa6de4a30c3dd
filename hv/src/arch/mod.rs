//! The architecture layer: every `unsafe` of the hypervisor lives here.
//!
//! Port I/O, control registers and MSRs, descriptor tables, the boot path,
//! page-table switches and the live-update jump. Everything above this layer
//! is safe Rust over the functions it exports.

mod boot;
pub mod cpu;
pub mod port;
pub mod serial;
