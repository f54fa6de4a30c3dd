//! A domain's frame space: frames in and out, the limit, the holes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A frame space of `limit` with frames `1000..1000 + n` at gpfns `0..n`.
fn with_frames(limit: u64, n: u64) -> P2m {
    let mut p2m = P2m::with_limit(limit).unwrap();
    for i in 0..n {
        assert_eq!(p2m.add(1000 + i), Some(Gpfn(i)));
    }
    p2m
}

#[test]
fn frames_get_gpfns_in_order_up_to_the_limit() {
    let mut p2m = with_frames(4, 4);
    assert_eq!(&p2m[..], &[1000, 1001, 1002, 1003]);
    assert_eq!(p2m.frames(), 4);
    assert_eq!(p2m.limit(), 4);
    assert_eq!(p2m.next_gpfn(), None);
    assert_eq!(p2m.add(2000), None, "at the limit");
    assert_eq!(&p2m[..], &[1000, 1001, 1002, 1003], "nothing changed");
    assert_eq!(p2m.frames(), 4);
}

#[test]
fn a_limit_of_zero_takes_no_frame() {
    let mut p2m = P2m::with_limit(0).unwrap();
    assert_eq!(p2m.next_gpfn(), None);
    assert_eq!(p2m.add(1), None);
    assert_eq!(p2m.frames(), 0);
    assert!(p2m.is_empty());
}

#[test]
fn a_frame_taken_away_leaves_a_hole() {
    let mut p2m = with_frames(8, 5);
    assert_eq!(p2m.remove(Gpfn(2)), Some(1002));
    assert_eq!(&p2m[..], &[1000, 1001, NO_FRAME, 1003, 1004]);
    assert_eq!(p2m.frames(), 4);
    assert_eq!(p2m.mfns().collect::<Vec<_>>(), vec![1000, 1001, 1003, 1004]);
    // A hole, a gpfn past the end and one far beyond have no frame.
    assert_eq!(p2m.remove(Gpfn(2)), None);
    assert_eq!(p2m.remove(Gpfn(5)), None);
    assert_eq!(p2m.remove(Gpfn(u64::MAX)), None);
    assert_eq!(p2m.frames(), 4);
}

#[test]
fn holes_are_filled_lowest_first_before_the_p2m_grows() {
    let mut p2m = with_frames(8, 6);
    for g in [4, 1, 3] {
        p2m.remove(Gpfn(g));
    }
    assert_eq!(p2m.next_gpfn(), Some(Gpfn(1)));
    assert_eq!(p2m.add(2001), Some(Gpfn(1)));
    assert_eq!(p2m.add(2003), Some(Gpfn(3)));
    assert_eq!(p2m.add(2004), Some(Gpfn(4)));
    assert_eq!(p2m.add(2006), Some(Gpfn(6)));
    assert_eq!(p2m.add(2007), Some(Gpfn(7)));
    assert_eq!(p2m.add(2008), None, "8 frames: the limit");
    assert_eq!(&p2m[..], &[1000, 2001, 1002, 2003, 2004, 1005, 2006, 2007]);
}

#[test]
fn at_the_limit_a_frame_given_back_makes_room_for_one() {
    let mut p2m = with_frames(3, 3);
    assert_eq!(p2m.add(7), None);
    p2m.remove(Gpfn(0));
    assert_eq!(p2m.next_gpfn(), Some(Gpfn(0)));
    assert_eq!(p2m.add(7), Some(Gpfn(0)));
    assert_eq!(p2m.add(8), None);
}

#[test]
fn a_rebuilt_p2m_reads_its_holes_and_frames() {
    let map = vec![5, NO_FRAME, 7, NO_FRAME, 9];
    let mut p2m = P2m::from_map(map, 7).unwrap();
    assert_eq!(p2m.frames(), 3);
    assert_eq!(p2m.limit(), 7);
    assert_eq!(p2m.mfns().collect::<Vec<_>>(), vec![5, 7, 9]);
    assert_eq!(p2m.add(11), Some(Gpfn(1)));
    assert_eq!(p2m.add(13), Some(Gpfn(3)));
    assert_eq!(p2m.add(15), Some(Gpfn(5)));
    assert_eq!(p2m.add(17), Some(Gpfn(6)));
    assert_eq!(p2m.add(19), None, "7 frames: the limit");
    assert_eq!(&p2m[..], &[5, 11, 7, 13, 9, 15, 17]);
}

#[test]
fn a_rebuilt_p2m_with_only_holes_owns_nothing() {
    let p2m = P2m::from_map(vec![NO_FRAME; 4], 4).unwrap();
    assert_eq!(p2m.frames(), 0);
    assert_eq!(p2m.next_gpfn(), Some(Gpfn(0)));
}

#[test]
fn a_p2m_longer_than_its_limit_is_refused() {
    let e = P2m::from_map(vec![1, 2, 3], 2).unwrap_err();
    assert_eq!(
        e,
        P2mError::BeyondLimit {
            len: 3,
            max_frames: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "a p2m of 3 entries is beyond the limit of 2 frames"
    );
}

#[test]
fn a_limit_beyond_2_to_the_32_is_refused() {
    for max_frames in [(1 << 32) + 1, u64::MAX] {
        let e = P2m::with_limit(max_frames).unwrap_err();
        assert_eq!(e, P2mError::LimitTooLarge { max_frames });
        assert_eq!(
            e.to_string(),
            format!("a limit of {max_frames} frames is beyond 2^32")
        );
    }
}

#[test]
fn a_short_heap_says_how_much_it_needed() {
    assert_eq!(heap_bytes(1000), 12_000);
    assert_eq!(heap_bytes(u64::MAX), u64::MAX);
    let e = P2mError::NoHeap {
        needed: heap_bytes(1 << 20),
    };
    assert_eq!(e.to_string(), "the hypervisor heap cannot hold 12288 KiB");
}

/// One step of the model check.
#[derive(Clone, Debug)]
enum Op {
    Add,
    Remove(u64),
}

proptest! {
    /// Against a map of gpfn to mfn: the same frames, the lowest free
    /// gpfn each time, never more than the limit.
    #[test]
    fn it_behaves_as_a_map_with_a_limit(
        limit in 0u64..64,
        ops in proptest::collection::vec(
            prop_oneof![Just(Op::Add), (0u64..80).prop_map(Op::Remove)],
            0..300,
        ),
    ) {
        let mut p2m = P2m::with_limit(limit).unwrap();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut next_mfn = 0;
        for op in ops {
            match op {
                Op::Add => {
                    next_mfn += 1;
                    let lowest = (0..).find(|g| !model.contains_key(g)).unwrap();
                    let expected = (model.len() < limit as usize).then_some(Gpfn(lowest));
                    prop_assert_eq!(p2m.add(next_mfn), expected);
                    if expected.is_some() {
                        model.insert(lowest, next_mfn);
                    }
                }
                Op::Remove(g) => {
                    prop_assert_eq!(p2m.remove(Gpfn(g)), model.remove(&g));
                }
            }
            prop_assert_eq!(p2m.frames(), model.len() as u64);
            prop_assert!(p2m.len() as u64 <= limit);
            prop_assert_eq!(p2m.mfns().collect::<Vec<_>>(), model.values().copied().collect::<Vec<_>>());
            for (g, &m) in p2m.iter().enumerate() {
                prop_assert_eq!(model.get(&(g as u64)).copied().unwrap_or(NO_FRAME), m);
            }
        }
    }
}
