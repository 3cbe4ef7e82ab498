//! Differential test: random valid programs run on the interpreter and on the
//! x86-64 recompiler must agree on every exit, pc, all 13 registers, gas, the
//! block-charged flag and the contents of every page they could touch.
//!
//! Programs draw every instruction of the table (both profiles) with register
//! and immediate operands biased towards interesting values: addresses in
//! read-write, read-only and unmapped pages, page-crossing and wrapping
//! addresses, addresses below 0x10000, division edge cases and shift counts.
//! Static targets point at random instructions (valid or not), the jump table
//! at random instructions, and registers hold jump-table addresses. Runs start
//! at pc 0 or at a random instruction (mid-block entry) and are resumed after
//! host calls (a register changed), page faults (the page mapped read-write)
//! and out-of-gas (gas added), a bounded number of times.

use proptest::prelude::*;
use proptest::sample::Index;
use pvm_core::interp::Heap;
use pvm_core::isa::*;
use pvm_core::{Access, Blob, Exit, FlatMemory, Memory, Program, Vm, PAGE_SIZE};
use pvm_jit::{JitInstance, MemoryChecks, Parallelism};

/// Pages the tests lay out: (page, access).
const LAYOUT: [(u32, Access); 7] = [
    (0x10, Access::Write),
    (0x11, Access::Write),
    (0x12, Access::Write),
    (0x13, Access::Read),
    (0x15, Access::Write),
    (0xFFFFF, Access::Write),
    (0x0, Access::Write), // mapped, yet below 0x10000: accesses panic
];

/// Pages whose contents are compared at the end (the layout, the unmapped
/// page 0x14 that faults may map, and the sbrk heap). Page 0 is not: no
/// access can reach it, and memories differ in whether they keep it.
const COMPARED: [u32; 11] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0xFFFFF,
];

fn addr_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0x10000u32..0x13000,
        1 => 0x12FF8u32..0x13008,      // RW into RO
        1 => 0x13FF8u32..0x14008,      // RO into unmapped
        1 => 0x14FF8u32..0x15008,      // unmapped into RW
        1 => 0xFFFFFFF8u32..=u32::MAX, // wrapping
        1 => 0u32..0x10010,            // low memory
        1 => any::<u32>(),
    ]
}

fn imm_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0u32..70,
        2 => (0u32..70).prop_map(|x| 0u32.wrapping_sub(x)),
        2 => addr_value(),
        1 => prop::sample::select(vec![
            0x8000_0000u32, 0x7FFF_FFFF, 0xFFFF_0000, 31, 32, 63, 64, 2, 4, 6,
        ]),
        1 => any::<u32>(),
    ]
}

fn reg_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..70,
        2 => (0u64..70).prop_map(|x| 0u64.wrapping_sub(x)),
        3 => addr_value().prop_map(u64::from),
        1 => prop::sample::select(vec![
            i64::MIN as u64, u64::MAX, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_0000, 2, 4, 6, 8,
            0x1_0000_0000,
        ]),
        2 => any::<u64>(),
    ]
}

/// An instruction with its target given as an index into the program.
#[derive(Clone, Debug)]
struct Spec {
    op: Index,
    a: u8,
    b: u8,
    d: u8,
    x: u32,
    y: u32,
    wide: u64,
    target: Index,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<Index>(),
        0u8..13,
        0u8..13,
        0u8..13,
        imm_value(),
        imm_value(),
        reg_value(),
        any::<Index>(),
    )
        .prop_map(|(op, a, b, d, x, y, wide, target)| Spec {
            op,
            a,
            b,
            d,
            x,
            y,
            wide,
            target,
        })
}

fn reg(r: u8) -> Reg {
    Reg::clamped(r)
}

impl Spec {
    fn opcode(&self, profile: Profile) -> Opcode {
        let ops: Vec<Opcode> = Opcode::ALL
            .iter()
            .copied()
            .filter(|o| o.number(profile).is_some())
            .collect();
        ops[self.op.index(ops.len())]
    }

