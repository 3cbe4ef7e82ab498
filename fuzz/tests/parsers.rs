//! Bounded runs of every parser fuzz target (`pvm_fuzz::parsers`), so that
//! `cargo test --workspace --release` fuzzes every parser a little on every
//! run: a fixed seed, a fixed number of executions per target, and no panic
//! allowed. Seeds come from `../shared` beside the workspace when it exists,
//! else from generated programs only. The long runs are `pvm-parse-fuzz`
//! (see README.md).

use pvm_fuzz::parsers::{self, FuzzOptions, InputKind, Target, TARGETS};
use std::time::Duration;

/// The seed of the bounded runs.
const SEED: u64 = 0x5EED_CAFE;

/// Executions per target: one to two seconds each in release on one core.
fn budget(name: &str) -> u64 {
    match name {
        "disasm" => 20_000,
        "asm-0.8" | "asm-0.7" | "vector" | "decode" | "program-0.8" | "program-0.7" => 40_000,
        _ => 80_000,
    }
}

fn options(execs: u64) -> FuzzOptions {
    FuzzOptions {
        execs,
        seed: SEED,
        timeout: Some(Duration::from_secs(60)),
        crash_dir: std::env::temp_dir().join("pvm-parse-fuzz-test"),
        ..FuzzOptions::default()
    }
}

fn bounded_run(name: &str) {
    let target = parsers::target(name).unwrap_or_else(|| panic!("no target {name}"));
    let shared = parsers::default_shared_dir();
    if shared.is_none() {
        eprintln!("../shared is missing: seeds are generated programs only");
    }
    let seeds = parsers::seeds(target.kind, shared.as_deref());
    let execs = budget(name);
    match parsers::fuzz(target, seeds, &options(execs), |_| {}) {
        Ok(stats) => {
            assert_eq!(stats.execs, execs);
            // The seeds hold valid inputs, so the checks on accepted inputs ran.
            assert!(stats.accepted > 0, "{name}: no input was accepted");
            // And the mutations reached the parser's errors.
            if !matches!(target.kind, InputKind::Natural | InputKind::Code) {
                assert!(stats.accepted < stats.execs, "{name}: nothing was rejected");
            }
            eprintln!(
                "{name}: {} execs in {:.2?} ({:.0}/s), {} accepted, corpus {}",
                stats.execs,
                stats.elapsed,
                stats.rate(),
                stats.accepted,
                stats.corpus
            );
        }
        Err(crash) => panic!(
            "{name} panicked at execution {} (seed {SEED:#x}):\n{}\ninput: {}",
            crash.exec,
            crash.message,
            parsers::hex(&crash.input)
        ),
    }
}

macro_rules! bounded {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                bounded_run($name);
            }
        )*

        /// Every target has its bounded test above.
        #[test]
        fn every_target_has_a_bounded_test() {
            let tested = [$($name),*];
            for t in TARGETS {
                assert!(tested.contains(&t.name), "no bounded test for target {}", t.name);
            }
            assert_eq!(tested.len(), TARGETS.len());
        }
    };
}

bounded! {
    fuzz_blob => "blob",
    fuzz_program_v0_8 => "program-0.8",
    fuzz_program_v0_7 => "program-0.7",
    fuzz_program_parts => "program-parts",
    fuzz_standard => "standard",
    fuzz_jam => "jam",
    fuzz_natural => "natural",
    fuzz_decode => "decode",
    fuzz_asm_v0_8 => "asm-0.8",
    fuzz_asm_v0_7 => "asm-0.7",
    fuzz_disasm => "disasm",
    fuzz_vector => "vector",
    fuzz_exec => "exec",
}

fn panics_on_ab(data: &[u8]) {
    if data.len() > 2 && data[0] == 0xAB {
        panic!("boom: {:02x}", data[1]);
    }
}

static PANICKY: Target = Target {
    name: "panicky",
    kind: InputKind::Natural,
    run: panics_on_ab,
    max_len: 64,
    about: "panics when the first byte is 0xAB",
};

/// The fuzzer catches a panic and reports the input that caused it (so the
/// bounded runs above can fail).
#[test]
fn a_panic_is_caught_and_reported_with_its_input() {
    let seeds = vec![vec![0xAA, 0x00, 0x01, 0x02]];
    let crash = parsers::fuzz(&PANICKY, seeds, &options(200_000), |_| {})
        .expect_err("the fuzzer did not find the panicking input");
    assert_eq!(crash.target, "panicky");
    assert_eq!(crash.input[0], 0xAB);
    assert!(crash.input.len() > 2);
    assert!(crash.message.contains("boom"), "{}", crash.message);
    assert!(
        crash.message.contains("tests/parsers.rs"),
        "no location: {}",
        crash.message
    );
    // run_one reports the same panic; a harmless input passes.
    assert!(parsers::run_one(&PANICKY, &crash.input).is_err());
    assert!(parsers::run_one(&PANICKY, &[0xAB]).is_ok());
}

/// The same seed gives the same run.
#[test]
fn runs_are_reproducible() {
    let target = parsers::target("program-0.8").expect("target");
    let run = || {
        let seeds = parsers::seeds(target.kind, None);
        parsers::fuzz(target, seeds, &options(3_000), |_| {}).expect("no panic")
    };
    let (a, b) = (run(), run());
    assert_eq!(
        (a.execs, a.accepted, a.corpus, a.features),
        (b.execs, b.accepted, b.corpus, b.features)
    );
    let mut r1 = parsers::Rng::new(9);
    let mut r2 = parsers::Rng::new(9);
    let seed = parsers::seeds(InputKind::Blob, None).swap_remove(0);
    for _ in 0..100 {
        let x = parsers::mutate(InputKind::Blob, &mut r1, &seed, &[]);
        let y = parsers::mutate(InputKind::Blob, &mut r2, &seed, &[]);
        assert_eq!(x, y);
    }
}

/// Without `../shared` every kind still has seeds, and the program seeds
/// hold valid GP 0.8 programs.
#[test]
fn generated_seeds_suffice() {
    for t in TARGETS {
        let seeds = parsers::seeds(t.kind, None);
        assert!(
            seeds.iter().any(|s| !s.is_empty()),
            "{}: no generated seeds",
            t.name
        );
    }
    let blobs = parsers::seeds(InputKind::Blob, None);
    let valid = blobs
        .iter()
        .filter(|b| pvm_core::Program::from_bytes(b, pvm_core::Profile::V0_8).is_ok())
        .count();
    assert!(valid >= 100, "only {valid} valid generated programs");
}
