//! The single pass in ns per frame, against a plain write of the same
//! frametable bytes measured in the same run (`docs/design.md` section 8).
//!
//! `cargo bench -p frame-ownership` runs two sizes, 1 Mi and 16 Mi owned
//! frames (4 GiB and 64 GiB of guest memory), each split over 4 synthetic PV
//! guests whose page tables are real 4-level tables mapping every guest
//! frame (data writable, page tables read-only); see
//! `frame_ownership::testkit::synthetic_machine`. Other sizes can be given
//! as arguments: `cargo bench -p frame-ownership -- 262144 4194304`.
//!
//! For each size: best of a few runs of [`rebuild`] on a zeroed frametable
//! (zeroing and page faults are outside the timing), and best of a few runs
//! of a plain loop that writes one `FrameInfo` per owned frame into a zeroed
//! table of the same size. The pass additionally writes the 8-byte M2P entry
//! of each frame and reads every page-table frame; the plain write is the
//! physical limit of touching the frametable once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use frame_ownership::testkit::synthetic_machine;
use frame_ownership::{rebuild, FrameFlags, FrameInfo, PageType, PassReport, M2P_INVALID};
use hvlu_types::DomId;

const DOMAINS: usize = 4;

fn main() {
    let mut sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![1 << 20, 1 << 24];
    }
    for total in sizes {
        bench(total);
    }
}

fn runs_for(total: u64) -> usize {
    if total >= 1 << 23 {
        3
    } else {
        7
    }
}

fn bench(total: u64) {
    let t = Instant::now();
    let machine = synthetic_machine(total, DOMAINS);
    let build = t.elapsed();
    let layout = machine.layout().expect("synthetic layout is valid");
    let views = machine.views();
    let n = machine.frametable_len;

    let mut frametable = vec![FrameInfo::UNOWNED; n];
    let mut m2p = vec![M2P_INVALID; n];
    let mut plain = vec![FrameInfo::UNOWNED; n];
    let owned_start = machine.domains[0].runs[0].first_mfn.0 as usize;

    let mut best_pass = Duration::MAX;
    let mut best_write = Duration::MAX;
    let mut report = PassReport::default();
    let runs = runs_for(total);
    for _ in 0..runs {
        // Untimed: zero the tables (this also faults their pages in).
        frametable.fill(FrameInfo::UNOWNED);
        m2p.fill(M2P_INVALID);
        let t = Instant::now();
        report = rebuild(
            black_box(&layout),
            black_box(&views),
            &machine.memory,
            &mut frametable,
            &mut m2p,
        )
        .expect("synthetic machine is valid");
        let dt = t.elapsed();
        black_box(&frametable);
        black_box(&m2p);
        best_pass = best_pass.min(dt);

        plain.fill(FrameInfo::UNOWNED);
        let owned = report.frames_owned as usize;
        let value = black_box(FrameInfo::new(
            Some(DomId(1)),
            PageType::None,
            0,
            1,
            FrameFlags::EMPTY,
        ));
        let t = Instant::now();
        for slot in &mut plain[owned_start..owned_start + owned] {
            *slot = value;
        }
        black_box(&plain);
        let dt = t.elapsed();
        best_write = best_write.min(dt);
    }

    assert_eq!(report.frames_owned, total);
    let frames = report.frames_owned as f64;
    let pass_ns = best_pass.as_nanos() as f64 / frames;
    let write_ns = best_write.as_nanos() as f64 / frames;
    let ratio = pass_ns / write_ns;
    println!(
        "pass over {total} frames ({} MiB of frametable; {DOMAINS} domains; {} page-table frames read; {} entries checked; machine built in {:.2?})",
        (total * 16) >> 20,
        report.tables_read,
        report.entries_checked,
        build
    );
    println!(
        "  single pass     {pass_ns:>7.3} ns/frame   {:>10.2?} (best of {runs})",
        best_pass
    );
    println!(
        "  plain write     {write_ns:>7.3} ns/frame   {:>10.2?} (best of {runs}; 16 bytes/frame)",
        best_write
    );
    println!("  ratio           {ratio:>7.2}");
    println!(
        "bench pass frames={total} ns_per_frame={pass_ns:.3} write_ns_per_frame={write_ns:.3} ratio={ratio:.2}"
    );
}
