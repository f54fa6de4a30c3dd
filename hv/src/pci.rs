//! PCI devices: the walk of a configuration space, and what the hypervisor
//! records of each device it finds.
//!
//! [`scan`] reads configuration space through the [`ConfigSpace`] trait:
//! the hypervisor's is ECAM (`arch::pci`), the host tests' a simulated bus
//! (`pci/tests.rs`). It visits bus 0 and the bus behind each bridge it
//! finds (its secondary bus number, within the ECAM window), every device
//! on those and, for a multi-function device, every function; of each
//! function that answers it records the vendor, the device, the class and
//! the base address registers (BARs) of a header of type 0 (six BARs) or 1
//! (a bridge: two).
//!
//! Two ways to run it, by how this hypervisor came up ([`Mode`]):
//! - a **cold boot** owns the machine and nothing runs on the devices yet
//!   ([`Mode::Assign`]): it sizes every BAR (all-ones written with the
//!   function's decoding off, the original value written back), keeps a
//!   memory BAR that firmware already placed somewhere valid, places every
//!   other one in the 32-bit MMIO window, aligned to its size, largest
//!   first, and turns memory decoding on;
//! - a **live-update boot** finds devices that guests may be driving
//!   ([`Mode::Keep`]): it writes nothing at all — an update must never move
//!   a device under a guest. It reads each BAR's base and type as they are
//!   and takes the BAR's size from what the previous hypervisor recorded
//!   (sizing would mean writing the BAR).
//!
//! Device memory is whole frames: a memory BAR smaller than a page is
//! placed, recorded and granted as one page of its own, so that granting a
//! BAR to a domain never grants part of another device.
//!
//! No memory BAR may overlap RAM (the live-update region, and everything the
//! boot allocator handed out, are in RAM), a range the caller says to avoid
//! or another BAR: on a cold boot such a BAR is placed anew; on an update it
//! is left out, with a note. A function whose memory BAR finds no room keeps
//! its memory decoding off and is recorded without memory BARs.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hvlu_types::{Mfn, MfnRange, PhysRange, PAGE_SIZE};

/// Offset of the vendor id (bits 0..16) and device id (16..32).
const ID: u16 = 0x00;
/// Offset of the command register (bits 0..16; the status register above
/// it has write-one-to-clear bits, so the hypervisor writes 0 there).
const COMMAND: u16 = 0x04;
/// Offset of the revision (0..8), programming interface (8..16), subclass
/// (16..24) and base class (24..32).
const CLASS: u16 = 0x08;
/// Offset of the header type (bits 16..24; bit 23 is "multi-function").
const HEADER: u16 = 0x0c;
/// A bridge's (type 1 header's) bus numbers: primary, secondary and
/// subordinate, one byte each from the lowest.
const BUS_NUMBERS: u16 = 0x18;
/// The end of physical address space the handover state allows (2^52).
const MAX_PHYS: u64 = 1 << 52;
/// Offset of BAR 0; BAR `i` is at `BAR0 + 4 * i`.
const BAR0: u16 = 0x10;

/// Command register: the function answers I/O port accesses.
pub const COMMAND_IO: u32 = 1 << 0;
/// Command register: the function answers memory accesses.
pub const COMMAND_MEMORY: u32 = 1 << 1;

/// Devices on one bus.
pub const DEVICES_PER_BUS: u8 = 32;
/// Functions of one device.
pub const FUNCTIONS: u8 = 8;
/// Bytes of configuration space of one function in ECAM.
pub const ECAM_FUNCTION_BYTES: u64 = 4096;
/// Bytes of ECAM one bus takes (32 devices of 8 functions).
pub const ECAM_BUS_BYTES: u64 = DEVICES_PER_BUS as u64 * FUNCTIONS as u64 * ECAM_FUNCTION_BYTES;

/// A function's address: bus, device (0..32) and function (0..8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// The bus.
    pub bus: u8,
    /// The device on the bus, below [`DEVICES_PER_BUS`].
    pub device: u8,
    /// The function of the device, below [`FUNCTIONS`].
    pub function: u8,
}

