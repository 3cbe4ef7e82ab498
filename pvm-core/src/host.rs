//! The host-call loop (the GP's Ψ_H): run until an exit that is not a host
//! call, handing each `ecalli` to a host.

use crate::error::Error;
use crate::interp::{Exit, Vm};
use crate::memory::Memory;

/// What a host call handler decides (the GP's f may continue, halt, panic or
/// run out of gas; it cannot fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// Continue after the `ecalli`.
    Continue,
    /// Stop with this exit, reported at the `ecalli`.
    Halt,
    Panic,
    OutOfGas,
}

/// Serves host calls. It may read and write the machine's registers, memory
/// and gas.
pub trait Host<M: Memory> {
    fn ecalli(&mut self, id: u32, vm: &mut Vm<'_, M>) -> HostAction;
}

/// Runs `vm` until it halts, panics, runs out of gas or faults, serving host
/// calls with `host`. With [`run_without_host`] a host call is itself an exit.
pub fn run_with_host<M: Memory, H: Host<M>>(
    vm: &mut Vm<'_, M>,
    host: &mut H,
) -> Result<Exit, Error> {
    loop {
        match vm.run()? {
            Exit::HostCall(id) => match host.ecalli(id, vm) {
                HostAction::Continue => {}
                HostAction::Halt => {
                    vm.finish();
                    return Ok(Exit::Halt);
                }
                HostAction::Panic => {
                    vm.finish();
                    return Ok(Exit::Panic);
                }
                HostAction::OutOfGas => return Ok(Exit::OutOfGas),
            },
            exit => return Ok(exit),
        }
    }
}

/// Runs `vm` with no host: stops at the first exit, host calls included.
pub fn run_without_host<M: Memory>(vm: &mut Vm<'_, M>) -> Result<Exit, Error> {
    vm.run()
}
