//! Program blobs (GP §A.2 `deblob`), validation per profile, and the
//! pre-decoded program that every backend runs.

use crate::codec::{self, Reader};
use crate::error::Error;
use crate::gas::GasModel;
use crate::interp::Compiled;
use crate::isa::*;
use alloc::vec::Vec;

/// The parts of a program blob: `E(|j|) ‖ E₁(z) ‖ E(|c|) ‖ E_z(j…) ‖ c ‖ E(k)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The dynamic jump table `j`.
    pub jump_table: Vec<u32>,
    /// Bytes per jump-table entry, `z`.
    pub jump_table_entry_size: u8,
    /// The code `c`.
    pub code: Vec<u8>,
    /// The opcode bitmask `k`, packed LSB-first, `ceil(|c| / 8)` bytes.
    pub bitmask: Vec<u8>,
}

/// The largest code we accept (the GP's W_C bounds service code at 4 MB;
/// this is a sanity bound against absurd length prefixes).
const MAX_CODE_LEN: u64 = 1 << 28;

impl Blob {
    /// Splits a program blob into its parts. The decomposition must use every
    /// byte (GP: it must be unique).
    pub fn parse(bytes: &[u8]) -> Result<Blob, Error> {
        let mut r = Reader::new(bytes);
        let at = r.pos();
        let jt_len = r.natural().ok_or(Error::Truncated {
            what: "jump table length",
            offset: at,
        })?;
        let at = r.pos();
        let z = r.fixed(1).ok_or(Error::Truncated {
            what: "jump table entry size",
            offset: at,
        })? as u8;
        let at = r.pos();
        let code_len = r.natural().ok_or(Error::Truncated {
            what: "code length",
            offset: at,
        })?;
        if code_len > MAX_CODE_LEN {
            return Err(Error::OutOfRange {
                what: "code length",
                offset: at,
                value: code_len,
            });
        }
        if z > 4 && jt_len > 0 {
            // Entries wider than 4 bytes cannot address 32-bit code offsets.
            return Err(Error::OutOfRange {
                what: "jump table entry size",
                offset: 1,
                value: u64::from(z),
            });
        }
        // The blob's size in its canonical encoding (shortest length prefixes).
        let canonical_len = (natural_len(jt_len) + 1 + natural_len(code_len))
            .saturating_add(jt_len.saturating_mul(u64::from(z)))
            .saturating_add(code_len + code_len.div_ceil(8));
        if jt_len > canonical_len.min(bytes.len() as u64) {
            // Only reachable with 0-byte entries (z = 0): more entries than the
            // blob has bytes. An implementation limit, so that a few header
            // bytes cannot make us allocate gigabytes. A complete blob has at
            // least its canonical size, so for every blob that can be
            // accepted this compares with the canonical size: the answer does
            // not depend on how wide the length prefixes are written (found
            // by pvm-parse-fuzz: a padded prefix made a blob acceptable whose
            // canonical re-encoding was not).
            return Err(Error::OutOfRange {
                what: "jump table length",
                offset: 0,
                value: jt_len,
            });
        }
        let at = r.pos();
        let jt_bytes = jt_len
            .checked_mul(u64::from(z))
            .filter(|&n| n <= r.rest().len() as u64);
        let Some(jt_bytes) = jt_bytes else {
            return Err(Error::Truncated {
                what: "jump table",
                offset: at,
            });
        };
        let mut jump_table = Vec::with_capacity(jt_len as usize);
        let mut jt = Reader::new(r.bytes(jt_bytes as usize).unwrap_or(&[]));
        for _ in 0..jt_len {
            jump_table.push(jt.fixed(usize::from(z)).unwrap_or(0) as u32);
        }
        let at = r.pos();
        let code_bytes = r.bytes(code_len as usize).ok_or(Error::Truncated {
            what: "code",
            offset: at,
        })?;
        let at = r.pos();
        let mask_len = code_bytes.len().div_ceil(8);
        let mask_bytes = r.bytes(mask_len).ok_or(Error::Truncated {
            what: "opcode bitmask",
            offset: at,
        })?;
        let (mut code, mut bitmask) = spare_blob(code_bytes.len());
        code.extend_from_slice(code_bytes);
        bitmask.extend_from_slice(mask_bytes);
        if !r.rest().is_empty() {
            return Err(Error::TrailingBytes {
                what: "the opcode bitmask",
                offset: r.pos(),
            });
        }
        Ok(Blob {
            jump_table,
            jump_table_entry_size: z,
            code,
            bitmask,
        })
    }

    /// A blob of `code` whose instructions start at `starts` (the bitmask is
    /// built from them), with no jump table.
    pub fn from_code(code: &[u8], starts: impl IntoIterator<Item = usize>) -> Blob {
        let mut bitmask = alloc::vec![0u8; code.len().div_ceil(8)];
        for s in starts.into_iter().filter(|&s| s < code.len()) {
            bitmask[s / 8] |= 1 << (s % 8);
        }
        Blob {
            jump_table: Vec::new(),
            jump_table_entry_size: 0,
            code: code.to_vec(),
            bitmask,
        }
    }

    /// Encodes the blob back to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_natural(self.jump_table.len() as u64, &mut out);
        out.push(self.jump_table_entry_size);
        codec::encode_natural(self.code.len() as u64, &mut out);
        for &e in &self.jump_table {
            out.extend_from_slice(
                &e.to_le_bytes()[..usize::from(self.jump_table_entry_size).min(4)],
            );
            out.extend(core::iter::repeat_n(
                0,
                usize::from(self.jump_table_entry_size).saturating_sub(4),
            ));
        }
        out.extend_from_slice(&self.code);
        out.extend_from_slice(&self.bitmask);
        out
    }

    /// How many bits of the opcode bitmask are set: the instruction count
    /// of a valid GP 0.8 program (padding bits of the last byte included,
    /// so an upper bound in general).
    pub fn marked_starts(&self) -> usize {
        let mut chunks = self.bitmask.chunks_exact(8);
        let mut count = 0usize;
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            count += w.count_ones() as usize;
        }
        count
            + chunks
                .remainder()
                .iter()
                .map(|b| b.count_ones() as usize)
                .sum::<usize>()
    }

    /// The marked starts below code offset `pc`.
    fn marked_before(&self, pc: usize) -> usize {
        let full = (pc / 8).min(self.bitmask.len());
        let mut count: usize = self.bitmask[..full]
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum();
        if let Some(b) = self.bitmask.get(pc / 8).filter(|_| pc % 8 != 0) {
            count += (b & ((1u8 << (pc % 8)) - 1)).count_ones() as usize;
        }
        count
    }

    /// Whether code offset `i` is marked as an instruction start (`k[i] = 1`).
    #[inline]
    pub fn is_start(&self, i: usize) -> bool {
        i < self.code.len()
            && self
                .bitmask
                .get(i / 8)
                .is_some_and(|b| (b >> (i % 8)) & 1 == 1)
    }

    /// The GP's `skip(i)`: bytes of arguments after the opcode at `i`, the
    /// distance to the next set bit of `k ‖ [1, 1, …]` (bits at or past the
    /// end of the code count as set, padding bits of the last mask byte
    /// included), at most 24.
    #[inline]
    pub fn skip(&self, i: usize) -> u32 {
        self.gap(i).min(24)
    }

    /// The distance from `i + 1` to the next set bit of `k ‖ [1, 1, …]`
    /// when it is below 32 (else some value of at least 25): `skip(i)`
    /// before the cap at 24. A gap of 25 or more means the walk from `i`
    /// lands on an offset that is not an instruction start.
    #[inline(always)]
    fn gap(&self, i: usize) -> u32 {
        let start = i + 1;
        let byte = start / 8;
        // At least 32 mask bits from `start` on (bytes past the mask read
        // as 0): one 8-byte load except near the end of the mask.
        let word = match self.bitmask.get(byte..byte + 8) {
            Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => {
                let mut raw = [0u8; 8];
                let rest = self.bitmask.get(byte..).unwrap_or(&[]);
                let k = rest.len().min(8);
                raw[..k].copy_from_slice(&rest[..k]);
                u64::from_le_bytes(raw)
            }
        };
        let mut w = (word >> (start % 8)) as u32;
        // The first bit past the code is set (what lies above it, such as
        // the last mask byte's padding, cannot matter then).
        let inside = self.code.len().saturating_sub(start);
        if inside < 32 {
            w |= 1u32 << inside;
        }
        w.trailing_zeros()
    }

    /// A marked start at or after `near` whose previous marked
    /// start holds a GP 0.8 terminator: where a 0.8 walk can be cut in two
    /// (the walk from 0 reaches it right after a terminator, if the
    /// program is valid). `None` for small code, or if none is found soon.
    fn split_point(&self, near: usize) -> Option<usize> {
        let n = self.code.len();
        if n < 1024 {
            return None;
        }
        let mut prev = (near..n).find(|&i| self.is_start(i))?;
        for _ in 0..4096 {
            let next = (prev + 1..n).find(|&i| self.is_start(i))?;
            let op = Opcode::from_byte(Profile::V0_8, self.code[prev]);
            if op.is_some_and(|op| op.is_terminator()) {
                return Some(next);
            }
            prev = next;
        }
        None
    }

    /// The marked instruction starts below the end of the code, as 64-bit
    /// words (bit `pc % 64` of word `pc / 64`), `(len + 1).div_ceil(64)`
    /// words, into `words` (emptied first).
    fn start_words_into(&self, words: &mut Vec<u64>) {
        let n = self.code.len();
        words.clear();
        words.reserve((n + 1).div_ceil(64));
        let mut chunks = self.bitmask.chunks_exact(8);
        for c in &mut chunks {
            words.push(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut raw = [0u8; 8];
            raw[..rest.len()].copy_from_slice(rest);
            words.push(u64::from_le_bytes(raw));
        }
        words.resize((n + 1).div_ceil(64), 0);
        // Padding bits of the last mask byte are not starts.
        if n % 64 != 0 {
            words[n / 64] &= (1u64 << (n % 64)) - 1;
        }
    }
}

/// A static control transfer, as [`Program::transfer`] resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Not a static jump, branch or `fallthrough`.
    None,
    /// Panics at this instruction, with no effect, whatever its operands.
    Panic,
    /// Continues at this instruction index when taken (always, for a jump).
    To(usize),
    /// Panics at this instruction when taken: a 0.7 branch to a target
    /// outside ϖ (its fall-through still continues), or a `load_imm_jump`
    /// (after writing its register).
    PanicWhenTaken,
}

