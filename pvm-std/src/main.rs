//! The `pvm` command: run programs, run conformance vectors, assemble and
//! disassemble.

use clap::{Parser, Subcommand, ValueEnum};
use pvm_core::asm::{assemble, detect, disassemble, Container};
use pvm_core::gas::{Naive, Pipeline, Table};
use pvm_core::{Exit, Profile, Vm};
use pvm_std::load::load_file;
use pvm_std::vectors::{self, GasChoice};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pvm",
    version,
    about = "The Polkadot Virtual Machine (JAM Gray Paper 0.8.0 and 0.7.2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProfileArg {
    #[value(name = "0.8")]
    V08,
    #[value(name = "0.7")]
    V07,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::V08 => Profile::V0_8,
            ProfileArg::V07 => Profile::V0_7,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GasModelArg {
    /// One gas per instruction, charged per basic block (the GP 0.7.2 rule).
    Naive,
    /// Per-block costs from a table (`--gas-table` for `run`; the vectors'
    /// `block-gas-costs` for `vectors`).
    Table,
    /// The GP 0.8.0 pipeline model (GP 0.8.0 programs only).
    Gp,
}

impl GasModelArg {
    /// The model `pvm run` uses when none is given: the one the profile's
    /// GP version charges.
    fn default_for(profile: Profile) -> GasModelArg {
        match profile {
            Profile::V0_8 => GasModelArg::Gp,
            Profile::V0_7 => GasModelArg::Naive,
        }
    }
}

