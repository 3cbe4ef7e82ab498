//! `pvm-bench`: our interpreter against PolkaVM's interpreter
//! (`--backend interp`, the default), or our recompiler against PolkaVM's
//! recompiler (`--backend jit`), side by side, on the programs of
//! `../shared/programs` (see its README for the programs, their calling
//! convention and reference results).
//!
//! The engines run each program alternately (ours, PolkaVM, ours, PolkaVM,
//! ...), `--runs` times each, every run on a fresh machine. The execution
//! time is from the first instruction of a call to its return to the halt
//! address (for DOOM: the init call and all ticks, host calls included).
//! Interpreters: the program is loaded and compiled once per engine, and
//! only execution is timed. Recompilers: every run compiles the program
//! anew and instantiates it, and those times are measured too (see
//! [`Setup`]). Both engines count gas one unit per instruction.

mod ours;
mod polka;

use clap::{Parser, ValueEnum};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where Debian's `freedoom` package puts the WAD DOOM reads.
const DEFAULT_WAD: &str = "/usr/share/games/doom/freedoom1.wad";

#[derive(Parser, Debug)]
#[command(
    name = "pvm-bench",
    about = "Times our PVM interpreter or recompiler and PolkaVM's side by side on ../shared/programs"
)]
struct Args {
    /// Which engines: the interpreters, or the recompilers (ours: pvm-jit;
    /// PolkaVM's: its compiler backend).
    #[arg(long, value_enum, default_value_t = Backend::Interp)]
    backend: Backend,
    /// The sandbox of PolkaVM's recompiler: PolkaVM's default (Linux's: a
    /// worker process per instance), `linux`, or `generic` (in-process,
    /// experimental; needs this crate's cargo feature `generic-sandbox`).
    #[arg(long, value_enum, value_name = "KIND")]
    polkavm_sandbox: Option<Sandbox>,
    /// Runs per engine and program (alternating between the engines).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Run only this program: prime_sieve, sha256, keccak, minicore or doom.
    #[arg(long, value_name = "NAME")]
    only: Option<String>,
    /// `ext_tick` calls after `ext_initialize` in the DOOM run.
    #[arg(long, value_name = "T", default_value_t = 600)]
    doom_ticks: u64,
    /// The shared directory holding `programs/`.
    #[arg(long, value_name = "PATH", default_value = "../shared")]
    shared: PathBuf,
    /// The DOOM WAD (Debian package `freedoom`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_WAD)]
    wad: PathBuf,
    /// Print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
    /// Threads our recompiler may decode and generate code on (2 or more:
    /// programs of at least 16,384 instructions are cut into pieces that
    /// the threads take in turn; PolkaVM's compiles on one).
    #[arg(long, value_name = "N", default_value_t = 1)]
    jit_threads: usize,
}

impl Args {
    /// How our recompiler may generate code.
    fn parallelism(&self) -> pvm_jit::Parallelism {
        if self.jit_threads > 1 {
            pvm_jit::Parallelism {
                threads: self.jit_threads,
                ..pvm_jit::Parallelism::TWO_THREADS
            }
        } else {
            pvm_jit::Parallelism::SERIAL
        }
    }
}

/// The engines compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// Our interpreter and PolkaVM's.
    Interp,
    /// Our recompiler and PolkaVM's.
    Jit,
}

/// PolkaVM's recompiler sandboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sandbox {
    Linux,
    Generic,
}

impl Args {
    /// PolkaVM's backend for these arguments.
    fn polka_backend(&self) -> Result<polka::Backend, String> {
        match (self.backend, self.polkavm_sandbox) {
            (Backend::Interp, None) => Ok(polka::Backend::Interpreter),
            (Backend::Interp, Some(_)) => {
                Err("--polkavm-sandbox applies to --backend jit only".into())
            }
            (Backend::Jit, sandbox) => Ok(polka::Backend::Compiler(sandbox.map(|s| match s {
                Sandbox::Linux => polkavm::SandboxKind::Linux,
                Sandbox::Generic => polkavm::SandboxKind::Generic,
            }))),
        }
    }
}

