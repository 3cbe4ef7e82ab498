//! Runs one case on both engines and compares them at every exit.

use crate::gen::{access_width, falls_through, is_memory, Case};
use polkavm::program::InstructionSetKind;
use polkavm::{
    ArcBytes, BackendKind, CacheModel, Config, CostModelKind, Engine, GasMeteringKind,
    InterruptKind, MemoryProtection, Module, ModuleConfig, ProgramBlob, ProgramCounter,
    ProgramParts, RawInstance, Reg as PReg,
};
use pvm_core::asm::{disassemble, Container};
use pvm_core::gas::{Naive, Table};
use pvm_core::isa::{Args, Instruction, Opcode, Profile};
use pvm_core::{Access, Exit, FlatMemory, Memory, Program, Tracer, Vm, PAGE_SIZE};
use std::fmt::Write as _;

/// Which gas model a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GasModel {
    /// One unit per instruction, charged per block.
    Naive,
    /// GP 0.8.0: ours `pvm_core::gas::Pipeline`, PolkaVM's
    /// `CostModelKind::Full(CacheModel::L2Hit)`.
    Gp,
}

impl GasModel {
    pub fn name(self) -> &'static str {
        match self {
            GasModel::Naive => "naive",
            GasModel::Gp => "gp",
        }
    }
}

/// Host calls served per run before the harness stops it.
pub const MAX_HOST_CALLS: u32 = 8;
/// Page faults resolved (by mapping the page read-write) per run.
pub const MAX_FAULTS: u32 = 4;

/// Out-of-gas exits after which the harness adds gas and resumes.
pub const MAX_REFILLS: u32 = 2;

/// What one engine reports at an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub exit: Exit,
    pub pc: Option<u32>,
    pub regs: [u64; 13],
    pub gas: i64,
    /// Contents of every page the harness mapped, in mapping order.
    pub memory: Vec<(u32, Vec<u8>)>,
}

/// PolkaVM's engine (its interpreter) and module configurations.
pub struct Polka {
    engine: Engine,
}

impl std::fmt::Debug for Polka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Polka").finish_non_exhaustive()
    }
}

impl Polka {
    pub fn new() -> Result<Polka, String> {
        let mut config = Config::new();
        config.set_backend(Some(BackendKind::Interpreter));
        config.set_allow_dynamic_paging(true);
        config.set_cache_enabled(false);
        let engine = Engine::new(&config).map_err(|e| format!("PolkaVM engine: {e}"))?;
        if engine.backend() != BackendKind::Interpreter {
            return Err(format!("PolkaVM: got the {} backend", engine.backend()));
        }
        Ok(Polka { engine })
    }

    pub fn module(&self, blob: &[u8], model: GasModel) -> Result<Module, String> {
        let mut parts = ProgramParts::empty(InstructionSetKind::JamV1);
        parts.code_and_jump_table = ArcBytes::from(blob);
        let blob = ProgramBlob::from_parts(parts).map_err(|e| format!("PolkaVM blob: {e}"))?;
        let mut config = ModuleConfig::new();
        config.set_page_size(PAGE_SIZE);
        config.set_gas_metering(Some(GasMeteringKind::Sync));
        config.set_dynamic_paging(true);
        config.set_strict(false);
        config.set_cache_by_hash(false);
        if model == GasModel::Gp {
            config.set_cost_model(Some(CostModelKind::Full(CacheModel::L2Hit)));
        }
        Module::from_blob(&self.engine, &config, blob).map_err(|e| format!("PolkaVM module: {e}"))
    }
}

/// Counts executed instructions by opcode.
#[derive(Debug)]
pub struct Counter {
    pub total: u64,
    pub by_opcode: Vec<u64>,
}

