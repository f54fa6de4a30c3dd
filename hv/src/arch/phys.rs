//! Access to physical memory through the direct map.
//!
//! Every RAM frame is at `DIRECT_MAP_BASE + paddr`: until the hypervisor's
//! own page tables are loaded, through the boot stub's map of the first
//! 4 GiB there (a cold boot) or the entry tables' (an update); after
//! [`set_direct_map`], through its own, which covers all of RAM. The base
//! never moves, so the heap claimed before the switch stays where it is.
//!
//! Two kinds of access are offered, and the split is what makes them safe:
//! - [`claim`] turns a range of RAM into a `&'static mut [u8]` — memory the
//!   hypervisor then owns as ordinary Rust data (its heap, the frametable).
//!   A range can be claimed once; claims are recorded.
//! - [`read`], [`write`] and friends copy bytes to and from any other RAM
//!   (guest frames, guest page tables, free frames) and refuse an address
//!   inside a claim, inside the hypervisor image or inside the hypervisor's
//!   own page tables, so they never alias a Rust reference and nothing
//!   outside `arch::paging` and `arch::kexec` can remap the hypervisor.
//!
//! A third, [`lend`], shows a range of RAM as a `&[u8]` for the length of
//! a closure (an image being checked where it landed in the live-update
//! region): while it is lent, every accessor here refuses the range, so the
//! shared view is never written under.
//!
//! The frames of the hypervisor's own page tables are recorded as they are
//! allocated ([`record_table`], by `arch::paging`); the arch layer reaches
//! them through the `table_*` accessors, which are not exported.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU64, Ordering};
use hvlu_types::PAGE_SIZE;

// Where the direct map starts (L4 slot 256, the first upper-half slot): the
// address the boot stub, the live-update entry contract and the
// hypervisor's own tables all map RAM at, so one constant serves all three.
use handover_abi::entry::DIRECT_MAP_BASE;
use zerocopy::{FromBytes, FromZeros, IntoBytes, KnownLayout, TryFromBytes};

/// Highest physical address (exclusive) the current map covers.
static LIMIT: AtomicU64 = AtomicU64::new(4 << 30);

const MAX_CLAIMS: usize = 16;
static mut CLAIMS: [(u64, u64); MAX_CLAIMS] = [(0, 0); MAX_CLAIMS];
static CLAIM_COUNT: AtomicU64 = AtomicU64::new(0);

/// The frames of the hypervisor's own page tables, as ranges `[start, end)`
/// merged as frames are recorded (the boot allocator hands them out in
/// order, so there are few).
const MAX_TABLE_RANGES: usize = 32;
static TABLES: [[AtomicU64; 2]; MAX_TABLE_RANGES] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_TABLE_RANGES];
static TABLE_COUNT: AtomicU64 = AtomicU64::new(0);

/// The range [`lend`] shows, `[start, end)`; `end == 0` when none is.
static LENT: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The hypervisor image's physical range, recorded at boot.
static IMAGE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Records the physical range of the running image, which no accessor may
/// touch.
pub fn set_image_range(start: u64, end: u64) {
    IMAGE[0].store(start, Ordering::Relaxed);
    IMAGE[1].store(end, Ordering::Relaxed);
}

/// The direct map now covers physical addresses below `limit`.
pub fn set_direct_map(limit: u64) {
    LIMIT.store(limit, Ordering::Relaxed);
}

/// The virtual address of physical address `paddr` in the direct map.
pub fn virt(paddr: u64) -> u64 {
    DIRECT_MAP_BASE + paddr
}

/// The physical address behind a direct-map virtual address, if it is one.
pub fn direct_map_to_phys(vaddr: u64) -> Option<u64> {
    let paddr = vaddr.checked_sub(DIRECT_MAP_BASE)?;
    (paddr < LIMIT.load(Ordering::Relaxed)).then_some(paddr)
}