/// What one run computed; equal across runs and engines when all is well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A C benchmark: the result and the gas used (= instructions).
    C { r7: u64, gas: u64 },
    /// DOOM: total gas of the init call and the ticks, frames output, and
    /// the FNV-1a hash of the last frame.
    Doom {
        gas: u64,
        frames: u64,
        last_frame_hash: Option<u64>,
    },
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Execution time.
    pub time: Duration,
    /// Compiling and instantiating for this run (recompilers only).
    pub setup: Option<Setup>,
    pub observed: Observed,
}

/// What a run spent before executing.
///
/// Ours: `compile` is parsing the code blob's bytes, decoding and
/// validating it (naive gas model) and generating native code, in one pass
/// (`JitInstance::from_blob_on`'s `compile_time`; with `--jit-threads`, for
/// big programs, in pieces on more threads); `instantiate` is the rest of `from_blob_on` (reserving the 4 GiB guest
/// window) plus laying out Y's memory and copying it in
/// (`pvm_std::jit::with_memory`).
/// PolkaVM: `compile` is `Module::from_blob` (on a blob parsed beforehand),
/// `instantiate` is `Module::instantiate` plus making the argument area
/// inaccessible (`set_accessible_aux_size(0)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub compile: Duration,
    pub instantiate: Duration,
}

/// A program loaded into one engine, ready to run on a fresh machine.
pub trait Runner {
    fn run_once(&mut self) -> Result<Sample, String>;
}

/// A benchmark program and what the README documents for it.
#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    file: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    C { a0: u64, r7: u64, instructions: u64 },
    Doom,
}

/// ../shared/programs/README.md's reference results.
const SPECS: [Spec; 5] = [
    Spec {
        name: "prime_sieve",
        file: "prime_sieve.spi",
        kind: Kind::C {
            a0: 20,
            r7: 1_569_960,
            instructions: 414_483_563,
        },
    },
    Spec {
        name: "sha256",
        file: "sha256.spi",
        kind: Kind::C {
            a0: 100,
            r7: 11_087_806_886_002_845_565,
            instructions: 427_970_679,
        },
    },
    Spec {
        name: "keccak",
        file: "keccak.spi",
        kind: Kind::C {
            a0: 30_000,
            r7: 16_798_156_629_428_360_832,
            instructions: 477_480_092,
        },
    },
    Spec {
        name: "minicore",
        file: "minicore.spi",
        kind: Kind::C {
            a0: 2_000,
            r7: 1_294,
            instructions: 509_995_350,
        },
    },
    Spec {
        name: "doom",
        file: "doom.spi",
        kind: Kind::Doom,
    },
];

/// The README's DOOM reference run: 600 ticks.
const DOOM_REFERENCE_TICKS: u64 = 600;
const DOOM_REFERENCE_FRAMES: u64 = 642;
const DOOM_REFERENCE_HASH: u64 = 0x7d9b_8f5c_c98e_b45d;
/// ext_initialize (215,745,347) + 600 × ext_tick (8,834,133,415).
const DOOM_REFERENCE_GAS: u64 = 215_745_347 + 8_834_133_415;

/// The measurements of one program.
#[derive(Debug)]
struct Row {
    name: String,
    ours: Vec<Sample>,
    polka: Vec<Sample>,
    /// Disagreements; empty when everything agrees.
    problems: Vec<String>,
    /// A failure to load, compile or run the program.
    error: Option<String>,
    /// How long creating PolkaVM's engine took.
    engine_time: Option<Duration>,
}

