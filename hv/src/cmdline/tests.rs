//! The command line: every option, its bounds, and the message of every
//! refusal.

use super::*;

/// The refusal of `cmdline`, as the hypervisor prints it.
fn refusal(cmdline: &str) -> String {
    match Options::parse(cmdline) {
        Ok(options) => panic!("`{cmdline}` was accepted: {options:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_empty_line_gives_the_defaults() {
    for line in ["", "   ", "\t \n"] {
        let o = Options::parse(line).unwrap();
        assert_eq!(o.lu_region, 64 << 20);
        assert_eq!(o.log_level, LogLevel::Info);
        assert_eq!(o.timer_hz, 100);
        assert_eq!(o.lu_inject, None);
        assert_eq!(o.hostlink, LinkChoice::Auto);
        assert_eq!(o.lu_watchdog, None);
    }
}

#[test]
fn the_watchdog_is_an_ib700_with_an_even_deadline_from_2_to_30_seconds() {
    for seconds in [2, 10, 30] {
        let o = Options::parse(&format!("lu_watchdog=ib700:{seconds}")).unwrap();
        assert_eq!(
            o.lu_watchdog,
            Some(Watchdog {
                device: WatchdogDevice::Ib700,
                deadline_ms: seconds * 1000,
                marker_phys: 0x6000,
            })
        );
    }
    for bad in [
        "ib700",
        "ib700:",
        "ib700:0",
        "ib700:3",
        "ib700:32",
        "i6300esb:10",
        ":10",
    ] {
        assert_eq!(
            refusal(&format!("lu_watchdog={bad}")),
            format!(
                "bad value `{bad}` for `lu_watchdog`: expected ib700:SECONDS, SECONDS even from 2 to 30 (e.g. ib700:10)"
            )
        );
    }
}

#[test]
fn every_option_is_read() {
    let o = Options::parse(
        "lu_region=128M loglvl=debug timer_hz=250 lu_inject=fail-boot autostart=domu,domu",
    )
    .unwrap();
    assert_eq!(o.lu_region, 128 << 20);
    assert_eq!(o.log_level, LogLevel::Debug);
    assert_eq!(o.timer_hz, 250);
    assert_eq!(o.lu_inject, Some(Inject::Fail(old_hv::exec::Step::Boot)));
}

#[test]
fn a_later_word_overrides_an_earlier_one() {
    let o = Options::parse("loglvl=error lu_region=16M loglvl=info lu_region=32M").unwrap();
    assert_eq!(o.lu_region, 32 << 20);
    assert_eq!(o.log_level, LogLevel::Info);
}

#[test]
fn sizes_take_k_m_and_g_in_either_case() {
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("512K"), Some(512 << 10));
    assert_eq!(parse_size("512k"), Some(512 << 10));
    assert_eq!(parse_size("64M"), Some(64 << 20));
    assert_eq!(parse_size("64m"), Some(64 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("3g"), Some(3 << 30));
    // The largest that fits, and one that does not.
    assert_eq!(parse_size("17179869183G"), Some(17_179_869_183 << 30));
    assert_eq!(parse_size("17179869184G"), None);
    assert_eq!(parse_size("18446744073709551616"), None);
}

#[test]
fn a_size_that_is_not_one_is_refused() {
    for bad in [
        "", "K", "M", "G", "64T", "64MB", "6 4M", "-4M", "0x10M", "1.5G", "M64",
    ] {
        assert_eq!(parse_size(bad), None, "`{bad}`");
    }
}

#[test]
fn the_region_is_at_least_8m_and_a_multiple_of_2m() {
    for (value, bytes) in [
        ("8M", 8 << 20),
        ("10M", 10 << 20),
        ("8192K", 8 << 20),
        ("1G", 1 << 30),
        ("4g", 4 << 30),
        ("16777216", 16 << 20),
    ] {
        let o = Options::parse(&format!("lu_region={value}")).unwrap();
        assert_eq!(o.lu_region, bytes, "{value}");
    }
    for value in [
        "6M",
        "7M",
        "9M",
        "8193K",
        "0",
        "",
        "64X",
        "sixty",
        "99999999999999999999G",
    ] {
        assert_eq!(
            refusal(&format!("lu_region={value}")),
            format!(
                "bad value `{value}` for `lu_region`: expected a size of at least 8M, \
                 a multiple of 2M (e.g. 64M)"
            )
        );
    }
}

#[test]
fn log_levels_are_error_info_and_debug() {
    for (value, level) in [
        ("error", LogLevel::Error),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
    ] {
        let o = Options::parse(&format!("loglvl={value}")).unwrap();
        assert_eq!(o.log_level, level);
    }
    assert!(LogLevel::Error < LogLevel::Info && LogLevel::Info < LogLevel::Debug);
    for value in ["", "Debug", "warn", "trace", "3"] {
        assert_eq!(
            refusal(&format!("loglvl={value}")),
            format!("bad value `{value}` for `loglvl`: expected error, info or debug")
        );
    }
}

#[test]
fn the_host_link_is_auto_or_uart() {
    assert_eq!(
        Options::parse("hostlink=uart").unwrap().hostlink,
        LinkChoice::Uart
    );
    assert_eq!(
        Options::parse("hostlink=uart hostlink=auto")
            .unwrap()
            .hostlink,
        LinkChoice::Auto
    );
    for value in ["", "virtio", "UART", "com2"] {
        assert_eq!(
            refusal(&format!("hostlink={value}")),
            format!("bad value `{value}` for `hostlink`: expected auto or uart")
        );
    }
}

#[test]
fn the_timer_rate_is_20_to_1000() {
    for hz in [20, 21, 100, 999, 1000] {
        let o = Options::parse(&format!("timer_hz={hz}")).unwrap();
        assert_eq!(o.timer_hz, hz);
    }
    for value in ["19", "0", "1001", "4294967296", "", "100Hz", "-50", "1e3"] {
        assert_eq!(
            refusal(&format!("timer_hz={value}")),
            format!("bad value `{value}` for `timer_hz`: expected 20..=1000")
        );
    }
}

#[test]
fn every_named_fault_can_be_injected() {
    for (name, fault) in Inject::NAMES {
        let o = Options::parse(&format!("lu_inject={name}")).unwrap();
        assert_eq!(o.lu_inject, Some(fault), "{name}");
    }
}

#[test]
fn an_unknown_fault_is_refused_with_every_name() {
    let message = refusal("lu_inject=fail-jump");
    assert!(
        message.starts_with("bad value `fail-jump` for `lu_inject`: expected "),
        "{message}"
    );
    // The list the message gives is the framework's, every name of it.
    let listed = message
        .split_once("expected ")
        .map(|(_, list)| list)
        .unwrap_or_default();
    let listed: Vec<&str> = listed
        .split([',', ' '])
        .filter(|w| !w.is_empty() && *w != "or")
        .collect();
    let mut names: Vec<&str> = Inject::NAMES.iter().map(|(n, _)| *n).collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    names.sort_unstable();
    assert_eq!(sorted, names, "the message lists {listed:?}");
    assert_eq!(refusal("lu_inject="), message.replace("`fail-jump`", "``"));
}

#[test]
fn autostart_takes_module_names_separated_by_commas() {
    for value in ["domu", "domu,domu", "dom-u_2,A9"] {
        assert!(
            Options::parse(&format!("autostart={value}")).is_ok(),
            "{value}"
        );
    }
    for value in [
        "",
        ",",
        "domu,",
        ",domu",
        "domu,,domu",
        "dom/u",
        "dom.u",
        "dömu",
    ] {
        assert_eq!(
            refusal(&format!("autostart={value}")),
            format!(
                "bad value `{value}` for `autostart`: expected module names separated by commas"
            )
        );
    }
}

#[test]
fn an_unknown_word_is_refused_whole() {
    assert_eq!(refusal("quiet"), "unknown option `quiet`");
    assert_eq!(refusal("lu_region=64M nosmp=1"), "unknown option `nosmp=1`");
    // Options are case-sensitive.
    assert_eq!(refusal("LOGLVL=debug"), "unknown option `LOGLVL=debug`");
    // A known option without `=` has an empty value.
    assert_eq!(
        refusal("timer_hz"),
        "bad value `` for `timer_hz`: expected 20..=1000"
    );
}

#[test]
fn the_first_refused_word_is_named() {
    assert_eq!(
        refusal("loglvl=loud timer_hz=5"),
        "bad value `loud` for `loglvl`: expected error, info or debug"
    );
}

#[test]
fn a_value_is_found_by_its_whole_key() {
    let line = "autostartx=1 autostart=domu,domu loglvl=debug autostart=other";
    assert_eq!(value(line, "autostart"), Some("domu,domu"));
    assert_eq!(value(line, "loglvl"), Some("debug"));
    assert_eq!(value(line, "timer_hz"), None);
    assert_eq!(value("autostart", "autostart"), None);
    assert_eq!(value("autostart=", "autostart"), Some(""));
    assert_eq!(value("", "autostart"), None);
}
