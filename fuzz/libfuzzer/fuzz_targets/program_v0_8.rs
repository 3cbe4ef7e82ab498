//! libFuzzer target for `pvm-parse-fuzz --target program-0.8`:
//! `pvm_fuzz::parsers::program_v0_8`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::program_v0_8(data));
