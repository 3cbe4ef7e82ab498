//! The assembly text format: a disassembler and an assembler.
//!
//! [`disassemble`] prints any program blob, standard program or JAM code
//! blob as text, and [`assemble`] turns that text back into the *same bytes*,
//! byte for byte, whatever the input holds: non-minimal immediates, register
//! nibbles above 12, padding inside an instruction, bytes no instruction
//! covers, unknown opcodes, odd jump-table entry sizes, non-minimal length
//! prefixes, set padding bits in the opcode bitmask. Canonically encoded
//! instructions print as readable mnemonics; everything else prints as
//! explicit bytes (`.raw`, `.bytes`, …) with the decoded meaning in a comment.
//! The same assembler is pleasant for hand-written programs: symbolic labels,
//! register aliases, and a layout that grows jump offsets to a fixpoint.
//!
//! # Syntax
//!
//! One statement per line; `;` or `#` starts a comment. Names are
//! case-sensitive except mnemonics.
//!
//! ```text
//! line        := { label ':' } [ statement ] [ comment ]
//! label       := ident | '@' number       ; `@N:` asserts that it is at code offset N
//! statement   := mnemonic [ operand { ',' operand } ] | directive
//! operand     := reg | imm | target
//! reg         := r0 .. r12 | ra sp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5
//! imm         := [ '-' | '+' ] ( decimal | 0x hex | 0b binary | 0o octal )   ; `_` allowed
//! target      := ident | '@' number       ; `@N` is the absolute code offset N
//! hex         := hex-digit pairs, optionally `0x`-prefixed, in any number of
//!                tokens separated by spaces or commas: `33 07 01`, `0x330701`
//!
//! directive   := .profile 0.8|0.7                 ; overrides the profile argument
//!              | .container raw|standard|jam      ; default: jam if .metadata is
//!                                                 ; used, standard if any of the
//!                                                 ; four below is, else raw
//!              | .ro_data hex | .rw_data hex      ; appended, may repeat
//!              | .heap_pages N | .stack_size N
//!              | .metadata hex                    ; jam only, appended
//!              | .jump_table target { ',' target } ; appended, may repeat
//!              | .jump_table_entry_size N         ; default: smallest that fits
//!              | .length_prefix jump_table|code|metadata N
//!                                                 ; width of a GP natural-number
//!                                                 ; length prefix (default minimal)
//!              | .bitmask_padding N               ; the unused high bits of the
//!                                                 ; last bitmask byte
//!              | .raw hex                         ; one instruction start, verbatim
//!              | .bytes hex                       ; code bytes that start nothing
//!              | .code_blob hex                   ; the whole code blob verbatim
//!                                                 ; (replaces code and jump table)
//! ```
//!
//! Operands per format, in this order: no arguments: none; one immediate:
//! `imm`; `load_imm_64`: `reg, imm64`; two immediates: `x, y`; one offset:
//! `target`; register and immediate: `reg, imm`; register and two
//! immediates: `reg, x, y`; register, immediate, offset: `reg, imm, target`;
//! two registers: `d, a`; two registers and immediate: `a, b, imm`; two
//! registers and offset: `a, b, target`; two registers and two immediates:
//! `a, b, x, y`; three registers: `d, a, b` (destination first).
//!
//! Immediates are 32-bit patterns (sign-extended to 64 bits where the
//! instruction uses 64 bits), so any value in `-2^31 ..= 2^32-1` is accepted;
//! the disassembler prints them signed (`-1`, `0x12345`, `-0x80000000`).
//! `load_imm_64` takes any value in `-2^63 ..= 2^64-1` and prints in hex.
//!
//! Jump targets are either symbolic labels, whose offsets the assembler lays
//! out (growing offset fields until every instruction fits), or absolute code
//! offsets `@N`, which is what the disassembler prints. A numeric label
//! definition `@N:` does not move anything: it is a check that the next
//! statement sits at code offset N (so editing disassembly and shifting code
//! is reported instead of silently breaking absolute targets).
//!
//! The disassembler prints a label line `@N:` before every basic-block
//! start and every jump target, and the code offset of every statement in a
//! trailing comment.
//!
//! ```text
//! .container standard
//!     load_imm r7, 10
//!     fallthrough             ; ends the block, so `loop` starts one
//! loop:
//!     add_imm_64 r7, r7, -1
//!     branch_ne_imm r7, 0, loop
//!     jump_ind r0, 0          ; r0 = 0xFFFF0000 at start: halt
//! ```

use crate::codec::{self, imm_len, Reader};
use crate::error::Error;
use crate::isa::*;
use crate::program::Blob;
use crate::standard::{JamBlob, StandardProgram};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// How a program's bytes are packaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// A bare program blob (jump table, code, bitmask), as in the test vectors.
    Raw,
    /// A GP standard program (`.spi`): data sections around a program blob.
    Standard,
    /// A JAM code blob: metadata, then a standard program.
    Jam,
}

