//! The builder on the host: its plan for several sizes, the refusals, a
//! whole guest written into simulated memory and checked through its own
//! page tables, a frametable equal to the pass's, and every frame given
//! back when a build fails part-way.

use core::fmt;

use frame_ownership::rules::HV_L4_FIRST_SLOT;
use frame_ownership::testkit::SimMemory;
use frame_ownership::{FrameInfo, MachineLayout, M2P_INVALID};
use hvlu_types::pte::{self, Level, ADDR_MASK};
use hvlu_types::MfnRange;
use object::write::elf::{FileHeader, ProgramHeader, Writer};
use object::{elf, Endianness};

use super::*;
use crate::mm::pages::PageAllocator;

// --- guest images -----------------------------------------------------

/// A loadable segment of a test guest.
struct Segment {
    vaddr: u64,
    /// `PF_*` bits.
    flags: u32,
    bytes: Vec<u8>,
    memsz: u64,
}

/// An ELF64 (or ELF32) x86_64 executable of `segments`, entered at `entry`.
fn elf_file(is_64: bool, machine: u16, entry: u64, segments: &[Segment]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(Endianness::Little, is_64, &mut out);
    w.reserve_file_header();
    w.reserve_program_headers(segments.len() as u32);
    let offsets: Vec<u64> = segments
        .iter()
        .map(|s| w.reserve(s.bytes.len() as u64, PAGE_SIZE))
        .collect();
    w.write_file_header(&FileHeader {
        e_type: elf::ET_EXEC,
        e_machine: elf::Machine(machine),
        e_entry: entry,
        ..FileHeader::default()
    })
    .unwrap();
    w.write_align_program_headers();
    for (s, &offset) in segments.iter().zip(&offsets) {
        w.write_program_header(&ProgramHeader {
            p_type: elf::PT_LOAD,
            p_flags: elf::ProgramFlags(s.flags),
            p_offset: offset,
            p_vaddr: s.vaddr,
            p_paddr: s.vaddr,
            p_filesz: s.bytes.len() as u64,
            p_memsz: s.memsz,
            p_align: PAGE_SIZE,
        });
    }
    for s in segments {
        w.write_align(PAGE_SIZE);
        w.write(&s.bytes);
    }
    out
}

const PF_R: u32 = elf::PF_R.0;
const PF_W: u32 = elf::PF_W.0;
const PF_X: u32 = elf::PF_X.0;
const ENTRY: u64 = IMAGE_BASE + 0x10;

/// Bytes that differ from page to page and from zero.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// A guest like the real ones: code (read, execute) of one and a half
/// pages, then data (read, write) with a page of bss after its bytes.
fn guest_image() -> Vec<u8> {
    elf_file(
        true,
        elf::EM_X86_64.0,
        ENTRY,
        &[
            Segment {
                vaddr: IMAGE_BASE,
                flags: PF_R | PF_X,
                bytes: pattern(1, 6000),
                memsz: 6000,
            },
            Segment {
                vaddr: IMAGE_BASE + 2 * PAGE_SIZE,
                flags: PF_R | PF_W,
                bytes: pattern(2, 100),
                memsz: PAGE_SIZE + 100,
            },
        ],
    )
}

/// Where the test guest's image ends: 4 pages past the base.
const IMAGE_END: u64 = IMAGE_BASE + 3 * PAGE_SIZE + 100;

// --- the machine ------------------------------------------------------

/// Why the test memory refused a write.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The write of this number (from 0) was refused; it was to `mfn`.
    Write { n: usize, mfn: u64 },
    /// The hypervisor's L4 slots cannot be written.
    Slots,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Write { n, mfn } => write!(f, "write {n} (to frame {mfn:#x}) refused"),
            Refusal::Slots => f.write_str("the hypervisor's slots cannot be written"),
        }
    }
}

/// The hypervisor's L4 entries in the tests: present, writable, pointing
/// at frames far beyond the machine (the rules never look at them).
fn hv_slot(i: usize) -> u64 {
    ((0xf_0000 + i as u64) << 12) | pte::PRESENT | pte::WRITABLE
}

/// Guest memory: frames backed as they are written (`SimMemory`), the
/// writes counted and one of them refused if asked, the hypervisor slots
/// and the free heap as set.
struct TestMemory {
    frames: SimMemory,
    writes: usize,
    refuse_write: Option<usize>,
    refuse_slots: bool,
    heap_free: u64,
}

impl TestMemory {
    fn new() -> TestMemory {
        TestMemory {
            frames: SimMemory::new(),
            writes: 0,
            refuse_write: None,
            refuse_slots: false,
            heap_free: 64 << 20,
        }
    }

    /// Fills `mfns` with bytes that are not zero, as frames a domain gave
    /// back hold.
    fn dirty(&mut self, mfns: core::ops::Range<u64>) {
        for mfn in mfns {
            self.frames
                .table_mut(Mfn(mfn))
                .as_mut_bytes()
                .copy_from_slice(&pattern(mfn as u8, PAGE_SIZE as usize));
        }
    }

    fn bytes(&self, maddr: u64, len: usize) -> &[u8] {
        let table = self
            .frames
            .table(Mfn(maddr >> 12))
            .expect("a written frame");
        let offset = (maddr % PAGE_SIZE) as usize;
        &table.as_bytes()[offset..offset + len]
    }
}

