//! The hardware side of the virtio host link (`crate::virtio` is the
//! driver, `crate::hostlink` the link): the virtio-mmio transports'
//! registers, and the area of this image the device reads and writes by
//! DMA.
//!
//! **Transports.** QEMU's microvm has 24 virtio-mmio transports, 512
//! bytes each from [`MMIO_BASE`] (QEMU 7.2, `info mtree`: 0xfeb00000 to
//! 0xfeb02fff; a `-device virtio-…-device` takes the highest free one
//! first). They lie in the 2 MiB page [`WINDOW_BASE`], which
//! `paging::build_and_load` maps uncacheable at its direct-map address
//! beside the local APIC's page and ECAM — no page-table frame more, or
//! not at all (`super::pci::device_window`; then the link falls back to
//! the UART). Nothing else in that page is ever accessed.
//!
//! **The shared area** ([`Dma`]) is `crate::virtio::AREA_BYTES` of the
//! heap, page aligned, allocated when the link is first opened and never
//! freed: physically contiguous like the whole heap (one claimed range of
//! the region, reached through the direct map). Not a static of the
//! image: the image's size counts twice in the live-update region while an
//! update is loaded (the running image and the staged one), the heap's
//! fixed part once. The device writes the area at any time while it runs,
//! so no Rust reference to it ever exists: it is reached through raw
//! pointers only, the ring indices with single aligned volatile accesses.
//!
//! **Across a live update.** The area is this image's heap, which the
//! next image reuses: a device left running would write into it. Every
//! transport this image started (a non-zero status written) is recorded,
//! and [`quiesce`] — called by `kexec::Prepared::jump`, on the way to any
//! image, old or new — resets it first: a reset device holds no buffer
//! and writes nothing (virtio 1.x §2.1, §4.2.3.1). The next image opens it
//! again if it knows how (`docs/design.md`, "The host link";
//! `docs/invariants.md`, Invariant 30).

use core::alloc::Layout;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use handover_abi::entry::DIRECT_MAP_BASE;
use hvlu_types::table_plan::Map;

use super::pci::State;
use crate::virtio::{reg, SharedMemory, Transport, AREA_BYTES};

/// The first transport's registers.
pub const MMIO_BASE: u64 = 0xfeb0_0000;
/// Transports microvm has.
pub const TRANSPORTS: u64 = 24;
/// The 2 MiB page the transports lie in.
pub const WINDOW_BASE: u64 = 0xfea0_0000;
/// Bytes of that page.
const WINDOW_SIZE: u64 = 2 << 20;
const _: () = assert!(
    WINDOW_BASE <= MMIO_BASE
        && MMIO_BASE + TRANSPORTS * reg::WINDOW as u64 <= WINDOW_BASE + WINDOW_SIZE
);

/// Whether the transports are mapped, or why not.
static WINDOW: spin::Mutex<State> = spin::Mutex::new(State::NotBuilt);

/// The base of the transport this image started and has not reset, 0 if
/// none.
static LIVE: AtomicU64 = AtomicU64::new(0);

/// The mapping of the transports' page to add to the hypervisor's plan,
/// or `None` (the reason kept for [`transports`]).
pub(super) fn mmio_map(plan: &[Map]) -> Option<Map> {
    let (state, map) = super::pci::device_window(plan, WINDOW_BASE, WINDOW_SIZE);
    *WINDOW.lock() = state;
    map
}

/// One transport's registers.
#[derive(Debug)]
pub struct Mmio {
    base: u64,
}

/// The machine's transports, in address order, if their page is mapped;
/// else why not.
pub fn transports() -> Result<impl Iterator<Item = Mmio>, State> {
    match *WINDOW.lock() {
        State::Mapped => Ok((0..TRANSPORTS).map(|i| Mmio {
            base: MMIO_BASE + i * u64::from(reg::WINDOW),
        })),
        other => Err(other),
    }
}

impl Mmio {
    /// The physical address of its registers.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The virtual address of register `reg`.
    fn register(&self, reg: u32) -> *mut u32 {
        assert!(
            reg < reg::WINDOW && reg.is_multiple_of(4),
            "virtio-mmio register {reg:#x}"
        );
        (DIRECT_MAP_BASE + self.base + u64::from(reg)) as *mut u32
    }
}