fn claims() -> &'static [(u64, u64)] {
    let n = CLAIM_COUNT.load(Ordering::Acquire) as usize;
    // SAFETY: entries below CLAIM_COUNT are written before the count is
    // published (Release in `claim`) and never written again.
    unsafe { &(&*addr_of!(CLAIMS))[..n] }
}

fn overlaps(a: u64, a_end: u64, b: u64, b_end: u64) -> bool {
    a < b_end && b < a_end
}

/// Why a physical access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhysError {
    /// The range is not covered by the direct map.
    #[error("{len} bytes at {paddr:#x} are not in the direct map (or misaligned)")]
    Unmapped { paddr: u64, len: u64 },
    /// The range touches memory the hypervisor owns as Rust data or code.
    #[error("{len} bytes at {paddr:#x} belong to the hypervisor's own data or image")]
    Private { paddr: u64, len: u64 },
    /// The range touches one of the hypervisor's own page tables.
    #[error("{len} bytes at {paddr:#x} belong to the hypervisor's own page tables")]
    PageTable { paddr: u64, len: u64 },
    /// No more claims (or page-table ranges) can be recorded.
    #[error("too many claimed or page-table ranges")]
    TooManyClaims,
    /// The range touches memory lent out by [`lend`] (or a second lend
    /// was asked for while one is out).
    #[error("{len} bytes at {paddr:#x} are being read in place")]
    Lent { paddr: u64, len: u64 },
}

/// The frames of the hypervisor's own page tables, as ranges `[start, end)`.
pub fn table_ranges() -> impl Iterator<Item = (u64, u64)> {
    let n = TABLE_COUNT.load(Ordering::Acquire) as usize;
    TABLES[..n]
        .iter()
        .map(|r| (r[0].load(Ordering::Relaxed), r[1].load(Ordering::Relaxed)))
}

/// Whether the hypervisor's page tables are exempt from the check (the
/// arch layer's own table accessors) or refused (everyone else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tables {
    Refuse,
    Allow,
}

fn check_with(paddr: u64, len: u64, tables_rule: Tables) -> Result<(), PhysError> {
    let end = paddr
        .checked_add(len)
        .ok_or(PhysError::Unmapped { paddr, len })?;
    if end > LIMIT.load(Ordering::Relaxed) {
        return Err(PhysError::Unmapped { paddr, len });
    }
    let (img, img_end) = (
        IMAGE[0].load(Ordering::Relaxed),
        IMAGE[1].load(Ordering::Relaxed),
    );
    if overlaps(paddr, end, img, img_end)
        || claims().iter().any(|&(s, e)| overlaps(paddr, end, s, e))
    {
        return Err(PhysError::Private { paddr, len });
    }
    if tables_rule == Tables::Refuse && table_ranges().any(|(s, e)| overlaps(paddr, end, s, e)) {
        return Err(PhysError::PageTable { paddr, len });
    }
    let (lent, lent_end) = (
        LENT[0].load(Ordering::Relaxed),
        LENT[1].load(Ordering::Relaxed),
    );
    if overlaps(paddr, end, lent, lent_end) {
        return Err(PhysError::Lent { paddr, len });
    }
    Ok(())
}

/// Checks that a device may write `len` bytes at `paddr` by DMA: the range
/// is RAM in the direct map that no Rust object, no page table of the
/// hypervisor and no [`lend`] covers.
pub fn check_dma_target(paddr: u64, len: u64) -> Result<(), PhysError> {
    check(paddr, len)
}

