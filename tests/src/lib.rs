//! The QEMU scenario harness of hvlu.
//!
//! Each scenario boots the reference hypervisor in QEMU and judges the run
//! by the exit code and by what the guests report. The scenarios arrive with
//! the hypervisor (issue #3); this crate holds the harness they share.

#![forbid(unsafe_code)]
