//! The instruction set: one table, grouped by the Gray Paper's argument formats.
//!
//! Every instruction is listed exactly once in [`for_each_instruction!`], with
//! its GP name, its argument format, its opcode number under each profile
//! (`_` where the profile does not have it) and whether it terminates a basic
//! block (the GP's set T). Everything else is generated from that list: the
//! [`Opcode`] enum, the [`Instruction`] enum (one variant per opcode, carrying
//! the argument struct of its format), names, per-profile opcode maps, and the
//! generic conversions between instructions and their [`Args`].
//!
//! Consumers (decoder, interpreter, gas models, disassembler, assembler) match
//! on [`Instruction`]; a missing arm fails to compile.

use core::fmt;

/// Which version of the Gray Paper's PVM a program targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// GP 0.8.0: `unlikely`, no `sbrk`, opcodes 101-110 renumbered, strict
    /// blob validation, per-block pipeline gas.
    #[default]
    V0_8,
    /// GP 0.7.2: `sbrk`, old numbering, an invalid opcode or running past the
    /// end of the code behaves as `trap`.
    V0_7,
}

impl Profile {
    /// Both profiles, default first.
    pub const ALL: [Profile; 2] = [Profile::V0_8, Profile::V0_7];

    /// The short name used on the command line (`0.8`, `0.7`).
    pub const fn name(self) -> &'static str {
        match self {
            Profile::V0_8 => "0.8",
            Profile::V0_7 => "0.7",
        }
    }

    /// Parses `0.8`, `0.8.0`, `0.7`, `0.7.2`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "0.8" | "0.8.0" => Some(Profile::V0_8),
            "0.7" | "0.7.2" => Some(Profile::V0_7),
            _ => None,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the 13 PVM registers (`0..=12`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Reg(u8);

impl Reg {
    /// Number of registers.
    pub const COUNT: usize = 13;

    /// A register from an index `0..=12`.
    pub const fn new(index: u8) -> Option<Reg> {
        if index < 13 {
            Some(Reg(index))
        } else {
            None
        }
    }

    /// The GP's decoding rule: `min(12, x)`.
    pub const fn clamped(x: u8) -> Reg {
        if x > 12 {
            Reg(12)
        } else {
            Reg(x)
        }
    }

    /// The register's index `0..=12`.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The register's index as a byte.
    pub const fn raw(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// The GP's 13 argument formats (§A.5 "Instruction tables").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    NoArgs,
    OneImm,
    RegExtImm,
    TwoImm,
    OneOffset,
    RegImm,
    RegTwoImm,
    RegImmOffset,
    TwoReg,
    TwoRegImm,
    TwoRegOffset,
    TwoRegTwoImm,
    ThreeReg,
}

// Argument structs, one per format. Immediates are kept as the 32-bit value
// after the GP's sign extension from their encoded width (`sext_n`, n <= 4);
// the 64-bit operand is `imm as i32 as i64 as u64` (see [`sext`]).
// Jump targets are absolute code offsets (`ı + signed offset`, mod 2^32).

/// No arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NoArgs;

/// One immediate (`ecalli`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OneImm {
    pub imm: u32,
}

/// One register and a full 64-bit immediate (`load_imm_64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegExtImm {
    pub a: Reg,
    pub imm: u64,
}

/// Two immediates: `x` (address) and `y` (value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TwoImm {
    pub x: u32,
    pub y: u32,
}

/// One offset: an absolute jump target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OneOffset {
    pub target: u32,
}

/// One register and one immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegImm {
    pub a: Reg,
    pub imm: u32,
}

/// One register and two immediates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegTwoImm {
    pub a: Reg,
    pub x: u32,
    pub y: u32,
}

/// One register, one immediate and one jump target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegImmOffset {
    pub a: Reg,
    pub imm: u32,
    pub target: u32,
}

/// Two registers: destination `d` and source `a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TwoReg {
    pub d: Reg,
    pub a: Reg,
}

/// Two registers and one immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TwoRegImm {
    pub a: Reg,
    pub b: Reg,
    pub imm: u32,
}

/// Two registers and one jump target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TwoRegOffset {
    pub a: Reg,
    pub b: Reg,
    pub target: u32,
}

/// Two registers and two immediates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TwoRegTwoImm {
    pub a: Reg,
    pub b: Reg,
    pub x: u32,
    pub y: u32,
}

/// Three registers: sources `a`, `b`, destination `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreeReg {
    pub a: Reg,
    pub b: Reg,
    pub d: Reg,
}

