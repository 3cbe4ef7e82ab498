//! Parser fuzzing: one target per parser of the workspace, and a seeded,
//! structure-aware mutational fuzzer for them that runs on stable Rust.
//!
//! Every target is a plain `fn(&[u8])` that must never panic, whatever the
//! input. It feeds the bytes to one parser and, when the parser accepts them,
//! checks the result for consistency where that is cheap (a parsed blob
//! re-encodes and re-parses to the same thing, a disassembly assembles back to
//! the same bytes, two memories run the same program identically, …), so a
//! wrong answer fails as loudly as a crash. [`TARGETS`] lists them.
//!
//! [`fuzz`] runs one target: it starts from a seed corpus ([`seeds`]: the
//! conformance vectors and programs under `../shared`, programs made by
//! [`crate::gen`], assembly and JSON made from those), mutates inputs with
//! byte-level mutations (bit flips, interesting values, insert / delete /
//! duplicate ranges, splicing, GP natural-number edits) and structure-aware
//! ones (instructions, bitmask bits, jump-table entries and header fields of
//! blobs, standard programs and JAM blobs; tokens and lines of text), catches
//! panics with [`std::panic::catch_unwind`] and guards against hangs with a
//! watchdog. Targets report cheap "features" (which error, which opcodes,
//! which exits); an input that shows a new one joins the corpus, a crude
//! stand-in for coverage feedback. The same seed gives the same run.
//!
//! The `pvm-parse-fuzz` binary drives it; `tests/parsers.rs` runs every
//! target for a bounded number of executions; `libfuzzer/` (outside the
//! workspace) wraps the same targets for libFuzzer. See `README.md`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use pvm_core::asm::{self, Container};
use pvm_core::codec::{self, Reader};
use pvm_core::gas::Naive;
use pvm_core::interp::Heap;
use pvm_core::isa::{Opcode, Profile};
use pvm_core::program::INVALID_TARGET;
use pvm_core::standard::{ARGS_START, RO_START, STACK_TOP, ZONE_SIZE};
use pvm_core::{
    Access, Blob, Error, Exit, FlatMemory, Instruction, JamBlob, Memory, PagedMemory, Program,
    StandardProgram, Vm, HALT_ADDRESS, PAGE_SIZE,
};
use pvm_std::vectors::{self, Expect, GasChoice, Step, Vector};

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// What a target's input is, which decides how it is seeded and mutated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// A program blob (`deblob` input).
    Blob,
    /// A [`Blob`] built field by field (see [`program_parts`]).
    Parts,
    /// A GP standard program.
    Standard,
    /// A JAM code blob.
    Jam,
    /// A stream of GP natural numbers and fixed-width integers.
    Natural,
    /// Instruction bytes.
    Code,
    /// Assembly text.
    AsmText,
    /// A conformance-vector JSON file.
    Json,
    /// An 8-byte run header, then a program blob or standard program.
    Exec,
    /// Any of a program blob, a standard program or a JAM code blob.
    Container,
}