impl PageTableReader for TestMemory {
    fn read_table(&self, mfn: Mfn) -> &[u64; 512] {
        self.frames.read_table(mfn)
    }
}

impl GuestMemory for TestMemory {
    type Error = Refusal;

    fn write(&mut self, maddr: u64, bytes: &[u8]) -> Result<(), Refusal> {
        let (mfn, offset) = (maddr >> 12, (maddr % PAGE_SIZE) as usize);
        assert!(
            offset + bytes.len() <= PAGE_SIZE as usize,
            "a write across frames"
        );
        let n = self.writes;
        self.writes += 1;
        if self.refuse_write == Some(n) {
            return Err(Refusal::Write { n, mfn });
        }
        self.frames.table_mut(Mfn(mfn)).as_mut_bytes()[offset..offset + bytes.len()]
            .copy_from_slice(bytes);
        Ok(())
    }

    fn zero(&mut self, maddr: u64, len: u64) -> Result<(), Refusal> {
        for at in (maddr..maddr + len).step_by(PAGE_SIZE as usize) {
            let n = (PAGE_SIZE - at % PAGE_SIZE).min(maddr + len - at);
            self.write(at, &vec![0; n as usize])?;
        }
        Ok(())
    }

    fn install_hv_slots(&mut self, l4: Mfn) -> Result<(), Refusal> {
        if self.refuse_slots {
            return Err(Refusal::Slots);
        }
        let table = self.frames.table_mut(l4);
        for (i, entry) in table[HV_L4_FIRST_SLOT..].iter_mut().enumerate() {
            *entry = hv_slot(i);
        }
        Ok(())
    }

    fn heap_free(&self) -> u64 {
        self.heap_free
    }
}

/// Where the test machine's free frames start: below is firmware.
const FIRST_FREE: u64 = 0x100;

/// A machine whose page allocator has `free` frames from [`FIRST_FREE`],
/// lowest handed out first, with a region above them.
struct Machine {
    ram: Vec<MfnRange>,
    region: MfnRange,
    reserved: Vec<MfnRange>,
    frametable: Vec<FrameInfo>,
    m2p: Vec<u64>,
    pages: PageAllocator,
    memory: TestMemory,
}

impl Machine {
    fn new(free: u64) -> Machine {
        let region = MfnRange::new(Mfn(FIRST_FREE + free), 0x100);
        let end = region.end();
        let mut pages = PageAllocator::new(end);
        pages.release(MfnRange::new(Mfn(FIRST_FREE), free));
        Machine {
            ram: vec![MfnRange::new(Mfn(0), end)],
            region,
            reserved: vec![MfnRange::new(Mfn(0), FIRST_FREE)],
            frametable: vec![FrameInfo::UNOWNED; end as usize],
            m2p: vec![M2P_INVALID; end as usize],
            pages,
            memory: TestMemory::new(),
        }
    }

    fn build(&mut self, spec: &Spec<'_>) -> Result<Built, BuildError<Refusal>> {
        let mut parts = MemParts {
            layout: MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap(),
            frametable: &mut self.frametable,
            m2p: &mut self.m2p,
            pages: &mut self.pages,
        };
        build(spec, &mut parts, &mut self.memory)
    }

    /// Destroys domain `id` the way the hypervisor does.
    fn release(&mut self, id: DomId, p2m: &[u64]) -> Result<u64, OpError> {
        MemParts {
            layout: MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap(),
            frametable: &mut self.frametable,
            m2p: &mut self.m2p,
            pages: &mut self.pages,
        }
        .release_domain(id, p2m)
    }

    /// Everything a build may change, to compare before and after.
    fn snapshot(&self) -> (Vec<FrameInfo>, Vec<u64>, Vec<MfnRange>) {
        (
            self.frametable.clone(),
            self.m2p.clone(),
            self.pages.free_runs().collect(),
        )
    }

    /// The physical address `va` maps to in the tables under `cr3`, with
    /// the L1 entry's flags.
    fn translate(&self, cr3: Mfn, va: u64) -> Option<(u64, u64)> {
        let mut table = cr3;
        for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
            let entry = self.memory.read_table(table)[level.index(va)];
            if entry & pte::PRESENT == 0 {
                return None;
            }
            if level == Level::L1 {
                return Some(((entry & ADDR_MASK) | (va % PAGE_SIZE), entry & !ADDR_MASK));
            }
            table = Mfn((entry & ADDR_MASK) >> 12);
        }
        None
    }
}

fn spec<'a>(image: &'a [u8], pages: u64) -> Spec<'a> {
    Spec {
        id: DomId(3),
        name: "domu",
        image,
        pages,
        privileged: false,
        cmdline: "count=3 mode=check",
        hole: Hole::DEFAULT,
    }
}

// --- the plan ---------------------------------------------------------

type Plan = Result<Layout, BuildError<Refusal>>;

/// dom0's memory (`lifecycle::DOM0_KIB`, 8 MiB) in pages.
const DOM0_PAGES: u64 = 2048;

