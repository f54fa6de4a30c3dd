//! The versioned body types and the one place that maps a version to them.
//!
//! Each released version has a module, `vM_m`, whose types are serialized
//! with postcard in field order. A module is **frozen** once its golden blob
//! exists (`tests/golden/vM_m.bin`): its types, and the shapes of the
//! primitive types of [`crate::types`] they use, never change again.
//!
//! [`current`] names the in-memory types of this build, which are those of
//! [`crate::CURRENT`], v1.3. How a minor version is added (v1.1, v1.2 and
//! v1.3 did it):
//!
//! 1. write `vM_m` with its own types for what changes, re-exporting the
//!    older module's types for what does not, and point [`current`] at it;
//! 2. add `From<older::HandoverState> for current::HandoverState` (an old
//!    blob becomes a state with every addition empty or at its default),
//!    and let [`decode_body`] map the older version to it;
//! 3. let [`encode_body`] write the older versions from the current type
//!    through the borrowing view ([`view`]), which serializes each older
//!    version's fields in its order, so that encoding still does not
//!    allocate; a state an older version cannot express is refused first
//!    ([`expressible`]), and what it drops is said ([`dropped`]) and left
//!    out of what the writer compares ([`carried`]);
//! 4. bump [`crate::CURRENT`] and add a golden blob.

pub mod v1_0;
pub mod v1_1;
pub mod v1_2;
pub mod v1_3;
mod view;

/// The in-memory types of this build: those of [`crate::CURRENT`] (v1.3).
pub mod current {
    pub use super::v1_3::*;
}

use crate::types::RunKind;
use crate::version::AbiVersion;
use hvlu_types::{DomId, Gpfn};
use view::Older;

/// The newest version that has no HVM domain: what a state without one is
/// written as ([`writes_as`]).
pub const PV_ONLY: AbiVersion = AbiVersion::new(1, 2);

/// What a version cannot say about a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inexpressible {
    /// A paused domain: a 1.0 reader would resume it.
    #[error("d{0} is paused, and ABI 1.0 cannot say so (the new image would resume it)")]
    PausedDomain(DomId),
    /// An HVM domain (or a domain with nested page-table or log-dirty
    /// runs): no reader before 1.3 can run it.
    #[error("d{domain} is an HVM domain, and ABI {version} cannot describe one (a reader of {version} knows no nested page tables, no HVM vCPU state and no log-dirty bitmap)")]
    HvmDomain {
        /// The version asked for.
        version: AbiVersion,
        /// The domain.
        domain: DomId,
    },
    /// A domain whose PCI hole is not at the default place: an older reader
    /// knows no hole, and the next reader of 1.2 would put it at 3 GiB.
    #[error("d{domain}'s PCI hole starts at {hole}, and ABI {version} cannot say so (a state of {version} gives every domain the hole at 3 GiB, gpfn 0xc0000)")]
    HoleNotDefault {
        /// The version asked for.
        version: AbiVersion,
        /// The domain.
        domain: DomId,
        /// Its hole.
        hole: Gpfn,
    },
    /// A domain with guest RAM above its hole (from 4 GiB up): an older
    /// reader refuses a guest frame at or past the domain's limit.
    #[error("d{domain} has guest RAM at {gpfn}, above its PCI hole, and ABI {version} cannot say so (its reader refuses a guest frame past the domain's limit)")]
    RamAboveHole {
        /// The version asked for.
        version: AbiVersion,
        /// The domain.
        domain: DomId,
        /// The first guest frame of its lowest run above the hole.
        gpfn: Gpfn,
    },
    /// A domain whose I/O memory permission is not the default (all the
    /// device memory for a privileged domain, none for another): an older
    /// reader forgets it and the next reader of 1.2 gives the default.
    #[error("d{domain} may map other device memory than the default (all of it for a privileged domain, none for another), and ABI {version} cannot carry that (the image after it would give the default back)")]
    MmioNotDefault {
        /// The version asked for.
        version: AbiVersion,
        /// The domain.
        domain: DomId,
    },
    /// A domain whose identity entries in its hole are not the default
    /// (the device memory in the hole for a privileged domain, none for
    /// another): an older reader has no guest memory map to keep them in.
    #[error("d{domain} has other device memory mapped in its PCI hole than the default (the device memory in the hole for a privileged domain, none for another), and ABI {version} cannot carry that (the image after it would give the default back)")]
    IdentityNotDefault {
        /// The version asked for.
        version: AbiVersion,
        /// The domain.
        domain: DomId,
    },
}

