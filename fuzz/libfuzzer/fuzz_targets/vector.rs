//! libFuzzer target for `pvm-parse-fuzz --target vector`:
//! `pvm_fuzz::parsers::vector`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::vector(data));
