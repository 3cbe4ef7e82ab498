//! DOOM: `ext_initialize` then 600 `ext_tick` calls reproduce the reference
//! run in ../shared/programs/README.md: gas (naive model = instructions),
//! 642 frames, and the FNV-1a hash of the last frame. Needs the freedoom WAD
//! (Debian package `freedoom`).

use pvm_core::Profile;
use pvm_std::doom::{self, DoomHost};
use pvm_tests::{shared_dir, shared_missing};

const WAD: &str = "/usr/share/games/doom/freedoom1.wad";

/// Loads DOOM and runs the reference run (init + 600 ticks) under `model`.
fn reference_run(model: &dyn pvm_core::GasModel) -> Option<doom::RunSummary> {
    reference_run_on(model, None)
}

/// The reference run on the interpreter, or on the recompiler generating
/// code as `jit` allows.
fn reference_run_on(
    model: &dyn pvm_core::GasModel,
    jit: Option<pvm_jit::Parallelism>,
) -> Option<doom::RunSummary> {
    let Some(shared) = shared_dir() else {
        shared_missing("../shared/programs");
        return None;
    };
    let wad = match std::fs::read(WAD) {
        Ok(w) => w,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("{WAD}: {e} (install the Debian package freedoom)");
            }
            eprintln!("skipped: {WAD}: {e} (install the Debian package freedoom)");
            return None;
        }
    };
    let mut loaded =
        pvm_std::load::load_file(&shared.join("programs/doom.spi"), false, Profile::V0_8, &[])
            .unwrap_or_else(|e| panic!("{e}"));
    loaded
        .program
        .set_gas_model(model)
        .expect("the model costs every block");
    let mut host = DoomHost::new(wad);
    let summary = if let Some(parallel) = jit {
        // Compiled from the code blob, decoded in the same pass (in pieces
        // on two threads with `parallel`).
        let bytes = std::fs::read(shared.join("programs/doom.spi")).expect("doom.spi");
        let code = pvm_core::StandardProgram::parse(&bytes)
            .expect("a standard program")
            .code;
        let vm = pvm_std::jit::compile(
            &code,
            Profile::V0_8,
            model,
            pvm_jit::MemoryChecks::Hardware,
            parallel,
        )
        .expect("DOOM compiles");
        assert_eq!(
            vm.code_parts(),
            if parallel.threads > 1 {
                parallel.pieces()
            } else {
                1
            },
            "pieces"
        );
        let mut vm = pvm_std::jit::with_memory(vm, &loaded.initial.memory).expect("memory");
        drop(loaded);
        doom::run_on(&mut vm, &mut host, 600)
    } else {
        doom::run(&loaded.program, loaded.initial.memory, &mut host, 600)
    }
    .expect("DOOM runs");
    assert_eq!(summary.frames, 642);
    assert_eq!(summary.last_frame_hash, Some(0x7d9b_8f5c_c98e_b45d));
    Some(summary)
}

#[test]
fn doom_600_ticks_match_the_reference_run() {
    // The naive model: gas = instructions executed.
    let Some(summary) = reference_run(&pvm_core::gas::Naive) else {
        return;
    };
    assert_eq!(summary.init_gas, 215_745_347, "ext_initialize gas");
    assert_eq!(summary.ticks_gas, 8_834_133_415, "600 x ext_tick gas");
}

#[test]
fn doom_600_ticks_gp_model_gas() {
    let Some(summary) = reference_run(&pvm_core::gas::Pipeline) else {
        return;
    };
    assert_eq!(
        summary.init_gas, 829_485_071,
        "ext_initialize gas, GP 0.8.0 model"
    );
    assert_eq!(
        summary.ticks_gas, 42_645_205_680,
        "600 x ext_tick gas, GP 0.8.0 model"
    );
}

