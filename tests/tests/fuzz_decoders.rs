//! Property tests: random and mutated blobs fed to the decoders, to the
//! interpreter and to the GP's Y. Whatever the input, `pvm-core` must answer
//! with a value or an error: it must never panic, and every run must end.
//!
//! - random bytes into [`Blob::parse`], [`Program::from_bytes`] (both
//!   profiles), [`StandardProgram::parse`] and [`JamBlob::parse`];
//! - random bytes behind a plausible header (lengths that are huge, zero or
//!   just right), so the length fields get exercised and not only rejected;
//! - mutations (bit flips, byte replacements, insertions, deletions,
//!   truncations) of valid seeds: the gp-0.8 vector programs and the real
//!   standard programs under `../shared`;
//! - randomly assembled programs, which the 0.8 validation mostly accepts;
//! - every program that decodes is run briefly (gas 10 000, random pc,
//!   registers and heap, host calls and page faults resumed a bounded number
//!   of times), and every standard program that parses goes through Y with
//!   random arguments, then runs over the memory Y laid out.
//!
//! One kind of input is decoded in a child process instead: a blob whose
//! header claims a huge jump table of entry size 0 (see
//! [`claims_more_than_it_holds`]). A decoder that allocates for every claimed
//! entry dies there by allocation failure, which aborts the process rather
//! than panicking; in a child, that is reported (and shrunk) like a panic.
//!
//! Seeds come from `../shared` beside the checkout. Without it the test falls
//! back to a few seeds built here, unless the environment variable `CI` is
//! set: then a missing `../shared` is an error.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use pvm_core::codec::{self, encode_natural, Reader};
use pvm_core::interp::Heap;
use pvm_core::isa::{
    Args, Format, NoArgs, OneImm, OneOffset, Opcode, RegExtImm, RegImm, RegImmOffset, RegTwoImm,
    ThreeReg, TwoImm, TwoReg, TwoRegImm, TwoRegOffset, TwoRegTwoImm,
};
use pvm_core::standard::{ARGS_START, RO_START, STACK_TOP};
use pvm_core::{
    Access, Blob, Error, Exit, Instruction, JamBlob, Memory, PagedMemory, Profile, Program, Reg,
    StandardProgram, Vm, HALT_ADDRESS, PAGE_SIZE,
};

const SHARED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared");
const VECTOR_PROGRAMS_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/gp-0.8/programs"
);
const PROGRAMS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/programs");
const JAM_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/programs/jam");

/// Gas for every run.
const GAS: u64 = 10_000;
/// How many times a run is resumed (after a host call, a page fault that we
/// map, or running out of gas with a little gas added).
const MAX_RESUMES: usize = 32;
/// Instructions executed one at a time in step mode.
const MAX_STEPS: usize = 2_000;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 2_000;

fn config(cases: u32) -> ProptestConfig {
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default().cases
    } else {
        cases
    };
    ProptestConfig {
        cases,
        // Nothing is written next to the sources; a failure prints its input.
        failure_persistence: None,
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// What a seed is, which decides how it is mutated and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A program blob (`deblob` input).
    Blob,
    /// A standard program (Y input).
    Standard,
    /// A JAM code blob.
    Jam,
}

struct Seed {
    name: String,
    kind: Kind,
    bytes: Vec<u8>,
}

struct Seeds {
    seeds: Vec<Seed>,
    /// Seed indices, each repeated by weight: small seeds are picked more
    /// often than the large ones (DOOM), which cost milliseconds per case.
    picks: Vec<usize>,
    /// The same for the program-blob seeds only.
    blob_picks: Vec<usize>,
}

impl Seeds {
    fn pick(&self, index: &Index, blobs_only: bool) -> &Seed {
        let picks = if blobs_only {
            &self.blob_picks
        } else {
            &self.picks
        };
        &self.seeds[*index.get(picks)]
    }
}

static SEEDS: OnceLock<Seeds> = OnceLock::new();

fn seeds() -> &'static Seeds {
    SEEDS.get_or_init(|| {
        let mut seeds = if Path::new(SHARED_DIR).is_dir() {
            shared_seeds()
        } else if std::env::var_os("CI").is_some() {
            panic!(
                "fuzz_decoders: the shared directory {SHARED_DIR} is missing, and CI is set: \
                 CI must provide ../shared (vectors/gp-0.8/programs, programs/*.spi) beside \
                 the checkout"
            );
        } else {
            eprintln!(
                "fuzz_decoders: {SHARED_DIR} not found; falling back to seeds built in the test \
                 (set CI to make this an error)"
            );
            Vec::new()
        };
        // The built-in seeds are always included: they are small and valid
        // under both profiles' rules.
        seeds.extend(builtin_seeds());
        // Every standard program's code is a blob seed too, and wrapped in
        // metadata it is a JAM seed.
        let mut derived = Vec::new();
        for s in seeds.iter().filter(|s| s.kind == Kind::Standard) {
            let sp = StandardProgram::parse(&s.bytes)
                .unwrap_or_else(|e| panic!("seed {} does not parse: {e}", s.name));
            derived.push(Seed {
                name: format!("{} (code)", s.name),
                kind: Kind::Blob,
                bytes: sp.code.clone(),
            });
            if s.bytes.len() < 1 << 16 {
                let jam = JamBlob {
                    metadata: s.name.as_bytes().to_vec(),
                    program: sp,
                };
                derived.push(Seed {
                    name: format!("{} (jam)", s.name),
                    kind: Kind::Jam,
                    bytes: jam.to_bytes(),
                });
            }
        }
        seeds.extend(derived);
        for s in &seeds {
            check_seed(s);
        }
        let mut picks = Vec::new();
        for (i, s) in seeds.iter().enumerate() {
            let weight = match s.kind {
                _ if s.bytes.len() > 1 << 16 => 2,
                Kind::Blob => 8,
                Kind::Standard | Kind::Jam => 24,
            };
            picks.extend(std::iter::repeat_n(i, weight));
        }
        let blob_picks = picks
            .iter()
            .copied()
            .filter(|&i| seeds[i].kind == Kind::Blob)
            .collect();
        Seeds {
            seeds,
            picks,
            blob_picks,
        }
    })
}

