//! The versioned body types and the one place that maps a version to them.
//!
//! Each released version has a module, `vM_m`, whose types are serialized
//! with postcard in field order. A module is **frozen** once its golden blob
//! exists (`tests/golden/vM_m.bin`): its types, and the shapes of the
//! primitive types of [`crate::types`] they use, never change again.
//!
//! [`current`] names the in-memory types of this build, which are those of
//! [`crate::CURRENT`], v1.1. How a minor version is added (v1.1 did it):
//!
//! 1. write `vM_m` with its own types for what changes, re-exporting the
//!    older module's types for what does not, and point [`current`] at it;
//! 2. add `From<older::HandoverState> for current::HandoverState` (an old
//!    blob becomes a state with every addition empty), and let
//!    [`decode_body`] map the older version to it;
//! 3. let [`encode_body`] write the older version from the current type
//!    through a borrowing view that serializes the older version's fields
//!    in its order ([`v1_0_view`]), so that encoding still does not
//!    allocate; a state the older version cannot express is refused first
//!    ([`expressible`]);
//! 4. bump [`crate::CURRENT`] and add a golden blob.

pub mod v1_0;
mod v1_0_view;
pub mod v1_1;

/// The in-memory types of this build: those of [`crate::CURRENT`] (v1.1).
pub mod current {
    pub use super::v1_1::*;
}

use crate::version::AbiVersion;
use hvlu_types::DomId;

/// What a version cannot say about a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inexpressible {
    /// A paused domain: a 1.0 reader would resume it.
    #[error("d{0} is paused, and ABI 1.0 cannot say so (the new image would resume it)")]
    PausedDomain(DomId),
}

/// Whether `version` can carry `state` without changing what a guest sees.
/// What it cannot carry of the hypervisor's own records (1.0: the guests'
/// reports, the command line, retired domains) is dropped, not refused.
pub(crate) fn expressible(
    version: AbiVersion,
    state: &current::HandoverState,
) -> Result<(), Inexpressible> {
    if (version.major, version.minor) == (1, 0) {
        if let Some(d) = state.domains.iter().find(|d| d.paused) {
            return Err(Inexpressible::PausedDomain(d.id));
        }
    }
    Ok(())
}

/// What `version` drops of a state's hypervisor records: what the writer
/// announces before it pauses anything ([`dropped`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The command line (not empty) is dropped.
    pub cmdline: bool,
    /// Domains whose reports are dropped (those that reported anything).
    pub reports: usize,
    /// Retired domains dropped.
    pub retired: usize,
}

impl Dropped {
    /// Whether nothing is dropped.
    pub fn is_empty(&self) -> bool {
        *self == Dropped::default()
    }
}

impl core::fmt::Display for Dropped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut parts = 0;
        let mut part = |f: &mut core::fmt::Formatter<'_>, text: core::fmt::Arguments<'_>| {
            parts += 1;
            if parts > 1 {
                f.write_str(", ")?;
            }
            f.write_fmt(text)
        };
        if self.cmdline {
            part(f, format_args!("the command line"))?;
        }
        if self.reports > 0 {
            part(f, format_args!("the reports of {} domain(s)", self.reports))?;
        }
        if self.retired > 0 {
            part(f, format_args!("{} retired domain(s)", self.retired))?;
        }
        if parts == 0 {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}

/// What writing `state` as `version` drops of the hypervisor's own records
/// (the difference between `state` and [`carried`]): for 1.0, a command
/// line that is not empty, the reports of domains that reported anything,
/// and the retired domains. Empty for the current version.
pub fn dropped(version: AbiVersion, state: &current::HandoverState) -> Dropped {
    if (version.major, version.minor) != (1, 0) {
        return Dropped::default();
    }
    let quiet = v1_1::GuestReports::default();
    Dropped {
        cmdline: !state.globals.cmdline.is_empty(),
        reports: state.domains.iter().filter(|d| d.reports != quiet).count(),
        retired: state.retired.len(),
    }
}

