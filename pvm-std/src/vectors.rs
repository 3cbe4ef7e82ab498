//! Conformance vectors: both JSON formats, parsed into one step list and run.
//!
//! - gp-0.8 (PolkaVM spectool): `initial-pc`, `initial-gas`, `program`,
//!   `block-gas-costs`, `steps` (`set-reg`, `map`, `write`, `run`, `assert`).
//! - gp-0.7 (W3F v0.4, flat): `initial-regs`, `initial-page-map`,
//!   `initial-memory`, `expected-*`; turned into the same steps.

use pvm_core::gas::{GasModel, Naive, Pipeline, Table};
use pvm_core::{Access, Exit, FlatMemory, Memory, Profile, Program, Vm, PAGE_SIZE};
use pvm_jit::JitInstance;
use serde_json::Value;
use std::fmt;
use std::path::Path;

/// Which gas model a vector runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GasChoice {
    /// One per instruction, charged per block.
    Naive,
    /// The vector's own `block-gas-costs` (gp-0.8 format only).
    Table,
    /// The GP 0.8.0 pipeline model ([`Pipeline`]); a vector's
    /// `block-gas-costs`, if it has them, must equal the model's costs.
    Gp,
}

impl GasChoice {
    pub fn parse(s: &str) -> Option<GasChoice> {
        match s {
            "naive" => Some(GasChoice::Naive),
            "table" => Some(GasChoice::Table),
            "gp" => Some(GasChoice::Gp),
            _ => None,
        }
    }
}

/// Expected state at an `assert` step.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub status: String,
    pub gas: Option<i64>,
    pub pc: Option<u32>,
    pub regs: Option<[u64; 13]>,
    pub memory: Vec<(u32, Vec<u8>)>,
    pub page_fault_address: Option<u32>,
    pub hostcall: Option<u32>,
}

/// One step of a vector.
#[derive(Clone, Debug)]
pub enum Step {
    SetReg(usize, u64),
    Map {
        address: u32,
        length: u32,
        writable: bool,
    },
    Write(u32, Vec<u8>),
    Run,
    Assert(Expect),
}

/// A parsed vector, in either format.
#[derive(Clone, Debug)]
pub struct Vector {
    pub name: String,
    /// The profile its format implies (gp-0.8 steps: 0.8; flat: 0.7).
    pub profile: Profile,
    pub initial_pc: u32,
    pub initial_gas: i64,
    pub program: Vec<u8>,
    pub block_gas_costs: Option<Vec<(u32, u64)>>,
    pub steps: Vec<Step>,
}

/// A malformed vector file: names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorError(pub String);

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VectorError {}

fn bad(field: &str, what: &str) -> VectorError {
    VectorError(format!("field `{field}`: {what}"))
}

fn get<'a>(v: &'a Value, field: &str) -> Result<&'a Value, VectorError> {
    v.get(field).ok_or_else(|| bad(field, "missing"))
}

fn u64_of(v: &Value, field: &str) -> Result<u64, VectorError> {
    v.as_u64()
        .ok_or_else(|| bad(field, "expected an unsigned integer"))
}

fn u32_of(v: &Value, field: &str) -> Result<u32, VectorError> {
    u32::try_from(u64_of(v, field)?).map_err(|_| bad(field, "does not fit in 32 bits"))
}

fn i64_of(v: &Value, field: &str) -> Result<i64, VectorError> {
    v.as_i64()
        .ok_or_else(|| bad(field, "expected a signed 64-bit integer"))
}

fn bytes_of(v: &Value, field: &str) -> Result<Vec<u8>, VectorError> {
    let arr = v
        .as_array()
        .ok_or_else(|| bad(field, "expected an array of bytes"))?;
    arr.iter()
        .map(|b| {
            b.as_u64()
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(|| bad(field, "element is not a byte"))
        })
        .collect()
}

