//! PolkaVM (crate `polkavm` 0.37) on the benchmark programs: its interpreter
//! or its recompiler (the compiler backend).
//!
//! A GP standard program is turned into a `ProgramBlob` of instruction set
//! `JamV1` (GP 0.8.0 numbering): its code blob `c` (jump table, code,
//! bitmask) is exactly PolkaVM's "code and jump table" section for that
//! instruction set. PolkaVM's memory map then matches the GP's Y:
//! read-only data at 0x10000, read-write data at 2·Z_Z + Q(|o|), the stack
//! ending at 2^32 − 2·Z_Z − Z_I, provided the auxiliary data region (where
//! Y puts the arguments) is Z_I = 16 MiB long; we make it inaccessible, as
//! Y does for empty arguments. Gas metering is synchronous under PolkaVM's
//! default naive cost model: one unit per instruction. The memory map is
//! static (no dynamic paging), which both backends support and which the
//! recompiler needs for `set_accessible_aux_size`.
//!
//! The recompiler runs guest code in a sandbox: by default the Linux one, a
//! worker process per instance (spawned from a zygote into new namespaces
//! under seccomp), or the generic in-process one (cargo feature
//! `generic-sandbox`, experimental). A dropped instance's Linux worker is
//! kept for reuse (up to the engine's worker count, 2) in a cache of the
//! CPU core it runs on; a later instance reuses it if PolkaVM picks that
//! core again for its worker, which depends on the core the calling thread
//! is on at that moment; otherwise it spawns a new worker. Each runner owns
//! its engine, so a program's first instance always starts a new worker.

use crate::{Observed, Runner, Sample, Setup};
use polkavm::program::InstructionSetKind;
use polkavm::{
    ArcBytes, BackendKind, Config, Engine, GasMeteringKind, InterruptKind, Module, ModuleConfig,
    ProgramBlob, ProgramCounter, ProgramParts, RawInstance, Reg, SandboxKind,
};
use pvm_core::standard::{MAX_ARGS, STACK_TOP};
use pvm_core::{StandardProgram, HALT_ADDRESS, PAGE_SIZE};
use pvm_std::doom::{fnv1a64, ENTRY_INITIALIZE, ENTRY_TICK};
use std::path::Path;
use std::time::{Duration, Instant};

/// Gas for one call: far more than any of them needs.
const GAS: i64 = i64::MAX / 2;

/// Which PolkaVM backend, and for the recompiler which sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Interpreter,
    /// The recompiler; `None` is PolkaVM's default sandbox (Linux's).
    Compiler(Option<SandboxKind>),
}

/// PolkaVM's engine, forced to the chosen backend.
pub struct Polka {
    engine: Engine,
    backend: Backend,
    /// How long `Engine::new` took.
    pub engine_time: Duration,
}

impl std::fmt::Debug for Polka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Polka")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Polka {
    pub fn new(backend: Backend) -> Result<Self, String> {
        let mut config = Config::new();
        // Compile every module anew (no module cache), so compile times are
        // real; the cache needs a cargo feature we do not enable anyway.
        config.set_cache_enabled(false);
        let kind = match backend {
            Backend::Interpreter => BackendKind::Interpreter,
            Backend::Compiler(sandbox) => {
                config.set_sandbox(sandbox);
                // The generic sandbox is experimental: PolkaVM refuses it
                // without this.
                if sandbox == Some(SandboxKind::Generic) {
                    config.set_allow_experimental(true);
                }
                BackendKind::Compiler
            }
        };
        config.set_backend(Some(kind));
        let start = Instant::now();
        let engine =
            Engine::new(&config).map_err(|e| format!("PolkaVM: cannot create the engine: {e}"))?;
        let engine_time = start.elapsed();
        if engine.backend() != kind {
            return Err(format!(
                "PolkaVM: asked for the {kind} backend, got the {} backend",
                engine.backend()
            ));
        }
        Ok(Polka {
            engine,
            backend,
            engine_time,
        })
    }

    /// Reads a GP standard program as a PolkaVM blob and compiles it once,
    /// checking its memory map against Y's.
    pub fn load(&self, path: &Path) -> Result<(ProgramBlob, Module), String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("PolkaVM: cannot read {}: {e}", path.display()))?;
        let std_program = StandardProgram::parse(&bytes)
            .map_err(|e| format!("PolkaVM: {}: {e}", path.display()))?;
        let blob =
            to_blob(&std_program).map_err(|e| format!("PolkaVM: {}: {e}", path.display()))?;
        let module = self
            .module(&blob)
            .map_err(|e| format!("{e} ({})", path.display()))?;
        let map = module.memory_map();
        if map.stack_address_high() != STACK_TOP {
            return Err(format!(
                "PolkaVM: {}: stack ends at {:#x}, not at the GP's {STACK_TOP:#x}",
                path.display(),
                map.stack_address_high()
            ));
        }
        if map.rw_data_address() != std_program.heap_start() {
            return Err(format!(
                "PolkaVM: {}: read-write data at {:#x}, not at the GP's {:#x}",
                path.display(),
                map.rw_data_address(),
                std_program.heap_start()
            ));
        }
        Ok((blob, module))
    }

    /// Compiles a blob into a module (for the recompiler: to native code,
    /// eagerly; the interpreter compiles lazily while it runs).
    pub fn module(&self, blob: &ProgramBlob) -> Result<Module, String> {
        let mut config = ModuleConfig::new();
        config.set_page_size(PAGE_SIZE);
        config.set_aux_data_size(MAX_ARGS);
        config.set_gas_metering(Some(GasMeteringKind::Sync));
        config.set_dynamic_paging(false);
        config.set_strict(false);
        config.set_cache_by_hash(false);
        Module::from_blob(&self.engine, &config, blob.clone()).map_err(|e| format!("PolkaVM: {e}"))
    }
}

