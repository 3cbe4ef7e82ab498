//! `pvm-jit`: an x86-64 recompiler backend for `pvm-core` programs.
//!
//! [`JitInstance::new`] compiles a whole [`Program`](pvm_core::Program) in one
//! linear pass into native code and reserves a 4 GiB guest memory window;
//! [`JitInstance::run`] runs it and returns the same [`Exit`](pvm_core::Exit)
//! values, with the same pc, registers, gas and memory, as the interpreter.
//!
//! The backend exists on Linux x86-64 only. This is the one place that knows:
//! [`is_supported`] says whether it is there, and on other targets the same
//! API compiles to a stub whose constructor returns
//! [`Error::Unsupported`](pvm_core::Error::Unsupported). Call sites need no
//! `cfg`.

/// Whether this build has the recompiler (Linux x86-64).
pub const fn is_supported() -> bool {
    cfg!(all(target_arch = "x86_64", target_os = "linux"))
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use x64::{GuestMemory, JitInstance};

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod stub;
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub use stub::{GuestMemory, JitInstance};
