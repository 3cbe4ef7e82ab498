//! The GP's standard program format and initialisation Y (GP 0.8.0 §B.1),
//! and the JAM code blob that wraps it with metadata.

use crate::codec::{encode_natural, Reader};
use crate::error::Error;
use crate::interp::{Heap, HALT_ADDRESS};
use crate::memory::{Access, Memory, PAGE_SIZE};
use alloc::vec::Vec;

/// Z_Z, the initialisation zone size.
pub const ZONE_SIZE: u32 = 1 << 16;
/// Z_I, the largest argument.
pub const MAX_ARGS: u32 = 1 << 24;
/// Initial stack pointer (r1): 2^32 − 2·Z_Z − Z_I.
pub const STACK_TOP: u32 = (0u32.wrapping_sub(2 * ZONE_SIZE)).wrapping_sub(MAX_ARGS);
/// Start of the argument area (r7): 2^32 − Z_Z − Z_I.
pub const ARGS_START: u32 = (0u32.wrapping_sub(ZONE_SIZE)).wrapping_sub(MAX_ARGS);
/// Start of read-only data.
pub const RO_START: u32 = ZONE_SIZE;

/// P(x): round up to a page.
fn page_round(x: u64) -> u64 {
    x.div_ceil(u64::from(PAGE_SIZE)) * u64::from(PAGE_SIZE)
}

/// Q(x): round up to a zone.
fn zone_round(x: u64) -> u64 {
    x.div_ceil(u64::from(ZONE_SIZE)) * u64::from(ZONE_SIZE)
}

/// A standard program: `E₃(|o|) ‖ E₃(|w|) ‖ E₂(z) ‖ E₃(s) ‖ o ‖ w ‖ E₄(|c|) ‖ c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardProgram {
    /// Read-only data `o`.
    pub ro_data: Vec<u8>,
    /// Read-write data `w`.
    pub rw_data: Vec<u8>,
    /// Extra heap pages `z`.
    pub heap_pages: u16,
    /// Stack size `s` in bytes.
    pub stack_size: u32,
    /// The program blob `c` (jump table, code, bitmask).
    pub code: Vec<u8>,
}

/// The initial machine state produced by Y.
#[derive(Debug)]
pub struct Initial<M> {
    pub memory: M,
    pub regs: [u64; 13],
    /// Heap bounds, for GP 0.7.2's `sbrk`.
    pub heap: Heap,
}

impl StandardProgram {
    /// Parses a standard program; every byte must be used.
    pub fn parse(bytes: &[u8]) -> Result<StandardProgram, Error> {
        let mut r = Reader::new(bytes);
        let field = |r: &mut Reader<'_>, n: usize, what: &'static str| {
            let at = r.pos();
            r.fixed(n).ok_or(Error::Truncated { what, offset: at })
        };
        let o_len = field(&mut r, 3, "read-only data length")? as usize;
        let w_len = field(&mut r, 3, "read-write data length")? as usize;
        let heap_pages = field(&mut r, 2, "heap page count")? as u16;
        let stack_size = field(&mut r, 3, "stack size")? as u32;
        let at = r.pos();
        let ro_data = r
            .bytes(o_len)
            .ok_or(Error::Truncated {
                what: "read-only data",
                offset: at,
            })?
            .to_vec();
        let at = r.pos();
        let rw_data = r
            .bytes(w_len)
            .ok_or(Error::Truncated {
                what: "read-write data",
                offset: at,
            })?
            .to_vec();
        let c_len = field(&mut r, 4, "code blob length")? as usize;
        let at = r.pos();
        let code = r
            .bytes(c_len)
            .ok_or(Error::Truncated {
                what: "code blob",
                offset: at,
            })?
            .to_vec();
        if !r.rest().is_empty() {
            return Err(Error::TrailingBytes {
                what: "the code blob",
                offset: r.pos(),
            });
        }
        let p = StandardProgram {
            ro_data,
            rw_data,
            heap_pages,
            stack_size,
            code,
        };
        p.check_layout()?;
        Ok(p)
    }

