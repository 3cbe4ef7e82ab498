//! Sandbox test: the host's own SIGSEGV handler keeps working while guests
//! run.
//!
//! The test installs a SIGSEGV handler (`sigaction`, `SA_SIGINFO`) *before*
//! the first `JitInstance` exists; the JIT installs its own handler on first
//! use and chains to ours. Ours repairs faults on a few pages the test
//! mapped `PROT_NONE` (it makes the page readable and writable and returns,
//! so the faulting access is retried and succeeds). Then:
//!
//! 1. a guest that faults gets the PVM page-fault exit, and our handler is
//!    not called;
//! 2. a fault in host code (a volatile read of a `PROT_NONE` page) on the
//!    same thread reaches our handler, which repairs it;
//! 3. another thread faults in host code while this thread is inside a
//!    long-running guest, and the other way round (a thread runs a guest
//!    that faults thousands of times while this one faults in host code);
//! 4. a SIGUSR1 handler of the host, delivered (by `pthread_kill`) to this
//!    thread while it runs guest code, faults in host code itself: the
//!    fault happens while the JIT considers this thread busy with a guest,
//!    yet it is not the guest's, so it must reach our handler, and the guest
//!    must still compute exactly what the interpreter computes.
//!
//! Signal handlers are process-wide and the JIT installs its handler once
//! per process, so this file holds exactly one test (its own process), which
//! makes the order deterministic. Linux x86-64 with the `recompiler` feature
//! only (elsewhere it compiles to nothing).
#![cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]

mod common;
use common::program;

use pvm_core::{Access, Error, Exit, PagedMemory, Program, Vm};
use pvm_jit::{JitInstance, MemoryChecks};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
/// Pages of the region our handler repairs.
const REGION_PAGES: usize = 16;

/// The region (base address) whose faults our handler repairs.
static REGION: AtomicUsize = AtomicUsize::new(0);
/// Faults our handler repaired, process-wide.
static HOST_FAULTS: AtomicUsize = AtomicUsize::new(0);
/// Faults our handler saw outside the region (it passes them on; they
/// would be guest faults leaking to the host, or real crashes).
static FOREIGN_FAULTS: AtomicUsize = AtomicUsize::new(0);
/// The SIGSEGV action before ours (Rust's stack-overflow handler, usually).
static PREV: OnceLock<libc::sigaction> = OnceLock::new();

thread_local! {
    /// Faults our handler repaired on this thread (an atomic: the handler
    /// writes it asynchronously to the code that reads it).
    static MY_FAULTS: AtomicUsize = const { AtomicUsize::new(0) };
}

extern "C" fn host_segv(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let base = REGION.load(SeqCst);
    if base != 0 && addr >= base && addr < base + REGION_PAGES * PAGE {
        let page = addr & !(PAGE - 1);
        // SAFETY: `page` lies in the region this test mapped and owns;
        // mprotect is a plain system call (async-signal-safe in practice on
        // Linux) and changes nothing but that page's protection.
        let rc = unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            // SAFETY: abort is always safe to call.
            unsafe { libc::abort() };
        }
        HOST_FAULTS.fetch_add(1, SeqCst);
        MY_FAULTS.with(|c| c.fetch_add(1, SeqCst));
        return;
    }
    FOREIGN_FAULTS.fetch_add(1, SeqCst);
    // Not ours: what was there before decides (for Rust's handler: a stack
    // overflow message, else the default action, which ends the process).
    match PREV.get() {
        Some(prev)
            if prev.sa_sigaction != libc::SIG_DFL
                && prev.sa_sigaction != libc::SIG_IGN
                && prev.sa_flags & libc::SA_SIGINFO != 0 =>
        {
            // SAFETY: the previous handler was registered with SA_SIGINFO,
            // so it has this signature; we pass on the kernel's arguments.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { core::mem::transmute(prev.sa_sigaction) };
            f(sig, info, uc);
        }
        _ => {
            // SAFETY: a zeroed sigaction with SIG_DFL is valid; returning
            // re-executes the access, which now kills the process.
            unsafe {
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, core::ptr::null_mut());
            }
        }
    }
}

/// The SIGSEGV action installed now.
fn current_segv_action() -> libc::sigaction {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action
    // only queries.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut old),
            0
        );
        old
    }
}

