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
use crate::program::{flags, Program, INVALID_TARGET};

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
    pc: u32,
    gas: u64,
    charged: bool,
    state: State,
    heap: Option<Heap>,
}

impl<'p, M: Memory> Vm<'p, M> {
    /// A machine at `pc` with `gas`, zeroed registers and `memory`.
    pub fn new(program: &'p Program, memory: M, pc: u32, gas: u64) -> Self {
        Vm {
            program,
            memory,
            regs: [0; 13],
            pc,
            gas,
            charged: false,
            state: State::Ready,
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
        self.pc
    }
    /// Moves execution to `pc` (a host may do this after a host call).
    pub fn set_pc(&mut self, pc: u32) {
        self.pc = pc;
        self.state = State::Ready;
    }
    pub fn gas(&self) -> u64 {
        self.gas
    }
    pub fn set_gas(&mut self, gas: u64) {
        self.gas = gas;
    }
    /// Whether the current block's gas is already paid (the GP's ϱ̄).
    pub fn gas_charged(&self) -> bool {
        self.charged
    }
    pub fn set_gas_charged(&mut self, charged: bool) {
        self.charged = charged;
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
        self.state = State::Finished;
    }

    /// Whether the machine halted or panicked.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
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

    fn start_index(&mut self) -> Result<Result<usize, Exit>, Error> {
        let p = self.program;
        match self.state {
            State::Finished => Err(Error::Finished),
            State::AfterHostCall => {
                self.state = State::Ready;
                // pc is the ecalli, a real instruction; the next entry exists
                // because an ecalli is never last in a valid program (0.8) or
                // is followed by an implicit trap (0.7).
                match p.index_of(self.pc) {
                    Some(i) if i + 1 < p.pcs.len() => {
                        self.pc = p.pcs[i + 1];
                        Ok(Ok(i + 1))
                    }
                    _ => {
                        self.state = State::Finished;
                        Ok(Err(Exit::Panic))
                    }
                }
            }
            State::Ready => match p.index_of(self.pc) {
                Some(i)
                    if p.flags[i] & flags::IMPLICIT_TRAP == 0 || p.profile() == Profile::V0_7 =>
                {
                    Ok(Ok(i))
                }
                _ => {
                    // Not an instruction start. GP 0.8: deblob(p, ı) fails, so
                    // the result is panic with gas and state unchanged. GP 0.7:
                    // the bitmask says this is no opcode, which traps.
                    self.state = State::Finished;
                    Ok(Err(Exit::Panic))
                }
            },
        }
    }

    #[inline(always)]
    fn execute<T: Tracer, const STEP: bool>(
        &mut self,
        tracer: &mut T,
    ) -> Result<Option<Exit>, Error> {
        let mut idx = match self.start_index()? {
            Ok(i) => i,
            Err(exit) => return Ok(Some(exit)),
        };
        let p = self.program;
        let strict = p.profile() == Profile::V0_8;

        macro_rules! exit {
            ($e:expr) => {{
                self.pc = p.pcs[idx];
                return Ok(Some($e));
            }};
        }
        macro_rules! panic_exit {
            () => {{
                self.state = State::Finished;
                exit!(Exit::Panic)
            }};
        }
        macro_rules! mem {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(Trap::Panic) => panic_exit!(),
                    Err(Trap::Fault(a)) => exit!(Exit::PageFault(a)),
                }
            };
        }
        macro_rules! jump_to {
            ($t:expr) => {{
                let t: u32 = $t;
                if t == INVALID_TARGET {
                    panic_exit!();
                }
                self.charged = false;
                idx = t as usize;
            }};
        }
        macro_rules! branch {
            ($cond:expr) => {{
                let t = p.targets[idx];
                if $cond {
                    jump_to!(t);
                } else {
                    // GP 0.8: both the target and the fall-through must be in ϖ,
                    // taken or not (Program resolves both into `t`).
                    if strict && t == INVALID_TARGET {
                        panic_exit!();
                    }
                    self.charged = false;
                    idx += 1;
                }
            }};
        }
        macro_rules! djump {
            ($addr:expr) => {{
                let a: u32 = $addr;
                if a == HALT_ADDRESS {
                    self.state = State::Finished;
                    exit!(Exit::Halt);
                }
                let n = (a / 2) as usize;
                if a == 0 || a % 2 == 1 || n > p.jump_table.len() {
                    panic_exit!();
                }
                jump_to!(p.jump_table[n - 1]);
            }};
        }

