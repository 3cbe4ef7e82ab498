//! Hand encodings of the instructions the generator emits most: register
//! moves, immediates, `lea`, ALU operations with an immediate, shifts by an
//! immediate, and the loads and stores through a register.
//!
//! `dynasm!` encodes an operand whose register is only known at run time
//! conservatively: a memory operand on a register base always gets a SIB
//! byte and a 32-bit displacement (9 bytes for `mov r64, [e(b) + 8]`, where
//! 5 do), and each byte goes through a call-free but checked `push`. Here an
//! instruction is assembled in a 16-byte array and appended with one store,
//! in its shortest form. The tests below check every form, for every
//! register and for displacements and immediates of every size, against
//! `dynasm!`'s encoding of the same instruction, both decoded by `iced-x86`.

use super::buffers::CodeBuf;

/// One instruction being written straight into the code buffer's spare
/// capacity (see [`CodeBuf::put`]), byte by byte: no staging array that a
/// wide load would read back (a store-forwarding stall on every
/// instruction).
pub(super) struct Ins {
    /// The first of the 32 zeroed bytes `put` reserved.
    p: *mut u8,
    /// Bytes written so far (at most 15 for a real instruction).
    n: usize,
}

impl Ins {
    #[inline(always)]
    fn u8(mut self, x: u8) -> Ins {
        // SAFETY: `p` points at 32 writable bytes (see `CodeBuf::put`), and
        // `n & 15 < 32`.
        unsafe { self.p.add(self.n & 15).write(x) };
        self.n += 1;
        self
    }

    #[inline(always)]
    fn i32(mut self, x: i32) -> Ins {
        // SAFETY: as in `u8`: `(n & 15) + 4 <= 32`.
        unsafe {
            self.p
                .add(self.n & 15)
                .cast::<[u8; 4]>()
                .write_unaligned(x.to_le_bytes())
        };
        self.n += 4;
        self
    }

    #[inline(always)]
    fn i16(mut self, x: i16) -> Ins {
        // SAFETY: as in `u8`: `(n & 15) + 2 <= 32`.
        unsafe {
            self.p
                .add(self.n & 15)
                .cast::<[u8; 2]>()
                .write_unaligned(x.to_le_bytes())
        };
        self.n += 2;
        self
    }

    /// The bytes of `op` (at most 2), then a zero `rel32` field.
    #[inline(always)]
    pub(super) fn op_rel32<const N: usize>(self, op: [u8; N]) -> Ins {
        let mut i = self;
        for b in op {
            i = i.u8(b);
        }
        i.i32(0)
    }

    /// Constant bytes.
    #[inline(always)]
    pub(super) fn bytes<const N: usize>(self, bytes: [u8; N]) -> Ins {
        let mut i = self;
        for b in bytes {
            i = i.u8(b);
        }
        i
    }

    /// A REX prefix when one is needed: `w` (64-bit operand), the high bits
    /// of `reg` (ModRM.reg) and `rm` (ModRM.rm or the SIB base), and `byte`
    /// for an 8-bit register operand among `spl`..`dil` (which exist only
    /// with a REX prefix).
    #[inline(always)]
    fn rex(self, w: bool, reg: u8, rm: u8, byte: bool) -> Ins {
        let x = 0x40 | (u8::from(w) << 3) | ((reg >> 3) & 1) << 2 | ((rm >> 3) & 1);
        if x != 0x40 || (byte && (4..8).contains(&reg)) {
            self.u8(x)
        } else {
            self
        }
    }

    /// ModRM for two registers.
    #[inline(always)]
    fn rr(self, reg: u8, rm: u8) -> Ins {
        self.u8(0xC0 | (reg & 7) << 3 | (rm & 7))
    }

    /// ModRM (and SIB, and displacement) for `[base + disp]`, shortest
    /// form.
    #[inline(always)]
    fn mem(self, reg: u8, base: u8, disp: i32) -> Ins {
        let (mode, size) = if disp == 0 && base & 7 != 5 {
            (0x00, 0)
        } else if i8::try_from(disp).is_ok() {
            (0x40, 1)
        } else {
            (0x80, 4)
        };
        let mut s = self.u8(mode | (reg & 7) << 3 | (base & 7));
        if base & 7 == 4 {
            // rsp/r12 as a base need a SIB byte: no index, that base.
            s = s.u8(0x24);
        }
        match size {
            0 => s,
            1 => s.u8(disp as u8),
            _ => s.i32(disp),
        }
    }
}

