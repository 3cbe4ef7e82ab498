//! `pvm-parse-fuzz --target <name|all> --execs N --seed S [--corpus DIR]`:
//! seeded, structure-aware mutational fuzzing of the workspace's parsers on
//! stable Rust (see `pvm_fuzz::parsers` and `README.md`). Exits 0 when no
//! target panicked; on a panic prints the target, the message and the input
//! (hex), writes the input to a file and exits 1.

use clap::Parser;
use pvm_fuzz::parsers::{self, FuzzOptions, Target, TARGETS};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Fuzzes the PVM's parsers (blob, program, standard program, JAM blob,
/// codec, assembler, disassembler, vector JSON, and execution of what parses).
#[derive(Parser, Debug)]
#[command(name = "pvm-parse-fuzz")]
struct Cli {
    /// Target name, a comma-separated list, or `all` (see --list).
    #[arg(long, default_value = "all")]
    target: String,
    /// Executions per target (the seeds included).
    #[arg(long, default_value_t = 100_000)]
    execs: u64,
    /// Seed: the same seed (and corpus) gives the same run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Extra seed inputs: files in DIR go to every target, files in
    /// DIR/<target>/ to that target.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// The shared material (vectors, programs); default `../shared` beside
    /// the workspace. Without it the seeds are generated programs only.
    #[arg(long)]
    shared: Option<PathBuf>,
    /// Do not read seeds from the shared material.
    #[arg(long)]
    no_shared: bool,
    /// Where crashing or hanging inputs are written.
    #[arg(long, default_value = "parse-fuzz-crashes")]
    out: PathBuf,
    /// Cut inputs to this many bytes (default: per target, 1–64 KiB).
    #[arg(long)]
    max_len: Option<usize>,
    /// Report an execution running longer than this many seconds as a hang
    /// (0: no watchdog).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Targets fuzzed at the same time (threads).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run the target(s) once on this input file and report.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Write every target's seeds to DIR/<target>/ and exit.
    #[arg(long)]
    dump_seeds: Option<PathBuf>,
    /// Print a progress line every this many executions (0: never).
    #[arg(long, default_value_t = 1_000_000)]
    progress: u64,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
}

fn selected(spec: &str) -> Result<Vec<&'static Target>, String> {
    if spec == "all" {
        return Ok(TARGETS.iter().collect());
    }
    spec.split(',')
        .map(|name| {
            parsers::target(name.trim()).ok_or_else(|| {
                let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                format!(
                    "unknown target `{name}` (targets: {}, or all)",
                    names.join(", ")
                )
            })
        })
        .collect()
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn report_crash(crash: &parsers::Crash, seed: u64, out: &Path) {
    let shown = crash.input.len().min(4096);
    let mut text = format!(
        "PANIC in target `{}` at execution {} (seed {seed}):\n{}\ninput ({} bytes, hex): {}",
        crash.target,
        crash.exec,
        crash.message,
        crash.input.len(),
        parsers::hex(&crash.input[..shown])
    );
    if shown < crash.input.len() {
        text.push_str(" … (cut; the file has all of it)");
    }
    println!("{text}");
    match parsers::write_input(out, "crash", crash.target, &crash.input) {
        Ok(path) => println!(
            "written to {}\nreproduce: pvm-parse-fuzz --target {} --replay {}",
            path.display(),
            crash.target,
            path.display()
        ),
        Err(e) => println!("(could not write the input to {}: {e})", out.display()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for t in TARGETS {
            println!("{:<14} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let targets = match selected(&cli.target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cli.replay {
        let input = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        let mut failed = false;
        for t in targets {
            match parsers::run_one(t, &input) {
                Ok(o) => println!(
                    "{}: no panic ({})",
                    t.name,
                    if o.accepted { "accepted" } else { "rejected" }
                ),
                Err(message) => {
                    println!("{}: PANIC\n{message}", t.name);
                    failed = true;
                }
            }
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let shared = if cli.no_shared {
        None
    } else {
        cli.shared.clone().or_else(parsers::default_shared_dir)
    };
    match &shared {
        Some(dir) => println!("seeds from {} and the generator", dir.display()),
        None => println!("seeds from the generator only (no shared material)"),
    }
    if let Some(dir) = &cli.dump_seeds {
        for t in &targets {
            let seeds = parsers::seeds(t.kind, shared.as_deref());
            let sub = dir.join(t.name);
            for s in &seeds {
                if let Err(e) = parsers::write_input(&sub, "seed", t.name, s) {
                    eprintln!("cannot write to {}: {e}", sub.display());
                    return ExitCode::from(2);
                }
            }
            println!("{}: {} seeds in {}", t.name, seeds.len(), sub.display());
        }
        return ExitCode::SUCCESS;
    }
    let opts = FuzzOptions {
        execs: cli.execs,
        seed: cli.seed,
        max_len: cli.max_len,
        timeout: (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout)),
        crash_dir: cli.out.clone(),
        ..FuzzOptions::default()
    };
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let totals = std::sync::Mutex::new(0u64);
    std::thread::scope(|scope| {
        for _ in 0..cli.jobs.clamp(1, targets.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&t) = targets.get(i) else { break };
                let mut seeds = parsers::seeds(t.kind, shared.as_deref());
                if let Some(dir) = &cli.corpus {
                    seeds.extend(read_dir_files(dir));
                    seeds.extend(read_dir_files(&dir.join(t.name)));
                }
                let every = cli.progress;
                let result = parsers::fuzz(t, seeds, &opts, |s| {
                    if every > 0 && s.execs % every == 0 {
                        eprintln!(
                            "  {}: {} execs, {:.0}/s, corpus {}, features {}",
                            t.name,
                            s.execs,
                            s.rate(),
                            s.corpus,
                            s.features
                        );
                    }
                });
                match result {
                    Ok(s) => {
                        println!(
                            "{:<14} {:>11} execs  {:>7.1} s  {:>9.0} execs/s  accepted {:>5.1}%  seeds {:>4}  corpus {:>4}  features {:>5}  panics 0",
                            t.name,
                            s.execs,
                            s.elapsed.as_secs_f64(),
                            s.rate(),
                            100.0 * s.accepted as f64 / s.execs.max(1) as f64,
                            s.seeds,
                            s.corpus,
                            s.features
                        );
                        if let Ok(mut total) = totals.lock() {
                            *total += s.execs;
                        }
                    }
                    Err(crash) => {
                        report_crash(&crash, cli.seed, &cli.out);
                        std::process::exit(1);
                    }
                }
            });
        }
    });
    let total = totals.lock().map(|t| *t).unwrap_or(0);
    println!(
        "{} target(s), {total} executions, 0 panics, {:.1} s wall",
        targets.len(),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
