//! Sandbox test: guests that fault in a loop leave the process's memory flat.
//!
//! 1000 times: create a `JitInstance` (compiling the program), map a few MiB
//! at a place that moves from one iteration to the next, dirty them from
//! guest code, end with a page fault, a panic, out-of-gas or a host call and
//! halt, and drop the instance. The resident set (`/proc/self/statm`) after
//! the loop may exceed the one after a 20-iteration warm-up by a small bound
//! only, the virtual size may not grow by anything near a 4 GiB reservation
//! (each instance's window is unmapped on drop), and the number of mappings
//! and the page-table size stay flat too. Then an instance per mode maps,
//! dirties and unmaps 500 different regions: unmapped pages must give their
//! memory back. Instances alternate between the two memory-check modes
//! (hardware protection with the signal handler, explicit checks).
//!
//! This file holds exactly one test, so that no other test of the same
//! process allocates while it measures. Linux x86-64 with the `recompiler`
//! feature only (elsewhere it compiles to nothing).
#![cfg(all(feature = "recompiler", target_arch = "x86_64", target_os = "linux"))]

mod common;
use common::program;

use pvm_core::{Access, Error, Exit, Program, HALT_ADDRESS, PAGE_SIZE};
use pvm_jit::{JitInstance, MemoryChecks};

const MIB: u64 = 1 << 20;

/// Bytes of guest memory each iteration maps and dirties.
const DIRTY: u32 = 2 << 20;

/// The process's memory, as the kernel reports it.
#[derive(Clone, Copy, Debug)]
struct Usage {
    /// Resident bytes (`statm` resident pages × page size).
    rss: u64,
    /// Virtual size in bytes (`statm` size × page size).
    vm_size: u64,
    /// Page tables (`VmPTE` of `/proc/self/status`), bytes.
    pte: u64,
    /// Number of mappings (lines of `/proc/self/maps`).
    maps: usize,
}

