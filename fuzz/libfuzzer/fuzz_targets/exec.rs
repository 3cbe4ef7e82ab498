//! libFuzzer target for `pvm-parse-fuzz --target exec`:
//! `pvm_fuzz::parsers::exec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::exec(data));
