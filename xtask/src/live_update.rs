//! `cargo xtask live-update`: an image sent over the host link to a system
//! that `cargo xtask run` started.

use std::time::Duration;

use hvlu_harness::scenario;

use crate::run::hostlink_socket;
use crate::shell::Failure;

/// `cargo xtask live-update --image PATH`.
pub fn live_update(image: &std::path::Path) -> Result<(), Failure> {
    let bytes = std::fs::read(image)
        .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", image.display())))?;
    let log = hvlu_harness::qemu::root().join("target/qemu/run.log");
    let reports_before = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("lu-report")
        .count();
    let id = hvlu_harness::hostlink::new_id();
    println!(
        "xtask: sending {} ({} bytes) to dom0 as host-link transfer #{id:08x}",
        image.display(),
        bytes.len()
    );
    let (replies, timing) = hvlu_harness::hostlink::send_image_timed(
        &hostlink_socket(),
        id,
        &bytes,
        hvlu_harness::hostlink::QUIET,
    )
    .map_err(Failure::Failed)?;
    for reply in &replies {
        println!("dom0: {reply}");
    }
    println!("xtask: the transfer: {}", timing.line(bytes.len()));
    if !replies.last().is_some_and(|r| r.starts_with("done")) {
        return Err(Failure::Failed("the update did not happen".into()));
    }
    // The report line is printed before dom0's `done`; the log may be
    // written a moment later. The wait follows the log: it ends when the
    // log has not grown for the quiet period.
    let mut seen = 0;
    let mut last_growth = std::time::Instant::now();
    while last_growth.elapsed() < scenario::CMD {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.len() != seen {
            seen = text.len();
            last_growth = std::time::Instant::now();
        }
        if let Some(line) = text
            .lines()
            .filter(|l| l.contains("lu-report"))
            .nth(reports_before)
        {
            println!("{line}");
            let f = scenario::fields(line);
            let ok = f.get("digest_equal").map(String::as_str) == Some("yes")
                && f.get("free_equal").map(String::as_str) == Some("yes");
            return if ok {
                Ok(())
            } else {
                Err(Failure::Failed(
                    "the update's equivalence checks failed".into(),
                ))
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Failure::Failed(format!(
        "no report line in {} (it has not grown for {:?})",
        log.display(),
        scenario::CMD
    )))
}
