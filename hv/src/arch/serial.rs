//! The 16550 UARTs, polled: COM1 is the console, COM2 the host link (a
//! byte channel between the host and dom0, used to bring hypervisor images
//! in from the host).

use core::sync::atomic::{AtomicBool, Ordering};

use super::port::{inb, outb};

/// A UART the hypervisor owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uart {
    /// The console.
    Com1,
    /// The host link.
    Com2,
}

impl Uart {
    const fn base(self) -> u16 {
        match self {
            Uart::Com1 => 0x3f8,
            Uart::Com2 => 0x2f8,
        }
    }
}

/// Programs `uart` for 115200 baud, 8N1, FIFO on, interrupts off.
pub fn init(uart: Uart) {
    let base = uart.base();
    // SAFETY: the UARTs belong to the hypervisor; these are the standard
    // 16550 initialisation writes and touch no memory. On a machine without
    // the UART the writes go nowhere.
    unsafe {
        outb(base + 1, 0x00); // no interrupts
        outb(base + 3, 0x80); // DLAB
        outb(base, 0x01); // divisor 1: 115200 baud
        outb(base + 1, 0x00);
        outb(base + 3, 0x03); // 8N1
        outb(base + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(base + 4, 0x03); // DTR, RTS
    }
}

/// Whether a UART answers at `uart`'s ports (the scratch register keeps
/// what is written to it).
pub fn present(uart: Uart) -> bool {
    let base = uart.base();
    // SAFETY: the scratch register has no function; writing and reading it
    // back only tells whether a UART is there.
    unsafe {
        outb(base + 7, 0x5a);
        inb(base + 7) == 0x5a
    }
}

/// Line-status polls [`write_to`] makes before it gives up waiting for
/// the transmitter (about 10 ms on hardware; more under emulation), as
/// Linux's serial console does: a console whose far end stopped reading
/// slows the hypervisor down, it does not stop it.
const TRANSMIT_POLLS: u32 = 10_000;

/// Bytes the transmit FIFO holds once the transmitter is empty (16550).
const FIFO_BYTES: usize = 16;

/// Per UART (COM1, COM2): set when [`write_to`] gave up waiting, until
/// the transmitter is seen empty again. While it is set, bytes are written
/// without waiting: a stuck far end costs one wait, not one per byte.
static STUCK: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

impl Uart {
    const fn index(self) -> usize {
        match self {
            Uart::Com1 => 0,
            Uart::Com2 => 1,
        }
    }
}

/// Whether the transmitter of `uart` can take a byte now (with the FIFO
/// on: it is empty and takes [`FIFO_BYTES`]).
fn transmitter_empty(uart: Uart) -> bool {
    // SAFETY: the UART belongs to the hypervisor; reading the line status
    // has no effect beyond the UART.
    unsafe { inb(uart.base() + 5) & 0x20 != 0 }
}

fn transmit(uart: Uart, byte: u8) {
    // SAFETY: the UART belongs to the hypervisor; writing the transmit
    // register has no effect beyond the UART.
    unsafe { outb(uart.base(), byte) };
}

/// Sends one byte on `uart`, waiting a bounded time ([`TRANSMIT_POLLS`])
/// for room in the transmitter; past that the byte is written anyway (the
/// UART drops what it cannot hold) and the UART counts as stuck: later
/// bytes do not wait until the transmitter is seen empty again.
pub fn write_to(uart: Uart, byte: u8) {
    let stuck = &STUCK[uart.index()];
    let mut polls = 0;
    while !transmitter_empty(uart) {
        if stuck.load(Ordering::Relaxed) || polls == TRANSMIT_POLLS {
            stuck.store(true, Ordering::Relaxed);
            transmit(uart, byte);
            return;
        }
        core::hint::spin_loop();
        polls += 1;
    }
    stuck.store(false, Ordering::Relaxed);
    transmit(uart, byte);
}

/// Sends the first bytes of `bytes` on `uart` that the transmitter can
/// take now, without waiting: a FIFO's worth ([`FIFO_BYTES`]) each time it
/// is seen empty. Returns how many; 0 if it cannot take any (the far end
/// is not reading).
pub fn try_write_to(uart: Uart, bytes: &[u8]) -> usize {
    let mut sent = 0;
    while sent < bytes.len() && transmitter_empty(uart) {
        let n = (bytes.len() - sent).min(FIFO_BYTES);
        for &b in &bytes[sent..sent + n] {
            transmit(uart, b);
        }
        sent += n;
    }
    sent
}

/// Returns a byte received on `uart`, if one is waiting.
pub fn read_from(uart: Uart) -> Option<u8> {
    let base = uart.base();
    // SAFETY: the UART belongs to the hypervisor; reading the receive
    // register pops the byte that the line status says is there.
    unsafe { (inb(base + 5) & 0x01 != 0).then(|| inb(base)) }
}

/// Sends one byte on the console.
pub fn write_byte(byte: u8) {
    write_to(Uart::Com1, byte);
}

/// Returns a console byte, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    read_from(Uart::Com1)
}