/// A seed must be valid, or the mutations start from nothing useful.
fn check_seed(s: &Seed) {
    let ok = match s.kind {
        Kind::Blob => Blob::parse(&s.bytes).is_ok(),
        Kind::Standard => StandardProgram::parse(&s.bytes).is_ok(),
        Kind::Jam => JamBlob::parse(&s.bytes).is_ok(),
    };
    assert!(ok, "seed {} ({:?}) does not parse", s.name, s.kind);
}

fn sorted_files(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn shared_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for path in sorted_files(VECTOR_PROGRAMS_DIR, "json") {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let program = json["program"]
            .as_array()
            .unwrap_or_else(|| panic!("{} has no \"program\" array", path.display()));
        let bytes = program
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .unwrap_or_else(|| panic!("{}: {b} is not a byte", path.display()))
            })
            .collect();
        seeds.push(Seed {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            kind: Kind::Blob,
            bytes,
        });
    }
    for path in sorted_files(PROGRAMS_DIR, "spi") {
        seeds.push(Seed {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            kind: Kind::Standard,
            bytes: fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        });
    }
    if Path::new(JAM_DIR).is_dir() {
        for path in sorted_files(JAM_DIR, "jam") {
            seeds.push(Seed {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                kind: Kind::Jam,
                bytes: fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            });
        }
    }
    assert!(
        seeds.iter().filter(|s| s.kind == Kind::Blob).count() > 100,
        "expected the gp-0.8 vector programs in {VECTOR_PROGRAMS_DIR}"
    );
    assert!(
        seeds.iter().any(|s| s.kind == Kind::Standard),
        "expected standard programs (*.spi) in {PROGRAMS_DIR}"
    );
    seeds
}

fn reg(i: u8) -> Reg {
    Reg::clamped(i)
}

/// Assembles `build(pcs)` under `profile`, iterating until the code offsets
/// of the instructions (which branch offsets depend on) are stable.
fn assemble(
    profile: Profile,
    jump_table: &[usize],
    build: impl Fn(&[u32]) -> Vec<Instruction>,
) -> Blob {
    let mut pcs = vec![0u32; build(&[]).len().max(1) + 1];
    for _ in 0..8 {
        let mut code = Vec::new();
        let mut starts = Vec::new();
        for inst in build(&pcs) {
            starts.push(code.len() as u32);
            codec::encode(profile, &inst, code.len() as u32, &mut code)
                .expect("opcode exists in the profile");
        }
        starts.push(code.len() as u32);
        if starts == pcs {
            break;
        }
        pcs = starts;
    }
    let mut code = Vec::new();
    for inst in build(&pcs) {
        codec::encode(profile, &inst, code.len() as u32, &mut code).expect("opcode exists");
    }
    let n = pcs.len() - 1;
    let mut bitmask = vec![0u8; code.len().div_ceil(8)];
    for &s in &pcs[..n] {
        bitmask[s as usize / 8] |= 1 << (s % 8);
    }
    Blob {
        jump_table: jump_table.iter().map(|&i| pcs[i]).collect(),
        jump_table_entry_size: 4,
        code,
        bitmask,
    }
}