fn regs_of(v: &Value, field: &str) -> Result<[u64; 13], VectorError> {
    let arr = v
        .as_array()
        .ok_or_else(|| bad(field, "expected an array of 13 integers"))?;
    if arr.len() != 13 {
        return Err(bad(
            field,
            &format!("expected 13 registers, found {}", arr.len()),
        ));
    }
    let mut regs = [0u64; 13];
    for (r, x) in regs.iter_mut().zip(arr) {
        *r = u64_of(x, field)?;
    }
    Ok(regs)
}

fn memory_of(v: &Value, field: &str) -> Result<Vec<(u32, Vec<u8>)>, VectorError> {
    let arr = v
        .as_array()
        .ok_or_else(|| bad(field, "expected an array of {address, contents}"))?;
    arr.iter()
        .map(|c| {
            Ok((
                u32_of(get(c, "address")?, "address")?,
                bytes_of(get(c, "contents")?, "contents")?,
            ))
        })
        .collect()
}

const STATUSES: [&str; 5] = ["panic", "halt", "page-fault", "out-of-gas", "ecalli"];

fn status_of(v: &Value, field: &str) -> Result<String, VectorError> {
    let s = v.as_str().ok_or_else(|| bad(field, "expected a string"))?;
    if !STATUSES.contains(&s) {
        return Err(bad(field, &format!("unknown status `{s}`")));
    }
    Ok(s.to_string())
}

impl Vector {
    /// Parses a vector from JSON text (either format).
    pub fn parse(text: &str) -> Result<Vector, VectorError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| VectorError(format!("invalid JSON: {e}")))?;
        let name = get(&v, "name")?
            .as_str()
            .ok_or_else(|| bad("name", "expected a string"))?
            .to_string();
        let initial_pc = u32_of(get(&v, "initial-pc")?, "initial-pc")?;
        let initial_gas = i64_of(get(&v, "initial-gas")?, "initial-gas")?;
        let program = bytes_of(get(&v, "program")?, "program")?;
        if let Some(steps) = v.get("steps") {
            let costs = get(&v, "block-gas-costs")?
                .as_array()
                .ok_or_else(|| bad("block-gas-costs", "expected an array"))?
                .iter()
                .map(|e| {
                    Ok((
                        u32_of(get(e, "pc")?, "pc")?,
                        u64_of(get(e, "cost")?, "cost")?,
                    ))
                })
                .collect::<Result<Vec<_>, VectorError>>()?;
            let steps = steps
                .as_array()
                .ok_or_else(|| bad("steps", "expected an array"))?
                .iter()
                .enumerate()
                .map(|(i, s)| parse_step(s).map_err(|e| VectorError(format!("step {i}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Vector {
                name,
                profile: Profile::V0_8,
                initial_pc,
                initial_gas,
                program,
                block_gas_costs: Some(costs),
                steps,
            })
        } else {
            let mut steps = Vec::new();
            for (i, r) in regs_of(get(&v, "initial-regs")?, "initial-regs")?
                .iter()
                .enumerate()
            {
                steps.push(Step::SetReg(i, *r));
            }
            for m in get(&v, "initial-page-map")?
                .as_array()
                .ok_or_else(|| bad("initial-page-map", "expected an array"))?
            {
                steps.push(Step::Map {
                    address: u32_of(get(m, "address")?, "address")?,
                    length: u32_of(get(m, "length")?, "length")?,
                    writable: get(m, "is-writable")?
                        .as_bool()
                        .ok_or_else(|| bad("is-writable", "expected a boolean"))?,
                });
            }
            for (address, contents) in memory_of(get(&v, "initial-memory")?, "initial-memory")? {
                steps.push(Step::Write(address, contents));
            }
            steps.push(Step::Run);
            let status = status_of(get(&v, "expected-status")?, "expected-status")?;
            let page_fault_address = match v.get("expected-page-fault-address") {
                Some(a) if status == "page-fault" => {
                    Some(u32_of(a, "expected-page-fault-address")?)
                }
                _ => None,
            };
            steps.push(Step::Assert(Expect {
                status,
                gas: Some(i64_of(get(&v, "expected-gas")?, "expected-gas")?),
                pc: Some(u32_of(get(&v, "expected-pc")?, "expected-pc")?),
                regs: Some(regs_of(get(&v, "expected-regs")?, "expected-regs")?),
                memory: memory_of(get(&v, "expected-memory")?, "expected-memory")?,
                page_fault_address,
                hostcall: None,
            }));
            Ok(Vector {
                name,
                profile: Profile::V0_7,
                initial_pc,
                initial_gas,
                program,
                block_gas_costs: None,
                steps,
            })
        }
    }

    /// Reads and parses a vector file.
    pub fn load(path: &Path) -> Result<Vector, VectorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| VectorError(format!("cannot read {}: {e}", path.display())))?;
        Vector::parse(&text)
    }
}

