//! Writes the golden blob of ABI v1.0, `tests/golden/v1_0.bin`, from the state
//! defined in `tests/golden/state_v1_0.rs`.
//!
//! ```text
//! cargo run -p handover-abi --example make-golden
//! ```
//!
//! Golden blobs are never edited: if the file exists, this only checks that
//! it still matches what the code encodes, and fails if it does not.

use std::path::Path;
use std::process::ExitCode;

#[path = "../tests/golden/state_v1_0.rs"]
mod golden;

fn main() -> ExitCode {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1_0.bin");
    let state: handover_abi::HandoverState = golden::state();
    if let Err(e) = state.validate() {
        eprintln!("make-golden: the golden state is invalid: {e}");
        return ExitCode::FAILURE;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let len = match handover_abi::encode_as(golden::VERSION, &state, &golden::producer(), &mut buf)
    {
        Ok(len) => len,
        Err(e) => {
            eprintln!("make-golden: encoding failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let blob = &buf[..len];
    match std::fs::read(&path) {
        Ok(existing) if existing == blob => {
            println!("{}: up to date ({len} bytes)", path.display());
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!(
                "make-golden: {} exists and differs from what the code encodes.\n\
                 Golden blobs are never edited: a format change adds a version \
                 (a new body module and a new blob), it never rewrites an old one.",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::write(&path, blob) {
            Ok(()) => {
                println!("{}: written ({len} bytes)", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("make-golden: writing {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("make-golden: reading {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
