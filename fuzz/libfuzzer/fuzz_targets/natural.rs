//! libFuzzer target for `pvm-parse-fuzz --target natural`:
//! `pvm_fuzz::parsers::natural`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::natural(data));
