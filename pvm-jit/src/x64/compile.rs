//! One linear pass to x86-64 code: from a [`Program`]'s instructions, or
//! from the blob as it is decoded ([`compile_blob`]).
//!
//! Machine state while guest code runs: `r15` = the base of the guest memory
//! window; the [`Ctx`] (gas, exit slots, the register file as seen from
//! Rust) sits just below it, at `r15 - size_of::<Ctx>()`, where no guest
//! address can reach (guest addresses are zero-extended 32-bit offsets
//! *above* `r15`). The thirteen guest registers live in the thirteen other
//! host registers but `rax` and `rsp` for the whole run ([`HOST`]); `rax` is
//! the one scratch register. The few operations that need more (division,
//! wide multiplication, rotation by a register) borrow `rcx` and `rdx`:
//! they save the guest registers kept there to their context slots and
//! reload them after. The entry trampoline loads the registers from the
//! context and the one epilogue every exit goes through stores them back,
//! so Rust always sees the registers in the context, and a fault needs no
//! spilling: the signal handler redirects `rip` to a stub that jumps to
//! that epilogue, with the registers exactly as they were before the
//! faulting instruction. The stack pointer does not move inside guest code
//! (the entry aligns it to 16 once).
//!
//! Memory accesses are single instructions on `[r15 + zero-extended 32-bit
//! address]` (the address first computed into `eax`), or, with
//! [`Addressing::Segment`], on `gs:[e(reg) + disp]`: GS holds the window
//! base while guest code runs and the address-size prefix makes the CPU
//! sum in 32 bits, so a load or store through a register is one
//! instruction. With hardware checks the window's page protection stops a bad
//! one (see `signal.rs`); with explicit checks ([`MemoryChecks::Explicit`](crate::MemoryChecks::Explicit))
//! each access is preceded by a look-up of the pages it touches in the access
//! table below the context (one byte per page) and leaves through a stub
//! before touching memory if one does not allow it.
//!
//! Layout, per instruction `i` in code order: if `i` starts a gas block, a
//! charge prologue (`gas -= cost`, out-of-gas if it would borrow: a trap
//! on the prologue's own bytes with hardware checks, see
//! [`Emitter::emit_charge`]), then the body (`starts[i]`). Static jumps go to the target's charge prologue,
//! exactly as the interpreter's terminators charge the block they enter;
//! they are emitted with an empty `rel32` and resolved once the program is
//! complete ([`Emitter::finish`]), as the charges' costs are filled in when
//! the code is generated in the decoding pass ([`compile_blob`]). A
//! `fallthrough`, and a branch not taken, emit nothing: the next
//! instruction's charge prologue follows. The Rust side enters at a body
//! after charging itself.
//! Out-of-line stubs (out-of-gas with explicit checks, panics, the shared
//! exits) come after the bodies (of the whole program, or of each piece
//! when pieces are generated at the same time, see [`compile`]) and
//! contain no guest memory access,
//! so a faulting native offset always falls inside the body of the
//! instruction that faulted. After a piece's last instruction comes a jump
//! to the next piece's first block (or, at the end of the code, a panic:
//! GP 0.8's `fallthrough` or branch at the end), never its stubs.

use super::buffers::{self, CodeBuf};
use super::enc::{self, Alu, Load, Shift};
use super::{exit_kind, Ctx, PERM_OFFSET};
use core::mem::{offset_of, size_of};
use dynasmrt::{dynasm, DynasmApi};
use pvm_core::isa::Instruction as I;
use pvm_core::program::INVALID_TARGET;
use pvm_core::{Error, Program};

/// The compiled code and what the runtime needs to find its way in it.
pub(super) struct Code {
    /// The mapping holding the code (perhaps longer than it: see
    /// `buffers.rs`); it goes back to the pool on drop.
    pub buf: buffers::ExecCode,
    /// Bytes of code at the start of `buf`.
    pub len: usize,
    /// Native offset of each instruction's body.
    pub starts: Vec<u32>,
    /// Native offset of the charge prologue of each jump-table entry (or of
    /// the invalid-entry stub).
    pub jump_table: Vec<u32>,
    /// Native offset of the entry trampoline.
    pub entry: u32,
    /// Native offset of the page-fault stub the signal handler resumes at.
    pub fault_stub: u32,
    /// Native offset of the stub it resumes at when a charge traps.
    pub oog_stub: u32,
    /// How many parts were generated separately and joined.
    pub parts: usize,
}

impl Code {
    /// The code byte at native offset `off`.
    pub fn byte(&self, off: usize) -> Option<u8> {
        if off < self.len {
            self.buf.byte(off)
        } else {
            None
        }
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        buffers::give_back_starts(core::mem::take(&mut self.starts));
    }
}

/// Offset of a context field from the window base (`r15`).
const fn ctx_off(field: usize) -> i32 {
    field as i32 - size_of::<Ctx>() as i32
}
const fn reg_off(r: u8) -> i32 {
    ctx_off(offset_of!(Ctx, regs) + 8 * r as usize)
}
const GAS: i32 = ctx_off(offset_of!(Ctx, gas));
/// The charge prologue's 8-bit displacement of the gas: `aam`, which is no
/// instruction in 64-bit mode (#UD). A charge that borrows jumps back onto
/// it, and the CPU raises SIGILL there (see `emit_charge`).
pub(super) const GAS_BYTE: u8 = 0xD4;
const _: () = assert!(GAS == GAS_BYTE as i8 as i32);
const EXIT_IDX: i32 = ctx_off(offset_of!(Ctx, exit_idx));
const EXIT_ARG: i32 = ctx_off(offset_of!(Ctx, exit_arg));
const JT_PTR: i32 = ctx_off(offset_of!(Ctx, jt_ptr));
const JT_LEN: i32 = ctx_off(offset_of!(Ctx, jt_len));
const TMP: i32 = ctx_off(offset_of!(Ctx, tmp));
const SAVED_GS: i32 = ctx_off(offset_of!(Ctx, saved_gs));
/// The context's address relative to the window base.
const CTX: i32 = ctx_off(0);

// Host register numbers (x86-64 encoding).
const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
/// The host register of each guest register: `rbx`, `rbp`, `rsi`, `rdi`,
/// `r8`–`r14`, then `rdx` and `rcx` (borrowed by a few operations).
const HOST: [u8; 13] = [3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, RDX, RCX];

/// The guest register kept in host register `h` (`rcx` or `rdx`).
fn guest_of(h: u8) -> u8 {
    HOST.iter().position(|&x| x == h).unwrap_or(0) as u8
}

/// [`HOST`] padded to 16 entries, so that [`host`] is one masked load
/// (guest register numbers are below 13; the padding repeats `rcx`).
const HOST16: [u8; 16] = {
    let mut t = [RCX; 16];
    let mut g = 0;
    while g < 13 {
        t[g] = HOST[g];
        g += 1;
    }
    t
};

/// The host register of guest register `g`.
#[cfg_attr(not(debug_assertions), inline(always))]
fn host(g: u8) -> u8 {
    HOST16[usize::from(g & 15)]
}

/// The binary operations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add32,
    Sub32,
    Mul32,
    DivU32,
    DivS32,
    RemU32,
    RemS32,
    Shl32,
    Shr32,
    Sar32,
    Add64,
    Sub64,
    Mul64,
    DivU64,
    DivS64,
    RemU64,
    RemS64,
    Shl64,
    Shr64,
    Sar64,
    And,
    Xor,
    Or,
    MulUpperSS,
    MulUpperUU,
    MulUpperSU,
    SetLtU,
    SetLtS,
    RotL64,
    RotL32,
    RotR64,
    RotR32,
    AndInv,
    OrInv,
    Xnor,
    Max,
    MaxU,
    Min,
    MinU,
}

impl Bin {
    /// Whether the operation borrows `rcx` and `rdx` (division, wide
    /// multiplication, rotation by a register).
    fn borrows(self) -> bool {
        use Bin::*;
        matches!(
            self,
            DivU32
                | DivS32
                | RemU32
                | RemS32
                | DivU64
                | DivS64
                | RemU64
                | RemS64
                | MulUpperSS
                | MulUpperUU
                | MulUpperSU
                | RotL64
                | RotL32
                | RotR64
                | RotR32
        )
    }
}

/// An operand: a guest register or a (sign-extended) immediate.
#[derive(Clone, Copy)]
enum Src {
    R(u8),
    Imm(u32),
}

/// A guest address: in `eax`, or a constant below 2^31 (a displacement).
#[derive(Clone, Copy)]
enum Addr {
    Rax,
    Abs(i32),
}

/// How generated code reaches guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Addressing {
    /// GS = the window base while guest code runs; `reg + disp` accesses
    /// are `gs:[e(reg) + disp]`, one instruction: the address-size prefix
    /// makes the sum 32 bits (the PVM's wrap) before the base is added.
    Segment,
    /// `lea eax, [reg + disp]`, then `[r15 + rax]`.
    Base,
    /// As `Base`, after an explicit look-up of the access table.
    Checked,
}

type Assembler = CodeBuf;

/// A jump target in the code being generated: an index into
/// [`Emitter::labels`] (the shared exits first, then a part's own
/// labels), or, with [`BLOCK`] set, a gas block's charge prologue (an
/// index into the blocks' offsets). (Our own, rather than `dynasmrt`'s
/// dynamic labels: a label is 4 bytes and a reference 8, which keeps
/// compile time and memory down.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Label(u32);

/// A label not bound yet.
const UNBOUND: u32 = u32::MAX;

/// x86 condition codes: the low nibble of `jcc rel32`'s second opcode byte.
mod cc {
    pub const B: u8 = 0x2;
    pub const AE: u8 = 0x3;
    pub const E: u8 = 0x4;
    pub const NE: u8 = 0x5;
    pub const BE: u8 = 0x6;
    pub const A: u8 = 0x7;
    pub const L: u8 = 0xC;
    pub const GE: u8 = 0xD;
    pub const LE: u8 = 0xE;
    pub const G: u8 = 0xF;
}

