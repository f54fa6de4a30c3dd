//! A corpus of hostile images (issue #9), fed through both paths a new
//! hypervisor image takes — `lu load` of a boot module and the host link —
//! on one machine with a domU under test: each is refused with its reason,
//! the image staged before stays staged, the guest keeps verifying, and
//! good updates follow on both paths. The corpus is `support::corpus`: an
//! image wrong in each way the hypervisor checks, from its size to its
//! signature to every ELF and note rule, plus another program's ELF file.
//! An image larger than the hypervisor's heap but otherwise good is staged
//! (it goes straight to the live-update region).

mod support;

use std::time::Duration;

use hvlu_harness::scenario::{boot_with, cmd, next_heartbeat, summarise, wait_all};
use hvlu_harness::Machine;

const LONG: Duration = Duration::from_secs(90);

/// Whether `lu status` shows hv-b's build staged.
fn hv_b_staged(m: &mut Machine, build: &str) -> bool {
    cmd(m, "lu status")
        .iter()
        .any(|l| l.contains(&format!("lu status: loaded build {build}")))
}

#[test]
fn hostile_images_are_refused_on_both_paths_and_good_updates_follow() {
    let (corpus, mut modules) = support::corpus_modules("hostile");
    let by_link = corpus.iter().filter(|h| h.by_link).count();
    assert!(by_link >= 25, "{by_link} images over both paths");
    // A good image larger than the hypervisor's heap: hv-b with 12 MiB of
    // padding after its ELF bytes, signed.
    let (image, _) = support::hv_b();
    let mut padded = image.clone();
    padded.resize(image.len() + (12 << 20), 0);
    let padded = old_hv::signature::sign(&padded, &support::dev_key());
    let padded_path = hvlu_harness::qemu::root().join("target/qemu/hostile/padded-hv");
    std::fs::write(&padded_path, &padded).expect("padded image");
    modules.push(("padded-hv".into(), padded_path));
    let build = {
        let info = support::hv_b_info(&image);
        info.note.build_id.0[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };

    let socket = hvlu_harness::qemu::root().join("target/qemu/hostile.sock");
    let mut m = boot_with("hostile", "autostart=domu", |c| {
        c.images.modules.extend(modules);
        c.hostlink = Some(socket.clone());
        // More boot modules than fw_cfg's default 32 file slots.
        c.extra
            .extend(["-global", "fw_cfg_io.x-file-slots=64"].map(String::from));
    });
    m.wait_for_text("(d1) heartbeat 1:", LONG)
        .unwrap_or_else(|e| panic!("{e}"));

    // Larger than the heap, good otherwise: staged from the region.
    let out = cmd(&mut m, "lu load padded-hv");
    assert!(
        out.iter().any(|l| l.contains("lu load padded-hv: staged")),
        "{out:?}"
    );
    cmd(&mut m, "lu unload");

    // Something staged, which every refusal must leave staged.
    let out = cmd(&mut m, "lu load hv-b");
    assert!(
        out.iter().any(|l| l.contains("lu load hv-b: staged")),
        "{out:?}"
    );

    // Boot modules.
    for h in &corpus {
        let out = cmd(&mut m, &format!("lu load {}", h.name));
        assert!(
            out.iter()
                .any(|l| l.contains(&format!("lu load {}: error:", h.name))
                    && l.contains(h.module_reason)
                    && l.contains("`hv-b` stays staged")),
            "{}: want `{}`: {out:?}",
            h.name,
            h.module_reason
        );
        assert!(
            hv_b_staged(&mut m, &build),
            "{}: hv-b no longer staged",
            h.name
        );
    }
    next_heartbeat(&mut m, 1, LONG);

    // The host link.
    let mut link = hvlu_harness::hostlink::Link::connect(&socket).unwrap_or_else(|e| panic!("{e}"));
    for (i, h) in corpus.iter().enumerate().filter(|(_, h)| h.by_link) {
        let answers = link
            .send_image(0x4000 + i as u32, &h.bytes, LONG)
            .unwrap_or_else(|e| panic!("{}: {e}", h.name));
        let last = answers.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with("error") && last.contains(h.link_reason),
            "{}: want `{}`: {answers:?}",
            h.name,
            h.link_reason
        );
    }
    // The padded image does not fit dom0's memory: refused at its header.
    let answers = link
        .send_image(0x5000, &padded, LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answers.len() == 1 && answers[0].contains("does not fit dom0's"),
        "{answers:?}"
    );
    drop(link);
    assert!(hv_b_staged(&mut m, &build), "hv-b no longer staged");
    next_heartbeat(&mut m, 1, LONG);

    // Good updates follow: the staged one, then one over the host link.
    let out = cmd(&mut m, "lu exec");
    assert!(out.iter().any(|l| l.contains("lu exec: done")), "{out:?}");
    wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG);
    let hv = std::fs::read(&hvlu_harness::Images::built().expect("images").hv).expect("hv image");
    let answers =
        hvlu_harness::hostlink::send_image(&socket, &hv, LONG).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answers
            .last()
            .is_some_and(|a| a.starts_with("done ") && a.ends_with(" 2")),
        "{answers:?}"
    );
    wait_all(&mut m, &["(hv) lu-report seq=2 "], LONG);
    next_heartbeat(&mut m, 1, LONG);
    let summary = summarise(&m.transcript);
    assert!(summary.clean(2), "{summary}");
    hvlu_harness::scenario::poweroff_pass(&mut m);
}

/// The corpus says what it means on the host already: each image past its
/// signature meets the validator's refusal it is meant to (no QEMU).
#[test]
fn each_hostile_image_breaks_the_rule_it_is_named_for() {
    use old_hv::image::{validate, ImageLimits};
    use old_hv::signature;
    let trusted = [signature::public_key(&support::dev_key())];
    let limits = ImageLimits { max_span: 48 << 20 };
    let (full, _) = support::hv_b();
    let small = support::compact(&full);
    assert!(small.len() < 32 << 10, "{} bytes", small.len());
    assert!(validate(&small, handover_abi::WRITES, &limits).is_ok());
    for h in support::corpus() {
        if h.bytes.is_empty() || h.bytes.len() > 64 << 20 {
            continue; // refused before the signature, for their size
        }
        let outcome = match signature::verify(&h.bytes, &trusted) {
            Err(e) => e.to_string(),
            Ok(image) => match validate(image, handover_abi::WRITES, &limits) {
                Err(e) => e.to_string(),
                Ok(_) => "accepted".to_string(),
            },
        };
        assert!(
            outcome.contains(h.module_reason),
            "{}: want `{}`, got `{outcome}`",
            h.name,
            h.module_reason
        );
    }
}
