//! The versioned body types and the one place that maps a version to them.
//!
//! Each released version has a module, `vM_m`, whose types are serialized
//! with postcard in field order. A module is **frozen** once its golden blob
//! exists (`tests/golden/vM_m.bin`): its types, and the shapes of the
//! primitive types of [`crate::types`] they use, never change again.
//!
//! [`current`] names the in-memory types of this build, which are those of
//! [`crate::CURRENT`]. Today that is v1.0 itself. When v1.1 is added:
//!
//! 1. write `v1_1` with its own types (for example a domain kind with HVM
//!    domains and their p2m runs), and point [`current`] at them;
//! 2. add `impl From<v1_0::HandoverState> for current::HandoverState` (an old
//!    blob becomes a state with only PV domains), and let `decode_body` map
//!    1.0 to it;
//! 3. let `encode_body` write 1.0 from the current type through a borrowing
//!    view (a type that holds `&current::HandoverState` and implements
//!    `Serialize` in v1.0's field order), so that encoding still does not
//!    allocate; a state that v1.0 cannot express (an HVM domain) is refused
//!    with a new `EncodeError` variant;
//! 4. bump [`crate::CURRENT`] and add a golden blob for 1.1.

pub mod v1_0;

/// The in-memory types of this build: those of [`crate::CURRENT`] (v1.0).
pub mod current {
    pub use super::v1_0::*;
}

use crate::version::AbiVersion;

/// Serializes `state` as the body of `version` into `buf`, returning the
/// number of bytes written, or `None` if this build does not write `version`.
pub(crate) fn encode_body(
    version: AbiVersion,
    state: &current::HandoverState,
    buf: &mut [u8],
) -> Option<Result<usize, postcard::Error>> {
    match (version.major, version.minor) {
        (1, 0) => Some(postcard::to_slice(state, buf).map(|used| used.len())),
        _ => None,
    }
}

/// The size of the body of `version` for `state`, or `None` if this build
/// does not write `version`.
pub(crate) fn body_len(
    version: AbiVersion,
    state: &current::HandoverState,
) -> Option<Result<usize, postcard::Error>> {
    match (version.major, version.minor) {
        (1, 0) => Some(postcard::serialize_with_flavor(
            state,
            postcard::ser_flavors::Size::default(),
        )),
        _ => None,
    }
}

/// The outcome of reading a body: the state and the number of bytes of
/// `body` that the postcard value did not use.
pub(crate) type BodyRead = Result<(current::HandoverState, usize), postcard::Error>;

/// Deserializes a body of `version` and converts it into the in-memory type,
/// or `None` if this build does not read `version`.
pub(crate) fn decode_body(version: AbiVersion, body: &[u8]) -> Option<BodyRead> {
    match (version.major, version.minor) {
        (1, 0) => Some(
            postcard::take_from_bytes::<v1_0::HandoverState>(body)
                .map(|(state, rest)| (state, rest.len())),
        ),
        _ => None,
    }
}
