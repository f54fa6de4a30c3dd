//! A polled driver for one port of a virtio-serial device on a virtio-mmio
//! transport: the host link's fast path (`crate::hostlink`).
//!
//! What it speaks (virtio 1.x):
//! - the **modern** virtio-mmio transport (register layout version 2;
//!   §4.2.2), whose registers it reaches through [`Transport`]. A legacy
//!   transport (version 1, QEMU's default for virtio-mmio unless
//!   `-global virtio-mmio.force-legacy=false`) is refused with
//!   [`InitError::Legacy`]: the caller falls back to the UART;
//! - the console device (device id 3; §5.3) with `VIRTIO_F_VERSION_1` and
//!   `VIRTIO_CONSOLE_F_MULTIPORT`, and nothing else. Multiport is what
//!   makes the port a QEMU `virtserialport`, whose output QEMU holds back
//!   while the host does not read (a `virtconsole`, port 0, drops it): the
//!   link's writer learns that the host is deaf, as it does on a UART;
//! - four split virtqueues (§2.7): the control queues (2: device to
//!   driver, 3: driver to device) and the port's two (`2 * port + 2`
//!   receive, `2 * port + 3` transmit), each of [`QUEUE_SIZE`]
//!   descriptors.
//!
//! No interrupts: the driver asks for none (`VIRTQ_AVAIL_F_NO_INTERRUPT`)
//! and polls the used rings when it is called, as the UART is polled.
//!
//! # The shared area
//!
//! Everything the device reads or writes is in one area of [`AREA_BYTES`]
//! ([`SharedMemory`]; the hypervisor's is an allocation of its heap,
//! `arch::virtio`), laid out by [`Layout`]: the four queues' rings, then
//! each queue's buffers. Descriptor `i` of a queue always describes buffer
//! `i` of that queue: the bookkeeping is which descriptors the device holds
//! ([`Queue::held`]), the next available index and the last used index
//! seen, and it is the same for all four queues.
//!
//! # Opening the port (§3.1.1, §5.3.6)
//!
//! Reset; ACKNOWLEDGE, DRIVER; features (VERSION_1, MULTIPORT) and
//! FEATURES_OK, read back; the configuration's `max_nr_ports`; the four
//! queues; every receive buffer given to the device; DRIVER_OK; then the
//! control messages DEVICE_READY, and — once the device has announced the
//! port with DEVICE_ADD — PORT_READY and PORT_OPEN for it. Any failure
//! resets the device before the error is returned, so a refused device
//! never holds a buffer.
//!
//! Host-tested against a simulated device (`virtio/tests.rs`).

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// The registers of a virtio-mmio transport: byte offsets (§4.2.2).
pub mod reg {
    /// `0x74726976` ("virt").
    pub const MAGIC: u32 = 0x000;
    /// 2 for the modern transport, 1 for the legacy one.
    pub const VERSION: u32 = 0x004;
    /// The device type; 0 for a transport with no device.
    pub const DEVICE_ID: u32 = 0x008;
    /// The device's 32 feature bits [`DEVICE_FEATURES_SEL`] selects.
    pub const DEVICE_FEATURES: u32 = 0x010;
    /// Which 32 feature bits [`DEVICE_FEATURES`] shows.
    pub const DEVICE_FEATURES_SEL: u32 = 0x014;
    /// The driver's 32 feature bits [`DRIVER_FEATURES_SEL`] selects.
    pub const DRIVER_FEATURES: u32 = 0x020;
    /// Which 32 feature bits [`DRIVER_FEATURES`] takes.
    pub const DRIVER_FEATURES_SEL: u32 = 0x024;
    /// The queue the queue registers are about.
    pub const QUEUE_SEL: u32 = 0x030;
    /// The most descriptors the selected queue may have (0: no queue).
    pub const QUEUE_NUM_MAX: u32 = 0x034;
    /// The selected queue's size.
    pub const QUEUE_NUM: u32 = 0x038;
    /// 1 once the selected queue is set up.
    pub const QUEUE_READY: u32 = 0x044;
    /// A queue number written here tells the device it has new buffers.
    pub const QUEUE_NOTIFY: u32 = 0x050;
    /// The device status (the `STATUS_*` bits); 0 resets the device.
    pub const STATUS: u32 = 0x070;
    /// The selected queue's descriptor table (low, then high 32 bits).
    pub const QUEUE_DESC_LOW: u32 = 0x080;
    /// The selected queue's available ring.
    pub const QUEUE_DRIVER_LOW: u32 = 0x090;
    /// The selected queue's used ring.
    pub const QUEUE_DEVICE_LOW: u32 = 0x0a0;
    /// The device-specific configuration starts here.
    pub const CONFIG: u32 = 0x100;
    /// Bytes of one transport's register window.
    pub const WINDOW: u32 = 0x200;
}

