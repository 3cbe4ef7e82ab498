//! A short differential run, so that `cargo test --workspace --release`
//! covers the fuzzer: 300 cases with a fixed seed, under both gas models.

use pvm_fuzz::harness::GasModel;
use pvm_fuzz::{run, Options};

#[test]
fn three_hundred_cases_agree_under_both_gas_models() {
    let opts = Options {
        cases: 300,
        seed: 0x5EED,
        first: 0,
        models: vec![GasModel::Naive, GasModel::Gp],
    };
    match run(&opts, |_| {}) {
        Ok(s) => {
            assert_eq!(s.cases, 300);
            assert!(s.executed.total > 0);
            // Every exit kind shows up in 300 cases.
            assert!(s.halt > 0 && s.panic > 0 && s.out_of_gas > 0);
            assert!(s.page_fault > 0 && s.host_call > 0);
        }
        Err(report) => panic!("{report}"),
    }
}

#[test]
fn the_generator_is_deterministic_and_valid() {
    for index in 0..200 {
        let a = pvm_fuzz::case(7, index);
        let b = pvm_fuzz::case(7, index);
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.regs, b.regs);
        let program = pvm_core::Program::from_bytes(&a.blob, pvm_core::Profile::V0_8)
            .unwrap_or_else(|e| panic!("case {index}: invalid program: {e}"));
        assert!(program.is_instruction(a.entry), "case {index}: bad entry");
    }
}

#[test]
fn every_v0_8_opcode_is_generated() {
    let mut seen = std::collections::HashSet::new();
    for index in 0..2000 {
        for inst in pvm_fuzz::case(11, index).insts {
            seen.insert(inst.opcode());
        }
    }
    for op in pvm_fuzz::gen::v0_8_opcodes() {
        assert!(seen.contains(&op), "{} never generated", op.name());
    }
}
