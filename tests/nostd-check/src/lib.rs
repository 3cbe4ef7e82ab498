//! Proof that `pvm-core` builds and links without `std`.
//!
//! Built with the workspace's `nostd` profile (`panic = "abort"`), this crate
//! is a `#![no_std]` static library with its own panic handler and global
//! allocator (a bump allocator over a static array). `check.sh` builds it,
//! checks that the archive holds no `std` crate or symbol, links it into a C
//! program with the C compiler alone and runs it. The one export,
//! [`pvm_nostd_run`], assembles a small PVM program with `pvm-core`'s own
//! instruction table and encoder, and runs it in the interpreter over
//! [`PagedMemory`] (which uses `hashbrown`, so its `no_std` build is covered
//! too).
//!
//! Under `panic = "unwind"` (cargo's `dev` and `test` profiles, as used by
//! `cargo clippy --workspace` or `cargo test`) stable rustc cannot build a
//! `no_std` staticlib at all ("unwinding panics are not supported without
//! std"), so the crate is then an ordinary `std` crate compiling the same code
//! with the system allocator. The proof is the `nostd` build; `check.sh` makes
//! sure that one really has no `std` in it.
#![cfg_attr(panic = "abort", no_std)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use pvm_core::codec;
use pvm_core::isa::{NoArgs, OneOffset, RegImm, RegImmOffset, ThreeReg, TwoReg, TwoRegImm};
use pvm_core::{Blob, Exit, Instruction, PagedMemory, Profile, Program, Reg, Vm, HALT_ADDRESS};

// ---------------------------------------------------------------------------
// Panic handler
// ---------------------------------------------------------------------------

/// There is no unwinding and no OS to report to: spin. `check.sh` runs the C
/// program under a timeout, so a panic shows up as a failure there.
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The unwinding personality routine, which `core` and `alloc` refer to.
///
/// The precompiled `core` and `alloc` are built with `panic = "unwind"`, so
/// their unwind tables name `rust_eh_personality`, which `std` normally
/// defines (rust-lang/rust#106864). With `panic = "abort"` nothing ever
/// unwinds and the routine is never called; this definition only satisfies the
/// linker. (Without it, linking fails on this symbol even though no `std`
/// code is involved.)
#[cfg(panic = "abort")]
#[no_mangle]
extern "C" fn rust_eh_personality() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Global allocator: a bump allocator over a static array
// ---------------------------------------------------------------------------

/// The global allocator of the `no_std` build (compiled for tests as well,
/// which exercise it directly; there the system allocator stays global).
#[cfg(any(panic = "abort", test))]
mod bump {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Size of the static heap.
    pub(crate) const HEAP_SIZE: usize = 1 << 20;
    /// Alignment of the static heap; larger alignments are refused.
    const HEAP_ALIGN: usize = 4096;

    /// The heap's bytes. Only [`BumpAllocator`] touches them, and only through
    /// raw pointers to disjoint ranges it has handed out.
    #[repr(C, align(4096))]
    struct Arena(UnsafeCell<[u8; HEAP_SIZE]>);

    // SAFETY: the arena's bytes are only reached through pointers returned by
    // `BumpAllocator::alloc`, whose ranges are disjoint while allocated (the
    // atomic state below hands each range out once); sharing the cell between
    // threads therefore never creates overlapping accesses.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_SIZE]));

    /// A bump allocator whose whole state is one atomic word:
    /// `live allocations << 32 | next free offset`. Every change is a single
    /// compare-and-swap of that word, so it is lock-free and thread-safe.
    ///
    /// Memory is reclaimed in two ways: freeing the most recent allocation moves
    /// the offset back (stack order), and when the number of live allocations
    /// drops to zero the whole arena is reused.
    pub(crate) struct BumpAllocator {
        state: AtomicU64,
    }

    const OFFSET_MASK: u64 = 0xFFFF_FFFF;

    impl BumpAllocator {
        const fn new() -> Self {
            BumpAllocator {
                state: AtomicU64::new(0),
            }
        }

        fn base() -> *mut u8 {
            ARENA.0.get().cast::<u8>()
        }
    }