impl Container {
    /// The name used by `.container` (`raw`, `standard`, `jam`).
    pub const fn name(self) -> &'static str {
        match self {
            Container::Raw => "raw",
            Container::Standard => "standard",
            Container::Jam => "jam",
        }
    }

    /// Parses `raw`, `standard`, `jam`.
    pub fn parse(s: &str) -> Option<Container> {
        match s {
            "raw" => Some(Container::Raw),
            "standard" => Some(Container::Standard),
            "jam" => Some(Container::Jam),
            _ => None,
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Guesses the container: the first of standard program, JAM blob and raw
/// program blob that parses.
pub fn detect(bytes: &[u8]) -> Option<Container> {
    if StandardProgram::parse(bytes).is_ok() {
        Some(Container::Standard)
    } else if JamBlob::parse(bytes).is_ok() {
        Some(Container::Jam)
    } else if Blob::parse(bytes).is_ok() {
        Some(Container::Raw)
    } else {
        None
    }
}

/// An assembly error: the 1-based source line and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsmError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl core::error::Error for AsmError {}

#[cold]
fn err(line: usize, message: impl Into<String>) -> AsmError {
    AsmError {
        line,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Bytes of hex per `.ro_data`/`.rw_data`/`.metadata`/`.code_blob` line.
const DATA_PER_LINE: usize = 64;
/// Bytes per `.bytes` line.
const BYTES_PER_LINE: usize = 32;
/// Jump-table entries per `.jump_table` line.
const ENTRIES_PER_LINE: usize = 8;
/// The column where trailing comments start.
const COMMENT_COLUMN: usize = 40;
/// Largest code the assembler emits (as [`Blob::parse`] accepts).
const MAX_CODE_LEN: usize = 1 << 28;
/// Largest data section of a standard program (`E₃` length).
const MAX_DATA_LEN: usize = (1 << 24) - 1;

/// Length of the GP's canonical natural-number encoding of `x`.
fn natural_len(x: u64) -> usize {
    let mut v = Vec::new();
    codec::encode_natural(x, &mut v);
    v.len()
}

/// Appends the GP natural-number encoding of `x` using exactly `width` bytes
/// (1..=9), or the canonical one if `width` is `None`. `Err` says why not.
fn push_natural(x: u64, width: Option<u8>, out: &mut Vec<u8>) -> Result<(), String> {
    let Some(width) = width else {
        codec::encode_natural(x, out);
        return Ok(());
    };
    let l = u32::from(width).wrapping_sub(1);
    if l == 8 {
        out.push(0xFF);
        out.extend_from_slice(&x.to_le_bytes());
        return Ok(());
    }
    if l > 8 {
        return Err(format!("a length prefix is 1 to 9 bytes, not {width}"));
    }
    let high = x >> (8 * l);
    if high >= 1 << (7 - l) {
        return Err(format!("{x} does not fit a {width}-byte length prefix"));
    }
    out.push(!(0xFFu8 >> l) | high as u8);
    out.extend_from_slice(&x.to_le_bytes()[..l as usize]);
    Ok(())
}

/// The jump-table entry size the assembler picks when none is given.
fn default_entry_size(entries: &[u32]) -> u8 {
    entries
        .iter()
        .map(|&v| (32 - v.leading_zeros()).div_ceil(8) as u8)
        .max()
        .map_or(0, |z| z.max(1))
}

/// A 32-bit immediate, printed signed (decimal when small, hex otherwise).
struct Imm(u32);

impl fmt::Display for Imm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = i64::from(self.0 as i32);
        if v.abs() < 0x1_0000 {
            write!(f, "{v}")
        } else if v < 0 {
            write!(f, "-0x{:x}", -v)
        } else {
            write!(f, "0x{v:x}")
        }
    }
}

/// The static jump target of an instruction, if it has one.
fn static_target(inst: &Instruction) -> Option<u32> {
    match inst.args() {
        Args::OneOffset(a) => Some(a.target),
        Args::RegImmOffset(a) => Some(a.target),
        Args::TwoRegOffset(a) => Some(a.target),
        _ => None,
    }
}

/// `args` with its jump target replaced by `target` (if it has one).
fn with_target(args: Args, target: u32) -> Args {
    match args {
        Args::OneOffset(_) => Args::OneOffset(OneOffset { target }),
        Args::RegImmOffset(a) => Args::RegImmOffset(RegImmOffset { target, ..a }),
        Args::TwoRegOffset(a) => Args::TwoRegOffset(TwoRegOffset { target, ..a }),
        other => other,
    }
}

/// The text of an instruction: mnemonic and operands.
pub fn format_instruction(inst: &Instruction) -> String {
    let name = inst.opcode().name();
    let mut s = String::from(name);
    let _ = match inst.args() {
        Args::NoArgs(_) => Ok(()),
        Args::OneImm(a) => write!(s, " {}", Imm(a.imm)),
        Args::RegExtImm(a) => write!(s, " {}, 0x{:x}", a.a, a.imm),
        Args::TwoImm(a) => write!(s, " {}, {}", Imm(a.x), Imm(a.y)),
        Args::OneOffset(a) => write!(s, " @{}", a.target),
        Args::RegImm(a) => write!(s, " {}, {}", a.a, Imm(a.imm)),
        Args::RegTwoImm(a) => write!(s, " {}, {}, {}", a.a, Imm(a.x), Imm(a.y)),
        Args::RegImmOffset(a) => write!(s, " {}, {}, @{}", a.a, Imm(a.imm), a.target),
        Args::TwoReg(a) => write!(s, " {}, {}", a.d, a.a),
        Args::TwoRegImm(a) => write!(s, " {}, {}, {}", a.a, a.b, Imm(a.imm)),
        Args::TwoRegOffset(a) => write!(s, " {}, {}, @{}", a.a, a.b, a.target),
        Args::TwoRegTwoImm(a) => write!(s, " {}, {}, {}, {}", a.a, a.b, Imm(a.x), Imm(a.y)),
        Args::ThreeReg(a) => write!(s, " {}, {}, {}", a.d, a.a, a.b),
    };
    s
}

/// The operand syntax of a format, for error messages.
fn operand_syntax(format: Format) -> &'static str {
    match format {
        Format::NoArgs => "no operands",
        Format::OneImm => "imm",
        Format::RegExtImm => "reg, imm64",
        Format::TwoImm => "imm_x, imm_y",
        Format::OneOffset => "target",
        Format::RegImm => "reg, imm",
        Format::RegTwoImm => "reg, imm_x, imm_y",
        Format::RegImmOffset => "reg, imm, target",
        Format::TwoReg => "reg_d, reg_a",
        Format::TwoRegImm => "reg_a, reg_b, imm",
        Format::TwoRegOffset => "reg_a, reg_b, target",
        Format::TwoRegTwoImm => "reg_a, reg_b, imm_x, imm_y",
        Format::ThreeReg => "reg_d, reg_a, reg_b",
    }
}

fn operand_count(format: Format) -> usize {
    match format {
        Format::NoArgs => 0,
        Format::OneImm | Format::OneOffset => 1,
        Format::RegExtImm | Format::TwoImm | Format::RegImm | Format::TwoReg => 2,
        Format::RegTwoImm
        | Format::RegImmOffset
        | Format::TwoRegImm
        | Format::TwoRegOffset
        | Format::ThreeReg => 3,
        Format::TwoRegTwoImm => 4,
    }
}

// ---------------------------------------------------------------------------
// Disassembler
// ---------------------------------------------------------------------------

/// Prints `bytes`, packaged as `container`, as assembly text for `profile`.
/// `assemble(&text, profile)` gives back exactly `bytes`.
pub fn disassemble(bytes: &[u8], container: Container, profile: Profile) -> Result<String, Error> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; PVM assembly, GP {profile}; `assemble` gives back the original bytes exactly"
    );
    let _ = writeln!(out, ".profile {profile}");
    let _ = writeln!(out, ".container {container}");
    match container {
        Container::Raw => {
            let blob = Blob::parse(bytes)?;
            write_blob(&mut out, &blob, bytes, profile);
        }
        Container::Standard => {
            let program = StandardProgram::parse(bytes)?;
            write_standard(&mut out, &program, profile);
        }
        Container::Jam => {
            let jam = JamBlob::parse(bytes)?;
            let mut r = Reader::new(bytes);
            let _ = r.natural();
            if r.pos() != natural_len(jam.metadata.len() as u64) {
                let _ = writeln!(out, ".length_prefix metadata {}", r.pos());
            }
            write_data(&mut out, "metadata", &jam.metadata);
            write_standard(&mut out, &jam.program, profile);
        }
    }
    Ok(out)
}

fn write_data(out: &mut String, directive: &str, data: &[u8]) {
    for chunk in data.chunks(DATA_PER_LINE) {
        let _ = write!(out, ".{directive} ");
        for b in chunk {
            let _ = write!(out, "{b:02x}");
        }
        out.push('\n');
    }
}

fn write_standard(out: &mut String, p: &StandardProgram, profile: Profile) {
    let _ = writeln!(out, ".heap_pages {}", p.heap_pages);
    let _ = writeln!(out, ".stack_size {}", p.stack_size);
    write_data(out, "ro_data", &p.ro_data);
    write_data(out, "rw_data", &p.rw_data);
    match Blob::parse(&p.code) {
        Ok(blob) => write_blob(out, &blob, &p.code, profile),
        Err(e) => {
            let _ = writeln!(out, "; the code blob does not parse ({e}); kept verbatim");
            if p.code.is_empty() {
                out.push_str(".code_blob\n");
            }
            write_data(out, "code_blob", &p.code);
        }
    }
}

/// Hex bytes separated by spaces (`33 07 01`).
fn spaced_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes `text` indented, with `comment` at [`COMMENT_COLUMN`].
fn write_stmt(out: &mut String, text: &str, comment: fmt::Arguments<'_>) {
    let _ = writeln!(out, "    {text:<w$} ; {comment}", w = COMMENT_COLUMN - 4);
}

/// A stretch of code: an instruction start (with its argument bytes) or
/// bytes no instruction covers.
struct Piece {
    pc: usize,
    end: usize,
    /// `None` for uncovered bytes; else the decoding (or the invalid opcode
    /// byte) and whether the bytes are the canonical encoding.
    inst: Option<(Result<Instruction, u8>, bool)>,
}

