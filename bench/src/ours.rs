//! Our interpreter (pvm-core) on the benchmark programs, under the naive gas
//! model (one unit per instruction).

use crate::{Observed, Runner, Sample};
use pvm_core::{Exit, FlatMemory, Profile, Program, Vm, HALT_ADDRESS};
use pvm_std::doom::{self, DoomHost, STACK_TOP};
use std::path::Path;
use std::time::Instant;

/// Gas for one run of a C benchmark: far more than any of them needs.
const GAS: u64 = u64::MAX / 2;

/// Loads a standard program and switches it to the naive gas model.
fn load(path: &Path) -> Result<(Program, FlatMemory), String> {
    let mut loaded = pvm_std::load::load_file(path, false, Profile::V0_8, &[])
        .map_err(|e| format!("ours: {e}"))?;
    loaded
        .program
        .set_gas_model(&pvm_core::gas::Naive)
        .map_err(|e| format!("ours: {}: naive gas model: {e}", path.display()))?;
    Ok((loaded.program, loaded.initial.memory))
}

/// A C benchmark: one call of `bench(a0)` at pc 0.
#[derive(Debug)]
pub struct CBench {
    program: Program,
    /// Memory after Y; every run starts from a copy.
    memory: FlatMemory,
    a0: u64,
}

impl CBench {
    pub fn load(path: &Path, a0: u64) -> Result<Self, String> {
        let (program, memory) = load(path)?;
        Ok(CBench {
            program,
            memory,
            a0,
        })
    }
}

impl Runner for CBench {
    fn run_once(&mut self) -> Result<Sample, String> {
        let mut vm = Vm::new(&self.program, self.memory.clone(), 0, GAS);
        // The programs' calling convention: zero registers but ra, sp, a0.
        *vm.regs_mut() = [0; 13];
        vm.set_reg(0, u64::from(HALT_ADDRESS));
        vm.set_reg(1, STACK_TOP);
        vm.set_reg(7, self.a0);
        let start = Instant::now();
        let exit = vm.run();
        let time = start.elapsed();
        match exit.map_err(|e| format!("ours: {e}"))? {
            Exit::Halt => Ok(Sample {
                time,
                observed: Observed::C {
                    r7: vm.reg(7),
                    gas: GAS - vm.gas(),
                },
            }),
            other => Err(format!("ours: ended with {other:?} at pc {}", vm.pc())),
        }
    }
}

/// DOOM: `ext_initialize` then `ticks` × `ext_tick`, with pvm-std's host.
#[derive(Debug)]
pub struct DoomBench {
    program: Program,
    memory: FlatMemory,
    wad: Vec<u8>,
    ticks: u64,
}

impl DoomBench {
    pub fn load(path: &Path, wad: Vec<u8>, ticks: u64) -> Result<Self, String> {
        let (program, memory) = load(path)?;
        Ok(DoomBench {
            program,
            memory,
            wad,
            ticks,
        })
    }
}

impl Runner for DoomBench {
    fn run_once(&mut self) -> Result<Sample, String> {
        let mut host = DoomHost::new(self.wad.clone());
        // `doom::run` times the calls themselves: machine set-up is outside.
        let summary = doom::run(&self.program, self.memory.clone(), &mut host, self.ticks)
            .map_err(|e| format!("ours: {e}"))?;
        Ok(Sample {
            time: summary.init_time + summary.ticks_time,
            observed: Observed::Doom {
                gas: summary.init_gas + summary.ticks_gas,
                frames: summary.frames,
                last_frame_hash: summary.last_frame_hash,
            },
        })
    }
}
