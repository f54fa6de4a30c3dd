//! The released hypervisors, recorded in `releases.toml` at the root of
//! the repository, and their images, each built from its own revision.
//!
//! A release is a name (`1.0`, …), the git revision it is built from, the
//! handover ABI versions it writes and reads, the toolchain it is built
//! with, its build command and where that command leaves the images. The
//! current tree is the pseudo-release [`NEXT`]: its ranges are this
//! build's `handover_abi::{WRITES, READS}`, its images those
//! `cargo xtask build --release` leaves in `target/`.
//!
//! [`Release::images`] builds a recorded release the first time it is
//! asked for (`cargo xtask build --release-images` asks for every one):
//!
//! 1. the revision must be in this clone; a shallow clone fetches it
//!    (`git fetch --depth 1 origin REV`), any other clone that lacks it
//!    fails with the command to run;
//! 2. the release's toolchain is installed by rustup if missing;
//! 3. a detached `git worktree` of the revision is made at
//!    `target/releases/<name>/src`, with the revision's own `Cargo.lock`;
//! 4. the release's own build command runs there, with the release's
//!    toolchain (`rustup run`), its own target directory
//!    (`target/releases/<name>/src/target`) and an environment cleaned of
//!    every `CARGO*`, `RUST*` and `HVLU_*` setting of the caller, so the
//!    image is built as it was released — but for one setting:
//!    `HVLU_TRUSTED_KEYS` names `target/releases/trusted-keys`, the public
//!    key of the current signing key, so that a release that checks
//!    signatures (1.1 on) accepts the images this tree signs, as a
//!    released image trusts its vendor's key (1.0 checks none and ignores
//!    it); its output goes to `target/releases/<name>/build.log`; the build
//!    must leave the worktree clean (no edited `Cargo.lock`);
//! 5. `hv`, `dom0` and `domu` are copied to `target/releases/<name>/` and
//!    the revision, toolchain, command and trusted key id written to
//!    `built-from`: a later
//!    call with the same record finds them there and builds nothing;
//! 6. on every call the copied `hv` is signed with the current signing key
//!    ([`crate::keys::signing_key`]): the trailer goes after the ELF bytes,
//!    which the release's own build made and which are not changed, so the
//!    current hypervisor's `lu load` accepts it;
//! 7. the image's `HVLU` note must state the ranges the record gives (an
//!    older note without a `writes` range is checked for `reads` only).
//!
//! A note on cargo's configuration: cargo reads `.cargo/config.toml` from
//! every directory above the one it runs in, so the release build also
//! sees this repository's file (arrays such as `rustflags` are joined).
//! The images of 1.0 built in the worktree and in a clone outside this
//! tree were byte for byte equal when this was written; a setting added to
//! the root file that changes code generation would reach the releases'
//! builds too.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use handover_abi::note::ImageNote;
use handover_abi::version::{negotiate, AbiVersion, VersionRange};
use old_hv::image::{validate, ImageLimits};
use serde::Deserialize;

use crate::keys;
use crate::qemu::{root, Images};

/// The file that records the releases, at the root of the repository.
pub const FILE: &str = "releases.toml";

/// The name of the current tree as a pseudo-release.
pub const NEXT: &str = "next";

/// The images a hypervisor release consists of, by file name.
pub const IMAGE_FILES: [&str; 3] = ["hv", "dom0", "domu"];

/// One hypervisor release, or the current tree ([`NEXT`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `1.0`, `1.1`, …, or [`NEXT`].
    pub name: String,
    /// The handover versions its image writes.
    pub writes: VersionRange,
    /// The handover versions its image reads (what its `HVLU` note says).
    pub reads: VersionRange,
    /// Where its images come from.
    pub source: Source,
}

/// Where a release's images come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Built from a recorded revision.
    Revision(Revision),
    /// The current tree, built by `cargo xtask build --release`.
    Tree,
}

/// How a recorded release is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The full commit hash (40 hex digits).
    pub rev: String,
    /// The rustup toolchain it is built with; `None`: the default one.
    pub toolchain: Option<String>,
    /// The build command, run in the revision's worktree.
    pub build: Vec<String>,
    /// Where the build leaves `hv`, `dom0` and `domu`, relative to the
    /// worktree.
    pub images: PathBuf,
}