/// A fuzz target: a parser (and what is checked about its answer).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The name `pvm-parse-fuzz --target` takes.
    pub name: &'static str,
    pub kind: InputKind,
    /// Must not panic, whatever the input.
    pub run: fn(&[u8]),
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    pub about: &'static str,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "blob",
        kind: InputKind::Blob,
        run: blob,
        max_len: 1 << 16,
        about: "Blob::parse (deblob); re-encodes, re-parses, rejects a prefix and a longer blob",
    },
    Target {
        name: "program-0.8",
        kind: InputKind::Blob,
        run: program_v0_8,
        max_len: 1 << 16,
        about: "Program::from_bytes under GP 0.8 (validation, blocks, pipeline gas); invariants",
    },
    Target {
        name: "program-0.7",
        kind: InputKind::Blob,
        run: program_v0_7,
        max_len: 1 << 16,
        about: "Program::from_bytes under GP 0.7 (implicit traps); accepts whatever deblobs",
    },
    Target {
        name: "program-parts",
        kind: InputKind::Parts,
        run: program_parts,
        max_len: 1 << 14,
        about: "Program::new on a Blob built from unchecked parts, both profiles",
    },
    Target {
        name: "standard",
        kind: InputKind::Standard,
        run: standard,
        max_len: 1 << 16,
        about: "StandardProgram::parse (the GP's Y format); exact re-encoding; Y on small layouts",
    },
    Target {
        name: "jam",
        kind: InputKind::Jam,
        run: jam,
        max_len: 1 << 16,
        about: "JamBlob::parse; re-encodes and re-parses",
    },
    Target {
        name: "natural",
        kind: InputKind::Natural,
        run: natural,
        max_len: 1 << 10,
        about: "codec::Reader (natural, fixed, bytes) and encode_natural round trips",
    },
    Target {
        name: "decode",
        kind: InputKind::Code,
        run: decode,
        max_len: 1 << 10,
        about: "codec::decode under both profiles; canonical re-encoding and the asm printer agree",
    },
    Target {
        name: "asm-0.8",
        kind: InputKind::AsmText,
        run: asm_v0_8,
        max_len: 1 << 14,
        about: "asm::assemble (profile 0.8); its output disassembles and assembles back",
    },
    Target {
        name: "asm-0.7",
        kind: InputKind::AsmText,
        run: asm_v0_7,
        max_len: 1 << 14,
        about: "asm::assemble (profile 0.7); its output disassembles and assembles back",
    },
    Target {
        name: "disasm",
        kind: InputKind::Container,
        run: disasm,
        max_len: 1 << 14,
        about:
            "asm::detect and asm::disassemble (every container, both profiles); exact round trip",
    },
    Target {
        name: "vector",
        kind: InputKind::Json,
        run: vector,
        max_len: 1 << 15,
        about:
            "pvm_std::vectors::Vector::parse (both formats); re-emitted JSON parses the same; runs",
    },
    Target {
        name: "exec",
        kind: InputKind::Exec,
        run: exec,
        max_len: 1 << 14,
        about:
            "a valid program runs on Vm with FlatMemory and PagedMemory (and step by step) alike",
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

thread_local! {
    static FEATURES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    static ACCEPTED: Cell<bool> = const { Cell::new(false) };
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records a feature of the current execution (see [`fuzz`]). Only inside
/// [`run_one`], which drains them: a target called directly (libFuzzer)
/// records nothing, so nothing accumulates.
fn feature(x: u64) {
    if IN_TARGET.with(Cell::get) {
        FEATURES.with(|f| f.borrow_mut().push(x));
    }
}

/// Records that the parser accepted the current input.
fn accepted() {
    ACCEPTED.with(|a| a.set(true));
}

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01B3;

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A feature from a tag and a value.
fn tagged(tag: &str, v: u64) -> u64 {
    splitmix(fnv(tag.as_bytes()) ^ v)
}

/// log2 bucket of a size.
fn bucket(n: usize) -> u64 {
    u64::from(usize::BITS - n.leading_zeros())
}

/// A feature for a message: its first four words made of lower-case letters,
/// `_` and `.` only (and, if `keep_quoted`, words quoted in backticks, which
/// name fields in vector errors), so that one kind of error is one feature
/// whatever the input text and numbers in it.
fn message_class(tag: &str, s: &str, keep_quoted: bool) -> u64 {
    message_class_without(tag, s, keep_quoted, "")
}

/// [`message_class`] without the words that occur in `source` (the input
/// line an error is about, whose text the message may repeat).
fn message_class_without(tag: &str, s: &str, keep_quoted: bool, source: &str) -> u64 {
    let mut h = fnv(tag.as_bytes());
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.' || c == '-')
    };
    let words = s
        .split_whitespace()
        .map(|w| {
            if keep_quoted {
                w.trim_matches(|c| c == '`' || c == ':')
            } else {
                w
            }
        })
        .filter(|w| plain(w) && !source.contains(w))
        .take(4);
    for w in words {
        h = splitmix(h ^ fnv(w.as_bytes()));
    }
    h
}

fn error_feature(tag: &str, e: &Error) -> u64 {
    let v = match e {
        Error::Truncated { what, .. } => fnv(what.as_bytes()),
        Error::TrailingBytes { what, .. } => fnv(what.as_bytes()) ^ 1,
        Error::OutOfRange { what, .. } => fnv(what.as_bytes()) ^ 2,
        Error::EmptyCode => 3,
        Error::UnknownOpcode { byte, .. } => 0x100 | u64::from(*byte),
        Error::NotInstructionStart { .. } => 4,
        Error::MissingTerminator { .. } => 5,
        Error::BadEntryPoint { .. } => 6,
        Error::LayoutTooLarge => 7,
        Error::MissingBlockCost { .. } => 8,
        Error::Unsupported(what) => fnv(what.as_bytes()) ^ 9,
        Error::Finished => 10,
        _ => 11,
    };
    tagged(tag, v)
}

fn profile_tag(profile: Profile) -> u64 {
    match profile {
        Profile::V0_8 => 8,
        Profile::V0_7 => 7,
    }
}

/// Index of `op` in [`Opcode::ALL`].
fn opcode_index(op: Opcode) -> u64 {
    Opcode::ALL.iter().position(|&o| o == op).unwrap_or(0) as u64
}

/// Length of the canonical GP natural-number encoding of `x`.
fn natural_len(x: u64) -> usize {
    let mut v = Vec::with_capacity(9);
    codec::encode_natural(x, &mut v);
    v.len()
}

/// Whether both length prefixes of the blob header in `data` are canonical.
fn blob_header_is_canonical(data: &[u8]) -> bool {
    let mut r = Reader::new(data);
    let Some(jt) = r.natural() else { return false };
    if r.pos() != natural_len(jt) || r.fixed(1).is_none() {
        return false;
    }
    let at = r.pos();
    r.natural().is_some_and(|c| r.pos() - at == natural_len(c))
}

/// `Blob::parse` (GP `deblob`).
pub fn blob(data: &[u8]) {
    let b = match Blob::parse(data) {
        Ok(b) => b,
        Err(e) => return feature(error_feature("blob", &e)),
    };
    accepted();
    feature(tagged(
        "blob-ok",
        (u64::from(b.jump_table_entry_size.min(5)) << 16)
            | (bucket(b.code.len()) << 8)
            | bucket(b.jump_table.len()),
    ));
    check_blob(&b);
    let again = b.to_bytes();
    assert!(
        again.len() <= data.len(),
        "re-encoding grew the blob from {} to {} bytes",
        data.len(),
        again.len()
    );
    assert_eq!(
        Blob::parse(&again).as_ref(),
        Ok(&b),
        "the re-encoded blob parses differently"
    );
    if blob_header_is_canonical(data) {
        assert_eq!(again, data, "a canonical blob re-encodes differently");
    }
    assert!(
        Blob::parse(&data[..data.len() - 1]).is_err(),
        "a strict prefix of a blob parses too (deblob must be unique)"
    );
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(
        matches!(Blob::parse(&longer), Err(Error::TrailingBytes { .. })),
        "a blob with a byte appended is not rejected for trailing bytes"
    );
}

/// What every parsed blob satisfies.
fn check_blob(b: &Blob) {
    assert_eq!(b.bitmask.len(), b.code.len().div_ceil(8), "bitmask length");
    let z = b.jump_table_entry_size;
    if !b.jump_table.is_empty() {
        assert!(z <= 4, "jump table entries of {z} bytes");
    }
    if z < 4 {
        for &e in &b.jump_table {
            assert!(
                u64::from(e) >> (8 * u32::from(z)) == 0,
                "entry {e} does not fit {z} bytes"
            );
        }
    }
    let n = b.code.len();
    for i in 0..n.min(512) {
        let s = b.skip(i) as usize;
        assert!(s <= 24, "skip({i}) = {s}");
        let next = i + 1 + s;
        if s < 24 && next < n {
            assert!(b.is_start(next), "skip({i}) = {s} stops at a non-start");
        }
        if s > 0 && i + 1 < n {
            assert!(!b.is_start(i + 1), "skip({i}) = {s} passes a start");
        }
    }
    assert!(!b.is_start(n), "an instruction start past the code");
}

/// `Program::from_bytes` under GP 0.8.
pub fn program_v0_8(data: &[u8]) {
    program(data, Profile::V0_8);
}

/// `Program::from_bytes` under GP 0.7.
pub fn program_v0_7(data: &[u8]) {
    program(data, Profile::V0_7);
}

fn program(data: &[u8], profile: Profile) {
    let tag = match profile {
        Profile::V0_8 => "program-0.8",
        Profile::V0_7 => "program-0.7",
    };
    let parsed = Blob::parse(data);
    let p = match Program::from_bytes(data, profile) {
        Ok(p) => p,
        Err(e) => {
            feature(error_feature(tag, &e));
            match parsed {
                Err(blob_error) => assert_eq!(e, blob_error, "not the deblob error"),
                Ok(_) if profile == Profile::V0_7 => {
                    panic!("GP 0.7 rejects a blob that deblobs: {e}")
                }
                Ok(_) => assert!(
                    matches!(
                        e,
                        Error::EmptyCode
                            | Error::NotInstructionStart { .. }
                            | Error::UnknownOpcode { .. }
                            | Error::MissingTerminator { .. }
                    ),
                    "GP 0.8 rejects a blob that deblobs with a non-validation error: {e}"
                ),
            }
            return;
        }
    };
    accepted();
    check_program(&p, profile);
    // The canonical re-encoding is the same program.
    let again = Program::from_bytes(&p.blob().to_bytes(), profile)
        .unwrap_or_else(|e| panic!("the re-encoded blob of a valid program is rejected: {e}"));
    assert_eq!(again.instructions(), p.instructions());
    assert_eq!(again.pcs(), p.pcs());
    assert_eq!(again.jump_table_targets(), p.jump_table_targets());
    assert_eq!(again.block_count(), p.block_count());
    for b in 0..p.block_count() {
        assert_eq!(again.block_cost(b), p.block_cost(b));
    }
    if profile == Profile::V0_8 {
        // The naive model counts instructions.
        let mut naive = again;
        naive
            .set_gas_model(&Naive)
            .unwrap_or_else(|e| panic!("the naive gas model fails: {e}"));
        for b in 0..naive.block_count() {
            assert_eq!(naive.block_cost(b), naive.block(b).count() as u64);
        }
    }
}

/// What every validated program satisfies.
fn check_program(p: &Program, profile: Profile) {
    assert_eq!(p.profile(), profile);
    let insts = p.instructions();
    let pcs = p.pcs();
    let n = insts.len();
    let blob = p.blob();
    let code_len = blob.code.len();
    assert_eq!(pcs.len(), n, "one pc per instruction");
    assert!(
        pcs.windows(2).all(|w| w[0] < w[1]),
        "pcs are not increasing"
    );
    if code_len > 0 {
        assert_eq!(pcs.first(), Some(&0), "no instruction at pc 0");
    }
    let implicit = |i: usize| p.is_implicit_trap(i);
    if profile == Profile::V0_8 {
        assert!(n > 0, "a valid 0.8 program without instructions");
        assert!((0..n).all(|i| !implicit(i)), "an implicit trap under 0.8");
        assert!(insts[n - 1].is_terminator(), "0.8: last is no terminator");
        assert!((pcs[n - 1] as usize) < code_len);
    }
    let mut real = 0;
    for i in 0..n {
        let pc = pcs[i];
        if implicit(i) {
            assert_eq!(insts[i], Instruction::Trap(pvm_core::isa::NoArgs));
            continue;
        }
        real += 1;
        assert!(p.is_instruction(pc), "instruction {i} at {pc}");
        assert!(
            blob.is_start(pc as usize),
            "instruction at a non-start {pc}"
        );
        let skip = blob.skip(pc as usize);
        assert_eq!(
            codec::decode(profile, &blob.code, pc, skip),
            Ok(insts[i]),
            "instruction {i} at {pc} does not decode from its bytes"
        );
        // ϖ: the first instruction and every one after a terminator.
        if i == 0 || (!implicit(i - 1) && insts[i - 1].is_terminator()) {
            assert!(p.is_block_start(pc), "{pc} should be a block start");
        }
    }
    assert_eq!(p.instruction_count(), real);
    for (i, inst) in insts.iter().enumerate() {
        let t = p.static_target(i);
        if t != INVALID_TARGET {
            let t = t as usize;
            assert!(t < n, "static target {t} of {i} out of range");
            if !matches!(inst, Instruction::Fallthrough(_)) {
                assert!(p.is_block_start(pcs[t]), "static target not in ϖ");
            }
        }
    }
    assert_eq!(p.jump_table_targets().len(), blob.jump_table.len());
    for (k, &t) in p.jump_table_targets().iter().enumerate() {
        if t != INVALID_TARGET {
            assert!((t as usize) < n && p.is_block_start(pcs[t as usize]));
            assert_eq!(pcs[t as usize], blob.jump_table[k]);
        } else {
            assert!(!p.is_block_start(blob.jump_table[k]));
        }
    }
    let blocks = p.block_count();
    assert_eq!(blocks == 0, n == 0, "{blocks} blocks for {n} instructions");
    let mut next = 0;
    for b in 0..blocks {
        let s = p.block_start(b);
        assert_eq!(s, next, "blocks are not contiguous");
        assert_eq!(p.block_pc(b), pcs[s]);
        assert!(p.block_cost(b) >= 1, "block {b} costs nothing");
        let mut len = 0;
        for (k, (pc, inst, imp)) in p.block(b).enumerate() {
            let idx = s + k;
            assert_eq!((pc, inst, imp), (pcs[idx], insts[idx], implicit(idx)));
            assert_eq!(p.block_of(idx), b);
            len += 1;
        }
        assert!(len > 0, "empty block {b}");
        let last = s + len - 1;
        for (idx, inst) in insts.iter().enumerate().take(last).skip(s) {
            assert!(!implicit(idx) && !inst.is_terminator());
        }
        assert!(
            implicit(last) || insts[last].is_terminator(),
            "block {b} does not end with a terminator"
        );
        next = last + 1;
    }
    assert_eq!(next, n);
    for inst in insts.iter().take(64) {
        feature(tagged(
            "op",
            (profile_tag(profile) << 16) | opcode_index(inst.opcode()),
        ));
    }
    feature(tagged(
        "program-shape",
        (profile_tag(profile) << 16) | (bucket(blocks) << 8) | bucket(blob.jump_table.len()),
    ));
}

/// `Program::new` on a [`Blob`] built from unchecked parts: byte 0 is the
/// entry size, byte 1 the entry count (low nibble) and profile (bit 7, 0.7),
/// bytes 2–3 the code length; then 4-byte entries, the code, and the rest is
/// the bitmask, whatever its length.
pub fn program_parts(data: &[u8]) {
    let [z, nb, l0, l1, rest @ ..] = data else {
        return;
    };
    let profile = if nb & 0x80 != 0 {
        Profile::V0_7
    } else {
        Profile::V0_8
    };
    let mut r = Reader::new(rest);
    let jump_table: Vec<u32> = (0..usize::from(nb & 0x0F))
        .map(|_| r.fixed(4).unwrap_or(0) as u32)
        .collect();
    let code_len = usize::from(u16::from_le_bytes([*l0, *l1])).min(r.rest().len());
    let code = r.bytes(code_len).unwrap_or(&[]).to_vec();
    let blob = Blob {
        jump_table,
        jump_table_entry_size: *z,
        code,
        bitmask: r.rest().to_vec(),
    };
    let mask_ok = blob.bitmask.len() == blob.code.len().div_ceil(8);
    match Program::new(blob.clone(), profile) {
        Ok(p) => {
            accepted();
            assert!(mask_ok, "a bitmask of the wrong length is accepted");
            check_program(&p, profile);
            assert_eq!(p.blob(), &blob);
            let fits = blob.jump_table.is_empty()
                || (*z <= 4
                    && blob
                        .jump_table
                        .iter()
                        .all(|&e| *z == 4 || u64::from(e) >> (8 * u32::from(*z)) == 0));
            if fits {
                match Blob::parse(&blob.to_bytes()) {
                    Ok(b) => assert_eq!(b, blob, "the encoded parts parse differently"),
                    // The implementation limit on zero-width entries.
                    Err(Error::OutOfRange {
                        what: "jump table length",
                        ..
                    }) if *z == 0 => {}
                    Err(e) => panic!("the encoded parts do not parse: {e}"),
                }
            }
        }
        Err(e) => {
            feature(error_feature("parts", &e));
            if !mask_ok {
                assert!(matches!(e, Error::OutOfRange { .. }), "{e}");
            } else {
                assert_eq!(profile, Profile::V0_8, "GP 0.7 rejects sound parts: {e}");
            }
        }
    }
}

/// Pages a standard program's layout maps (without the arguments).
fn layout_pages(sp: &StandardProgram) -> u64 {
    let pages = |n: u64| n.div_ceil(u64::from(PAGE_SIZE));
    pages(sp.ro_data.len() as u64)
        + pages(sp.rw_data.len() as u64)
        + u64::from(sp.heap_pages)
        + pages(u64::from(sp.stack_size))
}

/// Y is exercised only on layouts of at most this many pages (bigger ones
/// cost milliseconds to map).
const SMALL_LAYOUT_PAGES: u64 = 64;

/// `StandardProgram::parse` (the GP's Y format), then Y itself.
pub fn standard(data: &[u8]) {
    let sp = match StandardProgram::parse(data) {
        Ok(sp) => sp,
        Err(e) => return feature(error_feature("standard", &e)),
    };
    accepted();
    assert_eq!(
        sp.to_bytes(),
        data,
        "a standard program re-encodes differently"
    );
    let zone = u64::from(ZONE_SIZE);
    assert_eq!(
        u64::from(sp.heap_start()),
        2 * zone + (sp.ro_data.len() as u64).div_ceil(zone) * zone
    );
    let coarse = |n: usize| bucket(n).div_ceil(6);
    feature(tagged(
        "standard-ok",
        (coarse(sp.ro_data.len()) << 24)
            | (coarse(sp.rw_data.len()) << 16)
            | (coarse(usize::from(sp.heap_pages)) << 8)
            | coarse(sp.stack_size as usize),
    ));
    if layout_pages(&sp) > SMALL_LAYOUT_PAGES {
        return;
    }
    let args = &data[data.len().saturating_sub(usize::from(data[0] % 8))..];
    let init = sp
        .initialize::<PagedMemory>(args)
        .unwrap_or_else(|e| panic!("Y fails on a standard program that parses: {e}"));
    let regs = init.regs;
    let mut expected = [0u64; 13];
    expected[0] = u64::from(HALT_ADDRESS);
    expected[1] = u64::from(STACK_TOP);
    expected[7] = u64::from(ARGS_START);
    expected[8] = args.len() as u64;
    assert_eq!(regs, expected, "Y's registers");
    let m = init.memory;
    let page = |a: u32| m.page_access(a / PAGE_SIZE);
    let check_data = |start: u32, bytes: &[u8], access: Access| {
        if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
            assert_eq!(page(start), access);
            assert_eq!(m.peek(start), first);
            assert_eq!(m.peek(start + bytes.len() as u32 - 1), last);
        }
    };
    check_data(RO_START, &sp.ro_data, Access::Read);
    let h0 = sp.heap_start();
    check_data(h0, &sp.rw_data, Access::Write);
    check_data(ARGS_START, args, Access::Read);
    if sp.heap_pages > 0 || !sp.rw_data.is_empty() {
        assert_eq!(page(h0), Access::Write, "the heap is not writable");
    }
    let heap_len = (sp.rw_data.len() as u64).div_ceil(u64::from(PAGE_SIZE)) * u64::from(PAGE_SIZE)
        + u64::from(sp.heap_pages) * u64::from(PAGE_SIZE);
    assert_eq!(u64::from(init.heap.top), u64::from(h0) + heap_len);
    if sp.stack_size > 0 {
        assert_eq!(page(STACK_TOP - 1), Access::Write, "no stack");
    }
    assert_eq!(page(STACK_TOP), Access::None, "a page above the stack");
}

