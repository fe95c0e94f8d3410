//! The server backend against REAL servers on 127.0.0.1, built by scripts/build-llama-cpp.sh from
//! the llama-cpp-python 0.3.36 sdist: llama-cpp-python's server (scores, text prompts) and
//! llama.cpp's llama-server (refused by the probe for scoring; generation). Faults come from a
//! small proxy (std TcpListener) in front of the real server.
//!
//! The tests take one lock each (they share 2 cores here, and the timings they print should mean
//! something). They skip, saying so, only when the servers are absent and cannot be built
//! (scripts/build-llama-cpp.sh, run by the first test, caches the build in
//! ~/.cache/hermes-eval/llama-cpp); with HERMES_EVAL_REQUIRE_SERVERS set (.ci/run) that fails.
mod common;
use common::*;
use hermes_eval::data::DataSource;
use hermes_eval::doc::Responses;
use hermes_eval::engine::encode_pair;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::LoadOptions;
use hermes_eval::model::server::{ServerLm, ServerOptions};
use hermes_eval::model::{GenOptions, GenPrompt, LanguageModel, TokenRequest};
use hermes_eval::tasks::Registry;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const ALIAS: &str = "smollm2-135m";

/// One server test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cached build of both servers (built on first use; instant afterwards), or `None` with a
/// message when it is absent and cannot be built here.
fn servers_dir() -> Option<PathBuf> {
    static D: OnceLock<Option<PathBuf>> = OnceLock::new();
    D.get_or_init(|| {
        let o = Command::new(repo().join("scripts/build-llama-cpp.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/build-llama-cpp.sh");
        if !o.status.success() {
            // .ci/run builds them first and sets this: there, no server is a failure.
            assert!(
                std::env::var_os("HERMES_EVAL_REQUIRE_SERVERS").is_none(),
                "scripts/build-llama-cpp.sh failed (see its output above)"
            );
            eprintln!(
                "SKIPPED: the llama.cpp servers are not built and scripts/build-llama-cpp.sh could not build them (see its output above)"
            );
            return None;
        }
        Some(PathBuf::from(
            String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .trim(),
        ))
    })
    .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// llama-cpp-python's server on the test GGUF, as users start it.
    fn llama_cpp_python(dir: &Path, port: u16) -> Server {
        Server::llama_cpp_python_with(dir, port, &test_gguf(), &[])
    }

    /// llama-cpp-python's server on `model`, with `extra` server arguments.
    fn llama_cpp_python_with(dir: &Path, port: u16, model: &Path, extra: &[&str]) -> Server {
        // The unmodified server, with its per-position full-vocabulary Python sort replaced by
        // numpy's top-k (same values and order; see the launcher's docstring).
        let mut cmd = Command::new(dir.join("venv/bin/python"));
        if dir.join("lib/libllama.so").is_file() {
            // The one libllama build shared with llama-server (scripts/build-llama-cpp.sh).
            cmd.env("LLAMA_CPP_LIB_PATH", dir.join("lib"));
        }
        let child = cmd
            .arg(repo().join("tests/fixtures/llama_cpp_server.py"))
            .arg("--model")
            .arg(model)
            .args(["--model_alias", ALIAS, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args([
                "--n_ctx",
                "2048",
                "--n_threads",
                "2",
                "--n_threads_batch",
                "2",
            ])
            .args(["--logits_all", "true", "--interrupt_requests", "false"])
            .args(["--verbose", "false"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama_cpp.server");
        Server::ready(child, port)
    }

    fn llama_server(dir: &Path, port: u16) -> Server {
        let child = Command::new(dir.join("bin/llama-server"))
            .arg("-m")
            .arg(test_gguf())
            .args(["--alias", ALIAS, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["-np", "1", "-t", "2", "-c", "2048", "--no-webui"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama-server");
        Server::ready(child, port)
    }

    /// Wait until `/v1/models` answers (the model is loaded).
    fn ready(mut child: Child, port: u16) -> Server {
        let t = Instant::now();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("server on port {port} exited at start: {st}");
            }
            let r = agent
                .get(&format!("http://127.0.0.1:{port}/v1/models"))
                .call();
            if r.is_ok() {
                return Server { child, port };
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "server on {port} never became ready"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the proxy does to requests that are not the probe's.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Answer HTTP 500 to the first N scoring requests, then forward.
    Http500(usize),
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Forward, then drop the last two entries of every `token_logprobs`.
    ShortLogprobs,
    /// Never answer.
    Hang,
    /// Forward everything, counting the scoring requests.
    Count,
}

/// A fault-injecting HTTP/1.1 proxy in front of `upstream` (one request per connection).
struct Proxy {
    port: u16,
    served: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: String, fault: Fault) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let s2 = served.clone();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(300))
            .build();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (up, s, a) = (upstream.clone(), s2.clone(), agent.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &up, fault, &s, &a);
                });
            }
        });
        Proxy { port, served }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

fn proxy_one(
    conn: TcpStream,
    upstream: &str,
    fault: Fault,
    served: &AtomicUsize,
    agent: &ureq::Agent,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    // The probe's prompt (src/model/server.rs) passes untouched.
    let probe = method == "GET" || body.contains("The capital of France");
    let mut w = conn;
    let reply = |w: &mut TcpStream, code: u16, text: &str| {
        write!(
            w,
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
    };
    if !probe {
        match fault {
            Fault::Http500(n) if served.load(Ordering::SeqCst) < n => {
                served.fetch_add(1, Ordering::SeqCst);
                return reply(&mut w, 500, "{\"error\": \"injected\"}");
            }
            Fault::Malformed => {
                served.fetch_add(1, Ordering::SeqCst);
                return reply(&mut w, 200, "{\"choices\": [{\"text\": \"cut");
            }
            Fault::Hang => {
                served.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(60));
                return Ok(());
            }
            Fault::Count => {
                served.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
    let url = format!("{}{}", upstream.trim_end_matches("/v1"), path);
    let res = if method == "GET" {
        agent.get(&url).call()
    } else {
        agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body)
    };
    let (code, mut text) = match res {
        Ok(x) => (x.status(), x.into_string()?),
        Err(ureq::Error::Status(c, x)) => (c, x.into_string()?),
        Err(e) => (502, format!("{{\"error\": \"{e}\"}}")),
    };
    if fault == Fault::ShortLogprobs && !probe && code == 200 {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for c in v["choices"].as_array_mut().unwrap() {
            let a = c["logprobs"]["token_logprobs"].as_array_mut().unwrap();
            a.pop();
            a.pop();
        }
        served.fetch_add(1, Ordering::SeqCst);
        text = v.to_string();
    }
    reply(&mut w, code, &text)
}

fn options(urls: Vec<String>, concurrency: usize) -> ServerOptions {
    ServerOptions {
        urls,
        concurrency,
        timeout: Duration::from_secs(120),
        retries: 3,
        backoff: Duration::from_millis(200),
        ..ServerOptions::default()
    }
}

fn connect(urls: Vec<String>, concurrency: usize) -> ServerLm {
    ServerLm::open(ALIAS, &options(urls, concurrency), &test_gguf()).unwrap()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
}

fn cli_args(cmd: &mut Command, url: &str, tasks: &str, limit: usize, out: &Path) {
    cmd.args(["run", "--tasks", tasks, "--limit", &limit.to_string()])
        .args(["--server", url, "--model", ALIAS, "--tokenizer"])
        .arg(test_gguf())
        .arg("--data-dir")
        .arg(hub())
        .arg("--output")
        .arg(out);
}

/// `hermes-eval run` through `url`: (exit code, stdout, stderr).
fn run_cli(
    url: &str,
    tasks: &str,
    limit: usize,
    out: &Path,
    extra: &[&str],
) -> (i32, String, String) {
    let mut cmd = bin();
    cli_args(&mut cmd, url, tasks, limit, out);
    let o = cmd.args(extra).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn error_line(err: &str) -> String {
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("hermes-eval: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected in:\n{err}");
    lines[0].to_string()
}

/// A run directory's samples for `task`.
fn samples(out: &Path, task: &str) -> Vec<serde_json::Value> {
    let p = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("samples_{task}_"))
        })
        .unwrap_or_else(|| panic!("no samples for {task} in {}", out.display()));
    read_jsonl(&p)
}

fn results(out: &Path) -> serde_json::Value {
    let p = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("results_") && n.ends_with(".json")
        })
        .expect("results json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Lines in the run's request cache (one per finished request).
fn cache_lines(out: &Path) -> usize {
    std::fs::read_dir(out.join("cache"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Per-request agreement of two scorers on the same requests.
#[derive(Default)]
struct Agreement {
    deltas: Vec<f64>,
    changed: Vec<String>,
    docs: usize,
    per_task: Vec<String>,
}

impl Agreement {
    fn within(&self, tol: f64) -> usize {
        self.deltas.iter().filter(|&&d| d <= tol).count()
    }

    fn median(&self) -> f64 {
        median(&mut self.deltas.clone())
    }

    fn max(&self) -> f64 {
        self.deltas.iter().cloned().fold(0f64, f64::max)
    }

    fn summary(&self) -> String {
        let n = self.deltas.len();
        format!(
            "{n} requests of {} documents, median |d| {:.2e}, max |d| {:.2e}, within 0.02: {}/{n} ({:.1} %), documents whose answer or metrics changed: {} {:?}",
            self.docs,
            self.median(),
            self.max(),
            self.within(0.02),
            100.0 * self.within(0.02) as f64 / n as f64,
            self.changed.len(),
            self.changed
        )
    }
}

/// Documents per task for the agreement tests: the issue's `--limit 20` on arc_easy, fewer on
/// the tasks with long requests (llama-cpp-python serves one request at a time and
/// post-processes every echoed position in Python); HERMES_EVAL_SERVER_LIMIT=20 runs 20 of each.
fn agreement_tasks() -> Vec<(&'static str, usize)> {
    let env_limit: Option<usize> = std::env::var("HERMES_EVAL_SERVER_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok());
    [("arc_easy", 20), ("hellaswag", 10), ("truthfulqa_mc", 5)]
        .into_iter()
        .map(|(t, n)| (t, env_limit.unwrap_or(n)))
        .collect()
}

/// Score the requests of `tasks` (encoded by `a`'s tokenizer, as the engine encodes them) with
/// `a` and `b`; `bos_a` / `bos_b` is put before the context of the side that needs it (the
/// in-process engine, where it is compared with a text-mode server that scores
/// `[BOS] + context + continuation`). Per-document answers and metrics (to 1e-3) are compared too.
fn agreement(
    tasks: &[(&str, usize)],
    a: &mut dyn LanguageModel,
    bos_a: Option<u32>,
    b: &mut dyn LanguageModel,
    bos_b: Option<u32>,
) -> Agreement {
    let reg = Registry::builtin().unwrap();
    let data = DataSource::new(Some(hub()));
    let eos = a.eos_token_ids().first().copied();
    let mut agr = Agreement::default();
    for &(name, limit) in tasks {
        let task = reg.task(name).unwrap();
        let all = task.load_docs(&data, Some(limit)).unwrap();
        let tt = Instant::now();
        let before = (agr.deltas.len(), agr.changed.len());
        let reqs: Vec<Vec<TokenRequest>> = all
            .iter()
            .map(|doc| {
                doc.requests
                    .iter()
                    .map(|r| encode_pair(a.tokenizer(), r, eos).unwrap())
                    .collect()
            })
            .collect();
        let flat: Vec<TokenRequest> = reqs.iter().flatten().cloned().collect();
        let with = |bos: Option<u32>| -> Vec<TokenRequest> {
            flat.iter()
                .map(|r| TokenRequest {
                    context: bos.iter().chain(&r.context).copied().collect(),
                    continuation: r.continuation.clone(),
                })
                .collect()
        };
        // One call per task and side, as the engine batches across documents.
        let la = a.loglikelihood(&with(bos_a)).unwrap();
        let lb = b.loglikelihood(&with(bos_b)).unwrap();
        let mut k = 0;
        for (doc, rs) in all.iter().zip(&reqs) {
            let (x, y) = (&la[k..k + rs.len()], &lb[k..k + rs.len()]);
            k += rs.len();
            for (p, q) in x.iter().zip(y) {
                agr.deltas.push((p.logprob - q.logprob).abs());
            }
            let resp = |l: &[hermes_eval::doc::Loglik]| Responses {
                lls: l.to_vec(),
                ..Default::default()
            };
            let (s1, s2) = (
                task.score(doc, &resp(x)).unwrap(),
                task.score(doc, &resp(y)).unwrap(),
            );
            // acc/acc_norm/mc1 are 0 or 1; mc2 (a probability mass) moves with any |d|.
            let moved = s1.metrics.len() != s2.metrics.len()
                || s1
                    .metrics
                    .iter()
                    .zip(&s2.metrics)
                    .any(|((k1, v1), (k2, v2))| k1 != k2 || (v1 - v2).abs() > 1e-3);
            if s1.answer != s2.answer || moved {
                agr.changed.push(format!("{name}/{}", doc.id));
            }
            agr.docs += 1;
        }
        let d = Agreement {
            deltas: agr.deltas[before.0..].to_vec(),
            changed: agr.changed[before.1..].to_vec(),
            docs: all.len(),
            per_task: vec![],
        };
        let line = format!(
            "{name}: {} ({:.0} s)",
            d.summary(),
            tt.elapsed().as_secs_f64()
        );
        eprintln!("  {line}");
        agr.per_task.push(line);
    }
    agr
}

/// (a) llama-cpp-python's server and the in-process engine score the same tokens of arc_easy,
/// hellaswag and truthfulqa_mc on the same weights in the same (f32) arithmetic: the test GGUF
/// dequantized by `quantize --to f32`, served with an f32 KV cache. The server only takes text
/// and is shifted by one without a leading BOS, so both score `[BOS] + context + continuation`.
#[test]
fn llama_cpp_python_scores_like_the_in_process_engine() {
    let _g = serial();
    let Some(dir) = servers_dir() else { return };
    let f32_gguf = test_gguf_f32();
    // type_k/type_v 0 = GGML_TYPE_F32: llama.cpp's default f16 KV cache rounds keys and values.
    let srv = Server::llama_cpp_python_with(
        &dir,
        free_port(),
        &f32_gguf,
        &["--type_k", "0", "--type_v", "0"],
    );
    let mut server = ServerLm::open(ALIAS, &options(vec![srv.url()], 1), &f32_gguf).unwrap();
    let d = server.details();
    assert_eq!(d["servers"][0]["kind"], "llama-cpp-python", "{d}");
    assert_eq!(
        d["servers"][0]["prompt"], "text, BOS-prefixed, tokens checked",
        "{d}"
    );
    assert!(server.scoring_refusal().is_none(), "{d}");
    let mut local = CandleLm::load(f32_gguf.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let bos = local.llama.cfg.bos_token_id.expect("BOS");
    let tasks = agreement_tasks();
    let t = Instant::now();
    let agr = agreement(&tasks, &mut server, None, &mut local, Some(bos));
    let n = agr.deltas.len();
    let share = agr.within(0.02) as f64 / n as f64;
    eprintln!(
        "llama-cpp-python (F32 GGUF, f32 KV) vs in-process (same F32 GGUF) {tasks:?}: {} ({:.0} s)",
        agr.summary(),
        t.elapsed().as_secs_f64()
    );
    assert!(
        share >= 0.95,
        "only {} requests within 0.02 nats",
        agr.within(0.02)
    );
    // Same weights, both f32: what is left is summation order (llama.cpp's matmul and softmax
    // vs candle's and torch's), measured at ~1e-4 per request.
    assert!(agr.max() < 2e-3, "max |d| {:.2e}", agr.max());
    assert!(agr.changed.is_empty(), "{:?}", agr.changed);
}

/// (a') The same on the Q4_1 GGUF itself, where both sides use llama.cpp's quantized arithmetic
/// (8-bit-quantized activations, f16 KV cache). The in-process engine reproduces the llama.cpp
/// build of `../shared/reference` bit for bit; llama-cpp-python 0.3.36's build gives different
/// values, and so does that same build with another batch size. Rounding activations to 8 bits
/// makes a quantized model's log-likelihoods jump with any change of float summation order, so
/// builds (and batch sizes) disagree by tenths of a nat. The test measures both and asserts the
/// explanation: llama.cpp disagrees with itself (batch 1 vs 512) by far more than 0.02 and
/// within a small factor of how much it disagrees with us.
#[test]
fn q4_1_through_llama_cpp_python_differs_as_llama_cpp_differs_from_itself() {
    let _g = serial();
    let Some(dir) = servers_dir() else { return };
    // llama-cpp-python evaluates a batch-1 server's prompts token by token, slowly: 5 documents.
    let tasks = [("arc_easy", 5)];
    let srv = Server::llama_cpp_python(&dir, free_port());
    let mut server = connect(vec![srv.url()], 1);
    let mut local = CandleLm::load(test_gguf().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let bos = local.llama.cfg.bos_token_id.expect("BOS");
    let ours = agreement(&tasks, &mut server, None, &mut local, Some(bos));
    eprintln!(
        "Q4_1: llama-cpp-python (n_batch 512) vs in-process: {}",
        ours.summary()
    );
    let srv1 = Server::llama_cpp_python_with(
        &dir,
        free_port(),
        &test_gguf(),
        &["--n_batch", "1", "--n_ubatch", "1"],
    );
    let mut server1 = connect(vec![srv1.url()], 1);
    let own = agreement(&tasks, &mut server, None, &mut server1, None);
    eprintln!(
        "Q4_1: llama-cpp-python n_batch 512 vs the same server with n_batch 1: {}",
        own.summary()
    );
    // Measured on arc_easy's first 20 documents: median 0.136 (vs in-process) and 0.115 (vs
    // itself at batch 1); 5 documents keep this test to minutes, so the bounds are loose.
    assert!(
        own.median() > 0.02 && ours.median() < 4.0 * own.median(),
        "llama.cpp agrees with itself (median {:.3}) much better than with the in-process engine ({:.3}): the residue is ours",
        own.median(),
        ours.median()
    );
}

/// (b) llama.cpp's llama-server returns no prompt log-probabilities: refused for scoring with the
/// one-line message before any work; it still serves greedy generation, compared with the
/// in-process engine on bigbench_geometric_shapes' prompts, and runs a generation task end to
/// end through the CLI.
#[test]
fn llama_server_is_refused_for_scoring_and_generates_like_the_engine() {
    let _g = serial();
    let Some(dir) = servers_dir() else { return };
    let srv = Server::llama_server(&dir, free_port());
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(&srv.url(), "arc_easy", 2, out.path(), &[]);
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    assert!(
        line.contains("server returns no prompt log-probabilities (echo unsupported): llama.cpp's llama-server cannot score multiple-choice tasks; use vLLM, SGLang or llama-cpp-python's server"),
        "{line}"
    );
    assert!(line.contains(&srv.url()), "{line}");
    assert!(
        !out.path().join("cache").exists() || cache_lines(out.path()) == 0,
        "work done before the refusal"
    );
    eprintln!("llama-server refused: {line}");

    let mut server = connect(vec![srv.url()], 1);
    let d = server.details();
    assert_eq!(d["servers"][0]["kind"], "llama.cpp", "{d}");
    assert_eq!(d["servers"][0]["prompt"], "token ids", "{d}");
    let mut local = CandleLm::load(test_gguf().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let reg = Registry::builtin().unwrap();
    let task = reg.task("bigbench_geometric_shapes").unwrap();
    let n = 8;
    let docs = task
        .load_docs(&DataSource::new(Some(hub())), Some(n))
        .unwrap();
    let tok = local.tokenizer().clone();
    let prompts: Vec<GenPrompt> = docs
        .iter()
        .map(|d| GenPrompt {
            ids: hermes_eval::model::tokenizer::encode(
                &tok,
                &d.generation.as_ref().unwrap().context,
            )
            .unwrap(),
            task: task.name.clone(),
            doc_id: d.src_index,
        })
        .collect();
    // As the engine asks for it: greedy, stop at EOS, 128 new tokens at most.
    let eos = local.eos_token_ids();
    let opts = GenOptions {
        max_new_tokens: 128,
        stop_tokens: eos.clone(),
        stop_strings: eos.iter().filter_map(|&e| tok.id_to_token(e)).collect(),
        ..Default::default()
    };
    let t = Instant::now();
    let remote = server.generate(&prompts, &opts).unwrap();
    let t_remote = t.elapsed().as_secs_f64();
    let here = local.generate(&prompts, &opts).unwrap();
    let dec = |ids: &[u32]| hermes_eval::model::tokenizer::decode(&tok, ids, true).unwrap();
    let mut same = 0;
    let mut first_diff = vec![];
    for (a, b) in remote.iter().zip(&here) {
        let (ta, tb) = (dec(a), dec(b));
        if ta == tb {
            same += 1;
        } else {
            let k = ta
                .chars()
                .zip(tb.chars())
                .take_while(|(x, y)| x == y)
                .count();
            first_diff.push(k);
            eprintln!("differs after {k} chars:\n  server:     {ta:?}\n  in-process: {tb:?}");
        }
    }
    eprintln!(
        "llama-server vs in-process greedy generation (geometric_shapes, {n} prompts, <= 128 tokens): {same}/{n} identical texts; first differing char {first_diff:?}; server {t_remote:.1} s"
    );
    // Greedy decoding of the same weights: a near-tie can flip under llama.cpp's different
    // summation order, after which the texts diverge; most must agree.
    assert!(same * 4 >= n * 3, "only {same}/{n} generations identical");

    // A generation-only task runs end to end through the CLI.
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args([
        "fc",
        "--dataset",
        "gorilla-llm/Berkeley-Function-Calling-Leaderboard",
    ])
    .args([
        "--category",
        "simple",
        "--limit",
        "2",
        "--max-new-tokens",
        "48",
    ])
    .args(["--server", &srv.url(), "--model", ALIAS, "--tokenizer"])
    .arg(test_gguf())
    .arg("--data-dir")
    .arg(hub())
    .arg("--output")
    .arg(out.path());
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let s = samples(out.path(), "bfcl_simple");
    assert_eq!(s.len(), 2);
    let r = results(out.path());
    assert_eq!(r["model"]["identity"]["backend"], "server", "{r}");
}

/// (c) Faults against the real server: HTTP 500 bursts are retried; a malformed reply and a
/// short `token_logprobs` are one-line errors naming the server and the request; a hung server
/// times out; a server killed mid-run loses no finished batch, and a rerun after the restart
/// resumes and ends with the results of an uninterrupted run. (d) --concurrency 1 vs 4, timed.
#[test]
fn faults_are_retried_refused_or_resumed() {
    let _g = serial();
    let Some(dir) = servers_dir() else { return };
    let port = free_port();
    let mut srv = Server::llama_cpp_python(&dir, port);
    let fast = [
        "--retry-backoff",
        "0.1",
        "--retries",
        "3",
        "--batch-size",
        "8",
    ];
    let limit = 12;

    // The reference: an uninterrupted run, with concurrency 1 and 4 timed.
    let full = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (code, stdout, err) = run_cli(
        &srv.url(),
        "arc_easy",
        limit,
        full.path(),
        &["--concurrency", "1", "--no-cache"],
    );
    let t1 = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("|arc_easy|"), "{stdout}");
    let conc = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (code, stdout4, err) = run_cli(
        &srv.url(),
        "arc_easy",
        limit,
        conc.path(),
        &["--concurrency", "4", "--no-cache"],
    );
    let t4 = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    eprintln!(
        "arc_easy --limit {limit} through llama-cpp-python: --concurrency 1 {t1:.1} s, --concurrency 4 {t4:.1} s"
    );
    assert_eq!(stdout4, stdout, "concurrency changed the results");

    // HTTP 500 burst: retried, same results.
    let proxy = Proxy::start(srv.url(), Fault::Http500(3));
    let out = tempfile::tempdir().unwrap();
    let (code, s, err) = run_cli(&proxy.url(), "arc_easy", limit, out.path(), &fast);
    assert_eq!(code, 0, "{err}");
    assert_eq!(proxy.served(), 3);
    assert_eq!(s, stdout);

    // Malformed JSON and a short token_logprobs: one line naming server and request, no retry.
    for (fault, needle) in [
        (Fault::Malformed, "reply is not valid JSON"),
        (Fault::ShortLogprobs, "`token_logprobs` has"),
    ] {
        let proxy = Proxy::start(srv.url(), fault);
        let out = tempfile::tempdir().unwrap();
        let (code, _, err) = run_cli(
            &proxy.url(),
            "arc_easy",
            2,
            out.path(),
            &[
                "--concurrency",
                "1",
                "--retries",
                "3",
                "--retry-backoff",
                "0.1",
            ],
        );
        assert_eq!(code, 1, "{err}");
        let line = error_line(&err);
        eprintln!("{line}");
        assert!(line.contains(needle), "{line}");
        assert!(line.contains(&format!("server {}", proxy.url())), "{line}");
        assert!(line.contains("loglikelihood request #0:"), "{line}");
        assert_eq!(proxy.served(), 1, "not retried");
    }

    // A hung server: each attempt times out, then one line says so.
    let proxy = Proxy::start(srv.url(), Fault::Hang);
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (code, _, err) = run_cli(
        &proxy.url(),
        "arc_easy",
        2,
        out.path(),
        &["--timeout", "1", "--retries", "1", "--retry-backoff", "0.1"],
    );
    assert_eq!(code, 1, "{err}");
    let line = error_line(&err);
    eprintln!("{line}");
    assert!(
        line.contains("no reply within 1 s") && line.contains("gave up after 2 attempts"),
        "{line}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "timeout not honoured"
    );

    // The cache key: the same server keeps it across a restart, another server differs.
    let key_before = connect(vec![srv.url()], 1).identity().cache_key();

    // Killed mid-run: the CLI fails naming the server, finished batches stay in the cache, and a
    // rerun after the restart resumes and ends with the uninterrupted run's results.
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cli_args(&mut cmd, &srv.url(), "arc_easy", limit, out.path());
    let mut child = cmd
        .args(fast)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while cache_lines(out.path()) < 8 {
        assert!(t.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    srv.kill();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1), "{err}");
    let line = error_line(&err);
    eprintln!("{line}");
    assert!(
        line.contains(&format!("server {}", srv.url()))
            && line.contains("gave up after 4 attempts"),
        "{line}"
    );
    let kept = cache_lines(out.path());
    let total: usize = samples(full.path(), "arc_easy")
        .iter()
        .map(|d| d["resps"].as_array().unwrap().len())
        .sum();
    assert!(
        (8..total).contains(&kept) && kept.is_multiple_of(8),
        "{kept} of {total} requests cached (whole batches of 8 expected)"
    );
    let srv2 = Server::llama_cpp_python(&dir, port);
    assert_eq!(
        connect(vec![srv2.url()], 1).identity().cache_key(),
        key_before,
        "a restarted server must keep the cache key"
    );
    let (code, s, err) = run_cli(&srv2.url(), "arc_easy", limit, out.path(), &fast);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s, stdout, "resumed run differs from the uninterrupted one");
    let hits = results(out.path())["config"]["request_cache_hits"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(hits, kept, "every finished request answered from the cache");
    let (a, b) = (
        samples(out.path(), "arc_easy"),
        samples(full.path(), "arc_easy"),
    );
    assert_eq!(a.len(), limit);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["resps"], y["resps"], "doc {}", x["doc_id"]);
    }
    eprintln!("killed after {kept} of {total} requests were cached; the rerun answered {hits} from the cache and ended equal to the uninterrupted run");
}

/// Two servers in one run: requests spread over both, results as with one; the cache keys of
/// different servers differ.
#[test]
fn several_servers_share_one_run_and_never_share_cache_keys() {
    let _g = serial();
    let Some(dir) = servers_dir() else { return };
    let (a, b) = (
        Server::llama_cpp_python(&dir, free_port()),
        Server::llama_cpp_python(&dir, free_port()),
    );
    let mut one = connect(vec![a.url()], 1);
    let other = connect(vec![b.url()], 1);
    assert_ne!(one.identity().cache_key(), other.identity().cache_key());
    assert_eq!(one.identity().backend, "server");
    assert_eq!(one.identity().format, "openai-completions");
    let (pa, pb) = (
        Proxy::start(a.url(), Fault::Count),
        Proxy::start(b.url(), Fault::Count),
    );
    let mut both = connect(vec![pa.url(), pb.url()], 2);
    let reg = Registry::builtin().unwrap();
    let task = reg.task("arc_easy").unwrap();
    let reqs: Vec<TokenRequest> = task
        .load_docs(&DataSource::new(Some(hub())), Some(6))
        .unwrap()
        .iter()
        .flat_map(|d| d.requests.clone())
        .map(|r| encode_pair(one.tokenizer(), &r, Some(2)).unwrap())
        .collect();
    let spread = both.loglikelihood(&reqs).unwrap();
    let single = one.loglikelihood(&reqs).unwrap();
    for (x, y) in spread.iter().zip(&single) {
        assert!((x.logprob - y.logprob).abs() < 0.02, "{x:?} vs {y:?}");
    }
    let (na, nb) = (pa.served(), pb.served());
    assert_eq!(na + nb, reqs.len());
    assert!(na > 0 && nb > 0, "requests not spread: {na} + {nb}");
    eprintln!("{} requests over two servers: {na} + {nb}", reqs.len());
}
