//! The `pvm` command itself: the C programs under `pvm run` (naive model),
//! `pvm vectors` output and exit codes, `pvm asm`/`pvm disasm` round trip,
//! and clear errors on bad input.

use std::path::PathBuf;
use std::process::Command;

fn pvm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pvm"))
}

/// `../shared` beside the checkout; `None` (skip) unless CI demands it.
fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("../shared is missing: CI must run with it beside the checkout");
    }
    eprintln!("skipped: ../shared not found beside the checkout");
    None
}

/// The JSON object on the last line of `pvm run --json`.
fn run_json(args: &[&str]) -> serde_json::Value {
    run_json_and_stderr(args).0
}

/// [`run_json`], and what `pvm run` wrote to stderr.
fn run_json_and_stderr(args: &[&str]) -> (serde_json::Value, String) {
    let out = pvm()
        .arg("run")
        .args(args)
        .arg("--json")
        .output()
        .expect("pvm runs");
    assert!(
        out.status.success(),
        "pvm run {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let last = stdout.lines().last().expect("output");
    let json = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"));
    (json, String::from_utf8(out.stderr).expect("UTF-8"))
}

fn check_program(file: &str, iters: &str, r7: u64, instructions: u64) {
    let Some(shared) = shared() else { return };
    let path = shared.join("programs").join(file);
    let v = run_json(&[
        path.to_str().expect("UTF-8 path"),
        "--reg",
        &format!("r7={iters}"),
        "--gas-model",
        "naive",
    ]);
    assert_eq!(v["status"], "halt", "{file}: {v}");
    assert_eq!(v["regs"][7].as_u64(), Some(r7), "{file}: result");
    assert_eq!(
        v["gas_used"].as_u64(),
        Some(instructions),
        "{file}: instructions"
    );
    assert_eq!(v["regs"].as_array().map(Vec::len), Some(13));
}

// Reference figures: ../shared/programs/README.md.
#[test]
fn prime_sieve_under_pvm_run() {
    check_program("prime_sieve.spi", "20", 1_569_960, 414_483_563);
}

#[test]
fn sha256_under_pvm_run() {
    check_program("sha256.spi", "100", 11_087_806_886_002_845_565, 427_970_679);
}

#[test]
fn keccak_under_pvm_run() {
    check_program(
        "keccak.spi",
        "30000",
        16_798_156_629_428_360_832,
        477_480_092,
    );
}

#[test]
fn minicore_under_pvm_run() {
    check_program("minicore.spi", "2000", 1_294, 509_995_350);
}

#[test]
fn example_program_runs_from_source() {
    let fib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fib.pvmasm");
    let v = run_json(&[fib.to_str().expect("UTF-8 path"), "--reg", "r7=90"]);
    assert_eq!(v["status"], "halt");
    // fib(90), computed independently.
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..90 {
        (a, b) = (b, a.wrapping_add(b));
    }
    assert_eq!(v["regs"][7].as_u64(), Some(a));
}

#[test]
fn vectors_command_counts_and_fails_on_a_bad_vector() {
    let Some(shared) = shared() else { return };
    let dir = std::env::temp_dir().join(format!("pvm-cli-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = shared.join("vectors/gp-0.8/programs/inst_add_32.json");
    std::fs::copy(&good, dir.join("good.json")).expect("copy");
    // The same vector with a wrong expected register.
    let text = std::fs::read_to_string(&good).expect("read");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let steps = v["steps"].as_array_mut().expect("steps");
    let assert = steps
        .iter_mut()
        .rev()
        .find(|s| s.get("assert").is_some())
        .expect("an assert");
    assert["assert"]["regs"][9] = 12345.into();
    std::fs::write(dir.join("bad.json"), v.to_string()).expect("write");
    std::fs::write(dir.join("broken.json"), "{\"name\": 1").expect("write");

    let out = pvm().arg("vectors").arg(&dir).output().expect("pvm runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a failing vector makes the exit code non-zero"
    );
    assert!(
        stdout.contains("FAIL bad:") && stdout.contains("r9: expected 0x3039"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL broken: bad vector file"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("1 passed, 2 failed"));

    std::fs::remove_file(dir.join("bad.json")).expect("rm");
    std::fs::remove_file(dir.join("broken.json")).expect("rm");
    let out = pvm().arg("vectors").arg(&dir).output().expect("pvm runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("1 passed, 0 failed")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn asm_and_disasm_round_trip_through_files() {
    let Some(shared) = shared() else { return };
    let dir = std::env::temp_dir().join(format!("pvm-cli-asm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let original = shared.join("programs/sha256.spi");
    let out = pvm()
        .arg("disasm")
        .arg(&original)
        .output()
        .expect("pvm runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("sha256.pvmasm"), &out.stdout).expect("write");
    let status = pvm()
        .arg("asm")
        .arg(dir.join("sha256.pvmasm"))
        .arg("-o")
        .arg(dir.join("sha256.spi"))
        .status()
        .expect("pvm runs");
    assert!(status.success());
    assert_eq!(
        std::fs::read(dir.join("sha256.spi")).expect("read"),
        std::fs::read(&original).expect("read")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gives_clear_errors_not_panics() {
    let dir = std::env::temp_dir().join(format!("pvm-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("junk.bin"), [0xFFu8, 0xFF, 0xFF, 0x01]).expect("write");
    for args in [
        vec![
            "run".to_string(),
            dir.join("missing.spi").display().to_string(),
        ],
        vec![
            "run".to_string(),
            dir.join("junk.bin").display().to_string(),
        ],
        vec![
            "run".to_string(),
            "--raw".to_string(),
            dir.join("junk.bin").display().to_string(),
        ],
        vec![
            "disasm".to_string(),
            dir.join("junk.bin").display().to_string(),
        ],
        vec![
            "vectors".to_string(),
            dir.join("missing-dir").display().to_string(),
        ],
    ] {
        let out = pvm().args(&args).output().expect("pvm runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_prints_one_line_per_instruction() {
    let fib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fib.pvmasm");
    let out = pvm()
        .args([
            "run",
            fib.to_str().expect("UTF-8 path"),
            "--reg",
            "r7=5",
            "--gas-model",
            "naive",
            "--trace",
            "--json",
        ])
        .output()
        .expect("pvm runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
    let trace = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = trace.lines().collect();
    // Naive model: gas used = instructions executed = trace lines.
    assert_eq!(Some(lines.len() as u64), v["gas_used"].as_u64(), "{trace}");
    assert!(
        lines[0].trim_start().starts_with("0  gas") && lines[0].ends_with("load_imm r8, 0"),
        "{}",
        lines[0]
    );
    assert!(lines.last().is_some_and(|l| l.ends_with("jump_ind r0, 0")));
}

#[test]
fn run_compiles_a_big_program_in_pieces_with_jit_threads() {
    if !pvm_jit::is_available() {
        eprintln!("skipped: no recompiler here");
        return;
    }
    let Some(shared) = shared() else { return };
    let doom = shared.join("programs/doom.spi");
    let run = |threads: &str| {
        let doom = doom.to_str().unwrap();
        let args = [
            doom,
            "--backend",
            "jit",
            "--gas",
            "100000",
            "--jit-threads",
            threads,
        ];
        let (json, stderr) = run_json_and_stderr(&args);
        (stderr, json)
    };
    let (one_err, one) = run("1");
    let (two_err, two) = run("2");
    assert!(!one_err.contains("pieces"), "{one_err}");
    assert!(two_err.contains("pieces on up to 2 threads"), "{two_err}");
    // The same run either way (DOOM's entry runs out of gas or calls the host).
    assert_eq!(one, two);
    let zero = pvm()
        .args(["run", doom.to_str().unwrap(), "--jit-threads", "0"])
        .output()
        .expect("pvm runs");
    assert!(!zero.status.success());
}