#[test]
fn the_layouts_of_a_domu_dom0_and_a_1_gib_domain() {
    // (pages, where the image ends), then the layout's parts: mfn list,
    // image, stack (first gpfn, pages); physmap L1s and L2s; first table,
    // tables, first free gpfn.
    let cases = [
        // A 4 MiB domU of the test image (4 pages).
        (
            (1024, IMAGE_END),
            ((1, 2), (3, 4), (7, 16)),
            (2, 1),
            (23, 10, 33),
        ),
        // dom0 with a one-page image.
        (
            (DOM0_PAGES, IMAGE_BASE + 1),
            ((1, 4), (5, 1), (6, 16)),
            (4, 1),
            (22, 12, 34),
        ),
        // 1 GiB with the largest image, 2 MiB.
        (
            (1 << 18, IMAGE_LIMIT),
            ((1, 512), (513, 512), (1025, 16)),
            (512, 1),
            (1041, 520, 1561),
        ),
    ];
    for ((pages, image_end), (mfn_list, image, stack), (l1, l2), (pt_first, count, free)) in cases {
        let layout: Plan = plan(pages, image_end);
        assert_eq!(
            layout.unwrap(),
            Layout {
                mfn_list,
                image,
                stack,
                // Start info and stack, the image, the window.
                l1_low: vec![1, 2, 3],
                l1_physmap: l1,
                l2_physmap: l2,
                pt_first,
                // The low L1s and the physmap's, the low L2 and the
                // physmap's, two L3s, the L4.
                pt_count: count,
                first_free: free,
            },
            "{pages} pages"
        );
        assert_eq!(count, 3 + l1 + 1 + l2 + 2 + 1);
    }
}

#[test]
fn a_physmap_past_512_l1s_takes_a_second_l2() {
    let layout: Plan = plan((1 << 18) + 1, IMAGE_END);
    let layout = layout.unwrap();
    assert_eq!(layout.mfn_list, (1, 513));
    assert_eq!((layout.l1_physmap, layout.l2_physmap), (513, 2));
    assert_eq!(layout.pt_count, 3 + 513 + 1 + 2 + 2 + 1);
}

#[test]
fn the_smallest_domain_that_fits_and_one_page_less() {
    // One page of mfn list, one of image, 16 of stack, 9 tables, 16 free.
    let layout: Plan = plan(44, IMAGE_BASE + 1);
    assert_eq!(layout.unwrap().first_free, 28);
    let refused: Plan = plan(43, IMAGE_BASE + 1);
    let e = refused.unwrap_err();
    assert!(matches!(
        e,
        BuildError::TooSmall {
            pages: 43,
            needed: 44
        }
    ));
    assert_eq!(
        e.to_string(),
        "43 pages is too little memory: at least 44 are needed"
    );
    // A larger image needs more.
    let refused: Plan = plan(44, IMAGE_END);
    assert!(matches!(
        refused,
        Err(BuildError::TooSmall {
            pages: 44,
            needed: 47
        })
    ));
    for pages in [1, 16, 28] {
        let refused: Plan = plan(pages, IMAGE_BASE + 1);
        assert!(matches!(
            refused,
            Err(BuildError::TooSmall { needed: 44, .. })
        ));
    }
    // No pages: no mfn list page nor physmap table, still far too small.
    let refused: Plan = plan(0, IMAGE_BASE + 1);
    assert!(matches!(
        refused,
        Err(BuildError::TooSmall {
            pages: 0,
            needed: 41
        })
    ));
}

proptest::proptest! {
    /// For any size that fits: the parts follow each other from gpfn 1,
    /// the tables are counted once each, the physmap covers every page,
    /// and 16 pages are left free.
    #[test]
    fn every_layout_that_fits_is_contiguous_and_leaves_16_pages(
        pages in 44u64..600_000,
        image_len in 1u64..=IMAGE_LIMIT - IMAGE_BASE,
    ) {
        let image_end = IMAGE_BASE + image_len;
        let planned: Plan = plan(pages, image_end);
        let Ok(l) = planned else {
            let needed = match planned {
                Err(BuildError::TooSmall { needed, .. }) => needed,
                _ => unreachable!(),
            };
            proptest::prop_assert!(pages < needed);
            return Ok(());
        };
        proptest::prop_assert_eq!(l.mfn_list.0, 1);
        proptest::prop_assert!(l.mfn_list.1 * 512 >= pages && (l.mfn_list.1 - 1) * 512 < pages);
        proptest::prop_assert_eq!(l.image, (l.mfn_list.0 + l.mfn_list.1, image_len.div_ceil(PAGE_SIZE)));
        proptest::prop_assert_eq!(l.stack, (l.image.0 + l.image.1, STACK_PAGES));
        proptest::prop_assert_eq!(l.pt_first, l.stack.0 + l.stack.1);
        proptest::prop_assert!(l.l1_physmap * 512 >= pages && (l.l1_physmap - 1) * 512 < pages);
        proptest::prop_assert_eq!(l.l2_physmap, l.l1_physmap.div_ceil(512));
        proptest::prop_assert_eq!(l.l1_low.clone(), vec![1, 2, 3]);
        proptest::prop_assert_eq!(l.pt_count, 3 + l.l1_physmap + 1 + l.l2_physmap + 2 + 1);
        proptest::prop_assert_eq!(l.first_free, l.pt_first + l.pt_count);
        proptest::prop_assert!(l.first_free + MIN_FREE_PAGES <= pages);
    }
}

