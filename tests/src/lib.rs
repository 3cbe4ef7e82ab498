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

/// `../shared/programs/<file>`, loaded as a GP 0.8 standard program with
/// block costs from `model`; `None` (after [`shared_missing`]) when
/// `../shared` is absent.
pub fn load_shared_program(
    file: &str,
    model: &dyn pvm_core::gas::GasModel,
) -> Option<pvm_std::load::Loaded> {
    let Some(shared) = shared_dir() else {
        shared_missing("../shared/programs");
        return None;
    };
    let path = shared.join("programs").join(file);
    let mut loaded = pvm_std::load::load_file(&path, false, pvm_core::Profile::V0_8, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    loaded
        .program
        .set_gas_model(model)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    Some(loaded)
}