    fn instruction(&self, profile: Profile, pcs: &[u32]) -> Instruction {
        let op = self.opcode(profile);
        let target = if pcs.is_empty() {
            0
        } else {
            pcs[self.target.index(pcs.len())]
        };
        let (a, b, d) = (reg(self.a), reg(self.b), reg(self.d));
        let args = match op.format() {
            Format::NoArgs => Args::NoArgs(NoArgs),
            Format::OneImm => Args::OneImm(OneImm { imm: self.x % 8 }),
            Format::RegExtImm => Args::RegExtImm(RegExtImm { a, imm: self.wide }),
            Format::TwoImm => Args::TwoImm(TwoImm {
                x: self.x,
                y: self.y,
            }),
            Format::OneOffset => Args::OneOffset(OneOffset { target }),
            Format::RegImm => Args::RegImm(RegImm { a, imm: self.x }),
            Format::RegTwoImm => Args::RegTwoImm(RegTwoImm {
                a,
                x: self.x,
                y: self.y,
            }),
            Format::RegImmOffset => Args::RegImmOffset(RegImmOffset {
                a,
                imm: self.x,
                target,
            }),
            Format::TwoReg => Args::TwoReg(TwoReg { d, a }),
            Format::TwoRegImm => Args::TwoRegImm(TwoRegImm { a, b, imm: self.x }),
            Format::TwoRegOffset => Args::TwoRegOffset(TwoRegOffset { a, b, target }),
            Format::TwoRegTwoImm => Args::TwoRegTwoImm(TwoRegTwoImm {
                a,
                b,
                x: self.x,
                y: self.y,
            }),
            Format::ThreeReg => Args::ThreeReg(ThreeReg { a, b, d }),
        };
        Instruction::from_args(op, args).expect("args of the opcode's format")
    }
}

#[derive(Clone, Debug)]
struct Case {
    profile: Profile,
    specs: Vec<Spec>,
    jump_table: Vec<Index>,
    regs: [u64; 13],
    start: Option<Index>,
    gas: u64,
    naive: bool,
    /// How the recompiler keeps accesses in bounds: all three ways.
    checks: MemoryChecks,
    /// Code generated from the decoded program in two halves on two
    /// threads (whatever the size); otherwise in the decoding pass
    /// (`JitInstance::from_blob`).
    split: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Profile::V0_8), Just(Profile::V0_7)],
        prop::collection::vec(spec(), 1..40),
        prop::collection::vec(any::<Index>(), 0..6),
        prop::array::uniform13(reg_value()),
        prop::option::weighted(0.3, any::<Index>()),
        prop_oneof![Just(1_000u64), 0u64..200, Just(100_000)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(MemoryChecks::Hardware),
            Just(MemoryChecks::HardwareNoSegment),
            Just(MemoryChecks::Explicit)
        ],
        any::<bool>(),
    )
        .prop_map(
            |(profile, specs, jump_table, mut regs, start, gas, naive, halt, checks, split)| {
                // Half the runs can end through the final `jump_ind r0, 0`.
                if halt {
                    regs[0] = u64::from(pvm_core::HALT_ADDRESS);
                }
                Case {
                    profile,
                    specs,
                    jump_table,
                    regs,
                    start,
                    gas,
                    naive,
                    checks,
                    split,
                }
            },
        )
}

impl Case {
    /// Assembles the program: two passes until every pc is stable.
    fn blob(&self) -> Blob {
        let mut pcs: Vec<u32> = vec![0; self.specs.len() + 1];
        let mut code = Vec::new();
        for _ in 0..16 {
            code.clear();
            let mut new_pcs = Vec::with_capacity(pcs.len());
            for s in &self.specs {
                new_pcs.push(code.len() as u32);
                let inst = s.instruction(self.profile, &pcs);
                pvm_core::codec::encode(self.profile, &inst, code.len() as u32, &mut code)
                    .expect("opcode exists in the profile");
            }
            // A final terminator keeps 0.8's validation happy.
            new_pcs.push(code.len() as u32);
            let end = Instruction::JumpInd(RegImm { a: reg(0), imm: 0 });
            pvm_core::codec::encode(self.profile, &end, code.len() as u32, &mut code)
                .expect("jump_ind exists");
            if new_pcs == pcs {
                break;
            }
            pcs = new_pcs;
        }
        let mut bitmask = vec![0u8; code.len().div_ceil(8)];
        for &pc in &pcs {
            bitmask[pc as usize / 8] |= 1 << (pc % 8);
        }
        Blob {
            jump_table: self
                .jump_table
                .iter()
                .map(|i| pcs[i.index(pcs.len())])
                .collect(),
            jump_table_entry_size: 4,
            code,
            bitmask,
        }
    }
}