/// Sign-extends a 32-bit immediate to the 64-bit operand value.
#[inline(always)]
pub const fn sext(imm: u32) -> u64 {
    imm as i32 as i64 as u64
}

/// The one instruction table.
///
/// Columns: variant, GP name, opcode under GP 0.8.0, opcode under GP 0.7.2,
/// terminator (`T`) or not (`-`). Grouped by format.
#[macro_export]
macro_rules! for_each_instruction {
    ($m:ident) => {
        $m! {
            NoArgs {
                Trap = "trap", 0, 0, T;
                Fallthrough = "fallthrough", 1, 1, T;
                Unlikely = "unlikely", 2, _, -;
            }
            OneImm {
                Ecalli = "ecalli", 10, 10, -;
            }
            RegExtImm {
                LoadImm64 = "load_imm_64", 20, 20, -;
            }
            TwoImm {
                StoreImmU8 = "store_imm_u8", 30, 30, -;
                StoreImmU16 = "store_imm_u16", 31, 31, -;
                StoreImmU32 = "store_imm_u32", 32, 32, -;
                StoreImmU64 = "store_imm_u64", 33, 33, -;
            }
            OneOffset {
                Jump = "jump", 40, 40, T;
            }
            RegImm {
                JumpInd = "jump_ind", 50, 50, T;
                LoadImm = "load_imm", 51, 51, -;
                LoadU8 = "load_u8", 52, 52, -;
                LoadI8 = "load_i8", 53, 53, -;
                LoadU16 = "load_u16", 54, 54, -;
                LoadI16 = "load_i16", 55, 55, -;
                LoadU32 = "load_u32", 56, 56, -;
                LoadI32 = "load_i32", 57, 57, -;
                LoadU64 = "load_u64", 58, 58, -;
                StoreU8 = "store_u8", 59, 59, -;
                StoreU16 = "store_u16", 60, 60, -;
                StoreU32 = "store_u32", 61, 61, -;
                StoreU64 = "store_u64", 62, 62, -;
            }
            RegTwoImm {
                StoreImmIndU8 = "store_imm_ind_u8", 70, 70, -;
                StoreImmIndU16 = "store_imm_ind_u16", 71, 71, -;
                StoreImmIndU32 = "store_imm_ind_u32", 72, 72, -;
                StoreImmIndU64 = "store_imm_ind_u64", 73, 73, -;
            }
            RegImmOffset {
                LoadImmJump = "load_imm_jump", 80, 80, T;
                BranchEqImm = "branch_eq_imm", 81, 81, T;
                BranchNeImm = "branch_ne_imm", 82, 82, T;
                BranchLtUImm = "branch_lt_u_imm", 83, 83, T;
                BranchLeUImm = "branch_le_u_imm", 84, 84, T;
                BranchGeUImm = "branch_ge_u_imm", 85, 85, T;
                BranchGtUImm = "branch_gt_u_imm", 86, 86, T;
                BranchLtSImm = "branch_lt_s_imm", 87, 87, T;
                BranchLeSImm = "branch_le_s_imm", 88, 88, T;
                BranchGeSImm = "branch_ge_s_imm", 89, 89, T;
                BranchGtSImm = "branch_gt_s_imm", 90, 90, T;
            }
            TwoReg {
                MoveReg = "move_reg", 100, 100, -;
                Sbrk = "sbrk", _, 101, -;
                CountSetBits64 = "count_set_bits_64", 101, 102, -;
                CountSetBits32 = "count_set_bits_32", 102, 103, -;
                LeadingZeroBits64 = "leading_zero_bits_64", 103, 104, -;
                LeadingZeroBits32 = "leading_zero_bits_32", 104, 105, -;
                TrailingZeroBits64 = "trailing_zero_bits_64", 105, 106, -;
                TrailingZeroBits32 = "trailing_zero_bits_32", 106, 107, -;
                SignExtend8 = "sign_extend_8", 107, 108, -;
                SignExtend16 = "sign_extend_16", 108, 109, -;
                ZeroExtend16 = "zero_extend_16", 109, 110, -;
                ReverseBytes = "reverse_bytes", 110, 111, -;
            }
            TwoRegImm {
                StoreIndU8 = "store_ind_u8", 120, 120, -;
                StoreIndU16 = "store_ind_u16", 121, 121, -;
                StoreIndU32 = "store_ind_u32", 122, 122, -;
                StoreIndU64 = "store_ind_u64", 123, 123, -;
                LoadIndU8 = "load_ind_u8", 124, 124, -;
                LoadIndI8 = "load_ind_i8", 125, 125, -;
                LoadIndU16 = "load_ind_u16", 126, 126, -;
                LoadIndI16 = "load_ind_i16", 127, 127, -;
                LoadIndU32 = "load_ind_u32", 128, 128, -;
                LoadIndI32 = "load_ind_i32", 129, 129, -;
                LoadIndU64 = "load_ind_u64", 130, 130, -;
                AddImm32 = "add_imm_32", 131, 131, -;
                AndImm = "and_imm", 132, 132, -;
                XorImm = "xor_imm", 133, 133, -;
                OrImm = "or_imm", 134, 134, -;
                MulImm32 = "mul_imm_32", 135, 135, -;
                SetLtUImm = "set_lt_u_imm", 136, 136, -;
                SetLtSImm = "set_lt_s_imm", 137, 137, -;
                ShloLImm32 = "shlo_l_imm_32", 138, 138, -;
                ShloRImm32 = "shlo_r_imm_32", 139, 139, -;
                SharRImm32 = "shar_r_imm_32", 140, 140, -;
                NegAddImm32 = "neg_add_imm_32", 141, 141, -;
                SetGtUImm = "set_gt_u_imm", 142, 142, -;
                SetGtSImm = "set_gt_s_imm", 143, 143, -;
                ShloLImmAlt32 = "shlo_l_imm_alt_32", 144, 144, -;
                ShloRImmAlt32 = "shlo_r_imm_alt_32", 145, 145, -;
                SharRImmAlt32 = "shar_r_imm_alt_32", 146, 146, -;
                CmovIzImm = "cmov_iz_imm", 147, 147, -;
                CmovNzImm = "cmov_nz_imm", 148, 148, -;
                AddImm64 = "add_imm_64", 149, 149, -;
                MulImm64 = "mul_imm_64", 150, 150, -;
                ShloLImm64 = "shlo_l_imm_64", 151, 151, -;
                ShloRImm64 = "shlo_r_imm_64", 152, 152, -;
                SharRImm64 = "shar_r_imm_64", 153, 153, -;
                NegAddImm64 = "neg_add_imm_64", 154, 154, -;
                ShloLImmAlt64 = "shlo_l_imm_alt_64", 155, 155, -;
                ShloRImmAlt64 = "shlo_r_imm_alt_64", 156, 156, -;
                SharRImmAlt64 = "shar_r_imm_alt_64", 157, 157, -;
                RotR64Imm = "rot_r_64_imm", 158, 158, -;
                RotR64ImmAlt = "rot_r_64_imm_alt", 159, 159, -;
                RotR32Imm = "rot_r_32_imm", 160, 160, -;
                RotR32ImmAlt = "rot_r_32_imm_alt", 161, 161, -;
            }
            TwoRegOffset {
                BranchEq = "branch_eq", 170, 170, T;
                BranchNe = "branch_ne", 171, 171, T;
                BranchLtU = "branch_lt_u", 172, 172, T;
                BranchLtS = "branch_lt_s", 173, 173, T;
                BranchGeU = "branch_ge_u", 174, 174, T;
                BranchGeS = "branch_ge_s", 175, 175, T;
            }
            TwoRegTwoImm {
                LoadImmJumpInd = "load_imm_jump_ind", 180, 180, T;
            }
            ThreeReg {
                Add32 = "add_32", 190, 190, -;
                Sub32 = "sub_32", 191, 191, -;
                Mul32 = "mul_32", 192, 192, -;
                DivU32 = "div_u_32", 193, 193, -;
                DivS32 = "div_s_32", 194, 194, -;
                RemU32 = "rem_u_32", 195, 195, -;
                RemS32 = "rem_s_32", 196, 196, -;
                ShloL32 = "shlo_l_32", 197, 197, -;
                ShloR32 = "shlo_r_32", 198, 198, -;
                SharR32 = "shar_r_32", 199, 199, -;
                Add64 = "add_64", 200, 200, -;
                Sub64 = "sub_64", 201, 201, -;
                Mul64 = "mul_64", 202, 202, -;
                DivU64 = "div_u_64", 203, 203, -;
                DivS64 = "div_s_64", 204, 204, -;
                RemU64 = "rem_u_64", 205, 205, -;
                RemS64 = "rem_s_64", 206, 206, -;
                ShloL64 = "shlo_l_64", 207, 207, -;
                ShloR64 = "shlo_r_64", 208, 208, -;
                SharR64 = "shar_r_64", 209, 209, -;
                And = "and", 210, 210, -;
                Xor = "xor", 211, 211, -;
                Or = "or", 212, 212, -;
                MulUpperSS = "mul_upper_s_s", 213, 213, -;
                MulUpperUU = "mul_upper_u_u", 214, 214, -;
                MulUpperSU = "mul_upper_s_u", 215, 215, -;
                SetLtU = "set_lt_u", 216, 216, -;
                SetLtS = "set_lt_s", 217, 217, -;
                CmovIz = "cmov_iz", 218, 218, -;
                CmovNz = "cmov_nz", 219, 219, -;
                RotL64 = "rot_l_64", 220, 220, -;
                RotL32 = "rot_l_32", 221, 221, -;
                RotR64 = "rot_r_64", 222, 222, -;
                RotR32 = "rot_r_32", 223, 223, -;
                AndInv = "and_inv", 224, 224, -;
                OrInv = "or_inv", 225, 225, -;
                Xnor = "xnor", 226, 226, -;
                Max = "max", 227, 227, -;
                MaxU = "max_u", 228, 228, -;
                Min = "min", 229, 229, -;
                MinU = "min_u", 230, 230, -;
            }
        }
    };
}

