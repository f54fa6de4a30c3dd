//! Host tests of the live hypervisor's incremental operations
//! (`frame_ownership::ops`) and of reading the runs off a live frametable
//! (`frame_ownership::collect`).
//!
//! - `errors`: one test per `OpError` variant on a tiny hand-built machine,
//!   each checking the exact error, its message, and that the refused
//!   operation changed nothing.
//! - `behaviour`: what the accepted operations do to the counts, and the
//!   run collection.
//! - `equivalence`: the property that matters — after any sequence of
//!   operations, the pass rebuilds from the collected runs exactly the live
//!   frametable, M2P and digest.

mod behaviour;
mod equivalence;
mod errors;
mod hvm;
mod tiny;