fn parse_step(s: &Value) -> Result<Step, VectorError> {
    if let Some(x) = s.get("set-reg") {
        let reg = u64_of(get(x, "reg")?, "reg")?;
        if reg > 12 {
            return Err(bad("reg", &format!("register {reg} out of range 0..=12")));
        }
        Ok(Step::SetReg(
            reg as usize,
            u64_of(get(x, "value")?, "value")?,
        ))
    } else if let Some(x) = s.get("map") {
        Ok(Step::Map {
            address: u32_of(get(x, "address")?, "address")?,
            length: u32_of(get(x, "length")?, "length")?,
            writable: get(x, "is-writable")?
                .as_bool()
                .ok_or_else(|| bad("is-writable", "expected a boolean"))?,
        })
    } else if let Some(x) = s.get("write") {
        Ok(Step::Write(
            u32_of(get(x, "address")?, "address")?,
            bytes_of(get(x, "contents")?, "contents")?,
        ))
    } else if s.get("run").is_some() {
        Ok(Step::Run)
    } else if let Some(x) = s.get("assert") {
        Ok(Step::Assert(Expect {
            status: status_of(get(x, "status")?, "status")?,
            gas: x.get("gas").map(|g| i64_of(g, "gas")).transpose()?,
            pc: x.get("pc").map(|g| u32_of(g, "pc")).transpose()?,
            regs: x.get("regs").map(|g| regs_of(g, "regs")).transpose()?,
            memory: x
                .get("memory")
                .map(|g| memory_of(g, "memory"))
                .transpose()?
                .unwrap_or_default(),
            page_fault_address: x
                .get("page-fault-address")
                .map(|g| u32_of(g, "page-fault-address"))
                .transpose()?,
            hostcall: x
                .get("hostcall")
                .map(|g| u32_of(g, "hostcall"))
                .transpose()?,
        }))
    } else {
        Err(VectorError(
            "unknown step kind (expected set-reg, map, write, run or assert)".into(),
        ))
    }
}

/// How a run went wrong: the first differing field, or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn status_name(exit: Option<Exit>) -> &'static str {
    match exit {
        Some(Exit::Halt) => "halt",
        Some(Exit::Panic) | None => "panic",
        Some(Exit::OutOfGas) => "out-of-gas",
        Some(Exit::PageFault(_)) => "page-fault",
        Some(Exit::HostCall(_)) => "ecalli",
    }
}

/// Checks `program`'s block costs (under the gas model it was given) against
/// a `block-gas-costs` table: every basic block must have an entry, equal to
/// the computed cost. Fails at the first block (in code order) that differs.
pub fn check_block_costs(program: &Program, table: &[(u32, u64)]) -> Result<(), Failure> {
    let table = Table::new(table.to_vec());
    for b in 0..program.block_count() {
        let pc = program.block_pc(b);
        let computed = program.block_cost(b);
        match table.get(pc) {
            Some(expected) if expected == computed => {}
            Some(expected) => {
                return Err(Failure(format!(
                    "block at pc {pc}: table says {expected}, model computes {computed}"
                )))
            }
            None => {
                return Err(Failure(format!(
                    "block at pc {pc}: table has no entry, model computes {computed}"
                )))
            }
        }
    }
    Ok(())
}

