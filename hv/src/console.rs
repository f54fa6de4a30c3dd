//! The hypervisor console: COM1, one line per message, with a prefix that
//! names the source — `(hv)` for the hypervisor, `(dN)` for domain N.

use core::fmt::{self, Write};

use spin::Mutex;

use crate::arch::serial;

struct Serial;

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
pub fn domain_print(id: u16, line: &str) {
    let mut console = CONSOLE.lock();
    let _ = writeln!(console, "(d{id}) {line}");
}
