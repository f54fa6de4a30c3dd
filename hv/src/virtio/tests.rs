//! The driver against a simulated virtio-serial device on a modern
//! virtio-mmio transport. The device reads and writes the shared area only
//! through the rings, as the real one does: it takes buffers from the
//! available ring, checks their descriptors (inside the area, the write
//! flag a receive buffer needs), completes them on the used ring, answers
//! the control messages as QEMU's virtio-serial does (DEVICE_READY with a
//! DEVICE_ADD per port; PORT_READY with the port's name and, if the host
//! is connected, PORT_OPEN), drops its own control messages when the
//! driver has given it no buffer, discards output while the host is not
//! connected and holds it back while the host does not read.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;

/// Where the simulated area is on the bus: above 4 GiB, so that the high
/// halves of the queue addresses matter.
const BUS: u64 = 0x4_2000_0000;

#[derive(Clone, Copy, Debug, Default)]
struct SimQueue {
    max: u32,
    num: u32,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
    last_avail: u16,
    used: u16,
}

#[derive(Debug)]
struct Device {
    mem: Vec<u8>,
    magic: u32,
    version: u32,
    device_id: u32,
    offered: u64,
    /// Whether FEATURES_OK sticks (a device that refuses the driver's
    /// choice clears it).
    accepts: bool,
    driver_features: u64,
    device_sel: u32,
    driver_sel: u32,
    status: u32,
    max_ports: u32,
    sel: usize,
    queues: [SimQueue; 6],
    /// The ports the device has.
    ports: Vec<u32>,
    /// Whether a host is connected to the port.
    host_open: bool,
    /// Whether the driver opened the port (PORT_OPEN).
    guest_open: bool,
    /// The host reads nothing: output stays on the transmit queue.
    deaf: bool,
    /// What the host received.
    to_host: Vec<u8>,
    /// The control messages the driver sent.
    from_driver: Vec<(u32, u16, u16)>,
    /// Control messages dropped for want of a buffer.
    dropped: u32,
    /// The next receive completion names this descriptor instead.
    forge_id: Option<u32>,
}

impl Device {
    fn new() -> Device {
        let mut queues = [SimQueue::default(); 6];
        // QEMU's sizes: 128 for the ports' queues, 32 for the control ones.
        for (i, q) in queues.iter_mut().enumerate() {
            q.max = if i == 2 || i == 3 { 32 } else { 128 };
        }
        Device {
            mem: vec![0; AREA_BYTES],
            magic: MAGIC,
            version: 2,
            device_id: CONSOLE_DEVICE_ID,
            // SIZE, MULTIPORT, EMERG_WRITE, VERSION_1, and two ring
            // features the driver must leave alone.
            offered: 0b111 | VERSION_1 | 1 << 28 | 1 << 29,
            accepts: true,
            driver_features: 0,
            device_sel: 0,
            driver_sel: 0,
            status: 0,
            max_ports: 2,
            sel: 0,
            queues,
            ports: vec![PORT],
            host_open: true,
            guest_open: false,
            deaf: false,
            to_host: Vec::new(),
            from_driver: Vec::new(),
            dropped: 0,
            forge_id: None,
        }
    }

    /// The area offset of bus address `addr`, `len` bytes of which must be
    /// in the area.
    fn at(&self, addr: u64, len: u64) -> usize {
        assert!(
            addr >= BUS && addr + len <= BUS + AREA_BYTES as u64,
            "the driver gave the device {len} bytes at {addr:#x}, outside the area"
        );
        (addr - BUS) as usize
    }

    fn u16_at(&self, addr: u64) -> u16 {
        let o = self.at(addr, 2);
        u16::from_le_bytes([self.mem[o], self.mem[o + 1]])
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        let o = self.at(addr, bytes.len() as u64);
        self.mem[o..o + bytes.len()].copy_from_slice(bytes);
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        for q in &mut self.queues {
            *q = SimQueue {
                max: q.max,
                ..SimQueue::default()
            };
        }
        self.guest_open = false;
    }

