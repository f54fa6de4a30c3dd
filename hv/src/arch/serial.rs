//! The 16550 UART on COM1, polled.

use super::port::{inb, outb};

const COM1: u16 = 0x3f8;

/// Programs COM1 for 115200 baud, 8N1, FIFO on, interrupts off.
pub fn init() {
    // SAFETY: COM1 belongs to the hypervisor; these are the standard 16550
    // initialisation writes and touch no memory.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // divisor 1: 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
}

/// Sends one byte, waiting for room in the transmitter.
pub fn write_byte(byte: u8) {
    // SAFETY: COM1 belongs to the hypervisor; reading the line status and
    // writing the transmit register have no effect beyond the UART.
    unsafe {
        while inb(COM1 + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, byte);
    }
}

/// Returns a received byte, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    // SAFETY: COM1 belongs to the hypervisor; reading the receive register
    // pops the byte that the line status says is there.
    unsafe { (inb(COM1 + 5) & 0x01 != 0).then(|| inb(COM1)) }
}
