//! The page-table hypercalls, exercised once at start and, with `churn`,
//! at every heartbeat.

use pvrt::hc;
use pvrt::hvlu_types::pte::{Level, NO_EXECUTE, PRESENT, USER, WRITABLE};
use pvrt::mem;
use pvrt::pv_abi::hypercall::{Error, MmuUpdate, Report};
use pvrt::{println, start_info};

use crate::{pte_for, LAST_SLOT};

/// Exercises the page-table hypercalls once: a new frame from
/// `increase_reservation` is filled as an L1 through the window, pinned,
/// refused a writable mapping, mapped read-only, unpinned and given back;
/// then a copy of the current L4 is pinned and run on for a moment. Returns
/// the number of steps that went wrong (each is reported).
pub fn exercise_tables() -> u64 {
    let si = start_info();
    let slot = LAST_SLOT;
    let pte = |slot: u64| si.window_pte_maddr + 8 * slot;
    let mut failures = 0;
    let mut check = |step: u64, what: &str, ok: bool| {
        if !ok {
            println!("table exercise step {step} ({what}) failed");
            let _ = hc::report(Report::UnexpectedResult, 100 + step);
            failures += 1;
        }
    };
    let map = |mfn: u64, rw: bool| MmuUpdate {
        ptr: pte(slot),
        val: pte_for(
            mfn,
            PRESENT | USER | NO_EXECUTE | if rw { WRITABLE } else { 0 },
        ),
    };
    let unmap = MmuUpdate {
        ptr: pte(slot),
        val: 0,
    };

    // A new L1 mapping one of our data pages read-only at index 7.
    let mut new = [0u64; 1];
    check(
        1,
        "increase_reservation",
        hc::increase_reservation(&mut new) == Ok(1),
    );
    let l1 = new[0];
    let data_mfn = mem::mfn_of(si.first_free_gpfn);
    let entry = pte_for(data_mfn, PRESENT | USER | NO_EXECUTE);
    check(
        2,
        "map the new frame writable",
        hc::mmu_update(&[map(l1, true)]).is_ok(),
    );
    mem::window_write(slot, 7, entry);
    check(3, "unmap it", hc::mmu_update(&[unmap]).is_ok());
    check(4, "pin it as an L1", hc::pin_table(l1, Level::L1).is_ok());
    check(
        5,
        "writable mapping of a pinned L1 is refused",
        hc::mmu_update(&[map(l1, true)]) == Err(Error::TypeViolation),
    );
    check(
        6,
        "read-only mapping of it",
        hc::mmu_update(&[map(l1, false)]).is_ok(),
    );
    check(
        7,
        "its entry reads back",
        mem::window_read(slot, 7) == entry,
    );
    check(
        8,
        "giving back a mapped table is refused",
        hc::decrease_reservation(&new) == Err(Error::Busy),
    );
    check(
        9,
        "unmap and unpin",
        hc::mmu_update(&[unmap]).is_ok() && hc::unpin_table(l1).is_ok(),
    );
    check(10, "give it back", hc::decrease_reservation(&new) == Ok(1));
    check(
        11,
        "giving it back twice is refused",
        hc::decrease_reservation(&new) == Err(Error::NotOwner),
    );

    // A copy of our L4 (the lower-half slots; the hypervisor fills in its
    // own), pinned, switched to and back.
    check(
        12,
        "increase_reservation",
        hc::increase_reservation(&mut new) == Ok(1),
    );
    let l4 = new[0];
    check(
        13,
        "map the new frame writable",
        hc::mmu_update(&[map(l4, true)]).is_ok(),
    );
    for i in 0..256 {
        let e = mem::read_pte(si.pt_first_gpfn + si.pt_count - 1, i);
        mem::window_write(slot, i, e);
    }
    check(14, "unmap it", hc::mmu_update(&[unmap]).is_ok());
    check(15, "pin it as an L4", hc::pin_table(l4, Level::L4).is_ok());
    check(16, "switch to it", hc::new_baseptr(l4).is_ok());
    check(
        17,
        "memory still reads right",
        mem::mfn_of(si.first_free_gpfn) == data_mfn,
    );
    check(18, "switch back", hc::new_baseptr(si.l4_mfn).is_ok());
    check(
        19,
        "unpin and give it back",
        hc::unpin_table(l4).is_ok() && hc::decrease_reservation(&new) == Ok(1),
    );
    failures
}