impl Counter {
    pub fn new() -> Counter {
        Counter {
            total: 0,
            by_opcode: vec![0; Opcode::ALL.len()],
        }
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// Index of `op` in `Opcode::ALL`.
pub fn opcode_index(op: Opcode) -> usize {
    Opcode::ALL.iter().position(|&o| o == op).unwrap_or(0)
}

impl Tracer for Counter {
    fn instruction(&mut self, _: u32, inst: &Instruction, _: &[u64; 13], _: u64) {
        self.total += 1;
        self.by_opcode[opcode_index(inst.opcode())] += 1;
    }
}

/// How a run ended, once both engines agreed throughout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Both agree at every exit; the last exit.
    Agree(Exit),
    /// Both agree, but some block's GP cost differed only because of a
    /// conditional move (see `is_cmov`), so ours ran with PolkaVM's costs.
    AgreeWithPolkaCosts(Exit),
    /// The one accepted difference we can meet: a store straddling a
    /// read-only and an unmapped page (GP: the read-only page faults;
    /// PolkaVM: the unmapped one).
    AcceptedStraddle,
    /// PolkaVM refused to load the program: it ends with `fallthrough` or a
    /// conditional branch (valid under GP 0.8; a documented PolkaVM
    /// deviation). Our interpreter loaded it; nothing to compare.
    PolkaRejectedLastFallthrough,
    /// A PolkaVM deviation: an access that reaches address 0xFFFFFFFF
    /// (PolkaVM treats `address + length = 2^32` as wrapping: it panics if
    /// the last page is mapped and faults on it if not; the GP runs the
    /// access, or panics for a real wrap past 2^32).
    KnownTopOfMemory,
}

/// The conditional moves: PolkaVM 0.37's cost model counts their destination
/// as a source register, the GP 0.8 vectors (and ours) do not.
pub fn is_cmov(op: Opcode) -> bool {
    matches!(
        op,
        Opcode::CmovIz | Opcode::CmovNz | Opcode::CmovIzImm | Opcode::CmovNzImm
    )
}

/// The host call's observable effect (both engines get the same).
fn host_effect(regs: &mut [u64; 13], id: u32, n: u32) {
    regs[7] = regs[7].rotate_left(13) ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(u64::from(n) + 1);
    regs[8] = u64::from(id);
}

struct Ours<'p> {
    vm: Vm<'p, FlatMemory>,
}

impl Ours<'_> {
    fn state(&mut self, exit: Exit, pages: &[u32]) -> State {
        let mut memory = Vec::with_capacity(pages.len());
        for &p in pages {
            let mut buf = vec![0u8; PAGE_SIZE as usize];
            let m = self.vm.memory_mut();
            if m.page_access(p / PAGE_SIZE) != Access::None {
                let _ = m.read(p, &mut buf);
            }
            memory.push((p, buf));
        }
        State {
            exit,
            // PolkaVM reports no pc after halting; nothing to compare.
            pc: (exit != Exit::Halt).then(|| self.vm.pc()),
            regs: *self.vm.regs(),
            gas: self.vm.gas() as i64,
            memory,
        }
    }
}

/// The first difference between our interpreter and our JIT after a run:
/// exit, pc, registers, gas, the charged flag, and every compared page.
fn jit_difference(
    ours: &mut Ours<'_>,
    jit: &mut pvm_jit::JitInstance,
    our_exit: Exit,
    jit_exit: Exit,
    pages: &[u32],
) -> Option<String> {
    if our_exit != jit_exit {
        return Some(format!("exit: interpreter {our_exit:?}, JIT {jit_exit:?}"));
    }
    let vm = &mut ours.vm;
    if vm.pc() != jit.pc() {
        return Some(format!("pc: interpreter {}, JIT {}", vm.pc(), jit.pc()));
    }
    if vm.regs() != jit.regs() {
        return Some(format!(
            "registers: interpreter {:x?}, JIT {:x?}",
            vm.regs(),
            jit.regs()
        ));
    }
    if vm.gas() != jit.gas() {
        return Some(format!("gas: interpreter {}, JIT {}", vm.gas(), jit.gas()));
    }
    if vm.gas_charged() != jit.gas_charged() {
        return Some(format!(
            "charged flag: interpreter {}, JIT {}",
            vm.gas_charged(),
            jit.gas_charged()
        ));
    }
    for &p in pages {
        let page = p / PAGE_SIZE;
        let (a, b) = (vm.memory_mut().page_access(page), jit.page_access(page));
        if a != b {
            return Some(format!(
                "access of page {p:#x}: interpreter {a:?}, JIT {b:?}"
            ));
        }
        for off in 0..PAGE_SIZE {
            let (x, y) = (vm.memory_mut().peek(p + off), jit.peek(p + off));
            if x != y {
                return Some(format!(
                    "memory at {:#x}: interpreter {x:#04x}, JIT {y:#04x}",
                    p + off
                ));
            }
        }
    }
    None
}

