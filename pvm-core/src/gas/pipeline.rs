//! The GP 0.8.0 pipeline gas model: GP 0.8.0 §A.9 "Gas Cost Model" and
//! §A.10 "Gas Cost Tables" (§24.9 and §24.10 in the PDF's numbering).
//!
//! A block's cost is the number of cycles a small out-of-order virtual CPU
//! takes to decode, execute and retire the instructions of the block (up to
//! and including its terminator), minus 3, and at least 1 (the GP's ϱΔ). The
//! CPU decodes 4 slots' worth of instructions per cycle into a reorder buffer
//! (ROB) of 32 live entries, starts up to 5 of them per cycle once their
//! operands are ready and their execution units free, and retires them in
//! order. `move_reg` never enters the ROB: the frontend renames it away.
//!
//! The simulation follows the GP's transition function 𝔛 rule by rule (see
//! `Sim::run`); three representation choices keep it cheap and
//! allocation-free, without changing any result:
//! - the GP's ROB only grows, and a retired entry becomes ∅ but keeps its
//!   index. Retirement is in order, so the retired entries are always a
//!   prefix and the live ones a window `head..tail` of at most 32 entries.
//!   Entries are numbered by that index plus one (`seq`) and the window is
//!   kept in a ring of 32 slots, slot `seq % 32`;
//! - an entry's set of clobbered registers: every register belongs to at
//!   most one entry's set (`𝔛^dec` removes the destinations from every entry
//!   before appending the new one, and `𝔛^mov` moves the destination to the
//!   entry holding the source), so the sets are kept as one owner per
//!   register. The owner may have retired since: a retired entry has 0
//!   cycles left, so a dependency on it is met;
//! - an entry's state and cycles left follow from the cycle it started in,
//!   so the simulation jumps from one cycle in which something can be
//!   decoded or started to the next (see "The simulation" below).
//!
//! Readings of the GP (each one checked against every `block-gas-costs`
//! entry of the gp-0.8 vectors and the DOOM total in ../shared):
//! - š and ř are the registers the §A.5 semantics name as read and written.
//!   A conditional move (cmov_iz/nz, cmov_iz/nz_imm) does not read its
//!   destination: "else keep the old value" is not a read. The sentence of
//!   §A.9 whose instruction name the Markdown build dropped ("… is assumed
//!   to neither read nor write to any registers") is about `ecalli`.
//! - §A.10's 𝔓_S compares "ω_A = ω_D", register *values*, but says "only
//!   the first source register matters": it compares the register indices
//!   rA and rD, as 𝔓 compares register sets.
//! - 𝔟 reads ζ, the raw code bytes with zeros past the end: a fall-through
//!   or target that is no instruction start, or lies past the end of the
//!   code, is looked at as a byte all the same (0 there counts as `trap`).
//! - The simulation of a block starts at the block's start ı ∈ ϖ and
//!   decodes up to and including the first terminator (ζ_ı ∈ T). Entering
//!   a block in the middle charges the cost of the whole block (the GP
//!   charges ϱΔ at 𝔏(ı), the start of the block containing ı); that is the
//!   interpreter's business, this model only costs whole blocks.
//! - The GP defines the model for GP 0.8.0 only; for a GP 0.7.2 program it
//!   is an error, [`Error::Unsupported`].

use super::GasModel;
use crate::error::Error;
use crate::isa::*;
use crate::program::{Blob, Program};
use core::fmt;

/// The GP 0.8.0 pipeline gas model (GP 0.8.0 §A.9-A.10). Defined for GP
/// 0.8.0 programs only: for a GP 0.7.2 program [`GasModel::block_cost`]
/// returns [`Error::Unsupported`] (0.7.2 charges one gas per instruction,
/// see [`Naive`](super::Naive)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pipeline;

// ---------------------------------------------------------------------------
// Constants. Each one says where in GP 0.8.0 it comes from.

/// Decode slots per cycle: GP 0.8.0 §A.9, d = 4 in x_init (eq. "gas cost for
/// block", ϱΔ) and d′ = 4 in 𝔛‴.
const DECODE_SLOTS: u32 = 4;

/// Instruction starts per cycle: GP 0.8.0 §A.9, e = 5 in x_init (ϱΔ) and
/// e′ = 5 in 𝔛‴.
const STARTS_PER_CYCLE: u32 = 5;

/// Live ROB entries: GP 0.8.0 §A.9, 𝔛 decodes only while l < 32.
const ROB_CAPACITY: usize = 32;

// `Sim::in_flight` has one bit per ROB slot.
const _: () = assert!(ROB_CAPACITY <= 32);

/// Free execution units (A, L, S, M, D) at the start: GP 0.8.0 §A.9,
/// t = (4, 4, 4, 1, 1) in x_init (ϱΔ).
const UNITS_AVAILABLE: Units = Units::new(4, 4, 4, 1, 1);

/// Cycles subtracted from the simulation's final cycle count: GP 0.8.0 §A.9,
/// ϱΔ = max(x_final_c − 3, 1).
const COST_OFFSET: u64 = 3;

/// The least a block costs: GP 0.8.0 §A.9, ϱΔ = max(x_final_c − 3, 1).
const MIN_COST: u64 = 1;

/// Memory access cycles, 𝔪: GP 0.8.0 §A.10, "𝔪 ≡ 25" (the loads' č).
const MEMORY_CYCLES: u32 = 25;

/// A branch with a `trap` or `unlikely` at either target: GP 0.8.0 §A.10, 𝔟
/// = 1.
const BRANCH_CYCLES_COLD: u32 = 1;

/// Any other branch: GP 0.8.0 §A.10, 𝔟 = 20 ("otherwise").
const BRANCH_CYCLES: u32 = 20;

/// The opcode byte of `trap` that 𝔟 looks for (GP 0.8.0 §A.10, 𝔟; the
/// number is from the instruction table, §A.5.1).
const TRAP_BYTE: u8 = opcode_byte(Opcode::Trap);

