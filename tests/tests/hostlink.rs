//! The host link cannot wedge anything (issue #9): refused, corrupted,
//! abandoned (quiet, or followed by another transfer) and oversized
//! transfers, noise on the line and a host that
//! stops reading each leave the guests running and the link ready for the
//! next transfer, which updates; after the update the new image's link
//! takes a transfer too. One machine goes through all of them in turn,
//! with a domU whose heartbeat must keep coming — once with the link on
//! the virtio-serial port, once on COM2 (a machine without the virtio
//! device: the hypervisor falls back by itself). The update's transfer is
//! a release-built image, timed: each run prints its throughput
//! (`hostlink speed: …`, nothing asserted about it). A third machine has
//! both devices and `hostlink=uart`: the link is COM2.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use std::path::Path;

use hvlu_harness::hostlink::Link;
use hvlu_harness::qemu::LinkDevice;
use hvlu_harness::scenario::{cmd, fields, next_heartbeat, poweroff_pass, summarise, wait_all};
use hvlu_harness::Machine;
use pv_abi::hostlink::Header;

const LONG: Duration = Duration::from_secs(90);

/// Sends a header and returns dom0's first answer to it.
fn header_answer(link: &mut Link, header: Header) -> String {
    link.send_raw(&header.encode())
        .unwrap_or_else(|e| panic!("{e}"));
    link.answer(header.id, Instant::now() + LONG)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no answer to the header {header:?}"))
}

/// A small transfer dom0 refuses after taking it whole (the piece is not
/// signed): the link carries bytes both ways.
fn small_transfer(socket: &Path, image: &[u8]) {
    let answers = hvlu_harness::hostlink::send_image(socket, &image[..4096], LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answers.first().map(String::as_str),
        Some("ready"),
        "{answers:?}"
    );
    assert!(
        answers.last().is_some_and(|a| a.contains("not signed")),
        "{answers:?}"
    );
}

#[test]
fn the_virtio_host_link_survives_bad_transfers_and_a_deaf_host() {
    robustness(
        "hostlink",
        LinkDevice::Virtio,
        "virtio-serial port 1",
        "virtio",
    );
}

#[test]
fn the_uart_host_link_survives_bad_transfers_and_a_deaf_host() {
    robustness(
        "hostlink-uart",
        LinkDevice::Uart,
        "COM2 (16550 at 0x2f8)",
        "uart",
    );
}

#[test]
fn the_command_line_puts_the_host_link_on_com2_beside_a_virtio_port() {
    let mut config =
        hvlu_harness::MachineConfig::new("hostlink-forced").unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = format!("{} hostlink=uart", config.cmdline);
    config.link = LinkDevice::UartBesideVirtio;
    let socket = hvlu_harness::qemu::root().join("target/qemu/hostlink-forced.sock");
    config.hostlink = Some(socket.clone());
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let chosen = wait_all(&mut m, &["(hv) hostlink: "], LONG).remove(0);
    assert_eq!(
        chosen,
        "(hv) hostlink: COM2 (16550 at 0x2f8): hostlink=uart"
    );
    let image = std::fs::read(hvlu_harness::qemu::second_build()).expect("hv-b image");
    small_transfer(&socket, &image);
    poweroff_pass(&mut m);
}

