//! A memory of contiguous regions: the fast one for real programs.
//!
//! Accessible pages are kept in a few regions of adjacent pages, each one
//! `Vec<u8>` with a per-page access array. A standard program has four (read-
//! only data, heap, stack, arguments). The hot path is one subtraction and
//! one comparison against the most recently used region, then a fixed-size
//! copy; anything else (another region, a straddling or faulting access)
//! takes the slow path, which applies the exact GP fault rule.

use super::{lowest_bad, Access, Memory, Trap, LOW_LIMIT, PAGE_SIZE};
use alloc::vec::Vec;

#[derive(Clone, Debug)]
struct Region {
    /// First byte (page aligned).
    base: u32,
    /// Contents, a whole number of pages.
    data: Vec<u8>,
    /// Access of each page (never `None`: inaccessible pages are not kept).
    access: Vec<Access>,
    /// Whether every page is writable (the store fast path needs it).
    writable: bool,
}

impl Region {
    fn first_page(&self) -> u32 {
        self.base / PAGE_SIZE
    }
    fn end_page(&self) -> u32 {
        self.first_page() + self.access.len() as u32
    }
    fn refresh(&mut self) {
        self.writable = self.access.iter().all(|&a| a == Access::Write);
    }
}

/// Guest memory as a few contiguous regions of accessible pages.
#[derive(Clone, Debug, Default)]
pub struct FlatMemory {
    /// Disjoint regions, most recently used first (order is not otherwise
    /// meaningful).
    regions: Vec<Region>,
}

impl FlatMemory {
    /// An empty memory: every page inaccessible.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies bytes ignoring access rights (for loaders, tests and hosts);
    /// returns false if some byte fell on an inaccessible page (not written).
    pub fn poke(&mut self, addr: u32, data: &[u8]) -> bool {
        let mut all = true;
        for (k, &b) in data.iter().enumerate() {
            let a = addr.wrapping_add(k as u32);
            match self.find(a) {
                Some(i) => {
                    let r = &mut self.regions[i];
                    r.data[(a - r.base) as usize] = b;
                }
                None => all = false,
            }
        }
        all
    }

    /// Reads a byte ignoring access rights; 0 if inaccessible.
    pub fn peek(&self, addr: u32) -> u8 {
        self.find(addr).map_or(0, |i| {
            let r = &self.regions[i];
            r.data[(addr - r.base) as usize]
        })
    }

    /// Number of accessible pages.
    /// The accessible memory as `(first page, access of each page, bytes)`
    /// runs of adjacent pages, in no particular order: what a backend with
    /// its own memory needs to copy this one.
    pub fn regions(&self) -> impl Iterator<Item = (u32, &[Access], &[u8])> {
        self.regions
            .iter()
            .map(|r| (r.first_page(), r.access.as_slice(), r.data.as_slice()))
    }

    pub fn page_count(&self) -> usize {
        self.regions.iter().map(|r| r.access.len()).sum()
    }

    fn find(&self, addr: u32) -> Option<usize> {
        self.regions
            .iter()
            .position(|r| (addr.wrapping_sub(r.base) as usize) < r.data.len())
    }

    fn find_page(&self, page: u32) -> Option<(usize, usize)> {
        self.regions
            .iter()
            .position(|r| page >= r.first_page() && page < r.end_page())
            .map(|i| (i, (page - self.regions[i].first_page()) as usize))
    }

