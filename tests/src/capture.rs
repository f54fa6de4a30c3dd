//! The handover state an update really carried, read out of the running
//! machine and decoded by today's reader.
//!
//! The incoming image of an update says where the old image left the state
//! (the argument page's `state_phys` and `state_len`) on its first line
//! after the guests resume, as every release so far has:
//!
//! ```text
//! (hv) hvlu hypervisor … entered by live update #3 (image at 0x…, state at 0x…, 1234 bytes)
//! ```
//!
//! The bytes stay there after the update: once decoded, the staging area
//! they are in is free live-update region, and nothing writes the region's
//! free space until the next `lu load` stages an image into it
//! (`docs/invariants.md`, Invariant 25). [`state_of_update`] reads them
//! through QEMU's monitor ([`Machine::read_phys`]) and decodes them with
//! this tree's `handover_abi`: header and both CRCs, the body of its
//! version, every structural check, and that the state lists the place it
//! was found in as its own. Call it after update `seq` and before the next
//! `lu load` of the machine.

use std::time::Duration;

use handover_abi::{AbiVersion, Decoded, HandoverState, READS};
use hvlu_types::Mfn;

use crate::qemu::Machine;

/// How long the arrival line may keep the machine quiet (see
/// [`Machine::wait_for`]).
const QUIET: Duration = Duration::from_secs(90);

/// Where the incoming image of one update found the state, from its
/// arrival line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The update's number since cold boot.
    pub seq: u64,
    /// Where the incoming image was staged.
    pub image_phys: u64,
    /// Where the state was.
    pub state_phys: u64,
    /// Its length in bytes: header and body.
    pub state_len: u64,
}

/// The state of one update, as read out of the machine and decoded.
#[derive(Clone, Debug)]
pub struct Capture {
    /// Where it was.
    pub arrival: Arrival,
    /// The bytes, exactly as the old image wrote them.
    pub bytes: Vec<u8>,
    /// What today's reader makes of them.
    pub decoded: Decoded,
}

impl Capture {
    /// The handover version the old image wrote.
    pub fn version(&self) -> AbiVersion {
        self.decoded.header.version
    }

    /// The state, in this tree's types.
    pub fn state(&self) -> &HandoverState {
        &self.decoded.state
    }
}

/// The text between the first `before` in `text` and the next `after`.
fn between<'a>(text: &'a str, before: &str, after: &str) -> Option<&'a str> {
    let rest = &text[text.find(before)? + before.len()..];
    Some(&rest[..rest.find(after)?])
}

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// The marker of an arrival line; the update's number follows it.
const ARRIVED: &str = "entered by live update #";

/// Reads an incoming image's arrival line (`… entered by live update #N
/// (image at 0x…, state at 0x…, L bytes)`); `None` for any other line.
pub fn arrival(line: &str) -> Option<Arrival> {
    let rest = &line[line.find(ARRIVED)? + ARRIVED.len()..];
    let (seq, rest) = rest.split_once(" (")?;
    Some(Arrival {
        seq: seq.parse().ok()?,
        image_phys: hex(between(rest, "image at ", ",")?)?,
        state_phys: hex(between(rest, "state at ", ",")?)?,
        state_len: rest
            .split_once(" bytes)")?
            .0
            .rsplit(", ")
            .next()?
            .parse()
            .ok()?,
    })
}

/// Decodes `bytes`, found at `state_phys`, with today's reader: every check
/// of `handover_abi::decode`, a version this tree reads, and the state's
/// own record of where it is staged holding `state_phys`.
pub fn decode_at(state_phys: u64, bytes: &[u8]) -> Result<Decoded, String> {
    let decoded = handover_abi::decode(bytes)
        .map_err(|e| format!("the state at {state_phys:#x} does not decode: {e}"))?;
    let version = decoded.header.version;
    if !READS.contains(version) {
        return Err(format!(
            "the state at {state_phys:#x} is version {version}, which this tree does not read ({READS})"
        ));
    }
    let listed = decoded.state.machine.region.state;
    if !listed.contains(Mfn::containing(state_phys)) {
        return Err(format!(
            "the state was found at {state_phys:#x}, but it lists its own frames as {listed:?}"
        ));
    }
    Ok(decoded)
}

/// The state update `seq` of the machine carried: waits for the incoming
/// image's arrival line, reads the bytes it names out of guest memory and
/// decodes them ([`decode_at`]). Checks the length against the update's
/// report (`state_bytes`) when that is already printed.
pub fn state_of_update(machine: &mut Machine, seq: u64) -> Result<Capture, String> {
    let needle = format!("{ARRIVED}{seq} (");
    let seen = machine
        .transcript
        .iter()
        .rev()
        .find(|l| l.starts_with("(hv) ") && l.contains(&needle))
        .cloned();
    let line = match seen {
        Some(line) => line,
        None => machine.wait_for(&format!("update {seq}'s arrival line"), QUIET, |l| {
            l.starts_with("(hv) ") && l.contains(&needle)
        })?,
    };
    let at = arrival(&line).ok_or_else(|| format!("cannot read the arrival line {line:?}"))?;
    let report = format!("(hv) lu-report seq={seq} ");
    if let Some(bytes) = machine
        .lines_with(&report)
        .last()
        .and_then(|l| crate::scenario::fields(l).remove("state_bytes"))
    {
        if bytes != at.state_len.to_string() {
            return Err(format!(
                "update {seq}: the arrival line says {} bytes of state, the report {bytes}",
                at.state_len
            ));
        }
    }
    let bytes = machine.read_phys(at.state_phys, at.state_len)?;
    let decoded = decode_at(at.state_phys, &bytes)
        .map_err(|e| format!("update {seq}: {e} (log: {})", machine.log_path().display()))?;
    Ok(Capture {
        arrival: at,
        bytes,
        decoded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "(hv) hvlu hypervisor 0.1.0 build 442b1049 entered by live update #12 (image at 0x7a00000, state at 0x7ad3000, 1234 bytes)";

    #[test]
    fn an_arrival_line_reads() {
        assert_eq!(
            arrival(LINE),
            Some(Arrival {
                seq: 12,
                image_phys: 0x7a0_0000,
                state_phys: 0x7ad_3000,
                state_len: 1234,
            })
        );
        for other in [
            "(hv) lu-report seq=12 from=aa",
            "(hv) hvlu hypervisor entered by live update #x (image at 0x1, state at 0x2, 3 bytes)",
            "(hv) hvlu hypervisor entered by live update #1 (image at 1, state at 0x2, 3 bytes)",
            "(hv) hvlu hypervisor entered by live update #1 (image at 0x1, state at 0x2)",
        ] {
            assert_eq!(arrival(other), None, "{other}");
        }
    }

    #[test]
    fn a_golden_blob_decodes_where_it_says_it_is_and_nowhere_else() {
        let blob = include_bytes!("../../handover-abi/tests/golden/v1_1.bin");
        let listed = handover_abi::decode(blob)
            .expect("the golden blob decodes")
            .state
            .machine
            .region
            .state;
        let at = listed.start.addr();
        let decoded = decode_at(at, blob).expect("decodes at its own frames");
        assert_eq!(decoded.header.version, AbiVersion::new(1, 1));
        let past = listed.start.addr() + listed.count * hvlu_types::PAGE_SIZE;
        let e = decode_at(past, blob).unwrap_err();
        assert!(e.contains("lists its own frames"), "{e}");
        let mut flipped = blob.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let e = decode_at(at, &flipped).unwrap_err();
        assert!(e.contains("CRC"), "{e}");
    }
}
