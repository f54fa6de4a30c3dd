//! The page allocator: what it hands out, what it takes back, its runs,
//! and a model check over random operations.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn range(start: u64, count: u64) -> MfnRange {
    MfnRange::new(Mfn(start), count)
}

/// Every frame `pages` hands out until it has none.
fn drain(pages: &mut PageAllocator) -> Vec<u64> {
    core::iter::from_fn(|| pages.alloc().map(|m| m.0)).collect()
}

#[test]
fn a_new_allocator_has_no_free_frame() {
    let mut pages = PageAllocator::new(4096);
    assert_eq!(pages.free_frames(), 0);
    assert_eq!(pages.alloc(), None);
    assert_eq!(pages.free_runs().count(), 0);
    let mut empty = PageAllocator::new(0);
    empty.release(range(0, 10));
    assert_eq!(empty.free_frames(), 0);
    assert_eq!(empty.alloc(), None);
}

#[test]
fn it_hands_out_each_released_frame_once_then_none() {
    let mut pages = PageAllocator::new(1000);
    pages.release(range(100, 300));
    assert_eq!(pages.free_frames(), 300);
    let taken = drain(&mut pages);
    assert_eq!(taken, (100..400).collect::<Vec<_>>(), "lowest first");
    assert_eq!(pages.free_frames(), 0);
    assert_eq!(pages.alloc(), None, "exhausted");
    assert_eq!(pages.alloc(), None, "still exhausted");
}

#[test]
fn a_freed_frame_is_handed_out_again() {
    let mut pages = PageAllocator::new(256);
    pages.release(range(0, 256));
    let all = drain(&mut pages);
    assert_eq!(all.len(), 256);
    pages.free(Mfn(77));
    pages.free(Mfn(3));
    assert_eq!(pages.free_frames(), 2);
    let again: BTreeSet<u64> = drain(&mut pages).into_iter().collect();
    assert_eq!(again, BTreeSet::from([3, 77]));
}

#[test]
#[should_panic(expected = "double free of frame 0x2a")]
fn a_double_free_is_refused() {
    let mut pages = PageAllocator::new(128);
    pages.release(range(42, 1));
    let mfn = pages.alloc().unwrap();
    pages.free(mfn);
    pages.free(mfn);
}

#[test]
#[should_panic(expected = "double free of frame 0x5")]
fn freeing_a_frame_never_handed_out_is_refused() {
    let mut pages = PageAllocator::new(64);
    pages.release(range(0, 64));
    pages.free(Mfn(5));
}

#[test]
fn ranges_not_aligned_to_a_bitmap_word_are_exact() {
    // Starts and ends inside words, one inside a single word, one across
    // several whole words.
    for (start, count) in [
        (3, 1),
        (63, 2),
        (5, 59),
        (60, 200),
        (64, 64),
        (1, 1000),
        (127, 1),
    ] {
        let mut pages = PageAllocator::new(2048);
        pages.release(range(start, count));
        assert_eq!(pages.free_frames(), count, "{start}+{count}");
        assert_eq!(
            pages.free_runs().collect::<Vec<_>>(),
            vec![range(start, count)]
        );
        let taken = drain(&mut pages);
        assert_eq!(taken, (start..start + count).collect::<Vec<_>>());
    }
}

#[test]
fn releasing_a_free_frame_again_counts_it_once() {
    let mut pages = PageAllocator::new(512);
    pages.release(range(10, 100));
    pages.release(range(50, 100));
    assert_eq!(pages.free_frames(), 140);
    assert_eq!(pages.free_runs().collect::<Vec<_>>(), vec![range(10, 140)]);
}

#[test]
fn frames_beyond_its_span_are_ignored() {
    // 100 frames round up to two words: frames 100..128 are in the bitmap
    // but beyond 128 nothing is.
    let mut pages = PageAllocator::new(100);
    pages.release(range(90, 1000));
    assert_eq!(pages.free_frames(), 128 - 90);
    pages.release(range(5000, 10));
    assert_eq!(pages.free_frames(), 128 - 90);
    assert!(drain(&mut pages).iter().all(|&m| (90..128).contains(&m)));
}

#[test]
fn free_runs_are_maximal_and_in_order() {
    let mut pages = PageAllocator::new(8192);
    for r in [
        range(0, 1),
        range(2, 62),
        range(64, 64),
        range(200, 4000),
        range(8191, 1),
    ] {
        pages.release(r);
    }
    assert_eq!(
        pages.free_runs().collect::<Vec<_>>(),
        vec![range(0, 1), range(2, 126), range(200, 4000), range(8191, 1)]
    );
    // Holes punched into the long run split it.
    let mut taken = Vec::new();
    while let Some(m) = pages.alloc() {
        taken.push(m);
        if m.0 == 4 {
            break;
        }
    }
    for m in taken.iter().filter(|m| m.0 != 2) {
        pages.free(*m);
    }
    assert_eq!(
        pages.free_runs().collect::<Vec<_>>(),
        vec![range(0, 1), range(3, 125), range(200, 4000), range(8191, 1)]
    );
}