fn write_blob(out: &mut String, blob: &Blob, blob_bytes: &[u8], profile: Profile) {
    // Header: entry size, non-minimal length prefixes, jump table, padding.
    if blob.jump_table_entry_size != default_entry_size(&blob.jump_table) {
        let _ = writeln!(out, ".jump_table_entry_size {}", blob.jump_table_entry_size);
    }
    let mut r = Reader::new(blob_bytes);
    let _ = r.natural();
    let jt_width = r.pos();
    let _ = r.fixed(1);
    let at = r.pos();
    let _ = r.natural();
    let code_width = r.pos() - at;
    if jt_width != natural_len(blob.jump_table.len() as u64) {
        let _ = writeln!(out, ".length_prefix jump_table {jt_width}");
    }
    if code_width != natural_len(blob.code.len() as u64) {
        let _ = writeln!(out, ".length_prefix code {code_width}");
    }
    for chunk in blob.jump_table.chunks(ENTRIES_PER_LINE) {
        out.push_str(".jump_table ");
        for (i, e) in chunk.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            let _ = write!(out, "{sep}@{e}");
        }
        out.push('\n');
    }
    let n = blob.code.len();
    if n % 8 != 0 {
        let padding = blob.bitmask.last().copied().unwrap_or(0) & !((1u8 << (n % 8)) - 1);
        if padding != 0 {
            let _ = writeln!(out, ".bitmask_padding 0x{padding:02x}");
        }
    }

    // Split the code into pieces.
    let code = &blob.code;
    let starts: Vec<usize> = (0..n).filter(|&i| blob.is_start(i)).collect();
    let mut pieces = Vec::new();
    let first = starts.first().copied().unwrap_or(n);
    if first > 0 {
        pieces.push(Piece {
            pc: 0,
            end: first,
            inst: None,
        });
    }
    let mut scratch = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let next = starts.get(k + 1).copied().unwrap_or(n);
        let skip = blob.skip(s);
        let end = (s + 1 + skip as usize).min(next);
        let decoded = codec::decode(profile, code, s as u32, skip);
        let canonical = match &decoded {
            Ok(inst) => {
                scratch.clear();
                codec::encode(profile, inst, s as u32, &mut scratch).is_some()
                    && code.get(s..end) == Some(&scratch[..])
            }
            Err(_) => false,
        };
        pieces.push(Piece {
            pc: s,
            end,
            inst: Some((decoded, canonical)),
        });
        if end < next {
            pieces.push(Piece {
                pc: end,
                end: next,
                inst: None,
            });
        }
    }

    // Labels: block starts, static targets and jump-table entries.
    let mut labels: BTreeSet<u64> = blob.jump_table.iter().map(|&e| u64::from(e)).collect();
    let mut after_terminator = true;
    for p in &pieces {
        match &p.inst {
            Some((decoded, _)) => {
                if after_terminator {
                    labels.insert(p.pc as u64);
                }
                after_terminator = false;
                if let Ok(inst) = decoded {
                    if let Some(t) = static_target(inst) {
                        labels.insert(u64::from(t));
                    }
                    after_terminator = inst.is_terminator();
                }
            }
            None => after_terminator = false,
        }
    }

    // Print.
    for p in &pieces {
        if labels.contains(&(p.pc as u64)) {
            let _ = writeln!(out, "\n@{}:", p.pc);
        }
        let bytes = code.get(p.pc..p.end).unwrap_or(&[]);
        match &p.inst {
            None => {
                for (i, chunk) in bytes.chunks(BYTES_PER_LINE).enumerate() {
                    let at = p.pc + i * BYTES_PER_LINE;
                    let text = format!(".bytes {}", spaced_hex(chunk));
                    write_stmt(out, &text, format_args!("{at}: not an instruction start"));
                }
            }
            Some((Ok(inst), true)) => {
                write_stmt(out, &format_instruction(inst), format_args!("{}", p.pc));
            }
            Some((Ok(inst), false)) => {
                let text = format!(".raw {}", spaced_hex(bytes));
                write_stmt(
                    out,
                    &text,
                    format_args!("{}: {} (non-canonical)", p.pc, format_instruction(inst)),
                );
            }
            Some((Err(byte), _)) => {
                let text = format!(".raw {}", spaced_hex(bytes));
                write_stmt(
                    out,
                    &text,
                    format_args!("{}: invalid opcode {byte} in GP {profile}", p.pc),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Assembler
// ---------------------------------------------------------------------------

/// A jump target as written.
#[derive(Clone, Debug)]
enum Target {
    Abs(u32),
    Label(String),
}

/// A jump target resolved to an absolute offset or the start of an item.
#[derive(Clone, Copy, Debug)]
enum Resolved {
    Abs(u32),
    Item(usize),
}

/// One code statement.
#[derive(Debug)]
enum Item {
    /// An instruction; its jump target (if any) is filled in at layout.
    Inst {
        line: usize,
        op: Opcode,
        args: Args,
        target: Option<Target>,
    },
    /// Verbatim bytes, the first one an instruction start.
    Raw { bytes: Vec<u8> },
    /// Verbatim bytes, none of them an instruction start.
    Bytes { bytes: Vec<u8> },
}

/// Indices into [`Source::prefix`].
const PREFIX_JUMP_TABLE: usize = 0;
const PREFIX_CODE: usize = 1;
const PREFIX_METADATA: usize = 2;

/// Everything the source says, gathered line by line.
#[derive(Debug, Default)]
struct Source {
    profile: Option<(Profile, usize)>,
    container: Option<(Container, usize)>,
    ro_data: Vec<u8>,
    rw_data: Vec<u8>,
    metadata: Vec<u8>,
    heap_pages: Option<(u16, usize)>,
    stack_size: Option<(u32, usize)>,
    /// First line of a directive that needs a standard (or jam) container.
    standard_line: Option<usize>,
    /// First line of a directive that needs a jam container.
    jam_line: Option<usize>,
    entry_size: Option<(u8, usize)>,
    jump_table: Vec<(Target, usize)>,
    prefix: [Option<(u8, usize)>; 3],
    padding: Option<(u8, usize)>,
    code_blob: Option<(Vec<u8>, usize)>,
    items: Vec<Item>,
    /// First line of a code statement.
    code_line: Option<usize>,
    /// Symbolic labels: name → (item index, line).
    labels: BTreeMap<String, (usize, usize)>,
    /// Numeric labels: (offset, item index, line).
    numeric_labels: Vec<(u32, usize, usize)>,
}

/// Assembles `text` (see the [module docs](self) for the syntax). A
/// `.profile` directive in the text overrides `profile`.
pub fn assemble(text: &str, profile: Profile) -> Result<Vec<u8>, AsmError> {
    let mut src = Source::default();
    for (i, line) in text.lines().enumerate() {
        src.line(i + 1, line)?;
    }
    src.finish(profile)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Parses an integer: optional sign, then decimal, `0x` hex, `0b` binary or
/// `0o` octal digits, with `_` separators.
fn parse_int(s: &str) -> Result<i128, String> {
    let bad = || format!("`{s}` is not a number");
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0b") => (2, &body[2..]),
        Some("0o") => (8, &body[2..]),
        _ => (10, body),
    };
    let mut v: i128 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix).ok_or_else(bad)?;
        v = v
            .checked_mul(i128::from(radix))
            .and_then(|v| v.checked_add(i128::from(d)))
            .filter(|&v| v <= i128::from(u64::MAX))
            .ok_or_else(|| format!("`{s}` is too large"))?;
        any = true;
    }
    if !any {
        return Err(bad());
    }
    Ok(if neg { -v } else { v })
}

/// A number in `0..=max`.
fn parse_uint(line: usize, what: &str, s: &str, max: u64) -> Result<u64, AsmError> {
    let v = parse_int(s.trim()).map_err(|m| err(line, format!("{what}: {m}")))?;
    if v < 0 || v > i128::from(max) {
        return Err(err(line, format!("{what} must be in 0..={max}, not {s}")));
    }
    Ok(v as u64)
}

fn parse_imm32(line: usize, s: &str) -> Result<u32, AsmError> {
    let v = parse_int(s).map_err(|m| err(line, m))?;
    if v < i128::from(i32::MIN) || v > i128::from(u32::MAX) {
        return Err(err(
            line,
            format!("immediate {s} does not fit 32 bits (-2^31 ..= 2^32-1)"),
        ));
    }
    Ok(v as u32)
}

fn parse_imm64(line: usize, s: &str) -> Result<u64, AsmError> {
    let v = parse_int(s).map_err(|m| err(line, m))?;
    if v < i128::from(i64::MIN) || v > i128::from(u64::MAX) {
        return Err(err(
            line,
            format!("immediate {s} does not fit 64 bits (-2^63 ..= 2^64-1)"),
        ));
    }
    Ok(v as u64)
}

/// Register aliases of the PolkaVM/RISC-V calling convention.
const REG_ALIASES: [&str; 13] = [
    "ra", "sp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
];

fn parse_reg(line: usize, s: &str) -> Result<Reg, AsmError> {
    let lower = s.to_ascii_lowercase();
    let index = if let Some(i) = REG_ALIASES.iter().position(|&a| a == lower) {
        Some(i as u8)
    } else {
        lower
            .strip_prefix('r')
            .filter(|d| !d.is_empty() && d.len() <= 2 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u8>().ok())
    };
    index.and_then(Reg::new).ok_or_else(|| {
        err(
            line,
            format!("`{s}` is not a register (r0..r12, or ra sp t0-t2 s0 s1 a0-a5)"),
        )
    })
}

fn parse_target(line: usize, s: &str) -> Result<Target, AsmError> {
    if let Some(n) = s.strip_prefix('@') {
        let v = parse_int(n).map_err(|m| err(line, format!("bad target `{s}`: {m}")))?;
        return u32::try_from(v)
            .map(Target::Abs)
            .map_err(|_| err(line, format!("target {s} is not a 32-bit code offset")));
    }
    if is_ident(s) {
        return Ok(Target::Label(s.to_string()));
    }
    Err(err(
        line,
        format!("`{s}` is not a jump target (a label, or @<code offset>)"),
    ))
}

/// Parses hex bytes: tokens of hex-digit pairs, optionally `0x`-prefixed,
/// separated by spaces or commas.
fn parse_hex(line: usize, s: &str) -> Result<Vec<u8>, AsmError> {
    let mut out = Vec::new();
    for token in s.split(|c: char| c.is_whitespace() || c == ',') {
        if token.is_empty() {
            continue;
        }
        let digits = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        let bytes = digits.as_bytes();
        if bytes.is_empty() || bytes.len() % 2 != 0 {
            return Err(err(
                line,
                format!("bad hex `{token}`: expected pairs of hex digits"),
            ));
        }
        for pair in bytes.chunks(2) {
            let hi = char::from(pair[0]).to_digit(16);
            let lo = pair.get(1).and_then(|&c| char::from(c).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => {
                    return Err(err(
                        line,
                        format!("bad hex `{token}`: expected pairs of hex digits"),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Sets `slot` once; a second, different value is an error.
fn set_once<T: PartialEq + Copy + fmt::Display>(
    slot: &mut Option<(T, usize)>,
    value: T,
    line: usize,
    what: &str,
) -> Result<(), AsmError> {
    if let Some((old, old_line)) = *slot {
        if old != value {
            return Err(err(
                line,
                format!("{what} {value} conflicts with {what} {old} on line {old_line}"),
            ));
        }
        return Ok(());
    }
    *slot = Some((value, line));
    Ok(())
}

impl Source {
    fn line(&mut self, line: usize, raw: &str) -> Result<(), AsmError> {
        let text = match raw.find([';', '#']) {
            Some(i) => &raw[..i],
            None => raw,
        };
        let mut rest = text.trim();
        while let Some(colon) = rest.find(':') {
            self.define_label(line, rest[..colon].trim())?;
            rest = rest[colon + 1..].trim();
        }
        if rest.is_empty() {
            return Ok(());
        }
        let (word, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        match word.strip_prefix('.') {
            Some(d) => self.directive(line, d, args),
            None => self.instruction(line, word, args),
        }
    }

    fn define_label(&mut self, line: usize, name: &str) -> Result<(), AsmError> {
        if let Some(n) = name.strip_prefix('@') {
            let v = parse_int(n)
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| err(line, format!("`{name}` is not a valid numeric label")))?;
            self.numeric_labels.push((v, self.items.len(), line));
            return Ok(());
        }
        if !is_ident(name) {
            return Err(err(
                line,
                format!(
                    "`{name}` is not a valid label (letters, digits, `_`, `.`, not starting \
                     with a digit; or @<code offset>)"
                ),
            ));
        }
        if let Some(&(_, prev)) = self.labels.get(name) {
            return Err(err(
                line,
                format!("label `{name}` is already defined on line {prev}"),
            ));
        }
        self.labels
            .insert(name.to_string(), (self.items.len(), line));
        Ok(())
    }

    fn push_item(&mut self, line: usize, item: Item) {
        self.code_line.get_or_insert(line);
        self.items.push(item);
    }

    fn directive(&mut self, line: usize, name: &str, args: &str) -> Result<(), AsmError> {
        match name {
            "profile" => {
                let p = Profile::parse(args).ok_or_else(|| {
                    err(
                        line,
                        format!("unknown profile `{args}` (expected 0.8 or 0.7)"),
                    )
                })?;
                set_once(&mut self.profile, p, line, ".profile")
            }
            "container" => {
                let c = Container::parse(args).ok_or_else(|| {
                    err(
                        line,
                        format!("unknown container `{args}` (expected raw, standard or jam)"),
                    )
                })?;
                set_once(&mut self.container, c, line, ".container")
            }
            "ro_data" | "rw_data" => {
                let bytes = parse_hex(line, args)?;
                self.standard_line.get_or_insert(line);
                let data = if name == "ro_data" {
                    &mut self.ro_data
                } else {
                    &mut self.rw_data
                };
                data.extend_from_slice(&bytes);
                Ok(())
            }
            "heap_pages" => {
                let v = parse_uint(line, ".heap_pages", args, u64::from(u16::MAX))? as u16;
                self.standard_line.get_or_insert(line);
                set_once(&mut self.heap_pages, v, line, ".heap_pages")
            }
            "stack_size" => {
                let v = parse_uint(line, ".stack_size", args, MAX_DATA_LEN as u64)? as u32;
                self.standard_line.get_or_insert(line);
                set_once(&mut self.stack_size, v, line, ".stack_size")
            }
            "metadata" => {
                let bytes = parse_hex(line, args)?;
                self.jam_line.get_or_insert(line);
                self.metadata.extend_from_slice(&bytes);
                Ok(())
            }
            "code_blob" => {
                let bytes = parse_hex(line, args)?;
                let blob = self.code_blob.get_or_insert_with(|| (Vec::new(), line));
                blob.0.extend_from_slice(&bytes);
                Ok(())
            }
            "jump_table_entry_size" => {
                let v = parse_uint(line, ".jump_table_entry_size", args, 255)? as u8;
                set_once(&mut self.entry_size, v, line, ".jump_table_entry_size")
            }
            "jump_table" => {
                if args.is_empty() {
                    return Ok(());
                }
                for part in args.split(',') {
                    let part = part.trim();
                    if part.is_empty() {
                        return Err(err(line, "empty jump table entry"));
                    }
                    let t = parse_target(line, part)?;
                    self.jump_table.push((t, line));
                }
                Ok(())
            }
            "length_prefix" => {
                let mut words = args.split_whitespace();
                let (Some(field), Some(width), None) = (words.next(), words.next(), words.next())
                else {
                    return Err(err(
                        line,
                        ".length_prefix takes a field (jump_table, code, metadata) and a width",
                    ));
                };
                let index = match field {
                    "jump_table" => PREFIX_JUMP_TABLE,
                    "code" => PREFIX_CODE,
                    "metadata" => {
                        self.jam_line.get_or_insert(line);
                        PREFIX_METADATA
                    }
                    _ => {
                        return Err(err(
                            line,
                            format!(
                                "unknown length prefix `{field}` (expected jump_table, code \
                                 or metadata)"
                            ),
                        ))
                    }
                };
                let w = parse_uint(line, "length prefix width", width, 9)? as u8;
                if w == 0 {
                    return Err(err(line, "a length prefix is 1 to 9 bytes, not 0"));
                }
                set_once(&mut self.prefix[index], w, line, ".length_prefix")
            }
            "bitmask_padding" => {
                let v = parse_uint(line, ".bitmask_padding", args, 255)? as u8;
                set_once(&mut self.padding, v, line, ".bitmask_padding")
            }
            "raw" | "bytes" => {
                let bytes = parse_hex(line, args)?;
                if bytes.is_empty() {
                    return Err(err(line, format!(".{name} needs at least one byte")));
                }
                let item = if name == "raw" {
                    Item::Raw { bytes }
                } else {
                    Item::Bytes { bytes }
                };
                self.push_item(line, item);
                Ok(())
            }
            _ => Err(err(line, format!("unknown directive `.{name}`"))),
        }
    }

    fn instruction(&mut self, line: usize, word: &str, args: &str) -> Result<(), AsmError> {
        let name = word.to_ascii_lowercase();
        let op = Opcode::from_name(&name)
            .ok_or_else(|| err(line, format!("unknown instruction `{word}`")))?;
        let format = op.format();
        let ops: Vec<&str> = if args.is_empty() {
            Vec::new()
        } else {
            args.split(',').map(str::trim).collect()
        };
        if ops.len() != operand_count(format) {
            return Err(err(
                line,
                format!(
                    "`{name}` takes {} operand(s) ({}), found {}",
                    operand_count(format),
                    operand_syntax(format),
                    ops.len()
                ),
            ));
        }
        if ops.iter().any(|s| s.is_empty()) {
            return Err(err(line, format!("empty operand in `{name} {args}`")));
        }
        let op_at = |i: usize| ops.get(i).copied().unwrap_or("");
        let reg = |i: usize| parse_reg(line, op_at(i));
        let imm = |i: usize| parse_imm32(line, op_at(i));
        let mut target = None;
        let args = match format {
            Format::NoArgs => Args::NoArgs(NoArgs),
            Format::OneImm => Args::OneImm(OneImm { imm: imm(0)? }),
            Format::RegExtImm => Args::RegExtImm(RegExtImm {
                a: reg(0)?,
                imm: parse_imm64(line, op_at(1))?,
            }),
            Format::TwoImm => Args::TwoImm(TwoImm {
                x: imm(0)?,
                y: imm(1)?,
            }),
            Format::OneOffset => {
                target = Some(parse_target(line, op_at(0))?);
                Args::OneOffset(OneOffset { target: 0 })
            }
            Format::RegImm => Args::RegImm(RegImm {
                a: reg(0)?,
                imm: imm(1)?,
            }),
            Format::RegTwoImm => Args::RegTwoImm(RegTwoImm {
                a: reg(0)?,
                x: imm(1)?,
                y: imm(2)?,
            }),
            Format::RegImmOffset => {
                let a = reg(0)?;
                let imm = imm(1)?;
                target = Some(parse_target(line, op_at(2))?);
                Args::RegImmOffset(RegImmOffset { a, imm, target: 0 })
            }
            Format::TwoReg => Args::TwoReg(TwoReg {
                d: reg(0)?,
                a: reg(1)?,
            }),
            Format::TwoRegImm => Args::TwoRegImm(TwoRegImm {
                a: reg(0)?,
                b: reg(1)?,
                imm: imm(2)?,
            }),
            Format::TwoRegOffset => {
                let a = reg(0)?;
                let b = reg(1)?;
                target = Some(parse_target(line, op_at(2))?);
                Args::TwoRegOffset(TwoRegOffset { a, b, target: 0 })
            }
            Format::TwoRegTwoImm => Args::TwoRegTwoImm(TwoRegTwoImm {
                a: reg(0)?,
                b: reg(1)?,
                x: imm(2)?,
                y: imm(3)?,
            }),
            Format::ThreeReg => Args::ThreeReg(ThreeReg {
                d: reg(0)?,
                a: reg(1)?,
                b: reg(2)?,
            }),
        };
        self.push_item(
            line,
            Item::Inst {
                line,
                op,
                args,
                target,
            },
        );
        Ok(())
    }

    fn resolve(&self, t: &Target, line: usize) -> Result<Resolved, AsmError> {
        match t {
            Target::Abs(v) => Ok(Resolved::Abs(*v)),
            Target::Label(name) => self
                .labels
                .get(name)
                .map(|&(item, _)| Resolved::Item(item))
                .ok_or_else(|| err(line, format!("undefined label `{name}`"))),
        }
    }

    fn finish(self, profile: Profile) -> Result<Vec<u8>, AsmError> {
        let profile = self.profile.map_or(profile, |(p, _)| p);
        for item in &self.items {
            if let Item::Inst { line, op, .. } = item {
                if op.number(profile).is_none() {
                    return Err(err(
                        *line,
                        format!("`{}` is not an instruction of GP {profile}", op.name()),
                    ));
                }
            }
        }
        let container = match self.container {
            Some((c, _)) => c,
            None if self.jam_line.is_some() => Container::Jam,
            None if self.standard_line.is_some() => Container::Standard,
            None => Container::Raw,
        };
        if container == Container::Raw {
            if let Some(l) = self.standard_line.or(self.jam_line) {
                return Err(err(
                    l,
                    "this directive needs `.container standard` or `.container jam`",
                ));
            }
        }
        if container == Container::Standard {
            if let Some(l) = self.jam_line {
                return Err(err(l, "metadata needs `.container jam`"));
            }
        }
        let blob = match &self.code_blob {
            Some((bytes, blob_line)) => {
                let conflict = [
                    self.code_line,
                    self.jump_table.first().map(|&(_, l)| l),
                    self.entry_size.map(|(_, l)| l),
                    self.prefix[PREFIX_JUMP_TABLE].map(|(_, l)| l),
                    self.prefix[PREFIX_CODE].map(|(_, l)| l),
                    self.padding.map(|(_, l)| l),
                ]
                .into_iter()
                .flatten()
                .min();
                if let Some(l) = conflict {
                    return Err(err(
                        l,
                        format!(
                            "`.code_blob` (line {blob_line}) gives the whole code blob; it \
                             cannot be combined with code, jump table or bitmask directives"
                        ),
                    ));
                }
                bytes.clone()
            }
            None => self.build_blob(profile)?,
        };
        if container == Container::Raw {
            return Ok(blob);
        }

        let data_line = self.standard_line.or(self.container.map(|(_, l)| l));
        let line = data_line.unwrap_or(1);
        if self.ro_data.len() > MAX_DATA_LEN || self.rw_data.len() > MAX_DATA_LEN {
            return Err(err(
                line,
                format!("data sections are at most {MAX_DATA_LEN} bytes"),
            ));
        }
        if u32::try_from(blob.len()).is_err() {
            return Err(err(line, "the code blob is larger than 4 GiB"));
        }
        let program = StandardProgram {
            ro_data: self.ro_data,
            rw_data: self.rw_data,
            heap_pages: self.heap_pages.map_or(0, |(v, _)| v),
            stack_size: self.stack_size.map_or(0, |(v, _)| v),
            code: blob,
        };
        let standard = program.to_bytes();
        if let Err(e) = StandardProgram::parse(&standard) {
            return Err(err(line, format!("invalid standard program: {e}")));
        }
        if container == Container::Standard {
            return Ok(standard);
        }
        let meta_line = self.jam_line.unwrap_or(line);
        let mut out = Vec::with_capacity(standard.len() + self.metadata.len() + 9);
        push_natural(
            self.metadata.len() as u64,
            self.prefix[PREFIX_METADATA].map(|(w, _)| w),
            &mut out,
        )
        .map_err(|m| err(meta_line, m))?;
        out.extend_from_slice(&self.metadata);
        out.extend_from_slice(&standard);
        Ok(out)
    }

    /// Lays out the code and builds the program blob.
    fn build_blob(&self, profile: Profile) -> Result<Vec<u8>, AsmError> {
        let items = &self.items;
        let n = items.len();
        let mut targets = Vec::with_capacity(n);
        for item in items {
            targets.push(match item {
                Item::Inst {
                    target: Some(t),
                    line,
                    ..
                } => Some(self.resolve(t, *line)?),
                _ => None,
            });
        }

        // Minimal sizes: every offset 0.
        let mut scratch = Vec::new();
        let mut sizes = Vec::with_capacity(n);
        for item in items {
            sizes.push(match item {
                Item::Inst { line, op, args, .. } => {
                    scratch.clear();
                    encode_item(profile, *op, *args, 0, 0, 0, &mut scratch, *line)?;
                    scratch.len()
                }
                Item::Raw { bytes } | Item::Bytes { bytes } => bytes.len(),
            });
        }
        let mut starts = Vec::with_capacity(n + 1);
        let mut pc = 0usize;
        for &s in &sizes {
            starts.push(pc);
            pc = pc.saturating_add(s);
        }
        starts.push(pc);

        // Grow sizes until stable. Offsets to absolute targets use the exact
        // pc of this pass; backward labels use this pass's positions, forward
        // labels the distance of the previous pass. Sizes never shrink, so
        // this terminates; with only labels it finds the least layout, with
        // only absolute targets it is exact after one pass.
        let max_passes = 4 * n + 2;
        let mut passes = 0;
        loop {
            let mut changed = false;
            let mut cur = Vec::with_capacity(n + 1);
            let mut pc = 0usize;
            for (i, item) in items.iter().enumerate() {
                cur.push(pc);
                if let (Item::Inst { line, op, args, .. }, Some(t)) = (item, targets[i]) {
                    let target = match t {
                        Resolved::Abs(v) => v,
                        Resolved::Item(j) if j <= i => cur[j] as u32,
                        Resolved::Item(j) => pc.wrapping_add(starts[j] - starts[i]) as u32,
                    };
                    scratch.clear();
                    encode_item(
                        profile,
                        *op,
                        *args,
                        target,
                        pc as u32,
                        0,
                        &mut scratch,
                        *line,
                    )?;
                    if scratch.len() > sizes[i] {
                        sizes[i] = scratch.len();
                        changed = true;
                    }
                }
                pc = pc.saturating_add(sizes[i]);
            }
            cur.push(pc);
            starts = cur;
            if !changed {
                break;
            }
            passes += 1;
            if passes > max_passes {
                return Err(err(
                    self.code_line.unwrap_or(1),
                    "internal error: code layout does not converge",
                ));
            }
        }
        let total = starts[n];
        if total > MAX_CODE_LEN {
            return Err(err(
                self.code_line.unwrap_or(1),
                format!("the code is {total} bytes, more than {MAX_CODE_LEN}"),
            ));
        }

        for &(offset, item, line) in &self.numeric_labels {
            if starts[item] != offset as usize {
                return Err(err(
                    line,
                    format!(
                        "label @{offset} is at code offset {}; a numeric label must name its \
                         own offset (use a symbolic label to let the code move)",
                        starts[item]
                    ),
                ));
            }
        }

        // Emit the code and the bitmask.
        let mut code = Vec::with_capacity(total);
        let mut mask = vec![0u8; total.div_ceil(8)];
        let mut mark = |pc: usize| {
            if let Some(b) = mask.get_mut(pc / 8) {
                *b |= 1 << (pc % 8);
            }
        };
        for (i, item) in items.iter().enumerate() {
            let pc = starts[i];
            match item {
                Item::Inst { line, op, args, .. } => {
                    let target = match targets[i] {
                        Some(Resolved::Abs(v)) => v,
                        Some(Resolved::Item(j)) => starts[j] as u32,
                        None => 0,
                    };
                    mark(pc);
                    encode_item(
                        profile, *op, *args, target, pc as u32, sizes[i], &mut code, *line,
                    )?;
                    if code.len() != starts[i + 1] {
                        return Err(err(*line, "internal error: instruction size changed"));
                    }
                }
                Item::Raw { bytes } => {
                    mark(pc);
                    code.extend_from_slice(bytes);
                }
                Item::Bytes { bytes } => code.extend_from_slice(bytes),
            }
        }
        if let Some((padding, line)) = self.padding {
            if padding != 0 {
                let used = total % 8;
                if used == 0 {
                    return Err(err(
                        line,
                        format!(
                            "the code is {total} bytes, a multiple of 8: the bitmask has no \
                             padding bits"
                        ),
                    ));
                }
                let code_bits = (1u8 << used) - 1;
                if padding & code_bits != 0 {
                    return Err(err(
                        line,
                        format!(
                            "padding 0x{padding:02x} sets bits of code bytes; only the top {} \
                             bits of the last bitmask byte are padding (mask 0x{:02x})",
                            8 - used,
                            !code_bits
                        ),
                    ));
                }
                if let Some(last) = mask.last_mut() {
                    *last |= padding;
                }
            }
        }

        // The jump table.
        let mut entries = Vec::with_capacity(self.jump_table.len());
        for (t, line) in &self.jump_table {
            entries.push(match self.resolve(t, *line)? {
                Resolved::Abs(v) => (v, *line),
                Resolved::Item(j) => (starts[j] as u32, *line),
            });
        }
        let values: Vec<u32> = entries.iter().map(|&(v, _)| v).collect();
        let z = self
            .entry_size
            .map_or_else(|| default_entry_size(&values), |(z, _)| z);
        if z > 4 && !entries.is_empty() {
            let line = self.entry_size.map_or(1, |(_, l)| l);
            return Err(err(
                line,
                format!("jump table entries are at most 4 bytes, not {z}"),
            ));
        }
        for &(v, line) in &entries {
            if z < 4 && u64::from(v) >> (8 * u32::from(z)) != 0 {
                return Err(err(
                    line,
                    format!("jump table entry {v} does not fit the entry size of {z} bytes"),
                ));
            }
        }

        let mut out = Vec::with_capacity(total + mask.len() + entries.len() * 4 + 20);
        let prefix_err = |index: usize| {
            let line = self.prefix[index].map_or(1, |(_, l)| l);
            move |m: String| err(line, m)
        };
        push_natural(
            entries.len() as u64,
            self.prefix[PREFIX_JUMP_TABLE].map(|(w, _)| w),
            &mut out,
        )
        .map_err(prefix_err(PREFIX_JUMP_TABLE))?;
        out.push(z);
        push_natural(
            total as u64,
            self.prefix[PREFIX_CODE].map(|(w, _)| w),
            &mut out,
        )
        .map_err(prefix_err(PREFIX_CODE))?;
        for v in values {
            out.extend_from_slice(&v.to_le_bytes()[..usize::from(z.min(4))]);
        }
        out.extend_from_slice(&code);
        out.extend_from_slice(&mask);
        Ok(out)
    }
}

/// Appends the encoding of `op args` (jump target `target`) at `pc`, widening
/// the offset field so that it takes at least `min_len` bytes.
#[allow(
    clippy::too_many_arguments,
    reason = "one private helper, all plain values"
)]
fn encode_item(
    profile: Profile,
    op: Opcode,
    args: Args,
    target: u32,
    pc: u32,
    min_len: usize,
    out: &mut Vec<u8>,
    line: usize,
) -> Result<(), AsmError> {
    let inst = Instruction::from_args(op, with_target(args, target))
        .ok_or_else(|| err(line, "internal error: operands do not match the format"))?;
    let start = out.len();
    codec::encode(profile, &inst, pc, out).ok_or_else(|| {
        err(
            line,
            format!("`{}` is not an instruction of GP {profile}", op.name()),
        )
    })?;
    let len = out.len() - start;
    if len < min_len {
        let widen = min_len - len;
        let off = target.wrapping_sub(pc);
        let have = imm_len(off);
        if static_target(&inst).is_none() || have + widen > 4 {
            return Err(err(line, "internal error: cannot widen the instruction"));
        }
        out.truncate(out.len() - have);
        out.extend_from_slice(&off.to_le_bytes()[..have + widen]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::Program;

    fn blob_bytes(jt: &[u32], z: u8, code: &[u8], starts: &[usize]) -> Vec<u8> {
        let mut mask = vec![0u8; code.len().div_ceil(8)];
        for &s in starts {
            mask[s / 8] |= 1 << (s % 8);
        }
        Blob {
            jump_table: jt.to_vec(),
            jump_table_entry_size: z,
            code: code.to_vec(),
            bitmask: mask,
        }
        .to_bytes()
    }

    #[track_caller]
    fn round_trip(bytes: &[u8], container: Container, profile: Profile) -> String {
        let text = disassemble(bytes, container, profile).unwrap();
        match assemble(&text, profile) {
            Ok(back) => assert_eq!(back, bytes, "round trip changed the bytes:\n{text}"),
            Err(e) => panic!("{e}\n{text}"),
        }
        text
    }

    const HAND_WRITTEN: &str = "
        ; counts r7 down to zero, then halts
        .container standard
        .stack_size 4096
        .heap_pages 1
        .ro_data 0102 0x0304
        .jump_table done, start
        start:
            load_imm r8, -1             # r8 = -1
            load_imm_64 a1, 0x123456789abcdef0
            store_imm_u32 0x20000, -2
            branch_eq_imm r7, 0, done
        loop:
            add_imm_64 r7, r7, -1
            add_64 r10, r7, r8
            branch_ne_imm r7, 0, loop
        done: jump_ind r0, 0
    ";

    #[test]
    fn hand_written_program() {
        let bytes = assemble(HAND_WRITTEN, Profile::V0_8).unwrap();
        let p = StandardProgram::parse(&bytes).unwrap();
        assert_eq!(p.ro_data, [1, 2, 3, 4]);
        assert_eq!(p.stack_size, 4096);
        assert_eq!(p.heap_pages, 1);
        let blob = Blob::parse(&p.code).unwrap();
        assert_eq!(&blob.code[..3], &[51, 8, 0xFF]);
        let program = Program::from_bytes(&p.code, Profile::V0_8).unwrap();
        // `done` and `start` resolved into the jump table.
        let done = blob.jump_table[0];
        assert_eq!(blob.jump_table[1], 0);
        assert!(program.is_block_start(done));
        let text = round_trip(&bytes, Container::Standard, Profile::V0_8);
        assert!(text.contains("load_imm r8, -1"), "{text}");
        assert!(
            text.contains("load_imm_64 r8, 0x123456789abcdef0"),
            "{text}"
        );
        assert!(text.contains("store_imm_u32 0x20000, -2"), "{text}");
        assert!(
            text.contains(&format!("branch_eq_imm r7, 0, @{done}")),
            "{text}"
        );
        assert!(text.contains(&format!(".jump_table @{done}, @0")), "{text}");
        assert!(!text.contains(".raw"), "{text}");
    }

    #[test]
    fn module_doc_example_is_a_valid_program() {
        let src = ".container standard
            load_imm r7, 10
            fallthrough             ; ends the block, so `loop` starts one
        loop:
            add_imm_64 r7, r7, -1
            branch_ne_imm r7, 0, loop
            jump_ind r0, 0          ; r0 = 0xFFFF0000 at start: halt";
        let bytes = assemble(src, Profile::V0_8).unwrap();
        let p = StandardProgram::parse(&bytes).unwrap();
        let program = Program::from_bytes(&p.code, Profile::V0_8).unwrap();
        assert!(program.is_block_start(4));
        round_trip(&bytes, Container::Standard, Profile::V0_8);
    }

    #[test]
    fn labels_grow_offsets_to_a_fixpoint() {
        // A forward and a backward branch over 200 bytes need 2-byte offsets.
        let mut src = String::from("top: branch_eq r7, r8, end\nmid: fallthrough\n");
        for _ in 0..20 {
            src.push_str("load_imm_64 r1, 0x1122334455667788\n");
        }
        src.push_str("back: branch_ne r7, r8, top\nend: jump mid\ntrap\n");
        let bytes = assemble(&src, Profile::V0_8).unwrap();
        let blob = Blob::parse(&bytes).unwrap();
        // branch_eq: opcode, regs, 2-byte offset.
        assert_eq!(blob.code[0], 170);
        let end_pc = 4 + 1 + 200 + 4;
        assert_eq!(
            i16::from_le_bytes([blob.code[2], blob.code[3]]) as usize,
            end_pc
        );
        let back = (4 - end_pc as i16).to_le_bytes();
        assert_eq!(&blob.code[end_pc..end_pc + 3], &[40, back[0], back[1]]);
        let program = Program::from_bytes(&bytes, Profile::V0_8).unwrap();
        assert!(program.is_block_start(end_pc as u32));
        round_trip(&bytes, Container::Raw, Profile::V0_8);
        // A label at the very end and a label on its own line.
        let bytes = assemble("jump x\nx:\n", Profile::V0_8).unwrap();
        assert_eq!(Blob::parse(&bytes).unwrap().code, [40, 2]);
    }

    #[test]
    fn two_consistent_layouts_keep_the_original() {
        // 126 traps, then two jumps whose sizes depend on each other: both
        // 2 + 2 and 3 + 3 bytes are consistent layouts. The 3 + 3 one must
        // come back as it was.
        let mut code = vec![0u8; 126];
        code.extend_from_slice(&[40, 0x81, 0x00]); // at 126: jump +129 = 255
        code.extend_from_slice(&[40, 0x7F, 0xFF]); // at 129: jump -129 = 0
        code.extend(core::iter::repeat_n(0u8, 123)); // 132..255
        code.push(0); // 255
        let starts: Vec<usize> = (0..code.len())
            .filter(|&i| !matches!(i, 127 | 128 | 130 | 131))
            .collect();
        let bytes = blob_bytes(&[], 0, &code, &starts);
        let text = round_trip(&bytes, Container::Raw, Profile::V0_8);
        assert!(
            text.contains("jump @255") && text.contains("jump @0"),
            "{text}"
        );
        // Written with symbolic labels, the assembler picks the smaller one.
        let mut src = String::from("top:\n");
        src.push_str(&"trap\n".repeat(126));
        src.push_str("jump end\njump top\n");
        src.push_str(&"trap\n".repeat(123));
        src.push_str("end: trap\n");
        let small = Blob::parse(&assemble(&src, Profile::V0_8).unwrap()).unwrap();
        assert_eq!(&small.code[126..130], &[40, 127, 40, 0x80]);
    }

    #[test]
    fn non_canonical_encodings_round_trip() {
        let cases: Vec<Vec<u8>> = vec![
            // load_imm r7, 1 with a 3-byte immediate
            blob_bytes(&[], 0, &[51, 7, 1, 0, 0, 0], &[0, 5]),
            // register nibble 13 (clamps to 12)
            blob_bytes(&[], 0, &[100, 0xD1, 0], &[0, 2]),
            // three-register with d byte 0xF3
            blob_bytes(&[], 0, &[190, 0x21, 0xF3, 0], &[0, 3]),
            // padding after a trap
            blob_bytes(&[], 0, &[0, 9, 9, 0], &[0, 3]),
            // a gap of more than 24 bytes
            blob_bytes(&[], 0, &[1u8; 40], &[0, 39]),
            // invalid opcodes in 0.8
            blob_bytes(&[], 0, &[111, 1, 255, 0], &[0, 2, 3]),
            // k = 0 at offset 0, and no starts at all
            blob_bytes(&[], 0, &[0, 0, 51, 7], &[2]),
            blob_bytes(&[], 0, &[5, 6, 7], &[]),
            // empty code
            blob_bytes(&[], 0, &[], &[]),
            // jump tables of every entry size
            blob_bytes(&[0, 0], 0, &[0], &[0]),
            blob_bytes(&[1, 255], 1, &[0], &[0]),
            blob_bytes(&[1, 0xFFFF], 2, &[0], &[0]),
            blob_bytes(&[7, 0xFF_FFFF], 3, &[0], &[0]),
            blob_bytes(&[9, u32::MAX], 4, &[0], &[0]),
            blob_bytes(&[1], 4, &[0], &[0]),
            blob_bytes(&[], 7, &[0], &[0]),
            // store_imm with a length byte of 0x0F (lx capped at 4)
            blob_bytes(&[], 0, &[30, 0x0F, 1, 2, 3, 4, 5, 0], &[0, 7]),
            // a branch whose offset reads past the end of the code
            blob_bytes(&[], 0, &[81, 0x17], &[0]),
            // offset to the middle of an instruction, and far away
            blob_bytes(&[], 0, &[40, 2, 51, 7, 1, 40, 0x70, 0x11, 0x01], &[0, 2, 5]),
        ];
        for bytes in &cases {
            for profile in Profile::ALL {
                round_trip(bytes, Container::Raw, profile);
            }
        }
        // Bitmask padding bits, and a non-minimal length prefix.
        let mut bytes = blob_bytes(&[], 0, &[0, 0, 0], &[0, 1, 2]);
        *bytes.last_mut().unwrap() |= 0xA0;
        let text = round_trip(&bytes, Container::Raw, Profile::V0_8);
        assert!(text.contains(".bitmask_padding 0xa0"), "{text}");
        let bytes = [0x80, 0x00, 0x00, 0xC0, 0x01, 0x00, 0x00, 0x01];
        assert!(Blob::parse(&bytes).is_ok());
        let text = round_trip(&bytes, Container::Raw, Profile::V0_8);
        assert!(text.contains(".length_prefix jump_table 2"), "{text}");
        assert!(text.contains(".length_prefix code 3"), "{text}");
        let text = round_trip(
            &blob_bytes(&[], 0, &[51, 7, 1, 0, 0, 0], &[0, 5]),
            Container::Raw,
            Profile::V0_8,
        );
        assert!(text.contains(".raw 33 07 01 00 00"), "{text}");
        assert!(text.contains("load_imm r7, 1 (non-canonical)"), "{text}");
    }

    #[test]
    fn containers_round_trip() {
        let code = blob_bytes(&[0], 1, &[51, 7, 1, 0], &[0, 3]);
        let standard = StandardProgram {
            ro_data: (0..200u8).collect(),
            rw_data: vec![1, 2, 3],
            heap_pages: 3,
            stack_size: 0x1234,
            code: code.clone(),
        };
        let s = standard.to_bytes();
        assert_eq!(detect(&s), Some(Container::Standard));
        round_trip(&s, Container::Standard, Profile::V0_8);
        let jam = JamBlob {
            metadata: b"test-service".to_vec(),
            program: standard.clone(),
        }
        .to_bytes();
        assert_eq!(detect(&jam), Some(Container::Jam));
        round_trip(&jam, Container::Jam, Profile::V0_7);
        // Non-minimal metadata length prefix.
        let mut jam2 = vec![0x80, 3, 1, 2, 3];
        jam2.extend_from_slice(&s);
        assert_eq!(detect(&jam2), Some(Container::Jam));
        let text = round_trip(&jam2, Container::Jam, Profile::V0_8);
        assert!(text.contains(".length_prefix metadata 2"), "{text}");
        // A standard program whose code blob does not parse, or is empty.
        for code in [vec![9, 9, 9], vec![]] {
            let bad = StandardProgram {
                code,
                ..standard.clone()
            }
            .to_bytes();
            let text = round_trip(&bad, Container::Standard, Profile::V0_8);
            assert!(text.contains(".code_blob"), "{text}");
        }
        assert_eq!(detect(&code), Some(Container::Raw));
        assert_eq!(detect(&[0xFF]), None);
        // Without `.container`, data directives imply a standard program.
        let b = assemble(".stack_size 16\ntrap", Profile::V0_8).unwrap();
        assert_eq!(detect(&b), Some(Container::Standard));
        let b = assemble(".metadata 00ff\ntrap", Profile::V0_8).unwrap();
        assert_eq!(detect(&b), Some(Container::Jam));
        assert_eq!(assemble("trap", Profile::V0_8).unwrap(), [0, 0, 1, 0, 1]);
    }

    #[test]
    fn profile_directive_overrides() {
        let b = assemble(".profile 0.7\nsbrk r1, r2\ntrap", Profile::V0_8).unwrap();
        assert_eq!(Blob::parse(&b).unwrap().code, [101, 0x21, 0]);
        let e = assemble("sbrk r1, r2", Profile::V0_8).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("not an instruction of GP 0.8"), "{e}");
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_blobs_round_trip() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..3000 {
            let profile = Profile::ALL[round % 2];
            let len = rng.below(70) as usize;
            let mut code = Vec::with_capacity(len);
            for _ in 0..len {
                code.push(match rng.below(4) {
                    0 => 0,
                    1 => rng.below(16) as u8,
                    2 => Opcode::ALL[rng.below(Opcode::ALL.len() as u64) as usize]
                        .number(profile)
                        .unwrap_or(0),
                    _ => rng.next() as u8,
                });
            }
            let mut mask: Vec<u8> = (0..len.div_ceil(8)).map(|_| rng.next() as u8).collect();
            if len % 8 != 0 && rng.below(2) == 0 {
                if let Some(last) = mask.last_mut() {
                    *last &= (1u8 << (len % 8)) - 1;
                }
            }
            let z = rng.below(5) as u8;
            let jt: Vec<u32> = (0..rng.below(4))
                .map(|_| {
                    let v = rng.next() as u32;
                    if z == 4 {
                        v
                    } else {
                        v & ((1u32 << (8 * z)) - 1)
                    }
                })
                .collect();
            let mut bytes = Vec::new();
            let width = |rng: &mut Rng, x: u64| {
                let w = natural_len(x) as u8 + rng.below(3) as u8;
                if rng.below(3) == 0 {
                    Some(w.min(9))
                } else {
                    None
                }
            };
            let w = width(&mut rng, jt.len() as u64);
            push_natural(jt.len() as u64, w, &mut bytes).unwrap();
            bytes.push(z);
            let w = width(&mut rng, len as u64);
            push_natural(len as u64, w, &mut bytes).unwrap();
            for e in &jt {
                bytes.extend_from_slice(&e.to_le_bytes()[..usize::from(z)]);
            }
            bytes.extend_from_slice(&code);
            bytes.extend_from_slice(&mask);
            assert!(Blob::parse(&bytes).is_ok());
            round_trip(&bytes, Container::Raw, profile);
            if round % 10 == 0 {
                let s = StandardProgram {
                    ro_data: vec![round as u8; round % 7],
                    rw_data: vec![],
                    heap_pages: round as u16,
                    stack_size: round as u32,
                    code: bytes,
                }
                .to_bytes();
                round_trip(&s, Container::Standard, profile);
            }
        }
    }

    #[test]
    fn every_instruction_round_trips() {
        let mut rng = Rng(42);
        for profile in Profile::ALL {
            let mut code = Vec::new();
            let mut starts = Vec::new();
            for &op in Opcode::ALL {
                if op.number(profile).is_none() {
                    continue;
                }
                for _ in 0..8 {
                    let imm = match rng.below(3) {
                        0 => rng.below(300) as u32,
                        1 => rng.next() as u32,
                        _ => (rng.below(300) as u32).wrapping_neg(),
                    };
                    let r = |rng: &mut Rng| Reg::new(rng.below(13) as u8).unwrap();
                    let args = match op.format() {
                        Format::NoArgs => Args::NoArgs(NoArgs),
                        Format::OneImm => Args::OneImm(OneImm { imm }),
                        Format::RegExtImm => Args::RegExtImm(RegExtImm {
                            a: r(&mut rng),
                            imm: rng.next() >> rng.below(64),
                        }),
                        Format::TwoImm => Args::TwoImm(TwoImm {
                            x: imm,
                            y: rng.next() as u32,
                        }),
                        Format::OneOffset => Args::OneOffset(OneOffset { target: imm }),
                        Format::RegImm => Args::RegImm(RegImm {
                            a: r(&mut rng),
                            imm,
                        }),
                        Format::RegTwoImm => Args::RegTwoImm(RegTwoImm {
                            a: r(&mut rng),
                            x: imm,
                            y: imm.rotate_left(9),
                        }),
                        Format::RegImmOffset => Args::RegImmOffset(RegImmOffset {
                            a: r(&mut rng),
                            imm,
                            target: rng.below(1000) as u32,
                        }),
                        Format::TwoReg => Args::TwoReg(TwoReg {
                            d: r(&mut rng),
                            a: r(&mut rng),
                        }),
                        Format::TwoRegImm => Args::TwoRegImm(TwoRegImm {
                            a: r(&mut rng),
                            b: r(&mut rng),
                            imm,
                        }),
                        Format::TwoRegOffset => Args::TwoRegOffset(TwoRegOffset {
                            a: r(&mut rng),
                            b: r(&mut rng),
                            target: rng.next() as u32,
                        }),
                        Format::TwoRegTwoImm => Args::TwoRegTwoImm(TwoRegTwoImm {
                            a: r(&mut rng),
                            b: r(&mut rng),
                            x: imm,
                            y: !imm,
                        }),
                        Format::ThreeReg => Args::ThreeReg(ThreeReg {
                            a: r(&mut rng),
                            b: r(&mut rng),
                            d: r(&mut rng),
                        }),
                    };
                    let inst = Instruction::from_args(op, args).unwrap();
                    starts.push(code.len());
                    let pc = code.len() as u32;
                    codec::encode(profile, &inst, pc, &mut code).unwrap();
                }
            }
            let bytes = blob_bytes(&[], 0, &code, &starts);
            let text = round_trip(&bytes, Container::Raw, profile);
            assert!(!text.contains(".raw"), "{text}");
            // Reassembling the printed text without the numeric labels (as a
            // person editing it would) still gives the same bytes.
            let stripped: String = text
                .lines()
                .filter(|l| !l.starts_with('@'))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(assemble(&stripped, profile).unwrap(), bytes);
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("trap\nfrobnicate r1", 2, "unknown instruction `frobnicate`"),
            ("add_64 r1, r2", 1, "takes 3 operand(s)"),
            ("\n\nmove_reg r1, r13", 3, "`r13` is not a register"),
            ("load_imm r1, 0x100000000", 1, "does not fit 32 bits"),
            ("load_imm r1, -0x80000001", 1, "does not fit 32 bits"),
            ("load_imm_64 r1, 0x10000000000000000", 1, "too large"),
            ("load_imm r1, 12z", 1, "not a number"),
            ("load_imm r1, -", 1, "not a number"),
            ("jump nowhere", 1, "undefined label `nowhere`"),
            ("x: trap\nx: trap", 2, "already defined on line 1"),
            ("jump 5", 1, "not a jump target"),
            ("jump @99999999999", 1, "not a 32-bit code offset"),
            ("trap\n.raw 0g", 2, "bad hex"),
            ("trap\n.raw 123", 2, "bad hex"),
            (".raw", 1, "needs at least one byte"),
            (".frob 1", 1, "unknown directive"),
            (".profile 0.9", 1, "unknown profile"),
            (
                ".profile 0.8\n.profile 0.7",
                2,
                "conflicts with .profile 0.8 on line 1",
            ),
            (
                ".container raw\n.ro_data 00",
                2,
                "needs `.container standard`",
            ),
            (
                ".container standard\n.metadata 00",
                2,
                "needs `.container jam`",
            ),
            (".heap_pages 70000", 1, "must be in 0..=65535"),
            (".stack_size 0x1000000", 1, "must be in 0..="),
            ("trap\n@3: trap", 2, "label @3 is at code offset 1"),
            ("9x: trap", 1, "not a valid label"),
            (
                ".jump_table_entry_size 1\n.jump_table @300",
                2,
                "does not fit",
            ),
            (
                ".jump_table_entry_size 5\n.jump_table @3",
                1,
                "at most 4 bytes",
            ),
            (".bitmask_padding 0x01\ntrap", 1, "sets bits of code bytes"),
            (
                "trap\n.raw 00000000000000\n.bitmask_padding 2",
                3,
                "no padding",
            ),
            (".length_prefix code 0", 1, "1 to 9 bytes"),
            (".length_prefix foo 1", 1, "unknown length prefix"),
            (
                ".container standard\ntrap\n.code_blob 00",
                2,
                "cannot be combined",
            ),
            (
                "branch_eq_imm r1, 2",
                1,
                "takes 3 operand(s) (reg, imm, target)",
            ),
            ("add_64 r1, , r2", 1, "empty operand"),
            (".jump_table a,", 1, "empty jump table entry"),
        ];
        for &(src, line, msg) in cases {
            match assemble(src, Profile::V0_8) {
                Ok(b) => panic!("{src:?} assembled to {b:?}"),
                Err(e) => {
                    assert_eq!(e.line, line, "{src:?}: {e}");
                    assert!(e.message.contains(msg), "{src:?}: {e}");
                    assert_eq!(format!("{e}"), format!("line {line}: {}", e.message));
                }
            }
        }
        let src = format!(".length_prefix code 1\n.bytes {}", "00 ".repeat(128));
        let e = assemble(&src, Profile::V0_8).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(
            e.message.contains("does not fit a 1-byte length prefix"),
            "{e}"
        );
    }

    #[test]
    fn mangled_sources_give_errors_not_panics() {
        let mut rng = Rng(7);
        let alphabet = b" \n,:;.@-_0123456789abcdefxrz#";
        let bytes = assemble(HAND_WRITTEN, Profile::V0_8).unwrap();
        let base = [
            String::from(HAND_WRITTEN),
            disassemble(&bytes, Container::Standard, Profile::V0_8).unwrap(),
        ];
        for round in 0..2000 {
            let mut text: Vec<u8> = base[round % 2].as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(text.len() as u64) as usize;
                let c = alphabet[rng.below(alphabet.len() as u64) as usize];
                match rng.below(3) {
                    0 => text[at] = c,
                    1 => text.insert(at, c),
                    _ => {
                        text.remove(at);
                    }
                }
            }
            let text = String::from_utf8(text).unwrap();
            if let Err(e) = assemble(&text, Profile::V0_8) {
                assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e}");
            }
        }
    }

    #[test]
    fn register_aliases_and_number_forms() {
        let a = assemble(
            "add_64 a0, sp, ra\nload_imm t0, 0b101\nload_imm s1, -0x10\nload_imm a5, 1_000\nLOAD_IMM R3, +7\ntrap",
            Profile::V0_8,
        )
        .unwrap();
        let b = assemble(
            "add_64 r7, r1, r0\nload_imm r2, 5\nload_imm r6, -16\nload_imm r12, 1000\nload_imm r3, 7\ntrap",
            Profile::V0_8,
        )
        .unwrap();
        assert_eq!(a, b);
        // 0xFFFFFFFF and -1 are the same 32-bit pattern.
        assert_eq!(
            assemble("load_imm r1, 0xFFFFFFFF", Profile::V0_8).unwrap(),
            assemble("load_imm r1, -1", Profile::V0_8).unwrap()
        );
    }
}
