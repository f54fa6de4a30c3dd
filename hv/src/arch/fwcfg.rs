//! QEMU's firmware configuration device: named files from the host.
//!
//! Boot modules (guest kernels, hypervisor images for later updates) come as
//! fw_cfg files `opt/hvlu/<name>`. The directory is read through the port
//! interface; file contents through the DMA interface, straight into their
//! destination: under QEMU, DMA is about 600 times faster than reading the
//! data port a byte at a time.

use core::sync::atomic::{compiler_fence, Ordering};

use x86_64::instructions::port::{Port, PortWriteOnly};

use super::{kernel_virt_to_phys, phys};

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const DMA_HI: u16 = 0x514;
const DMA_LO: u16 = 0x518;

const SIGNATURE: u16 = 0x0000;
const FEATURES: u16 = 0x0001;
const FILE_DIR: u16 = 0x0019;

const DMA_ERROR: u32 = 0x01;
const DMA_READ: u32 = 0x02;
const DMA_SELECT: u32 = 0x08;

/// A file in the fw_cfg directory.
#[derive(Clone, Copy, Debug)]
pub struct FwFile {
    /// Size in bytes.
    pub size: u32,
    /// Selector key.
    pub select: u16,
    name: [u8; 56],
}

impl FwFile {
    /// The file name, e.g. `opt/hvlu/domu`.
    pub fn name(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..len]).unwrap_or("")
    }
}

/// Why fw_cfg could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwCfgError {
    /// No fw_cfg device (bad signature).
    #[error("no fw_cfg device")]
    Absent,
    /// The device has no DMA interface.
    #[error("the fw_cfg device has no DMA interface")]
    NoDma,
    /// The device reported a DMA error.
    #[error("the fw_cfg device reported a DMA error")]
    Dma,
    /// The destination buffer is not in the direct map.
    #[error("the buffer is not in the direct map")]
    NotDirectMapped,
}

fn select(key: u16) {
    // SAFETY: the fw_cfg ports belong to the hypervisor; selecting an item
    // only changes what the data port returns.
    unsafe { PortWriteOnly::<u16>::new(SELECTOR).write(key) }
}

fn read_bytes(buf: &mut [u8]) {
    let mut data = Port::<u8>::new(DATA);
    for b in buf {
        // SAFETY: the fw_cfg ports belong to the hypervisor; reading the
        // data port returns the next byte of the selected item.
        *b = unsafe { data.read() };
    }
}

/// Checks that the device is there and has DMA.
pub fn probe() -> Result<(), FwCfgError> {
    let mut sig = [0u8; 4];
    select(SIGNATURE);
    read_bytes(&mut sig);
    if &sig != b"QEMU" {
        return Err(FwCfgError::Absent);
    }
    let mut features = [0u8; 4];
    select(FEATURES);
    read_bytes(&mut features);
    if u32::from_le_bytes(features) & 2 == 0 {
        return Err(FwCfgError::NoDma);
    }
    Ok(())
}

/// Calls `f` for every file in the directory.
pub fn for_each_file(mut f: impl FnMut(&FwFile)) {
    let mut count = [0u8; 4];
    select(FILE_DIR);
    read_bytes(&mut count);
    for _ in 0..u32::from_be_bytes(count) {
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let mut name = [0u8; 56];
        name.copy_from_slice(&entry[8..]);
        f(&FwFile {
            size: u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
            select: u16::from_be_bytes([entry[4], entry[5]]),
            name,
        });
    }
}

/// The file named `name`, if the device is there and has one.
pub fn find(name: &str) -> Option<FwFile> {
    probe().ok()?;
    let mut found = None;
    for_each_file(|file| {
        if found.is_none() && file.name() == name {
            found = Some(*file);
        }
    });
    found
}

/// Copies the first bytes of `file` into `buf` through the data port (for
/// small files: no DMA, no direct-map buffer). Returns how many were copied.
pub fn read_small(file: &FwFile, buf: &mut [u8]) -> usize {
    let len = buf.len().min(file.size as usize);
    select(file.select);
    read_bytes(&mut buf[..len]);
    len
}

#[repr(C, align(16))]
struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

static mut DMA: DmaAccess = DmaAccess {
    control: 0,
    length: 0,
    address: 0,
};

fn dma(control: u32, length: u32, address: u64) -> Result<(), FwCfgError> {
    let desc = core::ptr::addr_of_mut!(DMA);
    // SAFETY: single CPU; `DMA` is only used here, one transfer at a time.
    unsafe {
        desc.write_volatile(DmaAccess {
            control: control.to_be(),
            length: length.to_be(),
            address: address.to_be(),
        })
    };
    let desc_phys = kernel_virt_to_phys(desc as u64);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: writing the descriptor's address starts a transfer into
    // `address`, which the caller checked is RAM it may overwrite.
    unsafe {
        PortWriteOnly::<u32>::new(DMA_HI).write(((desc_phys >> 32) as u32).to_be());
        PortWriteOnly::<u32>::new(DMA_LO).write((desc_phys as u32).to_be());
    }
    loop {
        compiler_fence(Ordering::SeqCst);
        // SAFETY: reading our own descriptor, which the device updates.
        let control = u32::from_be(unsafe { core::ptr::addr_of!((*desc).control).read_volatile() });
        if control & DMA_ERROR != 0 {
            return Err(FwCfgError::Dma);
        }
        if control == 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
}

/// Copies the whole of `file` into RAM at `paddr` by DMA, never through a
/// buffer of the hypervisor (an image may be larger than its heap). The
/// range must be RAM nobody owns ([`phys::check_dma_target`]).
pub fn read_file_to_phys(file: &FwFile, paddr: u64) -> Result<(), FwCfgError> {
    let len = file.size;
    if len == 0 {
        return Ok(());
    }
    phys::check_dma_target(paddr, u64::from(len)).map_err(|_| FwCfgError::NotDirectMapped)?;
    dma_read(file, len, paddr)
}

/// Reads the first `len` bytes of `file` to physical address `paddr`.
fn dma_read(file: &FwFile, len: u32, paddr: u64) -> Result<(), FwCfgError> {
    let result = dma(
        (u32::from(file.select) << 16) | DMA_SELECT | DMA_READ,
        len,
        paddr,
    );
    compiler_fence(Ordering::SeqCst);
    result
}

/// Copies file `file` into `buf` (its first `buf.len()` bytes).
pub fn read_file(file: &FwFile, buf: &mut [u8]) -> Result<(), FwCfgError> {
    let len = buf.len().min(file.size as usize) as u32;
    let paddr =
        phys::direct_map_to_phys(buf.as_mut_ptr() as u64).ok_or(FwCfgError::NotDirectMapped)?;
    dma_read(file, len, paddr)
}
