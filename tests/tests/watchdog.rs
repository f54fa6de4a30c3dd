//! The watchdog an update arms right before its jump (issue 18, its first
//! part; `hv/src/arch/watchdog.rs`): on a machine with an ib700 the new
//! image disarms it before its guests run, so the machine runs on past the
//! deadline; an image that hangs after the jump — hv-b whose note's entry
//! points at a `hlt` loop, signed — no longer hangs the machine for good:
//! the watchdog resets it, the cold-boot image starts again, finds the
//! update's marker and resumes every guest from the state still in RAM
//! (`lu::incoming::roll_back`); the call that ran the update fails with
//! the reason, the build it went to is refused unless forced, and the next
//! update works.

mod support;

use std::time::{Duration, Instant};

use hvlu_harness::scenario::{boot_with, cmd, next_heartbeat, poweroff_pass, summarise, wait_all};

const LONG: Duration = Duration::from_secs(90);

/// The shortest deadline the ib700 takes but one, so the tests see it
/// pass quickly; far above what the incoming image takes before it
/// disarms (tens of ms under TCG).
const SECONDS: u32 = 4;

const BANNER: &str = "hvlu hypervisor starting";

/// Where the hypervisor keeps the update marker (`hv::cmdline`).
const MARKER: u64 = 0x6000;

#[test]
fn an_update_disarms_the_watchdog_and_the_machine_runs_on_past_its_deadline() {
    let mut m = boot_with("watchdog-disarm", "autostart=domu", |c| {
        c.watchdog = Some(SECONDS);
    });
    wait_all(&mut m, &["(d1) heartbeat 2:"], LONG);
    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let jump = m
        .lines_with("(hv) lu: exec `hv-b`: ")
        .find(|l| l.contains("jumping"))
        .expect("the jump line")
        .to_string();
    assert!(
        jump.contains(&format!(
            "the watchdog (ib700) armed for {SECONDS} s, jumping"
        )),
        "{jump}"
    );
    wait_all(&mut m, &["(hv) lu-report "], LONG);
    // Confirmed: no marker is left for a reset to find.
    assert_eq!(m.read_phys(MARKER, 80).unwrap(), [0; 80]);
    // Twice the deadline and more, in the domU's heartbeats.
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(2 * u64::from(SECONDS) + 2) {
        next_heartbeat(&mut m, 1, LONG);
    }
    let out = cmd(&mut m, "lu status");
    assert!(!out.is_empty());
    let boots = m.transcript.iter().filter(|l| l.contains(BANNER)).count();
    assert_eq!(boots, 1, "the machine was reset");
    // A second update arms and disarms it again.
    let out = cmd(&mut m, "live-update hv");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(2 * u64::from(SECONDS) + 2) {
        next_heartbeat(&mut m, 1, LONG);
    }
    let boots = m.transcript.iter().filter(|l| l.contains(BANNER)).count();
    assert_eq!(boots, 1, "the machine was reset");
}

/// hv-b with its note's entry on the first place in its text that holds
/// `code`, signed with the development key: it passes every check `lu
/// load` makes, and does not run as a hypervisor.
fn image_entering_at(code: &[u8]) -> Vec<u8> {
    let (mut image, _) = support::hv_b();
    let info = support::hv_b_info(&image);
    let text = support::text_segment(&info);
    let start = text.file_offset as usize;
    let bytes = &image[start..start + text.filesz as usize];
    let at = bytes
        .windows(code.len())
        .position(|w| w == code)
        .unwrap_or_else(|| panic!("{code:02x?} in hv-b's text"));
    let entry = support::entry_field(&image);
    support::put_u64(&mut image, entry, text.vaddr + at as u64);
    old_hv::signature::sign(&image, &support::dev_key())
}

/// Entering at a `hlt` then a jump back to it (`loop { hlt() }`):
/// interrupts are off at the entry, so it never wakes — a hang.
fn hanging_image() -> Vec<u8> {
    image_entering_at(&[0xf4, 0xeb, 0xfd])
}

/// Entering at a `ud2`: an invalid opcode with no IDT of its own, a triple
/// fault — the machine resets at once.
fn faulting_image() -> Vec<u8> {
    image_entering_at(&[0x0f, 0x0b])
}

/// Boots dom0 and two domUs on a machine with the watchdog (`SECONDS`)
/// that reboots on a reset, with `image` as the boot module `name`, and
/// runs `lu load` and `lu exec` of it; returns when the jump line is seen.
fn update_to_broken(test: &str, name: &str, image: Vec<u8>) -> hvlu_harness::Machine {
    update_to_broken_with(test, name, image, "")
}

