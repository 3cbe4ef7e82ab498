//! The program generator: random *valid* GP 0.8 programs, with a memory map,
//! initial registers, an entry point and gas, from a seeded RNG (proptest's
//! `TestRng`, XorShift), so that `(seed, case index)` reproduces a case.
//!
//! A program is a list of basic blocks; each block is a few random
//! non-terminators followed by one terminator, so the code always ends with
//! a terminator (GP 0.8 validation). Jump targets are symbolic (a block, an
//! instruction inside a block, or a raw offset) and resolved once the code
//! is laid out; offsets are encoded with the canonical (shortest) encoding
//! of `pvm_core::codec::encode`, so the layout is iterated to a fixed point.

use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use pvm_core::isa::*;
use pvm_core::program::Blob;
use pvm_core::{Access, HALT_ADDRESS, PAGE_SIZE};

/// A seeded random source.
#[derive(Debug)]
pub struct Rng(TestRng);

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Rng {
    /// The RNG of case `index` of a run with seed `seed`.
    pub fn for_case(seed: u64, index: u64) -> Rng {
        let a = splitmix(seed ^ splitmix(index));
        let b = splitmix(a ^ 0x5851_F42D_4C95_7F2D);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::XorShift, &bytes))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    /// Uniform in `0..n` as a usize.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }
}

/// The first page of the window of pages the harness may map.
pub const WINDOW: u32 = 0x20000;
/// Pages in the window.
pub const WINDOW_PAGES: u32 = 6;
/// The last page of the address space (accesses past it wrap to 0).
pub const TOP_PAGE: u32 = 0xFFFF_F000;
/// The lowest page that can be accessed at all.
pub const LOW_PAGE: u32 = 0x10000;

/// A symbolic jump target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The start of block `n` (valid).
    Block(usize),
    /// Instruction `k >= 1` of block `n`: an instruction start that is not a
    /// basic-block start (invalid for a jump).
    Inside(usize, usize),
    /// A raw code offset (past the end, or wherever).
    Raw(u32),
}

/// One generated instruction, its target still symbolic.
#[derive(Clone, Copy, Debug)]
struct Item {
    inst: Instruction,
    target: Option<Target>,
}

/// A generated test case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The program blob (jump table, code, bitmask).
    pub blob: Vec<u8>,
    /// Code offsets of all instructions, in order.
    pub pcs: Vec<u32>,
    /// The instructions, in order.
    pub insts: Vec<Instruction>,
    /// Entry point.
    pub entry: u32,
    /// Initial registers.
    pub regs: [u64; 13],
    /// Mapped pages: base address, access, contents (one page).
    pub pages: Vec<(u32, Access, Vec<u8>)>,
    /// Initial gas under the naive model.
    pub gas_naive: u64,
    /// Initial gas under the GP 0.8.0 model.
    pub gas_gp: u64,
}

/// The opcodes of the GP 0.8 profile.
pub fn v0_8_opcodes() -> Vec<Opcode> {
    Opcode::ALL
        .iter()
        .copied()
        .filter(|op| op.number(Profile::V0_8).is_some())
        .collect()
}

fn is_load(op: Opcode) -> bool {
    let n = op.name();
    n.starts_with("load_") && !n.starts_with("load_imm")
}

fn is_store(op: Opcode) -> bool {
    op.name().starts_with("store_")
}

/// Whether `op` touches memory.
pub fn is_memory(op: Opcode) -> bool {
    is_load(op) || is_store(op)
}

/// Bytes an access of `op` covers.
pub fn access_width(op: Opcode) -> u32 {
    let n = op.name();
    if n.ends_with("8") {
        1
    } else if n.ends_with("16") {
        2
    } else if n.ends_with("32") {
        4
    } else {
        8
    }
}

/// Whether a terminator may continue at the next instruction (`fallthrough`
/// and the conditional branches).
pub fn falls_through(op: Opcode) -> bool {
    op.is_terminator()
        && !matches!(
            op,
            Opcode::Trap
                | Opcode::Jump
                | Opcode::JumpInd
                | Opcode::LoadImmJump
                | Opcode::LoadImmJumpInd
        )
}

