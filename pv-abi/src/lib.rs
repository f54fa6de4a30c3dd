//! The interface between the reference hypervisor, its PV guests and the
//! QEMU test harness.
//!
//! Everything that two of these three parties must agree on is defined here
//! once: hypercall numbers and error codes, how a call's arguments decode
//! and what bounds them ([`call`]), the start-info page and guest virtual
//! layout, and the codes with which a run ends in QEMU.
//!
//! The structures the hypervisor copies into guest memory as bytes
//! ([`start_info::StartInfo`], [`hypercall::SysInfo`], [`hypercall::LuStatus`],
//! [`hypercall::DomainInfo`]) derive `zerocopy`'s layout traits: a padding
//! byte, which would leak hypervisor memory to a guest, does not compile.
//! The host link's header ([`hostlink::RawHeader`]) derives them too, its
//! layout checked against docs/abi.md §7 when the crate compiles.

#![no_std]
#![forbid(unsafe_code)]

pub mod call;
pub mod console_line;
pub mod exit;
pub mod hostlink;
pub mod hypercall;
pub mod start_info;
