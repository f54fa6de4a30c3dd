//! The hypervisor's state: one [`Hv`], made once by a cold boot or by the
//! incoming side of a live update, then started.
//!
//! There is one CPU and the hypervisor runs with interrupts off, so all state
//! sits in one [`Hv`] behind a lock that is never contended: every entry
//! from a guest takes it (`crate::trap`), handles the trap, picks what runs
//! next and releases it before `iretq`.
//!
//! Where the rest lives: scheduling in `crate::sched`, domain creation and
//! destruction in `crate::domain`, the hypercalls in `crate::hypercall`,
//! live update in `crate::lu`. This core names none of `crate::lu`: the
//! outgoing role's state is plain data here ([`LuState`]), and the incoming
//! role hands the work it leaves for after the resume to [`Hv::defer`],
//! which no hypercall can overtake (`crate::deferred`).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;

use hvlu_types::DomId;
use old_hv::image::ImageInfo;
use old_hv::staging::Staging;
use pv_abi::hypercall::Error;
use spin::Mutex;

use crate::arch::{self, cpu, paging};
use crate::cmdline::Options;
use crate::console::ConsoleIn;
use crate::deferred::{self, Deferred, Defers};
use crate::domain::Domain;
use crate::mm::Memory;
use crate::modules::Module;
use crate::sched::Sched;
use handover_abi::RetiredDomain;

/// The hypervisor state, once started.
pub static HV: Mutex<Option<Hv>> = Mutex::new(None);

/// Everything the hypervisor keeps.
#[derive(Debug)]
pub struct Hv {
    /// Memory.
    pub mem: Memory,
    /// Live domains by id.
    pub domains: BTreeMap<DomId, Domain>,
    /// The next domain id to hand out.
    pub next_domid: DomId,
    /// The run queue and the running vCPU.
    pub sched: Sched,
    /// Boot modules.
    pub modules: Vec<Module>,
    /// Console input for dom0.
    pub console_in: ConsoleIn,
    /// Options from the command line.
    pub options: Options,
    /// TSC frequency.
    pub tsc_khz: u64,
    /// TSC when this hypervisor started.
    pub boot_tsc: u64,
    /// Domains already destroyed, with their last reports (at most
    /// `handover_abi::MAX_RETIRED`; see `Hv::retire`).
    pub retired: Vec<RetiredDomain>,
    /// The command line this hypervisor was booted with (cold boot), or the
    /// one its predecessor handed over.
    pub cmdline: String,
    /// The outgoing live-update role's state.
    pub lu: LuState,
    /// Why dom0's last `domctl` or live-update call was refused (empty after
    /// one that succeeded), for `last_error`; see [`Hv::set_last_error`].
    pub last_error: String,
    /// Live updates since cold boot.
    pub lu_sequence: u64,
    /// The machine's memory map as this hypervisor read it, for
    /// `machine_memory_map`: the firmware's entries with their E820 types
    /// (cold boot), or the state's RAM map (after a live update).
    pub machine_map: Vec<pv_abi::hypercall::MemoryMapEntry>,
    /// The machine's PCI functions and their BARs, as found at boot
    /// (`crate::devices`): every memory BAR is device memory, which dom0
    /// may map and may grant (`domctl iomem_permit`).
    pub devices: Vec<crate::pci::Device>,
    /// The host's SVM areas, if the CPU runs HVM guests (`crate::hvm`).
    pub svm: Option<arch::svm::Host>,
    /// The CPU's ASID count (0 without SVM).
    pub asids: u32,
    /// Work for after [`Hv::start`]: the first timer tick or the first
    /// hypercall, whichever comes first.
    deferred: Deferred<Hv>,
    /// The initialisation a live update left (`crate::settle`).
    pub settling: crate::settle::Settling,
}

/// A hypervisor image staged for a live update.
#[derive(Debug)]
pub struct Loaded {
    /// The module it came from.
    pub module: String,
    /// What validation found.
    pub info: ImageInfo,
    /// Where it is staged.
    pub staging: Staging,
    /// Bytes of the handover area (`old_hv::staging::reserve`): what the
    /// update keeps beside the image, the figure both the `lu: loaded` line
    /// and `lu status` give.
    pub handover_bytes: u64,
}

/// The outgoing live-update role's state.
#[derive(Debug, Default)]
pub struct LuState {
    /// The staged image, if any.
    pub loaded: Option<Loaded>,
    /// An update of it made ready (`old_hv::exec::ready`), waiting for the
    /// guests' last short turns before its pause (`Hv::lu_exec`).
    pub ready: Option<old_hv::exec::Ready<crate::arch::kexec::Prepared>>,
    /// The last refusal or failure, for `lu status`.
    pub message: String,
    /// The build an update went to that was rolled back after the machine
    /// reset, and that update's number: `lu load` refuses it unless forced.
    pub rolled_back: Option<(handover_abi::BuildId, u64)>,
}