fn install_host_segv() {
    PREV.set(current_segv_action()).unwrap();
    // SAFETY: a zeroed sigaction is valid to fill in; the handler has the
    // SA_SIGINFO signature.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = host_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut()),
            0
        );
    }
}

/// Makes page `k` of the region inaccessible, then reads it from host code:
/// the read faults, our handler repairs the page, the read is retried.
/// Returns what was read; asserts our handler ran once on this thread.
fn host_fault(k: usize) -> u64 {
    let base = REGION.load(SeqCst);
    assert!(k < REGION_PAGES && base != 0);
    let page = (base + k * PAGE) as *mut u64;
    // SAFETY: the page is part of the test's own mapping.
    let rc = unsafe { libc::mprotect(page.cast(), PAGE, libc::PROT_NONE) };
    assert_eq!(rc, 0);
    let before = MY_FAULTS.with(|c| c.load(SeqCst));
    // The fences keep the compiler from moving the counter reads across the
    // faulting access (the handler runs "inside" it).
    compiler_fence(SeqCst);
    // SAFETY: `page` is a mapped, aligned page of ours; the read faults and
    // our handler makes the page readable before it is retried, so it reads
    // initialised memory (zero, or what `host_write` stored).
    let v = unsafe { core::ptr::read_volatile(page) };
    compiler_fence(SeqCst);
    assert_eq!(
        MY_FAULTS.with(|c| c.load(SeqCst)),
        before + 1,
        "the host's SIGSEGV handler did not run for a host fault"
    );
    v
}

/// Writes `v` into page `k` of the region (which the test owns).
fn host_write(k: usize, v: u64) {
    let page = (REGION.load(SeqCst) + k * PAGE) as *mut u64;
    // SAFETY: the page is part of the test's own mapping; making it
    // read-write and writing an aligned word there is sound.
    unsafe {
        assert_eq!(
            libc::mprotect(page.cast(), PAGE, libc::PROT_READ | libc::PROT_WRITE),
            0
        );
        core::ptr::write_volatile(page, v);
    }
}

/// A long compute loop (r7 iterations), then host call 1.
const LONG: &str = "
loop:
    mul_64 r8, r8, r9
    add_64 r8, r8, r7
    xor r10, r10, r8
    add_imm_64 r7, r7, -1
    branch_ne_imm r7, 0, loop
    ecalli 1
    trap
";

/// The long guest's start state and its exact end state, from the
/// interpreter.
struct Long {
    p: Program,
    regs: [u64; 13],
    gas: u64,
    want: ([u64; 13], u64, u32),
}

impl Long {
    fn new(iterations: u64) -> Long {
        let p = program(LONG);
        let mut regs = [0u64; 13];
        regs[7] = iterations;
        regs[8] = 0x0123_4567_89AB_CDEF;
        regs[9] = 0x9E37_79B9_7F4A_7C15;
        let gas = 1 << 40;
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, gas);
        *vm.regs_mut() = regs;
        assert_eq!(vm.run(), Ok(Exit::HostCall(1)));
        let want = (*vm.regs(), vm.gas(), vm.pc());
        Long { p, regs, gas, want }
    }

    /// Runs it on `vm` (an instance of `self.p`) and checks the result.
    fn run(&self, vm: &mut JitInstance) {
        vm.set_pc(0);
        vm.set_gas_charged(false);
        *vm.regs_mut() = self.regs;
        vm.set_gas(self.gas);
        assert_eq!(vm.run(), Ok(Exit::HostCall(1)));
        assert_eq!((*vm.regs(), vm.gas(), vm.pc()), self.want);
    }
}

/// A guest that walks `r8` through unmapped pages: each run faults at the
/// next page, which the caller maps. Checks `n` faults.
fn faulting_walk(n: usize) {
    let p = program("loop:\nstore_ind_u64 r7, r8, 0\nadd_imm_64 r8, r8, 0x1000\njump loop\n");
    let mut vm = JitInstance::new(&p).unwrap();
    vm.set_gas(1 << 40);
    vm.set_reg(8, 0x4000_0000);
    for k in 0..n as u32 {
        let page = 0x4000_0000 + k * 0x1000;
        assert_eq!(vm.run(), Ok(Exit::PageFault(page)), "guest fault {k}");
        vm.map(page / 0x1000, 1, Access::Write);
        if k > 0 {
            vm.map(page / 0x1000 - 1, 1, Access::None);
        }
    }
}