/// What [`reg::MAGIC`] reads on a virtio-mmio transport.
pub const MAGIC: u32 = 0x7472_6976;
/// The virtio device id of a console (virtio-serial).
pub const CONSOLE_DEVICE_ID: u32 = 3;

/// Status: the driver has seen the device.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Status: the driver knows how to drive it.
pub const STATUS_DRIVER: u32 = 2;
/// Status: the driver is ready; the device may use the queues.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Status: the features are agreed.
pub const STATUS_FEATURES_OK: u32 = 8;

/// Feature: the port layout of [`MULTIPORT`] (ports, control queues).
pub const MULTIPORT: u64 = 1 << 1;
/// Feature: the virtio 1.x interface (mandatory on the modern transport).
pub const VERSION_1: u64 = 1 << 32;

/// Offset of `max_nr_ports` (u32) in the console's configuration.
const CONFIG_MAX_NR_PORTS: u32 = 4;

/// A control message's events (§5.3.6.2).
pub mod event {
    /// Driver: ready for the device's ports.
    pub const DEVICE_READY: u16 = 0;
    /// Device: a port exists.
    pub const DEVICE_ADD: u16 = 1;
    /// Device: a port went away.
    pub const DEVICE_REMOVE: u16 = 2;
    /// Driver: a port is set up (value 1) or could not be (0).
    pub const PORT_READY: u16 = 3;
    /// Device: the port is a console.
    pub const CONSOLE_PORT: u16 = 4;
    /// Both: the port is open (1) or closed (0) at the sender's end.
    pub const PORT_OPEN: u16 = 6;
    /// Device: the port's name follows the message.
    pub const PORT_NAME: u16 = 7;
}

/// The port the host link is: a QEMU `virtserialport,nr=1` (port 0 is
/// reserved for a `virtconsole`).
pub const PORT: u32 = 1;

/// Descriptors of every queue (a power of two, at most 32: [`Queue::held`]
/// is a bit mask).
pub const QUEUE_SIZE: u16 = 8;
/// Bytes of one receive buffer of the port. QEMU hands at most 4096 bytes
/// from the host to the port at a time.
pub const RX_BUFFER: u32 = 4096;
/// Bytes of one transmit buffer of the port: answers are short lines; a
/// write of more takes several.
pub const TX_BUFFER: u32 = 512;
/// Bytes of a control receive buffer: a message (8 bytes) and, for
/// PORT_NAME, the name (cut to fit).
const CONTROL_RX_BUFFER: u32 = 64;
/// Bytes of a control message.
const CONTROL_MESSAGE: u32 = 8;

/// Bytes of one queue's rings: the descriptor table, the available ring
/// and the used ring, each aligned as §2.7 asks (16, 2, 4).
const RING_SLOT: usize = 256;
const DESC_BYTES: usize = 16 * QUEUE_SIZE as usize;
const AVAIL_BYTES: usize = 6 + 2 * QUEUE_SIZE as usize;
const USED_AT: usize = (DESC_BYTES + AVAIL_BYTES).next_multiple_of(4);
const USED_BYTES: usize = 6 + 8 * QUEUE_SIZE as usize;
const _: () = assert!(USED_AT + USED_BYTES <= RING_SLOT);
const _: () = assert!(QUEUE_SIZE.is_power_of_two() && QUEUE_SIZE <= 32);

/// Where each queue lives in the shared area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the queue's rings (its descriptor table first).
    pub rings: usize,
    /// Offset of its first buffer.
    pub buffers: usize,
    /// Bytes of each of its buffers.
    pub buffer: u32,
}

