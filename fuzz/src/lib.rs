//! `pvm-fuzz`: a differential fuzzer comparing our interpreter (`pvm-core`'s
//! `Vm<FlatMemory>`) with PolkaVM 0.37's interpreter on random valid GP 0.8
//! programs, under the naive gas model and the GP 0.8.0 pipeline model.
//! See `README.md`.
//!
//! [`parsers`] holds the parser fuzz targets and the stable mutational fuzzer
//! that `pvm-parse-fuzz` runs.

pub mod gen;
pub mod harness;
pub mod parsers;

use gen::{generate, v0_8_opcodes, without, Case, Rng};
use harness::{opcode_index, run_case, Counter, GasModel, Outcome, Polka};
use pvm_core::isa::{Opcode, Profile};
use pvm_core::Exit;
use std::fmt::Write as _;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub cases: u64,
    pub seed: u64,
    /// Index of the first case (a failing case `k` reruns with
    /// `first = k, cases = 1`).
    pub first: u64,
    pub models: Vec<GasModel>,
}

/// Totals over a run.
#[derive(Debug)]
pub struct Summary {
    pub cases: u64,
    pub runs: u64,
    pub executed: Counter,
    pub generated: Vec<u64>,
    pub halt: u64,
    pub panic: u64,
    pub out_of_gas: u64,
    pub page_fault: u64,
    pub host_call: u64,
    pub accepted_straddles: u64,
    pub polka_rejected: u64,
    pub top_of_memory: u64,
    pub cmov_cost_runs: u64,
}

impl Summary {
    fn new() -> Summary {
        Summary {
            cases: 0,
            runs: 0,
            executed: Counter::new(),
            generated: vec![0; Opcode::ALL.len()],
            halt: 0,
            panic: 0,
            out_of_gas: 0,
            page_fault: 0,
            host_call: 0,
            accepted_straddles: 0,
            polka_rejected: 0,
            top_of_memory: 0,
            cmov_cost_runs: 0,
        }
    }

    /// The summary as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cases {}  runs {}  instructions executed (ours) {}",
            self.cases, self.runs, self.executed.total
        );
        let _ = writeln!(
            out,
            "exits: halt {}  panic {}  out-of-gas {}  page-fault {}  host-call {}",
            self.halt, self.panic, self.out_of_gas, self.page_fault, self.host_call
        );
        let _ = writeln!(
            out,
            "accepted differences met (store straddling read-only + unmapped): {}",
            self.accepted_straddles
        );
        let _ = writeln!(
            out,
            "runs PolkaVM refused to load (program ends with fallthrough/branch, valid in GP 0.8): {}",
            self.polka_rejected
        );
        let _ = writeln!(
            out,
            "runs stopped at PolkaVM's top-of-memory deviation (access reaching 0xFFFFFFFF): {}",
            self.top_of_memory
        );
        let _ = writeln!(
            out,
            "GP runs whose block costs differed only in blocks with a cmov (run with PolkaVM's costs): {}",
            self.cmov_cost_runs
        );
        let _ = writeln!(out, "per opcode: generated / executed (GP 0.8 numbering)");
        let ops = v0_8_opcodes();
        for chunk in ops.chunks(3) {
            let mut line = String::new();
            for &op in chunk {
                let i = opcode_index(op);
                let _ = write!(
                    line,
                    "{:>3} {:<22}{:>9} /{:>11}   ",
                    op.number(Profile::V0_8).unwrap_or(0),
                    op.name(),
                    self.generated[i],
                    self.executed.by_opcode[i]
                );
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let never: Vec<&str> = ops
            .iter()
            .filter(|&&op| self.generated[opcode_index(op)] == 0)
            .map(|op| op.name())
            .collect();
        if !never.is_empty() {
            let _ = writeln!(out, "never generated: {}", never.join(", "));
        }
        out
    }
}

/// Generates case `index` of a run with seed `seed`.
pub fn case(seed: u64, index: u64) -> Case {
    generate(&mut Rng::for_case(seed, index))
}