fn is_shift(op: Opcode) -> bool {
    let n = op.name();
    n.contains("shlo") || n.contains("shar") || n.contains("rot")
}

fn reg(rng: &mut Rng) -> Reg {
    Reg::clamped(rng.below(13) as u8)
}

const EDGE32: &[u32] = &[
    0,
    1,
    2,
    0xFFFF_FFFF,
    0x8000_0000,
    0x7FFF_FFFF,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0x8000,
    0xFFFF,
    0xFFFF_FF80,
    0xFFFF_8000,
    0x00FF_FFFF,
    0xFF80_0000,
    HALT_ADDRESS,
];

const EDGE64: &[u64] = &[
    0,
    1,
    u64::MAX,
    i64::MIN as u64,
    i64::MAX as u64,
    0xFFFF_FFFF,
    0x8000_0000,
    0x7FFF_FFFF,
    0xFFFF_FFFF_8000_0000,
    0x1_0000_0000,
    0x1_0000_0001,
    0xFFFF_FFFF_0000_0000,
    0x8000_0000_0000_0001,
];

const SHIFTS: &[u32] = &[
    0,
    1,
    7,
    8,
    15,
    16,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    0xFFFF_FFFF,
    0xFFFF_FFE0,
];

/// A 32-bit immediate, biased to edge values.
fn imm32(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0..=3 => rng.pick(EDGE32),
        4..=5 => rng.below(64) as u32,
        6 => (rng.below(256) as u32).wrapping_sub(128),
        7 => rng.u32() as i16 as i32 as u32,
        _ => rng.u32(),
    }
}

/// A 64-bit value, biased to edge values.
fn value64(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=3 => rng.pick(EDGE64),
        4 => rng.pick(EDGE32) as i32 as i64 as u64,
        5 => rng.below(64),
        6 => u64::from(address(rng)),
        _ => rng.u64(),
    }
}

/// An address: mostly in or around the mapped window, on page edges.
pub fn address(rng: &mut Rng) -> u32 {
    match rng.below(20) {
        0..=11 => {
            let page = WINDOW + PAGE_SIZE * rng.below(u64::from(WINDOW_PAGES) + 1) as u32;
            let off = match rng.below(4) {
                0 => rng.below(16) as u32,
                1 => PAGE_SIZE - 1 - rng.below(9) as u32,
                2 => (rng.below(16) as u32).wrapping_neg(),
                _ => rng.below(u64::from(PAGE_SIZE)) as u32,
            };
            page.wrapping_add(off)
        }
        12 => {
            // Around the first accessible page, at either end.
            let edge = LOW_PAGE + PAGE_SIZE * rng.below(2) as u32;
            edge.wrapping_add((rng.below(32) as u32).wrapping_sub(16))
        }
        13 => TOP_PAGE.wrapping_add(rng.below(u64::from(PAGE_SIZE)) as u32),
        14 => (rng.below(8) as u32).wrapping_neg(),
        15 => rng.below(u64::from(LOW_PAGE)) as u32,
        16 => HALT_ADDRESS.wrapping_add(rng.below(16) as u32),
        _ => rng.u32(),
    }
}

/// A small offset for indirect accesses.
fn offset(rng: &mut Rng) -> u32 {
    match rng.below(6) {
        0..=2 => 0,
        3 => rng.below(16) as u32,
        4 => (rng.below(16) as u32).wrapping_neg(),
        _ => imm32(rng),
    }
}

struct Gen<'r> {
    rng: &'r mut Rng,
    blocks: usize,
    jump_table_len: usize,
}