struct Emitter<'p> {
    a: Assembler,
    /// With a finished program, block costs are known as the code is
    /// generated (exact charge forms); without (generating while the blob
    /// is decoded), each charge is a 32-bit placeholder filled in by
    /// [`Emitter::finish`].
    costs: Option<&'p Program>,
    /// The address of the `sbrk` helper.
    sbrk: usize,
    /// The native offset of each gas block's charge prologue bound here,
    /// from block `first_block` on (known once the program is, see
    /// `finish`).
    blocks: Vec<u32>,
    first_block: usize,
    /// The index of the first instruction this emitter generates.
    first_idx: usize,
    /// Whether it holds the entry trampoline (at offset 0).
    has_entry: bool,
    /// Where each label (the shared ones, then this part's own) is bound (a
    /// native offset), or [`UNBOUND`].
    labels: Vec<u32>,
    /// The `rel32` fields to fill in once every label is bound: offset of
    /// the field, label.
    fixups: Vec<(u32, u32)>,
    /// Static jumps, branches and `load_imm_jump`s, resolved once the
    /// program is complete: offset of the `rel32` field, instruction index
    /// (with [`JCC`] for a conditional branch), target code offset.
    deferred: Vec<(u32, u32, u32)>,
    /// Native offset of each instruction's body.
    starts: Vec<u32>,
    /// Out-of-gas stubs: label, instruction (the first of the block).
    oog_stubs: Vec<(u32, u32)>,
    /// Panic stubs: label, instruction.
    panic_stubs: Vec<(Label, u32)>,
    /// How guest memory is addressed (and whether accesses are checked).
    addressing: Addressing,
    /// Failed-check stubs: label, instruction.
    access_stubs: Vec<(Label, u32)>,
    /// The instruction being emitted.
    cur: usize,
}

/// A deferred jump that is a `jcc` (it becomes a `jmp` if the branch
/// always panics).
const JCC: u32 = 1 << 31;

/// The code of a range of instructions, generated on its own: offsets are
/// relative to its own start until the parts are joined.
struct Part {
    code: CodeBuf,
    scratch: buffers::Scratch,
    starts: Vec<u32>,
    /// Offsets of the entry trampoline, the invalid-jump-table-entry stub
    /// and the page-fault stub, in the part that holds them.
    entry: Option<u32>,
    invalid_entry: Option<u32>,
    fault_stub: Option<u32>,
    oog_stub: Option<u32>,
}

/// The labels every part shares (bound in the last); a part's own labels
/// follow. A label with [`BLOCK`] set is a gas block's charge prologue.
const EPILOGUE: Label = Label(0);
const DJUMP: Label = Label(1);
const PANIC_COMMON: Label = Label(2);
const OOG_COMMON: Label = Label(3);
const SHARED: u32 = 4;
const BLOCK: u32 = 1 << 31;

/// Generates the code of `p`: in one pass, or, as `parallel` allows, in
/// pieces (each from a gas block's start) generated at the same time and
/// joined. Both give the same instructions; only where the out-of-line
/// stubs of each piece lie differs.
pub(super) fn compile(
    p: &Program,
    sbrk: usize,
    addressing: Addressing,
    parallel: crate::Parallelism,
) -> Result<Code, Error> {
    let n = p.len();
    let blocks = p.block_count();
    let pieces = parallel.pieces().min(blocks);
    let parts = if pieces > 1 && n >= parallel.min_instructions {
        // Pieces of about equal numbers of blocks, each from a block start.
        let mut bounds: Vec<usize> = (0..pieces)
            .map(|k| p.block_start(blocks * k / pieces))
            .collect();
        bounds.push(n);
        bounds.dedup();
        let last = bounds.len() - 2;
        let mut results: Vec<Option<Result<Part, Error>>> = Vec::new();
        results.resize_with(bounds.len() - 1, || None);
        {
            let mut jobs: Vec<_> = results
                .iter_mut()
                .enumerate()
                .map(|(k, out)| {
                    let range = bounds[k]..bounds[k + 1];
                    move || {
                        let (first, is_last) = (k == 0, k == last);
                        let part = emit_part(p, sbrk, addressing, range.clone(), first, is_last);
                        *out = Some(part);
                    }
                })
                .collect();
            let mut refs: Vec<&mut (dyn FnMut() + Send)> = Vec::new();
            for job in jobs.iter_mut() {
                refs.push(job);
            }
            parallel.run(&mut refs);
        }
        let mut parts = Vec::with_capacity(results.len());
        for r in results {
            parts.push(r.ok_or(Error::Unsupported(
                "JIT: a piece of the code was not generated",
            ))??);
        }
        parts
    } else {
        vec![emit_part(p, sbrk, addressing, 0..n, true, true)?]
    };
    join(p, parts)
}

/// Decodes and validates `blob` as [`Program::with_gas_model`] does and
/// generates its code in the same pass: each instruction's code is emitted
/// in the decoder's match arm for its opcode, with no table of decoded
/// instructions read back. Jumps are resolved, and charges filled in, once
/// the program is complete. The same code as [`compile`] on one thread but
/// for the charge prologues' 32-bit form (and a 64-bit cost, which only
/// [`compile`] encodes: such a program is generated again by it).
pub(super) fn compile_blob(
    blob: pvm_core::Blob,
    profile: pvm_core::Profile,
    model: &dyn pvm_core::GasModel,
    sbrk: usize,
    addressing: Addressing,
    parallel: crate::Parallelism,
) -> Result<(Program, Code), Error> {
    let marked = blob.marked_starts();
    let (p, emitters) = if parallel.threads >= 2 && marked >= parallel.min_instructions {
        // Pieces cut after terminators, each decoded and generated on its
        // own (see `Program::with_gas_model_split_visiting`).
        Program::with_gas_model_split_visiting(
            blob,
            profile,
            model,
            parallel.pieces(),
            &mut |first, count| Emitter::for_piece(addressing, sbrk, first, count),
            &mut |jobs| parallel.run(jobs),
        )?
    } else {
        let mut e = Emitter::for_piece(addressing, sbrk, 0, marked);
        let p = Program::with_gas_model_visiting(blob, profile, model, &mut e)?;
        (p, vec![e])
    };
    let n = p.len();
    let count = emitters.len();
    let mut parts = Vec::with_capacity(count);
    let mut emitters = emitters.into_iter().peekable();
    while let Some(e) = emitters.next() {
        let end = emitters.peek().map_or(n, |next| next.first_idx);
        match e.finish(&p, end, emitters.peek().is_none())? {
            Some(part) => parts.push(part),
            None => {
                // A block costs more than a 32-bit charge holds: generated
                // again with the costs known.
                for part in parts {
                    buffers::give_back_code(part.code);
                    buffers::give_back_scratch(part.scratch);
                }
                for e in emitters {
                    let (code, scratch) = e.into_buffers();
                    buffers::give_back_code(code);
                    buffers::give_back_scratch(scratch);
                }
                let code = compile(&p, sbrk, addressing, parallel)?;
                return Ok((p, code));
            }
        }
    }
    let code = join(&p, parts)?;
    Ok((p, code))
}

impl pvm_core::WalkVisitor for Emitter<'_> {
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn before(&mut self, idx: usize, starts_block: bool) {
        Emitter::before(self, idx, starts_block);
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn instruction(&mut self, idx: usize, _: u32, _: bool, implicit: bool, inst: I) {
        self.body(idx, implicit, inst);
    }
}

/// Emits instructions `range` of `p` (with the entry trampoline if
/// `first`, and the shared exits if `last`), then the range's out-of-line
/// stubs.
fn emit_part(
    p: &Program,
    sbrk: usize,
    addressing: Addressing,
    range: core::ops::Range<usize>,
    first: bool,
    last: bool,
) -> Result<Part, Error> {
    let blocks = p.block_count();
    let first_block = if range.start < p.len() {
        p.block_of(range.start)
    } else {
        blocks
    };
    let mut e = Emitter::new(addressing, sbrk, Some(p), range.start, range.len());
    e.first_block = first_block;
    if first {
        e.entry();
    }
    let insts = p.instructions();
    let mut next_block = first_block;
    for i in range.clone() {
        let starts_block = next_block < blocks && p.block_start(next_block) == i;
        next_block += usize::from(starts_block);
        e.instruction(i, starts_block, p.is_implicit_trap(i), insts[i]);
    }
    e.finish(p, range.end, last)?.ok_or(Error::Unsupported(
        "JIT: a charge left unfilled with known costs",
    ))
}