/// Which engine runs a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The interpreter (`pvm_core::Vm` over a `FlatMemory`).
    #[default]
    Interp,
    /// The x86-64 recompiler (`pvm_jit::JitInstance`).
    Jit,
    /// The recompiler with explicit memory checks instead of page
    /// protection and signals (`pvm_jit::MemoryChecks::Explicit`).
    JitChecked,
    /// The recompiler with page protection, addressing guest memory
    /// through a base register only (`pvm_jit::MemoryChecks::HardwareNoSegment`).
    JitNoSegment,
    /// The recompiler as [`Jit`](Self::Jit), its code generated in pieces
    /// on two threads whatever the program's size (the cut that
    /// `pvm_jit::Parallelism::TWO_THREADS` makes only for big programs).
    JitSplit,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "interp" => Some(Backend::Interp),
            "jit" => Some(Backend::Jit),
            "jit-checked" => Some(Backend::JitChecked),
            "jit-noseg" => Some(Backend::JitNoSegment),
            "jit-split" => Some(Backend::JitSplit),
            _ => None,
        }
    }

    /// The recompiler's memory checks for a recompiler backend.
    pub fn memory_checks(self) -> Option<pvm_jit::MemoryChecks> {
        match self {
            Backend::Interp => None,
            Backend::Jit | Backend::JitSplit => Some(pvm_jit::MemoryChecks::Hardware),
            Backend::JitChecked => Some(pvm_jit::MemoryChecks::Explicit),
            Backend::JitNoSegment => Some(pvm_jit::MemoryChecks::HardwareNoSegment),
        }
    }

    /// How a recompiler backend generates code.
    pub fn parallelism(self) -> pvm_jit::Parallelism {
        match self {
            Backend::JitSplit => pvm_jit::Parallelism {
                threads: 2,
                min_instructions: 0,
            },
            _ => pvm_jit::Parallelism::SERIAL,
        }
    }
}

/// A machine under test: what the vector steps need from a backend.
pub trait Machine {
    fn set_reg(&mut self, r: usize, v: u64);
    fn set_access(&mut self, first: u32, count: u32, access: Access);
    /// Writes into mapped pages ignoring read-only; false if a byte missed.
    fn poke(&mut self, addr: u32, data: &[u8]) -> bool;
    /// Reads a byte ignoring access (0 if unmapped).
    fn peek(&self, addr: u32) -> u8;
    fn run(&mut self) -> Result<Exit, pvm_core::Error>;
    fn pc(&self) -> u32;
    fn gas(&self) -> u64;
    fn regs(&self) -> [u64; 13];
}

impl Machine for Vm<'_, FlatMemory> {
    fn set_reg(&mut self, r: usize, v: u64) {
        Vm::set_reg(self, r, v);
    }
    fn set_access(&mut self, first: u32, count: u32, access: Access) {
        self.memory_mut().set_access(first, count, access);
    }
    fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        self.memory_mut().poke(addr, data)
    }
    fn peek(&self, addr: u32) -> u8 {
        self.memory().peek(addr)
    }
    fn run(&mut self) -> Result<Exit, pvm_core::Error> {
        Vm::run(self)
    }
    fn pc(&self) -> u32 {
        Vm::pc(self)
    }
    fn gas(&self) -> u64 {
        Vm::gas(self)
    }
    fn regs(&self) -> [u64; 13] {
        *Vm::regs(self)
    }
}

impl Machine for JitInstance {
    fn set_reg(&mut self, r: usize, v: u64) {
        JitInstance::set_reg(self, r, v);
    }
    fn set_access(&mut self, first: u32, count: u32, access: Access) {
        self.map(first, count, access);
    }
    fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        JitInstance::poke(self, addr, data)
    }
    fn peek(&self, addr: u32) -> u8 {
        JitInstance::peek(self, addr)
    }
    fn run(&mut self) -> Result<Exit, pvm_core::Error> {
        JitInstance::run(self)
    }
    fn pc(&self) -> u32 {
        JitInstance::pc(self)
    }
    fn gas(&self) -> u64 {
        JitInstance::gas(self)
    }
    fn regs(&self) -> [u64; 13] {
        *JitInstance::regs(self)
    }
}

