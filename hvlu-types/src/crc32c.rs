//! CRC32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected, initial
//! value and final XOR `0xFFFF_FFFF`): the one checksum of the project —
//! the handover header and body (`handover-abi`), the host link's headers
//! and bodies (`pv-abi`) — from one table built at compile time.
//!
//! The check value (CRC of the ASCII bytes `"123456789"`) is `0xE306_9283`.

use crc::{Crc, Digest, Table, CRC_32_ISCSI};

/// The engine: a slice-by-16 table built at compile time.
pub static CASTAGNOLI: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// A CRC32C computed piece by piece ([`digest`]).
pub type Crc32cDigest = Digest<'static, u32, Table<16>>;

/// The CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    CASTAGNOLI.checksum(data)
}

/// The CRC32C of the concatenation of `parts`, without copying them.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut d = digest();
    for part in parts {
        d.update(part);
    }
    d.finalize()
}

/// A CRC32C to feed piece by piece.
pub fn digest() -> Crc32cDigest {
    CASTAGNOLI.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_parts() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_parts(&[b"1234", b"", b"56789"]), 0xE306_9283);
        let mut d = digest();
        d.update(b"12345");
        d.update(b"6789");
        assert_eq!(d.finalize(), 0xE306_9283);
    }
}
