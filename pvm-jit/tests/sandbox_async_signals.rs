//! Sandbox test: the host's asynchronous signal handlers keep being
//! delivered while guests run, and guests still compute exactly.
//!
//! The test installs SIGUSR1 and SIGALRM handlers, then runs guests on this
//! thread while another thread sends it SIGUSR1 (`pthread_kill`) every
//! ~100 µs and a POSIX timer sends it SIGALRM every 250 µs
//! (`timer_create` with `SIGEV_THREAD_ID`). The handlers count deliveries
//! that arrive while this thread is inside `JitInstance::run`, and clobber
//! integer and vector registers. The guests: a long arithmetic loop, a loop
//! over guest memory, and a guest that page-faults on every page it walks;
//! every exit, register, gas value and page must equal the interpreter's.
//!
//! Two tests: one with a roomy alternate signal stack on the guest thread,
//! one with the small one Rust gives every thread (a regression test, see
//! there). Signals are directed at one thread each and counted
//! per thread, so the two do not disturb each other. The signal handlers
//! are process-wide; only this file installs them. Linux x86-64 with the
//! `recompiler` feature only (elsewhere it compiles to nothing).
#![cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]

mod common;
use common::program;

use pvm_core::{Access, Error, Exit, Memory, PagedMemory, Program, Vm, PAGE_SIZE};
use pvm_jit::JitInstance;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

thread_local! {
    /// Whether this thread is inside `JitInstance::run`.
    static IN_GUEST: AtomicBool = const { AtomicBool::new(false) };
    /// Deliveries of SIGUSR1 and SIGALRM to this thread: all, and those
    /// that came while it ran a guest. (Thread-local: the signals are
    /// directed at one thread each, so the tests do not see each other's.)
    static USR1_TOTAL: AtomicUsize = const { AtomicUsize::new(0) };
    static USR1_IN_GUEST: AtomicUsize = const { AtomicUsize::new(0) };
    static ALRM_TOTAL: AtomicUsize = const { AtomicUsize::new(0) };
    static ALRM_IN_GUEST: AtomicUsize = const { AtomicUsize::new(0) };
}

fn count(c: &'static std::thread::LocalKey<AtomicUsize>) -> usize {
    c.with(|c| c.load(SeqCst))
}

extern "C" fn on_signal(sig: libc::c_int) {
    let (total, in_guest) = if sig == libc::SIGUSR1 {
        (&USR1_TOTAL, &USR1_IN_GUEST)
    } else {
        (&ALRM_TOTAL, &ALRM_IN_GUEST)
    };
    total.with(|c| c.fetch_add(1, SeqCst));
    if IN_GUEST.with(|g| g.load(SeqCst)) {
        in_guest.with(|c| c.fetch_add(1, SeqCst));
    }
    // Some work that uses general and vector registers (the kernel must
    // restore the interrupted guest's).
    let mut acc = [0u64; 8];
    for k in 0..64u64 {
        let i = (k % 8) as usize;
        acc[i] = black_box(acc[i].wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k);
    }
    let x = black_box([1.5f64, 2.5, 3.5, 4.5]);
    black_box((acc, x.map(|v| v.sqrt() * 3.0)));
}

fn install(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction is valid to fill in; `on_signal` has the
    // plain (non-SA_SIGINFO) handler signature.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, core::ptr::null_mut()), 0);
    }
}

/// Runs `vm` with the in-guest flag set.
fn run_flagged(vm: &mut JitInstance) -> Exit {
    IN_GUEST.with(|g| g.store(true, SeqCst));
    let e = vm.run();
    IN_GUEST.with(|g| g.store(false, SeqCst));
    e.unwrap()
}

/// A guest, its start state and what the interpreter ends with.
struct Case {
    p: Program,
    regs: [u64; 13],
    gas: u64,
    pages: Vec<u32>,
    want_exit: Exit,
    want: ([u64; 13], u64, u32),
    want_pages: Vec<Vec<u8>>,
}

