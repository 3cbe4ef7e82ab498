//! libFuzzer target for `pvm-parse-fuzz --target asm-0.7`:
//! `pvm_fuzz::parsers::asm_v0_7`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::asm_v0_7(data));
