//! Sandbox tests: a guest cannot read or write host memory.
//!
//! The host allocates buffers with known secret bytes (on the heap, on the
//! stack, in a static) and runs guests whose loads, stores and dynamic jumps
//! use addresses derived from the host pointers: the full 64-bit pointer in
//! the base register of `load_ind`/`store_ind` (the PVM truncates effective
//! addresses to 32 bits), its low 32 bits as an absolute address, the pointer
//! plus and minus offsets, its high half, addresses next to 2^32 with 8-byte
//! accesses (the guard after the 4 GiB window), 0 and addresses below
//! 0x10000, and a seeded random sweep. Every run is compared with the
//! interpreter (`pvm_core::Vm`) over both `FlatMemory` and `PagedMemory` on
//! the same program, registers, gas and memory layout: same exit (page fault
//! address, panic, ...), pc, registers, gas, charged flag and guest page
//! contents. After every run the host buffers must be unchanged, and a load
//! that succeeds must have read guest bytes, never a secret byte.
//!
//! Also here: read-only pages cannot be written, unmapping then remapping
//! reads zeros, and several threads run guests that fault repeatedly at the
//! same time, each getting its own exits.
//!
//! Every case runs on the JIT in both memory-check modes
//! (`MemoryChecks::Hardware`: page protection and the SIGSEGV handler;
//! `MemoryChecks::Explicit`: a check before every access).
//!
//! The JIT exists on Linux x86-64 with the `recompiler` feature only:
//! elsewhere this file compiles to nothing. Where the CPU lacks what the JIT
//! needs (`pvm_jit::is_available()`), each test prints why and returns.
#![cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]

mod common;
use common::program;

use pvm_core::{
    Access, Error, Exit, FlatMemory, Memory, PagedMemory, Program, Vm, HALT_ADDRESS, PAGE_SIZE,
};
use pvm_jit::{JitInstance, MemoryChecks};
use std::hint::black_box;
use std::sync::{Arc, Barrier};

/// Secret byte of the heap buffer.
const HEAP_SECRET: u8 = 0xA5;
/// Secret byte of the stack buffer.
const STACK_SECRET: u8 = 0x5A;
/// Secret byte of the static buffer.
const STATIC_SECRET: u8 = 0xC3;
/// A read-only host static the guest tries to read.
static STATIC_BUF: [u64; 1024] = [word(STATIC_SECRET); 1024];

/// A word all of whose bytes are `b`.
const fn word(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The value stores write: none of its bytes is a secret byte.
const STORE_VALUE: u64 = 0x1122_3344_5566_7788;

/// The guest's own bytes: 0x00..=0x3F, never a secret byte.
fn guest_byte(addr: u32) -> u8 {
    (addr.wrapping_mul(0x9E37_79B1) >> 26) as u8
}

fn is_secret_byte(b: u8) -> bool {
    b == HEAP_SECRET || b == STACK_SECRET || b == STATIC_SECRET
}

/// The ways the JIT keeps guest accesses in bounds (page protection with
/// segment or base-register addressing, explicit checks); every test runs
/// each.
const MODES: [MemoryChecks; 3] = [
    MemoryChecks::Hardware,
    MemoryChecks::HardwareNoSegment,
    MemoryChecks::Explicit,
];

/// Whether the JIT runs on this machine; if not, says why (the test then
/// returns without checking anything).
fn jit_usable() -> bool {
    assert!(pvm_jit::is_supported());
    if !pvm_jit::is_available() {
        eprintln!("skipping: the recompiler cannot run on this CPU");
        return false;
    }
    match JitInstance::new(&program("trap\n")) {
        Ok(_) => true,
        Err(Error::Unsupported(why)) => {
            eprintln!("skipping: the JIT cannot run here: {why}");
            false
        }
        Err(e) => panic!("JitInstance::new failed: {e}"),
    }
}

/// Guest pages and their access; each is filled with `guest_byte`.
#[derive(Clone, Debug, Default)]
struct Layout {
    pages: Vec<(u32, Access)>,
    /// The initial contents of each page of `pages`.
    images: Vec<Vec<u8>>,
}

impl Layout {
    fn add(&mut self, page: u32, access: Access) {
        if let Some(e) = self.pages.iter_mut().find(|e| e.0 == page) {
            e.1 = access;
        } else {
            self.pages.push((page, access));
            self.images.push(Self::page_image(page));
        }
    }

    fn page_image(page: u32) -> Vec<u8> {
        (0..PAGE_SIZE)
            .map(|k| guest_byte(page * PAGE_SIZE + k))
            .collect()
    }

    fn apply_jit(&self, vm: &mut JitInstance) {
        for (&(page, access), image) in self.pages.iter().zip(&self.images) {
            vm.map(page, 1, access);
            if access != Access::None {
                assert!(vm.poke(page * PAGE_SIZE, image));
            }
        }
    }

    fn apply_mem<M: Memory>(&self, m: &mut M) {
        for (&(page, access), image) in self.pages.iter().zip(&self.images) {
            if access == Access::None {
                m.set_access(page, 1, Access::None);
                continue;
            }
            // Filled through a writable mapping, then set to its access
            // (which keeps the contents). Pages below 0x10000 cannot be
            // written by the interpreter's rules; nothing can read them
            // either, so they stay zero there.
            m.set_access(page, 1, Access::Write);
            let _ = m.write(page * PAGE_SIZE, image);
            m.set_access(page, 1, access);
        }
    }

    /// Contents of the pages every machine can read (at or above 0x10000).
    fn comparable(&self) -> impl Iterator<Item = u32> + '_ {
        self.pages
            .iter()
            .filter(|&&(p, a)| p >= 16 && a != Access::None)
            .map(|&(p, _)| p)
    }
}