/// Seeds that need no files: a loop, memory and host calls, a dynamic jump.
fn builtin_seeds() -> Vec<Seed> {
    let pc = |pcs: &[u32], i: usize| pcs.get(i).copied().unwrap_or(0);
    // sum = 1 + … + r7; halts through r0.
    let sum = |pcs: &[u32]| {
        vec![
            Instruction::LoadImm(RegImm { a: reg(8), imm: 0 }),
            Instruction::Fallthrough(NoArgs),
            Instruction::BranchEqImm(RegImmOffset {
                a: reg(7),
                imm: 0,
                target: pc(pcs, 6),
            }),
            Instruction::Add64(ThreeReg {
                a: reg(8),
                b: reg(7),
                d: reg(8),
            }),
            Instruction::AddImm64(TwoRegImm {
                a: reg(7),
                b: reg(7),
                imm: u32::MAX,
            }),
            Instruction::Jump(OneOffset { target: pc(pcs, 2) }),
            Instruction::MoveReg(TwoReg {
                d: reg(7),
                a: reg(8),
            }),
            Instruction::JumpInd(RegImm { a: reg(0), imm: 0 }),
        ]
    };
    // Stores to the stack, a host call, loads back, a dynamic jump through
    // the jump table (entry 1 = instruction 7), then halt.
    let memory = |_: &[u32]| {
        vec![
            Instruction::StoreImmIndU64(RegTwoImm {
                a: reg(1),
                x: (-16i32) as u32,
                y: 0x1234_5678,
            }),
            Instruction::Ecalli(OneImm { imm: 3 }),
            Instruction::LoadIndU64(TwoRegImm {
                a: reg(7),
                b: reg(1),
                imm: (-16i32) as u32,
            }),
            Instruction::LoadImm64(RegExtImm {
                a: reg(9),
                imm: 0xDEAD_BEEF_0000_0001,
            }),
            // A store to a page nobody mapped: a page fault.
            Instruction::StoreImmU32(TwoImm { x: 0x20000, y: 5 }),
            Instruction::LoadImm(RegImm { a: reg(10), imm: 2 }),
            Instruction::JumpInd(RegImm { a: reg(10), imm: 0 }),
            Instruction::Add64(ThreeReg {
                a: reg(7),
                b: reg(9),
                d: reg(7),
            }),
            Instruction::JumpInd(RegImm { a: reg(0), imm: 0 }),
        ]
    };
    let trap = |_: &[u32]| vec![Instruction::Trap(NoArgs)];

    let mut seeds = Vec::new();
    for profile in Profile::ALL {
        for (name, blob) in [
            ("sum", assemble(profile, &[], sum)),
            ("memory", assemble(profile, &[7], memory)),
            ("trap", assemble(profile, &[], trap)),
        ] {
            let code = blob.to_bytes();
            seeds.push(Seed {
                name: format!("builtin {name} ({profile})"),
                kind: Kind::Blob,
                bytes: code.clone(),
            });
            let sp = StandardProgram {
                ro_data: b"read-only data".to_vec(),
                rw_data: vec![7; 100],
                heap_pages: 2,
                stack_size: 8192,
                code,
            };
            seeds.push(Seed {
                name: format!("builtin {name} ({profile}, standard)"),
                kind: Kind::Standard,
                bytes: sp.to_bytes(),
            });
        }
    }
    seeds
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    /// Flip bit `bit % 8` of a byte.
    FlipBit(Index, u8),
    /// Replace a byte.
    SetByte(Index, u8),
    /// Replace one of the first 32 bytes (the length fields live there).
    SetHeaderByte(u8, u8),
    /// Replace a byte with a boundary value.
    Interesting(Index, Index),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Delete up to `n` bytes.
    Delete(Index, u8),
    /// Keep a prefix.
    Truncate(Index),
    /// Add bytes at the end.
    Append(Vec<u8>),
}

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x04, 0x7F, 0x80, 0xC0, 0xFE, 0xFF];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        3 => (0u8..32, any::<u8>()).prop_map(|(i, b)| Mutation::SetHeaderByte(i, b)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, v)| Mutation::Interesting(i, v)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1u8..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << (bit % 8),
        Mutation::SetByte(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Mutation::SetHeaderByte(i, b) => {
            if let Some(x) = bytes.get_mut(usize::from(*i)) {
                *x = *b;
            }
        }
        Mutation::Interesting(i, v) if len > 0 => bytes[i.index(len)] = *v.get(&INTERESTING),
        Mutation::Insert(i, v) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let at = i.index(len);
            let end = (at + usize::from(*n)).min(len);
            bytes.drain(at..end);
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Mutation::Append(v) => bytes.extend_from_slice(v),
        // Position-based mutations of an empty input do nothing.
        _ => {}
    }
}

/// A seed and the mutations applied to it. Shown by name, so a failure
/// prints a short reproducer rather than a megabyte of DOOM.
#[derive(Clone)]
struct Mutated {
    seed: Index,
    blobs_only: bool,
    mutations: Vec<Mutation>,
}

impl Mutated {
    fn seed(&self) -> &'static Seed {
        seeds().pick(&self.seed, self.blobs_only)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.seed().bytes.clone();
        for m in &self.mutations {
            mutate(&mut bytes, m);
        }
        bytes
    }
}

impl fmt::Debug for Mutated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutated");
        // Only seeds already loaded: loading may be what failed.
        if let Some(seeds) = SEEDS.get() {
            let seed = seeds.pick(&self.seed, self.blobs_only);
            d.field("seed", &seed.name).field("kind", &seed.kind);
        } else {
            d.field("seed", &self.seed);
        }
        d.field("mutations", &self.mutations);
        if SEEDS.get().is_some() {
            let bytes = self.bytes();
            d.field("len", &bytes.len());
            if bytes.len() <= 256 {
                d.field("bytes", &bytes);
            } else {
                d.field("first_64_bytes", &&bytes[..64]);
            }
        }
        d.finish()
    }
}

/// A mutated seed of any kind, or of program blobs only.
fn mutated(blobs_only: bool) -> impl Strategy<Value = Mutated> {
    (any::<Index>(), vec(mutation(), 1..6)).prop_map(move |(seed, mutations)| Mutated {
        seed,
        blobs_only,
        mutations,
    })
}

// ---------------------------------------------------------------------------
// Headers: random bytes behind plausible length fields
// ---------------------------------------------------------------------------

/// A natural number that is often a boundary: 0, small, just past a byte
/// width, or huge.
fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..40,
        1 => Just(0u64),
        1 => prop::sample::select(vec![
            127u64, 128, 16_383, 16_384, 1 << 21, (1 << 28) - 1, 1 << 28, 1 << 32,
            (1 << 56) - 1, 1 << 56, 1 << 62, u64::MAX / 4, u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
}

/// `n` filler bytes: `material` repeated (zeros if there is none).
fn filler(material: &[u8], n: usize) -> Vec<u8> {
    if material.is_empty() {
        vec![0; n]
    } else {
        material.iter().copied().cycle().take(n).collect()
    }
}

/// The largest body that a header is made to fit.
const MAX_FIT: u64 = 4096;

/// `E(|j|) ‖ E₁(z) ‖ E(|c|) ‖ rest` with interesting lengths. With `fit`,
/// `rest` is cut or padded to exactly what the lengths ask for (when that is
/// small), so the parse gets past the length checks.
#[derive(Clone, Debug)]
struct BlobHeader {
    jump_table_len: u64,
    entry_size: u8,
    code_len: u64,
    rest: Vec<u8>,
    fit: bool,
}

impl BlobHeader {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_natural(self.jump_table_len, &mut out);
        out.push(self.entry_size);
        encode_natural(self.code_len, &mut out);
        let needed = self
            .jump_table_len
            .checked_mul(u64::from(self.entry_size))
            .and_then(|j| j.checked_add(self.code_len))
            .and_then(|n| n.checked_add(self.code_len.div_ceil(8)))
            .filter(|&n| n <= MAX_FIT);
        match needed {
            Some(n) if self.fit => out.extend(filler(&self.rest, n as usize)),
            _ => out.extend_from_slice(&self.rest),
        }
        out
    }
}

