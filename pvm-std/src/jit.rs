//! Running loaded programs on the recompiler: copying an initial memory into
//! a [`JitInstance`].

use pvm_core::{Blob, Error, FlatMemory, GasModel, Profile, Program};
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

/// A JIT instance of the code blob `bytes` under `profile` with `model`'s
/// block costs (its memory all inaccessible), decoded and compiled in one
/// pass ([`JitInstance::from_blob`]), or, with `parallel.threads >= 2` and
/// at least `parallel.min_instructions` instructions, in pieces on more
/// threads ([`JitInstance::from_blob_on`]). The same program, code and
/// errors either way.
pub fn compile(
    bytes: &[u8],
    profile: Profile,
    model: &dyn GasModel,
    checks: MemoryChecks,
    parallel: Parallelism,
) -> Result<JitInstance, Error> {
    JitInstance::from_blob_on(Blob::parse(bytes)?, profile, model, checks, parallel)
}

/// `jit` with `memory`'s pages copied in.
pub fn with_memory(jit: JitInstance, memory: &FlatMemory) -> Result<JitInstance, Error> {
    fill(jit, memory)
}

/// Decodes and validates a code blob as [`Program::from_bytes_with_gas_model`]
/// does; with `parallel.threads >= 2` and at least
/// `parallel.min_instructions` instructions, a GP 0.8 program is decoded in
/// pieces on this thread and scoped ones ([`Program::with_gas_model_split`],
/// [`Parallelism::run`]): the same program, the same errors.
pub fn program_on(
    bytes: &[u8],
    profile: Profile,
    model: &dyn GasModel,
    parallel: Parallelism,
) -> Result<Program, Error> {
    let blob = Blob::parse(bytes)?;
    if parallel.threads < 2 || blob.marked_starts() < parallel.min_instructions {
        return Program::with_gas_model(blob, profile, model);
    }
    Program::with_gas_model_split(blob, profile, model, parallel.pieces(), &mut |jobs| {
        parallel.run(jobs)
    })
}