impl Gen<'_> {
    fn target(&mut self, current: usize) -> Target {
        match self.rng.below(20) {
            0 => Target::Inside(self.rng.index(self.blocks), 1 + self.rng.index(3)),
            1 => Target::Raw(
                self.rng
                    .pick(&[0xFFFF_FFFF, 1, 2, 3, 0x1000_0000, HALT_ADDRESS]),
            ),
            2..=5 => Target::Block((current + 1).min(self.blocks - 1)),
            _ => Target::Block(self.rng.index(self.blocks)),
        }
    }

    /// A value for a dynamic jump: a valid jump-table address, the halt
    /// address, or an invalid one.
    fn djump_address(&mut self) -> u32 {
        let n = self.jump_table_len as u32;
        match self.rng.below(10) {
            0..=4 if n > 0 => 2 * (1 + self.rng.below(u64::from(n)) as u32),
            5..=6 => HALT_ADDRESS,
            7 => 0,
            8 => 2 * (n + 1 + self.rng.below(3) as u32),
            _ => 1 + 2 * self.rng.below(u64::from(n) + 2) as u32,
        }
    }

    fn args(&mut self, op: Opcode, current: usize, pre: &mut Vec<Item>) -> (Args, Option<Target>) {
        let jump_target = match op.format() {
            Format::OneOffset | Format::RegImmOffset | Format::TwoRegOffset => {
                Some(self.target(current))
            }
            _ => None,
        };
        let djump = self.djump_address();
        let rng = &mut *self.rng;
        let mut target = None;
        let args = match op.format() {
            Format::NoArgs => Args::NoArgs(NoArgs),
            Format::OneImm => Args::OneImm(OneImm {
                imm: if rng.percent(80) {
                    rng.below(8) as u32
                } else {
                    imm32(rng)
                },
            }),
            Format::RegExtImm => Args::RegExtImm(RegExtImm {
                a: reg(rng),
                imm: value64(rng),
            }),
            Format::TwoImm => Args::TwoImm(TwoImm {
                x: address(rng),
                y: imm32(rng),
            }),
            Format::OneOffset => {
                target = jump_target;
                Args::OneOffset(OneOffset { target: 0 })
            }
            Format::RegImm => {
                let a = reg(rng);
                let imm = if op == Opcode::JumpInd {
                    let imm = if rng.percent(70) { 0 } else { imm32(rng) };
                    if rng.percent(75) {
                        let v = djump.wrapping_sub(imm);
                        pre.push(load_imm(a, v));
                    }
                    imm
                } else if is_memory(op) {
                    address(rng)
                } else {
                    imm32(rng)
                };
                Args::RegImm(RegImm { a, imm })
            }
            Format::RegTwoImm => {
                let a = reg(rng);
                let x = offset(rng);
                if rng.percent(60) {
                    pre.push(load_imm(a, address(rng).wrapping_sub(x)));
                }
                Args::RegTwoImm(RegTwoImm {
                    a,
                    x,
                    y: imm32(rng),
                })
            }
            Format::RegImmOffset => {
                let a = reg(rng);
                let imm = imm32(rng);
                if op != Opcode::LoadImmJump && rng.percent(30) {
                    // Make the comparison interesting: equal or adjacent.
                    let v = imm.wrapping_add(rng.pick(&[0u32, 1, 0xFFFF_FFFF]));
                    pre.push(load_imm(a, v));
                }
                target = jump_target;
                Args::RegImmOffset(RegImmOffset { a, imm, target: 0 })
            }
            Format::TwoReg => Args::TwoReg(TwoReg {
                d: reg(rng),
                a: reg(rng),
            }),
            Format::TwoRegImm => {
                let a = reg(rng);
                let b = reg(rng);
                let imm = if is_memory(op) {
                    let imm = offset(rng);
                    if rng.percent(60) {
                        pre.push(load_imm(b, address(rng).wrapping_sub(imm)));
                    }
                    imm
                } else if is_shift(op) && rng.percent(60) {
                    rng.pick(SHIFTS)
                } else {
                    imm32(rng)
                };
                Args::TwoRegImm(TwoRegImm { a, b, imm })
            }
            Format::TwoRegOffset => {
                target = jump_target;
                Args::TwoRegOffset(TwoRegOffset {
                    a: reg(rng),
                    b: reg(rng),
                    target: 0,
                })
            }
            Format::TwoRegTwoImm => {
                let a = reg(rng);
                let b = reg(rng);
                let x = imm32(rng);
                let y = if rng.percent(70) { 0 } else { imm32(rng) };
                if rng.percent(75) {
                    let v = djump.wrapping_sub(y);
                    pre.push(load_imm(b, v));
                }
                Args::TwoRegTwoImm(TwoRegTwoImm { a, b, x, y })
            }
            Format::ThreeReg => {
                let (a, b, d) = (reg(rng), reg(rng), reg(rng));
                if is_shift(op) && rng.percent(30) {
                    pre.push(load_imm(b, rng.pick(SHIFTS)));
                }
                Args::ThreeReg(ThreeReg { a, b, d })
            }
        };
        (args, target)
    }
}