impl<'p> Emitter<'p> {
    /// An emitter of the `count` instructions from `first` on, generating
    /// while they are decoded (with the entry trampoline if `first` is 0).
    fn for_piece(addressing: Addressing, sbrk: usize, first: usize, count: usize) -> Emitter<'p> {
        let mut e = Emitter::new(addressing, sbrk, None, first, count);
        if first == 0 {
            e.entry();
        }
        e
    }

    /// An emitter for about `n` instructions from instruction `first_idx`
    /// on, with the buffers of an earlier compilation if there are any,
    /// sized from measured programs (DOOM: about 15 bytes per instruction,
    /// a label and three references per block) so that they rarely grow.
    fn new(
        addressing: Addressing,
        sbrk: usize,
        costs: Option<&'p Program>,
        first_idx: usize,
        n: usize,
    ) -> Emitter<'p> {
        let s = buffers::scratch();
        let a = buffers::code_buf(16 * n + 4096);
        let (mut labels, mut fixups) = (s.labels, s.fixups);
        let (mut blocks, mut deferred, mut oog_stubs) = (s.blocks, s.deferred, s.oog_stubs);
        labels.reserve(n / 2 + 8);
        fixups.reserve(n / 2 + 8);
        blocks.reserve(n / 4 + 8);
        deferred.reserve(n / 4 + 8);
        oog_stubs.reserve(n / 4 + 8);
        labels.resize(SHARED as usize, UNBOUND);
        Emitter {
            a,
            costs,
            sbrk,
            blocks,
            first_block: 0,
            first_idx,
            has_entry: false,
            labels,
            fixups,
            deferred,
            starts: if first_idx == 0 {
                buffers::starts(n)
            } else {
                Vec::with_capacity(n)
            },
            oog_stubs,
            panic_stubs: s.panic_stubs,
            addressing,
            access_stubs: s.access_stubs,
            cur: 0,
        }
    }

    /// The entry trampoline: extern "sysv64" fn(window_base, target) -> u32.
    fn entry(&mut self) -> u32 {
        let entry = self.a.offset().0 as u32;
        self.has_entry = true;
        dynasm!(self.a
            ; .arch x64
            ; push rbx
            ; push rbp
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            ; sub rsp, 8
            ; mov r15, rdi
        );
        if self.addressing == Addressing::Segment {
            // Keep the host's GS base; GS = the window while guest code runs.
            dynasm!(self.a
                ; .arch x64
                ; rdgsbase rax
                ; mov QWORD [r15 + SAVED_GS], rax
                ; wrgsbase r15
            );
        }
        dynasm!(self.a ; .arch x64 ; mov rax, rsi);
        self.reload_all();
        dynasm!(self.a ; .arch x64 ; jmp rax);
        entry
    }

    /// The code of instruction `i` (a charge prologue first if it starts a
    /// gas block).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn instruction(&mut self, i: usize, starts_block: bool, implicit: bool, inst: I) {
        self.before(i, starts_block);
        self.body(i, implicit, inst);
    }

    /// What comes before the code of instruction `i`, whatever it is: a
    /// charge prologue if it starts a gas block, and its offset noted.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn before(&mut self, i: usize, starts_block: bool) {
        if starts_block {
            self.emit_charge(i);
        }
        self.starts.push(self.a.offset().0 as u32);
        self.cur = i;
    }

    /// The code of instruction `i` itself.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn body(&mut self, i: usize, implicit: bool, inst: I) {
        if implicit {
            self.panic(i);
        } else {
            self.emit(i, inst);
        }
    }

    /// Completes the code of instructions `..end` of `p` from this part's
    /// first on: what follows the last of them, jumps resolved, charges
    /// filled in, the out-of-line stubs, and (if `last`) the shared exits.
    /// `None` if a block costs more than a 32-bit placeholder holds.
    fn finish(mut self, p: &Program, end: usize, last: bool) -> Result<Option<Part>, Error> {
        let entry = self.has_entry.then_some(0);
        self.first_block = if self.first_idx < p.len() {
            p.block_of(self.first_idx)
        } else {
            p.block_count()
        };
        // Falling past the last instruction: into the next part's first
        // block, or (GP 0.8, a `fallthrough` or a branch's fall-through at
        // the end of the code) a panic.
        if end < p.len() {
            self.jmp(Label(BLOCK | p.block_of(end) as u32));
        } else if end > 0 {
            self.panic(end - 1);
        }
        self.resolve_jumps(p);
        if self.costs.is_none() {
            for (k, &at) in self.blocks.iter().enumerate() {
                let Ok(cost) = i32::try_from(p.block_cost(self.first_block + k)) else {
                    let (code, scratch) = self.into_buffers();
                    buffers::give_back_code(code);
                    buffers::give_back_scratch(scratch);
                    return Ok(None);
                };
                // `sub qword [r15 + GAS], imm32`: the immediate at +4.
                let k = at as usize + 4;
                self.a.bytes_mut()[k..k + 4].copy_from_slice(&cost.to_le_bytes());
            }
        }

        // Out-of-line stubs.
        let mut stubs = core::mem::take(&mut self.oog_stubs);
        for &(at, idx) in &stubs {
            // The gas the prologue took is given back by the runtime (an
            // out-of-gas exit leaves gas unchanged): the stub only says
            // where. The charge's `jb` is pointed at it here (no label).
            let here = self.a.offset().0 as u32;
            let rel = here.wrapping_sub(at + 4) as i32;
            self.a.bytes_mut()[at as usize..at as usize + 4].copy_from_slice(&rel.to_le_bytes());
            dynasm!(self.a ; .arch x64 ; mov DWORD [r15 + EXIT_IDX], idx as i32);
            self.jmp(OOG_COMMON);
        }
        stubs.clear();
        self.oog_stubs = stubs;
        let mut stubs = core::mem::take(&mut self.access_stubs);
        for &(l, idx) in &stubs {
            self.bind(l);
            dynasm!(self.a
                ; .arch x64
                ; mov DWORD [r15 + EXIT_IDX], idx as i32
                ; mov eax, exit_kind::ACCESS_FAULT as i32
            );
            self.jmp(EPILOGUE);
        }
        stubs.clear();
        self.access_stubs = stubs;
        let mut stubs = core::mem::take(&mut self.panic_stubs);
        for &(l, idx) in &stubs {
            self.bind(l);
            dynasm!(self.a ; .arch x64 ; mov DWORD [r15 + EXIT_IDX], idx as i32);
            self.jmp(PANIC_COMMON);
        }
        stubs.clear();
        self.panic_stubs = stubs;
        let (mut invalid_entry, mut fault_stub, mut oog_stub) = (None, None, None);
        if last {
            // Dynamic jump: eax = address, EXIT_IDX = the jumping instruction.
            let halt = self.new_label();
            self.bind(DJUMP);
            dynasm!(self.a ; .arch x64 ; cmp eax, 0xFFFF_0000u32 as i32);
            self.jcc(cc::E, halt);
            dynasm!(self.a ; .arch x64 ; test eax, 1);
            self.jcc(cc::NE, PANIC_COMMON);
            dynasm!(self.a
                ; .arch x64
                ; shr eax, 1
                ; sub eax, 1
                ; cmp rax, QWORD [r15 + JT_LEN]
            );
            self.jcc(cc::AE, PANIC_COMMON);
            dynasm!(self.a
                ; .arch x64
                ; shl rax, 3
                ; add rax, QWORD [r15 + JT_PTR]
                ; jmp QWORD [rax]
            );
            self.bind(halt);
            dynasm!(self.a ; .arch x64 ; mov eax, exit_kind::HALT as i32);
            self.jmp(EPILOGUE);
            invalid_entry = Some(self.a.offset().0 as u32);
            self.bind(PANIC_COMMON);
            dynasm!(self.a ; .arch x64 ; mov eax, exit_kind::PANIC as i32);
            self.jmp(EPILOGUE);
            self.bind(OOG_COMMON);
            dynasm!(self.a ; .arch x64 ; mov eax, exit_kind::OUT_OF_GAS as i32);
            self.jmp(EPILOGUE);
            oog_stub = Some(self.a.offset().0 as u32);
            dynasm!(self.a ; .arch x64 ; mov eax, exit_kind::OUT_OF_GAS_TRAP as i32);
            self.jmp(EPILOGUE);
            fault_stub = Some(self.a.offset().0 as u32);
            dynasm!(self.a ; .arch x64 ; mov eax, exit_kind::PAGE_FAULT as i32);
            self.bind(EPILOGUE);
            self.spill_all();
            if self.addressing == Addressing::Segment {
                // The host's GS base back (rcx is spilled; eax holds the exit).
                dynasm!(self.a
                    ; .arch x64
                    ; mov rcx, QWORD [r15 + SAVED_GS]
                    ; wrgsbase rcx
                );
            }
            dynasm!(self.a
                ; .arch x64
                ; add rsp, 8
                ; pop r15
                ; pop r14
                ; pop r13
                ; pop r12
                ; pop rbp
                ; pop rbx
                ; ret
            );
        }
        let starts = core::mem::take(&mut self.starts);
        let (code, scratch) = self.into_buffers();
        Ok(Some(Part {
            code,
            scratch,
            starts,
            entry,
            invalid_entry,
            fault_stub,
            oog_stub,
        }))
    }

    /// Points the static jumps and branches at their targets' charge
    /// prologues (in this part: now; in another: when the parts are
    /// joined), or at a panic stub. With `popcnt` when the CPU has it (the
    /// look-ups count bits).
    fn resolve_jumps(&mut self, p: &Program) {
        if std::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has `popcnt` (checked just above).
            unsafe { self.resolve_jumps_popcnt(p) }
        } else {
            self.resolve_jumps_with(p);
        }
    }

    #[target_feature(enable = "popcnt")]
    fn resolve_jumps_popcnt(&mut self, p: &Program) {
        self.resolve_jumps_with(p);
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn resolve_jumps_with(&mut self, p: &Program) {
        let mut deferred = core::mem::take(&mut self.deferred);
        let local = self.first_block..self.first_block + self.blocks.len();
        for &(at, x, target) in &deferred {
            let i = (x & !JCC) as usize;
            // What `Program::transfer` says, from the resolved target and
            // the kind of jump: a `jmp` without a target panics when taken
            // (as `jump` and `load_imm_jump` do); a branch without one
            // panics when taken under 0.7, either way under 0.8.
            let to = match p.jump_block(i, x & JCC != 0, target) {
                Some(b) if local.contains(&b) => {
                    let to = self.blocks[b - local.start];
                    let rel = to.wrapping_sub(at + 4) as i32;
                    let k = at as usize;
                    self.a.bytes_mut()[k..k + 4].copy_from_slice(&rel.to_le_bytes());
                    continue;
                }
                Some(b) => Label(BLOCK | b as u32),
                None => {
                    if x & JCC != 0 && p.profile() == pvm_core::Profile::V0_8 {
                        // `jcc rel32` becomes `nop; jmp rel32` (the same
                        // `rel32` field).
                        let k = at as usize;
                        self.a.bytes_mut()[k - 2..k].copy_from_slice(&[0x90, 0xE9]);
                    }
                    self.panic_stub(i)
                }
            };
            self.fixups.push((at, to.0));
        }
        deferred.clear();
        self.deferred = deferred;
    }

    /// The code and the tables, to keep for the next compilation.
    fn into_buffers(self) -> (CodeBuf, buffers::Scratch) {
        let scratch = buffers::Scratch {
            labels: self.labels,
            fixups: self.fixups,
            blocks: self.blocks,
            deferred: self.deferred,
            oog_stubs: self.oog_stubs,
            panic_stubs: self.panic_stubs,
            access_stubs: self.access_stubs,
        };
        (self.a, scratch)
    }

    /// A stub that panics at instruction `i`.
    fn panic_stub(&mut self, i: usize) -> Label {
        let l = self.new_label();
        self.panic_stubs.push((l, i as u32));
        l
    }
}