impl Case {
    fn new(text: &str, regs: &[(usize, u64)], pages: &[u32]) -> Case {
        let p = program(text);
        let mut r = [0u64; 13];
        for &(k, v) in regs {
            r[k] = v;
        }
        let gas = 1 << 40;
        let mut vm = Vm::new(&p, PagedMemory::new(), 0, gas);
        *vm.regs_mut() = r;
        for &pg in pages {
            vm.memory_mut().set_access(pg, 1, Access::Write);
        }
        let want_exit = vm.run().unwrap();
        let want = (*vm.regs(), vm.gas(), vm.pc());
        let want_pages = pages
            .iter()
            .map(|&pg| {
                let mut b = vec![0u8; PAGE_SIZE as usize];
                vm.memory_mut().read(pg * PAGE_SIZE, &mut b).unwrap();
                b
            })
            .collect();
        Case {
            p,
            regs: r,
            gas,
            pages: pages.to_vec(),
            want_exit,
            want,
            want_pages,
        }
    }

    fn run_jit(&self) {
        let mut vm = JitInstance::new(&self.p).unwrap();
        for &pg in &self.pages {
            vm.map(pg, 1, Access::Write);
        }
        *vm.regs_mut() = self.regs;
        vm.set_gas(self.gas);
        assert_eq!(run_flagged(&mut vm), self.want_exit);
        assert_eq!((*vm.regs(), vm.gas(), vm.pc()), self.want);
        for (&pg, want) in self.pages.iter().zip(&self.want_pages) {
            let mut b = vec![0u8; PAGE_SIZE as usize];
            vm.read(pg * PAGE_SIZE, &mut b).unwrap();
            assert!(b == *want, "page {pg:#x} differs from the interpreter's");
        }
    }
}

/// A guest that faults on every page it walks, run in lockstep with the
/// interpreter for `n` faults.
fn faulting_walk(n: u32) {
    let p = program(
        "loop:\nstore_ind_u64 r7, r8, 0\nload_ind_u64 r9, r8, 0\nadd_imm_64 r8, r8, 0x1008\nadd_imm_64 r10, r10, 1\njump loop\n",
    );
    let mut vm = JitInstance::new(&p).unwrap();
    let mut interp = Vm::new(&p, PagedMemory::new(), 0, 1 << 40);
    vm.set_gas(1 << 40);
    for (r, v) in [(7, 0x1234_5678_9ABC_DEF0), (8, 0x5000_0000)] {
        vm.set_reg(r, v);
        interp.set_reg(r, v);
    }
    for k in 0..n {
        let e = run_flagged(&mut vm);
        assert!(matches!(e, Exit::PageFault(_)), "fault {k}: {e:?}");
        assert_eq!(interp.run(), Ok(e), "fault {k}");
        assert_eq!(vm.regs(), interp.regs(), "fault {k}");
        assert_eq!((vm.pc(), vm.gas()), (interp.pc(), interp.gas()));
        let Exit::PageFault(a) = e else {
            unreachable!()
        };
        vm.map(a / PAGE_SIZE, 1, Access::Write);
        interp
            .memory_mut()
            .set_access(a / PAGE_SIZE, 1, Access::Write);
    }
}

/// An alternate signal stack for the current thread, replacing the one it
/// had (Rust gives every thread a small one) until dropped.
struct AltStack {
    mem: *mut libc::c_void,
    size: usize,
    old: libc::stack_t,
}

impl AltStack {
    fn install(size: usize) -> AltStack {
        // SAFETY: a fresh anonymous private mapping; nothing else uses it.
        let mem = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED);
        let new = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `new` describes memory we own for as long as it is
        // installed (until `drop` puts the old one back); `old` is a valid
        // out-parameter. We are not running on an alternate stack now.
        let old = unsafe {
            let mut old: libc::stack_t = core::mem::zeroed();
            assert_eq!(libc::sigaltstack(&new, &mut old), 0);
            old
        };
        AltStack { mem, size, old }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: puts back the thread's previous alternate stack (still
        // allocated: it belongs to the thread), then unmaps ours, which is
        // no longer installed and not in use (no handler is running).
        unsafe {
            libc::sigaltstack(&self.old, core::ptr::null_mut());
            libc::munmap(self.mem, self.size);
        }
    }
}

/// Guests run under SIGUSR1 and SIGALRM with a roomy alternate signal stack
/// on the guest thread.
#[test]
fn host_signals_are_delivered_while_guests_run() {
    let _alt = AltStack::install(256 << 10);
    signals_while_guests_run();
}

