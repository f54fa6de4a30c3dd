//! The exec step: the handover state of a running hypervisor, its encoding
//! and the pre-flight check.
//!
//! - [`handover_state`] builds the state from the hypervisor's view of
//!   itself — the RAM map ([`ram`](crate::ram)), the region, the globals and
//!   each domain ([`domain`](crate::domain), with its [`pins`](crate::pins)
//!   and [`vcpu`](crate::vcpu)s) — and its live frametable: each domain's
//!   runs and pins come from its own frames (its p2m and their frametable
//!   entries), so the cost follows guest memory, not RAM.
//! - [`serialise`] encodes it, as the negotiated version, into a buffer that
//!   must fit the staging area's state part.
//! - [`preflight`] decodes what was written, compares it with what was
//!   meant, and takes the owned-frame digest over the decoded runs: the
//!   figure the incoming image must reproduce after its pass.

use alloc::vec::Vec;

use frame_ownership::{state_views, FrameInfo};
use handover_abi::{
    AbiVersion, DecodeError, EncodeError, HandoverState, HvGlobals, LuRegion, Machine, PciDevice,
    Producer, RetiredDomain,
};
use hvlu_types::MfnRange;

pub use crate::domain::{DomainInput, HvmInput};
use crate::{domain, ram};

/// The handover state of a running system: `ram` (sorted frame ranges, all
/// usable), the live-update region with the staged image and state areas,
/// the globals, every domain, in the order given, the domains destroyed
/// earlier whose reports still count, and the PCI devices the hypervisor
/// enumerated.
pub fn handover_state<'a>(
    ram: &[MfnRange],
    region: LuRegion,
    globals: HvGlobals,
    domains: impl IntoIterator<Item = DomainInput<'a>>,
    retired: Vec<RetiredDomain>,
    devices: Vec<PciDevice>,
    frametable: &[FrameInfo],
) -> HandoverState {
    HandoverState {
        machine: Machine {
            ram_map: ram::save(ram),
            region,
        },
        globals,
        domains: domains
            .into_iter()
            .map(|d| domain::save(d, frametable))
            .collect(),
        retired,
        devices,
    }
}

/// Why the state could not be serialised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SerialiseError {
    /// The encoder refused (version not written, body error).
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The encoded state is larger than the staging area's state part.
    #[error("the state needs {needed} bytes, the staging area has {capacity}")]
    TooLarge {
        /// Bytes the blob needs.
        needed: usize,
        /// Bytes the state area has.
        capacity: u64,
    },
}

/// Encodes `state` as `version` (the version negotiated at load) into a
/// blob of at most `capacity` bytes.
pub fn serialise(
    version: AbiVersion,
    state: &HandoverState,
    producer: &Producer,
    capacity: u64,
) -> Result<Vec<u8>, SerialiseError> {
    let needed = handover_abi::encoded_len_as(version, state)?;
    if needed as u64 > capacity {
        return Err(SerialiseError::TooLarge { needed, capacity });
    }
    let mut blob = alloc::vec![0u8; needed];
    handover_abi::encode_as(version, state, producer, &mut blob)?;
    Ok(blob)
}

/// Why the pre-flight check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// The blob read back does not decode.
    #[error("pre-flight: {0}")]
    Decode(#[from] DecodeError),
    /// It decodes to another state than the one written.
    #[error("pre-flight: the decoded state differs from the one written")]
    Differs,
}

/// Decodes `blob` (the staged state, read back), checks it is `expected` as
/// the blob's version carries it (`handover_abi::body::carried`: an older
/// minor drops the hypervisor's own records) and returns the owned-frame
/// digest over the decoded runs.
pub fn preflight(
    blob: &[u8],
    expected: &HandoverState,
    frametable: &[FrameInfo],
    m2p: &[u64],
) -> Result<u64, PreflightError> {
    let decoded = handover_abi::decode(blob)?;
    if decoded.state != *handover_abi::body::carried(decoded.header.version, expected) {
        return Err(PreflightError::Differs);
    }
    Ok(frame_ownership::owned_digest(
        frametable,
        m2p,
        &state_views(&decoded.state),
    ))
}
