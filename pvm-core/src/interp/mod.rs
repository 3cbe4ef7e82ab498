//! The interpreter: runs a pre-decoded [`Program`] over a [`Memory`].
//!
//! Gas is charged per block (GP 0.8.0 §A.6): a flag records whether the
//! current block is paid for; when it is not, the cost of the block holding
//! the next instruction is charged before it runs (or the run stops with
//! out-of-gas, nothing changed). Terminators that continue clear the flag;
//! faults and host calls do not, so resuming does not charge twice.

use crate::error::Error;
use crate::isa::*;
use crate::memory::{Access, Memory, Trap, PAGE_SIZE};
use crate::program::{Program, INVALID_TARGET};

mod compile;
use compile::H;
pub(crate) use compile::{compile, Compiled};

/// Why execution stopped. These are the GP's exit reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    /// A dynamic jump to 0xFFFF0000.
    Halt,
    /// `trap`, an invalid jump, or an access below 0x10000.
    Panic,
    /// The next block could not be paid for; nothing changed.
    OutOfGas,
    /// An access to an inaccessible page at or above 0x10000; the address is
    /// the page base of the lowest bad byte. Nothing changed; map the page and
    /// run again to retry the instruction.
    PageFault(u32),
    /// `ecalli` with this id. Run again to continue after it.
    HostCall(u32),
}

/// The address a dynamic jump to which halts the machine.
pub const HALT_ADDRESS: u32 = 0xFFFF_0000;

/// Observes execution one instruction at a time. With [`NoTracer`] the hooks
/// compile away.
pub trait Tracer {
    /// Whether the hook is called at all.
    const ENABLED: bool = true;
    /// Called before each instruction runs (after its block is charged).
    fn instruction(&mut self, pc: u32, inst: &Instruction, regs: &[u64; 13], gas: u64);
}

/// A tracer that does nothing and costs nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTracer;

impl Tracer for NoTracer {
    const ENABLED: bool = false;
    #[inline(always)]
    fn instruction(&mut self, _: u32, _: &Instruction, _: &[u64; 13], _: u64) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Runs from `pc`.
    Ready,
    /// Stopped at the `ecalli` at `pc`; resumes after it.
    AfterHostCall,
    /// Halted or panicked.
    Finished,
}

/// Where a machine stands between runs: its pc, whether the gas of the
/// block holding it is paid (the GP's ϱ̄), and whether it can run on. Every
/// backend keeps one, so the rules for starting, resuming after a host
/// call, entering mid-block and recording an exit are written once, here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) pc: u32,
    pub(crate) charged: bool,
    state: State,
}

impl Cursor {
    /// Ready to run from `pc`, its block not yet paid.
    pub const fn new(pc: u32) -> Cursor {
        Cursor {
            pc,
            charged: false,
            state: State::Ready,
        }
    }
    /// The pc: of the next instruction, or of the instruction that stopped
    /// execution (the `ecalli` after a host call).
    pub const fn pc(&self) -> u32 {
        self.pc
    }
    /// Moves execution to `pc`.
    pub fn set_pc(&mut self, pc: u32) {
        self.pc = pc;
        self.state = State::Ready;
    }
    /// Whether the current block's gas is already paid.
    pub const fn charged(&self) -> bool {
        self.charged
    }
    pub fn set_charged(&mut self, charged: bool) {
        self.charged = charged;
    }
    /// Marks the machine as stopped for good.
    pub fn finish(&mut self) {
        self.state = State::Finished;
    }
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Resolves where a run starts, charging the block that holds it from
    /// `gas` if it is not paid yet: the instruction index, or an exit that
    /// happens before any instruction runs.
    pub fn start(&mut self, p: &Program, gas: &mut u64) -> Result<Result<usize, Exit>, Error> {
        match self.state {
            State::Finished => return Err(Error::Finished),
            State::AfterHostCall => {
                self.state = State::Ready;
                // pc is the ecalli; continue after it. An ecalli is never last
                // in a valid 0.8 program; in 0.7 an implicit trap follows it.
                match p.index_of(self.pc) {
                    Some(i) if i + 1 < p.len() => self.pc = p.pc(i + 1),
                    _ => {
                        self.state = State::Finished;
                        return Ok(Err(Exit::Panic));
                    }
                }
            }
            State::Ready => {}
        }
        let i = match p.index_of(self.pc) {
            Some(i) if !p.is_implicit_trap(i) || p.profile() == Profile::V0_7 => i,
            _ => {
                // Not an instruction start. GP 0.8: deblob(p, ı) fails, so the
                // result is panic with gas and state unchanged. GP 0.7: the
                // bitmask says this is no opcode, which traps.
                self.state = State::Finished;
                return Ok(Err(Exit::Panic));
            }
        };
        if !self.charged {
            // Charge the whole block that holds pc (GP 0.8: ϱΔ(𝔏(ı))), even
            // when entering mid-block.
            let cost = p.block_costs[p.block_of(i)];
            if *gas < cost {
                return Ok(Err(Exit::OutOfGas));
            }
            *gas -= cost;
            self.charged = true;
        }
        Ok(Ok(i))
    }