    // SAFETY: `alloc` returns either null or a pointer to `layout.size()` bytes
    // inside `ARENA`, aligned to `layout.align()` (the arena is aligned to
    // HEAP_ALIGN and larger alignments are refused), that no other live
    // allocation overlaps: the compare-and-swap reserves `[start, end)` by moving
    // the offset past it atomically. `dealloc` only moves the offset back over a
    // range that is no longer live (the most recent allocation, being freed) or
    // resets it when no allocation is live at all, so no live range is ever
    // handed out twice.
    unsafe impl GlobalAlloc for BumpAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() > HEAP_ALIGN {
                return core::ptr::null_mut();
            }
            let align = layout.align() as u64;
            let size = layout.size() as u64;
            let mut current = self.state.load(Ordering::Relaxed);
            loop {
                let live = current >> 32;
                let offset = current & OFFSET_MASK;
                // align is a power of two no larger than HEAP_ALIGN; offset and
                // size are bounded by HEAP_SIZE and isize::MAX, so no overflow.
                let start = (offset + align - 1) & !(align - 1);
                let Some(end) = start.checked_add(size) else {
                    return core::ptr::null_mut();
                };
                if end > HEAP_SIZE as u64 || live == OFFSET_MASK {
                    return core::ptr::null_mut();
                }
                let next = ((live + 1) << 32) | end;
                match self.state.compare_exchange_weak(
                    current,
                    next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    // SAFETY: `start + size <= HEAP_SIZE`, so the offset stays
                    // inside the arena (or one past its end for a zero-size
                    // allocation at the very end).
                    Ok(_) => return unsafe { Self::base().add(start as usize) },
                    Err(seen) => current = seen,
                }
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let start = (ptr as usize).wrapping_sub(Self::base() as usize) as u64;
            let end = start + layout.size() as u64;
            let mut current = self.state.load(Ordering::Relaxed);
            loop {
                let live = (current >> 32).saturating_sub(1);
                let offset = current & OFFSET_MASK;
                let new_offset = if live == 0 {
                    0
                } else if end == offset {
                    start
                } else {
                    offset
                };
                let next = (live << 32) | new_offset;
                match self.state.compare_exchange_weak(
                    current,
                    next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(seen) => current = seen,
                }
            }
        }
    }

    #[cfg_attr(panic = "abort", global_allocator)]
    pub(crate) static ALLOCATOR: BumpAllocator = BumpAllocator::new();
}

// ---------------------------------------------------------------------------
// The PVM program
// ---------------------------------------------------------------------------

fn reg(i: u8) -> Reg {
    Reg::clamped(i)
}

/// The program, given the code offsets of its two labels (`head`, `done`):
///
/// ```text
///         load_imm r8, 0               ; sum = 0
///         fallthrough                  ; ends the block: `head` is in ϖ
/// head:   branch_eq_imm r7, 0, done    ; while n != 0
///         add_64 r8, r8, r7            ;   sum += n
///         add_imm_64 r7, r7, -1        ;   n -= 1
///         jump head
/// done:   move_reg r7, r8              ; r7 = sum
///         jump_ind r0, 0               ; r0 = HALT_ADDRESS: halt
/// ```
fn instructions(head: u32, done: u32) -> [Instruction; 8] {
    [
        Instruction::LoadImm(RegImm { a: reg(8), imm: 0 }),
        Instruction::Fallthrough(NoArgs),
        Instruction::BranchEqImm(RegImmOffset {
            a: reg(7),
            imm: 0,
            target: done,
        }),
        Instruction::Add64(ThreeReg {
            a: reg(8),
            b: reg(7),
            d: reg(8),
        }),
        Instruction::AddImm64(TwoRegImm {
            a: reg(7),
            b: reg(7),
            imm: u32::MAX, // sign-extends to -1
        }),
        Instruction::Jump(OneOffset { target: head }),
        Instruction::MoveReg(TwoReg {
            d: reg(7),
            a: reg(8),
        }),
        Instruction::JumpInd(RegImm { a: reg(0), imm: 0 }),
    ]
}

/// Index of the instruction labelled `head`.
const HEAD: usize = 2;
/// Index of the instruction labelled `done`.
const DONE: usize = 6;

/// Encodes the program with `pvm-core`'s encoder (GP 0.8.0 opcode numbers)
/// into a blob: label offsets are iterated to a fixed point, since the
/// length of an offset's encoding depends on the offsets themselves.
fn assemble() -> Option<Blob> {
    let (mut head, mut done) = (0u32, 0u32);
    for _ in 0..8 {
        let mut code = Vec::new();
        let mut starts = Vec::new();
        for inst in instructions(head, done) {
            let pc = u32::try_from(code.len()).ok()?;
            starts.push(pc);
            codec::encode(Profile::V0_8, &inst, pc, &mut code)?;
        }
        if (starts[HEAD], starts[DONE]) == (head, done) {
            let mut bitmask = vec![0u8; code.len().div_ceil(8)];
            for &s in &starts {
                bitmask[s as usize / 8] |= 1 << (s % 8);
            }
            return Some(Blob {
                jump_table: Vec::new(),
                jump_table_entry_size: 0,
                code,
                bitmask,
            });
        }
        (head, done) = (starts[HEAD], starts[DONE]);
    }
    None
}