fn blob_header() -> impl Strategy<Value = BlobHeader> {
    (
        length(),
        prop_oneof![4 => 0u8..=4, 1 => any::<u8>()],
        length(),
        vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(
            |(jump_table_len, entry_size, code_len, rest, fit)| BlobHeader {
                jump_table_len,
                entry_size,
                code_len,
                rest,
                fit,
            },
        )
}

/// `E₃(|o|) ‖ E₃(|w|) ‖ E₂(z) ‖ E₃(s) ‖ rest`, optionally behind a JAM
/// metadata length. With `fit`, the metadata, `o` and `w` get the lengths
/// their fields say (when small) and `rest` follows as the code blob with
/// its 4-byte length.
#[derive(Clone, Debug)]
struct StandardHeader {
    metadata_len: Option<u64>,
    fields: [u32; 4],
    rest: Vec<u8>,
    fit: bool,
}

impl StandardHeader {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(m) = self.metadata_len {
            encode_natural(m, &mut out);
            if self.fit && m <= MAX_FIT {
                out.extend(filler(&self.rest, m as usize));
            }
        }
        for (v, n) in self.fields.iter().zip([3, 3, 2, 3]) {
            out.extend_from_slice(&v.to_le_bytes()[..n]);
        }
        let data = u64::from(self.fields[0] & 0xFF_FFFF) + u64::from(self.fields[1] & 0xFF_FFFF);
        if self.fit && data <= MAX_FIT {
            out.extend(filler(&self.rest, data as usize));
            out.extend_from_slice(&(self.rest.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.rest);
        out
    }
}

fn standard_header() -> impl Strategy<Value = StandardHeader> {
    let data_len = || prop_oneof![3 => 0u32..64, 1 => any::<u32>()];
    // A huge heap or stack makes Y map up to 256 MiB: only now and then.
    let heap_pages = prop_oneof![30 => 0u32..64, 1 => any::<u32>()];
    let stack_size = prop_oneof![10 => 0u32..0x1_0000, 1 => any::<u32>()];
    (
        prop::option::of(length()),
        (data_len(), data_len(), heap_pages, stack_size).prop_map(|(o, w, z, s)| [o, w, z, s]),
        vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(|(metadata_len, fields, rest, fit)| StandardHeader {
            metadata_len,
            fields,
            rest,
            fit,
        })
}

// ---------------------------------------------------------------------------
// Random programs
// ---------------------------------------------------------------------------

/// One random instruction: an opcode of the table and raw argument material.
#[derive(Clone, Debug)]
struct InstSpec {
    opcode: Opcode,
    regs: [u8; 3],
    imms: [u32; 2],
    imm64: u64,
    /// Branch target: an instruction of the program, or a raw offset.
    target: Index,
    raw_target: Option<u32>,
}

fn inst_spec() -> impl Strategy<Value = InstSpec> {
    let imm = prop_oneof![
        2 => 0u32..16,
        1 => prop::sample::select(vec![0x10000u32, 0x20000, HALT_ADDRESS, STACK_TOP - 8, ARGS_START, u32::MAX, 0x8000_0000]),
        1 => any::<u32>(),
    ];
    // Any opcode of the table, and now and then one that changes control
    // flow or the heap.
    let opcode = prop_oneof![
        9 => any::<Index>().prop_map(|i| *i.get(Opcode::ALL)),
        1 => prop::sample::select(vec![
            Opcode::Sbrk,
            Opcode::Ecalli,
            Opcode::JumpInd,
            Opcode::LoadImmJumpInd,
            Opcode::Fallthrough,
            Opcode::Unlikely,
        ]),
    ];
    (
        opcode,
        prop::array::uniform3(0u8..16),
        prop::array::uniform2(imm),
        any::<u64>(),
        any::<Index>(),
        prop::option::weighted(0.1, any::<u32>()),
    )
        .prop_map(|(opcode, regs, imms, imm64, target, raw_target)| InstSpec {
            opcode,
            regs,
            imms,
            imm64,
            target,
            raw_target,
        })
}

impl InstSpec {
    fn instruction(&self, pcs: &[u32]) -> Instruction {
        let op = self.opcode;
        let [a, b, d] = self.regs.map(reg);
        let [x, y] = self.imms;
        let target = self.raw_target.unwrap_or_else(|| {
            if pcs.is_empty() {
                0
            } else {
                *self.target.get(pcs)
            }
        });
        let args = match op.format() {
            Format::NoArgs => Args::NoArgs(NoArgs),
            Format::OneImm => Args::OneImm(OneImm { imm: x }),
            Format::RegExtImm => Args::RegExtImm(RegExtImm { a, imm: self.imm64 }),
            Format::TwoImm => Args::TwoImm(TwoImm { x, y }),
            Format::OneOffset => Args::OneOffset(OneOffset { target }),
            Format::RegImm => Args::RegImm(RegImm { a, imm: x }),
            Format::RegTwoImm => Args::RegTwoImm(RegTwoImm { a, x, y }),
            Format::RegImmOffset => Args::RegImmOffset(RegImmOffset { a, imm: x, target }),
            Format::TwoReg => Args::TwoReg(TwoReg { d, a }),
            Format::TwoRegImm => Args::TwoRegImm(TwoRegImm { a, b, imm: x }),
            Format::TwoRegOffset => Args::TwoRegOffset(TwoRegOffset { a, b, target }),
            Format::TwoRegTwoImm => Args::TwoRegTwoImm(TwoRegTwoImm { a, b, x, y }),
            Format::ThreeReg => Args::ThreeReg(ThreeReg { a, b, d }),
        };
        Instruction::from_args(op, args).expect("arguments of the opcode's format")
    }
}

/// A randomly assembled program: valid encodings, real branch targets, a
/// jump table into the code, often ending with a terminator; then optionally
/// a few raw mutations.
#[derive(Clone)]
struct RandomProgram {
    profile: Profile,
    insts: Vec<InstSpec>,
    /// Appended terminator: none, `trap`, or `jump_ind r0` (halt).
    end: u8,
    jump_table: Vec<Index>,
    entry_size: u8,
    mutations: Vec<Mutation>,
}

/// Shown as the program it assembles to, so a failure reads as code.
impl fmt::Debug for RandomProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blob = self.blob();
        let code: Vec<(u32, Instruction)> = (0..blob.code.len())
            .filter(|&i| blob.is_start(i))
            .filter_map(|i| {
                let pc = i as u32;
                codec::decode(self.profile, &blob.code, pc, blob.skip(i))
                    .ok()
                    .map(|inst| (pc, inst))
            })
            .collect();
        f.debug_struct("RandomProgram")
            .field("profile", &self.profile)
            // As assembled under `profile`; the test decodes it under both.
            .field("code_as_assembled", &code)
            .field("jump_table", &blob.jump_table)
            .field("entry_size", &blob.jump_table_entry_size)
            .field("mutations", &self.mutations)
            .field("bytes", &self.bytes())
            .finish()
    }
}

fn random_program() -> impl Strategy<Value = RandomProgram> {
    (
        prop_oneof![Just(Profile::V0_8), Just(Profile::V0_7)],
        vec(inst_spec(), 0..24),
        0u8..3,
        vec(any::<Index>(), 0..5),
        prop_oneof![4 => Just(4u8), 1 => 0u8..=4],
        prop_oneof![3 => Just(Vec::new()), 1 => vec(mutation(), 1..3)],
    )
        .prop_map(
            |(profile, insts, end, jump_table, entry_size, mutations)| RandomProgram {
                profile,
                insts,
                end,
                jump_table,
                entry_size,
                mutations,
            },
        )
}

impl RandomProgram {
    fn blob(&self) -> Blob {
        let build = |pcs: &[u32]| {
            let mut v: Vec<Instruction> = self
                .insts
                .iter()
                .map(|s| s.instruction(pcs))
                // Opcodes the profile lacks (sbrk in 0.8, unlikely in 0.7).
                .filter(|i| i.opcode().number(self.profile).is_some())
                .collect();
            match self.end {
                1 => v.push(Instruction::Trap(NoArgs)),
                2 => v.push(Instruction::JumpInd(RegImm { a: reg(0), imm: 0 })),
                _ => {}
            }
            v
        };
        let count = build(&[]).len();
        let table: Vec<usize> = self
            .jump_table
            .iter()
            .map(|i| if count == 0 { 0 } else { i.index(count) })
            .collect();
        let mut blob = assemble(self.profile, &table, build);
        blob.jump_table_entry_size = self.entry_size;
        // Entries keep the bytes that fit in `entry_size`.
        let mask = ((1u64 << (8 * u32::from(self.entry_size))) - 1) as u32;
        for e in &mut blob.jump_table {
            *e &= mask;
        }
        blob
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.blob().to_bytes();
        for m in &self.mutations {
            mutate(&mut bytes, m);
        }
        bytes
    }
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// How to run a program that decodes.
#[derive(Clone, Debug)]
struct RunParams {
    /// Start at 0, at some code offset of the program, or anywhere.
    pc: PcChoice,
    regs: [u64; 13],
    /// A heap for 0.7's `sbrk`: `(top, limit)`.
    heap: Option<(u32, u32)>,
    /// Run with `step` instead of `run`.
    step: bool,
    /// Map the page of a fault (read-write) and resume.
    map_faults: bool,
    /// Arguments for Y.
    args: Vec<u8>,
    /// Under Y: the standard registers (else the random ones).
    standard_regs: bool,
}

#[derive(Clone, Debug)]
enum PcChoice {
    Zero,
    InCode(Index),
    Any(u32),
}

fn reg_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0u64..64,
        // Small negative numbers, as compilers leave them.
        1 => (0u64..1 << 33).prop_map(|x| u64::MAX - x),
        1 => prop::sample::select(vec![
            u64::from(HALT_ADDRESS), 0x10000, 0x20000, u64::from(STACK_TOP), u64::from(ARGS_START),
            u64::MAX, u64::MAX - 4095, 1 << 32, 2, 4, 6,
        ]),
    ]
}

