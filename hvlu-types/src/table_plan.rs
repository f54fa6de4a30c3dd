//! Table plans: an address space as a list of mappings, how many table
//! frames building it takes, and the one walker that builds it.
//!
//! Both sets of page tables the hypervisor builds for itself — its own
//! (the direct map, the local APIC page, the image by section) and the
//! entry tables of a live update (the new image's segments, the direct map,
//! the trampoline) — are a plan of [`Map`]s. [`frames`] counts the table
//! frames [`build`] takes for a plan in an empty root, exactly: the sizes
//! the boot and the staging area reserve are this count, so a plan cannot
//! outgrow the frames set aside for it unless it is built into a root that
//! already has tables (then it takes fewer).
//!
//! [`build`] reaches memory only through [`TableMemory`] (a new zeroed
//! table frame, reading and writing one entry), so the same walker runs on
//! the hardware and on the host, where the tests compare its frames with
//! [`frames`] and translate addresses back through what it wrote.

use crate::canonical::is_canonical;
use crate::pte::{Level, ADDR_MASK, HUGE, PRESENT, WRITABLE};

/// One mapping of a plan: `len` bytes of virtual addresses from `va` onto
/// physical addresses from `pa`, in leaf entries of level `leaf` (L1:
/// 4 KiB pages; L2: 2 MiB, L3: 1 GiB huge pages), each carrying `flags`
/// (`PRESENT`, and `HUGE` above L1, are added; address bits are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Map {
    /// The first virtual address.
    pub va: u64,
    /// The physical address `va` maps to.
    pub pa: u64,
    /// Bytes mapped: a whole number of `leaf` pages, at least one.
    pub len: u64,
    /// The level of the leaf entries.
    pub leaf: Level,
    /// The leaf entries' flags.
    pub flags: u64,
}

impl Map {
    /// `len` bytes at `va` onto `pa` in 4 KiB pages.
    pub const fn small(va: u64, pa: u64, len: u64, flags: u64) -> Map {
        Map {
            va,
            pa,
            len,
            leaf: Level::L1,
            flags,
        }
    }

    /// `len` bytes at `va` onto `pa` in 2 MiB pages.
    pub const fn huge(va: u64, pa: u64, len: u64, flags: u64) -> Map {
        Map {
            va,
            pa,
            len,
            leaf: Level::L2,
            flags,
        }
    }

    /// The last virtual address it maps (`len` is at least one page), or
    /// the last address there is for a mapping that runs past it.
    const fn last(&self) -> u64 {
        self.va.saturating_add(self.len.saturating_sub(1))
    }

    /// Whether it is well formed: a leaf level that can hold pages, `va`,
    /// `pa` and `len` multiples of the page, at least one page, and a
    /// virtual range on one side of the non-canonical hole.
    fn check(&self) -> Result<(), PlanError> {
        let page = self.leaf.entry_span();
        let bad = PlanError::Malformed { map: *self };
        if self.leaf == Level::L4
            || self.len == 0
            || !self.va.is_multiple_of(page)
            || !self.pa.is_multiple_of(page)
            || !self.len.is_multiple_of(page)
        {
            return Err(bad);
        }
        let last = self.va.checked_add(self.len - 1).ok_or(bad)?;
        let same_half = (self.va >> 47 == 0) == (last >> 47 == 0);
        let pa_ok = self
            .pa
            .checked_add(self.len - 1)
            .is_some_and(|l| l & !ADDR_MASK & !0xfff == 0);
        if !is_canonical(self.va) || !is_canonical(last) || !same_half || !pa_ok {
            return Err(bad);
        }
        Ok(())
    }

    fn overlaps(&self, other: &Map) -> bool {
        self.va <= other.last() && other.va <= self.last()
    }
}

/// Why a plan was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A mapping is not a whole number of aligned pages of its level, or
    /// its range crosses the non-canonical hole or the physical limit.
    #[error("mapping {map:x?} is not whole aligned pages of its level in canonical space")]
    Malformed {
        /// The mapping.
        map: Map,
    },
    /// Two mappings of the plan share virtual addresses.
    #[error("mappings at {first:#x} and {second:#x} overlap")]
    Overlap {
        /// The first mapping's address.
        first: u64,
        /// The second mapping's address.
        second: u64,
    },
    /// The root already maps `va` (a leaf, or a huge page where a table
    /// was needed): building would overwrite it.
    #[error("{va:#x} is already mapped in the root")]
    Occupied {
        /// The address.
        va: u64,
    },
}