fn load_imm(a: Reg, imm: u32) -> Item {
    Item {
        inst: Instruction::LoadImm(RegImm { a, imm }),
        target: None,
    }
}

fn with_target(inst: Instruction, target: u32) -> Instruction {
    let args = match inst.args() {
        Args::OneOffset(mut x) => {
            x.target = target;
            Args::OneOffset(x)
        }
        Args::RegImmOffset(mut x) => {
            x.target = target;
            Args::RegImmOffset(x)
        }
        Args::TwoRegOffset(mut x) => {
            x.target = target;
            Args::TwoRegOffset(x)
        }
        other => other,
    };
    Instruction::from_args(inst.opcode(), args).unwrap_or(inst)
}

/// Generates one case.
pub fn generate(rng: &mut Rng) -> Case {
    let ops = v0_8_opcodes();
    let (terms, bodies): (Vec<Opcode>, Vec<Opcode>) = ops.iter().partition(|op| op.is_terminator());
    let blocks = 1 + rng.index(10);
    let jump_table_len = rng.index(6);
    let mut g = Gen {
        rng,
        blocks,
        jump_table_len,
    };
    let mut program: Vec<Vec<Item>> = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let mut items = Vec::new();
        if g.rng.percent(8) {
            // A block that starts with `unlikely` makes branches to it cheap
            // in the GP cost model.
            items.push(Item {
                inst: Instruction::Unlikely(NoArgs),
                target: None,
            });
        }
        // Mostly short blocks; sometimes long ones, to fill the GP cost
        // model's 32-entry reorder buffer.
        let body = if g.rng.percent(7) {
            g.rng.index(48)
        } else {
            g.rng.index(9)
        };
        for _ in 0..body {
            let op = if g.rng.percent(25) {
                // Memory operations deserve extra attention.
                let mem: Vec<Opcode> = bodies.iter().copied().filter(|&o| is_memory(o)).collect();
                g.rng.pick(&mem)
            } else {
                g.rng.pick(&bodies)
            };
            let mut pre = Vec::new();
            let (args, target) = g.args(op, b, &mut pre);
            items.extend(pre);
            if let Some(inst) = Instruction::from_args(op, args) {
                items.push(Item { inst, target });
            }
        }
        // The terminator: often a return through r0 (the halt address).
        let mut op = if g.rng.percent(10) {
            Opcode::JumpInd
        } else {
            g.rng.pick(&terms)
        };
        if b + 1 == blocks && falls_through(op) && g.rng.percent(97) {
            // PolkaVM 0.37 rejects a program that ends with an instruction
            // that can fall through (see README): keep that rare.
            op = g.rng.pick(&[
                Opcode::Trap,
                Opcode::Jump,
                Opcode::JumpInd,
                Opcode::LoadImmJump,
                Opcode::LoadImmJumpInd,
            ]);
        }
        let mut pre = Vec::new();
        let (mut args, target) = g.args(op, b, &mut pre);
        if op == Opcode::JumpInd && g.rng.percent(30) {
            pre.clear();
            args = Args::RegImm(RegImm {
                a: Reg::clamped(0),
                imm: 0,
            });
        }
        items.extend(pre);
        if let Some(inst) = Instruction::from_args(op, args) {
            items.push(Item { inst, target });
        }
        program.push(items);
    }
    let jt: Vec<Target> = (0..jump_table_len)
        .map(|_| {
            if g.rng.percent(80) {
                Target::Block(g.rng.index(blocks))
            } else {
                g.target(0)
            }
        })
        .collect();
    let entry_choice = if g.rng.percent(90) {
        None
    } else {
        let b = g.rng.index(blocks);
        Some((b, g.rng.index(program[b].len())))
    };
    let rng = g.rng;

    // Lay out to a fixed point.
    let flat: Vec<(usize, usize)> = program
        .iter()
        .enumerate()
        .flat_map(|(b, items)| (0..items.len()).map(move |k| (b, k)))
        .collect();
    let mut pcs = vec![0u32; flat.len()];
    let mut code = Vec::new();
    let mut insts = Vec::new();
    let mut block_first = vec![0usize; blocks];
    {
        let mut i = 0;
        for (b, items) in program.iter().enumerate() {
            block_first[b] = i;
            i += items.len();
        }
    }
    let resolve = |t: Target, pcs: &[u32], code_len: u32| -> u32 {
        match t {
            Target::Block(b) => pcs[block_first[b]],
            Target::Inside(b, k) => {
                let len = program[b].len();
                if k < len {
                    pcs[block_first[b] + k]
                } else {
                    code_len + 1
                }
            }
            Target::Raw(x) => x,
        }
    };
    for _round in 0..16 {
        code.clear();
        insts.clear();
        let mut new_pcs = Vec::with_capacity(flat.len());
        let code_len_guess = {
            // The previous round's length (0 the first time) only matters
            // for `Inside` targets past a block's end.
            pcs.last().copied().unwrap_or(0) + 16
        };
        for &(b, k) in &flat {
            let item = program[b][k];
            let pc = code.len() as u32;
            new_pcs.push(pc);
            let inst = match item.target {
                Some(t) => with_target(item.inst, resolve(t, &pcs, code_len_guess)),
                None => item.inst,
            };
            pvm_core::codec::encode(Profile::V0_8, &inst, pc, &mut code);
            insts.push(inst);
        }
        let stable = new_pcs == pcs;
        pcs = new_pcs;
        if stable {
            break;
        }
    }
    let mut bitmask = vec![0u8; code.len().div_ceil(8)];
    for &pc in &pcs {
        bitmask[pc as usize / 8] |= 1 << (pc % 8);
    }
    let code_len = code.len() as u32;
    let jump_table: Vec<u32> = jt.iter().map(|&t| resolve(t, &pcs, code_len)).collect();
    let max = jump_table.iter().copied().max().unwrap_or(0);
    let min_size = match max {
        0 => 0,
        1..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFF_FFFF => 3,
        _ => 4,
    };
    let jump_table_entry_size = if jump_table.is_empty() {
        0
    } else if rng.percent(50) {
        min_size.max(1)
    } else {
        4
    };
    let blob = Blob {
        jump_table,
        jump_table_entry_size,
        code,
        bitmask,
    }
    .to_bytes();
    let entry = match entry_choice {
        None => 0,
        Some((b, k)) => pcs[block_first[b] + k],
    };

    // Memory: a window of pages, each unmapped, read-only or read-write, plus
    // sometimes the first accessible page and the last page of the address
    // space. A read-only page is never followed by an unmapped one (a store
    // straddling the two is an accepted GP/PolkaVM difference).
    let mut access: Vec<(u32, Access)> = (0..WINDOW_PAGES)
        .map(|i| {
            let a = match rng.below(4) {
                0 => Access::None,
                1 => Access::Read,
                _ => Access::Write,
            };
            (WINDOW + i * PAGE_SIZE, a)
        })
        .collect();
    for i in 0..access.len() {
        let next_unmapped = access.get(i + 1).is_none_or(|p| p.1 == Access::None);
        if access[i].1 == Access::Read && next_unmapped {
            access[i].1 = Access::Write;
        }
    }
    if rng.percent(30) {
        access.push((
            LOW_PAGE,
            rng.pick(&[Access::Write, Access::Write, Access::Read]),
        ));
    }
    if rng.percent(30) {
        access.push((TOP_PAGE, rng.pick(&[Access::Write, Access::Read])));
    }
    let fill = rng.below(3);
    let pages = access
        .into_iter()
        .filter(|p| p.1 != Access::None)
        .map(|(addr, a)| {
            let mut data = vec![0u8; PAGE_SIZE as usize];
            match fill {
                0 => {}
                1 => {
                    let mut x = rng.u64();
                    for chunk in data.chunks_mut(8) {
                        x = splitmix(x);
                        chunk.copy_from_slice(&x.to_le_bytes());
                    }
                }
                _ => {
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = (i as u8) ^ (addr >> 12) as u8;
                    }
                }
            }
            (addr, a, data)
        })
        .collect();

    let mut regs = [0u64; 13];
    for r in regs.iter_mut() {
        *r = match rng.below(3) {
            0 => u64::from(address(rng)),
            _ => value64(rng),
        };
    }
    if rng.percent(70) {
        regs[0] = u64::from(HALT_ADDRESS);
    }
    let (gas_naive, gas_gp) = match rng.below(10) {
        0 => (rng.below(8), rng.below(40)),
        1..=2 => (rng.below(60), rng.below(400)),
        3..=5 => (rng.below(1000), rng.below(8000)),
        _ => (4000, 40_000),
    };
    Case {
        blob,
        pcs,
        insts,
        entry,
        regs,
        pages,
        gas_naive,
        gas_gp,
    }
}

