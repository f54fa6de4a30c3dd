//! What the hypervisor must refuse a domU (`probe`, `giveback`): each
//! attempt is printed and reported as an expected refusal or an
//! unexpected result.

use pvrt::hc;
use pvrt::hvlu_types::pte::{Level, Pte, GLOBAL, NO_EXECUTE, PRESENT, USER, WRITABLE};
use pvrt::hvlu_types::{DomId, PAGE_SIZE};
use pvrt::mem;
use pvrt::pv_abi::call::Domctl;
use pvrt::pv_abi::hypercall::{Error, MemoryMapEntry, MmuUpdate, Report};
use pvrt::pv_abi::start_info::{PHYSMAP_VA, START_INFO_VA};
use pvrt::{println, start_info};

use crate::{pte_for, LAST_SLOT};

use pvrt::probe::expect;

/// The refusals; those of the memory maps only where the hypervisor has
/// them (`has_maps`: its own map was given).
pub fn probes(has_maps: bool) {
    let si = start_info();
    // 1. A privileged hypercall.
    expect(
        1,
        "domctl from a domU",
        hc::domctl(Domctl::Destroy { id: DomId(0) }),
        Error::Permission,
    );
    // 2. Mapping a frame it does not own (frame 0: firmware memory).
    let req = MmuUpdate {
        ptr: si.window_pte_maddr,
        val: pte_for(0, PRESENT | USER | NO_EXECUTE),
    };
    expect(
        2,
        "map a frame it does not own",
        hc::mmu_update(&[req]),
        Error::NotOwner,
    );
    // 3. A writable mapping of its own L4.
    let req = MmuUpdate {
        ptr: si.window_pte_maddr,
        val: pte_for(si.l4_mfn, PRESENT | WRITABLE | USER | NO_EXECUTE),
    };
    expect(
        3,
        "writable mapping of its own page table",
        hc::mmu_update(&[req]),
        Error::TypeViolation,
    );
    // 4. A pointer outside its memory (an unmapped address and the
    //    hypervisor's half).
    expect(
        4,
        "console_write from an unmapped address",
        pvrt::probe::console_write_from(0x7000_0000_0000, 16),
        Error::BadAddress,
    );
    expect(
        5,
        "sysinfo into the hypervisor's memory",
        pvrt::probe::sysinfo_into_hypervisor_half(40),
        Error::BadAddress,
    );
    // 6 and 7. The live-update hypercalls are dom0's.
    expect(
        6,
        "lu_load from a domU",
        hc::lu_load("hv", false),
        Error::Permission,
    );
    expect(7, "lu_exec from a domU", hc::lu_exec(), Error::Permission);
    // 13. A dom0-only call whose arguments do not decode: refused for the
    // caller first.
    expect(
        13,
        "an unknown domctl operation from a domU",
        pvrt::probe::domctl_op(99),
        Error::Permission,
    );
    // 14. Arguments that do not decode.
    expect(
        14,
        "pin_table of level 7",
        pvrt::probe::pin_table_at_level(7),
        Error::Invalid,
    );
    // 18 and 19. The machine's memory map is dom0's, and so is another
    // domain's map. (15–17 are the device probes, `device_probes`.)
    if has_maps {
        let mut room = [MemoryMapEntry::default(); 8];
        expect(
            18,
            "machine_memory_map from a domU",
            hc::machine_memory_map(&mut room),
            Error::Permission,
        );
        expect(
            19,
            "memory_map of dom0 from a domU",
            hc::memory_map(DomId(0), &mut room),
            Error::Permission,
        );
    }
    // 20. Another domain's memory by gpfn (dom0's start-info page, whose
    // magic is known) is dom0's to read. A hypervisor from before
    // `read_guest` knows no such call (`NoSys`), said once.
    let mut word = [0u8; 8];
    match hc::read_guest(DomId(0), 0, 0, &mut word) {
        Err(Error::NoSys) => println!("probe 20: this hypervisor has no read_guest"),
        result => expect(
            20,
            "read_guest of dom0's memory from a domU",
            result,
            Error::Permission,
        ),
    }
    // 8. A global mapping hidden in a frame that is then pinned as an L1.
    let mut new = [0u64; 1];
    if hc::increase_reservation(&mut new) == Ok(1) {
        let slot = LAST_SLOT;
        let ptr = si.window_pte_maddr + 8 * slot;
        let rw = MmuUpdate {
            ptr,
            val: pte_for(new[0], PRESENT | WRITABLE | USER | NO_EXECUTE),
        };
        let _ = hc::mmu_update(&[rw]);
        let data = mem::mfn_of(si.first_free_gpfn);
        mem::window_write(
            slot,
            0,
            pte_for(data, PRESENT | WRITABLE | USER | NO_EXECUTE | GLOBAL),
        );
        let _ = hc::mmu_update(&[MmuUpdate { ptr, val: 0 }]);
        expect(
            8,
            "pin an L1 holding a global mapping",
            hc::pin_table(new[0], Level::L1),
            Error::TypeViolation,
        );
        let _ = hc::decrease_reservation(&new);
    } else {
        let _ = hc::report(Report::UnexpectedResult, 8);
    }
    // 9. A hypercall with RFLAGS.NT set: the hypervisor returns normally.
    let r = pvrt::probe::yield_with_nested_task_flag();
    if r == 0 {
        println!("probe 9 (hypercall with NT set): returned normally as expected");
        let _ = hc::report(Report::ExpectedRefusal, 9);
    } else {
        println!("probe 9 (hypercall with NT set): returned {r}");
        let _ = hc::report(Report::UnexpectedResult, 9);
    }
}