/// Runs the summing program: returns `1 + 2 + … + n` (wrapping), computed by
/// the PVM interpreter, or `u64::MAX` if anything fails.
///
/// The blob goes through `to_bytes` and [`Program::from_bytes`], so the blob
/// codec and GP 0.8.0 validation run as well.
#[no_mangle]
pub extern "C" fn pvm_nostd_run(n: u64) -> u64 {
    let Some(blob) = assemble() else {
        return u64::MAX;
    };
    let Ok(program) = Program::from_bytes(&blob.to_bytes(), Profile::V0_8) else {
        return u64::MAX;
    };
    // Ample gas: the check is about running without std, not about cost
    // (the 0.8 default is the GP pipeline model, a few units per instruction).
    let gas = u64::MAX / 2;
    let mut vm = Vm::new(&program, PagedMemory::new(), 0, gas);
    vm.set_reg(0, u64::from(HALT_ADDRESS));
    vm.set_reg(7, n);
    match vm.run() {
        Ok(Exit::Halt) => vm.reg(7),
        _ => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::bump::{ALLOCATOR, HEAP_SIZE};
    use super::pvm_nostd_run;
    use core::alloc::{GlobalAlloc, Layout};

    #[test]
    fn sums_in_the_interpreter() {
        assert_eq!(pvm_nostd_run(10), 55);
        assert_eq!(pvm_nostd_run(0), 0);
        assert_eq!(pvm_nostd_run(1), 1);
        assert_eq!(pvm_nostd_run(1000), 500_500);
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    // The only test that uses the bump allocator, so it sees its whole state.
    #[test]
    fn bump_allocator() {
        let l100 = layout(100, 8);
        // SAFETY: every pointer is used within the size it was allocated with
        // and freed exactly once, with the layout it was allocated with; null
        // is checked before use.
        let first = unsafe {
            let a = ALLOCATOR.alloc(l100);
            let b = ALLOCATOR.alloc(l100);
            assert!(!a.is_null() && !b.is_null());
            assert!(b as usize >= a as usize + 100, "disjoint");
            assert_eq!(b as usize % 8, 0);
            a.write_bytes(0xAA, 100);
            b.write_bytes(0xBB, 100);
            assert_eq!(a.add(99).read(), 0xAA);
            // Freeing the most recent allocation reclaims it.
            ALLOCATOR.dealloc(b, l100);
            let c = ALLOCATOR.alloc(l100);
            assert_eq!(c, b);
            // Alignment is honoured.
            let l64 = layout(8, 64);
            let d = ALLOCATOR.alloc(l64);
            assert!(!d.is_null());
            assert_eq!(d as usize % 64, 0);
            // Too big or too aligned: null, nothing reserved.
            assert!(ALLOCATOR.alloc(layout(HEAP_SIZE + 1, 1)).is_null());
            assert!(ALLOCATOR.alloc(layout(8, 8192)).is_null());
            // Out of order frees; once nothing is live the arena is reused.
            ALLOCATOR.dealloc(a, l100);
            ALLOCATOR.dealloc(d, l64);
            ALLOCATOR.dealloc(c, l100);
            let e = ALLOCATOR.alloc(l100);
            assert_eq!(e, a);
            // The whole arena can be handed out.
            let big = layout(HEAP_SIZE - 128, 8);
            let f = ALLOCATOR.alloc(big);
            assert!(!f.is_null());
            assert!(ALLOCATOR.alloc(layout(64, 8)).is_null());
            ALLOCATOR.dealloc(f, big);
            ALLOCATOR.dealloc(e, l100);
            a
        };

        // Threads allocating, writing and freeing at the same time never
        // get overlapping memory.
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let l = layout(64, 8);
                    for round in 0..2000u32 {
                        // SAFETY: as above; each thread only touches the
                        // 64 bytes it was given, before freeing them.
                        unsafe {
                            let p = ALLOCATOR.alloc(l);
                            assert!(!p.is_null());
                            let v = t ^ round as u8;
                            p.write_bytes(v, 64);
                            std::thread::yield_now();
                            for k in 0..64 {
                                assert_eq!(p.add(k).read(), v, "overlap");
                            }
                            ALLOCATOR.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: as above.
        unsafe {
            let g = ALLOCATOR.alloc(l100);
            assert_eq!(g, first, "everything was freed: the arena starts over");
            ALLOCATOR.dealloc(g, l100);
        }
    }
}
