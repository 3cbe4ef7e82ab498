//! The places where PolkaVM 0.37's interpreter departs from the GP 0.8.0
//! text (or from the GP 0.8 conformance vectors), found by the fuzzer. Each
//! test pins our behaviour (the GP's) and PolkaVM's, so that a change on
//! either side shows up. See README.md, "Known differences".

use pvm_core::{Access, Exit, FlatMemory, Memory, Profile, Program, Vm, PAGE_SIZE};
use pvm_fuzz::harness::{run_case, Counter, GasModel, Outcome, Polka};

const HALT: u64 = 0xFFFF_0000;

fn regs(r0: u64, r7: u64) -> [u64; 13] {
    let mut r = [0u64; 13];
    r[0] = r0;
    r[7] = r7;
    r
}

/// GP: a 1-byte store to 0xFFFFFFFF on a writable page is an ordinary
/// store. PolkaVM computes `address + length` in 32 bits, sees 2^32 as a
/// wrap and traps (or, with the last page unmapped, faults on it as for a
/// real wrap, where the GP panics because the wrapped bytes are below
/// 0x10000).
#[test]
fn polkavm_top_of_memory_store_to_last_byte() {
    let text = "\
.profile 0.8
.container raw
@0:
    store_u8 r7, -1
    jump_ind r0, 0
";
    let pages = vec![(0xFFFF_F000, Access::Write, vec![0; PAGE_SIZE as usize])];
    let case = pvm_fuzz::case_from_asm(text, regs(HALT, 0x5A), pages, 100).unwrap();

    // Ours: the store happens, then the program halts.
    let program = Program::from_bytes(&case.blob, Profile::V0_8).unwrap();
    let mut mem = FlatMemory::new();
    mem.set_access(0xFFFF_F000 / PAGE_SIZE, 1, Access::Write);
    let mut vm = Vm::new(&program, mem, 0, 100);
    *vm.regs_mut() = case.regs;
    assert_eq!(vm.run().unwrap(), Exit::Halt);
    assert_eq!(vm.memory().peek(0xFFFF_FFFF), 0x5A);

    // PolkaVM panics at the store: the harness recognises the deviation.
    let polka = Polka::new().unwrap();
    let outcome = run_case(
        &polka,
        &case,
        GasModel::Naive,
        &mut Counter::new(),
        &mut Vec::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(outcome, Outcome::KnownTopOfMemory);
}

/// GP: a load that wraps past 2^32 reads bytes below 0x10000 first: panic.
/// PolkaVM, with the last page unmapped, reports a page fault on it.
#[test]
fn polkavm_top_of_memory_wrapping_load() {
    let text = "\
.profile 0.8
.container raw
@0:
    load_u64 r1, -4
    jump_ind r0, 0
";
    let case = pvm_fuzz::case_from_asm(text, regs(HALT, 0), Vec::new(), 100).unwrap();
    let program = Program::from_bytes(&case.blob, Profile::V0_8).unwrap();
    let mut vm = Vm::new(&program, FlatMemory::new(), 0, 100);
    *vm.regs_mut() = case.regs;
    assert_eq!(vm.run().unwrap(), Exit::Panic);

    let polka = Polka::new().unwrap();
    let outcome = run_case(
        &polka,
        &case,
        GasModel::Naive,
        &mut Counter::new(),
        &mut Vec::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(outcome, Outcome::KnownTopOfMemory);
}

/// GP 0.8 validation accepts a program whose last instruction is a
/// conditional branch or `fallthrough` (both are terminators; reaching one
/// panics). PolkaVM 0.37 refuses to load it.
#[test]
fn polkavm_rejects_a_program_ending_in_a_branch() {
    let text = "\
.profile 0.8
.container raw
@0:
    load_imm r1, 1
    branch_eq_imm r1, 1, @0
";
    let case = pvm_fuzz::case_from_asm(text, regs(HALT, 0), Vec::new(), 100).unwrap();
    let program = Program::from_bytes(&case.blob, Profile::V0_8).unwrap();
    let mut vm = Vm::new(&program, FlatMemory::new(), 0, 100);
    assert_eq!(vm.run().unwrap(), Exit::Panic);

    let polka = Polka::new().unwrap();
    assert!(polka.module(&case.blob, GasModel::Naive).is_err());
    let outcome = run_case(
        &polka,
        &case,
        GasModel::Naive,
        &mut Counter::new(),
        &mut Vec::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(outcome, Outcome::PolkaRejectedLastFallthrough);
}

/// The GP 0.8.0 cost of a block with a conditional move whose destination
/// was just written by a divide: PolkaVM 0.37 (`CostModelKind::Full(L2Hit)`)
/// makes the cmov wait for the divide (it counts the destination as a
/// source); the GP 0.8 conformance vectors, and ours, do not.
#[test]
fn polkavm_cost_model_counts_cmov_destination_as_source() {
    let text = "\
.profile 0.8
.container raw
@0:
    div_u_32 r0, r10, r10
    cmov_nz_imm r0, r6, 0x2acf44bc
@9:
    load_imm_jump r10, 46, @9
";
    let case = pvm_fuzz::case_from_asm(text, regs(HALT, 0), Vec::new(), 100).unwrap();
    let program = Program::from_bytes(&case.blob, Profile::V0_8).unwrap();
    assert_eq!(program.block_cost(0), 60);
    let polka = Polka::new().unwrap();
    let module = polka.module(&case.blob, GasModel::Gp).unwrap();
    assert_eq!(
        module.calculate_gas_cost_for(polkavm::ProgramCounter(0)),
        Some(62)
    );
    let diffs = pvm_fuzz::block_cost_diffs(&polka, &case, false).unwrap();
    assert_eq!(diffs, vec![(0, 60, 62)]);
    assert!(pvm_fuzz::block_cost_diffs(&polka, &case, true)
        .unwrap()
        .is_empty());
}

/// The accepted difference of ../shared/spec/README.md: a store straddling
/// a read-only page and an unmapped page. GP: fault on the read-only page
/// (the lowest address that cannot be written); PolkaVM: on the unmapped one.
#[test]
fn accepted_store_straddling_read_only_and_unmapped() {
    let text = "\
.profile 0.8
.container raw
@0:
    store_u32 r7, 0x10ffe
    jump_ind r0, 0
";
    let pages = vec![(0x10000, Access::Read, vec![0; PAGE_SIZE as usize])];
    let case = pvm_fuzz::case_from_asm(text, regs(HALT, 1), pages, 100).unwrap();
    let program = Program::from_bytes(&case.blob, Profile::V0_8).unwrap();
    let mut mem = FlatMemory::new();
    mem.set_access(0x10, 1, Access::Read);
    let mut vm = Vm::new(&program, mem, 0, 100);
    assert_eq!(vm.run().unwrap(), Exit::PageFault(0x10000));

    let polka = Polka::new().unwrap();
    let outcome = run_case(
        &polka,
        &case,
        GasModel::Naive,
        &mut Counter::new(),
        &mut Vec::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(outcome, Outcome::AcceptedStraddle);
}