fn run_params() -> impl Strategy<Value = RunParams> {
    (
        prop_oneof![
            2 => Just(PcChoice::Zero),
            2 => any::<Index>().prop_map(PcChoice::InCode),
            1 => any::<u32>().prop_map(PcChoice::Any),
        ],
        prop::array::uniform13(reg_value()),
        prop::option::of((any::<u32>(), any::<u32>())),
        any::<bool>(),
        any::<bool>(),
        vec(any::<u8>(), 0..=100),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(pc, mut regs, heap, step, map_faults, args, standard_regs, halt)| {
                // Half the runs can return through r0, as Y's callers do.
                if halt {
                    regs[0] = u64::from(HALT_ADDRESS);
                }
                RunParams {
                    pc,
                    regs,
                    heap,
                    step,
                    map_faults,
                    args,
                    standard_regs,
                }
            },
        )
}

impl RunParams {
    fn pc(&self, program: &Program) -> u32 {
        match &self.pc {
            PcChoice::Zero => 0,
            PcChoice::InCode(i) => i.index(program.blob().code.len() + 2) as u32,
            PcChoice::Any(pc) => *pc,
        }
    }
}

/// Runs `program` briefly. It must end (gas bounds it), never panic, and only
/// return `Err` for a machine that has already stopped.
fn run_briefly(
    program: &Program,
    memory: PagedMemory,
    regs: [u64; 13],
    heap: Option<Heap>,
    params: &RunParams,
) -> Result<(), TestCaseError> {
    let mut vm = Vm::new(program, memory, params.pc(program), GAS);
    *vm.regs_mut() = regs;
    vm.set_heap(heap);
    let mut resumes = 0;
    let mut steps = 0;
    loop {
        let gas_before = vm.gas();
        let exit = if params.step {
            steps += 1;
            match vm.step() {
                Ok(None) if steps < MAX_STEPS => continue,
                Ok(None) => return Ok(()),
                Ok(Some(exit)) => Ok(exit),
                Err(e) => Err(e),
            }
        } else {
            vm.run()
        };
        prop_assert!(
            vm.gas() <= gas_before,
            "gas grew: {} -> {}",
            gas_before,
            vm.gas()
        );
        let exit = match exit {
            Ok(exit) => exit,
            Err(Error::Finished) => {
                prop_assert!(vm.is_finished());
                return Ok(());
            }
            // Any other error is an answer too; nothing more to run.
            Err(_) => return Ok(()),
        };
        if resumes >= MAX_RESUMES {
            return Ok(());
        }
        resumes += 1;
        match exit {
            Exit::Halt | Exit::Panic => {
                prop_assert!(
                    vm.is_finished(),
                    "{:?} but the machine is not finished",
                    exit
                );
                prop_assert_eq!(vm.run(), Err(Error::Finished));
                return Ok(());
            }
            Exit::HostCall(id) => {
                // A host answers in r7 and continues.
                vm.set_reg(7, u64::from(id).wrapping_mul(0x9E37_79B9));
            }
            Exit::PageFault(addr) => {
                prop_assert!(
                    addr >= 0x10000 && addr % PAGE_SIZE == 0,
                    "fault at {:#x}",
                    addr
                );
                if !params.map_faults {
                    return Ok(());
                }
                vm.memory_mut()
                    .set_access(addr / PAGE_SIZE, 1, Access::Write);
            }
            Exit::OutOfGas => vm.set_gas(vm.gas() + 50),
        }
    }
}

