//! Running loaded programs on the recompiler: copying an initial memory into
//! a [`JitInstance`].

use pvm_core::{Blob, Error, FlatMemory, GasModel, Profile, Program, StandardProgram};
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

/// `jit` set up as the GP's Y says for `program` (the standard program
/// whose code it runs) and arguments `args`: its zones mapped and their
/// data written straight into the instance's guest memory, the registers
/// and heap bounds set. The same machine as [`with_memory`] given
/// `program.initialize(args)`'s memory, without building that image and
/// copying it over (the zero pages of the heap and stack are only mapped).
pub fn with_standard(
    mut jit: JitInstance,
    program: &StandardProgram,
    args: &[u8],
) -> Result<JitInstance, Error> {
    let (regs, heap) = program.initialize_into(jit.memory_mut(), args)?;
    *jit.regs_mut() = regs;
    jit.set_heap(Some(heap));
    Ok(jit)
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

#[cfg(test)]
mod tests {
    use super::*;
    use pvm_core::{Access, PAGE_SIZE};

    /// A standard program whose zones hold zero and non-zero pages, data
    /// that ends inside a page, and arguments.
    fn program() -> StandardProgram {
        let mut ro_data: Vec<u8> = (0..5 * PAGE_SIZE + 123).map(|i| (i % 251) as u8).collect();
        // A zero page inside the read-only data.
        ro_data[2 * PAGE_SIZE as usize..3 * PAGE_SIZE as usize].fill(0);
        StandardProgram {
            ro_data,
            rw_data: (0..2 * PAGE_SIZE + 7).map(|i| (i % 13) as u8 + 1).collect(),
            heap_pages: 5,
            stack_size: 3 * PAGE_SIZE + 5,
            // One `trap`.
            code: Blob::from_code(&[0], [0]).to_bytes(),
        }
    }

    /// A JIT instance of `sp`'s code, its memory all inaccessible.
    fn compiled(sp: &StandardProgram) -> JitInstance {
        compile(
            &sp.code,
            Profile::V0_8,
            &pvm_core::gas::Naive,
            MemoryChecks::Hardware,
            Parallelism::SERIAL,
        )
        .expect("compiles")
    }

    /// `with_standard` gives the machine `with_memory` gives from Y's
    /// image: every page's access, every accessible byte, the registers
    /// and the heap.
    #[test]
    fn with_standard_lays_out_what_with_memory_copies() {
        if !pvm_jit::is_available() {
            eprintln!("skipped: the recompiler is not available here");
            return;
        }
        let sp = program();
        let args: Vec<u8> = (0..300).map(|i| i as u8 ^ 0x5A).collect();
        let initial = sp.initialize::<FlatMemory>(&args).expect("Y");
        let copied = with_memory(compiled(&sp), &initial.memory).expect("copied");
        let laid = with_standard(compiled(&sp), &sp, &args).expect("laid out");
        assert_eq!(laid.regs(), &initial.regs);
        assert_eq!(laid.heap(), Some(initial.heap));
        let mut accessible = 0;
        let (mut a, mut b) = (vec![0; PAGE_SIZE as usize], vec![0; PAGE_SIZE as usize]);
        for page in 0..(1u32 << 20) {
            let access = copied.page_access(page);
            assert_eq!(laid.page_access(page), access, "page {page}");
            if access != Access::None {
                accessible += 1;
                copied.read(page * PAGE_SIZE, &mut a).expect("readable");
                laid.read(page * PAGE_SIZE, &mut b).expect("readable");
                assert!(a == b, "page {page} differs");
            }
        }
        // ro 6, rw + heap 3 + 5, stack 4, args 1.
        assert_eq!(accessible, 19);
    }

    /// Arguments longer than Y allows: an error that names them.
    #[test]
    fn with_standard_refuses_too_long_arguments() {
        if !pvm_jit::is_available() {
            eprintln!("skipped: the recompiler is not available here");
            return;
        }
        let sp = program();
        let args = vec![0u8; 1 << 25];
        assert!(matches!(
            with_standard(compiled(&sp), &sp, &args),
            Err(Error::OutOfRange {
                what: "argument length",
                ..
            })
        ));
    }
}
