//! Tests of the host-link framing: transfers whole and cut anywhere,
//! refused, abandoned, preceded by noise, with repeated headers.

extern crate std;

use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// What a receiver did, in order.
#[derive(Debug, Default)]
struct Log {
    /// Headers offered.
    headers: Vec<Header>,
    /// Bodies completed: id, bytes, whether the CRC matched.
    done: Vec<(u32, Vec<u8>, bool)>,
    /// The body being collected.
    body: Vec<u8>,
    /// Largest length this sink takes.
    room: u64,
    /// Transfers given up for a new one.
    abandoned: Vec<u32>,
}

impl Sink for Log {
    fn header(&mut self, header: &Header) -> bool {
        self.headers.push(*header);
        self.body.clear();
        header.len <= self.room
    }

    fn body(&mut self, _: &Header, offset: u64, bytes: &[u8]) {
        assert_eq!(offset, self.body.len() as u64, "body bytes in order");
        self.body.extend_from_slice(bytes);
    }

    fn complete(&mut self, header: &Header, crc: u32) {
        let body = core::mem::take(&mut self.body);
        assert_eq!(body.len() as u64, header.len);
        self.done.push((header.id, body, crc == header.crc));
    }

    fn abandoned(&mut self, header: &Header) {
        assert!(self.body.is_empty(), "abandoned after body bytes");
        self.abandoned.push(header.id);
    }
}

fn sink() -> Log {
    Log {
        room: 1 << 20,
        ..Log::default()
    }
}

fn frame(id: u32, image: &[u8]) -> Vec<u8> {
    let mut f = Header::for_image(id, image).encode().to_vec();
    f.extend_from_slice(image);
    f
}

fn image(n: usize, seed: u8) -> Vec<u8> {
    let mut v = b"\x7fELF".to_vec();
    v.extend((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    v
}

#[test]
fn header_fields_sit_at_their_documented_offsets() {
    let b = Header {
        id: 0xdead_beef,
        len: 0x0011_2233_4455_6677,
        crc: 0x0102_0304,
    }
    .encode();
    assert_eq!(&b[0..8], b"HVLUIMG2");
    assert_eq!(&b[8..12], &0xdead_beefu32.to_le_bytes());
    assert_eq!(&b[12..20], &0x0011_2233_4455_6677u64.to_le_bytes());
    assert_eq!(&b[20..24], &0x0102_0304u32.to_le_bytes());
    assert_eq!(&b[24..28], &CASTAGNOLI.checksum(&b[..24]).to_le_bytes());
}

#[test]
fn headers_round_trip_and_reject_any_flipped_bit() {
    let h = Header {
        id: 0xdead_beef,
        len: 123_456,
        crc: 0x0102_0304,
    };
    let b = h.encode();
    assert_eq!(Header::decode(&b), Some(h));
    for bit in 0..HEADER_LEN * 8 {
        let mut c = b;
        c[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(Header::decode(&c), None, "bit {bit}");
    }
}

#[test]
fn a_transfer_arrives_whole() {
    let img = image(10_000, 1);
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&frame(7, &img), &mut s);
    assert_eq!(s.done, vec![(7, img, true)]);
    assert!(!r.in_body());
    assert_eq!(r.take_skipped(), 0);
}

#[test]
fn a_corrupted_body_is_reported_by_its_crc() {
    let img = image(1000, 2);
    let mut f = frame(1, &img);
    f[HEADER_LEN + 500] ^= 0x40;
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&f, &mut s);
    assert_eq!(s.done.len(), 1);
    assert!(!s.done[0].2);
}

#[test]
fn a_refused_transfer_leaves_the_link_ready_for_the_next() {
    // A sender that ignores the refusal and sends its whole body anyway:
    // the body is skipped, the next transfer is taken.
    let big = image(4000, 3);
    let small = image(100, 4);
    let mut s = Log {
        room: 1000,
        ..Log::default()
    };
    let mut r = Receiver::new();
    let mut stream = frame(1, &big);
    stream.extend(frame(2, &small));
    r.feed(&stream, &mut s);
    assert_eq!(s.headers.len(), 2);
    assert_eq!(s.done, vec![(2, small, true)]);
    assert_eq!(r.take_skipped(), big.len() as u64);
}

#[test]
fn an_abandoned_body_is_skipped_after_abort() {
    let first = image(5000, 5);
    let second = image(300, 6);
    let f = frame(1, &first);
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&f[..2000], &mut s);
    assert_eq!(
        r.progress().map(|(h, n)| (h.id, n)),
        Some((1, 2000 - HEADER_LEN as u64))
    );
    assert_eq!(r.abort().map(|(h, _)| h.id), Some(1));
    assert_eq!(r.abort(), None);
    // The rest of the old body comes late, then a new transfer.
    let mut rest = f[2000..].to_vec();
    rest.extend(frame(2, &second));
    r.feed(&rest, &mut s);
    assert_eq!(s.done, vec![(2, second, true)]);
}