    /// Records that a run stopped with `exit` at instruction `idx` (the
    /// instruction that halted, panicked, faulted or called the host, or the
    /// first of the block whose gas ran out).
    pub fn stop(&mut self, p: &Program, idx: usize, exit: &Exit) {
        self.pc = p.pc(idx);
        match exit {
            Exit::Halt | Exit::Panic => self.state = State::Finished,
            Exit::HostCall(_) => self.state = State::AfterHostCall,
            Exit::OutOfGas => self.charged = false,
            Exit::PageFault(_) => {}
        }
    }
}

/// The heap bounds `sbrk` (GP 0.7.2) works within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heap {
    /// Current end of the heap (exclusive).
    pub top: u32,
    /// The heap may not grow past this address.
    pub limit: u32,
}

/// A PVM instance: registers, pc, gas and memory over a program.
#[derive(Debug)]
pub struct Vm<'p, M> {
    program: &'p Program,
    memory: M,
    regs: [u64; 13],
    gas: u64,
    cur: Cursor,
    heap: Option<Heap>,
}

impl<'p, M: Memory> Vm<'p, M> {
    /// A machine at `pc` with `gas`, zeroed registers and `memory`.
    pub fn new(program: &'p Program, memory: M, pc: u32, gas: u64) -> Self {
        Vm {
            program,
            memory,
            regs: [0; 13],
            gas,
            cur: Cursor::new(pc),
            heap: None,
        }
    }

