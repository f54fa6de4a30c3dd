//! Cold boot: the hypervisor boots, dom0 reaches its prompt, the toolstack
//! answers, and poweroff ends the run with the pass code.

use hvlu_harness::scenario::{boot, cmd, poweroff_pass};

#[test]
fn cold_boot_reaches_dom0_prompt_and_powers_off() {
    let mut m = boot("cold-boot", "");
    assert!(
        m.lines_with("(hv) live-update region").next().is_some(),
        "no region line"
    );
    let list = cmd(&mut m, "list");
    assert!(
        list.iter()
            .any(|l| l.contains("dom0") && l.contains("running")),
        "{list:?}"
    );
    let modules = cmd(&mut m, "modules");
    assert!(
        modules.iter().any(|l| l.contains("module domu")),
        "{modules:?}"
    );
    poweroff_pass(&mut m);
}

#[test]
fn toolstack_refuses_bad_input_clearly() {
    let mut m = boot("bad-input", "");
    let out = cmd(&mut m, "create nosuchmodule");
    assert!(
        out.iter()
            .any(|l| l.contains("create nosuchmodule: error: not found")),
        "{out:?}"
    );
    let out = cmd(&mut m, "destroy 42");
    assert!(
        out.iter()
            .any(|l| l.contains("destroy d42: error: not found")),
        "{out:?}"
    );
    let out = cmd(&mut m, "destroy zero");
    assert!(
        out.iter().any(|l| l.contains("is not a domain id")),
        "{out:?}"
    );
    let out = cmd(&mut m, "frobnicate");
    assert!(
        out.iter()
            .any(|l| l.contains("unknown command `frobnicate`")),
        "{out:?}"
    );
    poweroff_pass(&mut m);
}
