//! Guest memory: 2^32 bytes in 4 KiB pages, each inaccessible, read-only or
//! read-write (GP §4.7).
//!
//! Fault rule (GP §A.4): of all the bytes an access must read or write
//! (addresses taken mod 2^32), take the lowest one that is not accessible.
//! Below 0x10000 the access panics; otherwise it faults with that byte's page
//! base. Every address below 0x10000 counts as inaccessible, whatever is
//! mapped there. A failed access changes nothing.

use alloc::boxed::Box;
use hashbrown::HashMap;

mod flat;
pub use flat::FlatMemory;

/// Page size (GP Z_P).
pub const PAGE_SIZE: u32 = 4096;
/// Accesses below this address always panic (GP: 2^16).
pub const LOW_LIMIT: u32 = 0x10000;

/// A page's access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Access {
    /// Not accessible (∅).
    #[default]
    None,
    /// Readable (R).
    Read,
    /// Readable and writable (W).
    Write,
}

/// Why an access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// The lowest bad address is below 0x10000.
    Panic,
    /// Page fault: the page base of the lowest bad address.
    Fault(u32),
}

impl Trap {
    /// The trap for a lowest bad address `addr`.
    #[inline]
    pub fn at(addr: u32) -> Trap {
        if addr < LOW_LIMIT {
            Trap::Panic
        } else {
            Trap::Fault(addr & !(PAGE_SIZE - 1))
        }
    }
}

/// Guest memory, as the interpreter sees it. The interpreter is generic over
/// it, so calls monomorphise.
pub trait Memory {
    /// A page's access.
    fn page_access(&self, page: u32) -> Access;

    /// Sets the access of pages `[first, first + count)`. Pages that become
    /// accessible keep their contents if they had any, else read as zero;
    /// pages made inaccessible are dropped (and read as zero if mapped again).
    fn set_access(&mut self, first: u32, count: u32, access: Access);

    /// Reads `buf.len()` bytes at `addr` (wrapping mod 2^32).
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), Trap>;

    /// Writes `data` at `addr` (wrapping mod 2^32).
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap>;

    /// Loads `N` bytes (the interpreter's hot path).
    #[inline]
    fn load<const N: usize>(&mut self, addr: u32) -> Result<[u8; N], Trap> {
        let mut b = [0u8; N];
        self.read(addr, &mut b)?;
        Ok(b)
    }

    /// Stores `N` bytes (the interpreter's hot path).
    #[inline]
    fn store<const N: usize>(&mut self, addr: u32, bytes: [u8; N]) -> Result<(), Trap> {
        self.write(addr, &bytes)
    }

    /// Whether every byte of `[addr, addr + len)` can be read.
    fn is_readable(&self, addr: u32, len: u32) -> bool {
        lowest_bad(addr, len, |p| self.page_access(p) != Access::None).is_none()
    }

    /// Whether every byte of `[addr, addr + len)` can be written.
    fn is_writable(&self, addr: u32, len: u32) -> bool {
        lowest_bad(addr, len, |p| self.page_access(p) == Access::Write).is_none()
    }
}

/// The lowest address (mod 2^32) of `[addr, addr + len)` that is below
/// 0x10000 or in a page for which `ok` is false.
pub fn lowest_bad(addr: u32, len: u32, ok: impl Fn(u32) -> bool) -> Option<u32> {
    if len == 0 {
        return None;
    }
    let end = u64::from(addr) + u64::from(len); // exclusive, may pass 2^32
    let check = |lo: u64, hi: u64| -> Option<u32> {
        // [lo, hi) within [0, 2^32)
        let mut a = lo;
        while a < hi {
            let a32 = a as u32;
            if a32 < LOW_LIMIT || !ok(a32 / PAGE_SIZE) {
                return Some(a32);
            }
            a = (a | u64::from(PAGE_SIZE - 1)) + 1;
        }
        None
    };
    if end > 1 << 32 {
        // Wrapped: the low part [0, end - 2^32) holds the lowest addresses.
        check(0, end - (1 << 32)).or_else(|| check(u64::from(addr), 1 << 32))
    } else {
        check(u64::from(addr), end)
    }
}

struct Page {
    access: Access,
    data: Box<[u8; PAGE_SIZE as usize]>,
}

/// A sparse paged memory: only mapped pages take space.
#[derive(Default)]
pub struct PagedMemory {
    pages: HashMap<u32, Page>,
}

impl core::fmt::Debug for PagedMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PagedMemory")
            .field("pages", &self.pages.len())
            .finish()
    }
}