    /// Encodes the program back to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let le = |out: &mut Vec<u8>, v: u64, n: usize| out.extend_from_slice(&v.to_le_bytes()[..n]);
        le(&mut out, self.ro_data.len() as u64, 3);
        le(&mut out, self.rw_data.len() as u64, 3);
        le(&mut out, u64::from(self.heap_pages), 2);
        le(&mut out, u64::from(self.stack_size), 3);
        out.extend_from_slice(&self.ro_data);
        out.extend_from_slice(&self.rw_data);
        le(&mut out, self.code.len() as u64, 4);
        out.extend_from_slice(&self.code);
        out
    }

    /// GP: 5·Z_Z + Q(|o|) + Q(|w| + z·Z_P) + Q(s) + Z_I ≤ 2^32.
    fn check_layout(&self) -> Result<(), Error> {
        let total = 5 * u64::from(ZONE_SIZE)
            + zone_round(self.ro_data.len() as u64)
            + zone_round(
                self.rw_data.len() as u64 + u64::from(self.heap_pages) * u64::from(PAGE_SIZE),
            )
            + zone_round(u64::from(self.stack_size))
            + u64::from(MAX_ARGS);
        if total > 1 << 32 {
            return Err(Error::LayoutTooLarge);
        }
        Ok(())
    }

    /// Start of the heap (read-write data): 2·Z_Z + Q(|o|).
    pub fn heap_start(&self) -> u32 {
        (2 * u64::from(ZONE_SIZE) + zone_round(self.ro_data.len() as u64)) as u32
    }

    /// The GP's Y: lays out memory and registers for arguments `args`.
    pub fn initialize<M: Memory + Default>(&self, args: &[u8]) -> Result<Initial<M>, Error> {
        let mut memory = M::default();
        let (regs, heap) = self.initialize_into(&mut memory, args)?;
        Ok(Initial { memory, regs, heap })
    }

    /// The GP's Y laid out in `m`, a memory whose pages are all
    /// inaccessible (a backend's own, so that no image is built and copied
    /// over): the zones mapped and their data written. Gives the registers
    /// and the heap bounds. On an error (checked before anything is
    /// written) `m` is unchanged.
    pub fn initialize_into<M: Memory>(
        &self,
        m: &mut M,
        args: &[u8],
    ) -> Result<([u64; 13], Heap), Error> {
        self.check_layout()?;
        if args.len() > MAX_ARGS as usize {
            return Err(Error::OutOfRange {
                what: "argument length",
                offset: 0,
                value: args.len() as u64,
            });
        }
        let fill = |m: &mut M, start: u32, data: &[u8], len: u64, access: Access| {
            let pages = (page_round(len) / u64::from(PAGE_SIZE)) as u32;
            if pages == 0 {
                return;
            }
            m.set_access(start / PAGE_SIZE, pages, Access::Write);
            if !data.is_empty() {
                // Cannot fail: the pages were just made writable and the
                // layout check keeps every region inside 2^32.
                let _ = m.write(start, data);
            }
            m.set_access(start / PAGE_SIZE, pages, access);
        };
        fill(
            m,
            RO_START,
            &self.ro_data,
            self.ro_data.len() as u64,
            Access::Read,
        );
        let h0 = self.heap_start();
        let heap_len = page_round(self.rw_data.len() as u64)
            + u64::from(self.heap_pages) * u64::from(PAGE_SIZE);
        fill(m, h0, &self.rw_data, heap_len, Access::Write);
        let stack_len = page_round(u64::from(self.stack_size));
        let stack_bottom = u64::from(STACK_TOP) - stack_len;
        fill(m, stack_bottom as u32, &[], stack_len, Access::Write);
        fill(m, ARGS_START, args, args.len() as u64, Access::Read);

        let mut regs = [0u64; 13];
        regs[0] = u64::from(HALT_ADDRESS);
        regs[1] = u64::from(STACK_TOP);
        regs[7] = u64::from(ARGS_START);
        regs[8] = args.len() as u64;
        let heap = Heap {
            top: (u64::from(h0) + heap_len) as u32,
            limit: (stack_bottom - u64::from(ZONE_SIZE)) as u32,
        };
        Ok((regs, heap))
    }
}