impl Transport for Mmio {
    fn read_reg(&mut self, reg: u32) -> u32 {
        // SAFETY: an `Mmio` is made only by `transports` while the page of
        // the transports is mapped (uncacheable, writable) in the
        // hypervisor's tables, which every address space carries; `base`
        // is one of the transports and `register` keeps the offset inside
        // its 512 bytes, 4-byte aligned. It is device memory, no Rust
        // object: a volatile 32-bit read is the access virtio-mmio defines.
        unsafe { core::ptr::read_volatile(self.register(reg)) }
    }

    fn write_reg(&mut self, reg: u32, value: u32) {
        if reg == reg::STATUS {
            // Recorded before the device can start: `quiesce` must know.
            if value != 0 {
                LIVE.store(self.base, Ordering::SeqCst);
            } else {
                let _ = LIVE.compare_exchange(self.base, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        // SAFETY: as in `read_reg`; a 32-bit register write. What the
        // device may then do to memory is confined to the buffers the
        // driver gives it, all inside the area of `Dma`.
        unsafe { core::ptr::write_volatile(self.register(reg), value) }
    }
}

/// Resets the transport this image started, if any, so that no device
/// writes into this image's memory once another image runs (called by
/// the live-update jump).
pub fn quiesce() {
    let base = LIVE.swap(0, Ordering::SeqCst);
    if base != 0 {
        Mmio { base }.write_reg(reg::STATUS, 0);
    }
}

/// Whether [`dma`] has handed the area out.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The shared area, to the one driver that asks first (`crate::hostlink`),
/// allocated from the heap; `None` after that, or if the heap cannot hold
/// it.
pub fn dma() -> Option<Dma> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    let layout = Layout::from_size_align(AREA_BYTES, 4096).ok()?;
    // SAFETY: the layout's size is not zero (`AREA_BYTES`, a constant).
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    // The heap is claimed RAM, seen through the direct map.
    let phys = super::phys::direct_map_to_phys(p as u64).filter(|_| !p.is_null());
    if phys.is_none() && !p.is_null() {
        // SAFETY: `p` was allocated just above with `layout`, and nothing
        // else has seen it.
        unsafe { alloc::alloc::dealloc(p, layout) };
    }
    Some(Dma {
        base: p as u64,
        phys: phys?,
    })
}

/// The shared area: `AREA_BYTES` of the heap, never freed, reached through
/// raw pointers only.
#[derive(Debug)]
pub struct Dma {
    /// Its direct-map address.
    base: u64,
    /// Its physical address.
    phys: u64,
}

impl Dma {
    /// The address of `len` bytes at `offset`, which must lie in the area
    /// and be aligned to `align`.
    fn at(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= AREA_BYTES)
                && offset.is_multiple_of(align),
            "{len} bytes at {offset:#x} of the virtio area"
        );
        (self.base + offset as u64) as *mut u8
    }
}

impl SharedMemory for Dma {
    fn bus_address(&self) -> u64 {
        self.phys
    }

    fn read_u16(&self, offset: usize) -> u16 {
        let p = self.at(offset, 2, 2).cast::<u16>();
        // SAFETY: inside the area (`at`), an allocation of the heap that
        // `dma` made for this `Dma` alone and never frees, page aligned, so
        // the offset's alignment is the address's; no reference to the
        // area exists, and one aligned volatile access cannot tear against
        // the device's write of the same index.
        unsafe { core::ptr::read_volatile(p) }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let p = self.at(offset, 4, 4).cast::<u32>();
        // SAFETY: as in `read_u16`.
        unsafe { core::ptr::read_volatile(p) }
    }

    fn write_u16(&mut self, offset: usize, value: u16) {
        let p = self.at(offset, 2, 2).cast::<u16>();
        // SAFETY: as in `read_u16`.
        unsafe { core::ptr::write_volatile(p, value) }
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        let p = self.at(offset, 4, 4).cast::<u32>();
        // SAFETY: as in `read_u16`.
        unsafe { core::ptr::write_volatile(p, value) }
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        let p = self.at(offset, 8, 8).cast::<u64>();
        // SAFETY: as in `read_u16`.
        unsafe { core::ptr::write_volatile(p, value) }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        let p = self.at(offset, buf.len(), 1);
        // SAFETY: inside the area (`at`), which no reference covers, and
        // `buf` is not in it; the driver reads a buffer only between the
        // device's completion and giving it back, when the device does not
        // write it.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let p = self.at(offset, bytes.len(), 1);
        // SAFETY: as in `read`; the driver writes a buffer only while the
        // device does not hold it.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) }
    }
}
