//! Writing v1.0 from the current types without allocating: borrowing views
//! that serialize exactly v1.0's fields, in v1.0's order. Postcard writes a
//! struct as its fields one after the other, so a view that serializes the
//! same values in the same order writes the same bytes as the v1.0 type
//! (the golden v1.0 blob checks it).

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{current, v1_0};

/// A state as v1.0's `HandoverState`.
pub(super) struct State<'a>(pub &'a current::HandoverState);

/// A domain as v1.0's `Domain`.
struct Domain<'a>(&'a current::Domain);

/// The domains as v1.0's `Vec<Domain>`.
struct Domains<'a>(&'a [current::Domain]);

impl Serialize for State<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let globals = v1_0::HvGlobals {
            next_domid: s.globals.next_domid,
            time: s.globals.time,
        };
        let mut st = serializer.serialize_struct("HandoverState", 3)?;
        st.serialize_field("machine", &s.machine)?;
        st.serialize_field("globals", &globals)?;
        st.serialize_field("domains", &Domains(&s.domains))?;
        st.end()
    }
}

impl Serialize for Domains<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Domain))
    }
}

impl Serialize for Domain<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Every field named: a field added to the current type must be
        // decided on here (written by 1.0 or not).
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
            paused: _,
            reports: _,
        } = self.0;
        let mut st = serializer.serialize_struct("Domain", 10)?;
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
        st.end()
    }
}
