//! Fuzzes dom0's console line rules (`pv_abi::console_line`): any bytes
//! typed, line by line, through the `LineReader` (with its editing) and
//! through `parse`. A line is either refused or split into words that are
//! all printable ASCII without spaces, at most `MAX_WORDS` of them, from a
//! line of at most `MAX_LINE` bytes; typing a line without edits gives what
//! `parse` gives.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pv_abi::console_line::{allowed, parse, LineReader, Refusal, MAX_LINE, MAX_WORDS};

fn check(result: &Result<pv_abi::console_line::Words<'_>, Refusal>) {
    if let Ok(words) = result {
        assert!(words.as_slice().len() <= MAX_WORDS);
        for w in words.as_slice() {
            assert!(!w.is_empty());
            assert!(w.bytes().all(|b| allowed(b) && b != b' ' && b != b'\t'));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::new();
    for &b in data {
        if reader.push(b) {
            check(&reader.finish());
        }
    }
    check(&reader.finish());
    // A line typed without edits reads as `parse` reads it.
    for line in data.split(|&b| b == b'\n') {
        let parsed = parse(line);
        check(&parsed);
        if !line.iter().any(|&b| b == 8 || b == 0x7f) {
            let mut r = LineReader::new();
            for &b in line {
                assert!(!r.push(b));
            }
            let typed = r.finish();
            match (&parsed, &typed) {
                (Ok(p), Ok(t)) => assert_eq!(p.as_slice(), t.as_slice()),
                (Err(p), Err(t)) => assert_eq!(p, t),
                _ => panic!("typed {typed:?} but parsed {parsed:?} for {line:?}"),
            }
        }
        if line.len() > MAX_LINE {
            assert!(parsed.is_err());
        }
    }
});