/// Bytes of the canonical GP encoding of the natural number `x` (§C.1.1).
fn natural_len(x: u64) -> u64 {
    (1..=8).find(|&l| x < 1u64 << (7 * l)).unwrap_or(9)
}

/// Per-instruction flags of a [`Program`].
pub(crate) mod flags {
    /// In ϖ: a valid jump target.
    pub const BLOCK_START: u8 = 1;
    /// Not a real instruction: an invalid opcode (0.7) or the implicit trap
    /// where the walk leaves the instructions (0.7). Behaves as `trap`.
    pub const IMPLICIT_TRAP: u8 = 2;
    /// Ends a gas block: a terminator or an implicit trap.
    pub const ENDS_BLOCK: u8 = 4;
}

/// What kind of static transfer an instruction makes (see
/// `Program::resolve_static_target`).
mod target_kind {
    /// `jump`, `load_imm_jump`: to the target, always.
    pub const JUMP: u32 = 0;
    /// A conditional branch: under 0.8 it also needs its fall-through in ϖ.
    pub const BRANCH: u32 = 1;
    /// 0.8's `fallthrough`: to the next instruction.
    pub const FALLTHROUGH: u32 = 2;
}

/// The kind of static transfer `inst` makes and its target offset (0 for
/// `fallthrough`), or `None` for an instruction without one.
fn static_transfer(inst: &Instruction) -> Option<(u32, u32)> {
    Some(match inst.args() {
        // `load_imm_jump` jumps: it is no branch.
        Args::RegImmOffset(a) if matches!(inst, Instruction::LoadImmJump(_)) => {
            (target_kind::JUMP, a.target)
        }
        Args::OneOffset(a) => (target_kind::JUMP, a.target),
        Args::RegImmOffset(a) => (target_kind::BRANCH, a.target),
        Args::TwoRegOffset(a) => (target_kind::BRANCH, a.target),
        _ if matches!(inst, Instruction::Fallthrough(_)) => (target_kind::FALLTHROUGH, 0),
        _ => return None,
    })
}

/// Marks an unresolvable jump target.
pub const INVALID_TARGET: u32 = u32::MAX;

/// A validated, pre-decoded program for one profile, with its block costs.
///
/// Instructions are numbered by *index* in code order; `pc(index)` gives the
/// code offset. Jump targets and the jump table are resolved to indices (or
/// [`INVALID_TARGET`]) once, here.
#[derive(Clone, Debug)]
pub struct Program {
    profile: Profile,
    blob: Blob,
    /// The decoded instructions (see [`Insts`]).
    insts: Insts,
    /// Number of instruction indices (instructions, and 0.7's implicit
    /// traps).
    len: usize,
    /// The code offset of each index: the 0.7 walk builds the table (its
    /// implicit traps are not all marked starts); under 0.8 the indices are
    /// exactly the marked starts, and it is derived from the mask when
    /// asked for (see [`Program::pc`]).
    pcs: LazyTable,
    pub(crate) flags: Vec<u8>,
    /// Resolved static target of each jump/branch (index), else
    /// INVALID_TARGET: built on first use.
    targets: LazyTable,
    /// The jump table resolved to instruction indices.
    pub(crate) jump_table: Vec<u32>,
    /// First instruction index of each gas block (plus a sentinel at the end).
    pub(crate) block_starts: Vec<u32>,
    /// Cost of each gas block under the current gas model.
    pub(crate) block_costs: Vec<u64>,
    /// One bit per code offset (and one for the end of the code): set where
    /// an instruction or implicit trap is, the set `pcs` holds.
    pc_bits: Vec<u64>,
    /// Set bits of `pc_bits` before each word: with it, `index_of` is a
    /// look-up and a population count instead of a search.
    pc_rank: Vec<u32>,
    /// One bit per instruction index, set where a gas block starts, and its
    /// rank: `block_of` in constant time.
    block_bits: Vec<u64>,
    block_rank: Vec<u32>,
    /// The interpreter's pre-decoded form, built the first time the
    /// interpreter runs the program (the recompiler does not need it).
    compiled: Lazy,
}

/// The code and bitmask buffers of the program dropped last, kept (emptied)
/// for the next blob parsed: fresh memory costs a page fault per 4 KiB page
/// on first touch (about a hundred for DOOM's code).
static SPARE_BLOB: spin::Mutex<Option<(Vec<u8>, Vec<u8>)>> = spin::Mutex::new(None);

/// Empty buffers for a blob of `len` code bytes: the kept ones if they are
/// not many times bigger than that, else new ones.
fn spare_blob(len: usize) -> (Vec<u8>, Vec<u8>) {
    let kept = SPARE_BLOB
        .try_lock()
        .and_then(|mut slot| match &*slot {
            Some((code, _)) if code.capacity() <= 4 * len + 4096 => slot.take(),
            _ => None,
        })
        .unwrap_or_default();
    let (mut code, mut mask) = kept;
    code.reserve(len);
    mask.reserve(len.div_ceil(8));
    (code, mask)
}

/// Keeps a dropped program's code and bitmask buffers (not too big ones,
/// and not smaller than those kept already).
fn keep_blob(mut code: Vec<u8>, mut mask: Vec<u8>) {
    if code.capacity() == 0 || code.capacity() > 64 << 20 {
        return;
    }
    code.clear();
    mask.clear();
    if let Some(mut slot) = SPARE_BLOB.try_lock() {
        if slot
            .as_ref()
            .is_none_or(|(kept, _)| kept.capacity() < code.capacity())
        {
            *slot = Some((code, mask));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        keep_blob(
            core::mem::take(&mut self.blob.code),
            core::mem::take(&mut self.blob.bitmask),
        );
        Spare {
            insts: self
                .insts
                .0
                .get_mut()
                .map(core::mem::take)
                .unwrap_or_default(),
            pcs: self.pcs.take(),
            targets: self.targets.take(),
            flags: core::mem::take(&mut self.flags),
            block_starts: core::mem::take(&mut self.block_starts),
            block_costs: core::mem::take(&mut self.block_costs),
            block_bits: core::mem::take(&mut self.block_bits),
            pc_bits: core::mem::take(&mut self.pc_bits),
            pc_rank: core::mem::take(&mut self.pc_rank),
            block_rank: core::mem::take(&mut self.block_rank),
        }
        .keep();
    }
}

/// The largest per-instruction tables of the program dropped last, kept
/// (emptied) for the next program to fill. Large tables are fresh memory
/// from the kernel otherwise, a page fault per 4 KiB page on first touch:
/// for a program of 160,000 instructions that was about 1,300 faults, a
/// third of its decoding time on the machines we measured. One set is
/// kept, of at most [`Spare::MAX_INSTRUCTIONS`] entries.
#[derive(Default)]
struct Spare {
    insts: Vec<Instruction>,
    pcs: Vec<u32>,
    targets: Vec<u32>,
    flags: Vec<u8>,
    block_starts: Vec<u32>,
    block_costs: Vec<u64>,
    block_bits: Vec<u64>,
    pc_bits: Vec<u64>,
    pc_rank: Vec<u32>,
    block_rank: Vec<u32>,
}

static SPARE: spin::Mutex<Option<Spare>> = spin::Mutex::new(None);
/// The tables of the pieces after the first of the last split decodings
/// ([`Program::with_gas_model_split`]), kept the same way (a few sets).
static SPARE_PIECES: spin::Mutex<Vec<Spare>> = spin::Mutex::new(Vec::new());

impl Spare {
    /// Tables for more instructions than this are not kept (24 MiB of
    /// decoded instructions).
    const MAX_INSTRUCTIONS: usize = 1 << 20;

    /// The kept tables if they suit a program of about `len` code bytes
    /// (not many times bigger than it needs: a small program that lives
    /// long should not hold a big program's tables), or new empty ones
    /// (also when another thread holds the lock: nobody waits for it).
    fn take(len: usize) -> Spare {
        let fits = |s: &Spare| s.size() <= 4 * len + 1024;
        SPARE
            .try_lock()
            .and_then(|mut slot| {
                if slot.as_ref().is_some_and(fits) {
                    slot.take()
                } else {
                    None
                }
            })
            .unwrap_or_default()
    }

    /// Keeps these tables, emptied, unless they are too big or the ones
    /// kept already are bigger.
    /// Kept tables of a split decoding's piece for about `len` code bytes.
    fn take_piece(len: usize) -> Spare {
        let fits = |s: &Spare| s.size() <= 4 * len + 1024;
        SPARE_PIECES
            .try_lock()
            .and_then(|mut pool| {
                let k = pool.iter().position(fits)?;
                Some(pool.swap_remove(k))
            })
            .unwrap_or_default()
    }

    /// Keeps a piece's emptied tables (a few sets, each bounded as
    /// [`keep`](Self::keep)'s).
    fn keep_piece(self) {
        let Some(this) = self.emptied() else { return };
        if let Some(mut pool) = SPARE_PIECES.try_lock() {
            if pool.len() < 8 {
                pool.push(this);
            }
        }
    }

    /// These tables emptied, if they are worth keeping: not empty, and not
    /// bigger than [`Spare::MAX_INSTRUCTIONS`].
    fn emptied(mut self) -> Option<Spare> {
        let size = self.size();
        if size == 0 || size > Self::MAX_INSTRUCTIONS {
            return None;
        }
        self.insts.clear();
        self.pcs.clear();
        self.targets.clear();
        self.flags.clear();
        self.block_starts.clear();
        self.block_costs.clear();
        self.block_bits.clear();
        self.pc_bits.clear();
        self.pc_rank.clear();
        self.block_rank.clear();
        Some(self)
    }

    /// The instructions these tables were made for: the larger of the
    /// decoded instructions and the offsets (a program that keeps no
    /// decoded instructions still reserved its offsets).
    fn size(&self) -> usize {
        self.insts.capacity().max(self.pcs.capacity())
    }

    fn keep(self) {
        let Some(this) = self.emptied() else { return };
        let size = this.size();
        if let Some(mut slot) = SPARE.try_lock() {
            if slot.as_ref().is_none_or(|kept| kept.size() < size) {
                *slot = Some(this);
            }
        }
    }
}

/// The interpreter's form of a program, built once on first use.
#[derive(Default)]
struct Lazy(spin::Once<Compiled>);

impl Clone for Lazy {
    fn clone(&self) -> Self {
        let once = spin::Once::new();
        if let Some(c) = self.0.get() {
            once.call_once(|| c.clone());
        }
        Lazy(once)
    }
}

impl core::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.0.is_completed() {
            "Lazy(built)"
        } else {
            "Lazy(not built)"
        })
    }
}

