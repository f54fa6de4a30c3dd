//! Decoding the few guest instructions the hypervisor emulates: a `mov`
//! between a general register and memory, in 64-bit mode (the HVM
//! emulated device, `hvm::mmio`). Host-tested: pure bytes in, a
//! [`Move`] out.

/// A decoded `mov` between register `reg` and memory.
#[derive(Debug, PartialEq, Eq)]
pub struct Move {
    /// Whether it loads the register (0x8b) or stores it (0x89).
    pub load: bool,
    /// The register (0 `rax` .. 15 `r15`).
    pub reg: u8,
    /// Operand bytes: 2, 4 or 8.
    pub size: u8,
    /// The instruction's length.
    pub len: u8,
}

/// Decodes the `mov` at the start of `b` (`n` bytes valid), 64-bit mode.
pub fn decode(b: &[u8], n: usize) -> Option<Move> {
    let mut i = 0;
    let mut size = 4;
    let mut rex = 0u8;
    while i < n && i < 4 {
        match b[i] {
            0x66 => size = 2,
            0x40..=0x4f => {
                rex = b[i];
                i += 1;
                break;
            }
            _ => break,
        }
        i += 1;
    }
    if rex & 0x08 != 0 {
        size = 8;
    }
    let load = match *b.get(i)? {
        0x8b => true,
        0x89 => false,
        _ => return None,
    };
    let modrm = *b.get(i + 1)?;
    i += 2;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None;
    }
    let mut disp = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = *b.get(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    } else if md == 0 && rm == 5 {
        // RIP-relative.
        disp = 4;
    }
    let len = i + disp;
    if len > n {
        return None;
    }
    Some(Move {
        load,
        reg: reg | ((rex & 0x04) << 1),
        size,
        len: len as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::{decode, Move};

    fn mv(load: bool, reg: u8, size: u8, len: u8) -> Option<Move> {
        Some(Move {
            load,
            reg,
            size,
            len,
        })
    }

    #[test]
    fn loads_and_stores_of_every_addressing_form() {
        // mov rax, [rdi]
        assert_eq!(decode(&[0x48, 0x8b, 0x07], 3), mv(true, 0, 8, 3));
        // mov r12, [r13 + 8]: REX.WRB, disp8
        assert_eq!(decode(&[0x4d, 0x8b, 0x65, 0x08], 4), mv(true, 12, 8, 4));
        // mov ecx, [rsp + 0x10]: SIB, disp8
        assert_eq!(decode(&[0x8b, 0x4c, 0x24, 0x10], 4), mv(true, 1, 4, 4));
        // mov edx, [rip + disp32]
        assert_eq!(decode(&[0x8b, 0x15, 1, 2, 3, 4], 6), mv(true, 2, 4, 6));
        // mov ax, [rbx + disp32]
        assert_eq!(
            decode(&[0x66, 0x8b, 0x83, 0, 0, 0, 1], 7),
            mv(true, 0, 2, 7)
        );
        // mov [rsi], r9
        assert_eq!(decode(&[0x4c, 0x89, 0x0e], 3), mv(false, 9, 8, 3));
        // mov eax, [disp32] through a SIB with no base
        assert_eq!(
            decode(&[0x8b, 0x04, 0x25, 0, 0xf0, 0xff, 0xff], 7),
            mv(true, 0, 4, 7)
        );
    }

    #[test]
    fn anything_else_is_refused() {
        // A register-to-register move.
        assert_eq!(decode(&[0x48, 0x8b, 0xc1], 3), None);
        // Another opcode (add).
        assert_eq!(decode(&[0x48, 0x03, 0x07], 3), None);
        // Cut short: the displacement was not fetched.
        assert_eq!(decode(&[0x8b, 0x15, 1, 2], 4), None);
        assert_eq!(decode(&[], 0), None);
    }
}