/// Calls `f` with the `len` bytes of RAM at `paddr` (mapped, not claimed,
/// not the image, not a page table) as a shared slice. While `f` runs the
/// range is lent: every accessor of this module (and [`check_dma_target`])
/// refuses it, and a second lend is refused. Returns what `f` returns.
pub fn lend<R>(paddr: u64, len: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, PhysError> {
    check(paddr, len)?;
    if LENT[1].load(Ordering::Relaxed) != 0 {
        return Err(PhysError::Lent { paddr, len });
    }
    LENT[0].store(paddr, Ordering::Relaxed);
    LENT[1].store(paddr + len, Ordering::Relaxed);
    // SAFETY: the range is mapped by the direct map and is no Rust object
    // (checked). From here until `f` returns, `check` refuses it to every
    // writer of this module, and nothing else writes RAM it has not
    // claimed (the arch layer's DMA goes through `check_dma_target`); one
    // CPU, so nothing runs beside `f`. The slice's lifetime is `f`'s
    // argument's: it cannot outlive the lend.
    let bytes = unsafe { core::slice::from_raw_parts(virt(paddr) as *const u8, len as usize) };
    let result = f(bytes);
    LENT[1].store(0, Ordering::Relaxed);
    LENT[0].store(0, Ordering::Relaxed);
    Ok(result)
}

fn check(paddr: u64, len: u64) -> Result<(), PhysError> {
    check_with(paddr, len, Tables::Refuse)
}

/// Records the frame at `paddr` as one of the hypervisor's own page
/// tables: from now on only the `table_*` accessors reach it. The frame
/// must be mapped, page aligned, and neither claimed, nor part of the
/// image, nor recorded already.
pub(super) fn record_table(paddr: u64) -> Result<(), PhysError> {
    check(paddr, PAGE_SIZE)?;
    if !paddr.is_multiple_of(PAGE_SIZE) {
        return Err(PhysError::Unmapped {
            paddr,
            len: PAGE_SIZE,
        });
    }
    let n = TABLE_COUNT.load(Ordering::Relaxed) as usize;
    for range in &TABLES[..n] {
        if range[1].load(Ordering::Relaxed) == paddr {
            range[1].store(paddr + PAGE_SIZE, Ordering::Release);
            return Ok(());
        }
        if range[0].load(Ordering::Relaxed) == paddr + PAGE_SIZE {
            range[0].store(paddr, Ordering::Release);
            return Ok(());
        }
    }
    let range = TABLES.get(n).ok_or(PhysError::TooManyClaims)?;
    range[0].store(paddr, Ordering::Relaxed);
    range[1].store(paddr + PAGE_SIZE, Ordering::Relaxed);
    TABLE_COUNT.store(n as u64 + 1, Ordering::Release);
    Ok(())
}

/// Reads the 64-bit page-table entry at `paddr`, which may be in one of the
/// hypervisor's own page tables (for `arch::paging` and `arch::kexec`).
pub(super) fn table_read_u64(paddr: u64) -> Result<u64, PhysError> {
    check_with(paddr, 8, Tables::Allow)?;
    // SAFETY: mapped, and not part of any Rust object (checked: not claimed,
    // not the image; page tables are never Rust objects).
    Ok(unsafe { core::ptr::read_unaligned(virt(paddr) as *const u64) })
}

/// Writes the 64-bit page-table entry at `paddr` (see [`table_read_u64`]).
pub(super) fn table_write_u64(paddr: u64, value: u64) -> Result<(), PhysError> {
    check_with(paddr, 8, Tables::Allow)?;
    // SAFETY: as in `table_read_u64`.
    unsafe { core::ptr::write_unaligned(virt(paddr) as *mut u64, value) };
    Ok(())
}

/// Zeroes the page-table frame at `paddr` (see [`table_read_u64`]).
pub(super) fn table_zero(paddr: u64) -> Result<(), PhysError> {
    check_with(paddr, PAGE_SIZE, Tables::Allow)?;
    // SAFETY: as in `table_read_u64`.
    unsafe { core::ptr::write_bytes(virt(paddr) as *mut u8, 0, PAGE_SIZE as usize) };
    Ok(())
}

/// Copies `buf.len()` bytes from physical address `paddr`.
pub fn read(paddr: u64, buf: &mut [u8]) -> Result<(), PhysError> {
    check(paddr, buf.len() as u64)?;
    // SAFETY: the range is mapped by the direct map (checked against LIMIT)
    // and is not part of any Rust object of the hypervisor (not claimed, not
    // the image), so no reference aliases it; volatile-free copy of plain
    // bytes. Single CPU: no concurrent writer.
    unsafe {
        core::ptr::copy_nonoverlapping(virt(paddr) as *const u8, buf.as_mut_ptr(), buf.len())
    };
    Ok(())
}

/// Copies `data` to physical address `paddr`.
pub fn write(paddr: u64, data: &[u8]) -> Result<(), PhysError> {
    check(paddr, data.len() as u64)?;
    // SAFETY: as in `read`: mapped, not aliased by any Rust object.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), virt(paddr) as *mut u8, data.len()) };
    Ok(())
}

/// Reads the naturally aligned 64-bit word at `paddr`.
pub fn read_u64(paddr: u64) -> Result<u64, PhysError> {
    check(paddr, 8)?;
    // SAFETY: mapped and not aliased (checked); the caller's address is
    // read unaligned-safe.
    Ok(unsafe { core::ptr::read_unaligned(virt(paddr) as *const u64) })
}

/// Writes the 64-bit word at `paddr`.
pub fn write_u64(paddr: u64, value: u64) -> Result<(), PhysError> {
    check(paddr, 8)?;
    // SAFETY: mapped and not aliased (checked).
    unsafe { core::ptr::write_unaligned(virt(paddr) as *mut u64, value) };
    Ok(())
}

/// Fills `len` bytes at `paddr` with zeroes.
pub fn zero(paddr: u64, len: u64) -> Result<(), PhysError> {
    check(paddr, len)?;
    // SAFETY: mapped and not aliased (checked).
    unsafe { core::ptr::write_bytes(virt(paddr) as *mut u8, 0, len as usize) };
    Ok(())
}

/// Takes ownership of `len` bytes of RAM at `paddr` as Rust data, zeroed.
pub fn claim(paddr: u64, len: u64) -> Result<&'static mut [u8], PhysError> {
    let bytes = claim_uninit(paddr, len)?;
    bytes.fill(0);
    Ok(bytes)
}