/// `JamBlob::parse`.
pub fn jam(data: &[u8]) {
    let j = match JamBlob::parse(data) {
        Ok(j) => j,
        Err(e) => return feature(error_feature("jam", &e)),
    };
    accepted();
    feature(tagged("jam-ok", bucket(j.metadata.len())));
    let again = j.to_bytes();
    assert!(again.len() <= data.len(), "re-encoding grew the JAM blob");
    assert_eq!(JamBlob::parse(&again).as_ref(), Ok(&j), "re-parse differs");
    let program = j.program.to_bytes();
    assert!(
        data.ends_with(&program),
        "the standard program is not the tail"
    );
    let meta_end = data.len() - program.len();
    let meta_start = meta_end - j.metadata.len();
    assert_eq!(&data[meta_start..meta_end], &j.metadata[..]);
    let mut r = Reader::new(data);
    assert_eq!(r.natural(), Some(j.metadata.len() as u64));
    assert_eq!(r.pos(), meta_start, "metadata does not follow its length");
}

/// Bytes a GP natural number whose first byte is `first` takes.
fn natural_width(first: u8) -> usize {
    first.leading_ones() as usize + 1
}

/// The GP natural-number codec and `Reader`.
pub fn natural(data: &[u8]) {
    accepted();
    let mut r = Reader::new(data);
    let mut enc = Vec::with_capacity(9);
    let mut count = 0u64;
    loop {
        let before = r.pos();
        match r.natural() {
            Some(x) => {
                let used = r.pos() - before;
                let first = data[before];
                assert_eq!(used, natural_width(first), "width of {first:#04x}");
                enc.clear();
                codec::encode_natural(x, &mut enc);
                assert!(enc.len() <= used, "{x}: canonical is longer than read");
                let mut r2 = Reader::new(&enc);
                assert_eq!(r2.natural(), Some(x), "{x} does not round trip");
                assert_eq!(r2.pos(), enc.len());
                if enc.len() == used {
                    assert_eq!(&data[before..r.pos()], &enc[..], "two encodings of {x}");
                }
                feature(tagged(
                    "natural",
                    (used as u64) << 1 | u64::from(enc.len() == used),
                ));
                count += 1;
                // Fixed-width reads in between, as a header mixes them.
                if x % 5 == 0 {
                    let n = (x / 5 % 9) as usize;
                    let at = r.pos();
                    match r.fixed(n) {
                        Some(v) => {
                            let mut expect = 0u64;
                            for (k, &b) in data[at..at + n].iter().enumerate() {
                                expect |= u64::from(b) << (8 * k);
                            }
                            assert_eq!(v, expect, "fixed({n}) at {at}");
                            assert_eq!(r.pos(), at + n);
                        }
                        None => {
                            assert!(data.len() - at < n, "fixed({n}) failed with bytes left");
                            assert_eq!(r.pos(), at, "a failed read moved");
                            assert_eq!(r.bytes(n), None);
                            assert_eq!(r.pos(), at);
                        }
                    }
                }
            }
            None => {
                assert_eq!(r.pos(), before, "a failed natural moved the reader");
                if let Some(&first) = data.get(before) {
                    assert!(
                        data.len() - before < natural_width(first),
                        "natural failed with enough bytes"
                    );
                }
                feature(tagged("natural-end", bucket(data.len() - before)));
                break;
            }
        }
    }
    feature(tagged("natural-count", bucket(count as usize)));
    // Any value round trips through the encoder.
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let base = u64::from_le_bytes(word);
    for x in [
        base,
        base >> (base % 64),
        !base,
        base >> 1 >> (data.len() % 64),
    ] {
        enc.clear();
        codec::encode_natural(x, &mut enc);
        assert_eq!(enc.len(), natural_len(x));
        let mut r = Reader::new(&enc);
        assert_eq!(r.natural(), Some(x));
        assert!(r.rest().is_empty());
    }
}

/// Instruction decoding (`codec::decode`) under both profiles.
pub fn decode(data: &[u8]) {
    let Some(&first) = data.first() else { return };
    accepted();
    let mut buf = Vec::with_capacity(80);
    for profile in Profile::ALL {
        let limit = data.len().min(48);
        let pcs = (0..limit).chain([data.len(), u32::MAX as usize]);
        for pc in pcs {
            let natural_skip = data.len().saturating_sub(pc + 1).min(24) as u32;
            let odd_skip = u32::from(data[pc % data.len()]) % 32;
            for skip in [natural_skip, odd_skip] {
                let byte = data.get(pc).copied().unwrap_or(0);
                match codec::decode(profile, data, pc as u32, skip) {
                    Ok(inst) => {
                        let op = inst.opcode();
                        assert_eq!(op.number(profile), Some(byte), "opcode byte");
                        assert_eq!(
                            codec::decode_args(op.format(), data, pc as u32, skip),
                            inst.args()
                        );
                        if pc > 64 {
                            continue;
                        }
                        feature(tagged(
                            "decode",
                            (profile_tag(profile) << 16) | opcode_index(op),
                        ));
                        // The canonical encoding decodes to the same instruction.
                        buf.clear();
                        buf.resize(pc, 0);
                        codec::encode(profile, &inst, pc as u32, &mut buf)
                            .unwrap_or_else(|| panic!("{op:?} has no encoding under {profile}"));
                        let len = buf.len() - pc - 1;
                        assert!(len <= 24, "{op:?}: {len} argument bytes");
                        assert_eq!(
                            codec::decode(profile, &buf, pc as u32, len as u32),
                            Ok(inst),
                            "canonical encoding of {inst:?} at {pc}"
                        );
                    }
                    Err(b) => {
                        assert_eq!(b, byte);
                        assert_eq!(Opcode::from_byte(profile, b), None, "{b} is an opcode");
                    }
                }
            }
        }
        // The printer and the assembler agree with the encoder (pc 0).
        let skip = data.len().saturating_sub(1).min(24) as u32;
        if let Ok(inst) = codec::decode(profile, data, 0, skip) {
            let text = asm::format_instruction(&inst);
            let bytes = asm::assemble(&text, profile)
                .unwrap_or_else(|e| panic!("`{text}` does not assemble: {e}"));
            let b = Blob::parse(&bytes).unwrap_or_else(|e| panic!("`{text}`: {e}"));
            buf.clear();
            codec::encode(profile, &inst, 0, &mut buf);
            assert_eq!(b.code, buf, "`{text}` assembles to other bytes");
            assert!(b.is_start(0));
        }
    }
    feature(tagged("decode-first", u64::from(first)));
}

/// `asm::assemble` under GP 0.8.
pub fn asm_v0_8(data: &[u8]) {
    assemble(data, Profile::V0_8);
}

/// `asm::assemble` under GP 0.7.
pub fn asm_v0_7(data: &[u8]) {
    assemble(data, Profile::V0_7);
}

const CONTAINERS: [Container; 3] = [Container::Raw, Container::Standard, Container::Jam];

fn assemble(data: &[u8], profile: Profile) {
    let text = String::from_utf8_lossy(data);
    let bytes = match asm::assemble(&text, profile) {
        Ok(bytes) => bytes,
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(
                e.line >= 1 && e.line <= lines,
                "error on line {} of {lines}: {}",
                e.line,
                e.message
            );
            let source = text.lines().nth(e.line - 1).unwrap_or("");
            return feature(message_class_without(
                "asm-error",
                &e.message,
                false,
                source,
            ));
        }
    };
    accepted();
    let mut any = false;
    for container in CONTAINERS {
        let Ok(listing) = asm::disassemble(&bytes, container, profile) else {
            continue;
        };
        any = true;
        feature(tagged(
            "asm-ok",
            fnv(container.name().as_bytes()) ^ bucket(bytes.len()),
        ));
        for (k, word) in LISTING_WORDS.iter().enumerate() {
            if listing.contains(word) {
                feature(tagged(
                    "asm-listing",
                    (profile_tag(profile) << 8) | k as u64,
                ));
            }
        }
        let back = asm::assemble(&listing, profile).unwrap_or_else(|e| {
            panic!("the disassembly ({container}) of assembled output does not assemble: {e}\n{listing}")
        });
        assert_eq!(
            back, bytes,
            "disassembly ({container}) does not round trip\n{listing}"
        );
    }
    if !any {
        // Only `.code_blob` can give a raw container bytes that do not parse.
        assert!(
            text.contains(".code_blob"),
            "assembled output parses as no container"
        );
    }
}

/// What a disassembly may hold beyond mnemonics (features of [`disasm`]).
const LISTING_WORDS: [&str; 10] = [
    ".raw",
    ".bytes",
    ".length_prefix",
    ".bitmask_padding",
    ".jump_table_entry_size",
    ".code_blob",
    "non-canonical",
    "invalid opcode",
    ".jump_table ",
    ".metadata",
];

/// `asm::detect` and `asm::disassemble`: whatever parses prints as text that
/// assembles back to the same bytes.
pub fn disasm(data: &[u8]) {
    let parses = [
        Blob::parse(data).is_ok(),
        StandardProgram::parse(data).is_ok(),
        JamBlob::parse(data).is_ok(),
    ];
    let expected = if parses[1] {
        Some(Container::Standard)
    } else if parses[2] {
        Some(Container::Jam)
    } else if parses[0] {
        Some(Container::Raw)
    } else {
        None
    };
    assert_eq!(asm::detect(data), expected, "detect");
    feature(tagged(
        "disasm",
        u64::from(parses[0]) | u64::from(parses[1]) << 1 | u64::from(parses[2]) << 2,
    ));
    for (container, parses) in CONTAINERS.into_iter().zip(parses) {
        for profile in Profile::ALL {
            let listing = asm::disassemble(data, container, profile);
            let Ok(listing) = listing else {
                assert!(!parses, "{container} parses but does not disassemble");
                continue;
            };
            assert!(parses, "{container} does not parse but disassembles");
            accepted();
            for (k, word) in LISTING_WORDS.iter().enumerate() {
                if listing.contains(word) {
                    feature(tagged("listing", (profile_tag(profile) << 8) | k as u64));
                }
            }
            let back = asm::assemble(&listing, profile).unwrap_or_else(|e| {
                panic!("disassembly ({container}, {profile}) does not assemble: {e}\n{listing}")
            });
            assert_eq!(
                back, data,
                "disassembly ({container}, {profile}) does not round trip\n{listing}"
            );
        }
    }
}

/// A vector as JSON text in its own format (the inverse of `Vector::parse`).
/// `None` if the steps do not have the shape a flat (0.7) file gives.
pub fn vector_json(v: &Vector) -> Option<String> {
    use serde_json::{json, Map, Value};
    let memory = |m: &[(u32, Vec<u8>)]| {
        Value::Array(
            m.iter()
                .map(|(a, c)| json!({"address": a, "contents": c}))
                .collect(),
        )
    };
    let value = match v.profile {
        Profile::V0_8 => {
            let steps: Vec<Value> = v
                .steps
                .iter()
                .map(|s| match s {
                    Step::SetReg(r, x) => json!({"set-reg": {"reg": r, "value": x}}),
                    Step::Map {
                        address,
                        length,
                        writable,
                    } => json!({"map": {"address": address, "length": length, "is-writable": writable}}),
                    Step::Write(a, c) => json!({"write": {"address": a, "contents": c}}),
                    Step::Run => json!({"run": {}}),
                    Step::Assert(e) => {
                        let mut o = Map::new();
                        o.insert("status".into(), json!(e.status));
                        if let Some(g) = e.gas {
                            o.insert("gas".into(), json!(g));
                        }
                        if let Some(pc) = e.pc {
                            o.insert("pc".into(), json!(pc));
                        }
                        if let Some(r) = e.regs {
                            o.insert("regs".into(), json!(r));
                        }
                        o.insert("memory".into(), memory(&e.memory));
                        if let Some(a) = e.page_fault_address {
                            o.insert("page-fault-address".into(), json!(a));
                        }
                        if let Some(h) = e.hostcall {
                            o.insert("hostcall".into(), json!(h));
                        }
                        json!({ "assert": o })
                    }
                })
                .collect();
            let costs: Vec<Value> = v
                .block_gas_costs
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|(pc, cost)| json!({"pc": pc, "cost": cost}))
                .collect();
            json!({
                "name": v.name,
                "initial-pc": v.initial_pc,
                "initial-gas": v.initial_gas,
                "program": v.program,
                "block-gas-costs": costs,
                "steps": steps,
            })
        }
        Profile::V0_7 => {
            let mut it = v.steps.iter().peekable();
            let mut regs = [0u64; 13];
            for (k, r) in regs.iter_mut().enumerate() {
                match it.next() {
                    Some(Step::SetReg(i, x)) if *i == k => *r = *x,
                    _ => return None,
                }
            }
            let mut maps = Vec::new();
            while let Some(Step::Map {
                address,
                length,
                writable,
            }) = it.peek()
            {
                maps.push(json!({"address": address, "length": length, "is-writable": writable}));
                it.next();
            }
            let mut writes = Vec::new();
            while let Some(Step::Write(a, c)) = it.peek() {
                writes.push((*a, c.clone()));
                it.next();
            }
            let (Some(Step::Run), Some(Step::Assert(e)), None) = (it.next(), it.next(), it.next())
            else {
                return None;
            };
            let (Some(gas), Some(pc), Some(expected_regs), None) =
                (e.gas, e.pc, e.regs, e.hostcall)
            else {
                return None;
            };
            let mut o = Map::new();
            o.insert("name".into(), json!(v.name));
            o.insert("initial-regs".into(), json!(regs));
            o.insert("initial-pc".into(), json!(v.initial_pc));
            o.insert("initial-page-map".into(), Value::Array(maps));
            o.insert("initial-memory".into(), memory(&writes));
            o.insert("initial-gas".into(), json!(v.initial_gas));
            o.insert("program".into(), json!(v.program));
            o.insert("expected-status".into(), json!(e.status));
            o.insert("expected-regs".into(), json!(expected_regs));
            o.insert("expected-pc".into(), json!(pc));
            o.insert("expected-memory".into(), memory(&e.memory));
            o.insert("expected-gas".into(), json!(gas));
            if let Some(a) = e.page_fault_address {
                o.insert("expected-page-fault-address".into(), json!(a));
            }
            Value::Object(o)
        }
    };
    serde_json::to_string(&value).ok()
}

