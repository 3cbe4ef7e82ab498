//! `pvm-jit`: an x86-64 recompiler backend for `pvm-core` programs.
//!
//! [`JitInstance::new`] compiles a whole [`Program`](pvm_core::Program) in one
//! linear pass into native code and reserves a 4 GiB guest memory window;
//! [`JitInstance::run`] runs it and returns the same [`Exit`](pvm_core::Exit)
//! values, with the same pc, registers, gas and memory, as the interpreter.
//!
//! The backend exists on Linux x86-64 with the `recompiler` feature (on by
//! default). This is the one place that knows: [`is_supported`] says whether
//! it is there, and otherwise the same API compiles to a stub whose
//! constructor returns [`Error::Unsupported`](pvm_core::Error::Unsupported).
//! Call sites need no `cfg`.

/// Whether this build has the recompiler (Linux x86-64, feature
/// `recompiler`).
pub const fn is_supported() -> bool {
    cfg!(all(
        feature = "recompiler",
        target_arch = "x86_64",
        target_os = "linux"
    ))
}

/// Whether the recompiler can run here: it is built in ([`is_supported`])
/// and the CPU has the instructions its code uses (x86-64-v3's popcnt,
/// lzcnt, BMI1 and BMI2). Engines that pick a backend ask this.
pub fn is_available() -> bool {
    #[cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]
    return x64::cpu_has_features();
    #[cfg(not(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux")))]
    return false;
}

/// How the recompiler keeps guest loads and stores inside the pages the
/// guest may access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MemoryChecks {
    /// Page protection of the 4 GiB window and a SIGSEGV/SIGBUS handler
    /// that turns a native fault into the PVM's exit: no code per access.
    /// Out of gas is a trap too (SIGILL on the charge prologue's own
    /// bytes), handled by the same handler: no stub per gas block.
    /// Where the kernel lets user code set the GS segment base (Linux 5.9+
    /// on CPUs with FSGSBASE), guest code runs with GS at the window and
    /// each load or store is one instruction with 32-bit addressing, which
    /// is the PVM's wrap at 2^32; the host's GS base is restored on every
    /// exit. Elsewhere this is [`HardwareNoSegment`](Self::HardwareNoSegment).
    #[default]
    Hardware,
    /// Page protection as [`Hardware`](Self::Hardware), addressing guest
    /// memory through a base register only (the 32-bit address first, then
    /// the access: two instructions), never touching GS: for hosts whose
    /// threads use the GS base themselves.
    HardwareNoSegment,
    /// An explicit check of a per-page access table before every load and
    /// store, a stub per gas block for out of gas, and no signal handler:
    /// for hosts that cannot give up SIGSEGV, SIGBUS and SIGILL. Slower.
    Explicit,
}

/// Whether decoding and code generation may use more than one thread.
///
/// With `threads >= 2`, a program of at least `min_instructions`
/// instructions is cut into [`pieces`](Self::pieces) (code generation: at
/// gas blocks; decoding, with `pvm_std::jit::program_on`: after
/// terminators) that the calling thread and up to `threads - 1` helper
/// threads take in turn ([`run`](Self::run)), then joined. The result is
/// the same program and the same instructions; only where each piece's
/// out-of-line stubs lie differs. On DOOM (164,366 instructions), on two
/// cores, this takes decoding from about 2.9 to 2.1 ms and code generation
/// from about 3.6 to 2.3 ms (BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    /// Threads code generation may use (1: the calling thread only).
    pub threads: usize,
    /// Smaller programs are generated on the calling thread only (starting
    /// a thread costs more than it saves on them).
    pub min_instructions: usize,
}

impl Parallelism {
    /// The calling thread only (the default).
    pub const SERIAL: Parallelism = Parallelism {
        threads: 1,
        min_instructions: usize::MAX,
    };
    /// Two threads for programs of at least 16,384 instructions.
    pub const TWO_THREADS: Parallelism = Parallelism {
        threads: 2,
        min_instructions: 16_384,
    };
}

impl Parallelism {
    /// Pieces a big program's decoding or code generation is cut into when
    /// more than one thread may work on it: the threads take the next
    /// piece left until none is. A thread that starts late (a new thread
    /// can take a millisecond to be scheduled on the other core of a
    /// virtual machine) then takes fewer pieces instead of holding up the
    /// end.
    pub fn pieces(self) -> usize {
        if self.threads > 1 {
            2 * self.threads
        } else {
            1
        }
    }

    /// Runs every job once: on the calling thread, and with `threads >= 2`
    /// on up to `threads - 1` helper threads too (started on first use,
    /// then parked), each taking the next job not yet taken. Returns when
    /// all are done.
    pub fn run(self, jobs: &mut [&mut (dyn FnMut() + Send)]) {
        let helpers = self.threads.min(jobs.len()).saturating_sub(1);
        if helpers == 0 {
            for job in jobs.iter_mut() {
                job();
            }
            return;
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<&mut (dyn FnMut() + Send)>> = jobs
            .iter_mut()
            .map(|j| std::sync::Mutex::new(&mut **j))
            .collect();
        helpers::run(helpers, &|| loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(slot) = slots.get(k) else { break };
            if let Ok(mut job) = slot.lock() {
                job();
            }
        });
    }
}

impl Default for Parallelism {
    fn default() -> Self {
        Parallelism::SERIAL
    }
}

mod helpers;

#[cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]
mod x64;
#[cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]
pub use x64::{GuestMemory, JitInstance};

#[cfg(not(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux")))]
mod stub;
#[cfg(not(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux")))]
pub use stub::{GuestMemory, JitInstance};
