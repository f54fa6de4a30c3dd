//! Boot modules: files the host passes with `-fw_cfg name=opt/hvlu/NAME`.
//!
//! Guest kernels and hypervisor images for later updates are modules. They
//! stay in fw_cfg until used: nothing is copied at boot.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::fwcfg::{self, FwCfgError, FwFile};
use crate::mm::heap::{self, Exhausted};

/// The fw_cfg name prefix of hvlu modules.
pub const PREFIX: &str = "opt/hvlu/";

/// One boot module.
#[derive(Clone, Debug)]
pub struct Module {
    /// Its name, without the prefix.
    pub name: String,
    /// Its fw_cfg file.
    pub file: FwFile,
}

/// Lists the modules, or none if there is no fw_cfg device.
pub fn discover() -> Vec<Module> {
    let mut modules = Vec::new();
    if fwcfg::probe().is_err() {
        return modules;
    }
    fwcfg::for_each_file(|file| {
        if let Some(name) = file.name().strip_prefix(PREFIX) {
            modules.push(Module {
                name: String::from(name),
                file: *file,
            });
        }
    });
    modules
}

/// Why a module could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The heap cannot hold it.
    #[error(transparent)]
    Heap(Exhausted),
    /// fw_cfg failed.
    #[error(transparent)]
    Device(FwCfgError),
}

/// Reads a (small) module's contents into the heap: a domain's kernel.
/// A module larger than the heap can hold is refused, whatever its size.
/// Hypervisor images are not read this way: they go straight to the
/// live-update region ([`fwcfg::read_file_to_phys`]).
pub fn read(module: &Module) -> Result<Vec<u8>, ReadError> {
    let mut bytes = heap::zeroed(module.file.size as usize).map_err(ReadError::Heap)?;
    if bytes.is_empty() {
        // An empty module: nothing to read (and no buffer to read into).
        return Ok(bytes);
    }
    fwcfg::read_file(&module.file, &mut bytes).map_err(ReadError::Device)?;
    Ok(bytes)
}