/// What a reader gets back when `state` is written as `version` (which must
/// be one this build writes and able to carry it, [`expressible`]): the
/// state itself for the current version; for 1.0, the state without the
/// hypervisor's records (reports, command line, retired domains), which
/// 1.0 drops. The writer's pre-flight compares the decoded blob with this;
/// for the current version it is `state` itself, borrowed (no copy in the
/// blackout).
pub fn carried(
    version: AbiVersion,
    state: &current::HandoverState,
) -> alloc::borrow::Cow<'_, current::HandoverState> {
    if (version.major, version.minor) != (1, 0) {
        return alloc::borrow::Cow::Borrowed(state);
    }
    let mut s = state.clone();
    s.globals.cmdline.clear();
    s.retired.clear();
    for d in &mut s.domains {
        d.reports = v1_1::GuestReports::default();
    }
    alloc::borrow::Cow::Owned(s)
}

/// Serializes `state` as the body of `version` into `buf`, returning the
/// number of bytes written, or `None` if this build does not write `version`.
/// The caller has checked [`expressible`].
pub(crate) fn encode_body(
    version: AbiVersion,
    state: &current::HandoverState,
    buf: &mut [u8],
) -> Option<Result<usize, postcard::Error>> {
    match (version.major, version.minor) {
        (1, 0) => Some(postcard::to_slice(&v1_0_view::State(state), buf).map(|used| used.len())),
        (1, 1) => Some(postcard::to_slice(state, buf).map(|used| used.len())),
        _ => None,
    }
}

/// The size of the body of `version` for `state`, or `None` if this build
/// does not write `version`.
pub(crate) fn body_len(
    version: AbiVersion,
    state: &current::HandoverState,
) -> Option<Result<usize, postcard::Error>> {
    let size = postcard::ser_flavors::Size::default();
    match (version.major, version.minor) {
        (1, 0) => Some(postcard::serialize_with_flavor(
            &v1_0_view::State(state),
            size,
        )),
        (1, 1) => Some(postcard::serialize_with_flavor(state, size)),
        _ => None,
    }
}

/// The outcome of reading a body: the state, the number of bytes of
/// `body` that the postcard value did not use, and the number of bytes the
/// value takes when written canonically (every varint in its fewest bytes):
/// less than the bytes it used if a varint was padded.
pub(crate) type BodyRead = Result<Read, postcard::Error>;

/// A body read by [`decode_body`].
pub(crate) struct Read {
    /// The state, in this build's types.
    pub state: current::HandoverState,
    /// Bytes of the body after the value.
    pub unused: usize,
    /// Bytes the value takes in its canonical encoding.
    pub canonical_len: usize,
}

/// Reads one value of `T` from `body` and measures its canonical encoding
/// (before any conversion, so that the measure is of the version read).
fn read<'a, T>(body: &'a [u8]) -> Result<(T, usize, usize), postcard::Error>
where
    T: serde::Deserialize<'a> + serde::Serialize,
{
    let (value, rest) = postcard::take_from_bytes::<T>(body)?;
    let canonical_len =
        postcard::serialize_with_flavor(&value, postcard::ser_flavors::Size::default())?;
    Ok((value, rest.len(), canonical_len))
}

/// Deserializes a body of `version` and converts it into the in-memory type,
/// or `None` if this build does not read `version`.
pub(crate) fn decode_body(version: AbiVersion, body: &[u8]) -> Option<BodyRead> {
    let read = match (version.major, version.minor) {
        (1, 0) => read::<v1_0::HandoverState>(body).map(|(s, unused, canonical_len)| Read {
            state: s.into(),
            unused,
            canonical_len,
        }),
        (1, 1) => read::<v1_1::HandoverState>(body).map(|(state, unused, canonical_len)| Read {
            state,
            unused,
            canonical_len,
        }),
        _ => return None,
    };
    Some(read)
}
