//! Running loaded programs on the recompiler: copying an initial memory into
//! a [`JitInstance`].

use pvm_core::{Access, Error, FlatMemory, Memory, Program, PAGE_SIZE};
use pvm_jit::JitInstance;

/// A JIT instance for `program` whose memory is a copy of `memory` (every
/// accessible page with its access and contents).
pub fn instance_with_memory(program: &Program, memory: &FlatMemory) -> Result<JitInstance, Error> {
    let mut jit = JitInstance::new(program)?;
    let mut page = [0u8; PAGE_SIZE as usize];
    for p in 0..(1u32 << 20) {
        let access = memory.page_access(p);
        if access == Access::None {
            continue;
        }
        jit.map(p, 1, access);
        let base = p * PAGE_SIZE;
        for (k, b) in page.iter_mut().enumerate() {
            *b = memory.peek(base + k as u32);
        }
        if page.iter().any(|&b| b != 0) {
            jit.poke(base, &page);
        }
    }
    Ok(jit)
}