/// The opcode byte of `unlikely` that 𝔟 looks for (GP 0.8.0 §A.10, 𝔟; the
/// number is from the instruction table, §A.5.1).
const UNLIKELY_BYTE: u8 = opcode_byte(Opcode::Unlikely);

const fn opcode_byte(op: Opcode) -> u8 {
    match op.number(Profile::V0_8) {
        Some(n) => n,
        None => panic!("the instruction is in GP 0.8.0"),
    }
}

// Execution unit vectors (A, L, S, M, D) of the units columns of the
// GP 0.8.0 §A.10 table.
/// GP 0.8.0 §A.10 table: no unit (0, 0, 0, 0, 0).
const NO_UNITS: Units = Units::new(0, 0, 0, 0, 0);
/// GP 0.8.0 §A.10 table: one ALU (1, 0, 0, 0, 0).
const ALU: Units = Units::new(1, 0, 0, 0, 0);
/// GP 0.8.0 §A.10 table: two ALUs (2, 0, 0, 0, 0), the trailing-zero counts.
const ALU2: Units = Units::new(2, 0, 0, 0, 0);
/// GP 0.8.0 §A.10 table: ALU and LOAD (1, 1, 0, 0, 0).
const LOAD: Units = Units::new(1, 1, 0, 0, 0);
/// GP 0.8.0 §A.10 table: ALU and STORE (1, 0, 1, 0, 0).
const STORE: Units = Units::new(1, 0, 1, 0, 0);
/// GP 0.8.0 §A.10 table: ALU and MUL (1, 0, 0, 1, 0).
const MUL: Units = Units::new(1, 0, 0, 1, 0);
/// GP 0.8.0 §A.10 table: ALU and DIV (1, 0, 0, 0, 1).
const DIV: Units = Units::new(1, 0, 0, 0, 1);

// ---------------------------------------------------------------------------
// Execution units.

/// A tuple of the GP's set 𝔼 (§A.9): a count per execution unit kind A
/// (ALU), L (load), S (store), M (multiply), D (divide).
///
/// Packed one byte per kind into a `u64` (A in the low byte), so the GP's
/// memberwise +, − and ≤ are single machine operations: every count stays
/// below 128, so the high bit of each byte is free to catch a borrow.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Units(u64);

/// The high bit of each of the five bytes: the borrow guard for `fits_in`.
const GUARD: u64 = 0x80_8080_8080;

impl Units {
    /// A tuple (A, L, S, M, D). Each count must be below 128.
    pub const fn new(a: u8, l: u8, s: u8, m: u8, d: u8) -> Units {
        assert!(a < 128 && l < 128 && s < 128 && m < 128 && d < 128);
        Units(a as u64 | (l as u64) << 8 | (s as u64) << 16 | (m as u64) << 24 | (d as u64) << 32)
    }

    /// The counts as `[A, L, S, M, D]`.
    pub const fn to_array(self) -> [u8; 5] {
        let b = self.0.to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4]]
    }

    /// The GP's `self ≤ free`, memberwise.
    #[inline(always)]
    fn fits_in(self, free: Units) -> bool {
        // Per byte: (free | 0x80) − need keeps its 0x80 bit iff free ≥ need,
        // and never borrows from the next byte since need < 0x80.
        ((free.0 | GUARD) - self.0) & GUARD == GUARD
    }

    /// Memberwise `self − other`; `other` must fit in `self`.
    #[inline(always)]
    fn minus(self, other: Units) -> Units {
        Units(self.0 - other.0)
    }

    /// Memberwise `self + other`; no count may reach 128.
    #[inline(always)]
    fn plus(self, other: Units) -> Units {
        Units(self.0 + other.0)
    }
}

impl fmt::Debug for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, l, s, m, d] = self.to_array();
        write!(f, "Units(A {a}, L {l}, S {s}, M {m}, D {d})")
    }
}

// ---------------------------------------------------------------------------
// Per-instruction parameters (§A.9's č, ď, x̌, š, ř; §A.10's table).

/// What the model needs to know about one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstCost {
    /// č: cycles until the instruction finishes execution.
    pub cycles: u32,
    /// ď: decode slots.
    pub slots: u32,
    /// x̌: execution units needed to start.
    pub units: Units,
    /// š: source registers, a bit mask (bit i = register i).
    pub sources: u16,
    /// ř: destination registers, a bit mask.
    pub destinations: u16,
    /// `move_reg`: handled by the frontend (𝔛^mov), no ROB entry.
    pub is_move: bool,
    /// In T: decoding stops after this instruction.
    pub is_terminator: bool,
}

/// The register set {r}.
#[inline(always)]
const fn bit(r: Reg) -> u16 {
    1 << r.index()
}

/// GP 0.8.0 §A.10 𝔓(a, b): `a` if a destination is also a source.
#[inline(always)]
const fn p(a: u32, b: u32, sources: u16, destinations: u16) -> u32 {
    if sources & destinations != 0 {
        a
    } else {
        b
    }
}

/// GP 0.8.0 §A.10 𝔓_S(a, b): `a` if rA = rD, as register indices (the GP
/// writes the values ω_A = ω_D; see "Readings of the GP" above).
#[inline(always)]
fn p_s(a: u32, b: u32, ra: Reg, rd: Reg) -> u32 {
    if ra == rd {
        a
    } else {
        b
    }
}

/// ζ_i: the code byte at `i`, 0 past the end (GP 0.8.0 §A.2, ζ = c ‖ 0, 0, …).
#[inline(always)]
fn zeta(code: &[u8], i: u64) -> u8 {
    usize::try_from(i)
        .ok()
        .and_then(|i| code.get(i))
        .copied()
        .unwrap_or(0)
}

/// GP 0.8.0 §A.10 𝔟: the cycles of the branch at `pc` with target `target`.
fn branch_cycles(blob: &Blob, pc: u32, target: u32) -> u32 {
    let fall_through = u64::from(pc) + 1 + u64::from(blob.skip(pc as usize));
    let cold = |byte| byte == TRAP_BYTE || byte == UNLIKELY_BYTE;
    if cold(zeta(&blob.code, fall_through)) || cold(zeta(&blob.code, u64::from(target))) {
        BRANCH_CYCLES_COLD
    } else {
        BRANCH_CYCLES
    }
}

