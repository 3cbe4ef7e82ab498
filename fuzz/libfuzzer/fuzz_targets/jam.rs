//! libFuzzer target for `pvm-parse-fuzz --target jam`:
//! `pvm_fuzz::parsers::jam`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::jam(data));
