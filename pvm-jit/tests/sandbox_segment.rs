//! Sandbox test: with segment addressing (`MemoryChecks::Hardware` where the
//! kernel lets user code set the GS base), guest code runs with GS at the
//! guest window, and the host's GS base is back after every way a run ends:
//! halt, panic, out of gas, a host call, a page fault (through the signal
//! handler), and a resumed run. The test sets this thread's GS base to a
//! sentinel first (nothing in a Rust program on Linux uses GS) and checks
//! it after each run; the interpreter gives the same exits. Linux x86-64
//! with the `recompiler` feature only.
#![cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]

use pvm_core::{Access, Exit, Memory, PagedMemory, Profile, Program, Vm};
use pvm_jit::{JitInstance, MemoryChecks};

/// Whether the kernel lets user code read and write the GS base.
fn fsgsbase() -> bool {
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: reads the auxiliary vector; no pointers.
    unsafe { libc::getauxval(libc::AT_HWCAP2) & HWCAP2_FSGSBASE != 0 }
}

/// This thread's GS base. Only called once `fsgsbase()` said yes.
fn gs() -> u64 {
    let v: u64;
    // SAFETY: reads the GS base into a register (allowed: FSGSBASE is on);
    // no memory, stack or flags touched.
    unsafe {
        core::arch::asm!("rdgsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Sets this thread's GS base. Only called once `fsgsbase()` said yes; no
/// code in this program addresses memory through GS but the recompiler's,
/// which sets and restores it itself.
fn write_gs(v: u64) {
    // SAFETY: as above; only the GS base changes.
    unsafe { core::arch::asm!("wrgsbase {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

fn program(text: &str) -> Program {
    Program::from_bytes(
        &pvm_core::asm::assemble(text, Profile::V0_8).unwrap(),
        Profile::V0_8,
    )
    .unwrap()
}

#[test]
fn the_hosts_gs_base_is_back_after_every_kind_of_exit() {
    if !pvm_jit::is_available() || !fsgsbase() {
        eprintln!("skipped: no recompiler, or the kernel does not allow user GS base writes");
        return;
    }
    const SENTINEL: u64 = 0x7e57_0000_1000;
    write_gs(SENTINEL);
    // Each program starts with a load through a register (so the segment
    // path runs) and ends one way. r8 points at a mapped page.
    let cases = [
        ("halt", "load_ind_u64 r9, r8, 8\njump_ind r0, 0\n"),
        ("panic", "load_ind_u64 r9, r8, 8\ntrap\n"),
        (
            "host call",
            "load_ind_u64 r9, r8, 8\necalli 7\nadd_imm_64 r9, r9, 1\ntrap\n",
        ),
        (
            "page fault",
            "load_ind_u64 r9, r8, 8\nstore_ind_u64 r8, r9, 0x20000\ntrap\n",
        ),
        ("out of gas", "loop:\nload_ind_u64 r9, r8, 8\njump loop\n"),
    ];
    for (name, text) in cases {
        let p = program(text);
        let mut jit = JitInstance::with_checks(&p, MemoryChecks::Hardware).unwrap();
        assert!(jit.segment_addressing(), "Hardware should use GS here");
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, 1000);
        jit.map(16, 1, Access::Write);
        vm.memory_mut().set_access(16, 1, Access::Write);
        for r in [0, 8] {
            let v = if r == 0 {
                u64::from(pvm_core::HALT_ADDRESS)
            } else {
                16 * 4096
            };
            jit.set_reg(r, v);
            vm.set_reg(r, v);
        }
        jit.set_gas(1000);
        let mut exits = Vec::new();
        loop {
            let exit = jit.run().unwrap();
            assert_eq!(
                gs(),
                SENTINEL,
                "{name}: GS base not restored after {exit:?}"
            );
            assert_eq!(exit, vm.run().unwrap(), "{name}");
            assert_eq!(
                (jit.pc(), jit.gas(), *jit.regs()),
                (vm.pc(), vm.gas(), *vm.regs()),
                "{name}"
            );
            exits.push(exit);
            if !matches!(exit, Exit::HostCall(_)) {
                break;
            }
        }
        eprintln!("{name}: {exits:?}");
    }
    let noseg =
        JitInstance::with_checks(&program("trap\n"), MemoryChecks::HardwareNoSegment).unwrap();
    assert!(!noseg.segment_addressing());
    write_gs(0);
}