/// The control receive queue's place (device to driver).
pub const CONTROL_RX: Layout = Layout {
    rings: 0,
    buffers: 4 * RING_SLOT,
    buffer: CONTROL_RX_BUFFER,
};
/// The control transmit queue's place (driver to device).
pub const CONTROL_TX: Layout = Layout {
    rings: RING_SLOT,
    buffers: CONTROL_RX.buffers + QUEUE_SIZE as usize * CONTROL_RX_BUFFER as usize,
    buffer: CONTROL_MESSAGE,
};
/// The port's receive queue (host to hypervisor).
pub const PORT_RX: Layout = Layout {
    rings: 2 * RING_SLOT,
    // Page aligned: a buffer never straddles more pages than it must.
    buffers: 4096,
    buffer: RX_BUFFER,
};
/// The port's transmit queue (hypervisor to host).
pub const PORT_TX: Layout = Layout {
    rings: 3 * RING_SLOT,
    buffers: PORT_RX.buffers + QUEUE_SIZE as usize * RX_BUFFER as usize,
    buffer: TX_BUFFER,
};
/// Bytes of the shared area.
pub const AREA_BYTES: usize = PORT_TX.buffers + QUEUE_SIZE as usize * TX_BUFFER as usize;
const _: () = assert!(CONTROL_TX.buffers + QUEUE_SIZE as usize * 8 <= PORT_RX.buffers);

/// A virtio-mmio transport's registers, 32 bits wide.
pub trait Transport {
    /// Reads the register at byte offset `reg` (below [`reg::WINDOW`], a
    /// multiple of 4).
    fn read_reg(&mut self, reg: u32) -> u32;
    /// Writes the register at byte offset `reg`.
    fn write_reg(&mut self, reg: u32, value: u32);
}

/// The area shared with the device, [`AREA_BYTES`] long. Offsets are
/// within it; the integer accessors take naturally aligned offsets and
/// access the integer at once (the device updates ring indices
/// concurrently: they must not tear).
pub trait SharedMemory {
    /// The address the device sees offset 0 at.
    fn bus_address(&self) -> u64;
    /// The little-endian u16 at `offset`.
    fn read_u16(&self, offset: usize) -> u16;
    /// The little-endian u32 at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// Writes a little-endian u16.
    fn write_u16(&mut self, offset: usize, value: u16);
    /// Writes a little-endian u32.
    fn write_u32(&mut self, offset: usize, value: u32);
    /// Writes a little-endian u64.
    fn write_u64(&mut self, offset: usize, value: u64);
    /// Copies `buf.len()` bytes from `offset`.
    fn read(&self, offset: usize, buf: &mut [u8]);
    /// Copies `bytes` to `offset`.
    fn write(&mut self, offset: usize, bytes: &[u8]);
}

/// A descriptor flag: the device writes the buffer.
const DESC_F_WRITE: u16 = 2;
/// An available-ring flag: no interrupt when buffers are used.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// The device broke the queue protocol: the link cannot be trusted and is
/// given up (the device is reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A used element names a descriptor the device was not holding.
    #[error("queue {queue} returned descriptor {id}, which it did not hold")]
    NotHeld {
        /// The queue.
        queue: u16,
        /// The descriptor id it returned.
        id: u32,
    },
    /// A used element says more bytes were written than the buffer holds.
    #[error("queue {queue} wrote {len} bytes into a buffer of {buffer}")]
    Overlong {
        /// The queue.
        queue: u16,
        /// What the device says it wrote.
        len: u32,
        /// The buffer's size.
        buffer: u32,
    },
    /// The used index moved further than there are descriptors.
    #[error("queue {queue}'s used index jumped by {by} (it has {QUEUE_SIZE} descriptors)")]
    UsedJump {
        /// The queue.
        queue: u16,
        /// How far it moved.
        by: u16,
    },
}