/// A release's images: the hypervisor (signed with the current key) and
/// its own guests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseImages {
    /// The hypervisor image.
    pub hv: PathBuf,
    /// Its dom0.
    pub dom0: PathBuf,
    /// Its domU.
    pub domu: PathBuf,
}

impl ReleaseImages {
    fn in_dir(dir: &Path) -> ReleaseImages {
        ReleaseImages {
            hv: dir.join("hv"),
            dom0: dir.join("dom0"),
            domu: dir.join("domu"),
        }
    }

    fn paths(&self) -> [&Path; 3] {
        [&self.hv, &self.dom0, &self.domu]
    }

    /// A machine of this release: its hypervisor, with its dom0 and domU
    /// as the boot modules `dom0` and `domu`.
    pub fn boot(&self) -> Images {
        Images {
            hv: self.hv.clone(),
            modules: vec![
                ("dom0".into(), self.dom0.clone()),
                ("domu".into(), self.domu.clone()),
            ],
        }
    }
}

/// A revision [`FILE`] does not record, built as a release is
/// ([`Release::unrecorded`]).
#[derive(Clone, Debug)]
pub struct Unrecorded {
    /// The full commit hash.
    pub rev: String,
    /// Where its worktree and images are: `target/releases/<name>/`.
    pub dir: PathBuf,
    /// Its images, the hypervisor signed with the current key.
    pub images: ReleaseImages,
    /// The handover versions its hypervisor's note says it reads and
    /// writes (the reads if the note has no writes), or why today's note
    /// reader cannot tell (a note form only unreleased builds had).
    pub ranges: Result<(VersionRange, VersionRange), String>,
}

/// One `[[release]]` table of the file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    name: String,
    rev: String,
    writes: String,
    reads: String,
    toolchain: Option<String>,
    build: Vec<String>,
    images: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    #[serde(default)]
    release: Vec<Record>,
}

/// Parses a version, `M.m`.
fn parse_version(text: &str) -> Option<AbiVersion> {
    let (major, minor) = text.split_once('.')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    Some(AbiVersion::new(number(major)?, number(minor)?))
}

/// Parses a version range, `M.m..=M.n`, or one version `M.m`; an empty
/// range is refused.
pub fn parse_range(text: &str) -> Result<VersionRange, String> {
    let bad = || format!("`{text}` is not a version (`1.0`) or a range (`1.0..=1.1`)");
    let range = match text.split_once("..=") {
        Some((min, max)) => VersionRange::new(
            parse_version(min).ok_or_else(bad)?,
            parse_version(max).ok_or_else(bad)?,
        ),
        None => VersionRange::single(parse_version(text).ok_or_else(bad)?),
    };
    if range.is_empty() {
        return Err(format!("`{text}` is an empty range"));
    }
    Ok(range)
}

/// A range as the table prints it: one version alone, else `min..=max`.
pub fn show_range(range: VersionRange) -> String {
    if range.min == range.max {
        range.min.to_string()
    } else {
        range.to_string()
    }
}

/// Parses the text of `releases.toml`: the recorded releases, in the
/// file's order. Every error names the release and the field.
pub fn parse(text: &str) -> Result<Vec<Release>, String> {
    let file: RecordFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut releases: Vec<Release> = Vec::new();
    for record in file.release {
        let name = record.name;
        let fail = |what: String| format!("release `{name}`: {what}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(fail(
                "a name is letters, digits, `.`, `_` and `-`, not empty".into(),
            ));
        }
        if name == NEXT {
            return Err(fail(format!(
                "`{NEXT}` is the current tree's name; a release cannot take it"
            )));
        }
        if releases.iter().any(|r| r.name == name) {
            return Err(fail("recorded twice".into()));
        }
        if record.rev.len() != 40 || !record.rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(format!(
                "rev `{}` is not a full commit hash (40 hex digits)",
                record.rev
            )));
        }
        let writes = parse_range(&record.writes).map_err(|e| fail(format!("writes: {e}")))?;
        let reads = parse_range(&record.reads).map_err(|e| fail(format!("reads: {e}")))?;
        if record.build.is_empty() {
            return Err(fail("build: the command is empty".into()));
        }
        let images = PathBuf::from(&record.images);
        if images.is_absolute()
            || images
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(fail(format!(
                "images `{}` must be a path inside the worktree",
                record.images
            )));
        }
        if record.toolchain.as_deref() == Some("") {
            return Err(fail(
                "toolchain: empty (leave it out for the default)".into(),
            ));
        }
        releases.push(Release {
            name,
            writes,
            reads,
            source: Source::Revision(Revision {
                rev: record.rev.to_ascii_lowercase(),
                toolchain: record.toolchain,
                build: record.build,
                images,
            }),
        });
    }
    Ok(releases)
}

