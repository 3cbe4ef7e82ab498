//! Sandbox test: out of gas is a trap (SIGILL on a charge prologue's
//! displacement byte, see `signal.rs`), and the host's own SIGILL handler
//! keeps working while guests run.
//!
//! The test installs a SIGILL handler *before* the first `JitInstance*
//! exists; the JIT installs its own on first use and chains to it. Ours
//! steps over a `ud2` the test executes in host code. Then, many times over
//! and on two threads at once:
//!
//! 1. a guest that runs out of gas in the middle of a loop gets the PVM
//!    out-of-gas exit with exactly the interpreter's pc, registers and gas
//!    (left unchanged by the charge that failed), and our handler is not
//!    called; given more gas it resumes and ends as the interpreter does;
//! 2. a `ud2` in host code on the same thread reaches our handler.
//!
//! One test in this file, so that it has the process (and its signal
//! handlers) to itself. Linux x86-64 with the `recompiler` feature only.
#![cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]

mod common;
use common::program;

use pvm_core::{Exit, PagedMemory, Vm};
use pvm_jit::JitInstance;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering::SeqCst};

/// `ud2`s our handler stepped over, process-wide.
static HOST_TRAPS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// `ud2`s our handler stepped over on this thread (an atomic: the
    /// handler writes it asynchronously to the code that reads it).
    static MY_TRAPS: AtomicUsize = const { AtomicUsize::new(0) };
}

extern "C" fn host_sigill(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    let ctx = unsafe { &mut *(uc as *mut libc::ucontext_t) };
    let rip = ctx.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    // SAFETY: `rip` is the address of the instruction that trapped, in
    // this test's code (readable).
    let bytes = unsafe { [*(rip as *const u8), *((rip + 1) as *const u8)] };
    if bytes != [0x0F, 0x0B] {
        // Not our `ud2`: a guest's trap leaked here, or a real crash.
        // SAFETY: abort is always safe to call.
        unsafe { libc::abort() };
    }
    ctx.uc_mcontext.gregs[libc::REG_RIP as usize] += 2;
    HOST_TRAPS.fetch_add(1, SeqCst);
    MY_TRAPS.with(|c| c.fetch_add(1, SeqCst));
}

fn install_host_sigill() {
    // SAFETY: a zeroed sigaction is valid to fill in; the handler has the
    // SA_SIGINFO signature.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = host_sigill as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGILL, &sa, core::ptr::null_mut()), 0);
    }
}

/// Executes `ud2` in host code; our handler steps over it.
fn host_ud2() {
    let before = MY_TRAPS.with(|c| c.load(SeqCst));
    compiler_fence(SeqCst);
    // SAFETY: `ud2` raises SIGILL, which the test's handler answers by
    // moving past it; nothing else changes.
    unsafe { core::arch::asm!("ud2") };
    compiler_fence(SeqCst);
    assert_eq!(
        MY_TRAPS.with(|c| c.load(SeqCst)),
        before + 1,
        "the host's SIGILL handler did not run for a host ud2"
    );
}

/// A loop of blocks of two, three or two, and two instructions, then host
/// call 1.
const LOOP: &str = "
loop:
    add_imm_64 r8, r8, 3
    branch_eq_imm r8, 12, skip
    mul_64 r9, r9, r8
    xor r10, r10, r9
    jump next
skip:
    add_imm_64 r11, r11, 1
    fallthrough
next:
    add_imm_64 r7, r7, -1
    branch_ne_imm r7, 0, loop
    ecalli 1
    trap
";

/// Runs the loop on the JIT and the interpreter with every gas from 0 to
/// `max`: out of gas at the same pc with the same state, then with gas
/// added both end at the host call alike. Returns how many ran out.
fn out_of_gas_everywhere(max: u64) -> u64 {
    let mut out = 0;
    let p = program(LOOP);
    let mut jit = JitInstance::new(&p).unwrap();
    for gas in 0..=max {
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, gas);
        vm.set_reg(7, 5);
        vm.set_reg(9, 7);
        jit.set_pc(0);
        jit.set_gas_charged(false);
        *jit.regs_mut() = *vm.regs();
        jit.set_gas(gas);
        let (want, got) = (vm.run(), jit.run());
        assert_eq!(got, want, "gas {gas}");
        let state = |regs: &[u64; 13], gas, pc| (*regs, gas, pc);
        assert_eq!(
            state(jit.regs(), jit.gas(), jit.pc()),
            state(vm.regs(), vm.gas(), vm.pc()),
            "gas {gas}"
        );
        if want == Ok(Exit::OutOfGas) {
            out += 1;
            vm.set_gas(1000);
            jit.set_gas(1000);
            assert_eq!(jit.run(), vm.run(), "resumed, gas {gas}");
            assert_eq!(
                state(jit.regs(), jit.gas(), jit.pc()),
                state(vm.regs(), vm.gas(), vm.pc()),
                "resumed, gas {gas}"
            );
        }
        host_ud2();
    }
    out
}

#[test]
fn out_of_gas_traps_and_host_sigill_handler_is_chained() {
    install_host_sigill();
    host_ud2();
    let traps = HOST_TRAPS.load(SeqCst);
    // The loop runs 5 times through about 6 instructions: gas up to 40
    // covers out of gas in every block and the end.
    let out = out_of_gas_everywhere(40);
    assert!(out >= 30, "only {out} runs out of gas");
    // Our handler ran for our `ud2`s only: one per gas value.
    assert_eq!(HOST_TRAPS.load(SeqCst), traps + 41);
    // Two threads at once.
    let other = std::thread::spawn(|| {
        for _ in 0..20 {
            out_of_gas_everywhere(40);
        }
    });
    for _ in 0..20 {
        out_of_gas_everywhere(40);
    }
    other.join().unwrap();
    assert_eq!(HOST_TRAPS.load(SeqCst), traps + 41 + 2 * 20 * 41);
}
