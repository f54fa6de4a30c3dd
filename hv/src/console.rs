//! The hypervisor console: COM1, one line per message, with a prefix that
//! names the source — `(hv)` for the hypervisor, `(dN)` for domain N — and
//! the input that waits for dom0.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use hvlu_types::DomId;
use spin::Mutex;

use crate::arch::serial;

/// The console's UART as a `fmt::Write`, translating `\n` to `\r\n`. It
/// takes no lock itself: the console below serialises ordinary output with
/// one, and the fatal path of `crate::trap`, which must not wait for a lock
/// the interrupted code may hold, writes through it directly.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                serial::write_byte(b'\r');
            }
            serial::write_byte(byte);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Serial> = Mutex::new(Serial);

/// Sets up the serial port.
pub fn init() {
    serial::init(serial::Uart::Com1);
    // The host link, when the machine has a second UART.
    if serial::present(serial::Uart::Com2) {
        serial::init(serial::Uart::Com2);
    }
}

/// Writes one message from the hypervisor, prefixed with `(hv) `.
pub fn hv_print(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    // Serial writes cannot fail.
    let _ = console.write_str("(hv) ");
    let _ = console.write_fmt(args);
    let _ = console.write_str("\n");
}

/// Prints a line from the hypervisor: `(hv) ...`.
#[macro_export]
macro_rules! hvprintln {
    ($($arg:tt)*) => {
        $crate::console::hv_print(format_args!($($arg)*))
    };
}

/// Writes one line of domain `id`'s console, prefixed with `(dN) `.
pub fn domain_print(id: DomId, line: &str) {
    let mut console = CONSOLE.lock();
    let _ = writeln!(console, "(d{id}) {line}");
}

/// Console input waiting for dom0 (`console_read`), at most
/// [`ConsoleIn::CAPACITY`] bytes; more is dropped.
#[derive(Debug, Default)]
pub struct ConsoleIn(VecDeque<u8>);

impl ConsoleIn {
    /// Most bytes kept.
    pub const CAPACITY: usize = 4096;

    /// Moves what the serial port received into the buffer, a carriage
    /// return as a newline.
    pub fn poll(&mut self) {
        while let Some(byte) = serial::try_read_byte() {
            if self.0.len() < Self::CAPACITY {
                self.0.push_back(if byte == b'\r' { b'\n' } else { byte });
            }
        }
    }

    /// The first `max` bytes waiting (fewer if fewer are), left in place.
    pub fn peek(&self, max: usize) -> Vec<u8> {
        self.0.iter().take(max).copied().collect()
    }

    /// Drops the first `n` bytes.
    pub fn consume(&mut self, n: usize) {
        self.0.drain(..n.min(self.0.len()));
    }
}
