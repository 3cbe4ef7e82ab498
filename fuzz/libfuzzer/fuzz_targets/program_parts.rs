//! libFuzzer target for `pvm-parse-fuzz --target program-parts`:
//! `pvm_fuzz::parsers::program_parts`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::program_parts(data));