/// A program that failed deblob: every run panics with nothing changed.
struct Invalid {
    regs: [u64; 13],
    memory: FlatMemory,
    pc: u32,
    gas: u64,
}

impl Machine for Invalid {
    fn set_reg(&mut self, r: usize, v: u64) {
        self.regs[r] = v;
    }
    fn set_access(&mut self, first: u32, count: u32, access: Access) {
        self.memory.set_access(first, count, access);
    }
    fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        self.memory.poke(addr, data)
    }
    fn peek(&self, addr: u32) -> u8 {
        self.memory.peek(addr)
    }
    fn run(&mut self) -> Result<Exit, pvm_core::Error> {
        Ok(Exit::Panic)
    }
    fn pc(&self) -> u32 {
        self.pc
    }
    fn gas(&self) -> u64 {
        self.gas
    }
    fn regs(&self) -> [u64; 13] {
        self.regs
    }
}

/// Runs a vector under `profile` and `gas` on the interpreter; `Ok` if every
/// assert holds. See [`run_on`].
pub fn run(vector: &Vector, profile: Profile, gas: GasChoice) -> Result<(), Failure> {
    run_on(vector, profile, gas, Backend::Interp)
}

/// Runs a vector under `profile` and `gas` on `backend`; `Ok` if every assert
/// holds. With [`GasChoice::Gp`] the vector's `block-gas-costs`, if it has
/// them, must also equal the computed block costs (see [`check_block_costs`]).
pub fn run_on(
    vector: &Vector,
    profile: Profile,
    gas: GasChoice,
    backend: Backend,
) -> Result<(), Failure> {
    let model: Box<dyn GasModel> = match gas {
        GasChoice::Naive => Box::new(Naive),
        GasChoice::Table => match &vector.block_gas_costs {
            Some(c) => Box::new(Table::new(c.clone())),
            None => {
                return Err(Failure(
                    "the table gas model needs `block-gas-costs`, which this vector has not".into(),
                ))
            }
        },
        GasChoice::Gp => Box::new(Pipeline),
    };
    let program = match Program::from_bytes(&vector.program, profile) {
        Ok(mut p) => {
            p.set_gas_model(model.as_ref())
                .map_err(|e| Failure(format!("gas model: {e}")))?;
            if gas == GasChoice::Gp {
                if let Some(table) = &vector.block_gas_costs {
                    check_block_costs(&p, table)?;
                }
            }
            Some(p)
        }
        // GP 0.8: a blob that fails deblob makes Ψ panic with everything unchanged.
        Err(_) => None,
    };
    let gas0 =
        u64::try_from(vector.initial_gas).map_err(|_| Failure("negative initial gas".into()))?;
    let mut m: Box<dyn Machine + '_> = match (&program, backend) {
        (None, _) => Box::new(Invalid {
            regs: [0; 13],
            memory: FlatMemory::new(),
            pc: vector.initial_pc,
            gas: gas0,
        }),
        (Some(p), Backend::Interp) => {
            Box::new(Vm::new(p, FlatMemory::new(), vector.initial_pc, gas0))
        }
        (
            Some(p),
            Backend::Jit | Backend::JitChecked | Backend::JitNoSegment | Backend::JitSplit,
        ) => {
            let checks = backend
                .memory_checks()
                .unwrap_or(pvm_jit::MemoryChecks::Hardware);
            let mut j = if backend == Backend::JitSplit {
                JitInstance::from_program_on(p.clone(), checks, backend.parallelism())
            } else {
                // Decoded again, in the pass that generates the code.
                pvm_core::Blob::parse(&vector.program)
                    .and_then(|blob| JitInstance::from_blob(blob, profile, model.as_ref(), checks))
            }
            .map_err(|e| Failure(format!("jit: {e}")))?;
            j.set_pc(vector.initial_pc);
            j.set_gas(gas0);
            Box::new(j)
        }
    };
    let mut regs = [0u64; 13];
    let mut pc = vector.initial_pc;
    let mut gas_left = gas0;
    let mut last: Option<Exit> = None;
    for (i, step) in vector.steps.iter().enumerate() {
        match step {
            Step::SetReg(r, v) => m.set_reg(*r, *v),
            Step::Map {
                address,
                length,
                writable,
            } => {
                let access = if *writable {
                    Access::Write
                } else {
                    Access::Read
                };
                m.set_access(address / PAGE_SIZE, length.div_ceil(PAGE_SIZE), access);
            }
            Step::Write(address, contents) => {
                if !m.poke(*address, contents) {
                    return Err(Failure(format!(
                        "step {i}: write to unmapped memory at {address:#x}"
                    )));
                }
            }
            Step::Run => {
                let exit = m.run().map_err(|e| Failure(format!("step {i}: {e}")))?;
                last = Some(exit);
                pc = m.pc();
                gas_left = m.gas();
                regs = m.regs();
            }
            Step::Assert(e) => {
                let got = status_name(last);
                let ctx = |what: String| Failure(format!("step {i}: {what}"));
                if got != e.status {
                    return Err(ctx(format!(
                        "status: expected {}, got {got} (pc {pc})",
                        e.status
                    )));
                }
                if let Some(g) = e.gas {
                    if i128::from(g) != i128::from(gas_left) {
                        return Err(ctx(format!("gas: expected {g}, got {gas_left}")));
                    }
                }
                if let Some(p) = e.pc {
                    if p != pc {
                        return Err(ctx(format!("pc: expected {p}, got {pc}")));
                    }
                }
                if let Some(r) = e.regs {
                    for k in 0..13 {
                        if r[k] != regs[k] {
                            return Err(ctx(format!(
                                "r{k}: expected {:#x}, got {:#x}",
                                r[k], regs[k]
                            )));
                        }
                    }
                }
                for (address, contents) in &e.memory {
                    for (k, &b) in contents.iter().enumerate() {
                        let a = address.wrapping_add(k as u32);
                        if m.peek(a) != b {
                            return Err(ctx(format!(
                                "memory at {a:#x}: expected {b:#04x}, got {:#04x}",
                                m.peek(a)
                            )));
                        }
                    }
                }
                if let Some(a) = e.page_fault_address {
                    match last {
                        Some(Exit::PageFault(got)) if got == a => {}
                        other => {
                            return Err(ctx(format!(
                                "page-fault-address: expected {a:#x}, got {other:?}"
                            )))
                        }
                    }
                }
                if let Some(h) = e.hostcall {
                    match last {
                        Some(Exit::HostCall(got)) if got == h => {}
                        other => return Err(ctx(format!("hostcall: expected {h}, got {other:?}"))),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Loads and runs one vector file on the interpreter; see [`run_file_on`].
pub fn run_file(
    path: &Path,
    profile: Option<Profile>,
    gas: Option<GasChoice>,
) -> Result<(), Failure> {
    run_file_on(path, profile, gas, Backend::Interp)
}

/// Loads and runs one vector file on `backend`. Defaults: the profile its
/// format implies; under 0.8 the GP 0.8.0 pipeline model (which also checks
/// the file's `block-gas-costs`), under 0.7 the naive model.
pub fn run_file_on(
    path: &Path,
    profile: Option<Profile>,
    gas: Option<GasChoice>,
    backend: Backend,
) -> Result<(), Failure> {
    let v = Vector::load(path)
        .map_err(|e| Failure(format!("bad vector file {}: {e}", path.display())))?;
    let profile = profile.unwrap_or(v.profile);
    let gas = gas.unwrap_or(match profile {
        Profile::V0_8 => GasChoice::Gp,
        Profile::V0_7 => GasChoice::Naive,
    });
    run_on(&v, profile, gas, backend)
}