/// Page faults, read-only faults and low-address panics of a guest running
/// `store_ind_u64 r7, r8, 0; load_ind_u64 r9, r10, 0; load_ind_u64 r9, r8,
/// 0; ecalli 5`, 200 times: each must be the PVM exit.
fn guest_faults(vm: &mut JitInstance) {
    for k in 0..200u32 {
        let page = 0x20000 + 0x1000 * (k % 64);
        vm.set_pc(0);
        vm.set_gas(100);
        vm.set_reg(7, u64::from(k));
        vm.set_reg(8, u64::from(page));
        vm.set_reg(10, 0x100); // below 0x10000
        assert_eq!(vm.run(), Ok(Exit::PageFault(page)), "guest fault {k}");
        vm.map(page / 0x1000, 1, Access::Read);
        assert_eq!(
            vm.run(),
            Ok(Exit::PageFault(page)),
            "store to read-only {k}"
        );
        vm.map(page / 0x1000, 1, Access::Write);
        assert_eq!(vm.run(), Ok(Exit::Panic), "low load {k}");
        vm.set_reg(10, u64::from(page));
        vm.set_pc(0);
        assert_eq!(vm.run(), Ok(Exit::HostCall(5)));
        assert_eq!(vm.reg(9), u64::from(k));
        vm.map(page / 0x1000, 1, Access::None);
    }
}

/// Whether this thread is inside `JitInstance::run` of a long guest.
static IN_GUEST: AtomicBool = AtomicBool::new(false);
/// SIGUSR1 deliveries, and those that came while the guest was running.
static USR1: AtomicUsize = AtomicUsize::new(0);
static USR1_IN_GUEST: AtomicUsize = AtomicUsize::new(0);

/// The host's SIGUSR1 handler: faults in host code (page 15 of the region),
/// which our SIGSEGV handler repairs.
extern "C" fn host_usr1(_: libc::c_int) {
    if IN_GUEST.load(SeqCst) {
        USR1_IN_GUEST.fetch_add(1, SeqCst);
    }
    let page = (REGION.load(SeqCst) + 15 * PAGE) as *mut u64;
    // SAFETY: page 15 of the test's own region; mprotect is a system call.
    // The read faults and is repaired by our SIGSEGV handler (through the
    // JIT's, which must see that the fault is not in guest code).
    unsafe {
        libc::mprotect(page.cast(), PAGE, libc::PROT_NONE);
        let _ = core::ptr::read_volatile(page);
    }
    USR1.fetch_add(1, SeqCst);
}