/// The older minor `version` is, or `None` for the current one (or one
/// this build does not write).
fn older(version: AbiVersion) -> Option<Older> {
    match (version.major, version.minor) {
        (1, 0) => Some(Older::V1_0),
        (1, 1) => Some(Older::V1_1),
        (1, 2) => Some(Older::V1_2),
        _ => None,
    }
}

/// The version a state is written as when `negotiated` is the highest
/// both images share: a state with no HVM domain ([`current::Domain::needs_1_3`])
/// is written as 1.2 even to a reader of 1.3, so that a PV-only state keeps
/// the bytes it had before 1.3 existed; every other state as
/// `negotiated` (which refuses an HVM domain below 1.3, [`expressible`]).
pub fn writes_as(negotiated: AbiVersion, state: &current::HandoverState) -> AbiVersion {
    if negotiated > PV_ONLY
        && negotiated.major == PV_ONLY.major
        && !state.domains.iter().any(current::Domain::needs_1_3)
    {
        PV_ONLY
    } else {
        negotiated
    }
}

/// Whether `version` can carry `state` without changing what a guest sees.
/// What it cannot carry of the hypervisor's own records (1.0: the guests'
/// reports, the command line, retired domains; 1.0 and 1.1: the device
/// list) is dropped, not refused. Does not allocate.
pub(crate) fn expressible(
    version: AbiVersion,
    state: &current::HandoverState,
) -> Result<(), Inexpressible> {
    let Some(older) = older(version) else {
        return Ok(());
    };
    if older == Older::V1_0 {
        if let Some(d) = state.domains.iter().find(|d| d.paused) {
            return Err(Inexpressible::PausedDomain(d.id));
        }
    }
    for d in &state.domains {
        let domain = d.id;
        if d.needs_1_3() {
            return Err(Inexpressible::HvmDomain { version, domain });
        }
        if older == Older::V1_2 {
            continue;
        }
        if d.hole != v1_2::DEFAULT_HOLE {
            return Err(Inexpressible::HoleNotDefault {
                version,
                domain,
                hole: d.hole,
            });
        }
        if let Some(gpfn) = d
            .runs
            .iter()
            .filter(|r| r.first_gpfn.0.saturating_add(r.count) > d.hole.0)
            .map(|r| r.first_gpfn.max(d.hole))
            .min()
        {
            return Err(Inexpressible::RamAboveHole {
                version,
                domain,
                gpfn,
            });
        }
        let (mmio, identity) = d.has_default_access(&state.devices);
        if !mmio {
            return Err(Inexpressible::MmioNotDefault { version, domain });
        }
        if !identity {
            return Err(Inexpressible::IdentityNotDefault { version, domain });
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
    /// Devices of the device list dropped: the new image cannot compare
    /// what it finds with what this one recorded.
    pub devices: usize,
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
        if self.devices > 0 {
            part(
                f,
                format_args!(
                    "the device list ({} device(s): the new image cannot compare what it finds with it)",
                    self.devices
                ),
            )?;
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
/// and the retired domains; for 1.0 and 1.1, the device list. Empty for
/// the current version.
pub fn dropped(version: AbiVersion, state: &current::HandoverState) -> Dropped {
    let Some(older) = older(version) else {
        return Dropped::default();
    };
    if older == Older::V1_2 {
        return Dropped::default();
    }
    let devices = state.devices.len();
    if older != Older::V1_0 {
        return Dropped {
            devices,
            ..Dropped::default()
        };
    }
    let quiet = v1_1::GuestReports::default();
    Dropped {
        cmdline: !state.globals.cmdline.is_empty(),
        reports: state.domains.iter().filter(|d| d.reports != quiet).count(),
        retired: state.retired.len(),
        devices,
    }
}

/// What a reader gets back when `state` is written as `version` (which must
/// be one this build writes and able to carry it, [`expressible`]): the
/// state itself for the current version; for 1.1, the state without the
/// device list, every hole at the default and no identity entries (what
/// `From<v1_1::HandoverState>` gives); for 1.0, also without the
/// hypervisor's records (reports, command line, retired domains), which
/// 1.0 drops. The writer's pre-flight compares the decoded blob with this;
/// for the current version and for 1.2 (which carries every PV domain
/// whole, and an HVM domain not at all) it is `state` itself, borrowed (no
/// copy in the blackout).
pub fn carried(
    version: AbiVersion,
    state: &current::HandoverState,
) -> alloc::borrow::Cow<'_, current::HandoverState> {
    let older = match older(version) {
        None | Some(Older::V1_2) => return alloc::borrow::Cow::Borrowed(state),
        Some(older) => older,
    };
    let mut s = state.clone();
    s.devices.clear();
    for d in &mut s.domains {
        d.hole = v1_2::DEFAULT_HOLE;
        d.identity.clear();
    }
    if older == Older::V1_0 {
        s.globals.cmdline.clear();
        s.retired.clear();
        for d in &mut s.domains {
            d.reports = v1_1::GuestReports::default();
        }
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
    let used = match (version.major, version.minor) {
        (1, 0) => postcard::to_slice(&view::State(Older::V1_0, state), buf),
        (1, 1) => postcard::to_slice(&view::State(Older::V1_1, state), buf),
        (1, 2) => postcard::to_slice(&view::State(Older::V1_2, state), buf),
        (1, 3) => postcard::to_slice(state, buf),
        _ => return None,
    };
    Some(used.map(|used| used.len()))
}

/// The size of the body of `version` for `state`, or `None` if this build
/// does not write `version`.
pub(crate) fn body_len(
    version: AbiVersion,
    state: &current::HandoverState,
) -> Option<Result<usize, postcard::Error>> {
    let size = postcard::ser_flavors::Size::default();
    let len = match (version.major, version.minor) {
        (1, 0) => postcard::serialize_with_flavor(&view::State(Older::V1_0, state), size),
        (1, 1) => postcard::serialize_with_flavor(&view::State(Older::V1_1, state), size),
        (1, 2) => postcard::serialize_with_flavor(&view::State(Older::V1_2, state), size),
        (1, 3) => postcard::serialize_with_flavor(state, size),
        _ => return None,
    };
    Some(len)
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
    fn into_current<S: Into<current::HandoverState>>(
        (state, unused, canonical_len): (S, usize, usize),
    ) -> Read {
        Read {
            state: state.into(),
            unused,
            canonical_len,
        }
    }
    let read = match (version.major, version.minor) {
        (1, 0) => read::<v1_0::HandoverState>(body).map(into_current),
        (1, 1) => read::<v1_1::HandoverState>(body).map(into_current),
        (1, 2) => read::<v1_2::HandoverState>(body).map(into_current),
        (1, 3) => return Some(read::<v1_3::HandoverState>(body).map(into_current)),
        _ => return None,
    };
    Some(read.and_then(kinds_before_1_3))
}

/// A body of a version before 1.3 that holds a run or pin kind 1.3 added
/// (`P2m`, `LogDirty`): its version's reader, which never knew those
/// numbers, refuses it as malformed (an enum index it does not have), so
/// this reader does too, with the error postcard gives such an index.
/// The older types share [`RunKind`] with 1.3, so the check comes after
/// the parse.
fn kinds_before_1_3(read: Read) -> BodyRead {
    let new_kind = |kind: RunKind| !kind.before_1_3();
    let holds_new = read.state.domains.iter().any(|d| {
        d.runs.iter().any(|r| new_kind(r.kind)) || d.pinned.iter().any(|p| new_kind(p.level))
    });
    if holds_new {
        Err(postcard::Error::SerdeDeCustom)
    } else {
        Ok(read)
    }
}
