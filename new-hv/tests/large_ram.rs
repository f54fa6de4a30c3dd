//! The restricted boot on large machines (`new_hv::boot`): every size grows
//! with RAM — heap, page tables, frametable, M2P — and the boot stays four
//! allocations, so the boot allocator's records never run out; the heap
//! backs the frame spaces of domains holding all of RAM.

use boot_allocator::PhysRange;
use hvlu_types::{Mfn, MfnRange, PAGE_SIZE};
use new_hv::boot::{self, dry_run, heap_bytes, heap_pages, needs};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// About the reference image's span.
const IMAGE: u64 = 800 << 10;

/// QEMU microvm's RAM map for `ram` bytes: below 640 KiB, from 1 MiB up to
/// 3 GiB, and the rest from 4 GiB.
fn microvm(ram: u64) -> Vec<MfnRange> {
    let frames =
        |start: u64, end: u64| MfnRange::new(Mfn(start / PAGE_SIZE), (end - start) / PAGE_SIZE);
    let mut map = vec![frames(0, 0x9f000), frames(MIB, ram.min(3 * GIB))];
    if ram > 3 * GIB {
        map.push(frames(4 * GIB, ram + GIB));
    }
    map
}

#[test]
fn a_64_gib_machine_boots_in_four_allocations_in_a_656_mib_region() {
    let ram = microvm(64 * GIB);
    let n = needs(&ram, IMAGE);
    assert_eq!(n.frames, 65 * GIB / PAGE_SIZE);
    // Per GiB of RAM end: 4 MiB of heap, 4 of frametable, 2 of M2P.
    assert_eq!(n.heap_pages * PAGE_SIZE, heap_bytes(n.frames));
    assert_eq!(n.heap_pages * PAGE_SIZE, boot::HEAP_BASE + 65 * 4 * MIB);
    assert_eq!(n.frametable_pages * PAGE_SIZE, 65 * 4 * MIB);
    assert_eq!(n.m2p_pages * PAGE_SIZE, 65 * 2 * MIB);
    // The direct map: an L2 per GiB of RAM (64, the 3..4 GiB hole has
    // none) and one L3, all in one block: the allocator makes four
    // allocations whatever the size of RAM.
    assert!(n.page_table_frames > 64 + 1, "{n:?}");
    // The incoming image sizes its heap from the end of RAM alone, before
    // it has read the map: the same.
    assert_eq!(heap_pages(65 * GIB), n.heap_pages);
    // The region `cargo xtask run --ram 64G` chooses, the image staged at
    // its top: the boot fits below.
    let region = PhysRange::new(3 * GIB - 656 * MIB, 656 * MIB);
    let staged = PhysRange::new(region.end() - 2 * MIB, 2 * MIB);
    let plan = dry_run(region, staged, &n).unwrap();
    for r in [plan.heap, plan.page_tables, plan.frametable, plan.m2p] {
        assert!(region.contains_range(r) && !r.overlaps(staged), "{r:?}");
    }
    // A region of 512 MiB does not hold it, and says which part.
    let small = PhysRange::new(3 * GIB - 512 * MIB, 512 * MIB);
    let e = dry_run(small, PhysRange::new(small.end() - 2 * MIB, 2 * MIB), &n).unwrap_err();
    assert_eq!(e.what, "frametable", "{e}");
}

#[test]
fn a_terabyte_needs_an_l3_per_512_gib_and_an_l2_per_gib() {
    let n = needs(&microvm(1024 * GIB), IMAGE);
    let gib_with_ram = 3 + (1025 - 4);
    let l3s = 3;
    assert!(n.page_table_frames >= 1 + l3s + gib_with_ram, "{n:?}");
    assert!(n.page_table_frames <= 1 + l3s + gib_with_ram + 16, "{n:?}");
}

#[test]
fn the_heap_backs_domains_holding_all_of_ram() {
    for frames in [0u64, 1, 4096, 131_072, 1 << 24, 1 << 28] {
        // A p2m entry (8 bytes) and a free-list slot (4) for each frame of
        // the limits, 125 % of the pages; a bit of the page allocator's
        // bitmap per frame; the fixed part besides.
        let domains = frames * 12 * 5 / 4;
        let bitmap = frames.div_ceil(8);
        assert!(
            heap_bytes(frames) >= boot::HEAP_BASE + domains + bitmap,
            "{frames} frames"
        );
        assert_eq!(heap_bytes(frames) % PAGE_SIZE, 0);
    }
}