/// Why a port could not be opened. The device has been reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// The magic register is not "virt".
    #[error("no virtio-mmio transport (magic {0:#010x})")]
    NotVirtio(u32),
    /// A legacy (version 1) transport.
    #[error(
        "the transport is legacy virtio-mmio (version 1); the host link needs version 2 \
         (QEMU: -global virtio-mmio.force-legacy=false)"
    )]
    Legacy,
    /// A version this driver does not know.
    #[error("virtio-mmio version {0} is not known")]
    Version(u32),
    /// No device behind the transport.
    #[error("the transport has no device")]
    NoDevice,
    /// Another kind of device.
    #[error("device id {0} is not a console (3)")]
    NotConsole(u32),
    /// The device lacks a feature the link needs.
    #[error("the device offers features {offered:#x}, without VERSION_1 and MULTIPORT")]
    Features {
        /// What it offers.
        offered: u64,
    },
    /// The device did not accept the features.
    #[error("the device refused the features VERSION_1 and MULTIPORT")]
    FeaturesRefused,
    /// The device cannot have the port.
    #[error("the device has {0} ports at most: no port {PORT}")]
    TooFewPorts(u32),
    /// A queue is missing or smaller than [`QUEUE_SIZE`].
    #[error("queue {queue} holds {max} descriptors, fewer than {QUEUE_SIZE}")]
    QueueTooSmall {
        /// The queue.
        queue: u16,
        /// Its maximum size.
        max: u32,
    },
    /// A queue is already set up (the reset did not take).
    #[error("queue {0} is already in use after a reset")]
    QueueInUse(u16),
    /// The device did not announce the port.
    #[error("the device announced no port {PORT} (is it `-device virtserialport,nr=1`?)")]
    NoPort,
    /// The device broke the protocol while the port was opened.
    #[error("{0}")]
    Device(#[from] DeviceError),
}

/// One split virtqueue: descriptor `i` is buffer `i` of its [`Layout`].
#[derive(Clone, Debug)]
pub struct Queue {
    /// The device's number for it.
    number: u16,
    /// Where it is.
    layout: Layout,
    /// Whether the device writes its buffers (a receive queue).
    device_writes: bool,
    /// The available index the driver publishes next (free running).
    next_avail: u16,
    /// The used index up to which completions were taken.
    seen_used: u16,
    /// Descriptors the device holds, one bit each.
    held: u32,
}

impl Queue {
    fn new(number: u16, layout: Layout, device_writes: bool) -> Queue {
        Queue {
            number,
            layout,
            device_writes,
            next_avail: 0,
            seen_used: 0,
            held: 0,
        }
    }

    fn desc(&self) -> usize {
        self.layout.rings
    }

    fn avail(&self) -> usize {
        self.layout.rings + DESC_BYTES
    }

    fn used(&self) -> usize {
        self.layout.rings + USED_AT
    }

    /// Offset of buffer `id`.
    fn buffer(&self, id: u16) -> usize {
        self.layout.buffers + usize::from(id) * self.layout.buffer as usize
    }

    /// Zeroes the rings, writes the descriptor table (descriptor `i` on
    /// buffer `i`), and gives the device the queue's addresses.
    fn set_up(
        &mut self,
        t: &mut impl Transport,
        mem: &mut impl SharedMemory,
    ) -> Result<(), InitError> {
        t.write_reg(reg::QUEUE_SEL, u32::from(self.number));
        if t.read_reg(reg::QUEUE_READY) != 0 {
            return Err(InitError::QueueInUse(self.number));
        }
        let max = t.read_reg(reg::QUEUE_NUM_MAX);
        if max < u32::from(QUEUE_SIZE) {
            return Err(InitError::QueueTooSmall {
                queue: self.number,
                max,
            });
        }
        mem.write(self.layout.rings, &[0; RING_SLOT]);
        let bus = mem.bus_address();
        for id in 0..QUEUE_SIZE {
            let d = self.desc() + 16 * usize::from(id);
            mem.write_u64(d, bus + self.buffer(id) as u64);
            mem.write_u32(d + 8, self.layout.buffer);
            mem.write_u16(d + 12, if self.device_writes { DESC_F_WRITE } else { 0 });
            mem.write_u16(d + 14, 0);
        }
        mem.write_u16(self.avail(), AVAIL_F_NO_INTERRUPT);
        t.write_reg(reg::QUEUE_NUM, u32::from(QUEUE_SIZE));
        for (low, at) in [
            (reg::QUEUE_DESC_LOW, self.desc()),
            (reg::QUEUE_DRIVER_LOW, self.avail()),
            (reg::QUEUE_DEVICE_LOW, self.used()),
        ] {
            let addr = bus + at as u64;
            t.write_reg(low, addr as u32);
            t.write_reg(low + 4, (addr >> 32) as u32);
        }
        t.write_reg(reg::QUEUE_READY, 1);
        *self = Queue::new(self.number, self.layout, self.device_writes);
        Ok(())
    }

