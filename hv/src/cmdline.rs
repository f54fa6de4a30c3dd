//! The hypervisor command line: `key=value` words separated by spaces.
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `lu_region=SIZE` | size of the live-update region (`K`, `M`, `G` suffixes) | `64M` |
//! | `loglvl=LEVEL` | `error`, `info` or `debug` | `info` |
//! | `timer_hz=N` | scheduler tick rate | `100` |
//! | `autostart=M1,M2,..` | modules dom0 creates domUs from at boot | none |
//! | `hostlink=auto\|uart` | the host link's device: the virtio-serial port when the machine has one, else COM2 (`auto`); or COM2 alone (`uart`) | `auto` |
//! | `lu_settle=background\|demand` | after an update, initialise the frametable entries it left in the background (idle time and one time slice per round of the run queue) or only when something needs them (for tests: the entries stay uninitialised until a guest names a frame, a domain is created or the next update starts) | `background` |
//! | `lu_inject=state\|digest\|args\|table\|guest\|vcpu\|fail-<step>` | fault injection for tests (never handed to the next image): corrupt the staged state (a bit at a pseudo-random place of the body), the digest or a bit of the argument page after the pre-flight check, so the incoming image must refuse; make one step before the point of no return fail (`fail-too-large`, `fail-encode`, `fail-preflight`, `fail-boot`, `fail-tables`), so the update is cancelled and the next one succeeds; flip one bit of a domU's memory during the update, so its checker must report a mismatch; or put a vCPU context outside the guest half into the state, so the checks before the jump must cancel the update | none |
//! | `lu_watchdog=ib700:SECONDS` | the machine has an ib700 watchdog (QEMU `-device ib700`): an update to an image that reads argument page 4 arms it for SECONDS (even, 2 to 30) right before the jump, and the new image disarms it before its guests run; a hang or a fault in between resets the machine (`arch::watchdog`) | none |
//!
//! An unknown word or a bad value is an error: the hypervisor stops and
//! names it rather than guessing.

use handover_abi::entry::{Watchdog, WatchdogDevice};

/// How much the hypervisor prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Only failures.
    Error,
    /// Boot milestones, domain events, update reports.
    Info,
    /// Everything, including every hypercall refusal.
    Debug,
}

/// The parsed command line.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Size of the live-update region in bytes (a multiple of 2 MiB).
    pub lu_region: u64,
    /// Log level.
    pub log_level: LogLevel,
    /// Timer interrupts per second.
    pub timer_hz: u32,
    /// Fault injection for the live-update tests.
    pub lu_inject: Option<Inject>,
    /// After an update, initialise what it left only on demand
    /// (`crate::settle`; for tests).
    pub lu_settle_on_demand: bool,
    /// Which device the host link uses (`crate::hostlink`).
    pub hostlink: LinkChoice,
    /// The watchdog an update arms before its jump, if the machine has one.
    pub lu_watchdog: Option<Watchdog>,
}

/// What `hostlink=` chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkChoice {
    /// The virtio-serial port if the machine has a usable one, else COM2.
    #[default]
    Auto,
    /// COM2, even when the machine has a virtio-serial port.
    Uart,
}

/// What `lu_inject=` injects: the framework's named faults
/// (`old_hv::exec::Fault`, with their names).
pub use old_hv::exec::Fault as Inject;

impl Default for Options {
    fn default() -> Self {
        Options {
            lu_region: 64 << 20,
            log_level: LogLevel::Info,
            timer_hz: 100,
            lu_inject: None,
            hostlink: LinkChoice::Auto,
            lu_settle_on_demand: false,
            lu_watchdog: None,
        }
    }
}