/// š and ř of a two-registers-one-immediate instruction that reads rB and
/// writes rA (§A.5.10).
#[inline(always)]
const fn b_to_a(x: TwoRegImm) -> (u16, u16) {
    (bit(x.b), bit(x.a))
}

/// š and ř of a three-register instruction: reads rA and rB, writes rD
/// (§A.5.13).
#[inline(always)]
const fn ab_to_d(x: ThreeReg) -> (u16, u16) {
    (bit(x.a) | bit(x.b), bit(x.d))
}

impl Pipeline {
    /// The model's parameters for instruction `inst` at code offset `pc` of
    /// `blob` (GP 0.8.0 §A.9 č, ď, x̌, š, ř with the values of the §A.10
    /// table; š and ř are the registers the §A.5 semantics read and write).
    ///
    /// Fails with [`Error::Unsupported`] for `sbrk`, which GP 0.8.0 does not
    /// have.
    pub fn instruction_cost(blob: &Blob, pc: u32, inst: &Instruction) -> Result<InstCost, Error> {
        use Instruction as I;
        // (č, ď, x̌, š, ř). Every number below is a cell of the GP 0.8.0
        // §A.10 gas cost table (columns č, ď, A, L, S, M, D) for the rows of
        // the instructions named on the left; 𝔪, 𝔟, 𝔓, 𝔓_S are §A.10's.
        let (cycles, slots, units, sources, destinations): (u32, u32, Units, u16, u16) = match *inst
        {
            // §A.10: trap, fallthrough: č 2, ď 1, no units.
            I::Trap(_) | I::Fallthrough(_) => (2, 1, NO_UNITS, 0, 0),
            // §A.10: unlikely: č 40, ď 1, no units.
            I::Unlikely(_) => (40, 1, NO_UNITS, 0, 0),
            // §A.10: ecalli: č 100, ď 4, one ALU. §A.9: "[ecalli] is
            // assumed to neither read nor write to any registers".
            I::Ecalli(_) => (100, 4, ALU, 0, 0),
            // §A.10: load_imm_64: č 1, ď 2, no units.
            I::LoadImm64(x) => (1, 2, NO_UNITS, 0, bit(x.a)),
            // §A.10: store_imm_*: č 25, ď 1, ALU + STORE.
            I::StoreImmU8(_) | I::StoreImmU16(_) | I::StoreImmU32(_) | I::StoreImmU64(_) => {
                (25, 1, STORE, 0, 0)
            }
            // §A.10: jump: č 15, ď 1, no units.
            I::Jump(_) => (15, 1, NO_UNITS, 0, 0),
            // §A.10: jump_ind: č 22, ď 1, no units.
            I::JumpInd(x) => (22, 1, NO_UNITS, bit(x.a), 0),
            // §A.10: load_imm: č 1, ď 1, no units.
            I::LoadImm(x) => (1, 1, NO_UNITS, 0, bit(x.a)),
            // §A.10: load_*: č 𝔪, ď 1, ALU + LOAD.
            I::LoadU8(x)
            | I::LoadI8(x)
            | I::LoadU16(x)
            | I::LoadI16(x)
            | I::LoadU32(x)
            | I::LoadI32(x)
            | I::LoadU64(x) => (MEMORY_CYCLES, 1, LOAD, 0, bit(x.a)),
            // §A.10: store_*: č 25, ď 1, ALU + STORE.
            I::StoreU8(x) | I::StoreU16(x) | I::StoreU32(x) | I::StoreU64(x) => {
                (25, 1, STORE, bit(x.a), 0)
            }
            // §A.10: store_imm_ind_*: č 25, ď 1, ALU + STORE.
            I::StoreImmIndU8(x)
            | I::StoreImmIndU16(x)
            | I::StoreImmIndU32(x)
            | I::StoreImmIndU64(x) => (25, 1, STORE, bit(x.a), 0),
            // §A.10: load_imm_jump: č 15, ď 1, no units.
            I::LoadImmJump(x) => (15, 1, NO_UNITS, 0, bit(x.a)),
            // §A.10: branch_*_imm: č 𝔟, ď 1, one ALU.
            I::BranchEqImm(x)
            | I::BranchNeImm(x)
            | I::BranchLtUImm(x)
            | I::BranchLeUImm(x)
            | I::BranchGeUImm(x)
            | I::BranchGtUImm(x)
            | I::BranchLtSImm(x)
            | I::BranchLeSImm(x)
            | I::BranchGeSImm(x)
            | I::BranchGtSImm(x) => (branch_cycles(blob, pc, x.target), 1, ALU, bit(x.a), 0),
            // §A.10: move_reg: č 0, ď 1, no units (§A.9 𝔛^mov: it never
            // enters the ROB).
            I::MoveReg(x) => (0, 1, NO_UNITS, bit(x.a), bit(x.d)),
            I::Sbrk(_) => {
                return Err(Error::Unsupported(
                    "sbrk under the GP 0.8.0 pipeline gas model (GP 0.8.0 has no sbrk)",
                ))
            }
            // §A.10: count_set_bits_*, leading_zero_bits_*, sign_extend_*,
            // zero_extend_16: č 1, ď 1, one ALU.
            I::CountSetBits64(x)
            | I::CountSetBits32(x)
            | I::LeadingZeroBits64(x)
            | I::LeadingZeroBits32(x)
            | I::SignExtend8(x)
            | I::SignExtend16(x)
            | I::ZeroExtend16(x) => (1, 1, ALU, bit(x.a), bit(x.d)),
            // §A.10: trailing_zero_bits_*: č 2, ď 1, two ALUs.
            I::TrailingZeroBits64(x) | I::TrailingZeroBits32(x) => (2, 1, ALU2, bit(x.a), bit(x.d)),
            // §A.10: reverse_bytes: č 1, ď 𝔓(1, 2), one ALU.
            I::ReverseBytes(x) => {
                let (s, d) = (bit(x.a), bit(x.d));
                (1, p(1, 2, s, d), ALU, s, d)
            }
            // §A.10: store_ind_*: č 25, ď 1, ALU + STORE; reads rA (the
            // value) and rB (the base).
            I::StoreIndU8(x) | I::StoreIndU16(x) | I::StoreIndU32(x) | I::StoreIndU64(x) => {
                (25, 1, STORE, bit(x.a) | bit(x.b), 0)
            }
            // §A.10: load_ind_*: č 𝔪, ď 1, ALU + LOAD.
            I::LoadIndU8(x)
            | I::LoadIndI8(x)
            | I::LoadIndU16(x)
            | I::LoadIndI16(x)
            | I::LoadIndU32(x)
            | I::LoadIndI32(x)
            | I::LoadIndU64(x) => (MEMORY_CYCLES, 1, LOAD, bit(x.b), bit(x.a)),
            // §A.10: add_imm_32, shlo_l/shlo_r/shar_r_imm_32, rot_r_32_imm:
            // č 2, ď 𝔓(2, 3), one ALU.
            I::AddImm32(x)
            | I::ShloLImm32(x)
            | I::ShloRImm32(x)
            | I::SharRImm32(x)
            | I::RotR32Imm(x) => {
                let (s, d) = b_to_a(x);
                (2, p(2, 3, s, d), ALU, s, d)
            }
            // §A.10: and_imm, xor_imm, or_imm, add_imm_64,
            // shlo_l/shlo_r/shar_r_imm_64, rot_r_64_imm: č 1, ď 𝔓(1, 2), one
            // ALU.
            I::AndImm(x)
            | I::XorImm(x)
            | I::OrImm(x)
            | I::AddImm64(x)
            | I::ShloLImm64(x)
            | I::ShloRImm64(x)
            | I::SharRImm64(x)
            | I::RotR64Imm(x) => {
                let (s, d) = b_to_a(x);
                (1, p(1, 2, s, d), ALU, s, d)
            }
            // §A.10: mul_imm_32: č 4, ď 𝔓(2, 3), ALU + MUL.
            I::MulImm32(x) => {
                let (s, d) = b_to_a(x);
                (4, p(2, 3, s, d), MUL, s, d)
            }
            // §A.10: mul_imm_64: č 3, ď 𝔓(1, 2), ALU + MUL.
            I::MulImm64(x) => {
                let (s, d) = b_to_a(x);
                (3, p(1, 2, s, d), MUL, s, d)
            }
            // §A.10: set_lt_u/set_lt_s/set_gt_u/set_gt_s_imm: č 3, ď 3, one
            // ALU.
            I::SetLtUImm(x) | I::SetLtSImm(x) | I::SetGtUImm(x) | I::SetGtSImm(x) => {
                let (s, d) = b_to_a(x);
                (3, 3, ALU, s, d)
            }
            // §A.10: neg_add_imm_32: č 3, ď 4, one ALU.
            I::NegAddImm32(x) => {
                let (s, d) = b_to_a(x);
                (3, 4, ALU, s, d)
            }
            // §A.10: neg_add_imm_64: č 2, ď 3, one ALU.
            I::NegAddImm64(x) => {
                let (s, d) = b_to_a(x);
                (2, 3, ALU, s, d)
            }
            // §A.10: shlo_l/shlo_r/shar_r_imm_alt_32, rot_r_32_imm_alt: č 2,
            // ď 4, one ALU.
            I::ShloLImmAlt32(x)
            | I::ShloRImmAlt32(x)
            | I::SharRImmAlt32(x)
            | I::RotR32ImmAlt(x) => {
                let (s, d) = b_to_a(x);
                (2, 4, ALU, s, d)
            }
            // §A.10: shlo_l/shlo_r/shar_r_imm_alt_64, rot_r_64_imm_alt: č 1,
            // ď 3, one ALU.
            I::ShloLImmAlt64(x)
            | I::ShloRImmAlt64(x)
            | I::SharRImmAlt64(x)
            | I::RotR64ImmAlt(x) => {
                let (s, d) = b_to_a(x);
                (1, 3, ALU, s, d)
            }
            // §A.10: cmov_iz_imm, cmov_nz_imm: č 2, ď 3, one ALU. They do
            // not read rA (see "Readings of the GP" above).
            I::CmovIzImm(x) | I::CmovNzImm(x) => {
                let (s, d) = b_to_a(x);
                (2, 3, ALU, s, d)
            }
            // §A.10: branch_*: č 𝔟, ď 1, one ALU.
            I::BranchEq(x)
            | I::BranchNe(x)
            | I::BranchLtU(x)
            | I::BranchLtS(x)
            | I::BranchGeU(x)
            | I::BranchGeS(x) => (
                branch_cycles(blob, pc, x.target),
                1,
                ALU,
                bit(x.a) | bit(x.b),
                0,
            ),
            // §A.10: load_imm_jump_ind: č 22, ď 1, no units.
            I::LoadImmJumpInd(x) => (22, 1, NO_UNITS, bit(x.b), bit(x.a)),
            // §A.10: add_32, sub_32, xnor: č 2, ď 𝔓(2, 3), one ALU.
            I::Add32(x) | I::Sub32(x) | I::Xnor(x) => {
                let (s, d) = ab_to_d(x);
                (2, p(2, 3, s, d), ALU, s, d)
            }
            // §A.10: add_64, sub_64, and, xor, or: č 1, ď 𝔓(1, 2), one ALU.
            I::Add64(x) | I::Sub64(x) | I::And(x) | I::Xor(x) | I::Or(x) => {
                let (s, d) = ab_to_d(x);
                (1, p(1, 2, s, d), ALU, s, d)
            }
            // §A.10: mul_32: č 4, ď 𝔓(2, 3), ALU + MUL.
            I::Mul32(x) => {
                let (s, d) = ab_to_d(x);
                (4, p(2, 3, s, d), MUL, s, d)
            }
            // §A.10: mul_64: č 3, ď 𝔓(1, 2), ALU + MUL.
            I::Mul64(x) => {
                let (s, d) = ab_to_d(x);
                (3, p(1, 2, s, d), MUL, s, d)
            }
            // §A.10: div_*, rem_*: č 60, ď 4, ALU + DIV.
            I::DivU32(x)
            | I::DivS32(x)
            | I::RemU32(x)
            | I::RemS32(x)
            | I::DivU64(x)
            | I::DivS64(x)
            | I::RemU64(x)
            | I::RemS64(x) => {
                let (s, d) = ab_to_d(x);
                (60, 4, DIV, s, d)
            }
            // §A.10: shlo_l_32, shlo_r_32, shar_r_32, rot_l_32, rot_r_32:
            // č 2, ď 𝔓_S(3, 4), one ALU.
            I::ShloL32(x) | I::ShloR32(x) | I::SharR32(x) | I::RotL32(x) | I::RotR32(x) => {
                let (s, d) = ab_to_d(x);
                (2, p_s(3, 4, x.a, x.d), ALU, s, d)
            }
            // §A.10: shlo_l_64, shlo_r_64, shar_r_64, rot_l_64, rot_r_64:
            // č 1, ď 𝔓_S(2, 3), one ALU.
            I::ShloL64(x) | I::ShloR64(x) | I::SharR64(x) | I::RotL64(x) | I::RotR64(x) => {
                let (s, d) = ab_to_d(x);
                (1, p_s(2, 3, x.a, x.d), ALU, s, d)
            }
            // §A.10: mul_upper_s_s, mul_upper_u_u: č 4, ď 4, ALU + MUL.
            I::MulUpperSS(x) | I::MulUpperUU(x) => {
                let (s, d) = ab_to_d(x);
                (4, 4, MUL, s, d)
            }
            // §A.10: mul_upper_s_u: č 6, ď 4, ALU + MUL.
            I::MulUpperSU(x) => {
                let (s, d) = ab_to_d(x);
                (6, 4, MUL, s, d)
            }
            // §A.10: set_lt_u, set_lt_s: č 3, ď 3, one ALU.
            I::SetLtU(x) | I::SetLtS(x) => {
                let (s, d) = ab_to_d(x);
                (3, 3, ALU, s, d)
            }
            // §A.10: cmov_iz, cmov_nz: č 2, ď 2, one ALU. They do not read
            // rD (see "Readings of the GP" above).
            I::CmovIz(x) | I::CmovNz(x) => {
                let (s, d) = ab_to_d(x);
                (2, 2, ALU, s, d)
            }
            // §A.10: and_inv, or_inv: č 2, ď 3, one ALU.
            I::AndInv(x) | I::OrInv(x) => {
                let (s, d) = ab_to_d(x);
                (2, 3, ALU, s, d)
            }
            // §A.10: max, max_u, min, min_u: č 3, ď 𝔓(2, 3), one ALU.
            I::Max(x) | I::MaxU(x) | I::Min(x) | I::MinU(x) => {
                let (s, d) = ab_to_d(x);
                (3, p(2, 3, s, d), ALU, s, d)
            }
        };
        Ok(InstCost {
            cycles,
            slots,
            units,
            sources,
            destinations,
            is_move: matches!(inst, I::MoveReg(_)),
            is_terminator: inst.is_terminator(),
        })
    }