/// Joins the parts into one mapping: shared labels take the offset of the
/// part that bound them, every jump is filled in, and the jump table points
/// at its entries' charge prologues.
fn join(p: &Program, parts: Vec<Part>) -> Result<Code, Error> {
    let mut bases = Vec::with_capacity(parts.len());
    let mut total = 0u32;
    for part in &parts {
        bases.push(total);
        total += part.code.len() as u32;
    }
    // The shared labels' and the blocks' offsets (one part's own table if
    // there is one part: its offsets are already the final ones).
    let mut shared = [UNBOUND; SHARED as usize];
    let mut parts = parts;
    let mut blocks = if parts.len() == 1 {
        core::mem::take(&mut parts[0].scratch.blocks)
    } else {
        Vec::with_capacity(p.block_count())
    };
    let one = parts.len() == 1;
    for (part, &base) in parts.iter().zip(&bases) {
        for (g, &at) in shared.iter_mut().zip(&part.scratch.labels) {
            if at != UNBOUND {
                *g = at + base;
            }
        }
        if !one {
            blocks.extend(part.scratch.blocks.iter().map(|&at| at + base));
        }
    }
    let unencodable = Error::Unsupported("JIT: a jump that cannot be encoded");
    for (part, &base) in parts.iter_mut().zip(&bases) {
        let s = &mut part.scratch;
        for &(at, l) in &s.fixups {
            let to = if l & BLOCK != 0 {
                blocks
                    .get((l & !BLOCK) as usize)
                    .copied()
                    .unwrap_or(UNBOUND)
            } else if l < SHARED {
                shared[l as usize]
            } else {
                match s.labels[l as usize] {
                    UNBOUND => UNBOUND,
                    local => local + base,
                }
            };
            if to == UNBOUND {
                return Err(unencodable);
            }
            let rel = i64::from(to) - (i64::from(at + base) + 4);
            let rel = i32::try_from(rel).map_err(|_| unencodable.clone())?;
            part.code.bytes_mut()[at as usize..at as usize + 4].copy_from_slice(&rel.to_le_bytes());
        }
    }
    let find = |f: fn(&Part) -> Option<u32>| {
        parts
            .iter()
            .zip(&bases)
            .find_map(|(part, &base)| f(part).map(|o| o + base))
            .ok_or(Error::Unsupported(
                "JIT: a part of the generated code is missing",
            ))
    };
    let entry = find(|q| q.entry)?;
    let invalid_entry = find(|q| q.invalid_entry)?;
    let fault_stub = find(|q| q.fault_stub)?;
    let oog_stub = find(|q| q.oog_stub)?;

    // Jump table: native offsets of the entries' charge prologues.
    let mut jump_table = Vec::with_capacity(p.jump_table_targets().len());
    for &t in p.jump_table_targets() {
        jump_table.push(if t == INVALID_TARGET {
            invalid_entry
        } else {
            // Entries are in ϖ, which always start a gas block.
            *blocks
                .get(p.block_of(t as usize))
                .ok_or(Error::Unsupported("JIT: a jump table entry without code"))?
        });
    }

    let count = parts.len();
    let mut parts = parts.into_iter();
    let mut first = parts
        .next()
        .ok_or(Error::Unsupported("JIT: no code generated"))?;
    let mut starts = core::mem::take(&mut first.starts);
    if one {
        // Its table back, to keep for the next compilation.
        first.scratch.blocks = blocks;
    }
    buffers::give_back_scratch(first.scratch);
    // One part: its buffer becomes the code. More: copied one after the
    // other into a buffer for all of them.
    let mut code = first.code;
    if count > 1 {
        let mut all = buffers::code_buf(total as usize);
        all.extend_from_slice(code.bytes());
        buffers::give_back_code(core::mem::replace(&mut code, all));
    }
    for (part, &base) in parts.zip(&bases[1..]) {
        code.extend_from_slice(part.code.bytes());
        buffers::give_back_code(part.code);
        starts.extend(part.starts.iter().map(|&o| o + base));
        buffers::give_back_scratch(part.scratch);
    }
    let buf = buffers::ExecCode::new(code, &buffers::CODE)?;
    Ok(Code {
        buf,
        len: total as usize,
        starts,
        jump_table,
        entry,
        fault_stub,
        oog_stub,
        parts: count,
    })
}

/// The native address of `off` in `buf`.
pub(super) fn addr(buf: &buffers::ExecCode, off: u32) -> *const u8 {
    buf.as_ptr().wrapping_add(off as usize)
}

use Bin::*;