impl From<GasModelArg> for GasChoice {
    fn from(g: GasModelArg) -> GasChoice {
        match g {
            GasModelArg::Naive => GasChoice::Naive,
            GasModelArg::Table => GasChoice::Table,
            GasModelArg::Gp => GasChoice::Gp,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// The recompiler where this build and CPU have it, else the
    /// interpreter.
    Auto,
    /// The interpreter.
    Interp,
    /// The x86-64 recompiler (Linux x86-64 only).
    Jit,
    /// The recompiler checking every memory access explicitly instead of
    /// relying on page protection and a signal handler (slower).
    JitChecked,
    /// The recompiler with page protection, never using the GS segment
    /// base (`jit` uses it where the kernel allows).
    JitNoseg,
}

impl BackendArg {
    /// `Auto` made concrete: the recompiler if it can run here.
    fn resolve(self) -> BackendArg {
        match self {
            BackendArg::Auto if pvm_jit::is_available() => BackendArg::Jit,
            BackendArg::Auto => BackendArg::Interp,
            b => b,
        }
    }
}

impl From<BackendArg> for vectors::Backend {
    fn from(b: BackendArg) -> vectors::Backend {
        match b.resolve() {
            BackendArg::Jit => vectors::Backend::Jit,
            BackendArg::JitChecked => vectors::Backend::JitChecked,
            BackendArg::JitNoseg => vectors::Backend::JitNoSegment,
            _ => vectors::Backend::Interp,
        }
    }
}

/// Options of `pvm run`.
#[derive(clap::Args)]
struct RunArgs {
    /// A standard program, a JAM code blob, or (with --raw) a program blob.
    blob: PathBuf,
    /// Treat the file as a bare program blob (empty memory, zero registers).
    #[arg(long)]
    raw: bool,
    /// Initial program counter.
    #[arg(long, default_value_t = 0)]
    pc: u32,
    /// Gas budget.
    #[arg(long, default_value_t = i64::MAX as u64)]
    gas: u64,
    /// Register overrides applied after initialisation, e.g. `--reg r7=20`.
    #[arg(long = "reg", value_parser = parse_reg)]
    regs: Vec<(usize, u64)>,
    #[arg(long, value_enum, default_value = "0.8")]
    profile: ProfileArg,
    /// Gas model (default: gp under --profile 0.8, naive under --profile 0.7).
    #[arg(long = "gas-model", value_enum)]
    gas_model: Option<GasModelArg>,
    /// JSON file `[{"pc": N, "cost": N}, ...]` for `--gas-model table`.
    #[arg(long = "gas-table")]
    gas_table: Option<PathBuf>,
    /// Backend (auto: the recompiler where available, else the interpreter).
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Threads the recompiler may generate code on: with 2 or more, a
    /// program of at least 16,384 instructions is compiled in pieces that
    /// the threads take in turn.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jit_threads: u16,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Print every instruction executed (pc, gas left, the instruction)
    /// to stderr (interpreter only).
    #[arg(long)]
    trace: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program until it halts, panics, runs out of gas, faults or makes
    /// a host call (no host is attached).
    Run(RunArgs),
    /// Run every JSON conformance vector in a folder.
    Vectors {
        dir: PathBuf,
        /// Profile (default: implied by each file's format).
        #[arg(long, value_enum)]
        profile: Option<ProfileArg>,
        /// Gas model (default: gp under 0.8, which also checks each file's block-gas-costs; naive under 0.7).
        #[arg(long = "gas-model", value_enum)]
        gas_model: Option<GasModelArg>,
        /// Backend (auto: the recompiler where available, else the interpreter).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
    },
    /// Run DOOM (../shared/programs/doom.spi): ext_initialize, then ticks;
    /// writes chosen frames as PNG and reports frames per second.
    Doom {
        /// The DOOM program.
        #[arg(long, default_value = "../shared/programs/doom.spi")]
        program: PathBuf,
        /// The WAD (Debian package freedoom).
        #[arg(long, default_value = "/usr/share/games/doom/freedoom1.wad")]
        wad: PathBuf,
        /// Number of ext_tick calls.
        #[arg(long, default_value_t = 600)]
        ticks: u64,
        /// Frame numbers (1-based) to write as PNG, e.g. `--save 100,642`.
        #[arg(long, value_delimiter = ',')]
        save: Vec<u64>,
        /// Folder for the PNG files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Gas model: naive (default: the reference figures' model) or gp.
        #[arg(long = "gas-model", value_enum, default_value = "naive")]
        gas_model: GasModelArg,
        /// Backend (auto: the recompiler where available, else the interpreter).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
    },
    /// Print a program as assembly text (`pvm asm` turns it back into the
    /// same bytes).
    Disasm {
        blob: PathBuf,
        /// Treat the file as a bare program blob (default: detect standard
        /// program, JAM code blob, or bare blob).
        #[arg(long)]
        raw: bool,
        #[arg(long, value_enum, default_value = "0.8")]
        profile: ProfileArg,
    },
    /// Assemble a text file into a program (standard program, JAM blob or
    /// bare blob, as its directives say).
    Asm {
        file: PathBuf,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Profile for opcode numbers (a `.profile` directive overrides it).
        #[arg(long, value_enum, default_value = "0.8")]
        profile: ProfileArg,
    },
}

fn parse_reg(s: &str) -> Result<(usize, u64), String> {
    let (r, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected rN=VALUE"))?;
    let idx: usize = r
        .strip_prefix('r')
        .and_then(|n| n.parse().ok())
        .filter(|&n| n < 13)
        .ok_or_else(|| format!("`{r}`: expected a register r0..r12"))?;
    let value = parse_u64(v)
        .ok_or_else(|| format!("`{v}`: expected a number (decimal, 0x hex, or negative)"))?;
    Ok((idx, value))
}

fn parse_u64(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(n) = s.strip_prefix('-') {
        n.parse::<u64>()
            .ok()
            .and_then(|n| 0u64.checked_sub(n).or(if n == 0 { Some(0) } else { None }))
            .or_else(|| n.parse::<i64>().ok().map(|n| (-n) as u64))
    } else {
        s.parse().ok()
    }
}

fn status_str(exit: Exit) -> String {
    match exit {
        Exit::Halt => "halt".into(),
        Exit::Panic => "panic".into(),
        Exit::OutOfGas => "out-of-gas".into(),
        Exit::PageFault(a) => format!("page-fault {a:#x}"),
        Exit::HostCall(id) => format!("ecalli {id}"),
    }
}

fn load_table(path: &PathBuf) -> Result<Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{}: expected an array of {{pc, cost}}", path.display()))?;
    let mut costs = Vec::new();
    for (i, e) in arr.iter().enumerate() {
        let pc = e
            .get("pc")
            .and_then(|x| x.as_u64())
            .and_then(|x| u32::try_from(x).ok());
        let cost = e.get("cost").and_then(|x| x.as_u64());
        match (pc, cost) {
            (Some(pc), Some(cost)) => costs.push((pc, cost)),
            _ => {
                return Err(format!(
                    "{}: entry {i}: expected {{\"pc\": u32, \"cost\": u64}}",
                    path.display()
                ))
            }
        }
    }
    Ok(Table::new(costs))
}

/// `--trace`: one line per instruction executed.
struct TracePrinter<W: std::io::Write>(W);

impl<W: std::io::Write> pvm_core::Tracer for TracePrinter<W> {
    fn instruction(&mut self, pc: u32, inst: &pvm_core::Instruction, _regs: &[u64; 13], gas: u64) {
        // A closed stderr is not worth stopping the guest for.
        let _ = writeln!(
            self.0,
            "{pc:>8}  gas {gas:<20} {}",
            pvm_core::asm::format_instruction(inst)
        );
    }
}

fn cmd_run(args: RunArgs) -> Result<(), String> {
    let RunArgs {
        blob,
        raw,
        pc,
        gas,
        regs,
        profile,
        gas_model,
        gas_table,
        backend,
        jit_threads,
        json,
        trace,
    } = args;
    let profile = Profile::from(profile);
    // Tracing is the interpreter's; `auto` then means the interpreter.
    let backend = match backend {
        BackendArg::Auto if trace => BackendArg::Interp,
        BackendArg::Jit | BackendArg::JitChecked | BackendArg::JitNoseg if trace => {
            return Err("--trace needs --backend interp".into())
        }
        b => b.resolve(),
    };
    let mut loaded = load_file(&blob, raw, profile, &[]).map_err(|e| e.to_string())?;
    match gas_model.unwrap_or(GasModelArg::default_for(profile)) {
        GasModelArg::Naive => loaded
            .program
            .set_gas_model(&Naive)
            .map_err(|e| e.to_string())?,
        GasModelArg::Table => {
            let path = gas_table.ok_or("--gas-model table needs --gas-table FILE")?;
            let table = load_table(&path)?;
            loaded
                .program
                .set_gas_model(&table)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        GasModelArg::Gp => loaded
            .program
            .set_gas_model(&Pipeline)
            .map_err(|e| format!("--gas-model gp: {e}"))?,
    }
    let initial = loaded.initial;
    let heap = (profile == Profile::V0_7 && !raw).then_some(initial.heap);
    let (exit, elapsed, pc_end, gas_end, regs_end) = match backend {
        // `resolve` above made `Auto` concrete.
        BackendArg::Interp | BackendArg::Auto => {
            let mut vm = Vm::new(&loaded.program, initial.memory, pc, gas);
            *vm.regs_mut() = initial.regs;
            vm.set_heap(heap);
            for (r, v) in regs {
                vm.set_reg(r, v);
            }
            let start = std::time::Instant::now();
            let exit = if trace {
                let mut printer = TracePrinter(std::io::BufWriter::new(std::io::stderr().lock()));
                vm.run_traced(&mut printer)
            } else {
                vm.run()
            }
            .map_err(|e| e.to_string())?;
            (exit, start.elapsed(), vm.pc(), vm.gas(), *vm.regs())
        }
        BackendArg::Jit | BackendArg::JitChecked | BackendArg::JitNoseg => {
            let checks = vectors::Backend::from(backend)
                .memory_checks()
                .unwrap_or(pvm_jit::MemoryChecks::Hardware);
            let parallel = if jit_threads > 1 {
                pvm_jit::Parallelism {
                    threads: usize::from(jit_threads),
                    ..pvm_jit::Parallelism::TWO_THREADS
                }
            } else {
                pvm_jit::Parallelism::SERIAL
            };
            let mut vm =
                pvm_std::jit::instance_on(&loaded.program, &initial.memory, checks, parallel)
                    .map_err(|e| format!("jit: {e}"))?;
            eprintln!(
                "jit: compiled {} instructions to {} bytes in {:.3} ms{} ({})",
                loaded.program.instructions().len(),
                vm.code_size(),
                vm.compile_time().as_secs_f64() * 1e3,
                match vm.code_parts() {
                    1 => String::new(),
                    k => format!(", in {k} pieces on up to {jit_threads} threads"),
                },
                match checks {
                    pvm_jit::MemoryChecks::Explicit => "explicit access checks",
                    _ if vm.segment_addressing() => "page protection, GS-based addressing",
                    _ => "page protection, base-register addressing",
                }
            );
            *vm.regs_mut() = initial.regs;
            vm.set_heap(heap);
            vm.set_pc(pc);
            vm.set_gas(gas);
            for (r, v) in regs {
                vm.set_reg(r, v);
            }
            let start = std::time::Instant::now();
            let exit = vm.run().map_err(|e| e.to_string())?;
            (exit, start.elapsed(), vm.pc(), vm.gas(), *vm.regs())
        }
    };
    let gas_used = gas - gas_end;
    println!("status:   {}", status_str(exit));
    println!("pc:       {pc_end}");
    println!("gas used: {gas_used}");
    println!("time:     {:.3} ms", elapsed.as_secs_f64() * 1e3);
    for (i, r) in regs_end.iter().enumerate() {
        println!("r{i:<2} = {r:#018x} ({r})");
    }
    if json {
        let mut obj = serde_json::json!({
            "status": match exit {
                Exit::Halt => "halt",
                Exit::Panic => "panic",
                Exit::OutOfGas => "out-of-gas",
                Exit::PageFault(_) => "page-fault",
                Exit::HostCall(_) => "ecalli",
            },
            "pc": pc_end,
            "gas_used": gas_used,
            "gas": gas_end,
            "regs": regs_end.to_vec(),
        });
        match exit {
            Exit::PageFault(a) => obj["page_fault_address"] = a.into(),
            Exit::HostCall(id) => obj["hostcall"] = id.into(),
            _ => {}
        }
        println!("{obj}");
    }
    Ok(())
}

fn cmd_vectors(
    dir: PathBuf,
    profile: Option<Profile>,
    gas: Option<GasChoice>,
    backend: vectors::Backend,
) -> Result<bool, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .json files in {}", dir.display()));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for f in &files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match vectors::run_file_on(f, profile, gas, backend) {
            Ok(()) => passed += 1,
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn cmd_doom(
    program: PathBuf,
    wad: PathBuf,
    ticks: u64,
    save: Vec<u64>,
    out: PathBuf,
    naive_gas: bool,
    backend: BackendArg,
) -> Result<(), String> {
    let wad_bytes = std::fs::read(&wad).map_err(|e| {
        format!(
            "cannot read {}: {e} (install the Debian package freedoom)",
            wad.display()
        )
    })?;
    let mut loaded = load_file(&program, false, Profile::V0_8, &[]).map_err(|e| e.to_string())?;
    if naive_gas {
        // The programs README's reference gas and timings use the naive model.
        loaded
            .program
            .set_gas_model(&Naive)
            .map_err(|e| e.to_string())?;
    }
    let mut host = pvm_std::doom::DoomHost::new(wad_bytes);
    host.save = save;
    host.save_dir = Some(out);
    let s = match backend.resolve() {
        BackendArg::Interp | BackendArg::Auto => {
            pvm_std::doom::run(&loaded.program, loaded.initial.memory, &mut host, ticks)?
        }
        BackendArg::Jit => {
            pvm_std::doom::run_jit(&loaded.program, loaded.initial.memory, &mut host, ticks)?
        }
        BackendArg::JitChecked | BackendArg::JitNoseg => pvm_std::doom::run_jit_with(
            &loaded.program,
            loaded.initial.memory,
            &mut host,
            ticks,
            vectors::Backend::from(backend)
                .memory_checks()
                .unwrap_or(pvm_jit::MemoryChecks::Explicit),
        )?,
    };
    println!(
        "ext_initialize: gas {} in {:.1} ms",
        s.init_gas,
        s.init_time.as_secs_f64() * 1e3
    );
    println!(
        "{ticks} x ext_tick: gas {} in {:.1} ms",
        s.ticks_gas,
        s.ticks_time.as_secs_f64() * 1e3
    );
    let secs = s.ticks_time.as_secs_f64();
    println!(
        "frames: {} ({:.1} frames/s over the ticks)",
        s.frames,
        if secs > 0.0 {
            s.frames as f64 / secs
        } else {
            0.0
        }
    );
    if let Some(h) = s.last_frame_hash {
        println!("last frame FNV-1a 64: {h:016x}");
    }
    for p in &host.saved {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn cmd_disasm(blob: PathBuf, raw: bool, profile: Profile) -> Result<(), String> {
    let bytes = std::fs::read(&blob).map_err(|e| format!("cannot read {}: {e}", blob.display()))?;
    let container = if raw {
        Container::Raw
    } else {
        detect(&bytes).ok_or_else(|| {
            format!(
                "{}: not a standard program, JAM code blob or program blob",
                blob.display()
            )
        })?
    };
    let text =
        disassemble(&bytes, container, profile).map_err(|e| format!("{}: {e}", blob.display()))?;
    print!("{text}");
    Ok(())
}

fn cmd_asm(file: PathBuf, output: PathBuf, profile: Profile) -> Result<(), String> {
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let bytes = assemble(&text, profile).map_err(|e| format!("{}: {e}", file.display()))?;
    std::fs::write(&output, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    eprintln!("wrote {} bytes to {}", bytes.len(), output.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(args).map(|()| true),
        Command::Vectors {
            dir,
            profile,
            gas_model,
            backend,
        } => cmd_vectors(
            dir,
            profile.map(Into::into),
            gas_model.map(Into::into),
            backend.into(),
        ),
        Command::Doom {
            program,
            wad,
            ticks,
            save,
            out,
            gas_model,
            backend,
        } => match gas_model {
            GasModelArg::Table => Err("pvm doom: --gas-model takes naive or gp".to_string()),
            g => cmd_doom(
                program,
                wad,
                ticks,
                save,
                out,
                g == GasModelArg::Naive,
                backend,
            )
            .map(|()| true),
        },
        Command::Disasm { blob, raw, profile } => {
            cmd_disasm(blob, raw, profile.into()).map(|()| true)
        }
        Command::Asm {
            file,
            output,
            profile,
        } => cmd_asm(file, output, profile.into()).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
