//! Writes the golden blobs, `tests/golden/v1_0.bin`, `v1_1.bin`, `v1_2.bin`
//! and `v1_3.bin`, from the states defined in `tests/golden/state_v1_0.rs`,
//! `state_v1_1.rs`, `state_v1_2.rs` and `state_v1_3.rs`.
//!
//! ```text
//! cargo run -p handover-abi --example make-golden
//! ```
//!
//! Golden blobs are never edited: if a file exists, this only checks that
//! it still matches what the code encodes, and fails if it does not.

// Each state file builds on the one before and includes its file too.
#![allow(clippy::duplicate_mod)]

use std::path::Path;
use std::process::ExitCode;

use handover_abi::{AbiVersion, HandoverState, Producer};

#[path = "../tests/golden/state_v1_0.rs"]
mod golden_v1_0;
#[path = "../tests/golden/state_v1_1.rs"]
mod golden_v1_1;
#[path = "../tests/golden/state_v1_2.rs"]
mod golden_v1_2;
#[path = "../tests/golden/state_v1_3.rs"]
mod golden_v1_3;

fn main() -> ExitCode {
    // The older states, on a machine whose device memory is exactly their
    // dom0's MMIO ranges, so that this build's writer carries them as they
    // were.
    let on_older_devices = |state| {
        HandoverState::from(golden_v1_2::on_older_devices(
            handover_abi::body::v1_2::HandoverState::from(state),
        ))
    };
    let blobs = [
        (
            "v1_0.bin",
            golden_v1_0::VERSION,
            on_older_devices(golden_v1_0::state().into()),
            golden_v1_0::producer(),
        ),
        (
            "v1_1.bin",
            golden_v1_1::VERSION,
            on_older_devices(golden_v1_1::state()),
            golden_v1_1::producer(),
        ),
        (
            "v1_2.bin",
            golden_v1_2::VERSION,
            HandoverState::from(golden_v1_2::state()),
            golden_v1_2::producer(),
        ),
        (
            "v1_3.bin",
            golden_v1_3::VERSION,
            golden_v1_3::state(),
            golden_v1_3::producer(),
        ),
    ];
    let mut ok = true;
    for (file, version, state, producer) in &blobs {
        ok &= make(file, *version, state, producer);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes or checks one blob; false on any failure (already reported).
fn make(file: &str, version: AbiVersion, state: &HandoverState, producer: &Producer) -> bool {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if let Err(e) = state.validate() {
        eprintln!("make-golden: the golden state of {file} is invalid: {e}");
        return false;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let len = match handover_abi::encode_as(version, state, producer, &mut buf) {
        Ok(len) => len,
        Err(e) => {
            eprintln!("make-golden: encoding {file} failed: {e}");
            return false;
        }
    };
    let blob = &buf[..len];
    match std::fs::read(&path) {
        Ok(existing) if existing == blob => {
            println!("{}: up to date ({len} bytes)", path.display());
            true
        }
        Ok(_) => {
            eprintln!(
                "make-golden: {} exists and differs from what the code encodes.\n\
                 Golden blobs are never edited: a format change adds a version \
                 (a new body module and a new blob), it never rewrites an old one.",
                path.display()
            );
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::write(&path, blob) {
            Ok(()) => {
                println!("{}: written ({len} bytes)", path.display());
                true
            }
            Err(e) => {
                eprintln!("make-golden: writing {}: {e}", path.display());
                false
            }
        },
        Err(e) => {
            eprintln!("make-golden: reading {}: {e}", path.display());
            false
        }
    }
}
