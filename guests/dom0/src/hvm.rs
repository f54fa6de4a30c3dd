//! dom0's commands for HVM domains: `logdirty`.

use pvrt::console::print;
use pvrt::hc;
use pvrt::hvlu_types::DomId;
use pvrt::println;
use pvrt::pv_abi::call::LogDirtyOp;

use crate::reason;

/// How many dirty gpfns `logdirty peek|clean` prints.
const SHOWN: usize = 64;

/// `logdirty <id> on|peek|clean|off`.
pub fn logdirty(id: &str, op: &str) {
    let Ok(id) = id.parse::<u16>().map(DomId) else {
        println!("logdirty: `{id}` is not a domain id");
        return;
    };
    let op_code = match op {
        "on" => LogDirtyOp::Enable,
        "peek" => LogDirtyOp::Peek,
        "clean" => LogDirtyOp::Clean,
        "off" => LogDirtyOp::Off,
        _ => {
            println!("logdirty: `{op}` is none of on, peek, clean, off");
            return;
        }
    };
    let mut first = [0u64; SHOWN];
    // A clean must list every dirty page or none (the hypervisor refuses a
    // shorter list, which would lose pages): this command lists none, it
    // says how many there were.
    let room = if op_code == LogDirtyOp::Clean {
        &mut first[..0]
    } else {
        &mut first[..]
    };
    match hc::log_dirty(id, op_code, room) {
        Ok(dirty) if matches!(op_code, LogDirtyOp::Peek | LogDirtyOp::Clean) => {
            // One line, in pieces (the hypervisor joins a domain's output
            // up to its newline).
            let shown = if op_code == LogDirtyOp::Clean {
                0
            } else {
                (dirty as usize).min(SHOWN)
            };
            print(format_args!("logdirty d{id} {op}: {dirty} dirty"));
            if shown > 0 {
                print(format_args!(":"));
            }
            for g in &first[..shown] {
                print(format_args!(" {g:#x}"));
            }
            println!("");
        }
        Ok(_) => println!("logdirty d{id} {op}: done"),
        Err(e) => println!("logdirty d{id} {op}: error: {}: {}", e.name(), reason()),
    }
}
