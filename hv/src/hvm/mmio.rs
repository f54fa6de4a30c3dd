//! The small device the hypervisor emulates in every HVM domain's PCI
//! hole: one page at [`EMU_GPA`], the last page below 4 GiB (always in the
//! hole, never RAM, never a BAR the hypervisor places), with read-only
//! 64-bit registers:
//!
//! | offset | register |
//! |---|---|
//! | 0x00 | [`EMU_MAGIC`] |
//! | 0x08 | the hypervisor's uptime in microseconds since the cold boot (a register the guest polls: it only goes up, across live updates too, since the uptime crosses them) |
//! | 0x10 | the hypervisor's timer ticks since this image started |
//! | 0x18 | the domain's id |
//!
//! Writes are ignored. The page has no nested-table entry: an access
//! faults (`NPF`) and comes here, never to log-dirty. Without decode
//! assists (QEMU's TCG has none), the hypervisor fetches the instruction at
//! the guest's RIP through the guest's own page tables and decodes it
//! itself: `mov` between a general register and memory (opcodes 0x8b and
//! 0x89, with an operand-size or REX prefix, any ModRM/SIB/displacement
//! form). Anything else, or an access elsewhere in the hole, ends the
//! domain.

use core::sync::atomic::Ordering;

use hvlu_types::pte::{ADDR_MASK, HUGE, PRESENT};
use hvlu_types::{Gpfn, Mfn, PAGE_SIZE};

use super::HvmVcpu;
use crate::insn::decode;
use crate::arch::phys;
use crate::domain::Domain;
use crate::trap;

/// Where the emulated device's page is, guest-physical.
pub const EMU_GPA: u64 = 0xffff_f000;
/// Register 0 of the device: "HVLUEMU1".
pub const EMU_MAGIC: u64 = u64::from_le_bytes(*b"HVLUEMU1");

/// Why an access could not be emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmuError {
    /// The instruction could not be fetched through the guest's tables.
    Fetch(u64),
    /// The instruction is not a `mov` the emulator knows.
    Decode([u8; 4]),
}

impl core::fmt::Display for EmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EmuError::Fetch(va) => write!(f, "its instruction at {va:#x} is not mapped"),
            EmuError::Decode(b) => write!(
                f,
                "its instruction {:02x} {:02x} {:02x} {:02x} is no register move the emulator knows",
                b[0], b[1], b[2], b[3]
            ),
        }
    }
}

/// Translates guest-physical `gpa` of `dom` (RAM only) to a machine address.
fn ram_maddr(dom: &Domain, gpa: u64) -> Option<u64> {
    let gpfn = Gpfn(gpa / PAGE_SIZE);
    dom.hole().index_of(gpfn)?;
    Some(Mfn(dom.p2m.get(gpfn)?).addr() + gpa % PAGE_SIZE)
}

/// Guest virtual `va` to guest physical, through the guest's 4-level
/// tables at `cr3` (long mode), or identity with paging off.
fn guest_phys(dom: &Domain, cr0: u64, cr3: u64, va: u64) -> Option<u64> {
    if cr0 & (1 << 31) == 0 {
        return Some(va & 0xffff_ffff);
    }
    let mut table = cr3 & ADDR_MASK;
    for level in (1..=4u32).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
        let entry = phys::read_u64(ram_maddr(dom, table + 8 * index)?).ok()?;
        if entry & PRESENT == 0 {
            return None;
        }
        if level > 1 && level < 4 && entry & HUGE != 0 {
            let size = 1u64 << (12 + 9 * (level - 1));
            return Some((entry & ADDR_MASK & !(size - 1)) | (va & (size - 1)));
        }
        table = entry & ADDR_MASK;
    }
    Some(table | (va & 0xfff))
}

/// The 15 bytes at the guest's RIP (fewer where a page is not mapped).
fn fetch(dom: &Domain, v: &HvmVcpu) -> Result<([u8; 15], usize), EmuError> {
    let rip = v.vmcb.rip.wrapping_add(v.vmcb.cs.base);
    let mut bytes = [0u8; 15];
    let mut n = 0;
    while n < bytes.len() {
        let va = rip.wrapping_add(n as u64);
        let Some(maddr) =
            guest_phys(dom, v.vmcb.cr0, v.vmcb.cr3, va).and_then(|gpa| ram_maddr(dom, gpa))
        else {
            break;
        };
        let in_page = ((PAGE_SIZE - va % PAGE_SIZE) as usize).min(bytes.len() - n);
        if phys::read(maddr, &mut bytes[n..n + in_page]).is_err() {
            break;
        }
        n += in_page;
    }
    if n == 0 {
        return Err(EmuError::Fetch(rip));
    }
    Ok((bytes, n))
}

/// The value of register `offset` of `dom`'s device, for a read, at
/// uptime `uptime_us`.
fn read_register(dom: &Domain, offset: u64, uptime_us: u64) -> u64 {
    match offset & !7 {
        0x00 => EMU_MAGIC,
        0x08 => uptime_us,
        0x10 => trap::TICKS.load(Ordering::Relaxed),
        0x18 => u64::from(dom.id.0),
        _ => 0,
    }
}

/// Register `reg` of the vCPU.
fn reg_mut(v: &mut HvmVcpu, reg: u8) -> &mut u64 {
    let r = &mut v.regs;
    match reg {
        0 => &mut v.vmcb.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut v.vmcb.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    }
}

/// Emulates the access at `gpa` (in the device's page) of vCPU `v` of
/// `dom`: the register moved, RIP past the instruction.
pub fn emulate(dom: &mut Domain, v: usize, gpa: u64, uptime_us: u64) -> Result<(), EmuError> {
    let vcpu = dom
        .vcpus
        .get(v)
        .and_then(|c| c.hvm.as_deref())
        .ok_or(EmuError::Fetch(0))?;
    let (bytes, n) = fetch(dom, vcpu)?;
    let m = decode(&bytes, n).ok_or(EmuError::Decode([bytes[0], bytes[1], bytes[2], bytes[3]]))?;
    let value = if m.load {
        read_register(dom, gpa - EMU_GPA, uptime_us)
    } else {
        0
    };
    let Some(vcpu) = dom.vcpus.get_mut(v).and_then(|c| c.hvm.as_deref_mut()) else {
        return Err(EmuError::Fetch(0));
    };
    if m.load {
        let r = reg_mut(vcpu, m.reg);
        *r = match m.size {
            2 => (*r & !0xffff) | (value & 0xffff),
            4 => value & 0xffff_ffff,
            _ => value,
        };
    }
    vcpu.vmcb.rip = vcpu.vmcb.rip.wrapping_add(u64::from(m.len));
    Ok(())
}
