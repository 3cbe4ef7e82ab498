//! Runs DOOM (`../shared/programs/doom.spi`): serves its host calls, counts
//! frames, hashes them and can write chosen frames as PNG files.
//!
//! Entry points: pc 0 `ext_initialize()`, pc 5 `ext_tick()`, pc 10
//! `ext_on_keychange(key, pressed)`. Host calls (arguments r7, r8, r9; result
//! r7): 0 `output_audio`, 1 `output_video(ptr, width, height)`, 2
//! `rom_read(ptr, offset, len)`, 3 `rom_size()`, 4 `stdout(ptr, len)`.

use pvm_core::{Exit, FlatMemory, Host, HostAction, Memory, Program, Vm, HALT_ADDRESS};
use pvm_jit::JitInstance;
use std::path::PathBuf;

/// Entry point of `ext_initialize`.
pub const ENTRY_INITIALIZE: u32 = 0;
/// Entry point of `ext_tick`.
pub const ENTRY_TICK: u32 = 5;
/// Initial stack pointer of every call (the GP's standard stack top).
pub const STACK_TOP: u64 = pvm_core::standard::STACK_TOP as u64;

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The DOOM host: the WAD, frame statistics and PNG output.
#[derive(Debug)]
pub struct DoomHost {
    wad: Vec<u8>,
    /// Frames output so far.
    pub frames: u64,
    /// Hash of the last frame's RGBA bytes.
    pub last_frame_hash: Option<u64>,
    /// The last frame: width, height, RGBA bytes.
    pub last_frame: Option<(u32, u32, Vec<u8>)>,
    /// Frame numbers (1-based) to save as PNG, and where.
    pub save: Vec<u64>,
    pub save_dir: Option<PathBuf>,
    /// Files written.
    pub saved: Vec<PathBuf>,
    /// Text the program wrote to stdout.
    pub stdout: Vec<u8>,
    /// An error a host call ran into (bad frame size, I/O).
    pub error: Option<String>,
}

impl DoomHost {
    pub fn new(wad: Vec<u8>) -> Self {
        DoomHost {
            wad,
            frames: 0,
            last_frame_hash: None,
            last_frame: None,
            save: Vec::new(),
            save_dir: None,
            saved: Vec::new(),
            stdout: Vec::new(),
            error: None,
        }
    }

    fn video(&mut self, vm: &mut impl HostMachine) -> HostAction {
        let (ptr, w, h) = (vm.reg(7) as u32, vm.reg(8), vm.reg(9));
        let Some(len) = w
            .checked_mul(h)
            .and_then(|n| n.checked_mul(4))
            .filter(|&n| n <= 64 << 20)
        else {
            self.error = Some(format!("output_video: bad frame size {w}x{h}"));
            return HostAction::Panic;
        };
        let mut frame = vec![0u8; len as usize];
        if vm.read_mem(ptr, &mut frame).is_err() {
            self.error = Some(format!("output_video: frame at {ptr:#x} is not readable"));
            return HostAction::Panic;
        }
        self.frames += 1;
        self.last_frame_hash = Some(fnv1a64(&frame));
        if let (true, Some(dir)) = (self.save.contains(&self.frames), &self.save_dir) {
            let path = dir.join(format!("doom-frame-{:05}.png", self.frames));
            if let Err(e) = write_png(&path, w as u32, h as u32, &frame) {
                self.error = Some(format!("cannot write {}: {e}", path.display()));
                return HostAction::Panic;
            }
            self.saved.push(path);
        }
        self.last_frame = Some((w as u32, h as u32, frame));
        HostAction::Continue
    }
}

/// What DOOM's calls and host need from a machine: registers, pc, gas and
/// guest memory. Implemented for the interpreter and the recompiler, so
/// [`call`] and the run loop are written once.
pub trait HostMachine {
    fn reg(&self, r: usize) -> u64;
    fn set_reg(&mut self, r: usize, v: u64);
    fn read_mem(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), pvm_core::Trap>;
    fn write_mem(&mut self, addr: u32, data: &[u8]) -> Result<(), pvm_core::Trap>;
    fn pc(&self) -> u32;
    fn set_pc(&mut self, pc: u32);
    fn gas(&self) -> u64;
    fn set_gas(&mut self, gas: u64);
    fn set_gas_charged(&mut self, charged: bool);
    /// Runs to the next exit (a host call included).
    fn run(&mut self) -> Result<Exit, pvm_core::Error>;
    /// Marks the machine as stopped for good (a host ended the run).
    fn finish(&mut self);
}

