//! Pre-decoding a [`Program`] into the interpreter's compact form.
//!
//! Every instruction becomes one fixed-size [`Op`] (16 bytes): operands
//! decoded, immediates kept as their 32-bit sign-extendable value, static
//! jump targets resolved and validated. Op `i` is instruction `i` of the
//! [`Program`]; ops past the instructions are stubs that panic at a given pc
//! (targets of jumps whose static target is invalid). Gas: the instructions
//! that end a block charge the cost of the block they enter (`costs`), so
//! the hot loop never checks a gas flag. Absolute-address loads and stores
//! use base register 13, which is always zero, so they share the indirect
//! handlers.

use crate::isa::*;
use crate::program::{Program, Transfer, INVALID_TARGET};
use alloc::vec::Vec;

/// The always-zero register used as the base of absolute addresses.
pub(crate) const ZERO: u8 = 13;

/// Handler kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum H {
    /// Panic.
    Trap,
    /// Panic, reporting pc `x` (the jump/branch whose static target is invalid).
    PanicAt,
    /// Continue with the next op (unlikely).
    Next,
    /// Enter the next block (0.7 fallthrough, or 0.8's when valid).
    Fallthrough,
    Ecalli,
    Jump,
    JumpInd,
    LoadImmJump,
    LoadImmJumpInd,
    Sbrk,
    LoadImm64,
    // Loads and stores: address = reg[b] + sext(x); b may be ZERO.
    LoadU8,
    LoadI8,
    LoadU16,
    LoadI16,
    LoadU32,
    LoadI32,
    LoadU64,
    StoreU8,
    StoreU16,
    StoreU32,
    StoreU64,
    // Store immediate `y` at reg[b] + sext(x).
    StoreImmU8,
    StoreImmU16,
    StoreImmU32,
    StoreImmU64,
    // Branches: target op z.
    BranchEqImm,
    BranchNeImm,
    BranchLtUImm,
    BranchLeUImm,
    BranchGeUImm,
    BranchGtUImm,
    BranchLtSImm,
    BranchLeSImm,
    BranchGeSImm,
    BranchGtSImm,
    BranchEq,
    BranchNe,
    BranchLtU,
    BranchLtS,
    BranchGeU,
    BranchGeS,
    // Two registers: d = f(a).
    MoveReg,
    CountSetBits64,
    CountSetBits32,
    LeadingZeroBits64,
    LeadingZeroBits32,
    TrailingZeroBits64,
    TrailingZeroBits32,
    SignExtend8,
    SignExtend16,
    ZeroExtend16,
    ReverseBytes,
    // Register and immediate: a = f(reg[b], sext(x)).
    AddImm32,
    AndImm,
    XorImm,
    OrImm,
    MulImm32,
    SetLtUImm,
    SetLtSImm,
    ShloLImm32,
    ShloRImm32,
    SharRImm32,
    NegAddImm32,
    SetGtUImm,
    SetGtSImm,
    ShloLImmAlt32,
    ShloRImmAlt32,
    SharRImmAlt32,
    CmovIzImm,
    CmovNzImm,
    AddImm64,
    MulImm64,
    ShloLImm64,
    ShloRImm64,
    SharRImm64,
    NegAddImm64,
    ShloLImmAlt64,
    ShloRImmAlt64,
    SharRImmAlt64,
    RotR64Imm,
    RotR64ImmAlt,
    RotR32Imm,
    RotR32ImmAlt,
    // Three registers: d = f(reg[a], reg[b]).
    Add32,
    Sub32,
    Mul32,
    DivU32,
    DivS32,
    RemU32,
    RemS32,
    ShloL32,
    ShloR32,
    SharR32,
    Add64,
    Sub64,
    Mul64,
    DivU64,
    DivS64,
    RemU64,
    RemS64,
    ShloL64,
    ShloR64,
    SharR64,
    And,
    Xor,
    Or,
    MulUpperSS,
    MulUpperUU,
    MulUpperSU,
    SetLtU,
    SetLtS,
    CmovIz,
    CmovNz,
    RotL64,
    RotL32,
    RotR64,
    RotR32,
    AndInv,
    OrInv,
    Xnor,
    Max,
    MaxU,
    Min,
    MinU,
}

/// One pre-decoded instruction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    pub h: H,
    pub a: u8,
    pub b: u8,
    pub d: u8,
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

const _: () = assert!(core::mem::size_of::<Op>() == 16);

