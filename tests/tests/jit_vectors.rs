//! Every conformance vector of ../shared/vectors on the x86-64 recompiler,
//! each as its own named test (`jit_gp08_*`, `jit_gp07_*`), with the same
//! gas models as tests/vectors.rs, with hardware memory protection (segment
//! addressing where available, and base-register addressing) and with
//! explicit memory checks, and with the code generated in two halves on two
//! threads (`jit-split`). Where the recompiler is not built (not
//! Linux x86-64) each test says so and passes.

fn run_jit_vector(path: &str, profile: pvm_core::Profile) {
    if !pvm_jit::is_supported() {
        eprintln!("{path}: skipped, the recompiler is not available on this target");
        return;
    }
    for backend in [
        pvm_std::vectors::Backend::Jit,
        pvm_std::vectors::Backend::JitNoSegment,
        pvm_std::vectors::Backend::JitChecked,
        pvm_std::vectors::Backend::JitSplit,
    ] {
        if let Err(failure) =
            pvm_std::vectors::run_file_on(std::path::Path::new(path), Some(profile), None, backend)
        {
            panic!("{path} ({backend:?}): {failure}");
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/jit_vector_tests.rs"));