/// The current tree as the pseudo-release [`NEXT`].
pub fn next() -> Release {
    Release {
        name: NEXT.into(),
        writes: handover_abi::WRITES,
        reads: handover_abi::READS,
        source: Source::Tree,
    }
}

/// Every recorded release of the repository's `releases.toml`, in its
/// order, then [`NEXT`].
pub fn load() -> Result<Vec<Release>, String> {
    let path = root().join(FILE);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut releases = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    releases.push(next());
    Ok(releases)
}

/// The release called `name` ([`NEXT`] for the current tree).
pub fn find(name: &str) -> Result<Release, String> {
    let releases = load()?;
    let names: Vec<&str> = releases.iter().map(|r| r.name.as_str()).collect();
    let known = names.join(", ");
    releases
        .iter()
        .find(|r| r.name == name)
        .cloned()
        .ok_or_else(|| format!("no release `{name}` in {FILE} (known: {known})"))
}

impl Release {
    /// The handover version this release's image writes when it hands
    /// over to `to`'s image, or `None` when it refuses to (before anything
    /// is paused): the version rule of `docs/abi.md` §1.
    pub fn writes_to(&self, to: &Release) -> Option<AbiVersion> {
        negotiate(self.writes, to.reads)
    }

    /// Where a recorded release's worktree and images go:
    /// `target/releases/<name>/`.
    pub fn dir(&self) -> PathBuf {
        root().join("target/releases").join(&self.name)
    }

    /// The release's images, signed with the current key. A recorded
    /// release is built from its revision unless it was built before (see
    /// the [module documentation](self)); the current tree's images must
    /// have been built by `cargo xtask build --release`.
    pub fn images(&self) -> Result<ReleaseImages, String> {
        let images = match &self.source {
            Source::Tree => {
                let images =
                    ReleaseImages::in_dir(&root().join("target/x86_64-unknown-none/release"));
                if let Some(missing) = images.paths().into_iter().find(|p| !p.exists()) {
                    return Err(format!(
                        "{} is missing: build the current tree with `cargo xtask build --release`",
                        missing.display()
                    ));
                }
                self.check_note(&images.hv)?;
                images
            }
            Source::Revision(revision) => {
                let images = self.built_and_signed(revision)?;
                self.check_note(&images.hv)?;
                images
            }
        };
        Ok(images)
    }

    /// A revision that [`FILE`] does not record (the baseline `cargo xtask
    /// bench` compares with), under the name `name`: built, cached in
    /// `target/releases/<name>/` and signed as a recorded release is (see
    /// the [module documentation](self)), by `cargo xtask build --release`
    /// with the default toolchain (or the revision's own toolchain file),
    /// its images taken where that command leaves them. `rev` is anything
    /// git names a commit by.
    pub fn unrecorded(name: &str, rev: &str) -> Result<Unrecorded, String> {
        let commit = format!("{rev}^{{commit}}");
        let full = git(&root(), &["rev-parse", "--verify", "--quiet", &commit])
            .map_err(|_| format!("`{rev}` names no commit of this clone (fetch it first)"))?;
        let revision = Revision {
            rev: full.trim().to_string(),
            toolchain: None,
            build: ["cargo", "xtask", "build", "--release"]
                .map(String::from)
                .to_vec(),
            images: PathBuf::from("target/x86_64-unknown-none/release"),
        };
        // Its ranges are not recorded: what its note says is read after
        // the build, for the caller.
        let unknown = VersionRange::single(AbiVersion::new(0, 0));
        let release = Release {
            name: name.into(),
            writes: unknown,
            reads: unknown,
            source: Source::Revision(revision.clone()),
        };
        let images = release.built_and_signed(&revision)?;
        let ranges = release
            .note_of(&images.hv)
            .map(|note| (note.reads, note.writes.unwrap_or(note.reads)));
        Ok(Unrecorded {
            rev: revision.rev,
            dir: release.dir(),
            images,
            ranges,
        })
    }

