//! The assembler gives back every real program byte for byte after
//! disassembly, and the example programs in `examples/` assemble and run.

use pvm_core::asm::{assemble, detect, disassemble, Container};
use pvm_core::standard::StandardProgram;
use pvm_core::{Exit, PagedMemory, Profile, Program, Vm};
use std::path::{Path, PathBuf};

/// The shared directory beside the checkout; `None` (after a skip message)
/// when it is absent, a panic instead under CI.
fn shared() -> Option<PathBuf> {
    let dir = pvm_tests::shared_dir();
    if dir.is_none() {
        pvm_tests::shared_missing("the shared directory (vectors and real programs)");
    }
    dir
}

#[track_caller]
fn check_round_trip(what: &str, bytes: &[u8], container: Container, profile: Profile) {
    let text = disassemble(bytes, container, profile)
        .unwrap_or_else(|e| panic!("{what}: cannot disassemble: {e}"));
    let back = assemble(&text, profile).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(back == bytes, "{what}: the round trip changed the bytes");
}

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn vector_programs_round_trip() {
    let Some(shared) = shared() else { return };
    for (dir, profile) in [("gp-0.8", Profile::V0_8), ("gp-0.7", Profile::V0_7)] {
        let dir = shared.join("vectors").join(dir).join("programs");
        let files = files_with_extension(&dir, "json");
        assert!(!files.is_empty(), "no vectors in {}", dir.display());
        for path in &files {
            let text = std::fs::read_to_string(path).expect("readable vector");
            let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            let program: Vec<u8> = json["program"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: no program", path.display()))
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .expect("a byte")
                })
                .collect();
            check_round_trip(
                &path.display().to_string(),
                &program,
                Container::Raw,
                profile,
            );
        }
    }
}

#[test]
fn standard_programs_round_trip() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("programs");
    let files = files_with_extension(&dir, "spi");
    assert!(!files.is_empty(), "no .spi programs in {}", dir.display());
    for path in &files {
        let bytes = std::fs::read(path).expect("readable program");
        assert_eq!(
            detect(&bytes),
            Some(Container::Standard),
            "{}",
            path.display()
        );
        check_round_trip(
            &path.display().to_string(),
            &bytes,
            Container::Standard,
            Profile::V0_8,
        );
    }
}

#[test]
fn jam_service_round_trips() {
    let Some(shared) = shared() else { return };
    let path = shared.join("programs/jam/test-service.jam");
    let bytes = std::fs::read(&path).expect("readable JAM blob");
    assert_eq!(detect(&bytes), Some(Container::Jam));
    check_round_trip(
        &path.display().to_string(),
        &bytes,
        Container::Jam,
        Profile::V0_7,
    );
}

/// Assembles an example, checks it against GP 0.8 validation, round-trips
/// it, and runs it with `r7 = arg`. Returns the exit, r7 and the machine's
/// memory.
fn run_example(source: &str, arg: u64) -> (Exit, u64, PagedMemory) {
    let bytes = assemble(source, Profile::V0_8).expect("the example assembles");
    check_round_trip("example", &bytes, Container::Standard, Profile::V0_8);
    let std = StandardProgram::parse(&bytes).expect("a standard program");
    let program = Program::from_bytes(&std.code, Profile::V0_8).expect("valid under GP 0.8");
    let init = std.initialize::<PagedMemory>(&[]).expect("initialisation");
    let mut vm = Vm::new(&program, init.memory, 0, 10_000_000);
    *vm.regs_mut() = init.regs;
    vm.set_reg(7, arg);
    let exit = vm.run().expect("runs");
    let r7 = vm.reg(7);
    (exit, r7, vm.into_memory())
}

#[test]
fn fib_example_runs() {
    let source = include_str!("../../examples/fib.pvmasm");
    let fib = |n: u64| {
        let (mut a, mut b) = (0u64, 1u64);
        for _ in 0..n {
            (a, b) = (b, a.wrapping_add(b));
        }
        a
    };
    for n in [0, 1, 2, 10, 50, 90, 100, 1000] {
        let (exit, r7, _) = run_example(source, n);
        assert_eq!(exit, Exit::Halt, "fib({n})");
        assert_eq!(r7, fib(n), "fib({n})");
    }
    assert_eq!(fib(10), 55);
}

#[test]
fn sum_example_runs() {
    let source = include_str!("../../examples/sum.pvmasm");
    const PRIMES: [u64; 16] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];
    for n in [0u64, 1, 5, 15, 16, 17, 1000] {
        let count = n.min(16) as usize;
        let expected: u64 = PRIMES[..count].iter().map(|p| 2 * p).sum();
        let (exit, r7, memory) = run_example(source, n);
        assert_eq!(exit, Exit::Halt, "n = {n}");
        assert_eq!(r7, expected, "n = {n}");
        for (k, &p) in PRIMES.iter().enumerate() {
            let at = 0x20000 + 8 * k as u32;
            let word = u64::from_le_bytes(std::array::from_fn(|i| memory.peek(at + i as u32)));
            let want = if k < count { 2 * p } else { p };
            assert_eq!(word, want, "n = {n}, entry {k}");
        }
    }
    assert_eq!(PRIMES[..5].iter().map(|p| 2 * p).sum::<u64>(), 56);
}
