//! One linear pass from a [`Program`]'s instructions to x86-64 code.
//!
//! Machine state while guest code runs: `r15` = the [`Ctx`] (guest
//! registers, gas, exit slots), `r14` = the base of the guest memory window;
//! `rax`, `rcx`, `rdx`, `rsi` are scratch. Guest registers live in the
//! context, so a fault or exit needs no register spilling and the signal
//! handler only has to redirect `rip`. The stack pointer does not move inside
//! guest code (the entry aligns it to 16 once), which lets the fault stub
//! jump straight to the common epilogue.
//!
//! Layout, per instruction `i` in code order: if `i` starts a gas block, a
//! charge prologue (`charge[i]`: `gas -= cost`, out-of-gas if it would
//! borrow), then the body (`body[i]`, whose offset is recorded in `starts`).
//! Static jumps go to the target's charge prologue, exactly as the
//! interpreter's terminators charge the block they enter; the Rust side enters
//! at a body after charging itself. Code after a block's terminator is never
//! reached by falling through, because every terminator jumps or exits.
//! Out-of-line stubs (out-of-gas per block, the shared exits) come after all
//! bodies and contain no guest memory access, so a faulting native offset
//! always falls inside the body of the instruction that faulted.

use super::{exit_kind, Ctx};
use core::mem::offset_of;
use dynasmrt::{dynasm, x64::Assembler, AssemblyOffset, DynamicLabel, DynasmApi, DynasmLabelApi};
use pvm_core::isa::{sext, Instruction as I};
use pvm_core::program::INVALID_TARGET;
use pvm_core::{Error, Profile, Program};

/// The compiled code and what the runtime needs to find its way in it.
pub(super) struct Code {
    pub buf: dynasmrt::ExecutableBuffer,
    /// Native offset of each instruction's body.
    pub starts: Vec<u32>,
    /// Native offset of the charge prologue of each jump-table entry (or of
    /// the invalid-entry stub).
    pub jump_table: Vec<u32>,
    /// Native offset of the entry trampoline.
    pub entry: u32,
    /// Native offset of the page-fault stub the signal handler resumes at.
    pub fault_stub: u32,
}

const fn reg_off(r: u8) -> i32 {
    (offset_of!(Ctx, regs) + 8 * r as usize) as i32
}
const GAS: i32 = offset_of!(Ctx, gas) as i32;
const EXIT_IDX: i32 = offset_of!(Ctx, exit_idx) as i32;
const EXIT_ARG: i32 = offset_of!(Ctx, exit_arg) as i32;
const JT_PTR: i32 = offset_of!(Ctx, jt_ptr) as i32;
const JT_LEN: i32 = offset_of!(Ctx, jt_len) as i32;

/// The binary operations, computed as `rax = rax OP rcx`.
#[derive(Clone, Copy)]
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

/// An operand: a guest register or a (sign-extended) immediate.
#[derive(Clone, Copy)]
enum Src {
    R(u8),
    Imm(u32),
}

struct Emitter<'p> {
    a: Assembler,
    p: &'p Program,
    charge: Vec<Option<DynamicLabel>>,
    epilogue: DynamicLabel,
    djump: DynamicLabel,
    panic_common: DynamicLabel,
    oog_stubs: Vec<(DynamicLabel, u32)>,
}