/// Takes ownership of `len` bytes of RAM at `paddr` as Rust data, with
/// whatever contents they have (for an allocator, which never reads memory
/// it has not handed out and written).
///
/// The range must be mapped, page aligned, and must not overlap the image,
/// an earlier claim or the hypervisor's page tables. It stays claimed for the life of this hypervisor.
pub fn claim_uninit(paddr: u64, len: u64) -> Result<&'static mut [u8], PhysError> {
    check(paddr, len)?;
    if !paddr.is_multiple_of(PAGE_SIZE) {
        return Err(PhysError::Unmapped { paddr, len });
    }
    let n = CLAIM_COUNT.load(Ordering::Relaxed) as usize;
    if n == MAX_CLAIMS {
        return Err(PhysError::TooManyClaims);
    }
    // SAFETY: single CPU and claims only happen at boot; entry `n` is not
    // yet visible to readers (they stop at CLAIM_COUNT).
    unsafe { (*addr_of_mut!(CLAIMS))[n] = (paddr, paddr + len) };
    CLAIM_COUNT.store(n as u64 + 1, Ordering::Release);
    // SAFETY: the range is mapped and, as just checked and recorded, owned
    // by nobody else: no accessor of this module will touch it again and no
    // other claim overlaps it, so the unique reference is sound.
    Ok(unsafe { core::slice::from_raw_parts_mut(virt(paddr) as *mut u8, len as usize) })
}