fn layout<M: Memory>(m: &mut M, poke: &mut dyn FnMut(&mut M, u32, &[u8])) {
    for (page, access) in LAYOUT {
        m.set_access(page, 1, access);
        let fill: Vec<u8> = (0..PAGE_SIZE)
            .map(|k| (k as u8).wrapping_mul(31) ^ page as u8)
            .collect();
        poke(m, page * PAGE_SIZE, &fill);
    }
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let bytes = case.blob().to_bytes();
    let Ok(mut program) = Program::from_bytes(&bytes, case.profile) else {
        // Rare: a random blob the profile rejects. Nothing to compare.
        return Ok(());
    };
    if case.naive {
        program
            .set_gas_model(&pvm_core::gas::Naive)
            .expect("naive costs every block");
    }
    let pc0 = match &case.start {
        None => 0,
        Some(i) => program.pcs()[i.index(program.pcs().len())],
    };
    let heap = Heap {
        top: 0x16000,
        limit: 0x1A000,
    };

    let mut vm = Vm::new(&program, FlatMemory::new(), pc0, case.gas);
    layout(vm.memory_mut(), &mut |m, a, d| {
        m.poke(a, d);
    });
    *vm.regs_mut() = case.regs;
    vm.set_heap(Some(heap));

    let checks = case.checks;
    let mut jit = if case.split {
        let two = Parallelism {
            threads: 2,
            min_instructions: 0,
        };
        JitInstance::from_program_on(program.clone(), checks, two)
    } else {
        let model: &dyn pvm_core::GasModel = match (case.naive, case.profile) {
            (true, _) | (false, Profile::V0_7) => &pvm_core::gas::Naive,
            (false, Profile::V0_8) => &pvm_core::gas::Pipeline,
        };
        JitInstance::from_blob(case.blob(), case.profile, model, checks)
    }
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    // Decoded in the code generation pass: the same program.
    let p = jit.program();
    prop_assert_eq!(p.instructions(), program.instructions());
    prop_assert_eq!(p.pcs(), program.pcs());
    prop_assert_eq!(p.jump_table_targets(), program.jump_table_targets());
    let costs = |p: &Program| {
        (0..p.block_count())
            .map(|b| (p.block_start(b), p.block_cost(b)))
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(costs(p), costs(&program));
    for (page, access) in LAYOUT {
        jit.map(page, 1, access);
        let fill: Vec<u8> = (0..PAGE_SIZE)
            .map(|k| (k as u8).wrapping_mul(31) ^ page as u8)
            .collect();
        jit.poke(page * PAGE_SIZE, &fill);
    }
    *jit.regs_mut() = case.regs;
    jit.set_pc(pc0);
    jit.set_gas(case.gas);
    jit.set_heap(Some(heap));

    for round in 0..12 {
        let a = vm.run();
        let b = jit.run();
        prop_assert_eq!(&a, &b, "exit, round {}", round);
        prop_assert_eq!(vm.pc(), jit.pc(), "pc, round {}", round);
        prop_assert_eq!(vm.regs(), jit.regs(), "registers, round {}", round);
        prop_assert_eq!(vm.gas(), jit.gas(), "gas, round {}", round);
        prop_assert_eq!(
            vm.gas_charged(),
            jit.gas_charged(),
            "charged, round {}",
            round
        );
        prop_assert_eq!(vm.heap(), jit.heap(), "heap, round {}", round);
        match a {
            Ok(Exit::HostCall(id)) => {
                let v = vm.reg(7).wrapping_add(u64::from(id));
                vm.set_reg(7, v);
                jit.set_reg(7, v);
            }
            Ok(Exit::PageFault(addr)) => {
                vm.memory_mut()
                    .set_access(addr / PAGE_SIZE, 1, Access::Write);
                jit.map(addr / PAGE_SIZE, 1, Access::Write);
            }
            Ok(Exit::OutOfGas) => {
                vm.set_gas(vm.gas() + 500);
                jit.set_gas(jit.gas() + 500);
            }
            _ => break,
        }
    }
    for page in COMPARED {
        prop_assert_eq!(
            vm.memory().page_access(page),
            jit.page_access(page),
            "access of page {:#x}",
            page
        );
        for k in 0..PAGE_SIZE {
            let addr = page * PAGE_SIZE + k;
            let (x, y) = (vm.memory().peek(addr), jit.peek(addr));
            if x != y {
                prop_assert_eq!(x, y, "memory at {:#x}", addr);
            }
        }
    }
    Ok(())
}

/// Cases per run: 3000 in CI; the long run sets `PVM_DIFF_CASES`, e.g.
/// `PVM_DIFF_CASES=100000 cargo test --release -p pvm-tests --test jit_differential`.
fn cases() -> u32 {
    std::env::var("PVM_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn interpreter_and_jit_agree(case in case()) {
        if pvm_jit::is_supported() {
            check(&case)?;
        }
    }
}

/// Loop-heavy: a counted loop with loads, stores and a host call inside, so
/// gas runs out mid-loop and resumptions cross many blocks.
#[test]
fn counted_loop_agrees() {
    if !pvm_jit::is_supported() {
        return;
    }
    let text = "load_imm r7, 200\nload_imm r8, 0x10000\nfallthrough\nloop:\nstore_ind_u32 r7, r8, 0\nload_ind_u32 r9, r8, 0\nadd_64 r10, r10, r9\nadd_imm_64 r8, r8, 4\nadd_imm_64 r7, r7, -1\nbranch_ne_imm r7, 0, loop\necalli 1\njump_ind r0, 0\n";
    for profile in Profile::ALL {
        let bytes = pvm_core::asm::assemble(text, profile).expect("assembles");
        let program = Program::from_bytes(&bytes, profile).expect("valid");
        let mut vm = Vm::new(&program, FlatMemory::new(), 0, 300);
        vm.memory_mut().set_access(0x10, 1, Access::Write);
        vm.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        let mut jit = JitInstance::new(&program).expect("compiles");
        jit.map(0x10, 1, Access::Write);
        jit.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        jit.set_gas(300);
        for _ in 0..1000 {
            let (a, b) = (vm.run(), jit.run());
            assert_eq!(a, b);
            assert_eq!(
                (vm.pc(), vm.gas(), vm.regs()),
                (jit.pc(), jit.gas(), jit.regs())
            );
            match a {
                Ok(Exit::OutOfGas) => {
                    vm.set_gas(300);
                    jit.set_gas(300);
                }
                Ok(Exit::HostCall(_)) => {}
                _ => break,
            }
        }
        assert!(vm.is_finished() && jit.is_finished());
        for k in 0..PAGE_SIZE {
            assert_eq!(vm.memory().peek(0x10000 + k), jit.peek(0x10000 + k));
        }
    }
}

/// Register aliasing, exhaustively: every register-operand instruction with
/// every assignment of its operands among r0 (rbx), r11 (rdx) and r12 (rcx)
/// — the host registers that division, wide multiplication and rotation
/// borrow, and one that nothing borrows — on edge values, one instruction
/// followed by `trap`; both engines must leave the same registers.
#[test]
fn register_aliasing_agrees() {
    if !pvm_jit::is_supported() {
        return;
    }
    const REGS: [u8; 3] = [0, 11, 12];
    let values: [[u64; 3]; 4] = [
        [7, 3, 0],
        [i64::MIN as u64, u64::MAX, 0x8000_0000],
        [0xFFFF_FFFF_8000_0000, 0x1_0000_0020, 63],
        [0x1234_5678_9ABC_DEF0, 0x7FFF_FFFF, 65],
    ];
    let mut runs = 0;
    for &op in Opcode::ALL {
        if op.number(Profile::V0_8).is_none() || op.is_terminator() {
            continue;
        }
        let combos: Vec<Args> = match op.format() {
            Format::TwoReg => REGS
                .iter()
                .flat_map(|&d| REGS.iter().map(move |&a| (d, a)))
                .map(|(d, a)| {
                    Args::TwoReg(TwoReg {
                        d: reg(d),
                        a: reg(a),
                    })
                })
                .collect(),
            Format::TwoRegImm => REGS
                .iter()
                .flat_map(|&a| REGS.iter().map(move |&b| (a, b)))
                .flat_map(|(a, b)| {
                    [5u32, 0xFFFF_FFF0, 32].map(|imm| {
                        Args::TwoRegImm(TwoRegImm {
                            a: reg(a),
                            b: reg(b),
                            imm,
                        })
                    })
                })
                .collect(),
            Format::ThreeReg => REGS
                .iter()
                .flat_map(|&a| REGS.iter().map(move |&b| (a, b)))
                .flat_map(|(a, b)| REGS.iter().map(move |&d| (a, b, d)))
                .map(|(a, b, d)| {
                    Args::ThreeReg(ThreeReg {
                        a: reg(a),
                        b: reg(b),
                        d: reg(d),
                    })
                })
                .collect(),
            _ => continue,
        };
        for args in combos {
            let inst = Instruction::from_args(op, args).expect("format matches");
            let mut code = Vec::new();
            pvm_core::codec::encode(Profile::V0_8, &inst, 0, &mut code).expect("encodes");
            let first_len = code.len();
            pvm_core::codec::encode(
                Profile::V0_8,
                &Instruction::Trap(NoArgs),
                first_len as u32,
                &mut code,
            )
            .expect("encodes");
            let blob = Blob::from_code(&code, [0, first_len]);
            let mut program = Program::from_bytes(&blob.to_bytes(), Profile::V0_8).expect("valid");
            program.set_gas_model(&pvm_core::gas::Naive).expect("naive");
            for vals in values {
                let mut regs = [0u64; 13];
                for (k, &r) in REGS.iter().enumerate() {
                    regs[r as usize] = vals[k];
                }
                let mut vm = Vm::new(&program, FlatMemory::new(), 0, 10);
                *vm.regs_mut() = regs;
                let mut jit = JitInstance::new(&program).expect("compiles");
                *jit.regs_mut() = regs;
                jit.set_gas(10);
                let (a, b) = (vm.run(), jit.run());
                assert_eq!(a, b, "{inst:?} with {vals:x?}");
                assert_eq!(vm.regs(), jit.regs(), "{inst:?} with {vals:x?}");
                runs += 1;
            }
        }
    }
    assert!(runs > 5000, "only {runs} runs");
}