/// A program's decoded instructions: stored by the decoding walk, or, when
/// the walk was told they are not needed (a recompiler that generates code
/// as it decodes, with a gas model that does not read them), decoded again
/// from the blob the first time they are asked for.
#[derive(Default)]
struct Insts(spin::Once<Vec<Instruction>>);

impl Clone for Insts {
    fn clone(&self) -> Self {
        match self.0.get() {
            Some(v) => Insts(spin::Once::initialized(v.clone())),
            None => Insts::default(),
        }
    }
}

impl core::fmt::Debug for Insts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.get() {
            Some(v) => write!(f, "Insts({} decoded)", v.len()),
            None => f.write_str("Insts(not decoded)"),
        }
    }
}

/// A table of the program built the first time it is asked for, into an
/// empty one kept from an earlier program: the static targets (the
/// recompiler resolves its jumps itself, from each instruction as it
/// generates its code, and never needs them) and, under GP 0.8, the code
/// offset of each index (see [`Program::pc`]).
#[derive(Default)]
struct LazyTable {
    /// An empty table (of an earlier program) to build it into.
    spare: spin::Mutex<Vec<u32>>,
    table: spin::Once<Vec<u32>>,
}

impl LazyTable {
    /// A table built already.
    fn built(table: Vec<u32>) -> LazyTable {
        LazyTable {
            spare: spin::Mutex::new(Vec::new()),
            table: spin::Once::initialized(table),
        }
    }

    /// A table to build later, into `spare`.
    fn later(spare: Vec<u32>) -> LazyTable {
        LazyTable {
            spare: spin::Mutex::new(spare),
            table: spin::Once::new(),
        }
    }

    /// The table, built now by `build` (given the spare, emptied) if it is
    /// not yet.
    fn get_or_build(&self, build: impl FnOnce(&mut Vec<u32>)) -> &[u32] {
        self.table.call_once(|| {
            let mut t = core::mem::take(&mut *self.spare.lock());
            t.clear();
            build(&mut t);
            t
        })
    }

    /// The table if it is built.
    fn get(&self) -> Option<&[u32]> {
        self.table.get().map(Vec::as_slice)
    }

    /// Its memory (the table, or the spare), to keep for another program.
    fn take(&mut self) -> Vec<u32> {
        match self.table.get_mut() {
            Some(t) => core::mem::take(t),
            None => core::mem::take(self.spare.get_mut()),
        }
    }
}

impl Clone for LazyTable {
    fn clone(&self) -> Self {
        match self.get() {
            Some(t) => LazyTable::built(t.to_vec()),
            None => LazyTable::default(),
        }
    }
}

impl core::fmt::Debug for LazyTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.get() {
            Some(t) => write!(f, "LazyTable({} entries)", t.len()),
            None => f.write_str("LazyTable(not built)"),
        }
    }
}

/// A piece of work [`Program::with_gas_model_split`] hands out.
pub type Job<'a> = &'a mut (dyn FnMut() + Send);

/// The decoding walk's output, built in one pass over the code.
struct Walk {
    insts: Vec<Instruction>,
    pcs: Vec<u32>,
    flags: Vec<u8>,
    block_starts: Vec<u32>,
    pc_bits: Vec<u64>,
    pc_rank: Vec<u32>,
    block_bits: Vec<u64>,
    block_rank: Vec<u32>,
    /// Whether the entry pushed last was a real terminator (index 0 counts
    /// as following one), so the next valid instruction is in ϖ.
    after_terminator: bool,
    /// Whether the entry pushed last ended a gas block.
    ends_block: bool,
    /// The index of this walk's first instruction in the whole program (a
    /// piece of a split decoding starts after others): what the visitor is
    /// told.
    base: usize,
    /// Empty tables for the program's resolved targets and block costs.
    targets: Vec<u32>,
    block_costs: Vec<u64>,
    /// Whether `insts` is filled (see [`Insts`]).
    keep_insts: bool,
    /// GP 0.8: the instructions walked (their offsets are the marked
    /// starts, read from the mask once the walk is done).
    count: usize,
}

impl Walk {
    fn new(blob: &Blob, spare: Spare, keep_insts: bool) -> Walk {
        // Marked starts bound the instructions; 0.7's implicit traps may add
        // more (the vectors then grow).
        let starts = blob.marked_starts();
        Walk::with_capacity(starts + 2, spare, keep_insts)
    }

    /// A walk for about `cap` instructions, filling the tables of `spare`;
    /// it stores the decoded instructions if `keep_insts`.
    fn with_capacity(cap: usize, spare: Spare, keep_insts: bool) -> Walk {
        let Spare {
            mut insts,
            mut pcs,
            targets,
            mut flags,
            mut block_starts,
            block_costs,
            mut block_bits,
            pc_bits,
            pc_rank,
            block_rank,
        } = spare;
        if keep_insts {
            insts.reserve(cap);
        }
        pcs.reserve(cap);
        flags.reserve(cap);
        // Blocks and static jumps: about a quarter of the instructions in
        // compiled code; room for half, so that they rarely grow.
        block_starts.reserve(cap / 2 + 2);
        block_bits.resize(cap.div_ceil(64), 0);
        Walk {
            insts,
            pcs,
            flags,
            block_starts,
            pc_bits,
            pc_rank,
            block_bits,
            block_rank,
            after_terminator: true,
            ends_block: true,
            base: 0,
            targets,
            block_costs,
            keep_insts,
            count: 0,
        }
    }

    /// The 0.8 walk's [`push`](Self::push), in each opcode's arm of the
    /// decoder: the instruction (with `KEEP`), and after a terminator the
    /// start of a block (the index that follows, counted from this walk's
    /// first; the walk's loop counts the instruction); offsets, flags and
    /// block bits follow in `finish_v0_8` (0.8 has no implicit traps, and
    /// the walk visits exactly the marked starts).
    #[inline(always)]
    fn push_v0_8<const KEEP: bool>(&mut self, idx: usize, inst: Instruction) {
        let info = OPCODE_INFO[inst.opcode() as usize];
        let terminator = info & info::TERMINATOR != 0;
        if terminator {
            self.block_starts.push((idx + 1 - self.base) as u32);
        }
        self.ends_block = terminator;
        if KEEP {
            self.insts.push(inst);
        }
    }

    /// GP 0.8, after the walk: the offsets (the marked starts, which the
    /// walk visited, and nothing else: no table of them is built here, see
    /// [`Program::pc`]), then the block starts closed and their bits (a block
    /// starts at index 0 and after each terminator but the last
    /// instruction).
    fn finish_v0_8(&mut self, blob: &Blob) {
        blob.start_words_into(&mut self.pc_bits);
        self.pcs.clear();
        let n = self.count;
        // No flags under 0.8: ϖ is the block starts, and nothing is an
        // implicit trap (see `Program::in_varpi`).
        self.flags.clear();
        if n == 0 {
            self.block_starts.clear();
        }
        if self.block_starts.last() == Some(&(n as u32)) {
            // After the last instruction: no block.
            self.block_starts.pop();
        }
        debug_assert!(n == 0 || self.block_starts.first() == Some(&0));
        self.block_bits.clear();
        self.block_bits.resize((n + 2).div_ceil(64), 0);
        for &b in &self.block_starts {
            self.block_bits[b as usize / 64] |= 1 << (b % 64);
        }
    }

    /// Appends the instruction (or, with `implicit`, the implicit trap) at `pc`.
    #[inline(always)]
    fn push(&mut self, pc: usize, inst: Instruction, implicit: bool) {
        let idx = self.pcs.len() as u32;
        let info = if implicit {
            IMPLICIT_TRAP_INFO
        } else {
            OPCODE_INFO[inst.opcode() as usize]
        };
        let terminator = info & info::TERMINATOR != 0;
        let mut f = if terminator { flags::ENDS_BLOCK } else { 0 };
        if implicit {
            f = flags::IMPLICIT_TRAP | flags::ENDS_BLOCK;
        } else if self.after_terminator {
            f |= flags::BLOCK_START;
        }
        if self.ends_block {
            self.block_starts.push(idx);
            let word = idx as usize / 64;
            if word >= self.block_bits.len() {
                self.block_bits.resize(word + 1, 0);
            }
            self.block_bits[word] |= 1 << (idx % 64);
        }
        self.after_terminator = !implicit && terminator;
        self.ends_block = f & flags::ENDS_BLOCK != 0;
        if self.keep_insts {
            self.insts.push(inst);
        }
        self.pcs.push(pc as u32);
        self.flags.push(f);
        self.count += 1;
    }

    /// GP 0.8.0 `v_blob` and decoding in one walk: the walk from 0 must
    /// visit only valid instructions and land exactly on the end of the
    /// code right after a terminator. As `skip` stops at the next marked
    /// start, the walk visits every marked start.
    fn walk_v0_8<V: WalkVisitor>(&mut self, blob: &Blob, v: &mut V) -> Result<(), Error> {
        Walk::check_v0_8_start(blob)?;
        self.walk_v0_8_range(blob, 0, blob.code.len(), v)?;
        // Every marked start was visited, and nothing else.
        self.finish_v0_8(blob);
        Ok(())
    }

    /// What 0.8 asks of the code before the walk: some code, and an
    /// instruction at offset 0.
    fn check_v0_8_start(blob: &Blob) -> Result<(), Error> {
        if blob.code.is_empty() {
            return Err(Error::EmptyCode);
        }
        if !blob.is_start(0) {
            return Err(Error::NotInstructionStart { pc: 0 });
        }
        Ok(())
    }

    /// The 0.8 walk from instruction start `start` up to `end` (a marked
    /// start, or the end of the code), where it must land exactly.
    fn walk_v0_8_range<V: WalkVisitor>(
        &mut self,
        blob: &Blob,
        start: usize,
        end: usize,
        v: &mut V,
    ) -> Result<(), Error> {
        // A walk for each: the check is not repeated in every arm.
        if self.keep_insts {
            self.walk_v0_8_range_keeping::<V, true>(blob, start, end, v)
        } else {
            self.walk_v0_8_range_keeping::<V, false>(blob, start, end, v)
        }
    }