    /// The GP 0.8.0 §A.9 simulation 𝔛 from x_init = (ı, 0, 4, 5, (4, 4, 4,
    /// 1, 1), []) over the instructions `insts` (from a block start; decoding
    /// stops after the first terminator, or when `insts` ends): the final
    /// cycle count x_final_c. The block's cost is max(x_final_c − 3, 1).
    ///
    /// Crate-private: it relies on what [`Pipeline::instruction_cost`]
    /// guarantees (č ≥ 1 outside `move_reg`, units that fit in the machine,
    /// at most two sources and one destination).
    pub(crate) fn cycles(insts: impl IntoIterator<Item = InstCost>) -> u64 {
        Sim::new().run(insts.into_iter())
    }

    /// The block cost ϱΔ for a final cycle count (GP 0.8.0 §A.9).
    pub fn cost_of_cycles(cycles: u64) -> u64 {
        cycles.saturating_sub(COST_OFFSET).max(MIN_COST)
    }
}

impl GasModel for Pipeline {
    fn block_cost(&self, program: &Program, block: usize) -> Result<u64, Error> {
        if program.profile() != Profile::V0_8 {
            return Err(Error::Unsupported(
                "the GP 0.8.0 pipeline gas model for a GP 0.7.2 program (the GP defines it for \
                 0.8.0 only; 0.7.2 charges one gas per instruction: use the naive model)",
            ));
        }
        let blob = program.blob();
        let mut error = None;
        // The block's instructions, from its start to its terminator
        // (GP 0.8.0 §A.9: the simulation starts at the block start ı ∈ ϖ).
        let insts =
            program.block(block).map_while(|(pc, inst, _)| {
                match Pipeline::instruction_cost(blob, pc, &inst) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        error = Some(e);
                        None
                    }
                }
            });
        let cycles = Pipeline::cycles(insts);
        match error {
            Some(e) => Err(e),
            None => Ok(Pipeline::cost_of_cycles(cycles)),
        }
    }
}

