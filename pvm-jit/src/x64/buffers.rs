//! Memory the code generator reuses from one compilation to the next.
//!
//! Fresh memory from the kernel costs a page fault per 4 KiB page on first
//! touch (about 2 µs each on the machines we measured: more than generating
//! the code on those pages), and `mmap`/`mprotect`/`munmap` are a couple of
//! µs each. So the generator's tables are kept from the previous
//! compilation, and the code is written straight into an anonymous mapping
//! that then becomes the instance's code (no copy): when the instance is
//! dropped, its mapping goes back to a small pool for the next program of
//! about its size. Both pools are bounded; everything beyond the bounds is
//! freed as usual.
//!
//! A code mapping is writable and not executable while code is generated
//! into it (or while it waits in the pool); the pages holding the code are
//! made executable and not writable before it runs, the rest of the mapping
//! stays not executable: no page is ever writable and executable at once.
//! The bytes between the code's end and the end of its last page are
//! overwritten with `int3`, so no code of an earlier program is executable.

use super::compile::Label;
use dynasmrt::{AssemblyOffset, DynasmApi};
use pvm_core::Error;
use std::sync::Mutex;

const PAGE: usize = 4096;

/// The bytes being generated, in an anonymous mapping (read-write, not
/// executable) that grows (by moving to a bigger one) as needed.
#[derive(Debug)]
pub(super) struct CodeBuf {
    map: Option<memmap2::MmapMut>,
    /// The mapping's start (dangling without one) and length, kept apart
    /// so that appending a byte is a compare and a store.
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

// SAFETY: `ptr` points into `map`, which the buffer owns and which moves
// with it; nothing else refers to the mapping.
unsafe impl Send for CodeBuf {}

impl Default for CodeBuf {
    fn default() -> Self {
        CodeBuf::from_map(None)
    }
}

impl CodeBuf {
    fn from_map(mut map: Option<memmap2::MmapMut>) -> CodeBuf {
        let (ptr, cap) = match &mut map {
            Some(m) => (m.as_mut_ptr(), m.len()),
            None => (core::ptr::NonNull::dangling().as_ptr(), 0),
        };
        CodeBuf {
            map,
            ptr,
            cap,
            len: 0,
        }
    }

    /// Bytes generated.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes it can hold before it moves.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The bytes generated.
    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.len],
            None => &[],
        }
    }

    /// The bytes generated, to patch.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(m) => &mut m[..self.len],
            None => &mut [],
        }
    }

    /// Room for `extra` more bytes.
    #[inline(always)]
    pub fn reserve(&mut self, extra: usize) {
        if self.cap - self.len < extra {
            self.grow(self.len + extra);
        }
    }

    /// Moves to a mapping of at least `need` bytes.
    #[cold]
    fn grow(&mut self, need: usize) {
        let cap = need.max(2 * self.cap).max(64 << 10).next_multiple_of(PAGE);
        let mut map = memmap2::MmapMut::map_anon(cap)
            .unwrap_or_else(|e| panic!("JIT: cannot map {cap} bytes for generated code: {e}"));
        map[..self.len].copy_from_slice(self.bytes());
        let len = self.len;
        *self = CodeBuf::from_map(Some(map));
        self.len = len;
    }

    /// Where the next byte goes; `reserve` first.
    #[inline(always)]
    pub fn spare(&mut self) -> *mut u8 {
        self.ptr.wrapping_add(self.len)
    }

    /// Counts `n` more bytes as generated.
    ///
    /// # Safety
    /// The `n` bytes at [`spare`](Self::spare) are within the capacity and
    /// written.
    #[inline(always)]
    pub unsafe fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        if let Some(m) = &mut self.map {
            m[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    #[inline(always)]
    fn push_byte(&mut self, byte: u8) {
        self.reserve(1);
        // SAFETY: `reserve` left room for one byte at `len`, in the mapping.
        unsafe { self.ptr.add(self.len).write(byte) };
        self.len += 1;
    }
}

impl Extend<u8> for CodeBuf {
    #[inline]
    fn extend<T: IntoIterator<Item = u8>>(&mut self, iter: T) {
        let iter = iter.into_iter();
        match iter.size_hint() {
            // What `dynasm!` appends: a fixed-size array's bytes. One
            // capacity check for all of them.
            (lo, Some(hi)) if lo == hi => {
                self.reserve(lo);
                let p = self.spare();
                let mut n = 0;
                for b in iter.take(lo) {
                    // SAFETY: `reserve` left room for `lo` bytes at `p`.
                    unsafe { p.add(n).write(b) };
                    n += 1;
                }
                // SAFETY: `n <= lo` bytes were written at `p`.
                unsafe { self.advance(n) };
            }
            _ => {
                for b in iter {
                    self.push_byte(b);
                }
            }
        }
    }
}

impl<'a> Extend<&'a u8> for CodeBuf {
    #[inline]
    fn extend<T: IntoIterator<Item = &'a u8>>(&mut self, iter: T) {
        self.extend(iter.into_iter().copied());
    }
}

