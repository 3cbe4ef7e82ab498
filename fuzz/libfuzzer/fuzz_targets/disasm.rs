//! libFuzzer target for `pvm-parse-fuzz --target disasm`:
//! `pvm_fuzz::parsers::disasm`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvm_fuzz::parsers::disasm(data));
