//! Loading programs from files: standard programs, JAM code blobs, raw blobs.

use pvm_core::standard::Initial;
use pvm_core::{Error, FlatMemory, JamBlob, Profile, Program, StandardProgram};
use std::fmt;
use std::path::Path;

/// What a file held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A GP standard program (Y format).
    Standard,
    /// A JAM code blob: metadata then a standard program.
    Jam,
    /// A bare program blob (jump table, code, bitmask).
    Raw,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Standard => "standard program",
            Kind::Jam => "JAM code blob",
            Kind::Raw => "raw program blob",
        })
    }
}

/// A loaded program and its initial state.
#[derive(Debug)]
pub struct Loaded {
    pub kind: Kind,
    pub program: Program,
    /// Memory, registers and heap after Y (empty memory, zero registers for
    /// raw blobs).
    pub initial: Initial<FlatMemory>,
}

/// A loading failure, naming the file and what was wrong.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// Parses `bytes` as a standard program, else a JAM code blob (or as a raw
/// blob if `raw`), validates it under `profile` and runs Y with `args`.
pub fn load_bytes(bytes: &[u8], raw: bool, profile: Profile, args: &[u8]) -> Result<Loaded, Error> {
    if raw {
        let program = Program::from_bytes(bytes, profile)?;
        let initial = Initial {
            memory: FlatMemory::new(),
            regs: [0; 13],
            heap: pvm_core::interp::Heap { top: 0, limit: 0 },
        };
        return Ok(Loaded {
            kind: Kind::Raw,
            program,
            initial,
        });
    }
    let (kind, std_program) = match StandardProgram::parse(bytes) {
        Ok(p) => (Kind::Standard, p),
        Err(std_err) => match JamBlob::parse(bytes) {
            Ok(j) => (Kind::Jam, j.program),
            // Report the standard-program error: it is the primary format.
            Err(_) => return Err(std_err),
        },
    };
    let program = Program::from_bytes(&std_program.code, profile)?;
    let initial = std_program.initialize::<FlatMemory>(args)?;
    Ok(Loaded {
        kind,
        program,
        initial,
    })
}

/// [`load_bytes`] on a file; errors name the file. A `.pvmasm` file is
/// assembly text: it is assembled first (see `pvm_core::asm`).
pub fn load_file(
    path: &Path,
    raw: bool,
    profile: Profile,
    args: &[u8],
) -> Result<Loaded, LoadError> {
    let mut bytes = std::fs::read(path)
        .map_err(|e| LoadError(format!("cannot read {}: {e}", path.display())))?;
    if path.extension().is_some_and(|x| x == "pvmasm") {
        let text = String::from_utf8(bytes)
            .map_err(|_| LoadError(format!("{}: not UTF-8 text", path.display())))?;
        bytes = pvm_core::asm::assemble(&text, profile)
            .map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
    }
    load_bytes(&bytes, raw, profile, args).map_err(|e| {
        let hint = if raw {
            ""
        } else {
            " (use --raw for a bare program blob)"
        };
        LoadError(format!("{}: {e}{hint}", path.display()))
    })
}