#[test]
fn host_segv_handler_installed_first_still_works() {
    assert!(pvm_jit::is_supported());
    // SAFETY: a fresh anonymous private mapping; nothing else uses it.
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            REGION_PAGES * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    REGION.store(base as usize, SeqCst);

    // Our handler first, alone: it works.
    install_host_segv();
    assert_eq!(host_fault(0), 0);
    host_write(0, 77);
    assert_eq!(host_fault(0), 77);

    if !pvm_jit::is_available() {
        eprintln!("skipping: the recompiler cannot run on this CPU");
        return;
    }
    // The JIT's first use installs its handler on top of ours.
    let fault_prog = program("store_ind_u64 r7, r8, 0\nload_ind_u64 r9, r10, 0\nload_ind_u64 r9, r8, 0\necalli 5\ntrap\n");
    let mut vm = match JitInstance::new(&fault_prog) {
        Ok(vm) => vm,
        Err(Error::Unsupported(why)) => {
            eprintln!("skipping: the JIT cannot run here: {why}");
            return;
        }
        Err(e) => panic!("JitInstance::new failed: {e}"),
    };
    assert_ne!(
        current_segv_action().sa_sigaction,
        host_segv as *const () as usize,
        "the JIT did not install its SIGSEGV handler: chaining is not tested"
    );

    // 1. Guest faults: PVM exits, our handler is not involved (nor with
    // explicit checks, which need no signal at all).
    let host_before = HOST_FAULTS.load(SeqCst);
    guest_faults(&mut vm);
    guest_faults(&mut JitInstance::with_checks(&fault_prog, MemoryChecks::Explicit).unwrap());
    assert_eq!(
        HOST_FAULTS.load(SeqCst),
        host_before,
        "guest faults reached the host handler"
    );
    assert_eq!(FOREIGN_FAULTS.load(SeqCst), 0);

    // 2. A host fault on this thread, with an instance alive: ours.
    host_write(1, 0xABCD);
    assert_eq!(host_fault(1), 0xABCD);
    assert_eq!(host_fault(2), 0);

    // 3a. Another thread faults in host code while this one runs guests.
    let t0 = Instant::now();
    let long = Long::new(400_000);
    let interp_time = t0.elapsed();
    let mut lvm = JitInstance::new(&long.p).unwrap();
    let t0 = Instant::now();
    long.run(&mut lvm);
    eprintln!(
        "long guest: {:?} interpreted, {:?} on the JIT",
        interp_time,
        t0.elapsed()
    );
    let done = AtomicBool::new(false);
    let (during, runs) = std::thread::scope(|s| {
        let faulter = s.spawn(|| {
            let mut during = 0;
            for k in 0..300 {
                while !IN_GUEST.load(SeqCst) {
                    std::hint::spin_loop();
                }
                let was = IN_GUEST.load(SeqCst);
                host_write(3 + k % 4, k as u64);
                assert_eq!(host_fault(3 + k % 4), k as u64);
                if was && IN_GUEST.load(SeqCst) {
                    during += 1;
                }
            }
            done.store(true, SeqCst);
            during
        });
        let mut runs = 0;
        while !done.load(SeqCst) {
            IN_GUEST.store(true, SeqCst);
            long.run(&mut lvm);
            IN_GUEST.store(false, SeqCst);
            runs += 1;
        }
        (faulter.join().unwrap(), runs)
    });
    eprintln!("another thread's host faults while this one ran guests: {during} of 300 within a run ({runs} runs)");
    assert!(during > 0, "no host fault happened while the guest ran");

    // 3b. Another thread's guest faults thousands of times while this one
    // faults in host code.
    let before = HOST_FAULTS.load(SeqCst);
    std::thread::scope(|s| {
        let walker = s.spawn(|| faulting_walk(3000));
        let mut k = 0;
        while !walker.is_finished() || k < 100 {
            host_write(7, k);
            assert_eq!(host_fault(7), k);
            k += 1;
        }
        walker.join().unwrap();
        assert_eq!(HOST_FAULTS.load(SeqCst), before + k as usize);
    });
    assert_eq!(FOREIGN_FAULTS.load(SeqCst), 0);

    // 4. The host's SIGUSR1 handler, delivered while this thread runs a
    // guest, faults in host code.
    // SAFETY: a zeroed sigaction is valid to fill in; `host_usr1` has the
    // plain handler signature (no SA_SIGINFO).
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = host_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
            0
        );
    }
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let done = AtomicBool::new(false);
    let host_before = HOST_FAULTS.load(SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    let runs = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut sent = 0;
            while !done.load(SeqCst) {
                if IN_GUEST.load(SeqCst) {
                    // SAFETY: `me` is the test thread, alive until `done`
                    // is set (it joins this thread before returning).
                    assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGUSR1) }, 0);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        });
        let mut runs = 0;
        while USR1_IN_GUEST.load(SeqCst) < 50 && Instant::now() < deadline {
            IN_GUEST.store(true, SeqCst);
            long.run(&mut lvm);
            IN_GUEST.store(false, SeqCst);
            runs += 1;
        }
        done.store(true, SeqCst);
        let sent = sender.join().unwrap();
        assert!(sent > 0);
        runs
    });
    let usr1 = USR1.load(SeqCst);
    eprintln!(
        "SIGUSR1: {usr1} delivered ({} while the guest ran, {runs} runs), each faulting in host code",
        USR1_IN_GUEST.load(SeqCst)
    );
    assert!(
        USR1_IN_GUEST.load(SeqCst) >= 50,
        "too few SIGUSR1 arrived while the guest ran"
    );
    assert_eq!(HOST_FAULTS.load(SeqCst), host_before + usr1);
    assert_eq!(FOREIGN_FAULTS.load(SeqCst), 0);

    // The guest side still works after all that.
    vm.set_pc(0);
    vm.set_reg(8, 0x7000_0000);
    assert_eq!(vm.run(), Ok(Exit::PageFault(0x7000_0000)));
    drop(vm);
    drop(lvm);
    // SAFETY: unmaps the region mapped above; nothing uses it any more.
    unsafe {
        libc::munmap(base, REGION_PAGES * PAGE);
    }
}