/// A run of a vector is skipped when its maps cover more pages than this.
const VECTOR_MAX_PAGES: u64 = 64;
/// Gas a fuzzed vector runs with at most.
const VECTOR_MAX_GAS: i64 = 5_000;

/// `Vector::parse` (both formats); the vector re-emitted as JSON parses to
/// the same vector; then it runs (gas and memory capped) on the interpreter.
pub fn vector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let v = match Vector::parse(&text) {
        Ok(v) => v,
        Err(e) => return feature(message_class("vector-error", &e.0, true)),
    };
    accepted();
    let json =
        vector_json(&v).unwrap_or_else(|| panic!("a parsed vector cannot be written back: {v:?}"));
    let again = Vector::parse(&json)
        .unwrap_or_else(|e| panic!("the re-emitted vector does not parse: {e}\n{json}"));
    assert_eq!(
        format!("{again:?}"),
        format!("{v:?}"),
        "re-emitted vector differs"
    );
    for s in &v.steps {
        if let Step::SetReg(r, _) = s {
            assert!(*r < 13, "register {r}");
        }
    }
    // Run it, bounded.
    let pages: u64 = v
        .steps
        .iter()
        .map(|s| match s {
            Step::Map { length, .. } => u64::from(length.div_ceil(PAGE_SIZE)),
            _ => 0,
        })
        .sum();
    if pages > VECTOR_MAX_PAGES {
        return feature(tagged("vector-big", 0));
    }
    let mut bounded = v;
    bounded.initial_gas = bounded.initial_gas.min(VECTOR_MAX_GAS);
    let gas = match bounded.name.len() % 3 {
        0 => GasChoice::Naive,
        1 => GasChoice::Table,
        _ => GasChoice::Gp,
    };
    let result = vectors::run(&bounded, bounded.profile, gas);
    feature(tagged(
        "vector-run",
        (profile_tag(bounded.profile) << 32)
            ^ match &result {
                Ok(()) => 1,
                Err(f) => message_class("failure", &f.0, true),
            },
    ));
}

/// Most resumes of one run in [`exec`].
const MAX_RESUMES: usize = 12;
/// Steps a step-by-step run may take (gas bounds them long before).
const MAX_STEPS: u64 = 2_000_000;
/// Gas added after an out-of-gas exit.
const REFILL: u64 = 64;

/// What a run looked like at one exit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    exit: Result<Exit, Error>,
    pc: u32,
    gas: u64,
    regs: [u64; 13],
    finished: bool,
}

/// The initial state of a run.
struct Setup {
    regs: [u64; 13],
    pc: u32,
    gas: u64,
    heap: Option<Heap>,
    map_faults: bool,
}

/// Runs `program` from `setup`, resuming after host calls, page faults (if
/// `map_faults`) and out-of-gas a bounded number of times, run to run or
/// one step at a time. Returns the events, the memory, the pages mapped and
/// whether the run ended within [`MAX_STEPS`].
fn drive<M: Memory>(
    program: &Program,
    memory: M,
    s: &Setup,
    step: bool,
) -> (Vec<Event>, M, Vec<u32>, bool) {
    let mut vm = Vm::new(program, memory, s.pc, s.gas);
    *vm.regs_mut() = s.regs;
    vm.set_heap(s.heap);
    let mut events = Vec::new();
    let mut mapped = Vec::new();
    let mut steps = 0;
    for _ in 0..MAX_RESUMES {
        let before = vm.gas();
        let exit = if step {
            loop {
                steps += 1;
                if steps > MAX_STEPS {
                    return (events, vm.into_memory(), mapped, false);
                }
                match vm.step() {
                    Ok(None) => continue,
                    Ok(Some(e)) => break Ok(e),
                    Err(e) => break Err(e),
                }
            }
        } else {
            vm.run()
        };
        assert!(vm.gas() <= before, "gas grew from {before} to {}", vm.gas());
        events.push(Event {
            exit: exit.clone(),
            pc: vm.pc(),
            gas: vm.gas(),
            regs: *vm.regs(),
            finished: vm.is_finished(),
        });
        match exit {
            Err(Error::Finished) => panic!("a fresh or resumable machine is finished"),
            Err(e) => panic!("run failed: {e}"),
            Ok(Exit::Halt | Exit::Panic) => {
                assert!(vm.is_finished(), "halted but not finished");
                assert_eq!(vm.run(), Err(Error::Finished));
                break;
            }
            Ok(Exit::HostCall(id)) => {
                assert!(!vm.is_finished());
                vm.set_reg(7, u64::from(id).wrapping_mul(0x9E37_79B9));
            }
            Ok(Exit::PageFault(a)) => {
                assert!(a >= 0x10000 && a % PAGE_SIZE == 0, "fault at {a:#x}");
                assert_ne!(
                    vm.memory().page_access(a / PAGE_SIZE),
                    Access::Write,
                    "fault on a writable page {a:#x}"
                );
                if !s.map_faults {
                    break;
                }
                vm.memory_mut().set_access(a / PAGE_SIZE, 1, Access::Write);
                mapped.push(a / PAGE_SIZE);
            }
            Ok(Exit::OutOfGas) => vm.set_gas(vm.gas() + REFILL),
        }
    }
    (events, vm.into_memory(), mapped, true)
}

/// Checks that two memories agree on `pages` (access and contents).
fn same_memory<A: Memory, B: Memory>(a: &mut A, b: &mut B, pages: &[u32]) {
    let mut x = vec![0u8; PAGE_SIZE as usize];
    let mut y = vec![0u8; PAGE_SIZE as usize];
    for &p in pages {
        if !(0x10000 / PAGE_SIZE..1 << 20).contains(&p) {
            continue;
        }
        let access = a.page_access(p);
        assert_eq!(access, b.page_access(p), "access of page {p:#x}");
        if access != Access::None {
            let at = p * PAGE_SIZE;
            assert_eq!(a.read(at, &mut x), Ok(()));
            assert_eq!(b.read(at, &mut y), Ok(()));
            assert!(x == y, "contents of page {p:#x} differ");
        }
    }
}

/// Register values from a seed: edge values and addresses near the maps.
fn seeded_regs(seed: u32) -> [u64; 13] {
    const VALUES: [u64; 16] = [
        0,
        1,
        u64::MAX,
        0x10000,
        0x10FF8,
        0x13FFC,
        0x20000,
        0xFFFF_F000,
        0xFFFF_FFFF,
        HALT_ADDRESS as u64,
        0x8000_0000,
        i64::MIN as u64,
        i64::MAX as u64,
        1 << 32,
        7,
        0x12FFF,
    ];
    let mut s = u64::from(seed);
    let mut regs = [0u64; 13];
    for r in regs.iter_mut() {
        s = splitmix(s);
        *r = if s & 3 == 0 {
            s >> 2
        } else {
            VALUES[(s >> 8) as usize % VALUES.len()]
        };
    }
    if seed & 1 == 0 {
        regs[0] = u64::from(HALT_ADDRESS);
    }
    regs
}

/// Maps of a raw program's memory: `(first page, count, access)`.
fn raw_maps(layout: u8) -> &'static [(u32, u32, Access)] {
    match layout & 3 {
        0 => &[(0x10, 4, Access::Write)],
        1 => &[
            (0x10, 2, Access::Write),
            (0x12, 1, Access::Read),
            (0x20, 1, Access::Write),
        ],
        2 => &[
            (0x10, 1, Access::Read),
            (0xFFFFF, 1, Access::Write),
            (0xFEFDF, 1, Access::Write),
        ],
        _ => &[],
    }
}

/// A memory with `maps`, each page starting with a recognisable pattern.
fn raw_memory<M: Memory + Default>(maps: &[(u32, u32, Access)], seed: u32) -> M {
    let mut m = M::default();
    for &(first, count, access) in maps {
        m.set_access(first, count, Access::Write);
        for p in first..first + count {
            let pattern: Vec<u8> = (0..64u32)
                .map(|k| (k.wrapping_mul(31) ^ p ^ seed) as u8)
                .collect();
            assert_eq!(m.write(p * PAGE_SIZE, &pattern), Ok(()));
        }
        m.set_access(first, count, access);
    }
    m
}