impl PagedMemory {
    /// An empty memory: every page inaccessible.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of accessible pages.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Copies bytes without access checks (for loaders and debuggers): writes
    /// only into mapped pages and reports whether every byte landed.
    pub fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        let mut all = true;
        for (k, &b) in data.iter().enumerate() {
            let a = addr.wrapping_add(k as u32);
            match self.pages.get_mut(&(a / PAGE_SIZE)) {
                Some(p) => p.data[(a % PAGE_SIZE) as usize] = b,
                None => all = false,
            }
        }
        all
    }

    /// Reads a byte without access checks; 0 if unmapped.
    pub fn peek(&self, addr: u32) -> u8 {
        self.pages
            .get(&(addr / PAGE_SIZE))
            .map_or(0, |p| p.data[(addr % PAGE_SIZE) as usize])
    }

    #[inline]
    fn fast_page(&self, addr: u32, len: u32, write: bool) -> Option<&Page> {
        let off = addr % PAGE_SIZE;
        if addr < LOW_LIMIT || off + len > PAGE_SIZE {
            return None;
        }
        let p = self.pages.get(&(addr / PAGE_SIZE))?;
        if write && p.access != Access::Write {
            return None;
        }
        Some(p)
    }
}

impl Memory for PagedMemory {
    fn page_access(&self, page: u32) -> Access {
        self.pages.get(&page).map_or(Access::None, |p| p.access)
    }

    fn set_access(&mut self, first: u32, count: u32, access: Access) {
        for page in first..first.saturating_add(count).min(1 << 20) {
            if access == Access::None {
                self.pages.remove(&page);
            } else {
                self.pages
                    .entry(page)
                    .or_insert_with(|| Page {
                        access,
                        data: Box::new([0; PAGE_SIZE as usize]),
                    })
                    .access = access;
            }
        }
    }