/// Everything a run leaves behind that the backends must agree on.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    exit: Exit,
    pc: u32,
    regs: [u64; 13],
    gas: u64,
    charged: bool,
    finished: bool,
    pages: Vec<(u32, Vec<u8>)>,
}

fn read_pages<F: FnMut(u32, &mut [u8])>(layout: &Layout, mut read: F) -> Vec<(u32, Vec<u8>)> {
    layout
        .comparable()
        .map(|page| {
            let mut buf = vec![0u8; PAGE_SIZE as usize];
            read(page * PAGE_SIZE, &mut buf);
            (page, buf)
        })
        .collect()
}

/// One program over one layout on the JIT (in both memory-check modes) and
/// on the interpreter with both memories. Reused across cases: after each run
/// the state is reset and the pages a store changed are restored.
struct Machines<'a> {
    p: &'a Program,
    layout: &'a Layout,
    /// One instance per entry of `MODES`.
    jits: Vec<JitInstance>,
    flat: Option<FlatMemory>,
    paged: Option<PagedMemory>,
}

impl<'a> Machines<'a> {
    fn new(p: &'a Program, layout: &'a Layout) -> Self {
        let jits = MODES
            .iter()
            .map(|&checks| {
                let mut jit = JitInstance::with_checks(p, checks).unwrap();
                layout.apply_jit(&mut jit);
                jit
            })
            .collect();
        let mut flat = FlatMemory::new();
        layout.apply_mem(&mut flat);
        let mut paged = PagedMemory::new();
        layout.apply_mem(&mut paged);
        Machines {
            p,
            layout,
            jits,
            flat: Some(flat),
            paged: Some(paged),
        }
    }

    /// Puts back the initial contents of the pages that differ.
    fn restore(layout: &Layout, out: &Outcome, mut fix: impl FnMut(u32, &[u8])) {
        for (page, bytes) in &out.pages {
            let k = layout.pages.iter().position(|e| e.0 == *page).unwrap();
            if *bytes != layout.images[k] {
                fix(*page, &layout.images[k]);
            }
        }
    }

    fn run_jit(vm: &mut JitInstance, layout: &Layout, regs: &[u64; 13], gas: u64) -> Outcome {
        vm.set_pc(0);
        vm.set_gas_charged(false);
        *vm.regs_mut() = *regs;
        vm.set_gas(gas);
        let exit = vm.run().unwrap();
        let out = Outcome {
            exit,
            pc: vm.pc(),
            regs: *vm.regs(),
            gas: vm.gas(),
            charged: vm.gas_charged(),
            finished: vm.is_finished(),
            pages: read_pages(layout, |a, b| vm.read(a, b).unwrap()),
        };
        Self::restore(layout, &out, |page, image| {
            assert!(vm.poke(page * PAGE_SIZE, image));
        });
        out
    }

    fn run_interp<M: Memory>(
        p: &Program,
        layout: &Layout,
        mem: &mut Option<M>,
        regs: &[u64; 13],
        gas: u64,
    ) -> Outcome {
        let mut vm = Vm::new(p, mem.take().unwrap(), 0, gas);
        *vm.regs_mut() = *regs;
        let exit = vm.run().unwrap();
        let out = Outcome {
            exit,
            pc: vm.pc(),
            regs: *vm.regs(),
            gas: vm.gas(),
            charged: vm.gas_charged(),
            finished: vm.is_finished(),
            pages: read_pages(layout, |a, b| vm.memory_mut().read(a, b).unwrap()),
        };
        let mut m = vm.into_memory();
        Self::restore(layout, &out, |page, image| {
            let access = m.page_access(page);
            m.set_access(page, 1, Access::Write);
            m.write(page * PAGE_SIZE, image).unwrap();
            m.set_access(page, 1, access);
        });
        *mem = Some(m);
        out
    }

    /// Runs the case on the JIT in both modes and on the interpreter with
    /// both memories, asserts they all agree and that the host is untouched
    /// after each JIT run; returns the outcome.
    fn check(&mut self, host: &Host, text: &str, regs: &[u64; 13], gas: u64) -> Outcome {
        let what = || format!("{text:?} with regs {regs:#x?}, gas {gas}");
        let flat = Self::run_interp(self.p, self.layout, &mut self.flat, regs, gas);
        let paged = Self::run_interp(self.p, self.layout, &mut self.paged, regs, gas);
        assert_eq!(flat, paged, "FlatMemory vs PagedMemory: {}", what());
        for (vm, checks) in self.jits.iter_mut().zip(MODES) {
            let jit = Self::run_jit(vm, self.layout, regs, gas);
            host.check(&|| format!("{} ({checks:?} checks)", what()));
            assert_eq!(
                jit,
                flat,
                "JIT ({checks:?} checks) vs interpreter: {}",
                what()
            );
        }
        flat
    }
}

/// The host memory the guests go after: a heap buffer, a stack buffer (owned
/// by the test function) and a static, all of secret bytes.
struct Host<'a> {
    heap: Box<[u64]>,
    stack: &'a mut [u64],
}

impl<'a> Host<'a> {
    fn new(heap_bytes: usize, stack: &'a mut [u64]) -> Self {
        Host {
            heap: vec![word(HEAP_SECRET); heap_bytes / 8].into_boxed_slice(),
            stack: black_box(stack),
        }
    }

