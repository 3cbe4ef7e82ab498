//! Turning native memory faults in guest code into PVM page faults.
//!
//! SAFETY ARGUMENT — the most dangerous code in the project; read it with the
//! code in `compile.rs`. (With `MemoryChecks::Explicit` none of this is used:
//! every access is checked against the access table before it is made, and
//! the handler is not installed.)
//!
//! Guest loads and stores are single x86 instructions addressing the base
//! of a reservation of 4 GiB plus a guard of at least 8 bytes (64 KiB), all
//! `PROT_NONE` except the pages the guest may access (mprotect'ed to the PVM
//! access), plus a zero-extended 32-bit address. Either the base is `r15`
//! and the offset `rax` (written by a 32-bit `lea`, which truncates) or a
//! constant below 2^31; or, with segment addressing, the base is the GS
//! segment base, which the entry trampoline sets to the window base (and
//! the exit path restores), and the access is `gs:[e(reg) + disp]` with
//! the address-size prefix, so the CPU itself sums `reg + disp` in 32 bits
//! and zero-extends it before adding the base. So a guest access either
//! touches an accessible page of its own window, or faults with SIGSEGV
//! inside that window; it can never touch memory outside the window. x86 faults are precise: the faulting
//! instruction has no effect (a page-crossing store commits nothing), and the
//! JIT writes no guest state in an instruction before its memory access, so
//! at the fault the guest state is exactly as before the instruction.
//!
//! The handler (installed once, process-wide) only acts when the faulting
//! `rip` lies inside the code of the instance that this thread is running
//! right now (a thread-local set by `JitInstance::run` just around the native
//! call, and cleared after). Then it stores the native offset of `rip` and the
//! fault address into that instance's context and rewrites the saved `rip`
//! to the fault stub, which returns from the native entry with the
//! page-fault exit code. The stack pointer inside guest code is the one the
//! entry set up (guest code never pushes), so the stub's epilogue is valid.
//! No Rust frame is skipped: the native call returns normally. Every other
//! fault (Rust code, another thread, no instance running) is passed to the
//! handler that was installed before ours, or to the default action.
//!
//! Out of gas is a fault too. Every charge prologue with hardware checks
//! is `sub qword [r15 + disp8], cost` followed by a `jb` back onto its own
//! displacement byte, 0xD4 (the context is laid out so that the gas is
//! there), which is no instruction in 64-bit mode: a charge that borrows
//! raises SIGILL with `rip` on that byte, having touched nothing but the
//! gas. The handler checks that `rip` is in the running instance's code
//! and holds that byte, records the offset the same way and resumes at the
//! out-of-gas stub; the run loop then finds the block that follows and
//! gives its cost back. Any other SIGILL is chained like any other fault.
//!
//! The handler only reads a thread-local `Cell` with a constant initialiser
//! (no lazy initialisation, no allocation) and writes two plain words through
//! the context pointer, which the running instance owns and does not touch
//! while native code runs: it is async-signal-safe.

use core::cell::Cell;
use std::sync::{Once, OnceLock};

/// What the current thread is running: `[code_start, code_end)` and the
/// context to report a fault into (null: nothing running).
#[derive(Clone, Copy)]
pub(super) struct Running {
    pub code_start: usize,
    pub code_end: usize,
    pub fault_stub: usize,
    /// Where a charge that trapped resumes.
    pub oog_stub: usize,
    pub fault_rip: *mut u64,
    pub fault_addr: *mut u64,
}

impl Running {
    pub const NONE: Running = Running {
        code_start: 0,
        code_end: 0,
        fault_stub: 0,
        oog_stub: 0,
        fault_rip: core::ptr::null_mut(),
        fault_addr: core::ptr::null_mut(),
    };
}

thread_local! {
    static CURRENT: Cell<Running> = const { Cell::new(Running::NONE) };
}

/// Sets (or with [`Running::NONE`] clears) what this thread runs.
pub(super) fn set_running(r: Running) {
    CURRENT.with(|c| c.set(r));
}