/// [`update_to_broken`] with `cmdline` added to the hypervisor's.
fn update_to_broken_with(
    test: &str,
    name: &str,
    image: Vec<u8>,
    cmdline: &str,
) -> hvlu_harness::Machine {
    let path = hvlu_harness::qemu::root()
        .join("target/qemu")
        .join(format!("{test}-{name}"));
    std::fs::write(&path, image).expect("the broken image");
    let mut m = boot_with(test, &format!("autostart=domu,domu {cmdline}"), |c| {
        c.watchdog = Some(SECONDS);
        c.images.modules.push((name.into(), path.clone()));
        // A reset reboots the machine (the later option wins over
        // `-no-reboot`): the cold-boot image starts again and finds the
        // update's marker.
        c.extra
            .extend(["-action", "reboot=reset"].map(String::from));
    });
    wait_all(&mut m, &["(d1) heartbeat 2:", "(d2) heartbeat 2:"], LONG);
    let out = cmd(&mut m, &format!("lu load {name}"));
    assert!(
        out.iter()
            .any(|l| l.contains(&format!("lu load {name}: staged"))),
        "{out:?}"
    );
    m.send("lu exec").unwrap_or_else(|e| panic!("{e}"));
    m.wait_for_text("the watchdog (ib700) armed for 4 s, jumping", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    m
}

/// After the reset: the image that booted found the update's marker and
/// resumed the state — dom0's call is answered with the failure, both
/// domUs run on with their checks, `lu status` says it, the marker is
/// gone, and the next update, to a good image, works.
fn assert_rolled_back(m: &mut hvlu_harness::Machine) {
    let (image, _) = support::hv_b();
    let build = support::hv_b_info(&image).note.build_id.to_string()[..16].to_string();
    let rolled = m
        .wait_for_text("rolled back to build", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rolled.starts_with(&format!(
            "(hv) lu: update 1 to build {build} failed (the machine reset after its jump: the watchdog, or a fault): rolled back to build "
        )),
        "{rolled}"
    );
    let said =
        format!("update 1 to build {build} failed: the machine reset after its jump; rolled back");
    let answer = m
        .wait_for_text("(d0) lu exec: ", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, format!("(d0) lu exec: error: failed: {said}"));
    m.wait_for_text("(d0) dom0>", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let boots = m.transcript.iter().filter(|l| l.contains(BANNER)).count();
    assert_eq!(boots, 2);
    assert!(
        !m.transcript.iter().any(|l| l.contains("TSC went back")),
        "the guests' clock went back"
    );
    for d in [1, 2] {
        let before = m.lines_with(&format!("(d{d}) heartbeat ")).count();
        next_heartbeat(m, d, LONG);
        next_heartbeat(m, d, LONG);
        assert!(m.lines_with(&format!("(d{d}) heartbeat ")).count() >= before + 2);
    }
    let out = cmd(m, "lu status");
    assert!(out.iter().any(|l| l.contains(&said)), "{out:?}");
    assert_eq!(m.read_phys(MARKER, 80).unwrap(), [0; 80]);
    // The build the update went to (the broken images are hv-b's build
    // with their entry moved) is refused unless forced.
    let out = cmd(m, "lu load hv-b");
    let refused = format!(
        "lu load hv-b: error: invalid argument: `hv-b` refused: build {build} is the one update 1 went to, rolled back after the machine reset (`lu load hv-b force` loads it all the same)"
    );
    assert!(out.iter().any(|l| l.contains(&refused)), "{out:?}");
    let out = cmd(m, "live-update hv-b force");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    let report = wait_all(m, &["(hv) lu-report seq=2 "], LONG).remove(0);
    assert!(report.contains("digest_equal=yes"), "{report}");
    next_heartbeat(m, 1, LONG);
    // Every domU's checks held across the failed update, the reset, the
    // way back and the next update (no mismatch, no counter gone back).
    let summary = summarise(&m.transcript);
    assert_eq!(
        (summary.mismatches, summary.regressions),
        (0, 0),
        "{summary:?}"
    );
    poweroff_pass(m);
}

#[test]
fn an_image_that_hangs_after_the_jump_is_rolled_back_with_every_guest() {
    let mut m = update_to_broken("watchdog-hang", "hang-hv", hanging_image());
    let jumped = Instant::now();
    // Silence until the deadline, then the machine starts again. Without
    // the watchdog nothing more would ever be printed.
    m.wait_for_text(BANNER, LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    // Not a fault at the entry, which would reset the machine at once: the
    // deadline passed first (a lower bound only; a slow host makes it
    // longer).
    let silent = jumped.elapsed();
    assert!(
        silent >= Duration::from_secs(u64::from(SECONDS) / 2),
        "reset {silent:?} after the jump"
    );
    assert_rolled_back(&mut m);
}

#[test]
fn an_image_that_faults_at_its_entry_is_rolled_back_with_every_guest() {
    let mut m = update_to_broken("watchdog-fault", "fault-hv", faulting_image());
    m.wait_for_text(BANNER, LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_rolled_back(&mut m);
}

/// The way back finds the state damaged — one bit of it flipped after the
/// pre-flight check (`lu_inject=state`), then the jump into the hanging
/// image — and runs nothing of it: it says why, resets the machine, and
/// the cold boot after says why again (`lu status`) and starts dom0 and
/// its domUs afresh.
#[test]
fn a_way_back_that_cannot_verify_the_state_boots_cold_and_says_why() {
    let mut m = update_to_broken_with(
        "watchdog-damaged",
        "hang-hv",
        hanging_image(),
        "lu_inject=state",
    );
    let failed = m
        .wait_for_text("lu: the way back from update 1 failed: ", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(failed.contains("body CRC mismatch"), "{failed}");
    let why = failed.trim_start_matches("(hv) lu: ").to_string();
    // Cold boot, the boot before it, and the way back's: three.
    m.wait_for_text(&format!("{why}: this is the cold boot after it"), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    m.wait_for_text("(d0) dom0>", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let boots = m.transcript.iter().filter(|l| l.contains(BANNER)).count();
    assert_eq!(boots, 3);
    assert!(!m
        .transcript
        .iter()
        .any(|l| l.contains("rolled back to build")));
    let out = cmd(&mut m, "lu status");
    let head = &why[..why.len().min(100)];
    assert!(out.iter().any(|l| l.contains(head)), "{out:?}");
    assert_eq!(m.read_phys(MARKER, 80).unwrap(), [0; 80]);
    // A cold boot: dom0 started its domUs again.
    let starts = m
        .transcript
        .iter()
        .filter(|l| l.starts_with("(d1) heartbeat 1:"))
        .count();
    if starts < 2 {
        next_heartbeat(&mut m, 1, LONG);
    }
    poweroff_pass(&mut m);
}
