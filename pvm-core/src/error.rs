//! Errors: only for bad input and misuse. Guest behaviour (halt, panic, page
//! fault, …) is an [`Exit`](crate::Exit) value, never an error.

use core::fmt;

/// What went wrong, with where (byte offset, pc, field) when it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ended while reading `what`, which starts at `offset`.
    Truncated { what: &'static str, offset: usize },
    /// Bytes left over after the last field, starting at `offset`.
    TrailingBytes { what: &'static str, offset: usize },
    /// A field holds a value out of its range.
    OutOfRange {
        what: &'static str,
        offset: usize,
        value: u64,
    },
    /// The program has no code (GP: an empty program is not valid).
    EmptyCode,
    /// A byte marked as an instruction start holds no opcode of the profile.
    UnknownOpcode { pc: u32, byte: u8 },
    /// The instruction walk landed on a byte that is not an instruction start
    /// (a gap of more than 24 argument bytes).
    NotInstructionStart { pc: u32 },
    /// The last instruction of the code is not a block terminator.
    MissingTerminator { pc: u32 },
    /// The entry point is not the start of a valid instruction.
    BadEntryPoint { pc: u32 },
    /// The standard program's memory layout does not fit in 2^32 bytes.
    LayoutTooLarge,
    /// A block-gas-cost table has no entry for the basic block at `pc`.
    MissingBlockCost { pc: u32 },
    /// The requested operation is not implemented; the string says what.
    Unsupported(&'static str),
    /// The machine already stopped for good (halt, panic); it cannot run on.
    Finished,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, offset } => {
                write!(
                    f,
                    "input ends inside {what} (which starts at byte {offset})"
                )
            }
            Error::TrailingBytes { what, offset } => {
                write!(f, "unexpected bytes after {what}, at byte {offset}")
            }
            Error::OutOfRange {
                what,
                offset,
                value,
            } => {
                write!(f, "{what} at byte {offset} is out of range: {value}")
            }
            Error::EmptyCode => f.write_str("the program has no code"),
            Error::UnknownOpcode { pc, byte } => {
                write!(f, "unknown opcode {byte} at code offset {pc}")
            }
            Error::NotInstructionStart { pc } => write!(
                f,
                "the instruction walk reaches code offset {pc}, which is not an instruction start \
                 (more than 24 argument bytes)"
            ),
            Error::MissingTerminator { pc } => write!(
                f,
                "the last instruction (code offset {pc}) does not terminate a basic block"
            ),
            Error::BadEntryPoint { pc } => {
                write!(
                    f,
                    "entry point {pc} is not the start of a valid instruction"
                )
            }
            Error::LayoutTooLarge => {
                f.write_str("the standard program's memory layout does not fit in 4 GiB")
            }
            Error::MissingBlockCost { pc } => {
                write!(
                    f,
                    "the gas cost table has no entry for the basic block at {pc}"
                )
            }
            Error::Unsupported(what) => write!(f, "not implemented: {what}"),
            Error::Finished => {
                f.write_str("the machine has stopped (halt or panic) and cannot resume")
            }
        }
    }
}

impl core::error::Error for Error {}