/// Forwards the machine-state methods of [`HostMachine`] to the inherent
/// methods of the same names.
macro_rules! forward_machine_state {
    ($t:ident) => {
        fn pc(&self) -> u32 {
            $t::pc(self)
        }
        fn set_pc(&mut self, pc: u32) {
            $t::set_pc(self, pc);
        }
        fn gas(&self) -> u64 {
            $t::gas(self)
        }
        fn set_gas(&mut self, gas: u64) {
            $t::set_gas(self, gas);
        }
        fn set_gas_charged(&mut self, charged: bool) {
            $t::set_gas_charged(self, charged);
        }
        fn run(&mut self) -> Result<Exit, pvm_core::Error> {
            $t::run(self)
        }
        fn finish(&mut self) {
            $t::finish(self);
        }
    };
}

impl<M: Memory> HostMachine for Vm<'_, M> {
    fn reg(&self, r: usize) -> u64 {
        Vm::reg(self, r)
    }
    fn set_reg(&mut self, r: usize, v: u64) {
        Vm::set_reg(self, r, v);
    }
    fn read_mem(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), pvm_core::Trap> {
        self.memory_mut().read(addr, buf)
    }
    fn write_mem(&mut self, addr: u32, data: &[u8]) -> Result<(), pvm_core::Trap> {
        self.memory_mut().write(addr, data)
    }
    forward_machine_state!(Vm);
}

impl HostMachine for JitInstance {
    fn reg(&self, r: usize) -> u64 {
        JitInstance::reg(self, r)
    }
    fn set_reg(&mut self, r: usize, v: u64) {
        JitInstance::set_reg(self, r, v);
    }
    fn read_mem(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), pvm_core::Trap> {
        self.read(addr, buf)
    }
    fn write_mem(&mut self, addr: u32, data: &[u8]) -> Result<(), pvm_core::Trap> {
        self.write(addr, data)
    }
    forward_machine_state!(JitInstance);
}

impl<M: Memory> Host<M> for DoomHost {
    fn ecalli(&mut self, id: u32, vm: &mut Vm<'_, M>) -> HostAction {
        self.serve(id, vm)
    }
}

impl DoomHost {
    /// Serves host call `id` on any machine.
    pub fn serve(&mut self, id: u32, vm: &mut impl HostMachine) -> HostAction {
        match id {
            0 => HostAction::Continue,
            1 => self.video(vm),
            2 => {
                let (ptr, offset, len) = (vm.reg(7) as u32, vm.reg(8), vm.reg(9));
                let range = usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(len).ok())
                    .and_then(|(o, l)| self.wad.get(o..o.checked_add(l)?));
                let Some(bytes) = range else {
                    self.error = Some(format!(
                        "rom_read: {len} bytes at offset {offset} are past the WAD's end"
                    ));
                    return HostAction::Panic;
                };
                if vm.write_mem(ptr, bytes).is_err() {
                    self.error = Some(format!("rom_read: destination {ptr:#x} is not writable"));
                    return HostAction::Panic;
                }
                HostAction::Continue
            }
            3 => {
                vm.set_reg(7, self.wad.len() as u64);
                HostAction::Continue
            }
            4 => {
                let (ptr, len) = (vm.reg(7) as u32, vm.reg(8));
                let mut buf = vec![0u8; len.min(1 << 20) as usize];
                if vm.read_mem(ptr, &mut buf).is_ok() {
                    self.stdout.extend_from_slice(&buf);
                }
                vm.set_reg(7, len);
                HostAction::Continue
            }
            _ => {
                self.error = Some(format!("unknown host call {id}"));
                HostAction::Panic
            }
        }
    }
}

/// Writes an RGBA frame as a PNG file.
pub fn write_png(path: &std::path::Path, w: u32, h: u32, rgba: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    // DOOM's frames leave alpha at 0: write them opaque.
    let opaque: Vec<u8> = rgba
        .chunks(4)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    writer.write_image_data(&opaque).map_err(|e| e.to_string())
}

/// Result of one DOOM call.
#[derive(Debug, Clone, Copy)]
pub struct CallResult {
    pub exit: Exit,
    pub gas_used: u64,
}