fn usage() -> Usage {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let mut fields = statm.split_whitespace().map(|f| f.parse::<u64>().unwrap());
    let size = fields.next().unwrap();
    let resident = fields.next().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let pte_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmPTE:"))
        .map(|v| {
            v.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .unwrap_or(0);
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count();
    Usage {
        rss: resident * page,
        vm_size: size * page,
        pte: pte_kb * 1024,
        maps,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / MIB as f64
}

/// Dirties `[r8, r9)` one word per page, then loads from `r11`, makes host
/// call 3 and halts.
const GUEST: &str = "
loop:
    store_ind_u64 r7, r8, 0
    add_imm_64 r8, r8, 4096
    branch_lt_u r8, r9, loop
    load_ind_u64 r10, r11, 0
    ecalli 3
    jump_ind r0, 0
";

/// One iteration: a fresh instance that dirties `DIRTY` bytes at a place
/// depending on `i` and stops in one of four ways; checks the exit. Returns
/// the resident set measured before the instance is dropped, if `measure`.
fn iteration(p: &Program, i: u32, measure: bool) -> Option<u64> {
    // Every memory-check mode, each with all four endings.
    let checks = [
        MemoryChecks::Hardware,
        MemoryChecks::HardwareNoSegment,
        MemoryChecks::Explicit,
    ][(i / 4) as usize % 3];
    let mut vm = JitInstance::with_checks(p, checks).unwrap();
    let pages = DIRTY / PAGE_SIZE;
    // Regions spread over the whole 4 GiB window.
    let first = 16 + (i * 7919 * pages) % ((1 << 20) - 16 - 2 * pages);
    let start = first * PAGE_SIZE;
    vm.map(first, pages, Access::Write);
    // A read-only page beside it that the host fills.
    vm.map(first + pages, 1, Access::Read);
    assert!(vm.poke((first + pages) * PAGE_SIZE, &[0x42; 4096]));
    vm.set_reg(0, u64::from(HALT_ADDRESS));
    vm.set_reg(7, 0x0123_4567_89AB_CDEF ^ u64::from(i));
    vm.set_reg(8, u64::from(start));
    vm.set_reg(9, u64::from(start + DIRTY));
    let full = 3 * u64::from(pages) + 3;
    match i % 4 {
        0 => {
            // A page fault past the read-only page.
            let bad = start + DIRTY + 2 * PAGE_SIZE;
            vm.set_reg(11, u64::from(bad));
            vm.set_gas(full);
            assert_eq!(vm.run(), Ok(Exit::PageFault(bad)), "iteration {i}");
        }
        1 => {
            // A panic: a load below 0x10000.
            vm.set_reg(11, 0x1234);
            vm.set_gas(full);
            assert_eq!(vm.run(), Ok(Exit::Panic), "iteration {i}");
        }
        2 => {
            // Out of gas halfway through the loop.
            vm.set_gas(full / 2);
            assert_eq!(vm.run(), Ok(Exit::OutOfGas), "iteration {i}");
            assert!(vm.reg(8) > u64::from(start) && vm.reg(8) < u64::from(start + DIRTY));
        }
        _ => {
            // Reads the host-filled read-only page, then a host call, then
            // halt.
            vm.set_reg(11, u64::from(start + DIRTY + 8));
            vm.set_gas(full);
            assert_eq!(vm.run(), Ok(Exit::HostCall(3)), "iteration {i}");
            assert_eq!(vm.reg(10), 0x4242_4242_4242_4242);
            assert_eq!(vm.run(), Ok(Exit::Halt), "iteration {i}");
            assert_eq!(vm.gas(), 0);
        }
    }
    // The guest really wrote the pages (natively: they are resident now).
    assert_eq!(vm.peek(start), 0xEF ^ (i as u8));
    measure.then(|| usage().rss)
}

#[test]
fn a_thousand_faulting_guests_leave_memory_flat() {
    assert!(pvm_jit::is_supported());
    if !pvm_jit::is_available() {
        eprintln!("skipping: the recompiler cannot run on this CPU");
        return;
    }
    let p = program(GUEST);
    match JitInstance::new(&p) {
        Ok(_) => {}
        Err(Error::Unsupported(why)) => {
            eprintln!("skipping: the JIT cannot run here: {why}");
            return;
        }
        Err(e) => panic!("JitInstance::new failed: {e}"),
    }

    const WARMUP: u32 = 20;
    const ITERATIONS: u32 = 1000;
    for i in 0..WARMUP {
        iteration(&p, i, false);
    }
    let before = usage();
    let mut peak_rss = before.rss;
    let mut peak_vm = before.vm_size;
    let mut live_rss = u64::MAX;
    for i in WARMUP..ITERATIONS {
        if let Some(rss) = iteration(&p, i, i % 16 == 0) {
            live_rss = live_rss.min(rss);
            let u = usage();
            peak_rss = peak_rss.max(u.rss);
            peak_vm = peak_vm.max(u.vm_size);
        }
    }
    let after = usage();
    eprintln!(
        "{ITERATIONS} instances, {} MiB dirtied each: RSS {:.1} -> {:.1} MiB (peak between \
         iterations {:.1}, lowest with an instance alive {:.1}), VmSize {:.1} -> {:.1} MiB (peak {:.1}), VmPTE {} -> {} KiB, mappings {} -> {}",
        DIRTY >> 20,
        mib(before.rss),
        mib(after.rss),
        mib(peak_rss),
        mib(live_rss),
        mib(before.vm_size),
        mib(after.vm_size),
        mib(peak_vm),
        before.pte >> 10,
        after.pte >> 10,
        before.maps,
        after.maps,
    );
    // The measurement sees guest memory: with an instance alive, its dirty
    // pages are resident.
    assert!(
        live_rss >= before.rss + u64::from(DIRTY) * 3 / 4,
        "RSS with a live instance ({:.1} MiB) does not show its {} MiB of dirty pages",
        mib(live_rss),
        DIRTY >> 20
    );
    assert!(
        after.rss < before.rss + 16 * MIB,
        "resident memory grew by {:.1} MiB over {} faulting guests",
        mib(after.rss.saturating_sub(before.rss)),
        ITERATIONS - WARMUP
    );
    assert!(
        after.vm_size < before.vm_size + 8 * 1024 * MIB,
        "virtual size grew by {:.1} MiB: guest windows are not unmapped",
        mib(after.vm_size.saturating_sub(before.vm_size))
    );
    assert!(
        after.pte < before.pte + 16 * MIB,
        "page tables grew by {} KiB",
        (after.pte.saturating_sub(before.pte)) >> 10
    );
    assert!(
        after.maps < before.maps + 64,
        "{} mappings more after the loop (code buffers or windows leak)",
        after.maps.saturating_sub(before.maps)
    );

    // One instance per mode, 500 regions each mapped, dirtied and unmapped:
    // the unmapped pages' memory goes back (else 1000 MiB would stay
    // resident).
    let pages = (1 << 20) / PAGE_SIZE; // 1 MiB
    let before = usage();
    let mut peak_rss = before.rss;
    let mut live_rss = u64::MAX;
    for checks in [
        MemoryChecks::Hardware,
        MemoryChecks::HardwareNoSegment,
        MemoryChecks::Explicit,
    ] {
        let mut vm = JitInstance::with_checks(&p, checks).unwrap();
        for i in 0..ITERATIONS / 3 {
            let first = 16 + (i * 1031 * pages) % ((1 << 20) - 16 - pages);
            let start = first * PAGE_SIZE;
            vm.map(first, pages, Access::Write);
            vm.set_reg(7, u64::from(i) | 1);
            vm.set_reg(8, u64::from(start));
            vm.set_reg(9, u64::from(start + pages * PAGE_SIZE));
            vm.set_reg(11, 0x1_0000_0000 - 8); // the top page: unmapped
            vm.set_pc(0);
            vm.set_gas_charged(false);
            vm.set_gas(1 << 20);
            assert_eq!(
                vm.run(),
                Ok(Exit::PageFault(0xFFFF_F000)),
                "region {i} ({checks:?})"
            );
            assert_eq!(vm.peek(start + PAGE_SIZE), (i as u8) | 1);
            if i % 16 == 0 {
                live_rss = live_rss.min(usage().rss);
            }
            vm.map(first, pages, Access::None);
            assert_eq!(vm.peek(start + PAGE_SIZE), 0);
            if i % 16 == 0 {
                peak_rss = peak_rss.max(usage().rss);
            }
        }
        // Measured with the instance alive: dropping it would unmap its
        // window and hide pages that unmapping kept.
        peak_rss = peak_rss.max(usage().rss);
    }
    let after = usage();
    eprintln!(
        "three instances (one per mode), {} x 1 MiB mapped, dirtied, unmapped: RSS {:.1} -> {:.1} MiB \
         (peak with an instance alive, after unmapping {:.1}; lowest while mapped {:.1}), VmSize {:.1} -> {:.1} MiB",
        3 * (ITERATIONS / 3),
        mib(before.rss),
        mib(after.rss),
        mib(peak_rss),
        mib(live_rss),
        mib(before.vm_size),
        mib(after.vm_size),
    );
    assert!(
        live_rss >= before.rss + MIB * 3 / 4,
        "RSS while 1 MiB is mapped and dirty ({:.1} MiB) does not show it",
        mib(live_rss)
    );
    assert!(
        peak_rss < before.rss + 16 * MIB,
        "unmapped guest pages stay resident: RSS grew by up to {:.1} MiB with the instance alive",
        mib(peak_rss.saturating_sub(before.rss))
    );
    assert!(after.rss < before.rss + 16 * MIB);
}