/// Decodes `code` under both profiles and runs what decodes.
fn decode_and_run(code: &[u8], params: &RunParams) -> Result<(), TestCaseError> {
    for profile in Profile::ALL {
        let Ok(program) = Program::from_bytes(code, profile) else {
            continue;
        };
        prop_assert_eq!(program.profile(), profile);
        let heap = params.heap.map(|(top, limit)| Heap { top, limit });
        run_briefly(&program, PagedMemory::new(), params.regs, heap, params)?;
    }
    Ok(())
}

/// Y with the run's arguments, checks of what Y must lay out, then a run of
/// the code over that memory under both profiles.
fn exercise_standard(sp: &StandardProgram, params: &RunParams) -> Result<(), TestCaseError> {
    let run_code = if claims_more_than_it_holds(&sp.code) {
        decode_in_child(&sp.code)?;
        false
    } else {
        true
    };
    for profile in Profile::ALL {
        let Ok(init) = sp.initialize::<PagedMemory>(&params.args) else {
            return Ok(());
        };
        prop_assert_eq!(init.regs[0], u64::from(HALT_ADDRESS));
        prop_assert_eq!(init.regs[1], u64::from(STACK_TOP));
        prop_assert_eq!(init.regs[7], u64::from(ARGS_START));
        prop_assert_eq!(init.regs[8], params.args.len() as u64);
        let mut memory = init.memory;
        if !params.args.is_empty() {
            let mut buf = vec![0u8; params.args.len()];
            prop_assert!(memory.read(ARGS_START, &mut buf).is_ok());
            prop_assert_eq!(&buf, &params.args);
        }
        if !sp.ro_data.is_empty() {
            let n = sp.ro_data.len().min(4096);
            let mut buf = vec![0u8; n];
            prop_assert!(memory.read(RO_START, &mut buf).is_ok());
            prop_assert_eq!(&buf[..], &sp.ro_data[..n]);
            prop_assert!(memory.write(RO_START, &buf[..1]).is_err());
        }
        if !sp.rw_data.is_empty() {
            let n = sp.rw_data.len().min(4096);
            let mut buf = vec![0u8; n];
            prop_assert!(memory.read(sp.heap_start(), &mut buf).is_ok());
            prop_assert_eq!(&buf[..], &sp.rw_data[..n]);
        }
        if !run_code {
            continue;
        }
        let Ok(program) = Program::from_bytes(&sp.code, profile) else {
            continue;
        };
        let regs = if params.standard_regs {
            init.regs
        } else {
            params.regs
        };
        run_briefly(&program, memory, regs, Some(init.heap), params)?;
    }
    Ok(())
}

