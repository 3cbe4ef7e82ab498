//! libFuzzer target for `pvm-parse-fuzz --target blob`:
//! `pvm_fuzz::parsers::blob`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::blob(data));
