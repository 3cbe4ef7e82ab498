//! libFuzzer target for `pvm-parse-fuzz --target standard`:
//! `pvm_fuzz::parsers::standard`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::standard(data));