// ---------------------------------------------------------------------------
// The simulation.
//
// Every instruction that enters the ROB needs č ≥ 1 cycles, and its life
// under 𝔛 is fixed by the cycle D it is decoded in and the cycle S it starts
// in. With R = S + č:
// - cycle D: DEC; cycles D+1..=S: WAIT (𝔛‴ turns DEC into WAIT; 𝔛″ starts
//   it in cycle S);
// - cycles S..=R: EXE, with R − c cycles left in cycle c (𝔛‴ counts down);
//   its units are taken in S and come back in R (𝔛‴ returns them on the
//   advance out of the cycle with 1 cycle left), and from R on it has 0
//   cycles left, which is what its dependents wait for (𝔖);
// - from R + 1: FIN (𝔛‴: EXE with 0 cycles left);
// - it is ∅ from the first cycle c with every entry up to it FIN or ∅ in
//   cycle c − 1 (𝔛‴), i.e. from max(R_k + 2) over it and every entry before
//   it.
// So the entries are kept with their start cycle (as R) only, and the
// simulation jumps from one cycle in which something can decode or start to
// the next, the cycles in between changing nothing but what those times
// already say. The final cycle of 𝔛 is the first one, after the last
// decode and start, in which every entry is ∅: max(R) + 2.

/// An entry that has not started has `ready_at` = NOT_STARTED + č: above
/// every cycle the simulation reaches.
const NOT_STARTED: u64 = 1 << 63;

