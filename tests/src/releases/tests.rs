use super::*;

const ONE: &str = r#"
[[release]]
name = "1.0"
rev = "15A2F570f68ce8bd11b3bb4ca75022667d1c1813"
writes = "1.0"
reads = "1.0"
toolchain = "1.95.0"
build = ["cargo", "xtask", "build", "--release"]
images = "target/x86_64-unknown-none/release"
"#;

fn v(major: u16, minor: u16) -> AbiVersion {
    AbiVersion::new(major, minor)
}

fn with(field: &str, value: &str) -> String {
    ONE.lines()
        .map(|l| {
            if l.starts_with(&format!("{field} =")) {
                format!("{field} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn refusal(text: &str) -> String {
    parse(text).unwrap_err()
}

#[test]
fn a_release_is_read_as_written() {
    let releases = parse(ONE).unwrap();
    assert_eq!(
        releases,
        vec![Release {
            name: "1.0".into(),
            writes: VersionRange::single(v(1, 0)),
            reads: VersionRange::single(v(1, 0)),
            source: Source::Revision(Revision {
                rev: "15a2f570f68ce8bd11b3bb4ca75022667d1c1813".into(),
                toolchain: Some("1.95.0".into()),
                build: ["cargo", "xtask", "build", "--release"]
                    .map(String::from)
                    .into(),
                images: "target/x86_64-unknown-none/release".into(),
            }),
        }]
    );
    assert_eq!(parse("").unwrap(), Vec::new());
}

#[test]
fn versions_and_ranges_parse_and_bad_ones_are_refused() {
    assert_eq!(
        parse_range("1.0..=1.1"),
        Ok(VersionRange::new(v(1, 0), v(1, 1)))
    );
    assert_eq!(parse_range("2.7"), Ok(VersionRange::single(v(2, 7))));
    for bad in [
        "", "1", "1.", ".1", "1.0..1.1", "1.x", "+1.0", "1.0..=", "70000.0",
    ] {
        assert!(
            parse_range(bad).unwrap_err().contains("is not a version"),
            "{bad}"
        );
    }
    assert_eq!(
        parse_range("1.1..=1.0").unwrap_err(),
        "`1.1..=1.0` is an empty range"
    );
    assert_eq!(show_range(VersionRange::single(v(1, 0))), "1.0");
    assert_eq!(show_range(VersionRange::new(v(1, 0), v(1, 1))), "1.0..=1.1");
}

#[test]
fn each_bad_record_is_refused_naming_the_release_and_the_field() {
    for (text, want) in [
        (
            with("reads", "\"1.1..=1.0\""),
            "release `1.0`: reads: `1.1..=1.0` is an empty range",
        ),
        (
            with("writes", "\"one\""),
            "release `1.0`: writes: `one` is not a version",
        ),
        (
            with("rev", "\"15a2f57\""),
            "release `1.0`: rev `15a2f57` is not a full commit hash",
        ),
        (
            with("name", "\"next\""),
            "release `next`: `next` is the current tree's name",
        ),
        (
            with("name", "\"a b\""),
            "release `a b`: a name is letters, digits",
        ),
        (
            with("build", "[]"),
            "release `1.0`: build: the command is empty",
        ),
        (
            with("images", "\"../elsewhere\""),
            "release `1.0`: images `../elsewhere` must be a path inside",
        ),
        (with("toolchain", "\"\""), "release `1.0`: toolchain: empty"),
        (format!("{ONE}\n{ONE}"), "release `1.0`: recorded twice"),
    ] {
        let e = refusal(&text);
        assert!(e.starts_with(want), "{want}: {e}");
    }
    // Fields the format does not have, or a missing one: toml's own error.
    assert!(refusal(&format!("{ONE}colour = \"red\"\n")).contains("colour"));
    assert!(refusal(&with("images", "")).contains("images"));
}

fn release(name: &str, writes: &str, reads: &str) -> Release {
    Release {
        name: name.into(),
        writes: parse_range(writes).unwrap(),
        reads: parse_range(reads).unwrap(),
        source: Source::Tree,
    }
}

#[test]
fn the_writer_writes_the_highest_version_the_reader_reads() {
    let old = release("1.0", "1.0", "1.0");
    let new = release("1.1", "1.0..=1.1", "1.0..=1.1");
    let major = release("2.0", "2.0", "2.0");
    assert_eq!(old.writes_to(&new), Some(v(1, 0)));
    assert_eq!(new.writes_to(&old), Some(v(1, 0)));
    assert_eq!(new.writes_to(&new), Some(v(1, 1)));
    assert_eq!(new.writes_to(&major), None);
    assert_eq!(major.writes_to(&old), None);
    // A writer that writes only 1.1 cannot hand over to a 1.0 reader.
    let only = release("x", "1.1", "1.0..=1.1");
    assert_eq!(only.writes_to(&old), None);
    assert_eq!(old.writes_to(&only), Some(v(1, 0)));
}

#[test]
fn the_table_shows_every_ordered_pair_and_who_reads_whom() {
    let t = table(&[
        release("1.0", "1.0", "1.0"),
        release("next", "1.0..=1.1", "1.0..=1.1"),
        release("2.0", "2.0", "2.0"),
    ]);
    let lines: Vec<&str> = t.lines().collect();
    let row = |name: &str| {
        lines
            .iter()
            .rev()
            .find(|l| l.split_whitespace().next() == Some(name) && !l.contains("reads"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap()
    };
    assert_eq!(row("1.0"), ["1.0", "1.0", "1.0", "refused"]);
    assert_eq!(row("next"), ["next", "1.0", "1.1", "refused"]);
    assert_eq!(row("2.0"), ["2.0", "refused", "refused", "2.0"]);
    assert!(
        t.contains("1.0        reads what 1.0, next write; is read by 1.0, next"),
        "{t}"
    );
    assert!(
        t.contains("2.0        reads what 2.0 write; is read by 2.0"),
        "{t}"
    );
    assert!(t.contains("handover body versions only"), "{t}");
}

#[test]
fn the_repository_records_release_1_0_at_15a2f57() {
    let releases = load().unwrap();
    let names: Vec<&str> = releases.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"1.0"));
    assert_eq!(names.last(), Some(&NEXT));
    let one = &releases[0];
    let Source::Revision(rev) = &one.source else {
        panic!("1.0 is a revision")
    };
    assert!(rev.rev.starts_with("15a2f57"), "{}", rev.rev);
    assert_eq!(one.reads, VersionRange::single(v(1, 0)));
    assert_eq!(one.writes, VersionRange::single(v(1, 0)));
    assert_eq!(find(NEXT).unwrap(), next());
    assert!(find("0.9").unwrap_err().contains("known: 1.0"));
}

#[test]
fn a_release_lists_every_version_it_writes_and_their_golden_blobs() {
    let mut r = parse(ONE).unwrap().remove(0);
    assert_eq!(r.written_versions(), Ok(vec![v(1, 0)]));
    r.writes = VersionRange::new(v(1, 0), v(1, 2));
    assert_eq!(r.written_versions(), Ok(vec![v(1, 0), v(1, 1), v(1, 2)]));
    r.writes = VersionRange::new(v(1, 3), v(2, 0));
    let e = r.written_versions().unwrap_err();
    assert!(e.contains("spans majors"), "{e}");
    assert_eq!(golden_path(v(1, 1)), "handover-abi/tests/golden/v1_1.bin");
    assert_eq!(golden_path(v(2, 10)), "handover-abi/tests/golden/v2_10.bin");
    // The current tree has no revision to read files from.
    let e = next().files_at_revision(GOLDEN_DIR).unwrap_err();
    assert!(e.contains("current tree"), "{e}");
}
