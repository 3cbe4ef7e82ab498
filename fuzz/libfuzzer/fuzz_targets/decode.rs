//! libFuzzer target for `pvm-parse-fuzz --target decode`:
//! `pvm_fuzz::parsers::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::decode(data));
