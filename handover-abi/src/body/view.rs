//! Writing an older minor from the current types without allocating:
//! borrowing views that serialize exactly that version's fields, in its
//! order. Postcard writes a struct as its fields one after the other, so a
//! view that serializes the same values in the same order writes the same
//! bytes as the older type (the golden v1.0 and v1.1 blobs check it).
//!
//! Each older minor is the one before it with fields appended, so one view
//! serves them all: it writes the fields of 1.0, then those 1.1 added if it
//! writes 1.1 or later, then those 1.2 added if it writes 1.2.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{current, v1_0};

/// The older minors a view writes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Older {
    /// 1.0.
    V1_0,
    /// 1.1.
    V1_1,
    /// 1.2.
    V1_2,
}

/// A state as the older version's `HandoverState`.
pub(super) struct State<'a>(pub Older, pub &'a current::HandoverState);

/// A domain as the older version's `Domain`.
struct Domain<'a>(Older, &'a current::Domain);

/// The domains as the older version's `Vec<Domain>`.
struct Domains<'a>(Older, &'a [current::Domain]);

impl Serialize for State<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (version, s) = (self.0, self.1);
        // Every field named: a field added to the current type must be
        // decided on here (written by an older version or not).
        let current::HandoverState {
            machine,
            globals,
            domains,
            retired,
            devices,
        } = s;
        let mut st = serializer.serialize_struct("HandoverState", 5)?;
        st.serialize_field("machine", machine)?;
        if version == Older::V1_0 {
            let globals = v1_0::HvGlobals {
                next_domid: globals.next_domid,
                time: globals.time,
            };
            st.serialize_field("globals", &globals)?;
        } else {
            st.serialize_field("globals", globals)?;
        }
        st.serialize_field("domains", &Domains(version, domains))?;
        if version >= Older::V1_1 {
            st.serialize_field("retired", retired)?;
        }
        if version >= Older::V1_2 {
            st.serialize_field("devices", devices)?;
        }
        st.end()
    }
}

impl Serialize for Domains<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.1.iter().map(|d| Domain(self.0, d)))
    }
}

impl Serialize for Domain<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let current::Domain {
            id,
            flags,
            name,
            max_frames,
            runs,
            pinned,
            mmio,
            start_info,
            vcpus,
            console,
            paused,
            reports,
            hole,
            identity,
            // An older version cannot carry it: `expressible` refused the
            // state first.
            hvm: _,
        } = self.1;
        let mut st = serializer.serialize_struct("Domain", 14)?;
        st.serialize_field("id", id)?;
        st.serialize_field("flags", flags)?;
        st.serialize_field("name", name)?;
        st.serialize_field("max_frames", max_frames)?;
        st.serialize_field("runs", runs)?;
        st.serialize_field("pinned", pinned)?;
        st.serialize_field("mmio", mmio)?;
        st.serialize_field("start_info", start_info)?;
        st.serialize_field("vcpus", vcpus)?;
        st.serialize_field("console", console)?;
        if self.0 >= Older::V1_1 {
            st.serialize_field("paused", paused)?;
            st.serialize_field("reports", reports)?;
        }
        if self.0 >= Older::V1_2 {
            st.serialize_field("hole", hole)?;
            st.serialize_field("identity", identity)?;
        }
        st.end()
    }
}