    /// A descriptor the device does not hold.
    fn free(&self) -> Option<u16> {
        (0..QUEUE_SIZE).find(|&id| self.held & 1 << id == 0)
    }

    /// Gives buffer `id` to the device, `len` bytes of it (a transmit
    /// buffer's payload; a receive buffer is offered whole).
    fn give(&mut self, mem: &mut impl SharedMemory, id: u16, len: u32) {
        debug_assert!(id < QUEUE_SIZE && self.held & 1 << id == 0);
        mem.write_u32(self.desc() + 16 * usize::from(id) + 8, len);
        let slot = usize::from(self.next_avail % QUEUE_SIZE);
        mem.write_u16(self.avail() + 4 + 2 * slot, id);
        // The descriptor and the ring entry before the index that
        // publishes them (§2.7.13: a memory barrier).
        fence(Ordering::SeqCst);
        self.next_avail = self.next_avail.wrapping_add(1);
        mem.write_u16(self.avail() + 2, self.next_avail);
        self.held |= 1 << id;
    }

    /// The next buffer the device has used: its id and the bytes it wrote.
    fn take(&mut self, mem: &impl SharedMemory) -> Result<Option<(u16, u32)>, DeviceError> {
        let used = mem.read_u16(self.used() + 2);
        let by = used.wrapping_sub(self.seen_used);
        if by == 0 {
            return Ok(None);
        }
        if by > QUEUE_SIZE {
            return Err(DeviceError::UsedJump {
                queue: self.number,
                by,
            });
        }
        // The element is read after the index that published it.
        fence(Ordering::SeqCst);
        let elem = self.used() + 4 + 8 * usize::from(self.seen_used % QUEUE_SIZE);
        let id = mem.read_u32(elem);
        let len = mem.read_u32(elem + 4);
        if id >= u32::from(QUEUE_SIZE) || self.held & 1 << id == 0 {
            return Err(DeviceError::NotHeld {
                queue: self.number,
                id,
            });
        }
        if self.device_writes && len > self.layout.buffer {
            return Err(DeviceError::Overlong {
                queue: self.number,
                len,
                buffer: self.layout.buffer,
            });
        }
        self.seen_used = self.seen_used.wrapping_add(1);
        self.held &= !(1 << id);
        Ok(Some((id as u16, len)))
    }

    /// Tells the device the queue has new buffers.
    fn notify(&self, t: &mut impl Transport) {
        fence(Ordering::SeqCst);
        t.write_reg(reg::QUEUE_NOTIFY, u32::from(self.number));
    }
}

/// What a transport holds, read without changing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Not a virtio-mmio transport.
    NotVirtio(u32),
    /// A transport with no device.
    Empty,
    /// A device: its id and the transport's version.
    Device {
        /// Its virtio device id.
        id: u32,
        /// The transport's register layout version.
        version: u32,
    },
}

/// Reads what the transport `t` holds (magic, version, device id).
pub fn identify(t: &mut impl Transport) -> Found {
    let magic = t.read_reg(reg::MAGIC);
    if magic != MAGIC {
        return Found::NotVirtio(magic);
    }
    match t.read_reg(reg::DEVICE_ID) {
        0 => Found::Empty,
        id => Found::Device {
            id,
            version: t.read_reg(reg::VERSION),
        },
    }
}

/// Something the device said on the control queue, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The host end of the port opened (true) or closed.
    Host(bool),
    /// The device removed the port: nothing more will pass.
    Removed,
}

/// The opened port.
#[derive(Debug)]
pub struct SerialPort<T, M> {
    transport: T,
    mem: M,
    control_rx: Queue,
    control_tx: Queue,
    rx: Queue,
    tx: Queue,
    /// A received buffer not read to its end: id, bytes in it, bytes read.
    partial: Option<(u16, u32, u32)>,
    /// Whether the host end is open (PORT_OPEN from the device).
    host_open: bool,
    /// What the device said since [`SerialPort::take_events`].
    events: Vec<Event>,
}