/// A word of the command line that could not be used.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum CmdlineError<'a> {
    /// The option is not known.
    #[error("unknown option `{0}`")]
    Unknown(&'a str),
    /// The value of `option` is not valid.
    #[error("bad value `{value}` for `{option}`: expected {expected}")]
    BadValue {
        option: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

/// Parses a size such as `4096`, `512K`, `64M` or `1G`.
pub fn parse_size(value: &str) -> Option<u64> {
    let (digits, shift) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 10),
        b'M' | b'm' => (&value[..value.len() - 1], 20),
        b'G' | b'g' => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Where an update that arms the watchdog leaves its marker
/// (`handover_abi::marker`): a page of the first MiB, which the page
/// allocator never manages (`mm`), no guest is given, and neither a reset
/// nor QEMU's firmware (qboot) writes (`docs/research/reset.md`: qboot
/// writes the pages at 0x1000, 0x7000 and 0x9f000).
pub const UPDATE_MARKER_PHYS: u64 = 0x6000;

/// `ib700:SECONDS`: the ib700's deadlines are even seconds from 2 to 30.
fn parse_watchdog(value: &str) -> Option<Watchdog> {
    let (device, seconds) = value.split_once(':')?;
    let seconds: u32 = seconds.parse().ok()?;
    match device {
        "ib700" if (2..=30).contains(&seconds) && seconds.is_multiple_of(2) => Some(Watchdog {
            device: WatchdogDevice::Ib700,
            deadline_ms: seconds * 1000,
            marker_phys: UPDATE_MARKER_PHYS,
        }),
        _ => None,
    }
}

impl Options {
    /// Parses `cmdline`.
    pub fn parse(cmdline: &str) -> Result<Options, CmdlineError<'_>> {
        let mut options = Options::default();
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "lu_region" => {
                    const EXPECTED: &str = "a size of at least 8M, a multiple of 2M (e.g. 64M)";
                    let size = parse_size(value)
                        .filter(|s| *s >= 8 << 20 && s % (2 << 20) == 0)
                        .ok_or(CmdlineError::BadValue {
                            option: key,
                            value,
                            expected: EXPECTED,
                        })?;
                    options.lu_region = size;
                }
                "loglvl" => {
                    options.log_level = match value {
                        "error" => LogLevel::Error,
                        "info" => LogLevel::Info,
                        "debug" => LogLevel::Debug,
                        _ => {
                            return Err(CmdlineError::BadValue {
                                option: key,
                                value,
                                expected: "error, info or debug",
                            })
                        }
                    }
                }
                "timer_hz" => {
                    options.timer_hz = value
                        .parse()
                        .ok()
                        .filter(|hz| (20..=1000).contains(hz))
                        .ok_or(CmdlineError::BadValue {
                            option: key,
                            value,
                            expected: "20..=1000",
                        })?;
                }
                "lu_settle" => {
                    options.lu_settle_on_demand = match value {
                        "background" => false,
                        "demand" => true,
                        _ => {
                            return Err(CmdlineError::BadValue {
                                option: key,
                                value,
                                expected: "background or demand",
                            })
                        }
                    }
                }
                "lu_inject" => {
                    options.lu_inject =
                        Some(Inject::from_name(value).ok_or(CmdlineError::BadValue {
                            option: key,
                            value,
                            expected: "state, digest, guest, vcpu, args, table, fail-too-large, \
                                       fail-encode, fail-preflight, fail-boot or fail-tables",
                        })?);
                }
                "hostlink" => {
                    options.hostlink = match value {
                        "auto" => LinkChoice::Auto,
                        "uart" => LinkChoice::Uart,
                        _ => {
                            return Err(CmdlineError::BadValue {
                                option: key,
                                value,
                                expected: "auto or uart",
                            })
                        }
                    }
                }
                "lu_watchdog" => {
                    options.lu_watchdog =
                        Some(parse_watchdog(value).ok_or(CmdlineError::BadValue {
                            option: key,
                            value,
                            expected: "ib700:SECONDS, SECONDS even from 2 to 30 (e.g. ib700:10)",
                        })?);
                }
                "autostart" => {
                    let ok = value.split(',').all(|m| {
                        !m.is_empty()
                            && m.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                    if !ok {
                        return Err(CmdlineError::BadValue {
                            option: key,
                            value,
                            expected: "module names separated by commas",
                        });
                    }
                }
                _ => return Err(CmdlineError::Unknown(word)),
            }
        }
        Ok(options)
    }
}

/// The value of option `key`, if present (for options whose value is text,
/// already validated by [`Options::parse`]).
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests;
