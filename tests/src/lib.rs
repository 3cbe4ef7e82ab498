//! Shared helpers for the workspace's integration tests.

use std::path::PathBuf;

/// The `shared/` folder beside the checkout, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    p.is_dir().then_some(p)
}

/// Called when `../shared` is missing: a skip on a user's clone, a failure
/// under CI (the `CI` environment variable is set).
pub fn shared_missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing: CI must run with ../shared beside the checkout");
    }
    eprintln!("skipped: {what} not found (it lives in ../shared beside the checkout)");
}