fn target_of(inst: &Instruction) -> Option<u32> {
    match inst.args() {
        Args::OneOffset(x) => Some(x.target),
        Args::RegImmOffset(x) => Some(x.target),
        Args::TwoRegOffset(x) => Some(x.target),
        _ => None,
    }
}

/// The case without instruction `k` (for shrinking a failing case): jump
/// targets and jump-table entries that pointed at instructions follow them.
/// `None` if that would leave no valid program (the last instruction, or
/// the only one).
pub fn without(case: &Case, k: usize) -> Option<Case> {
    let n = case.insts.len();
    if k + 1 >= n {
        return None;
    }
    let blob = Blob::parse(&case.blob).ok()?;
    let old_len = blob.code.len() as u32;
    // Old pc -> index of the instruction it lands on after the removal.
    let map_index = |pc: u32| -> Option<usize> {
        let i = case.pcs.iter().position(|&p| p == pc)?;
        Some(if i > k { i - 1 } else { i })
    };
    let insts: Vec<Instruction> = case
        .insts
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != k)
        .map(|(_, &inst)| inst)
        .collect();
    let old_targets: Vec<Option<u32>> = insts.iter().map(target_of).collect();
    let mut pcs: Vec<u32> = vec![0; insts.len()];
    let mut code = Vec::new();
    let mut encoded = Vec::new();
    for _ in 0..16 {
        code.clear();
        encoded.clear();
        let mut new_pcs = Vec::with_capacity(insts.len());
        for (i, inst) in insts.iter().enumerate() {
            let pc = code.len() as u32;
            new_pcs.push(pc);
            let inst = match old_targets[i] {
                Some(t) => {
                    let t = match map_index(t) {
                        Some(j) => pcs[j],
                        None if t >= old_len => t,
                        None => t,
                    };
                    with_target(*inst, t)
                }
                None => *inst,
            };
            pvm_core::codec::encode(Profile::V0_8, &inst, pc, &mut code);
            encoded.push(inst);
        }
        let stable = new_pcs == pcs;
        pcs = new_pcs;
        if stable {
            break;
        }
    }
    let mut bitmask = vec![0u8; code.len().div_ceil(8)];
    for &pc in &pcs {
        bitmask[pc as usize / 8] |= 1 << (pc % 8);
    }
    let jump_table = blob
        .jump_table
        .iter()
        .map(|&t| map_index(t).map_or(t, |j| pcs[j]))
        .collect();
    let entry = map_index(case.entry).map_or(0, |j| pcs[j]);
    let blob = Blob {
        jump_table,
        jump_table_entry_size: 4,
        code,
        bitmask,
    }
    .to_bytes();
    Some(Case {
        blob,
        pcs,
        insts: encoded,
        entry,
        ..case.clone()
    })
}