/// How many times opening looks for the device's DEVICE_ADD before it
/// gives up (QEMU answers DEVICE_READY while the notification is handled:
/// the first look finds it).
const ANNOUNCE_POLLS: u32 = 100_000;

impl<T: Transport, M: SharedMemory> SerialPort<T, M> {
    /// Opens port [`PORT`] of the console behind `transport`, with its
    /// queues in `mem` (module docs). On an error the device is reset.
    pub fn open(mut transport: T, mem: M) -> Result<SerialPort<T, M>, InitError> {
        match identify(&mut transport) {
            Found::NotVirtio(magic) => return Err(InitError::NotVirtio(magic)),
            Found::Empty => return Err(InitError::NoDevice),
            Found::Device { version: 1, .. } => return Err(InitError::Legacy),
            Found::Device { version: 2, id } if id != CONSOLE_DEVICE_ID => {
                return Err(InitError::NotConsole(id))
            }
            Found::Device { version: 2, .. } => {}
            Found::Device { version, .. } => return Err(InitError::Version(version)),
        }
        let mut port = SerialPort {
            transport,
            mem,
            control_rx: Queue::new(2, CONTROL_RX, true),
            control_tx: Queue::new(3, CONTROL_TX, false),
            rx: Queue::new(2 * PORT as u16 + 2, PORT_RX, true),
            tx: Queue::new(2 * PORT as u16 + 3, PORT_TX, false),
            partial: None,
            host_open: false,
            events: Vec::new(),
        };
        match port.start() {
            Ok(()) => Ok(port),
            Err(e) => {
                port.reset();
                Err(e)
            }
        }
    }