struct Prev(libc::sigaction);
// SAFETY: a `sigaction` is plain data (a function address, flags and a
// mask); it is written once, before any reader, through the `OnceLock`.
unsafe impl Sync for Prev {}
// SAFETY: as above, plain data.
unsafe impl Send for Prev {}

static PREV_SEGV: OnceLock<Prev> = OnceLock::new();
static PREV_BUS: OnceLock<Prev> = OnceLock::new();
static PREV_ILL: OnceLock<Prev> = OnceLock::new();
static INSTALL: Once = Once::new();

/// Installs the handler for SIGSEGV, SIGBUS and SIGILL once per process.
pub(super) fn install() -> Result<(), pvm_core::Error> {
    let mut ok = true;
    INSTALL.call_once(|| {
        for (sig, slot) in [
            (libc::SIGSEGV, &PREV_SEGV),
            (libc::SIGBUS, &PREV_BUS),
            (libc::SIGILL, &PREV_ILL),
        ] {
            // SAFETY: zeroed `sigaction` is a valid value to fill in; we pass
            // valid pointers to sigemptyset/sigaction, and the handler has
            // the SA_SIGINFO signature.
            unsafe {
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                // Block every other signal while the handler runs: it may
                // run on the thread's small alternate stack, which a host
                // signal arriving meanwhile would otherwise share and could
                // overflow (found by the sandbox tests: a guest fault, then
                // SIGUSR1, then SIGALRM, on Rust's 8 KiB alternate stack).
                // Faults stay deliverable for the handlers we chain to.
                libc::sigfillset(&mut sa.sa_mask);
                libc::sigdelset(&mut sa.sa_mask, libc::SIGSEGV);
                libc::sigdelset(&mut sa.sa_mask, libc::SIGBUS);
                libc::sigdelset(&mut sa.sa_mask, libc::SIGILL);
                let mut old: libc::sigaction = core::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut old) != 0 {
                    ok = false;
                }
                let _ = slot.set(Prev(old));
            }
        }
    });
    if ok && PREV_SEGV.get().is_some() {
        Ok(())
    } else {
        Err(pvm_core::Error::Unsupported(
            "cannot install the JIT's SIGSEGV/SIGBUS/SIGILL handler",
        ))
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let r = CURRENT.with(|c| c.get());
    if !r.fault_rip.is_null() {
        // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
        let ctx = unsafe { &mut *(uc as *mut libc::ucontext_t) };
        let rip = ctx.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
        let inside = rip >= r.code_start && rip < r.code_end;
        let charge = |rip: usize| {
            // SAFETY: only called with `rip` inside the running instance's
            // code, which stays mapped (readable) while it runs.
            let byte = unsafe { *(rip as *const u8) };
            byte == super::compile::GAS_BYTE
        };
        if inside && (sig != libc::SIGILL || charge(rip)) {
            // SAFETY: `info` is valid for SA_SIGINFO handlers; the context
            // pointers are live while `run` is in the native call (see the
            // module comment), and nothing else touches them meanwhile.
            unsafe {
                *r.fault_addr = (*info).si_addr() as u64;
                *r.fault_rip = (rip - r.code_start) as u64;
            }
            let resume = if sig == libc::SIGILL {
                r.oog_stub
            } else {
                r.fault_stub
            };
            ctx.uc_mcontext.gregs[libc::REG_RIP as usize] = resume as i64;
            return;
        }
    }
    chain(sig, info, uc);
}

/// Passes a fault that is not ours to the previous handler.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let prev = match sig {
        libc::SIGBUS => PREV_BUS.get(),
        libc::SIGILL => PREV_ILL.get(),
        _ => PREV_SEGV.get(),
    };
    let Some(Prev(prev)) = prev else {
        reset_default(sig);
        return;
    };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // Returning re-executes the faulting instruction, which now takes the
        // default action (terminates the process).
        reset_default(sig);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was registered with SA_SIGINFO, so it
        // has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { core::mem::transmute(prev.sa_sigaction) };
        f(sig, info, uc);
    } else {
        // SAFETY: without SA_SIGINFO the previous handler takes the signal
        // number only.
        let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(prev.sa_sigaction) };
        f(sig);
    }
}

fn reset_default(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; pointers are valid.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, core::ptr::null_mut());
    }
}