impl CodeBuf {
    /// Appends the instruction `f` writes: one capacity check, the bytes
    /// written in place.
    #[inline(always)]
    pub(super) fn put(&mut self, f: impl FnOnce(Ins) -> Ins) {
        self.reserve(32);
        let p = self.spare();
        // SAFETY: `reserve` made room for 32 bytes at `p`, which are zeroed
        // here; nothing else touches the buffer until `f` returns, and
        // `Ins` writes only within those 32 bytes. The length grows over
        // the `n <= 16` bytes that hold the instruction.
        unsafe {
            p.cast::<[u8; 32]>().write_unaligned([0; 32]);
            let ins = f(Ins { p, n: 0 });
            self.advance(ins.n.min(16));
        }
    }
}

/// ALU operations with an immediate (the ModRM.reg extension of 81 / 83).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Alu {
    Add = 0,
    Or = 1,
    And = 4,
    Sub = 5,
    Xor = 6,
    Cmp = 7,
}

/// Shifts by an immediate (the ModRM.reg extension of C1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shift {
    Shl = 4,
    Shr = 5,
    Sar = 7,
}

/// A load's width and extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Load {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
}

impl Load {
    pub(super) fn new(size: u8, signed: bool) -> Load {
        match (size, signed) {
            (1, false) => Load::U8,
            (1, true) => Load::I8,
            (2, false) => Load::U16,
            (2, true) => Load::I16,
            (4, false) => Load::U32,
            (4, true) => Load::I32,
            _ => Load::U64,
        }
    }
}

/// `mov r64(d), r64(s)`.
#[inline(always)]
pub(super) fn mov_rr(a: &mut CodeBuf, d: u8, s: u8) {
    a.put(
        #[inline(always)]
        |i| i.rex(true, s, d, false).u8(0x89).rr(s, d),
    );
}

/// `r64(d) = sext(v)`: `mov r32, imm32` when that zero-extends to the
/// same value (5 or 6 bytes), else `mov r64, simm32` (7 bytes). Flags are
/// left alone.
#[inline(always)]
pub(super) fn mov_ri(a: &mut CodeBuf, d: u8, v: i32) {
    if v >= 0 {
        a.put(
            #[inline(always)]
            |i| i.rex(false, 0, d, false).u8(0xB8 | (d & 7)).i32(v),
        );
    } else {
        a.put(
            #[inline(always)]
            |i| i.rex(true, 0, d, false).u8(0xC7).rr(0, d).i32(v),
        );
    }
}

/// `lea r(d), [r64(b) + disp]`: 64-bit, or 32-bit (`wide = false`).
#[inline(always)]
pub(super) fn lea(a: &mut CodeBuf, wide: bool, d: u8, b: u8, disp: i32) {
    a.put(
        #[inline(always)]
        |i| i.rex(wide, d, b, false).u8(0x8D).mem(d, b, disp),
    );
}

/// `op r(d), imm` (64-bit, or 32-bit with `wide = false`): the 8-bit
/// immediate form when it fits.
#[inline(always)]
pub(super) fn alu_ri(a: &mut CodeBuf, wide: bool, op: Alu, d: u8, v: i32) {
    a.put(
        #[inline(always)]
        |i| {
            let i = i.rex(wide, 0, d, false);
            match i8::try_from(v) {
                Ok(v8) => i.u8(0x83).rr(op as u8, d).u8(v8 as u8),
                Err(_) => i.u8(0x81).rr(op as u8, d).i32(v),
            }
        },
    );
}

/// `op r(d), r(s)` (64-bit, or 32-bit with `wide = false`).
#[inline(always)]
pub(super) fn alu_rr(a: &mut CodeBuf, wide: bool, op: Alu, d: u8, s: u8) {
    a.put(
        #[inline(always)]
        |i| i.rex(wide, s, d, false).u8((op as u8) << 3 | 1).rr(s, d),
    );
}

/// `test r64(d), r64(d)`.
#[inline(always)]
pub(super) fn test_self(a: &mut CodeBuf, d: u8) {
    a.put(
        #[inline(always)]
        |i| i.rex(true, d, d, false).u8(0x85).rr(d, d),
    );
}

/// `op r(d), imm8` for a shift (64-bit, or 32-bit with `wide = false`).
#[inline(always)]
pub(super) fn shift_ri(a: &mut CodeBuf, wide: bool, op: Shift, d: u8, count: u8) {
    a.put(
        #[inline(always)]
        |i| i.rex(wide, 0, d, false).u8(0xC1).rr(op as u8, d).u8(count),
    );
}