// --- whole guests -----------------------------------------------------

#[test]
fn a_built_guest_is_what_its_start_info_says() {
    let image = guest_image();
    let mut m = Machine::new(2000);
    // The frames hold what their last user left.
    m.memory.dirty(FIRST_FREE..FIRST_FREE + 2000);
    let pages = 1024;
    let built = m.build(&spec(&image, pages)).unwrap();
    let layout: Plan = plan(pages, IMAGE_END);
    let layout = layout.unwrap();
    assert_eq!(built.p2m.hole(), Hole::DEFAULT);
    let p2m = built.p2m.ram();
    assert_eq!(p2m.len() as u64, pages);
    assert_eq!(built.p2m.frames(), pages);
    assert_eq!(built.p2m.limit(), 1280);
    assert_eq!(built.start_info, Gpfn(START_INFO_GPFN));
    let l4 = Mfn(p2m[(layout.first_free - 1) as usize]);

    // The vCPU starts at the entry in ring 3, on the stack, the start info
    // in rdi, on the L4.
    let ctx = built.vcpu;
    assert_eq!(
        (ctx.rip, ctx.rsp, ctx.regs.rdi, ctx.cr3),
        (ENTRY, STACK_TOP, START_INFO_VA, l4)
    );
    assert_eq!(
        ctx.rflags,
        hvlu_types::regs::rflags::IF | hvlu_types::regs::rflags::RESERVED_ONE
    );

    // The start info, read through the guest's own tables.
    let (si_addr, si_flags) = m.translate(l4, START_INFO_VA).unwrap();
    assert_eq!(si_addr, p2m[0] << 12);
    assert_eq!(si_flags, DATA_FLAGS_RW);
    let window_l1 = p2m[(layout.pt_first + 2) as usize];
    let mut expected = StartInfo {
        magic: START_INFO_MAGIC,
        domid: 3,
        flags: 0,
        nr_pages: pages,
        mfn_list_gpfn: 1,
        pt_first_gpfn: layout.pt_first,
        pt_count: layout.pt_count,
        l4_mfn: l4.0,
        first_free_gpfn: layout.first_free,
        window_va: WINDOW_VA,
        window_pte_maddr: (window_l1 << 12) + 8 * ((WINDOW_VA >> 12) & 511),
        ..StartInfo::default()
    };
    expected.cmdline[..18].copy_from_slice(b"count=3 mode=check");
    let size = core::mem::size_of::<StartInfo>();
    assert_eq!(m.memory.bytes(si_addr, size), expected.as_bytes());
    // The rest of the page is zero, whatever the frame held before.
    assert!(m
        .memory
        .bytes(si_addr + size as u64, PAGE_SIZE as usize - size)
        .iter()
        .all(|&b| b == 0));

    // The mfn list.
    for gpfn in 0..pages {
        let at = (p2m[(1 + gpfn / 512) as usize] << 12) + 8 * (gpfn % 512);
        let mfn = u64::from_le_bytes(m.memory.bytes(at, 8).try_into().unwrap());
        assert_eq!(mfn, p2m[gpfn as usize], "mfn list entry {gpfn}");
    }

    // The image: its bytes where the segments say, zeros after them, the
    // code executable and read-only, the data writable and not executable.
    let code = pattern(1, 6000);
    let data = pattern(2, 100);
    for (va, byte) in (IMAGE_BASE..)
        .zip(&code)
        .chain((IMAGE_BASE + 2 * PAGE_SIZE..).zip(&data))
    {
        let (addr, _) = m.translate(l4, va).unwrap();
        assert_eq!(m.memory.bytes(addr, 1), [*byte], "at {va:#x}");
    }
    for va in [
        IMAGE_BASE + 6000,
        IMAGE_BASE + 2 * PAGE_SIZE + 100,
        IMAGE_END - 1,
    ] {
        let (addr, _) = m.translate(l4, va).unwrap();
        assert_eq!(m.memory.bytes(addr, 1), [0], "at {va:#x}");
    }
    assert_eq!(
        m.translate(l4, IMAGE_BASE).unwrap().1,
        pte::PRESENT | pte::USER
    );
    assert_eq!(
        m.translate(l4, IMAGE_BASE + 2 * PAGE_SIZE).unwrap().1,
        DATA_FLAGS_RW
    );
    let past = IMAGE_BASE + 4 * PAGE_SIZE;
    assert_eq!(m.translate(l4, past), None, "nothing past the image");

    // The stack, writable, right below its top.
    for p in 1..=STACK_PAGES {
        let (addr, flags) = m.translate(l4, STACK_TOP - p * PAGE_SIZE).unwrap();
        assert_eq!(addr, p2m[(layout.stack.0 + STACK_PAGES - p) as usize] << 12);
        assert_eq!(flags, DATA_FLAGS_RW);
    }
    assert_eq!(
        m.translate(l4, STACK_TOP - (STACK_PAGES + 1) * PAGE_SIZE),
        None
    );

    // The physmap: every page at its gpfn, the tables read-only.
    for gpfn in 0..pages {
        let (addr, flags) = m.translate(l4, PHYSMAP_VA + gpfn * PAGE_SIZE).unwrap();
        assert_eq!(addr, p2m[gpfn as usize] << 12);
        let table = (layout.pt_first..layout.first_free).contains(&gpfn);
        let expected = if table { DATA_FLAGS_RO } else { DATA_FLAGS_RW };
        assert_eq!(flags, expected, "physmap of gpfn {gpfn}");
    }
    assert_eq!(m.translate(l4, PHYSMAP_VA + pages * PAGE_SIZE), None);

    // The window is empty, its entry where the start info says.
    assert_eq!(m.translate(l4, WINDOW_VA), None);

    // The hypervisor's half of the L4, as the memory gave it.
    let l4_entries = m.memory.read_table(l4);
    for (i, &e) in l4_entries[HV_L4_FIRST_SLOT..].iter().enumerate() {
        assert_eq!(e, hv_slot(i));
    }
    // And nothing else in the guest half but the low area and the physmap.
    let used: Vec<usize> = (0..HV_L4_FIRST_SLOT)
        .filter(|&i| l4_entries[i] != 0)
        .collect();
    assert_eq!(used, vec![0, (PHYSMAP_VA >> 39) as usize]);
}

