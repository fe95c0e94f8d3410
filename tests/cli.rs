//! The binary as a user runs it: end-to-end output, and bad input giving a one-line error with a
//! non-zero exit (never a panic).
mod common;
use common::*;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
}

/// Run and return (exit code, stdout, stderr).
fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let o = bin().args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, _, err) = run(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("hermes-eval: error:"))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    assert!(
        line.contains(needle),
        "error `{line}` does not mention `{needle}`"
    );
}

#[test]
fn truncated_gguf_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_gguf()).unwrap();
    let p = dir.path().join("cut.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(
        &[
            "run",
            "--tasks",
            "arc_easy",
            "--limit",
            "1",
            "--model",
            p.to_str().unwrap(),
            "--data-dir",
            hub().to_str().unwrap(),
        ],
        "past the end of the file: truncated or corrupt",
    );
    std::fs::write(&p, &bytes[..100]).unwrap();
    assert_one_line_error(
        &[
            "run",
            "--tasks",
            "arc_easy",
            "--limit",
            "1",
            "--model",
            p.to_str().unwrap(),
            "--data-dir",
            hub().to_str().unwrap(),
        ],
        "GGUF",
    );
}

fn copy_f32(dir: &std::path::Path) {
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(test_f32_dir().join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn truncated_safetensors_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_f32(dir.path());
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 1000]).unwrap();
    assert_one_line_error(
        &[
            "run",
            "--tasks",
            "arc_easy",
            "--limit",
            "1",
            "--model",
            dir.path().to_str().unwrap(),
            "--data-dir",
            hub().to_str().unwrap(),
        ],
        "safetensors",
    );
}

#[test]
fn unsupported_architecture_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_f32(dir.path());
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("LlamaForCausalLM", "GPTNeoXForCausalLM")
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(&cfg, text).unwrap();
    assert_one_line_error(
        &[
            "run",
            "--tasks",
            "arc_easy",
            "--limit",
            "1",
            "--model",
            dir.path().to_str().unwrap(),
            "--data-dir",
            hub().to_str().unwrap(),
        ],
        "unsupported architecture `GPTNeoXForCausalLM`",
    );
}

#[test]
fn unknown_task_and_missing_data_are_one_line_errors() {
    assert_one_line_error(
        &["run", "--tasks", "no_such_task", "--model", "x.gguf"],
        "no_such_task",
    );
    let empty = tempfile::tempdir().unwrap();
    assert_one_line_error(
        &[
            "run",
            "--tasks",
            "arc_easy",
            "--model",
            test_gguf().to_str().unwrap(),
            "--data-dir",
            empty.path().to_str().unwrap(),
        ],
        "allenai/ai2_arc",
    );
}

#[test]
fn unknown_gguf_pre_tokenizer_is_refused_not_guessed() {
    use candle_core::quantized::gguf_file;
    let (mut ct, _) = hermes_eval::model::load::read_gguf(&test_gguf()).unwrap();
    ct.metadata.insert(
        "tokenizer.ggml.pre".into(),
        gguf_file::Value::String("mystery-bpe".into()),
    );
    let err = hermes_eval::model::tokenizer::from_gguf(&ct)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown tokenizer.ggml.pre `mystery-bpe`"),
        "{err}"
    );
}

#[test]
fn gguf_tokenizer_gives_reference_ids_on_every_case() {
    let (ct, _) = hermes_eval::model::load::read_gguf(&test_gguf()).unwrap();
    let tok = hermes_eval::model::tokenizer::from_gguf(&ct).unwrap();
    let cases = tokenizer_cases();
    assert_eq!(cases.len(), 220);
    for (text, want) in cases {
        assert_eq!(
            hermes_eval::model::tokenizer::encode(&tok, &text).unwrap(),
            want,
            "{text:?}"
        );
    }
}