        loop {
            if !self.charged {
                let cost = p.block_costs[p.block_of[idx] as usize];
                if self.gas < cost {
                    exit!(Exit::OutOfGas);
                }
                self.gas -= cost;
                self.charged = true;
            }
            let inst = p.insts[idx];
            if T::ENABLED {
                tracer.instruction(p.pcs[idx], &inst, &self.regs, self.gas);
            }
            let r = &mut self.regs;
            let m = &mut self.memory;
            match inst {
                Instruction::Trap(_) => panic_exit!(),
                Instruction::Fallthrough(_) => {
                    if strict {
                        // GP 0.8: sjump to the next instruction.
                        jump_to!(p.targets[idx]);
                    } else {
                        self.charged = false;
                        idx += 1;
                    }
                }
                Instruction::Unlikely(_) => idx += 1,
                Instruction::Ecalli(a) => {
                    self.state = State::AfterHostCall;
                    exit!(Exit::HostCall(a.imm));
                }
                Instruction::LoadImm64(a) => {
                    r[a.a.index()] = a.imm;
                    idx += 1;
                }
                Instruction::StoreImmU8(a) => {
                    mem!(m.store(a.x, [a.y as u8]));
                    idx += 1;
                }
                Instruction::StoreImmU16(a) => {
                    mem!(m.store(a.x, (a.y as u16).to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreImmU32(a) => {
                    mem!(m.store(a.x, a.y.to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreImmU64(a) => {
                    mem!(m.store(a.x, sext(a.y).to_le_bytes()));
                    idx += 1;
                }
                Instruction::Jump(_) => jump_to!(p.targets[idx]),
                Instruction::JumpInd(a) => djump!(r[a.a.index()].wrapping_add(sext(a.imm)) as u32),
                Instruction::LoadImm(a) => {
                    r[a.a.index()] = sext(a.imm);
                    idx += 1;
                }
                Instruction::LoadU8(a) => {
                    r[a.a.index()] = u64::from(mem!(m.load::<1>(a.imm))[0]);
                    idx += 1;
                }
                Instruction::LoadI8(a) => {
                    r[a.a.index()] = mem!(m.load::<1>(a.imm))[0] as i8 as u64;
                    idx += 1;
                }
                Instruction::LoadU16(a) => {
                    r[a.a.index()] = u64::from(u16::from_le_bytes(mem!(m.load(a.imm))));
                    idx += 1;
                }
                Instruction::LoadI16(a) => {
                    r[a.a.index()] = i16::from_le_bytes(mem!(m.load(a.imm))) as u64;
                    idx += 1;
                }
                Instruction::LoadU32(a) => {
                    r[a.a.index()] = u64::from(u32::from_le_bytes(mem!(m.load(a.imm))));
                    idx += 1;
                }
                Instruction::LoadI32(a) => {
                    r[a.a.index()] = i32::from_le_bytes(mem!(m.load(a.imm))) as u64;
                    idx += 1;
                }
                Instruction::LoadU64(a) => {
                    r[a.a.index()] = u64::from_le_bytes(mem!(m.load(a.imm)));
                    idx += 1;
                }
                Instruction::StoreU8(a) => {
                    mem!(m.store(a.imm, [r[a.a.index()] as u8]));
                    idx += 1;
                }
                Instruction::StoreU16(a) => {
                    mem!(m.store(a.imm, (r[a.a.index()] as u16).to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreU32(a) => {
                    mem!(m.store(a.imm, (r[a.a.index()] as u32).to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreU64(a) => {
                    mem!(m.store(a.imm, r[a.a.index()].to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreImmIndU8(a) => {
                    mem!(m.store(addr(r[a.a.index()], a.x), [a.y as u8]));
                    idx += 1;
                }
                Instruction::StoreImmIndU16(a) => {
                    mem!(m.store(addr(r[a.a.index()], a.x), (a.y as u16).to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreImmIndU32(a) => {
                    mem!(m.store(addr(r[a.a.index()], a.x), a.y.to_le_bytes()));
                    idx += 1;
                }
                Instruction::StoreImmIndU64(a) => {
                    mem!(m.store(addr(r[a.a.index()], a.x), sext(a.y).to_le_bytes()));
                    idx += 1;
                }
                Instruction::LoadImmJump(a) => {
                    r[a.a.index()] = sext(a.imm);
                    jump_to!(p.targets[idx]);
                }
                Instruction::BranchEqImm(a) => branch!(r[a.a.index()] == sext(a.imm)),
                Instruction::BranchNeImm(a) => branch!(r[a.a.index()] != sext(a.imm)),
                Instruction::BranchLtUImm(a) => branch!(r[a.a.index()] < sext(a.imm)),
                Instruction::BranchLeUImm(a) => branch!(r[a.a.index()] <= sext(a.imm)),
                Instruction::BranchGeUImm(a) => branch!(r[a.a.index()] >= sext(a.imm)),
                Instruction::BranchGtUImm(a) => branch!(r[a.a.index()] > sext(a.imm)),
                Instruction::BranchLtSImm(a) => {
                    branch!((r[a.a.index()] as i64) < (sext(a.imm) as i64))
                }
                Instruction::BranchLeSImm(a) => {
                    branch!((r[a.a.index()] as i64) <= (sext(a.imm) as i64))
                }
                Instruction::BranchGeSImm(a) => {
                    branch!((r[a.a.index()] as i64) >= (sext(a.imm) as i64))
                }
                Instruction::BranchGtSImm(a) => {
                    branch!((r[a.a.index()] as i64) > (sext(a.imm) as i64))
                }
                Instruction::MoveReg(a) => {
                    r[a.d.index()] = r[a.a.index()];
                    idx += 1;
                }
                Instruction::Sbrk(a) => {
                    let size = r[a.a.index()];
                    r[a.d.index()] = sbrk(&mut self.heap, m, size);
                    idx += 1;
                }
                Instruction::CountSetBits64(a) => {
                    two_reg(r, a, |x| u64::from(x.count_ones()), &mut idx)
                }
                Instruction::CountSetBits32(a) => {
                    two_reg(r, a, |x| u64::from((x as u32).count_ones()), &mut idx)
                }
                Instruction::LeadingZeroBits64(a) => {
                    two_reg(r, a, |x| u64::from(x.leading_zeros()), &mut idx)
                }
                Instruction::LeadingZeroBits32(a) => {
                    two_reg(r, a, |x| u64::from((x as u32).leading_zeros()), &mut idx)
                }
                Instruction::TrailingZeroBits64(a) => {
                    two_reg(r, a, |x| u64::from(x.trailing_zeros()), &mut idx)
                }
                Instruction::TrailingZeroBits32(a) => {
                    two_reg(r, a, |x| u64::from((x as u32).trailing_zeros()), &mut idx)
                }
                Instruction::SignExtend8(a) => two_reg(r, a, |x| x as u8 as i8 as u64, &mut idx),
                Instruction::SignExtend16(a) => two_reg(r, a, |x| x as u16 as i16 as u64, &mut idx),
                Instruction::ZeroExtend16(a) => two_reg(r, a, |x| u64::from(x as u16), &mut idx),
                Instruction::ReverseBytes(a) => two_reg(r, a, u64::swap_bytes, &mut idx),
                Instruction::StoreIndU8(a) => {
                    mem!(m.store(addr(r[a.b.index()], a.imm), [r[a.a.index()] as u8]));
                    idx += 1;
                }
                Instruction::StoreIndU16(a) => {
                    mem!(m.store(
                        addr(r[a.b.index()], a.imm),
                        (r[a.a.index()] as u16).to_le_bytes()
                    ));
                    idx += 1;
                }
                Instruction::StoreIndU32(a) => {
                    mem!(m.store(
                        addr(r[a.b.index()], a.imm),
                        (r[a.a.index()] as u32).to_le_bytes()
                    ));
                    idx += 1;
                }
                Instruction::StoreIndU64(a) => {
                    mem!(m.store(addr(r[a.b.index()], a.imm), r[a.a.index()].to_le_bytes()));
                    idx += 1;
                }
                Instruction::LoadIndU8(a) => {
                    r[a.a.index()] = u64::from(mem!(m.load::<1>(addr(r[a.b.index()], a.imm)))[0]);
                    idx += 1;
                }
                Instruction::LoadIndI8(a) => {
                    r[a.a.index()] = mem!(m.load::<1>(addr(r[a.b.index()], a.imm)))[0] as i8 as u64;
                    idx += 1;
                }
                Instruction::LoadIndU16(a) => {
                    r[a.a.index()] = u64::from(u16::from_le_bytes(mem!(
                        m.load(addr(r[a.b.index()], a.imm))
                    )));
                    idx += 1;
                }
                Instruction::LoadIndI16(a) => {
                    r[a.a.index()] =
                        i16::from_le_bytes(mem!(m.load(addr(r[a.b.index()], a.imm)))) as u64;
                    idx += 1;
                }
                Instruction::LoadIndU32(a) => {
                    r[a.a.index()] = u64::from(u32::from_le_bytes(mem!(
                        m.load(addr(r[a.b.index()], a.imm))
                    )));
                    idx += 1;
                }
                Instruction::LoadIndI32(a) => {
                    r[a.a.index()] =
                        i32::from_le_bytes(mem!(m.load(addr(r[a.b.index()], a.imm)))) as u64;
                    idx += 1;
                }
                Instruction::LoadIndU64(a) => {
                    r[a.a.index()] = u64::from_le_bytes(mem!(m.load(addr(r[a.b.index()], a.imm))));
                    idx += 1;
                }
                Instruction::AddImm32(a) => reg_imm(r, a, &mut idx, |b, i| s32(b.wrapping_add(i))),
                Instruction::AndImm(a) => reg_imm(r, a, &mut idx, |b, i| b & i),
                Instruction::XorImm(a) => reg_imm(r, a, &mut idx, |b, i| b ^ i),
                Instruction::OrImm(a) => reg_imm(r, a, &mut idx, |b, i| b | i),
                Instruction::MulImm32(a) => reg_imm(r, a, &mut idx, |b, i| s32(b.wrapping_mul(i))),
                Instruction::SetLtUImm(a) => reg_imm(r, a, &mut idx, |b, i| u64::from(b < i)),
                Instruction::SetLtSImm(a) => {
                    reg_imm(r, a, &mut idx, |b, i| u64::from((b as i64) < (i as i64)))
                }
                Instruction::ShloLImm32(a) => reg_imm(r, a, &mut idx, |b, i| s32(b << (i % 32))),
                Instruction::ShloRImm32(a) => {
                    reg_imm(r, a, &mut idx, |b, i| s32(u64::from(b as u32 >> (i % 32))))
                }
                Instruction::SharRImm32(a) => reg_imm(r, a, &mut idx, |b, i| {
                    s32(((b as i32) >> (i % 32)) as u32 as u64)
                }),
                Instruction::NegAddImm32(a) => {
                    reg_imm(r, a, &mut idx, |b, i| s32(i.wrapping_sub(b)))
                }
                Instruction::SetGtUImm(a) => reg_imm(r, a, &mut idx, |b, i| u64::from(b > i)),
                Instruction::SetGtSImm(a) => {
                    reg_imm(r, a, &mut idx, |b, i| u64::from((b as i64) > (i as i64)))
                }
                Instruction::ShloLImmAlt32(a) => reg_imm(r, a, &mut idx, |b, i| s32(i << (b % 32))),
                Instruction::ShloRImmAlt32(a) => {
                    reg_imm(r, a, &mut idx, |b, i| s32(u64::from(i as u32 >> (b % 32))))
                }
                Instruction::SharRImmAlt32(a) => reg_imm(r, a, &mut idx, |b, i| {
                    s32(((i as i32) >> (b % 32)) as u32 as u64)
                }),
                Instruction::CmovIzImm(a) => {
                    if r[a.b.index()] == 0 {
                        r[a.a.index()] = sext(a.imm);
                    }
                    idx += 1;
                }
                Instruction::CmovNzImm(a) => {
                    if r[a.b.index()] != 0 {
                        r[a.a.index()] = sext(a.imm);
                    }
                    idx += 1;
                }
                Instruction::AddImm64(a) => reg_imm(r, a, &mut idx, |b, i| b.wrapping_add(i)),
                Instruction::MulImm64(a) => reg_imm(r, a, &mut idx, |b, i| b.wrapping_mul(i)),
                Instruction::ShloLImm64(a) => reg_imm(r, a, &mut idx, |b, i| b << (i % 64)),
                Instruction::ShloRImm64(a) => reg_imm(r, a, &mut idx, |b, i| b >> (i % 64)),
                Instruction::SharRImm64(a) => {
                    reg_imm(r, a, &mut idx, |b, i| ((b as i64) >> (i % 64)) as u64)
                }
                Instruction::NegAddImm64(a) => reg_imm(r, a, &mut idx, |b, i| i.wrapping_sub(b)),
                Instruction::ShloLImmAlt64(a) => reg_imm(r, a, &mut idx, |b, i| i << (b % 64)),
                Instruction::ShloRImmAlt64(a) => reg_imm(r, a, &mut idx, |b, i| i >> (b % 64)),
                Instruction::SharRImmAlt64(a) => {
                    reg_imm(r, a, &mut idx, |b, i| ((i as i64) >> (b % 64)) as u64)
                }
                Instruction::RotR64Imm(a) => {
                    reg_imm(r, a, &mut idx, |b, i| b.rotate_right((i % 64) as u32))
                }
                Instruction::RotR64ImmAlt(a) => {
                    reg_imm(r, a, &mut idx, |b, i| i.rotate_right((b % 64) as u32))
                }
                Instruction::RotR32Imm(a) => reg_imm(r, a, &mut idx, |b, i| {
                    s32(u64::from((b as u32).rotate_right((i % 32) as u32)))
                }),
                Instruction::RotR32ImmAlt(a) => reg_imm(r, a, &mut idx, |b, i| {
                    s32(u64::from((i as u32).rotate_right((b % 32) as u32)))
                }),
                Instruction::BranchEq(a) => branch!(r[a.a.index()] == r[a.b.index()]),
                Instruction::BranchNe(a) => branch!(r[a.a.index()] != r[a.b.index()]),
                Instruction::BranchLtU(a) => branch!(r[a.a.index()] < r[a.b.index()]),
                Instruction::BranchLtS(a) => {
                    branch!((r[a.a.index()] as i64) < (r[a.b.index()] as i64))
                }
                Instruction::BranchGeU(a) => branch!(r[a.a.index()] >= r[a.b.index()]),
                Instruction::BranchGeS(a) => {
                    branch!((r[a.a.index()] as i64) >= (r[a.b.index()] as i64))
                }
                Instruction::LoadImmJumpInd(a) => {
                    // The target uses B before A is written (they may be the same register).
                    let target = r[a.b.index()].wrapping_add(sext(a.y)) as u32;
                    r[a.a.index()] = sext(a.x);
                    djump!(target);
                }
                Instruction::Add32(a) => three(r, a, &mut idx, |x, y| s32(x.wrapping_add(y))),
                Instruction::Sub32(a) => three(r, a, &mut idx, |x, y| s32(x.wrapping_sub(y))),
                Instruction::Mul32(a) => three(r, a, &mut idx, |x, y| s32(x.wrapping_mul(y))),
                Instruction::DivU32(a) => three(r, a, &mut idx, |x, y| {
                    let (x, y) = (x as u32, y as u32);
                    if y == 0 {
                        u64::MAX
                    } else {
                        s32(u64::from(x / y))
                    }
                }),
                Instruction::DivS32(a) => three(r, a, &mut idx, |x, y| {
                    let (x, y) = (x as i32, y as i32);
                    if y == 0 {
                        u64::MAX
                    } else {
                        x.wrapping_div(y) as i64 as u64
                    }
                }),
                Instruction::RemU32(a) => three(r, a, &mut idx, |x, y| {
                    let (x, y) = (x as u32, y as u32);
                    if y == 0 {
                        s32(u64::from(x))
                    } else {
                        s32(u64::from(x % y))
                    }
                }),
                Instruction::RemS32(a) => three(r, a, &mut idx, |x, y| {
                    let (x, y) = (x as i32, y as i32);
                    if y == 0 {
                        x as i64 as u64
                    } else {
                        x.wrapping_rem(y) as i64 as u64
                    }
                }),
                Instruction::ShloL32(a) => three(r, a, &mut idx, |x, y| s32(x << (y % 32))),
                Instruction::ShloR32(a) => {
                    three(r, a, &mut idx, |x, y| s32(u64::from(x as u32 >> (y % 32))))
                }
                Instruction::SharR32(a) => three(r, a, &mut idx, |x, y| {
                    s32(((x as i32) >> (y % 32)) as u32 as u64)
                }),
                Instruction::Add64(a) => three(r, a, &mut idx, u64::wrapping_add),
                Instruction::Sub64(a) => three(r, a, &mut idx, u64::wrapping_sub),
                Instruction::Mul64(a) => three(r, a, &mut idx, u64::wrapping_mul),
                Instruction::DivU64(a) => {
                    three(r, a, &mut idx, |x, y| x.checked_div(y).unwrap_or(u64::MAX))
                }
                Instruction::DivS64(a) => three(r, a, &mut idx, |x, y| {
                    if y == 0 {
                        u64::MAX
                    } else {
                        (x as i64).wrapping_div(y as i64) as u64
                    }
                }),
                Instruction::RemU64(a) => {
                    three(r, a, &mut idx, |x, y| x.checked_rem(y).unwrap_or(x))
                }
                Instruction::RemS64(a) => three(r, a, &mut idx, |x, y| {
                    if y == 0 {
                        x
                    } else {
                        (x as i64).wrapping_rem(y as i64) as u64
                    }
                }),
                Instruction::ShloL64(a) => three(r, a, &mut idx, |x, y| x << (y % 64)),
                Instruction::ShloR64(a) => three(r, a, &mut idx, |x, y| x >> (y % 64)),
                Instruction::SharR64(a) => {
                    three(r, a, &mut idx, |x, y| ((x as i64) >> (y % 64)) as u64)
                }
                Instruction::And(a) => three(r, a, &mut idx, |x, y| x & y),
                Instruction::Xor(a) => three(r, a, &mut idx, |x, y| x ^ y),
                Instruction::Or(a) => three(r, a, &mut idx, |x, y| x | y),
                Instruction::MulUpperSS(a) => three(r, a, &mut idx, |x, y| {
                    ((i128::from(x as i64) * i128::from(y as i64)) >> 64) as u64
                }),
                Instruction::MulUpperUU(a) => three(r, a, &mut idx, |x, y| {
                    ((u128::from(x) * u128::from(y)) >> 64) as u64
                }),
                Instruction::MulUpperSU(a) => three(r, a, &mut idx, |x, y| {
                    (i128::from(x as i64).wrapping_mul(i128::from(y)) >> 64) as u64
                }),
                Instruction::SetLtU(a) => three(r, a, &mut idx, |x, y| u64::from(x < y)),
                Instruction::SetLtS(a) => {
                    three(r, a, &mut idx, |x, y| u64::from((x as i64) < (y as i64)))
                }
                Instruction::CmovIz(a) => {
                    if r[a.b.index()] == 0 {
                        r[a.d.index()] = r[a.a.index()];
                    }
                    idx += 1;
                }
                Instruction::CmovNz(a) => {
                    if r[a.b.index()] != 0 {
                        r[a.d.index()] = r[a.a.index()];
                    }
                    idx += 1;
                }
                Instruction::RotL64(a) => {
                    three(r, a, &mut idx, |x, y| x.rotate_left((y % 64) as u32))
                }
                Instruction::RotL32(a) => three(r, a, &mut idx, |x, y| {
                    s32(u64::from((x as u32).rotate_left((y % 32) as u32)))
                }),
                Instruction::RotR64(a) => {
                    three(r, a, &mut idx, |x, y| x.rotate_right((y % 64) as u32))
                }
                Instruction::RotR32(a) => three(r, a, &mut idx, |x, y| {
                    s32(u64::from((x as u32).rotate_right((y % 32) as u32)))
                }),
                Instruction::AndInv(a) => three(r, a, &mut idx, |x, y| x & !y),
                Instruction::OrInv(a) => three(r, a, &mut idx, |x, y| x | !y),
                Instruction::Xnor(a) => three(r, a, &mut idx, |x, y| !(x ^ y)),
                Instruction::Max(a) => {
                    three(r, a, &mut idx, |x, y| (x as i64).max(y as i64) as u64)
                }
                Instruction::MaxU(a) => three(r, a, &mut idx, u64::max),
                Instruction::Min(a) => {
                    three(r, a, &mut idx, |x, y| (x as i64).min(y as i64) as u64)
                }
                Instruction::MinU(a) => three(r, a, &mut idx, u64::min),
            }
            if STEP {
                self.pc = p.pcs[idx];
                return Ok(None);
            }
        }
    }
}

/// `(base + imm) mod 2^32`: an effective address.
#[inline(always)]
fn addr(base: u64, imm: u32) -> u32 {
    base.wrapping_add(sext(imm)) as u32
}

/// The GP's 32-bit result rule: keep the low 32 bits, sign-extend from bit 31.
#[inline(always)]
fn s32(x: u64) -> u64 {
    x as u32 as i32 as i64 as u64
}

#[inline(always)]
fn two_reg(r: &mut [u64; 13], a: TwoReg, f: impl Fn(u64) -> u64, idx: &mut usize) {
    r[a.d.index()] = f(r[a.a.index()]);
    *idx += 1;
}

/// `A = f(B, sext(imm))` for the two-register-one-immediate ALU forms.
#[inline(always)]
fn reg_imm(r: &mut [u64; 13], a: TwoRegImm, idx: &mut usize, f: impl Fn(u64, u64) -> u64) {
    r[a.a.index()] = f(r[a.b.index()], sext(a.imm));
    *idx += 1;
}

/// `D = f(A, B)` for the three-register forms.
#[inline(always)]
fn three(r: &mut [u64; 13], a: ThreeReg, idx: &mut usize, f: impl Fn(u64, u64) -> u64) {
    r[a.d.index()] = f(r[a.a.index()], r[a.b.index()]);
    *idx += 1;
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
    let new = u64::from(old) + size;
    if new > u64::from(h.limit) {
        return 0;
    }
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
        Program::from_bytes(&bytes, profile).unwrap_or_else(|e| panic!("{e}"))
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
    fn entry_that_is_not_an_instruction_panics_without_charging() {
        let p = program("load_imm r7, 1\njump_ind r0, 0\n", Profile::V0_8);
        let mut vm = Vm::new(&p, PagedMemory::new(), 1, 100);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!(vm.gas(), 100);
    }
}
