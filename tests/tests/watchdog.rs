//! The watchdog an update arms right before its jump (issue 18, its first
//! part; `hv/src/arch/watchdog.rs`): on a machine with an ib700 the new
//! image disarms it before its guests run, so the machine runs on past the
//! deadline; an image that hangs after the jump — hv-b whose note's entry
//! points at a `hlt` loop, signed — no longer hangs the machine for good:
//! the watchdog resets it and the cold-boot image starts again. (The way
//! back, resuming the guests from the state still in RAM, is not built
//! yet: after the reset they are gone, as they were to the hang.)

mod support;

use std::time::{Duration, Instant};

use hvlu_harness::scenario::{boot_with, cmd, next_heartbeat, wait_all};

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

/// hv-b with its note's entry on a `hlt` (interrupts are off at the
/// entry, so it never wakes), signed with the development key: it passes
/// every check `lu load` makes.
fn hanging_image() -> Vec<u8> {
    let (mut image, _) = support::hv_b();
    let info = support::hv_b_info(&image);
    let text = support::text_segment(&info);
    let start = text.file_offset as usize;
    let bytes = &image[start..start + text.filesz as usize];
    // `hlt` then a jump back to it: `loop { hlt() }`.
    let at = bytes
        .windows(3)
        .position(|w| w == [0xf4, 0xeb, 0xfd])
        .expect("a hlt loop in hv-b's text");
    let entry = support::entry_field(&image);
    support::put_u64(&mut image, entry, text.vaddr + at as u64);
    old_hv::signature::sign(&image, &support::dev_key())
}

#[test]
fn an_image_that_hangs_after_the_jump_is_ended_by_the_watchdog() {
    let path = hvlu_harness::qemu::root().join("target/qemu/watchdog-hang-hv");
    std::fs::write(&path, hanging_image()).expect("the hanging image");
    let mut m = boot_with("watchdog-hang", "autostart=domu", |c| {
        c.watchdog = Some(SECONDS);
        c.images.modules.push(("hang-hv".into(), path.clone()));
        // A reset reboots the machine (the later option wins over
        // `-no-reboot`), so the test sees the cold-boot image start again.
        c.extra
            .extend(["-action", "reboot=reset"].map(String::from));
    });
    wait_all(&mut m, &["(d1) heartbeat 2:"], LONG);
    let out = cmd(&mut m, "lu load hang-hv");
    assert!(
        out.iter().any(|l| l.contains("lu load hang-hv: staged")),
        "{out:?}"
    );
    m.send("lu exec").unwrap_or_else(|e| panic!("{e}"));
    m.wait_for_text("the watchdog (ib700) armed for 4 s, jumping", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
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
    m.wait_for_text("(d0) dom0>", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let boots = m.transcript.iter().filter(|l| l.contains(BANNER)).count();
    assert_eq!(boots, 2);
    // The image that booted found the update's marker, said so and
    // cleared it.
    let (image, _) = support::hv_b();
    let build = support::hv_b_info(&image).note.build_id.to_string()[..16].to_string();
    let said = format!(
        "update 1 to build {build} did not confirm: the machine reset after its jump; cold boot"
    );
    assert!(
        m.transcript
            .iter()
            .any(|l| l == &format!("(hv) lu: {said}")),
        "{said}"
    );
    let out = cmd(&mut m, "lu status");
    assert!(out.iter().any(|l| l.contains(&said)), "{out:?}");
    assert_eq!(m.read_phys(MARKER, 80).unwrap(), [0; 80]);
}