impl Emitter<'_> {
    fn new_label(&mut self) -> Label {
        self.labels.push(UNBOUND);
        Label(self.labels.len() as u32 - 1)
    }

    /// Binds `l` here.
    fn bind(&mut self, l: Label) {
        self.labels[l.0 as usize] = self.a.offset().0 as u32;
    }

    /// `op` followed by a `rel32` field to fill in with the distance to
    /// `l`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn op_rel32<const N: usize>(&mut self, op: [u8; N], l: Label) {
        let at = self.a.offset().0 + N;
        self.a.put(|i| i.op_rel32(op));
        self.fixups.push((at as u32, l.0));
    }

    /// `op` followed by a `rel32` field to the static target of
    /// instruction `i` (see [`Emitter::finish`]).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn op_deferred<const N: usize>(&mut self, op: [u8; N], i: usize, flag: u32, target: u32) {
        let at = self.a.offset().0 + N;
        self.a.put(|x| x.op_rel32(op));
        self.deferred.push((at as u32, i as u32 | flag, target));
    }

    /// `jmp l`.
    fn jmp(&mut self, l: Label) {
        self.op_rel32([0xE9], l);
    }

    /// `j<cc> l` (a [`cc`] code).
    fn jcc(&mut self, code: u8, l: Label) {
        self.op_rel32([0x0F, 0x80 | code], l);
    }

    /// The charge prologue of the block instruction `i` starts:
    /// `sub qword [r15 + GAS], cost` then, if it borrowed, out of gas.
    ///
    /// With hardware checks (the signal handler installed) that is a `jb`
    /// back onto the `sub`'s displacement byte, [`GAS_BYTE`]: executed, it
    /// is an invalid instruction, and `signal.rs` resumes at the stub that
    /// makes the trap the block's out-of-gas exit (the run loop finds the
    /// block from the trapping offset). Two bytes per block, and no stub.
    /// With explicit checks (no handler) it is a `jb` to a stub of the
    /// block's own.
    fn emit_charge(&mut self, i: usize) {
        let block = self.blocks.len();
        self.blocks.push(self.a.offset().0 as u32);
        let trap = self.addressing != Addressing::Checked;
        // `jb rel8` back onto the displacement of a `sub` of `len` bytes
        // ending here whose displacement byte is at offset 3 (the 64-bit
        // cost's `sub` follows its `mov`: the same holds from the `sub`).
        let back = |len: i8| [0x72, (3 - len - 2) as u8];
        let Some(p) = self.costs else {
            // `sub qword [r15 + GAS], imm32`, the immediate filled in by
            // `finish`. REX.W+B, 81 /5, ModRM (mod 01, reg 5, rm r15&7),
            // disp8, imm32.
            let sub = [0x49, 0x81, 0x6F, GAS_BYTE, 0, 0, 0, 0];
            if trap {
                self.a.put(|x| x.bytes(sub).bytes(back(8)));
            } else {
                // Then `jb` to the out-of-gas stub (its `rel32` filled in
                // by `finish` too).
                self.a.put(|x| x.bytes(sub).op_rel32([0x0F, 0x80 | cc::B]));
                let at = self.a.offset().0 as u32 - 4;
                self.oog_stubs.push((at, i as u32));
            }
            return;
        };
        let cost = p.block_cost(self.first_block + block);
        if cost == 0 {
            return;
        }
        let len = if let Ok(c) = i8::try_from(cost) {
            // `sub qword [r15 + GAS], imm8`: REX.W+B, 83 /5, ModRM (mod 01,
            // reg 5, rm r15&7), disp8, imm8.
            self.a
                .put(|x| x.bytes([0x49, 0x83, 0x6F, GAS_BYTE, c as u8]));
            5
        } else if let Ok(c) = i32::try_from(cost) {
            let c = c.to_le_bytes();
            self.a
                .put(|x| x.bytes([0x49, 0x81, 0x6F, GAS_BYTE, c[0], c[1], c[2], c[3]]));
            8
        } else {
            // `mov rax, imm64`, then `sub qword [r15 + GAS], rax`: REX.W+B,
            // 29 /r, ModRM (mod 01, reg rax, rm r15&7), disp8.
            dynasm!(self.a ; .arch x64 ; mov rax, QWORD cost as i64);
            self.a.put(|x| x.bytes([0x49, 0x29, 0x47, GAS_BYTE]));
            4
        };
        if trap {
            self.a.put(|x| x.bytes(back(len)));
        } else {
            self.a.put(|x| x.op_rel32([0x0F, 0x80 | cc::B]));
            let at = self.a.offset().0 as u32 - 4;
            self.oog_stubs.push((at, i as u32));
        }
    }

    fn exit(&mut self, i: usize, kind: u32, arg: u32) {
        dynasm!(self.a
            ; .arch x64
            ; mov DWORD [r15 + EXIT_IDX], i as i32
            ; mov DWORD [r15 + EXIT_ARG], arg as i32
            ; mov eax, kind as i32
        );
        self.jmp(EPILOGUE);
    }

    fn panic(&mut self, i: usize) {
        dynasm!(self.a
            ; .arch x64
            ; mov DWORD [r15 + EXIT_IDX], i as i32
        );
        self.jmp(PANIC_COMMON);
    }

    /// The static jump of instruction `i` (resolved by `finish`: to its
    /// target's charge prologue, or a panic).
    fn jump(&mut self, i: usize, target: u32) {
        self.op_deferred([0xE9], i, 0, target);
    }

    // --- guest registers ---------------------------------------------------

    /// Guest register `g` = host register `h`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn put(&mut self, g: u8, h: u8) {
        let d = host(g);
        if d != h {
            enc::mov_rr(&mut self.a, d, h);
        }
    }

    /// Host register `h` = the operand.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn load_to(&mut self, h: u8, s: Src) {
        match s {
            Src::R(g) => {
                let x = host(g);
                if x != h {
                    enc::mov_rr(&mut self.a, h, x);
                }
            }
            Src::Imm(v) => enc::mov_ri(&mut self.a, h, v as i32),
        }
    }

    /// Stores every guest register to its context slot.
    fn spill_all(&mut self) {
        for g in 0..13u8 {
            dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + reg_off(g)], Rq(host(g)));
        }
    }

    /// Loads every guest register from its context slot.
    fn reload_all(&mut self) {
        for g in 0..13u8 {
            dynasm!(self.a ; .arch x64 ; mov Rq(host(g)), QWORD [r15 + reg_off(g)]);
        }
    }

    // --- memory ------------------------------------------------------------

    /// The effective address `reg[b] + sext(imm)` (mod 2^32), or `imm`.
    fn ea(&mut self, base: Option<u8>, imm: u32) -> Addr {
        match base {
            None if imm < 0x8000_0000 => return Addr::Abs(imm as i32),
            None => dynasm!(self.a ; .arch x64 ; mov eax, imm as i32),
            // A 32-bit `lea` truncates the 64-bit sum: the PVM's wrap.
            Some(b) if imm == 0 => dynasm!(self.a ; .arch x64 ; mov eax, Rd(host(b))),
            Some(b) => enc::lea(&mut self.a, false, RAX, host(b), imm as i32),
        }
        Addr::Rax
    }

    /// With explicit checks: leaves for the failed-check stub unless every
    /// page of the `size`-byte access at `at` allows it (`rax` is kept).
    fn check(&mut self, at: Addr, size: u8, write: bool) {
        if self.addressing != Addressing::Checked {
            return;
        }
        let need: i8 = if write { 2 } else { 1 };
        let fail = self.new_label();
        self.access_stubs.push((fail, self.cur as u32));
        match at {
            Addr::Abs(k) => {
                let first = (k as u32 >> 12) as i32;
                let last = ((k as u32 + u32::from(size) - 1) >> 12) as i32;
                dynasm!(self.a ; .arch x64 ; cmp BYTE [r15 + PERM_OFFSET + first], need);
                self.jcc(cc::B, fail);
                if last != first {
                    dynasm!(self.a ; .arch x64 ; cmp BYTE [r15 + PERM_OFFSET + last], need);
                    self.jcc(cc::B, fail);
                }
            }
            Addr::Rax => {
                dynasm!(self.a ; .arch x64
                    ; mov QWORD [r15 + TMP], rax
                    ; shr eax, 12
                    ; cmp BYTE [r15 + rax + PERM_OFFSET], need
                );
                self.jcc(cc::B, fail);
                if size > 1 {
                    // The last byte's page; past 2^32 the access wraps into
                    // page 0, which is never accessible.
                    dynasm!(self.a ; .arch x64
                        ; mov rax, QWORD [r15 + TMP]
                        ; add eax, i32::from(size) - 1
                    );
                    // Carry: the last byte is past 2^32.
                    self.jcc(cc::B, fail);
                    dynasm!(self.a ; .arch x64
                        ; shr eax, 12
                        ; cmp BYTE [r15 + rax + PERM_OFFSET], need
                    );
                    self.jcc(cc::B, fail);
                }
                dynasm!(self.a ; .arch x64 ; mov rax, QWORD [r15 + TMP]);
            }
        }
    }

    /// With [`Addressing::Segment`], the host register and displacement of
    /// a register-based access (`gs:[e(b) + k]`).
    fn segment(&self, base: Option<u8>, imm: u32) -> Option<(u8, i32)> {
        match base {
            Some(b) if self.addressing == Addressing::Segment => Some((host(b), imm as i32)),
            _ => None,
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn load(&mut self, dst: u8, base: Option<u8>, imm: u32, size: u8, signed: bool) {
        let d = host(dst);
        if let Some((b, k)) = self.segment(base, imm) {
            enc::load_gs(&mut self.a, Load::new(size, signed), d, b, k);
            return;
        }
        let at = self.ea(base, imm);
        self.check(at, size, false);
        match (at, size, signed) {
            (Addr::Rax, 1, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(d), BYTE [r15 + rax]),
            (Addr::Rax, 1, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), BYTE [r15 + rax]),
            (Addr::Rax, 2, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(d), WORD [r15 + rax]),
            (Addr::Rax, 2, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), WORD [r15 + rax]),
            (Addr::Rax, 4, false) => dynasm!(self.a ; .arch x64 ; mov Rd(d), DWORD [r15 + rax]),
            (Addr::Rax, 4, true) => dynasm!(self.a ; .arch x64 ; movsxd Rq(d), DWORD [r15 + rax]),
            (Addr::Rax, _, _) => dynasm!(self.a ; .arch x64 ; mov Rq(d), QWORD [r15 + rax]),
            (Addr::Abs(k), 1, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(d), BYTE [r15 + k]),
            (Addr::Abs(k), 1, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), BYTE [r15 + k]),
            (Addr::Abs(k), 2, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(d), WORD [r15 + k]),
            (Addr::Abs(k), 2, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), WORD [r15 + k]),
            (Addr::Abs(k), 4, false) => dynasm!(self.a ; .arch x64 ; mov Rd(d), DWORD [r15 + k]),
            (Addr::Abs(k), 4, true) => dynasm!(self.a ; .arch x64 ; movsxd Rq(d), DWORD [r15 + k]),
            (Addr::Abs(k), _, _) => dynasm!(self.a ; .arch x64 ; mov Rq(d), QWORD [r15 + k]),
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn store(&mut self, src: Src, base: Option<u8>, imm: u32, size: u8) {
        if let Some((b, k)) = self.segment(base, imm) {
            match src {
                Src::R(g) => enc::store_gs(&mut self.a, size, host(g), b, k),
                Src::Imm(v) => enc::store_gs_imm(&mut self.a, size, v, b, k),
            }
            return;
        }
        let at = self.ea(base, imm);
        self.check(at, size, true);
        match src {
            Src::R(g) => {
                let s = host(g);
                match (at, size) {
                    (Addr::Rax, 1) => dynasm!(self.a ; .arch x64 ; mov BYTE [r15 + rax], Rb(s)),
                    (Addr::Rax, 2) => dynasm!(self.a ; .arch x64 ; mov WORD [r15 + rax], Rw(s)),
                    (Addr::Rax, 4) => dynasm!(self.a ; .arch x64 ; mov DWORD [r15 + rax], Rd(s)),
                    (Addr::Rax, _) => dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + rax], Rq(s)),
                    (Addr::Abs(k), 1) => dynasm!(self.a ; .arch x64 ; mov BYTE [r15 + k], Rb(s)),
                    (Addr::Abs(k), 2) => dynasm!(self.a ; .arch x64 ; mov WORD [r15 + k], Rw(s)),
                    (Addr::Abs(k), 4) => dynasm!(self.a ; .arch x64 ; mov DWORD [r15 + k], Rd(s)),
                    (Addr::Abs(k), _) => dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + k], Rq(s)),
                }
            }
            Src::Imm(v) => match (at, size) {
                (Addr::Rax, 1) => dynasm!(self.a ; .arch x64 ; mov BYTE [r15 + rax], v as u8 as i8),
                (Addr::Rax, 2) => {
                    dynasm!(self.a ; .arch x64 ; mov WORD [r15 + rax], v as u16 as i16)
                }
                (Addr::Rax, 4) => dynasm!(self.a ; .arch x64 ; mov DWORD [r15 + rax], v as i32),
                (Addr::Rax, _) => dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + rax], v as i32),
                (Addr::Abs(k), 1) => {
                    dynasm!(self.a ; .arch x64 ; mov BYTE [r15 + k], v as u8 as i8)
                }
                (Addr::Abs(k), 2) => {
                    dynasm!(self.a ; .arch x64 ; mov WORD [r15 + k], v as u16 as i16)
                }
                (Addr::Abs(k), 4) => dynasm!(self.a ; .arch x64 ; mov DWORD [r15 + k], v as i32),
                (Addr::Abs(k), _) => dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + k], v as i32),
            },
        }
    }

    // --- arithmetic --------------------------------------------------------

    /// `reg[d] = x OP y`.
    fn bin(&mut self, op: Bin, d: u8, x: Src, y: Src) {
        if let Src::R(gx) = x {
            if self.two_address(op, d, gx, y) {
                return;
            }
        }
        self.bin_other(op, d, x, y);
    }

    /// [`bin`](Self::bin) inlined into the decoder's arm for `op`: the
    /// common operations' register forms (`two_address`) then generate
    /// with no dispatch on `op` left.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn bin_inline(&mut self, op: Bin, d: u8, x: Src, y: Src) {
        if let Src::R(gx) = x {
            if self.two_address(op, d, gx, y) {
                return;
            }
        }
        self.bin_other(op, d, x, y);
    }

    /// [`bin`](Self::bin) for what `two_address` does not generate.
    fn bin_other(&mut self, op: Bin, d: u8, x: Src, y: Src) {
        if !op.borrows() {
            if let Src::R(gy) = y {
                self.bin_rax(op, d, x, host(gy));
                return;
            }
            if let (SetLtU | SetLtS, Src::Imm(v)) = (op, y) {
                self.load_to(RAX, x);
                if op == SetLtU {
                    dynasm!(self.a ; .arch x64 ; cmp rax, v as i32 ; setb al ; movzx eax, al);
                } else {
                    dynasm!(self.a ; .arch x64 ; cmp rax, v as i32 ; setl al ; movzx eax, al);
                }
                self.put(d, RAX);
                return;
            }
        }
        self.bin_borrow(op, d, x, y);
    }

    /// `rax = x; rax OP= y; reg[d] = rax`, for `y` in host register `ry`
    /// and an operation that needs no other register.
    fn bin_rax(&mut self, op: Bin, d: u8, x: Src, ry: u8) {
        self.load_to(RAX, x);
        match op {
            Add32 => dynasm!(self.a ; .arch x64 ; add eax, Rd(ry) ; movsxd rax, eax),
            Sub32 => dynasm!(self.a ; .arch x64 ; sub eax, Rd(ry) ; movsxd rax, eax),
            Mul32 => dynasm!(self.a ; .arch x64 ; imul eax, Rd(ry) ; movsxd rax, eax),
            Add64 => dynasm!(self.a ; .arch x64 ; add rax, Rq(ry)),
            Sub64 => dynasm!(self.a ; .arch x64 ; sub rax, Rq(ry)),
            Mul64 => dynasm!(self.a ; .arch x64 ; imul rax, Rq(ry)),
            And => dynasm!(self.a ; .arch x64 ; and rax, Rq(ry)),
            Or => dynasm!(self.a ; .arch x64 ; or rax, Rq(ry)),
            Xor => dynasm!(self.a ; .arch x64 ; xor rax, Rq(ry)),
            // shlx/shrx/sarx mask the count as the PVM does (mod 64, or mod
            // 32 for the 32-bit forms).
            Shl64 => dynasm!(self.a ; .arch x64 ; shlx rax, rax, Rq(ry)),
            Shr64 => dynasm!(self.a ; .arch x64 ; shrx rax, rax, Rq(ry)),
            Sar64 => dynasm!(self.a ; .arch x64 ; sarx rax, rax, Rq(ry)),
            Shl32 => dynasm!(self.a ; .arch x64 ; shlx eax, eax, Rd(ry) ; movsxd rax, eax),
            Shr32 => dynasm!(self.a ; .arch x64 ; shrx eax, eax, Rd(ry) ; movsxd rax, eax),
            Sar32 => dynasm!(self.a ; .arch x64 ; sarx eax, eax, Rd(ry) ; movsxd rax, eax),
            SetLtU => dynasm!(self.a ; .arch x64 ; cmp rax, Rq(ry) ; setb al ; movzx eax, al),
            SetLtS => dynasm!(self.a ; .arch x64 ; cmp rax, Rq(ry) ; setl al ; movzx eax, al),
            // andn d, s1, s2 = !s1 & s2.
            AndInv => dynasm!(self.a ; .arch x64 ; andn rax, Rq(ry), rax),
            // x | !y = !(!x & y).
            OrInv => dynasm!(self.a ; .arch x64 ; andn rax, rax, Rq(ry) ; not rax),
            Xnor => dynasm!(self.a ; .arch x64 ; xor rax, Rq(ry) ; not rax),
            Max => dynasm!(self.a ; .arch x64 ; cmp rax, Rq(ry) ; cmovl rax, Rq(ry)),
            MaxU => dynasm!(self.a ; .arch x64 ; cmp rax, Rq(ry) ; cmovb rax, Rq(ry)),
            Min => dynasm!(self.a ; .arch x64 ; cmp rax, Rq(ry) ; cmovg rax, Rq(ry)),
            MinU => dynasm!(self.a ; .arch x64 ; cmp rax, Rq(ry) ; cmova rax, Rq(ry)),
            // The borrowing operations never come here (see `bin`).
            DivU32 | DivS32 | RemU32 | RemS32 | DivU64 | DivS64 | RemU64 | RemS64 | MulUpperSS
            | MulUpperUU | MulUpperSU | RotL64 | RotL32 | RotR64 | RotR32 => {
                return self.bin_borrow(op, d, x, Src::R(guest_of(ry)));
            }
        }
        self.put(d, RAX);
    }

    /// `reg[d] = x OP y` computed as `rax = rax OP rcx` with `rdx` free:
    /// the guest registers in `rcx` and `rdx` are saved to their context
    /// slots around it.
    fn bin_borrow(&mut self, op: Bin, d: u8, x: Src, y: Src) {
        // Operands are read before rcx and rdx are overwritten.
        self.load_to(RAX, x);
        dynasm!(self.a
            ; .arch x64
            ; mov QWORD [r15 + reg_off(guest_of(RCX))], rcx
            ; mov QWORD [r15 + reg_off(guest_of(RDX))], rdx
        );
        self.load_to(RCX, y);
        let done = self.new_label();
        match op {
            Bin::Add32 => dynasm!(self.a ; .arch x64 ; add eax, ecx ; movsxd rax, eax),
            Bin::Sub32 => dynasm!(self.a ; .arch x64 ; sub eax, ecx ; movsxd rax, eax),
            Bin::Mul32 => dynasm!(self.a ; .arch x64 ; imul eax, ecx ; movsxd rax, eax),
            Bin::DivU32 => {
                dynasm!(self.a ; .arch x64 ; mov rdx, -1 ; test ecx, ecx ; cmovz rax, rdx);
                self.jcc(cc::E, done);
                dynasm!(self.a ; .arch x64 ; xor edx, edx ; div ecx ; movsxd rax, eax);
            }
            Bin::DivS32 => {
                let go = self.new_label();
                dynasm!(self.a ; .arch x64 ; mov rdx, -1 ; test ecx, ecx ; cmovz rax, rdx);
                self.jcc(cc::E, done);
                dynasm!(self.a ; .arch x64 ; cmp ecx, -1);
                self.jcc(cc::NE, go);
                dynasm!(self.a ; .arch x64 ; cmp eax, i32::MIN);
                self.jcc(cc::NE, go);
                dynasm!(self.a ; .arch x64 ; movsxd rax, eax);
                self.jmp(done);
                self.bind(go);
                dynasm!(self.a ; .arch x64 ; cdq ; idiv ecx ; movsxd rax, eax);
            }
            Bin::RemU32 => {
                let zero = self.new_label();
                dynasm!(self.a ; .arch x64 ; test ecx, ecx);
                self.jcc(cc::E, zero);
                dynasm!(self.a ; .arch x64 ; xor edx, edx ; div ecx ; mov eax, edx);
                self.bind(zero);
                dynasm!(self.a ; .arch x64 ; movsxd rax, eax);
            }
            Bin::RemS32 => {
                let (go, zero) = (self.new_label(), self.new_label());
                dynasm!(self.a ; .arch x64 ; test ecx, ecx);
                self.jcc(cc::E, zero);
                dynasm!(self.a ; .arch x64 ; cmp ecx, -1);
                self.jcc(cc::NE, go);
                dynasm!(self.a ; .arch x64 ; xor eax, eax);
                self.jmp(zero);
                self.bind(go);
                dynasm!(self.a ; .arch x64 ; cdq ; idiv ecx ; mov eax, edx);
                self.bind(zero);
                dynasm!(self.a ; .arch x64 ; movsxd rax, eax);
            }
            Bin::Shl32 => dynasm!(self.a ; .arch x64 ; shl eax, cl ; movsxd rax, eax),
            Bin::Shr32 => dynasm!(self.a ; .arch x64 ; shr eax, cl ; movsxd rax, eax),
            Bin::Sar32 => dynasm!(self.a ; .arch x64 ; sar eax, cl ; movsxd rax, eax),
            Bin::Add64 => dynasm!(self.a ; .arch x64 ; add rax, rcx),
            Bin::Sub64 => dynasm!(self.a ; .arch x64 ; sub rax, rcx),
            Bin::Mul64 => dynasm!(self.a ; .arch x64 ; imul rax, rcx),
            Bin::DivU64 => {
                dynasm!(self.a ; .arch x64 ; mov rdx, -1 ; test rcx, rcx ; cmovz rax, rdx);
                self.jcc(cc::E, done);
                dynasm!(self.a ; .arch x64 ; xor edx, edx ; div rcx);
            }
            Bin::DivS64 => {
                let go = self.new_label();
                dynasm!(self.a ; .arch x64 ; mov rdx, -1 ; test rcx, rcx ; cmovz rax, rdx);
                self.jcc(cc::E, done);
                dynasm!(self.a ; .arch x64 ; cmp rcx, -1);
                self.jcc(cc::NE, go);
                dynasm!(self.a ; .arch x64 ; neg rax);
                self.jmp(done);
                self.bind(go);
                dynasm!(self.a ; .arch x64 ; cqo ; idiv rcx);
            }
            Bin::RemU64 => {
                dynasm!(self.a ; .arch x64 ; test rcx, rcx);
                self.jcc(cc::E, done);
                dynasm!(self.a ; .arch x64 ; xor edx, edx ; div rcx ; mov rax, rdx);
            }
            Bin::RemS64 => {
                let go = self.new_label();
                dynasm!(self.a ; .arch x64 ; test rcx, rcx);
                self.jcc(cc::E, done);
                dynasm!(self.a ; .arch x64 ; cmp rcx, -1);
                self.jcc(cc::NE, go);
                dynasm!(self.a ; .arch x64 ; xor eax, eax);
                self.jmp(done);
                self.bind(go);
                dynasm!(self.a ; .arch x64 ; cqo ; idiv rcx ; mov rax, rdx);
            }
            Bin::Shl64 => dynasm!(self.a ; .arch x64 ; shl rax, cl),
            Bin::Shr64 => dynasm!(self.a ; .arch x64 ; shr rax, cl),
            Bin::Sar64 => dynasm!(self.a ; .arch x64 ; sar rax, cl),
            Bin::And => dynasm!(self.a ; .arch x64 ; and rax, rcx),
            Bin::Xor => dynasm!(self.a ; .arch x64 ; xor rax, rcx),
            Bin::Or => dynasm!(self.a ; .arch x64 ; or rax, rcx),
            Bin::MulUpperSS => dynasm!(self.a ; .arch x64 ; imul rcx ; mov rax, rdx),
            Bin::MulUpperUU => dynasm!(self.a ; .arch x64 ; mul rcx ; mov rax, rdx),
            // (signed a × unsigned b) >> 64 = mulhu(a, b) − (a < 0 ? b : 0).
            Bin::MulUpperSU => dynasm!(self.a ; .arch x64
                ; mov rdx, rax
                ; sar rdx, 63
                ; and rdx, rcx
                ; mov QWORD [r15 + TMP], rdx
                ; mul rcx
                ; sub rdx, QWORD [r15 + TMP]
                ; mov rax, rdx
            ),
            Bin::SetLtU => dynasm!(self.a ; .arch x64
                ; cmp rax, rcx ; setb al ; movzx eax, al),
            Bin::SetLtS => dynasm!(self.a ; .arch x64
                ; cmp rax, rcx ; setl al ; movzx eax, al),
            Bin::RotL64 => dynasm!(self.a ; .arch x64 ; rol rax, cl),
            Bin::RotL32 => dynasm!(self.a ; .arch x64 ; rol eax, cl ; movsxd rax, eax),
            Bin::RotR64 => dynasm!(self.a ; .arch x64 ; ror rax, cl),
            Bin::RotR32 => dynasm!(self.a ; .arch x64 ; ror eax, cl ; movsxd rax, eax),
            Bin::AndInv => dynasm!(self.a ; .arch x64 ; not rcx ; and rax, rcx),
            Bin::OrInv => dynasm!(self.a ; .arch x64 ; not rcx ; or rax, rcx),
            Bin::Xnor => dynasm!(self.a ; .arch x64 ; xor rax, rcx ; not rax),
            Bin::Max => dynasm!(self.a ; .arch x64 ; cmp rax, rcx ; cmovl rax, rcx),
            Bin::MaxU => dynasm!(self.a ; .arch x64 ; cmp rax, rcx ; cmovb rax, rcx),
            Bin::Min => dynasm!(self.a ; .arch x64 ; cmp rax, rcx ; cmovg rax, rcx),
            Bin::MinU => dynasm!(self.a ; .arch x64 ; cmp rax, rcx ; cmova rax, rcx),
        }
        self.bind(done);
        dynasm!(self.a
            ; .arch x64
            ; mov rcx, QWORD [r15 + reg_off(guest_of(RCX))]
            ; mov rdx, QWORD [r15 + reg_off(guest_of(RDX))]
        );
        self.put(d, RAX);
    }

    /// The common operations computed in place in the destination's host
    /// register (`d = x; d OP= y`), for `x` a register. False if `op` is
    /// not one of them.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn two_address(&mut self, op: Bin, d: u8, gx: u8, y: Src) -> bool {
        let wide32 = matches!(op, Add32 | Sub32 | Mul32 | Shl32 | Shr32 | Sar32);
        let simple = matches!(
            op,
            Add64 | Sub64 | And | Or | Xor | Mul64 | Add32 | Sub32 | Mul32
        );
        let shift = matches!(op, Shl32 | Shr32 | Sar32 | Shl64 | Shr64 | Sar64);
        let rx = host(gx);
        let hd = host(d);
        match y {
            Src::Imm(v) => {
                match op {
                    RotR64 => dynasm!(self.a ; .arch x64 ; rorx Rq(hd), Rq(rx), (v & 63) as i8),
                    RotR32 => dynasm!(self.a ; .arch x64
                        ; rorx Rd(hd), Rd(rx), (v & 31) as i8
                        ; movsxd Rq(hd), Rd(hd)
                    ),
                    // Additions without a copy: lea.
                    Add64 if rx != hd => enc::lea(&mut self.a, true, hd, rx, v as i32),
                    Add32 if rx != hd => {
                        enc::lea(&mut self.a, false, hd, rx, v as i32);
                        enc::movsxd_rr(&mut self.a, hd, hd);
                    }
                    _ if simple || shift => {
                        self.put(d, rx);
                        let v = v as i32;
                        let s64 = (v & 63) as i8;
                        let s32 = (v & 31) as i8;
                        match op {
                            Add64 => enc::alu_ri(&mut self.a, true, Alu::Add, hd, v),
                            Sub64 => enc::alu_ri(&mut self.a, true, Alu::Sub, hd, v),
                            And => enc::alu_ri(&mut self.a, true, Alu::And, hd, v),
                            Or => enc::alu_ri(&mut self.a, true, Alu::Or, hd, v),
                            Xor => enc::alu_ri(&mut self.a, true, Alu::Xor, hd, v),
                            Mul64 => dynasm!(self.a ; .arch x64 ; imul Rq(hd), Rq(hd), v),
                            Add32 => enc::alu_ri(&mut self.a, false, Alu::Add, hd, v),
                            Sub32 => enc::alu_ri(&mut self.a, false, Alu::Sub, hd, v),
                            Mul32 => dynasm!(self.a ; .arch x64 ; imul Rd(hd), Rd(hd), v),
                            Shl64 => enc::shift_ri(&mut self.a, true, Shift::Shl, hd, s64 as u8),
                            Shr64 => enc::shift_ri(&mut self.a, true, Shift::Shr, hd, s64 as u8),
                            Sar64 => enc::shift_ri(&mut self.a, true, Shift::Sar, hd, s64 as u8),
                            Shl32 => enc::shift_ri(&mut self.a, false, Shift::Shl, hd, s32 as u8),
                            Shr32 => enc::shift_ri(&mut self.a, false, Shift::Shr, hd, s32 as u8),
                            _ => enc::shift_ri(&mut self.a, false, Shift::Sar, hd, s32 as u8),
                        }
                        // A logical right shift by 1..=31 clears bit 31: the
                        // 32-bit result is already its own sign extension.
                        let sign_clear = op == Shr32 && s32 != 0;
                        if wide32 && !sign_clear {
                            enc::movsxd_rr(&mut self.a, hd, hd);
                        }
                    }
                    _ => return false,
                }
                true
            }
            Src::R(gy) => {
                let ry = host(gy);
                if shift {
                    // shlx/shrx/sarx: three operands, and they mask the
                    // count as the PVM does (mod 64, or mod 32).
                    match op {
                        Shl64 => dynasm!(self.a ; .arch x64 ; shlx Rq(hd), Rq(rx), Rq(ry)),
                        Shr64 => dynasm!(self.a ; .arch x64 ; shrx Rq(hd), Rq(rx), Rq(ry)),
                        Sar64 => dynasm!(self.a ; .arch x64 ; sarx Rq(hd), Rq(rx), Rq(ry)),
                        Shl32 => dynasm!(self.a ; .arch x64 ; shlx Rd(hd), Rd(rx), Rd(ry)),
                        Shr32 => dynasm!(self.a ; .arch x64 ; shrx Rd(hd), Rd(rx), Rd(ry)),
                        _ => dynasm!(self.a ; .arch x64 ; sarx Rd(hd), Rd(rx), Rd(ry)),
                    }
                    if wide32 {
                        dynasm!(self.a ; .arch x64 ; movsxd Rq(hd), Rd(hd));
                    }
                    return true;
                }
                if op == AndInv {
                    // andn d, s1, s2 = !s1 & s2.
                    dynasm!(self.a ; .arch x64 ; andn Rq(hd), Rq(ry), Rq(rx));
                    return true;
                }
                if !simple {
                    return false;
                }
                let mut operand = ry;
                if hd == ry && gx != gy {
                    // `d` is `y`: commutative operations take `x` as the
                    // operand; a subtraction goes through rax.
                    if matches!(op, Sub64 | Sub32) {
                        return false;
                    }
                    operand = rx;
                } else {
                    self.put(d, rx);
                }
                match op {
                    Add64 => enc::alu_rr(&mut self.a, true, Alu::Add, hd, operand),
                    Sub64 => enc::alu_rr(&mut self.a, true, Alu::Sub, hd, operand),
                    And => enc::alu_rr(&mut self.a, true, Alu::And, hd, operand),
                    Or => enc::alu_rr(&mut self.a, true, Alu::Or, hd, operand),
                    Xor => enc::alu_rr(&mut self.a, true, Alu::Xor, hd, operand),
                    Mul64 => dynasm!(self.a ; .arch x64 ; imul Rq(hd), Rq(operand)),
                    Add32 => enc::alu_rr(&mut self.a, false, Alu::Add, hd, operand),
                    Sub32 => enc::alu_rr(&mut self.a, false, Alu::Sub, hd, operand),
                    _ => dynasm!(self.a ; .arch x64 ; imul Rd(hd), Rd(operand)),
                }
                if wide32 {
                    enc::movsxd_rr(&mut self.a, hd, hd);
                }
                true
            }
        }
    }

    /// `reg[d] = f(reg[s])`, `f` computing from the second register into
    /// the first.
    fn unary(&mut self, d: u8, s: u8, f: impl FnOnce(&mut Assembler, u8, u8)) {
        f(&mut self.a, host(d), host(s));
    }

    /// `if (reg[c] == 0) == zero { reg[d] = v }`.
    fn cmov(&mut self, d: u8, v: Src, c: u8, zero: bool) {
        let rc = host(c);
        let hd = host(d);
        let rv = match v {
            Src::R(g) => host(g),
            Src::Imm(_) => {
                self.load_to(RAX, v);
                RAX
            }
        };
        dynasm!(self.a ; .arch x64 ; test Rq(rc), Rq(rc));
        if zero {
            dynasm!(self.a ; .arch x64 ; cmovz Rq(hd), Rq(rv));
        } else {
            dynasm!(self.a ; .arch x64 ; cmovnz Rq(hd), Rq(rv));
        }
    }

    /// A conditional branch `if reg[a] CC y goto target else goto i + 1`.
    fn branch(&mut self, i: usize, a: u8, y: Src, cond: Cc, target: u32) {
        let ra = host(a);
        match y {
            Src::R(b) => enc::alu_rr(&mut self.a, true, Alu::Cmp, ra, host(b)),
            // Against 0, `test` sets the same flags (CF = OF = 0) shorter.
            Src::Imm(0) => enc::test_self(&mut self.a, ra),
            Src::Imm(v) => enc::alu_ri(&mut self.a, true, Alu::Cmp, ra, v as i32),
        }
        let code = match cond {
            Cc::Eq => cc::E,
            Cc::Ne => cc::NE,
            Cc::LtU => cc::B,
            Cc::LeU => cc::BE,
            Cc::GeU => cc::AE,
            Cc::GtU => cc::A,
            Cc::LtS => cc::L,
            Cc::LeS => cc::LE,
            Cc::GeS => cc::GE,
            Cc::GtS => cc::G,
        };
        // The target is resolved by `finish`; not taken, the next
        // instruction's charge prologue follows (or what `finish` puts
        // after the last).
        self.op_deferred([0x0F, 0x80 | code], i, JCC, target);
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn emit(&mut self, i: usize, inst: I) {
        let r = |x: pvm_core::Reg| x.raw();
        use Bin::*;
        match inst {
            I::Trap(_) => self.panic(i),
            // The next instruction's charge prologue follows (or what
            // `finish` puts after the last).
            I::Fallthrough(_) => {}
            I::Jump(x) => self.jump(i, x.target),
            I::Unlikely(_) => {}
            I::Ecalli(x) => self.exit(i, exit_kind::HOST_CALL, x.imm),
            I::LoadImm64(x) => {
                dynasm!(self.a ; .arch x64 ; mov Rq(host(r(x.a))), QWORD x.imm as i64)
            }
            I::StoreImmU8(x) => self.store(Src::Imm(x.y), None, x.x, 1),
            I::StoreImmU16(x) => self.store(Src::Imm(x.y), None, x.x, 2),
            I::StoreImmU32(x) => self.store(Src::Imm(x.y), None, x.x, 4),
            I::StoreImmU64(x) => self.store(Src::Imm(x.y), None, x.x, 8),
            I::JumpInd(x) => {
                self.ea_reg(r(x.a), x.imm);
                dynasm!(self.a
                    ; .arch x64
                    ; mov DWORD [r15 + EXIT_IDX], i as i32
                );
                self.jmp(DJUMP);
            }
            I::LoadImm(x) => self.load_to(host(r(x.a)), Src::Imm(x.imm)),
            I::LoadU8(x) => self.load(r(x.a), None, x.imm, 1, false),
            I::LoadI8(x) => self.load(r(x.a), None, x.imm, 1, true),
            I::LoadU16(x) => self.load(r(x.a), None, x.imm, 2, false),
            I::LoadI16(x) => self.load(r(x.a), None, x.imm, 2, true),
            I::LoadU32(x) => self.load(r(x.a), None, x.imm, 4, false),
            I::LoadI32(x) => self.load(r(x.a), None, x.imm, 4, true),
            I::LoadU64(x) => self.load(r(x.a), None, x.imm, 8, false),
            I::StoreU8(x) => self.store(Src::R(r(x.a)), None, x.imm, 1),
            I::StoreU16(x) => self.store(Src::R(r(x.a)), None, x.imm, 2),
            I::StoreU32(x) => self.store(Src::R(r(x.a)), None, x.imm, 4),
            I::StoreU64(x) => self.store(Src::R(r(x.a)), None, x.imm, 8),
            I::StoreImmIndU8(x) => self.store(Src::Imm(x.y), Some(r(x.a)), x.x, 1),
            I::StoreImmIndU16(x) => self.store(Src::Imm(x.y), Some(r(x.a)), x.x, 2),
            I::StoreImmIndU32(x) => self.store(Src::Imm(x.y), Some(r(x.a)), x.x, 4),
            I::StoreImmIndU64(x) => self.store(Src::Imm(x.y), Some(r(x.a)), x.x, 8),
            I::LoadImmJump(x) => {
                // The register is written even when the jump then panics.
                self.load_to(host(r(x.a)), Src::Imm(x.imm));
                self.jump(i, x.target);
            }
            I::BranchEqImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::Eq, x.target),
            I::BranchNeImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::Ne, x.target),
            I::BranchLtUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LtU, x.target),
            I::BranchLeUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LeU, x.target),
            I::BranchGeUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GeU, x.target),
            I::BranchGtUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GtU, x.target),
            I::BranchLtSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LtS, x.target),
            I::BranchLeSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LeS, x.target),
            I::BranchGeSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GeS, x.target),
            I::BranchGtSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GtS, x.target),
            I::MoveReg(x) => self.put(r(x.d), host(r(x.a))),
            I::Sbrk(x) => {
                // A call into Rust: every guest register goes through the
                // context (the call clobbers the caller-saved ones).
                self.spill_all();
                dynasm!(self.a
                    ; .arch x64
                    ; lea rdi, [r15 + CTX]
                    ; mov rsi, QWORD [r15 + reg_off(r(x.a))]
                    ; mov rax, QWORD self.sbrk as i64
                    ; call rax
                    ; mov QWORD [r15 + reg_off(r(x.d))], rax
                );
                self.reload_all();
            }
            I::CountSetBits64(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; popcnt Rq(d), Rq(s)),
            ),
            I::CountSetBits32(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; popcnt Rd(d), Rd(s)),
            ),
            I::LeadingZeroBits64(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; lzcnt Rq(d), Rq(s)),
            ),
            I::LeadingZeroBits32(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; lzcnt Rd(d), Rd(s)),
            ),
            I::TrailingZeroBits64(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; tzcnt Rq(d), Rq(s)),
            ),
            I::TrailingZeroBits32(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; tzcnt Rd(d), Rd(s)),
            ),
            I::SignExtend8(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; movsx Rq(d), Rb(s)),
            ),
            I::SignExtend16(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; movsx Rq(d), Rw(s)),
            ),
            I::ZeroExtend16(x) => self.unary(
                r(x.d),
                r(x.a),
                |a, d, s| dynasm!(a ; .arch x64 ; movzx Rd(d), Rw(s)),
            ),
            I::ReverseBytes(x) => self.unary(r(x.d), r(x.a), |a, d, s| {
                if d != s {
                    dynasm!(a ; .arch x64 ; mov Rq(d), Rq(s));
                }
                dynasm!(a ; .arch x64 ; bswap Rq(d));
            }),
            I::StoreIndU8(x) => self.store(Src::R(r(x.a)), Some(r(x.b)), x.imm, 1),
            I::StoreIndU16(x) => self.store(Src::R(r(x.a)), Some(r(x.b)), x.imm, 2),
            I::StoreIndU32(x) => self.store(Src::R(r(x.a)), Some(r(x.b)), x.imm, 4),
            I::StoreIndU64(x) => self.store(Src::R(r(x.a)), Some(r(x.b)), x.imm, 8),
            I::LoadIndU8(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 1, false),
            I::LoadIndI8(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 1, true),
            I::LoadIndU16(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 2, false),
            I::LoadIndI16(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 2, true),
            I::LoadIndU32(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 4, false),
            I::LoadIndI32(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 4, true),
            I::LoadIndU64(x) => self.load(r(x.a), Some(r(x.b)), x.imm, 8, false),
            // a = f(reg[b], imm)
            I::AddImm32(x) => self.bin_inline(Add32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::AndImm(x) => self.bin_inline(And, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::XorImm(x) => self.bin_inline(Xor, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::OrImm(x) => self.bin_inline(Or, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::MulImm32(x) => self.bin(Mul32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::SetLtUImm(x) => self.bin(SetLtU, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::SetLtSImm(x) => self.bin(SetLtS, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::ShloLImm32(x) => self.bin(Shl32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::ShloRImm32(x) => self.bin(Shr32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::SharRImm32(x) => self.bin(Sar32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::NegAddImm32(x) => self.bin(Sub32, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::SetGtUImm(x) => self.bin(SetLtU, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::SetGtSImm(x) => self.bin(SetLtS, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::ShloLImmAlt32(x) => self.bin(Shl32, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::ShloRImmAlt32(x) => self.bin(Shr32, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::SharRImmAlt32(x) => self.bin(Sar32, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::CmovIzImm(x) => self.cmov(r(x.a), Src::Imm(x.imm), r(x.b), true),
            I::CmovNzImm(x) => self.cmov(r(x.a), Src::Imm(x.imm), r(x.b), false),
            I::AddImm64(x) => self.bin_inline(Add64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::MulImm64(x) => self.bin(Mul64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::ShloLImm64(x) => self.bin_inline(Shl64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::ShloRImm64(x) => self.bin_inline(Shr64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::SharRImm64(x) => self.bin_inline(Sar64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::NegAddImm64(x) => self.bin(Sub64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::ShloLImmAlt64(x) => self.bin(Shl64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::ShloRImmAlt64(x) => self.bin(Shr64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::SharRImmAlt64(x) => self.bin(Sar64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::RotR64Imm(x) => self.bin(RotR64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::RotR64ImmAlt(x) => self.bin(RotR64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::RotR32Imm(x) => self.bin(RotR32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::RotR32ImmAlt(x) => self.bin(RotR32, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::BranchEq(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::Eq, x.target),
            I::BranchNe(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::Ne, x.target),
            I::BranchLtU(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::LtU, x.target),
            I::BranchLtS(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::LtS, x.target),
            I::BranchGeU(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::GeU, x.target),
            I::BranchGeS(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::GeS, x.target),
            I::LoadImmJumpInd(x) => {
                // The target uses B before A is written (they may be one register).
                self.ea_reg(r(x.b), x.y);
                self.load_to(host(r(x.a)), Src::Imm(x.x));
                dynasm!(self.a
                    ; .arch x64
                    ; mov DWORD [r15 + EXIT_IDX], i as i32
                );
                self.jmp(DJUMP);
            }
            I::Add32(x) => self.three(Add32, x),
            I::Sub32(x) => self.three(Sub32, x),
            I::Mul32(x) => self.three(Mul32, x),
            I::DivU32(x) => self.three(DivU32, x),
            I::DivS32(x) => self.three(DivS32, x),
            I::RemU32(x) => self.three(RemU32, x),
            I::RemS32(x) => self.three(RemS32, x),
            I::ShloL32(x) => self.three(Shl32, x),
            I::ShloR32(x) => self.three(Shr32, x),
            I::SharR32(x) => self.three(Sar32, x),
            I::Add64(x) => self.bin_inline(Add64, x.d.raw(), Src::R(x.a.raw()), Src::R(x.b.raw())),
            I::Sub64(x) => self.bin_inline(Sub64, x.d.raw(), Src::R(x.a.raw()), Src::R(x.b.raw())),
            I::Mul64(x) => self.three(Mul64, x),
            I::DivU64(x) => self.three(DivU64, x),
            I::DivS64(x) => self.three(DivS64, x),
            I::RemU64(x) => self.three(RemU64, x),
            I::RemS64(x) => self.three(RemS64, x),
            I::ShloL64(x) => self.three(Shl64, x),
            I::ShloR64(x) => self.three(Shr64, x),
            I::SharR64(x) => self.three(Sar64, x),
            I::And(x) => self.bin_inline(And, x.d.raw(), Src::R(x.a.raw()), Src::R(x.b.raw())),
            I::Xor(x) => self.bin_inline(Xor, x.d.raw(), Src::R(x.a.raw()), Src::R(x.b.raw())),
            I::Or(x) => self.bin_inline(Or, x.d.raw(), Src::R(x.a.raw()), Src::R(x.b.raw())),
            I::MulUpperSS(x) => self.three(MulUpperSS, x),
            I::MulUpperUU(x) => self.three(MulUpperUU, x),
            I::MulUpperSU(x) => self.three(MulUpperSU, x),
            I::SetLtU(x) => self.three(SetLtU, x),
            I::SetLtS(x) => self.three(SetLtS, x),
            I::CmovIz(x) => self.cmov(r(x.d), Src::R(r(x.a)), r(x.b), true),
            I::CmovNz(x) => self.cmov(r(x.d), Src::R(r(x.a)), r(x.b), false),
            I::RotL64(x) => self.three(RotL64, x),
            I::RotL32(x) => self.three(RotL32, x),
            I::RotR64(x) => self.three(RotR64, x),
            I::RotR32(x) => self.three(RotR32, x),
            I::AndInv(x) => self.three(AndInv, x),
            I::OrInv(x) => self.three(OrInv, x),
            I::Xnor(x) => self.three(Xnor, x),
            I::Max(x) => self.three(Max, x),
            I::MaxU(x) => self.three(MaxU, x),
            I::Min(x) => self.three(Min, x),
            I::MinU(x) => self.three(MinU, x),
        }
    }

    /// `eax` = `reg[b] + sext(imm)` (mod 2^32), for dynamic jumps.
    fn ea_reg(&mut self, b: u8, imm: u32) {
        // With a base register the address is always in eax.
        let _ = self.ea(Some(b), imm);
    }

    fn three(&mut self, op: Bin, x: pvm_core::isa::ThreeReg) {
        self.bin(op, x.d.raw(), Src::R(x.a.raw()), Src::R(x.b.raw()));
    }
}

#[derive(Clone, Copy)]
enum Cc {
    Eq,
    Ne,
    LtU,
    LeU,
    GeU,
    GtU,
    LtS,
    LeS,
    GeS,
    GtS,
}