    /// Takes the next available buffer of queue `q`: id, address, length,
    /// flags.
    fn pop(&mut self, q: usize) -> Option<(u16, u64, u32, u16)> {
        let sq = self.queues[q];
        if !sq.ready || self.status & STATUS_DRIVER_OK == 0 {
            return None;
        }
        if self.u16_at(sq.driver + 2) == sq.last_avail {
            return None;
        }
        let slot = u64::from(sq.last_avail % sq.num as u16);
        let id = self.u16_at(sq.driver + 4 + 2 * slot);
        assert!(u32::from(id) < sq.num, "queue {q}: descriptor {id} offered");
        self.queues[q].last_avail = sq.last_avail.wrapping_add(1);
        let d = self.at(sq.desc + 16 * u64::from(id), 16);
        let addr = u64::from_le_bytes(self.mem[d..d + 8].try_into().unwrap());
        let len = u32::from_le_bytes(self.mem[d + 8..d + 12].try_into().unwrap());
        let flags = u16::from_le_bytes([self.mem[d + 12], self.mem[d + 13]]);
        self.at(addr, u64::from(len));
        Some((id, addr, len, flags))
    }

    /// Completes buffer `id` of queue `q`, `len` bytes written.
    fn push(&mut self, q: usize, id: u32, len: u32) {
        let sq = self.queues[q];
        let slot = u64::from(sq.used % sq.num as u16);
        let mut elem = id.to_le_bytes().to_vec();
        elem.extend_from_slice(&len.to_le_bytes());
        self.put(sq.device + 4 + 8 * slot, &elem);
        self.queues[q].used = sq.used.wrapping_add(1);
        let used = self.queues[q].used;
        self.put(sq.device + 2, &used.to_le_bytes());
    }

    /// A control message to the driver (dropped without a buffer).
    fn control(&mut self, port: u32, event: u16, value: u16, extra: &[u8]) {
        let Some((id, addr, len, flags)) = self.pop(2) else {
            self.dropped += 1;
            return;
        };
        assert_eq!(
            flags & 2,
            2,
            "a control receive buffer the device cannot write"
        );
        let mut msg = port.to_le_bytes().to_vec();
        msg.extend_from_slice(&event.to_le_bytes());
        msg.extend_from_slice(&value.to_le_bytes());
        msg.extend_from_slice(extra);
        msg.truncate(len as usize);
        self.put(addr, &msg);
        self.push(2, u32::from(id), msg.len() as u32);
    }

    fn notify(&mut self, q: usize) {
        match q {
            3 => {
                while let Some((id, addr, len, flags)) = self.pop(3) {
                    assert_eq!(flags & 2, 0, "a control message the device may write");
                    assert_eq!(len, 8);
                    let o = self.at(addr, 8);
                    let m = &self.mem[o..o + 8];
                    let port = u32::from_le_bytes(m[..4].try_into().unwrap());
                    let event = u16::from_le_bytes([m[4], m[5]]);
                    let value = u16::from_le_bytes([m[6], m[7]]);
                    self.from_driver.push((port, event, value));
                    self.push(3, u32::from(id), 0);
                    match event {
                        event::DEVICE_READY => {
                            for p in self.ports.clone() {
                                self.control(p, event::DEVICE_ADD, 1, &[]);
                            }
                        }
                        event::PORT_READY if self.ports.contains(&port) => {
                            self.control(port, event::PORT_NAME, 1, b"org.hvlu.hostlink\0");
                            if self.host_open {
                                self.control(port, event::PORT_OPEN, 1, &[]);
                            }
                        }
                        event::PORT_OPEN => self.guest_open = value != 0,
                        _ => {}
                    }
                }
            }
            5 if !self.deaf => {
                while let Some((id, addr, len, flags)) = self.pop(5) {
                    assert_eq!(flags & 2, 0, "output the device may write");
                    if self.host_open {
                        let o = self.at(addr, u64::from(len));
                        let bytes = self.mem[o..o + len as usize].to_vec();
                        self.to_host.extend_from_slice(&bytes);
                    }
                    self.push(5, u32::from(id), 0);
                }
            }
            _ => {}
        }
    }

    /// The host sends `bytes`; returns how many the port took.
    fn host_send(&mut self, bytes: &[u8]) -> usize {
        if !self.guest_open {
            return 0;
        }
        let mut sent = 0;
        while sent < bytes.len() {
            let Some((id, addr, len, flags)) = self.pop(4) else {
                break;
            };
            assert_eq!(flags & 2, 2, "a receive buffer the device cannot write");
            let k = (bytes.len() - sent).min(len as usize);
            self.put(addr, &bytes[sent..sent + k]);
            let id = self.forge_id.take().unwrap_or(u32::from(id));
            self.push(4, id, k as u32);
            sent += k;
        }
        sent
    }