/// The same with the alternate signal stack Rust gives each thread (8 KiB
/// here; SIGSTKSZ).
///
/// Regression: the JIT's SIGSEGV handler ran on the alternate stack
/// (SA_ONSTACK) with an empty `sa_mask`, so asynchronous signals arriving
/// while it handled a guest fault nested on that small stack (each frame is
/// ~3 KiB with AVX-512 state): a guest fault, a SIGUSR1 and a SIGALRM
/// overflowed 8 KiB and the kernel killed the process, within milliseconds.
/// The handler now blocks every signal but SIGSEGV and SIGBUS while it runs.
#[test]
fn regression_host_signals_during_a_guest_fault_overflowed_the_alternate_stack() {
    signals_while_guests_run();
}

fn signals_while_guests_run() {
    assert!(pvm_jit::is_supported());
    if !pvm_jit::is_available() {
        eprintln!("skipping: the recompiler cannot run on this CPU");
        return;
    }
    if let Err(Error::Unsupported(why)) = JitInstance::new(&program("trap\n")) {
        eprintln!("skipping: the JIT cannot run here: {why}");
        return;
    }
    install(libc::SIGUSR1);
    install(libc::SIGALRM);

    let long = Case::new(
        "loop:\nmul_64 r8, r8, r9\nadd_64 r8, r8, r7\nxor r10, r10, r8\nrot_r_64_imm r11, r10, 13\nadd_64 r12, r12, r11\nadd_imm_64 r7, r7, -1\nbranch_ne_imm r7, 0, loop\necalli 1\ntrap\n",
        &[(7, 1_000_000), (8, 0x0123_4567_89AB_CDEF), (9, 0x9E37_79B9_7F4A_7C15)],
        &[],
    );
    let memory = Case::new(
        "loop:\nand_imm r11, r7, 0x7FF8\nadd_64 r11, r11, r9\nload_ind_u64 r10, r11, 0\nadd_64 r10, r10, r7\nstore_ind_u64 r10, r11, 8\nadd_imm_64 r7, r7, -1\nbranch_ne_imm r7, 0, loop\necalli 2\ntrap\n",
        &[(7, 300_000), (9, 0x20000)],
        &(0x20..0x29).collect::<Vec<u32>>(),
    );

    // SIGALRM from a per-thread timer, SIGUSR1 from another thread.
    // SAFETY: gettid and pthread_self have no preconditions.
    let (tid, me) = unsafe { (libc::gettid(), libc::pthread_self()) };
    // SAFETY: a zeroed sigevent is valid to fill in; SIGEV_THREAD_ID with
    // this thread's id directs the timer's signal at this thread; `timer`
    // is a valid out-parameter.
    let timer = unsafe {
        let mut sev: libc::sigevent = core::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGALRM;
        sev.sigev_notify_thread_id = tid;
        let mut timer: libc::timer_t = core::mem::zeroed();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer),
            0
        );
        let period = libc::timespec {
            tv_sec: 0,
            tv_nsec: 250_000,
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        assert_eq!(
            libc::timer_settime(timer, 0, &spec, core::ptr::null_mut()),
            0
        );
        timer
    };
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    let enough = || count(&USR1_IN_GUEST) >= 200 && count(&ALRM_IN_GUEST) >= 200;
    let (rounds, sent) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut sent = 0u64;
            while !done.load(SeqCst) {
                // SAFETY: `me` is the test thread, which joins this one
                // before it returns.
                assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGUSR1) }, 0);
                sent += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            sent
        });
        let mut rounds = 0;
        while !enough() && Instant::now() < deadline {
            long.run_jit();
            memory.run_jit();
            faulting_walk(100);
            rounds += 1;
        }
        // A few more rounds at least, so every guest ran under signals.
        for _ in 0..2 {
            long.run_jit();
            memory.run_jit();
            faulting_walk(100);
        }
        done.store(true, SeqCst);
        (rounds, sender.join().unwrap())
    });
    // SAFETY: `timer` was created above and is deleted once.
    unsafe {
        libc::timer_delete(timer);
    }
    eprintln!(
        "{rounds} rounds: SIGUSR1 {sent} sent, {} delivered, {} inside a guest; SIGALRM {} delivered, {} inside a guest",
        count(&USR1_TOTAL),
        count(&USR1_IN_GUEST),
        count(&ALRM_TOTAL),
        count(&ALRM_IN_GUEST),
    );
    assert!(
        enough(),
        "signals were not delivered while guests ran: SIGUSR1 {}, SIGALRM {}",
        count(&USR1_IN_GUEST),
        count(&ALRM_IN_GUEST)
    );
}