const DATA_FLAGS_RW: u64 = pte::PRESENT | pte::WRITABLE | pte::USER | pte::NO_EXECUTE;
const DATA_FLAGS_RO: u64 = pte::PRESENT | pte::USER | pte::NO_EXECUTE;

#[test]
fn a_built_domain_has_the_frametable_the_pass_rebuilds() {
    let image = guest_image();
    let small = Hole::new(hvlu_types::hole::MIN_HOLE).unwrap();
    // The last: RAM from 4 GiB in gpfn space, past a hole at 16 MiB.
    for (pages, hole) in [
        (44 + 3, Hole::DEFAULT),
        (600, Hole::DEFAULT),
        (DOM0_PAGES, Hole::DEFAULT),
        (small.start().0 + 600, small),
    ] {
        let frames = pages.max(DOM0_PAGES) + 100;
        let mut m = Machine::new(frames);
        m.memory.dirty(FIRST_FREE..FIRST_FREE + pages);
        let built = m
            .build(&Spec {
                hole,
                ..spec(&image, pages)
            })
            .unwrap();
        // Every frame at the gpfn of its RAM index, in the M2P too.
        for (i, &mfn) in built.p2m.ram().iter().enumerate() {
            let gpfn = hole.gpfn_of(i as u64).unwrap();
            assert!(!hole.contains(gpfn));
            assert_eq!(m.m2p[mfn as usize], gpfn.0, "page {i}");
        }
        let layout: Plan = plan(pages, IMAGE_END);
        let layout = layout.unwrap();

        // The pass over the domain's runs, its L4 pinned and in one CR3,
        // on a fresh frametable.
        let l4 = built.vcpu.cr3;
        let runs = old_hv::domain::ram_runs_to_gpfns(
            frame_ownership::p2m_runs(built.p2m.ram(), tables::table_kinds(&layout)),
            built.p2m.hole(),
        );
        let (pinned, cr3) = ([(l4, RunKind::L4)], [l4]);
        let view = frame_ownership::DomainView::new(DomId(3), &runs, &[], &pinned, &cr3);
        let mut frametable = vec![FrameInfo::UNOWNED; m.frametable.len()];
        let mut m2p = vec![M2P_INVALID; m.m2p.len()];
        let layout_of_machine = MachineLayout::new(&m.ram, m.region, &m.reserved).unwrap();
        let report = frame_ownership::rebuild(
            &layout_of_machine,
            &[view],
            &m.memory,
            &mut frametable,
            &mut m2p,
        )
        .unwrap();
        assert_eq!(report.frames_owned, pages);
        assert_eq!(
            report.domains[0].tables.iter().sum::<u64>(),
            layout.pt_count
        );
        assert!(
            frametable == m.frametable,
            "{pages} pages: the frametables differ"
        );
        assert!(m2p == m.m2p, "{pages} pages: the M2Ps differ");

        // Every frame the domain has is out of the page allocator.
        assert_eq!(m.pages.free_frames(), frames - pages);
        for mfn in built.p2m.mfns() {
            assert!(m.frametable[mfn as usize].is_owned_by(DomId(3)));
        }
    }
}

#[test]
fn a_destroyed_domain_leaves_the_machine_as_it_was() {
    let image = guest_image();
    let mut m = Machine::new(800);
    let before = m.snapshot();
    let built = m.build(&spec(&image, 700)).unwrap();
    assert_ne!(m.snapshot(), before);
    assert_eq!(m.release(DomId(3), built.p2m.ram()), Ok(700));
    assert_eq!(m.snapshot(), before);
}