/// `bar=ADDR` with `probe`: device memory this domain was never given
/// (`iomem permit`) must be refused for permission, uncacheable or not
/// (permission is checked before the memory type).
pub fn device_probes(bar: u64) {
    let mfn = bar / PAGE_SIZE;
    expect(
        15,
        "map device memory without permission",
        pvrt::edu::map(LAST_SLOT, mfn, pvrt::edu::UNCACHEABLE),
        Error::Permission,
    );
    expect(
        17,
        "map device memory cacheable without permission",
        pvrt::edu::map(LAST_SLOT, mfn, pvrt::edu::CACHEABLE),
        Error::Permission,
    );
}

/// The L1 entry that maps `va` in the tables the domain started on, by a
/// walk through them (read in the physmap): `(its table's gpfn, its index,
/// its machine address)`.
fn l1_entry(va: u64) -> Option<(u64, usize, u64)> {
    let si = start_info();
    let pt = si.pt_first_gpfn..si.pt_first_gpfn + si.pt_count;
    let gpfn_of = |mfn: u64| pt.clone().find(|&g| mem::mfn_of(g) == mfn);
    let mut table = si.l4_mfn;
    for level in [Level::L4, Level::L3, Level::L2] {
        let entry = Pte(mem::read_pte(gpfn_of(table)?, level.index(va)));
        if !entry.is_present() || entry.has_huge_bit() {
            return None;
        }
        table = entry.mfn().0;
    }
    let index = Level::L1.index(va);
    Some((gpfn_of(table)?, index, (table << 12) + 8 * index as u64))
}

/// `giveback`: unmaps the start-info page everywhere it is mapped (its
/// fixed address and the physmap), so that nothing but its allocation holds
/// it, then tries to give it back and to pin it as a table — the handover
/// state of a live update must find it among the domain's data frames, so
/// both must be refused — and maps it again. Nothing in between reads the
/// start-info page. Returns whether it is mapped again.
pub fn giveback() -> bool {
    let si = start_info();
    let Some((si_table, si_index, si_ptr)) = l1_entry(START_INFO_VA) else {
        println!("giveback: the start-info page's mapping was not found");
        let _ = hc::report(Report::UnexpectedResult, 10);
        return true;
    };
    let si_pte = mem::read_pte(si_table, si_index);
    let si_mfn = Pte(si_pte).mfn().0;
    let Some(gpfn) = (0..si.nr_pages).find(|&g| mem::mfn_of(g) == si_mfn) else {
        println!("giveback: the start-info frame {si_mfn:#x} is not in the mfn list");
        let _ = hc::report(Report::UnexpectedResult, 10);
        return true;
    };
    let Some((phys_table, phys_index, phys_ptr)) = l1_entry(PHYSMAP_VA + gpfn * PAGE_SIZE) else {
        println!("giveback: the start-info page's physmap mapping was not found");
        let _ = hc::report(Report::UnexpectedResult, 10);
        return true;
    };
    let phys_pte = mem::read_pte(phys_table, phys_index);
    println!("giveback: unmapping the start-info page (gpfn {gpfn}, mfn {si_mfn:#x})");
    // Both mappings at once: with `0`, unmapped; with their entries, back.
    let both = |si_val: u64, phys_val: u64| {
        [
            MmuUpdate {
                ptr: si_ptr,
                val: si_val,
            },
            MmuUpdate {
                ptr: phys_ptr,
                val: phys_val,
            },
        ]
    };
    if hc::mmu_update(&both(0, 0)) != Ok(2) {
        println!("giveback: cannot unmap the start-info page");
        let _ = hc::report(Report::UnexpectedResult, 10);
        let _ = hc::mmu_update(&both(si_pte, phys_pte));
        return true;
    }
    // From here until it is mapped again, nothing may read the start-info
    // page (`start_info()`, `mem`): only hypercalls and the console.
    expect(
        10,
        "give back the start-info page",
        hc::decrease_reservation(&[si_mfn]),
        Error::Permission,
    );
    expect(
        11,
        "pin the start-info page as an L1",
        hc::pin_table(si_mfn, Level::L1),
        Error::Permission,
    );
    match hc::mmu_update(&both(si_pte, phys_pte)) {
        Ok(2) => {
            println!("giveback: the start-info page is mapped again");
            true
        }
        other => {
            println!("giveback: cannot map the start-info page again: {other:?}");
            let _ = hc::report(Report::UnexpectedResult, 12);
            false
        }
    }
}
