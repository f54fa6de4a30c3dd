//! The guest's initial page tables: the low mappings of its image, stack,
//! start info and window, the physmap of every page by page number (RAM
//! index; tables read-only), the L4; and which pages hold tables of which
//! level, for the pass.

#[allow(
    clippy::wildcard_imports,
    reason = "a part of the builder: its types, constants and imports"
)]
use super::*;

const TABLE: u64 = PRESENT | WRITABLE | USER;
const DATA_RW: u64 = PRESENT | WRITABLE | USER | NO_EXECUTE;
const DATA_RO: u64 = PRESENT | USER | NO_EXECUTE;

/// Writes the guest's page tables and its start-info page; returns its
/// vCPU's first context.
pub(super) fn write_tables<M: GuestMemory>(
    spec: &Spec<'_>,
    elf: &Elf<'_>,
    layout: &Layout,
    guest: &mut Guest<'_, M>,
) -> Result<VcpuContext, BuildError<M::Error>> {
    // Page-table pages, in run order: L1 low, L1 physmap, L2 low, L2 physmap, L3 low, L3 physmap, L4.
    let l1_low0 = layout.pt_first;
    let l1_phys0 = l1_low0 + layout.l1_low.len() as u64;
    let l2_low = l1_phys0 + layout.l1_physmap;
    let l2_phys0 = l2_low + 1;
    let l3_low = l2_phys0 + layout.l2_physmap;
    let l3_phys = l3_low + 1;
    let l4 = l3_phys + 1;
    debug_assert_eq!(l4 + 1, layout.first_free);
    let is_table = |page: u64| (layout.pt_first..layout.first_free).contains(&page);

    // L4: the guest's two slots (the hypervisor's upper half is the
    // memory's to write, `GuestMemory::install_hv_slots`).
    guest.set(l4, 0, guest.maddr(l3_low) | TABLE)?;
    guest.set(l4, (PHYSMAP_VA >> 39) & 511, guest.maddr(l3_phys) | TABLE)?;
    // Low area: one L3 entry, one L2, an L1 per 2 MiB slot in use.
    guest.set(l3_low, 0, guest.maddr(l2_low) | TABLE)?;
    for (i, slot) in layout.l1_low.iter().enumerate() {
        guest.set(l2_low, *slot, guest.maddr(l1_low0 + i as u64) | TABLE)?;
    }
    let map_low = |guest: &mut Guest<'_, M>, va: u64, page: u64, flags: u64| {
        let i = layout
            .l1_low
            .iter()
            .position(|s| *s == va >> 21)
            .unwrap_or(0) as u64;
        guest.set(l1_low0 + i, (va >> 12) & 511, guest.maddr(page) | flags)
    };
    map_low(guest, START_INFO_VA, START_INFO_GPFN, DATA_RW)?;
    for p in 0..layout.stack.1 {
        map_low(
            guest,
            STACK_TOP - (layout.stack.1 - p) * PAGE_SIZE,
            layout.stack.0 + p,
            DATA_RW,
        )?;
    }
    for p in 0..layout.image.1 {
        let va = IMAGE_BASE + p * PAGE_SIZE;
        // Permissions of the segment that covers the page (the most
        // permissive if two share it).
        let mut flags = PRESENT | USER | NO_EXECUTE;
        for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
            let (start, end) = (
                ph.p_vaddr & !4095,
                (ph.p_vaddr + ph.p_memsz).div_ceil(PAGE_SIZE) * PAGE_SIZE,
            );
            if (start..end).contains(&va) {
                if ph.p_flags & 2 != 0 {
                    flags |= WRITABLE;
                }
                if ph.p_flags & 1 != 0 {
                    flags &= !NO_EXECUTE;
                }
            }
        }
        map_low(guest, va, layout.image.0 + p, flags)?;
    }
    // Physmap: every page, tables read-only.
    for j in 0..layout.l2_physmap {
        guest.set(
            l3_phys,
            ((PHYSMAP_VA >> 30) & 511) + j,
            guest.maddr(l2_phys0 + j) | TABLE,
        )?;
    }
    for k in 0..layout.l1_physmap {
        let l2 = l2_phys0 + k / 512;
        guest.set(l2, k % 512, guest.maddr(l1_phys0 + k) | TABLE)?;
    }
    // The physmap's L1 entries, a table at a time.
    for (k, mfns) in guest.p2m.ram().chunks(512).enumerate() {
        let entries = mfns
            .iter()
            .zip(k as u64 * 512..)
            .map(|(&mfn, page)| (mfn << 12) | if is_table(page) { DATA_RO } else { DATA_RW });
        let maddr = guest.maddr(l1_phys0 + k as u64);
        write_words(guest.mem, maddr, entries)?;
    }

    // The start-info page.
    let window_l1 = l1_low0
        + layout
            .l1_low
            .iter()
            .position(|s| *s == WINDOW_VA >> 21)
            .unwrap_or(0) as u64;
    let mut si = StartInfo {
        magic: START_INFO_MAGIC,
        domid: u64::from(spec.id.0),
        flags: if spec.privileged { SIF_PRIVILEGED } else { 0 },
        nr_pages: spec.pages,
        mfn_list_gpfn: layout.mfn_list.0,
        pt_first_gpfn: layout.pt_first,
        pt_count: layout.pt_count,
        l4_mfn: guest.mfn(l4),
        first_free_gpfn: layout.first_free,
        window_va: WINDOW_VA,
        window_pte_maddr: guest.maddr(window_l1) + 8 * ((WINDOW_VA >> 12) & 511),
        ..StartInfo::default()
    };
    let n = spec.cmdline.len().min(si.cmdline.len() - 1);
    si.cmdline[..n].copy_from_slice(&spec.cmdline.as_bytes()[..n]);
    guest.write(guest.maddr(START_INFO_GPFN), si.as_bytes())?;
    Ok(first_context(elf.entry, Mfn(guest.mfn(l4))))
}

/// The kind of each page (RAM index) of a guest laid out as `layout`: its
/// tables by level, everything else data.
pub(super) fn table_kinds(layout: &Layout) -> impl Fn(u64) -> RunKind + '_ {
    move |page| {
        let l1_end = layout.pt_first + layout.l1_low.len() as u64 + layout.l1_physmap;
        let l2_end = l1_end + 1 + layout.l2_physmap;
        let l3_end = l2_end + 2;
        if page < layout.pt_first || page >= layout.first_free {
            RunKind::Data
        } else if page < l1_end {
            RunKind::L1
        } else if page < l2_end {
            RunKind::L2
        } else if page < l3_end {
            RunKind::L3
        } else {
            RunKind::L4
        }
    }
}