/// Why [`build`] stopped: the plan, or the memory under the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError<E> {
    /// The plan is refused; nothing was written.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The memory refused (no frame left for a table, an unwritable
    /// frame); the root may hold part of the plan.
    #[error("{0}")]
    Memory(E),
}

/// Memory that holds page tables: what [`build`] needs from the machine.
pub trait TableMemory {
    /// Why a frame could not be had or reached.
    type Error;
    /// The physical address of a new, zeroed table frame.
    fn new_table(&mut self) -> Result<u64, Self::Error>;
    /// Entry `index` of the table at physical `table`.
    fn read_entry(&mut self, table: u64, index: usize) -> Result<u64, Self::Error>;
    /// Sets entry `index` of the table at physical `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64) -> Result<(), Self::Error>;
}

/// Checks every mapping of `plan` and that no two overlap.
pub fn check(plan: &[Map]) -> Result<(), PlanError> {
    for (i, m) in plan.iter().enumerate() {
        m.check()?;
        if let Some(o) = plan[..i].iter().find(|o| o.overlaps(m)) {
            return Err(PlanError::Overlap {
                first: o.va,
                second: m.va,
            });
        }
    }
    Ok(())
}

/// The levels of table a leaf of `leaf` needs below the root: the table
/// of level `k` holds entries that each span `Level(k).entry_span()`, so
/// one table of level `k` covers `Level(k + 1).entry_span()` bytes.
const BELOW_ROOT: [(Level, Level); 3] = [
    (Level::L1, Level::L2),
    (Level::L2, Level::L3),
    (Level::L3, Level::L4),
];

/// The table frames [`build`] takes for `plan` in an empty root (the root
/// itself not counted): for each level below the root, the number of
/// distinct tables of that level the plan's leaves fall in. Overlapping or
/// malformed plans are counted as given (`build` refuses them).
pub fn frames(plan: &[Map]) -> u64 {
    BELOW_ROOT
        .iter()
        .map(|&(table, covered_by)| {
            let unit = covered_by.entry_span();
            let spans = plan
                .iter()
                .filter(|m| m.leaf <= table && m.len > 0)
                .map(|m| (m.va / unit, m.last() / unit));
            distinct(spans)
        })
        .sum()
}

/// The number of integers in the union of the inclusive intervals
/// `spans`, in any order, without allocating: each round counts, from the
/// first integer not counted yet, the interval that reaches it first.
fn distinct<I: Iterator<Item = (u64, u64)> + Clone>(spans: I) -> u64 {
    let mut count = 0;
    let mut from = 0u64;
    loop {
        let next = spans
            .clone()
            .filter(|&(_, last)| last >= from)
            .map(|(first, last)| (first.max(from), last))
            .min();
        let Some((first, last)) = next else {
            return count;
        };
        count += last - first + 1;
        match last.checked_add(1) {
            Some(n) => from = n,
            None => return count,
        }
    }
}

/// Builds `plan` into the tables under `root` (a table frame of level 4),
/// taking new tables from `mem`; intermediate entries are present and
/// writable (the leaves decide). A plan that does not [`check`] is refused
/// before anything is written; an address already mapped under `root` is
/// refused when it is reached.
pub fn build<M: TableMemory>(
    root: u64,
    plan: &[Map],
    mem: &mut M,
) -> Result<(), BuildError<M::Error>> {
    check(plan)?;
    for m in plan {
        let page = m.leaf.entry_span();
        let huge = if m.leaf == Level::L1 { 0 } else { HUGE };
        let leaf_flags = (m.flags & !ADDR_MASK) | PRESENT | huge;
        for off in (0..m.len).step_by(page as usize) {
            let va = m.va + off;
            let table = walk(root, va, m.leaf, mem)?;
            let index = m.leaf.index(va);
            if mem.read_entry(table, index).map_err(BuildError::Memory)? & PRESENT != 0 {
                return Err(PlanError::Occupied { va }.into());
            }
            mem.write_entry(table, index, (m.pa + off) | leaf_flags)
                .map_err(BuildError::Memory)?;
        }
    }
    Ok(())
}

