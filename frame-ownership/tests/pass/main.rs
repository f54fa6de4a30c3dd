//! Host tests of the single pass against simulated machines with real page
//! tables (see `frame_ownership::testkit`).
//!
//! - `equivalence`: the pass against a multi-pass reference on 1000 random
//!   domains (250 machines × 4 domains), seeded so failures reproduce.
//! - `errors`: one test per error variant, each corrupting a valid machine in
//!   one specific way.
//! - `free`: the free-range property.
//! - `lazy`: the pass on tables whose unnamed entries hold anything.
//! - `digests`: both digests in one walk against each computed apart.

mod digests;
mod equivalence;
mod errors;
mod free;
mod hvm_errors;
mod lazy;
mod reference;
