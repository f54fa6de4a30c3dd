//! The update's report line: the phases of the blackout, measured with the
//! TSC by both sides, and the checks' figures.

use core::fmt;

use handover_abi::entry::EntryArgs;
use handover_abi::marks::Marks;
use handover_abi::BuildId;

/// Microseconds between two TSC readings.
pub fn us(from: u64, to: u64, tsc_khz: u64) -> u64 {
    to.saturating_sub(from).saturating_mul(1000) / tsc_khz.max(1)
}

/// Timestamps of the incoming side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InTimes {
    /// Entry reached.
    pub entry: u64,
    /// Heap ready (first part of the restricted boot).
    pub heap: u64,
    /// State decoded and verified.
    pub verified: u64,
    /// Page tables, frametable and M2P ready.
    pub booted: u64,
    /// Frametable pass done.
    pub pass: u64,
    /// Domains rebuilt, ready to run.
    pub resumed: u64,
    /// The sub-steps from the entry to the resume, in order
    /// (`handover_abi::marks`): the report prints each as `in_<tag>_us`.
    pub marks: Marks,
    /// The outgoing side's sub-steps from the pause to the pre-flight's
    /// end, from the argument page's trailer (none from an image that
    /// writes none): printed as `out_<tag>_us`.
    pub out: Marks,
}

/// The figures of one update. [`Report::new`] fills the phases from the
/// argument page and the incoming timestamps; the caller sets `frames`,
/// `runs`, `digest_new`, `free_after`, `free_digest_new` and
/// `capacity`. `Display` writes the `lu-report`
/// line (without the console prefix); its fields and their order are part of
/// the operator interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Update number since cold boot.
    pub seq: u64,
    /// The old image's build id.
    pub from: BuildId,
    /// This image's build id.
    pub to: BuildId,
    /// Pausing every vCPU.
    pub pause_us: u64,
    /// Serialising the state.
    pub serialise_us: u64,
    /// The pre-flight check.
    pub preflight_us: u64,
    /// Entry tables and the jump, up to this image's entry.
    pub jump_us: u64,
    /// The restricted boot (heap, then page tables, frametable, M2P).
    pub boot_us: u64,
    /// Decoding and verifying the state.
    pub verify_us: u64,
    /// The frametable pass and the digest.
    pub pass_us: u64,
    /// Rebuilding the domains.
    pub resume_us: u64,
    /// From the pause to the resume.
    pub blackout_us: u64,
    /// The outgoing side's sub-steps ([`InTimes::out`]) and the TSC they
    /// count from (every vCPU stopped).
    pub out_marks: (Marks, u64),
    /// The incoming side's sub-steps ([`InTimes::marks`]) and the TSC they
    /// count from (the entry).
    pub in_marks: (Marks, u64),
    /// The TSC frequency the marks are read at.
    pub tsc_khz: u64,
    /// The release at the first tick after the resume. The frametable
    /// entries the update left and the free RAM among them are initialised
    /// and handed out later (Invariant 29); the hypervisor's `lu-settled`
    /// line says how long that took.
    pub release_us: u64,
    /// Bytes of the encoded state.
    pub state_bytes: u64,
    /// Frames owned after the pass.
    pub frames: u64,
    /// Runs in the state.
    pub runs: u64,
    /// The old side's owned-frame digest.
    pub digest_old: u64,
    /// The new side's digest of its whole frametable, computed by a scan
    /// independent of the runs and of the check that refuses a mismatch
    /// (`Adopted::digest_scan`).
    pub digest_new: u64,
    /// Free frames before the update.
    pub free_before: u64,
    /// The old image's frames outside the region, released with free RAM.
    pub image_frames_released: u64,
    /// Free frames after the release.
    pub free_after: u64,
    /// The old side's digest of the frames the new side must find free
    /// (its free frames and its image's frames outside the region); `None`
    /// from an old side that does not carry it (argument page version 1).
    pub free_digest_old: Option<u64>,
    /// The new side's digest of the frames it released.
    pub free_digest_new: u64,
    /// The live-update capacity after the update: the region's largest free
    /// gap, in bytes (what `lu status` shows).
    pub capacity: u64,
}

