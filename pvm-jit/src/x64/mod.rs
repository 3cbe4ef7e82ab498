//! The recompiler on Linux x86-64: the instance, its guest memory window and
//! the run loop. Code generation is in `compile.rs`, fault handling (and the
//! safety argument for guest memory accesses) in `signal.rs`.

mod buffers;
mod compile;
mod enc;
mod signal;

use crate::MemoryChecks;
use pvm_core::interp::Heap;
use pvm_core::memory::lowest_bad;
use pvm_core::{Access, Cursor, Error, Exit, Instruction, Memory, Program, Trap, PAGE_SIZE};
use std::time::{Duration, Instant};

/// Exit codes the native code returns.
pub(crate) mod exit_kind {
    pub const HALT: u32 = 0;
    pub const PANIC: u32 = 1;
    pub const OUT_OF_GAS: u32 = 2;
    pub const PAGE_FAULT: u32 = 3;
    pub const HOST_CALL: u32 = 4;
    /// An explicit access check failed (`MemoryChecks::Explicit`).
    pub const ACCESS_FAULT: u32 = 5;
    /// A charge prologue borrowed and trapped (see `signal.rs`); the run
    /// loop finds the block and makes it an [`OUT_OF_GAS`] exit.
    pub const OUT_OF_GAS_TRAP: u32 = 6;
}

/// The state native code reads and writes, just below the guest window
/// (at `r15 - size_of::<Ctx>()`). The hottest fields, the registers and
/// the gas, come last so that their offsets fit in one byte; the gas sits
/// exactly 44 bytes below the window (unaligned, as two halves): the
/// displacement of every charge prologue is then the byte 0xD4, which is
/// no instruction in 64-bit mode, and a charge that borrows jumps back onto
/// it (see `compile.rs` and `signal.rs`).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Ctx {
    pub mem: *mut GuestMemory,
    pub fault_rip: u64,
    pub fault_addr: u64,
    pub jt_ptr: *const u64,
    pub exit_idx: u32,
    pub exit_arg: u32,
    pub regs: [u64; 13],
    _pad: u32,
    /// The gas left, low half first (see [`Ctx::gas`]).
    gas: [u32; 2],
    _pad2: u32,
    /// Scratch for the code generator.
    pub tmp: u64,
    pub jt_len: u64,
    /// The host's GS base while guest code runs with GS at the window.
    pub saved_gs: u64,
    _reserved: u64,
}

impl Ctx {
    pub fn gas(&self) -> u64 {
        u64::from(self.gas[0]) | u64::from(self.gas[1]) << 32
    }
    pub fn set_gas(&mut self, gas: u64) {
        self.gas = [gas as u32, (gas >> 32) as u32];
    }
}

/// The read-write page in front of the guest window that holds the [`Ctx`].
const CTX_PAGE: usize = 4096;
/// The access table for explicit checks, in front of the context page: one
/// byte per guest page (0 inaccessible, 1 read-only, 2 read-write; always 0
/// below 0x10000).
const PERM_BYTES: usize = PAGES;
/// Offset of the access table from the window base.
pub(crate) const PERM_OFFSET: i32 = -((PERM_BYTES + CTX_PAGE) as i32);
/// Bytes in front of the window: the access table and the context page.
const FRONT: usize = PERM_BYTES + CTX_PAGE;
const _: () = assert!(core::mem::size_of::<Ctx>() <= CTX_PAGE);

/// Bytes reserved for the guest window: 4 GiB plus a guard that any access
/// of up to 8 bytes starting below 4 GiB ends inside.
const WINDOW: usize = (1 << 32) + (1 << 16);
const PAGES: usize = 1 << 20;
/// Pages below 0x10000 stay inaccessible natively, whatever is mapped there.
const LOW_PAGES: u32 = 16;

/// The guest's 4 GiB address space: a `PROT_NONE` reservation whose pages
/// are opened with `mprotect` as the guest maps them, plus the page table the
/// PVM rules are checked against. The reservation starts with the access
/// table of explicit checks and one page holding the instance's context,
/// both read-write, right below the window.
#[derive(Debug)]
pub struct GuestMemory {
    /// Start of the reservation (the access table).
    start: *mut u8,
    /// Start of the guest window: `start + FRONT`.
    base: *mut u8,
    access: Vec<Access>,
    heap: Option<Heap>,
}

// SAFETY: the memory is owned by this value alone (the mapping is private
// and unmapped on drop); moving it to another thread moves that ownership.
unsafe impl Send for GuestMemory {}