#[test]
fn doom_600_ticks_on_the_jit_match_the_reference_run() {
    if !pvm_jit::is_supported() {
        return;
    }
    let Some(summary) = reference_run_on(&pvm_core::gas::Naive, Some(pvm_jit::Parallelism::SERIAL))
    else {
        return;
    };
    assert_eq!(summary.init_gas, 215_745_347, "ext_initialize gas (jit)");
    assert_eq!(summary.ticks_gas, 8_834_133_415, "600 x ext_tick gas (jit)");
}

#[test]
fn doom_600_ticks_on_the_jit_with_code_generated_on_two_threads() {
    if !pvm_jit::is_supported() {
        return;
    }
    // DOOM is big enough for the split (164,366 instructions).
    let two = pvm_jit::Parallelism::TWO_THREADS;
    let Some(summary) = reference_run_on(&pvm_core::gas::Naive, Some(two)) else {
        return;
    };
    assert_eq!(
        summary.init_gas, 215_745_347,
        "ext_initialize gas (jit, split)"
    );
    assert_eq!(
        summary.ticks_gas, 8_834_133_415,
        "600 x ext_tick gas (jit, split)"
    );
}

#[test]
fn doom_compiles_quickly() {
    if !pvm_jit::is_supported() {
        return;
    }
    let Some(shared) = shared_dir() else {
        shared_missing("../shared/programs");
        return;
    };
    let loaded =
        pvm_std::load::load_file(&shared.join("programs/doom.spi"), false, Profile::V0_8, &[])
            .unwrap_or_else(|e| panic!("{e}"));
    let jit = pvm_jit::JitInstance::new(&loaded.program).expect("DOOM compiles");
    eprintln!(
        "DOOM: {} instructions to {} bytes of x86-64 in {:?}",
        loaded.program.instructions().len(),
        jit.code_size(),
        jit.compile_time()
    );
}

#[test]
fn doom_decodes_the_same_in_pieces_on_two_threads() {
    let Some(shared) = shared_dir() else {
        shared_missing("../shared/programs");
        return;
    };
    let bytes = std::fs::read(shared.join("programs/doom.spi")).expect("doom.spi");
    let code = pvm_core::StandardProgram::parse(&bytes)
        .expect("a standard program")
        .code;
    for model in [
        &pvm_core::gas::Naive as &dyn pvm_core::GasModel,
        &pvm_core::gas::Pipeline,
    ] {
        let one =
            pvm_std::jit::program_on(&code, Profile::V0_8, model, pvm_jit::Parallelism::SERIAL)
                .expect("DOOM decodes");
        let pieces = pvm_std::jit::program_on(
            &code,
            Profile::V0_8,
            model,
            pvm_jit::Parallelism::TWO_THREADS,
        )
        .expect("DOOM decodes in pieces");
        assert_same_program(&one, &pieces);
        // Decoded in pieces in the passes that generate the code.
        let jit = pvm_std::jit::compile(
            &code,
            Profile::V0_8,
            model,
            pvm_jit::MemoryChecks::Hardware,
            pvm_jit::Parallelism::TWO_THREADS,
        );
        if let Ok(jit) = jit {
            assert_same_program(&one, jit.program());
        } else {
            assert!(!pvm_jit::is_available(), "{:?}", jit.err());
        }
        for i in 0..one.instructions().len() {
            assert_eq!(one.transfer(i), pieces.transfer(i), "instruction {i}");
            assert_eq!(one.is_implicit_trap(i), pieces.is_implicit_trap(i));
        }
        for pc in 0..code.len() as u32 {
            assert_eq!(one.index_of(pc), pieces.index_of(pc), "pc {pc}");
        }
    }
}

/// `a` and `b` have the same instructions, offsets, jump table and blocks.
fn assert_same_program(a: &pvm_core::Program, b: &pvm_core::Program) {
    assert_eq!(a.instructions(), b.instructions());
    assert_eq!(a.pcs(), b.pcs());
    assert_eq!(a.jump_table_targets(), b.jump_table_targets());
    assert_eq!(a.block_count(), b.block_count());
    for k in 0..a.block_count() {
        assert_eq!(a.block_start(k), b.block_start(k), "block {k}");
        assert_eq!(a.block_cost(k), b.block_cost(k), "block {k}");
    }
}
