//! Shared test helpers: where the test model, the dataset mirror and the reference outputs are.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Run the hermes-eval binary: (exit code, stdout, stderr).
pub fn hermes<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// The files of `dir` whose names start with `prefix`, sorted (timestamps sort by time).
pub fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository (dataset mirror and reference outputs).
pub fn shared() -> PathBuf {
    std::env::var_os("HERMES_EVAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"))
}

pub fn hub() -> PathBuf {
    shared().join("hub")
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF, fetched by scripts/fetch-test-model.sh.
pub fn test_gguf() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("HERMES_EVAL_TEST_MODEL") {
            return PathBuf::from(p);
        }
        let out = std::process::Command::new(repo().join("scripts/fetch-test-model.sh"))
            .output()
            .expect("run scripts/fetch-test-model.sh");
        assert!(
            out.status.success(),
            "fetch-test-model failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// The f32 Hugging Face export of the test GGUF (made once per test binary).
pub fn test_f32_dir() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = repo().join("target/test-models/smollm2-135m-f32");
        if !dir.join("model.safetensors").is_file() {
            let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
            hermes_eval::model::export::gguf_to_hf(&test_gguf(), &tmp).expect("export f32");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).expect("rename export");
        }
        dir
    })
    .clone()
}

/// The test GGUF dequantized to an F32 GGUF by `hermes-eval quantize --to f32` (made once).
pub fn test_gguf_f32() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let path = repo().join("target/test-models/smollm2-135m-f32.gguf");
        if !path.is_file() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let (code, _, err) = hermes(&[
                "quantize".as_ref(),
                test_gguf().as_os_str(),
                "--to".as_ref(),
                "f32".as_ref(),
                "--output".as_ref(),
                tmp.as_os_str(),
            ]);
            assert_eq!(code, 0, "quantize --to f32: {err}");
            std::fs::rename(&tmp, &path).expect("rename f32 gguf");
        }
        path
    })
    .clone()
}

/// `run --tasks T --limit N --model M --data-dir <mirror> --output O` (request cache on).
pub fn run_args(
    tasks: &str,
    limit: &str,
    model: &std::path::Path,
    out: &std::path::Path,
) -> Vec<String> {
    let hub = hub();
    [
        "run",
        "--tasks",
        tasks,
        "--limit",
        limit,
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        hub.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `../shared/reference/tokenizer_cases.jsonl` as (text, reference ids).
pub fn tokenizer_cases() -> Vec<(String, Vec<u32>)> {
    read_jsonl(&shared().join("reference/tokenizer_cases.jsonl"))
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap();
            (
                c["text"].as_str().unwrap().to_string(),
                ids.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            )
        })
        .collect()
}

/// Largest |x| of a tensor.
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// A request of a reference file (`context`, `continuation` strings) tokenized as the engine
/// tokenizes it (TASKS_SPEC §1.3: no BOS, trailing whitespace moved to the continuation).
pub fn reference_request(
    tok: &tokenizers::Tokenizer,
    r: &serde_json::Value,
) -> hermes_eval::model::TokenRequest {
    let req = hermes_eval::doc::LoglikRequest {
        context: r["context"].as_str().unwrap().into(),
        continuation: r["continuation"].as_str().unwrap().into(),
    };
    hermes_eval::engine::encode_pair(tok, &req, None).unwrap()
}

/// llama.cpp's tokenizer conformance files (`ggml-vocab-<name>.gguf` + `.inp` / `.out`), fetched
/// by scripts/fetch-vocab-tests.sh (or `HERMES_EVAL_VOCAB_TESTS`).
pub fn vocab_dir() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("HERMES_EVAL_VOCAB_TESTS") {
            return PathBuf::from(p);
        }
        let out = std::process::Command::new(repo().join("scripts/fetch-vocab-tests.sh"))
            .output()
            .expect("run scripts/fetch-vocab-tests.sh");
        assert!(
            out.status.success(),
            "fetch-vocab-tests failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// The cases of one llama.cpp conformance vocabulary, split as llama.cpp's test-tokenizer-0 splits them.
pub fn vocab_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    // As test-tokenizer-0.cpp: a separator at the very end starts no further case.
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if inp.ends_with("\n__ggml_vocab_test__\n") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    texts.into_iter().map(String::from).zip(ids).collect()
}

/// A corpus a repository script writes (`python3 scripts/<script> ARGS… target/<dir>`, the
/// directory rewritten), with the cases of its `manifest.json`.
pub fn script_corpus(
    script: &str,
    args: &[PathBuf],
    dir: &str,
) -> (PathBuf, Vec<serde_json::Value>) {
    let dir = repo().join("target").join(dir);
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts").join(script))
        .args(args)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    (dir, m)
}
