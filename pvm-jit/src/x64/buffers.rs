//! Memory the code generator reuses from one compilation to the next.
//!
//! Fresh memory from the kernel costs a page fault per 4 KiB page on first
//! touch (about 2 µs each on the machines we measured: more than generating
//! the code on those pages), and `mmap`/`mprotect`/`munmap` are a couple of
//! µs each. So the generator writes into a buffer kept from the previous
//! compilation, and an instance's code mapping goes back to a small pool
//! when the instance is dropped, for the next program of about its size.
//! Both pools are bounded; everything beyond the bounds is freed as usual.
//!
//! A reused mapping is made writable (and not executable) to copy the new
//! code in, and executable (and not writable) before it is used: no mapping
//! is ever writable and executable at once. Bytes past the new code are
//! overwritten with `int3`, so no code of an earlier program remains.

use super::compile::Label;
use dynasmrt::{AssemblyOffset, DynasmApi};
use pvm_core::Error;
use std::sync::Mutex;

/// The bytes being generated: what `dynasm!` appends to.
#[derive(Debug, Default)]
pub(super) struct CodeBuf(pub Vec<u8>);

impl Extend<u8> for CodeBuf {
    fn extend<T: IntoIterator<Item = u8>>(&mut self, iter: T) {
        self.0.extend(iter);
    }
}

impl<'a> Extend<&'a u8> for CodeBuf {
    fn extend<T: IntoIterator<Item = &'a u8>>(&mut self, iter: T) {
        self.0.extend(iter);
    }
}

impl DynasmApi for CodeBuf {
    fn offset(&self) -> AssemblyOffset {
        AssemblyOffset(self.0.len())
    }
    fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }
    fn align(&mut self, alignment: usize, with: u8) {
        while self.0.len() % alignment != 0 {
            self.0.push(with);
        }
    }
}

/// A generator's working buffers (see `compile::Emitter` for what each
/// holds).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub code: CodeBuf,
    pub labels: Vec<u32>,
    pub fixups: Vec<(u32, u32)>,
    pub blocks: Vec<u32>,
    pub deferred: Vec<(u32, u32)>,
    pub oog_stubs: Vec<(u32, u32)>,
    pub panic_stubs: Vec<(Label, u32)>,
    pub access_stubs: Vec<(Label, u32)>,
}

impl Scratch {
    /// Bytes held.
    fn bytes(&self) -> usize {
        self.code.0.capacity()
            + 4 * (self.labels.capacity() + self.blocks.capacity())
            + 8 * (self.fixups.capacity()
                + self.deferred.capacity()
                + self.oog_stubs.capacity()
                + self.panic_stubs.capacity()
                + self.access_stubs.capacity())
    }

    fn clear(&mut self) {
        self.code.0.clear();
        self.labels.clear();
        self.fixups.clear();
        self.blocks.clear();
        self.deferred.clear();
        self.oog_stubs.clear();
        self.panic_stubs.clear();
        self.access_stubs.clear();
    }
}

/// Scratch buffers larger than this are not kept.
const SCRATCH_MAX_BYTES: usize = 64 << 20;
/// Scratch sets kept (one per thread compiling at the same time).
const SCRATCH_MAX: usize = 8;
static SCRATCH: Mutex<Vec<Scratch>> = Mutex::new(Vec::new());

/// Empty working buffers, kept from an earlier compilation if there is one.
pub(super) fn scratch() -> Scratch {
    SCRATCH
        .lock()
        .ok()
        .and_then(|mut pool| pool.pop())
        .unwrap_or_default()
}

/// Gives working buffers back for the next compilation.
pub(super) fn give_back_scratch(mut s: Scratch) {
    if s.bytes() > SCRATCH_MAX_BYTES {
        return;
    }
    s.clear();
    if let Ok(mut pool) = SCRATCH.lock() {
        if pool.len() < SCRATCH_MAX {
            pool.push(s);
        }
    }
}

/// The native offset table of the instance dropped last (see
/// [`starts`]), if it was not too big.
static STARTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// An empty table for the native offset of each instruction, kept from a
/// dropped instance if there is one.
pub(super) fn starts(n: usize) -> Vec<u32> {
    // Not a table many times bigger than needed: a small instance that
    // lives long should not hold a big one's.
    let mut v = STARTS
        .try_lock()
        .ok()
        .filter(|kept| kept.capacity() <= 4 * n + 1024)
        .map(|mut kept| core::mem::take(&mut *kept))
        .unwrap_or_default();
    v.reserve(n);
    v
}

