//! Gas cost models. Gas is charged once per basic block, when execution
//! enters it (GP 0.8.0 §A.6); a model only says what each block costs.
//!
//! - [`Naive`]: one unit per instruction of the block, terminator included
//!   (the GP 0.7.2 rule, charged per block: this is what reproduces the
//!   gp-0.7 vectors, see `vectors/README.md`).
//! - [`Table`]: costs supplied by the caller, by block start pc (the gp-0.8
//!   vectors' `block-gas-costs`).
//! - [`Pipeline`]: the GP 0.8.0 pipeline model (§A.9 "Gas Cost Model" and
//!   §A.10 "Gas Cost Tables"), which the GP 0.8.0 profile charges.

pub mod pipeline;

pub use pipeline::Pipeline;

use crate::error::Error;
use crate::program::Program;
use alloc::vec::Vec;

/// Computes the cost of a program's gas blocks.
pub trait GasModel {
    /// The cost of gas block `block` of `program` (see [`Program::block`]).
    fn block_cost(&self, program: &Program, block: usize) -> Result<u64, Error>;

    /// Whether `block_cost` reads the program's decoded instructions. A
    /// model that does not lets a decoding pass that hands each
    /// instruction to a visitor skip storing them
    /// ([`Program::with_gas_model_visiting`]).
    fn needs_instructions(&self) -> bool {
        true
    }

    /// Every block's cost, appended to `out` in block order: by default
    /// [`block_cost`](Self::block_cost) for each (a model may answer them
    /// all at once faster).
    fn block_costs(&self, program: &Program, out: &mut Vec<u64>) -> Result<(), Error> {
        out.reserve(program.block_count());
        for b in 0..program.block_count() {
            out.push(self.block_cost(program, b)?);
        }
        Ok(())
    }
}

/// One gas per instruction, charged per block at block entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Naive;

impl GasModel for Naive {
    fn block_cost(&self, program: &Program, block: usize) -> Result<u64, Error> {
        Ok(program.block_len(block) as u64)
    }
    fn needs_instructions(&self) -> bool {
        false
    }
    fn block_costs(&self, program: &Program, out: &mut Vec<u64>) -> Result<(), Error> {
        // The differences of consecutive block starts, in one pass.
        let starts = program.block_starts();
        out.extend(starts.windows(2).map(|w| u64::from(w[1] - w[0])));
        Ok(())
    }
}

/// Block costs given as a table of `(block start pc, cost)`.
#[derive(Clone, Debug, Default)]
pub struct Table {
    costs: Vec<(u32, u64)>,
}

impl Table {
    /// A table from `(pc, cost)` pairs, in any order.
    pub fn new(mut costs: Vec<(u32, u64)>) -> Table {
        costs.sort_unstable();
        Table { costs }
    }

    /// The cost recorded for the block starting at `pc`.
    pub fn get(&self, pc: u32) -> Option<u64> {
        let i = self.costs.binary_search_by_key(&pc, |e| e.0).ok()?;
        Some(self.costs[i].1)
    }
}

impl GasModel for Table {
    fn block_cost(&self, program: &Program, block: usize) -> Result<u64, Error> {
        let pc = program.block_pc(block);
        self.get(pc).ok_or(Error::MissingBlockCost { pc })
    }
    fn needs_instructions(&self) -> bool {
        false
    }
}