/// The table of level `leaf` that translates `va` under `root`, created
/// on the way where missing.
fn walk<M: TableMemory>(
    root: u64,
    va: u64,
    leaf: Level,
    mem: &mut M,
) -> Result<u64, BuildError<M::Error>> {
    let mut table = root;
    for level in [Level::L4, Level::L3, Level::L2] {
        if level <= leaf {
            break;
        }
        let index = level.index(va);
        let entry = mem.read_entry(table, index).map_err(BuildError::Memory)?;
        table = if entry & PRESENT == 0 {
            let new = mem.new_table().map_err(BuildError::Memory)?;
            mem.write_entry(table, index, new | PRESENT | WRITABLE)
                .map_err(BuildError::Memory)?;
            new
        } else if entry & HUGE != 0 {
            return Err(PlanError::Occupied { va }.into());
        } else {
            entry & ADDR_MASK
        };
    }
    Ok(table)
}

/// Where `va` leads under `root`: the physical address and the leaf's
/// flags, or `None` where nothing maps it. For tests and diagnostics.
pub fn translate<M: TableMemory>(
    root: u64,
    va: u64,
    mem: &mut M,
) -> Result<Option<(u64, u64)>, M::Error> {
    let mut table = root;
    for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
        let entry = mem.read_entry(table, level.index(va))?;
        if entry & PRESENT == 0 {
            return Ok(None);
        }
        if level == Level::L1 || entry & HUGE != 0 {
            let offset = va & (level.entry_span() - 1);
            return Ok(Some(((entry & ADDR_MASK) + offset, entry & !ADDR_MASK)));
        }
        table = entry & ADDR_MASK;
    }
    unreachable!("the L1 arm returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pte::{GLOBAL, NO_EXECUTE, TWO_MIB};
    use crate::PAGE_SIZE;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Table frames as a map from address to 512 entries, handed out from
    /// a limit.
    #[derive(Default)]
    struct Mem {
        tables: BTreeMap<u64, [u64; 512]>,
        next: u64,
        limit: Option<usize>,
    }

    #[derive(Debug, PartialEq)]
    enum MemError {
        OutOfFrames,
        NotATable(u64),
    }

    impl Mem {
        fn with_root() -> (Mem, u64) {
            let mut mem = Mem {
                next: 0x10_0000,
                ..Mem::default()
            };
            let root = mem.new_table().unwrap();
            (mem, root)
        }
    }

    impl TableMemory for Mem {
        type Error = MemError;
        fn new_table(&mut self) -> Result<u64, MemError> {
            if self.limit.is_some_and(|l| self.tables.len() >= l) {
                return Err(MemError::OutOfFrames);
            }
            let frame = self.next;
            self.next += PAGE_SIZE;
            self.tables.insert(frame, [0; 512]);
            Ok(frame)
        }
        fn read_entry(&mut self, table: u64, index: usize) -> Result<u64, MemError> {
            let t = self.tables.get(&table).ok_or(MemError::NotATable(table))?;
            Ok(t[index])
        }
        fn write_entry(&mut self, table: u64, index: usize, value: u64) -> Result<(), MemError> {
            let t = self
                .tables
                .get_mut(&table)
                .ok_or(MemError::NotATable(table))?;
            t[index] = value;
            Ok(())
        }
    }

    const DIRECT: u64 = 0xffff_8000_0000_0000;
    const IMAGE: u64 = 0xffff_ffff_8000_0000;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// A hypervisor-like address space: a direct map of 3 GiB and 1 GiB
    /// above 4 GiB, the local APIC page, an image of three sections.
    fn hv_like() -> [Map; 6] {
        let w = WRITABLE | GLOBAL | NO_EXECUTE;
        [
            Map::huge(DIRECT, 0, 3 * GIB, w),
            Map::small(DIRECT + 0xfee0_0000, 0xfee0_0000, PAGE_SIZE, w),
            Map::huge(DIRECT + 4 * GIB, 4 * GIB, GIB, w),
            Map::small(IMAGE + MIB, MIB, 600 << 10, GLOBAL),
            Map::small(
                IMAGE + MIB + (600 << 10),
                MIB + (600 << 10),
                200 << 10,
                NO_EXECUTE,
            ),
            Map::small(IMAGE + 2 * MIB, 2 * MIB, 3 * MIB, w),
        ]
    }

    #[test]
    fn the_count_is_the_frames_the_build_takes() {
        let plan = hv_like();
        // Below the root: L3s for slots 256 and 511; L2s for GiB 0..3, 4 of
        // the direct map and the image's; L1s for the APIC's 2 MiB and the
        // image's 2 MiB pages 0, 1, 2 (the data section ends at 5 MiB).
        assert_eq!(frames(&plan), 2 + (5 + 1) + (1 + 3));
        let (mut mem, root) = Mem::with_root();
        build(root, &plan, &mut mem).unwrap();
        assert_eq!(mem.tables.len() as u64 - 1, frames(&plan));
    }

    #[test]
    fn what_is_built_translates_back() {
        let plan = hv_like();
        let (mut mem, root) = Mem::with_root();
        build(root, &plan, &mut mem).unwrap();
        let at = |mem: &mut Mem, va| translate(root, va, mem).unwrap();
        assert_eq!(
            at(&mut mem, DIRECT + 5 * MIB + 17),
            Some((
                5 * MIB + 17,
                WRITABLE | GLOBAL | NO_EXECUTE | PRESENT | HUGE
            ))
        );
        assert_eq!(
            at(&mut mem, IMAGE + MIB + 8),
            Some((MIB + 8, GLOBAL | PRESENT))
        );
        assert_eq!(at(&mut mem, DIRECT + 0xfee0_0010).unwrap().0, 0xfee0_0010);
        assert_eq!(at(&mut mem, DIRECT + 0xfee0_1000), None);
        assert_eq!(at(&mut mem, DIRECT + 3 * GIB + 5), None);
        assert_eq!(at(&mut mem, IMAGE + 5 * MIB), None);
        assert_eq!(at(&mut mem, 0), None);
    }

    #[test]
    fn malformed_plans_are_refused_before_anything_is_written() {
        let bad = [
            Map::small(IMAGE + 1, 0, PAGE_SIZE, 0),
            Map::small(IMAGE, 1, PAGE_SIZE, 0),
            Map::small(IMAGE, 0, PAGE_SIZE + 1, 0),
            Map::small(IMAGE, 0, 0, 0),
            Map::huge(DIRECT + PAGE_SIZE, 0, TWO_MIB, 0),
            Map::huge(DIRECT, 0, PAGE_SIZE, 0),
            // Across the non-canonical hole, and off the top.
            Map::small(0x7fff_ffff_f000, 0, 2 * PAGE_SIZE, 0),
            Map::small(0x8000_0000_0000, 0, PAGE_SIZE, 0),
            Map::small(!0xfff, 0, 2 * PAGE_SIZE, 0),
            // Beyond the 52-bit physical space.
            Map::small(0, 1 << 52, PAGE_SIZE, 0),
            Map {
                leaf: Level::L4,
                ..Map::small(0, 0, 1 << 39, 0)
            },
        ];
        for m in bad {
            let (mut mem, root) = Mem::with_root();
            assert_eq!(
                build(root, &[m], &mut mem),
                Err(BuildError::Plan(PlanError::Malformed { map: m })),
                "{m:x?}"
            );
            assert_eq!(mem.tables.len(), 1);
            assert!(mem.tables[&root].iter().all(|&e| e == 0));
        }
        // The last page of the address space is fine.
        let (mut mem, root) = Mem::with_root();
        build(root, &[Map::small(!0xfff, 0, PAGE_SIZE, 0)], &mut mem).unwrap();
    }

    #[test]
    fn overlaps_and_occupied_addresses_are_refused() {
        let a = Map::huge(DIRECT, 0, 4 * MIB, 0);
        let b = Map::small(DIRECT + 2 * MIB + PAGE_SIZE, 0, PAGE_SIZE, 0);
        let (mut mem, root) = Mem::with_root();
        assert_eq!(
            build(root, &[a, b], &mut mem),
            Err(BuildError::Plan(PlanError::Overlap {
                first: a.va,
                second: b.va
            }))
        );
        // The same plan twice into one root: the second finds it mapped.
        build(root, &[a], &mut mem).unwrap();
        assert_eq!(
            build(root, &[a], &mut mem),
            Err(BuildError::Plan(PlanError::Occupied { va: a.va }))
        );
        // A small page under a huge one already there.
        assert_eq!(
            build(root, &[b], &mut mem),
            Err(BuildError::Plan(PlanError::Occupied { va: b.va }))
        );
    }

    #[test]
    fn running_out_of_frames_is_the_memory_s_error() {
        let plan = hv_like();
        let (mut mem, root) = Mem::with_root();
        mem.limit = Some(frames(&plan) as usize); // one short (the root)
        assert_eq!(
            build(root, &plan, &mut mem),
            Err(BuildError::Memory(MemError::OutOfFrames))
        );
    }

    #[test]
    fn into_a_root_with_tables_it_takes_fewer() {
        let (mut mem, root) = Mem::with_root();
        build(root, &[Map::small(IMAGE, 0, PAGE_SIZE, 0)], &mut mem).unwrap();
        let before = mem.tables.len() as u64;
        let next = [Map::small(IMAGE + PAGE_SIZE, 0, PAGE_SIZE, 0)];
        build(root, &next, &mut mem).unwrap();
        assert_eq!(mem.tables.len() as u64, before);
        assert_eq!(frames(&next), 3);
    }

    /// Random plans of non-overlapping mappings in a few areas of the
    /// address space, in any order.
    fn plans() -> impl Strategy<Value = Vec<Map>> {
        let one = (0u64..4, 0u64..2048, 1u64..700, any::<bool>()).prop_map(
            |(area, page, pages, huge)| {
                let base = [0, 0x7f80_0000_0000, DIRECT, IMAGE][area as usize];
                if huge {
                    let va = base.wrapping_add((page % 64) * TWO_MIB * 17);
                    Map::huge(va, page * TWO_MIB, (pages % 40 + 1) * TWO_MIB, 0)
                } else {
                    let va = base.wrapping_add(page * 0x3_3000);
                    Map::small(va, page * PAGE_SIZE, pages * PAGE_SIZE, 0)
                }
            },
        );
        proptest::collection::vec(one, 0..12).prop_map(|maps| {
            let mut kept: Vec<Map> = Vec::new();
            for m in maps {
                let va_fits =
                    m.va.checked_add(m.len)
                        .is_some_and(|e| e <= 0x8000_0000_0000 || m.va >= DIRECT);
                if va_fits && m.check().is_ok() && kept.iter().all(|k| !k.overlaps(&m)) {
                    kept.push(m);
                }
            }
            kept
        })
    }

    proptest! {
        #[test]
        fn the_count_is_exact_for_any_plan(plan in plans()) {
            let (mut mem, root) = Mem::with_root();
            build(root, &plan, &mut mem).unwrap();
            prop_assert_eq!(mem.tables.len() as u64 - 1, frames(&plan));
            for m in &plan {
                for va in [m.va, m.va + m.len - 1] {
                    let (pa, _) = translate(root, va, &mut mem).unwrap().unwrap();
                    prop_assert_eq!(pa, m.pa + (va - m.va));
                }
            }
        }
    }

    #[test]
    fn distinct_counts_a_union_given_in_any_order() {
        let d = |s: &[(u64, u64)]| distinct(s.iter().copied());
        assert_eq!(d(&[]), 0);
        assert_eq!(d(&[(5, 5)]), 1);
        assert_eq!(d(&[(10, 20), (0, 3), (15, 30), (2, 4)]), 5 + 21);
        assert_eq!(d(&[(u64::MAX - 1, u64::MAX), (3, 3)]), 3);
    }

    #[test]
    fn a_mapping_past_the_end_of_the_address_space_is_counted_to_its_end() {
        // A direct map of 2^52 bytes does not fit the upper half: counted
        // (for sizing, which then refuses), never built.
        let m = Map::huge(DIRECT, 0, 1 << 52, 0);
        assert_eq!(frames(&[m]), 256 + (1 << 17));
        let (mut mem, root) = Mem::with_root();
        assert_eq!(
            build(root, &[m], &mut mem),
            Err(BuildError::Plan(PlanError::Malformed { map: m }))
        );
    }
}
