//! Fuzzes the `HVLU` note parsers: a raw note record, a bare descriptor, and
//! a list of notes as a loader would pass them. A note that parses must
//! encode back to a record that parses to the same note, and has a `writes`
//! range and a contract exactly when its descriptor is long enough to hold
//! them.

#![no_main]

use handover_abi::note::{
    find_note, parse_note, ImageNote, DESC_SIZE, NOTE_NAME, NOTE_TYPE, WRITES_DESC_SIZE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = parse_note(data) {
        assert_eq!(parse_note(&note.to_note_bytes()), Ok(note));
    }
    if let Ok(note) = ImageNote::parse_desc(data) {
        assert_eq!(ImageNote::parse_desc(&note.to_desc()), Ok(note));
        assert_eq!(note.writes.is_some(), data.len() >= WRITES_DESC_SIZE);
        assert_eq!(note.contract.is_some(), data.len() >= DESC_SIZE);
    }
    // The input cut into descriptors of notes named HVLU (the first byte
    // chooses the cut and whether the type is right).
    if let Some((&first, rest)) = data.split_first() {
        let width = usize::from(first % 56) + 1;
        let n_type = if first & 0x80 == 0 {
            NOTE_TYPE
        } else {
            u32::from(first)
        };
        let _ = find_note(
            rest.chunks(width)
                .map(|desc| (&NOTE_NAME[..], n_type, desc)),
        );
    }
});