    pub fn program(&self) -> &'p Program {
        self.program
    }
    pub fn regs(&self) -> &[u64; 13] {
        &self.regs
    }
    pub fn regs_mut(&mut self) -> &mut [u64; 13] {
        &mut self.regs
    }
    pub fn reg(&self, r: usize) -> u64 {
        self.regs[r]
    }
    pub fn set_reg(&mut self, r: usize, v: u64) {
        self.regs[r] = v;
    }
    /// The pc: of the next instruction, or of the instruction that stopped
    /// execution (the `ecalli` after a host call).
    pub fn pc(&self) -> u32 {
        self.cur.pc
    }
    /// Moves execution to `pc` (a host may do this after a host call).
    pub fn set_pc(&mut self, pc: u32) {
        self.cur.set_pc(pc);
    }
    pub fn gas(&self) -> u64 {
        self.gas
    }
    pub fn set_gas(&mut self, gas: u64) {
        self.gas = gas;
    }
    /// Whether the current block's gas is already paid (the GP's ϱ̄).
    pub fn gas_charged(&self) -> bool {
        self.cur.charged
    }
    pub fn set_gas_charged(&mut self, charged: bool) {
        self.cur.charged = charged;
    }
    pub fn memory(&self) -> &M {
        &self.memory
    }
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }
    pub fn into_memory(self) -> M {
        self.memory
    }
    pub fn heap(&self) -> Option<Heap> {
        self.heap
    }
    pub fn set_heap(&mut self, heap: Option<Heap>) {
        self.heap = heap;
    }
    /// Marks the machine as stopped for good (a host ended the run).
    pub fn finish(&mut self) {
        self.cur.finish();
    }

    /// Whether the machine halted or panicked.
    pub fn is_finished(&self) -> bool {
        self.cur.is_finished()
    }

    /// Runs until an exit.
    pub fn run(&mut self) -> Result<Exit, Error> {
        self.run_traced(&mut NoTracer)
    }

    /// Runs until an exit, calling `tracer` before every instruction.
    pub fn run_traced<T: Tracer>(&mut self, tracer: &mut T) -> Result<Exit, Error> {
        loop {
            if let Some(exit) = self.execute::<T, false>(tracer)? {
                return Ok(exit);
            }
        }
    }

    /// Runs one instruction (charging its block first if due). `None` means
    /// it completed and execution continues at [`Vm::pc`].
    pub fn step(&mut self) -> Result<Option<Exit>, Error> {
        self.execute::<NoTracer, true>(&mut NoTracer)
    }

    /// Runs one instruction with a tracer; see [`Vm::step`].
    pub fn step_traced<T: Tracer>(&mut self, tracer: &mut T) -> Result<Option<Exit>, Error> {
        self.execute::<T, true>(tracer)
    }

    /// Resolves where a run starts; see [`Cursor::start`].
    fn start(&mut self) -> Result<Result<usize, Exit>, Error> {
        self.cur.start(self.program, &mut self.gas)
    }

    #[inline(always)]
    fn execute<T: Tracer, const STEP: bool>(
        &mut self,
        tracer: &mut T,
    ) -> Result<Option<Exit>, Error> {
        let mut i = match self.start()? {
            Ok(i) => i,
            Err(exit) => return Ok(Some(exit)),
        };
        let p = self.program;
        let c = p.compiled();
        let ops = &c.ops[..];
        let costs = &c.costs[..];
        let len = ops.len();
        let jt = &p.jump_table[..];
        // Hot state in locals; register 13 is the always-zero base register.
        // 256 slots so that a u8 register index needs no bounds check.
        let mut regs = [0u64; 256];
        regs[..13].copy_from_slice(&self.regs);
        let mut gas = self.gas;
        let m = &mut self.memory;

        macro_rules! exit_at {
            ($at:expr, $e:expr) => {{
                self.regs.copy_from_slice(&regs[..13]);
                self.gas = gas;
                self.cur.pc = c.op_pc[$at];
                return Ok(Some($e));
            }};
        }
        // The blocks run one at a time from op `i`. Every block ends with a
        // terminator or trap, which leaves the inner loop, so it never runs
        // into the next block.
        'block: loop {
            let mut it = ops[i..].iter();
            // The op being executed (only needed on exits and jumps).
            macro_rules! cur {
                () => {
                    len - it.len() - 1
                };
            }
            macro_rules! exit {
                ($e:expr) => {
                    exit_at!(cur!(), $e)
                };
            }
            macro_rules! finish {
                ($e:expr) => {{
                    self.cur.state = State::Finished;
                    exit!($e)
                }};
            }
            macro_rules! mem {
                ($e:expr) => {
                    match $e {
                        Ok(v) => v,
                        Err(Trap::Panic) => finish!(Exit::Panic),
                        Err(Trap::Fault(a)) => exit!(Exit::PageFault(a)),
                    }
                };
            }
            // Enter the block starting at op `t`, charging its cost (GP 0.8:
            // the terminator clears the flag; the next block is paid on entry).
            macro_rules! goto {
                ($t:expr) => {{
                    let t: usize = $t;
                    if STEP {
                        // Ψ₁: one instruction per step; the next step pays.
                        if ops[t].h != H::PanicAt {
                            self.regs.copy_from_slice(&regs[..13]);
                            self.gas = gas;
                            self.cur.pc = c.op_pc[t];
                            self.cur.charged = false;
                            return Ok(None);
                        }
                    } else {
                        let cost = costs[t];
                        if gas < cost {
                            self.cur.charged = false;
                            exit_at!(t, Exit::OutOfGas);
                        }
                        gas -= cost;
                    }
                    i = t;
                    continue 'block;
                }};
            }
            macro_rules! djump {
                ($addr:expr) => {{
                    let addr: u32 = $addr;
                    if addr == HALT_ADDRESS {
                        finish!(Exit::Halt);
                    }
                    // Entry k of the table is address 2(k + 1); 0 and odd
                    // addresses are invalid (GP djump, Z_A = 2).
                    let k = (addr >> 1).wrapping_sub(1) as usize;
                    match jt.get(k) {
                        Some(&t) if addr & 1 == 0 && t != INVALID_TARGET => goto!(t as usize),
                        _ => finish!(Exit::Panic),
                    }
                }};
            }
            macro_rules! alu {
                ($dst:expr, $value:expr $(,)?) => {{
                    let v = $value;
                    regs[$dst] = v;
                }};
            }
            macro_rules! branch {
                ($cond:expr, $op:expr) => {
                    if $cond {
                        goto!($op.z as usize)
                    } else {
                        goto!(cur!() + 1)
                    }
                };
            }

            while let Some(op) = it.next() {
                if T::ENABLED && cur!() < p.len() {
                    let mut r13 = [0u64; 13];
                    r13.copy_from_slice(&regs[..13]);
                    tracer.instruction(c.op_pc[cur!()], &p.insts()[cur!()], &r13, gas);
                }
                match op.h {
                    H::Trap => finish!(Exit::Panic),
                    H::PanicAt => finish!(Exit::Panic),
                    H::Next => {}
                    H::Fallthrough => goto!(cur!() + 1),
                    H::Ecalli => {
                        self.cur.state = State::AfterHostCall;
                        exit!(Exit::HostCall(op.x));
                    }
                    H::Jump => goto!(op.z as usize),
                    H::JumpInd => djump!(regs[op.ra()].wrapping_add(op.imm()) as u32),
                    H::LoadImmJump => {
                        regs[op.ra()] = op.imm();
                        goto!(op.z as usize);
                    }
                    H::LoadImmJumpInd => {
                        // The target uses B before A is written (they may be one register).
                        let target = regs[op.rb()].wrapping_add(sext(op.y)) as u32;
                        regs[op.ra()] = op.imm();
                        djump!(target);
                    }
                    H::Sbrk => {
                        regs[op.rd()] = sbrk(&mut self.heap, m, regs[op.ra()]);
                    }
                    H::LoadImm64 => {
                        regs[op.ra()] = u64::from(op.x) | (u64::from(op.y) << 32);
                    }
                    H::LoadU8 => {
                        regs[op.ra()] = u64::from(mem!(m.load::<1>(ea(regs[op.rb()], op.x)))[0]);
                    }
                    H::LoadI8 => {
                        regs[op.ra()] = mem!(m.load::<1>(ea(regs[op.rb()], op.x)))[0] as i8 as u64;
                    }
                    H::LoadU16 => {
                        regs[op.ra()] =
                            u64::from(u16::from_le_bytes(mem!(m.load(ea(regs[op.rb()], op.x)))));
                    }
                    H::LoadI16 => {
                        regs[op.ra()] =
                            i16::from_le_bytes(mem!(m.load(ea(regs[op.rb()], op.x)))) as u64;
                    }
                    H::LoadU32 => {
                        regs[op.ra()] =
                            u64::from(u32::from_le_bytes(mem!(m.load(ea(regs[op.rb()], op.x)))));
                    }
                    H::LoadI32 => {
                        regs[op.ra()] =
                            i32::from_le_bytes(mem!(m.load(ea(regs[op.rb()], op.x)))) as u64;
                    }
                    H::LoadU64 => {
                        regs[op.ra()] = u64::from_le_bytes(mem!(m.load(ea(regs[op.rb()], op.x))));
                    }
                    H::StoreU8 => {
                        mem!(m.store(ea(regs[op.rb()], op.x), [regs[op.ra()] as u8]));
                    }
                    H::StoreU16 => {
                        mem!(m.store(
                            ea(regs[op.rb()], op.x),
                            (regs[op.ra()] as u16).to_le_bytes()
                        ));
                    }
                    H::StoreU32 => {
                        mem!(m.store(
                            ea(regs[op.rb()], op.x),
                            (regs[op.ra()] as u32).to_le_bytes()
                        ));
                    }
                    H::StoreU64 => {
                        mem!(m.store(ea(regs[op.rb()], op.x), regs[op.ra()].to_le_bytes()));
                    }
                    H::StoreImmU8 => {
                        mem!(m.store(ea(regs[op.rb()], op.x), [op.y as u8]));
                    }
                    H::StoreImmU16 => {
                        mem!(m.store(ea(regs[op.rb()], op.x), (op.y as u16).to_le_bytes()));
                    }
                    H::StoreImmU32 => {
                        mem!(m.store(ea(regs[op.rb()], op.x), op.y.to_le_bytes()));
                    }
                    H::StoreImmU64 => {
                        mem!(m.store(ea(regs[op.rb()], op.x), sext(op.y).to_le_bytes()));
                    }
                    H::BranchEqImm => branch!(regs[op.ra()] == op.imm(), op),
                    H::BranchNeImm => branch!(regs[op.ra()] != op.imm(), op),
                    H::BranchLtUImm => branch!(regs[op.ra()] < op.imm(), op),
                    H::BranchLeUImm => branch!(regs[op.ra()] <= op.imm(), op),
                    H::BranchGeUImm => branch!(regs[op.ra()] >= op.imm(), op),
                    H::BranchGtUImm => branch!(regs[op.ra()] > op.imm(), op),
                    H::BranchLtSImm => branch!((regs[op.ra()] as i64) < (op.imm() as i64), op),
                    H::BranchLeSImm => branch!((regs[op.ra()] as i64) <= (op.imm() as i64), op),
                    H::BranchGeSImm => branch!((regs[op.ra()] as i64) >= (op.imm() as i64), op),
                    H::BranchGtSImm => branch!((regs[op.ra()] as i64) > (op.imm() as i64), op),
                    H::BranchEq => branch!(regs[op.ra()] == regs[op.rb()], op),
                    H::BranchNe => branch!(regs[op.ra()] != regs[op.rb()], op),
                    H::BranchLtU => branch!(regs[op.ra()] < regs[op.rb()], op),
                    H::BranchLtS => branch!((regs[op.ra()] as i64) < (regs[op.rb()] as i64), op),
                    H::BranchGeU => branch!(regs[op.ra()] >= regs[op.rb()], op),
                    H::BranchGeS => branch!((regs[op.ra()] as i64) >= (regs[op.rb()] as i64), op),
                    // d = f(a)
                    H::MoveReg => alu!(op.rd(), regs[op.ra()]),
                    H::CountSetBits64 => alu!(op.rd(), u64::from(regs[op.ra()].count_ones())),
                    H::CountSetBits32 => {
                        alu!(op.rd(), u64::from((regs[op.ra()] as u32).count_ones()))
                    }
                    H::LeadingZeroBits64 => alu!(op.rd(), u64::from(regs[op.ra()].leading_zeros())),
                    H::LeadingZeroBits32 => {
                        alu!(op.rd(), u64::from((regs[op.ra()] as u32).leading_zeros()))
                    }
                    H::TrailingZeroBits64 => {
                        alu!(op.rd(), u64::from(regs[op.ra()].trailing_zeros()))
                    }
                    H::TrailingZeroBits32 => {
                        alu!(op.rd(), u64::from((regs[op.ra()] as u32).trailing_zeros()))
                    }
                    H::SignExtend8 => alu!(op.rd(), regs[op.ra()] as u8 as i8 as u64),
                    H::SignExtend16 => alu!(op.rd(), regs[op.ra()] as u16 as i16 as u64),
                    H::ZeroExtend16 => alu!(op.rd(), u64::from(regs[op.ra()] as u16)),
                    H::ReverseBytes => alu!(op.rd(), regs[op.ra()].swap_bytes()),
                    // a = f(b, imm)
                    H::AddImm32 => alu!(op.ra(), s32(regs[op.rb()].wrapping_add(op.imm()))),
                    H::AndImm => alu!(op.ra(), regs[op.rb()] & op.imm()),
                    H::XorImm => alu!(op.ra(), regs[op.rb()] ^ op.imm()),
                    H::OrImm => alu!(op.ra(), regs[op.rb()] | op.imm()),
                    H::MulImm32 => alu!(op.ra(), s32(regs[op.rb()].wrapping_mul(op.imm()))),
                    H::SetLtUImm => alu!(op.ra(), u64::from(regs[op.rb()] < op.imm())),
                    H::SetLtSImm => alu!(
                        op.ra(),
                        u64::from((regs[op.rb()] as i64) < (op.imm() as i64))
                    ),
                    H::ShloLImm32 => alu!(op.ra(), s32(regs[op.rb()] << (op.imm() % 32))),
                    H::ShloRImm32 => alu!(
                        op.ra(),
                        s32(u64::from(regs[op.rb()] as u32 >> (op.imm() % 32)))
                    ),
                    H::SharRImm32 => alu!(
                        op.ra(),
                        ((regs[op.rb()] as i32) >> (op.imm() % 32)) as i64 as u64
                    ),
                    H::NegAddImm32 => alu!(op.ra(), s32(op.imm().wrapping_sub(regs[op.rb()]))),
                    H::SetGtUImm => alu!(op.ra(), u64::from(regs[op.rb()] > op.imm())),
                    H::SetGtSImm => alu!(
                        op.ra(),
                        u64::from((regs[op.rb()] as i64) > (op.imm() as i64))
                    ),
                    H::ShloLImmAlt32 => alu!(op.ra(), s32(op.imm() << (regs[op.rb()] % 32))),
                    H::ShloRImmAlt32 => alu!(
                        op.ra(),
                        s32(u64::from(op.imm() as u32 >> (regs[op.rb()] % 32)))
                    ),
                    H::SharRImmAlt32 => alu!(
                        op.ra(),
                        ((op.imm() as i32) >> (regs[op.rb()] % 32)) as i64 as u64
                    ),
                    H::CmovIzImm => {
                        if regs[op.rb()] == 0 {
                            regs[op.ra()] = op.imm();
                        }
                    }
                    H::CmovNzImm => {
                        if regs[op.rb()] != 0 {
                            regs[op.ra()] = op.imm();
                        }
                    }
                    H::AddImm64 => alu!(op.ra(), regs[op.rb()].wrapping_add(op.imm())),
                    H::MulImm64 => alu!(op.ra(), regs[op.rb()].wrapping_mul(op.imm())),
                    H::ShloLImm64 => alu!(op.ra(), regs[op.rb()] << (op.imm() % 64)),
                    H::ShloRImm64 => alu!(op.ra(), regs[op.rb()] >> (op.imm() % 64)),
                    H::SharRImm64 => {
                        alu!(op.ra(), ((regs[op.rb()] as i64) >> (op.imm() % 64)) as u64)
                    }
                    H::NegAddImm64 => alu!(op.ra(), op.imm().wrapping_sub(regs[op.rb()])),
                    H::ShloLImmAlt64 => alu!(op.ra(), op.imm() << (regs[op.rb()] % 64)),
                    H::ShloRImmAlt64 => alu!(op.ra(), op.imm() >> (regs[op.rb()] % 64)),
                    H::SharRImmAlt64 => {
                        alu!(op.ra(), ((op.imm() as i64) >> (regs[op.rb()] % 64)) as u64)
                    }
                    H::RotR64Imm => {
                        alu!(op.ra(), regs[op.rb()].rotate_right((op.imm() % 64) as u32))
                    }
                    H::RotR64ImmAlt => {
                        alu!(op.ra(), op.imm().rotate_right((regs[op.rb()] % 64) as u32))
                    }
                    H::RotR32Imm => alu!(
                        op.ra(),
                        s32(u64::from(
                            (regs[op.rb()] as u32).rotate_right((op.imm() % 32) as u32)
                        ))
                    ),
                    H::RotR32ImmAlt => {
                        alu!(
                            op.ra(),
                            s32(u64::from(
                                (op.imm() as u32).rotate_right((regs[op.rb()] % 32) as u32)
                            ))
                        )
                    }
                    // d = f(a, b)
                    H::Add32 => alu!(op.rd(), s32(regs[op.ra()].wrapping_add(regs[op.rb()]))),
                    H::Sub32 => alu!(op.rd(), s32(regs[op.ra()].wrapping_sub(regs[op.rb()]))),
                    H::Mul32 => alu!(op.rd(), s32(regs[op.ra()].wrapping_mul(regs[op.rb()]))),
                    H::DivU32 => alu!(op.rd(), div_u32(regs[op.ra()], regs[op.rb()])),
                    H::DivS32 => alu!(op.rd(), div_s32(regs[op.ra()], regs[op.rb()])),
                    H::RemU32 => alu!(op.rd(), rem_u32(regs[op.ra()], regs[op.rb()])),
                    H::RemS32 => alu!(op.rd(), rem_s32(regs[op.ra()], regs[op.rb()])),
                    H::ShloL32 => alu!(op.rd(), s32(regs[op.ra()] << (regs[op.rb()] % 32))),
                    H::ShloR32 => alu!(
                        op.rd(),
                        s32(u64::from(regs[op.ra()] as u32 >> (regs[op.rb()] % 32)))
                    ),
                    H::SharR32 => alu!(
                        op.rd(),
                        ((regs[op.ra()] as i32) >> (regs[op.rb()] % 32)) as i64 as u64
                    ),
                    H::Add64 => alu!(op.rd(), regs[op.ra()].wrapping_add(regs[op.rb()])),
                    H::Sub64 => alu!(op.rd(), regs[op.ra()].wrapping_sub(regs[op.rb()])),
                    H::Mul64 => alu!(op.rd(), regs[op.ra()].wrapping_mul(regs[op.rb()])),
                    H::DivU64 => alu!(
                        op.rd(),
                        regs[op.ra()].checked_div(regs[op.rb()]).unwrap_or(u64::MAX)
                    ),
                    H::DivS64 => alu!(op.rd(), div_s64(regs[op.ra()], regs[op.rb()])),
                    H::RemU64 => alu!(
                        op.rd(),
                        regs[op.ra()]
                            .checked_rem(regs[op.rb()])
                            .unwrap_or(regs[op.ra()])
                    ),
                    H::RemS64 => alu!(op.rd(), rem_s64(regs[op.ra()], regs[op.rb()])),
                    H::ShloL64 => alu!(op.rd(), regs[op.ra()] << (regs[op.rb()] % 64)),
                    H::ShloR64 => alu!(op.rd(), regs[op.ra()] >> (regs[op.rb()] % 64)),
                    H::SharR64 => alu!(
                        op.rd(),
                        ((regs[op.ra()] as i64) >> (regs[op.rb()] % 64)) as u64
                    ),
                    H::And => alu!(op.rd(), regs[op.ra()] & regs[op.rb()]),
                    H::Xor => alu!(op.rd(), regs[op.ra()] ^ regs[op.rb()]),
                    H::Or => alu!(op.rd(), regs[op.ra()] | regs[op.rb()]),
                    H::MulUpperSS => alu!(
                        op.rd(),
                        ((i128::from(regs[op.ra()] as i64) * i128::from(regs[op.rb()] as i64))
                            >> 64) as u64,
                    ),
                    H::MulUpperUU => {
                        alu!(
                            op.rd(),
                            ((u128::from(regs[op.ra()]) * u128::from(regs[op.rb()])) >> 64) as u64
                        )
                    }
                    H::MulUpperSU => alu!(
                        op.rd(),
                        (i128::from(regs[op.ra()] as i64).wrapping_mul(i128::from(regs[op.rb()]))
                            >> 64) as u64,
                    ),
                    H::SetLtU => alu!(op.rd(), u64::from(regs[op.ra()] < regs[op.rb()])),
                    H::SetLtS => alu!(
                        op.rd(),
                        u64::from((regs[op.ra()] as i64) < (regs[op.rb()] as i64))
                    ),
                    H::CmovIz => {
                        if regs[op.rb()] == 0 {
                            regs[op.rd()] = regs[op.ra()];
                        }
                    }
                    H::CmovNz => {
                        if regs[op.rb()] != 0 {
                            regs[op.rd()] = regs[op.ra()];
                        }
                    }
                    H::RotL64 => alu!(
                        op.rd(),
                        regs[op.ra()].rotate_left((regs[op.rb()] % 64) as u32)
                    ),
                    H::RotL32 => {
                        alu!(
                            op.rd(),
                            s32(u64::from(
                                (regs[op.ra()] as u32).rotate_left((regs[op.rb()] % 32) as u32)
                            ))
                        )
                    }
                    H::RotR64 => alu!(
                        op.rd(),
                        regs[op.ra()].rotate_right((regs[op.rb()] % 64) as u32)
                    ),
                    H::RotR32 => {
                        alu!(
                            op.rd(),
                            s32(u64::from(
                                (regs[op.ra()] as u32).rotate_right((regs[op.rb()] % 32) as u32)
                            ))
                        )
                    }
                    H::AndInv => alu!(op.rd(), regs[op.ra()] & !regs[op.rb()]),
                    H::OrInv => alu!(op.rd(), regs[op.ra()] | !regs[op.rb()]),
                    H::Xnor => alu!(op.rd(), !(regs[op.ra()] ^ regs[op.rb()])),
                    H::Max => alu!(
                        op.rd(),
                        (regs[op.ra()] as i64).max(regs[op.rb()] as i64) as u64
                    ),
                    H::MaxU => alu!(op.rd(), regs[op.ra()].max(regs[op.rb()])),
                    H::Min => alu!(
                        op.rd(),
                        (regs[op.ra()] as i64).min(regs[op.rb()] as i64) as u64
                    ),
                    H::MinU => alu!(op.rd(), regs[op.ra()].min(regs[op.rb()])),
                }
                if STEP {
                    // One instruction done; the block continues.
                    self.regs.copy_from_slice(&regs[..13]);
                    self.gas = gas;
                    self.cur.pc = c.op_pc[cur!() + 1];
                    self.cur.charged = true;
                    return Ok(None);
                }
            }
            // Only reached past the last op, which cannot happen: the last op
            // is a terminator, a trap or a panic stub.
            finish!(Exit::Panic);
        }
    }
}

