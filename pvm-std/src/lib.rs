//! `pvm-std`: std conveniences around `pvm-core`: program loaders, the
//! conformance-vector runner, and the `pvm` command-line tool.

pub mod doom;
pub mod jit;
pub mod load;
pub mod vectors;
