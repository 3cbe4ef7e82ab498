//! Running loaded programs on the recompiler: copying an initial memory into
//! a [`JitInstance`].

use pvm_core::{Error, FlatMemory, Program};
use pvm_jit::{JitInstance, MemoryChecks, Parallelism};

/// A JIT instance for `program` whose memory is a copy of `memory` (every
/// accessible page with its access and contents).
pub fn instance_with_memory(program: &Program, memory: &FlatMemory) -> Result<JitInstance, Error> {
    instance_with_checks(program, memory, MemoryChecks::Hardware)
}

/// As [`instance_with_memory`], with the given kind of memory checks.
pub fn instance_with_checks(
    program: &Program,
    memory: &FlatMemory,
    checks: MemoryChecks,
) -> Result<JitInstance, Error> {
    instance_on(program, memory, checks, Parallelism::SERIAL)
}

/// As [`instance_with_checks`], generating code as `parallel` allows.
pub fn instance_on(
    program: &Program,
    memory: &FlatMemory,
    checks: MemoryChecks,
    parallel: Parallelism,
) -> Result<JitInstance, Error> {
    fill(
        JitInstance::from_program_on(program.clone(), checks, parallel)?,
        memory,
    )
}

/// As [`instance_with_checks`], taking the program (no copy of it).
pub fn instance_from_program(
    program: Program,
    memory: &FlatMemory,
    checks: MemoryChecks,
) -> Result<JitInstance, Error> {
    instance_from_program_on(program, memory, checks, Parallelism::SERIAL)
}

/// As [`instance_from_program`], generating code as `parallel` allows.
pub fn instance_from_program_on(
    program: Program,
    memory: &FlatMemory,
    checks: MemoryChecks,
    parallel: Parallelism,
) -> Result<JitInstance, Error> {
    fill(
        JitInstance::from_program_on(program, checks, parallel)?,
        memory,
    )
}

/// `jit` with `memory`'s pages copied in.
fn fill(mut jit: JitInstance, memory: &FlatMemory) -> Result<JitInstance, Error> {
    for (first, access, data) in memory.regions() {
        jit.init_pages(first, access, data);
    }
    Ok(jit)
}