/// A valid program runs on the interpreter, bounded. The first 8 bytes are
/// the run's header: flags (bit 0: GP 0.7; bit 1: the rest is a standard
/// program, run after Y; bit 2: also run step by step; bit 3: map faulting
/// pages; bit 4: naive gas under 0.8; bit 5: the pc is raw, else an
/// instruction index; bits 6–7: the memory layout of a raw blob, or the
/// argument length for Y), gas (2 bytes, mod 4096), pc (2 bytes), register
/// seed (3 bytes). It runs over a `FlatMemory` and a `PagedMemory` (and step
/// by step), which must give the same exits, registers, gas and memory.
pub fn exec(data: &[u8]) {
    let Some((h, body)) = data.split_first_chunk::<8>() else {
        return;
    };
    let flags = h[0];
    let profile = if flags & 1 != 0 {
        Profile::V0_7
    } else {
        Profile::V0_8
    };
    let gas = u64::from(u16::from_le_bytes([h[1], h[2]])) % 4096;
    let pc_sel = u16::from_le_bytes([h[3], h[4]]);
    let seed = u32::from_le_bytes([h[5], h[6], h[7], 0]);
    let standard = if flags & 2 != 0 {
        match StandardProgram::parse(body) {
            Ok(sp) if layout_pages(&sp) <= SMALL_LAYOUT_PAGES => Some(sp),
            Ok(_) => return feature(tagged("exec-big", 0)),
            Err(e) => return feature(error_feature("exec-standard", &e)),
        }
    } else {
        None
    };
    let code = standard.as_ref().map_or(body, |sp| &sp.code[..]);
    let mut program = match Program::from_bytes(code, profile) {
        Ok(p) => p,
        Err(e) => return feature(error_feature("exec", &e)),
    };
    accepted();
    if flags & 16 != 0 && profile == Profile::V0_8 {
        program
            .set_gas_model(&Naive)
            .unwrap_or_else(|e| panic!("the naive gas model fails: {e}"));
    }
    let pcs = program.pcs();
    let pc = if flags & 32 != 0 || pcs.is_empty() {
        u32::from(pc_sel)
    } else {
        pcs[usize::from(pc_sel) % pcs.len()]
    };
    let mut setup = Setup {
        regs: seeded_regs(seed),
        pc,
        gas,
        heap: None,
        map_faults: flags & 8 != 0,
    };
    let (flat, paged, paged2, mut pages): (FlatMemory, PagedMemory, PagedMemory, Vec<u32>) =
        match &standard {
            None => {
                let maps = raw_maps(flags >> 6);
                let pages = maps.iter().flat_map(|&(f, c, _)| f..f + c).collect();
                (
                    raw_memory(maps, seed),
                    raw_memory(maps, seed),
                    raw_memory(maps, seed),
                    pages,
                )
            }
            Some(sp) => {
                let args = &h[5..5 + usize::from(flags >> 6).min(3)];
                let a = sp
                    .initialize::<FlatMemory>(args)
                    .unwrap_or_else(|e| panic!("Y fails on a small standard program: {e}"));
                let b = sp
                    .initialize::<PagedMemory>(args)
                    .unwrap_or_else(|e| panic!("Y fails on a small standard program: {e}"));
                let c = sp
                    .initialize::<PagedMemory>(args)
                    .unwrap_or_else(|e| panic!("Y fails on a small standard program: {e}"));
                assert_eq!(a.regs, b.regs);
                assert_eq!(a.heap, b.heap);
                setup.regs = a.regs;
                setup.regs[9] = setup.regs[9].wrapping_add(u64::from(seed));
                // sbrk (0.7) may map up to 16 pages past the heap.
                let top = a.heap.top;
                let limit = a.heap.limit.min(top.saturating_add(16 * PAGE_SIZE));
                setup.heap = Some(Heap { top, limit });
                let mut pages: Vec<u32> = Vec::new();
                let mut region = |start: u32, len: u64| {
                    let first = start / PAGE_SIZE;
                    let count = len.div_ceil(u64::from(PAGE_SIZE)) as u32;
                    pages.extend(first..first.saturating_add(count).min(1 << 20));
                };
                region(RO_START, sp.ro_data.len() as u64);
                region(
                    sp.heap_start(),
                    u64::from(limit.saturating_sub(sp.heap_start())) + 1,
                );
                let stack = u64::from(sp.stack_size).div_ceil(u64::from(PAGE_SIZE)) * 4096;
                region(STACK_TOP - stack as u32, stack + 1);
                region(ARGS_START, args.len() as u64 + 1);
                (a.memory, b.memory, c.memory, pages)
            }
        };
    let (events, mut flat, flat_mapped, _) = drive(&program, flat, &setup, false);
    let (paged_events, mut paged, _, _) = drive(&program, paged, &setup, false);
    assert_eq!(
        events, paged_events,
        "FlatMemory and PagedMemory runs differ"
    );
    pages.extend(flat_mapped);
    same_memory(&mut flat, &mut paged, &pages);
    if flags & 4 != 0 {
        let (step_events, mut stepped, _, complete) = drive(&program, paged2, &setup, true);
        if complete {
            assert_eq!(step_events, events, "a run step by step differs");
            same_memory(&mut flat, &mut stepped, &pages);
        }
    }
    let mut kinds = 0u64;
    for e in events.iter().take(6) {
        kinds = kinds << 3
            | match e.exit {
                Ok(Exit::Halt) => 1,
                Ok(Exit::Panic) => 2,
                Ok(Exit::OutOfGas) => 3,
                Ok(Exit::PageFault(_)) => 4,
                Ok(Exit::HostCall(_)) => 5,
                Err(_) => 6,
            };
    }
    feature(tagged("exec", (profile_tag(profile) << 32) | kinds));
}

// ---------------------------------------------------------------------------
// Running a target: panics caught and silenced
// ---------------------------------------------------------------------------

/// Installs (once) a panic hook that stays silent for panics inside a target
/// run by [`run_one`] (their message is kept for the report) and defers to
/// the previous hook for every other panic.
pub fn silence_target_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(Cell::get) {
                PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// What one execution showed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The parser accepted the input.
    pub accepted: bool,
    /// The features the target recorded.
    pub features: Vec<u64>,
}

/// Runs `target` on `input` once. `Err` is the panic message (with its
/// location).
pub fn run_one(target: &Target, input: &[u8]) -> Result<Outcome, String> {
    silence_target_panics();
    FEATURES.with(|f| f.borrow_mut().clear());
    ACCEPTED.with(|a| a.set(false));
    IN_TARGET.with(|t| t.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    IN_TARGET.with(|t| t.set(false));
    let features = FEATURES.with(|f| std::mem::take(&mut *f.borrow_mut()));
    let accepted = ACCEPTED.with(Cell::get);
    match result {
        Ok(()) => Ok(Outcome { accepted, features }),
        Err(payload) => {
            let message = PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            Err(message)
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes `input` to `dir/<prefix>-<target>-<hash>` and returns the path.
pub fn write_input(
    dir: &Path,
    prefix: &str,
    target: &str,
    input: &[u8],
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{prefix}-{target}-{:016x}", fnv(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

// ---------------------------------------------------------------------------
// The fuzzer
// ---------------------------------------------------------------------------

/// A seeded random source (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix(seed ^ 0x5851_F42D_4C95_7F2D))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    /// Uniform in `0..n`; 0 if `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const INTERESTING_8: [u8; 28] = [
    0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 15, 16, 24, 25, 31, 32, 63, 64, 0x7F, 0x80, 0x81, 0xC0, 0xE0,
    0xF0, 0xF8, 0xFC, 0xFE, 0xFF,
];

const INTERESTING_64: [u64; 34] = [
    0,
    1,
    2,
    3,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x3FFF,
    0x4000,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x1_0000,
    0x1_FFFF,
    0x20_0000,
    0xFF_FFFF,
    0x100_0000,
    0x1000_0000,
    0x1000_0001,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0xFFFF_0000,
    0xFEFE_0000,
    0xFEFF_0000,
    0xFFFF_F000,
    4095,
    4096,
    1 << 32,
    (1 << 56) - 1,
    1 << 56,
    i64::MAX as u64,
    u64::MAX,
];

/// A GP natural-number encoding of `x`: canonical, or (sometimes) padded to
/// a longer width.
fn natural_bytes(rng: &mut Rng, x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    codec::encode_natural(x, &mut out);
    if rng.chance(80) || out.len() == 9 {
        return out;
    }
    let width = out.len() + 1 + rng.below(9 - out.len());
    let l = width - 1;
    out.clear();
    if l == 8 {
        out.push(0xFF);
        out.extend_from_slice(&x.to_le_bytes());
    } else {
        let high = x >> (8 * l);
        out.push(!(0xFFu8 >> l) | high as u8);
        out.extend_from_slice(&x.to_le_bytes()[..l]);
    }
    out
}

/// A random non-empty range `start..end` of `0..len` (`len > 0`).
fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let start = rng.below(len);
    let cap = if rng.chance(80) { 16 } else { 1024 };
    let n = 1 + rng.below((len - start).min(cap));
    (start, start + n)
}

/// One byte-level mutation.
fn mutate_bytes(rng: &mut Rng, v: &mut Vec<u8>, other: &[u8]) {
    if v.is_empty() {
        let n = 1 + rng.below(8);
        v.extend((0..n).map(|_| rng.next_u64() as u8));
        return;
    }
    let len = v.len();
    match rng.below(15) {
        0 => {
            let i = rng.below(len);
            v[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len);
            v[i] = rng.next_u64() as u8;
        }
        2 => {
            let i = rng.below(len);
            v[i] = *rng.pick(&INTERESTING_8);
        }
        3 => {
            let i = rng.below(len);
            let d = 1 + rng.below(16) as u8;
            v[i] = if rng.chance(50) {
                v[i].wrapping_add(d)
            } else {
                v[i].wrapping_sub(d)
            };
        }
        4 => {
            let width = *rng.pick(&[2usize, 3, 4, 8]);
            let x = *rng.pick(&INTERESTING_64);
            let x = if rng.chance(30) { x.wrapping_neg() } else { x };
            let i = rng.below(len);
            for (k, b) in x.to_le_bytes()[..width].iter().enumerate() {
                if let Some(slot) = v.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        5 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            v.splice(i..i, bytes);
        }
        6 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(64);
            let b = *rng.pick(&INTERESTING_8);
            v.splice(i..i, std::iter::repeat_n(b, n));
        }
        7 => {
            let (s, e) = range(rng, len);
            v.drain(s..e);
        }
        8 => {
            let (s, e) = range(rng, len);
            let chunk = v[s..e].to_vec();
            let i = rng.below(len + 1);
            v.splice(i..i, chunk);
        }
        9 => {
            let (s, e) = range(rng, len);
            let chunk = v[s..e].to_vec();
            let i = rng.below(len);
            for (k, b) in chunk.into_iter().enumerate() {
                if let Some(slot) = v.get_mut(i + k) {
                    *slot = b;
                }
            }
        }
        10 if !other.is_empty() => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            v.truncate(cut);
            v.extend_from_slice(&other[from..]);
        }
        11 if !other.is_empty() => {
            let (s, e) = range(rng, other.len());
            let i = rng.below(len + 1);
            v.splice(i..i, other[s..e].iter().copied());
        }
        12 => {
            let cut = rng.below(len);
            v.truncate(cut);
        }
        _ => {
            // Replace 1–9 bytes at a random place with a natural number.
            let i = rng.below(len);
            let old = 1 + rng.below(9).min(len - i - 1);
            let x = interesting_length(rng, len - i);
            let enc = natural_bytes(rng, x);
            v.splice(i..i + old, enc);
        }
    }
}

/// A length value worth trying where `left` bytes remain.
fn interesting_length(rng: &mut Rng, left: usize) -> u64 {
    let left = left as u64;
    match rng.below(6) {
        0 => left,
        1 => left.saturating_sub(1 + rng.below(4) as u64),
        2 => left + 1 + rng.below(4) as u64,
        3 => rng.below(64) as u64,
        _ => *rng.pick(&INTERESTING_64),
    }
}

/// Code bytes with their instruction-start bits.
type Cells = Vec<(u8, bool)>;

fn cells(b: &Blob) -> Cells {
    (0..b.code.len())
        .map(|i| (b.code[i], b.is_start(i)))
        .collect()
}

fn starts(c: &Cells) -> Vec<usize> {
    c.iter()
        .enumerate()
        .filter(|(_, &(_, s))| s)
        .map(|(i, _)| i)
        .collect()
}

/// The end of the instruction starting at `s` (the next start or the end).
fn instruction_end(c: &Cells, s: usize) -> usize {
    (s + 1..c.len()).find(|&i| c[i].1).unwrap_or(c.len())
}

/// A random opcode byte of either profile (or, rarely, any byte).
fn opcode_byte(rng: &mut Rng) -> u8 {
    if rng.chance(5) {
        return rng.next_u64() as u8;
    }
    let op = *rng.pick(Opcode::ALL);
    let profile = if rng.chance(70) {
        Profile::V0_8
    } else {
        Profile::V0_7
    };
    op.number(profile)
        .or_else(|| op.number(Profile::V0_8))
        .unwrap_or(0)
}

/// Random instruction bytes: an opcode and 0–12 argument bytes.
fn random_instruction(rng: &mut Rng) -> Cells {
    let mut c = vec![(opcode_byte(rng), true)];
    let n = match rng.below(4) {
        0 => 0,
        1 => 1,
        2 => 2 + rng.below(4),
        _ => rng.below(13),
    };
    for _ in 0..n {
        let b = if rng.chance(50) {
            *rng.pick(&INTERESTING_8)
        } else {
            rng.next_u64() as u8
        };
        c.push((b, false));
    }
    c
}

/// Bytes of a few terminators that keep a GP 0.8 program valid at its end.
fn terminator(rng: &mut Rng) -> Cells {
    let num = |op: Opcode| op.number(Profile::V0_8).unwrap_or(0);
    let bytes: Vec<u8> = match rng.below(5) {
        0 => vec![num(Opcode::Trap)],
        1 => vec![num(Opcode::Fallthrough)],
        2 => vec![num(Opcode::JumpInd), 0],
        3 => vec![num(Opcode::Jump), 0],
        _ => vec![num(Opcode::Ecalli), rng.below(4) as u8],
    };
    bytes
        .into_iter()
        .enumerate()
        .map(|(i, b)| (b, i == 0))
        .collect()
}

/// A blob's bytes, the length prefixes sometimes non-canonical and the
/// bitmask's padding bits sometimes set.
fn encode_blob(rng: &mut Rng, b: &Blob) -> Vec<u8> {
    let mut b = b.clone();
    if b.code.len() % 8 != 0 && rng.chance(5) {
        if let Some(last) = b.bitmask.last_mut() {
            *last |= (rng.next_u64() as u8) & !((1u8 << (b.code.len() % 8)) - 1);
        }
    }
    if rng.chance(85) {
        return b.to_bytes();
    }
    let mut out = natural_bytes(rng, b.jump_table.len() as u64);
    out.push(b.jump_table_entry_size);
    out.extend(natural_bytes(rng, b.code.len() as u64));
    let canonical = b.to_bytes();
    let header = natural_len(b.jump_table.len() as u64) + 1 + natural_len(b.code.len() as u64);
    out.extend_from_slice(&canonical[header..]);
    out
}

/// A structure-aware mutation of a program blob.
fn mutate_blob(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let Ok(mut b) = Blob::parse(data) else {
        let mut v = data.to_vec();
        if rng.chance(30) && !v.is_empty() {
            // Edit a header length: at 0 (jump table) or after the entry size (code).
            let mut r = Reader::new(&v);
            let at = match (rng.chance(50), r.natural()) {
                (true, Some(_)) => r.pos() + 1,
                _ => 0,
            };
            if at < v.len() {
                let old = natural_width(v[at]).min(v.len() - at);
                let x = interesting_length(rng, v.len() - at);
                let enc = natural_bytes(rng, x);
                v.splice(at..at + old, enc);
                return v;
            }
        }
        mutate_bytes(rng, &mut v, other);
        return v;
    };
    let mut c = cells(&b);
    let st = starts(&c);
    match rng.below(13) {
        0 if !c.is_empty() => {
            let i = rng.below(c.len());
            c[i].1 = !c[i].1;
        }
        1 if !st.is_empty() => {
            let s = *rng.pick(&st);
            c[s].0 = opcode_byte(rng);
        }
        2 | 3 => {
            let at = if st.is_empty() || rng.chance(10) {
                c.len()
            } else {
                *rng.pick(&st)
            };
            let inst = random_instruction(rng);
            c.splice(at..at, inst);
        }
        4 if !st.is_empty() => {
            let s = *rng.pick(&st);
            let e = instruction_end(&c, s);
            c.drain(s..e);
        }
        5 if !st.is_empty() => {
            let s = *rng.pick(&st);
            let e = instruction_end(&c, s);
            let copy: Cells = c[s..e].to_vec();
            let at = *rng.pick(&st);
            c.splice(at..at, copy);
        }
        6 if c.iter().any(|&(_, s)| !s) => {
            let args: Vec<usize> = (0..c.len()).filter(|&i| !c[i].1).collect();
            let i = *rng.pick(&args);
            c[i].0 = if rng.chance(50) {
                *rng.pick(&INTERESTING_8)
            } else {
                rng.next_u64() as u8
            };
        }
        7 => {
            // The jump table: add, drop or change an entry.
            let n = b.jump_table.len();
            let value = if !st.is_empty() && rng.chance(60) {
                *rng.pick(&st) as u32
            } else {
                interesting_length(rng, c.len()) as u32
            };
            match rng.below(3) {
                0 if n > 0 => {
                    b.jump_table.remove(rng.below(n));
                }
                1 if n > 0 => {
                    let i = rng.below(n);
                    b.jump_table[i] = value;
                }
                _ => {
                    let i = rng.below(n + 1);
                    b.jump_table.insert(i, value);
                }
            }
            let z = b.jump_table_entry_size;
            if z < 4
                && b.jump_table
                    .iter()
                    .any(|&e| u64::from(e) >> (8 * u32::from(z)) != 0)
            {
                b.jump_table_entry_size = if rng.chance(80) { 4 } else { z };
            }
        }
        8 => {
            b.jump_table_entry_size = rng.below(6) as u8;
        }
        9 => {
            let t = terminator(rng);
            if rng.chance(50) || st.is_empty() {
                c.extend(t);
            } else {
                let last = *st.last().unwrap_or(&0);
                c.truncate(last);
                c.extend(t);
            }
        }
        10 if !other.is_empty() => {
            if let Ok(o) = Blob::parse(other) {
                let oc = cells(&o);
                let os = starts(&oc);
                if !os.is_empty() {
                    let s = *rng.pick(&os);
                    let e = (s + 1 + rng.below(64)).min(oc.len());
                    let e = instruction_end(&oc, e.saturating_sub(1).max(s));
                    let at = if st.is_empty() { 0 } else { *rng.pick(&st) };
                    c.splice(at..at, oc[s..e].iter().copied());
                }
            }
        }
        11 => {
            // Drop everything after a random start (and maybe end it properly).
            if let Some(&s) = st.get(rng.below(st.len())) {
                c.truncate(instruction_end(&c, s));
                if rng.chance(50) {
                    c.extend(terminator(rng));
                }
            }
        }
        _ => {
            let mut v = encode_blob(rng, &b);
            mutate_bytes(rng, &mut v, other);
            return v;
        }
    }
    b.code = c.iter().map(|&(byte, _)| byte).collect();
    b.bitmask = vec![0; c.len().div_ceil(8)];
    for (i, &(_, s)) in c.iter().enumerate() {
        if s {
            b.bitmask[i / 8] |= 1 << (i % 8);
        }
    }
    encode_blob(rng, &b)
}

/// Offsets and widths of a standard program's fixed-width fields.
fn standard_fields(data: &[u8]) -> Vec<(usize, usize)> {
    let mut fields = vec![(0, 3), (3, 3), (6, 2), (8, 3)];
    let le = |at: usize, n: usize| {
        data.get(at..at + n).map(|s| {
            s.iter()
                .rev()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b))
        })
    };
    if let (Some(o), Some(w)) = (le(0, 3), le(3, 3)) {
        fields.push((11 + o + w, 4));
    }
    fields
}