/// Feeds `bytes` to every decoder; runs and initialises what decodes.
/// Whatever parses must also re-encode to something that parses the same.
fn check_bytes(bytes: &[u8], params: &RunParams) -> Result<(), TestCaseError> {
    if claims_more_than_it_holds(bytes) {
        decode_in_child(bytes)?;
    } else {
        if let Ok(blob) = Blob::parse(bytes) {
            prop_assert_eq!(blob.bitmask.len(), blob.code.len().div_ceil(8));
            let again = Blob::parse(&blob.to_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&blob));
        }
        decode_and_run(bytes, params)?;
    }
    if let Ok(sp) = StandardProgram::parse(bytes) {
        let again = StandardProgram::parse(&sp.to_bytes());
        prop_assert_eq!(again.as_ref(), Ok(&sp));
        exercise_standard(&sp, params)?;
    }
    if let Ok(jam) = JamBlob::parse(bytes) {
        let again = JamBlob::parse(&jam.to_bytes());
        prop_assert_eq!(again.as_ref(), Ok(&jam));
        exercise_standard(&jam.program, params)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Decoding in a child process
// ---------------------------------------------------------------------------

/// Set (to an input file) in the child process that decodes one blob.
const CHILD_ENV: &str = "PVM_FUZZ_DECODE_CHILD";
/// A child that takes longer than this has been sent unbounded work.
const CHILD_TIMEOUT: Duration = Duration::from_secs(5);
/// The child's address space, in KiB (2 GiB): decoding a blob of at most a
/// few megabytes needs a small fraction of it.
const CHILD_MEMORY_KIB: u64 = 2 << 20;

/// Whether a blob's header claims a jump table of entry size 0 with more
/// entries than 4 bytes each of 4 MiB could hold. With an entry size of 1 to
/// 4 the entries must be in the input, which bounds whatever decoding
/// allocates by the input's size; with entry size 0 nothing does, and a
/// decoder that allocates per claimed entry dies by allocation failure, which
/// aborts the process instead of panicking. Such inputs are decoded in a child
/// process, so that a crash or a runaway is reported as a failing case (and
/// shrunk) instead of taking the whole test binary down.
fn claims_more_than_it_holds(bytes: &[u8]) -> bool {
    let mut r = Reader::new(bytes);
    match (r.natural(), r.fixed(1)) {
        (Some(entries), Some(0)) => entries > 1 << 20,
        _ => false,
    }
}

/// Decodes `bytes` as a blob under both profiles in a child process (this
/// test binary running [`child_decode_helper`]) and fails unless the child
/// exits normally within [`CHILD_TIMEOUT`].
fn decode_in_child(bytes: &[u8]) -> Result<(), TestCaseError> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "pvm-fuzz-decoders-{}-{}.bin",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, bytes).map_err(|e| TestCaseError::fail(format!("{}: {e}", path.display())))?;
    let spawned = child_command()
        .args([
            "child_decode_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_file(&path);
            return Err(TestCaseError::fail(format!(
                "cannot start a child process: {e}"
            )));
        }
    };
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stderr = reader.join().unwrap_or_default();
    let _ = fs::remove_file(&path);
    let what = format!(
        "decoding this {}-byte blob (first bytes {:?}) with Blob::parse / Program::from_bytes",
        bytes.len(),
        &bytes[..bytes.len().min(16)]
    );
    let said: String = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note:"))
        .map(|l| format!("; it said: {l}"))
        .collect();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(TestCaseError::fail(format!(
            "{what} crashed the process ({status}){said}"
        ))),
        None => Err(TestCaseError::fail(format!(
            "{what} did not finish within {CHILD_TIMEOUT:?}{said}"
        ))),
    }
}

/// This test binary, to run as a child. On Unix its address space is capped
/// (`ulimit -v`), so a runaway allocation fails fast instead of filling the
/// machine's memory.
fn child_command() -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    if cfg!(unix) && Path::new("/bin/sh").exists() {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -v {CHILD_MEMORY_KIB} 2>/dev/null; exec \"$0\" \"$@\""
            ))
            .arg(exe);
        command
    } else {
        Command::new(exe)
    }
}

/// The child-process half of [`decode_in_child`]; without the environment
/// variable (a normal test run) it does nothing.
#[test]
fn child_decode_helper() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let bytes = fs::read(&path).expect("the input file");
    let _ = Blob::parse(&bytes);
    for profile in Profile::ALL {
        let _ = Program::from_bytes(&bytes, profile);
    }
}

// ---------------------------------------------------------------------------
// Structured standard programs for Y
// ---------------------------------------------------------------------------