impl Defers for Hv {
    fn deferred(&mut self) -> &mut Deferred<Hv> {
        &mut self.deferred
    }
}

/// Why [`Hv::start`] could not run a guest.
#[derive(Debug)]
pub enum StartError {
    /// No vCPU is queued.
    NoVcpu,
    /// The first vCPU's root page table cannot be loaded.
    Root {
        /// Its domain.
        domain: DomId,
        /// Its index.
        vcpu: usize,
        /// Why.
        error: paging::LoadRootError,
    },
}

impl Hv {
    /// Records why a call is refused, for `last_error`: at most
    /// `MAX_ERROR_MESSAGE` bytes, a longer reason shortened with a note that
    /// says so (never cut silently).
    pub fn set_last_error(&mut self, message: &str) {
        const MAX: usize = pv_abi::hypercall::MAX_ERROR_MESSAGE;
        self.last_error.clear();
        if message.len() <= MAX {
            self.last_error.push_str(message);
            return;
        }
        let note = alloc::format!(" [cut: the reason has {} bytes]", message.len());
        let mut keep = MAX - note.len();
        while !message.is_char_boundary(keep) {
            keep -= 1;
        }
        self.last_error.push_str(&message[..keep]);
        self.last_error.push_str(&note);
    }

    /// Refuses a call with `error` and the reason `message`: logs it on the
    /// hypervisor console and keeps it for `last_error`.
    pub(crate) fn refuse_with<T>(&mut self, error: Error, message: String) -> Result<T, Error> {
        crate::hvprintln!("refused: {message}");
        self.set_last_error(&message);
        Err(error)
    }

    /// A hypervisor with memory set up and no domain yet.
    pub fn new(
        mem: Memory,
        cmdline: &str,
        options: Options,
        modules: Vec<Module>,
        tsc_khz: u64,
        boot_tsc: u64,
    ) -> Hv {
        let (svm, asids) = match crate::hvm::init() {
            Some((host, asids)) => (Some(host), asids),
            None => (None, 0),
        };
        Hv {
            svm,
            asids,
            mem,
            domains: BTreeMap::new(),
            next_domid: DomId(0),
            sched: Sched::default(),
            modules,
            console_in: ConsoleIn::default(),
            options,
            tsc_khz,
            boot_tsc,
            retired: Vec::new(),
            cmdline: String::from(cmdline),
            lu: LuState::default(),
            last_error: String::new(),
            lu_sequence: 0,
            machine_map: Vec::new(),
            devices: Vec::new(),
            deferred: Deferred::new(),
            settling: crate::settle::Settling::default(),
        }
    }

    /// Leaves `work` for after [`Hv::start`] (work the guests need not
    /// wait for to resume), after any work left before: it runs at the
    /// first timer tick ([`Hv::run_deferred`]), or before the first
    /// hypercall is answered if one comes first (`deferred::answer`).
    pub fn defer(&mut self, work: impl FnOnce(&mut Hv) + Send + 'static) {
        self.deferred.push(work);
    }

    /// Runs the deferred work, if any is left.
    pub fn run_deferred(&mut self) {
        deferred::run(self);
    }

    /// Runs the first short turn's vCPU ([`Hv::give_turns`]), or the first
    /// queued vCPU of a domain that is not paused: loads its
    /// page tables and segment bases, installs the state in [`HV`], starts
    /// the interrupt controller and the timer and leaves the boot path for
    /// the guest. Returns only if there is no vCPU it can run.
    pub fn start(mut self) -> Result<Infallible, StartError> {
        // The first short turn's vCPU if there are turns (after an
        // update's resume), else the first runnable.
        let ((d, v), turn) = self.pick().ok_or(StartError::NoVcpu)?;
        let turn_us = self.turn_us(d, v);
        if turn {
            self.sched.start_turn(turn_us, self.tsc_khz);
        }
        let vcpu = &self.domains[&d].vcpus[v];
        let mut frame = vcpu.frame;
        if vcpu.hvm.is_none() {
            paging::load_guest_root(vcpu.cr3.addr()).map_err(|error| StartError::Root {
                domain: d,
                vcpu: v,
                error,
            })?;
            cpu::set_guest_segment_bases(vcpu.fs_base, vcpu.gs_base);
        }
        self.sched.current = Some((d, v));
        let timer_hz = self.options.timer_hz;
        *HV.lock() = Some(self);
        arch::lapic::init_virtual_wire();
        arch::timer::start(timer_hz);
        if turn {
            arch::timer::one_shot(turn_us);
        }
        {
            // An HVM vCPU first: it runs from here until the scheduler
            // picks a PV vCPU, whose frame the entry resumes.
            let mut guard = HV.lock();
            if let Some(hv) = guard.as_mut() {
                crate::hvm::run(hv, &mut frame);
                // A short turn counts the guest's time from here.
                hv.turn_trap_out();
            }
        }
        arch::trap::enter(&frame)
    }
}