/// A structure-aware mutation of a standard program.
fn mutate_standard(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let Ok(mut sp) = StandardProgram::parse(data) else {
        let mut v = data.to_vec();
        if rng.chance(40) {
            let fields = standard_fields(&v);
            let (at, n) = *rng.pick(&fields);
            let value = interesting_length(rng, v.len().saturating_sub(at + n));
            if at + n <= v.len() {
                v[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
                return v;
            }
        }
        mutate_bytes(rng, &mut v, other);
        return v;
    };
    match rng.below(9) {
        0..=3 => {
            let other_code = StandardProgram::parse(other)
                .map(|o| o.code)
                .unwrap_or_default();
            sp.code = mutate_blob(rng, &sp.code, &other_code);
        }
        4 => {
            sp.heap_pages = match rng.below(4) {
                0 => 0,
                1 => rng.below(17) as u16,
                2 => u16::MAX - rng.below(2) as u16,
                _ => rng.next_u64() as u16,
            };
        }
        5 => {
            sp.stack_size = match rng.below(4) {
                0 => 0,
                1 => (rng.below(3) as u32 * 4096).saturating_sub(rng.below(2) as u32),
                2 => 0xFF_FFFF - rng.below(2) as u32,
                _ => (rng.next_u64() as u32) & 0xFF_FFFF,
            };
        }
        6 | 7 => {
            let data = if rng.chance(50) {
                &mut sp.ro_data
            } else {
                &mut sp.rw_data
            };
            match rng.below(3) {
                0 => data.clear(),
                1 => data.truncate(rng.below(data.len() + 1)),
                _ => {
                    let most = if rng.chance(90) { 64 } else { 5000 };
                    let n = 1 + rng.below(most);
                    let b = rng.next_u64() as u8;
                    data.extend(std::iter::repeat_n(b, n));
                }
            }
        }
        _ => {
            let mut v = sp.to_bytes();
            mutate_bytes(rng, &mut v, other);
            return v;
        }
    }
    sp.to_bytes()
}

/// A structure-aware mutation of a JAM code blob.
fn mutate_jam(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let Ok(j) = JamBlob::parse(data) else {
        let mut v = data.to_vec();
        if rng.chance(30) && !v.is_empty() {
            let old = natural_width(v[0]).min(v.len());
            let x = interesting_length(rng, v.len() - old);
            v.splice(0..old, natural_bytes(rng, x));
        } else {
            mutate_bytes(rng, &mut v, other);
        }
        return v;
    };
    let mut metadata = j.metadata;
    let mut program = j.program.to_bytes();
    match rng.below(4) {
        0 | 1 => {
            let other_program = JamBlob::parse(other)
                .map(|o| o.program.to_bytes())
                .unwrap_or_default();
            program = mutate_standard(rng, &program, &other_program);
        }
        2 => mutate_bytes(rng, &mut metadata, &[]),
        _ => metadata.truncate(rng.below(metadata.len() + 1)),
    }
    let mut out = natural_bytes(rng, metadata.len() as u64);
    out.extend_from_slice(&metadata);
    out.extend_from_slice(&program);
    out
}

/// Whether `c` continues a word token (identifiers, numbers, labels).
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_.@$+-".contains(&c)
}

/// The token of `s` around byte `at`: a run of word bytes, or one character.
fn token_at(s: &str, at: usize) -> (usize, usize) {
    let b = s.as_bytes();
    if at >= b.len() {
        return (b.len(), b.len());
    }
    if is_word(b[at]) {
        let mut start = at;
        while start > 0 && is_word(b[start - 1]) {
            start -= 1;
        }
        let mut end = at;
        while end < b.len() && is_word(b[end]) {
            end += 1;
        }
        return (start, end);
    }
    let mut start = at;
    while !s.is_char_boundary(start) {
        start -= 1;
    }
    let len = s[start..].chars().next().map_or(1, char::len_utf8);
    (start, start + len)
}

/// A random token of `s` (empty if `s` is).
fn random_token<'a>(rng: &mut Rng, s: &'a str) -> &'a str {
    let (a, b) = token_at(s, rng.below(s.len()));
    &s[a..b]
}

/// The line of `s` around byte `at`, with its newline.
fn line_at(s: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    let start = s[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = s[at..].find('\n').map_or(s.len(), |i| at + i + 1);
    (start, end)
}

const NUMBERS: [&str; 40] = [
    "0",
    "1",
    "-1",
    "2",
    "12",
    "13",
    "16",
    "24",
    "25",
    "127",
    "128",
    "255",
    "256",
    "4095",
    "4096",
    "65535",
    "65536",
    "0x7fffffff",
    "0x80000000",
    "-0x80000000",
    "-2147483649",
    "0xffffffff",
    "4294967295",
    "4294967296",
    "0xffff0000",
    "0xfefe0000",
    "16777215",
    "16777216",
    "268435456",
    "0xffffffffffffffff",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "9223372036854775807",
    "0b101",
    "0o17",
    "1_000",
    "1e3",
    "0.5",
];

fn asm_dictionary() -> &'static [String] {
    static DICT: OnceLock<Vec<String>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d: Vec<String> = Opcode::ALL.iter().map(|op| op.name().to_string()).collect();
        d.extend((0..14).map(|r| format!("r{r}")));
        for w in [
            "ra",
            "sp",
            "t0",
            "t1",
            "t2",
            "s0",
            "s1",
            "a0",
            "a1",
            "a2",
            "a3",
            "a4",
            "a5",
            ".profile",
            ".container",
            ".ro_data",
            ".rw_data",
            ".heap_pages",
            ".stack_size",
            ".metadata",
            ".jump_table",
            ".jump_table_entry_size",
            ".length_prefix",
            ".bitmask_padding",
            ".raw",
            ".bytes",
            ".code_blob",
            "raw",
            "standard",
            "jam",
            "0.8",
            "0.7",
            "jump_table",
            "code",
            "metadata",
            "@0",
            "@1",
            "@2",
            "@4294967295",
            "loop",
            "loop:",
            "done",
            "@0:",
            "@3:",
            ":",
            ",",
            ";",
            "#",
            "\n",
            " ",
            "-",
            "0x",
            "33 07 01",
            "ff",
        ] {
            d.push(w.to_string());
        }
        d.extend(NUMBERS.iter().map(|n| n.to_string()));
        d
    })
}