impl Bdf {
    /// Bus `bus`, device `device`, function `function` (the device and the
    /// function are cut to their 5 and 3 bits).
    pub const fn new(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            bus,
            device: device & 31,
            function: function & 7,
        }
    }

    /// The function's configuration space within ECAM: bus << 20 | device
    /// << 15 | function << 12.
    pub const fn ecam_offset(self) -> u64 {
        (self.bus as u64) << 20 | (self.device as u64) << 15 | (self.function as u64) << 12
    }

    /// The 16-bit form: bus << 8 | device << 3 | function.
    pub const fn packed(self) -> u16 {
        (self.bus as u16) << 8 | (self.device as u16) << 3 | self.function as u16
    }

    /// The address of a 16-bit form ([`Bdf::packed`]).
    pub const fn from_packed(v: u16) -> Bdf {
        Bdf::new((v >> 8) as u8, (v >> 3) as u8, v as u8)
    }
}

impl fmt::Display for Bdf {
    /// `00:01.0`: bus and device in hex, function in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// How configuration space is reached.
pub trait ConfigSpace {
    /// The 32-bit register at `offset` (a multiple of 4 below 4096) of
    /// function `f`; all-ones (or 0, from memory nothing answers) for a
    /// function that does not exist.
    fn read(&mut self, f: Bdf, offset: u16) -> u32;
    /// Writes the 32-bit register at `offset` of function `f`.
    fn write(&mut self, f: Bdf, offset: u16, value: u32);
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarKind {
    /// Memory below 4 GiB (one register).
    Memory32,
    /// Memory anywhere (two registers: this one and the next).
    Memory64,
    /// I/O ports.
    Io,
}

/// One base address register, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bar {
    /// Its index, 0..6 (a 64-bit BAR takes this index and the next).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Whether memory behind it is prefetchable (memory BARs).
    pub prefetchable: bool,
    /// Its base address (a port number for an I/O BAR).
    pub base: u64,
    /// Bytes it decodes: for a memory BAR, whole pages (at least one; a
    /// smaller BAR is given a page of its own). 0 for an I/O BAR whose size
    /// a live-update boot cannot know.
    pub size: u64,
}

impl Bar {
    /// Whether it decodes memory.
    pub fn is_memory(&self) -> bool {
        matches!(self.kind, BarKind::Memory32 | BarKind::Memory64)
    }

    /// The frames a memory BAR takes; `None` for an I/O BAR.
    pub fn frames(&self) -> Option<MfnRange> {
        self.is_memory()
            .then(|| MfnRange::new(Mfn(self.base / PAGE_SIZE), self.size.div_ceil(PAGE_SIZE)))
    }
}

/// A size as text: `1M`, `4K`, `2G` when it is a whole number of them,
/// else bytes.
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
            if n >= 1 << shift && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl fmt::Display for Bar {
    /// `bar0 0xc0000000+1M`, with ` 64-bit`, ` prefetchable`; `bar4 io
    /// 0xc000+32` (`+?` when the size is not known).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bar{}", self.index)?;
        if self.kind == BarKind::Io {
            f.write_str(" io")?;
        }
        write!(f, " {:#x}+", self.base)?;
        if self.size == 0 {
            f.write_str("?")?;
        } else {
            write!(f, "{}", Size(self.size))?;
        }
        if self.kind == BarKind::Memory64 {
            f.write_str(" 64-bit")?;
        }
        if self.prefetchable {
            f.write_str(" prefetchable")?;
        }
        Ok(())
    }
}

/// One function found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Where it is.
    pub bdf: Bdf,
    /// Its vendor id.
    pub vendor: u16,
    /// Its device id.
    pub device: u16,
    /// Its base class (high byte) and subclass (low byte).
    pub class: u16,
    /// Its header type (bit 7, multi-function, cleared).
    pub header: u8,
    /// Its BARs that decode something, by index.
    pub bars: Vec<Bar>,
}

impl fmt::Display for Device {
    /// `00:01.0 1234:11e8 class 00ff bar0 0xc0000000+1M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x} class {:04x}",
            self.bdf, self.vendor, self.device, self.class
        )?;
        for bar in &self.bars {
            write!(f, " {bar}")?;
        }
        Ok(())
    }
}