/// Runs the cases. `Err` carries a divergence report (or a harness error).
pub fn run(opts: &Options, mut progress: impl FnMut(&Summary)) -> Result<Summary, String> {
    let polka = Polka::new()?;
    let mut s = Summary::new();
    let mut exits = Vec::new();
    for index in opts.first..opts.first + opts.cases {
        let case = case(opts.seed, index);
        for inst in &case.insts {
            s.generated[opcode_index(inst.opcode())] += 1;
        }
        for &model in &opts.models {
            exits.clear();
            let outcome =
                run_case(&polka, &case, model, &mut s.executed, &mut exits).map_err(|e| {
                    let text = pvm_core::asm::disassemble(
                        &case.blob,
                        pvm_core::asm::Container::Raw,
                        Profile::V0_8,
                    )
                    .unwrap_or_else(|e| format!("(cannot disassemble: {e})"));
                    format!(
                        "case {index} (seed {}): harness error: {e}\n{text}",
                        opts.seed
                    )
                })?;
            s.runs += 1;
            for e in &exits {
                match e {
                    Exit::Halt => s.halt += 1,
                    Exit::Panic => s.panic += 1,
                    Exit::OutOfGas => s.out_of_gas += 1,
                    Exit::PageFault(_) => s.page_fault += 1,
                    Exit::HostCall(_) => s.host_call += 1,
                }
            }
            match outcome {
                Ok(Outcome::Agree(_)) => {}
                Ok(Outcome::AgreeWithPolkaCosts(_)) => s.cmov_cost_runs += 1,
                Ok(Outcome::AcceptedStraddle) => s.accepted_straddles += 1,
                Ok(Outcome::PolkaRejectedLastFallthrough) => s.polka_rejected += 1,
                Ok(Outcome::KnownTopOfMemory) => s.top_of_memory += 1,
                Err(d) => {
                    let small = shrink(&case, |c| {
                        matches!(
                            run_case(&polka, c, model, &mut Counter::new(), &mut Vec::new()),
                            Ok(Err(_))
                        )
                    });
                    let small_report =
                        match run_case(&polka, &small, model, &mut Counter::new(), &mut Vec::new())
                        {
                            Ok(Err(d)) => d.report,
                            _ => "(shrinking lost the difference)".to_string(),
                        };
                    return Err(format!(
                        "{}\n=== the same, shrunk ===\n{small_report}\nreproduce: pvm-fuzz --seed {} --first {index} --cases 1 --gas-model {}\n",
                        d.report,
                        opts.seed,
                        model.name()
                    ));
                }
            }
        }
        s.cases += 1;
        if s.cases % 10_000 == 0 {
            progress(&s);
        }
    }
    Ok(s)
}

/// Removes instructions from `case` one at a time while `still_fails`.
pub fn shrink(case: &Case, mut still_fails: impl FnMut(&Case) -> bool) -> Case {
    let mut best = case.clone();
    loop {
        let mut progress = false;
        let mut k = 0;
        while k < best.insts.len() {
            match without(&best, k) {
                Some(c) if still_fails(&c) => {
                    best = c;
                    progress = true;
                }
                _ => k += 1,
            }
        }
        if !progress {
            return best;
        }
    }
}

/// Block costs under the GP 0.8.0 model that differ: `(block pc, ours,
/// PolkaVM's)`; with `skip_cmov`, not those of blocks with a conditional
/// move (a known difference, see README.md).
pub fn block_cost_diffs(
    polka: &Polka,
    case: &Case,
    skip_cmov: bool,
) -> Result<Vec<(u32, u64, i64)>, String> {
    let program = pvm_core::Program::from_bytes(&case.blob, Profile::V0_8)
        .map_err(|e| format!("ours: {e}"))?;
    let module = polka.module(&case.blob, GasModel::Gp)?;
    let mut out = Vec::new();
    for b in 0..program.block_count() {
        let pc = program.block_pc(b);
        let ours = program.block_cost(b);
        let theirs = module
            .calculate_gas_cost_for(polkavm::ProgramCounter(pc))
            .unwrap_or(-1);
        let has_cmov = program
            .block(b)
            .any(|(_, i, _)| harness::is_cmov(i.opcode()));
        if theirs != ours as i64 && !(skip_cmov && has_cmov) {
            out.push((pc, ours, theirs));
        }
    }
    Ok(out)
}

/// Compares every block's GP cost on `cases` cases; reports the first
/// difference, shrunk.
pub fn check_block_costs(seed: u64, first: u64, cases: u64) -> Result<u64, String> {
    let polka = Polka::new()?;
    let mut blocks = 0u64;
    for index in first..first + cases {
        let case = case(seed, index);
        let diffs = match block_cost_diffs(&polka, &case, true) {
            Ok(d) => d,
            Err(_) => continue,
        };
        if diffs.is_empty() {
            blocks += pvm_core::Program::from_bytes(&case.blob, Profile::V0_8)
                .map(|p| p.block_count() as u64)
                .unwrap_or(0);
            continue;
        }
        let small = shrink(&case, |c| {
            block_cost_diffs(&polka, c, true).is_ok_and(|d| !d.is_empty())
        });
        let text =
            pvm_core::asm::disassemble(&small.blob, pvm_core::asm::Container::Raw, Profile::V0_8)
                .unwrap_or_default();
        let d = block_cost_diffs(&polka, &small, true).unwrap_or_default();
        return Err(format!(
            "case {index}: block costs differ (pc, ours, PolkaVM): {d:?}\n{text}"
        ));
    }
    Ok(blocks)
}

/// A case from `pvm asm` text (container `raw`), for hand-written tests.
pub fn case_from_asm(
    text: &str,
    regs: [u64; 13],
    pages: Vec<(u32, pvm_core::Access, Vec<u8>)>,
    gas: u64,
) -> Result<Case, String> {
    let blob = pvm_core::asm::assemble(text, Profile::V0_8).map_err(|e| e.to_string())?;
    let program = pvm_core::Program::from_bytes(&blob, Profile::V0_8).map_err(|e| e.to_string())?;
    Ok(Case {
        pcs: program.pcs().to_vec(),
        insts: program.instructions().to_vec(),
        blob,
        entry: 0,
        regs,
        pages,
        gas_naive: gas,
        gas_gp: gas,
    })
}