impl GuestMemory {
    fn new() -> Result<GuestMemory, Error> {
        // SAFETY: an anonymous private PROT_NONE reservation; no existing
        // memory is touched. MAP_NORESERVE: nothing is committed until the
        // guest writes.
        let start = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                FRONT + WINDOW,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(Error::Unsupported(
                "cannot reserve the 4 GiB guest memory window",
            ));
        }
        let start: *mut u8 = start.cast();
        // From here on `Drop` unmaps the reservation.
        let mem = GuestMemory {
            start,
            // SAFETY: FRONT is inside the reservation.
            base: unsafe { start.add(FRONT) },
            access: vec![Access::None; PAGES],
            heap: None,
        };
        // SAFETY: the front of our own reservation.
        let rc = unsafe { libc::mprotect(start.cast(), FRONT, libc::PROT_READ | libc::PROT_WRITE) };
        if rc != 0 {
            return Err(Error::Unsupported("cannot map the JIT context page"));
        }
        // SAFETY: the context's place is inside the read-write page, aligned
        // (the page is, and the size is a multiple of 8), and not yet in use.
        unsafe {
            mem.ctx_ptr().write(Ctx {
                mem: core::ptr::null_mut(),
                fault_rip: 0,
                fault_addr: 0,
                jt_ptr: core::ptr::null(),
                jt_len: 0,
                exit_idx: 0,
                exit_arg: 0,
                tmp: 0,
                saved_gs: 0,
                regs: [0; 13],
                _pad: 0,
                gas: [0; 2],
                _pad2: 0,
                _reserved: 0,
            });
        }
        Ok(mem)
    }

    /// The context, right below the window.
    fn ctx_ptr(&self) -> *mut Ctx {
        // SAFETY: `base - size_of::<Ctx>()` is inside the context page.
        unsafe { self.base.sub(core::mem::size_of::<Ctx>()).cast() }
    }

    fn ctx(&self) -> &Ctx {
        // SAFETY: initialised in `new`, lives as long as `self`; native code
        // only runs inside `JitInstance::run`, which holds `&mut self`.
        unsafe { &*self.ctx_ptr() }
    }

    fn ctx_mut(&mut self) -> &mut Ctx {
        // SAFETY: as in `ctx`, and `&mut self` makes this the only access.
        unsafe { &mut *self.ctx_ptr() }
    }

    fn prot(access: Access) -> libc::c_int {
        match access {
            Access::None => libc::PROT_NONE,
            Access::Read => libc::PROT_READ,
            Access::Write => libc::PROT_READ | libc::PROT_WRITE,
        }
    }

    /// Sets the native protection of pages `[first, first + count)` (all
    /// below 2^20).
    fn protect(&self, first: u32, count: u32, prot: libc::c_int) {
        if count == 0 {
            return;
        }
        // SAFETY: the range lies inside our own reservation (pages < 2^20).
        let rc = unsafe {
            libc::mprotect(
                self.base.add(first as usize * PAGE_SIZE as usize).cast(),
                count as usize * PAGE_SIZE as usize,
                prot,
            )
        };
        assert_eq!(rc, 0, "mprotect of the guest window failed");
    }

    fn set_access_impl(&mut self, first: u32, count: u32, access: Access) {
        let end = first.saturating_add(count).min(PAGES as u32);
        if first >= end {
            return;
        }
        let code = match access {
            Access::None => 0u8,
            Access::Read => 1,
            Access::Write => 2,
        };
        for p in first..end {
            self.access[p as usize] = access;
            if p >= LOW_PAGES {
                // SAFETY: byte `p` < 2^20 of the read-write access table at
                // the start of our reservation; no guest code runs meanwhile.
                unsafe {
                    let slot = self.start.add(p as usize);
                    // Only writes commit memory: skip unchanged entries.
                    if *slot != code {
                        *slot = code;
                    }
                }
            }
        }
        if access == Access::None {
            // Dropped pages read as zero when mapped again.
            // SAFETY: inside our reservation; MADV_DONTNEED on private
            // anonymous memory only discards its contents.
            unsafe {
                libc::madvise(
                    self.base.add(first as usize * PAGE_SIZE as usize).cast(),
                    (end - first) as usize * PAGE_SIZE as usize,
                    libc::MADV_DONTNEED,
                );
            }
        }
        let lo = first.max(LOW_PAGES);
        if lo < end {
            self.protect(lo, end - lo, Self::prot(access));
        }
    }

    /// Maps pages `first, first + 1, …` with `access[k]` and fills them
    /// with `data` (`access.len()` whole pages; pages past 2^20 are
    /// ignored).
    fn init_pages(&mut self, first: u32, access: &[Access], data: &[u8]) {
        let n = (access.len() as u32).min((PAGES as u32).saturating_sub(first));
        let page = PAGE_SIZE as usize;
        self.set_access_impl(first, n, Access::Write);
        if first < LOW_PAGES {
            // Natively closed pages: copy through `with_page`.
            for k in 0..n {
                let bytes = &data[k as usize * page..(k as usize + 1) * page];
                if !is_zero(bytes) {
                    self.with_page(first + k, |b| b.copy_from_slice(bytes));
                }
            }
        } else {
            for k in 0..n as usize {
                let bytes = &data[k * page..(k + 1) * page];
                // Zero pages are left alone: they read as zero uncommitted.
                if !is_zero(bytes) {
                    // SAFETY: the page is inside our reservation and was just
                    // made read-write; no guest code runs meanwhile.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            self.base.add((first as usize + k) * page),
                            page,
                        );
                    }
                }
            }
        }
        // Then the real access, one run of equal pages at a time.
        let mut k = 0u32;
        while k < n {
            let a = access[k as usize];
            let mut end = k + 1;
            while end < n && access[end as usize] == a {
                end += 1;
            }
            if a != Access::Write {
                self.set_access_impl(first + k, end - k, a);
            }
            k = end;
        }
    }

    /// Runs `f` on the bytes of page `page` with the page temporarily
    /// readable and writable, then restores its native protection.
    fn with_page<R>(&self, page: u32, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.protect(page, 1, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the page is inside our reservation and now read-write; no
        // guest code runs meanwhile (we hold the instance).
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                self.base.add(page as usize * PAGE_SIZE as usize),
                PAGE_SIZE as usize,
            )
        };
        let r = f(bytes);
        let native = if page < LOW_PAGES {
            Access::None
        } else {
            self.access[page as usize]
        };
        self.protect(page, 1, Self::prot(native));
        r
    }

    /// Writes without access checks into mapped pages; false if some byte
    /// fell on an unmapped page (it is skipped).
    pub fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        let mut all = true;
        let mut k = 0usize;
        while k < data.len() {
            let a = addr.wrapping_add(k as u32);
            let page = a / PAGE_SIZE;
            let off = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(data.len() - k);
            if self.access[page as usize] == Access::None {
                all = false;
            } else {
                self.with_page(page, |b| b[off..off + n].copy_from_slice(&data[k..k + n]));
            }
            k += n;
        }
        all
    }

    /// Reads a byte without access checks; 0 if unmapped.
    pub fn peek(&self, addr: u32) -> u8 {
        let page = addr / PAGE_SIZE;
        if self.access[page as usize] == Access::None {
            return 0;
        }
        let off = (addr % PAGE_SIZE) as usize;
        if page >= LOW_PAGES {
            // SAFETY: the page is mapped (readable) inside our reservation.
            unsafe { *self.base.add(addr as usize) }
        } else {
            self.with_page(page, |b| b[off])
        }
    }

    fn read_impl(&self, addr: u32, buf: &mut [u8]) -> Result<(), Trap> {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        if let Some(bad) = lowest_bad(addr, len, |p| self.access[p as usize] != Access::None) {
            return Err(Trap::at(bad));
        }
        // SAFETY: every byte is in a readable page at or above 0x10000
        // (checked above: the check fails on those below, so a range that
        // passes does not wrap past 2^32), so `addr..addr + len` is one run
        // inside our reservation, which `buf` (ours) does not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.add(addr as usize),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    fn write_impl(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if let Some(bad) = lowest_bad(addr, len, |p| self.access[p as usize] == Access::Write) {
            return Err(Trap::at(bad));
        }
        // SAFETY: every byte is in a writable page at or above 0x10000
        // (checked above: the check fails on those below, so a range that
        // passes does not wrap past 2^32), so `addr..addr + len` is one run
        // inside our reservation, which `data` (the caller's) does not
        // overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(addr as usize), data.len())
        };
        Ok(())
    }
}