impl DynasmApi for CodeBuf {
    fn offset(&self) -> AssemblyOffset {
        AssemblyOffset(self.len)
    }
    fn push(&mut self, byte: u8) {
        self.push_byte(byte);
    }
    fn align(&mut self, alignment: usize, with: u8) {
        while self.len % alignment != 0 {
            self.push_byte(with);
        }
    }
}

/// Code mappings kept, and their total size.
const CODE_MAX: usize = 8;
const CODE_MAX_BYTES: usize = 128 << 20;

/// Code mappings of dropped instances and finished compilations:
/// read-write, not executable, empty.
#[derive(Debug)]
pub(super) struct CodePool(Mutex<Vec<memmap2::MmapMut>>);

/// The process's pool.
pub(super) static CODE: CodePool = CodePool::new();

impl CodePool {
    pub const fn new() -> CodePool {
        CodePool(Mutex::new(Vec::new()))
    }

    /// An empty buffer for about `len` bytes of code: the smallest pooled
    /// mapping that holds them and is not much bigger, else a new one.
    pub fn take(&self, len: usize) -> CodeBuf {
        let fits = |m: &memmap2::MmapMut| m.len() >= len && m.len() <= 2 * len + (1 << 20);
        let kept = self.0.lock().ok().and_then(|mut pool| {
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, m)| fits(m))
                .min_by_key(|(_, m)| m.len())
                .map(|(k, _)| k)?;
            Some(pool.swap_remove(best))
        });
        let mut buf = CodeBuf::from_map(kept);
        buf.reserve(len);
        buf
    }

    /// Keeps `buf`'s mapping for a later compilation (or unmaps it if the
    /// pool is full).
    pub fn give_back(&self, buf: CodeBuf) {
        let Some(map) = buf.map else { return };
        if let Ok(mut pool) = self.0.lock() {
            let total: usize = pool.iter().map(|m| m.len()).sum();
            if pool.len() < CODE_MAX && total + map.len() <= CODE_MAX_BYTES {
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

/// An empty buffer for about `len` bytes of code, from the process's pool.
pub(super) fn code_buf(len: usize) -> CodeBuf {
    CODE.take(len)
}

/// Gives a buffer's mapping back to the process's pool.
pub(super) fn give_back_code(buf: CodeBuf) {
    CODE.give_back(buf);
}

/// Generated code made executable: its pages executable and not writable,
/// the rest of the mapping not executable. Back to the pool on drop.
#[derive(Debug)]
pub(super) struct ExecCode {
    map: Option<memmap2::MmapMut>,
    /// Bytes made executable (the code's pages).
    exec: usize,
    /// Where the mapping goes back to.
    pool: &'static CodePool,
}

impl ExecCode {
    /// `buf`'s code, executable; the mapping goes back to `pool` on drop.
    pub fn new(mut buf: CodeBuf, pool: &'static CodePool) -> Result<ExecCode, Error> {
        let len = buf.len.max(1);
        let exec = len.next_multiple_of(PAGE);
        buf.reserve(exec - buf.len);
        let Some(mut map) = buf.map.take() else {
            return Err(Error::Unsupported("JIT: no code generated"));
        };
        map[buf.len..exec].fill(0xCC);
        // SAFETY: the first `exec` bytes lie within the mapping we own
        // (`reserve` above), whose start is page-aligned; from here on the
        // mapping is only read and executed through `as_ptr` until `drop`
        // makes it writable again. x86-64 keeps instruction fetch coherent
        // with earlier stores: no flush is needed.
        let rc = unsafe {
            libc::mprotect(
                map.as_mut_ptr().cast(),
                exec,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        };
        if rc != 0 {
            pool.give_back(CodeBuf::from_map(Some(map)));
            return Err(Error::Unsupported("cannot make JIT code executable"));
        }
        Ok(ExecCode {
            map: Some(map),
            exec,
            pool,
        })
    }

    /// The address of the code's first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ref().map_or(core::ptr::null(), |m| m.as_ptr())
    }

    /// The byte at `off` (the mapping stays readable while executable).
    pub fn byte(&self, off: usize) -> Option<u8> {
        self.map.as_ref()?.get(off).copied()
    }

    /// The mapping's length (the code and what follows it).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }
}

impl Drop for ExecCode {
    fn drop(&mut self) {
        let Some(mut map) = self.map.take() else {
            return;
        };
        // SAFETY: the range made executable in `new`, within the mapping;
        // no generated code runs any more (the instance is being dropped).
        let rc = unsafe {
            libc::mprotect(
                map.as_mut_ptr().cast(),
                self.exec,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc == 0 {
            self.pool.give_back(CodeBuf::from_map(Some(map)));
        }
    }
}

/// A generator's working buffers (see `compile::Emitter` for what each
/// holds).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub labels: Vec<u32>,
    pub fixups: Vec<(u32, u32)>,
    pub blocks: Vec<u32>,
    pub deferred: Vec<(u32, u32, u32)>,
    pub oog_stubs: Vec<(u32, u32)>,
    pub panic_stubs: Vec<(Label, u32)>,
    pub access_stubs: Vec<(Label, u32)>,
}

impl Scratch {
    /// Bytes held.
    fn bytes(&self) -> usize {
        4 * (self.labels.capacity() + self.blocks.capacity())
            + 8 * (self.fixups.capacity()
                + self.deferred.capacity()
                + self.oog_stubs.capacity()
                + self.panic_stubs.capacity()
                + self.access_stubs.capacity())
    }

    fn clear(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_mapping_holds_the_new_code_and_int3_to_its_page_end() {
        static POOL: CodePool = CodePool::new();
        let mut buf = POOL.take(3000);
        buf.extend([0x90u8; 3000]);
        let first = ExecCode::new(buf, &POOL).unwrap();
        let addr = first.as_ptr();
        let cap = first.capacity();
        // SAFETY: the code's page is readable.
        let old = unsafe { core::slice::from_raw_parts(addr, PAGE) };
        assert!(old[..3000].iter().all(|&b| b == 0x90));
        assert!(old[3000..].iter().all(|&b| b == 0xCC));
        drop(first);
        assert_eq!(POOL.len(), 1);
        let mut buf = POOL.take(1000);
        assert_eq!(buf.capacity(), cap, "the pooled mapping was not reused");
        assert_eq!(POOL.len(), 0);
        buf.extend([0xC3u8; 1000]);
        let second = ExecCode::new(buf, &POOL).unwrap();
        assert_eq!(second.as_ptr(), addr);
        // SAFETY: as above.
        let new = unsafe { core::slice::from_raw_parts(addr, PAGE) };
        assert!(new[..1000].iter().all(|&b| b == 0xC3));
        assert!(new[1000..].iter().all(|&b| b == 0xCC), "old code remains");
    }

    #[test]
    fn a_buffer_grows_keeping_its_bytes_and_the_pool_is_bounded() {
        static POOL: CodePool = CodePool::new();
        let mut buf = POOL.take(10);
        let cap = buf.capacity();
        let bytes: Vec<u8> = (0..(3 << 20) + 100).map(|k| (k % 251) as u8).collect();
        buf.extend(bytes[..100].iter());
        buf.extend_from_slice(&bytes[100..]);
        assert!(buf.capacity() > cap);
        assert_eq!(buf.bytes(), &bytes[..]);
        // A much bigger mapping is not handed out for a small program.
        POOL.give_back(buf);
        let small = POOL.take(10);
        assert_eq!(small.capacity(), cap);
        assert_eq!(POOL.len(), 1);
        let held: Vec<_> = (0..CODE_MAX + 4).map(|_| POOL.take(1 << 16)).collect();
        for b in held {
            POOL.give_back(b);
        }
        assert_eq!(POOL.len(), CODE_MAX);
    }
}