    fn set_page(&mut self, page: u32, access: Access) {
        match (self.find_page(page), access) {
            (Some((i, k)), Access::None) => {
                // Drop the page: truncate, or split the region in two.
                let r = &mut self.regions[i];
                let tail_data = r.data.split_off(k * PAGE_SIZE as usize);
                let tail_access = r.access.split_off(k);
                let mut tail = Region {
                    // Wraps only for the last page of the address space, whose
                    // tail is empty and dropped below.
                    base: page.wrapping_add(1).wrapping_mul(PAGE_SIZE),
                    data: tail_data[PAGE_SIZE as usize..].to_vec(),
                    access: tail_access[1..].to_vec(),
                    writable: false,
                };
                r.refresh();
                let empty = r.access.is_empty();
                if !tail.access.is_empty() {
                    tail.refresh();
                    self.regions.insert(i + 1, tail);
                }
                if empty {
                    self.regions.remove(i);
                }
            }
            (Some((i, k)), a) => {
                self.regions[i].access[k] = a;
                self.regions[i].refresh();
            }
            (None, Access::None) => {}
            (None, a) => {
                // New page, zeroed: extend a neighbour or start a region.
                let before = self.regions.iter().position(|r| r.end_page() == page);
                let after = self.regions.iter().position(|r| r.first_page() == page + 1);
                match (before, after) {
                    (Some(b), Some(n)) => {
                        let next = self.regions.remove(n);
                        let b = if n < b { b - 1 } else { b };
                        let r = &mut self.regions[b];
                        r.data.resize(r.data.len() + PAGE_SIZE as usize, 0);
                        r.access.push(a);
                        r.data.extend_from_slice(&next.data);
                        r.access.extend_from_slice(&next.access);
                        r.refresh();
                    }
                    (Some(b), None) => {
                        let r = &mut self.regions[b];
                        r.data.resize(r.data.len() + PAGE_SIZE as usize, 0);
                        r.access.push(a);
                        r.refresh();
                    }
                    (None, Some(n)) => {
                        let r = &mut self.regions[n];
                        let mut data = alloc::vec![0u8; PAGE_SIZE as usize];
                        data.extend_from_slice(&r.data);
                        r.data = data;
                        r.access.insert(0, a);
                        r.base = page * PAGE_SIZE;
                        r.refresh();
                    }
                    (None, None) => {
                        let mut r = Region {
                            base: page * PAGE_SIZE,
                            data: alloc::vec![0u8; PAGE_SIZE as usize],
                            access: alloc::vec![a],
                            writable: false,
                        };
                        r.refresh();
                        let at = self
                            .regions
                            .iter()
                            .position(|x| x.base > r.base)
                            .unwrap_or(self.regions.len());
                        self.regions.insert(at, r);
                    }
                }
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), Trap> {
        if let Some(bad) = lowest_bad(addr, buf.len() as u32, |p| {
            self.page_access(p) != Access::None
        }) {
            return Err(Trap::at(bad));
        }
        for (k, b) in buf.iter_mut().enumerate() {
            *b = self.peek(addr.wrapping_add(k as u32));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn write_slow(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap> {
        if let Some(bad) = lowest_bad(addr, data.len() as u32, |p| {
            self.page_access(p) == Access::Write
        }) {
            return Err(Trap::at(bad));
        }
        self.poke(addr, data);
        Ok(())
    }

    /// The region holding all of `[addr, addr + n)`. The two most recently
    /// used regions are kept at indices 0 and 1 (a program's stack and heap
    /// alternate), so the common case is one or two comparisons.
    #[inline(always)]
    fn region_for(&mut self, addr: u32, n: usize) -> Option<usize> {
        if let Some(r) = self.regions.first() {
            if fits(addr, r, n) {
                return Some(0);
            }
        }
        if let Some(r) = self.regions.get(1) {
            if fits(addr, r, n) {
                return Some(1);
            }
        }
        self.region_for_slow(addr, n)
    }

    #[cold]
    #[inline(never)]
    fn region_for_slow(&mut self, addr: u32, n: usize) -> Option<usize> {
        let i = self.regions.iter().position(|r| fits(addr, r, n))?;
        // Move it to the front: [found, old 0, old 1, ...].
        self.regions[..=i].rotate_right(1);
        Some(0)
    }
}

/// Whether `[addr, addr + n)` lies inside region `r` (no overflow on 32-bit
/// hosts: `off < len` first).
#[inline(always)]
fn fits(addr: u32, r: &Region, n: usize) -> bool {
    let off = addr.wrapping_sub(r.base) as usize;
    off < r.data.len() && r.data.len() - off >= n
}

impl Memory for FlatMemory {
    fn page_access(&self, page: u32) -> Access {
        self.find_page(page)
            .map_or(Access::None, |(i, k)| self.regions[i].access[k])
    }

    fn set_access(&mut self, first: u32, count: u32, access: Access) {
        // Pages below 0x10000 are never accessible (GP: such accesses panic).
        let lo = first.max(LOW_LIMIT / PAGE_SIZE);
        let hi = first.saturating_add(count).min(1 << 20);
        if lo >= hi {
            return;
        }
        let fresh = !self
            .regions
            .iter()
            .any(|r| r.first_page() < hi && r.end_page() > lo);
        if access != Access::None && fresh {
            // A run of new pages (how a loader maps): one region at once,
            // joined with the regions that end at `lo` and start at `hi`.
            let n = (hi - lo) as usize;
            let mut r = match self.regions.iter().position(|x| x.end_page() == lo) {
                Some(b) => {
                    let mut prev = self.regions.swap_remove(b);
                    prev.data
                        .resize(prev.data.len() + n * PAGE_SIZE as usize, 0);
                    prev.access.resize(prev.access.len() + n, access);
                    prev.writable &= access == Access::Write;
                    prev
                }
                None => Region {
                    base: lo * PAGE_SIZE,
                    data: alloc::vec![0u8; n * PAGE_SIZE as usize],
                    access: alloc::vec![access; n],
                    writable: access == Access::Write,
                },
            };
            if let Some(a) = self.regions.iter().position(|x| x.first_page() == hi) {
                let next = self.regions.swap_remove(a);
                r.data.extend_from_slice(&next.data);
                r.access.extend_from_slice(&next.access);
                r.writable &= next.writable;
            }
            self.regions.push(r);
            return;
        }
        if access != Access::None {
            if let Some(r) = self
                .regions
                .iter_mut()
                .find(|r| r.first_page() <= lo && hi <= r.end_page())
            {
                // Inside one region (how a loader seals pages it filled).
                let k = (lo - r.first_page()) as usize;
                r.access[k..k + (hi - lo) as usize].fill(access);
                r.refresh();
                return;
            }
        }
        for page in lo..hi {
            self.set_page(page, access);
        }
    }

    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), Trap> {
        if let Some(i) = self.region_for(addr, buf.len()) {
            let r = &self.regions[i];
            let off = (addr - r.base) as usize;
            buf.copy_from_slice(&r.data[off..off + buf.len()]);
            return Ok(());
        }
        self.read_slow(addr, buf)
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Trap> {
        if let Some(i) = self.region_for(addr, data.len()) {
            let r = &mut self.regions[i];
            if r.writable {
                let off = (addr - r.base) as usize;
                r.data[off..off + data.len()].copy_from_slice(data);
                return Ok(());
            }
        }
        self.write_slow(addr, data)
    }

    #[inline(always)]
    fn load<const N: usize>(&mut self, addr: u32) -> Result<[u8; N], Trap> {
        if let Some(i) = self.region_for(addr, N) {
            let r = &self.regions[i];
            let off = (addr - r.base) as usize;
            if let Some(s) = r.data.get(off..off + N) {
                let mut out = [0u8; N];
                out.copy_from_slice(s);
                return Ok(out);
            }
        }
        let mut out = [0u8; N];
        self.read_slow(addr, &mut out)?;
        Ok(out)
    }

    #[inline(always)]
    fn store<const N: usize>(&mut self, addr: u32, bytes: [u8; N]) -> Result<(), Trap> {
        if let Some(i) = self.region_for(addr, N) {
            let r = &mut self.regions[i];
            if r.writable {
                let off = (addr - r.base) as usize;
                if let Some(s) = r.data.get_mut(off..off + N) {
                    s.copy_from_slice(&bytes);
                    return Ok(());
                }
            }
        }
        self.write_slow(addr, &bytes)
    }
}
