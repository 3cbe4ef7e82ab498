//! std conveniences for pvm-core.
