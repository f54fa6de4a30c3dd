//! Work deferred past an update's resume: a request that comes before the
//! first tick gets the answer it would get after it.

use hvlu_types::{Mfn, MfnRange};

use super::*;
use crate::mm::pages::PageAllocator;

/// What a guest can ask of a hypervisor just entered by a live update
/// (the boot modules, free frames), with what the incoming side left for
/// after the resume: listing the modules and releasing free RAM.
struct Resumed {
    modules: Vec<&'static str>,
    pages: PageAllocator,
    /// Pieces of deferred work run so far, in order.
    ran: Vec<&'static str>,
    deferred: Deferred<Resumed>,
}

impl Defers for Resumed {
    fn deferred(&mut self) -> &mut Deferred<Resumed> {
        &mut self.deferred
    }
}

/// The boot modules of the machine.
const MODULES: [&str; 4] = ["dom0", "domu", "hv", "hv-b"];

/// A hypervisor just resumed: no module listed, no frame free yet, the
/// work to do both deferred, as `lu::incoming` leaves it.
fn resumed() -> Resumed {
    let mut s = Resumed {
        modules: Vec::new(),
        pages: PageAllocator::new(4096),
        ran: Vec::new(),
        deferred: Deferred::new(),
    };
    s.deferred.push(|s: &mut Resumed| {
        s.pages.release(MfnRange::new(Mfn(256), 3000));
        s.ran.push("release");
    });
    s.deferred.push(|s: &mut Resumed| {
        s.modules = MODULES.to_vec();
        s.ran.push("modules");
    });
    s
}

/// `create NAME PAGES` as the hypervisor answers it: the module must be
/// listed and the frames free.
fn create(s: &mut Resumed, name: &str, pages: u64) -> Result<Vec<Mfn>, String> {
    if !s.modules.contains(&name) {
        return Err(format!(
            "there is no boot module `{name}`; the boot modules are: {}",
            s.modules.join(", ")
        ));
    }
    if s.pages.free_frames() < pages {
        return Err(format!(
            "{pages} pages asked for, {} free",
            s.pages.free_frames()
        ));
    }
    Ok((0..pages).filter_map(|_| s.pages.alloc()).collect())
}

#[test]
fn without_the_gate_a_request_would_find_nothing() {
    // What a request would see without the gate: the failure of issue 13,
    // item 7 (`lu load hv` right after `lu exec: done`).
    let mut s = resumed();
    assert_eq!(
        create(&mut s, "hv", 64),
        Err("there is no boot module `hv`; the boot modules are: ".to_string())
    );
    s.modules = MODULES.to_vec();
    assert_eq!(
        create(&mut s, "hv", 64),
        Err("64 pages asked for, 0 free".to_string())
    );
}

#[test]
fn a_request_before_the_first_tick_gets_the_whole_answer() {
    let mut s = resumed();
    let frames = answer(&mut s, |s| create(s, "hv", 64)).unwrap();
    assert_eq!(frames.len(), 64);
    assert_eq!(
        s.ran,
        ["release", "modules"],
        "in the order left, once each"
    );
    assert!(s.deferred.is_empty());
    assert_eq!(s.pages.free_frames(), 3000 - 64);
    // Every module is listed to the request, and to the ones after it.
    for name in MODULES {
        assert!(answer(&mut s, |s| create(s, name, 1)).is_ok(), "{name}");
    }
    // The first tick finds nothing left to do.
    run(&mut s);
    assert_eq!(s.ran, ["release", "modules"]);
    assert_eq!(s.pages.free_frames(), 3000 - 64 - MODULES.len() as u64);
}

#[test]
fn after_the_first_tick_requests_find_the_work_done_once() {
    let mut s = resumed();
    run(&mut s);
    assert_eq!(s.ran, ["release", "modules"]);
    assert_eq!(
        answer(&mut s, |s| create(s, "hv-b", 3000)).map(|f| f.len()),
        Ok(3000)
    );
    assert_eq!(
        answer(&mut s, |s| create(s, "hv-b", 1)),
        Err("1 pages asked for, 0 free".to_string()),
        "the frames were released once, not twice"
    );
    assert_eq!(s.ran, ["release", "modules"]);
}

#[test]
fn work_left_by_deferred_work_runs_before_the_request_too() {
    let mut s = resumed();
    s.deferred.push(|s: &mut Resumed| {
        s.ran.push("report");
        s.deferred.push(|s: &mut Resumed| s.ran.push("late"));
    });
    let ran_before = answer(&mut s, |s| s.ran.clone());
    assert_eq!(ran_before, ["release", "modules", "report", "late"]);
}

#[test]
fn with_nothing_deferred_a_request_is_answered_as_is() {
    let mut s = resumed();
    s.deferred = Deferred::default();
    assert_eq!(format!("{:?}", s.deferred), "Deferred(0 left)");
    assert_eq!(
        answer(&mut s, |s| create(s, "dom0", 1)),
        Err("there is no boot module `dom0`; the boot modules are: ".to_string())
    );
    assert!(s.ran.is_empty());
    assert_eq!(format!("{:?}", resumed().deferred), "Deferred(2 left)");
}
