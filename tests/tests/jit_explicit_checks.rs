//! The recompiler with explicit memory checks (`MemoryChecks::Explicit`) in a
//! process where no instance uses hardware protection, so the JIT's signal
//! handler is never installed: a load or store that escaped its check would
//! kill this test binary with SIGSEGV instead of passing. One test, so that
//! nothing else in the process installs the handler.

use pvm_core::{Access, Exit, FlatMemory, Memory, Profile, Program, Vm, PAGE_SIZE};
use pvm_jit::{JitInstance, MemoryChecks};

#[cfg(target_os = "linux")]
fn segv_handler() -> usize {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action
    // only queries the current one.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut old),
            0
        );
        old.sa_sigaction
    }
}

#[test]
#[cfg(target_os = "linux")]
fn explicit_checks_need_no_signal_handler() {
    if !pvm_jit::is_available() {
        eprintln!("skipped: the recompiler is not available here");
        return;
    }
    let before = segv_handler();

    // Every conformance vector.
    let mut vectors = 0;
    if let Some(shared) = pvm_tests::shared_dir() {
        for (dir, profile) in [("gp-0.8", Profile::V0_8), ("gp-0.7", Profile::V0_7)] {
            let dir = shared.join("vectors").join(dir).join("programs");
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .expect("vector folder")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            for f in files {
                pvm_std::vectors::run_file_on(
                    &f,
                    Some(profile),
                    None,
                    pvm_std::vectors::Backend::JitChecked,
                )
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                vectors += 1;
            }
        }
        assert_eq!(vectors, 363 + 307);
    } else {
        pvm_tests::shared_missing("../shared/vectors");
    }

    // Loads and stores of every width at addresses around pages that are
    // read-write, read-only and unmapped, below 0x10000 and wrapping past
    // 2^32; each run resumes after the fault (the page mapped) until halt.
    let text = "load_ind_u8 r9, r8, 0\nload_ind_u16 r9, r8, 0\nload_ind_u32 r9, r8, 0\nload_ind_u64 r9, r8, 0\nstore_ind_u8 r7, r8, 0\nstore_ind_u16 r7, r8, 0\nstore_ind_u32 r7, r8, 0\nstore_ind_u64 r7, r8, 0\nload_u64 r10, 0x20ffc\nstore_u32 r7, 0x22ffe\njump_ind r0, 0\n";
    let bytes = pvm_core::asm::assemble(text, Profile::V0_8).expect("assembles");
    let mut program = Program::from_bytes(&bytes, Profile::V0_8).expect("valid");
    program.set_gas_model(&pvm_core::gas::Naive).expect("naive");
    let layout = [
        (0x20u32, Access::Write),
        (0x21, Access::Read),
        (0xFFFFF, Access::Write),
    ];
    let mut addresses = vec![0u32, 0xFFFF, 0x10000, 0xFFFF_FFF9, 0xFFFF_FFFF];
    for page in [0x20u32, 0x21, 0x22, 0xFFFFF] {
        for off in [0u32, 1, 0xFF9, 0xFFC, 0xFFF] {
            addresses.push(page * PAGE_SIZE + off);
        }
    }
    let mut exits = 0;
    for &addr in &addresses {
        let mut vm = Vm::new(&program, FlatMemory::new(), 0, 1000);
        let mut jit = JitInstance::with_checks(&program, MemoryChecks::Explicit).expect("compiles");
        jit.set_gas(1000);
        for (page, access) in layout {
            vm.memory_mut().set_access(page, 1, access);
            jit.map(page, 1, access);
        }
        for (r, v) in [
            (0, u64::from(pvm_core::HALT_ADDRESS)),
            (7, 0x0102_0304_0506_0708),
            (8, u64::from(addr)),
        ] {
            vm.set_reg(r, v);
            jit.set_reg(r, v);
        }
        for _ in 0..20 {
            let (a, b) = (vm.run(), jit.run());
            assert_eq!(a, b, "address {addr:#x}");
            assert_eq!(
                (vm.pc(), vm.gas(), vm.regs()),
                (jit.pc(), jit.gas(), jit.regs())
            );
            exits += 1;
            match a {
                Ok(Exit::PageFault(at)) => {
                    vm.memory_mut().set_access(at / PAGE_SIZE, 1, Access::Write);
                    jit.map(at / PAGE_SIZE, 1, Access::Write);
                }
                _ => break,
            }
        }
        for page in [0x20u32, 0x21, 0x22, 0xFFFFF] {
            for k in 0..PAGE_SIZE {
                let a = page * PAGE_SIZE + k;
                assert_eq!(vm.memory().peek(a), jit.peek(a), "memory at {a:#x}");
            }
        }
    }
    assert!(exits > addresses.len(), "faults were resumed");

    // Nothing installed a handler for SIGSEGV.
    assert_eq!(segv_handler(), before);
}