/// A JAM code blob: `E(|m|) ‖ m ‖ standard program`, `m` being metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JamBlob {
    pub metadata: Vec<u8>,
    pub program: StandardProgram,
}

impl JamBlob {
    /// Parses a JAM code blob.
    pub fn parse(bytes: &[u8]) -> Result<JamBlob, Error> {
        let mut r = Reader::new(bytes);
        let len = r.natural().ok_or(Error::Truncated {
            what: "metadata length",
            offset: 0,
        })?;
        let at = r.pos();
        let metadata = usize::try_from(len)
            .ok()
            .and_then(|n| r.bytes(n))
            .ok_or(Error::Truncated {
                what: "metadata",
                offset: at,
            })?
            .to_vec();
        let at = r.pos();
        let program = StandardProgram::parse(r.rest()).map_err(|e| shift(e, at))?;
        Ok(JamBlob { metadata, program })
    }

    /// Encodes the blob back to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_natural(self.metadata.len() as u64, &mut out);
        out.extend_from_slice(&self.metadata);
        out.extend_from_slice(&self.program.to_bytes());
        out
    }
}

/// Re-bases an error's offset by `by` bytes (for nested formats).
fn shift(e: Error, by: usize) -> Error {
    match e {
        Error::Truncated { what, offset } => Error::Truncated {
            what,
            offset: offset + by,
        },
        Error::TrailingBytes { what, offset } => Error::TrailingBytes {
            what,
            offset: offset + by,
        },
        Error::OutOfRange {
            what,
            offset,
            value,
        } => Error::OutOfRange {
            what,
            offset: offset + by,
            value,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::PagedMemory;
    use alloc::vec;

    #[test]
    fn constants_match_the_gp() {
        assert_eq!(STACK_TOP, 0xFEFE_0000);
        assert_eq!(ARGS_START, 0xFEFF_0000);
    }

    #[test]
    fn layout() {
        let p = StandardProgram {
            ro_data: vec![1, 2, 3],
            rw_data: vec![4; 5000],
            heap_pages: 2,
            stack_size: 100,
            code: vec![0, 0, 1, 0, 1],
        };
        let bytes = p.to_bytes();
        assert_eq!(StandardProgram::parse(&bytes).unwrap(), p);
        let init: Initial<PagedMemory> = p.initialize(&[9, 9]).unwrap();
        let m = init.memory;
        assert_eq!(m.page_access(0x10), Access::Read);
        assert_eq!(m.peek(0x10002), 3);
        assert_eq!(m.page_access(0x11), Access::None);
        let h0 = p.heap_start();
        assert_eq!(h0, 0x30000);
        assert_eq!(m.page_access(h0 / PAGE_SIZE), Access::Write);
        assert_eq!(m.peek(h0 + 4999), 4);
        // 5000 bytes round to 2 pages, plus 2 heap pages
        assert_eq!(m.page_access(h0 / PAGE_SIZE + 3), Access::Write);
        assert_eq!(m.page_access(h0 / PAGE_SIZE + 4), Access::None);
        assert_eq!(m.page_access(STACK_TOP / PAGE_SIZE - 1), Access::Write);
        assert_eq!(m.page_access(STACK_TOP / PAGE_SIZE - 2), Access::None);
        assert_eq!(m.page_access(ARGS_START / PAGE_SIZE), Access::Read);
        assert_eq!(m.peek(ARGS_START + 1), 9);
        assert_eq!(init.regs[8], 2);
        assert_eq!(init.heap.top, h0 + 4 * PAGE_SIZE);
    }

    #[test]
    fn oversized_layout_is_rejected() {
        let p = StandardProgram {
            ro_data: vec![],
            rw_data: vec![],
            heap_pages: u16::MAX,
            stack_size: 0xFF_FFFF,
            code: vec![],
        };
        let mut bytes = p.to_bytes();
        // 65535 heap pages = 256 MiB fits; make the stack 16 MiB - 1 as well and
        // grow read-only data beyond what fits by faking its length field.
        bytes[0..3].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        assert!(StandardProgram::parse(&bytes).is_err());
    }
}