fn polka_state(inst: &mut RawInstance, exit: Exit, pages: &[u32]) -> State {
    let mut regs = [0u64; 13];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = inst.reg(PReg::ALL[i]);
    }
    let mut memory = Vec::with_capacity(pages.len());
    for &p in pages {
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        if inst.is_memory_accessible(p, PAGE_SIZE, MemoryProtection::Read) {
            let _ = inst.read_memory_into(p, &mut buf[..]);
        }
        memory.push((p, buf));
    }
    State {
        exit,
        // Out of gas at the entry point sets only the next pc.
        pc: inst
            .program_counter()
            .or_else(|| inst.next_program_counter())
            .map(|pc| pc.0)
            .filter(|_| exit != Exit::Halt),
        regs,
        gas: inst.gas(),
        memory,
    }
}

fn polka_map(inst: &mut RawInstance, addr: u32, access: Access, data: &[u8]) -> Result<(), String> {
    inst.zero_memory_with_memory_protection(addr, PAGE_SIZE, MemoryProtection::ReadWrite)
        .map_err(|e| format!("PolkaVM: map {addr:#x}: {e}"))?;
    inst.write_memory(addr, data)
        .map_err(|e| format!("PolkaVM: write {addr:#x}: {e}"))?;
    if access == Access::Read {
        inst.protect_memory(addr, PAGE_SIZE)
            .map_err(|e| format!("PolkaVM: protect {addr:#x}: {e}"))?;
    }
    Ok(())
}

/// A difference between the engines, with everything needed to reproduce it.
#[derive(Debug)]
pub struct Divergence {
    pub report: String,
}

