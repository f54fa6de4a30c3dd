//! Boot modules: files the host passes with `-fw_cfg name=opt/hvlu/NAME`.
//!
//! Guest kernels and hypervisor images for later updates are modules. They
//! stay in fw_cfg until used: nothing is copied at boot.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::arch::fwcfg::{self, FwFile};

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

/// Reads a module's contents into the heap.
pub fn read(module: &Module) -> Result<Vec<u8>, fwcfg::FwCfgError> {
    let mut bytes = vec![0u8; module.file.size as usize];
    if bytes.is_empty() {
        // An empty module: nothing to read (and no buffer to read into).
        return Ok(bytes);
    }
    fwcfg::read_file(&module.file, &mut bytes)?;
    Ok(bytes)
}