    #[inline]
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), Trap> {
        let len = buf.len() as u32;
        if let Some(p) = self.fast_page(addr, len, false) {
            let off = (addr % PAGE_SIZE) as usize;
            buf.copy_from_slice(&p.data[off..off + buf.len()]);
            return Ok(());
        }
        if let Some(bad) = lowest_bad(addr, len, |p| self.pages.contains_key(&p)) {
            return Err(Trap::at(bad));
        }
        for (k, b) in buf.iter_mut().enumerate() {
            *b = self.peek(addr.wrapping_add(k as u32));
        }
        Ok(())
    }

    #[inline]
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap> {
        let len = data.len() as u32;
        if self.fast_page(addr, len, true).is_some() {
            let off = (addr % PAGE_SIZE) as usize;
            if let Some(p) = self.pages.get_mut(&(addr / PAGE_SIZE)) {
                p.data[off..off + data.len()].copy_from_slice(data);
            }
            return Ok(());
        }
        if let Some(bad) = lowest_bad(addr, len, |p| self.page_access(p) == Access::Write) {
            return Err(Trap::at(bad));
        }
        self.poke(addr, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_report_lowest_bad_page() {
        let mut m = PagedMemory::new();
        m.set_access(0x20, 1, Access::Read);
        // read straddling a readable page and an unmapped one
        let mut b = [0u8; 8];
        assert_eq!(m.read(0x20FFC, &mut b), Err(Trap::Fault(0x21000)));
        // write to read-only straddling unmapped: the read-only page is lower
        assert_eq!(m.write(0x20FFC, &b), Err(Trap::Fault(0x20000)));
        assert_eq!(m.read(0xFFFF, &mut b[..1]), Err(Trap::Panic));
        // wrapping access: the low addresses are the lowest
        assert_eq!(m.read(0xFFFF_FFFC, &mut b), Err(Trap::Panic));
        assert!(m.read(0x20000, &mut b).is_ok());
    }

    #[test]
    fn failed_write_changes_nothing() {
        let mut m = PagedMemory::new();
        m.set_access(0x20, 1, Access::Write);
        assert!(m.write(0x20FFC, &[1; 8]).is_err());
        assert_eq!(m.peek(0x20FFC), 0);
        assert!(m.write(0x20FF8, &[1; 8]).is_ok());
        assert_eq!(m.peek(0x20FFF), 1);
    }
}

/// `FlatMemory` and `PagedMemory` are two implementations of one contract:
/// random sequences of mapping changes and accesses must give identical
/// results (data, faults, and contents afterwards).
#[cfg(test)]
mod differential {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Map(u32, u32, Access),
        Load(u32, usize),
        Store(u32, u64, usize),
        Read(u32, usize),
        Write(u32, Vec<u8>),
    }

    /// Addresses near a few interesting pages: low memory, a cluster of
    /// adjacent pages, the top of the address space (wrapping accesses).
    fn addr() -> impl Strategy<Value = u32> {
        prop_oneof![
            (0u32..0x12000),
            (0x1_0000u32..0x1_8000),
            (0xFFFF_8000u32..=u32::MAX),
            any::<u32>(),
        ]
    }

    fn page() -> impl Strategy<Value = u32> {
        prop_oneof![(0u32..0x18), (0xFFFF8u32..0x10_0000)]
    }

    fn access() -> impl Strategy<Value = Access> {
        prop_oneof![Just(Access::None), Just(Access::Read), Just(Access::Write)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (page(), 1u32..4, access()).prop_map(|(p, n, a)| Op::Map(p, n, a)),
            (addr(), prop_oneof![Just(1usize), Just(2), Just(4), Just(8)])
                .prop_map(|(a, n)| Op::Load(a, n)),
            (
                addr(),
                any::<u64>(),
                prop_oneof![Just(1usize), Just(2), Just(4), Just(8)]
            )
                .prop_map(|(a, v, n)| Op::Store(a, v, n)),
            (addr(), 0usize..9000).prop_map(|(a, n)| Op::Read(a, n)),
            (addr(), proptest::collection::vec(any::<u8>(), 0..9000))
                .prop_map(|(a, d)| Op::Write(a, d)),
        ]
    }

    fn load<M: Memory>(m: &mut M, a: u32, n: usize) -> Result<u64, Trap> {
        let mut b = [0u8; 8];
        match n {
            1 => b[..1].copy_from_slice(&m.load::<1>(a)?),
            2 => b[..2].copy_from_slice(&m.load::<2>(a)?),
            4 => b[..4].copy_from_slice(&m.load::<4>(a)?),
            _ => b.copy_from_slice(&m.load::<8>(a)?),
        }
        Ok(u64::from_le_bytes(b))
    }

    fn store<M: Memory>(m: &mut M, a: u32, v: u64, n: usize) -> Result<(), Trap> {
        let b = v.to_le_bytes();
        match n {
            1 => m.store::<1>(a, [b[0]]),
            2 => m.store::<2>(a, [b[0], b[1]]),
            4 => m.store::<4>(a, [b[0], b[1], b[2], b[3]]),
            _ => m.store::<8>(a, b),
        }
    }

    #[test]
    fn regression_unmapping_the_last_page_of_the_address_space() {
        // Found by this property test: the split computed the (empty) tail's
        // base as 2^32 and overflowed.
        let mut flat = FlatMemory::new();
        flat.set_access(0xFFFFE, 2, Access::Write);
        flat.set_access(0xFFFFF, 1, Access::None);
        assert_eq!(flat.page_access(0xFFFFE), Access::Write);
        assert_eq!(flat.page_access(0xFFFFF), Access::None);
        assert_eq!(
            flat.store::<4>(0xFFFF_EFFE, [1, 2, 3, 4]),
            Err(Trap::Fault(0xFFFF_F000))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn flat_and_paged_memory_agree(ops in proptest::collection::vec(op(), 1..60)) {
            let mut flat = FlatMemory::new();
            let mut paged = PagedMemory::new();
            for op in &ops {
                match op {
                    Op::Map(p, n, a) => {
                        flat.set_access(*p, *n, *a);
                        // PagedMemory keeps pages below 0x10000 mappable; the
                        // contract is that accesses there panic either way.
                        paged.set_access(*p, *n, *a);
                    }
                    Op::Load(a, n) => prop_assert_eq!(load(&mut flat, *a, *n), load(&mut paged, *a, *n), "{:?}", op),
                    Op::Store(a, v, n) => prop_assert_eq!(store(&mut flat, *a, *v, *n), store(&mut paged, *a, *v, *n), "{:?}", op),
                    Op::Read(a, n) => {
                        let (mut x, mut y) = (vec![0u8; *n], vec![0u8; *n]);
                        let (rx, ry) = (flat.read(*a, &mut x), paged.read(*a, &mut y));
                        prop_assert_eq!(rx, ry, "{:?}", op);
                        if rx.is_ok() {
                            prop_assert!(x == y, "read data differs at {:#x}", a);
                        }
                    }
                    Op::Write(a, d) => prop_assert_eq!(flat.write(*a, d), paged.write(*a, d), "write {} bytes at {:#x}", d.len(), a),
                }
            }
            // Same access and contents on every page either touched.
            for page in (0x10u32..0x18).chain(0xFFFF8..0x10_0000) {
                prop_assert_eq!(flat.page_access(page), paged.page_access(page), "page {:#x}", page);
                for off in (0..PAGE_SIZE).step_by(97) {
                    let a = page * PAGE_SIZE + off;
                    prop_assert_eq!(flat.peek(a), paged.peek(a), "byte {:#x}", a);
                }
            }
        }
    }
}