/// `(base + imm) mod 2^32`: an effective address.
#[inline(always)]
fn ea(base: u64, imm: u32) -> u32 {
    base.wrapping_add(sext(imm)) as u32
}

/// The GP's 32-bit result rule: keep the low 32 bits, sign-extend from bit 31.
#[inline(always)]
fn s32(x: u64) -> u64 {
    x as u32 as i32 as i64 as u64
}

fn div_u32(x: u64, y: u64) -> u64 {
    let (x, y) = (x as u32, y as u32);
    x.checked_div(y).map_or(u64::MAX, |q| s32(u64::from(q)))
}

fn div_s32(x: u64, y: u64) -> u64 {
    let (x, y) = (x as i32, y as i32);
    if y == 0 {
        u64::MAX
    } else {
        // i32::MIN / -1 wraps to i32::MIN, as the GP requires.
        x.wrapping_div(y) as i64 as u64
    }
}

fn rem_u32(x: u64, y: u64) -> u64 {
    let (x, y) = (x as u32, y as u32);
    s32(u64::from(x.checked_rem(y).unwrap_or(x)))
}

fn rem_s32(x: u64, y: u64) -> u64 {
    let (x, y) = (x as i32, y as i32);
    if y == 0 {
        x as i64 as u64
    } else {
        // i32::MIN % -1 wraps to 0, as the GP requires.
        x.wrapping_rem(y) as i64 as u64
    }
}