#[test]
fn domains_built_one_after_another_get_disjoint_frames() {
    let image = guest_image();
    let mut m = Machine::new(500);
    let a = m.build(&spec(&image, 200)).unwrap();
    let b = m
        .build(&Spec {
            id: DomId(4),
            privileged: true,
            ..spec(&image, 200)
        })
        .unwrap();
    assert!(a.p2m.mfns().all(|mfn| !b.p2m.ram().contains(&mfn)));
    assert_eq!(m.pages.free_frames(), 100);
    // A third does not fit: refused before any frame is taken.
    let before = m.snapshot();
    let e = m
        .build(&Spec {
            id: DomId(5),
            ..spec(&image, 200)
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "200 pages asked for, 100 free");
    assert_eq!(m.snapshot(), before);
    // dom0's start info says it is privileged.
    let (si, _) = m.translate(b.vcpu.cr3, START_INFO_VA).unwrap();
    let at = si + core::mem::offset_of!(StartInfo, flags) as u64;
    let flags = u64::from_le_bytes(m.memory.bytes(at, 8).try_into().unwrap());
    assert_eq!(flags, SIF_PRIVILEGED);
}

#[test]
fn a_long_command_line_is_cut_to_what_the_start_info_holds() {
    let image = guest_image();
    let mut m = Machine::new(200);
    let long = "x".repeat(300);
    let built = m
        .build(&Spec {
            cmdline: &long,
            ..spec(&image, 100)
        })
        .unwrap();
    let (si, _) = m.translate(built.vcpu.cr3, START_INFO_VA).unwrap();
    let at = si + core::mem::offset_of!(StartInfo, cmdline) as u64;
    let n = pv_abi::start_info::CMDLINE_BYTES;
    let cmdline = m.memory.bytes(at, n);
    assert!(cmdline[..n - 1].iter().all(|&b| b == b'x'));
    assert_eq!(cmdline[n - 1], 0, "ends with a NUL");
}

// --- refusals before any frame is taken -------------------------------

/// Builds `image` with `pages` on a machine with `free` frames and a heap
/// of `heap` bytes free; the refusal, after checking that nothing changed.
fn refusal(image: &[u8], pages: u64, free: u64, heap: u64) -> BuildError<Refusal> {
    let mut m = Machine::new(free);
    m.memory.heap_free = heap;
    let before = m.snapshot();
    let e = m.build(&spec(image, pages)).unwrap_err();
    assert_eq!(m.snapshot(), before, "a refusal ({e}) changed the machine");
    e
}

#[test]
fn sizes_that_do_not_fit_are_refused_with_both_numbers() {
    let image = guest_image();
    let e = refusal(&image, 46, 1000, 64 << 20);
    assert_eq!(
        e.to_string(),
        "46 pages is too little memory: at least 47 are needed"
    );
    let e = refusal(&image, 1001, 1000, 64 << 20);
    assert!(matches!(
        e,
        BuildError::NoMemory {
            pages: 1001,
            free: 1000
        }
    ));
    // 1000 pages: a limit of 1250 frames, 15000 bytes, plus 256 KiB.
    let e = refusal(&image, 1000, 1000, 256 << 10);
    assert!(matches!(
        e,
        BuildError::NoHeap(heap::Exhausted {
            needed: 277_144,
            free: 262_144
        })
    ));
    assert_eq!(
        e.to_string(),
        "its p2m and free-gpfn list and 256 KiB of headroom do not fit: \
         the hypervisor heap cannot hold 271 KiB (256 KiB free)"
    );
    // Exactly enough heap and frames: built.
    let mut m = Machine::new(1000);
    m.memory.heap_free = 277_144;
    assert!(m.build(&spec(&image, 1000)).is_ok());
}

#[test]
fn images_that_are_not_guests_are_refused() {
    let segment = |vaddr, bytes: usize, memsz| Segment {
        vaddr,
        flags: PF_R | PF_X,
        bytes: pattern(5, bytes),
        memsz,
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"not an ELF file at all".to_vec(),
            "bad guest image: not a parsable ELF file",
        ),
        (
            elf_file(false, elf::EM_386.0, ENTRY, &[segment(IMAGE_BASE, 64, 64)]),
            "bad guest image: not an x86_64 ELF64 image",
        ),
        (
            elf_file(
                true,
                elf::EM_AARCH64.0,
                ENTRY,
                &[segment(IMAGE_BASE, 64, 64)],
            ),
            "bad guest image: not an x86_64 ELF64 image",
        ),
        (
            // An image spans at least a page.
            elf_file(
                true,
                elf::EM_X86_64.0,
                IMAGE_BASE + PAGE_SIZE,
                &[segment(IMAGE_BASE, 64, 64)],
            ),
            "bad guest image: the entry point is outside the image",
        ),
        (
            elf_file(
                true,
                elf::EM_X86_64.0,
                IMAGE_BASE - 1,
                &[segment(IMAGE_BASE, 64, 64)],
            ),
            "bad guest image: the entry point is outside the image",
        ),
        (
            elf_file(
                true,
                elf::EM_X86_64.0,
                ENTRY,
                &[segment(IMAGE_BASE - PAGE_SIZE, 64, 64)],
            ),
            "segment at 0x3ff000 (0x40 bytes) is outside 0x400000..0x600000",
        ),
        (
            elf_file(
                true,
                elf::EM_X86_64.0,
                ENTRY,
                &[segment(IMAGE_LIMIT - 32, 64, 64)],
            ),
            "segment at 0x5fffe0 (0x40 bytes) is outside 0x400000..0x600000",
        ),
        (
            elf_file(
                true,
                elf::EM_X86_64.0,
                ENTRY,
                &[segment(IMAGE_BASE, 64, u64::MAX)],
            ),
            "segment at 0x400000 (0xffffffffffffffff bytes) is outside 0x400000..0x600000",
        ),
        (
            // More bytes in the file than in memory.
            elf_file(
                true,
                elf::EM_X86_64.0,
                ENTRY,
                &[segment(IMAGE_BASE, 64, 32)],
            ),
            "segment at 0x400000 (0x20 bytes) is outside 0x400000..0x600000",
        ),
    ];
    for (image, message) in cases {
        assert_eq!(refusal(&image, 100, 200, 64 << 20).to_string(), message);
    }
    // A segment whose bytes lie beyond the end of the file.
    let mut image = guest_image();
    image.truncate(image.len() - 50);
    assert_eq!(
        refusal(&image, 100, 200, 64 << 20).to_string(),
        "bad guest image: a segment lies beyond the end of the file"
    );
}