impl Op {
    /// Register operand A. The interpreter's register file has 256 slots,
    /// so a `u8` index needs neither a mask nor a bounds check; compiled
    /// indices are always 0..=13.
    #[inline(always)]
    pub fn ra(&self) -> usize {
        usize::from(self.a)
    }
    /// Register operand B.
    #[inline(always)]
    pub fn rb(&self) -> usize {
        usize::from(self.b)
    }
    /// Register operand D.
    #[inline(always)]
    pub fn rd(&self) -> usize {
        usize::from(self.d)
    }
    /// Immediate `x`, sign-extended to 64 bits.
    #[inline(always)]
    pub fn imm(&self) -> u64 {
        sext(self.x)
    }

    const fn new(h: H) -> Op {
        Op {
            h,
            a: 0,
            b: 0,
            d: 0,
            x: 0,
            y: 0,
            z: 0,
        }
    }
}

/// A program in the interpreter's form.
#[derive(Clone, Debug, Default)]
pub(crate) struct Compiled {
    /// One op per instruction (same index), then the panic stubs.
    pub ops: Vec<Op>,
    /// The pc each op reports.
    pub op_pc: Vec<u32>,
    /// Gas charged when a terminator enters op `i`: its block's cost at
    /// block starts, 0 for stubs (unused elsewhere).
    pub costs: Vec<u64>,
}

impl Compiled {
    /// Sets the cost charged on entering each gas block.
    pub fn set_costs(&mut self, block_starts: &[u32], costs: &[u64]) {
        for (b, &cost) in costs.iter().enumerate() {
            self.costs[block_starts[b] as usize] = cost;
        }
    }
}

/// Compiles `p` (its instructions, targets and gas blocks).
pub(crate) fn compile(p: &Program) -> Compiled {
    let n = p.len();
    let mut c = Compiled {
        ops: Vec::with_capacity(n + 1),
        op_pc: p.pcs().to_vec(),
        costs: alloc::vec![0; n],
    };
    let mut stubs: Vec<(usize, u32)> = Vec::new(); // (op index, pc) needing a PanicAt stub
    let targets = p.static_targets();
    for (i, &target) in targets.iter().enumerate().take(n) {
        let pc = p.pc(i);
        let implicit = p.is_implicit_trap(i);
        let mut op = if implicit {
            Op::new(H::Trap)
        } else {
            lower(&p.insts()[i], target, p.profile())
        };
        if !implicit {
            match p.transfer(i) {
                // A jump to a non-block, or (0.8) a branch whose target or
                // fall-through is not in ϖ, taken or not.
                Transfer::Panic => op = Op::new(H::Trap),
                // Jump to a stub that panics at this pc.
                Transfer::PanicWhenTaken => stubs.push((i, pc)),
                Transfer::None | Transfer::To(_) => {}
            }
        }
        c.ops.push(op);
    }
    // Stubs for statically invalid targets: panic reporting the jump's pc.
    for (at, pc) in stubs {
        c.ops[at].z = c.ops.len() as u32;
        c.ops.push(Op {
            x: pc,
            ..Op::new(H::PanicAt)
        });
        c.op_pc.push(pc);
        c.costs.push(0);
    }
    c.set_costs(&p.block_starts, &p.block_costs);
    c
}