    /// The images of `revision`, built ([`Release::build`]) and the
    /// hypervisor signed with the current key.
    fn built_and_signed(&self, revision: &Revision) -> Result<ReleaseImages, String> {
        // Tests of one binary run in threads: one build and signing at a
        // time (a signature is written in place).
        static PREPARING: Mutex<()> = Mutex::new(());
        let _one = PREPARING.lock().unwrap_or_else(PoisonError::into_inner);
        let images = self.build(revision)?;
        let key = keys::signing_key();
        keys::sign_file(&key, &images.hv, &images.hv)?;
        Ok(images)
    }

    /// Builds the release from its revision unless `built-from` says it
    /// was built with the same record and the images are there.
    fn build(&self, revision: &Revision) -> Result<ReleaseImages, String> {
        let dir = self.dir();
        let images = ReleaseImages::in_dir(&dir);
        let stamp = dir.join("built-from");
        let (trusted, key_id) = trusted_keys()?;
        let want = revision.stamp(&key_id);
        if fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
            && images.paths().iter().all(|p| p.exists())
        {
            return Ok(images);
        }
        let _ = fs::remove_file(&stamp);
        let short = &revision.rev[..7];
        println!(
            "release {}: building from {short} (cached in {} afterwards)",
            self.name,
            dir.display()
        );
        ensure_revision(&self.name, &revision.rev)?;
        if let Some(toolchain) = &revision.toolchain {
            ensure_toolchain(toolchain)?;
        }
        let src = dir.join("src");
        checkout(&src, &revision.rev)?;

        let log = dir.join("build.log");
        let mut cmd = match &revision.toolchain {
            Some(toolchain) => {
                let mut c = Command::new("rustup");
                c.args(["run", toolchain]).args(&revision.build);
                c
            }
            None => {
                let mut c = Command::new(&revision.build[0]);
                c.args(&revision.build[1..]);
                c
            }
        };
        cmd.current_dir(&src);
        clean_env(&mut cmd);
        // A release that checks signatures trusts the key this tree signs
        // with (its build reads the file `HVLU_TRUSTED_KEYS` names).
        cmd.env("HVLU_TRUSTED_KEYS", &trusted);
        let program = Path::new(cmd.get_program()).to_string_lossy().into_owned();
        let line = cmd
            .get_args()
            .fold(program, |line, a| format!("{line} {}", a.to_string_lossy()));
        println!(
            "release {}: (cd {} && {line} > {} 2>&1)",
            self.name,
            src.display(),
            log.display()
        );
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let status = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("release {}: cannot run `{line}`: {e}", self.name))?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!(
                "release {}: `{line}` failed ({status}) after {seconds:.1} s; its last lines:\n{}\nlog: {}",
                self.name,
                tail(&log, 20),
                log.display()
            ));
        }
        let changed = git(&src, &["status", "--porcelain"])?;
        if !changed.trim().is_empty() {
            return Err(format!(
                "release {}: its build changed its worktree {} (a build must use the \
                 revision as it is, its Cargo.lock included):\n{changed}",
                self.name,
                src.display()
            ));
        }
        for (file, to) in IMAGE_FILES.iter().zip(images.paths()) {
            let from = src.join(&revision.images).join(file);
            fs::copy(&from, to).map_err(|e| {
                format!(
                    "release {}: {}: {e} (does `images` in {FILE} name where its build \
                     leaves the images?)",
                    self.name,
                    from.display()
                )
            })?;
        }
        fs::write(&stamp, want).map_err(|e| format!("{}: {e}", stamp.display()))?;
        println!(
            "release {}: built from {short} in {seconds:.1} s: {}",
            self.name,
            sizes(&images)
        );
        Ok(images)
    }

    /// The `HVLU` note of the hypervisor image `hv`.
    fn note_of(&self, hv: &Path) -> Result<ImageNote, String> {
        let bytes = fs::read(hv).map_err(|e| format!("{}: {e}", hv.display()))?;
        let image = old_hv::signature::strip(&bytes);
        // Any note range meets this one, so only the image itself can fail.
        let everything =
            VersionRange::new(AbiVersion::new(0, 0), AbiVersion::new(u16::MAX, u16::MAX));
        let limits = ImageLimits { max_span: u64::MAX };
        Ok(validate(image, everything, &limits)
            .map_err(|e| format!("release {}: {}: {e}", self.name, hv.display()))?
            .note)
    }

    /// Checks that the image's `HVLU` note states the recorded ranges.
    fn check_note(&self, hv: &Path) -> Result<(), String> {
        let note = self.note_of(hv)?;
        let mismatch = |what: &str, recorded: VersionRange, noted: VersionRange| {
            format!(
                "release {}: {FILE} says it {what} {}, its image's note says {}",
                self.name,
                show_range(recorded),
                show_range(noted)
            )
        };
        if note.reads != self.reads {
            return Err(mismatch("reads", self.reads, note.reads));
        }
        match note.writes {
            Some(writes) if writes != self.writes => Err(mismatch("writes", self.writes, writes)),
            _ => Ok(()),
        }
    }
}