#[test]
fn a_repeated_header_is_not_taken_as_body() {
    let img = image(700, 7);
    let h = Header::for_image(9, &img).encode();
    let mut stream = h.to_vec();
    stream.extend_from_slice(&h);
    stream.extend_from_slice(&h);
    stream.extend_from_slice(&img);
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&stream, &mut s);
    assert_eq!(s.headers.len(), 3, "each repeat is answered again");
    assert_eq!(s.done, vec![(9, img, true)]);
}

#[test]
fn a_new_header_before_the_body_starts_a_new_transfer() {
    // Transfer 1's sender goes away after its header; transfer 2 begins.
    let first = image(500, 9);
    let second = image(800, 10);
    let mut stream = Header::for_image(1, &first).encode().to_vec();
    stream.extend(frame(2, &second));
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&stream, &mut s);
    assert_eq!(s.abandoned, vec![1]);
    assert_eq!(s.done, vec![(2, second, true)]);
    // The same, the new header arriving a byte at a time.
    let mut r = Receiver::new();
    let mut s = sink();
    for b in &stream {
        r.feed(core::slice::from_ref(b), &mut s);
    }
    assert_eq!(s.abandoned, vec![1]);
    assert_eq!(s.done.len(), 1);
}

#[test]
fn a_body_beginning_like_its_header_is_still_body() {
    // A 10-byte body equal to the header's first 10 bytes, then more.
    let mut img = Header::for_image(3, &[0; 40]).encode()[..10].to_vec();
    img.extend_from_slice(&[0x55; 30]);
    let h = Header::for_image(3, &img);
    let mut stream = h.encode().to_vec();
    stream.extend_from_slice(&img);
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&stream, &mut s);
    assert_eq!(s.done, vec![(3, img, true)]);
}

#[test]
fn a_body_shorter_than_a_header_equal_to_its_start_completes() {
    // A 10-byte body that is its own header's first 10 bytes.
    let mut h = Header {
        id: 6,
        len: 10,
        crc: 0,
    };
    let img = h.encode()[..10].to_vec();
    h.crc = CASTAGNOLI.checksum(&img);
    // The header's first bytes do not depend on the crc.
    assert_eq!(&h.encode()[..10], &img[..]);
    let mut stream = h.encode().to_vec();
    stream.extend_from_slice(&img);
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&stream, &mut s);
    assert_eq!(s.done, vec![(6, img, true)]);
}

#[test]
fn a_false_magic_in_noise_is_skipped() {
    let img = image(50, 8);
    let mut noise = b"xxHVLUIMG2 not a header at all, HVLUIMG".to_vec();
    noise.extend_from_slice(&MAGIC);
    noise.extend_from_slice(&[0xff; 20]);
    let skipped = noise.len() as u64;
    noise.extend(frame(4, &img));
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&noise, &mut s);
    assert_eq!(s.done, vec![(4, img, true)]);
    assert_eq!(r.take_skipped(), skipped);
}

#[test]
fn an_empty_image_completes_at_its_header() {
    let mut r = Receiver::new();
    let mut s = sink();
    r.feed(&frame(5, &[]), &mut s);
    assert_eq!(s.done, vec![(5, Vec::new(), true)]);
}

#[test]
fn answers_carry_their_transfer() {
    let line = std::format!("{} staged", AnswerPrefix(0xab));
    assert_eq!(line, "#000000ab staged");
    assert_eq!(parse_answer(&line), Some((0xab, "staged")));
    for bad in ["staged", "#ab staged", "#0000000g x", "#00000001"] {
        assert_eq!(parse_answer(bad), None, "{bad}");
    }
    let _ = String::new();
}

proptest! {
    /// However the stream is cut into reads, and whatever noise comes
    /// before, every transfer the sink takes arrives whole and in order.
    #[test]
    fn any_cutting_gives_the_same_transfers(
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        sizes in proptest::collection::vec(0usize..3000, 1..4),
        cuts in proptest::collection::vec(1usize..500, 1..50),
    ) {
        let images: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| image(n, i as u8)).collect();
        let mut stream = noise.clone();
        for (i, img) in images.iter().enumerate() {
            stream.extend(frame(i as u32 + 100, img));
        }
        let mut r = Receiver::new();
        let mut s = sink();
        let mut at = 0;
        let mut c = cuts.iter().cycle();
        while at < stream.len() {
            let n = (*c.next().unwrap()).min(stream.len() - at);
            r.feed(&stream[at..at + n], &mut s);
            at += n;
        }
        let want: Vec<(u32, Vec<u8>, bool)> = images
            .iter()
            .enumerate()
            .map(|(i, img)| (i as u32 + 100, img.clone(), true))
            .collect();
        // Noise may contain a chance header only with a matching CRC.
        prop_assert_eq!(s.done, want);
    }

    /// Arbitrary bytes never panic the receiver, and whatever it completes
    /// was announced by a header of that length.
    #[test]
    fn arbitrary_bytes_are_survived(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut r = Receiver::new();
        let mut s = sink();
        r.feed(&bytes, &mut s);
        for (id, body, _) in &s.done {
            prop_assert!(s.headers.iter().any(|h| h.id == *id && h.len == body.len() as u64));
        }
    }
}