macro_rules! opt_opcode {
    (_) => {
        None
    };
    ($n:literal) => {
        Some($n)
    };
}

macro_rules! is_term {
    (T) => {
        true
    };
    (-) => {
        false
    };
}

macro_rules! define_isa {
    ($( $fmt:ident { $( $variant:ident = $name:literal, $o8:tt, $o7:tt, $t:tt; )* } )*) => {
        /// An opcode, independent of its number in any profile.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Opcode {
            $($( #[doc = $name] $variant, )*)*
        }

        impl Opcode {
            /// Every opcode of every profile, in table order.
            pub const ALL: &'static [Opcode] = &[$($(Opcode::$variant,)*)*];

            /// The GP's name (`add_imm_32`).
            pub const fn name(self) -> &'static str {
                match self { $($(Opcode::$variant => $name,)*)* }
            }

            /// The argument format.
            pub const fn format(self) -> Format {
                match self { $($(Opcode::$variant => Format::$fmt,)*)* }
            }

            /// Whether the opcode is in the GP's set T of block terminators.
            pub const fn is_terminator(self) -> bool {
                match self { $($(Opcode::$variant => is_term!($t),)*)* }
            }

            /// The opcode byte under `profile`, or `None` if the profile does
            /// not have this instruction.
            pub const fn number(self, profile: Profile) -> Option<u8> {
                match profile {
                    Profile::V0_8 => match self { $($(Opcode::$variant => opt_opcode!($o8),)*)* },
                    Profile::V0_7 => match self { $($(Opcode::$variant => opt_opcode!($o7),)*)* },
                }
            }
        }

        /// A decoded instruction: an opcode with the arguments of its format.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Instruction {
            $($( #[doc = $name] $variant($fmt), )*)*
        }

        /// The arguments of an instruction, by format.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Args {
            $( $fmt($fmt), )*
        }

        impl Instruction {
            /// The instruction's opcode.
            #[inline(always)]
            pub const fn opcode(&self) -> Opcode {
                match self { $($(Instruction::$variant(_) => Opcode::$variant,)*)* }
            }

            /// The instruction's arguments.
            #[inline(always)]
            pub const fn args(&self) -> Args {
                match *self { $($(Instruction::$variant(x) => Args::$fmt(x),)*)* }
            }

            /// Builds an instruction from an opcode and arguments of the
            /// opcode's format; `None` if the format does not match.
            pub const fn from_args(opcode: Opcode, args: Args) -> Option<Instruction> {
                match (opcode, args) {
                    $($( (Opcode::$variant, Args::$fmt(x)) => Some(Instruction::$variant(x)), )*)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }

        impl Args {
            /// The format of these arguments.
            pub const fn format(&self) -> Format {
                match self { $( Args::$fmt(_) => Format::$fmt, )* }
            }
        }
    };
}

for_each_instruction!(define_isa);

impl Args {
    /// The registers these arguments name, in argument order (a register
    /// named twice appears twice). Sources and destinations alike: for
    /// consumers that only need to know which registers an instruction
    /// touches, such as the recompiler's register assignment.
    pub fn registers(&self) -> impl Iterator<Item = Reg> {
        let (regs, n): ([Reg; 3], usize) = match *self {
            Args::NoArgs(_) | Args::OneImm(_) | Args::TwoImm(_) | Args::OneOffset(_) => {
                ([Reg(0); 3], 0)
            }
            Args::RegExtImm(x) => ([x.a, Reg(0), Reg(0)], 1),
            Args::RegImm(x) => ([x.a, Reg(0), Reg(0)], 1),
            Args::RegTwoImm(x) => ([x.a, Reg(0), Reg(0)], 1),
            Args::RegImmOffset(x) => ([x.a, Reg(0), Reg(0)], 1),
            Args::TwoReg(x) => ([x.d, x.a, Reg(0)], 2),
            Args::TwoRegImm(x) => ([x.a, x.b, Reg(0)], 2),
            Args::TwoRegOffset(x) => ([x.a, x.b, Reg(0)], 2),
            Args::TwoRegTwoImm(x) => ([x.a, x.b, Reg(0)], 2),
            Args::ThreeReg(x) => ([x.a, x.b, x.d], 3),
        };
        regs.into_iter().take(n)
    }
}

impl Opcode {
    /// Looks an opcode up by its GP name.
    pub fn from_name(name: &str) -> Option<Opcode> {
        Opcode::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// The opcode with byte `byte` under `profile`.
    #[inline]
    pub fn from_byte(profile: Profile, byte: u8) -> Option<Opcode> {
        match profile {
            Profile::V0_8 => OPCODES_V0_8[byte as usize],
            Profile::V0_7 => OPCODES_V0_7[byte as usize],
        }
    }
}

const fn opcode_map(profile: Profile) -> [Option<Opcode>; 256] {
    let mut map = [None; 256];
    let mut i = 0;
    while i < Opcode::ALL.len() {
        let op = Opcode::ALL[i];
        if let Some(n) = op.number(profile) {
            map[n as usize] = Some(op);
        }
        i += 1;
    }
    map
}

static OPCODES_V0_8: [Option<Opcode>; 256] = opcode_map(Profile::V0_8);
static OPCODES_V0_7: [Option<Opcode>; 256] = opcode_map(Profile::V0_7);

impl Instruction {
    /// Whether this instruction terminates a basic block (GP set T).
    pub const fn is_terminator(&self) -> bool {
        self.opcode().is_terminator()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_lists_every_register_operand() {
        let r = |i| Reg::new(i).unwrap();
        let three = Instruction::Add64(ThreeReg {
            a: r(1),
            b: r(2),
            d: r(3),
        });
        assert!(three.args().registers().eq([r(1), r(2), r(3)]));
        let two = Instruction::MoveReg(TwoReg { d: r(4), a: r(4) });
        assert!(two.args().registers().eq([r(4), r(4)]));
        let one = Instruction::LoadImm64(RegExtImm { a: r(12), imm: 1 });
        assert!(one.args().registers().eq([r(12)]));
        assert_eq!(Instruction::Trap(NoArgs).args().registers().count(), 0);
        let imm = Instruction::StoreImmU8(TwoImm { x: 1, y: 2 });
        assert_eq!(imm.args().registers().count(), 0);
    }

    #[test]
    fn profiles_have_the_gp_opcode_counts() {
        // GP 0.8.0 defines 139 opcodes (digest §8); 0.7.2 has sbrk but not unlikely.
        let count = |p| {
            Opcode::ALL
                .iter()
                .filter(|op| op.number(p).is_some())
                .count()
        };
        assert_eq!(count(Profile::V0_8), 139);
        assert_eq!(count(Profile::V0_7), 139);
        assert_eq!(
            Opcode::ALL.iter().filter(|op| op.is_terminator()).count(),
            22
        );
    }

    #[test]
    fn opcode_numbers_are_unique_per_profile() {
        for p in Profile::ALL {
            for op in Opcode::ALL {
                if let Some(n) = op.number(p) {
                    assert_eq!(Opcode::from_byte(p, n), Some(*op), "{op:?} under {p}");
                }
            }
        }
    }

    #[test]
    fn renumbering_between_profiles() {
        assert_eq!(
            Opcode::from_byte(Profile::V0_8, 101),
            Some(Opcode::CountSetBits64)
        );
        assert_eq!(Opcode::from_byte(Profile::V0_7, 101), Some(Opcode::Sbrk));
        assert_eq!(
            Opcode::from_byte(Profile::V0_7, 111),
            Some(Opcode::ReverseBytes)
        );
        assert_eq!(Opcode::from_byte(Profile::V0_8, 111), None);
        assert_eq!(Opcode::from_byte(Profile::V0_7, 2), None);
        assert_eq!(Opcode::from_byte(Profile::V0_8, 2), Some(Opcode::Unlikely));
    }

    #[test]
    fn names_round_trip() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_name(op.name()), Some(*op));
        }
    }
}