impl Memory for GuestMemory {
    fn page_access(&self, page: u32) -> Access {
        self.access
            .get(page as usize)
            .copied()
            .unwrap_or(Access::None)
    }
    fn set_access(&mut self, first: u32, count: u32, access: Access) {
        self.set_access_impl(first, count, access);
    }
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), Trap> {
        self.read_impl(addr, buf)
    }
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap> {
        self.write_impl(addr, data)
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the reservation made in `new`; nothing
        // refers to it any more.
        unsafe {
            libc::munmap(self.start.cast(), FRONT + WINDOW);
        }
    }
}

/// GP 0.7.2 `sbrk`, called from native code: the same rule as the
/// interpreter's (grow the heap, make new whole pages writable).
extern "sysv64" fn sbrk_helper(ctx: *mut Ctx, size: u64) -> u64 {
    // SAFETY: native code passes the context `run` handed it, whose `mem`
    // points to the instance's live memory; `run` does not touch either
    // while native code runs.
    let mem = unsafe { &mut *(*ctx).mem };
    let Some(h) = mem.heap.as_mut() else { return 0 };
    if size == 0 {
        return u64::from(h.top);
    }
    let old = h.top;
    let new = match u64::from(old).checked_add(size) {
        Some(new) if new <= u64::from(h.limit) => new,
        _ => return 0,
    };
    h.top = new as u32;
    let first_page = old.div_ceil(PAGE_SIZE);
    let end_page = (new as u32).div_ceil(PAGE_SIZE);
    if end_page > first_page {
        mem.set_access_impl(first_page, end_page - first_page, Access::Write);
    }
    u64::from(old)
}

/// Whether every byte of `bytes` is zero (eight at a time).
fn is_zero(bytes: &[u8]) -> bool {
    // An OR over each 64 bytes (vector instructions), then one test.
    bytes
        .chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Whether the CPU has what generated code uses beyond x86-64's baseline.
/// Whether user code may read and write the GS base (`rdgsbase`,
/// `wrgsbase`): the CPU has FSGSBASE and the kernel enabled it (Linux 5.9+
/// says so in `AT_HWCAP2`).
pub(crate) fn segment_base_available() -> bool {
    /// `HWCAP2_FSGSBASE` of Linux's x86 `AT_HWCAP2`.
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval reads the process's auxiliary vector; no pointers.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    hwcap2 & HWCAP2_FSGSBASE != 0
}

pub(crate) fn cpu_has_features() -> bool {
    std::is_x86_feature_detected!("popcnt")
        && std::is_x86_feature_detected!("lzcnt")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
}

type Entry = unsafe extern "sysv64" fn(*mut u8, *const u8) -> u32;

/// A program compiled to native code, with its registers, gas, pc and guest
/// memory: the recompiler's counterpart of `pvm_core::Vm`.
pub struct JitInstance {
    program: Program,
    code: compile::Code,
    jump_table: Vec<u64>,
    mem: Box<GuestMemory>,
    cur: Cursor,
    compile_time: Duration,
    addressing: compile::Addressing,
}

impl core::fmt::Debug for JitInstance {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JitInstance")
            .field("pc", &self.cur.pc())
            .field("gas", &self.mem.ctx().gas())
            .field("regs", &self.mem.ctx().regs)
            .field("code_bytes", &self.code.len)
            .finish()
    }
}

