//! CRC32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected, initial
//! value and final XOR `0xFFFF_FFFF`), as used by the header and the body.
//!
//! The check value (CRC of the ASCII bytes `"123456789"`) is `0xE306_9283`.

use ::crc::{Crc, Table, CRC_32_ISCSI};

/// The CRC32C engine: a slice-by-16 table built at compile time.
const CASTAGNOLI: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// The CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    CASTAGNOLI.checksum(data)
}

/// The CRC32C of the concatenation of `parts`, without copying them.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

#[cfg(test)]
mod tests;