    fn pointers(&self) -> Vec<u64> {
        let heap = self.heap.as_ptr() as u64;
        let stack = self.stack.as_ptr() as u64;
        let stat = STATIC_BUF.as_ptr() as u64;
        let local = 0u64;
        vec![
            heap,
            heap + self.heap.len() as u64 * 4,
            heap + self.heap.len() as u64 * 8 - 8,
            stack,
            stack + self.stack.len() as u64 * 4,
            stack + self.stack.len() as u64 * 8 - 8,
            stat,
            stat + 4096,
            black_box(&local) as *const u64 as u64,
            jit_usable as *const () as u64,
        ]
    }

    /// Every secret byte is still there.
    fn check(&self, what: &dyn Fn() -> String) {
        for (buf, secret, name) in [
            (&self.heap[..], HEAP_SECRET, "heap"),
            (&self.stack[..], STACK_SECRET, "stack"),
            (&STATIC_BUF[..], STATIC_SECRET, "static"),
        ] {
            for (k, w) in buf.iter().enumerate() {
                // SAFETY: `w` is a valid reference to an initialised word. A
                // volatile read keeps the compiler from assuming the buffer
                // is unchanged because no Rust code wrote it.
                let v = unsafe { core::ptr::read_volatile(w) };
                assert!(
                    v == word(secret),
                    "host {name} buffer word {k} changed to {v:#x} after {}",
                    what()
                );
            }
        }
    }
}

/// Addresses derived from a host pointer.
fn derived(p: u64) -> Vec<u64> {
    let lo = p & 0xFFFF_FFFF;
    vec![
        p,
        lo,
        p.wrapping_add(8),
        p.wrapping_sub(8),
        p.wrapping_add(4096),
        p.wrapping_sub(4096),
        p.wrapping_add(1 << 16),
        p.wrapping_sub(1 << 20),
        p.wrapping_add(1 << 32),
        p ^ (1 << 63),
        p >> 32,
        lo | 0xFFFF_FFFF_0000_0000,
        !p,
    ]
}

/// A guest memory instruction: how to spell it with base register `b`,
/// destination/source register `d` and offset `imm`, its width and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Load,
    Store,
    Jump,
}

#[derive(Clone, Copy, Debug)]
struct Op {
    name: &'static str,
    width: u32,
    kind: Kind,
    /// Absolute address in the immediate (no base register).
    absolute: bool,
}

const OPS: &[Op] = &[
    op("load_ind_u8", 1, Kind::Load, false),
    op("load_ind_i8", 1, Kind::Load, false),
    op("load_ind_u16", 2, Kind::Load, false),
    op("load_ind_i16", 2, Kind::Load, false),
    op("load_ind_u32", 4, Kind::Load, false),
    op("load_ind_i32", 4, Kind::Load, false),
    op("load_ind_u64", 8, Kind::Load, false),
    op("store_ind_u8", 1, Kind::Store, false),
    op("store_ind_u16", 2, Kind::Store, false),
    op("store_ind_u32", 4, Kind::Store, false),
    op("store_ind_u64", 8, Kind::Store, false),
    op("store_imm_ind_u8", 1, Kind::Store, false),
    op("store_imm_ind_u16", 2, Kind::Store, false),
    op("store_imm_ind_u32", 4, Kind::Store, false),
    op("store_imm_ind_u64", 8, Kind::Store, false),
    op("load_u8", 1, Kind::Load, true),
    op("load_i16", 2, Kind::Load, true),
    op("load_u32", 4, Kind::Load, true),
    op("load_u64", 8, Kind::Load, true),
    op("store_u8", 1, Kind::Store, true),
    op("store_u64", 8, Kind::Store, true),
    op("store_imm_u16", 2, Kind::Store, true),
    op("store_imm_u64", 8, Kind::Store, true),
    op("jump_ind", 0, Kind::Jump, false),
    op("load_imm_jump_ind", 0, Kind::Jump, false),
];

const fn op(name: &'static str, width: u32, kind: Kind, absolute: bool) -> Op {
    Op {
        name,
        width,
        kind,
        absolute,
    }
}

/// The program: the instruction, then `ecalli 7` (reached only if it
/// succeeded), then `trap`. Jumps go through a two-entry jump table whose
/// targets report `ecalli 1` / `ecalli 2`.
fn op_program(op: &Op, b: usize, d: usize, imm: u32) -> String {
    let imm2 = 0x5566_7788u32; // stored immediates: no secret byte
    let inst = match (op.kind, op.absolute, op.name) {
        (Kind::Jump, _, "jump_ind") => format!("jump_ind r{b}, {imm:#x}"),
        (Kind::Jump, _, _) => format!("load_imm_jump_ind r{d}, r{b}, 0x77, {imm:#x}"),
        (Kind::Load, false, n) => format!("{n} r{d}, r{b}, {imm:#x}"),
        (Kind::Load, true, n) => format!("{n} r{d}, {imm:#x}"),
        (Kind::Store, false, n) if n.starts_with("store_imm") => {
            format!("{n} r{b}, {imm:#x}, {imm2:#x}")
        }
        (Kind::Store, false, n) => format!("{n} r{d}, r{b}, {imm:#x}"),
        (Kind::Store, true, n) if n.starts_with("store_imm") => {
            format!("{n} {imm:#x}, {imm2:#x}")
        }
        (Kind::Store, true, n) => format!("{n} r{d}, {imm:#x}"),
    };
    if op.kind == Kind::Jump {
        format!(".jump_table one, two\n{inst}\none:\necalli 1\ntrap\ntwo:\necalli 2\ntrap\n")
    } else {
        format!("{inst}\necalli 7\ntrap\n")
    }
}