impl JitInstance {
    /// Compiles `program` (one linear pass) and reserves its guest memory:
    /// every page inaccessible, registers zero, pc 0, gas 0.
    pub fn new(program: &Program) -> Result<Self, Error> {
        Self::with_checks(program, MemoryChecks::Hardware)
    }

    /// As [`new`](Self::new), keeping guest accesses inside the guest's
    /// pages as `checks` says.
    pub fn with_checks(program: &Program, checks: MemoryChecks) -> Result<Self, Error> {
        Self::from_program(program.clone(), checks)
    }

    /// As [`with_checks`](Self::with_checks), taking the program (no copy).
    pub fn from_program(program: Program, checks: MemoryChecks) -> Result<Self, Error> {
        Self::from_program_on(program, checks, crate::Parallelism::SERIAL)
    }

    /// As [`from_program`](Self::from_program), generating the code on up
    /// to `parallel.threads` threads (see [`Parallelism`](crate::Parallelism)).
    pub fn from_program_on(
        program: Program,
        checks: MemoryChecks,
        parallel: crate::Parallelism,
    ) -> Result<Self, Error> {
        let addressing = Self::addressing(checks)?;
        let t0 = Instant::now();
        let code = compile::compile(
            &program,
            sbrk_helper as *const () as usize,
            addressing,
            parallel,
        )?;
        Self::assemble(program, code, t0.elapsed(), addressing)
    }

    /// Decodes and validates `blob` as
    /// [`Program::with_gas_model`] does (under `profile`, with `model`'s
    /// costs) and generates its code in the same pass, then reserves its
    /// guest memory as [`new`](Self::new) does. The same program, errors
    /// and behaviour as decoding first and calling
    /// [`from_program`](Self::from_program), in less time: no instruction
    /// is dispatched on twice. [`compile_time`](Self::compile_time) then
    /// includes the decoding.
    pub fn from_blob(
        blob: pvm_core::Blob,
        profile: pvm_core::Profile,
        model: &dyn pvm_core::GasModel,
        checks: MemoryChecks,
    ) -> Result<Self, Error> {
        Self::from_blob_on(blob, profile, model, checks, crate::Parallelism::SERIAL)
    }

    /// As [`from_blob`](Self::from_blob), decoding and generating a GP 0.8
    /// program of at least `parallel.min_instructions` instructions in
    /// pieces (cut after terminators) on up to `parallel.threads` threads
    /// (see [`Parallelism`](crate::Parallelism) and
    /// [`Program::with_gas_model_split`]). The same program and errors.
    pub fn from_blob_on(
        blob: pvm_core::Blob,
        profile: pvm_core::Profile,
        model: &dyn pvm_core::GasModel,
        checks: MemoryChecks,
        parallel: crate::Parallelism,
    ) -> Result<Self, Error> {
        let addressing = Self::addressing(checks)?;
        let t0 = Instant::now();
        let (program, code) = compile::compile_blob(
            blob,
            profile,
            model,
            sbrk_helper as *const () as usize,
            addressing,
            parallel,
        )?;
        Self::assemble(program, code, t0.elapsed(), addressing)
    }

    /// How generated code reaches guest memory under `checks`, once the
    /// CPU and the fault handler allow it.
    fn addressing(checks: MemoryChecks) -> Result<compile::Addressing, Error> {
        if !cpu_has_features() {
            return Err(Error::Unsupported(
                "the recompiler needs a CPU with popcnt, lzcnt, BMI1 and BMI2 (x86-64-v3)",
            ));
        }
        let addressing = match checks {
            MemoryChecks::Hardware if segment_base_available() => compile::Addressing::Segment,
            MemoryChecks::Hardware | MemoryChecks::HardwareNoSegment => compile::Addressing::Base,
            MemoryChecks::Explicit => compile::Addressing::Checked,
        };
        if addressing != compile::Addressing::Checked {
            signal::install()?;
        }
        Ok(addressing)
    }

    /// The instance of `program` compiled to `code`, with its guest memory
    /// reserved.
    fn assemble(
        program: Program,
        code: compile::Code,
        compile_time: Duration,
        addressing: compile::Addressing,
    ) -> Result<Self, Error> {
        let base = compile::addr(&code.buf, 0) as u64;
        let jump_table: Vec<u64> = code
            .jump_table
            .iter()
            .map(|&o| base + u64::from(o))
            .collect();
        let mut mem = Box::new(GuestMemory::new()?);
        mem.ctx_mut().jt_len = jump_table.len() as u64;
        Ok(JitInstance {
            program,
            code,
            jump_table,
            mem,
            cur: Cursor::new(0),
            compile_time,
            addressing,
        })
    }