/// Where the golden handover blobs are kept, one per released handover
/// version (`handover-abi/tests/golden/README.md`).
pub const GOLDEN_DIR: &str = "handover-abi/tests/golden";

/// The golden blob of handover version `version`, relative to the root:
/// `handover-abi/tests/golden/v<major>_<minor>.bin`.
pub fn golden_path(version: AbiVersion) -> String {
    format!("{GOLDEN_DIR}/v{}_{}.bin", version.major, version.minor)
}

impl Release {
    /// Every handover version the release writes, oldest first. A range
    /// lists the minors of its one major; a range across majors is refused,
    /// as the minors of its lower major are not known from the range.
    pub fn written_versions(&self) -> Result<Vec<AbiVersion>, String> {
        let (min, max) = (self.writes.min, self.writes.max);
        if min.major != max.major {
            return Err(format!(
                "release {}: writes {} spans majors; list its versions one major at a time",
                self.name, self.writes
            ));
        }
        Ok((min.minor..=max.minor)
            .map(|minor| AbiVersion::new(min.major, minor))
            .collect())
    }

    /// The recorded revision, fetched into this clone if it is shallow
    /// ([`ensure_revision`]); the current tree has none.
    fn present_revision(&self) -> Result<&str, String> {
        match &self.source {
            Source::Revision(revision) => {
                ensure_revision(&self.name, &revision.rev)?;
                Ok(&revision.rev)
            }
            Source::Tree => Err(format!(
                "`{}` is the current tree: it has no recorded revision",
                self.name
            )),
        }
    }

    /// The exact bytes of the file at `path` (relative to the root) at the
    /// release's revision: `git show REV:path`.
    pub fn file_at_revision(&self, path: &str) -> Result<Vec<u8>, String> {
        let rev = self.present_revision()?;
        git_bytes(&root(), &["show", &format!("{rev}:{path}")])
            .map_err(|e| format!("release {}: {e}", self.name))
    }

    /// The paths (relative to the root) of the files directly in the
    /// directory `dir` at the release's revision; none if it had no such
    /// directory.
    pub fn files_at_revision(&self, dir: &str) -> Result<Vec<String>, String> {
        let rev = self.present_revision()?;
        let dir = format!("{}/", dir.trim_end_matches('/'));
        let list = git(&root(), &["ls-tree", "--name-only", rev, &dir])
            .map_err(|e| format!("release {}: {e}", self.name))?;
        Ok(list.lines().map(str::to_string).collect())
    }
}

