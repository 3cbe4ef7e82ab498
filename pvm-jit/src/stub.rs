//! The recompiler on targets other than Linux x86-64: the same API, and a
//! constructor that says it is not available. No value of the type can
//! exist, so the other methods are unreachable.

use core::convert::Infallible;
use pvm_core::interp::Heap;
use pvm_core::{Access, Error, Exit, Program};

/// The recompiler's guest memory (not available on this target).
#[derive(Debug)]
pub struct GuestMemory(Infallible);

impl pvm_core::Memory for GuestMemory {
    fn page_access(&self, _page: u32) -> Access {
        match self.0 {}
    }
    fn set_access(&mut self, _first: u32, _count: u32, _access: Access) {
        match self.0 {}
    }
    fn read(&mut self, _addr: u32, _buf: &mut [u8]) -> Result<(), pvm_core::Trap> {
        match self.0 {}
    }
    fn write(&mut self, _addr: u32, _data: &[u8]) -> Result<(), pvm_core::Trap> {
        match self.0 {}
    }
}

impl GuestMemory {
    pub fn poke(&mut self, _addr: u32, _data: &[u8]) -> bool {
        match self.0 {}
    }
    pub fn peek(&self, _addr: u32) -> u8 {
        match self.0 {}
    }
}

/// A compiled program with its guest memory (not available on this target).
#[derive(Debug)]
pub struct JitInstance(Infallible);

impl JitInstance {
    pub fn new(program: &Program) -> Result<Self, Error> {
        Self::with_checks(program, crate::MemoryChecks::Hardware)
    }
    pub fn with_checks(program: &Program, checks: crate::MemoryChecks) -> Result<Self, Error> {
        Self::from_program(program.clone(), checks)
    }
    pub fn from_program(program: Program, checks: crate::MemoryChecks) -> Result<Self, Error> {
        Self::from_program_on(program, checks, crate::Parallelism::SERIAL)
    }
    pub fn from_program_on(
        _program: Program,
        _checks: crate::MemoryChecks,
        _parallel: crate::Parallelism,
    ) -> Result<Self, Error> {
        Err(Error::Unsupported(
            "the recompiler is not built in (it needs Linux on x86-64 and the `recompiler` feature); use the interpreter",
        ))
    }
    pub fn from_blob(
        _blob: pvm_core::Blob,
        _profile: pvm_core::Profile,
        _model: &dyn pvm_core::GasModel,
        _checks: crate::MemoryChecks,
    ) -> Result<Self, Error> {
        Err(Error::Unsupported(
            "the recompiler is not built in (it needs Linux on x86-64 and the `recompiler` feature); use the interpreter",
        ))
    }
    pub fn from_blob_on(
        _blob: pvm_core::Blob,
        _profile: pvm_core::Profile,
        _model: &dyn pvm_core::GasModel,
        _checks: crate::MemoryChecks,
        _parallel: crate::Parallelism,
    ) -> Result<Self, Error> {
        Err(Error::Unsupported(
            "the recompiler is not built in (it needs Linux on x86-64 and the `recompiler` feature); use the interpreter",
        ))
    }
    pub fn compile_time(&self) -> std::time::Duration {
        match self.0 {}
    }
    pub fn code_size(&self) -> usize {
        match self.0 {}
    }
    pub fn code_parts(&self) -> usize {
        match self.0 {}
    }
    pub fn segment_addressing(&self) -> bool {
        match self.0 {}
    }
    pub fn program(&self) -> &Program {
        match self.0 {}
    }
    pub fn regs_mut(&mut self) -> &mut [u64; 13] {
        match self.0 {}
    }
    pub fn set_gas_charged(&mut self, _charged: bool) {
        match self.0 {}
    }
    pub fn memory(&self) -> &GuestMemory {
        match self.0 {}
    }
    pub fn memory_mut(&mut self) -> &mut GuestMemory {
        match self.0 {}
    }
    pub fn map(&mut self, _first_page: u32, _count: u32, _access: Access) {
        match self.0 {}
    }
    pub fn init_pages(&mut self, _first_page: u32, _access: &[Access], _data: &[u8]) {
        match self.0 {}
    }
    pub fn page_access(&self, _page: u32) -> Access {
        match self.0 {}
    }
    pub fn read(&self, _addr: u32, _buf: &mut [u8]) -> Result<(), pvm_core::Trap> {
        match self.0 {}
    }
    pub fn write(&mut self, _addr: u32, _data: &[u8]) -> Result<(), pvm_core::Trap> {
        match self.0 {}
    }
    pub fn poke(&mut self, _addr: u32, _data: &[u8]) -> bool {
        match self.0 {}
    }
    pub fn peek(&self, _addr: u32) -> u8 {
        match self.0 {}
    }
    pub fn regs(&self) -> &[u64; 13] {
        match self.0 {}
    }
    pub fn reg(&self, _r: usize) -> u64 {
        match self.0 {}
    }
    pub fn set_reg(&mut self, _r: usize, _v: u64) {
        match self.0 {}
    }
    pub fn pc(&self) -> u32 {
        match self.0 {}
    }
    pub fn set_pc(&mut self, _pc: u32) {
        match self.0 {}
    }
    pub fn gas(&self) -> u64 {
        match self.0 {}
    }
    pub fn set_gas(&mut self, _gas: u64) {
        match self.0 {}
    }
    pub fn gas_charged(&self) -> bool {
        match self.0 {}
    }
    pub fn set_heap(&mut self, _heap: Option<Heap>) {
        match self.0 {}
    }
    pub fn heap(&self) -> Option<Heap> {
        match self.0 {}
    }
    pub fn finish(&mut self) {
        match self.0 {}
    }
    pub fn is_finished(&self) -> bool {
        match self.0 {}
    }
    pub fn run(&mut self) -> Result<Exit, Error> {
        match self.0 {}
    }
}