    /// How long the native code generation took (with the decoding, for an
    /// instance made by [`from_blob`](Self::from_blob)).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
    /// Whether guest code addresses memory through the GS segment base
    /// (see [`MemoryChecks::Hardware`]).
    pub fn segment_addressing(&self) -> bool {
        self.addressing == compile::Addressing::Segment
    }
    /// How many pieces the code was generated in (1, or more under
    /// [`Parallelism`](crate::Parallelism) for a big program).
    pub fn code_parts(&self) -> usize {
        self.code.parts
    }
    /// Size of the generated code in bytes.
    pub fn code_size(&self) -> usize {
        self.code.len
    }
    /// The program this instance runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Sets the access of pages `[first_page, first_page + count)`, as
    /// [`Memory::set_access`].
    pub fn map(&mut self, first_page: u32, count: u32, access: Access) {
        self.mem.set_access_impl(first_page, count, access);
    }
    pub fn page_access(&self, page: u32) -> Access {
        self.mem.page_access(page)
    }
    /// Reads guest memory with the PVM's access rules.
    pub fn read(&self, addr: u32, buf: &mut [u8]) -> Result<(), Trap> {
        self.mem.read_impl(addr, buf)
    }
    /// Writes guest memory with the PVM's access rules.
    pub fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap> {
        self.mem.write_impl(addr, data)
    }
    /// Maps pages `first_page, first_page + 1, …` with `access[k]` and
    /// fills them with `data` (`access.len()` whole pages): a loader's bulk
    /// copy of an initial memory.
    ///
    /// # Panics
    /// If `data` is not `access.len()` pages long.
    pub fn init_pages(&mut self, first_page: u32, access: &[Access], data: &[u8]) {
        assert_eq!(
            data.len(),
            access.len() * PAGE_SIZE as usize,
            "init_pages: data must be whole pages, one per access entry"
        );
        self.mem.init_pages(first_page, access, data);
    }
    /// Writes into mapped pages ignoring read-only (test and loader setup).
    pub fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        self.mem.poke(addr, data)
    }
    /// Reads a byte ignoring access (0 if unmapped).
    pub fn peek(&self, addr: u32) -> u8 {
        self.mem.peek(addr)
    }
    /// The guest memory, as a [`Memory`].
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }
    /// The guest memory, as a [`Memory`].
    pub fn memory_mut(&mut self) -> &mut GuestMemory {
        &mut self.mem
    }
    pub fn regs(&self) -> &[u64; 13] {
        &self.mem.ctx().regs
    }
    pub fn regs_mut(&mut self) -> &mut [u64; 13] {
        &mut self.mem.ctx_mut().regs
    }
    pub fn reg(&self, r: usize) -> u64 {
        self.mem.ctx().regs[r]
    }
    pub fn set_reg(&mut self, r: usize, v: u64) {
        self.mem.ctx_mut().regs[r] = v;
    }
    pub fn pc(&self) -> u32 {
        self.cur.pc()
    }
    /// Moves execution to `pc`.
    pub fn set_pc(&mut self, pc: u32) {
        self.cur.set_pc(pc);
    }
    pub fn gas(&self) -> u64 {
        self.mem.ctx().gas()
    }
    pub fn set_gas(&mut self, gas: u64) {
        self.mem.ctx_mut().set_gas(gas);
    }
    /// Whether the current block's gas is already paid.
    pub fn gas_charged(&self) -> bool {
        self.cur.charged()
    }
    pub fn set_gas_charged(&mut self, charged: bool) {
        self.cur.set_charged(charged);
    }
    pub fn heap(&self) -> Option<Heap> {
        self.mem.heap
    }
    pub fn set_heap(&mut self, heap: Option<Heap>) {
        self.mem.heap = heap;
    }
    /// Marks the machine as stopped for good.
    pub fn finish(&mut self) {
        self.cur.finish();
    }
    pub fn is_finished(&self) -> bool {
        self.cur.is_finished()
    }

    /// Runs until an exit, with exactly the interpreter's semantics.
    pub fn run(&mut self) -> Result<Exit, Error> {
        let mut gas = self.mem.ctx().gas();
        let started = self.cur.start(&self.program, &mut gas);
        self.mem.ctx_mut().set_gas(gas);
        let i = match started? {
            Ok(i) => i,
            Err(exit) => return Ok(exit),
        };

        let buf = &self.code.buf;
        let code_start = compile::addr(buf, 0) as usize;
        let target = compile::addr(buf, self.code.starts[i]);
        let mem_base = self.mem.base;
        let jt_ptr = self.jump_table.as_ptr();
        let mem_ptr: *mut GuestMemory = &mut *self.mem;
        let ctx = self.mem.ctx_mut();
        ctx.jt_ptr = jt_ptr;
        ctx.mem = mem_ptr;
        let ctx: *mut Ctx = ctx;
        // SAFETY: fields of the live context (in the instance's reservation);
        // see signal.rs.
        let (fault_rip, fault_addr) =
            unsafe { (&raw mut (*ctx).fault_rip, &raw mut (*ctx).fault_addr) };
        signal::set_running(signal::Running {
            code_start,
            code_end: code_start + self.code.len,
            fault_stub: compile::addr(buf, self.code.fault_stub) as usize,
            oog_stub: compile::addr(buf, self.code.oog_stub) as usize,
            fault_rip,
            fault_addr,
        });
        // SAFETY: `entry` is the trampoline generated by `compile` with this
        // signature; the window base, and the context below it, are live for
        // the call and not otherwise accessed until it returns; `target` is
        // the body of a real instruction. The generated code only touches the
        // context, the guest window (faults there are handled, see signal.rs)
        // and the jump table, which `ctx.jt_ptr` points to.
        let kind = unsafe {
            let entry: Entry = core::mem::transmute(compile::addr(buf, self.code.entry));
            entry(mem_base, target)
        };
        signal::set_running(signal::Running::NONE);

        let kind = if kind == exit_kind::OUT_OF_GAS_TRAP {
            // A charge prologue borrowed and jumped onto its displacement
            // byte: the block it charges for starts at the first body after.
            let off = self.mem.ctx().fault_rip as u32;
            let idx = self.code.starts.partition_point(|&s| s <= off);
            let is_charge = |idx: usize| {
                idx < self.program.len()
                    && self.program.block_start(self.program.block_of(idx)) == idx
                    && self.code.byte(off as usize) == Some(compile::GAS_BYTE)
            };
            if !is_charge(idx) {
                return Err(Error::Unsupported(
                    "JIT: an invalid instruction outside a charge prologue",
                ));
            }
            self.mem.ctx_mut().exit_idx = idx as u32;
            exit_kind::OUT_OF_GAS
        } else {
            kind
        };
        if kind == exit_kind::OUT_OF_GAS {
            // The charge prologue took the block's cost and borrowed: give
            // it back (out-of-gas leaves gas unchanged).
            let idx = self.mem.ctx().exit_idx as usize;
            let cost = self.program.block_cost(self.program.block_of(idx));
            let ctx = self.mem.ctx_mut();
            ctx.set_gas(ctx.gas().wrapping_add(cost));
        }
        let ctx = self.mem.ctx();
        let (idx, exit) = match kind {
            exit_kind::HALT => (ctx.exit_idx as usize, Exit::Halt),
            exit_kind::PANIC => (ctx.exit_idx as usize, Exit::Panic),
            exit_kind::OUT_OF_GAS => (ctx.exit_idx as usize, Exit::OutOfGas),
            exit_kind::HOST_CALL => (ctx.exit_idx as usize, Exit::HostCall(ctx.exit_arg)),
            exit_kind::ACCESS_FAULT => {
                let idx = ctx.exit_idx as usize;
                (idx, self.fault_exit(idx))
            }
            exit_kind::PAGE_FAULT => {
                let off = ctx.fault_rip as u32;
                let idx = self.code.starts.partition_point(|&s| s <= off) - 1;
                (idx, self.fault_exit(idx))
            }
            other => panic!("JIT: unknown exit code {other}"),
        };
        self.cur.stop(&self.program, idx, &exit);
        Ok(exit)
    }

    /// The exit of instruction `idx`, whose access faulted natively: the
    /// PVM's page fault at the lowest inaccessible page, or its panic below
    /// 0x10000.
    fn fault_exit(&self, idx: usize) -> Exit {
        let ctx = self.mem.ctx();
        let pc = self.program.pc(idx);
        let (addr, len, write) = access_of(&self.program.instruction(idx), &ctx.regs)
            .unwrap_or_else(|| {
                panic!(
                    "JIT: native fault at {:#x} in instruction {idx} (pc {pc}), which does not access memory",
                    ctx.fault_addr
                )
            });
        let mem = &self.mem;
        let bad = lowest_bad(addr, len, |pg| {
            let a = mem.access[pg as usize];
            if write {
                a == Access::Write
            } else {
                a != Access::None
            }
        })
        .unwrap_or_else(|| panic!("JIT: native fault at pc {pc} but the access is allowed"));
        match Trap::at(bad) {
            Trap::Panic => Exit::Panic,
            Trap::Fault(a) => Exit::PageFault(a),
        }
    }
}

