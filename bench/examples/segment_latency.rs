//! The load-to-use latency of a guest access as our recompiler emits it
//! with segment addressing (`mov eax, gs:[eax]`: a GS-based, 32-bit
//! address) against a plain base + index load (`mov eax, [rdx + rax]`), on
//! a chain of dependent loads in one 4 KiB (L1-resident) buffer. BENCHMARKS.md
//! cites it for the last percents between our keccak and PolkaVM's, whose
//! worker process reaches guest memory without a segment base.
//!
//! `cargo run --release -p pvm-bench --example segment_latency` (x86-64
//! Linux with FSGSBASE enabled by the kernel, as the recompiler's segment
//! addressing needs).

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn main() {
    use std::arch::asm;
    use std::time::Instant;

    // HWCAP2_FSGSBASE: user code may write the GS base.
    // SAFETY: reads the process's auxiliary vector; no pointers.
    if unsafe { libc::getauxval(libc::AT_HWCAP2) } & 2 == 0 {
        eprintln!("skipped: the kernel does not let user code write the GS base");
        return;
    }
    // A chain of 32-bit offsets through the buffer.
    let n = 1024usize;
    let chain: Vec<u32> = (0..n).map(|i| (((i * 97 + 13) % n) * 4) as u32).collect();
    let base = chain.as_ptr() as u64;
    let iters: u64 = 200_000_000;

    let t = Instant::now();
    // SAFETY: every offset in the chain is below 4 KiB and 4-aligned, so
    // each load reads inside `chain`; only rax and rcx change.
    unsafe {
        asm!(
            "2:",
            "mov eax, dword ptr [rdx + rax]",
            "dec rcx",
            "jnz 2b",
            inout("rax") 0u64 => _,
            in("rdx") base,
            inout("rcx") iters => _,
            options(nostack, readonly),
        );
    }
    let plain = t.elapsed().as_secs_f64();

    let t = Instant::now();
    // SAFETY: GS is set to `chain`'s address and restored before anything
    // else runs on this thread (Rust code does not use GS on Linux); as
    // above, every load reads inside `chain`.
    unsafe {
        let saved: u64;
        asm!("rdgsbase {s}", "wrgsbase {b}", s = out(reg) saved, b = in(reg) base, options(nostack));
        asm!(
            "2:",
            "mov eax, dword ptr gs:[eax]",
            "dec rcx",
            "jnz 2b",
            inout("rax") 0u64 => _,
            inout("rcx") iters => _,
            options(nostack, readonly),
        );
        asm!("wrgsbase {s}", s = in(reg) saved, options(nostack));
    }
    let gs = t.elapsed().as_secs_f64();

    let ns = |s: f64| s * 1e9 / iters as f64;
    println!(
        "dependent loads: [rdx + rax] {:.3} ns, gs:[eax] {:.3} ns ({:.2}x)",
        ns(plain),
        ns(gs),
        gs / plain
    );
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn main() {
    eprintln!("skipped: x86-64 Linux only");
}
