//! Every conformance vector of ../shared/vectors as its own named test
//! (`gp08_*` under GP 0.8.0 with the file's block costs, `gp07_*` under
//! GP 0.7.2 with the naive per-block model).

fn run_vector(path: &str, profile: pvm_core::Profile) {
    if let Err(failure) =
        pvm_std::vectors::run_file(std::path::Path::new(path), Some(profile), None)
    {
        panic!("{path}: {failure}");
    }
}

include!(concat!(env!("OUT_DIR"), "/vector_tests.rs"));