/// Runs `text` on fresh machines (see [`Machines::check`]).
fn check_case(
    host: &Host,
    p: &Program,
    text: &str,
    layout: &Layout,
    regs: &[u64; 13],
    gas: u64,
) -> Outcome {
    Machines::new(p, layout).check(host, text, regs, gas)
}

/// Checks the semantic properties of one memory/jump instruction run, on
/// top of the agreement with the interpreter: a load that completed read
/// guest bytes only; a jump to anything but the halt address or a jump-table
/// entry panicked.
fn check_semantics(op: &Op, out: &Outcome, b: usize, d: usize, imm: u32, regs: &[u64; 13]) {
    match op.kind {
        Kind::Load if out.exit == Exit::HostCall(7) => {
            let v = out.regs[d];
            for k in 0..op.width {
                let byte = (v >> (8 * k)) as u8;
                assert!(
                    !is_secret_byte(byte),
                    "{} returned a secret byte: {v:#x}",
                    op.name
                );
            }
        }
        Kind::Load | Kind::Store => {
            assert!(
                matches!(
                    out.exit,
                    Exit::HostCall(7) | Exit::PageFault(_) | Exit::Panic | Exit::OutOfGas
                ),
                "{}: unexpected exit {:?}",
                op.name,
                out.exit
            );
            if let Exit::PageFault(a) = out.exit {
                assert!(
                    a >= 0x10000 && a % PAGE_SIZE == 0,
                    "bad fault address {a:#x}"
                );
            }
        }
        Kind::Jump => {
            let target = regs[b].wrapping_add(imm as i32 as u64) as u32;
            if out.exit != Exit::OutOfGas && target != HALT_ADDRESS && target != 2 && target != 4 {
                assert_eq!(
                    out.exit,
                    Exit::Panic,
                    "{} to {target:#x} did not panic",
                    op.name
                );
            }
        }
    }
}

fn base_regs(host_ptrs: &[u64]) -> [u64; 13] {
    let mut regs = [0u64; 13];
    for (k, r) in regs.iter_mut().enumerate() {
        *r = host_ptrs[k % host_ptrs.len()];
    }
    regs
}

/// The layout most tests use: the guest pages at the low 32 bits of the host
/// pointers (and of the pointers ± 8) in `access`, the top page, the low pages
/// (which stay unreachable whatever is mapped) and a couple of ordinary ones.
fn host_shadow_layout(ptrs: &[u64], access: Access) -> Layout {
    let mut l = Layout::default();
    for &p in ptrs {
        // The pages of the low half and of the 8 bytes either side.
        for a in [p.wrapping_sub(8), p, p.wrapping_add(8)] {
            l.add((a as u32) / PAGE_SIZE, access);
        }
    }
    l.add(0xFFFFF, Access::Write);
    l.add(0x10, Access::Write);
    l.add(0x11, Access::Read);
    l.add(0, Access::Write);
    l.add(15, Access::Write);
    l
}

#[test]
fn host_derived_addresses_never_reach_host_memory() {
    if !jit_usable() {
        return;
    }
    let mut stack = [word(STACK_SECRET); 1024];
    let host = Host::new(64 << 10, &mut stack);
    let ptrs = host.pointers();
    let addrs: Vec<u64> = ptrs.iter().flat_map(|&p| derived(p)).collect();
    let layouts = [
        Layout::default(),
        host_shadow_layout(&ptrs, Access::Write),
        host_shadow_layout(&ptrs, Access::Read),
    ];
    let (b, d) = (8, 9);
    let mut cases = 0;
    let mut faults = 0;
    let mut ok = 0;
    for o in OPS {
        for &imm in &[0u32, 0xFFFF_FFF8] {
            // Register-addressed: one program, the address in r8.
            let reg_prog = (!o.absolute).then(|| {
                let text = op_program(o, b, d, imm);
                (program(&text), text)
            });
            for (li, layout) in layouts.iter().enumerate() {
                // The absolute forms ignore `imm`; run them once per layout.
                if o.absolute && imm != 0 {
                    continue;
                }
                let mut shared = reg_prog.as_ref().map(|(p, _)| Machines::new(p, layout));
                // Register-addressed guests also aim at the JIT instance's
                // own host-side state: its registers (the context block the
                // native code addresses) and its memory descriptor.
                let mut targets = addrs.clone();
                if let Some(m) = &shared {
                    for jit in &m.jits {
                        targets.extend(derived(jit.regs().as_ptr() as u64));
                        targets.extend(derived(jit.memory() as *const _ as u64));
                    }
                }
                for &a in &targets {
                    let mut regs = base_regs(&ptrs);
                    regs[d] = STORE_VALUE;
                    let text;
                    let (out, eff) = match (&mut shared, &reg_prog) {
                        (Some(m), Some((_, t))) => {
                            regs[b] = a;
                            text = t.clone();
                            let eff = a.wrapping_add(imm as i32 as u64) as u32;
                            (m.check(&host, &text, &regs, 100), eff)
                        }
                        _ => {
                            text = op_program(o, b, d, a as u32);
                            let p = program(&text);
                            (check_case(&host, &p, &text, layout, &regs, 100), a as u32)
                        }
                    };
                    check_semantics(o, &out, b, d, imm, &regs);
                    // With nothing mapped, every access traps exactly where
                    // the GP says: the page of the lowest byte, or a panic
                    // below 0x10000 (an access that wraps past 2^32 reaches
                    // address 0 and panics).
                    if li == 0 && o.kind != Kind::Jump {
                        let wraps = u64::from(eff) + u64::from(o.width) > 1 << 32;
                        let want = if eff < 0x10000 || wraps {
                            Exit::Panic
                        } else {
                            Exit::PageFault(eff & !(PAGE_SIZE - 1))
                        };
                        assert_eq!(out.exit, want, "{text:?} with r8 = {a:#x}");
                        assert_eq!(out.pc, 0);
                    }
                    match out.exit {
                        Exit::PageFault(_) => faults += 1,
                        Exit::HostCall(7) => ok += 1,
                        _ => {}
                    }
                    cases += 1;
                }
            }
        }
    }
    eprintln!("{cases} cases: {faults} page faults, {ok} accesses to guest pages");
    assert!(faults > 100 && ok > 100, "the cases exercise both outcomes");
}