/// Views initialised bytes as possibly-uninitialised ones (for allocators
/// that take `MaybeUninit` memory).
pub fn bytes_as_uninit(bytes: &'static mut [u8]) -> &'static mut [core::mem::MaybeUninit<u8>] {
    let len = bytes.len();
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, every `u8` is a valid
    // `MaybeUninit<u8>`, and the unique borrow moves into the result.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), len) }
}

/// Claims `count` values of `T` at `paddr` (see [`claim`]), zeroed.
///
/// `FromZeros` (derived, so checked by the compiler) makes the zeroed bytes
/// a valid `T`; `IntoBytes` (no padding) and `KnownLayout` are what
/// `zerocopy` needs to hand out a mutable `[T]` view of bytes, whose size
/// and alignment it checks itself. No `unsafe` here.
pub fn claim_slice<T: FromZeros + IntoBytes + KnownLayout>(
    paddr: u64,
    count: usize,
) -> Result<&'static mut [T], PhysError> {
    let len = slice_len::<T>(paddr, count)?;
    let bytes = claim(paddr, len)?;
    // Cannot fail: the bytes are zeroed (valid for `T`), aligned (checked,
    // and page aligned by `claim`) and exactly `count` values long.
    <[T]>::try_mut_from_bytes_with_elems(bytes, count)
        .map_err(|_| PhysError::Unmapped { paddr, len })
}

/// Claims `count` values of `T` at `paddr` (see [`claim_uninit`]) as they
/// are: whatever the memory holds. `FromBytes` (derived, so checked by the
/// compiler) makes any bytes a valid `T`; what they mean is the caller's
/// (an incoming image's frametable, initialised lazily:
/// `frame_ownership::lazy`). No `unsafe` here.
pub fn claim_slice_as_is<T: FromBytes + IntoBytes + KnownLayout + zerocopy::Immutable>(
    paddr: u64,
    count: usize,
) -> Result<&'static mut [T], PhysError> {
    let len = slice_len::<T>(paddr, count)?;
    let bytes = claim_uninit(paddr, len)?;
    <[T]>::mut_from_bytes_with_elems(bytes, count).map_err(|_| PhysError::Unmapped { paddr, len })
}

/// The bytes of `count` values of `T` at `paddr`, which must be aligned
/// for `T`.
fn slice_len<T>(paddr: u64, count: usize) -> Result<u64, PhysError> {
    let len = (count * core::mem::size_of::<T>()) as u64;
    if !paddr.is_multiple_of(core::mem::align_of::<T>() as u64) {
        return Err(PhysError::Unmapped { paddr, len });
    }
    Ok(len)
}

/// Reads and writes guest page-table frames for the frametable pass and the
/// type operations, through the direct map.
#[derive(Debug)]
pub struct TableReader(());

/// The page-table reader (and writer) over the direct map.
pub fn table_reader() -> TableReader {
    TableReader(())
}

impl frame_ownership::PageTableMemory for TableReader {
    fn write_entry(&mut self, table: hvlu_types::Mfn, index: usize, value: u64) {
        // The operations write only entries of frames they have checked are
        // the domain's page tables, which are RAM outside the region and the
        // hv-reserved ranges: a refusal is a bug.
        if let Err(e) = write_u64(table.addr() + 8 * (index as u64 & 511), value) {
            panic!("page-table writer: frame {:#x} refused: {e}", table.0);
        }
    }
}

impl frame_ownership::PageTableReader for TableReader {
    fn read_table(&self, mfn: hvlu_types::Mfn) -> &[u64; 512] {
        let paddr = mfn.addr();
        // The pass reads only frames it has checked are RAM outside the
        // region and the hv-reserved ranges (so never the hypervisor's own
        // tables, which are in the region), so a refusal is a bug.
        if let Err(e) = check(paddr, PAGE_SIZE) {
            panic!("page-table reader: frame {:#x} refused: {e:?}", mfn.0);
        }
        // SAFETY: the frame is mapped and not part of any Rust object
        // (checked); the returned borrow is tied to `&self`, and while the
        // pass holds it nothing writes physical memory (single CPU, the
        // pass itself only reads page tables).
        unsafe { &*(virt(paddr) as *const [u64; 512]) }
    }
}