    /// [`walk_v0_8_range`](Self::walk_v0_8_range), storing the decoded
    /// instructions if `KEEP`.
    fn walk_v0_8_range_keeping<V: WalkVisitor, const KEEP: bool>(
        &mut self,
        blob: &Blob,
        start: usize,
        end: usize,
        v: &mut V,
    ) -> Result<(), Error> {
        let n = blob.code.len();
        if start == 0 {
            // Index 0 starts a block; the rest follow terminators.
            self.block_starts.push(0);
        }
        let mut i = start;
        while i < end {
            let gap = blob.gap(i);
            let skip = gap.min(24);
            let byte = blob.code.get(i).copied().unwrap_or(0);
            let op = Opcode::from_byte(Profile::V0_8, byte)
                .ok_or(Error::UnknownOpcode { pc: i as u32, byte })?;
            let next = i + 1 + skip as usize;
            if gap > 24 {
                // `skip` stopped short of the next marked start.
                return Err(Error::NotInstructionStart { pc: next as u32 });
            }
            // `next` is a marked start or the end of the code.
            if next == n && !op.is_terminator() {
                return Err(Error::MissingTerminator { pc: i as u32 });
            }
            let (idx, starts_block) = (self.base + self.count, self.ends_block);
            v.before(idx, starts_block);
            let mut step = Step::<V, KEEP> {
                idx,
                starts_block,
                walk: self,
                v,
                pc: i,
            };
            codec::decode_visit(op, &blob.code, i as u32, skip, &mut step);
            self.count += 1;
            i = next;
        }
        Ok(())
    }

    /// Appends the walk of the code that follows this one's (which ended
    /// right after a terminator, the state `next` started from).
    fn append(&mut self, mut next: Walk) -> Spare {
        let off = self.count as u32;
        self.count += next.count;
        self.insts.append(&mut next.insts);
        self.block_starts
            .extend(next.block_starts.iter().map(|&b| b + off));
        self.ends_block = next.ends_block;
        // The emptied tables, to keep for the next split decoding.
        Spare {
            insts: next.insts,
            pcs: next.pcs,
            targets: next.targets,
            flags: next.flags,
            block_starts: next.block_starts,
            block_costs: next.block_costs,
            block_bits: next.block_bits,
            pc_bits: next.pc_bits,
            pc_rank: next.pc_rank,
            block_rank: next.block_rank,
        }
    }

    /// GP 0.7 decoding: every marked start in order; an unknown opcode, a
    /// walk that leaves the marked starts (a gap, or the end of the code),
    /// and an unmarked offset 0 are implicit traps.
    fn walk_v0_7(&mut self, blob: &Blob) {
        let n = blob.code.len();
        self.pc_bits.clear();
        self.pc_bits.resize((n + 1).div_ceil(64), 0);
        if n > 0 && !blob.is_start(0) {
            // Code offset 0 is not an instruction start: 0.7 runs it as trap.
            self.push_marked(0, Instruction::Trap(NoArgs), true);
        }
        let mut i = 0usize;
        while i < n {
            if !blob.is_start(i) {
                i += 1;
                continue;
            }
            let skip = blob.skip(i);
            match codec::decode(Profile::V0_7, &blob.code, i as u32, skip) {
                Ok(inst) => self.push_marked(i, inst, false),
                Err(_) => self.push_marked(i, Instruction::Trap(NoArgs), true),
            }
            let next = i + 1 + skip as usize;
            if next >= n || !blob.is_start(next) {
                // The walk leaves the instruction starts here: implicit trap.
                self.push_marked(next, Instruction::Trap(NoArgs), true);
            }
            i = next.max(i + 1);
        }
    }

    /// [`push`](Self::push), marking `pc` in `pc_bits` (0.7: implicit
    /// traps sit at offsets that are not marked starts).
    fn push_marked(&mut self, pc: usize, inst: Instruction, implicit: bool) {
        self.push(pc, inst, implicit);
        self.pc_bits[pc / 64] |= 1 << (pc % 64);
    }

    /// Closes the block list and builds the rank of `pc_bits`.
    fn finish(&mut self, n: usize) {
        debug_assert!(self.pcs.last().is_none_or(|&pc| pc as usize <= n));
        self.block_starts.push(self.count as u32);
        rank(&self.pc_bits, &mut self.pc_rank);
        rank(&self.block_bits, &mut self.block_rank);
    }
}

/// Receives each instruction as a decoding walk meets it, in code order
/// (see [`Program::with_gas_model_visiting`]).
pub trait WalkVisitor {
    /// Instruction `idx` comes next (`starts_block`: a gas block starts
    /// there), before it is decoded: what a visitor does for every
    /// instruction alike belongs here, once, rather than in
    /// [`instruction`](Self::instruction), which is inlined into each
    /// opcode's arm of the decoder.
    #[inline(always)]
    fn before(&mut self, idx: usize, starts_block: bool) {
        let _ = (idx, starts_block);
    }

    /// Instruction index `idx`, at code offset `pc`; `starts_block`: a gas
    /// block starts here; `implicit`: a GP 0.7 implicit trap (`inst` is then
    /// `trap`).
    fn instruction(
        &mut self,
        idx: usize,
        pc: u32,
        starts_block: bool,
        implicit: bool,
        inst: Instruction,
    );
}

/// The walk without a visitor.
struct NoVisit;

impl WalkVisitor for NoVisit {
    #[inline(always)]
    fn instruction(&mut self, _: usize, _: u32, _: bool, _: bool, _: Instruction) {}
}

/// One instruction of the 0.8 walk: recorded, then handed to the visitor
/// (inlined into each arm of [`codec::decode_visit`]).
struct Step<'a, V, const KEEP: bool> {
    walk: &'a mut Walk,
    v: &'a mut V,
    pc: usize,
    idx: usize,
    starts_block: bool,
}

impl<V: WalkVisitor, const KEEP: bool> codec::Visit for Step<'_, V, KEEP> {
    type Out = ();
    #[inline(always)]
    fn visit(&mut self, inst: Instruction) {
        self.walk.push_v0_8::<KEEP>(self.idx, inst);
        self.v
            .instruction(self.idx, self.pc as u32, self.starts_block, false, inst);
    }
}

/// The set bits before each word of `bits`, into `rank` (emptied first).
fn rank(bits: &[u64], rank: &mut Vec<u32>) {
    rank.clear();
    rank.reserve(bits.len());
    let mut seen = 0u32;
    for w in bits {
        rank.push(seen);
        seen += w.count_ones();
    }
}

/// What the walk needs to know of an opcode, looked up once per instruction.
mod info {
    /// In the GP's set T of block terminators.
    pub const TERMINATOR: u8 = 1;
}

/// An implicit trap: a terminator with no target.
const IMPLICIT_TRAP_INFO: u8 = info::TERMINATOR;

/// [`info`] bits of each opcode, indexed by `Opcode as usize`.
static OPCODE_INFO: [u8; Opcode::ALL.len()] = {
    let mut table = [0u8; Opcode::ALL.len()];
    let mut k = 0;
    while k < Opcode::ALL.len() {
        let op = Opcode::ALL[k];
        let mut bits = 0;
        if op.is_terminator() {
            bits |= info::TERMINATOR;
        }
        table[op as usize] = bits;
        k += 1;
    }
    table
};

impl Program {
    /// Parses, validates and pre-decodes a program blob under `profile`, with
    /// that profile's gas model: the GP 0.8.0 pipeline model under 0.8, one
    /// gas per instruction (charged per block) under 0.7. See
    /// [`Program::set_gas_model`] to choose another.
    pub fn from_bytes(bytes: &[u8], profile: Profile) -> Result<Program, Error> {
        Program::new(Blob::parse(bytes)?, profile)
    }

    /// As [`from_bytes`](Program::from_bytes), with block costs from `model`
    /// (computed once, instead of the profile's default then `model`'s).
    pub fn from_bytes_with_gas_model(
        bytes: &[u8],
        profile: Profile,
        model: &dyn GasModel,
    ) -> Result<Program, Error> {
        Program::with_gas_model(Blob::parse(bytes)?, profile, model)
    }

    /// Validates and pre-decodes `blob` under `profile`, with the profile's
    /// default gas model: GP 0.8.0's pipeline model under 0.8, one per
    /// instruction (charged per block) under 0.7.
    pub fn new(blob: Blob, profile: Profile) -> Result<Program, Error> {
        let model: &dyn GasModel = match profile {
            Profile::V0_8 => &crate::gas::Pipeline,
            Profile::V0_7 => &crate::gas::Naive,
        };
        Program::with_gas_model(blob, profile, model)
    }

    /// Validates and pre-decodes `blob` under `profile`, with block costs
    /// from `model`.
    pub fn with_gas_model(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
    ) -> Result<Program, Error> {
        Program::build(blob, profile, model, &mut NoVisit, true)
    }

    /// As [`with_gas_model`](Program::with_gas_model), handing every
    /// instruction to `v` in code order as it is decoded (under 0.8, in the
    /// same pass and the same match on its opcode; under 0.7, after the
    /// walk). On an error `v` may have seen part of the program. Under 0.8
    /// with a model that does not read them
    /// ([`GasModel::needs_instructions`]), the decoded instructions are not
    /// stored: [`Program::instructions`] decodes them again if asked.
    pub fn with_gas_model_visiting<V: WalkVisitor>(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
        v: &mut V,
    ) -> Result<Program, Error> {
        let keep = model.needs_instructions() || profile == Profile::V0_7;
        Program::build(blob, profile, model, v, keep)
    }

    /// The decoding walk with visitor `v`, keeping the decoded
    /// instructions if `keep`.
    fn build<V: WalkVisitor>(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
        v: &mut V,
        keep: bool,
    ) -> Result<Program, Error> {
        let n = blob.code.len();
        if blob.bitmask.len() != n.div_ceil(8) {
            return Err(Error::OutOfRange {
                what: "opcode bitmask length (must be ceil(code length / 8))",
                offset: 0,
                value: blob.bitmask.len() as u64,
            });
        }
        if n as u64 > MAX_CODE_LEN || blob.jump_table.len() as u64 > MAX_CODE_LEN {
            return Err(Error::OutOfRange {
                what: "code or jump table length",
                offset: 0,
                value: n as u64,
            });
        }
        // At most one instruction per code byte.
        let mut w = Walk::new(&blob, Spare::take(n), keep);
        match profile {
            Profile::V0_8 => w.walk_v0_8(&blob, v)?,
            Profile::V0_7 => {
                w.walk_v0_7(&blob);
                for (idx, (&inst, (&pc, &f))) in
                    w.insts.iter().zip(w.pcs.iter().zip(&w.flags)).enumerate()
                {
                    let starts_block = w.block_bits[idx / 64] >> (idx % 64) & 1 != 0;
                    let implicit = f & flags::IMPLICIT_TRAP != 0;
                    v.before(idx, starts_block);
                    v.instruction(idx, pc, starts_block, implicit, inst);
                }
            }
        }
        Program::from_walk(blob, profile, model, w)
    }

