//! The state encoded in `v1_1.bin`, defined once: `examples/make-golden.rs`
//! encodes it and `tests/golden.rs` compares the committed blob with it.
//!
//! It is the v1.0 golden state with everything v1.1 adds filled in: a
//! paused domain, reports on every domain, a command line and two retired
//! domains.
//!
//! Frozen with the blob: never edit this file (see `README.md` here).

use handover_abi::body::v1_1::{Domain, GuestReports, HandoverState, HvGlobals, RetiredDomain};
use handover_abi::{AbiVersion, BuildId, Producer};
use hvlu_types::DomId;

#[path = "state_v1_0.rs"]
#[allow(
    dead_code,
    reason = "only the v1.0 state is used here, not its version or producer"
)]
mod v1_0;

/// The version of the blob.
pub const VERSION: AbiVersion = AbiVersion::new(1, 1);

/// Who wrote the blob.
pub fn producer() -> Producer {
    Producer {
        build_id: BuildId(*b"hvlu-golden-v1.1"),
        abi: VERSION,
    }
}

/// Reports with every counter different, small and large.
fn reports(seed: u64) -> GuestReports {
    GuestReports {
        checks: 1_000_000 * seed + 17,
        mismatches: seed % 2,
        expected_refusals: 9 * seed,
        unexpected_refusals: seed / 2,
        regressions: seed % 3,
        unexpected_faults: seed * 0x1_0000_0001,
        expect_fault: seed == 2,
    }
}

/// The state of the blob.
pub fn state() -> HandoverState {
    let old = v1_0::state();
    let domains = old
        .domains
        .into_iter()
        .zip(1..)
        .map(|(d, seed)| Domain {
            paused: d.id == DomId(3),
            reports: reports(seed),
            ..Domain::from(d)
        })
        .collect();
    HandoverState {
        machine: old.machine,
        globals: HvGlobals {
            next_domid: old.globals.next_domid,
            time: old.globals.time,
            cmdline: "lu_region=64M loglvl=debug timer_hz=250 autostart=1,2".into(),
        },
        domains,
        retired: vec![
            RetiredDomain {
                id: DomId(2),
                name: "domu-gone".into(),
                reports: reports(4),
            },
            RetiredDomain {
                id: DomId(0xfffe),
                name: String::new(),
                reports: GuestReports::default(),
            },
        ],
    }
}