/// The scenario of the module docs on a machine named `name` whose link is
/// on `link`; the hypervisor must say `(hv) hostlink: <says>…`. The speed
/// line names the link `label`.
fn robustness(name: &str, link: LinkDevice, says: &str, label: &str) {
    let mut config = hvlu_harness::MachineConfig::new(name).unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = format!("{} autostart=domu", config.cmdline);
    config.link = link;
    let socket = hvlu_harness::qemu::root().join(format!("target/qemu/{name}.sock"));
    config.hostlink = Some(socket.clone());
    let mut m = Machine::start(&config).unwrap_or_else(|e| panic!("{e}"));
    wait_all(
        &mut m,
        &["(d1) heartbeat 1:", &format!("(hv) hostlink: {says}")],
        LONG,
    );
    let image = std::fs::read(hvlu_harness::qemu::second_build()).expect("hv-b image");
    let mut link = Link::connect(&socket).unwrap_or_else(|e| panic!("{e}"));

    // Oversized: refused at the header, before a byte of the body; the
    // sender stops there (a 64 MiB image is never sent).
    let huge = vec![0x5au8; 64 << 20];
    let started = Instant::now();
    let answers = link
        .send_image(1, &huge, LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        answers[0].starts_with("error: an image of 67108864 bytes does not fit dom0's"),
        "{answers:?}"
    );
    println!("64 MiB transfer refused after {:?}", started.elapsed());

    // Empty.
    let empty = Header::for_image(2, &[]);
    assert_eq!(
        header_answer(&mut link, empty),
        "error: the image is empty (0 bytes)"
    );

    // A body that does not match its CRC.
    let piece = &image[..4096];
    let h = Header::for_image(3, piece);
    assert_eq!(header_answer(&mut link, h), "ready");
    let mut bad = piece.to_vec();
    bad[100] ^= 0xff;
    link.send_raw(&bad).unwrap_or_else(|e| panic!("{e}"));
    let a = link
        .answer(3, Instant::now() + LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        a.as_deref()
            .is_some_and(|a| a.starts_with("error: CRC32C mismatch")),
        "{a:?}"
    );

    // Abandoned half way: dom0 gives up on it and says so; the rest of
    // the body, arriving late, is skipped.
    let h = Header::for_image(4, piece);
    assert_eq!(header_answer(&mut link, h), "ready");
    link.send_raw(&piece[..2048])
        .unwrap_or_else(|e| panic!("{e}"));
    let a = link
        .answer(4, Instant::now() + LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        a.as_deref()
            .is_some_and(|a| a.starts_with("error: transfer abandoned after 2048 of 4096 bytes")),
        "{a:?}"
    );
    link.send_raw(&piece[2048..])
        .unwrap_or_else(|e| panic!("{e}"));

    // A sender that goes away after `ready`, and a new transfer at once:
    // the first is given up, the second goes through (refused here: the
    // piece is not signed).
    let h = Header::for_image(5, piece);
    assert_eq!(header_answer(&mut link, h), "ready");
    let answers = link
        .send_image(6, piece, LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answers.last().is_some_and(|a| a.contains("not signed")),
        "{answers:?}"
    );
    // The answer to transfer 5 came while the tool waited for 6's, which
    // skips answers to other transfers; dom0's console says it.
    m.wait_for_text(
        "transfer #00000005 abandoned before its body: a new transfer began",
        LONG,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // Noise, with false magics in it, answered by nothing.
    let mut noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for at in [100, 5000, 40_000] {
        noise[at..at + 8].copy_from_slice(&pv_abi::hostlink::MAGIC);
    }
    link.send_raw(&noise).unwrap_or_else(|e| panic!("{e}"));
    m.wait_for_text("hostlink: skipped ", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    next_heartbeat(&mut m, 1, LONG);
    drop(link);

    // A host that sends and never reads: thousands of refused headers
    // whose answers fill the socket. The hypervisor does not wait on the
    // link, dom0 drops the answers, the guests and dom0's console go on.
    let mut deaf = UnixStream::connect(&socket).expect("host link");
    deaf.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let headers: Vec<u8> = (0..8000u32)
        .flat_map(|i| {
            Header {
                id: 0x1000 + i,
                len: u64::MAX,
                crc: 0,
            }
            .encode()
        })
        .collect();
    let sender = std::thread::spawn(move || {
        // The write may stall once dom0 is busy dropping answers: the test
        // is what the machine does meanwhile, not how much got through.
        let _ = deaf.write_all(&headers);
        deaf
    });
    m.wait_for_text("answers are dropped until it does", LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    next_heartbeat(&mut m, 1, LONG);
    let out = cmd(&mut m, "list");
    assert!(out.iter().any(|l| l.contains("domu")), "{out:?}");
    next_heartbeat(&mut m, 1, LONG);
    let deaf = sender.join().expect("sender");
    drop(deaf);

    // The link is ready for a good transfer, which updates: a release
    // image, timed.
    let (answers, timing) = hvlu_harness::hostlink::send_image_timed(
        &socket,
        hvlu_harness::hostlink::new_id(),
        &image,
        LONG,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answers
            .last()
            .is_some_and(|a| a.starts_with("done ") && a.ends_with(" 1")),
        "{answers:?}"
    );
    println!("hostlink speed: link={label} {}", timing.line(image.len()));
    let report = wait_all(&mut m, &["(hv) lu-report seq=1 "], LONG).remove(0);
    assert_eq!(fields(&report)["digest_equal"], "yes", "{report}");
    next_heartbeat(&mut m, 1, LONG);
    // The new image opened the link anew (the old one reset the device at
    // the jump), on the same device, and it carries a transfer.
    small_transfer(&socket, &image);
    cmd(&mut m, "list");
    let opened: Vec<&str> = m.lines_with("(hv) hostlink: ").collect();
    assert_eq!(
        opened.iter().filter(|l| l.contains(says)).count(),
        2,
        "opened once by each image: {opened:?}"
    );
    assert!(summarise(&m.transcript).clean(1));
    poweroff_pass(&mut m);
}