/// The frames of every memory BAR of `devices`, sorted by frame (BARs never
/// overlap, so the ranges are disjoint): the machine's device memory, one
/// range per BAR.
pub fn memory_frames(devices: &[Device]) -> Vec<MfnRange> {
    let mut frames: Vec<MfnRange> = devices
        .iter()
        .flat_map(|d| d.bars.iter().filter_map(Bar::frames))
        .collect();
    frames.sort_unstable();
    frames
}

/// The memory BAR whose frames hold all of `range`, if one does: what
/// "device memory" means to the hypervisor's I/O memory permission.
pub fn bar_holding(devices: &[Device], range: MfnRange) -> Option<(&Device, &Bar)> {
    devices.iter().find_map(|d| {
        d.bars
            .iter()
            .find(|b| {
                b.frames().is_some_and(|f| {
                    !range.is_empty() && f.start.0 <= range.start.0 && range.end() <= f.end()
                })
            })
            .map(|b| (d, b))
    })
}

/// How [`scan`] treats what it finds.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'a> {
    /// A cold boot: size every BAR; keep a memory BAR already placed
    /// somewhere valid, place every other one in `window` (a 32-bit MMIO
    /// window), aligned to its size; turn memory decoding on.
    Assign {
        /// Where memory BARs are placed.
        window: PhysRange,
    },
    /// A live-update boot, or a rescan: move nothing; a memory BAR's size
    /// is the length of the range of `known` that starts at its base (what
    /// the previous hypervisor recorded, one range per BAR).
    Keep {
        /// Recorded BARs, as frames.
        known: &'a [MfnRange],
        /// Nothing can reach the devices now (the incoming side of an
        /// update, before it resumes a guest): a memory BAR that decodes
        /// but was not recorded — after an update through a release that
        /// did not know PCI — is sized, its decoding off for the few
        /// writes that takes and then restored as it was. Otherwise such a
        /// BAR is left out: sizing writes the BAR, which a guest driving
        /// the device would see.
        size_unknown: bool,
    },
}

/// Why [`scan`] found nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Function 00:00.0 (the host bridge) does not answer: there is no PCI
    /// behind this configuration space.
    #[error("no host bridge answers at 00:00.0")]
    NoHostBridge,
}

/// What [`scan`] found, and what it has to say about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every function that answered, by address.
    pub devices: Vec<Device>,
    /// Everything left out or left alone, and why, one line each.
    pub notes: Vec<String>,
}

/// A function found, before placement.
struct Found {
    device: Device,
    /// Its command register as found.
    command: u32,
    /// Memory BARs still to be placed (cold boot).
    unplaced: Vec<Bar>,
    /// A memory BAR found no room: memory decoding stays off.
    broken: bool,
}

fn absent(id: u32) -> bool {
    let vendor = id & 0xffff;
    vendor == 0xffff || vendor == 0
}

/// Walks bus 0 of `cfg` and the buses behind its bridges, below `buses`,
/// and records every function (module
/// docs); on a cold boot ([`Mode::Assign`]) places the memory BARs and
/// turns memory decoding on. No memory BAR may overlap `avoid` (RAM, and
/// whatever else the caller knows is not free address space).
pub fn scan(
    cfg: &mut impl ConfigSpace,
    buses: u16,
    mode: Mode<'_>,
    avoid: &[PhysRange],
) -> Result<Scan, ScanError> {
    if absent(cfg.read(Bdf::default(), ID)) {
        return Err(ScanError::NoHostBridge);
    }
    let mut notes = Vec::new();
    let mut found: Vec<Found> = Vec::new();
    // Bus 0, then the bus behind each bridge found (its secondary bus
    // number, as whoever configured the bridge set it): not every bus the
    // window covers, which would cost 256 × 32 reads for nothing, inside
    // the blackout on an update.
    let buses = buses.min(256);
    let mut pending: Vec<u16> = alloc::vec![0];
    let mut walked = [false; 256];
    while let Some(bus) = pending.pop() {
        if bus >= buses || walked[usize::from(bus)] {
            continue;
        }
        walked[usize::from(bus)] = true;
        for dev in 0..DEVICES_PER_BUS {
            let first = Bdf::new(bus as u8, dev, 0);
            if absent(cfg.read(first, ID)) {
                continue;
            }
            let multi = (cfg.read(first, HEADER) >> 16) & 0x80 != 0;
            let functions = if multi { FUNCTIONS } else { 1 };
            for func in 0..functions {
                let bdf = Bdf::new(bus as u8, dev, func);
                let id = cfg.read(bdf, ID);
                if absent(id) {
                    continue;
                }
                let f = probe(cfg, bdf, id, mode, &mut notes);
                if f.device.header == 1 {
                    let secondary = (cfg.read(bdf, BUS_NUMBERS) >> 8) & 0xff;
                    if secondary != 0 {
                        pending.push(secondary as u16);
                    }
                }
                found.push(f);
            }
        }
    }
    found.sort_by_key(|f| f.device.bdf);
    match mode {
        Mode::Assign { window } => assign(cfg, &mut found, window, avoid, &mut notes),
        Mode::Keep { known, .. } => keep(&mut found, known, avoid, &mut notes),
    }
    Ok(Scan {
        devices: found.into_iter().map(|f| f.device).collect(),
        notes,
    })
}