/// `movsxd r64(d), r32(s)`.
#[inline(always)]
pub(super) fn movsxd_rr(a: &mut CodeBuf, d: u8, s: u8) {
    a.put(
        #[inline(always)]
        |i| i.rex(true, d, s, false).u8(0x63).rr(d, s),
    );
}

/// The prefixes of a guest access through GS with a 32-bit address.
#[inline(always)]
fn gs32(i: Ins) -> Ins {
    i.u8(0x65).u8(0x67)
}

/// `d = load gs:[e(b) + disp]`.
#[inline(always)]
pub(super) fn load_gs(a: &mut CodeBuf, kind: Load, d: u8, b: u8, disp: i32) {
    a.put(
        #[inline(always)]
        |i| {
            let i = gs32(i);
            let i = match kind {
                Load::U8 => i.rex(false, d, b, false).u8(0x0F).u8(0xB6),
                Load::I8 => i.rex(true, d, b, false).u8(0x0F).u8(0xBE),
                Load::U16 => i.rex(false, d, b, false).u8(0x0F).u8(0xB7),
                Load::I16 => i.rex(true, d, b, false).u8(0x0F).u8(0xBF),
                Load::U32 => i.rex(false, d, b, false).u8(0x8B),
                Load::I32 => i.rex(true, d, b, false).u8(0x63),
                Load::U64 => i.rex(true, d, b, false).u8(0x8B),
            };
            i.mem(d, b, disp)
        },
    );
}

/// `store gs:[e(b) + disp], r(s)` of `size` bytes.
#[inline(always)]
pub(super) fn store_gs(a: &mut CodeBuf, size: u8, s: u8, b: u8, disp: i32) {
    a.put(
        #[inline(always)]
        |i| {
            let i = gs32(i);
            let i = match size {
                1 => i.rex(false, s, b, true).u8(0x88),
                2 => i.u8(0x66).rex(false, s, b, false).u8(0x89),
                4 => i.rex(false, s, b, false).u8(0x89),
                _ => i.rex(true, s, b, false).u8(0x89),
            };
            i.mem(s, b, disp)
        },
    );
}