/// The effective address is taken mod 2^32 even when the 64-bit register
/// holds a full host pointer: the access lands on the guest page of the low
/// half, and reads back what the guest stored there.
#[test]
fn full_host_pointer_is_truncated_to_a_guest_address() {
    if !jit_usable() {
        return;
    }
    let mut stack = [word(STACK_SECRET); 1024];
    let host = Host::new(64 << 10, &mut stack);
    let text = "store_ind_u64 r9, r8, 0\nload_ind_u64 r10, r8, 0\nload_ind_u64 r11, r12, 0\necalli 7\ntrap\n";
    let p = program(text);
    for &ptr in &host.pointers() {
        let lo = (ptr as u32) & !7;
        if lo < 0x10000 {
            continue;
        }
        let full = (ptr & !0xFFFF_FFFF) | u64::from(lo);
        let mut layout = Layout::default();
        layout.add(lo / PAGE_SIZE, Access::Write);
        let mut regs = [0u64; 13];
        regs[8] = full;
        regs[9] = STORE_VALUE;
        regs[12] = ptr.wrapping_add(1 << 32) & !7; // another alias of the same low half
        let out = check_case(&host, &p, text, &layout, &regs, 100);
        assert_eq!(out.exit, Exit::HostCall(7));
        assert_eq!(out.regs[10], STORE_VALUE);
        assert_eq!(out.regs[11], STORE_VALUE);
        let page = &out.pages[0].1;
        let off = (lo % PAGE_SIZE) as usize;
        assert_eq!(page[off..off + 8], STORE_VALUE.to_le_bytes());
    }
}

/// 1-, 2-, 4- and 8-byte accesses at the top of the 4 GiB space: the bytes
/// past 2^32 wrap to address 0 (a panic), and those that stay below fault or
/// succeed by the page's access. Natively they land in the guard after the
/// window.
#[test]
fn accesses_at_the_top_of_the_address_space() {
    if !jit_usable() {
        return;
    }
    let mut stack = [word(STACK_SECRET); 1024];
    let host = Host::new(4096, &mut stack);
    let high = host.pointers()[0] & !0xFFFF_FFFF;
    let mut layouts = vec![Layout::default()];
    for access in [Access::Read, Access::Write] {
        let mut l = Layout::default();
        l.add(0xFFFFF, access);
        l.add(0xFFFFE, Access::Write);
        l.add(0, Access::Write);
        layouts.push(l);
    }
    let bases: Vec<u64> = (0xFFFF_EFF8u64..0xFFFF_F000)
        .chain(0xFFFF_FFF0..=0xFFFF_FFFF)
        .collect();
    let highs = [0, high, 0xFFFF_FFFF_0000_0000];
    let mut panics = 0;
    let mut check = |o: &Op, m: &mut Machines, text: &str, regs: &[u64; 13], imm: u32, eff: u64| {
        let out = m.check(&host, text, regs, 100);
        check_semantics(o, &out, 8, 9, imm, regs);
        if eff + u64::from(o.width) > 1 << 32 {
            assert_eq!(out.exit, Exit::Panic, "{text:?} at {eff:#x}");
            panics += 1;
        }
    };
    for o in OPS.iter().filter(|o| o.kind != Kind::Jump) {
        for layout in &layouts {
            let mut regs = [0u64; 13];
            regs[9] = STORE_VALUE;
            if o.absolute {
                for &base in &bases {
                    let text = op_program(o, 8, 9, base as u32);
                    let p = program(&text);
                    check(o, &mut Machines::new(&p, layout), &text, &regs, 0, base);
                }
                continue;
            }
            // The address in the base register (with any high half).
            let text = op_program(o, 8, 9, 0);
            let p = program(&text);
            let mut m = Machines::new(&p, layout);
            for &base in &bases {
                for hi in highs {
                    regs[8] = hi | base;
                    check(o, &mut m, &text, &regs, 0, base);
                }
            }
            // The address in the (sign-extended, negative) offset, the base
            // register holding only a high half or 0.
            for &base in &bases {
                let text = op_program(o, 8, 9, base as u32);
                let p = program(&text);
                let mut m = Machines::new(&p, layout);
                for hi in highs {
                    regs[8] = hi;
                    check(o, &mut m, &text, &regs, base as u32, base);
                }
            }
        }
    }
    assert!(panics > 0);
}

