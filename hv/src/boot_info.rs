//! What the boot loader tells us: the PVH start-info structure, the memory
//! map and the command line, copied out of low memory before it is reused.

use crate::arch::phys;

const START_INFO_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// One entry of the machine's memory map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemEntry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type (1 = RAM).
    pub kind: u32,
}

impl MemEntry {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// The most memory-map entries kept.
pub const MAX_MEMMAP: usize = 64;
const MAX_CMDLINE: usize = 512;

/// The boot information, owned by the hypervisor.
#[derive(Debug)]
pub struct BootInfo {
    memmap: [MemEntry; MAX_MEMMAP],
    memmap_len: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
}

/// Why the boot information could not be read.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum BootInfoError {
    /// The start-info magic is wrong: not booted through PVH.
    #[error("start-info magic {0:#x} is not PVH's {START_INFO_MAGIC:#x}")]
    BadMagic(u32),
    /// The start-info structure is older than version 1 (no memory map).
    #[error("start-info version 0 has no memory map")]
    NoMemoryMap,
    /// A pointer in the start info could not be read.
    #[error("start info unreadable: {0}")]
    Unreadable(#[from] phys::PhysError),
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl BootInfo {
    /// Reads the PVH `hvm_start_info` at physical address `paddr`.
    pub fn from_pvh(paddr: u64) -> Result<BootInfo, BootInfoError> {
        let mut si = [0u8; 56];
        phys::read(paddr, &mut si)?;
        let magic = le_u32(&si, 0);
        if magic != START_INFO_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        let version = le_u32(&si, 4);
        if version < 1 {
            return Err(BootInfoError::NoMemoryMap);
        }
        let cmdline_paddr = le_u64(&si, 24);
        let memmap_paddr = le_u64(&si, 40);
        let memmap_entries = le_u32(&si, 48) as usize;

        let mut info = BootInfo {
            memmap: [MemEntry::default(); MAX_MEMMAP],
            memmap_len: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
        };
        for i in 0..memmap_entries.min(MAX_MEMMAP) {
            let mut e = [0u8; 24];
            phys::read(memmap_paddr + 24 * i as u64, &mut e)?;
            let entry = MemEntry {
                addr: le_u64(&e, 0),
                size: le_u64(&e, 8),
                kind: le_u32(&e, 16),
            };
            // qboot and others add zero-size entries: drop them.
            if entry.size != 0 {
                info.memmap[info.memmap_len] = entry;
                info.memmap_len += 1;
            }
        }
        info.memmap[..info.memmap_len].sort_unstable_by_key(|e| e.addr);
        if cmdline_paddr != 0 {
            let mut chunk = [0u8; 64];
            'read: while info.cmdline_len < MAX_CMDLINE {
                phys::read(cmdline_paddr + info.cmdline_len as u64, &mut chunk)?;
                for &b in &chunk {
                    if b == 0 || info.cmdline_len == MAX_CMDLINE {
                        break 'read;
                    }
                    info.cmdline[info.cmdline_len] = b;
                    info.cmdline_len += 1;
                }
            }
        }
        Ok(info)
    }

    /// The memory map, sorted by address, without empty entries.
    pub fn memmap(&self) -> &[MemEntry] {
        &self.memmap[..self.memmap_len]
    }

    /// The command line (empty if none, or not UTF-8).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
}