impl Report {
    /// The phases from the argument page `a`, the incoming timestamps `t`
    /// and the release, `(start, done)` TSC readings; `to` is this image.
    pub fn new(a: &EntryArgs, t: &InTimes, release: (u64, u64), to: BuildId) -> Report {
        let khz = a.tsc_khz;
        Report {
            seq: a.sequence,
            from: a.from_build_id,
            to,
            pause_us: us(a.tsc_pause, a.tsc_paused, khz),
            serialise_us: us(a.tsc_paused, a.tsc_serialised, khz),
            preflight_us: us(a.tsc_serialised, a.tsc_preflight, khz),
            jump_us: us(a.tsc_preflight, t.entry, khz),
            boot_us: us(t.entry, t.heap, khz) + us(t.verified, t.booted, khz),
            verify_us: us(t.heap, t.verified, khz),
            pass_us: us(t.booted, t.pass, khz),
            resume_us: us(t.pass, t.resumed, khz),
            blackout_us: us(a.tsc_pause, t.resumed, khz),
            out_marks: (t.out, a.tsc_paused),
            in_marks: (t.marks, t.entry),
            tsc_khz: khz,
            release_us: us(release.0, release.1, khz),
            state_bytes: a.state_len,
            digest_old: a.digest,
            free_before: a.free_frames,
            image_frames_released: a.image_frames_out,
            free_digest_old: a.free_digest,
            ..Report::default()
        }
    }

    /// Whether both sides' digests agree.
    pub fn digest_equal(&self) -> bool {
        self.digest_old == self.digest_new
    }

    /// Whether the free frames are the old ones plus the old image's frames
    /// outside the region (which only a cold-boot image has): the same
    /// count, and the same frames (equal free-frame digests) where the old
    /// side carried its digest.
    pub fn free_equal(&self) -> bool {
        self.free_after == self.free_before + self.image_frames_released
            && self
                .free_digest_old
                .is_none_or(|old| old == self.free_digest_new)
    }
}

/// A digest as the report prints it: `0x` and 16 hex digits, or `none`.
struct Digest(Option<u64>);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{d:#018x}"),
            None => f.write_str("none"),
        }
    }
}

struct Short<'a>(&'a BuildId);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0 .0[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lu-report seq={} from={} to={} pause_us={} serialise_us={} preflight_us={} jump_us={} boot_us={} verify_us={} pass_us={} resume_us={} blackout_us={} release_us={} state_bytes={} frames={} runs={} digest_old={:#018x} digest_new={:#018x} digest_equal={} free_before={} image_frames_released={} free_after={} free_digest_old={} free_digest_new={:#018x} free_equal={} capacity_kib={}",
            self.seq,
            Short(&self.from),
            Short(&self.to),
            self.pause_us,
            self.serialise_us,
            self.preflight_us,
            self.jump_us,
            self.boot_us,
            self.verify_us,
            self.pass_us,
            self.resume_us,
            self.blackout_us,
            self.release_us,
            self.state_bytes,
            self.frames,
            self.runs,
            self.digest_old,
            self.digest_new,
            yes(self.digest_equal()),
            self.free_before,
            self.image_frames_released,
            self.free_after,
            Digest(self.free_digest_old),
            self.free_digest_new,
            yes(self.free_equal()),
            self.capacity >> 10,
        )?;
        let (out, from) = &self.out_marks;
        for (tag, us) in out.intervals(*from, self.tsc_khz) {
            write!(f, " out_{tag}_us={us}")?;
        }
        let (inn, from) = &self.in_marks;
        for (tag, us) in inn.intervals(*from, self.tsc_khz) {
            write!(f, " in_{tag}_us={us}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            seq: 3,
            digest_old: 0x11,
            digest_new: 0x11,
            free_before: 100,
            image_frames_released: 7,
            free_after: 107,
            free_digest_old: Some(0x22),
            free_digest_new: 0x22,
            capacity: 51 << 20,
            ..Report::default()
        }
    }

    fn field<'a>(line: &'a str, key: &str) -> &'a str {
        line.split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    }

    #[test]
    fn equal_figures_print_yes() {
        let line = sample().to_string();
        assert_eq!(field(&line, "digest_equal"), "yes");
        assert_eq!(field(&line, "free_equal"), "yes");
        assert_eq!(field(&line, "digest_new"), "0x0000000000000011");
        assert_eq!(field(&line, "free_digest_old"), "0x0000000000000022");
        assert_eq!(field(&line, "capacity_kib"), "52224");
    }

    #[test]
    fn a_different_digest_prints_no() {
        let r = Report {
            digest_new: 0x12,
            ..sample()
        };
        assert!(!r.digest_equal());
        assert_eq!(field(&r.to_string(), "digest_equal"), "no");
    }

    #[test]
    fn other_free_frames_print_no_even_with_the_same_count() {
        let r = Report {
            free_digest_new: 0x23,
            ..sample()
        };
        assert!(!r.free_equal());
        assert_eq!(field(&r.to_string(), "free_equal"), "no");
        let r = Report {
            free_after: 106,
            ..sample()
        };
        assert_eq!(field(&r.to_string(), "free_equal"), "no");
    }
}
