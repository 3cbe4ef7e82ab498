//! Placeholder: the assembler text format (being written).