#[test]
fn a_search_wraps_around_to_frames_freed_below_it() {
    // More than one summary word (64 × 64 frames each).
    const SUMMARY_WORD_FRAMES: u64 = 64 * 64;
    let frames = 3 * SUMMARY_WORD_FRAMES;
    let mut pages = PageAllocator::new(frames);
    pages.release(range(0, frames));
    for _ in 0..frames - 1 {
        pages.alloc().unwrap();
    }
    // The search stands at the top now; a frame freed at the bottom is
    // found by wrapping around.
    pages.free(Mfn(1));
    assert_eq!(pages.alloc(), Some(Mfn(frames - 1)));
    assert_eq!(pages.alloc(), Some(Mfn(1)));
    assert_eq!(pages.alloc(), None);
}

#[test]
fn a_lone_frame_far_up_is_found() {
    let mut pages = PageAllocator::new(1 << 20);
    pages.release(range((1 << 20) - 1, 1));
    assert_eq!(pages.alloc(), Some(Mfn((1 << 20) - 1)));
    assert_eq!(pages.alloc(), None);
}

/// One step of the model check.
#[derive(Clone, Debug)]
enum Op {
    Release(u64, u64),
    Alloc,
    /// Frees the `n`-th frame in use (modulo their number), if any.
    Free(usize),
}

fn op(span: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..span, 0..span / 4).prop_map(|(s, n)| Op::Release(s, n)),
        Just(Op::Alloc),
        Just(Op::Alloc),
        any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    /// Against a set of free frames: the same count, the same runs, and
    /// every frame handed out was free.
    #[test]
    fn it_behaves_as_a_set_of_free_frames(
        span in 1u64..5000,
        ops in proptest::collection::vec(op(5000), 1..200),
    ) {
        let mut pages = PageAllocator::new(span);
        let bitmap_end = span.div_ceil(64) * 64;
        let mut free: BTreeSet<u64> = BTreeSet::new();
        let mut used: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Release(s, n) => {
                    pages.release(range(s, n));
                    free.extend(s.min(bitmap_end)..(s + n).min(bitmap_end));
                    used.retain(|m| !(s..s + n).contains(m));
                }
                Op::Alloc => match pages.alloc() {
                    Some(m) => {
                        prop_assert!(free.remove(&m.0), "{m:?} was not free");
                        used.push(m.0);
                    }
                    None => prop_assert!(free.is_empty()),
                },
                Op::Free(i) if !used.is_empty() => {
                    let m = used.swap_remove(i % used.len());
                    pages.free(Mfn(m));
                    free.insert(m);
                }
                Op::Free(_) => {}
            }
            prop_assert_eq!(pages.free_frames(), free.len() as u64);
        }
        let runs: Vec<u64> = pages.free_runs().flat_map(|r| r.start.0..r.end()).collect();
        prop_assert_eq!(runs, free.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn a_run_is_the_lowest_long_enough_and_comes_back_whole() {
    let mut pages = PageAllocator::new(256);
    pages.release(MfnRange::new(Mfn(10), 3));
    pages.release(MfnRange::new(Mfn(60), 10));
    pages.release(MfnRange::new(Mfn(100), 100));
    let free = pages.free_frames();
    // The run of 3 is too short; the one at 60 is the lowest that fits.
    assert_eq!(pages.alloc_run(5), Some(MfnRange::new(Mfn(60), 5)));
    assert_eq!(pages.free_frames(), free - 5);
    // Across a word boundary.
    assert_eq!(pages.alloc_run(70), Some(MfnRange::new(Mfn(100), 70)));
    assert_eq!(pages.alloc_run(40), None);
    assert_eq!(pages.alloc_run(0), None);
    pages.free_run(MfnRange::new(Mfn(60), 5));
    pages.free_run(MfnRange::new(Mfn(100), 70));
    assert_eq!(pages.free_frames(), free);
    assert_eq!(
        pages.free_runs().collect::<Vec<_>>(),
        [
            MfnRange::new(Mfn(10), 3),
            MfnRange::new(Mfn(60), 10),
            MfnRange::new(Mfn(100), 100)
        ]
    );
    // Single frames still come from what is left.
    assert!(pages.alloc().is_some());
}

#[test]
fn every_change_of_the_free_frames_moves_the_generation() {
    let mut pages = PageAllocator::new(256);
    let g0 = pages.generation();
    pages.release(range(10, 20));
    let g1 = pages.generation();
    assert_ne!(g0, g1);
    let a = pages.alloc().unwrap();
    let g2 = pages.generation();
    assert_ne!(g1, g2);
    let run = pages.alloc_run(4).unwrap();
    let g3 = pages.generation();
    assert_ne!(g2, g3);
    pages.free(a);
    pages.free_run(run);
    let g4 = pages.generation();
    assert_ne!(g3, g4);
    // Reading changes nothing.
    let _ = pages.free_runs().count();
    let _ = pages.free_frames();
    assert_eq!(pages.generation(), g4);
    // Nothing to take: nothing changed.
    drain(&mut pages);
    let g5 = pages.generation();
    assert_eq!(pages.alloc(), None);
    assert_eq!(pages.alloc_run(1), None);
    assert_eq!(pages.generation(), g5);
}
