//! The C benchmarks of ../shared/programs run to halt with the result and
//! instruction count documented in ../shared/programs/README.md (naive model:
//! gas used = instructions executed).

use pvm_core::{Exit, Profile, Vm};
use pvm_tests::{load_shared_program, shared_dir, shared_missing};

fn run_program(file: &str, iters: u64, expected_r7: u64, expected_instructions: u64) {
    run_interp(file, iters, expected_r7, expected_instructions);
    run_jit(file, iters, expected_r7, expected_instructions);
}

/// The same run on the recompiler (where it is built).
fn run_jit(file: &str, iters: u64, expected_r7: u64, expected_instructions: u64) {
    if !pvm_jit::is_supported() {
        return;
    }
    let Some(loaded) = load_shared_program(file, &pvm_core::gas::Naive) else {
        return;
    };
    let gas = 10_000_000_000u64;
    let mut vm = pvm_std::jit::instance_with_memory(&loaded.program, &loaded.initial.memory)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    *vm.regs_mut() = loaded.initial.regs;
    vm.set_gas(gas);
    vm.set_reg(7, iters);
    let exit = vm.run().expect("runs");
    assert_eq!(exit, Exit::Halt, "{file} (jit): exit at pc {}", vm.pc());
    assert_eq!(vm.reg(7), expected_r7, "{file} (jit): result");
    assert_eq!(
        gas - vm.gas(),
        expected_instructions,
        "{file} (jit): instructions executed"
    );
}

fn run_interp(file: &str, iters: u64, expected_r7: u64, expected_instructions: u64) {
    // The reference counts are instructions: the naive model.
    let Some(loaded) = load_shared_program(file, &pvm_core::gas::Naive) else {
        return;
    };
    let gas = 10_000_000_000u64;
    let mut vm = Vm::new(&loaded.program, loaded.initial.memory, 0, gas);
    *vm.regs_mut() = loaded.initial.regs;
    vm.set_reg(7, iters);
    let exit = vm.run().expect("runs");
    assert_eq!(exit, Exit::Halt, "{file}: exit at pc {}", vm.pc());
    assert_eq!(vm.reg(7), expected_r7, "{file}: result");
    assert_eq!(
        gas - vm.gas(),
        expected_instructions,
        "{file}: instructions executed"
    );
}

// Reference figures: ../shared/programs/README.md.
#[test]
fn prime_sieve() {
    run_program("prime_sieve.spi", 20, 1_569_960, 414_483_563);
}

#[test]
fn sha256() {
    run_program("sha256.spi", 100, 11_087_806_886_002_845_565, 427_970_679);
}

#[test]
fn keccak() {
    run_program(
        "keccak.spi",
        30_000,
        16_798_156_629_428_360_832,
        477_480_092,
    );
}

#[test]
fn minicore() {
    run_program("minicore.spi", 2_000, 1_294, 509_995_350);
}

/// The one-iteration results in the README, as a quick check.
#[test]
fn one_iteration_results() {
    let Some(shared) = shared_dir() else {
        shared_missing("../shared/programs");
        return;
    };
    for (file, r7) in [
        ("prime_sieve.spi", 78_498u64),
        ("sha256.spi", 5_836_203_179_221_847_734),
        ("keccak.spi", 10_251_561_112_156_516_847),
        ("minicore.spi", 37_113),
    ] {
        let loaded = pvm_std::load::load_file(
            &shared.join("programs").join(file),
            false,
            Profile::V0_8,
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut vm = Vm::new(&loaded.program, loaded.initial.memory, 0, u64::MAX);
        *vm.regs_mut() = loaded.initial.regs;
        vm.set_reg(7, 1);
        assert_eq!(vm.run().expect("runs"), Exit::Halt, "{file}");
        assert_eq!(vm.reg(7), r7, "{file}");
    }
}

/// The JAM service blob (GP 0.7 numbering) loads: metadata, Y, validation.
#[test]
fn jam_service_blob_loads() {
    let Some(shared) = shared_dir() else {
        shared_missing("../shared/programs");
        return;
    };
    let path = shared.join("programs/jam/test-service.jam");
    let loaded = pvm_std::load::load_file(&path, false, Profile::V0_7, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.kind, pvm_std::load::Kind::Jam);
    assert!(loaded.program.instruction_count() > 100);
}
