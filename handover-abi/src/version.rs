//! ABI versions and the compatibility rule.
//!
//! **The rule, in one sentence:** a reader of version M.n accepts a blob of
//! version M.m with m ≤ n; an image advertises in its `HVLU` note the range of
//! versions it reads, and the writer writes the highest version that lies both
//! in its own write range and in the reader's range, or refuses the update if
//! none does.
//!
//! Versions are ordered by major, then minor. A [`VersionRange`] is inclusive
//! and claims every version between its ends; an image whose range spans two
//! majors claims every minor of the lower major from `min` on, so an image
//! that cannot honour that advertises a range within one major.
//!
//! A minor version only adds: a reader decodes every older minor of its major
//! and converts it into its in-memory types. A new major is a clean break.

use core::fmt;

/// A handover ABI version, `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbiVersion {
    /// Incompatible changes bump the major.
    pub major: u16,
    /// Additions that older readers cannot see but newer readers convert.
    pub minor: u16,
}

impl AbiVersion {
    /// Version `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        AbiVersion { major, minor }
    }

    /// A single number with the same order as the version (`major << 16 | minor`).
    pub const fn ordinal(self) -> u32 {
        (self.major as u32) << 16 | self.minor as u32
    }

    /// Whether a reader of version `self` accepts a blob of version `blob`:
    /// the same major and a minor no newer than its own.
    pub const fn reads(self, blob: AbiVersion) -> bool {
        self.major == blob.major && blob.minor <= self.minor
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An inclusive range of ABI versions, `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// The oldest version in the range.
    pub min: AbiVersion,
    /// The newest version in the range.
    pub max: AbiVersion,
}

impl VersionRange {
    /// The range `min..=max`.
    pub const fn new(min: AbiVersion, max: AbiVersion) -> Self {
        VersionRange { min, max }
    }

    /// The range holding only `v`.
    pub const fn single(v: AbiVersion) -> Self {
        VersionRange { min: v, max: v }
    }

    /// Whether the range is empty (`max` older than `min`).
    pub const fn is_empty(self) -> bool {
        self.max.ordinal() < self.min.ordinal()
    }

    /// Whether `v` lies in the range.
    pub const fn contains(self, v: AbiVersion) -> bool {
        self.min.ordinal() <= v.ordinal() && v.ordinal() <= self.max.ordinal()
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

/// The version this build thinks in: its in-memory types are this version's.
pub const CURRENT: AbiVersion = AbiVersion::new(1, 3);

/// The versions this build can write ([`crate::encode_as`] accepts exactly these).
pub const WRITES: VersionRange = VersionRange::new(AbiVersion::new(1, 0), CURRENT);

/// The versions this build can read: the same major as [`CURRENT`], every
/// minor up to its own. This is what an image puts in its `HVLU` note.
pub const READS: VersionRange = VersionRange::new(AbiVersion::new(CURRENT.major, 0), CURRENT);

/// The version a writer should use to hand over to a reader: the highest
/// version in both ranges, or `None` if they do not meet (the update is then
/// refused before anything is paused).
pub const fn negotiate(writer: VersionRange, reader: VersionRange) -> Option<AbiVersion> {
    if writer.is_empty() || reader.is_empty() {
        return None;
    }
    let top = if writer.max.ordinal() <= reader.max.ordinal() {
        writer.max
    } else {
        reader.max
    };
    if writer.contains(top) && reader.contains(top) {
        Some(top)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