pub(super) fn compile(p: &Program, sbrk: usize) -> Result<Code, Error> {
    let n = p.instructions().len();
    let mut a = Assembler::new().map_err(|_| Error::Unsupported("cannot allocate JIT code"))?;
    let epilogue = a.new_dynamic_label();
    let djump = a.new_dynamic_label();
    let panic_common = a.new_dynamic_label();
    let mut charge = vec![None; n];
    for b in 0..p.block_count() {
        charge[p.block_start(b)] = Some(a.new_dynamic_label());
    }
    let mut e = Emitter {
        a,
        p,
        charge,
        epilogue,
        djump,
        panic_common,
        oog_stubs: Vec::new(),
    };

    // Entry trampoline: extern "sysv64" fn(ctx, mem_base, target) -> u32.
    let entry = e.a.offset().0 as u32;
    dynasm!(e.a
        ; .arch x64
        ; push rbx
        ; push rbp
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        ; sub rsp, 8
        ; mov r15, rdi
        ; mov r14, rsi
        ; jmp rdx
    );

    let mut starts = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(l) = e.charge[i] {
            e.emit_charge(i, l);
        }
        starts.push(e.a.offset().0 as u32);
        e.emit(i, sbrk)?;
    }

    // Out-of-line stubs.
    for (l, idx) in core::mem::take(&mut e.oog_stubs) {
        dynasm!(e.a
            ; .arch x64
            ; =>l
            ; mov DWORD [r15 + EXIT_IDX], idx as i32
            ; mov eax, exit_kind::OUT_OF_GAS as i32
            ; jmp =>epilogue
        );
    }
    // Dynamic jump: eax = address, EXIT_IDX = the jumping instruction.
    let halt = e.a.new_dynamic_label();
    dynasm!(e.a
        ; .arch x64
        ; =>djump
        ; cmp eax, 0xFFFF_0000u32 as i32
        ; je =>halt
        ; test eax, 1
        ; jnz =>panic_common
        ; shr eax, 1
        ; sub eax, 1
        ; cmp rax, QWORD [r15 + JT_LEN]
        ; jae =>panic_common
        ; mov rcx, QWORD [r15 + JT_PTR]
        ; jmp QWORD [rcx + rax * 8]
        ; =>halt
        ; mov eax, exit_kind::HALT as i32
        ; jmp =>epilogue
    );
    let invalid_entry = e.a.offset().0 as u32;
    dynasm!(e.a
        ; .arch x64
        ; =>panic_common
        ; mov eax, exit_kind::PANIC as i32
        ; jmp =>epilogue
    );
    let fault_stub = e.a.offset().0 as u32;
    dynasm!(e.a
        ; .arch x64
        ; mov eax, exit_kind::PAGE_FAULT as i32
        ; =>epilogue
        ; add rsp, 8
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbp
        ; pop rbx
        ; ret
    );

    // Jump table: labels resolve once the code is final, so record the
    // label of each entry and read offsets after commit.
    let jt_labels: Vec<Option<DynamicLabel>> = p
        .jump_table_targets()
        .iter()
        .map(|&t| {
            if t == INVALID_TARGET {
                Ok(None)
            } else {
                // Entries are in ϖ, which always start a gas block.
                e.charge[t as usize].map(Some).ok_or(Error::Unsupported(
                    "JIT: a jump-table entry that does not start a gas block",
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    e.a.commit()
        .map_err(|_| Error::Unsupported("JIT label resolution failed"))?;
    let mut jump_table = Vec::with_capacity(jt_labels.len());
    for l in jt_labels {
        let off = match l {
            Some(l) => {
                e.a.labels()
                    .resolve_dynamic(l)
                    .map_err(|_| Error::Unsupported("JIT label resolution failed"))?
                    .0 as u32
            }
            None => invalid_entry,
        };
        jump_table.push(off);
    }
    let buf =
        e.a.finalize()
            .map_err(|_| Error::Unsupported("cannot finalize JIT code"))?;
    Ok(Code {
        buf,
        starts,
        jump_table,
        entry,
        fault_stub,
    })
}

/// The native address of `off` in `buf`.
pub(super) fn addr(buf: &dynasmrt::ExecutableBuffer, off: u32) -> *const u8 {
    buf.ptr(AssemblyOffset(off as usize))
}

impl Emitter<'_> {
    fn emit_charge(&mut self, i: usize, l: DynamicLabel) {
        let cost = self.p.block_cost(self.p.block_of(i));
        let oog = self.a.new_dynamic_label();
        self.oog_stubs.push((oog, i as u32));
        dynasm!(self.a ; .arch x64 ; =>l ; mov rax, QWORD [r15 + GAS]);
        if let Ok(c) = i32::try_from(cost) {
            dynasm!(self.a ; .arch x64 ; sub rax, c);
        } else {
            dynasm!(self.a ; .arch x64 ; mov rcx, QWORD cost as i64 ; sub rax, rcx);
        }
        dynasm!(self.a
            ; .arch x64
            ; jb =>oog
            ; mov QWORD [r15 + GAS], rax
        );
    }

    fn exit(&mut self, i: usize, kind: u32, arg: u32) {
        dynasm!(self.a
            ; .arch x64
            ; mov DWORD [r15 + EXIT_IDX], i as i32
            ; mov DWORD [r15 + EXIT_ARG], arg as i32
            ; mov eax, kind as i32
            ; jmp =>self.epilogue
        );
    }

    fn panic(&mut self, i: usize) {
        dynasm!(self.a
            ; .arch x64
            ; mov DWORD [r15 + EXIT_IDX], i as i32
            ; jmp =>self.panic_common
        );
    }

    /// Jumps to the charge prologue of block-starting instruction `t`.
    fn goto(&mut self, t: usize) -> Result<(), Error> {
        let l = self
            .charge
            .get(t)
            .copied()
            .flatten()
            .ok_or(Error::Unsupported(
                "JIT: a jump target that does not start a gas block",
            ))?;
        dynasm!(self.a ; .arch x64 ; jmp =>l);
        Ok(())
    }

    /// `eax` = the effective address `reg[b] + sext(imm)` (mod 2^32).
    fn ea(&mut self, base: Option<u8>, imm: u32) {
        match base {
            Some(b) => {
                dynasm!(self.a ; .arch x64 ; mov eax, DWORD [r15 + reg_off(b)]);
                if imm != 0 {
                    dynasm!(self.a ; .arch x64 ; add eax, imm as i32);
                }
            }
            None => dynasm!(self.a ; .arch x64 ; mov eax, imm as i32),
        }
    }

    fn load(&mut self, dst: u8, base: Option<u8>, imm: u32, size: u8, signed: bool) {
        self.ea(base, imm);
        match (size, signed) {
            (1, false) => dynasm!(self.a ; .arch x64 ; movzx ecx, BYTE [r14 + rax]),
            (1, true) => dynasm!(self.a ; .arch x64 ; movsx rcx, BYTE [r14 + rax]),
            (2, false) => dynasm!(self.a ; .arch x64 ; movzx ecx, WORD [r14 + rax]),
            (2, true) => dynasm!(self.a ; .arch x64 ; movsx rcx, WORD [r14 + rax]),
            (4, false) => dynasm!(self.a ; .arch x64 ; mov ecx, DWORD [r14 + rax]),
            (4, true) => dynasm!(self.a ; .arch x64 ; movsxd rcx, DWORD [r14 + rax]),
            _ => dynasm!(self.a ; .arch x64 ; mov rcx, QWORD [r14 + rax]),
        }
        dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + reg_off(dst)], rcx);
    }

    fn store(&mut self, src: Src, base: Option<u8>, imm: u32, size: u8) {
        self.ea(base, imm);
        match src {
            Src::R(r) => {
                dynasm!(self.a ; .arch x64 ; mov rcx, QWORD [r15 + reg_off(r)]);
                match size {
                    1 => dynasm!(self.a ; .arch x64 ; mov BYTE [r14 + rax], cl),
                    2 => dynasm!(self.a ; .arch x64 ; mov WORD [r14 + rax], cx),
                    4 => dynasm!(self.a ; .arch x64 ; mov DWORD [r14 + rax], ecx),
                    _ => dynasm!(self.a ; .arch x64 ; mov QWORD [r14 + rax], rcx),
                }
            }
            Src::Imm(v) => match size {
                1 => dynasm!(self.a ; .arch x64 ; mov BYTE [r14 + rax], v as u8 as i8),
                2 => dynasm!(self.a ; .arch x64 ; mov WORD [r14 + rax], v as u16 as i16),
                4 => dynasm!(self.a ; .arch x64 ; mov DWORD [r14 + rax], v as i32),
                _ => dynasm!(self.a ; .arch x64 ; mov QWORD [r14 + rax], v as i32),
            },
        }
    }

    fn load_src(&mut self, s: Src, rcx: bool) {
        match (s, rcx) {
            (Src::R(r), false) => dynasm!(self.a ; .arch x64 ; mov rax, QWORD [r15 + reg_off(r)]),
            (Src::R(r), true) => dynasm!(self.a ; .arch x64 ; mov rcx, QWORD [r15 + reg_off(r)]),
            (Src::Imm(v), false) => dynasm!(self.a ; .arch x64 ; mov rax, QWORD sext(v) as i64),
            (Src::Imm(v), true) => dynasm!(self.a ; .arch x64 ; mov rcx, QWORD sext(v) as i64),
        }
    }

    /// `reg[d] = x OP y`.
    fn bin(&mut self, op: Bin, d: u8, x: Src, y: Src) {
        // Common register-immediate forms take the immediate directly
        // (x86 sign-extends imm32, as the PVM does).
        if let (Src::R(_), Src::Imm(v)) = (x, y) {
            let v = v as i32;
            let direct = matches!(
                op,
                Bin::Add64
                    | Bin::Sub64
                    | Bin::And
                    | Bin::Xor
                    | Bin::Or
                    | Bin::Mul64
                    | Bin::Add32
                    | Bin::Sub32
                    | Bin::Mul32
            );
            if direct {
                self.load_src(x, false);
                match op {
                    Bin::Add64 => dynasm!(self.a ; .arch x64 ; add rax, v),
                    Bin::Sub64 => dynasm!(self.a ; .arch x64 ; sub rax, v),
                    Bin::And => dynasm!(self.a ; .arch x64 ; and rax, v),
                    Bin::Xor => dynasm!(self.a ; .arch x64 ; xor rax, v),
                    Bin::Or => dynasm!(self.a ; .arch x64 ; or rax, v),
                    Bin::Mul64 => dynasm!(self.a ; .arch x64 ; imul rax, rax, v),
                    Bin::Add32 => dynasm!(self.a ; .arch x64 ; add eax, v ; movsxd rax, eax),
                    Bin::Sub32 => dynasm!(self.a ; .arch x64 ; sub eax, v ; movsxd rax, eax),
                    _ => dynasm!(self.a ; .arch x64 ; imul eax, eax, v ; movsxd rax, eax),
                }
                dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + reg_off(d)], rax);
                return;
            }
        }
        self.load_src(x, false);
        self.load_src(y, true);
        let done = self.a.new_dynamic_label();
        match op {
            Bin::Add32 => dynasm!(self.a ; .arch x64 ; add eax, ecx ; movsxd rax, eax),
            Bin::Sub32 => dynasm!(self.a ; .arch x64 ; sub eax, ecx ; movsxd rax, eax),
            Bin::Mul32 => dynasm!(self.a ; .arch x64 ; imul eax, ecx ; movsxd rax, eax),
            Bin::DivU32 => dynasm!(self.a ; .arch x64
                ; mov rdx, -1
                ; test ecx, ecx
                ; cmovz rax, rdx
                ; jz =>done
                ; xor edx, edx
                ; div ecx
                ; movsxd rax, eax
            ),
            Bin::DivS32 => dynasm!(self.a ; .arch x64
                ; mov rdx, -1
                ; test ecx, ecx
                ; cmovz rax, rdx
                ; jz =>done
                ; cmp ecx, -1
                ; jne >go
                ; cmp eax, i32::MIN
                ; jne >go
                ; movsxd rax, eax
                ; jmp =>done
                ; go:
                ; cdq
                ; idiv ecx
                ; movsxd rax, eax
            ),
            Bin::RemU32 => dynasm!(self.a ; .arch x64
                ; test ecx, ecx
                ; jz >zero
                ; xor edx, edx
                ; div ecx
                ; mov eax, edx
                ; zero:
                ; movsxd rax, eax
            ),
            Bin::RemS32 => dynasm!(self.a ; .arch x64
                ; test ecx, ecx
                ; jz >zero
                ; cmp ecx, -1
                ; jne >go
                ; xor eax, eax
                ; jmp >zero
                ; go:
                ; cdq
                ; idiv ecx
                ; mov eax, edx
                ; zero:
                ; movsxd rax, eax
            ),
            Bin::Shl32 => dynasm!(self.a ; .arch x64 ; shl eax, cl ; movsxd rax, eax),
            Bin::Shr32 => dynasm!(self.a ; .arch x64 ; shr eax, cl ; movsxd rax, eax),
            Bin::Sar32 => dynasm!(self.a ; .arch x64 ; sar eax, cl ; movsxd rax, eax),
            Bin::Add64 => dynasm!(self.a ; .arch x64 ; add rax, rcx),
            Bin::Sub64 => dynasm!(self.a ; .arch x64 ; sub rax, rcx),
            Bin::Mul64 => dynasm!(self.a ; .arch x64 ; imul rax, rcx),
            Bin::DivU64 => dynasm!(self.a ; .arch x64
                ; mov rdx, -1
                ; test rcx, rcx
                ; cmovz rax, rdx
                ; jz =>done
                ; xor edx, edx
                ; div rcx
            ),
            Bin::DivS64 => dynasm!(self.a ; .arch x64
                ; mov rdx, -1
                ; test rcx, rcx
                ; cmovz rax, rdx
                ; jz =>done
                ; cmp rcx, -1
                ; jne >go
                ; neg rax
                ; jmp =>done
                ; go:
                ; cqo
                ; idiv rcx
            ),
            Bin::RemU64 => dynasm!(self.a ; .arch x64
                ; test rcx, rcx
                ; jz =>done
                ; xor edx, edx
                ; div rcx
                ; mov rax, rdx
            ),
            Bin::RemS64 => dynasm!(self.a ; .arch x64
                ; test rcx, rcx
                ; jz =>done
                ; cmp rcx, -1
                ; jne >go
                ; xor eax, eax
                ; jmp =>done
                ; go:
                ; cqo
                ; idiv rcx
                ; mov rax, rdx
            ),
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
                ; mov rsi, rax
                ; mul rcx
                ; sar rsi, 63
                ; and rsi, rcx
                ; sub rdx, rsi
                ; mov rax, rdx
            ),
            Bin::SetLtU => dynasm!(self.a ; .arch x64
                ; xor edx, edx ; cmp rax, rcx ; setb dl ; mov rax, rdx),
            Bin::SetLtS => dynasm!(self.a ; .arch x64
                ; xor edx, edx ; cmp rax, rcx ; setl dl ; mov rax, rdx),
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
        dynasm!(self.a
            ; .arch x64
            ; =>done
            ; mov QWORD [r15 + reg_off(d)], rax
        );
    }

    /// `reg[d] = f(reg[s])`.
    fn unary(&mut self, d: u8, s: u8, f: impl FnOnce(&mut Assembler)) {
        dynasm!(self.a ; .arch x64 ; mov rax, QWORD [r15 + reg_off(s)]);
        f(&mut self.a);
        dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + reg_off(d)], rax);
    }

    /// `if (reg[c] == 0) == zero { reg[d] = v }`.
    fn cmov(&mut self, d: u8, v: Src, c: u8, zero: bool) {
        self.load_src(v, false);
        dynasm!(self.a
            ; .arch x64
            ; mov rdx, QWORD [r15 + reg_off(d)]
            ; cmp QWORD [r15 + reg_off(c)], 0
        );
        if zero {
            dynasm!(self.a ; .arch x64 ; cmovz rdx, rax);
        } else {
            dynasm!(self.a ; .arch x64 ; cmovnz rdx, rax);
        }
        dynasm!(self.a ; .arch x64 ; mov QWORD [r15 + reg_off(d)], rdx);
    }

    /// A conditional branch `if reg[a] CC y goto target else goto i + 1`.
    fn branch(&mut self, i: usize, a: u8, y: Src, cc: Cc) -> Result<(), Error> {
        let target = self.p.static_target(i);
        if target == INVALID_TARGET && self.p.profile() == Profile::V0_8 {
            // 0.8: a branch with an invalid target or fall-through panics.
            self.panic(i);
            return Ok(());
        }
        dynasm!(self.a ; .arch x64 ; mov rax, QWORD [r15 + reg_off(a)]);
        match y {
            Src::R(b) => dynasm!(self.a ; .arch x64 ; cmp rax, QWORD [r15 + reg_off(b)]),
            Src::Imm(v) => dynasm!(self.a ; .arch x64 ; cmp rax, v as i32),
        }
        let taken = self.a.new_dynamic_label();
        match cc {
            Cc::Eq => dynasm!(self.a ; .arch x64 ; je =>taken),
            Cc::Ne => dynasm!(self.a ; .arch x64 ; jne =>taken),
            Cc::LtU => dynasm!(self.a ; .arch x64 ; jb =>taken),
            Cc::LeU => dynasm!(self.a ; .arch x64 ; jbe =>taken),
            Cc::GeU => dynasm!(self.a ; .arch x64 ; jae =>taken),
            Cc::GtU => dynasm!(self.a ; .arch x64 ; ja =>taken),
            Cc::LtS => dynasm!(self.a ; .arch x64 ; jl =>taken),
            Cc::LeS => dynasm!(self.a ; .arch x64 ; jle =>taken),
            Cc::GeS => dynasm!(self.a ; .arch x64 ; jge =>taken),
            Cc::GtS => dynasm!(self.a ; .arch x64 ; jg =>taken),
        }
        self.goto(i + 1)?;
        dynasm!(self.a ; .arch x64 ; =>taken);
        if target == INVALID_TARGET {
            // 0.7: only the taken path is invalid.
            self.panic(i);
        } else {
            self.goto(target as usize)?;
        }
        Ok(())
    }

    fn emit(&mut self, i: usize, sbrk: usize) -> Result<(), Error> {
        let p = self.p;
        if p.is_implicit_trap(i) {
            self.panic(i);
            return Ok(());
        }
        let inst = p.instructions()[i];
        let r = |x: pvm_core::Reg| x.raw();
        use Bin::*;
        match inst {
            I::Trap(_) => self.panic(i),
            I::Fallthrough(_) => {
                let t = p.static_target(i);
                if t == INVALID_TARGET {
                    self.panic(i);
                } else {
                    self.goto(t as usize)?;
                }
            }
            I::Unlikely(_) => {}
            I::Ecalli(x) => self.exit(i, exit_kind::HOST_CALL, x.imm),
            I::LoadImm64(x) => dynasm!(self.a
                ; .arch x64
                ; mov rax, QWORD x.imm as i64
                ; mov QWORD [r15 + reg_off(r(x.a))], rax
            ),
            I::StoreImmU8(x) => self.store(Src::Imm(x.y), None, x.x, 1),
            I::StoreImmU16(x) => self.store(Src::Imm(x.y), None, x.x, 2),
            I::StoreImmU32(x) => self.store(Src::Imm(x.y), None, x.x, 4),
            I::StoreImmU64(x) => self.store(Src::Imm(x.y), None, x.x, 8),
            I::Jump(_) => {
                let t = p.static_target(i);
                if t == INVALID_TARGET {
                    self.panic(i);
                } else {
                    self.goto(t as usize)?;
                }
            }
            I::JumpInd(x) => {
                self.ea(Some(r(x.a)), x.imm);
                dynasm!(self.a
                    ; .arch x64
                    ; mov DWORD [r15 + EXIT_IDX], i as i32
                    ; jmp =>self.djump
                );
            }
            I::LoadImm(x) => dynasm!(self.a
                ; .arch x64
                ; mov QWORD [r15 + reg_off(r(x.a))], x.imm as i32
            ),
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
                dynasm!(self.a
                    ; .arch x64
                    ; mov QWORD [r15 + reg_off(r(x.a))], x.imm as i32
                );
                let t = p.static_target(i);
                if t == INVALID_TARGET {
                    // The register is written, then the jump panics here.
                    self.panic(i);
                } else {
                    self.goto(t as usize)?;
                }
            }
            I::BranchEqImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::Eq)?,
            I::BranchNeImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::Ne)?,
            I::BranchLtUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LtU)?,
            I::BranchLeUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LeU)?,
            I::BranchGeUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GeU)?,
            I::BranchGtUImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GtU)?,
            I::BranchLtSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LtS)?,
            I::BranchLeSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::LeS)?,
            I::BranchGeSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GeS)?,
            I::BranchGtSImm(x) => self.branch(i, r(x.a), Src::Imm(x.imm), Cc::GtS)?,
            I::MoveReg(x) => self.unary(r(x.d), r(x.a), |_| {}),
            I::Sbrk(x) => {
                dynasm!(self.a
                    ; .arch x64
                    ; mov rdi, r15
                    ; mov rsi, QWORD [r15 + reg_off(r(x.a))]
                    ; mov rax, QWORD sbrk as i64
                    ; call rax
                    ; mov QWORD [r15 + reg_off(r(x.d))], rax
                );
            }
            I::CountSetBits64(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; popcnt rax, rax))
            }
            I::CountSetBits32(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; popcnt eax, eax))
            }
            I::LeadingZeroBits64(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; lzcnt rax, rax))
            }
            I::LeadingZeroBits32(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; lzcnt eax, eax))
            }
            I::TrailingZeroBits64(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; tzcnt rax, rax))
            }
            I::TrailingZeroBits32(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; tzcnt eax, eax))
            }
            I::SignExtend8(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; movsx rax, al))
            }
            I::SignExtend16(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; movsx rax, ax))
            }
            I::ZeroExtend16(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; movzx eax, ax))
            }
            I::ReverseBytes(x) => {
                self.unary(r(x.d), r(x.a), |a| dynasm!(a ; .arch x64 ; bswap rax))
            }
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
            I::AddImm32(x) => self.bin(Add32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::AndImm(x) => self.bin(And, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::XorImm(x) => self.bin(Xor, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::OrImm(x) => self.bin(Or, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
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
            I::AddImm64(x) => self.bin(Add64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::MulImm64(x) => self.bin(Mul64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::ShloLImm64(x) => self.bin(Shl64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::ShloRImm64(x) => self.bin(Shr64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::SharRImm64(x) => self.bin(Sar64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::NegAddImm64(x) => self.bin(Sub64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::ShloLImmAlt64(x) => self.bin(Shl64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::ShloRImmAlt64(x) => self.bin(Shr64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::SharRImmAlt64(x) => self.bin(Sar64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::RotR64Imm(x) => self.bin(RotR64, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::RotR64ImmAlt(x) => self.bin(RotR64, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::RotR32Imm(x) => self.bin(RotR32, r(x.a), Src::R(r(x.b)), Src::Imm(x.imm)),
            I::RotR32ImmAlt(x) => self.bin(RotR32, r(x.a), Src::Imm(x.imm), Src::R(r(x.b))),
            I::BranchEq(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::Eq)?,
            I::BranchNe(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::Ne)?,
            I::BranchLtU(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::LtU)?,
            I::BranchLtS(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::LtS)?,
            I::BranchGeU(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::GeU)?,
            I::BranchGeS(x) => self.branch(i, r(x.a), Src::R(r(x.b)), Cc::GeS)?,
            I::LoadImmJumpInd(x) => {
                // The target uses B before A is written (they may be one register).
                self.ea(Some(r(x.b)), x.y);
                dynasm!(self.a
                    ; .arch x64
                    ; mov QWORD [r15 + reg_off(r(x.a))], x.x as i32
                    ; mov DWORD [r15 + EXIT_IDX], i as i32
                    ; jmp =>self.djump
                );
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
            I::Add64(x) => self.three(Add64, x),
            I::Sub64(x) => self.three(Sub64, x),
            I::Mul64(x) => self.three(Mul64, x),
            I::DivU64(x) => self.three(DivU64, x),
            I::DivS64(x) => self.three(DivS64, x),
            I::RemU64(x) => self.three(RemU64, x),
            I::RemS64(x) => self.three(RemS64, x),
            I::ShloL64(x) => self.three(Shl64, x),
            I::ShloR64(x) => self.three(Shr64, x),
            I::SharR64(x) => self.three(Sar64, x),
            I::And(x) => self.three(And, x),
            I::Xor(x) => self.three(Xor, x),
            I::Or(x) => self.three(Or, x),
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
        Ok(())
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
