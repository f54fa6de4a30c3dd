use super::*;

const fn v(major: u16, minor: u16) -> AbiVersion {
    AbiVersion::new(major, minor)
}

const fn r(min: AbiVersion, max: AbiVersion) -> VersionRange {
    VersionRange::new(min, max)
}

#[test]
fn current_is_1_3_and_this_build_reads_and_writes_1_0_to_1_2_too() {
    assert_eq!(CURRENT, v(1, 3));
    for older in [v(1, 0), v(1, 1), v(1, 2)] {
        assert!(WRITES.contains(older) && READS.contains(older));
        // An image that reads only an older minor gets it from this one.
        assert_eq!(
            negotiate(WRITES, VersionRange::new(v(1, 0), older)),
            Some(older)
        );
    }
    assert!(WRITES.contains(CURRENT) && READS.contains(CURRENT));
    assert_eq!(READS.min, v(CURRENT.major, 0));
    assert_eq!(negotiate(WRITES, READS), Some(CURRENT));
}

#[test]
fn reader_accepts_same_major_and_older_or_equal_minor() {
    let reader = v(1, 3);
    assert!(reader.reads(v(1, 0)));
    assert!(reader.reads(v(1, 3)));
    assert!(!reader.reads(v(1, 4)));
    assert!(!reader.reads(v(0, 3)));
    assert!(!reader.reads(v(2, 0)));
}

#[test]
fn versions_order_by_major_then_minor() {
    assert!(v(1, 65535) < v(2, 0));
    assert!(v(1, 2) < v(1, 10));
    assert_eq!(v(1, 2).ordinal(), 0x0001_0002);
}

#[test]
fn negotiate_picks_the_reader_max_when_the_writer_is_newer() {
    assert_eq!(
        negotiate(r(v(1, 0), v(1, 5)), r(v(1, 0), v(1, 2))),
        Some(v(1, 2))
    );
}

#[test]
fn negotiate_picks_the_writer_max_when_the_reader_is_newer() {
    assert_eq!(
        negotiate(r(v(1, 0), v(1, 2)), r(v(1, 0), v(1, 5))),
        Some(v(1, 2))
    );
}

#[test]
fn negotiate_refuses_disjoint_ranges() {
    // A reader that dropped old minors, a writer that only knows them.
    assert_eq!(negotiate(r(v(1, 0), v(1, 1)), r(v(1, 2), v(1, 4))), None);
    // Different majors.
    assert_eq!(negotiate(r(v(1, 0), v(1, 9)), r(v(2, 0), v(2, 1))), None);
}

#[test]
fn negotiate_crosses_majors_when_both_ranges_do() {
    // A 2.x writer that still writes 1.x hands over to a 1.x reader.
    assert_eq!(
        negotiate(r(v(1, 0), v(2, 1)), r(v(1, 0), v(1, 7))),
        Some(v(1, 7))
    );
}

#[test]
fn negotiate_refuses_empty_ranges() {
    let inverted = r(v(1, 3), v(1, 1));
    assert!(inverted.is_empty());
    assert_eq!(negotiate(inverted, READS), None);
    assert_eq!(negotiate(WRITES, inverted), None);
}

#[test]
fn negotiate_is_symmetric_in_its_result() {
    let a = r(v(1, 0), v(1, 4));
    let b = r(v(1, 2), v(1, 9));
    assert_eq!(negotiate(a, b), negotiate(b, a));
    assert_eq!(negotiate(a, b), Some(v(1, 4)));
}

#[test]
fn versions_display_as_major_dot_minor() {
    assert_eq!(format!("{}", v(1, 12)), "1.12");
    assert_eq!(format!("{}", r(v(1, 0), v(1, 2))), "1.0..=1.2");
}