/// Addresses below 0x10000 panic even when the guest mapped those pages,
/// including an address computed by wrapping a base register plus offset.
#[test]
fn low_addresses_panic() {
    if !jit_usable() {
        return;
    }
    let mut stack = [word(STACK_SECRET); 1024];
    let host = Host::new(4096, &mut stack);
    let mut mapped = Layout::default();
    for pg in 0..17 {
        mapped.add(pg, Access::Write);
    }
    let high = host.pointers()[3] & !0xFFFF_FFFF;
    for o in OPS.iter().filter(|o| o.kind != Kind::Jump) {
        for &a in &[0u64, 1, 8, 0xFFF, 0x1000, 0x8000, 0xFFF8, 0xFFFF, 0xFFFC] {
            for (base, imm) in [
                (a, 0u32),
                (high | a, 0),
                (a.wrapping_sub(16) & 0xFFFF_FFFF, 16),
                (a.wrapping_add(0x1000), 0xFFFF_F000),
            ] {
                let text = if o.absolute {
                    op_program(o, 8, 9, a as u32)
                } else {
                    op_program(o, 8, 9, imm)
                };
                let p = program(&text);
                let mut regs = [0u64; 13];
                regs[8] = base;
                regs[9] = STORE_VALUE;
                for layout in [&Layout::default(), &mapped] {
                    let out = check_case(&host, &p, &text, layout, &regs, 100);
                    // 0xFFFF + 2 bytes crosses into 0x10000, still panics
                    // (the lowest bad byte is below 0x10000).
                    assert_eq!(out.exit, Exit::Panic, "{text:?} at {base:#x}+{imm:#x}");
                    assert!(out.finished);
                    assert_eq!(out.pc, 0);
                }
            }
        }
    }
}