fn json_dictionary() -> &'static [String] {
    static DICT: OnceLock<Vec<String>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d: Vec<String> = [
            "name",
            "initial-pc",
            "initial-gas",
            "program",
            "block-gas-costs",
            "pc",
            "cost",
            "steps",
            "set-reg",
            "reg",
            "value",
            "map",
            "address",
            "length",
            "is-writable",
            "write",
            "contents",
            "run",
            "assert",
            "status",
            "gas",
            "regs",
            "memory",
            "page-fault-address",
            "hostcall",
            "initial-regs",
            "initial-page-map",
            "initial-memory",
            "expected-status",
            "expected-regs",
            "expected-pc",
            "expected-memory",
            "expected-gas",
            "expected-page-fault-address",
            "panic",
            "halt",
            "page-fault",
            "out-of-gas",
            "ecalli",
            "true",
            "false",
            "null",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "{}",
            "[]",
            "\\u0000",
            "\\ud800",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        d.extend(NUMBERS.iter().map(|n| n.to_string()));
        d
    })
}

/// A token- or line-level mutation of text, around one random place.
fn mutate_text(rng: &mut Rng, data: &[u8], other: &[u8], dict: &[String]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    let other = String::from_utf8_lossy(other);
    let s: &str = &text;
    let choice = rng.below(10);
    if s.is_empty() {
        return if other.is_empty() {
            rng.pick(dict).clone().into_bytes()
        } else {
            other.as_bytes().to_vec()
        };
    }
    let splice = |a: usize, b: usize, with: &str| -> Vec<u8> {
        let mut out = String::with_capacity(s.len() + with.len());
        out.push_str(&s[..a]);
        out.push_str(with);
        out.push_str(&s[b..]);
        out.into_bytes()
    };
    if choice < 6 {
        let word = |rng: &mut Rng| -> String {
            match rng.below(4) {
                0 if !other.is_empty() => random_token(rng, &other).to_string(),
                1 => rng.pick(&NUMBERS).to_string(),
                _ => rng.pick(dict).clone(),
            }
        };
        let (a, b) = token_at(s, rng.below(s.len()));
        return match rng.below(7) {
            0 | 1 => {
                let w = word(rng);
                splice(a, b, &w)
            }
            2 => {
                // A number: nudge it or replace it with an interesting one.
                let from = rng.below(s.len());
                let at = s.as_bytes()[from..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map_or(a, |k| from + k);
                let (a, b) = token_at(s, at);
                let new = match s[a..b].parse::<i128>() {
                    Ok(v) if rng.chance(50) => (v + rng.below(3) as i128 - 1).to_string(),
                    _ => rng.pick(&NUMBERS).to_string(),
                };
                splice(a, b, &new)
            }
            3 => splice(a, b, ""),
            4 => splice(b, b, &s[a..b]),
            5 => {
                let w = word(rng) + " ";
                splice(a, a, &w)
            }
            _ => {
                // Swap with another token.
                let (c, d) = token_at(s, rng.below(s.len()));
                let ((a, b), (c, d)) = if a <= c {
                    ((a, b), (c, d))
                } else {
                    ((c, d), (a, b))
                };
                if b > c {
                    return splice(a, b, &s[a..b]);
                }
                let mut out = String::with_capacity(s.len());
                out.push_str(&s[..a]);
                out.push_str(&s[c..d]);
                out.push_str(&s[b..c]);
                out.push_str(&s[a..b]);
                out.push_str(&s[d..]);
                out.into_bytes()
            }
        };
    }
    if choice < 9 {
        let (a, b) = line_at(s, rng.below(s.len()));
        let line = &s[a..b];
        let line_nl = if line.ends_with('\n') {
            line.to_string()
        } else {
            format!("{line}\n")
        };
        let other_line = |rng: &mut Rng| -> String {
            let (c, d) = line_at(&other, rng.below(other.len()));
            let l = &other[c..d];
            if l.ends_with('\n') {
                l.to_string()
            } else {
                format!("{l}\n")
            }
        };
        return match rng.below(5) {
            0 => splice(a, b, ""),
            1 => splice(a, a, &line_nl),
            2 => {
                // Move the line elsewhere.
                let mut rest = String::with_capacity(s.len() + 1);
                rest.push_str(&s[..a]);
                rest.push_str(&s[b..]);
                let (c, _) = line_at(&rest, rng.below(rest.len() + 1));
                rest.insert_str(c, &line_nl);
                rest.into_bytes()
            }
            3 if !other.is_empty() => {
                let l = other_line(rng);
                splice(a, a, &l)
            }
            _ if !other.is_empty() => {
                let l = other_line(rng);
                splice(a, b, &l)
            }
            _ => splice(a, b, ""),
        };
    }
    let mut v = data.to_vec();
    mutate_bytes(rng, &mut v, other.as_bytes());
    v
}

/// One mutation of `data` for a target of kind `kind`.
pub fn mutate(kind: InputKind, rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let bytes_only = rng.chance(15);
    match kind {
        InputKind::Blob if !bytes_only => mutate_blob(rng, data, other),
        InputKind::Standard if !bytes_only => mutate_standard(rng, data, other),
        InputKind::Jam if !bytes_only => mutate_jam(rng, data, other),
        InputKind::Container if !bytes_only => match asm::detect(data) {
            Some(Container::Standard) => mutate_standard(rng, data, other),
            Some(Container::Jam) => mutate_jam(rng, data, other),
            _ => mutate_blob(rng, data, other),
        },
        InputKind::AsmText => mutate_text(rng, data, other, asm_dictionary()),
        InputKind::Json => mutate_text(rng, data, other, json_dictionary()),
        InputKind::Exec if data.len() >= 8 && !bytes_only => {
            let mut v = data[..8].to_vec();
            if rng.chance(25) {
                let i = rng.below(8);
                v[i] = match rng.below(3) {
                    0 => v[i] ^ (1 << rng.below(8)),
                    1 => *rng.pick(&INTERESTING_8),
                    _ => rng.next_u64() as u8,
                };
                v.extend_from_slice(&data[8..]);
            } else {
                let other_body = other.get(8..).unwrap_or(&[]);
                let body = if data[0] & 2 != 0 {
                    mutate_standard(rng, &data[8..], other_body)
                } else {
                    mutate_blob(rng, &data[8..], other_body)
                };
                v.extend(body);
            }
            v
        }
        InputKind::Natural if rng.chance(40) => {
            let mut v = data.to_vec();
            let i = rng.below(v.len() + 1);
            let x = if rng.chance(50) {
                *rng.pick(&INTERESTING_64)
            } else {
                rng.next_u64() >> rng.below(64)
            };
            let enc = natural_bytes(rng, x);
            v.splice(i..i, enc);
            v
        }
        InputKind::Code if rng.chance(30) => {
            let mut v = data.to_vec();
            let i = rng.below(v.len() + 1);
            let inst: Vec<u8> = random_instruction(rng)
                .into_iter()
                .map(|(b, _)| b)
                .collect();
            v.splice(i..i, inst);
            v
        }
        _ => {
            let mut v = data.to_vec();
            mutate_bytes(rng, &mut v, other);
            v
        }
    }
}

/// How a fuzzing run is bounded and reported.
#[derive(Clone, Debug)]
pub struct FuzzOptions {
    /// Executions, the seeds included.
    pub execs: u64,
    pub seed: u64,
    /// Inputs are cut to this many bytes (default: the target's `max_len`).
    pub max_len: Option<usize>,
    /// An execution that takes longer is reported as a hang: the input is
    /// printed and written to `crash_dir`, and the process exits with 1.
    pub timeout: Option<Duration>,
    /// Where hang inputs are written (and, by the binary, crash inputs).
    pub crash_dir: PathBuf,
    /// Most inputs kept in the corpus (the seeds included).
    pub max_corpus: usize,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            execs: 10_000,
            seed: 0,
            max_len: None,
            timeout: Some(Duration::from_secs(20)),
            crash_dir: PathBuf::from("."),
            max_corpus: 4096,
        }
    }
}

/// Totals of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub execs: u64,
    /// Executions whose input the parser accepted.
    pub accepted: u64,
    pub seeds: usize,
    pub corpus: usize,
    pub features: usize,
    pub elapsed: Duration,
}

impl Stats {
    /// Executions per second.
    pub fn rate(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A panic: the target, the input and the panic message.
#[derive(Clone, Debug)]
pub struct Crash {
    pub target: &'static str,
    pub input: Vec<u8>,
    pub message: String,
    /// Which execution (0-based) panicked.
    pub exec: u64,
}

/// Corpus inputs, the seeds kept for good.
struct Pool {
    entries: Vec<Vec<u8>>,
    /// The first `seeds` entries are seeds.
    seeds: usize,
    cap: usize,
}

impl Pool {
    fn new(cap: usize) -> Pool {
        Pool {
            entries: Vec::new(),
            seeds: 0,
            cap,
        }
    }

    fn add(&mut self, rng: &mut Rng, input: Vec<u8>, is_seed: bool) {
        if is_seed {
            self.entries.insert(self.seeds, input);
            self.seeds += 1;
        } else if self.entries.len() < self.cap.max(self.seeds + 1) {
            self.entries.push(input);
        } else if self.entries.len() > self.seeds {
            // Replace a mutant, never a seed.
            let i = self.seeds + rng.below(self.entries.len() - self.seeds);
            self.entries[i] = input;
        }
    }

    /// An entry, preferring the shorter of two picks: small inputs run
    /// faster and mutate into more distinct shapes. Empty pools give `[]`.
    fn pick(&self, rng: &mut Rng) -> &[u8] {
        if self.entries.is_empty() {
            return &[];
        }
        let a = &self.entries[rng.below(self.entries.len())];
        let b = &self.entries[rng.below(self.entries.len())];
        if b.len() < a.len() && rng.chance(60) {
            b
        } else {
            a
        }
    }
}

/// Shared with the watchdog thread.
struct Watch {
    beats: AtomicU64,
    done: AtomicBool,
    input: Mutex<Vec<u8>>,
}

fn watchdog(watch: Arc<Watch>, target: &'static str, timeout: Duration, dir: PathBuf) {
    let tick = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(500));
    // `fuzz` unparks this thread when it is done.
    let mut last = watch.beats.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while !watch.done.load(Ordering::Relaxed) {
        std::thread::park_timeout(tick);
        let now = watch.beats.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
            continue;
        }
        if since.elapsed() > timeout && !watch.done.load(Ordering::Relaxed) {
            let input = watch
                .input
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            eprintln!(
                "HANG: target {target}: one execution has run for more than {timeout:?}\ninput ({} bytes): {}",
                input.len(),
                hex(&input)
            );
            if let Ok(path) = write_input(&dir, "hang", target, &input) {
                eprintln!("input written to {}", path.display());
            }
            std::process::exit(1);
        }
    }
}