/// A standard program built field by field (so it parses), with an
/// occasional huge heap or stack.
fn standard_program() -> impl Strategy<Value = (StandardProgram, Option<Mutated>, RandomProgram)> {
    (
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..64),
        prop_oneof![60 => 0u16..64, 1 => any::<u16>()],
        prop_oneof![30 => 0u32..0x1_0000, 1 => 0u32..=0xFF_FFFF],
        prop::option::weighted(0.5, mutated(true)),
        random_program(),
    )
        .prop_map(
            |(ro_data, rw_data, heap_pages, stack_size, seed_code, random)| {
                (
                    StandardProgram {
                        ro_data,
                        rw_data,
                        heap_pages,
                        stack_size,
                        code: Vec::new(),
                    },
                    seed_code,
                    random,
                )
            },
        )
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    /// Arbitrary bytes into every decoder.
    #[test]
    fn random_bytes(bytes in vec(any::<u8>(), 0..600), params in run_params()) {
        check_bytes(&bytes, &params)?;
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Random bytes behind plausible headers, so the length fields are
    /// exercised rather than rejected.
    #[test]
    fn random_headers(
        blob in blob_header(),
        standard in standard_header(),
        params in run_params(),
    ) {
        check_bytes(&blob.bytes(), &params)?;
        check_bytes(&standard.bytes(), &params)?;
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Mutations of valid seeds into every decoder; what still decodes runs.
    #[test]
    fn mutated_seeds(input in mutated(false), params in run_params()) {
        check_bytes(&input.bytes(), &params)?;
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Randomly assembled programs: decoded under both profiles and run.
    #[test]
    fn random_programs(program in random_program(), params in run_params()) {
        check_bytes(&program.bytes(), &params)?;
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Y over standard programs that parse, with random arguments (≤ 100
    /// bytes), then a run of their code over the memory Y laid out.
    #[test]
    fn standard_programs_through_y(
        (mut sp, seed_code, random) in standard_program(),
        params in run_params(),
    ) {
        sp.code = match &seed_code {
            Some(m) => m.bytes(),
            None => random.bytes(),
        };
        let bytes = sp.to_bytes();
        let parsed = StandardProgram::parse(&bytes);
        prop_assert_eq!(parsed.as_ref(), Ok(&sp));
        // Parses again inside, then Y and a run of the code.
        check_bytes(&bytes, &params)?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// `Program::new` takes the parts of a blob as a public struct: parts
    /// that `Blob::parse` would never produce (a bitmask of the wrong
    /// length, wide jump-table entries) must be an error, not a panic.
    #[test]
    fn program_new_on_unchecked_parts(
        code in vec(any::<u8>(), 0..64),
        bitmask in vec(any::<u8>(), 0..10),
        jump_table in vec(any::<u32>(), 0..4),
        entry_size in any::<u8>(),
        params in run_params(),
    ) {
        let blob = Blob { jump_table, jump_table_entry_size: entry_size, code, bitmask };
        for profile in Profile::ALL {
            if let Ok(program) = Program::new(blob.clone(), profile) {
                run_briefly(&program, PagedMemory::new(), params.regs, None, &params)?;
            }
        }
    }
}

/// The seeds themselves decode, and the vector programs run.
#[test]
fn seeds_are_valid_and_run() {
    let seeds = seeds();
    let params = RunParams {
        pc: PcChoice::Zero,
        regs: [0; 13],
        heap: None,
        step: false,
        map_faults: true,
        args: vec![1, 2, 3],
        standard_regs: true,
    };
    let mut programs = 0;
    for s in &seeds.seeds {
        if s.bytes.len() > 1 << 16 {
            continue; // DOOM: decoded by the mutation property already.
        }
        check_bytes(&s.bytes, &params).unwrap_or_else(|e| panic!("seed {}: {e}", s.name));
        if s.kind == Kind::Blob && Program::from_bytes(&s.bytes, Profile::V0_8).is_ok() {
            programs += 1;
        }
    }
    assert!(programs > 0, "no seed decodes as a GP 0.8 program");
}

/// The built-in seeds compute what they should, so the fallback seeds (and
/// the harness running them) are real programs and not noise.
#[test]
fn builtin_seeds_compute() {
    let seeds = builtin_seeds();
    let find = |name: &str| {
        &seeds
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no seed {name}"))
            .bytes
    };
    for profile in Profile::ALL {
        // sum(1..=10) in r7.
        let program = Program::from_bytes(find(&format!("builtin sum ({profile})")), profile)
            .expect("the sum seed decodes");
        let mut vm = Vm::new(&program, PagedMemory::new(), 0, GAS);
        vm.set_reg(0, u64::from(HALT_ADDRESS));
        vm.set_reg(7, 10);
        assert_eq!(vm.run(), Ok(Exit::Halt), "{profile}");
        assert_eq!(vm.reg(7), 55, "{profile}");

        // Through Y: a store and load on the stack, a host call, a page
        // fault, a jump through the jump table, then halt.
        let sp = StandardProgram::parse(find(&format!("builtin memory ({profile}, standard)")))
            .expect("the memory seed parses");
        let init = sp.initialize::<PagedMemory>(&[]).expect("Y");
        let program = Program::from_bytes(&sp.code, profile).expect("the memory seed decodes");
        let mut vm = Vm::new(&program, init.memory, 0, GAS);
        *vm.regs_mut() = init.regs;
        assert_eq!(vm.run(), Ok(Exit::HostCall(3)), "{profile}");
        assert_eq!(vm.run(), Ok(Exit::PageFault(0x20000)), "{profile}");
        vm.memory_mut().set_access(0x20, 1, Access::Write);
        assert_eq!(vm.run(), Ok(Exit::Halt), "{profile}");
        assert_eq!(
            vm.reg(7),
            0x1234_5678u64.wrapping_add(0xDEAD_BEEF_0000_0001)
        );
    }
}

/// Found by `pvm-parse-fuzz --target blob` (seed 1): `Blob::parse` bounded a
/// zero-width jump table by the bytes of the *input*, so a length prefix
/// written wider than needed (`f8 0a 00 00 00 00`: 10 in six bytes) made a
/// blob acceptable whose canonical re-encoding (`Blob::to_bytes`) was
/// rejected. The bound is now the canonical size: the answer no longer
/// depends on how the prefixes are written, and a short input still cannot
/// claim a huge table.
#[test]
fn regression_blob_zero_width_jump_table_bound_ignores_prefix_width() {
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
    // The fuzzer's input: 10 zero-width entries, 4 code bytes.
    let padded = hex("f80a000000000004c787090009");
    let canonical = hex("0a0004c787090009");
    assert_eq!(Blob::parse(&padded), Blob::parse(&canonical));
    assert!(matches!(
        Blob::parse(&canonical),
        Err(Error::OutOfRange {
            what: "jump table length",
            ..
        })
    ));
    // 8 entries fit the canonical size (8 bytes): accepted, however written.
    let padded = hex("f808000000000004000000000f");
    let canonical = hex("080004000000000f");
    let blob = Blob::parse(&canonical).expect("8 zero-width entries");
    assert_eq!(blob.jump_table, vec![0; 8]);
    assert_eq!(Blob::parse(&padded).as_ref(), Ok(&blob));
    assert_eq!(blob.to_bytes(), canonical);
    // A short input still cannot claim a table as large as a claimed code.
    let mut claims = Vec::new();
    encode_natural(1 << 27, &mut claims);
    claims.push(0);
    encode_natural(1 << 27, &mut claims);
    assert!(matches!(
        Blob::parse(&claims),
        Err(Error::OutOfRange {
            what: "jump table length",
            ..
        })
    ));
}