/// "No entry" for [`Sim::owner`] and [`Entry::deps`]. Entries are numbered
/// from 1, so 0 is below `head` for good: like a ∅ entry, it has 0 cycles
/// left.
const NO_ENTRY: u32 = 0;

/// A live ROB entry (GP 0.8.0 §A.9, ℝ = (s, c, p, r, t); s and c follow
/// from `ready_at`, see above; r is kept as per-register owners in
/// [`Sim::owner`]).
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// R = S + č once started (0 cycles left from cycle R on); before
    /// that, NOT_STARTED + č.
    ready_at: u64,
    /// p: the entries (by seq) this one depends on; at most one per source
    /// register, and no instruction has more than two.
    deps: [u32; 2],
    /// t: the execution units it needs.
    units: Units,
}

const EMPTY_ENTRY: Entry = Entry {
    ready_at: 0,
    deps: [NO_ENTRY; 2],
    units: NO_UNITS,
};

/// The simulation state x (GP 0.8.0 §A.9, 𝕊) minus ı (the instruction
/// iterator) and d, e (local to a cycle).
struct Sim {
    /// The live window of the ROB: entry `seq` for `head <= seq < tail` is
    /// in slot `seq % 32`; entries below `head` are ∅.
    rob: [Entry; ROB_CAPACITY],
    head: u32,
    tail: u32,
    /// Every entry below this one has started.
    first_waiting: u32,
    /// The slots of the started entries whose R is still ahead (c < R):
    /// they hold their units and have cycles left.
    in_flight: u32,
    /// For each register, the entry (seq) whose clobbered set r holds it,
    /// or NO_ENTRY.
    owner: [u32; Reg::COUNT],
    /// c: the cycle counter.
    cycle: u64,
    /// t: free execution units.
    free: Units,
    /// max(R + 2) over the entries started so far: the first cycle in
    /// which all of them are ∅.
    all_retired_at: u64,
}

#[inline(always)]
fn slot(seq: u32) -> usize {
    seq as usize % ROB_CAPACITY
}

impl Sim {
    /// x_init without ı (GP 0.8.0 §A.9, ϱΔ).
    fn new() -> Sim {
        Sim {
            rob: [EMPTY_ENTRY; ROB_CAPACITY],
            head: 1,
            tail: 1,
            first_waiting: 1,
            in_flight: 0,
            owner: [NO_ENTRY; Reg::COUNT],
            cycle: 0,
            free: UNITS_AVAILABLE,
            all_retired_at: 0,
        }
    }

    /// l: the number of live entries.
    #[inline(always)]
    fn live(&self) -> usize {
        (self.tail - self.head) as usize
    }

    /// 𝔛: run to the stop rule and return the final cycle count.
    ///
    /// 𝔛 tries, every iteration: decode (𝔛′), else start (𝔛″), else stop,
    /// else advance a cycle (𝔛‴). Starting changes none of decode's
    /// conditions (ı, d, l), so within a cycle all decodes come first, then
    /// all starts, then the stop test, then the advance.
    fn run(&mut self, mut insts: impl Iterator<Item = InstCost>) -> u64 {
        // ı: the next instruction to decode; None once a terminator has
        // been decoded (∅).
        let mut next = insts.next();
        loop {
            let c = self.cycle;
            // 𝔛′ while ı ≠ ∅, ď(ı) ≤ d and l < 32; d = 4 in every cycle.
            let mut slots = DECODE_SLOTS;
            let decoded_from = self.tail;
            while let Some(inst) = next {
                if inst.slots > slots || self.live() >= ROB_CAPACITY {
                    break;
                }
                slots -= inst.slots;
                self.decode(&inst);
                next = if inst.is_terminator {
                    None
                } else {
                    insts.next()
                };
            }
            // 𝔛″ while 𝔖 finds an entry and e > 0; e = 5 in every cycle.
            // Entries decoded in this cycle are DEC, not WAIT.
            let starts = self.start_ready(decoded_from);
            // Stop once ı = ∅ and l = 0: with nothing left to decode or
            // start, that is when the last started entry is ∅.
            if next.is_none() && self.first_waiting == self.tail {
                return c.max(self.all_retired_at);
            }
            // 𝔛‴ up to the next cycle in which a decode or a start can
            // happen (see `next_event`).
            let at = if starts == 0 || decoded_from != self.tail {
                // WAIT entries left over for lack of e, or new DEC entries
                // that are WAIT in the next cycle.
                c + 1
            } else {
                self.next_event(next.is_some())
            };
            self.advance_to(at);
        }
    }

    /// 𝔛^mov or 𝔛^dec for one instruction (d is the caller's).
    #[inline(always)]
    fn decode(&mut self, inst: &InstCost) {
        if inst.is_move {
            // 𝔛^mov: every entry whose r holds the source gains the
            // destination, every other entry loses it: the destination now
            // has the source's owner (or none).
            let src = inst.sources.trailing_zeros() as usize;
            let dst = inst.destinations.trailing_zeros() as usize;
            self.owner[dst] = self.owner[src];
            return;
        }
        // 𝔛^dec: p = the entries whose r meets š, taken before r loses ř.
        debug_assert!(inst.sources.count_ones() <= 2 && inst.cycles > 0);
        let mut deps = [NO_ENTRY; 2];
        let mut sources = inst.sources;
        for dep in deps.iter_mut() {
            if sources == 0 {
                break;
            }
            *dep = self.owner[sources.trailing_zeros() as usize];
            sources &= sources - 1;
        }
        let mut destinations = inst.destinations;
        while destinations != 0 {
            let r = destinations.trailing_zeros() as usize;
            destinations &= destinations - 1;
            self.owner[r] = self.tail;
        }
        self.rob[slot(self.tail)] = Entry {
            ready_at: NOT_STARTED + u64::from(inst.cycles),
            deps,
            units: inst.units,
        };
        self.tail += 1;
    }

