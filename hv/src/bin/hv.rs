//! The hypervisor image: the `hv` library linked with `hv/linker.ld`.
//!
//! Everything is in the library (`src/lib.rs`): the entry symbols the PVH
//! boot stub and the live-update entry call (`arch::start`), the ELF notes,
//! the panic handler. This binary only names the library so that it is
//! linked; `hv/build.rs` gives the linker the script.
//!
//! Built for the host (`cargo build` at the root), it is a program that
//! says where the hypervisor runs and exits with a failure: on the host
//! only the library's hardware-independent part is built and tested.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
use hv as _;

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "hv is a bare-metal hypervisor for x86_64-unknown-none: `cargo xtask build` builds \
         it, `cargo xtask run` boots it in QEMU; on the host only its library is built \
         (`cargo test -p hv` tests it)"
    );
    std::process::ExitCode::FAILURE
}
