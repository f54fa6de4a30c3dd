//! Unit tests: the entry layout, the counting primitives, the PTE format,
//! each type rule on a hand-made lookup, the layout lookups, the digest,
//! the error messages, the runs of a p2m; the ways the pass can go,
//! against each other.
//! The pass itself is tested against simulated machines in `tests/pass/`,
//! the live operations in `tests/ops/`.

mod collect;
mod frame;
mod layout;
mod messages;
mod pass;
mod rules;