fn div_s64(x: u64, y: u64) -> u64 {
    if y == 0 {
        u64::MAX
    } else {
        (x as i64).wrapping_div(y as i64) as u64
    }
}

fn rem_s64(x: u64, y: u64) -> u64 {
    if y == 0 {
        x
    } else {
        (x as i64).wrapping_rem(y as i64) as u64
    }
}

/// GP 0.7.2 `sbrk`: grows the heap by `size` bytes and returns the old end
/// (0 if it cannot grow or there is no heap; with `size = 0` it returns the
/// current end). New whole pages become writable. No vector covers `sbrk`;
/// this follows the allocator reading that programs built for 0.7 expect.
fn sbrk<M: Memory>(heap: &mut Option<Heap>, m: &mut M, size: u64) -> u64 {
    let Some(h) = heap.as_mut() else { return 0 };
    if size == 0 {
        return u64::from(h.top);
    }
    let old = h.top;
    let new = match u64::from(old).checked_add(size) {
        Some(new) if new <= u64::from(h.limit) => new,
        _ => return 0,
    };
    let first_page = old.div_ceil(PAGE_SIZE);
    let end_page = (new as u32).div_ceil(PAGE_SIZE);
    if end_page > first_page {
        m.set_access(first_page, end_page - first_page, Access::Write);
    }
    h.top = new as u32;
    u64::from(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{run_with_host, Host, HostAction};
    use crate::memory::PagedMemory;
    use alloc::vec::Vec;

    fn program(text: &str, profile: Profile) -> Program {
        let bytes = crate::asm::assemble(text, profile).unwrap_or_else(|e| panic!("{e}"));
        let mut p = Program::from_bytes(&bytes, profile).unwrap_or_else(|e| panic!("{e}"));
        // These tests count gas in instructions.
        p.set_gas_model(&crate::gas::Naive)
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn halt_regs(vm: &mut Vm<'_, PagedMemory>) {
        vm.set_reg(0, u64::from(HALT_ADDRESS));
    }

    #[test]
    fn host_call_resumes_after_the_ecalli_without_charging_again() {
        let p = program("ecalli 3\nload_imm r7, 5\njump_ind r0, 0\n", Profile::V0_8);
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 100);
        halt_regs(&mut vm);
        assert_eq!(vm.run(), Ok(Exit::HostCall(3)));
        assert_eq!((vm.pc(), vm.gas()), (0, 97)); // one block of 3 instructions
        assert_eq!(vm.run(), Ok(Exit::Halt));
        assert_eq!((vm.reg(7), vm.gas(), vm.pc()), (5, 97, 5));
        assert_eq!(vm.run(), Err(Error::Finished));
    }

    #[test]
    fn page_fault_is_resumable_once_the_page_is_mapped() {
        let p = program("load_imm r8, 0x20010\nstore_ind_u32 r7, r8, 0\nload_ind_u32 r9, r8, 0\njump_ind r0, 0\n", Profile::V0_8);
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 1000);
        halt_regs(&mut vm);
        vm.set_reg(7, 0xDEAD_BEEF);
        assert_eq!(vm.run(), Ok(Exit::PageFault(0x20000)));
        assert_eq!((vm.pc(), vm.gas(), vm.reg(9)), (5, 996, 0));
        // Nothing was written; the fault does not clear the block flag.
        assert!(vm.gas_charged());
        vm.memory_mut().set_access(0x20, 1, Access::Read);
        assert_eq!(
            vm.run(),
            Ok(Exit::PageFault(0x20000)),
            "read-only page cannot be written"
        );
        vm.memory_mut().set_access(0x20, 1, Access::Write);
        assert_eq!(vm.run(), Ok(Exit::Halt));
        assert_eq!((vm.reg(9), vm.gas()), (0xDEAD_BEEF, 996));
    }

    #[test]
    fn out_of_gas_changes_nothing_and_is_resumable() {
        let p = program(
            "load_imm r7, 1\njump next\nnext:\nload_imm r7, 2\nload_imm r8, 3\njump_ind r0, 0\n",
            Profile::V0_8,
        );
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 4);
        halt_regs(&mut vm);
        assert_eq!(vm.run(), Ok(Exit::OutOfGas));
        // First block (2 instructions) paid; the second (3) is not affordable.
        assert_eq!((vm.pc(), vm.gas(), vm.reg(7), vm.reg(8)), (5, 2, 1, 0));
        assert!(!vm.gas_charged());
        vm.set_gas(3);
        assert_eq!(vm.run(), Ok(Exit::Halt));
        assert_eq!((vm.gas(), vm.reg(7), vm.reg(8)), (0, 2, 3));
    }

    #[test]
    fn stepping_matches_running() {
        let text = "load_imm r7, 10\nfallthrough\nloop:\nadd_imm_64 r7, r7, -1\nbranch_ne_imm r7, 0, loop\njump_ind r0, 0\n";
        let p = program(text, Profile::V0_8);
        let mut run = Vm::new(&p, PagedMemory::new(), 0, 1000);
        halt_regs(&mut run);
        assert_eq!(run.run(), Ok(Exit::Halt));
        let mut step = Vm::new(&p, PagedMemory::new(), 0, 1000);
        halt_regs(&mut step);
        let mut steps = 0;
        let exit = loop {
            steps += 1;
            if let Some(exit) = step.step().unwrap() {
                break exit;
            }
        };
        assert_eq!(exit, Exit::Halt);
        assert_eq!(
            (step.regs(), step.gas(), step.pc()),
            (run.regs(), run.gas(), run.pc())
        );
        assert_eq!(steps, 2 + 10 * 2 + 1);
    }

    #[test]
    fn tracer_sees_every_instruction() {
        struct Pcs(Vec<u32>);
        impl Tracer for Pcs {
            fn instruction(&mut self, pc: u32, _: &Instruction, _: &[u64; 13], _: u64) {
                self.0.push(pc);
            }
        }
        let p = program("load_imm r7, 2\nfallthrough\nloop:\nadd_imm_64 r7, r7, -1\nbranch_ne_imm r7, 0, loop\ntrap\n", Profile::V0_8);
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 1000);
        let mut t = Pcs(Vec::new());
        assert_eq!(vm.run_traced(&mut t), Ok(Exit::Panic));
        assert_eq!(t.0, [0, 3, 4, 7, 4, 7, 10]);
        assert_eq!(vm.pc(), 10);
    }

    #[test]
    fn host_loop_serves_calls_until_halt() {
        struct Counter(u32);
        impl Host<PagedMemory> for Counter {
            fn ecalli(&mut self, id: u32, vm: &mut Vm<'_, PagedMemory>) -> HostAction {
                self.0 += 1;
                vm.set_reg(7, vm.reg(7) + u64::from(id));
                if vm.reg(7) > 100 {
                    HostAction::Panic
                } else {
                    HostAction::Continue
                }
            }
        }
        let p = program(
            "ecalli 1\necalli 2\necalli 3\njump_ind r0, 0\n",
            Profile::V0_8,
        );
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 1000);
        halt_regs(&mut vm);
        let mut host = Counter(0);
        assert_eq!(run_with_host(&mut vm, &mut host), Ok(Exit::Halt));
        assert_eq!((host.0, vm.reg(7)), (3, 6));

        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 1000);
        vm.set_reg(7, 99);
        assert_eq!(run_with_host(&mut vm, &mut Counter(0)), Ok(Exit::Panic));
        assert_eq!(vm.pc(), 2, "reported at the ecalli that ended the run");
        assert!(vm.is_finished());
    }

    #[test]
    fn v0_7_runs_into_the_implicit_trap_past_the_end() {
        let p = program("load_imm r7, 1\nadd_imm_64 r7, r7, 1\n", Profile::V0_7);
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 100);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!((vm.pc(), vm.reg(7), vm.gas()), (6, 2, 97));
    }

    #[test]
    fn v0_8_branch_with_a_bad_fall_through_panics_even_when_taken() {
        // The branch is the last instruction: its fall-through is not in ϖ.
        let p = program(
            "start:\nload_imm r7, 0\nbranch_eq_imm r7, 0, start\n",
            Profile::V0_8,
        );
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 100);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!(vm.pc(), 2);
        // 0.7 only checks the taken target: it loops until gas runs out.
        let p = program(
            "start:\nload_imm r7, 0\nbranch_eq_imm r7, 0, start\n",
            Profile::V0_7,
        );
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 100);
        assert_eq!(vm.run(), Ok(Exit::OutOfGas));
    }

    #[test]
    fn v0_7_sbrk_grows_the_heap() {
        let p = program(
            "sbrk r8, r7\nsbrk r9, r10\nstore_ind_u8 r7, r8, 4095\ntrap\n",
            Profile::V0_7,
        );
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 100);
        vm.set_heap(Some(Heap {
            top: 0x30000,
            limit: 0x40000,
        }));
        vm.set_reg(7, 4096);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!((vm.reg(8), vm.reg(9)), (0x30000, 0x31000));
        assert_eq!(vm.memory().peek(0x30FFF), 0);
        assert_eq!(vm.memory().page_access(0x30), Access::Write);
        assert_eq!(vm.memory().page_access(0x31), Access::None);
    }

    #[test]
    fn regression_sbrk_overflow_fails_instead_of_wrapping() {
        // Found by the fuzz test: a huge size overflowed the new heap top.
        let p = program("sbrk r8, r7\ntrap\n", Profile::V0_7);
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 100);
        vm.set_heap(Some(Heap {
            top: 0x30000,
            limit: 0x40000,
        }));
        vm.set_reg(7, u64::MAX - 0xFFFF);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!(vm.reg(8), 0);
        assert_eq!(
            vm.heap(),
            Some(Heap {
                top: 0x30000,
                limit: 0x40000
            })
        );
    }

    #[test]
    fn entry_that_is_not_an_instruction_panics_without_charging() {
        let p = program("load_imm r7, 1\njump_ind r0, 0\n", Profile::V0_8);
        let mut vm = Vm::new(&p, PagedMemory::new(), 1, 100);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!(vm.gas(), 100);
    }
}
