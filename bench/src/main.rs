//! `pvm-bench`: our interpreter against PolkaVM's interpreter, side by side,
//! on the programs of `../shared/programs` (see its README for the programs,
//! their calling convention and reference results).
//!
//! Each program is loaded and compiled once per engine; then the engines run
//! it alternately (ours, PolkaVM, ours, PolkaVM, ...), `--runs` times each,
//! every run on a fresh machine. Only execution is timed: from the first
//! instruction of a call to its return to the halt address (for DOOM: the
//! init call and all ticks, host calls included), never loading, compiling
//! or instantiating. Both engines count gas one unit per instruction.

mod ours;
mod polka;

use clap::Parser;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where Debian's `freedoom` package puts the WAD DOOM reads.
const DEFAULT_WAD: &str = "/usr/share/games/doom/freedoom1.wad";

#[derive(Parser, Debug)]
#[command(
    name = "pvm-bench",
    about = "Times our PVM interpreter and PolkaVM's interpreter side by side on ../shared/programs"
)]
struct Args {
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
    pub time: Duration,
    pub observed: Observed,
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
    let polka = polka::Polka::new()?;

    let mut rows = Vec::new();
    for spec in &specs {
        eprintln!("{}: loading", spec.name);
        let row = match bench_program(args, &polka, &programs, spec) {
            Ok(row) => row,
            Err(e) => Row {
                name: spec.name.to_string(),
                ours: Vec::new(),
                polka: Vec::new(),
                problems: Vec::new(),
                error: Some(e),
            },
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
fn bench_program(
    args: &Args,
    polka: &polka::Polka,
    programs: &Path,
    spec: &Spec,
) -> Result<Row, String> {
    let path = programs.join(spec.file);
    let (mut ours, mut theirs): (Box<dyn Runner>, Box<dyn Runner>) = match spec.kind {
        Kind::C { a0, .. } => (
            Box::new(ours::CBench::load(&path, a0)?),
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
            (
                Box::new(ours::DoomBench::load(&path, wad.clone(), args.doom_ticks)?),
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
    };
    'runs: for i in 1..=args.runs {
        for (engine, runner, samples) in [
            ("ours", &mut ours, &mut row.ours),
            ("PolkaVM", &mut theirs, &mut row.polka),
        ] {
            match runner.run_once() {
                Ok(s) => {
                    eprintln!(
                        "{}: run {i}/{}: {engine:<7} {:>10.1} ms",
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

/// Median time in ms.
fn median_ms(samples: &[Sample]) -> Option<f64> {
    let mut t: Vec<f64> = samples.iter().map(|s| ms(s.time)).collect();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(t[n / 2]),
        _ => Some((t[n / 2 - 1] + t[n / 2]) / 2.0),
    }
}

/// The results table and, below it, every run's time.
fn report(args: &Args, rows: &[Row]) -> String {
    let header = [
        "program",
        "ours ms (median)",
        "PolkaVM interp. ms (median)",
        "ours / PolkaVM",
        "results (both engines)",
        "agree",
    ];
    let mut lines: Vec<[String; 6]> = Vec::new();
    for row in rows {
        let title = match SPECS.iter().find(|s| s.name == row.name).map(|s| s.kind) {
            Some(Kind::C { a0, .. }) => format!("{} (a0={a0})", row.name),
            _ => format!("{} (init + {} ticks)", row.name, args.doom_ticks),
        };
        let (o, p) = (median_ms(&row.ours), median_ms(&row.polka));
        let fmt_ms = |m: Option<f64>| m.map_or("-".to_string(), |m| format!("{m:.1}"));
        let ratio = match (o, p) {
            (Some(o), Some(p)) if p > 0.0 => format!("{:.2}", o / p),
            _ => "-".to_string(),
        };
        let result = row
            .ours
            .first()
            .map_or("-".to_string(), |s| describe(&s.observed));
        let agree = match &row.error {
            Some(e) => format!("ERROR: {e}"),
            None if row.problems.is_empty() => "yes".to_string(),
            None => format!("NO: {}", row.problems.join("; ")),
        };
        lines.push([title, fmt_ms(o), fmt_ms(p), ratio, result, agree]);
    }

    let mut out = String::new();
    if args.markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|---|---:|---:|---:|---|---|");
        for l in &lines {
            let cells: Vec<String> = l.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    } else {
        let mut width = header.map(str::len);
        for l in &lines {
            for (w, c) in width.iter_mut().zip(l) {
                *w = (*w).max(c.len());
            }
        }
        let mut line = |cells: [&str; 6]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                // Text left-aligned, numbers right-aligned.
                if (1..=3).contains(&i) {
                    let _ = write!(s, "{c:>w$}  ");
                } else {
                    let _ = write!(s, "{c:<w$}  ");
                }
            }
            let _ = writeln!(out, "{}", s.trim_end());
        };
        line(header);
        for l in &lines {
            line([&l[0], &l[1], &l[2], &l[3], &l[4], &l[5]]);
        }
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Every run (ms, in the order run; the engines alternate):"
    );
    let _ = writeln!(out);
    for row in rows {
        let list = |samples: &[Sample]| {
            let t: Vec<String> = samples
                .iter()
                .map(|s| format!("{:.1}", ms(s.time)))
                .collect();
            t.join(", ")
        };
        let _ = writeln!(
            out,
            "- {}: ours [{}]; PolkaVM [{}]",
            row.name,
            list(&row.ours),
            list(&row.polka)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, observed: Observed) -> Sample {
        Sample {
            time: Duration::from_millis(ms),
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
        };
        assert!(check(&args(20), &spec, &row).is_empty());
        assert_eq!(check(&args(600), &spec, &row).len(), 2);
    }
}
