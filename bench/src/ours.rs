//! Our interpreter (pvm-core) and our recompiler (pvm-jit) on the benchmark
//! programs, under the naive gas model (one unit per instruction).

use crate::{Observed, Runner, Sample, Setup};
use pvm_core::{Exit, FlatMemory, Profile, Program, StandardProgram, Vm, HALT_ADDRESS};
use pvm_jit::JitInstance;
use pvm_std::doom::{self, DoomHost, HostMachine, STACK_TOP};
use std::path::Path;
use std::time::{Duration, Instant};

/// Gas for one run of a C benchmark: far more than any of them needs.
const GAS: u64 = u64::MAX / 2;

/// Loads a standard program, switches it to the naive gas model and builds
/// the interpreter's form (compiled once at load, outside the timed runs).
fn load(path: &Path) -> Result<(Program, FlatMemory), String> {
    let mut loaded = pvm_std::load::load_file(path, false, Profile::V0_8, &[])
        .map_err(|e| format!("ours: {e}"))?;
    loaded
        .program
        .set_gas_model(&pvm_core::gas::Naive)
        .map_err(|e| format!("ours: {}: naive gas model: {e}", path.display()))?;
    loaded.program.prepare_interpreter();
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
        let (time, observed) = call_bench(&mut vm, self.a0).map_err(|e| format!("ours: {e}"))?;
        Ok(Sample {
            time,
            setup: None,
            observed,
        })
    }
}

/// Calls `bench(a0)` at pc 0 on either of our machines under the programs'
/// calling convention (zero registers but ra, sp, a0) and times it; the
/// call must end with `halt`.
fn call_bench(m: &mut impl HostMachine, a0: u64) -> Result<(Duration, Observed), String> {
    for r in 0..13 {
        m.set_reg(r, 0);
    }
    m.set_reg(0, u64::from(HALT_ADDRESS));
    m.set_reg(1, STACK_TOP);
    m.set_reg(7, a0);
    m.set_pc(0);
    m.set_gas(GAS);
    m.set_gas_charged(false);
    let start = Instant::now();
    let exit = m.run();
    let time = start.elapsed();
    match exit.map_err(|e| e.to_string())? {
        Exit::Halt => Ok((
            time,
            Observed::C {
                r7: m.reg(7),
                gas: GAS - m.gas(),
            },
        )),
        other => Err(format!("ended with {other:?} at pc {}", m.pc())),
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
            setup: None,
            observed: Observed::Doom {
                gas: summary.init_gas + summary.ticks_gas,
                frames: summary.frames,
                last_frame_hash: summary.last_frame_hash,
            },
        })
    }
}

/// A standard program for our recompiler. Every run starts from the parsed
/// code blob (as PolkaVM's runs start from its parsed `ProgramBlob`):
/// decode and validate it with the naive gas model and generate its native
/// code, in one pass (`JitInstance::from_blob_on`: the compile time);
/// reserve the instance's guest window and lay out Y's memory in it
/// (the instantiate time).
#[derive(Debug)]
struct JitProgram {
    std_program: StandardProgram,
    /// The code blob, parsed once (as PolkaVM's `ProgramBlob` is).
    blob: pvm_core::Blob,
    parallel: pvm_jit::Parallelism,
}