impl Row {
    fn failed(name: &str, error: String) -> Row {
        Row {
            name: name.to_string(),
            ours: Vec::new(),
            polka: Vec::new(),
            problems: Vec::new(),
            error: Some(error),
            engine_time: None,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(Outcome::Agree) => ExitCode::SUCCESS,
        Ok(Outcome::Disagree) => ExitCode::FAILURE,
        Ok(Outcome::Failed) => ExitCode::from(2),
        Err(e) => {
            eprintln!("pvm-bench: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// How a whole benchmark ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Agree,
    /// Some result disagrees (exit code 1).
    Disagree,
    /// Some program could not be loaded or run (exit code 2).
    Failed,
}

/// Runs the benchmark and prints the results.
fn run(args: &Args) -> Result<Outcome, String> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let specs: Vec<Spec> = match &args.only {
        None => SPECS.to_vec(),
        Some(only) => {
            let only = only.strip_suffix(".spi").unwrap_or(only);
            let found: Vec<Spec> = SPECS.iter().copied().filter(|s| s.name == only).collect();
            if found.is_empty() {
                let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
                return Err(format!(
                    "unknown program {only:?} for --only (one of: {})",
                    names.join(", ")
                ));
            }
            found
        }
    };
    let programs = args.shared.join("programs");
    if !programs.is_dir() {
        return Err(format!(
            "{} is not a directory (give the shared directory with --shared PATH)",
            programs.display()
        ));
    }
    let backend = args.polka_backend()?;

    let mut rows = Vec::new();
    for spec in &specs {
        eprintln!("{}: loading", spec.name);
        let row = match bench_program(args, backend, &programs, spec) {
            Ok(row) => row,
            Err(e) => Row::failed(spec.name, e),
        };
        for p in row.error.iter().chain(&row.problems) {
            eprintln!("{}: {p}", row.name);
        }
        rows.push(row);
    }

    print!("{}", report(args, &rows));
    Ok(if rows.iter().any(|r| r.error.is_some()) {
        Outcome::Failed
    } else if rows.iter().any(|r| !r.problems.is_empty()) {
        Outcome::Disagree
    } else {
        Outcome::Agree
    })
}

/// Loads `spec` into both engines, runs it alternately and checks results.
/// PolkaVM gets a new engine per program, so that the first instance of
/// each program on its recompiler starts a new sandbox worker.
fn bench_program(
    args: &Args,
    backend: polka::Backend,
    programs: &Path,
    spec: &Spec,
) -> Result<Row, String> {
    let path = programs.join(spec.file);
    let polka = polka::Polka::new(backend)?;
    let engine_time = polka.engine_time;
    let jit = args.backend == Backend::Jit;
    let (mut ours, mut theirs): (Box<dyn Runner>, Box<dyn Runner>) = match spec.kind {
        Kind::C { a0, .. } => (
            if jit {
                Box::new(ours::JitCBench::load(&path, a0, args.parallelism())?)
            } else {
                Box::new(ours::CBench::load(&path, a0)?)
            },
            Box::new(polka::CBench::load(polka, &path, a0)?),
        ),
        Kind::Doom => {
            let wad = std::fs::read(&args.wad).map_err(|e| {
                format!(
                    "cannot read the DOOM WAD {}: {e} (install the Debian package freedoom, \
                     or give --wad PATH)",
                    args.wad.display()
                )
            })?;
            let ours: Box<dyn Runner> = if jit {
                Box::new(ours::JitDoomBench::load(
                    &path,
                    wad.clone(),
                    args.doom_ticks,
                    args.parallelism(),
                )?)
            } else {
                Box::new(ours::DoomBench::load(&path, wad.clone(), args.doom_ticks)?)
            };
            (
                ours,
                Box::new(polka::DoomBench::load(polka, &path, wad, args.doom_ticks)?),
            )
        }
    };

    let mut row = Row {
        name: spec.name.to_string(),
        ours: Vec::new(),
        polka: Vec::new(),
        problems: Vec::new(),
        error: None,
        engine_time: jit.then_some(engine_time),
    };
    'runs: for i in 1..=args.runs {
        for (engine, runner, samples) in [
            ("ours", &mut ours, &mut row.ours),
            ("PolkaVM", &mut theirs, &mut row.polka),
        ] {
            match runner.run_once() {
                Ok(s) => {
                    let setup = s.setup.map_or(String::new(), |u| {
                        format!(
                            " (compile {:.2} ms, instantiate {:.2} ms)",
                            ms(u.compile),
                            ms(u.instantiate)
                        )
                    });
                    eprintln!(
                        "{}: run {i}/{}: {engine:<7} {:>10.1} ms{setup}",
                        spec.name,
                        args.runs,
                        ms(s.time)
                    );
                    samples.push(s);
                }
                Err(e) => {
                    row.error = Some(format!("run {i}: {e}"));
                    break 'runs;
                }
            }
        }
    }
    if row.error.is_none() {
        row.problems = check(args, spec, &row);
    }
    Ok(row)
}

/// Every way the results fall short: runs that differ, engines that
/// differ, and differences from the README's reference results.
fn check(args: &Args, spec: &Spec, row: &Row) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some(ours), Some(theirs)) = (row.ours.first(), row.polka.first()) else {
        problems.push("no runs".to_string());
        return problems;
    };
    for (engine, samples) in [("ours", &row.ours), ("PolkaVM", &row.polka)] {
        if let Some(s) = samples.iter().find(|s| s.observed != samples[0].observed) {
            problems.push(format!(
                "{engine}: runs differ: {} vs {}",
                describe(&samples[0].observed),
                describe(&s.observed)
            ));
        }
    }
    if ours.observed != theirs.observed {
        problems.push(format!(
            "engines differ: ours {}, PolkaVM {}",
            describe(&ours.observed),
            describe(&theirs.observed)
        ));
    }
    let expected = match spec.kind {
        Kind::C {
            r7, instructions, ..
        } => Some(Observed::C {
            r7,
            gas: instructions,
        }),
        Kind::Doom if args.doom_ticks == DOOM_REFERENCE_TICKS => Some(Observed::Doom {
            gas: DOOM_REFERENCE_GAS,
            frames: DOOM_REFERENCE_FRAMES,
            last_frame_hash: Some(DOOM_REFERENCE_HASH),
        }),
        Kind::Doom => None,
    };
    if let Some(expected) = expected {
        for (engine, s) in [("ours", ours), ("PolkaVM", theirs)] {
            if s.observed != expected {
                problems.push(format!(
                    "{engine}: {} differs from the README's {}",
                    describe(&s.observed),
                    describe(&expected)
                ));
            }
        }
    }
    problems
}