impl Revision {
    /// What `built-from` holds for images built from this record, trusting
    /// the key `key_id`.
    fn stamp(&self, key_id: &str) -> String {
        format!(
            "rev {}\ntoolchain {}\nbuild {}\nimages {}\ntrusts {key_id}\n",
            self.rev,
            self.toolchain.as_deref().unwrap_or("(default)"),
            self.build.join(" "),
            self.images.display()
        )
    }
}

/// The images' sizes, for the build's last line.
pub fn sizes(images: &ReleaseImages) -> String {
    IMAGE_FILES
        .iter()
        .zip(images.paths())
        .map(|(name, p)| {
            let len = fs::metadata(p).map_or(0, |m| m.len());
            format!("{name} {} KiB", len.div_ceil(1024))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `target/releases/trusted-keys`, the public key of the current
/// signing key ([`keys::signing_key`]) as a release build's trusted keys
/// file; returns its path and the key's id.
fn trusted_keys() -> Result<(PathBuf, String), String> {
    let seed = keys::read_secret(&keys::signing_key())?;
    let public = old_hv::signature::public_key(&seed);
    let id = old_hv::signature::KeyId::of(&public).to_string();
    let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
    let path = root().join("target/releases/trusted-keys");
    let text = format!("# the key the current tree signs with (key id {id})\n{hex}\n");
    if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok((path, id))
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes the caller's build settings, so that a release builds as
/// released: every `CARGO*` variable but `CARGO_HOME`, the compiler's
/// (`RUSTC*`, `RUSTDOC*`, `RUSTFLAGS`), `RUSTUP_TOOLCHAIN*` (`rustup run`
/// chooses) and every `HVLU_*` (build id, ABI flag, keys).
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        let drop = (k.starts_with("CARGO") && k != "CARGO_HOME")
            || ["RUSTC", "RUSTDOC", "RUSTFLAGS", "RUSTUP_TOOLCHAIN", "HVLU_"]
                .iter()
                .any(|p| k.starts_with(p));
        if drop {
            cmd.env_remove(&key);
        }
    }
}

/// Runs git in `dir`; its standard output, or an error with the command
/// and its standard error.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    git_bytes(dir, args).map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// Runs git in `dir`; its standard output as bytes (a file's exact
/// content), or an error with the command and its standard error.
fn git_bytes(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`git -C {} {}` failed: {}",
            dir.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes sure the commit `rev` (of the release `name`, for the messages)
/// is in this clone: a shallow clone fetches it; any other clone that
/// lacks it fails with the command to run.
pub fn ensure_revision(name: &str, rev: &str) -> Result<(), String> {
    let root = root();
    let commit = format!("{rev}^{{commit}}");
    let present = || git(&root, &["cat-file", "-e", &commit]).is_ok();
    if present() {
        return Ok(());
    }
    let shallow = git(&root, &["rev-parse", "--is-shallow-repository"])?;
    if shallow.trim() == "true" {
        let args = ["fetch", "--depth", "1", "origin", rev];
        println!(
            "release {name}: this clone is shallow: $ git {}",
            args.join(" ")
        );
        git(&root, &args).map_err(|e| {
            format!(
                "release {name}: commit {rev} is not in this shallow clone and fetching it \
                 failed ({e}); run `git fetch --depth 1 origin {rev}` (or \
                 `git fetch --unshallow origin`) in {}",
                root.display()
            )
        })?;
        if present() {
            return Ok(());
        }
    }
    Err(format!(
        "release {name}: commit {rev} is not in this clone; run `git fetch origin {rev}` in {}",
        root.display()
    ))
}

/// Makes sure rustup has `toolchain`, installing it (with the bare-metal
/// target, rustfmt and clippy, which a release's `cargo xtask` checks
/// for) if missing.
fn ensure_toolchain(toolchain: &str) -> Result<(), String> {
    let works = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    let args = [
        "toolchain",
        "install",
        toolchain,
        "--profile",
        "minimal",
        "--target",
        "x86_64-unknown-none",
        "--component",
        "rustfmt",
        "--component",
        "clippy",
    ];
    println!("$ rustup {}", args.join(" "));
    let status = Command::new("rustup")
        .args(args)
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            format!(
                "rustup is needed to build with toolchain {toolchain} ({e}); install it \
                 (https://rustup.rs), then run: rustup {}",
                args.join(" ")
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup {}` failed ({status}): the toolchain is needed to build a release",
            args.join(" ")
        ))
    }
}

/// Makes `src` a detached worktree of `rev` with nothing changed, reusing
/// one that already is (its own target directory then builds
/// incrementally).
fn checkout(src: &Path, rev: &str) -> Result<(), String> {
    let root = root();
    if src.join(".git").exists() {
        let head = git(src, &["rev-parse", "HEAD"]).unwrap_or_default();
        let clean = git(src, &["status", "--porcelain"]).is_ok_and(|s| s.trim().is_empty());
        if head.trim() == rev && clean {
            return Ok(());
        }
    }
    let path = src.to_string_lossy();
    if src.exists() && git(&root, &["worktree", "remove", "--force", &path]).is_err() {
        fs::remove_dir_all(src).map_err(|e| format!("{}: {e}", src.display()))?;
    }
    if let Some(parent) = src.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    // `--force`: a worktree whose directory went (a `cargo clean`) stays
    // registered at its path, which would refuse a new one there.
    git(
        &root,
        &["worktree", "add", "--force", "--detach", &path, rev],
    )
    .map(drop)
}

/// The releases as a table: each one's revision and ranges, then for every
/// ordered pair the version the first writes when it hands over to the
/// second, and who reads whom. Only handover body versions are compared.
pub fn table(releases: &[Release]) -> String {
    const CORNER: &str = "from \\ to";
    const REFUSED: &str = "refused";
    let mut t = String::new();
    let longest = releases.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let width = longest.max(CORNER.len());
    let cell = longest.max(REFUSED.len());
    let _ = writeln!(
        t,
        "{:width$}  {:8}  {:9}  {:9}  reads",
        "release", "revision", "toolchain", "writes"
    );
    for r in releases {
        let (rev, toolchain) = match &r.source {
            Source::Revision(v) => (&v.rev[..7], v.toolchain.as_deref().unwrap_or("default")),
            Source::Tree => ("tree", "current"),
        };
        let _ = writeln!(
            t,
            "{:width$}  {rev:8}  {toolchain:9}  {:9}  {}",
            r.name,
            show_range(r.writes),
            show_range(r.reads)
        );
    }
    let _ = writeln!(
        t,
        "\nAn update from the row's image to the column's writes this handover\n\
         version (docs/abi.md §1), or is refused before anything is paused:"
    );
    let _ = write!(t, "{CORNER:width$}");
    for to in releases {
        let _ = write!(t, "  {:cell$}", to.name);
    }
    let _ = writeln!(t);
    for from in releases {
        let _ = write!(t, "{:width$}", from.name);
        for to in releases {
            let v = from
                .writes_to(to)
                .map_or_else(|| REFUSED.to_string(), |v| v.to_string());
            let _ = write!(t, "  {v:cell$}");
        }
        let _ = writeln!(t);
    }
    let _ = writeln!(t);
    let names = |list: Vec<&str>| {
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    for r in releases {
        let reads = releases
            .iter()
            .filter(|from| from.writes_to(r).is_some())
            .map(|from| from.name.as_str())
            .collect();
        let read_by = releases
            .iter()
            .filter(|to| r.writes_to(to).is_some())
            .map(|to| to.name.as_str())
            .collect();
        let _ = writeln!(
            t,
            "{:width$}  reads what {} write; is read by {}",
            r.name,
            names(reads),
            names(read_by)
        );
    }
    let _ = write!(
        t,
        "\nThis compares handover body versions only. The rest of the contract (the\n\
         entry's argument page, where the state is staged, how the new image boots)\n\
         is agreed from the image's note at `lu load` (docs/abi.md §4.3);\n\
         `cargo xtask compat` runs every pair in QEMU."
    );
    t.lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests;
