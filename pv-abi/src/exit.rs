//! How a run of the hypervisor in QEMU ends.
//!
//! The hypervisor writes one of these values to the `isa-debug-exit` device
//! at port [`DEBUG_EXIT_PORT`]; QEMU then exits with status
//! `(value << 1) | 1`. The values are chosen so that neither QEMU's own
//! failure status (1) nor a triple fault under `-no-reboot` (status 0) can
//! ever read as a pass.

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The outcome the hypervisor reports when it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Every check passed (a clean power-off with no guest mismatch).
    Pass = 0x10,
    /// The run completed but a check failed (a guest reported a mismatch, a
    /// scenario assertion failed).
    Fail = 0x11,
    /// The hypervisor panicked or took a fatal exception.
    Panic = 0x12,
    /// The hypervisor refused to run guests on a state it could not verify.
    Refused = 0x13,
}

impl Outcome {
    /// Every outcome, for decoding.
    pub const ALL: [Outcome; 4] = [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::Panic,
        Outcome::Refused,
    ];

    /// The exit status QEMU reports for this outcome.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The outcome that QEMU's exit status stands for, if it is one.
    pub fn from_qemu_status(status: i32) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.qemu_status() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn no_outcome_reads_as_qemu_failure_or_triple_fault() {
        for outcome in Outcome::ALL {
            assert_ne!(outcome.qemu_status(), 0, "{outcome:?}");
            assert_ne!(outcome.qemu_status(), 1, "{outcome:?}");
            assert_eq!(
                Outcome::from_qemu_status(outcome.qemu_status()),
                Some(outcome)
            );
        }
        assert_eq!(Outcome::from_qemu_status(0), None);
        assert_eq!(Outcome::from_qemu_status(1), None);
    }
}
