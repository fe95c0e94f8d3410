//! Hostile non-model inputs (issue 13): every case of `scripts/hostile-inputs.py` — task and
//! chat templates that loop or blow up, CLI arguments that must be refused, an empty split,
//! saved runs holding NaN, dataset schemas with `$ref` cycles, 10,000 levels or a huge enum,
//! completions with 300,000 nested tags or brackets — run through the release binary. A refused
//! case exits non-zero but not with a panic (101), with one error line on stderr naming the
//! cause; a hostile sample fails that sample only; every case finishes well within a time bound.
mod common;

use common::{hermes, hub, test_gguf};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn corpus() -> &'static (PathBuf, Vec<serde_json::Value>) {
    static C: OnceLock<(PathBuf, Vec<serde_json::Value>)> = OnceLock::new();
    C.get_or_init(|| {
        let (dir, m) = common::script_corpus("hostile-inputs.py", &[], "hostile-inputs");
        write_empty_split(&dir.join("mirror-empty"));
        (dir, m)
    })
}

/// ARC-Easy's test split with its columns and zero rows (the script has no parquet writer).
fn write_empty_split(mirror: &Path) {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    let cols = ["id", "question", "choices", "answerKey"];
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let empty: Vec<ArrayRef> = cols
        .iter()
        .map(|_| Arc::new(StringArray::from(Vec::<&str>::new())) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), empty).unwrap();
    let path = mirror.join("datasets/allenai/ai2_arc/ARC-Easy/test-00000-of-00001.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn fill(arg: &str, dir: &Path, out: &Path) -> String {
    arg.replace("{model}", test_gguf().to_str().unwrap())
        .replace("{hub}", hub().to_str().unwrap())
        .replace("{dir}", dir.to_str().unwrap())
        .replace("{out}", out.to_str().unwrap())
}

/// The reasons of the samples written for `task` under `out`, in doc order.
fn sample_reasons(out: &Path, task: &str) -> Vec<String> {
    let files = common::files_with_prefix(out, &format!("samples_{task}_"));
    assert_eq!(files.len(), 1, "samples of {task} in {}", out.display());
    let mut v: Vec<(i64, String)> = std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|l| {
            let s: serde_json::Value = serde_json::from_str(l).unwrap();
            let reason = s["reason"].as_str().unwrap_or("").to_string();
            (s["doc_id"].as_i64().unwrap(), reason)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, r)| r).collect()
}

/// Every case of `class` behaves as its manifest entry says, within the time bound.
fn check(class: &str) {
    let (dir, manifest) = corpus();
    let cases: Vec<_> = manifest.iter().filter(|c| c["class"] == class).collect();
    assert!(!cases.is_empty(), "no case of class {class} in the corpus");
    for c in cases {
        let name = c["case"].as_str().unwrap();
        let out = dir.join(format!("out-{name}"));
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| fill(a.as_str().unwrap(), dir, &out))
            .collect();
        let start = Instant::now();
        let (code, stdout, stderr) = hermes(&args);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(60),
            "{name}: took {took:?}\nstderr: {stderr}"
        );
        assert_ne!(code, 101, "{name}: panic\nstderr: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("error") || l.contains("panic"))
            .collect();
        if c["exit"] == 0 {
            assert_eq!(code, 0, "{name}: exit {code}\nstderr: {stderr}");
            assert!(errors.is_empty(), "{name}: {stderr}");
            let task = args[2].as_str();
            let reasons = sample_reasons(&out, task);
            if let Some(want) = c["sample_reasons"].as_array() {
                assert_eq!(reasons.len(), want.len(), "{name}: {reasons:?}");
                for (i, (got, want)) in reasons.iter().zip(want).enumerate() {
                    let allowed: Vec<&str> = want.as_str().unwrap().split('|').collect();
                    assert!(
                        allowed.contains(&got.as_str()),
                        "{name}: doc {i}: reason `{got}`, expected one of {allowed:?}"
                    );
                }
            } else {
                // No expectation per sample: each failed (nothing can pass).
                assert!(reasons.iter().all(|r| !r.is_empty()), "{name}: {reasons:?}");
            }
            continue;
        }
        let want_code = c["exit_code"].as_i64().unwrap_or(1) as i32;
        assert_eq!(
            code, want_code,
            "{name}: exit {code}, expected {want_code}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert_eq!(errors.len(), 1, "{name}: not one error line:\n{stderr}");
        let expect = c["expect"].as_str().unwrap();
        assert!(
            errors[0].starts_with("hermes-eval: error: ") && errors[0].contains(expect),
            "{name}: expected `{expect}` in: {}",
            errors[0]
        );
        assert!(
            !out.exists() || common::files_with_prefix(&out, "results").is_empty(),
            "{name}: results were written"
        );
    }
}

macro_rules! class_tests {
    ($($test:ident => $class:literal),* $(,)?) => {
        $(#[test]
        fn $test() {
            check($class);
        })*
    };
}

class_tests! {
    task_template_that_loops_or_blows_up => "task_template_loop",
    chat_template_that_loops_or_blows_up => "chat_template_loop",
    threads_out_of_range => "threads",
    limit_zero => "limit_zero",
    empty_task_list => "empty_tasks",
    exponential_tasks_glob => "tasks_glob",
    batch_size_zero => "bench_batch_zero",
    empty_split => "empty_parquet",
    compare_runs_with_nan => "compare_nan",
    dataset_schema_cyclic_deep_or_huge_enum => "dataset_schema",
    tool_call_nested_300000_levels => "nested_tool_call",
}