/// Calls the entry at `pc` with argument `a0` under the programs' calling
/// convention: fresh registers, ra = halt address, sp = stack top, memory
/// kept from earlier calls. Host calls are served until another exit (the
/// GP's Ψ_H loop, as `pvm_core::run_with_host`, for either backend).
pub fn call(
    vm: &mut impl HostMachine,
    host: &mut DoomHost,
    pc: u32,
    a0: u64,
    gas: u64,
) -> Result<CallResult, String> {
    for r in 0..13 {
        vm.set_reg(r, 0);
    }
    vm.set_reg(0, u64::from(HALT_ADDRESS));
    vm.set_reg(1, STACK_TOP);
    vm.set_reg(7, a0);
    vm.set_pc(pc);
    vm.set_gas(gas);
    vm.set_gas_charged(false);
    let exit = loop {
        match vm.run().map_err(|e| e.to_string())? {
            Exit::HostCall(id) => match host.serve(id, vm) {
                HostAction::Continue => {}
                HostAction::Panic => {
                    vm.finish();
                    break Exit::Panic;
                }
                HostAction::Halt => {
                    vm.finish();
                    break Exit::Halt;
                }
                HostAction::OutOfGas => break Exit::OutOfGas,
            },
            other => break other,
        }
    };
    if let Some(e) = host.error.take() {
        return Err(e);
    }
    Ok(CallResult {
        exit,
        gas_used: gas - vm.gas(),
    })
}

/// Summary of a DOOM run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub init_gas: u64,
    pub ticks_gas: u64,
    pub frames: u64,
    pub last_frame_hash: Option<u64>,
    pub init_time: std::time::Duration,
    pub ticks_time: std::time::Duration,
}

/// Runs `ext_initialize` then `ticks` × `ext_tick` on the interpreter, each
/// to halt.
pub fn run(
    program: &Program,
    memory: FlatMemory,
    host: &mut DoomHost,
    ticks: u64,
) -> Result<RunSummary, String> {
    run_on(&mut Vm::new(program, memory, 0, 0), host, ticks)
}

/// [`run`] on the recompiler. Compilation is not counted in the timings.
pub fn run_jit(
    program: &Program,
    memory: FlatMemory,
    host: &mut DoomHost,
    ticks: u64,
) -> Result<RunSummary, String> {
    run_jit_with(
        program,
        memory,
        host,
        ticks,
        pvm_jit::MemoryChecks::Hardware,
    )
}

/// [`run_jit`] with the given kind of memory checks.
pub fn run_jit_with(
    program: &Program,
    memory: FlatMemory,
    host: &mut DoomHost,
    ticks: u64,
    checks: pvm_jit::MemoryChecks,
) -> Result<RunSummary, String> {
    run_jit_on(
        program,
        memory,
        host,
        ticks,
        checks,
        pvm_jit::Parallelism::SERIAL,
    )
}

/// [`run_jit_with`], generating code as `parallel` allows.
pub fn run_jit_on(
    program: &Program,
    memory: FlatMemory,
    host: &mut DoomHost,
    ticks: u64,
    checks: pvm_jit::MemoryChecks,
    parallel: pvm_jit::Parallelism,
) -> Result<RunSummary, String> {
    let mut vm =
        crate::jit::instance_on(program, &memory, checks, parallel).map_err(|e| e.to_string())?;
    drop(memory);
    run_on(&mut vm, host, ticks)
}

/// `ext_initialize` then `ticks` × `ext_tick` on any machine, each to halt.
pub fn run_on(
    vm: &mut impl HostMachine,
    host: &mut DoomHost,
    ticks: u64,
) -> Result<RunSummary, String> {
    let gas = u64::MAX / 2;
    let t = std::time::Instant::now();
    let init = call(vm, host, ENTRY_INITIALIZE, 0, gas)?;
    let init_time = t.elapsed();
    if init.exit != Exit::Halt {
        return Err(format!(
            "ext_initialize ended with {:?} at pc {}",
            init.exit,
            vm.pc()
        ));
    }
    let t = std::time::Instant::now();
    let mut ticks_gas = 0;
    for n in 0..ticks {
        let r = call(vm, host, ENTRY_TICK, 0, gas)?;
        if r.exit != Exit::Halt {
            return Err(format!(
                "ext_tick #{} ended with {:?} at pc {}",
                n + 1,
                r.exit,
                vm.pc()
            ));
        }
        ticks_gas += r.gas_used;
    }
    Ok(RunSummary {
        init_gas: init.gas_used,
        ticks_gas,
        frames: host.frames,
        last_frame_hash: host.last_frame_hash,
        init_time,
        ticks_time: t.elapsed(),
    })
}