impl JitProgram {
    fn load(path: &Path, parallel: pvm_jit::Parallelism) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("ours: cannot read {}: {e}", path.display()))?;
        let std_program =
            StandardProgram::parse(&bytes).map_err(|e| format!("ours: {}: {e}", path.display()))?;
        if !pvm_jit::is_available() {
            return Err(
                "ours: no recompiler here (it needs Linux x86-64, the `recompiler` feature \
                 and an x86-64-v3 CPU)"
                    .into(),
            );
        }
        let blob = pvm_core::Blob::parse(&std_program.code)
            .map_err(|e| format!("ours: {}: code blob: {e}", path.display()))?;
        let jit = JitProgram {
            std_program,
            blob,
            parallel,
        };
        // Fail at load on a bad program. No instance yet: the first run's
        // is the program's first.
        jit.program()?;
        Ok(jit)
    }

    /// The code blob decoded and validated, with the naive gas model.
    /// (In pieces on more threads as `--jit-threads` allows.)
    fn program(&self) -> Result<Program, String> {
        let program = pvm_std::jit::program_on(
            &self.std_program.code,
            Profile::V0_8,
            &pvm_core::gas::Naive,
            self.parallel,
        )
        .map_err(|e| format!("ours: {e}"))?;
        Ok(program)
    }

    /// A fresh instance ready to call, and what setting it up took.
    fn instance(&self) -> Result<(JitInstance, Setup), String> {
        // From the parsed code blob to an instance: decoded, validated and
        // compiled (one pass on one thread; in pieces with
        // `--jit-threads`), then its guest window reserved (which counts
        // as instantiating, as PolkaVM's `Module::instantiate` does). As
        // PolkaVM's compile starts from its parsed `ProgramBlob`, ours
        // starts from our parsed `Blob`: the copy made here for this run
        // (the instance owns its blob) is not timed.
        let blob = self.blob.clone();
        let start = Instant::now();
        let jit = JitInstance::from_blob_on(
            blob,
            Profile::V0_8,
            &pvm_core::gas::Naive,
            pvm_jit::MemoryChecks::Hardware,
            self.parallel,
        )
        .map_err(|e| format!("ours: JIT: {e}"))?;
        let made = start.elapsed();
        let compile = jit.compile_time();
        let reserve = made.saturating_sub(compile);

        // Y's memory, laid out straight in the instance's window.
        let start = Instant::now();
        let jit = pvm_std::jit::with_standard(jit, &self.std_program, &[])
            .map_err(|e| format!("ours: JIT: Y: {e}"))?;
        let instantiate = reserve + start.elapsed();

        Ok((
            jit,
            Setup {
                compile,
                instantiate,
            },
        ))
    }
}

/// A C benchmark on our recompiler: one call of `bench(a0)` at pc 0.
#[derive(Debug)]
pub struct JitCBench {
    program: JitProgram,
    a0: u64,
}

impl JitCBench {
    pub fn load(path: &Path, a0: u64, parallel: pvm_jit::Parallelism) -> Result<Self, String> {
        Ok(JitCBench {
            program: JitProgram::load(path, parallel)?,
            a0,
        })
    }
}

impl Runner for JitCBench {
    fn run_once(&mut self) -> Result<Sample, String> {
        let (mut jit, setup) = self.program.instance()?;
        let (time, observed) =
            call_bench(&mut jit, self.a0).map_err(|e| format!("ours: JIT: {e}"))?;
        Ok(Sample {
            time,
            setup: Some(setup),
            observed,
        })
    }
}

/// DOOM on our recompiler: `ext_initialize` then `ticks` × `ext_tick`.
#[derive(Debug)]
pub struct JitDoomBench {
    program: JitProgram,
    wad: Vec<u8>,
    ticks: u64,
}

impl JitDoomBench {
    pub fn load(
        path: &Path,
        wad: Vec<u8>,
        ticks: u64,
        parallel: pvm_jit::Parallelism,
    ) -> Result<Self, String> {
        Ok(JitDoomBench {
            program: JitProgram::load(path, parallel)?,
            wad,
            ticks,
        })
    }
}

impl Runner for JitDoomBench {
    fn run_once(&mut self) -> Result<Sample, String> {
        let (mut jit, setup) = self.program.instance()?;
        let mut host = DoomHost::new(self.wad.clone());
        // `run_on` times the calls themselves.
        let summary =
            doom::run_on(&mut jit, &mut host, self.ticks).map_err(|e| format!("ours: JIT: {e}"))?;
        Ok(Sample {
            time: summary.init_time + summary.ticks_time,
            setup: Some(setup),
            observed: Observed::Doom {
                gas: summary.init_gas + summary.ticks_gas,
                frames: summary.frames,
                last_frame_hash: summary.last_frame_hash,
            },
        })
    }
}