/// Dynamic jumps to host-derived addresses panic (or halt / follow the jump
/// table exactly when the truncated address says so, as the interpreter).
#[test]
fn jumps_to_host_addresses_panic() {
    if !jit_usable() {
        return;
    }
    let mut stack = [word(STACK_SECRET); 1024];
    let host = Host::new(4096, &mut stack);
    let ptrs = host.pointers();
    let mut panics = 0;
    for o in OPS.iter().filter(|o| o.kind == Kind::Jump) {
        for imm in [0u32, 2, 0xFFFF_FFFE, 0x1000] {
            let text = op_program(o, 8, 9, imm);
            let p = program(&text);
            for &a in ptrs
                .iter()
                .flat_map(|&p| derived(p))
                .collect::<Vec<_>>()
                .iter()
            {
                let mut regs = base_regs(&ptrs);
                regs[8] = a;
                let out = check_case(&host, &p, &text, &Layout::default(), &regs, 100);
                check_semantics(o, &out, 8, 9, imm, &regs);
                if out.exit == Exit::Panic {
                    panics += 1;
                }
            }
        }
    }
    assert!(panics > 100);
    // And the legitimate targets still work, with a host pointer's high half.
    for (o, target, want) in [
        (&OPS[OPS.len() - 2], 2u64, Exit::HostCall(1)),
        (&OPS[OPS.len() - 1], 4, Exit::HostCall(2)),
        (&OPS[OPS.len() - 2], u64::from(HALT_ADDRESS), Exit::Halt),
    ] {
        let text = op_program(o, 8, 9, 0);
        let mut regs = [0u64; 13];
        regs[8] = (ptrs[0] & !0xFFFF_FFFF) | target;
        let out = check_case(
            &host,
            &program(&text),
            &text,
            &Layout::default(),
            &regs,
            100,
        );
        assert_eq!(out.exit, want);
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A seeded random sweep: random instruction, registers, base value, offset
/// and gas, addresses biased towards host pointers (full, truncated, offset,
/// with random high halves), the top of the space and low memory.
#[test]
fn random_sweep_matches_interpreter() {
    if !jit_usable() {
        return;
    }
    let seed = std::env::var("PVM_SANDBOX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5A4D_B0C5_u64);
    let cases: usize = std::env::var("PVM_SANDBOX_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6000);
    eprintln!("random sweep: seed {seed:#x}, {cases} cases (PVM_SANDBOX_SEED / PVM_SANDBOX_CASES)");
    let mut rng = Rng(seed);
    let mut stack = [word(STACK_SECRET); 1024];
    let host = Host::new(64 << 10, &mut stack);
    let ptrs = host.pointers();
    let mut layout = host_shadow_layout(&ptrs, Access::Write);
    for (k, &p) in ptrs.iter().enumerate() {
        if k % 3 == 0 && (p as u32) >= 0x10000 {
            layout.add((p as u32) / PAGE_SIZE, Access::Read);
        }
    }
    let value = |rng: &mut Rng| -> u64 {
        let p = rng.pick(&ptrs);
        match rng.below(10) {
            0 => rng.next(),
            1 => p.wrapping_add(rng.below(1 << 17)).wrapping_sub(1 << 16),
            2 => p & 0xFFFF_FFFF,
            3 => (rng.next() & !0xFFFF_FFFF) | (p & 0xFFFF_FFFF),
            4 => (0xFFFF_FFF0 + rng.below(16)) | (rng.pick(&[0, p, u64::MAX]) & !0xFFFF_FFFF),
            5 => rng.below(0x10010),
            6 => p >> 32,
            7 => p.wrapping_add(rng.below(64)) & !3,
            _ => p,
        }
    };
    // Each random program runs from several random register states.
    const STATES: usize = 15;
    for _ in 0..cases.div_ceil(STATES) {
        let o = &rng.pick(OPS);
        let b = rng.below(13) as usize;
        let d = rng.below(13) as usize;
        let imm = match rng.below(5) {
            0 => 0,
            1 => rng.below(4096) as u32,
            2 => (rng.below(4096) as u32).wrapping_neg(),
            3 => rng.next() as u32,
            _ => value(&mut rng) as u32,
        };
        let text = op_program(o, b, d, imm);
        let p = program(&text);
        let mut m = Machines::new(&p, &layout);
        for _ in 0..STATES {
            let mut regs = [0u64; 13];
            for r in regs.iter_mut() {
                *r = value(&mut rng);
            }
            if rng.below(4) == 0 {
                regs[d] = STORE_VALUE;
            }
            let gas = if rng.below(20) == 0 {
                rng.below(3)
            } else {
                100
            };
            let out = m.check(&host, &text, &regs, gas);
            check_semantics(o, &out, b, d, imm, &regs);
        }
    }
}

/// Pages mapped read-only cannot be written: stores fault (also when they
/// start on a writable page and cross into a read-only one: nothing is
/// written at all), and the contents stay as they were. Unmapping then
/// remapping a page reads zeros, whether the guest dirtied it natively or
/// the host poked it, also for pages below 0x10000.
#[test]
fn read_only_pages_and_remapping() {
    if !jit_usable() {
        return;
    }
    for checks in MODES {
        read_only_pages_and_remapping_in(checks);
    }
}

fn read_only_pages_and_remapping_in(checks: MemoryChecks) {
    let text = "store_ind_u64 r9, r8, 0\nload_ind_u64 r10, r8, 0\necalli 7\ntrap\n";
    let p = program(text);
    let mut vm = JitInstance::with_checks(&p, checks).unwrap();
    let mut flat = Vm::new(&p, FlatMemory::new(), 0, 0);
    let image = Layout::page_image(0x31);
    vm.map(0x30, 1, Access::Write);
    vm.map(0x31, 1, Access::Read);
    assert!(vm.poke(0x31000, &image));
    flat.memory_mut().set_access(0x30, 1, Access::Write);
    flat.memory_mut().set_access(0x31, 1, Access::Write);
    flat.memory_mut().write(0x31000, &image).unwrap();
    flat.memory_mut().set_access(0x31, 1, Access::Read);

    fn attempt(vm: &mut JitInstance, flat: &mut Vm<'_, FlatMemory>, addr: u64) -> Exit {
        for (r, v) in [(8, addr), (9, STORE_VALUE), (10, 0)] {
            vm.set_reg(r, v);
            flat.set_reg(r, v);
        }
        vm.set_pc(0);
        flat.set_pc(0);
        vm.set_gas(100);
        flat.set_gas(100);
        vm.set_gas_charged(false);
        flat.set_gas_charged(false);
        let e = vm.run().unwrap();
        assert_eq!(e, flat.run().unwrap(), "store at {addr:#x}");
        assert_eq!(vm.regs(), flat.regs());
        assert_eq!((vm.pc(), vm.gas()), (flat.pc(), flat.gas()));
        e
    }
    // Read-only: faults, nothing written.
    for addr in [0x31000u64, 0x31008, 0x31FF8, 0x30FFC, 0x30FF9] {
        assert_eq!(
            attempt(&mut vm, &mut flat, addr),
            Exit::PageFault(0x31000),
            "store at {addr:#x} into a read-only page"
        );
        for a in 0x30FF0..0x31010u32 {
            let want = if a >= 0x31000 { guest_byte(a) } else { 0 };
            assert_eq!(vm.peek(a), want, "byte {a:#x} after a faulting store");
        }
    }
    // Reads of it work.
    let mut buf = [0u8; 8];
    vm.read(0x31008, &mut buf).unwrap();
    assert_eq!(buf[..], image[8..16]);
    // Made writable, the same store works; made read-only again, it faults
    // and the contents stay.
    vm.map(0x31, 1, Access::Write);
    flat.memory_mut().set_access(0x31, 1, Access::Write);
    assert_eq!(attempt(&mut vm, &mut flat, 0x31008), Exit::HostCall(7));
    assert_eq!(vm.reg(10), STORE_VALUE);
    vm.map(0x31, 1, Access::Read);
    flat.memory_mut().set_access(0x31, 1, Access::Read);
    assert_eq!(
        attempt(&mut vm, &mut flat, 0x31010),
        Exit::PageFault(0x31000)
    );
    vm.read(0x31008, &mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf), STORE_VALUE);
    assert!(
        vm.write(0x31008, &[1]).is_err(),
        "host write with PVM rules"
    );

    // Unmap then remap: zeros, after a native store and after a poke.
    assert_eq!(attempt(&mut vm, &mut flat, 0x30FF0), Exit::HostCall(7));
    for page in [0x30u32, 0x31] {
        vm.map(page, 1, Access::None);
        flat.memory_mut().set_access(page, 1, Access::None);
        assert_eq!(vm.peek(page * PAGE_SIZE + 0x10), 0);
        assert_eq!(
            attempt(&mut vm, &mut flat, u64::from(page * PAGE_SIZE + 8)),
            Exit::PageFault(page * PAGE_SIZE)
        );
    }
    for access in [Access::Read, Access::Write] {
        vm.map(0x30, 2, access);
        flat.memory_mut().set_access(0x30, 2, access);
        let mut all = vec![0u8; 2 * PAGE_SIZE as usize];
        vm.read(0x30000, &mut all).unwrap();
        assert!(all.iter().all(|&b| b == 0), "remapped pages are zero");
        // The guest reads zeros too.
        let text2 = "load_ind_u64 r10, r8, 0\necalli 7\ntrap\n";
        let mut reader = JitInstance::with_checks(&program(text2), checks).unwrap();
        reader.map(0x30, 2, Access::Write);
        reader.poke(0x30FF0, &[0xEE; 16]);
        reader.map(0x30, 2, Access::None);
        reader.map(0x30, 2, access);
        reader.set_reg(8, 0x30FFC);
        reader.set_gas(10);
        assert_eq!(reader.run(), Ok(Exit::HostCall(7)));
        assert_eq!(reader.reg(10), 0);
        vm.map(0x30, 2, Access::None);
        flat.memory_mut().set_access(0x30, 2, Access::None);
    }
    // A low page: poked, unmapped, remapped reads zero (and the guest still
    // cannot reach it).
    vm.map(3, 1, Access::Write);
    assert!(vm.poke(0x3010, &[0xEE; 8]));
    assert_eq!(vm.peek(0x3010), 0xEE);
    vm.map(3, 1, Access::None);
    vm.map(3, 1, Access::Write);
    assert_eq!(vm.peek(0x3010), 0);
    assert_eq!(attempt(&mut vm, &mut flat, 0x3010), Exit::Panic);
    assert_eq!(vm.peek(0x3010), 0);
}

/// One guest that faults on every page it walks: `r8` steps by `stride`
/// from `start`; each fault is checked against the interpreter run in
/// lockstep, then the page is mapped (and the previous one unmapped) and the
/// guest resumed.
fn fault_walk(
    checks: MemoryChecks,
    start: u32,
    stride: u32,
    faults: usize,
    barrier: &Barrier,
) -> usize {
    let text = "loop:\nstore_ind_u64 r7, r8, 0\nload_ind_u64 r9, r8, 0\nadd_imm_64 r8, r8, STRIDE\nadd_imm_64 r10, r10, 1\njump loop\n"
        .replace("STRIDE", &format!("{stride:#x}"));
    let p = program(&text);
    let mut vm = JitInstance::with_checks(&p, checks).unwrap();
    let mut interp = Vm::new(&p, PagedMemory::new(), 0, 0);
    let gas = 1 << 40;
    vm.set_gas(gas);
    interp.set_gas(gas);
    for (r, v) in [(7, STORE_VALUE ^ u64::from(start)), (8, u64::from(start))] {
        vm.set_reg(r, v);
        interp.set_reg(r, v);
    }
    barrier.wait();
    let mut prev = None;
    for k in 0..faults {
        let addr = start + k as u32 * stride;
        let e = vm.run().unwrap();
        assert_eq!(
            e,
            Exit::PageFault(addr & !(PAGE_SIZE - 1)),
            "fault {k} of the walk from {start:#x}"
        );
        assert_eq!(interp.run().unwrap(), e);
        assert_eq!(vm.regs(), interp.regs(), "fault {k} from {start:#x}");
        assert_eq!((vm.pc(), vm.gas()), (interp.pc(), interp.gas()));
        assert_eq!((vm.reg(10), vm.gas()), (k as u64, gas - 5 * (k as u64 + 1)));
        let page = addr / PAGE_SIZE;
        if let Some(prev) = prev {
            vm.map(prev, 1, Access::None);
            interp.memory_mut().set_access(prev, 1, Access::None);
        }
        vm.map(page, 1, Access::Write);
        interp.memory_mut().set_access(page, 1, Access::Write);
        prev = Some(page);
    }
    faults
}

/// Several threads run guests at the same time, each faulting thousands of
/// times at its own addresses (the fault handler finds the running instance
/// through a thread-local): every exit is this thread's own, exact one. Two
/// walkers use hardware checks, one explicit checks; a fourth thread runs
/// long guests (both modes) that panic at low addresses and hit out-of-gas
/// meanwhile.
#[test]
fn concurrent_guests_each_get_their_own_faults() {
    if !jit_usable() {
        return;
    }
    const FAULTS: usize = 3000;
    let barrier = Arc::new(Barrier::new(4));
    let walkers: Vec<_> = [
        (MemoryChecks::Hardware, 0x10000u32, 3 * PAGE_SIZE + 8),
        (MemoryChecks::Hardware, 0x8000_0FF8, 7 * PAGE_SIZE),
        (MemoryChecks::Explicit, 0x4000_0004, 5 * PAGE_SIZE),
    ]
    .into_iter()
    .map(|(checks, start, stride)| {
        let barrier = barrier.clone();
        std::thread::spawn(move || fault_walk(checks, start, stride, FAULTS, &barrier))
    })
    .collect();
    let other = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let p = program(
                "loop:\nadd_imm_64 r7, r7, 1\nbranch_ne_imm r7, 20000, loop\nload_ind_u32 r9, r8, 0\ntrap\n",
            );
            barrier.wait();
            let mut n = 0;
            for k in 0..60u64 {
                let mut vm = JitInstance::with_checks(&p, MODES[k as usize % MODES.len()]).unwrap();
                vm.map(0, 16, Access::Write);
                vm.set_reg(8, k * 0x400);
                vm.set_gas(if k % 3 == 0 { 1000 } else { 100_000 });
                let e = vm.run().unwrap();
                if k % 3 == 0 {
                    assert_eq!(e, Exit::OutOfGas);
                    assert_eq!(vm.gas(), 0);
                } else {
                    assert_eq!(e, Exit::Panic, "low load {k}");
                    assert_eq!((vm.reg(7), vm.pc()), (20000, vm.program().pcs()[2]));
                    assert_eq!(vm.gas(), 100_000 - 2 * 20000 - 2);
                }
                n += 1;
            }
            n
        })
    };
    for w in walkers {
        assert_eq!(w.join().unwrap(), FAULTS);
    }
    assert_eq!(other.join().unwrap(), 60);
}
