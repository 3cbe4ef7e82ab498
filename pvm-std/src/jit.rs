//! Running loaded programs on the recompiler: copying an initial memory into
//! a [`JitInstance`].

use pvm_core::{Error, FlatMemory, Program};
use pvm_jit::JitInstance;

/// A JIT instance for `program` whose memory is a copy of `memory` (every
/// accessible page with its access and contents).
pub fn instance_with_memory(program: &Program, memory: &FlatMemory) -> Result<JitInstance, Error> {
    let mut jit = JitInstance::new(program)?;
    for (first, access, data) in memory.regions() {
        jit.init_pages(first, access, data);
    }
    Ok(jit)
}