    /// As [`with_gas_model`](Program::with_gas_model), decoding a GP 0.8
    /// program in up to `parts` pieces that `run` runs (each once, at the
    /// same time if it can: a `std` caller uses threads). The pieces meet at
    /// instructions that follow a terminator, so each is decoded as the one
    /// walk would; the result is the same program, and the same error (the
    /// earliest piece's, if several have one). Under 0.7, or for a program
    /// too small or with no such instruction where a cut is wanted, there is
    /// one walk and `run` is not called.
    pub fn with_gas_model_split(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
        parts: usize,
        run: &mut dyn FnMut(&mut [Job<'_>]),
    ) -> Result<Program, Error> {
        Program::with_gas_model_split_visiting(
            blob,
            profile,
            model,
            parts,
            &mut |_, _| NoVisit,
            run,
        )
        .map(|(p, _)| p)
    }

    /// As [`with_gas_model_split`](Program::with_gas_model_split), handing
    /// the instructions of each piece to a visitor of its own (as
    /// [`with_gas_model_visiting`](Program::with_gas_model_visiting) does
    /// for the whole program), made by `make(first, count)` for the piece
    /// whose instructions are `first..first + count`. The visitors come
    /// back in code order with the program (one if there are no pieces).
    /// The instructions are stored as
    /// [`with_gas_model_visiting`](Program::with_gas_model_visiting) says.
    #[allow(clippy::type_complexity)]
    pub fn with_gas_model_split_visiting<V: WalkVisitor + Send>(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
        parts: usize,
        make: &mut dyn FnMut(usize, usize) -> V,
        run: &mut dyn FnMut(&mut [Job<'_>]),
    ) -> Result<(Program, Vec<V>), Error> {
        let keep = model.needs_instructions() || profile == Profile::V0_7;
        Program::split(blob, profile, model, parts, make, run, keep)
    }

    /// The split decoding, keeping the decoded instructions if `keep`.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn split<V: WalkVisitor + Send>(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
        parts: usize,
        make: &mut dyn FnMut(usize, usize) -> V,
        run: &mut dyn FnMut(&mut [Job<'_>]),
        keep: bool,
    ) -> Result<(Program, Vec<V>), Error> {
        let n = blob.code.len();
        let mut cuts = Vec::new();
        if profile == Profile::V0_8 && blob.bitmask.len() == n.div_ceil(8) {
            for k in 1..parts {
                if let Some(c) = blob.split_point(n * k / parts) {
                    if cuts.last().is_none_or(|&last| c > last) {
                        cuts.push(c);
                    }
                }
            }
        }
        if cuts.is_empty() {
            let mut v = make(0, blob.marked_starts());
            let p = Program::build(blob, profile, model, &mut v, keep)?;
            return Ok((p, alloc::vec![v]));
        }
        if n as u64 > MAX_CODE_LEN || blob.jump_table.len() as u64 > MAX_CODE_LEN {
            return Err(Error::OutOfRange {
                what: "code or jump table length",
                offset: 0,
                value: n as u64,
            });
        }
        Walk::check_v0_8_start(&blob)?;
        let mut spare = Spare::take(n);
        let starts = blob.marked_starts();
        let mut bounds = Vec::with_capacity(cuts.len() + 2);
        bounds.push(0);
        bounds.extend(&cuts);
        bounds.push(n);
        // Under 0.8 the walk visits every marked start: a piece's first
        // index is the count of marked starts before it.
        let firsts: Vec<usize> = bounds.iter().map(|&b| blob.marked_before(b)).collect();
        let mut pieces: Vec<(Walk, V, Result<(), Error>, usize, usize)> = Vec::new();
        for (k, w) in bounds.windows(2).enumerate() {
            let mut walk = if k == 0 {
                Walk::with_capacity(starts + 2, core::mem::take(&mut spare), keep)
            } else {
                // About its share of the instructions (vectors grow if not).
                let cap = (w[1] - w[0]) * (starts + 2) / n.max(1) + 64;
                Walk::with_capacity(cap, Spare::take_piece(w[1] - w[0]), keep)
            };
            walk.base = firsts[k];
            let v = make(firsts[k], firsts[k + 1] - firsts[k]);
            // Until its job runs: a `run` that skips a piece is an error, not
            // a program with a piece missing.
            let not_run = Err(Error::Unsupported(
                "a piece of the split decoding was not run",
            ));
            pieces.push((walk, v, not_run, w[0], w[1]));
        }
        {
            let b = &blob;
            let mut jobs: Vec<_> = pieces
                .iter_mut()
                .map(|(walk, v, result, from, to)| {
                    let (from, to) = (*from, *to);
                    move || *result = walk.walk_v0_8_range(b, from, to, v)
                })
                .collect();
            let mut refs: Vec<&mut (dyn FnMut() + Send)> = Vec::new();
            for job in jobs.iter_mut() {
                refs.push(job);
            }
            run(&mut refs);
        }
        let mut visitors = Vec::with_capacity(pieces.len());
        let mut pieces = pieces.into_iter();
        let Some((mut first, v, r, _, _)) = pieces.next() else {
            return Err(Error::Unsupported("split decoding: no pieces"));
        };
        r?;
        visitors.push(v);
        for (walk, v, r, _, _) in pieces {
            r?;
            first.append(walk).keep_piece();
            visitors.push(v);
        }
        first.finish_v0_8(&blob);
        let p = Program::from_walk(blob, Profile::V0_8, model, first)?;
        Ok((p, visitors))
    }

    /// The program of a finished walk: targets resolved, block costs.
    fn from_walk(
        blob: Blob,
        profile: Profile,
        model: &dyn GasModel,
        mut w: Walk,
    ) -> Result<Program, Error> {
        let n = blob.code.len();
        w.finish(n);

        let mut program = Program {
            profile,
            blob,
            insts: if w.keep_insts {
                Insts(spin::Once::initialized(w.insts))
            } else {
                Insts::default()
            },
            len: w.count,
            pcs: if profile == Profile::V0_7 {
                LazyTable::built(w.pcs)
            } else {
                LazyTable::later(w.pcs)
            },
            flags: w.flags,
            targets: LazyTable::later(core::mem::take(&mut w.targets)),
            jump_table: Vec::new(),
            block_starts: w.block_starts,
            block_costs: Vec::new(),
            pc_bits: w.pc_bits,
            pc_rank: w.pc_rank,
            block_bits: w.block_bits,
            block_rank: w.block_rank,
            compiled: Lazy::default(),
        };
        program.jump_table = program
            .blob
            .jump_table
            .iter()
            .map(|&pc| program.jump_target_index(pc))
            .collect();
        let mut costs = core::mem::take(&mut w.block_costs);
        model.block_costs(&program, &mut costs)?;
        program.block_costs = costs;
        Ok(program)
    }

    /// The resolved static target of instruction `idx`. Under GP 0.8 a
    /// branch whose fall-through is not in ϖ always panics, so its target
    /// resolves to INVALID_TARGET too; `fallthrough` is a static jump to the
    /// next instruction.
    #[inline]
    fn resolve_static_target(&self, idx: usize, kind: u32, target: u32) -> u32 {
        let strict = self.profile == Profile::V0_8;
        let next_ok = idx + 1 < self.len && self.in_varpi(idx + 1);
        match kind {
            target_kind::FALLTHROUGH => {
                if next_ok || !strict {
                    idx as u32 + 1
                } else {
                    INVALID_TARGET
                }
            }
            target_kind::BRANCH if strict && !next_ok => INVALID_TARGET,
            _ => self.jump_target_index(target),
        }
    }

    /// The index of the instruction at `pc` if `pc` ∈ ϖ (a valid jump target).
    #[inline]
    pub(crate) fn jump_target_index(&self, pc: u32) -> u32 {
        match self.index_of(pc) {
            Some(idx) if self.in_varpi(idx) => idx as u32,
            _ => INVALID_TARGET,
        }
    }

    /// The index of the instruction (or implicit trap) at code offset `pc`.
    #[inline]
    pub fn index_of(&self, pc: u32) -> Option<usize> {
        let pc = pc as usize;
        let word = *self.pc_bits.get(pc / 64)?;
        let bit = 1u64 << (pc % 64);
        (word & bit != 0)
            .then(|| self.pc_rank[pc / 64] as usize + (word & (bit - 1)).count_ones() as usize)
    }

    /// Recomputes every block's cost with `model`.
    pub fn set_gas_model(&mut self, model: &dyn GasModel) -> Result<(), Error> {
        let mut costs = Vec::new();
        model.block_costs(self, &mut costs)?;
        self.block_costs = costs;
        // The interpreter's form carries the costs: build it anew if used.
        self.compiled = Lazy::default();
        Ok(())
    }

    /// The profile this program was decoded for.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The underlying blob.
    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// The first instruction index of each gas block, then the number of
    /// instructions (so block `b` is `starts[b]..starts[b + 1]`).
    pub fn block_starts(&self) -> &[u32] {
        &self.block_starts
    }

    /// Number of gas blocks.
    pub fn block_count(&self) -> usize {
        self.block_starts.len() - 1
    }

    /// The instructions of gas block `block`: `(pc, instruction, implicit)`
    /// where `implicit` marks an implicit trap (0.7 only).
    pub fn block(&self, block: usize) -> impl Iterator<Item = (u32, Instruction, bool)> + '_ {
        let s = self.block_starts[block] as usize;
        let e = self.block_starts[block + 1] as usize;
        let pcs = self.pcs();
        (s..e).map(move |i| (pcs[i], self.insts()[i], self.is_implicit_trap(i)))
    }

    /// Number of entries of gas block `block` (the length of
    /// [`Program::block`]).
    pub fn block_len(&self, block: usize) -> usize {
        (self.block_starts[block + 1] - self.block_starts[block]) as usize
    }

    /// The code offset where gas block `block` starts.
    pub fn block_pc(&self, block: usize) -> u32 {
        self.pc(self.block_starts[block] as usize)
    }

    /// The cost of gas block `block` under the current model.
    pub fn block_cost(&self, block: usize) -> u64 {
        self.block_costs[block]
    }

    /// Number of real instructions (not counting implicit traps).
    pub fn instruction_count(&self) -> usize {
        self.len
            - self
                .flags
                .iter()
                .filter(|&&f| f & flags::IMPLICIT_TRAP != 0)
                .count()
    }

    /// Whether `pc` starts a valid instruction (the GP's `v_inst`).
    pub fn is_instruction(&self, pc: u32) -> bool {
        self.index_of(pc).is_some_and(|i| !self.is_implicit_trap(i))
    }

    /// The decoded instructions in code order, indexed by instruction index
    /// (an implicit trap, 0.7 only, appears as `trap`; see
    /// [`Program::is_implicit_trap`]). Every backend compiles from this.
    /// (Decoded again from the blob on first use if the decoding pass did
    /// not keep them: see [`Program::with_gas_model_visiting`].)
    pub fn instructions(&self) -> &[Instruction] {
        self.insts()
    }

    /// Instruction `idx` (as [`instructions`](Self::instructions)`()[idx]`,
    /// without decoding the others if they were not kept).
    pub fn instruction(&self, idx: usize) -> Instruction {
        match self.insts.0.get() {
            Some(v) => v[idx],
            None => self.decode_again(idx),
        }
    }

    /// The decoded instructions, decoding them now if they were not kept.
    pub(crate) fn insts(&self) -> &[Instruction] {
        self.insts
            .0
            .call_once(|| (0..self.len).map(|i| self.decode_again(i)).collect())
    }

    /// Instruction `idx` decoded from the blob (once already, by the walk
    /// that validated it).
    fn decode_again(&self, idx: usize) -> Instruction {
        if self.is_implicit_trap(idx) {
            return Instruction::Trap(NoArgs);
        }
        let pc = self.pc(idx);
        let skip = self.blob.skip(pc as usize);
        codec::decode(self.profile, &self.blob.code, pc, skip).unwrap_or(Instruction::Trap(NoArgs))
    }

    /// The code offset of each instruction index (under 0.8 derived from
    /// the mask the first time it is asked for; see [`Program::pc`] for one).
    pub fn pcs(&self) -> &[u32] {
        self.pcs.get_or_build(|pcs| {
            pcs.reserve(self.len);
            for (k, &word) in self.pc_bits.iter().enumerate() {
                let mut w = word;
                while w != 0 {
                    pcs.push((k * 64) as u32 + w.trailing_zeros());
                    w &= w - 1;
                }
            }
        })
    }

    /// The code offset of instruction index `idx` (`pcs()[idx]`, without
    /// building the table: the `idx`-th set bit of the mask, found through
    /// its rank). Panics if `idx` is out of range.
    pub fn pc(&self, idx: usize) -> u32 {
        if let Some(t) = self.pcs.get() {
            return t[idx];
        }
        assert!(idx < self.len, "instruction index out of range");
        // The last word with fewer set bits before it than `idx + 1`
        // holds the index's bit.
        let word = self.pc_rank.partition_point(|&r| r as usize <= idx) - 1;
        let mut w = self.pc_bits[word];
        for _ in 0..idx - self.pc_rank[word] as usize {
            w &= w - 1;
        }
        (word * 64) as u32 + w.trailing_zeros()
    }

    /// Number of instruction indices: instructions, and under 0.7 implicit
    /// traps (the length of [`pcs`](Self::pcs)).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the program has no instruction index (only an empty 0.7
    /// program).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether instruction `idx` is an implicit trap (0.7: an invalid opcode
    /// or the walk leaving the instructions) rather than a real instruction.
    #[inline]
    pub fn is_implicit_trap(&self, idx: usize) -> bool {
        // GP 0.8 programs have no flags: none is.
        self.flags
            .get(idx)
            .is_some_and(|f| f & flags::IMPLICIT_TRAP != 0)
    }

    /// Whether instruction `idx` is in ϖ (a valid jump target): under 0.8
    /// exactly the gas block starts (which is how it is read); under 0.7
    /// flagged by the walk (an instruction after an implicit trap starts a
    /// block but is no jump target).
    #[inline]
    fn in_varpi(&self, idx: usize) -> bool {
        if self.flags.is_empty() {
            self.block_bits[idx / 64] >> (idx % 64) & 1 != 0
        } else {
            self.flags[idx] & flags::BLOCK_START != 0
        }
    }

    /// The resolved static target of instruction `idx` (jumps, branches,
    /// `load_imm_jump`, and 0.8's `fallthrough`) as an instruction index, or
    /// [`INVALID_TARGET`]. Under 0.8 a branch whose target *or* fall-through
    /// is not in ϖ resolves to `INVALID_TARGET` (it always panics).
    pub fn static_target(&self, idx: usize) -> u32 {
        self.targets()[idx]
    }

    /// Every instruction's [`static_target`](Self::static_target).
    pub fn static_targets(&self) -> &[u32] {
        self.targets.get_or_build(|targets| {
            targets.extend(self.instructions().iter().enumerate().map(|(idx, inst)| {
                match static_transfer(inst) {
                    Some((kind, target)) => self.resolve_static_target(idx, kind, target),
                    None => INVALID_TARGET,
                }
            }));
        })
    }

    fn targets(&self) -> &[u32] {
        self.static_targets()
    }

    /// What the static jump, branch or `fallthrough` at `idx` does once the
    /// profile's rules for targets outside ϖ are applied: the one answer
    /// every backend lowers.
    pub fn transfer(&self, idx: usize) -> Transfer {
        let inst = self.insts()[idx];
        let Some((kind, _)) = static_transfer(&inst) else {
            return Transfer::None;
        };
        let branch = kind == target_kind::BRANCH;
        let t = self.targets()[idx];
        if t != INVALID_TARGET {
            return Transfer::To(t as usize);
        }
        match inst {
            // The register is written, then the jump panics.
            Instruction::LoadImmJump(_) => Transfer::PanicWhenTaken,
            // GP 0.7: a branch panics only if taken. GP 0.8 resolved a branch
            // whose target *or* fall-through is not in ϖ to invalid: it
            // panics either way.
            _ if branch && self.profile == Profile::V0_7 => Transfer::PanicWhenTaken,
            _ => Transfer::Panic,
        }
    }

    /// The jump table resolved to instruction indices ([`INVALID_TARGET`]
    /// where an entry is not in ϖ).
    pub fn jump_table_targets(&self) -> &[u32] {
        &self.jump_table
    }

    /// The gas block holding instruction `idx`.
    pub fn block_of(&self, idx: usize) -> usize {
        assert!(idx < self.len, "instruction index out of range");
        let (word, bit) = (idx / 64, idx % 64);
        // Block starts at or before `idx`; index 0 always starts one.
        let upto = self.block_bits[word] & (u64::MAX >> (63 - bit));
        (self.block_rank[word] + upto.count_ones()) as usize - 1
    }

    /// The gas block a static jump (`branch` false: `jump`,
    /// `load_imm_jump`) or branch at `idx`, to code offset `target`, enters
    /// when taken, or `None` if taking it panics: the block starting at
    /// [`static_target`](Self::static_target)`(idx)`, answered from the
    /// instruction itself (a code generator that has it needs no table of
    /// resolved targets).
    #[inline(always)]
    pub fn jump_block(&self, idx: usize, branch: bool, target: u32) -> Option<usize> {
        let t = if self.profile == Profile::V0_8 {
            // ϖ is the set of block starts, and a branch (a terminator) is
            // followed by one unless it is the last instruction: no flags
            // to read.
            if branch && idx + 1 >= self.len {
                return None;
            }
            self.index_of(target)?
        } else {
            let kind = if branch {
                target_kind::BRANCH
            } else {
                target_kind::JUMP
            };
            match self.resolve_static_target(idx, kind, target) {
                INVALID_TARGET => return None,
                t => t as usize,
            }
        };
        // Targets are in ϖ, which only holds block starts (under 0.8 this
        // is the test of ϖ).
        let (word, bit) = (t / 64, t % 64);
        let w = *self.block_bits.get(word)?;
        (w >> bit & 1 != 0)
            .then(|| (self.block_rank[word] + (w & !(u64::MAX << bit)).count_ones()) as usize)
    }

    /// Builds the interpreter's form of the program now. Without this, the
    /// first interpreter run builds it (once; the recompiler never needs
    /// it). For hosts that want the first run's latency predictable.
    pub fn prepare_interpreter(&self) {
        self.compiled();
    }

    /// The interpreter's form, built on first use.
    pub(crate) fn compiled(&self) -> &Compiled {
        self.compiled.0.call_once(|| crate::interp::compile(self))
    }

    /// The first instruction index of gas block `block`.
    pub fn block_start(&self, block: usize) -> usize {
        self.block_starts[block] as usize
    }

    /// Whether `pc` is in ϖ, the set of basic-block starts.
    pub fn is_block_start(&self, pc: u32) -> bool {
        self.jump_target_index(pc) != INVALID_TARGET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_model_at_construction_equals_setting_it_after() {
        // A block of three instructions and one of one: costs differ
        // between the pipeline model and the naive one.
        let bytes = crate::asm::assemble(
            "load_imm r7, 1\nadd_64 r8, r7, r7\njump next\nnext:\ntrap\n",
            Profile::V0_8,
        )
        .unwrap();
        let mut after = Program::from_bytes(&bytes, Profile::V0_8).unwrap();
        let default_costs: Vec<u64> = (0..after.block_count())
            .map(|b| after.block_cost(b))
            .collect();
        after.set_gas_model(&crate::gas::Naive).unwrap();
        let at =
            Program::from_bytes_with_gas_model(&bytes, Profile::V0_8, &crate::gas::Naive).unwrap();
        let costs = |p: &Program| {
            (0..p.block_count())
                .map(|b| p.block_cost(b))
                .collect::<Vec<_>>()
        };
        assert_eq!(costs(&at), costs(&after));
        assert_eq!(costs(&at), vec![3, 1]);
        assert_ne!(default_costs, costs(&at));
    }
    use alloc::vec;

    #[test]
    fn a_program_decoded_into_kept_tables_equals_one_decoded_before() {
        let small = crate::asm::assemble(
            "load_imm r7, 1\njump next\nnext:\nbranch_eq_imm r7, 1, next\ntrap\n",
            Profile::V0_8,
        )
        .unwrap();
        let mut text = alloc::string::String::new();
        for k in 0..300 {
            text.push_str(&alloc::format!(
                "l{k}:\nadd_imm_64 r8, r8, {k}\njump l{}\n",
                k + 1
            ));
        }
        text.push_str("l300:\ntrap\n");
        let big = crate::asm::assemble(&text, Profile::V0_8).unwrap();
        let before = Program::from_bytes(&small, Profile::V0_8).unwrap();
        // Dropping the bigger program keeps its tables for the next one
        // (601 entries: within what `Spare::take` gives a 12-byte program).
        drop(Program::from_bytes(&big, Profile::V0_8).unwrap());
        let after = Program::from_bytes(&small, Profile::V0_8).unwrap();
        assert_eq!(after.instructions(), before.instructions());
        assert_eq!(after.pcs(), before.pcs());
        assert_eq!(after.static_targets(), before.static_targets());
        assert_eq!(
            after.static_targets(),
            [INVALID_TARGET, 2, 2, INVALID_TARGET]
        );
    }

    #[test]
    fn changing_the_gas_model_after_a_run_reaches_the_interpreter() {
        use crate::interp::Vm;
        use crate::memory::PagedMemory;
        let bytes = crate::asm::assemble(
            "jump next\nnext:\nload_imm r7, 1\nadd_64 r8, r7, r7\nadd_64 r8, r8, r7\ntrap\n",
            Profile::V0_8,
        )
        .unwrap();
        // Block 1 is entered by a jump: the interpreter's form charges it.
        let mut p = Program::from_bytes(&bytes, Profile::V0_8).unwrap();
        let used = |p: &Program| {
            let mut vm = Vm::new(p, PagedMemory::new(), 0, 1000);
            vm.run().unwrap();
            1000 - vm.gas()
        };
        // The first run builds the interpreter's form with the pipeline costs.
        let pipeline = used(&p);
        assert_eq!(pipeline, p.block_cost(0) + p.block_cost(1));
        p.set_gas_model(&crate::gas::Naive).unwrap();
        assert_eq!((p.block_cost(0), p.block_cost(1)), (1, 4));
        assert_ne!(pipeline, 5);
        assert_eq!(used(&p), 5, "the interpreter kept the old costs");
        p.prepare_interpreter();
        assert_eq!(used(&p.clone()), 5);
    }

    fn blob(code: &[u8], starts: &[usize]) -> Vec<u8> {
        Blob::from_code(code, starts.iter().copied()).to_bytes()
    }

    #[test]
    fn parse_round_trips() {
        let bytes = blob(&[51, 7, 1, 0], &[0, 3]);
        let b = Blob::parse(&bytes).unwrap();
        assert_eq!(b.to_bytes(), bytes);
        assert_eq!(b.skip(0), 2);
    }

    #[test]
    fn truncated_and_trailing_are_errors() {
        let bytes = blob(&[51, 7, 1, 0], &[0, 3]);
        for cut in 0..bytes.len() {
            assert!(Blob::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Blob::parse(&long),
            Err(Error::TrailingBytes { .. })
        ));
    }

    #[test]
    fn v0_8_requires_final_terminator() {
        let bytes = blob(&[51, 7, 1], &[0]);
        assert_eq!(
            Program::from_bytes(&bytes, Profile::V0_8).err(),
            Some(Error::MissingTerminator { pc: 0 })
        );
        // 0.7 accepts it and runs into the implicit trap.
        let p = Program::from_bytes(&bytes, Profile::V0_7).unwrap();
        assert_eq!(p.pcs(), vec![0, 3]);
    }

    #[test]
    fn v0_8_rejects_unknown_opcodes_and_gaps() {
        let bytes = blob(&[101, 0, 0], &[0, 2]);
        assert!(Program::from_bytes(&bytes, Profile::V0_8).is_ok());
        let bytes = blob(&[111, 0, 0], &[0, 2]);
        assert_eq!(
            Program::from_bytes(&bytes, Profile::V0_8).err(),
            Some(Error::UnknownOpcode { pc: 0, byte: 111 })
        );
        let mut code = vec![51u8; 30];
        code.push(0);
        let bytes = blob(&code, &[0, 30]);
        assert_eq!(
            Program::from_bytes(&bytes, Profile::V0_8).err(),
            Some(Error::NotInstructionStart { pc: 25 })
        );
        assert!(Program::from_bytes(&blob(&[], &[]), Profile::V0_8).is_err());
    }

    #[test]
    fn v0_8_instruction_offsets_ignore_mask_padding() {
        // `load_imm r7, 1` k times, then `trap`: code lengths 1..=121, so
        // the end falls everywhere within a 64-bit word of the mask. The
        // padding bits of the last mask byte are all set; they are not
        // instruction starts.
        for k in 0..=40usize {
            let mut code: Vec<u8> = core::iter::repeat_n([51u8, 7, 1], k).flatten().collect();
            code.push(0);
            let n = code.len();
            let starts: Vec<usize> = (0..=k).map(|j| 3 * j).collect();
            let mut b = Blob::from_code(&code, starts.iter().copied());
            if n % 8 != 0 {
                *b.bitmask.last_mut().unwrap() |= 0xFFu8 << (n % 8);
            }
            let p = Program::new(b, Profile::V0_8).unwrap();
            let pcs: Vec<u32> = starts.iter().map(|&s| s as u32).collect();
            assert_eq!(p.pcs(), pcs, "k = {k}");
            for pc in 0..n as u32 + 70 {
                assert_eq!(
                    p.index_of(pc),
                    pcs.binary_search(&pc).ok(),
                    "k = {k}, pc = {pc}"
                );
            }
        }
        // Offset 0 not marked: 0.8 rejects it there.
        let bytes = blob(&[0, 0], &[1]);
        assert_eq!(
            Program::from_bytes(&bytes, Profile::V0_8).err(),
            Some(Error::NotInstructionStart { pc: 0 })
        );
    }

    /// A valid 0.8 program of `blocks` blocks (`load_imm`s, then `trap`,
    /// `fallthrough` or a `jump` back), and its instruction starts.
    fn big_program(blocks: usize, seed: u64) -> (Vec<u8>, Vec<usize>) {
        let mut x = seed;
        let mut rnd = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let (mut code, mut starts, mut heads) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..blocks {
            heads.push(code.len());
            for _ in 0..rnd(6) {
                starts.push(code.len());
                code.extend([51, 7, rnd(256) as u8]);
            }
            starts.push(code.len());
            match rnd(3) {
                0 => code.push(0),
                1 => code.push(1),
                _ => {
                    let back = heads[heads.len().saturating_sub(1 + rnd(3) as usize)];
                    let off = back as i64 - code.len() as i64;
                    match i8::try_from(off) {
                        Ok(o) => code.extend([40, o as u8]),
                        Err(_) => code.push(0),
                    }
                }
            }
        }
        (code, starts)
    }

    fn split_run(jobs: &mut [&mut (dyn FnMut() + Send)]) {
        // The last piece first: the pieces do not depend on each other.
        for job in jobs.iter_mut().rev() {
            job();
        }
    }

    #[test]
    fn split_decoding_with_a_piece_not_run_is_an_error() {
        let (code, starts) = big_program(400, 7);
        let blob = Blob::from_code(&code, starts.iter().copied());
        let skip_last = &mut |jobs: &mut [Job<'_>]| {
            let n = jobs.len();
            for job in jobs.iter_mut().take(n - 1) {
                job();
            }
        };
        let r =
            Program::with_gas_model_split(blob, Profile::V0_8, &crate::gas::Naive, 3, skip_last);
        assert!(matches!(r, Err(Error::Unsupported(_))), "{:?}", r.err());
    }

    /// Every instruction a visiting walk hands over.
    #[derive(Default)]
    struct Record {
        first: usize,
        seen: Vec<(usize, u32, bool, bool, Instruction)>,
    }

    impl WalkVisitor for Record {
        fn instruction(
            &mut self,
            idx: usize,
            pc: u32,
            starts: bool,
            implicit: bool,
            i: Instruction,
        ) {
            self.seen.push((idx, pc, starts, implicit, i));
        }
    }

    #[test]
    fn visiting_walks_hand_over_every_instruction_in_order() {
        for seed in 0..12u64 {
            let (code, starts) = big_program(300 + seed as usize * 7, seed);
            let blob = Blob::from_code(&code, starts.iter().copied());
            let naive = &crate::gas::Naive;
            let plain = Program::with_gas_model(blob.clone(), Profile::V0_8, naive).unwrap();
            let expect: Vec<_> = (0..plain.len())
                .map(|i| {
                    let b = plain.block_of(i);
                    let starts_block = plain.block_start(b) == i;
                    (
                        i,
                        plain.pcs()[i],
                        starts_block,
                        false,
                        plain.instructions()[i],
                    )
                })
                .collect();
            // One walk: the naive model needs no instructions, so they are
            // not kept, and are decoded again when asked for.
            let mut one = Record::default();
            let p = Program::with_gas_model_visiting(blob.clone(), Profile::V0_8, naive, &mut one)
                .unwrap();
            assert_eq!(one.seen, expect, "seed {seed}");
            assert!(p.insts.0.get().is_none(), "seed {seed}: instructions kept");
            for (i, e) in expect.iter().enumerate() {
                assert_eq!(p.instruction(i), e.4, "seed {seed}, instruction {i}");
            }
            assert!(p.insts.0.get().is_none(), "seed {seed}: decoded them all");
            assert_eq!(p.instructions(), plain.instructions(), "seed {seed}");
            // In pieces: each visitor sees its own range, with the indices
            // of the whole program.
            let parts = 2 + seed as usize % 3;
            let (q, pieces) = Program::with_gas_model_split_visiting(
                blob,
                Profile::V0_8,
                naive,
                parts,
                &mut |first, count| Record {
                    first,
                    seen: Vec::with_capacity(count),
                },
                &mut split_run,
            )
            .unwrap();
            assert_eq!(pieces.len(), parts, "seed {seed}");
            let mut all = Vec::new();
            for piece in pieces {
                assert_eq!(piece.seen.first().map(|e| e.0), Some(piece.first));
                all.extend(piece.seen);
            }
            assert_eq!(all, expect, "seed {seed}");
            assert_eq!(q.instructions(), plain.instructions(), "seed {seed}");
        }
    }

    #[test]
    fn split_decoding_gives_the_same_program_and_errors() {
        for seed in 0..40u64 {
            let (mut code, mut starts) = big_program(300 + seed as usize * 7, seed);
            // Some with a jump table into the code.
            let jt: Vec<u32> = starts.iter().step_by(97).map(|&s| s as u32).collect();
            // Corruptions, in either half: none, an unknown opcode, a start
            // unmarked (a gap), no final terminator.
            let k = (seed as usize * 7919) % starts.len();
            match seed % 4 {
                1 => code[starts[k]] = 111,
                2 if k > 0 => {
                    starts.remove(k);
                }
                3 => {
                    code.truncate(*starts.last().unwrap());
                    starts.pop();
                }
                _ => {}
            }
            let mut blob = Blob::from_code(&code, starts.iter().copied());
            blob.jump_table = jt
                .iter()
                .copied()
                .filter(|&t| (t as usize) < code.len())
                .collect();
            blob.jump_table_entry_size = 4;
            assert!(
                blob.split_point(code.len() / 2).is_some(),
                "seed {seed}: no split point"
            );
            let one = Program::with_gas_model(blob.clone(), Profile::V0_8, &crate::gas::Naive);
            let parts = 2 + seed as usize % 3;
            let two = Program::with_gas_model_split(
                blob,
                Profile::V0_8,
                &crate::gas::Naive,
                parts,
                &mut split_run,
            );
            match (one, two) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.instructions(), b.instructions(), "seed {seed}");
                    assert_eq!(a.pcs(), b.pcs(), "seed {seed}");
                    assert_eq!(a.flags, b.flags, "seed {seed}");
                    assert_eq!(a.static_targets(), b.static_targets(), "seed {seed}");
                    assert_eq!(a.jump_table, b.jump_table, "seed {seed}");
                    assert_eq!(a.block_starts, b.block_starts, "seed {seed}");
                    assert_eq!(a.block_costs, b.block_costs, "seed {seed}");
                    assert_eq!(a.pc_bits, b.pc_bits, "seed {seed}");
                    assert_eq!(a.pc_rank, b.pc_rank, "seed {seed}");
                    assert_eq!(a.block_bits, b.block_bits, "seed {seed}");
                    assert_eq!(a.block_rank, b.block_rank, "seed {seed}");
                }
                (a, b) => assert_eq!(a.err(), b.err(), "seed {seed}"),
            }
        }
    }

    #[test]
    fn regression_zero_width_jump_table_cannot_force_huge_allocations() {
        // Found by tests/tests/fuzz_decoders.rs: entry size 0 made the entry
        // count unbounded (capacity overflow, or a 4 TiB allocation abort).
        for bytes in [
            &[0xFF, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0][..],
            &[0xF9, 0, 0, 0, 0, 0, 0, 0],
            &[0xEF, 0xFF, 0xFF, 0xFF, 0, 0],
        ] {
            assert!(matches!(
                Blob::parse(bytes),
                Err(Error::OutOfRange {
                    what: "jump table length",
                    ..
                })
            ));
        }
    }

    #[test]
    fn regression_short_bitmask_is_an_error() {
        // Found by the fuzz test: Program::new on a hand-built Blob indexed
        // past its bitmask.
        let blob = Blob {
            jump_table: vec![],
            jump_table_entry_size: 0,
            code: vec![0],
            bitmask: vec![],
        };
        assert!(matches!(
            Program::new(blob, Profile::V0_7),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn basic_blocks() {
        // 0: load_imm r7, 1 ; 3: jump 0 ; 5: trap
        let bytes = blob(&[51, 7, 1, 40, 0xFD, 0], &[0, 3, 5]);
        let p = Program::from_bytes(&bytes, Profile::V0_8).unwrap();
        assert!(p.is_block_start(0));
        assert!(!p.is_block_start(3));
        assert!(p.is_block_start(5));
        assert_eq!(p.block_count(), 2);
        assert_eq!(p.static_targets()[1], 0);
    }

    /// The GP's `skip` exactly as written: the first `j` with
    /// `(k ‖ [1, 1, …])[i + 1 + j] = 1`, at most 24.
    fn skip_as_written(b: &Blob, i: usize) -> u32 {
        (0..24)
            .find(|&j| {
                let at = i + 1 + j;
                at >= b.code.len() || b.is_start(at)
            })
            .unwrap_or(24) as u32
    }

    proptest::proptest! {
        /// The word-at-a-time `skip` equals the GP's definition, for every
        /// offset (and past the end), whatever the padding bits hold.
        #[test]
        fn skip_matches_the_definition(
            len in 0usize..80,
            mask in proptest::collection::vec(proptest::num::u8::ANY, 10),
            density in 0u8..4,
        ) {
            let mut bitmask = mask[..len.div_ceil(8)].to_vec();
            // Sparse masks give long skips (up to the cap of 24).
            for (k, byte) in bitmask.iter_mut().enumerate() {
                if density > 0 && k % usize::from(density + 1) != 0 {
                    *byte = 0;
                }
            }
            let b = Blob { jump_table: vec![], jump_table_entry_size: 0, code: vec![0; len], bitmask };
            for i in 0..len + 3 {
                proptest::prop_assert_eq!(b.skip(i), skip_as_written(&b, i), "i = {}", i);
            }
        }

        /// `pc(idx)` answers from the mask before any table of offsets is
        /// built (GP 0.8 with a gas model that reads none), and it, the
        /// table `pcs` then derives, and `pc` again all give the marked
        /// starts, over programs spanning many mask words; under 0.7 too.
        #[test]
        fn pc_of_an_index_is_its_marked_start(
            lens in proptest::collection::vec(0usize..=24, 1..120),
        ) {
            let (mut code, mut starts) = (Vec::new(), Vec::new());
            for &len in &lens {
                // `load_imm` with `len` bytes of arguments (any `len` up to
                // the cap of 24 decodes).
                starts.push(code.len());
                code.push(51);
                code.extend(core::iter::repeat_n(0x17, len));
            }
            code.push(0);
            starts.push(code.len() - 1);
            let blob = Blob::from_code(&code, starts.iter().copied());
            for profile in [Profile::V0_8, Profile::V0_7] {
                let mut expect: Vec<u32> = starts.iter().map(|&s| s as u32).collect();
                if profile == Profile::V0_7 {
                    // The walk leaving the code after the last: an implicit
                    // trap at its end.
                    expect.push(code.len() as u32);
                }
                let p = Program::with_gas_model(blob.clone(), profile, &crate::gas::Naive).unwrap();
                proptest::prop_assert_eq!(p.len(), expect.len());
                proptest::prop_assert_eq!(
                    p.pcs.get().is_some(),
                    profile == Profile::V0_7,
                    "0.8 builds no table of offsets until asked"
                );
                let selected: Vec<u32> = (0..p.len()).map(|i| p.pc(i)).collect();
                proptest::prop_assert_eq!(&selected, &expect);
                proptest::prop_assert_eq!(p.pcs(), &expect[..]);
                let looked_up: Vec<u32> = (0..p.len()).map(|i| p.pc(i)).collect();
                proptest::prop_assert_eq!(&looked_up, &expect);
            }
        }

        /// `jump_block`, answered from a jump's own target offset, is the
        /// block of `static_target` (or `None` where that is invalid), for
        /// jumps, branches and `load_imm_jump`s aimed anywhere, under both
        /// profiles.
        #[test]
        fn jump_block_is_the_block_of_the_static_target(
            kinds in proptest::collection::vec((0u8..7, proptest::num::i8::ANY), 1..60),
        ) {
            let (mut code, mut starts) = (Vec::new(), Vec::new());
            for &(kind, off) in &kinds {
                starts.push(code.len());
                let o = off as u8;
                match kind {
                    0 => code.extend([51, 7, o]),
                    1 => code.push(0),
                    2 => code.push(1),
                    3 => code.extend([40, o]),
                    4 => code.extend([81, 0x17, 5, o]),
                    5 => code.extend([170, 0x87, o]),
                    _ => code.extend([80, 0x17, 5, o]),
                }
            }
            code.push(0);
            starts.push(code.len() - 1);
            let blob = Blob::from_code(&code, starts.iter().copied());
            for profile in [Profile::V0_7, Profile::V0_8] {
                let Ok(p) = Program::new(blob.clone(), profile) else { continue };
                let mut checked = 0;
                for i in 0..p.len() {
                    let (branch, target) = match p.instruction(i).args() {
                        _ if matches!(p.instruction(i), Instruction::LoadImmJump(_)) => {
                            let Args::RegImmOffset(a) = p.instruction(i).args() else { unreachable!() };
                            (false, a.target)
                        }
                        Args::OneOffset(a) => (false, a.target),
                        Args::RegImmOffset(a) => (true, a.target),
                        Args::TwoRegOffset(a) => (true, a.target),
                        _ => continue,
                    };
                    let t = p.static_target(i);
                    let want = (t != INVALID_TARGET).then(|| p.block_of(t as usize));
                    proptest::prop_assert_eq!(p.jump_block(i, branch, target), want, "{:?} {}", profile, i);
                    checked += 1;
                }
                proptest::prop_assert!(checked > 0 || !kinds.iter().any(|k| k.0 >= 3));
            }
        }

        /// `index_of` (a rank over the offset bits) finds exactly the
        /// entries `pcs` lists, under both profiles, with implicit traps.
        #[test]
        fn index_of_matches_a_search_of_pcs(
            code in proptest::collection::vec(proptest::num::u8::ANY, 1..200),
            mask in proptest::collection::vec(proptest::num::u8::ANY, 25),
        ) {
            let bitmask = mask[..code.len().div_ceil(8)].to_vec();
            let b = Blob { jump_table: vec![], jump_table_entry_size: 0, code, bitmask };
            for profile in [Profile::V0_7, Profile::V0_8] {
                let Ok(p) = Program::new(b.clone(), profile) else { continue };
                for pc in 0..b.code.len() as u32 + 70 {
                    proptest::prop_assert_eq!(p.index_of(pc), p.pcs().binary_search(&pc).ok());
                }
                for idx in 0..p.len() {
                    let block = p.block_of(idx);
                    proptest::prop_assert!(p.block_start(block) <= idx);
                    proptest::prop_assert!(idx < p.block_start(block + 1));
                }
            }
        }
    }
}
