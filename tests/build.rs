//! Generates one named `#[test]` per conformance vector file found in
//! `../shared/vectors` (beside the checkout), so a failure names its vector:
//! `vector_tests.rs` (every vector, for tests/vectors.rs) and `gas_tests.rs`
//! (every gp-0.8 vector, for the pipeline gas model in tests/gas_model.rs)
//! and `jit_vector_tests.rs` (every vector on the recompiler, for
//! tests/jit_vectors.rs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let mut out = String::new();
    let mut gas_out = String::new();
    let mut jit_out = String::new();
    let mut found = 0;
    for (prefix, dir, profile) in [
        ("gp08", "vectors/gp-0.8/programs", "V0_8"),
        ("gp07", "vectors/gp-0.7/programs", "V0_7"),
    ] {
        let dir = shared.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let stem = f.file_stem().unwrap_or_default().to_string_lossy();
            let ident: String = stem
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "#[test] fn {prefix}_{ident}() {{ run_vector({:?}, pvm_core::Profile::{profile}); }}",
                f.display().to_string()
            );
            let _ = writeln!(
                jit_out,
                "#[test] fn jit_{prefix}_{ident}() {{ run_jit_vector({:?}, pvm_core::Profile::{profile}); }}",
                f.display().to_string()
            );
            if prefix == "gp08" {
                let _ = writeln!(
                    gas_out,
                    "#[test] fn gas_{ident}() {{ check_gas_vector({:?}); }}",
                    f.display().to_string()
                );
            }
            found += 1;
        }
    }
    if found == 0 {
        out.push_str("#[test] fn vectors_are_present() { pvm_tests::shared_missing(\"../shared/vectors\"); }\n");
    }
    if jit_out.is_empty() {
        jit_out.push_str("#[test] fn jit_vectors_are_present() { pvm_tests::shared_missing(\"../shared/vectors\"); }\n");
    }
    if gas_out.is_empty() {
        gas_out.push_str("#[test] fn gas_vectors_are_present() { pvm_tests::shared_missing(\"../shared/vectors/gp-0.8\"); }\n");
    }
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo");
    let dest = Path::new(&out_dir).join("vector_tests.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
    // One test per gp-0.8 vector for the GP 0.8.0 pipeline gas model (tests/gas_model.rs).
    std::fs::write(Path::new(&out_dir).join("gas_tests.rs"), gas_out).expect("OUT_DIR is writable");
    // The same vectors on the recompiler (tests/jit_vectors.rs).
    std::fs::write(Path::new(&out_dir).join("jit_vector_tests.rs"), jit_out)
        .expect("OUT_DIR is writable");
}