/// Runs `case` on both engines under `model`; `Err` on a harness error
/// (not a divergence), `Ok(Err(_))` on a divergence.
pub fn run_case(
    polka: &Polka,
    case: &Case,
    model: GasModel,
    counter: &mut Counter,
    exits: &mut Vec<Exit>,
) -> Result<Result<Outcome, Divergence>, String> {
    let gas = match model {
        GasModel::Naive => case.gas_naive,
        GasModel::Gp => case.gas_gp,
    };
    let mut program = Program::from_bytes(&case.blob, Profile::V0_8)
        .map_err(|e| format!("our parser rejected a generated program: {e}"))?;
    if model == GasModel::Naive {
        program
            .set_gas_model(&Naive)
            .map_err(|e| format!("naive gas model: {e}"))?;
    }
    let module = match polka.module(&case.blob, model) {
        Ok(m) => m,
        Err(e) if case.insts.last().is_some_and(|i| falls_through(i.opcode())) => {
            // Known PolkaVM deviation: it rejects a valid GP program that ends
            // with `fallthrough` or a conditional branch. Ours must accept it.
            let _ = e;
            return Ok(Ok(Outcome::PolkaRejectedLastFallthrough));
        }
        Err(e) => return Err(e),
    };
    let mut cmov_blocks = false;
    if model == GasModel::Gp {
        // Compare every block's cost first. A difference in a block with a
        // conditional move is the known one (PolkaVM 0.37 counts a cmov's
        // destination as a source; the GP 0.8 vectors do not); then the run
        // goes on with PolkaVM's costs, to compare everything else.
        let mut costs = Vec::new();
        let mut diffs = Vec::new();
        for b in 0..program.block_count() {
            let pc = program.block_pc(b);
            let theirs = module
                .calculate_gas_cost_for(ProgramCounter(pc))
                .ok_or_else(|| format!("PolkaVM has no block cost at {pc}"))?;
            costs.push((pc, theirs as u64));
            if theirs != program.block_cost(b) as i64 {
                let has_cmov = program.block(b).any(|(_, i, _)| is_cmov(i.opcode()));
                diffs.push((pc, program.block_cost(b), theirs, has_cmov));
            }
        }
        if diffs.iter().any(|d| !d.3) {
            let mut text = String::from("=== DIVERGENCE: GP 0.8.0 block costs ===\n");
            let _ = writeln!(text, "(block pc, ours, PolkaVM's, block has a cmov):");
            for d in &diffs {
                let _ = writeln!(text, "  {d:?}");
            }
            text.push_str(
                &disassemble(&case.blob, Container::Raw, Profile::V0_8).unwrap_or_default(),
            );
            return Ok(Err(Divergence { report: text }));
        }
        if !diffs.is_empty() {
            cmov_blocks = true;
            program
                .set_gas_model(&Table::new(costs))
                .map_err(|e| format!("table gas model: {e}"))?;
        }
    }
    let mut mem = FlatMemory::new();
    let mut pages: Vec<u32> = Vec::new();
    for (addr, access, data) in &case.pages {
        mem.set_access(addr / PAGE_SIZE, 1, *access);
        mem.poke(*addr, data);
        pages.push(*addr);
    }
    let mut ours = Ours {
        vm: Vm::new(&program, mem, case.entry, gas),
    };
    *ours.vm.regs_mut() = case.regs;

    // The third engine: our recompiler, where this build has it. It must
    // agree with our interpreter exactly, pc after halt included.
    let mut jit = if pvm_jit::is_supported() {
        let mut j = pvm_jit::JitInstance::new(&program).map_err(|e| format!("our JIT: {e}"))?;
        for (addr, access, data) in &case.pages {
            j.map(addr / PAGE_SIZE, 1, *access);
            j.poke(*addr, data);
        }
        *j.regs_mut() = case.regs;
        j.set_pc(case.entry);
        j.set_gas(gas);
        Some(j)
    } else {
        None
    };

    let mut theirs = module
        .instantiate()
        .map_err(|e| format!("PolkaVM instantiate: {e}"))?;
    for (addr, access, data) in &case.pages {
        polka_map(&mut theirs, *addr, *access, data)?;
    }
    for (i, &v) in case.regs.iter().enumerate() {
        theirs.set_reg(PReg::ALL[i], v);
    }
    theirs.set_gas(gas as i64);
    theirs.set_next_program_counter(ProgramCounter(case.entry));

    let mut history: Vec<(State, State)> = Vec::new();
    let mut hosts = 0u32;
    let mut faults = 0u32;
    let mut refills = 0u32;
    loop {
        let our_exit = ours
            .vm
            .run_traced(counter)
            .map_err(|e| format!("our interpreter: {e}"))?;
        let their_exit = match theirs.run().map_err(|e| format!("PolkaVM run: {e}"))? {
            InterruptKind::Finished => Exit::Halt,
            InterruptKind::Trap => Exit::Panic,
            InterruptKind::Ecalli(id) => Exit::HostCall(id),
            InterruptKind::Segfault(s) => Exit::PageFault(s.page_address),
            InterruptKind::NotEnoughGas => Exit::OutOfGas,
            InterruptKind::Step => return Err("PolkaVM: unexpected step interrupt".into()),
        };
        if let Some(j) = jit.as_mut() {
            let jit_exit = j.run().map_err(|e| format!("our JIT: {e}"))?;
            if let Some(diff) = jit_difference(&mut ours, j, our_exit, jit_exit, &pages) {
                let mut text =
                    format!("=== DIVERGENCE: interpreter vs JIT ({model:?} gas) ===\n{diff}\n");
                text.push_str(
                    &disassemble(&case.blob, Container::Raw, Profile::V0_8).unwrap_or_default(),
                );
                return Ok(Err(Divergence { report: text }));
            }
        }
        let a = ours.state(our_exit, &pages);
        let b = polka_state(&mut theirs, their_exit, &pages);
        exits.push(our_exit);
        if a != b {
            if let Some(known) = known_deviation(case, &a, &b) {
                return Ok(Ok(known));
            }
            history.push((a, b));
            return Ok(Err(Divergence {
                report: report(case, model, gas, &history),
            }));
        }
        history.push((a, b));
        match our_exit {
            Exit::HostCall(id) if hosts < MAX_HOST_CALLS => {
                hosts += 1;
                let mut regs = *ours.vm.regs();
                host_effect(&mut regs, id, hosts);
                *ours.vm.regs_mut() = regs;
                if let Some(j) = jit.as_mut() {
                    *j.regs_mut() = regs;
                }
                for (i, &v) in regs.iter().enumerate() {
                    theirs.set_reg(PReg::ALL[i], v);
                }
            }
            Exit::PageFault(addr) if faults < MAX_FAULTS => {
                faults += 1;
                let m = ours.vm.memory_mut();
                m.set_access(addr / PAGE_SIZE, 1, Access::Write);
                let data = vec![0xA5u8; PAGE_SIZE as usize];
                m.poke(addr, &data);
                if let Some(j) = jit.as_mut() {
                    j.map(addr / PAGE_SIZE, 1, Access::Write);
                    j.poke(addr, &data);
                }
                polka_map(&mut theirs, addr, Access::Write, &data)?;
                if !pages.contains(&addr) {
                    pages.push(addr);
                }
            }
            Exit::OutOfGas if refills < MAX_REFILLS => {
                // Refill and resume: the block is charged again in full.
                refills += 1;
                let add = match model {
                    GasModel::Naive => 7 * u64::from(refills),
                    GasModel::Gp => 90 * u64::from(refills),
                };
                ours.vm.set_gas(ours.vm.gas() + add);
                if let Some(j) = jit.as_mut() {
                    j.set_gas(j.gas() + add);
                }
                theirs.set_gas(theirs.gas() + add as i64);
            }
            exit => {
                return Ok(Ok(if cmov_blocks {
                    Outcome::AgreeWithPolkaCosts(exit)
                } else {
                    Outcome::Agree(exit)
                }))
            }
        }
    }
}