    /// The host connects (true) or goes away.
    fn host(&mut self, open: bool) {
        self.host_open = open;
        if self.guest_open {
            self.control(PORT, event::PORT_OPEN, u16::from(open), &[]);
        }
    }

    /// The host reads again: the output held back goes out.
    fn hear(&mut self) {
        self.deaf = false;
        self.notify(5);
    }
}

/// Makes a simulated device wrong in one way.
type Make = fn(&mut Device);

#[derive(Clone, Debug)]
struct Sim(Rc<RefCell<Device>>);

impl Sim {
    fn new() -> Sim {
        Sim(Rc::new(RefCell::new(Device::new())))
    }

    fn dev(&self) -> std::cell::RefMut<'_, Device> {
        self.0.borrow_mut()
    }
}

impl Transport for Sim {
    fn read_reg(&mut self, r: u32) -> u32 {
        let d = self.0.borrow();
        let q = d.queues.get(d.sel).copied().unwrap_or_default();
        match r {
            reg::MAGIC => d.magic,
            reg::VERSION => d.version,
            reg::DEVICE_ID => d.device_id,
            reg::DEVICE_FEATURES => (d.offered >> (32 * d.device_sel)) as u32,
            reg::QUEUE_NUM_MAX => q.max,
            reg::QUEUE_READY => u32::from(q.ready),
            reg::STATUS => d.status,
            r if r == reg::CONFIG + 4 => d.max_ports,
            r => panic!("the driver read register {r:#x}"),
        }
    }

    fn write_reg(&mut self, r: u32, value: u32) {
        let mut d = self.0.borrow_mut();
        let sel = d.sel;
        match r {
            reg::DEVICE_FEATURES_SEL => d.device_sel = value,
            reg::DRIVER_FEATURES_SEL => d.driver_sel = value,
            reg::DRIVER_FEATURES => {
                let shift = 32 * d.driver_sel;
                d.driver_features &= !(0xffff_ffffu64 << shift);
                d.driver_features |= u64::from(value) << shift;
            }
            reg::STATUS if value == 0 => d.reset(),
            reg::STATUS => {
                let mut value = value;
                if value & STATUS_FEATURES_OK != 0
                    && (!d.accepts || d.driver_features & !d.offered != 0)
                {
                    value &= !STATUS_FEATURES_OK;
                }
                d.status = value;
            }
            reg::QUEUE_SEL => d.sel = value as usize,
            reg::QUEUE_NUM => {
                assert!(value <= d.queues[sel].max && value.is_power_of_two());
                d.queues[sel].num = value;
            }
            reg::QUEUE_READY => d.queues[sel].ready = value == 1,
            reg::QUEUE_NOTIFY => d.notify(value as usize),
            r => {
                let q = &mut d.queues[sel];
                let (field, high) = match r {
                    0x80 | 0x84 => (&mut q.desc, r == 0x84),
                    0x90 | 0x94 => (&mut q.driver, r == 0x94),
                    0xa0 | 0xa4 => (&mut q.device, r == 0xa4),
                    r => panic!("the driver wrote {value:#x} to register {r:#x}"),
                };
                let shift = if high { 32 } else { 0 };
                *field = (*field & !(0xffff_ffffu64 << shift)) | u64::from(value) << shift;
            }
        }
    }
}

impl SharedMemory for Sim {
    fn bus_address(&self) -> u64 {
        BUS
    }

    fn read_u16(&self, offset: usize) -> u16 {
        assert_eq!(offset % 2, 0);
        let m = &self.0.borrow().mem;
        u16::from_le_bytes([m[offset], m[offset + 1]])
    }

    fn read_u32(&self, offset: usize) -> u32 {
        assert_eq!(offset % 4, 0);
        let m = &self.0.borrow().mem;
        u32::from_le_bytes(m[offset..offset + 4].try_into().unwrap())
    }