fn describe(o: &Observed) -> String {
    match *o {
        Observed::C { r7, gas } => format!("r7 = {r7}, {} instructions", group(gas)),
        Observed::Doom {
            gas,
            frames,
            last_frame_hash,
        } => {
            let hash = last_frame_hash.map_or("none".to_string(), |h| format!("{h:016x}"));
            format!(
                "{} instructions, {frames} frames, last frame {hash}",
                group(gas)
            )
        }
    }
}

/// `n` with thousands separators.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `v`.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Median execution time in ms.
fn median_ms(samples: &[Sample]) -> Option<f64> {
    median(samples.iter().map(|s| ms(s.time)).collect())
}

/// One engine's compile and instantiate times on one program, in ms.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SetupStats {
    /// Median compile time.
    compile: f64,
    /// The first run's instantiate time.
    first_instantiate: f64,
    /// Median instantiate time of the other runs.
    later_instantiate: Option<f64>,
}

/// The setup statistics of `samples` (in run order), if every run has them.
fn setup_stats(samples: &[Sample]) -> Option<SetupStats> {
    let setups: Vec<Setup> = samples.iter().map(|s| s.setup).collect::<Option<_>>()?;
    let first = setups.first()?;
    Some(SetupStats {
        compile: median(setups.iter().map(|u| ms(u.compile)).collect())?,
        first_instantiate: ms(first.instantiate),
        later_instantiate: median(setups[1..].iter().map(|u| ms(u.instantiate)).collect()),
    })
}

/// `a / b` with two decimals, or "-".
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    }
}

/// A time in ms with `decimals` decimals, or "-".
fn fmt_ms(m: Option<f64>, decimals: usize) -> String {
    m.map_or("-".to_string(), |m| format!("{m:.decimals$}"))
}