/// The address and width of the memory access of instruction `inst` with
/// registers `regs`, if it accesses memory.
pub fn access(inst: &Instruction, regs: &[u64; 13]) -> Option<(u32, u32)> {
    let op = inst.opcode();
    if !is_memory(op) {
        return None;
    }
    let addr = match inst.args() {
        Args::TwoImm(x) => x.x,
        Args::RegImm(x) => x.imm,
        Args::RegTwoImm(x) => (regs[x.a.index()] as u32).wrapping_add(x.x),
        Args::TwoRegImm(x) => (regs[x.b.index()] as u32).wrapping_add(x.imm),
        _ => return None,
    };
    Some((addr, access_width(op)))
}

/// Whether the difference is one of the known PolkaVM deviations, judged
/// from PolkaVM's state `b` (it stopped at the instruction concerned; ours
/// is `a`).
fn known_deviation(case: &Case, a: &State, b: &State) -> Option<Outcome> {
    let pc = b.pc?;
    let i = case.pcs.iter().position(|&p| p == pc)?;
    let inst = case.insts[i];
    let (addr, width) = access(&inst, &b.regs)?;
    let last = u64::from(addr) + u64::from(width) - 1;
    // An access that reaches the last byte of the address space.
    if last >= 0xFFFF_FFFF && matches!(b.exit, Exit::Panic | Exit::PageFault(0xFFFF_F000)) {
        return Some(Outcome::KnownTopOfMemory);
    }
    // A store straddling a read-only page and an unmapped page.
    if let (Exit::PageFault(ours), Exit::PageFault(theirs)) = (a.exit, b.exit) {
        if a.pc == b.pc
            && a.regs == b.regs
            && theirs == ours.wrapping_add(PAGE_SIZE)
            && inst.opcode().name().starts_with("store_")
            && addr / PAGE_SIZE == ours / PAGE_SIZE
            && (last as u32) / PAGE_SIZE == theirs / PAGE_SIZE
        {
            return Some(Outcome::AcceptedStraddle);
        }
    }
    None
}

