//! Signed images (issue #9): `lu load` accepts only an image signed by a key
//! built into the running hypervisor, on both paths (a boot module and an
//! image from the host link), and refuses everything else with the reason —
//! including images that would pass every ELF and note check (a foreign
//! body under a genuine `HVLU` note, a moved entry), because they are not
//! signed by a trusted key. The refused images are made here, from the
//! signed `hv-b` image `cargo xtask build --release` leaves, and added to
//! the machine as extra boot modules.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use hvlu_harness::scenario::{boot_with, cmd, next_heartbeat, summarise, wait_all};
use hvlu_harness::{Machine, MachineConfig};
use old_hv::image::{validate, ImageLimits};
use old_hv::signature::{self, KeyId, TRAILER_LEN};
use support::{dev_key, entry_field, hv_b, STRANGER};

const LONG: Duration = Duration::from_secs(90);

/// The images of the refusal cases, written to `target/qemu/signing/`.
fn forged_modules() -> Vec<(String, PathBuf)> {
    let (image, trailer) = hv_b();
    let limits = ImageLimits { max_span: u64::MAX };
    let info = validate(&image, handover_abi::WRITES, &limits).expect("hv-b validates");
    let code = info
        .segments
        .iter()
        .find(|s| s.flags.executable() && s.filesz > 64)
        .expect("a code segment");
    let code = code.file_offset as usize..(code.file_offset + code.filesz) as usize;

    let with_trailer = |mut body: Vec<u8>| {
        body.extend_from_slice(&trailer);
        body
    };
    // One flipped byte in the middle of the code, the real trailer kept.
    let mut flipped = image.clone();
    flipped[(code.start + code.end) / 2] ^= 0x01;
    // A foreign body under the genuine headers and HVLU note: the code
    // replaced by int3, with the real signature copied along.
    let mut foreign = image.clone();
    foreign[code.clone()].fill(0xcc);
    // The note's entry moved by one byte (still in the code segment).
    let mut moved = image.clone();
    let at = entry_field(&moved);
    let entry = u64::from_le_bytes(moved[at..at + 8].try_into().unwrap());
    moved[at..at + 8].copy_from_slice(&(entry + 1).to_le_bytes());
    // Every one of these still passes validation: only the signature
    // tells them apart.
    for body in [&flipped, &foreign, &moved] {
        validate(body, handover_abi::WRITES, &limits).expect("a forgery that validates");
    }
    // A signed ELF that is not a hypervisor: validation still runs after
    // the signature check.
    let domu =
        std::fs::read(hvlu_harness::qemu::root().join("target/x86_64-unknown-none/release/domu"))
            .expect("domu");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unsigned", image.clone()),
        ("stranger", signature::sign(&image, &STRANGER)),
        ("flipped", with_trailer(flipped)),
        ("foreign", with_trailer(foreign.clone())),
        ("foreign-stranger", signature::sign(&foreign, &STRANGER)),
        ("moved-entry", with_trailer(moved)),
        ("cut-trailer", {
            let mut t = with_trailer(image.clone());
            t.truncate(t.len() - 10);
            t
        }),
        ("flipped-trailer", {
            let mut t = with_trailer(image.clone());
            let n = t.len();
            t[n - TRAILER_LEN + 50] ^= 0x80; // in the signature
            t
        }),
        ("signed-domu", signature::sign(&domu, &dev_key())),
    ];
    let dir = hvlu_harness::qemu::root().join("target/qemu/signing");
    std::fs::create_dir_all(&dir).expect("target/qemu/signing");
    cases
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write a module");
            (name.to_string(), path)
        })
        .collect()
}

fn refused(m: &mut Machine, module: &str, reason: &str) {
    let out = cmd(m, &format!("lu load {module}"));
    assert!(
        out.iter().any(
            |l| l.contains(&format!("lu load {module}: error: invalid argument"))
                && l.contains(reason)
        ),
        "{module}: want `{reason}`: {out:?}"
    );
    let out = cmd(m, "lu status");
    assert!(
        out.iter().any(|l| l.contains("lu status: idle")),
        "{module}: nothing staged: {out:?}"
    );
}

#[test]
fn only_images_signed_by_a_trusted_key_are_loaded() {
    let modules = forged_modules();
    let socket = hvlu_harness::qemu::root().join("target/qemu/lu-signing.sock");
    let setup = |c: &mut MachineConfig| {
        c.images.modules.extend(modules.clone());
        c.hostlink = Some(socket.clone());
    };
    let mut m = boot_with("lu-signing", "autostart=domu", setup);
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));

    let stranger = KeyId::of(&signature::public_key(&STRANGER)).to_string();
    let untrusted = format!("signed by a key this hypervisor does not trust (key id {stranger})");
    refused(&mut m, "unsigned", "not signed");
    refused(&mut m, "cut-trailer", "not signed");
    refused(&mut m, "stranger", &untrusted);
    refused(&mut m, "foreign-stranger", &untrusted);
    refused(&mut m, "flipped", "bad signature");
    refused(&mut m, "flipped-trailer", "bad signature");
    refused(&mut m, "foreign", "bad signature");
    refused(&mut m, "moved-entry", "bad signature");
    // Signed, so the ELF checks run: a guest kernel has no HVLU note.
    refused(&mut m, "signed-domu", "HVLU");

    // The host-link path refuses the same way (small buffers: the link is a
    // serial port, and the signature is checked before anything else; the
    // signed image itself crosses it in live_update.rs).
    let (image, _) = hv_b();
    let piece = &image[..4096];
    let replies =
        hvlu_harness::hostlink::send_image(&socket, piece, LONG).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("error") && r.contains("not signed")),
        "{replies:?}"
    );
    let replies =
        hvlu_harness::hostlink::send_image(&socket, &signature::sign(piece, &STRANGER), LONG)
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("error") && r.contains(&untrusted)),
        "{replies:?}"
    );
    let mut bad = signature::sign(piece, &dev_key());
    bad[100] ^= 1;
    let replies =
        hvlu_harness::hostlink::send_image(&socket, &bad, LONG).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("error") && r.contains("bad signature")),
        "{replies:?}"
    );

    // The guest ran on through every refusal.
    next_heartbeat(&mut m, 1, LONG);

    // A properly signed image still updates ...
    let out = cmd(&mut m, "live-update hv-b");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG);
    // ... and the new hypervisor, trusting the same key, refuses and
    // accepts alike.
    refused(&mut m, "moved-entry", "bad signature");
    let out = cmd(&mut m, "live-update hv");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    wait_all(&mut m, &["(hv) lu-report seq=2 "], LONG);
    next_heartbeat(&mut m, 1, LONG);
    let summary = summarise(&m.transcript);
    assert!(summary.clean(2), "{summary}");
    hvlu_harness::scenario::poweroff_pass(&mut m);
}
