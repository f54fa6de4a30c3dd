//! The domain's own memory map (`memory_map`), read once at start: printed,
//! then checked against what the guest knows of its memory. Its pages are
//! numbered by RAM index (`hvlu_types::hole`): page `n` is gpfn `n` below
//! the PCI hole and `n + (4 GiB − hole)` from it on. So the map must be
//! RAM from 0 up to the hole (or its end), the hole up to 4 GiB (device
//! memory inside it), RAM from 4 GiB for the rest — and every page of the
//! guest's must lie in a RAM range.

use pvrt::hc;
use pvrt::hvlu_types::hole::{Hole, HOLE_END};
use pvrt::hvlu_types::{DomId, Gpfn, PAGE_SHIFT};
use pvrt::pv_abi::call::MAX_MEMORY_MAP;
use pvrt::pv_abi::hypercall::{Error, MapKind, MemoryMapEntry, Report};
use pvrt::{println, start_info};

/// The report number of a map that disagrees with the guest's memory.
const DISAGREES: u64 = 17;

/// Room for every entry a map may have.
const ROOM: usize = MAX_MEMORY_MAP as usize;

/// The domain's own map, if the hypervisor has `memory_map` (a hypervisor
/// from before it answers `NoSys`, and `None` comes back, said once).
fn own_map(out: &mut [MemoryMapEntry; ROOM]) -> Option<&[MemoryMapEntry]> {
    let id = DomId(start_info().domid as u16);
    match hc::memory_map(id, out) {
        Ok(n) => Some(&out[..n as usize]),
        Err(Error::NoSys) => {
            println!("memmap: this hypervisor has no memory_map");
            None
        }
        Err(e) => {
            println!("memmap: memory_map of itself refused: {}", e.name());
            let _ = hc::report(Report::UnexpectedResult, DISAGREES);
            None
        }
    }
}

/// Reads, prints and checks the map; returns whether the hypervisor has
/// memory maps.
pub fn check_own_map() -> bool {
    let mut room = [MemoryMapEntry::default(); ROOM];
    let Some(map) = own_map(&mut room) else {
        return false;
    };
    for e in map {
        let kind = MapKind::from_repr(e.kind).map_or("?", MapKind::name);
        println!(
            "memmap {:#x}-{:#x} {kind}",
            e.base,
            e.end().saturating_sub(1)
        );
    }
    let pages = start_info().nr_pages;
    match agrees(map, pages) {
        Ok((hole, ram)) => {
            println!("memmap: agrees with its {pages} pages: {ram} RAM frames, PCI hole {hole}")
        }
        Err(why) => {
            println!("memmap: MISMATCH: {why}");
            let _ = hc::report(Report::UnexpectedResult, DISAGREES);
        }
    }
    true
}

/// Whether `map` is the map of a guest of `pages` pages: returns its hole
/// and its RAM frames, or what is wrong.
fn agrees(map: &[MemoryMapEntry], pages: u64) -> Result<(Hole, u64), &'static str> {
    let mut end = 0;
    for e in map {
        if e.size == 0 || e.base % 4096 != 0 || e.size % 4096 != 0 {
            return Err("an entry is empty or not whole pages");
        }
        if e.base < end {
            return Err("the entries are not sorted and disjoint");
        }
        end = e.end();
    }
    let is_hole =
        |e: &&MemoryMapEntry| e.kind == MapKind::PciHole as u32 || e.kind == MapKind::Device as u32;
    let first = map.iter().find(is_hole).ok_or("there is no PCI hole")?;
    let hole = Hole::at_addr(first.base).map_err(|_| "the hole starts where no hole may")?;
    // The hole is one span up to 4 GiB: its pieces meet.
    let mut at = first.base;
    for e in map.iter().filter(is_hole) {
        if e.base != at {
            return Err("the PCI hole has a gap");
        }
        at = e.end();
    }
    if at != HOLE_END.0 << PAGE_SHIFT {
        return Err("the PCI hole does not end at 4 GiB");
    }
    let ram: u64 = map
        .iter()
        .filter(|e| e.kind == MapKind::Ram as u32)
        .map(|e| e.size >> PAGE_SHIFT)
        .sum();
    if map.iter().any(|e| MapKind::from_repr(e.kind).is_none()) {
        return Err("an entry has an unknown kind");
    }
    // RAM is what the numbering around the hole says, and nothing else.
    let expected = hole
        .ram(ram)
        .map(|(g, n)| (g.0 << PAGE_SHIFT, n << PAGE_SHIFT));
    let listed = map
        .iter()
        .filter(|e| e.kind == MapKind::Ram as u32)
        .map(|e| (e.base, e.size));
    if !expected.eq(listed) {
        return Err("RAM is not below the hole and from 4 GiB");
    }
    if pages > ram {
        return Err("the guest has more pages than the map has RAM");
    }
    // Each page's gpfn lies in a RAM range.
    let in_ram = |g: Gpfn| {
        map.iter().any(|e| {
            e.kind == MapKind::Ram as u32 && (e.base..e.end()).contains(&(g.0 << PAGE_SHIFT))
        })
    };
    if !(0..pages).all(|n| hole.gpfn_of(n).is_some_and(in_ram)) {
        return Err("a page of the guest lies outside RAM");
    }
    Ok((hole, ram))
}