/// A program on one engine: compiled once at load for the interpreter (as
/// issue 3's comparison did), anew for every run for the recompiler (so
/// its compile time is measured every run).
struct Loaded {
    polka: Polka,
    blob: ProgramBlob,
    module: Option<Module>,
}

impl Loaded {
    fn new(polka: Polka, path: &Path) -> Result<Self, String> {
        let (blob, module) = polka.load(path)?;
        let module = match polka.backend {
            Backend::Interpreter => Some(module),
            // Compiled anew every run; this first compile (not timed) only
            // checked the memory map.
            Backend::Compiler(_) => None,
        };
        Ok(Loaded {
            polka,
            blob,
            module,
        })
    }

    /// A fresh instance, with the compile and instantiate times when the
    /// module was compiled for it.
    fn instance(&self) -> Result<(RawInstance, Option<Setup>), String> {
        if let Some(module) = &self.module {
            return Ok((instantiate(module)?, None));
        }
        let start = Instant::now();
        let module = self.polka.module(&self.blob)?;
        let compile = start.elapsed();
        let start = Instant::now();
        let instance = instantiate(&module)?;
        let instantiate = start.elapsed();
        Ok((
            instance,
            Some(Setup {
                compile,
                instantiate,
            }),
        ))
    }
}

/// The standard program as a PolkaVM program blob.
fn to_blob(p: &StandardProgram) -> Result<ProgramBlob, String> {
    let size = |what: &str, n: u64| {
        u32::try_from(n).map_err(|_| format!("{what} of {n} bytes does not fit PolkaVM"))
    };
    let page = u64::from(PAGE_SIZE);
    let mut parts = ProgramParts::empty(InstructionSetKind::JamV1);
    parts.ro_data_size = size("read-only data", p.ro_data.len() as u64)?;
    // Y's writable region: P(|w|) + z pages.
    parts.rw_data_size = size(
        "read-write data",
        (p.rw_data.len() as u64).div_ceil(page) * page + u64::from(p.heap_pages) * page,
    )?;
    parts.stack_size = p.stack_size;
    parts.ro_data = ArcBytes::from(&p.ro_data[..]);
    parts.rw_data = ArcBytes::from(&p.rw_data[..]);
    parts.code_and_jump_table = ArcBytes::from(&p.code[..]);
    ProgramBlob::from_parts(parts).map_err(|e| e.to_string())
}

fn instantiate(module: &Module) -> Result<RawInstance, String> {
    let mut instance = module
        .instantiate()
        .map_err(|e| format!("PolkaVM: cannot instantiate: {e}"))?;
    // Y maps no argument pages for empty arguments.
    instance
        .set_accessible_aux_size(0)
        .map_err(|e| format!("PolkaVM: {e}"))?;
    Ok(instance)
}

/// Serves a call's host calls.
trait PolkaHost {
    fn ecalli(&mut self, id: u32, instance: &mut RawInstance) -> Result<(), String>;
}

/// No host calls expected.
struct NoHost;

impl PolkaHost for NoHost {
    fn ecalli(&mut self, id: u32, _: &mut RawInstance) -> Result<(), String> {
        Err(format!("unexpected host call {id}"))
    }
}

/// Calls the entry at `pc` with argument `a0` under the programs' calling
/// convention (zero registers but ra, sp, a0; memory kept) until it
/// returns to the halt address. Returns the gas used.
fn call(
    instance: &mut RawInstance,
    host: &mut dyn PolkaHost,
    pc: u32,
    a0: u64,
) -> Result<u64, String> {
    instance.clear_regs();
    instance.set_reg(Reg::RA, u64::from(HALT_ADDRESS));
    instance.set_reg(Reg::SP, u64::from(STACK_TOP));
    instance.set_reg(Reg::A0, a0);
    instance.set_gas(GAS);
    instance.set_next_program_counter(ProgramCounter(pc));
    loop {
        match instance.run().map_err(|e| format!("PolkaVM: {e}"))? {
            InterruptKind::Finished => break,
            InterruptKind::Ecalli(id) => host
                .ecalli(id, instance)
                .map_err(|e| format!("PolkaVM: {e}"))?,
            other => {
                return Err(format!(
                    "PolkaVM: ended with {other:?} at pc {:?}",
                    instance.program_counter()
                ))
            }
        }
    }
    u64::try_from(GAS - instance.gas()).map_err(|_| "PolkaVM: negative gas used".to_string())
}