    /// 𝔛″ for as long as e > 0 and 𝔖 finds a ready entry below `end`: the
    /// lowest-indexed WAIT entry whose units fit and whose dependencies have
    /// 0 cycles left (a ∅ dependency has 0). Starting one never makes an
    /// earlier one ready (units only shrink, a started entry has cycles
    /// left), so one pass in index order finds them all. Returns e.
    #[inline(always)]
    fn start_ready(&mut self, end: u32) -> u32 {
        let c = self.cycle;
        let mut starts = STARTS_PER_CYCLE;
        let mut seq = self.first_waiting;
        while starts > 0 && seq < end {
            let entry = self.rob[slot(seq)];
            if entry.ready_at >= NOT_STARTED
                && entry.units.fits_in(self.free)
                && entry
                    .deps
                    .iter()
                    .all(|&d| d < self.head || self.rob[slot(d)].ready_at <= c)
            {
                starts -= 1;
                self.free = self.free.minus(entry.units);
                let ready_at = c + (entry.ready_at - NOT_STARTED);
                self.rob[slot(seq)].ready_at = ready_at;
                self.in_flight |= 1 << slot(seq);
                // ∅ from R + 2 at the earliest (FIN from R + 1, see above).
                self.all_retired_at = self.all_retired_at.max(ready_at + 2);
            }
            seq += 1;
        }
        while self.first_waiting < self.tail
            && self.rob[slot(self.first_waiting)].ready_at < NOT_STARTED
        {
            self.first_waiting += 1;
        }
        starts
    }

    /// After a cycle with e > 0 left and no new DEC entry: the next cycle
    /// in which something can be decoded or started. Until then every WAIT
    /// entry stays blocked (its dependencies' cycles left and the free units
    /// change only at some started entry's R), and the decoder stays blocked
    /// if ı = ∅ or the ROB is full (it empties a slot when the oldest entry
    /// is ∅, at its R + 2). `more` says ı ≠ ∅.
    fn next_event(&self, more: bool) -> u64 {
        let c = self.cycle;
        if more && self.live() < ROB_CAPACITY {
            return c + 1;
        }
        let mut at = u64::MAX;
        let mut in_flight = self.in_flight;
        while in_flight != 0 {
            let s = in_flight.trailing_zeros() as usize;
            in_flight &= in_flight - 1;
            at = at.min(self.rob[s].ready_at);
        }
        if more {
            let oldest = self.rob[slot(self.head)].ready_at;
            if oldest < NOT_STARTED {
                at = at.min(oldest + 2);
            }
        }
        debug_assert!(
            at != u64::MAX && at > c,
            "the pipeline cannot stall for good"
        );
        at.max(c + 1)
    }