/// Appends a table, as Markdown or as aligned text; `right[i]` right-aligns
/// column i (numbers).
fn table(out: &mut String, markdown: bool, header: &[&str], right: &[bool], lines: &[Vec<String>]) {
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let rule: Vec<&str> = right
            .iter()
            .map(|&r| if r { "---:" } else { "---" })
            .collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for l in lines {
            let cells: Vec<String> = l.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        return;
    }
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for l in lines {
        for (w, c) in width.iter_mut().zip(l) {
            *w = (*w).max(c.len());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut s = String::new();
        for ((c, &w), &r) in cells.iter().zip(&width).zip(right) {
            if r {
                let _ = write!(s, "{c:>w$}  ");
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(header);
    for l in lines {
        let cells: Vec<&str> = l.iter().map(String::as_str).collect();
        line(&cells);
    }
}

/// The results table, for the recompilers the compile and instantiate
/// table, and below them every run's times.
fn report(args: &Args, rows: &[Row]) -> String {
    let jit = args.backend == Backend::Jit;
    let (ours_head, polka_head) = if jit {
        ("ours JIT ms (median)", "PolkaVM recompiler ms (median)")
    } else {
        ("ours ms (median)", "PolkaVM interp. ms (median)")
    };
    let header = [
        "program",
        ours_head,
        polka_head,
        "ours / PolkaVM",
        "results (both engines)",
        "agree",
    ];
    let title = |row: &Row| match SPECS.iter().find(|s| s.name == row.name).map(|s| s.kind) {
        Some(Kind::C { a0, .. }) => format!("{} (a0={a0})", row.name),
        _ => format!("{} (init + {} ticks)", row.name, args.doom_ticks),
    };
    let mut lines = Vec::new();
    for row in rows {
        let (o, p) = (median_ms(&row.ours), median_ms(&row.polka));
        let result = row
            .ours
            .first()
            .map_or("-".to_string(), |s| describe(&s.observed));
        let agree = match &row.error {
            Some(e) => format!("ERROR: {e}"),
            None if row.problems.is_empty() => "yes".to_string(),
            None => format!("NO: {}", row.problems.join("; ")),
        };
        lines.push(vec![
            title(row),
            fmt_ms(o, 1),
            fmt_ms(p, 1),
            ratio(o, p),
            result,
            agree,
        ]);
    }
    let mut out = String::new();
    let right = [false, true, true, true, false, false];
    table(&mut out, args.markdown, &header, &right, &lines);

    if jit {
        let header = [
            "program",
            "ours compile ms",
            "PolkaVM compile ms",
            "ours / PolkaVM",
            "ours instantiate ms, 1st",
            "later",
            "PolkaVM instantiate ms, 1st",
            "later",
        ];
        let mut lines = Vec::new();
        for row in rows {
            let (o, p) = (setup_stats(&row.ours), setup_stats(&row.polka));
            lines.push(vec![
                title(row),
                fmt_ms(o.map(|o| o.compile), 2),
                fmt_ms(p.map(|p| p.compile), 2),
                ratio(o.map(|o| o.compile), p.map(|p| p.compile)),
                fmt_ms(o.map(|o| o.first_instantiate), 2),
                fmt_ms(o.and_then(|o| o.later_instantiate), 2),
                fmt_ms(p.map(|p| p.first_instantiate), 2),
                fmt_ms(p.and_then(|p| p.later_instantiate), 2),
            ]);
        }
        let _ = writeln!(out);
        let right = [false, true, true, true, true, true, true, true];
        table(&mut out, args.markdown, &header, &right, &lines);
        let _ = writeln!(out);
        let engines: Vec<String> = rows
            .iter()
            .filter_map(|r| r.engine_time.map(|t| format!("{} {:.2}", r.name, ms(t))))
            .collect();
        let _ = writeln!(
            out,
            "Creating PolkaVM's engine (ms, one per program): {}",
            engines.join(", ")
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Our code generation: {} (--jit-threads {}); PolkaVM's: one thread.",
            if args.jit_threads > 1 {
                "decoding and code generation in pieces on more threads for programs of at least 16,384 instructions (else one pass on the calling thread)"
            } else {
                "one pass with the decoding, on the calling thread"
            },
            args.jit_threads.max(1)
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Every run (ms, in the order run; the engines alternate):"
    );
    let _ = writeln!(out);
    let list = |t: Vec<Option<Duration>>, decimals: usize| {
        let t: Vec<String> = t.iter().map(|t| fmt_ms(t.map(ms), decimals)).collect();
        t.join(", ")
    };
    for row in rows {
        let times = |s: &[Sample]| list(s.iter().map(|s| Some(s.time)).collect(), 1);
        let _ = writeln!(
            out,
            "- {}: ours [{}]; PolkaVM [{}]",
            row.name,
            times(&row.ours),
            times(&row.polka)
        );
        if jit {
            for (what, f) in [
                ("compile", (|u: Setup| u.compile) as fn(Setup) -> Duration),
                ("instantiate", |u: Setup| u.instantiate),
            ] {
                let setups = |s: &[Sample]| list(s.iter().map(|s| s.setup.map(f)).collect(), 2);
                let _ = writeln!(
                    out,
                    "  - {what}: ours [{}]; PolkaVM [{}]",
                    setups(&row.ours),
                    setups(&row.polka)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, observed: Observed) -> Sample {
        Sample {
            time: Duration::from_millis(ms),
            setup: None,
            observed,
        }
    }

    fn args(doom_ticks: u64) -> Args {
        Args::parse_from(["pvm-bench", "--doom-ticks", &doom_ticks.to_string()])
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(414_483_563), "414,483,563");
    }

    #[test]
    fn medians() {
        let o = Observed::C { r7: 0, gas: 0 };
        assert_eq!(median_ms(&[]), None);
        let odd = [sample(30, o), sample(10, o), sample(20, o)];
        assert_eq!(median_ms(&odd), Some(20.0));
        let even = [sample(40, o), sample(10, o), sample(20, o), sample(30, o)];
        assert_eq!(median_ms(&even), Some(25.0));
    }

    #[test]
    fn checks_engines_runs_and_reference() {
        let spec = SPECS[0];
        let good = Observed::C {
            r7: 1_569_960,
            gas: 414_483_563,
        };
        let row = |ours: Vec<Observed>, polka: Vec<Observed>| Row {
            name: spec.name.to_string(),
            ours: ours.into_iter().map(|o| sample(1, o)).collect(),
            polka: polka.into_iter().map(|o| sample(1, o)).collect(),
            problems: Vec::new(),
            error: None,
            engine_time: None,
        };
        assert!(check(&args(600), &spec, &row(vec![good; 2], vec![good; 2])).is_empty());
        let off = Observed::C {
            r7: 1_569_960,
            gas: 414_483_562,
        };
        // PolkaVM differs from ours and from the README.
        assert_eq!(
            check(&args(600), &spec, &row(vec![good], vec![off])).len(),
            2
        );
        // One of our runs differs from the others (and so from the README).
        let p = check(&args(600), &spec, &row(vec![good, off], vec![good, good]));
        assert!(p[0].starts_with("ours: runs differ"), "{p:?}");
    }

    #[test]
    fn doom_reference_applies_to_600_ticks_only() {
        let spec = SPECS[4];
        let short = Observed::Doom {
            gas: 1,
            frames: 2,
            last_frame_hash: Some(3),
        };
        let row = Row {
            name: spec.name.to_string(),
            ours: vec![sample(1, short)],
            polka: vec![sample(1, short)],
            problems: Vec::new(),
            error: None,
            engine_time: None,
        };
        assert!(check(&args(20), &spec, &row).is_empty());
        assert_eq!(check(&args(600), &spec, &row).len(), 2);
    }

    fn setup_sample(compile: u64, instantiate: u64) -> Sample {
        Sample {
            time: Duration::from_millis(1),
            setup: Some(Setup {
                compile: Duration::from_millis(compile),
                instantiate: Duration::from_millis(instantiate),
            }),
            observed: Observed::C { r7: 0, gas: 0 },
        }
    }

    #[test]
    fn setup_stats_split_first_and_later_instances() {
        // PolkaVM-like: the first instance starts a worker process.
        let polka = [
            setup_sample(5, 100),
            setup_sample(3, 1),
            setup_sample(4, 3),
            setup_sample(9, 2),
        ];
        assert_eq!(
            setup_stats(&polka),
            Some(SetupStats {
                compile: 4.5,
                first_instantiate: 100.0,
                later_instantiate: Some(2.0),
            })
        );
        // One run has no later instance.
        let ours = [setup_sample(7, 2)];
        assert_eq!(
            setup_stats(&ours),
            Some(SetupStats {
                compile: 7.0,
                first_instantiate: 2.0,
                later_instantiate: None,
            })
        );
        // The interpreters measure no setup; nor does a mix.
        let o = Observed::C { r7: 0, gas: 0 };
        assert_eq!(setup_stats(&[sample(1, o)]), None);
        assert_eq!(setup_stats(&[setup_sample(1, 1), sample(1, o)]), None);
        assert_eq!(setup_stats(&[]), None);
    }

    #[test]
    fn ratios_and_times() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50");
        assert_eq!(ratio(Some(3.0), Some(0.0)), "-");
        assert_eq!(ratio(None, Some(2.0)), "-");
        assert_eq!(fmt_ms(Some(1.234), 2), "1.23");
        assert_eq!(fmt_ms(None, 1), "-");
    }

    #[test]
    fn backend_options() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["pvm-bench"];
            argv.extend_from_slice(extra);
            Args::parse_from(argv).polka_backend()
        };
        assert_eq!(parse(&[]), Ok(polka::Backend::Interpreter));
        assert_eq!(
            parse(&["--backend", "interp"]),
            Ok(polka::Backend::Interpreter)
        );
        assert_eq!(
            parse(&["--backend", "jit"]),
            Ok(polka::Backend::Compiler(None))
        );
        assert_eq!(
            parse(&["--backend", "jit", "--polkavm-sandbox", "generic"]),
            Ok(polka::Backend::Compiler(Some(
                polkavm::SandboxKind::Generic
            )))
        );
        assert_eq!(
            parse(&["--backend", "jit", "--polkavm-sandbox", "linux"]),
            Ok(polka::Backend::Compiler(Some(polkavm::SandboxKind::Linux)))
        );
        assert!(parse(&["--polkavm-sandbox", "linux"]).is_err());
        assert!(Args::try_parse_from(["pvm-bench", "--backend", "aot"]).is_err());
    }

    #[test]
    fn tables() {
        let lines = vec![vec!["a|b".to_string(), "1.5".to_string()]];
        let mut md = String::new();
        table(&mut md, true, &["name", "ms"], &[false, true], &lines);
        assert_eq!(md, "| name | ms |\n|---|---:|\n| a\\|b | 1.5 |\n");
        let mut text = String::new();
        table(&mut text, false, &["name", "ms"], &[false, true], &lines);
        assert_eq!(text, "name   ms\na|b   1.5\n");
    }

    #[test]
    fn recompiler_report_has_setup_table() {
        let good = Observed::C {
            r7: 1_569_960,
            gas: 414_483_563,
        };
        let mut ours = setup_sample(2, 3);
        ours.observed = good;
        let mut theirs = setup_sample(1, 100);
        theirs.observed = good;
        let row = Row {
            name: "prime_sieve".to_string(),
            ours: vec![ours],
            polka: vec![theirs],
            problems: Vec::new(),
            error: None,
            engine_time: Some(Duration::from_millis(4)),
        };
        let jit = Args::parse_from(["pvm-bench", "--backend", "jit", "--markdown"]);
        let out = report(&jit, std::slice::from_ref(&row));
        assert!(out.contains("| ours JIT ms (median) |"), "{out}");
        assert!(
            out.contains("| prime_sieve (a0=20) | 2.00 | 1.00 | 2.00 | 3.00 | - | 100.00 | - |"),
            "{out}"
        );
        assert!(out.contains("prime_sieve 4.00"), "{out}");
        assert!(
            out.contains("  - instantiate: ours [3.00]; PolkaVM [100.00]"),
            "{out}"
        );
        let interp = Args::parse_from(["pvm-bench", "--markdown"]);
        let out = report(&interp, &[row]);
        assert!(out.contains("PolkaVM interp. ms"), "{out}");
        assert!(!out.contains("compile"), "{out}");
    }
}