    fn start(&mut self) -> Result<(), InitError> {
        let t = &mut self.transport;
        t.write_reg(reg::STATUS, 0);
        t.write_reg(reg::STATUS, STATUS_ACKNOWLEDGE);
        t.write_reg(reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        t.write_reg(reg::DEVICE_FEATURES_SEL, 0);
        let low = t.read_reg(reg::DEVICE_FEATURES);
        t.write_reg(reg::DEVICE_FEATURES_SEL, 1);
        let offered = u64::from(t.read_reg(reg::DEVICE_FEATURES)) << 32 | u64::from(low);
        let wanted = VERSION_1 | MULTIPORT;
        if offered & wanted != wanted {
            return Err(InitError::Features { offered });
        }
        t.write_reg(reg::DRIVER_FEATURES_SEL, 0);
        t.write_reg(reg::DRIVER_FEATURES, wanted as u32);
        t.write_reg(reg::DRIVER_FEATURES_SEL, 1);
        t.write_reg(reg::DRIVER_FEATURES, (wanted >> 32) as u32);
        let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        t.write_reg(reg::STATUS, status);
        if t.read_reg(reg::STATUS) & STATUS_FEATURES_OK == 0 {
            return Err(InitError::FeaturesRefused);
        }
        let ports = t.read_reg(reg::CONFIG + CONFIG_MAX_NR_PORTS);
        if ports <= PORT {
            return Err(InitError::TooFewPorts(ports));
        }
        for q in [
            &mut self.control_rx,
            &mut self.control_tx,
            &mut self.rx,
            &mut self.tx,
        ] {
            q.set_up(&mut self.transport, &mut self.mem)?;
        }
        for id in 0..QUEUE_SIZE {
            self.control_rx.give(&mut self.mem, id, CONTROL_RX_BUFFER);
            self.rx.give(&mut self.mem, id, RX_BUFFER);
        }
        self.transport
            .write_reg(reg::STATUS, status | STATUS_DRIVER_OK);
        self.control_rx.notify(&mut self.transport);
        self.rx.notify(&mut self.transport);
        self.control(0, event::DEVICE_READY, 1)?;
        let mut announced = false;
        for _ in 0..ANNOUNCE_POLLS {
            announced |= self.poll_control()?;
            if announced {
                break;
            }
            core::hint::spin_loop();
        }
        if !announced {
            return Err(InitError::NoPort);
        }
        self.control(PORT, event::PORT_READY, 1)?;
        self.control(PORT, event::PORT_OPEN, 1)?;
        // The device's answers (the port's name, whether the host is
        // connected): the caller says the port's state when it opens.
        self.poll_control()?;
        self.events.clear();
        Ok(())
    }

    /// Sends a control message (waiting for none: the device holds at most
    /// [`QUEUE_SIZE`] of them, and completes them as it reads them).
    fn control(&mut self, id: u32, event: u16, value: u16) -> Result<(), DeviceError> {
        while self.control_tx.take(&self.mem)?.is_some() {}
        let Some(slot) = self.control_tx.free() else {
            // Every message is still with the device: this one is
            // dropped, as the device drops its own when the driver has
            // no buffer for them.
            return Ok(());
        };
        let at = self.control_tx.buffer(slot);
        self.mem.write_u32(at, id);
        self.mem.write_u16(at + 4, event);
        self.mem.write_u16(at + 6, value);
        self.control_tx.give(&mut self.mem, slot, CONTROL_MESSAGE);
        self.control_tx.notify(&mut self.transport);
        Ok(())
    }

    /// Takes what the device said on the control queue and gives the
    /// buffers back; returns whether it announced the port (DEVICE_ADD).
    fn poll_control(&mut self) -> Result<bool, DeviceError> {
        let mut announced = false;
        let mut gave = false;
        while let Some((id, len)) = self.control_rx.take(&self.mem)? {
            if len >= CONTROL_MESSAGE {
                let at = self.control_rx.buffer(id);
                let port = self.mem.read_u32(at);
                let event = self.mem.read_u16(at + 4);
                let value = self.mem.read_u16(at + 6);
                if port == PORT {
                    match event {
                        event::DEVICE_ADD => announced = true,
                        event::DEVICE_REMOVE => self.events.push(Event::Removed),
                        event::PORT_OPEN if (value != 0) != self.host_open => {
                            self.host_open = value != 0;
                            self.events.push(Event::Host(self.host_open));
                        }
                        // CONSOLE_PORT, PORT_NAME: nothing to do.
                        _ => {}
                    }
                }
            }
            self.control_rx.give(&mut self.mem, id, CONTROL_RX_BUFFER);
            gave = true;
        }
        if gave {
            self.control_rx.notify(&mut self.transport);
        }
        Ok(announced)
    }

    /// What the device said since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }

    /// Whether the host end of the port is open.
    pub fn host_open(&self) -> bool {
        self.host_open
    }

    /// Copies bytes the host sent into `out`, as many as have arrived and
    /// fit; returns how many. Buffers read to their end go back to the
    /// device at once.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, DeviceError> {
        self.poll_control()?;
        let mut n = 0;
        let mut gave = false;
        while n < out.len() {
            let (id, len, read) = match self.partial.take() {
                Some(p) => p,
                None => match self.rx.take(&self.mem)? {
                    Some((id, len)) => (id, len, 0),
                    None => break,
                },
            };
            let k = ((len - read) as usize).min(out.len() - n);
            self.mem
                .read(self.rx.buffer(id) + read as usize, &mut out[n..n + k]);
            n += k;
            if read + k as u32 == len {
                self.rx.give(&mut self.mem, id, RX_BUFFER);
                gave = true;
            } else {
                self.partial = Some((id, len, read + k as u32));
            }
        }
        if gave {
            self.rx.notify(&mut self.transport);
        }
        Ok(n)
    }

    /// Sends the first bytes of `bytes` that the free transmit buffers
    /// hold; returns how many (0 while the host does not read and the
    /// device holds every buffer). Never waits.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, DeviceError> {
        self.poll_control()?;
        while self.tx.take(&self.mem)?.is_some() {}
        let mut sent = 0;
        while sent < bytes.len() {
            let Some(id) = self.tx.free() else { break };
            let k = (bytes.len() - sent).min(TX_BUFFER as usize);
            self.mem.write(self.tx.buffer(id), &bytes[sent..sent + k]);
            self.tx.give(&mut self.mem, id, k as u32);
            sent += k;
        }
        if sent > 0 {
            self.tx.notify(&mut self.transport);
        }
        Ok(sent)
    }

    /// Resets the device: it holds no buffer and writes nothing more.
    pub fn reset(&mut self) {
        self.transport.write_reg(reg::STATUS, 0);
    }
}

#[cfg(test)]
mod tests;
