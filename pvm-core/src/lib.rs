//! `pvm-core`: the Polkadot Virtual Machine of the JAM Gray Paper, `no_std`.
//!
//! Profiles: GP 0.8.0 (default) and GP 0.7.2 ([`Profile`]). The pieces:
//! - [`isa`]: the one instruction table and everything generated from it;
//! - [`codec`]: argument decoding and canonical encoding;
//! - [`program`]: blobs, validation, the pre-decoded [`Program`];
//! - [`memory`]: the [`Memory`] trait and a sparse [`PagedMemory`];
//! - [`interp`]: the interpreter [`Vm`], whose `run` returns an [`Exit`];
//! - [`gas`]: block cost models;
//! - [`standard`]: standard programs (the GP's Y) and JAM code blobs;
//! - [`host`]: the host-call loop (the GP's Ψ_H);
//! - [`asm`]: the disassembler and assembler text format.
#![no_std]

extern crate alloc;

pub mod asm;
pub mod codec;
pub mod error;
pub mod gas;
pub mod host;
pub mod interp;
pub mod isa;
pub mod memory;
pub mod program;
pub mod standard;

pub use error::Error;
pub use gas::GasModel;
pub use host::{run_with_host, Host, HostAction};
pub use interp::{Cursor, Exit, NoTracer, Tracer, Vm, HALT_ADDRESS};
pub use isa::{Instruction, Opcode, Profile, Reg};
pub use memory::{Access, FlatMemory, Memory, PagedMemory, Trap, PAGE_SIZE};
pub use program::{Blob, Program, Transfer, WalkVisitor};
pub use standard::{JamBlob, StandardProgram};