#[test]
fn run_prints_card_table_and_writes_outputs_then_report_rescores_them() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let args = run_args("arc_easy,boolq", "5", &test_gguf(), out.path());
    let (code, stdout, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("|Version|") && stdout.contains("## GPT4All:"),
        "{stdout}"
    );
    assert!(stdout.contains("|arc_easy|      0|acc     |"), "{stdout}");
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("results_") && n.ends_with(".json")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("samples_arc_easy_")),
        "{names:?}"
    );
    assert!(names.contains(&"report.md".to_string()));
    // The results say which matmul kernel ran (selected from the CPU's features).
    let results = common::files_with_prefix(out.path(), "results_")
        .pop()
        .unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    let kernel = r["model"]["kernel"].as_str().unwrap_or_default();
    assert!(kernel.starts_with("q4_1×q8_1 "), "{}", r["model"]);
    // Re-scoring the saved samples without the model prints the same table.
    let (code2, stdout2, err2) = run(&["report", o]);
    assert_eq!(code2, 0, "{err2}");
    assert_eq!(stdout2, stdout);
    // A second run is answered from the request cache with identical numbers.
    let (code3, stdout3, _) = run(&args);
    assert_eq!(code3, 0);
    assert_eq!(stdout3, stdout);
}

#[test]
fn run_with_several_models_writes_one_comparison_and_gates() {
    let out = tempfile::tempdir().unwrap();
    let gguf = test_gguf();
    let g = gguf.to_str().unwrap();
    // The same model twice: every difference is zero, so even a zero-point gate passes.
    let mut args = run_args("arc_easy", "5", &gguf, out.path());
    args.extend(["--model", g, "--max-drop", "0"].map(String::from));
    let (code, stdout, err) = run(&args);
    assert_eq!(code, 0, "{err}\n{stdout}");
    let stem = gguf.file_stem().unwrap().to_str().unwrap();
    for d in [stem.to_string(), format!("{stem}-2")] {
        let dir = out.path().join(&d);
        assert!(dir.join("report.md").is_file(), "{}", dir.display());
    }
    let cmp = out.path().join("comparison");
    for f in ["comparison.md", "comparison.json", "comparison-1.svg"] {
        assert!(cmp.join(f).is_file(), "{f}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(j["regressions"], 0);
    let metrics = j["comparisons"][0]["metrics"].as_array().unwrap();
    assert!(!metrics.is_empty());
    for m in metrics {
        assert_eq!(m["delta_points"].as_f64().unwrap(), 0.0, "{m}");
    }
    assert!(stdout.contains("PASS"), "{stdout}");
    // A gate flag with one model is a usage error.
    let mut args = run_args("arc_easy", "1", &gguf, out.path());
    args.extend(["--max-drop", "1"].map(String::from));
    let (code, _, err) = run(&args);
    assert_ne!(code, 0);
    assert!(err.contains("at least two --model"), "{err}");
}

#[test]
fn ctrl_c_keeps_finished_documents_and_a_rerun_resumes_from_the_cache() {
    use std::io::{BufRead, BufReader};
    let out = tempfile::tempdir().unwrap();
    let args = run_args("arc_easy", "40", &test_gguf(), out.path());
    let mut child = bin()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Progress lines come every 10 %; interrupt after the first one.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no progress: {seen}");
        seen.push_str(&line);
        if line.starts_with("arc_easy: ") && line.contains("docs") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(!rest.contains("panicked"), "{rest}");
    // The documents finished before the interruption are written.
    let samples = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("samples_arc_easy_")
        })
        .expect("samples kept");
    let kept = read_jsonl(&samples).len();
    assert!((1..40).contains(&kept), "{kept} documents kept");
    // Running the same command again finishes, answering the finished requests from the cache.
    let (code, stdout, err2) = run(&args);
    assert_eq!(code, 0, "{err2}");
    assert!(stdout.contains("|arc_easy|"), "{stdout}");
    let results = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("results_") && n.ends_with(".json")
        })
        .unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    let hits = r["config"]["request_cache_hits"].as_u64().unwrap();
    assert!(
        hits as usize >= kept * 3,
        "{hits} cache hits for {kept} kept docs"
    );
}

/// A panic that escapes the library is one "internal error" line (no backtrace dump), exit 101.
#[test]
fn an_escaped_panic_is_one_internal_error_line() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
        .arg("list")
        .env("HERMES_EVAL_PANIC_SELFTEST", "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(101));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("hermes-eval: internal error: self-test panic")
            && lines[0].contains("src/main.rs:")
            && lines[0].contains("please report it"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}