    /// 𝔛‴ from cycle c to cycle `at`: units taken at S come back at R, and
    /// the oldest entries are ∅ from R + 2 (in order).
    fn advance_to(&mut self, at: u64) {
        let mut in_flight = self.in_flight;
        while in_flight != 0 {
            let s = in_flight.trailing_zeros() as usize;
            in_flight &= in_flight - 1;
            let e = &self.rob[s];
            if e.ready_at <= at {
                self.free = self.free.plus(e.units);
                self.in_flight &= !(1 << s);
            }
        }
        self.cycle = at;
        while self.head < self.tail {
            let r = self.rob[slot(self.head)].ready_at;
            if r >= NOT_STARTED || r + 2 > at {
                break;
            }
            self.head += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// A literal transcription of GP 0.8.0 §A.9's 𝔛: a ROB that only grows,
    /// sets of dependencies and registers, one rule per iteration.
    fn reference_cycles(insts: &[InstCost]) -> u64 {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum S {
            Dec,
            Wait,
            Exe,
            Fin,
            Gone,
        }
        struct E {
            s: S,
            c: u32,
            p: Vec<usize>,
            r: u16,
            t: [u8; 5],
        }
        let le = |a: [u8; 5], b: [u8; 5]| a.iter().zip(b).all(|(x, y)| *x <= y);
        let mut i = if insts.is_empty() { None } else { Some(0) };
        let (mut c, mut d, mut e) = (0u64, 4u32, 5u32);
        let mut t = [4u8, 4, 4, 1, 1];
        let mut r: Vec<E> = Vec::new();
        loop {
            let l = r.iter().filter(|x| x.s != S::Gone).count();
            if let Some(ix) = i.filter(|&ix| insts[ix].slots <= d && l < 32) {
                let inst = insts[ix];
                if inst.is_move {
                    for x in r.iter_mut() {
                        if x.r & inst.sources != 0 {
                            x.r |= inst.destinations;
                        } else {
                            x.r &= !inst.destinations;
                        }
                    }
                    d -= 1;
                } else {
                    let p = (0..r.len())
                        .filter(|&k| r[k].r & inst.sources != 0)
                        .collect();
                    for x in r.iter_mut() {
                        x.r &= !inst.destinations;
                    }
                    r.push(E {
                        s: S::Dec,
                        c: inst.cycles,
                        p,
                        r: inst.destinations,
                        t: inst.units.to_array(),
                    });
                    d -= inst.slots;
                }
                i = if inst.is_terminator || ix + 1 == insts.len() {
                    None
                } else {
                    Some(ix + 1)
                };
                continue;
            }
            let ready = (0..r.len()).find(|&j| {
                r[j].s == S::Wait && le(r[j].t, t) && r[j].p.iter().all(|&k| r[k].c == 0)
            });
            if let (Some(n), true) = (ready, e > 0) {
                e -= 1;
                for (free, used) in t.iter_mut().zip(r[n].t) {
                    *free -= used;
                }
                r[n].s = S::Exe;
                continue;
            }
            if i.is_none() && l == 0 {
                return c;
            }
            d = 4;
            e = 5;
            c += 1;
            for x in r.iter().filter(|x| x.s == S::Exe && x.c == 1) {
                for (free, used) in t.iter_mut().zip(x.t) {
                    *free += used;
                }
            }
            let pre: Vec<(S, u32)> = r.iter().map(|x| (x.s, x.c)).collect();
            for j in 0..r.len() {
                let (s, cl) = pre[j];
                r[j].s = if pre[..=j].iter().all(|(s, _)| matches!(s, S::Fin | S::Gone)) {
                    S::Gone
                } else if s == S::Dec {
                    S::Wait
                } else if s == S::Exe && cl == 0 {
                    S::Fin
                } else {
                    s
                };
                if s == S::Exe && cl > 0 {
                    r[j].c = cl - 1;
                }
            }
        }
    }

    fn blob(code: &[u8], starts: &[usize]) -> Vec<u8> {
        Blob::from_code(code, starts.iter().copied()).to_bytes()
    }

    fn costs(bytes: &[u8]) -> Vec<u64> {
        let mut p = Program::from_bytes(bytes, Profile::V0_8).unwrap();
        p.set_gas_model(&Pipeline).unwrap();
        (0..p.block_count()).map(|b| p.block_cost(b)).collect()
    }

    #[test]
    fn vector_gas_basic_consume_all() {
        // move_reg r0, r0; trap: cost 2 (gp-0.8 gas_basic_consume_all).
        assert_eq!(costs(&blob(&[100, 0x00, 0], &[0, 2])), vec![2]);
    }

    #[test]
    fn vector_gas_complex_1() {
        // gp-0.8 gas_complex_1: one block of cost 28.
        let program = [
            0, 0, 26, 127, 121, 6, 132, 136, 7, 51, 10, 1, 151, 136, 8, 132, 153, 255, 248, 212,
            152, 8, 200, 168, 9, 120, 122, 2, 0, 73, 18, 73, 2,
        ];
        assert_eq!(costs(&program), vec![28]);
    }

    #[test]
    fn branch_cost_reads_raw_bytes_at_both_targets() {
        // 0: branch_eq_imm r7, 0, +8 ; 3: unlikely ; 4: load_imm r7, 1 ;
        // 7: trap ; 8: load_imm r7, 2 ; 11: trap (gp-0.8 gas_jump_unlikely_else).
        let code = [81, 0x07, 8, 2, 51, 7, 1, 0, 51, 7, 2, 0];
        let starts = [0, 3, 4, 7, 8, 11];
        assert_eq!(costs(&blob(&code, &starts)), vec![1, 40, 2]);
        // Neither the fall-through (3) nor the target (6) holds trap or
        // unlikely: 𝔟 = 20, and a lone branch costs its 𝔟 (decode in cycle
        // 0, start in 1, 𝔟 cycles, FIN, retire: 𝔟 + 3 cycles).
        let code = [81, 0x07, 6, 51, 7, 1, 51, 7, 2, 0];
        let starts = [0, 3, 6, 9];
        assert_eq!(costs(&blob(&code, &starts))[0], 20);
    }

    #[test]
    fn v0_7_is_unsupported() {
        let mut p = Program::from_bytes(&blob(&[0], &[0]), Profile::V0_7).unwrap();
        assert!(matches!(
            p.set_gas_model(&Pipeline),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn units_arithmetic() {
        let need = Units::new(1, 0, 0, 1, 0);
        assert!(need.fits_in(UNITS_AVAILABLE));
        let left = UNITS_AVAILABLE.minus(need);
        assert_eq!(left.to_array(), [3, 4, 4, 0, 1]);
        assert!(!need.fits_in(left));
        assert!(ALU2.fits_in(left));
        assert_eq!(left.plus(need), UNITS_AVAILABLE);
        assert!(!Units::new(5, 0, 0, 0, 0).fits_in(UNITS_AVAILABLE));
    }

    /// A random instruction over registers r0-r3 (to make dependencies
    /// likely), with parameter values from the §A.10 table.
    fn arb_inst() -> impl Strategy<Value = InstCost> {
        let cycles = prop::sample::select(vec![1u32, 2, 3, 4, 6, 15, 20, 22, 25, 40, 60, 100]);
        let units = prop::sample::select(vec![NO_UNITS, ALU, ALU2, LOAD, STORE, MUL, DIV]);
        (
            0..8u8,
            cycles,
            1..=4u32,
            units,
            0..4usize,
            0..4usize,
            0..3usize,
            0..5usize,
        )
            .prop_map(|(kind, cycles, slots, units, a, b, nsrc, dst)| {
                let reg = |i: usize| 1u16 << i;
                if kind == 0 {
                    InstCost {
                        cycles: 0,
                        slots: 1,
                        units: NO_UNITS,
                        sources: reg(a),
                        destinations: reg(b),
                        is_move: true,
                        is_terminator: false,
                    }
                } else {
                    let sources = match nsrc {
                        0 => 0,
                        1 => reg(a),
                        _ => reg(a) | reg(b),
                    };
                    InstCost {
                        cycles,
                        slots,
                        units,
                        sources,
                        destinations: if dst < 4 { reg(dst) } else { 0 },
                        is_move: false,
                        is_terminator: false,
                    }
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn matches_the_literal_gp_simulation(mut insts in prop::collection::vec(arb_inst(), 1..90)) {
            let last = insts.len() - 1;
            insts[last].is_move = false;
            insts[last].is_terminator = true;
            if insts[last].cycles == 0 {
                insts[last].cycles = 2;
            }
            prop_assert_eq!(Pipeline::cycles(insts.iter().copied()), reference_cycles(&insts));
        }
    }
}
