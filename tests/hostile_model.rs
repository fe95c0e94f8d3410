//! Hostile model files (issue 13): every case of `scripts/hostile-models.py`, made from the test
//! GGUF and its f32 Hugging Face export, is refused by `hermes-eval run` before anything is
//! computed — a non-zero exit that is not a panic (101), one line on stderr naming the cause and
//! the file, well within a time bound. One test per class of the issue; the script's manifest
//! lists the cases of each.
mod common;

use common::{hermes, test_f32_dir, test_gguf};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn corpus() -> &'static (PathBuf, Vec<serde_json::Value>) {
    static C: OnceLock<(PathBuf, Vec<serde_json::Value>)> = OnceLock::new();
    // Rewritten on every run (three of the cases copy the 540 MB safetensors file).
    C.get_or_init(|| {
        common::script_corpus(
            "hostile-models.py",
            &[test_gguf(), test_f32_dir()],
            "hostile-models",
        )
    })
}

/// Every case of `class` is refused with its expected one-line error.
fn refused(class: &str) {
    let (dir, manifest) = corpus();
    let cases: Vec<_> = manifest.iter().filter(|c| c["class"] == class).collect();
    assert!(!cases.is_empty(), "no case of class {class} in the corpus");
    for c in cases {
        let name = c["case"].as_str().unwrap();
        let model = c["model"].as_str().unwrap();
        let expect = c["expect"].as_str().unwrap();
        let out = dir.join(format!("out-{name}"));
        let start = Instant::now();
        let (code, stdout, stderr) = hermes(&common::run_args(
            "arc_easy",
            "1",
            std::path::Path::new(model),
            &out,
        ));
        let took = start.elapsed();
        assert!(
            code != 0 && code != 101,
            "{name}: exit {code} (0 = accepted, 101 = panic)\nstdout: {stdout}\nstderr: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: not one line:\n{stderr}");
        assert!(
            lines[0].contains(expect),
            "{name}: expected `{expect}` in: {}",
            lines[0]
        );
        let file_name = std::path::Path::new(model).file_name().unwrap();
        assert!(
            lines[0].contains(file_name.to_str().unwrap()),
            "{name}: the error does not name the file: {}",
            lines[0]
        );
        assert!(
            took < Duration::from_secs(60),
            "{name}: took {took:?} to refuse"
        );
        assert!(
            !out.exists() || common::files_with_prefix(&out, "results").is_empty(),
            "{name}: results were written from a misread model"
        );
    }
}

macro_rules! class_tests {
    ($($test:ident => $class:literal),* $(,)?) => {
        $(#[test]
        fn $test() {
            refused($class);
        })*
    };
}

class_tests! {
    sizes_that_overflow => "overflow",
    block_count_out_of_range_or_contradicting => "block_count",
    head_counts_and_lengths => "heads",
    metadata_of_the_wrong_type => "wrong_type",
    nan_negative_or_zero_values => "bad_value",
    missing_hyper_parameter => "missing",
    duplicate_keys_and_tensors => "duplicate",
    overlapping_tensor_data => "overlap",
    quantized_norm => "role",
    shapes_contradicting_hyper_parameters => "shape",
    alignment => "alignment",
    truncated_file => "truncated",
    unknown_tensor_type => "dtype",
    unsupported_header => "header",
    hf_config_out_of_range => "hf_config",
    hf_tensor_dtype_and_shape => "hf_tensor",
}
