//! The host link: the byte stream between the host and dom0 that images
//! from the host travel on (`cargo xtask live-update`; the framing is
//! `pv_abi::hostlink`'s, dom0's end `guests/dom0/src/hostlink.rs`). dom0
//! reads and writes it through `hostlink_read` and `hostlink_write`
//! (`hypercall::lu`), whatever carries it:
//!
//! - a **virtio-serial port** (`crate::virtio` over `arch::virtio`): port 1
//!   of a virtio console on one of the machine's virtio-mmio transports
//!   (QEMU: `-device virtio-serial-device -device virtserialport,nr=1`,
//!   with `-global virtio-mmio.force-legacy=false`). The host's bytes land
//!   in 4 KiB buffers while dom0 works; a `hostlink_read` takes up to its
//!   whole 64 KiB;
//! - **COM2**, the 16550 at 0x2f8 (`arch::serial`): 16 bytes of FIFO, each
//!   byte a port read — the fallback, and what images before the virtio
//!   link know.
//!
//! The device is chosen when dom0 first uses the link, after a cold boot
//! and after every update alike: the virtio port if the machine has a
//! usable one and the command line does not say `hostlink=uart`, else
//! COM2 if the machine has it. One line says which and why
//! (`(hv) hostlink: …`). A virtio device that breaks the queue protocol
//! later is reset and the link falls back to COM2, said in the log.
//!
//! The device is opened anew by every image: the outgoing image resets it
//! at the jump (`arch::virtio::quiesce`), since its buffers are that
//! image's memory. Bytes the host sends meanwhile wait on the host's side
//! of the port (QEMU takes them only into buffers the driver has given).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use spin::Mutex;

use crate::arch::serial::{self, Uart};
use crate::arch::virtio as hw;
use crate::cmdline::LinkChoice;
use crate::hvprintln;
use crate::virtio::{self, Event, Found, SerialPort};

/// What carries the link.
enum Link {
    /// Not chosen yet.
    Unopened,
    /// The virtio-serial port (boxed: the other variants are empty).
    Virtio(Box<SerialPort<hw::Mmio, hw::Dma>>),
    /// COM2.
    Uart,
    /// Nothing: the machine has neither.
    Absent,
}

static LINK: Mutex<Link> = Mutex::new(Link::Unopened);

/// The virtio-serial port of the first virtio console on the transports,
/// opened; or why there is none.
fn virtio_port() -> Result<SerialPort<hw::Mmio, hw::Dma>, String> {
    let transports = hw::transports().map_err(|state| {
        format!(
            "the virtio-mmio transports at {:#x} are not mapped ({})",
            hw::MMIO_BASE,
            state.reason()
        )
    })?;
    let mut console = None;
    for mut t in transports {
        if let Found::Device {
            id: virtio::CONSOLE_DEVICE_ID,
            ..
        } = virtio::identify(&mut t)
        {
            console = Some(t);
            break;
        }
    }
    let t = console.ok_or_else(|| {
        String::from("the machine has no virtio console (-device virtio-serial-device)")
    })?;
    let base = t.base();
    let dma = hw::dma().ok_or_else(|| String::from("the virtio area is taken"))?;
    SerialPort::open(t, dma).map_err(|e| format!("the virtio console at {base:#x}: {e}"))
}

/// Chooses the link's device (module docs) and says which.
fn open(choice: LinkChoice) -> Link {
    let why = match choice {
        LinkChoice::Uart => String::from("hostlink=uart"),
        LinkChoice::Auto => match virtio_port() {
            Ok(port) => {
                hvprintln!(
                    "hostlink: virtio-serial port {} (virtio console, virtio-mmio), the host {}",
                    virtio::PORT,
                    if port.host_open() {
                        "connected"
                    } else {
                        "not connected"
                    }
                );
                return Link::Virtio(Box::new(port));
            }
            Err(why) => why,
        },
    };
    fallback(&why)
}

/// COM2 if the machine has it, with why it is used; else no link.
fn fallback(why: &str) -> Link {
    if serial::present(Uart::Com2) {
        hvprintln!("hostlink: COM2 (16550 at 0x2f8): {why}");
        Link::Uart
    } else {
        hvprintln!("hostlink: none: {why}, and the machine has no COM2");
        Link::Absent
    }
}

/// The port's news, in the log.
fn say(port: &mut SerialPort<hw::Mmio, hw::Dma>) {
    for e in port.take_events() {
        match e {
            Event::Host(true) => hvprintln!("hostlink: the host connected"),
            Event::Host(false) => hvprintln!("hostlink: the host went away"),
            Event::Removed => hvprintln!("hostlink: the device removed the port"),
        }
    }
}

/// Runs `f` on the link, opened first if it is not yet; a virtio device
/// that fails is reset and replaced by the fallback.
fn with_link(
    choice: LinkChoice,
    f: impl FnOnce(&mut Link) -> Result<usize, virtio::DeviceError>,
) -> usize {
    let mut link = LINK.lock();
    if let Link::Unopened = *link {
        *link = open(choice);
    }
    match f(&mut link) {
        Ok(n) => {
            if let Link::Virtio(port) = &mut *link {
                say(port);
            }
            n
        }
        Err(e) => {
            if let Link::Virtio(port) = &mut *link {
                port.reset();
            }
            *link = fallback(&format!("the virtio console broke the queue protocol ({e}) and was reset"));
            0
        }
    }
}

/// Copies into `out` the bytes the host sent that have arrived, as many
/// as fit; returns how many. Never waits.
pub fn read(choice: LinkChoice, out: &mut [u8]) -> usize {
    with_link(choice, |link| match link {
        Link::Virtio(port) => port.read(out),
        Link::Uart => {
            let mut n = 0;
            while n < out.len() {
                match serial::read_from(Uart::Com2) {
                    Some(b) => out[n] = b,
                    None => break,
                }
                n += 1;
            }
            Ok(n)
        }
        Link::Absent | Link::Unopened => Ok(0),
    })
}

/// Sends the first bytes of `bytes` the device takes now; returns how
/// many (0 while the host does not read). Never waits.
pub fn write(choice: LinkChoice, bytes: &[u8]) -> usize {
    with_link(choice, |link| match link {
        Link::Virtio(port) => port.write(bytes),
        Link::Uart => Ok(serial::try_write_to(Uart::Com2, bytes)),
        Link::Absent | Link::Unopened => Ok(0),
    })
}