    fn write_u16(&mut self, offset: usize, value: u16) {
        assert_eq!(offset % 2, 0);
        self.write(offset, &value.to_le_bytes());
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        assert_eq!(offset % 4, 0);
        self.write(offset, &value.to_le_bytes());
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        assert_eq!(offset % 8, 0);
        self.write(offset, &value.to_le_bytes());
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow().mem[offset..offset + buf.len()]);
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        self.0.borrow_mut().mem[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

fn open(sim: &Sim) -> SerialPort<Sim, Sim> {
    SerialPort::open(sim.clone(), sim.clone()).unwrap_or_else(|e| panic!("{e}"))
}

fn refusal(sim: &Sim) -> InitError {
    match SerialPort::open(sim.clone(), sim.clone()) {
        Ok(_) => panic!("the port opened"),
        Err(e) => e,
    }
}

/// Bytes that differ from their neighbours and from any other run's.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Reads everything waiting, `chunk` bytes at most per call.
fn drain(port: &mut SerialPort<Sim, Sim>, chunk: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0; chunk];
    loop {
        let n = port.read(&mut buf).unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn the_layout_fits_its_area_and_keeps_the_alignments_of_the_rings() {
    let layouts = [CONTROL_RX, CONTROL_TX, PORT_RX, PORT_TX];
    for l in layouts {
        assert_eq!(l.rings % 16, 0, "{l:?}");
        assert_eq!((l.rings + DESC_BYTES) % 2, 0);
        assert_eq!((l.rings + USED_AT) % 4, 0);
        assert!(l.buffers + QUEUE_SIZE as usize * l.buffer as usize <= AREA_BYTES);
    }
    // No two queues' rings or buffers overlap.
    let mut spans: Vec<(usize, usize)> = layouts
        .iter()
        .flat_map(|l| {
            [
                (l.rings, l.rings + RING_SLOT),
                (
                    l.buffers,
                    l.buffers + QUEUE_SIZE as usize * l.buffer as usize,
                ),
            ]
        })
        .collect();
    spans.sort_unstable();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
    assert_eq!(PORT_RX.buffers % 4096, 0);
}

#[test]
fn the_port_opens_with_the_handshake_of_the_spec_and_nothing_more() {
    let sim = Sim::new();
    let mut port = open(&sim);
    let d = sim.dev();
    assert_eq!(
        d.status,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK
    );
    assert_eq!(d.driver_features, VERSION_1 | MULTIPORT);
    assert_eq!(
        d.from_driver,
        [
            (0, event::DEVICE_READY, 1),
            (PORT, event::PORT_READY, 1),
            (PORT, event::PORT_OPEN, 1),
        ]
    );
    assert!(d.guest_open);
    for q in [2, 3, 4, 5] {
        assert!(d.queues[q].ready, "queue {q}");
        assert_eq!(d.queues[q].num, u32::from(QUEUE_SIZE));
        assert_eq!(d.queues[q].desc >> 32, BUS >> 32, "queue {q}'s high half");
    }
    assert!(
        !d.queues[0].ready && !d.queues[1].ready,
        "port 0 is not used"
    );
    assert_eq!(d.dropped, 0);
    drop(d);
    assert!(port.host_open());
    assert_eq!(port.take_events(), []);
}

#[test]
fn bytes_cross_both_ways_in_order_whatever_the_reads_cut() {
    let sim = Sim::new();
    let mut port = open(&sim);
    let data = pattern(100_000, 1);
    let mut got = Vec::new();
    let mut sent = 0;
    // Reads of every size, some shorter than a buffer, some longer than
    // all of them: a buffer read part way is finished by the next read.
    for (i, chunk) in [1, 7, 4096, 5000, 64 * 1024, 100, 3]
        .iter()
        .cycle()
        .enumerate()
    {
        if got.len() == data.len() {
            break;
        }
        sent += sim.dev().host_send(&data[sent..]);
        let mut buf = vec![0; *chunk];
        let n = port.read(&mut buf).unwrap();
        assert!(n > 0 || sent == got.len(), "round {i}: nothing read");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);

    let out = pattern(3000, 2);
    let mut n = 0;
    while n < out.len() {
        n += port.write(&out[n..]).unwrap();
    }
    assert_eq!(sim.dev().to_host, out);
}

#[test]
fn a_full_receive_queue_holds_the_host_back_and_loses_nothing() {
    let sim = Sim::new();
    let mut port = open(&sim);
    let data = pattern(200_000, 3);
    // Nobody reads: the port takes what its buffers hold, no more.
    let first = sim.dev().host_send(&data);
    assert_eq!(first, QUEUE_SIZE as usize * RX_BUFFER as usize);
    assert_eq!(sim.dev().host_send(&data[first..]), 0);
    let mut got = drain(&mut port, 10_000);
    assert_eq!(got, data[..first]);
    let mut sent = first;
    while sent < data.len() {
        sent += sim.dev().host_send(&data[sent..]);
        got.extend(drain(&mut port, 10_000));
    }
    assert_eq!(got, data);
}

#[test]
fn the_rings_indices_wrap_without_losing_a_byte() {
    let sim = Sim::new();
    let mut port = open(&sim);
    // 70 000 buffers each way: past the 16-bit indices' wrap.
    let mut buf = [0u8; 16];
    for i in 0..70_000u32 {
        let msg = i.to_le_bytes();
        assert_eq!(sim.dev().host_send(&msg), 4);
        assert_eq!(port.read(&mut buf).unwrap(), 4);
        assert_eq!(buf[..4], msg);
        assert_eq!(port.write(&msg).unwrap(), 4);
    }
    let to_host = &sim.dev().to_host;
    assert_eq!(to_host.len(), 4 * 70_000);
    assert!(to_host
        .chunks(4)
        .enumerate()
        .all(|(i, c)| c == (i as u32).to_le_bytes()));
}

#[test]
fn a_host_that_does_not_read_gets_the_transmit_buffers_and_no_more() {
    let sim = Sim::new();
    let mut port = open(&sim);
    sim.dev().deaf = true;
    let out = pattern(20_000, 4);
    let mut n = 0;
    loop {
        let k = port.write(&out[n..]).unwrap();
        if k == 0 {
            break;
        }
        n += k;
    }
    assert_eq!(n, QUEUE_SIZE as usize * TX_BUFFER as usize);
    assert!(sim.dev().to_host.is_empty());
    // Reading goes on meanwhile.
    assert_eq!(sim.dev().host_send(b"still here"), 10);
    assert_eq!(drain(&mut port, 64), b"still here");
    sim.dev().hear();
    while n < out.len() {
        n += port.write(&out[n..]).unwrap();
    }
    assert_eq!(sim.dev().to_host, out);
}

#[test]
fn output_while_no_host_is_connected_is_taken_and_goes_nowhere() {
    let sim = Sim::new();
    sim.dev().host_open = false;
    let mut port = open(&sim);
    assert!(!port.host_open());
    assert_eq!(port.write(&[1; 10_000]).unwrap(), 4096);
    assert_eq!(port.write(&[1; 10_000]).unwrap(), 4096);
    assert!(sim.dev().to_host.is_empty());
    sim.dev().host(true);
    assert_eq!(port.write(b"hello").unwrap(), 5);
    assert_eq!(sim.dev().to_host, b"hello");
    assert!(port.host_open());
    sim.dev().host(false);
    assert_eq!(port.read(&mut [0; 4]).unwrap(), 0);
    assert_eq!(port.take_events(), [Event::Host(true), Event::Host(false)]);
}

#[test]
fn a_reset_port_reopens_and_the_host_loses_nothing_meanwhile() {
    let sim = Sim::new();
    let mut port = open(&sim);
    let data = pattern(50_000, 5);
    let taken = sim.dev().host_send(&data[..1000]);
    assert_eq!(drain(&mut port, 4096), data[..taken]);
    // A live update: the outgoing image resets, the incoming one opens
    // the same device again, with its rings where they happen to be.
    port.reset();
    assert_eq!(sim.dev().status, 0);
    assert_eq!(sim.dev().host_send(&data[taken..]), 0, "taken while reset");
    let mut port = open(&sim);
    let mut got = data[..taken].to_vec();
    let mut sent = taken;
    while sent < data.len() {
        sent += sim.dev().host_send(&data[sent..]);
        got.extend(drain(&mut port, 4096));
    }
    assert_eq!(got, data);
}

#[test]
fn what_is_not_a_modern_console_is_refused_untouched() {
    let cases: [(Make, InitError); 5] = [
        (|d| d.magic = 0, InitError::NotVirtio(0)),
        (|d| d.version = 1, InitError::Legacy),
        (|d| d.version = 3, InitError::Version(3)),
        (|d| d.device_id = 0, InitError::NoDevice),
        (|d| d.device_id = 2, InitError::NotConsole(2)),
    ];
    for (make, want) in cases {
        let sim = Sim::new();
        make(&mut sim.dev());
        sim.dev().status = 0x55;
        assert_eq!(refusal(&sim), want);
        // Not driven at all: the status is as it was.
        assert_eq!(sim.dev().status, 0x55, "{want}");
    }
    assert!(InitError::Legacy
        .to_string()
        .contains("-global virtio-mmio.force-legacy=false"));
}

#[test]
fn a_console_the_link_cannot_use_is_refused_and_reset() {
    let cases: [(Make, InitError); 6] = [
        (
            |d| d.offered = VERSION_1,
            InitError::Features { offered: VERSION_1 },
        ),
        (
            |d| d.offered = MULTIPORT,
            InitError::Features { offered: MULTIPORT },
        ),
        (|d| d.accepts = false, InitError::FeaturesRefused),
        (|d| d.max_ports = 1, InitError::TooFewPorts(1)),
        (
            |d| d.queues[4].max = 4,
            InitError::QueueTooSmall { queue: 4, max: 4 },
        ),
        (|d| d.ports = vec![2], InitError::NoPort),
    ];
    for (make, want) in cases {
        let sim = Sim::new();
        make(&mut sim.dev());
        assert_eq!(refusal(&sim), want);
        let d = sim.dev();
        assert_eq!(d.status, 0, "{want}: not reset");
        assert!(
            d.queues.iter().all(|q| !q.ready),
            "{want}: a queue left ready"
        );
    }
    assert!(InitError::NoPort
        .to_string()
        .contains("virtserialport,nr=1"));
}

/// A device whose reset leaves queue 2 ready.
struct Sticky(Sim);

impl Transport for Sticky {
    fn read_reg(&mut self, r: u32) -> u32 {
        let sel = self.0.dev().sel;
        if r == reg::QUEUE_READY && sel == 2 {
            return 1;
        }
        self.0.read_reg(r)
    }

    fn write_reg(&mut self, r: u32, v: u32) {
        self.0.write_reg(r, v)
    }
}

#[test]
fn a_queue_still_in_use_after_the_reset_is_refused() {
    let sim = Sim::new();
    match SerialPort::open(Sticky(sim.clone()), sim.clone()) {
        Err(e) => assert_eq!(e, InitError::QueueInUse(2)),
        Ok(_) => panic!("the port opened"),
    }
    assert_eq!(sim.dev().status, 0);
}

#[test]
fn a_device_that_returns_a_buffer_it_was_not_given_is_caught() {
    let sim = Sim::new();
    let mut port = open(&sim);
    // Buffer 9 does not exist; buffer 3 is given back twice below.
    sim.dev().forge_id = Some(9);
    sim.dev().host_send(b"x");
    assert_eq!(
        port.read(&mut [0; 8]),
        Err(DeviceError::NotHeld { queue: 4, id: 9 })
    );

    let sim = Sim::new();
    let mut port = open(&sim);
    assert_eq!(sim.dev().host_send(&[7; 4096 * 3]), 4096 * 3);
    // A completion claiming more bytes than its buffer holds.
    {
        let mut d = sim.dev();
        let device = d.queues[4].device;
        let used = d.queues[4].used;
        let slot = u64::from(used.wrapping_sub(1) % 8);
        d.put(device + 4 + 8 * slot + 4, &5000u32.to_le_bytes());
    }
    let mut buf = vec![0; 3 * 4096];
    assert_eq!(
        port.read(&mut buf),
        Err(DeviceError::Overlong {
            queue: 4,
            len: 5000,
            buffer: RX_BUFFER
        })
    );

    let sim = Sim::new();
    let mut port = open(&sim);
    // A used index that runs ahead of every descriptor.
    {
        let mut d = sim.dev();
        let device = d.queues[4].device;
        d.put(device + 2, &9u16.to_le_bytes());
    }
    assert_eq!(
        port.read(&mut [0; 8]),
        Err(DeviceError::UsedJump { queue: 4, by: 9 })
    );
}

#[test]
fn a_transport_is_identified_by_reading_alone() {
    let sim = Sim::new();
    let mut t = sim.clone();
    assert_eq!(
        identify(&mut t),
        Found::Device {
            id: CONSOLE_DEVICE_ID,
            version: 2
        }
    );
    sim.dev().device_id = 0;
    assert_eq!(identify(&mut t), Found::Empty);
    sim.dev().magic = 0xffff_ffff;
    assert_eq!(identify(&mut t), Found::NotVirtio(0xffff_ffff));
    assert_eq!(sim.dev().status, 0);
}