// --- failures once frames are taken -------------------------------------

#[test]
fn a_frame_the_frametable_says_is_taken_stays_out_and_the_rest_go_back() {
    // The page allocator and the frametable disagree about one frame:
    // domain 9 owns it, yet the allocator would hand it out as the 11th.
    let image = guest_image();
    let mut m = Machine::new(300);
    let taken = Mfn(FIRST_FREE + 10);
    let nine = DomainContext::new(DomId(9), &[]).unwrap();
    let layout = MachineLayout::new(&m.ram, m.region, &m.reserved).unwrap();
    frame_ownership::claim_data(
        &layout,
        &mut m.frametable,
        &mut m.m2p,
        &nine,
        taken,
        Gpfn(0),
    )
    .unwrap();
    let (frametable, m2p, _) = m.snapshot();

    let e = m.build(&spec(&image, 200)).unwrap_err();
    assert!(
        matches!(e, BuildError::Refused(OpError::AlreadyOwned { mfn, owner, .. })
            if mfn == taken && owner == DomId(9)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "the frametable refused the new domain: {}",
            OpError::AlreadyOwned {
                domain: DomId(3),
                mfn: taken,
                owner: DomId(9)
            }
        )
    );
    // The ten frames claimed before it are free again, the frametable and
    // the M2P as they were (domain 9's frame untouched); the refused frame
    // stays out of the allocator.
    assert!(m.frametable == frametable && m2p == m.m2p);
    assert_eq!(m.pages.free_frames(), 299);
    assert_eq!(
        m.pages.free_runs().collect::<Vec<_>>(),
        vec![
            MfnRange::new(Mfn(FIRST_FREE), 10),
            MfnRange::new(Mfn(taken.0 + 1), 289)
        ]
    );
}

#[test]
fn a_write_refused_at_any_point_gives_every_frame_back() {
    let image = guest_image();
    let pages = 600;
    // How many writes a build makes: zeroes, image, mfn list, tables,
    // start info (the last).
    let mut m = Machine::new(1000);
    m.build(&spec(&image, pages)).unwrap();
    let writes = m.memory.writes;
    assert!(writes > pages as usize);
    for n in [0, 1, pages as usize, writes / 2, writes - 2, writes - 1] {
        let mut m = Machine::new(1000);
        let before = m.snapshot();
        m.memory.refuse_write = Some(n);
        let e = m.build(&spec(&image, pages)).unwrap_err();
        let BuildError::Memory(Refusal::Write { n: refused, mfn }) = e else {
            panic!("write {n}: {e:?}");
        };
        assert_eq!(refused, n);
        assert_eq!(
            e.to_string(),
            format!("cannot write guest memory: write {n} (to frame {mfn:#x}) refused")
        );
        assert_eq!(m.snapshot(), before, "write {n}: not everything went back");
        // The same machine builds the domain once writes work.
        m.memory.refuse_write = None;
        assert!(m.build(&spec(&image, pages)).is_ok());
    }
}

#[test]
fn hypervisor_slots_that_cannot_be_written_give_every_frame_back() {
    let image = guest_image();
    let mut m = Machine::new(300);
    m.memory.refuse_slots = true;
    let before = m.snapshot();
    let e = m.build(&spec(&image, 256)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot write guest memory: the hypervisor's slots cannot be written"
    );
    assert_eq!(m.snapshot(), before);
}

/// HVM guests (`super::hvm`): an image at 1 MiB guest-physical.
mod hvm_guests {
    use super::*;
    use crate::domain::builder::hvm::{build as build_hvm, BuiltHvm};
    use crate::domain::npt::{NptError, RAM_FLAGS};
    use pv_abi::start_info::{HVM_IMAGE_BASE, HVM_START_INFO_GPA, SIF_HVM};

    const HVM_ENTRY: u64 = HVM_IMAGE_BASE + 0x20;

    fn hvm_image(base: u64) -> Vec<u8> {
        elf_file(
            true,
            elf::EM_X86_64.0,
            base + 0x20,
            &[Segment {
                vaddr: base,
                flags: PF_R | PF_X | PF_W,
                bytes: pattern(7, 5000),
                memsz: 3 * PAGE_SIZE,
            }],
        )
    }