/// Gives a dropped instance's offset table back.
pub(super) fn give_back_starts(mut v: Vec<u32>) {
    if 4 * v.capacity() > SCRATCH_MAX_BYTES {
        return;
    }
    v.clear();
    if let Ok(mut kept) = STARTS.try_lock() {
        if kept.capacity() < v.capacity() {
            *kept = v;
        }
    }
}

/// Code mappings kept, and their total size.
const MAPS_MAX: usize = 8;
const MAPS_MAX_BYTES: usize = 128 << 20;

/// Code mappings of dropped instances, executable and not writable.
#[derive(Debug)]
pub(super) struct MapPool(Mutex<Vec<memmap2::Mmap>>);

/// The process's pool.
pub(super) static MAPS: MapPool = MapPool::new();

impl MapPool {
    pub const fn new() -> MapPool {
        MapPool(Mutex::new(Vec::new()))
    }

    /// The smallest pooled mapping that holds `len` bytes and is not much
    /// bigger (its tail is rewritten).
    fn take(&self, len: usize) -> Option<memmap2::Mmap> {
        let fits = |m: &memmap2::Mmap| m.len() >= len && m.len() <= 2 * len + (64 << 10);
        let mut pool = self.0.lock().ok()?;
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, m)| fits(m))
            .min_by_key(|(_, m)| m.len())
            .map(|(k, _)| k)?;
        Some(pool.swap_remove(best))
    }

    /// Code in memory that can be executed and not written: a pooled
    /// mapping of about its size if there is one, else a fresh one.
    /// `parts` are copied one after the other.
    pub fn executable(&self, parts: &[&[u8]]) -> Result<memmap2::Mmap, Error> {
        let len: usize = parts.iter().map(|c| c.len()).sum();
        let mut map = match self.take(len.max(1)) {
            Some(m) => m
                .make_mut()
                .map_err(|_| Error::Unsupported("cannot make pooled JIT code writable"))?,
            None => memmap2::MmapMut::map_anon(len.max(1))
                .map_err(|_| Error::Unsupported("cannot allocate JIT code"))?,
        };
        let mut at = 0;
        for code in parts {
            map[at..at + code.len()].copy_from_slice(code);
            at += code.len();
        }
        map[len..].fill(0xCC);
        // x86-64 keeps instruction fetch coherent with stores: no flush needed.
        map.make_exec()
            .map_err(|_| Error::Unsupported("cannot make JIT code executable"))
    }

    /// Keeps `map` for a later program (or unmaps it if the pool is full).
    pub fn give_back(&self, map: memmap2::Mmap) {
        if let Ok(mut pool) = self.0.lock() {
            let total: usize = pool.iter().map(|m| m.len()).sum();
            if pool.len() < MAPS_MAX && total + map.len() <= MAPS_MAX_BYTES {
                pool.push(map);
            }
        }
    }

    /// Mappings held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_mapping_holds_the_new_code_and_int3_after_it() {
        let pool = MapPool::new();
        let first = pool.executable(&[&[0x90; 3000]]).unwrap();
        let addr = first.as_ptr();
        pool.give_back(first);
        assert_eq!(pool.len(), 1);
        let second = pool.executable(&[&[0xC3; 1000]]).unwrap();
        assert_eq!(second.as_ptr(), addr, "the pooled mapping was not reused");
        assert_eq!(pool.len(), 0);
        assert!(second[..1000].iter().all(|&b| b == 0xC3));
        assert!(
            second[1000..].iter().all(|&b| b == 0xCC),
            "old code remains"
        );
    }

    #[test]
    fn a_much_bigger_mapping_is_not_reused_and_the_pool_is_bounded() {
        let pool = MapPool::new();
        let big = pool.executable(&[&vec![0x90; 1 << 20]]).unwrap();
        pool.give_back(big);
        let small = pool.executable(&[&[0xC3; 100]]).unwrap();
        assert_eq!(small.len(), 100);
        assert_eq!(pool.len(), 1);
        for _ in 0..MAPS_MAX + 4 {
            let m = pool.executable(&[&[0xC3; 10]]).unwrap();
            pool.give_back(m);
        }
        let maps: Vec<_> = (0..MAPS_MAX + 4)
            .map(|_| memmap2::MmapMut::map_anon(10).unwrap().make_exec().unwrap())
            .collect();
        for m in maps {
            pool.give_back(m);
        }
        assert_eq!(pool.len(), MAPS_MAX);
    }
}