/// Fuzzes `target` from `seeds` (empty seeds are fine) for `opts.execs`
/// executions: the seeds first, then mutations of the corpus. `progress` is
/// called about every 100,000 executions. Returns the totals, or the first
/// input that made the target panic.
pub fn fuzz(
    target: &'static Target,
    seeds: Vec<Vec<u8>>,
    opts: &FuzzOptions,
    mut progress: impl FnMut(&Stats),
) -> Result<Stats, Crash> {
    let start = Instant::now();
    let max_len = opts.max_len.unwrap_or(target.max_len);
    let mut rng = Rng::new(opts.seed ^ fnv(target.name.as_bytes()));
    // Inputs the parser accepted, and a smaller pool of rejected ones (error
    // messages make many features; they must not crowd out valid inputs).
    let mut good = Pool::new(opts.max_corpus.max(1));
    let mut bad = Pool::new((opts.max_corpus / 8).max(1));
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut unique_seeds: Vec<Vec<u8>> = Vec::new();
    for s in &seeds {
        let s = &s[..s.len().min(max_len)];
        if seen.insert(s) {
            unique_seeds.push(s.to_vec());
        }
    }
    drop(seen);
    let mut stats = Stats {
        seeds: unique_seeds.len(),
        ..Stats::default()
    };
    let mut features: HashSet<u64> = HashSet::new();
    let watch = Arc::new(Watch {
        beats: AtomicU64::new(0),
        done: AtomicBool::new(false),
        input: Mutex::new(Vec::new()),
    });
    let dog = opts.timeout.map(|timeout| {
        let w = Arc::clone(&watch);
        let dir = opts.crash_dir.clone();
        std::thread::spawn(move || watchdog(w, target.name, timeout, dir))
    });
    let mut pending = unique_seeds.into_iter();
    let mut result = Ok(());
    while stats.execs < opts.execs {
        let input = match pending.next() {
            Some(seed) => seed,
            None if good.entries.is_empty() && bad.entries.is_empty() => {
                let n = rng.below(16);
                (0..n).map(|_| rng.next_u64() as u8).collect()
            }
            None => {
                let from_good = |rng: &mut Rng| {
                    bad.entries.is_empty() || (!good.entries.is_empty() && rng.chance(85))
                };
                let pool = if from_good(&mut rng) { &good } else { &bad };
                let mut v = pool.pick(&mut rng).to_vec();
                let other = if from_good(&mut rng) { &good } else { &bad };
                let other = other.pick(&mut rng);
                let most = if rng.chance(70) { 2 } else { 8 };
                let rounds = 1 + rng.below(most);
                for _ in 0..rounds {
                    v = mutate(target.kind, &mut rng, &v, other);
                }
                v.truncate(max_len);
                v
            }
        };
        if dog.is_some() {
            if let Ok(mut g) = watch.input.lock() {
                g.clear();
                g.extend_from_slice(&input);
            }
            watch.beats.fetch_add(1, Ordering::Relaxed);
        }
        let is_seed = stats.execs < stats.seeds as u64;
        match run_one(target, &input) {
            Ok(outcome) => {
                stats.accepted += u64::from(outcome.accepted);
                let mut new = false;
                for f in outcome.features {
                    new |= features.insert(f);
                }
                if is_seed || new {
                    let pool = if outcome.accepted {
                        &mut good
                    } else {
                        &mut bad
                    };
                    pool.add(&mut rng, input, is_seed);
                }
            }
            Err(message) => {
                result = Err(Crash {
                    target: target.name,
                    input,
                    message,
                    exec: stats.execs,
                });
                stats.execs += 1;
                break;
            }
        }
        stats.execs += 1;
        if stats.execs % 100_000 == 0 {
            stats.elapsed = start.elapsed();
            stats.corpus = good.entries.len() + bad.entries.len();
            stats.features = features.len();
            progress(&stats);
        }
    }
    watch.done.store(true, Ordering::Relaxed);
    if let Some(dog) = dog {
        dog.thread().unpark();
        let _ = dog.join();
    }
    stats.elapsed = start.elapsed();
    stats.corpus = good.entries.len() + bad.entries.len();
    stats.features = features.len();
    result.map(|()| stats)
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// Seeds larger than this are left out (DOOM's 1 MB would dominate the time).
const MAX_SEED_LEN: usize = 1 << 16;
/// Programs taken from the generator.
const GENERATED: u64 = 160;

/// Raw material for the seeds of every kind.
#[derive(Debug, Default)]
struct Material {
    blobs: Vec<Vec<u8>>,
    standards: Vec<Vec<u8>>,
    jams: Vec<Vec<u8>>,
    json: Vec<Vec<u8>>,
    asm: Vec<String>,
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read_small(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().filter(|b| b.len() <= MAX_SEED_LEN)
}

const HAND_WRITTEN: &str = "
    ; counts r7 down to zero, then halts
    .container standard
    .stack_size 4096
    .heap_pages 1
    .ro_data 0102 0x0304
    .rw_data ff
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

const ODD_TEXTS: [&str; 4] = [
    ".container jam\n.metadata 0102\n.length_prefix metadata 3\n.stack_size 16\n    trap\n",
    ".jump_table_entry_size 3\n.length_prefix code 2\n.jump_table @0, @2\n@0:\n    fallthrough\n@1:\n    .raw 33 07 01\n    .bytes 00 00\n    jump @0\n",
    ".container standard\n.code_blob 00 00 01 00 01\n",
    ".profile 0.7\n.bitmask_padding 0xf0\n    sbrk r1, r2\n    trap\n",
];

fn material(shared: Option<&Path>) -> Material {
    let mut m = Material::default();
    if let Some(shared) = shared {
        for version in ["gp-0.8", "gp-0.7"] {
            let dir = shared.join("vectors").join(version).join("programs");
            for path in sorted_files(&dir, "json") {
                let Some(bytes) = read_small(&path) else {
                    continue;
                };
                if let Ok(v) = Vector::parse(&String::from_utf8_lossy(&bytes)) {
                    m.blobs.push(v.program);
                }
                m.json.push(bytes);
            }
        }
        let programs = shared.join("programs");
        for path in sorted_files(&programs, "spi") {
            if let Some(bytes) = read_small(&path) {
                m.standards.push(bytes);
            }
        }
        for path in sorted_files(&programs.join("jam"), "jam") {
            if let Some(bytes) = read_small(&path) {
                m.jams.push(bytes);
            }
        }
    }
    for index in 0..GENERATED {
        m.blobs.push(crate::case(0x5EED_0001, index).blob);
    }
    // Standard programs and JAM blobs around generated code.
    for index in 0..24u64 {
        let code = crate::case(0x5EED_0002, index).blob;
        let k = index as usize;
        let sp = StandardProgram {
            ro_data: (0..(k * 37) % 300).map(|i| i as u8).collect(),
            rw_data: vec![0xA5; (k * 53) % 200],
            heap_pages: (index % 4) as u16,
            stack_size: [0, 16, 4096, 8192][k % 4],
            code,
        };
        let bytes = sp.to_bytes();
        if index % 3 == 0 {
            m.jams.push(
                JamBlob {
                    metadata: format!("generated {index}").into_bytes(),
                    program: sp,
                }
                .to_bytes(),
            );
        }
        m.standards.push(bytes);
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut texts: Vec<String> = sorted_files(&examples, "pvmasm")
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    texts.push(HAND_WRITTEN.to_string());
    texts.extend(ODD_TEXTS.iter().map(|s| s.to_string()));
    for text in &texts {
        if let Ok(bytes) = asm::assemble(text, Profile::V0_8) {
            match asm::detect(&bytes) {
                Some(Container::Standard) => m.standards.push(bytes),
                Some(Container::Jam) => m.jams.push(bytes),
                _ => m.blobs.push(bytes),
            }
        }
    }
    m.asm = texts;
    // Code blobs inside the standard programs and JAM blobs.
    for j in &m.jams {
        if let Ok(j) = JamBlob::parse(j) {
            m.standards.push(j.program.to_bytes());
        }
    }
    for s in &m.standards {
        if let Ok(sp) = StandardProgram::parse(s) {
            m.blobs.push(sp.code);
        }
    }
    // Assembly text: disassembly of blobs and standard programs.
    for (i, b) in m.blobs.iter().enumerate().step_by(3).take(120) {
        let profile = if i % 2 == 0 {
            Profile::V0_8
        } else {
            Profile::V0_7
        };
        if let Ok(t) = asm::disassemble(b, Container::Raw, profile) {
            m.asm.push(t);
        }
    }
    for s in m.standards.iter().take(12) {
        if let Ok(t) = asm::disassemble(s, Container::Standard, Profile::V0_8) {
            m.asm.push(t);
        }
    }
    for j in m.jams.iter().take(3) {
        if let Ok(t) = asm::disassemble(j, Container::Jam, Profile::V0_8) {
            m.asm.push(t);
        }
    }
    // Vectors in both formats around generated programs.
    for index in 0..16u64 {
        let case = crate::case(0x5EED_0003, index);
        let mut steps: Vec<Step> = (0..13).map(|r| Step::SetReg(r, case.regs[r])).collect();
        for (addr, access, contents) in case.pages.iter().take(3) {
            steps.push(Step::Map {
                address: *addr,
                length: PAGE_SIZE,
                writable: *access == Access::Write,
            });
            if !contents.is_empty() {
                steps.push(Step::Write(
                    *addr,
                    contents[..contents.len().min(16)].to_vec(),
                ));
            }
        }
        steps.sort_by_key(|s| match s {
            Step::SetReg(..) => 0,
            Step::Map { .. } => 1,
            _ => 2,
        });
        steps.push(Step::Run);
        steps.push(Step::Assert(Expect {
            status: ["panic", "halt", "page-fault", "out-of-gas", "ecalli"][index as usize % 5]
                .to_string(),
            gas: Some(index as i64),
            pc: Some(0),
            regs: Some(case.regs),
            memory: vec![(0x20000, vec![1, 2, 3])],
            page_fault_address: (index % 5 == 2).then_some(0x21000),
            hostcall: None,
        }));
        let v = Vector {
            name: format!("generated_{index}"),
            profile: if index % 2 == 0 {
                Profile::V0_8
            } else {
                Profile::V0_7
            },
            initial_pc: case.entry,
            initial_gas: case.gas_naive as i64,
            program: case.blob,
            block_gas_costs: (index % 2 == 0).then(|| vec![(0, 1)]),
            steps,
        };
        if let Some(json) = vector_json(&v) {
            m.json.push(json.into_bytes());
        }
    }
    m
}

/// An exec header (see [`exec`]).
fn exec_header(flags: u8, gas: u16, pc: u16, seed: u32) -> Vec<u8> {
    let mut h = vec![flags];
    h.extend_from_slice(&gas.to_le_bytes());
    h.extend_from_slice(&pc.to_le_bytes());
    h.extend_from_slice(&seed.to_le_bytes()[..3]);
    h
}

/// The seed corpus for inputs of `kind`: from the conformance vectors and
/// programs under `shared` (if given), the generator, the examples and a few
/// built-in texts. Never empty.
pub fn seeds(kind: InputKind, shared: Option<&Path>) -> Vec<Vec<u8>> {
    let m = material(shared);
    let mut out: Vec<Vec<u8>> = Vec::new();
    match kind {
        InputKind::Blob => {
            out.extend(m.blobs.iter().cloned());
            out.push(vec![0, 0, 0]);
            out.push(vec![0, 0, 1, 0, 1]);
        }
        InputKind::Parts => {
            for (i, b) in m.blobs.iter().enumerate() {
                let Ok(b) = Blob::parse(b) else { continue };
                if b.code.len() > usize::from(u16::MAX) || b.jump_table.len() > 15 {
                    continue;
                }
                let mut v = vec![
                    b.jump_table_entry_size,
                    b.jump_table.len() as u8 | if i % 2 == 1 { 0x80 } else { 0 },
                ];
                v.extend_from_slice(&(b.code.len() as u16).to_le_bytes());
                for e in &b.jump_table {
                    v.extend_from_slice(&e.to_le_bytes());
                }
                v.extend_from_slice(&b.code);
                v.extend_from_slice(&b.bitmask);
                out.push(v);
            }
        }
        InputKind::Standard => out.extend(m.standards.iter().cloned()),
        InputKind::Container => {
            out.extend(m.standards.iter().cloned());
            out.extend(m.jams.iter().cloned());
            out.extend(m.blobs.iter().step_by(2).cloned());
        }
        InputKind::Jam => {
            out.extend(m.jams.iter().cloned());
            for s in m.standards.iter().take(40) {
                let mut v = vec![0];
                v.extend_from_slice(s);
                out.push(v);
            }
        }
        InputKind::Natural => {
            for x in INTERESTING_64 {
                let mut v = Vec::new();
                codec::encode_natural(x, &mut v);
                codec::encode_natural(x >> 7, &mut v);
                v.push(x as u8);
                out.push(v);
            }
            out.extend(m.blobs.iter().map(|b| b[..b.len().min(24)].to_vec()));
        }
        InputKind::Code => {
            for b in &m.blobs {
                if let Ok(b) = Blob::parse(b) {
                    out.extend(b.code.chunks(48).take(4).map(<[u8]>::to_vec));
                }
            }
        }
        InputKind::AsmText => out.extend(m.asm.iter().map(|t| t.as_bytes().to_vec())),
        InputKind::Json => out.extend(m.json.iter().cloned()),
        InputKind::Exec => {
            for (i, b) in m.blobs.iter().enumerate() {
                let i = i as u32;
                let flags = (i % 2) as u8 | (((i / 2) % 2) as u8) << 2 | 8 | ((i % 4) as u8) << 6;
                out.push([exec_header(flags, 1000 + i as u16, 0, i), b.clone()].concat());
            }
            for (i, s) in m.standards.iter().enumerate() {
                let i = i as u32;
                let flags = 2 | (i % 2) as u8 | 4 | 8 | ((i % 3) as u8) << 6;
                out.push([exec_header(flags, 4000, 0, i), s.clone()].concat());
            }
        }
    }
    out.retain(|s| s.len() <= MAX_SEED_LEN);
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// `../shared` beside the workspace, if it exists.
pub fn default_shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    dir.is_dir().then_some(dir)
}