/// A C benchmark: one call of `bench(a0)` at pc 0.
pub struct CBench {
    loaded: Loaded,
    a0: u64,
}

impl std::fmt::Debug for CBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CBench").field("a0", &self.a0).finish()
    }
}

impl CBench {
    pub fn load(polka: Polka, path: &Path, a0: u64) -> Result<Self, String> {
        Ok(CBench {
            loaded: Loaded::new(polka, path)?,
            a0,
        })
    }
}

impl Runner for CBench {
    fn run_once(&mut self) -> Result<Sample, String> {
        let (mut instance, setup) = self.loaded.instance()?;
        let start = Instant::now();
        let gas = call(&mut instance, &mut NoHost, 0, self.a0);
        let time = start.elapsed();
        Ok(Sample {
            time,
            setup,
            observed: Observed::C {
                r7: instance.reg(Reg::A0),
                gas: gas?,
            },
        })
    }
}

/// DOOM's host calls, doing the same work as `pvm_std::doom::DoomHost`
/// (copy, hash and keep each frame; serve the WAD; collect stdout).
struct DoomHost<'w> {
    wad: &'w [u8],
    frames: u64,
    last_frame_hash: Option<u64>,
    last_frame: Option<Vec<u8>>,
    stdout: Vec<u8>,
}

impl PolkaHost for DoomHost<'_> {
    fn ecalli(&mut self, id: u32, instance: &mut RawInstance) -> Result<(), String> {
        let (r7, r8, r9) = (
            instance.reg(Reg::A0),
            instance.reg(Reg::A1),
            instance.reg(Reg::A2),
        );
        match id {
            // output_audio: ignored.
            0 => Ok(()),
            // output_video(ptr, width, height)
            1 => {
                let len = r8
                    .checked_mul(r9)
                    .and_then(|n| n.checked_mul(4))
                    .filter(|&n| n <= 64 << 20)
                    .ok_or_else(|| format!("output_video: bad frame size {r8}x{r9}"))?;
                let mut frame = vec![0u8; len as usize];
                instance
                    .read_memory_into(r7 as u32, &mut frame[..])
                    .map_err(|e| format!("output_video: frame at {:#x}: {e}", r7 as u32))?;
                self.frames += 1;
                self.last_frame_hash = Some(fnv1a64(&frame));
                self.last_frame = Some(frame);
                Ok(())
            }
            // rom_read(ptr, offset, len)
            2 => {
                let bytes = usize::try_from(r8)
                    .ok()
                    .zip(usize::try_from(r9).ok())
                    .and_then(|(o, l)| self.wad.get(o..o.checked_add(l)?))
                    .ok_or_else(|| {
                        format!("rom_read: {r9} bytes at offset {r8} are past the WAD's end")
                    })?;
                instance
                    .write_memory(r7 as u32, bytes)
                    .map_err(|e| format!("rom_read: destination {:#x}: {e}", r7 as u32))
            }
            // rom_size()
            3 => {
                instance.set_reg(Reg::A0, self.wad.len() as u64);
                Ok(())
            }
            // stdout(ptr, len)
            4 => {
                if let Ok(text) = instance.read_memory(r7 as u32, r8.min(1 << 20) as u32) {
                    self.stdout.extend_from_slice(&text);
                }
                instance.set_reg(Reg::A0, r8);
                Ok(())
            }
            _ => Err(format!("unknown host call {id}")),
        }
    }
}

/// DOOM: `ext_initialize` then `ticks` × `ext_tick`.
pub struct DoomBench {
    loaded: Loaded,
    wad: Vec<u8>,
    ticks: u64,
}

impl std::fmt::Debug for DoomBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoomBench")
            .field("ticks", &self.ticks)
            .finish_non_exhaustive()
    }
}

impl DoomBench {
    pub fn load(polka: Polka, path: &Path, wad: Vec<u8>, ticks: u64) -> Result<Self, String> {
        Ok(DoomBench {
            loaded: Loaded::new(polka, path)?,
            wad,
            ticks,
        })
    }
}

impl Runner for DoomBench {
    fn run_once(&mut self) -> Result<Sample, String> {
        let (mut instance, setup) = self.loaded.instance()?;
        let mut host = DoomHost {
            wad: &self.wad,
            frames: 0,
            last_frame_hash: None,
            last_frame: None,
            stdout: Vec::new(),
        };
        let start = Instant::now();
        let mut gas = call(&mut instance, &mut host, ENTRY_INITIALIZE, 0)
            .map_err(|e| format!("ext_initialize: {e}"))?;
        for n in 0..self.ticks {
            gas += call(&mut instance, &mut host, ENTRY_TICK, 0)
                .map_err(|e| format!("ext_tick #{}: {e}", n + 1))?;
        }
        let time = start.elapsed();
        // Like pvm-std's host, this one kept the last frame and the text;
        // they are freed here, after the clock stopped.
        drop((host.last_frame.take(), std::mem::take(&mut host.stdout)));
        Ok(Sample {
            time,
            setup,
            observed: Observed::Doom {
                gas,
                frames: host.frames,
                last_frame_hash: host.last_frame_hash,
            },
        })
    }
}
