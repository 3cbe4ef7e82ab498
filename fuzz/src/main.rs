//! `pvm-fuzz --cases N --seed S [--gas-model naive|gp|both]`: differential
//! fuzzing of our interpreter against PolkaVM's. Exits 0 if no difference.

use clap::{Parser, ValueEnum};
use pvm_fuzz::harness::GasModel;
use pvm_fuzz::{run, Options};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    Naive,
    Gp,
    Both,
}

/// Differential fuzzer: our PVM interpreter against PolkaVM 0.37's interpreter.
#[derive(Parser, Debug)]
#[command(name = "pvm-fuzz")]
struct Cli {
    /// Number of cases (programs).
    #[arg(long, default_value_t = 10_000)]
    cases: u64,
    /// Seed: the same seed gives the same cases.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Index of the first case (to rerun one reported case).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Gas model(s) each case runs under.
    #[arg(long, value_enum, default_value_t = Model::Both)]
    gas_model: Model,
    /// Only compare every basic block's GP 0.8.0 cost (ours against
    /// PolkaVM's `calculate_gas_cost_for`), without running.
    #[arg(long)]
    block_costs: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let models = match cli.gas_model {
        Model::Naive => vec![GasModel::Naive],
        Model::Gp => vec![GasModel::Gp],
        Model::Both => vec![GasModel::Naive, GasModel::Gp],
    };
    let opts = Options {
        cases: cli.cases,
        seed: cli.seed,
        first: cli.first,
        models,
    };
    let start = Instant::now();
    if cli.block_costs {
        return match pvm_fuzz::check_block_costs(cli.seed, cli.first, cli.cases) {
            Ok(n) => {
                println!("{n} blocks agree ({:.1?})", start.elapsed());
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = run(&opts, |s| {
        eprintln!(
            "{} cases, {} instructions, {:.0?}",
            s.cases,
            s.executed.total,
            start.elapsed()
        );
    });
    match result {
        Ok(s) => {
            print!("{}", s.text());
            println!(
                "no difference; seed {}, cases {}..{}, {:.1?}",
                cli.seed,
                cli.first,
                cli.first + cli.cases,
                start.elapsed()
            );
            ExitCode::SUCCESS
        }
        Err(report) => {
            println!("{report}");
            ExitCode::FAILURE
        }
    }
}