/// Reads one function: identity, class, header and BARs (sized on a cold
/// boot, with its decoding off until [`assign`] is done).
fn probe(
    cfg: &mut impl ConfigSpace,
    bdf: Bdf,
    id: u32,
    mode: Mode<'_>,
    notes: &mut Vec<String>,
) -> Found {
    let header = ((cfg.read(bdf, HEADER) >> 16) & 0x7f) as u8;
    let command = cfg.read(bdf, COMMAND) & 0xffff;
    let slots: u8 = match header {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let mut device = Device {
        bdf,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: (cfg.read(bdf, CLASS) >> 16) as u16,
        header,
        bars: Vec::new(),
    };
    if header == 1 {
        notes.push(format!(
            "{bdf} is a PCI bridge: devices behind it are not configured"
        ));
    } else if header > 1 {
        notes.push(format!(
            "{bdf} has header type {header:#x}: its BARs are not read"
        ));
    }
    let assign = matches!(mode, Mode::Assign { .. });
    if assign && slots > 0 {
        // No decoding while the BARs read as sizes.
        cfg.write(bdf, COMMAND, command & !(COMMAND_IO | COMMAND_MEMORY));
    }
    let mut unplaced = Vec::new();
    let mut i = 0;
    while i < slots {
        let at = BAR0 + 4 * u16::from(i);
        let low = cfg.read(bdf, at);
        let is_io = low & 1 != 0;
        let is_64 = !is_io && (low >> 1) & 3 == 2;
        if is_64 && i + 1 >= slots {
            notes.push(format!(
                "{bdf} bar{i} is 64-bit but is its header's last BAR: left out"
            ));
            break;
        }
        let high = if is_64 { cfg.read(bdf, at + 4) } else { 0 };
        let base = if is_io {
            u64::from(low & !0x3)
        } else {
            u64::from(high) << 32 | u64::from(low & !0xf)
        };
        let size = match mode {
            Mode::Assign { .. } => sized(cfg, bdf, at, low, high, is_io, is_64),
            Mode::Keep {
                known,
                size_unknown: true,
            } if !is_io && base != 0 && recorded(known, base).is_none() => {
                cfg.write(bdf, COMMAND, command & !(COMMAND_IO | COMMAND_MEMORY));
                let size = sized(cfg, bdf, at, low, high, is_io, is_64);
                cfg.write(bdf, COMMAND, command);
                if let Some(size) = size {
                    notes.push(format!(
                        "{bdf} bar{i} at {base:#x} was not recorded: sized ({}) while nothing \
                         runs, its decoding restored",
                        Size(size)
                    ));
                }
                size
            }
            Mode::Keep { .. } => None,
        };
        let kind = match (is_io, is_64) {
            (true, _) => BarKind::Io,
            (false, true) => BarKind::Memory64,
            (false, false) => BarKind::Memory32,
        };
        let bar = Bar {
            index: i,
            kind,
            prefetchable: !is_io && low & 0x8 != 0,
            base,
            size: size.unwrap_or(0),
        };
        i += if is_64 { 2 } else { 1 };
        match (assign, size) {
            // Sized to nothing: the BAR is not implemented.
            (true, None) => {}
            // Without sizing, a register that reads 0 is a BAR not
            // implemented or one never assigned: either way, nothing
            // decodes there.
            (false, _) if low == 0 && high == 0 => {}
            (true, Some(_)) if bar.is_memory() => unplaced.push(bar),
            _ => device.bars.push(bar),
        }
    }
    Found {
        device,
        command,
        unplaced,
        broken: false,
    }
}

/// The size a BAR reads as after all-ones are written to it (and to its
/// upper half if 64-bit), its original value written back; `None` for a
/// BAR that implements no address bit. A memory BAR's size is rounded up
/// to a page.
fn sized(
    cfg: &mut impl ConfigSpace,
    bdf: Bdf,
    at: u16,
    low: u32,
    high: u32,
    is_io: bool,
    is_64: bool,
) -> Option<u64> {
    cfg.write(bdf, at, u32::MAX);
    let low_mask = cfg.read(bdf, at);
    cfg.write(bdf, at, low);
    let high_mask = if is_64 {
        cfg.write(bdf, at + 4, u32::MAX);
        let m = cfg.read(bdf, at + 4);
        cfg.write(bdf, at + 4, high);
        m
    } else {
        0
    };
    let mask = if is_io {
        // Ports: only the low 16 bits mean anything.
        u64::from(low_mask & 0xffff & !0x3)
    } else {
        u64::from(high_mask) << 32 | u64::from(low_mask & !0xf)
    };
    if mask == 0 {
        return None;
    }
    let size = 1u64 << mask.trailing_zeros();
    Some(if is_io { size } else { size.max(PAGE_SIZE) })
}

/// The first address at or above `from` that is a multiple of `align` (a
/// power of two), if it fits.
fn align_up(from: u64, align: u64) -> Option<u64> {
    from.checked_add(align - 1).map(|a| a & !(align - 1))
}

/// The lowest address in `window`, aligned to `size` (a power of two), where
/// `size` bytes overlap none of `taken`.
fn room(size: u64, window: PhysRange, taken: &[PhysRange]) -> Option<u64> {
    let mut at = align_up(window.start, size)?;
    loop {
        let want = PhysRange::new(at, size);
        if want.checked_end()? > window.end() {
            return None;
        }
        match taken
            .iter()
            .filter(|t| t.overlaps(want))
            .map(|t| t.end())
            .max()
        {
            None => return Some(at),
            Some(end) => at = align_up(end, size)?,
        }
    }
}

/// A cold boot's placement: keeps the memory BARs already at a valid place
/// (aligned to their size, clear of `avoid` and of each other), places the
/// rest in `window`, largest first, writes the bases and turns each
/// function's memory decoding on — or leaves it off for a function one of
/// whose memory BARs found no room.
fn assign(
    cfg: &mut impl ConfigSpace,
    found: &mut [Found],
    window: PhysRange,
    avoid: &[PhysRange],
    notes: &mut Vec<String>,
) {
    let mut taken: Vec<PhysRange> = avoid.to_vec();
    let mut to_place: Vec<(usize, Bar)> = Vec::new();
    for (n, f) in found.iter_mut().enumerate() {
        for bar in core::mem::take(&mut f.unplaced) {
            let here = PhysRange::new(bar.base, bar.size);
            let valid = bar.base != 0
                && bar.base.is_multiple_of(bar.size)
                && here.checked_end().is_some()
                && !taken.iter().any(|t| t.overlaps(here));
            if valid {
                taken.push(here);
                f.device.bars.push(bar);
            } else {
                to_place.push((n, bar));
            }
        }
    }
    // Largest first, then by address: the fewest holes, the same result
    // every boot.
    to_place
        .sort_by_key(|&(n, bar)| (core::cmp::Reverse(bar.size), found[n].device.bdf, bar.index));
    for (n, mut bar) in to_place {
        let f = &mut found[n];
        match room(bar.size, window, &taken) {
            Some(at) if !f.broken => {
                bar.base = at;
                taken.push(PhysRange::new(at, bar.size));
                f.device.bars.push(bar);
            }
            Some(_) => {}
            None => {
                notes.push(format!(
                    "{} bar{} ({}) finds no room in the window {window}: its memory decoding stays off",
                    f.device.bdf,
                    bar.index,
                    Size(bar.size)
                ));
                f.broken = true;
            }
        }
    }
    for f in found.iter_mut() {
        let bdf = f.device.bdf;
        f.device.bars.sort_by_key(|b| b.index);
        if f.broken {
            f.device.bars.retain(|b| !b.is_memory());
        }
        for bar in f.device.bars.iter().filter(|b| b.is_memory()) {
            let at = BAR0 + 4 * u16::from(bar.index);
            let low = cfg.read(bdf, at);
            cfg.write(bdf, at, (bar.base as u32 & !0xf) | (low & 0xf));
            if bar.kind == BarKind::Memory64 {
                cfg.write(bdf, at + 4, (bar.base >> 32) as u32);
            }
        }
        if matches!(f.device.header, 0 | 1) {
            // Decoding was turned off for sizing: back as it was, memory
            // decoding on if a memory BAR is placed, off if one found no
            // room.
            let command = if f.device.bars.iter().any(Bar::is_memory) {
                f.command | COMMAND_MEMORY
            } else if f.broken {
                f.command & !COMMAND_MEMORY
            } else {
                f.command
            };
            cfg.write(bdf, COMMAND, command);
        }
    }
}

/// An update's reading: a memory BAR is recorded only if it decodes (base
/// not 0, memory decoding on), `known` (what the previous hypervisor
/// recorded) has a range that starts at its base — whose length is its
/// size — and it overlaps neither `avoid` nor another BAR.
/// The range of `known` that starts at memory BAR base `base`.
fn recorded(known: &[MfnRange], base: u64) -> Option<&MfnRange> {
    known
        .iter()
        .find(|r| base.is_multiple_of(PAGE_SIZE) && r.start.0 == base / PAGE_SIZE)
}

fn keep(found: &mut [Found], known: &[MfnRange], avoid: &[PhysRange], notes: &mut Vec<String>) {
    let mut taken: Vec<PhysRange> = avoid.to_vec();
    for f in found.iter_mut() {
        let bdf = f.device.bdf;
        let decoding = f.command & COMMAND_MEMORY != 0;
        let mut kept = Vec::new();
        for mut bar in core::mem::take(&mut f.device.bars) {
            if !bar.is_memory() {
                kept.push(bar);
                continue;
            }
            let i = bar.index;
            // Recorded, or sized while nothing ran (`Mode::Keep`).
            let size = recorded(known, bar.base)
                .map(|r| r.count * PAGE_SIZE)
                .or((bar.size != 0).then_some(bar.size));
            let why = if bar.base == 0 {
                String::from("is not assigned: left alone")
            } else if !decoding {
                String::from("does not decode (memory decoding is off): left alone")
            } else if let Some(size) = size.filter(|&size| {
                // What the handover state may record of a BAR (docs/abi.md
                // §2.5): aligned to its size, below 2^52. A BAR firmware
                // placed otherwise (one smaller than a page, sized up to
                // one) is not device memory here.
                bar.base.is_multiple_of(size)
                    && bar
                        .base
                        .checked_add(size)
                        .is_some_and(|end| end <= MAX_PHYS)
            }) {
                bar.size = size;
                let here = PhysRange::new(bar.base, bar.size);
                match taken.iter().find(|t| t.overlaps(here)) {
                    None => {
                        taken.push(here);
                        kept.push(bar);
                        continue;
                    }
                    Some(t) => format!(
                        "at {:#x}+{} overlaps {t}, which is not free address space: left out",
                        bar.base,
                        Size(bar.size)
                    ),
                }
            } else if let Some(size) = size {
                format!(
                    "at {:#x}+{} is not aligned to its size or ends past 2^52: left out",
                    bar.base,
                    Size(size)
                )
            } else {
                format!(
                    "at {:#x} was not recorded by the previous hypervisor (its size is unknown \
                     without writing the BAR): left out",
                    bar.base
                )
            };
            notes.push(format!("{bdf} bar{i} {why}"));
        }
        f.device.bars = kept;
    }
}

#[cfg(test)]
mod tests;
