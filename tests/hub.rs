//! The hub path, which every user without a mirror takes: `--model org/name/file.gguf` and the
//! dataset fetched through hf-hub, against a stand-in hub on 127.0.0.1
//! (tests/fixtures/hub_server.py, the `resolve` and `api/.../revision` layout) with
//! `HF_ENDPOINT`, a fresh `HF_HOME` and no `--data-dir`; then `HF_HUB_OFFLINE=1` with the warm
//! cache (same numbers, no server) and with a cold one (a one-line error that says what to do).
//! `--model org/name` on a GGUF-only repo takes its one .gguf, or asks for one by name.
mod common;
use common::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const MODEL_ID: &str = "test-org/smollm2-q4/SmolLM2-135M-Instruct.Q4_1.gguf";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The ARC-Easy test parquet files of the mirror.
fn arc_easy_test_parquet() -> Vec<PathBuf> {
    let files = files_with_prefix(&hub().join("datasets/allenai/ai2_arc/ARC-Easy"), "test-");
    assert!(!files.is_empty(), "no ARC-Easy test parquet in the mirror");
    files
}

fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target.canonicalize().unwrap(), at).unwrap();
}

/// The stand-in hub: killed when dropped.
struct Hub {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Hub {
    /// Serve the test GGUF as model repo `test-org/smollm2-q4` and the mirror's ARC-Easy test
    /// split as dataset repo `allenai/ai2_arc` (main: `ARC-Easy/test-*.parquet`).
    fn start(dir: &Path) -> Hub {
        let root = dir.join("root");
        link(
            &test_gguf(),
            &root.join("test-org/smollm2-q4/SmolLM2-135M-Instruct.Q4_1.gguf"),
        );
        for name in ["a.Q4_1.gguf", "b.Q4_1.gguf"] {
            link(&test_gguf(), &root.join("test-org/two-quants").join(name));
        }
        for f in arc_easy_test_parquet() {
            let name = f.file_name().unwrap();
            link(
                &f,
                &root.join("datasets/allenai/ai2_arc/ARC-Easy").join(name),
            );
        }
        let log = dir.join("requests.log");
        let mut child = Command::new("python3")
            .arg(repo().join("tests/fixtures/hub_server.py"))
            .arg(&root)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 tests/fixtures/hub_server.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("hub_server.py printed `{line}`"));
        Hub { child, port, log }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hermes-eval run --tasks arc_easy --limit 5 --model <model> --output <out> [extra]` with
/// `HF_HOME=<home>`, `HF_ENDPOINT=<endpoint>`, `HF_HUB_OFFLINE` as given, and no mirror from the
/// environment. Returns (exit code, stderr).
fn run_arc(
    model: &str,
    out: &Path,
    home: &Path,
    endpoint: &str,
    offline: bool,
    extra: &[&str],
) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermes-eval"));
    cmd.args([
        "run", "--tasks", "arc_easy", "--limit", "5", "--model", model,
    ])
    .arg("--output")
    .arg(out)
    .args(extra)
    .env_remove("HERMES_EVAL_DATA_DIR")
    .env_remove("HF_HUB_OFFLINE")
    .env_remove("HF_TOKEN")
    .env("HF_HOME", home)
    .env("HF_ENDPOINT", endpoint);
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn samples(out: &Path) -> Vec<serde_json::Value> {
    let files = files_with_prefix(out, "samples_arc_easy_");
    assert_eq!(files.len(), 1, "{files:?}");
    let rows = read_jsonl(&files[0]);
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert!(
            r["loglik_f64"].as_array().is_some_and(|v| !v.is_empty()),
            "{r}"
        );
        assert!(r["acc"].is_number() && r["acc_norm"].is_number(), "{r}");
    }
    rows
}

/// A port with nothing listening (bound, then released).
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
}

#[test]
fn hub_download_then_offline_warm_cache_same_samples() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("hf_home");
    let gguf = test_gguf();

    // The reference: the local GGUF and the mirror.
    let reference = t.path().join("reference");
    let hub_dir = hub();
    let (code, err) = run_arc(
        gguf.to_str().unwrap(),
        &reference,
        &t.path().join("unused_home"),
        &dead_endpoint(),
        false,
        &["--data-dir", hub_dir.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let want = samples(&reference);

    // 1. Everything through the hub: model and dataset downloaded into HF_HOME.
    let server = Hub::start(t.path());
    let d1 = t.path().join("d1");
    let (code, err) = run_arc(MODEL_ID, &d1, &home, &server.endpoint(), false, &[]);
    assert_eq!(code, 0, "{err}\nrequests:\n{}", server.requests());
    let asked = server.requests();
    for needle in [
        "GET /api/datasets/allenai/ai2_arc/revision/main 200",
        "GET /datasets/allenai/ai2_arc/resolve/main/ARC-Easy/test-",
        "GET /test-org/smollm2-q4/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf 206",
    ] {
        assert!(asked.contains(needle), "no `{needle}` in\n{asked}");
    }
    let cache = home.join("hub");
    assert!(cache
        .join("models--test-org--smollm2-q4/snapshots")
        .join(COMMIT)
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        .is_file());
    assert!(cache.join("datasets--allenai--ai2_arc/refs/main").is_file());
    assert_eq!(samples(&d1), want, "hub run differs from the local run");

    // A GGUF-only repo named without its file: its one .gguf is used...
    let d1b = t.path().join("d1b");
    let (code, err) = run_arc(
        "test-org/smollm2-q4",
        &d1b,
        &home,
        &server.endpoint(),
        false,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        samples(&d1b),
        want,
        "org/name run differs from the local run"
    );
    // ...and with several, the error asks for one by name.
    let (code, err) = run_arc(
        "test-org/two-quants",
        &t.path().join("d1c"),
        &home,
        &server.endpoint(),
        false,
        &[],
    );
    assert_one_error_line(
        code,
        &err,
        &[
            "a.Q4_1.gguf, b.Q4_1.gguf",
            "name one",
            "test-org/two-quants/a.Q4_1.gguf",
        ],
    );

    // 2. Offline with the warm cache, the server gone: the same numbers.
    let endpoint = server.endpoint();
    drop(server);
    let d2 = t.path().join("d2");
    let (code, err) = run_arc(MODEL_ID, &d2, &home, &endpoint, true, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(samples(&d2), want, "offline run differs from the local run");
    let d2b = t.path().join("d2b");
    let (code, err) = run_arc("test-org/smollm2-q4", &d2b, &home, &endpoint, true, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        samples(&d2b),
        want,
        "offline org/name run differs from the local run"
    );
}

/// stderr is exactly one `hermes-eval: error:` line containing every needle.
fn assert_one_error_line(code: i32, err: &str, needles: &[&str]) {
    assert_ne!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("hermes-eval: error:"), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing from `{}`", lines[0]);
    }
}

#[test]
fn offline_cold_cache_is_one_line_that_says_what_to_do() {
    let t = tempfile::tempdir().unwrap();

    // Nothing cached: the dataset is the first thing missing.
    let cold = t.path().join("cold");
    let (code, err) = run_arc(
        MODEL_ID,
        &t.path().join("o1"),
        &cold,
        &dead_endpoint(),
        true,
        &[],
    );
    assert_one_error_line(
        code,
        &err,
        &[
            "allenai/ai2_arc",
            "datasets--allenai--ai2_arc",
            "unset HF_HUB_OFFLINE",
            "--data-dir",
        ],
    );

    // The dataset cached (laid out as hf-hub leaves it), the model not.
    let half = t.path().join("half");
    let repo = half.join("hub/datasets--allenai--ai2_arc");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    for f in arc_easy_test_parquet() {
        link(
            &f,
            &repo
                .join("snapshots")
                .join(COMMIT)
                .join("ARC-Easy")
                .join(f.file_name().unwrap()),
        );
    }
    let (code, err) = run_arc(
        MODEL_ID,
        &t.path().join("o2"),
        &half,
        &dead_endpoint(),
        true,
        &[],
    );
    assert_one_error_line(
        code,
        &err,
        &[
            "test-org/smollm2-q4",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "models--test-org--smollm2-q4",
            "unset HF_HUB_OFFLINE",
            "local .gguf",
        ],
    );
}
