//! Helpers shared by the sandbox tests.

use pvm_core::{Profile, Program};

/// A GP 0.8 program assembled from `text`, with the naive gas model (one
/// unit per instruction, charged per block).
pub fn program(text: &str) -> Program {
    let bytes = pvm_core::asm::assemble(text, Profile::V0_8)
        .unwrap_or_else(|e| panic!("cannot assemble {text:?}: {e}"));
    let mut p = Program::from_bytes(&bytes, Profile::V0_8)
        .unwrap_or_else(|e| panic!("invalid program {text:?}: {e}"));
    p.set_gas_model(&pvm_core::gas::Naive).unwrap();
    p
}