/// Lowers one instruction; `target` is its resolved static target op.
fn lower(inst: &Instruction, target: u32, profile: Profile) -> Op {
    let r = |h: H, a: Reg, b: Reg, d: Reg, x: u32, y: u32| Op {
        h,
        a: a.raw(),
        b: b.raw(),
        d: d.raw(),
        x,
        y,
        z: 0,
    };
    let zero = Reg::clamped(0);
    // Absolute address: base is the zero register.
    let abs = |h: H, a: Reg, x: u32, y: u32| Op {
        h,
        a: a.raw(),
        b: ZERO,
        d: 0,
        x,
        y,
        z: 0,
    };
    let ind = |h: H, a: Reg, b: Reg, x: u32, y: u32| Op {
        h,
        a: a.raw(),
        b: b.raw(),
        d: 0,
        x,
        y,
        z: 0,
    };
    let br_imm = |h: H, a: &RegImmOffset| Op {
        h,
        a: a.a.raw(),
        b: 0,
        d: 0,
        x: a.imm,
        y: 0,
        z: target,
    };
    let br = |h: H, a: &TwoRegOffset| Op {
        h,
        a: a.a.raw(),
        b: a.b.raw(),
        d: 0,
        x: 0,
        y: 0,
        z: target,
    };
    let two = |h: H, a: &TwoReg| r(h, a.a, zero, a.d, 0, 0);
    let imm = |h: H, a: &TwoRegImm| r(h, a.a, a.b, zero, a.imm, 0);
    let three = |h: H, a: &ThreeReg| r(h, a.a, a.b, a.d, 0, 0);
    match inst {
        Instruction::Trap(_) => Op::new(H::Trap),
        Instruction::Fallthrough(_) => {
            // 0.8: a static jump to the next instruction; invalid if it is
            // not in ϖ (Program resolved that into `target`).
            if profile == Profile::V0_8 && target == INVALID_TARGET {
                Op::new(H::Trap)
            } else {
                Op::new(H::Fallthrough)
            }
        }
        Instruction::Unlikely(_) => Op::new(H::Next),
        Instruction::Ecalli(a) => Op {
            x: a.imm,
            ..Op::new(H::Ecalli)
        },
        Instruction::LoadImm64(a) => Op {
            a: a.a.raw(),
            x: a.imm as u32,
            y: (a.imm >> 32) as u32,
            ..Op::new(H::LoadImm64)
        },
        Instruction::StoreImmU8(a) => abs(H::StoreImmU8, zero, a.x, a.y),
        Instruction::StoreImmU16(a) => abs(H::StoreImmU16, zero, a.x, a.y),
        Instruction::StoreImmU32(a) => abs(H::StoreImmU32, zero, a.x, a.y),
        Instruction::StoreImmU64(a) => abs(H::StoreImmU64, zero, a.x, a.y),
        Instruction::Jump(_) => Op {
            z: target,
            ..Op::new(H::Jump)
        },
        Instruction::JumpInd(a) => Op {
            a: a.a.raw(),
            x: a.imm,
            ..Op::new(H::JumpInd)
        },
        // load_imm is add_imm_64 from the zero register.
        Instruction::LoadImm(a) => Op {
            h: H::AddImm64,
            a: a.a.raw(),
            b: ZERO,
            d: 0,
            x: a.imm,
            y: 0,
            z: 0,
        },
        Instruction::LoadU8(a) => abs(H::LoadU8, a.a, a.imm, 0),
        Instruction::LoadI8(a) => abs(H::LoadI8, a.a, a.imm, 0),
        Instruction::LoadU16(a) => abs(H::LoadU16, a.a, a.imm, 0),
        Instruction::LoadI16(a) => abs(H::LoadI16, a.a, a.imm, 0),
        Instruction::LoadU32(a) => abs(H::LoadU32, a.a, a.imm, 0),
        Instruction::LoadI32(a) => abs(H::LoadI32, a.a, a.imm, 0),
        Instruction::LoadU64(a) => abs(H::LoadU64, a.a, a.imm, 0),
        Instruction::StoreU8(a) => abs(H::StoreU8, a.a, a.imm, 0),
        Instruction::StoreU16(a) => abs(H::StoreU16, a.a, a.imm, 0),
        Instruction::StoreU32(a) => abs(H::StoreU32, a.a, a.imm, 0),
        Instruction::StoreU64(a) => abs(H::StoreU64, a.a, a.imm, 0),
        Instruction::StoreImmIndU8(a) => ind(H::StoreImmU8, zero, a.a, a.x, a.y),
        Instruction::StoreImmIndU16(a) => ind(H::StoreImmU16, zero, a.a, a.x, a.y),
        Instruction::StoreImmIndU32(a) => ind(H::StoreImmU32, zero, a.a, a.x, a.y),
        Instruction::StoreImmIndU64(a) => ind(H::StoreImmU64, zero, a.a, a.x, a.y),
        Instruction::LoadImmJump(a) => Op {
            a: a.a.raw(),
            x: a.imm,
            z: target,
            ..Op::new(H::LoadImmJump)
        },
        Instruction::BranchEqImm(a) => br_imm(H::BranchEqImm, a),
        Instruction::BranchNeImm(a) => br_imm(H::BranchNeImm, a),
        Instruction::BranchLtUImm(a) => br_imm(H::BranchLtUImm, a),
        Instruction::BranchLeUImm(a) => br_imm(H::BranchLeUImm, a),
        Instruction::BranchGeUImm(a) => br_imm(H::BranchGeUImm, a),
        Instruction::BranchGtUImm(a) => br_imm(H::BranchGtUImm, a),
        Instruction::BranchLtSImm(a) => br_imm(H::BranchLtSImm, a),
        Instruction::BranchLeSImm(a) => br_imm(H::BranchLeSImm, a),
        Instruction::BranchGeSImm(a) => br_imm(H::BranchGeSImm, a),
        Instruction::BranchGtSImm(a) => br_imm(H::BranchGtSImm, a),
        Instruction::MoveReg(a) => two(H::MoveReg, a),
        Instruction::Sbrk(a) => two(H::Sbrk, a),
        Instruction::CountSetBits64(a) => two(H::CountSetBits64, a),
        Instruction::CountSetBits32(a) => two(H::CountSetBits32, a),
        Instruction::LeadingZeroBits64(a) => two(H::LeadingZeroBits64, a),
        Instruction::LeadingZeroBits32(a) => two(H::LeadingZeroBits32, a),
        Instruction::TrailingZeroBits64(a) => two(H::TrailingZeroBits64, a),
        Instruction::TrailingZeroBits32(a) => two(H::TrailingZeroBits32, a),
        Instruction::SignExtend8(a) => two(H::SignExtend8, a),
        Instruction::SignExtend16(a) => two(H::SignExtend16, a),
        Instruction::ZeroExtend16(a) => two(H::ZeroExtend16, a),
        Instruction::ReverseBytes(a) => two(H::ReverseBytes, a),
        Instruction::StoreIndU8(a) => ind(H::StoreU8, a.a, a.b, a.imm, 0),
        Instruction::StoreIndU16(a) => ind(H::StoreU16, a.a, a.b, a.imm, 0),
        Instruction::StoreIndU32(a) => ind(H::StoreU32, a.a, a.b, a.imm, 0),
        Instruction::StoreIndU64(a) => ind(H::StoreU64, a.a, a.b, a.imm, 0),
        Instruction::LoadIndU8(a) => ind(H::LoadU8, a.a, a.b, a.imm, 0),
        Instruction::LoadIndI8(a) => ind(H::LoadI8, a.a, a.b, a.imm, 0),
        Instruction::LoadIndU16(a) => ind(H::LoadU16, a.a, a.b, a.imm, 0),
        Instruction::LoadIndI16(a) => ind(H::LoadI16, a.a, a.b, a.imm, 0),
        Instruction::LoadIndU32(a) => ind(H::LoadU32, a.a, a.b, a.imm, 0),
        Instruction::LoadIndI32(a) => ind(H::LoadI32, a.a, a.b, a.imm, 0),
        Instruction::LoadIndU64(a) => ind(H::LoadU64, a.a, a.b, a.imm, 0),
        Instruction::AddImm32(a) => imm(H::AddImm32, a),
        Instruction::AndImm(a) => imm(H::AndImm, a),
        Instruction::XorImm(a) => imm(H::XorImm, a),
        Instruction::OrImm(a) => imm(H::OrImm, a),
        Instruction::MulImm32(a) => imm(H::MulImm32, a),
        Instruction::SetLtUImm(a) => imm(H::SetLtUImm, a),
        Instruction::SetLtSImm(a) => imm(H::SetLtSImm, a),
        Instruction::ShloLImm32(a) => imm(H::ShloLImm32, a),
        Instruction::ShloRImm32(a) => imm(H::ShloRImm32, a),
        Instruction::SharRImm32(a) => imm(H::SharRImm32, a),
        Instruction::NegAddImm32(a) => imm(H::NegAddImm32, a),
        Instruction::SetGtUImm(a) => imm(H::SetGtUImm, a),
        Instruction::SetGtSImm(a) => imm(H::SetGtSImm, a),
        Instruction::ShloLImmAlt32(a) => imm(H::ShloLImmAlt32, a),
        Instruction::ShloRImmAlt32(a) => imm(H::ShloRImmAlt32, a),
        Instruction::SharRImmAlt32(a) => imm(H::SharRImmAlt32, a),
        Instruction::CmovIzImm(a) => imm(H::CmovIzImm, a),
        Instruction::CmovNzImm(a) => imm(H::CmovNzImm, a),
        Instruction::AddImm64(a) => imm(H::AddImm64, a),
        Instruction::MulImm64(a) => imm(H::MulImm64, a),
        Instruction::ShloLImm64(a) => imm(H::ShloLImm64, a),
        Instruction::ShloRImm64(a) => imm(H::ShloRImm64, a),
        Instruction::SharRImm64(a) => imm(H::SharRImm64, a),
        Instruction::NegAddImm64(a) => imm(H::NegAddImm64, a),
        Instruction::ShloLImmAlt64(a) => imm(H::ShloLImmAlt64, a),
        Instruction::ShloRImmAlt64(a) => imm(H::ShloRImmAlt64, a),
        Instruction::SharRImmAlt64(a) => imm(H::SharRImmAlt64, a),
        Instruction::RotR64Imm(a) => imm(H::RotR64Imm, a),
        Instruction::RotR64ImmAlt(a) => imm(H::RotR64ImmAlt, a),
        Instruction::RotR32Imm(a) => imm(H::RotR32Imm, a),
        Instruction::RotR32ImmAlt(a) => imm(H::RotR32ImmAlt, a),
        Instruction::BranchEq(a) => br(H::BranchEq, a),
        Instruction::BranchNe(a) => br(H::BranchNe, a),
        Instruction::BranchLtU(a) => br(H::BranchLtU, a),
        Instruction::BranchLtS(a) => br(H::BranchLtS, a),
        Instruction::BranchGeU(a) => br(H::BranchGeU, a),
        Instruction::BranchGeS(a) => br(H::BranchGeS, a),
        Instruction::LoadImmJumpInd(a) => Op {
            a: a.a.raw(),
            b: a.b.raw(),
            x: a.x,
            y: a.y,
            ..Op::new(H::LoadImmJumpInd)
        },
        Instruction::Add32(a) => three(H::Add32, a),
        Instruction::Sub32(a) => three(H::Sub32, a),
        Instruction::Mul32(a) => three(H::Mul32, a),
        Instruction::DivU32(a) => three(H::DivU32, a),
        Instruction::DivS32(a) => three(H::DivS32, a),
        Instruction::RemU32(a) => three(H::RemU32, a),
        Instruction::RemS32(a) => three(H::RemS32, a),
        Instruction::ShloL32(a) => three(H::ShloL32, a),
        Instruction::ShloR32(a) => three(H::ShloR32, a),
        Instruction::SharR32(a) => three(H::SharR32, a),
        Instruction::Add64(a) => three(H::Add64, a),
        Instruction::Sub64(a) => three(H::Sub64, a),
        Instruction::Mul64(a) => three(H::Mul64, a),
        Instruction::DivU64(a) => three(H::DivU64, a),
        Instruction::DivS64(a) => three(H::DivS64, a),
        Instruction::RemU64(a) => three(H::RemU64, a),
        Instruction::RemS64(a) => three(H::RemS64, a),
        Instruction::ShloL64(a) => three(H::ShloL64, a),
        Instruction::ShloR64(a) => three(H::ShloR64, a),
        Instruction::SharR64(a) => three(H::SharR64, a),
        Instruction::And(a) => three(H::And, a),
        Instruction::Xor(a) => three(H::Xor, a),
        Instruction::Or(a) => three(H::Or, a),
        Instruction::MulUpperSS(a) => three(H::MulUpperSS, a),
        Instruction::MulUpperUU(a) => three(H::MulUpperUU, a),
        Instruction::MulUpperSU(a) => three(H::MulUpperSU, a),
        Instruction::SetLtU(a) => three(H::SetLtU, a),
        Instruction::SetLtS(a) => three(H::SetLtS, a),
        Instruction::CmovIz(a) => three(H::CmovIz, a),
        Instruction::CmovNz(a) => three(H::CmovNz, a),
        Instruction::RotL64(a) => three(H::RotL64, a),
        Instruction::RotL32(a) => three(H::RotL32, a),
        Instruction::RotR64(a) => three(H::RotR64, a),
        Instruction::RotR32(a) => three(H::RotR32, a),
        Instruction::AndInv(a) => three(H::AndInv, a),
        Instruction::OrInv(a) => three(H::OrInv, a),
        Instruction::Xnor(a) => three(H::Xnor, a),
        Instruction::Max(a) => three(H::Max, a),
        Instruction::MaxU(a) => three(H::MaxU, a),
        Instruction::Min(a) => three(H::Min, a),
        Instruction::MinU(a) => three(H::MinU, a),
    }
}