    fn spec(image: &[u8], pages: u64) -> Spec<'_> {
        Spec {
            id: DomId(3),
            name: "hvm",
            image,
            pages,
            privileged: false,
            cmdline: "dirty",
            hole: Hole::DEFAULT,
        }
    }

    impl Machine {
        fn build_hvm(&mut self, spec: &Spec<'_>) -> Result<BuiltHvm, BuildError<Refusal>> {
            let mut parts = MemParts {
                layout: MachineLayout::new(&self.ram, self.region, &self.reserved).unwrap(),
                frametable: &mut self.frametable,
                m2p: &mut self.m2p,
                pages: &mut self.pages,
            };
            build_hvm(spec, &mut parts, &mut self.memory)
        }
    }

    #[test]
    fn an_hvm_guest_gets_its_image_at_its_physical_addresses_and_nested_tables_for_all_its_ram() {
        let image = hvm_image(HVM_IMAGE_BASE);
        let mut m = Machine::new(2048);
        let b = m.build_hvm(&spec(&image, 1024)).expect("built");
        assert_eq!(b.p2m.frames(), 1024);
        // Every RAM frame, writable, at the frame the frame space says.
        for (gpfn, mfn) in b.p2m.entries() {
            assert_eq!(
                b.npt.get(&m.memory, gpfn),
                Ok(Mfn(mfn).addr() | RAM_FLAGS),
                "{gpfn:?}"
            );
        }
        // Nothing beyond it, nothing in the hole.
        assert_eq!(b.npt.get(&m.memory, Gpfn(1024)), Ok(0));
        assert_eq!(b.npt.get(&m.memory, Gpfn(0xc0000)), Ok(0));
        // Five table frames for 4 MiB (an L4, an L3, an L2, two L1s),
        // none of them a frame of the guest's.
        assert_eq!(b.npt.tables().len(), 5);
        assert!(b
            .npt
            .tables()
            .iter()
            .all(|t| b.p2m.mfns().all(|m| m != t.0)));
        // The image's bytes at 1 MiB, page by page.
        let bytes = pattern(7, 5000);
        let mfn = |gpa: u64| b.p2m.get(Gpfn(gpa / PAGE_SIZE)).unwrap();
        assert_eq!(
            m.memory.bytes(mfn(HVM_IMAGE_BASE) << 12, 4096),
            &bytes[..4096]
        );
        assert_eq!(
            m.memory.bytes(mfn(HVM_IMAGE_BASE + PAGE_SIZE) << 12, 904),
            &bytes[4096..]
        );
        // The start-info page.
        let si_bytes = m
            .memory
            .bytes(mfn(HVM_START_INFO_GPA) << 12, size_of::<StartInfo>());
        let word =
            |offset: usize| u64::from_le_bytes(si_bytes[offset..offset + 8].try_into().unwrap());
        let field = |f: fn(&StartInfo) -> &u64| {
            let si = StartInfo::default();
            (f(&si) as *const u64 as usize) - (&si as *const StartInfo as usize)
        };
        assert_eq!(word(field(|s| &s.flags)) & SIF_HVM, SIF_HVM);
        assert_eq!(word(field(|s| &s.nr_pages)), 1024);
        assert_eq!(
            word(field(|s| &s.first_free_gpfn)),
            (HVM_IMAGE_BASE + 3 * PAGE_SIZE) / PAGE_SIZE
        );
        assert_eq!(
            word(field(|s| &s.l4_mfn)),
            0,
            "an HVM guest never sees a machine frame"
        );
        // The boot contract.
        assert_eq!(b.vcpu.rip, HVM_ENTRY);
        assert_eq!(b.vcpu.regs.rbx, HVM_START_INFO_GPA);
        assert_eq!(b.vcpu.cr0 & 0x8000_0001, 1, "protected mode, paging off");
        assert_eq!(b.vcpu.efer, 0);
    }

    #[test]
    fn an_hvm_image_outside_its_ram_or_too_large_is_refused_and_nothing_is_taken() {
        let mut m = Machine::new(2048);
        let before = m.snapshot();
        let low = hvm_image(0x8000);
        assert!(matches!(
            m.build_hvm(&spec(&low, 1024)),
            Err(BuildError::HvmSegmentOutOfRange { paddr: 0x8000, .. })
        ));
        let high = hvm_image(HVM_IMAGE_BASE);
        assert!(matches!(
            m.build_hvm(&spec(&high, 256)),
            Err(BuildError::HvmSegmentOutOfRange { .. })
        ));
        assert!(matches!(
            m.build_hvm(&spec(&high, 260)),
            Err(BuildError::TooSmall { .. })
        ));
        assert_eq!(m.snapshot(), before);
    }

    #[test]
    fn an_hvm_guest_whose_nested_tables_find_no_frame_gives_every_frame_back() {
        let image = hvm_image(HVM_IMAGE_BASE);
        // Exactly the guest's frames: none left for the tables.
        let mut m = Machine::new(1024);
        let before = m.snapshot();
        assert!(matches!(
            m.build_hvm(&spec(&image, 1024)),
            Err(BuildError::Npt(NptError::NoFrame))
        ));
        assert_eq!(m.snapshot(), before);
    }
}