fn exit_text(e: &Exit) -> String {
    match e {
        Exit::Halt => "halt".into(),
        Exit::Panic => "panic".into(),
        Exit::OutOfGas => "out-of-gas".into(),
        Exit::PageFault(a) => format!("page-fault {a:#x}"),
        Exit::HostCall(id) => format!("host-call {id}"),
    }
}

fn state_text(out: &mut String, s: &State, other: &State) {
    let mark = |same: bool| if same { "  " } else { "≠ " };
    let _ = writeln!(
        out,
        "  {}exit {}",
        mark(s.exit == other.exit),
        exit_text(&s.exit)
    );
    let _ = writeln!(out, "  {}pc   {:?}", mark(s.pc == other.pc), s.pc);
    let _ = writeln!(out, "  {}gas  {}", mark(s.gas == other.gas), s.gas);
    for i in 0..13 {
        let _ = writeln!(
            out,
            "  {}r{i:<2} = {:#018x} ({})",
            mark(s.regs[i] == other.regs[i]),
            s.regs[i],
            s.regs[i] as i64
        );
    }
    for ((addr, data), (_, od)) in s.memory.iter().zip(&other.memory) {
        if data != od {
            let first = data.iter().zip(od).position(|(x, y)| x != y).unwrap_or(0);
            let lo = first & !15;
            let hi = (lo + 32).min(data.len());
            let _ = writeln!(
                out,
                "  ≠ page {addr:#x}: first difference at {:#x}: {:02x?}",
                *addr as usize + first,
                &data[lo..hi]
            );
        }
    }
}

fn report(case: &Case, model: GasModel, gas: u64, history: &[(State, State)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "=== DIVERGENCE (gas model {}) ===", model.name());
    let _ = writeln!(out, "--- program (pvm asm) ---");
    match disassemble(&case.blob, Container::Raw, Profile::V0_8) {
        Ok(t) => out.push_str(&t),
        Err(e) => {
            let _ = writeln!(out, "(cannot disassemble: {e})");
        }
    }
    let _ = writeln!(out, "--- initial state ---");
    let _ = writeln!(out, "entry pc {}, gas {gas}", case.entry);
    for (i, r) in case.regs.iter().enumerate() {
        let _ = writeln!(out, "r{i} = {r:#x}");
    }
    for (addr, access, data) in &case.pages {
        let pattern = if data.iter().all(|&b| b == 0) {
            "zeros".to_string()
        } else {
            format!("{:02x?}…", &data[..16])
        };
        let _ = writeln!(out, "map {addr:#x} {access:?} {pattern}");
    }
    let _ = writeln!(
        out,
        "(after a host call the harness sets r7 = rotl(r7, 13) ^ 0x9E3779B97F4A7C15·n, r8 = id; \
         after a page fault it maps the page read-write filled with 0xA5)"
    );
    for (n, (a, b)) in history.iter().enumerate() {
        let _ = writeln!(out, "--- exit #{} ---", n + 1);
        let _ = writeln!(out, " ours:");
        state_text(&mut out, a, b);
        let _ = writeln!(out, " PolkaVM:");
        state_text(&mut out, b, a);
    }
    out
}
