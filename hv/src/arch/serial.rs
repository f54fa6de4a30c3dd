//! The 16550 UARTs, polled: COM1 is the console, COM2 the host link's
//! fallback (`crate::hostlink`: a byte channel between the host and dom0,
//! used to bring hypervisor images in from the host, on a virtio-serial
//! port when the machine has one).

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

/// A UART the hypervisor owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uart {
    /// The console.
    Com1,
    /// The host link, when it is not on a virtio-serial port.
    Com2,
}

/// A 16550 register, by its offset from the UART's first port.
#[derive(Clone, Copy, Debug)]
enum Reg {
    /// Receive (read) and transmit (write); the divisor's low byte while
    /// DLAB is set.
    Data = 0,
    /// Interrupt enable; the divisor's high byte while DLAB is set.
    InterruptEnable = 1,
    /// FIFO control (write).
    FifoControl = 2,
    /// Line control: word length, parity, stop bits, DLAB.
    LineControl = 3,
    /// Modem control: DTR, RTS.
    ModemControl = 4,
    /// Line status: data ready (bit 0), transmitter empty (bit 5).
    LineStatus = 5,
    /// Scratch: no function.
    Scratch = 7,
}

impl Uart {
    const fn base(self) -> u16 {
        match self {
            Uart::Com1 => 0x3f8,
            Uart::Com2 => 0x2f8,
        }
    }

    fn port(self, reg: Reg) -> Port<u8> {
        Port::new(self.base() + reg as u16)
    }

    /// Writes a register of the UART.
    fn write(self, reg: Reg, value: u8) {
        // SAFETY: the UARTs belong to the hypervisor and only this module
        // reaches their ports; a 16550 has no access to memory, so whatever
        // is written only changes the UART's own state. On a machine
        // without the UART the write goes nowhere.
        unsafe { self.port(reg).write(value) }
    }

    /// Reads a register of the UART.
    fn read(self, reg: Reg) -> u8 {
        // SAFETY: as for `write`; a read pops a received byte at most,
        // which only this module reads.
        unsafe { self.port(reg).read() }
    }
}

/// Programs `uart` for 115200 baud, 8N1, FIFO on, interrupts off.
pub fn init(uart: Uart) {
    uart.write(Reg::InterruptEnable, 0x00); // no interrupts
    uart.write(Reg::LineControl, 0x80); // DLAB
    uart.write(Reg::Data, 0x01); // divisor 1: 115200 baud
    uart.write(Reg::InterruptEnable, 0x00);
    uart.write(Reg::LineControl, 0x03); // 8N1
    uart.write(Reg::FifoControl, 0xc7); // FIFO on, cleared, 14-byte threshold
    uart.write(Reg::ModemControl, 0x03); // DTR, RTS
}

/// Whether a UART answers at `uart`'s ports (the scratch register keeps
/// what is written to it).
pub fn present(uart: Uart) -> bool {
    uart.write(Reg::Scratch, 0x5a);
    uart.read(Reg::Scratch) == 0x5a
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
    uart.read(Reg::LineStatus) & 0x20 != 0
}

fn transmit(uart: Uart, byte: u8) {
    uart.write(Reg::Data, byte);
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
    (uart.read(Reg::LineStatus) & 0x01 != 0).then(|| uart.read(Reg::Data))
}

/// Sends one byte on the console.
pub fn write_byte(byte: u8) {
    write_to(Uart::Com1, byte);
}

/// Returns a console byte, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    read_from(Uart::Com1)
}