/// `store gs:[e(b) + disp], imm` of `size` bytes (8: the sign-extended
/// 32-bit immediate).
#[inline(always)]
pub(super) fn store_gs_imm(a: &mut CodeBuf, size: u8, v: u32, b: u8, disp: i32) {
    a.put(
        #[inline(always)]
        |i| {
            let i = gs32(i);
            match size {
                1 => i
                    .rex(false, 0, b, false)
                    .u8(0xC6)
                    .mem(0, b, disp)
                    .u8(v as u8),
                2 => i
                    .u8(0x66)
                    .rex(false, 0, b, false)
                    .u8(0xC7)
                    .mem(0, b, disp)
                    .i16(v as u16 as i16),
                4 => i
                    .rex(false, 0, b, false)
                    .u8(0xC7)
                    .mem(0, b, disp)
                    .i32(v as i32),
                _ => i
                    .rex(true, 0, b, false)
                    .u8(0xC7)
                    .mem(0, b, disp)
                    .i32(v as i32),
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynasmrt::{dynasm, DynasmApi};
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    /// The instructions in `bytes`, as text; panics unless they decode
    /// exactly.
    fn text(bytes: &[u8]) -> String {
        let mut d = Decoder::new(64, bytes, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = String::new();
        while d.can_decode() {
            let ins = d.decode();
            assert!(!ins.is_invalid(), "invalid encoding {bytes:02x?}");
            f.format(&ins, &mut out);
            out.push_str("; ");
        }
        out
    }

    fn ours(f: impl FnOnce(&mut CodeBuf)) -> Vec<u8> {
        let mut a = CodeBuf::default();
        f(&mut a);
        a.bytes().to_vec()
    }

    fn same(what: &str, ours: Vec<u8>, theirs: CodeBuf) {
        assert_eq!(
            text(&ours),
            text(theirs.bytes()),
            "{what}: ours {ours:02x?}"
        );
        assert!(
            ours.len() <= theirs.len(),
            "{what}: ours is longer: {ours:02x?} vs {:02x?}",
            theirs.bytes()
        );
    }

    const REGS: core::ops::Range<u8> = 0..16;
    const DISPS: [i32; 10] = [0, 1, -1, 8, 127, -128, 128, -129, i32::MAX, i32::MIN];

    #[test]
    fn register_forms_match_dynasm() {
        for d in REGS {
            for s in REGS {
                let mut t = CodeBuf::default();
                dynasm!(t ; .arch x64 ; mov Rq(d), Rq(s));
                same("mov", ours(|a| mov_rr(a, d, s)), t);
                let mut t = CodeBuf::default();
                dynasm!(t ; .arch x64 ; movsxd Rq(d), Rd(s));
                same("movsxd", ours(|a| movsxd_rr(a, d, s)), t);
            }
        }
    }

    #[test]
    fn two_register_alu_forms_match_dynasm() {
        for d in REGS {
            let mut t = CodeBuf::default();
            dynasm!(t ; .arch x64 ; test Rq(d), Rq(d));
            same("test", ours(|a| test_self(a, d)), t);
            for s in REGS {
                for wide in [true, false] {
                    for op in [Alu::Add, Alu::Or, Alu::And, Alu::Sub, Alu::Xor, Alu::Cmp] {
                        let mut t = CodeBuf::default();
                        match (wide, op) {
                            (true, Alu::Add) => dynasm!(t ; .arch x64 ; add Rq(d), Rq(s)),
                            (true, Alu::Or) => dynasm!(t ; .arch x64 ; or Rq(d), Rq(s)),
                            (true, Alu::And) => dynasm!(t ; .arch x64 ; and Rq(d), Rq(s)),
                            (true, Alu::Sub) => dynasm!(t ; .arch x64 ; sub Rq(d), Rq(s)),
                            (true, Alu::Xor) => dynasm!(t ; .arch x64 ; xor Rq(d), Rq(s)),
                            (true, Alu::Cmp) => dynasm!(t ; .arch x64 ; cmp Rq(d), Rq(s)),
                            (false, Alu::Add) => dynasm!(t ; .arch x64 ; add Rd(d), Rd(s)),
                            (false, Alu::Or) => dynasm!(t ; .arch x64 ; or Rd(d), Rd(s)),
                            (false, Alu::And) => dynasm!(t ; .arch x64 ; and Rd(d), Rd(s)),
                            (false, Alu::Sub) => dynasm!(t ; .arch x64 ; sub Rd(d), Rd(s)),
                            (false, Alu::Xor) => dynasm!(t ; .arch x64 ; xor Rd(d), Rd(s)),
                            (false, Alu::Cmp) => dynasm!(t ; .arch x64 ; cmp Rd(d), Rd(s)),
                        }
                        same("alu rr", ours(|a| alu_rr(a, wide, op, d, s)), t);
                    }
                }
            }
        }
    }

    #[test]
    fn immediate_forms_match_dynasm() {
        for d in REGS {
            for v in DISPS {
                let mut t = CodeBuf::default();
                dynasm!(t ; .arch x64 ; mov Rq(d), v);
                // `mov r32, imm` for non-negative values: compare the value
                // it leaves (a zero-extension of the same bits).
                let o = ours(|a| mov_ri(a, d, v));
                if v >= 0 {
                    let mut t32 = CodeBuf::default();
                    dynasm!(t32 ; .arch x64 ; mov Rd(d), v);
                    same("mov imm32", o, t32);
                } else {
                    same("mov imm", o, t);
                }
                for wide in [true, false] {
                    for op in [Alu::Add, Alu::Or, Alu::And, Alu::Sub, Alu::Xor, Alu::Cmp] {
                        let mut t = CodeBuf::default();
                        match (wide, op) {
                            (true, Alu::Add) => dynasm!(t ; .arch x64 ; add Rq(d), v),
                            (true, Alu::Or) => dynasm!(t ; .arch x64 ; or Rq(d), v),
                            (true, Alu::And) => dynasm!(t ; .arch x64 ; and Rq(d), v),
                            (true, Alu::Sub) => dynasm!(t ; .arch x64 ; sub Rq(d), v),
                            (true, Alu::Xor) => dynasm!(t ; .arch x64 ; xor Rq(d), v),
                            (true, Alu::Cmp) => dynasm!(t ; .arch x64 ; cmp Rq(d), v),
                            (false, Alu::Add) => dynasm!(t ; .arch x64 ; add Rd(d), v),
                            (false, Alu::Or) => dynasm!(t ; .arch x64 ; or Rd(d), v),
                            (false, Alu::And) => dynasm!(t ; .arch x64 ; and Rd(d), v),
                            (false, Alu::Sub) => dynasm!(t ; .arch x64 ; sub Rd(d), v),
                            (false, Alu::Xor) => dynasm!(t ; .arch x64 ; xor Rd(d), v),
                            (false, Alu::Cmp) => dynasm!(t ; .arch x64 ; cmp Rd(d), v),
                        }
                        // iced prints the sign-extended 8-bit immediate as
                        // the same value.
                        same("alu", ours(|a| alu_ri(a, wide, op, d, v)), t);
                    }
                }
            }
            for c in [0u8, 1, 31, 63] {
                for wide in [true, false] {
                    for op in [Shift::Shl, Shift::Shr, Shift::Sar] {
                        let c8 = c as i8;
                        let mut t = CodeBuf::default();
                        match (wide, op) {
                            (true, Shift::Shl) => dynasm!(t ; .arch x64 ; shl Rq(d), c8),
                            (true, Shift::Shr) => dynasm!(t ; .arch x64 ; shr Rq(d), c8),
                            (true, Shift::Sar) => dynasm!(t ; .arch x64 ; sar Rq(d), c8),
                            (false, Shift::Shl) => dynasm!(t ; .arch x64 ; shl Rd(d), c8),
                            (false, Shift::Shr) => dynasm!(t ; .arch x64 ; shr Rd(d), c8),
                            (false, Shift::Sar) => dynasm!(t ; .arch x64 ; sar Rd(d), c8),
                        }
                        same("shift", ours(|a| shift_ri(a, wide, op, d, c)), t);
                    }
                }
            }
        }
    }

    #[test]
    fn memory_forms_match_dynasm() {
        for r in REGS {
            for b in REGS {
                for k in DISPS {
                    for wide in [true, false] {
                        let mut t = CodeBuf::default();
                        if wide {
                            dynasm!(t ; .arch x64 ; lea Rq(r), [Rq(b) + k]);
                        } else {
                            dynasm!(t ; .arch x64 ; lea Rd(r), [Rq(b) + k]);
                        }
                        same("lea", ours(|a| lea(a, wide, r, b, k)), t);
                    }
                    for kind in [
                        Load::U8,
                        Load::I8,
                        Load::U16,
                        Load::I16,
                        Load::U32,
                        Load::I32,
                        Load::U64,
                    ] {
                        let mut t = CodeBuf::default();
                        t.push(0x65);
                        match kind {
                            Load::U8 => dynasm!(t ; .arch x64 ; movzx Rd(r), BYTE [Rd(b) + k]),
                            Load::I8 => dynasm!(t ; .arch x64 ; movsx Rq(r), BYTE [Rd(b) + k]),
                            Load::U16 => dynasm!(t ; .arch x64 ; movzx Rd(r), WORD [Rd(b) + k]),
                            Load::I16 => dynasm!(t ; .arch x64 ; movsx Rq(r), WORD [Rd(b) + k]),
                            Load::U32 => dynasm!(t ; .arch x64 ; mov Rd(r), DWORD [Rd(b) + k]),
                            Load::I32 => {
                                dynasm!(t ; .arch x64 ; movsxd Rq(r), DWORD [Rd(b) + k])
                            }
                            Load::U64 => dynasm!(t ; .arch x64 ; mov Rq(r), QWORD [Rd(b) + k]),
                        }
                        same("load", ours(|a| load_gs(a, kind, r, b, k)), t);
                    }
                    for size in [1u8, 2, 4, 8] {
                        let mut t = CodeBuf::default();
                        t.push(0x65);
                        match size {
                            1 => dynasm!(t ; .arch x64 ; mov BYTE [Rd(b) + k], Rb(r)),
                            2 => dynasm!(t ; .arch x64 ; mov WORD [Rd(b) + k], Rw(r)),
                            4 => dynasm!(t ; .arch x64 ; mov DWORD [Rd(b) + k], Rd(r)),
                            _ => dynasm!(t ; .arch x64 ; mov QWORD [Rd(b) + k], Rq(r)),
                        }
                        same("store", ours(|a| store_gs(a, size, r, b, k)), t);
                        for v in [0u32, 0x7F, 0x80, 0xFFFF_FFFF, 0x1234_5678] {
                            let mut t = CodeBuf::default();
                            t.push(0x65);
                            match size {
                                1 => dynasm!(t ; .arch x64 ; mov BYTE [Rd(b) + k], v as u8 as i8),
                                2 => dynasm!(t ; .arch x64 ; mov WORD [Rd(b) + k], v as u16 as i16),
                                4 => dynasm!(t ; .arch x64 ; mov DWORD [Rd(b) + k], v as i32),
                                _ => dynasm!(t ; .arch x64 ; mov QWORD [Rd(b) + k], v as i32),
                            }
                            same("store imm", ours(|a| store_gs_imm(a, size, v, b, k)), t);
                        }
                    }
                }
            }
        }
    }
}
