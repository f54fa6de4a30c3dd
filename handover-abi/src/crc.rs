//! CRC32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected, initial
//! value and final XOR `0xFFFF_FFFF`), as used by the header and the body.
//!
//! One engine for the whole project: `hvlu_types::crc32c`.
//!
//! The check value (CRC of the ASCII bytes `"123456789"`) is `0xE306_9283`.

pub use hvlu_types::crc32c::{crc32c, crc32c_parts};

#[cfg(test)]
mod tests;
