//! The QEMU harness of hvlu, shared by the scenario tests in `tests/tests/`
//! and by `cargo xtask run`.
//!
//! A [`Machine`] boots the hypervisor in QEMU (TCG) with its boot modules,
//! keeps every serial line in a log file under `target/qemu/`, lets the
//! caller type dom0 commands and wait for lines, and ends with an
//! [`Ending`] read from QEMU's exit status: only the hypervisor's own pass
//! code reads as a pass (see `pv_abi::exit`). Every wait follows progress,
//! not the clock: it fails when nothing moves for its quiet period (no line
//! of the hypervisor or dom0, no byte taken or answer on the host link),
//! never because a busy host is slow; its error says how far things got.
//! QEMU is killed when the machine is dropped.
//!
//! [`releases`] reads `releases.toml` and builds each released hypervisor
//! from its own revision, for the tests between versions; [`capture`]
//! reads the handover state an update carried out of the machine's memory
//! (through QEMU's monitor) and decodes it with today's reader.

#![forbid(unsafe_code)]

pub mod capture;
pub mod compat;
pub mod hostlink;
pub mod keys;
pub mod qemu;
pub mod releases;
pub mod scenario;

pub use qemu::{Ending, Images, Machine, MachineConfig};