/// The guest memory access instruction `inst` makes with registers `regs`:
/// `(address, length, is_write)`.
fn access_of(inst: &Instruction, regs: &[u64; 13]) -> Option<(u32, u32, bool)> {
    use pvm_core::isa::sext;
    use Instruction as I;
    let ind = |b: pvm_core::Reg, imm: u32| regs[b.index()].wrapping_add(sext(imm)) as u32;
    Some(match inst {
        I::StoreImmU8(x) => (x.x, 1, true),
        I::StoreImmU16(x) => (x.x, 2, true),
        I::StoreImmU32(x) => (x.x, 4, true),
        I::StoreImmU64(x) => (x.x, 8, true),
        I::LoadU8(x) | I::LoadI8(x) => (x.imm, 1, false),
        I::LoadU16(x) | I::LoadI16(x) => (x.imm, 2, false),
        I::LoadU32(x) | I::LoadI32(x) => (x.imm, 4, false),
        I::LoadU64(x) => (x.imm, 8, false),
        I::StoreU8(x) => (x.imm, 1, true),
        I::StoreU16(x) => (x.imm, 2, true),
        I::StoreU32(x) => (x.imm, 4, true),
        I::StoreU64(x) => (x.imm, 8, true),
        I::StoreImmIndU8(x) => (ind(x.a, x.x), 1, true),
        I::StoreImmIndU16(x) => (ind(x.a, x.x), 2, true),
        I::StoreImmIndU32(x) => (ind(x.a, x.x), 4, true),
        I::StoreImmIndU64(x) => (ind(x.a, x.x), 8, true),
        I::StoreIndU8(x) => (ind(x.b, x.imm), 1, true),
        I::StoreIndU16(x) => (ind(x.b, x.imm), 2, true),
        I::StoreIndU32(x) => (ind(x.b, x.imm), 4, true),
        I::StoreIndU64(x) => (ind(x.b, x.imm), 8, true),
        I::LoadIndU8(x) | I::LoadIndI8(x) => (ind(x.b, x.imm), 1, false),
        I::LoadIndU16(x) | I::LoadIndI16(x) => (ind(x.b, x.imm), 2, false),
        I::LoadIndU32(x) | I::LoadIndI32(x) => (ind(x.b, x.imm), 4, false),
        I::LoadIndU64(x) => (ind(x.b, x.imm), 8, false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvm_core::Profile;

    fn program(text: &str, profile: Profile) -> Program {
        let bytes = pvm_core::asm::assemble(text, profile).unwrap();
        let mut p = Program::from_bytes(&bytes, profile).unwrap();
        p.set_gas_model(&pvm_core::gas::Naive).unwrap();
        p
    }

    /// Instances of `text` with `model`'s costs: compiled from the decoded
    /// program, and in the decoding pass.
    fn both_ways(text: &str, model: &dyn pvm_core::GasModel) -> [(Program, JitInstance); 2] {
        let bytes = pvm_core::asm::assemble(text, Profile::V0_8).unwrap();
        let p = Program::from_bytes_with_gas_model(&bytes, Profile::V0_8, model).unwrap();
        let blob = pvm_core::Blob::parse(&bytes).unwrap();
        let fused = JitInstance::from_blob(blob, Profile::V0_8, model, MemoryChecks::Hardware);
        let fused = fused.unwrap();
        [(p.clone(), JitInstance::new(&p).unwrap()), (p, fused)]
    }

    #[test]
    fn charges_trap_onto_their_displacement_with_hardware_checks_only() {
        // Blocks of costs 1..=3 and 200 (8- and 32-bit immediates), compiled
        // from the program and in the decoding pass, and with explicit
        // checks: with the signal handler, a charge ends in a `jb rel8`
        // back onto the byte 0xD4 (its displacement); without, in a
        // `jb rel32` to a stub.
        let text = format!(
            "jump a\na:\nfallthrough\nb:\nadd_64 r1, r1, r2\nfallthrough\n{}trap\n",
            "add_64 r1, r1, r2\n".repeat(199)
        );
        let [(p, a), (_, b)] = both_ways(&text, &pvm_core::gas::Naive);
        let checked = JitInstance::with_checks(&p, MemoryChecks::Explicit).unwrap();
        for (way, vm) in [a, b, checked].iter().enumerate() {
            for block in 0..p.block_count() {
                let start = vm.code.starts[p.block_start(block)] as usize;
                let byte = |k: usize| vm.code.byte(k).unwrap();
                if way < 2 {
                    assert_eq!(byte(start - 2), 0x72, "way {way}, block {block}");
                    let back = start as isize + isize::from(byte(start - 1) as i8);
                    assert_eq!(
                        byte(back as usize),
                        compile::GAS_BYTE,
                        "way {way}, block {block}"
                    );
                    // REX.W+B, then 81 /5 or 83 /5, ModRM, disp8.
                    assert_eq!(byte(back as usize - 3), 0x49);
                } else {
                    assert_eq!([byte(start - 6), byte(start - 5)], [0x0F, 0x82]);
                }
            }
        }
    }

    #[test]
    fn block_charges_of_every_encoding_run_out_exactly() {
        // The charge prologue has an 8-bit-immediate form (costs up to
        // 127), a 32-bit one and a 64-bit one (in the decoding pass: a
        // 32-bit placeholder, and the code generated again for a cost
        // that does not fit); each must stop with gas one short of the
        // block and pass with exactly enough.
        for len in [1usize, 126, 127, 128, 129, 300] {
            let mut text = alloc_text(len);
            text.push_str("trap\n");
            for way in 0..2 {
                let cost = both_ways(&text, &pvm_core::gas::Naive)[way].0.block_cost(1);
                assert_eq!(cost, len as u64 + 1);
                for (gas, expect) in [(cost, Exit::Panic), (cost - 1, Exit::OutOfGas)] {
                    let [(p, a), (_, b)] = both_ways(&text, &pvm_core::gas::Naive);
                    let mut vm = [a, b].into_iter().nth(way).unwrap();
                    // Entering block 1 (after the first `jump`) charges `cost`.
                    vm.set_gas(gas + p.block_cost(0));
                    assert_eq!(vm.run(), Ok(expect), "block of {len}, gas {gas}, way {way}");
                    let left = if expect == Exit::Panic { 0 } else { cost - 1 };
                    assert_eq!(vm.gas(), left, "block of {len}, gas {gas}, way {way}");
                }
            }
        }
        let mut text = alloc_text(1);
        text.push_str("trap\n");
        let p = program(&text, Profile::V0_8);
        for huge in [(1u64 << 31) - 1, 1 << 31, 3 << 30, 1 << 40] {
            let costs: Vec<_> = (0..p.block_count())
                .map(|b| (p.block_pc(b), if b == 1 { huge } else { 1 }))
                .collect();
            let model = pvm_core::gas::Table::new(costs);
            for (_, mut vm) in both_ways(&text, &model) {
                vm.set_gas(huge + 1);
                assert_eq!(vm.run(), Ok(Exit::Panic), "cost {huge}, gas {huge}");
                assert_eq!(vm.gas(), 0);
            }
            for (_, mut vm) in both_ways(&text, &model) {
                vm.set_gas(huge);
                assert_eq!(
                    vm.run(),
                    Ok(Exit::OutOfGas),
                    "cost {huge}, gas {}",
                    huge - 1
                );
                assert_eq!(vm.gas(), huge - 1);
            }
        }
    }

    /// `jump b` then a block of `len` instructions (`trap` to be added).
    fn alloc_text(len: usize) -> String {
        let mut text = String::from("jump b\nb:\n");
        for _ in 0..len {
            text.push_str("add_imm_64 r7, r7, 1\n");
        }
        text
    }

    #[test]
    fn host_call_and_halt() {
        let p = program("ecalli 3\nload_imm r7, 5\njump_ind r0, 0\n", Profile::V0_8);
        let mut vm = JitInstance::new(&p).unwrap();
        vm.set_gas(100);
        vm.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        assert_eq!(vm.run(), Ok(Exit::HostCall(3)));
        assert_eq!((vm.pc(), vm.gas()), (0, 97));
        assert_eq!(vm.run(), Ok(Exit::Halt));
        assert_eq!((vm.reg(7), vm.gas(), vm.pc()), (5, 97, 5));
        assert_eq!(vm.run(), Err(Error::Finished));
    }

    #[test]
    fn code_generated_in_two_parts_runs_across_them() {
        // Four blocks, each generated as its own part: jumps go both ways
        // between the parts, and the last part's out-of-gas and page-fault
        // exits are taken.
        let text = "load_imm r1, 3\njump loop\n\
                    loop:\nadd_imm_64 r1, r1, -1\nbranch_eq_imm r1, 0, done\njump loop\n\
                    done:\nload_imm r8, 0x20010\nstore_ind_u32 r1, r8, 0\njump_ind r0, 0\n";
        let p = program(text, Profile::V0_8);
        assert!(p.block_count() >= 4, "{} blocks", p.block_count());
        let two = crate::Parallelism {
            threads: 2,
            min_instructions: 0,
        };
        let serial = JitInstance::from_program_on(
            p.clone(),
            MemoryChecks::Hardware,
            crate::Parallelism::SERIAL,
        )
        .unwrap();
        assert_eq!(serial.code_parts(), 1);
        let mut vm = JitInstance::from_program_on(p.clone(), MemoryChecks::Hardware, two).unwrap();
        // Two threads cut the code into up to four pieces: one per block.
        assert_eq!(vm.code_parts(), 4);
        // Too little gas for the whole loop: out of gas inside it.
        vm.set_gas(10);
        vm.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        assert_eq!(vm.run(), Ok(Exit::OutOfGas));
        vm.set_gas(1000);
        // The store faults (page not mapped), then halts once it is.
        assert_eq!(vm.run(), Ok(Exit::PageFault(0x20000)));
        vm.map(0x20, 1, Access::Write);
        assert_eq!(vm.run(), Ok(Exit::Halt));
        let mut interp = pvm_core::Vm::new(&p, pvm_core::FlatMemory::new(), 0, 10);
        interp.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        assert_eq!(interp.run(), Ok(Exit::OutOfGas));
        interp.set_gas(1000);
        assert_eq!(interp.run(), Ok(Exit::PageFault(0x20000)));
        pvm_core::Memory::set_access(interp.memory_mut(), 0x20, 1, Access::Write);
        assert_eq!(interp.run(), Ok(Exit::Halt));
        assert_eq!(vm.regs(), interp.regs());
        assert_eq!((vm.gas(), vm.pc()), (interp.gas(), interp.pc()));
        let mut word = [0u8; 4];
        vm.read(0x20010, &mut word).unwrap();
        assert_eq!(word, [0; 4]);
    }

    #[test]
    fn page_fault_is_resumable() {
        let p = program("load_imm r8, 0x20010\nstore_ind_u32 r7, r8, 0\nload_ind_u32 r9, r8, 0\njump_ind r0, 0\n", Profile::V0_8);
        let mut vm = JitInstance::new(&p).unwrap();
        vm.set_gas(1000);
        vm.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        vm.set_reg(7, 0xDEAD_BEEF);
        assert_eq!(vm.run(), Ok(Exit::PageFault(0x20000)));
        assert_eq!((vm.pc(), vm.gas(), vm.reg(9)), (5, 996, 0));
        vm.map(0x20, 1, Access::Read);
        assert_eq!(vm.run(), Ok(Exit::PageFault(0x20000)));
        vm.map(0x20, 1, Access::Write);
        assert_eq!(vm.run(), Ok(Exit::Halt));
        assert_eq!((vm.reg(9), vm.gas()), (0xDEAD_BEEF, 996));
    }

    #[test]
    fn low_addresses_panic_and_oog_resumes() {
        let p = program(
            "load_imm r8, 0x100\nload_ind_u32 r9, r8, 0\ntrap\n",
            Profile::V0_8,
        );
        let mut vm = JitInstance::new(&p).unwrap();
        vm.set_gas(1000);
        vm.map(0, 1, Access::Write);
        assert_eq!(vm.run(), Ok(Exit::Panic));
        assert_eq!(vm.pc(), 4);

        let p = program(
            "load_imm r7, 1\njump next\nnext:\nload_imm r7, 2\nload_imm r8, 3\njump_ind r0, 0\n",
            Profile::V0_8,
        );
        let mut vm = JitInstance::new(&p).unwrap();
        vm.set_gas(4);
        vm.set_reg(0, u64::from(pvm_core::HALT_ADDRESS));
        assert_eq!(vm.run(), Ok(Exit::OutOfGas));
        assert_eq!((vm.pc(), vm.gas(), vm.reg(7), vm.reg(8)), (5, 2, 1, 0));
        vm.set_gas(3);
        assert_eq!(vm.run(), Ok(Exit::Halt));
        assert_eq!((vm.gas(), vm.reg(7), vm.reg(8)), (0, 2, 3));
    }
}
