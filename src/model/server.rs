//! An OpenAI-compatible `/v1/completions` backend: the inference servers people already run (vLLM,
//! SGLang, llama-cpp-python's server; llama.cpp's `llama-server` for generation only) score the
//! requests the engine tokenized locally, exactly as TASKS_SPEC §1.3.
//!
//! - Log-likelihood: the prompt `context + continuation` with `echo: true, logprobs: 1,
//!   max_tokens: 1, temperature: 0, seed`; the answer is the sum of the echoed prompt
//!   log-probabilities over the continuation positions, `is_greedy` from `top_logprobs`.
//!   Token-id prompts where the server takes them; otherwise (llama-cpp-python) a text prompt
//!   prefixed with the BOS string (that server's echo is shifted by one without it) whose echoed
//!   tokens must equal ours, or the request is refused.
//! - Generation: the exact prompt (ids where accepted), greedy, neutral penalties, stops.
//! - A conformance probe ([`probe`]) runs before any request: prompt log-probabilities present,
//!   aligned and repeatable, or a one-line refusal that says why and what to do.
//! - `concurrency` requests in flight per server over several servers, several prompts per body
//!   where the server takes lists, retries with exponential backoff on connection errors,
//!   timeouts, 429 and 5xx (never on other 4xx), a per-request timeout.
//!
//! The HTTP core ([`ServerLm::score_batch`], [`ServerLm::generate_batch`]) is independent of the
//! [`LanguageModel`] trait, whose methods are thin wrappers.
use super::{tokenizer, GenOptions, GenPrompt, LanguageModel, ModelIdentity, TokenRequest};
use crate::chat::ChatTemplate;
use crate::doc::Loglik;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How prompts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptMode {
    /// Token ids where the probe shows the server takes them with echo, else BOS-prefixed text.
    Auto,
    /// Token-id prompts only (vLLM, SGLang).
    Tokens,
    /// Text prompts (llama-cpp-python), each checked against the server's echoed tokens.
    Text,
}

/// Connection and retry settings of the server backend ([`super::OpenOptions::server`]).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Base URLs (`http://host:8000/v1`); requests are spread over all of them.
    pub urls: Vec<String>,
    /// Requests in flight per server.
    pub concurrency: usize,
    /// Prompts per request body on servers that take lists (vLLM, SGLang; others get 1).
    pub batch: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after a connection error, timeout, 429 or 5xx (never after another 4xx).
    pub retries: u32,
    /// Wait before the first retry; doubles each time (at most 30 s).
    pub backoff: Duration,
    pub prompt_mode: PromptMode,
    /// `seed` of every request.
    pub seed: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            urls: vec![],
            concurrency: 4,
            batch: 8,
            timeout: Duration::from_secs(300),
            retries: 5,
            backoff: Duration::from_secs(1),
            prompt_mode: PromptMode::Auto,
            seed: 1234,
        }
    }
}

/// What the probe found about one server.
#[derive(Debug, Clone)]
pub struct Findings {
    /// Who serves (from `/v1/models` `owned_by`): vllm, sglang, llama-cpp-python, llama.cpp, …
    pub kind: String,
    /// `/v1/models` without volatile fields (timestamps).
    pub models: Value,
    /// Prompts go as token ids (else BOS-prefixed text).
    pub token_ids: bool,
    /// Why the server cannot score log-likelihoods (`None`: it can).
    pub refusal: Option<String>,
    /// A repeated probe request returned bit-identical log-probabilities.
    pub deterministic: bool,
    /// Largest context the server reports (vLLM's `max_model_len`).
    pub max_model_len: Option<usize>,
}

impl Findings {
    fn prompt_mode(&self) -> &'static str {
        if self.token_ids {
            "token ids"
        } else {
            "text, BOS-prefixed, tokens checked"
        }
    }

    /// What identifies the server's numbers: stable across a restart of the same server
    /// (no timestamps, nothing measured).
    fn identity(&self, url: &str) -> Value {
        json!({
            "url": url, "kind": self.kind, "models": self.models, "prompt": self.prompt_mode(),
            "can_score": self.refusal.is_none(), "max_model_len": self.max_model_len,
        })
    }

    fn to_json(&self, url: &str) -> Value {
        let mut v = self.identity(url);
        v["refusal"] = json!(self.refusal);
        v["deterministic"] = json!(self.deterministic);
        v
    }
}

/// One server.
struct Endpoint {
    /// Base URL without a trailing slash (`http://host:8000/v1`).
    url: String,
    agent: ureq::Agent,
    findings: Findings,
    /// Prompts per body.
    batch: usize,
}

/// The local tokenizer and what it knows about the model.
pub struct LocalTokenizer {
    pub tokenizer: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub max_length: usize,
    /// The model's chat template (GGUF metadata or tokenizer_config.json), if any.
    pub chat_template: Option<Value>,
    pub eos_token: Option<String>,
    pub source: String,
}

impl LocalTokenizer {
    /// A tokenizer.json, a model directory (tokenizer.json + config.json) or a .gguf, loaded with
    /// the same code as the in-process engine.
    pub fn load(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "gguf") {
            let (ct, _) = super::load::read_gguf(path)?;
            let tok = tokenizer::from_gguf(&ct).map_err(|e| Error::file(path, e))?;
            let u = |k: &str| super::config::md_usize(&ct, k).ok();
            let arch = super::config::md_str(&ct, "general.architecture").unwrap_or_default();
            let eos: Vec<u32> = u("tokenizer.ggml.eos_token_id")
                .map(|x| vec![x as u32])
                .unwrap_or_default();
            let chat_template = super::config::md_str(&ct, "tokenizer.chat_template")
                .ok()
                .map(Value::String);
            return Ok(Self {
                bos: u("tokenizer.ggml.bos_token_id").map(|x| x as u32),
                eos_token: eos.first().and_then(|&i| tok.id_to_token(i)),
                eos,
                max_length: u(&format!("{arch}.context_length")).unwrap_or(2048),
                chat_template,
                tokenizer: tok,
                source: path.display().to_string(),
            });
        }
        let (file, dir) = if path.is_dir() {
            (path.join("tokenizer.json"), Some(path.to_path_buf()))
        } else {
            (path.to_path_buf(), path.parent().map(Path::to_path_buf))
        };
        let tok = tokenizer::from_file(&file)?;
        let read_json = |name: &str| -> Result<Option<Value>> {
            let Some(p) = dir.as_ref().map(|d| d.join(name)).filter(|p| p.is_file()) else {
                return Ok(None);
            };
            let text = std::fs::read_to_string(&p).map_err(|e| Error::file(&p, e))?;
            Ok(Some(
                serde_json::from_str(&text).map_err(|e| Error::file(&p, e))?,
            ))
        };
        let cfg = match read_json("config.json")? {
            Some(v) => Some(super::config::LlamaConfig::from_hf_json(&v.to_string())?),
            None => None,
        };
        let tc = read_json("tokenizer_config.json")?;
        let (bos, eos, max_length) = match cfg {
            Some(c) => (c.bos_token_id, c.eos_token_ids, c.max_position_embeddings),
            None => (None, vec![], 2048),
        };
        let eos_token = tc
            .as_ref()
            .and_then(|v| v.get("eos_token"))
            .and_then(|e| e.as_str().or_else(|| e["content"].as_str()))
            .map(String::from)
            .or_else(|| eos.first().and_then(|&i| tok.id_to_token(i)));
        Ok(Self {
            chat_template: tc.as_ref().and_then(|v| v.get("chat_template").cloned()),
            tokenizer: tok,
            bos,
            eos,
            max_length,
            eos_token,
            source: path.display().to_string(),
        })
    }
}

/// Connection settings plus the served model name (`model` of every request).
#[derive(Debug, Clone)]
struct ServerConfig {
    model: String,
    opts: ServerOptions,
}

impl std::ops::Deref for ServerConfig {
    type Target = ServerOptions;
    fn deref(&self) -> &ServerOptions {
        &self.opts
    }
}

/// The backend.
pub struct ServerLm {
    cfg: ServerConfig,
    tok: LocalTokenizer,
    endpoints: Vec<Endpoint>,
    name: String,
    identity: ModelIdentity,
    details: Value,
    max_length: usize,
}

/// How an HTTP exchange failed: worth retrying or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

/// Normalize a server URL: scheme required, trailing slash dropped, `/v1` appended when missing.
pub fn normalize_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(Error::model(format!(
            "--server {url}: expected an http:// or https:// URL such as http://127.0.0.1:8000/v1"
        )));
    }
    Ok(if u.ends_with("/v1") {
        u.to_string()
    } else {
        format!("{u}/v1")
    })
}

fn server_err(url: &str, msg: impl std::fmt::Display) -> Error {
    Error::model(format!("server {url}: {msg}"))
}

/// First characters of a body, on one line.
fn snippet(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 160 {
        format!("{}…", one.chars().take(160).collect::<String>())
    } else {
        one
    }
}

impl Endpoint {
    /// One HTTP exchange with retries. `what` names the request in errors.
    fn call(
        &self,
        cfg: &ServerConfig,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let mut attempt = 0u32;
        loop {
            let t0 = Instant::now();
            let res = match body {
                Some(b) => self
                    .agent
                    .post(&url)
                    .set("Content-Type", "application/json")
                    .send_string(&b.to_string()),
                None => self.agent.get(&url).call(),
            };
            let failure = match res {
                Ok(resp) => match resp.into_string() {
                    Ok(text) => {
                        return serde_json::from_str(&text).map_err(|e| {
                            server_err(
                                &self.url,
                                format!(
                                    "{what}: reply is not valid JSON ({e}): `{}`",
                                    snippet(&text)
                                ),
                            )
                        })
                    }
                    Err(e) => Failure::Retry(format!("reading the reply failed: {e}")),
                },
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let msg = format!("HTTP {code}: {}", snippet(&text));
                    if code == 429 || code >= 500 {
                        Failure::Retry(msg)
                    } else {
                        Failure::Fatal(msg)
                    }
                }
                Err(ureq::Error::Transport(t)) => {
                    let timed_out = t0.elapsed() >= cfg.timeout;
                    Failure::Retry(if timed_out {
                        format!("no reply within {:.0} s ({t})", cfg.timeout.as_secs_f64())
                    } else {
                        t.to_string()
                    })
                }
            };
            match failure {
                Failure::Fatal(m) => return Err(server_err(&self.url, format!("{what}: {m}"))),
                Failure::Retry(m) if attempt >= cfg.retries => {
                    return Err(server_err(
                        &self.url,
                        format!("{what}: {m} (gave up after {} attempts)", attempt + 1),
                    ))
                }
                Failure::Retry(_) => {
                    let wait = cfg.backoff.saturating_mul(1 << attempt.min(16));
                    std::thread::sleep(wait.min(Duration::from_secs(30)));
                    attempt += 1;
                }
            }
        }
    }
}

/// The legacy OpenAI `logprobs` block of one choice.
#[derive(Debug)]
struct EchoLogprobs {
    token_logprobs: Vec<Option<f64>>,
    /// Max of each position's `top_logprobs` values (None where null).
    top_max: Vec<Option<f64>>,
    tokens: Vec<String>,
}

fn parse_echo(choice: &Value) -> std::result::Result<EchoLogprobs, String> {
    let lp = choice
        .get("logprobs")
        .filter(|v| !v.is_null())
        .ok_or("no `logprobs` in the reply")?;
    let arr = lp
        .get("token_logprobs")
        .and_then(Value::as_array)
        .ok_or("no `logprobs.token_logprobs` in the reply")?;
    let token_logprobs = arr
        .iter()
        .map(|x| match x {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("`token_logprobs` holds a non-number `{v}`")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let top_max = match lp.get("top_logprobs").and_then(Value::as_array) {
        Some(t) => t
            .iter()
            .map(|x| {
                x.as_object().and_then(|o| {
                    o.values()
                        .filter_map(Value::as_f64)
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                })
            })
            .collect(),
        None => vec![None; token_logprobs.len()],
    };
    let tokens = lp
        .get("tokens")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok(EchoLogprobs {
        token_logprobs,
        top_max,
        tokens,
    })
}

/// The choices of a completions reply in prompt order (sorted by `index`).
fn choices(reply: &Value, n: usize) -> std::result::Result<Vec<Value>, String> {
    let mut cs: Vec<Value> = reply
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` in the reply")?
        .clone();
    if cs.len() != n {
        return Err(format!("{} choices for {n} prompts", cs.len()));
    }
    cs.sort_by_key(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0));
    Ok(cs)
}

/// One prompt as the server will see it.
struct Prompt {
    /// Full token ids (context + continuation, truncated on the left to fit).
    ids: Vec<u32>,
    /// First continuation position in `ids`.
    start: usize,
    /// Text mode: the string sent (BOS string + decoded ids).
    text: Option<String>,
}

/// A scored prompt from its echo: (sum over positions start..n, all greedy).
fn score_echo(e: &EchoLogprobs, p: &Prompt) -> std::result::Result<Loglik, String> {
    let n = p.ids.len();
    let got = e.token_logprobs.len();
    // n prompt entries, plus the generated token unless generation stopped at once.
    if got != n && got != n + 1 {
        return Err(format!(
            "`token_logprobs` has {got} entries for a prompt of {n} tokens (expected {n} or {})",
            n + 1
        ));
    }
    let (mut lp, mut greedy) = (0f64, true);
    for j in p.start..n {
        let v = e.token_logprobs[j]
            .ok_or_else(|| format!("`token_logprobs[{j}]` is null inside the prompt"))?;
        if !v.is_finite() || v > 1e-6 {
            return Err(format!(
                "`token_logprobs[{j}]` = {v} is not a log-probability"
            ));
        }
        lp += v;
        match e.top_max.get(j).copied().flatten() {
            Some(m) => greedy &= v >= m,
            None => return Err(format!("no `top_logprobs` at position {j}")),
        }
    }
    Ok(Loglik {
        logprob: lp,
        is_greedy: greedy,
        logprob_f64: None,
    })
}

/// Score a completions reply (the JSON text a server sent for `prompts`, each its token ids and
/// first continuation position) as the backend does: choices in prompt order, each one's echoed
/// log-probabilities summed over the continuation. Every malformed reply is an error; the fuzz
/// target `server_response` drives this.
pub fn score_reply(
    reply: &str,
    prompts: &[(Vec<u32>, usize)],
) -> std::result::Result<Vec<Loglik>, String> {
    let v: Value = serde_json::from_str(reply).map_err(|e| format!("not JSON: {e}"))?;
    let cs = choices(&v, prompts.len())?;
    cs.iter()
        .zip(prompts)
        .map(|(c, (ids, start))| {
            if *start > ids.len() {
                return Err(format!(
                    "continuation start {start} past {} tokens",
                    ids.len()
                ));
            }
            let p = Prompt {
                ids: ids.clone(),
                start: *start,
                text: None,
            };
            score_echo(&parse_echo(c)?, &p)
        })
        .collect()
}

impl ServerLm {
    /// Connect to every server of `opts` serving `model` (the served name), with the tokenizer
    /// at `tokenizer_path`, and probe each one.
    pub fn open(model: &str, opts: &ServerOptions, tokenizer_path: &Path) -> Result<Self> {
        if opts.urls.is_empty() {
            return Err(Error::model("no --server URL"));
        }
        if opts.concurrency == 0 || opts.batch == 0 {
            return Err(Error::model(
                "--concurrency and --server-batch must be at least 1",
            ));
        }
        if opts.timeout.is_zero() {
            return Err(Error::model("--timeout must be positive"));
        }
        let cfg = ServerConfig {
            model: model.to_string(),
            opts: opts.clone(),
        };
        let tok = LocalTokenizer::load(tokenizer_path)?;
        let tokenizer_sha256 = super::tokenizer_sha256(&tok.tokenizer);
        let mut endpoints = vec![];
        for u in &cfg.urls {
            let url = normalize_url(u)?;
            if endpoints.iter().any(|e: &Endpoint| e.url == url) {
                return Err(Error::model(format!("--server {url} is given twice")));
            }
            let agent = ureq::AgentBuilder::new()
                .timeout(cfg.timeout)
                .max_idle_connections_per_host(cfg.concurrency.max(1))
                .build();
            let findings = probe(&url, &agent, &cfg, &tok)?;
            eprintln!(
                "server {url}: {} serving `{model}`, {} prompts, {}",
                findings.kind,
                if findings.token_ids {
                    "token-id"
                } else {
                    "text"
                },
                match &findings.refusal {
                    None if findings.deterministic => "scores (repeatable bit for bit)",
                    None => "scores (repeatable within 1e-3)",
                    Some(_) => "generation only (cannot score log-likelihoods)",
                }
            );
            let multi = matches!(findings.kind.as_str(), "vllm" | "sglang");
            endpoints.push(Endpoint {
                url,
                agent,
                batch: if multi { cfg.batch } else { 1 },
                findings,
            });
        }
        let max_length = endpoints
            .iter()
            .filter_map(|e| e.findings.max_model_len)
            .chain([tok.max_length])
            .min()
            .unwrap_or(tok.max_length);
        // The request cache keys on every field of the identity: `compute` names the servers
        // (URL, what /v1/models reports, prompt mode, what the probe found), so two servers, or
        // one serving another model, never share answers, while a restart of the same server
        // (same URL, same /v1/models) keeps the key and a rerun resumes.
        let compute = json!({
            "served_model": cfg.model,
            "seed": cfg.seed,
            "servers": endpoints.iter().map(|e| e.findings.identity(&e.url)).collect::<Vec<_>>(),
        });
        let identity = ModelIdentity {
            backend: "server".into(),
            format: "openai-completions".into(),
            weights_sha256: vec![],
            compute: compute.to_string(),
            tokenizer_sha256,
        };
        let details = json!({
            "source": cfg.model,
            "served_model": cfg.model,
            "servers": endpoints.iter().map(|e| e.findings.to_json(&e.url)).collect::<Vec<_>>(),
            "tokenizer": tok.source,
            "eos_token_ids": tok.eos,
            "bos_token_id": tok.bos,
            "max_length": max_length,
            "concurrency": cfg.concurrency,
            "timeout_s": cfg.timeout.as_secs_f64(),
            "retries": cfg.retries,
        });
        let name = cfg
            .model
            .rsplit('/')
            .next()
            .unwrap_or(&cfg.model)
            .trim_end_matches(".gguf")
            .to_string();
        Ok(Self {
            cfg,
            tok,
            endpoints,
            name,
            identity,
            details,
            max_length,
        })
    }

    /// Why this run cannot score log-likelihoods (the first refusing server's reason).
    pub fn scoring_refusal(&self) -> Option<String> {
        self.endpoints.iter().find_map(|e| {
            e.findings
                .refusal
                .as_ref()
                .map(|r| format!("server {}: {r}", e.url))
        })
    }

    pub fn findings(&self) -> Vec<(String, Findings)> {
        self.endpoints
            .iter()
            .map(|e| (e.url.clone(), e.findings.clone()))
            .collect()
    }

    fn prompt(&self, r: &TokenRequest, ep: &Endpoint) -> Result<Prompt> {
        if r.continuation.is_empty() {
            return Err(Error::model("empty continuation"));
        }
        let mut ids: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
        // Room for the one generated token (and the BOS of text mode).
        let keep = self.max_length.saturating_sub(2).max(2);
        if ids.len() > keep {
            ids.drain(..ids.len() - keep);
        }
        let start = ids.len() - r.continuation.len().min(ids.len() - 1);
        let text = if ep.findings.token_ids {
            None
        } else {
            Some(self.text_prompt(&ids)?)
        };
        Ok(Prompt { ids, start, text })
    }

    fn text_prompt(&self, ids: &[u32]) -> Result<String> {
        let bos = self.tok.bos.and_then(|b| self.tok.tokenizer.id_to_token(b));
        let bos = bos.ok_or_else(|| Error::model("text prompts need the model's BOS token"))?;
        Ok(format!(
            "{bos}{}",
            tokenizer::decode(&self.tok.tokenizer, ids, false)?
        ))
    }

    /// Score requests concurrently over every server; results in request order.
    pub fn score_batch(&self, reqs: &[TokenRequest]) -> Result<Vec<Loglik>> {
        if let Some(r) = self.scoring_refusal() {
            return Err(Error::model(r));
        }
        self.fan_out(reqs.len(), |ep, idx| {
            let prompts: Vec<Prompt> = idx
                .iter()
                .map(|&i| self.prompt(&reqs[i], ep))
                .collect::<Result<_>>()?;
            let what = describe(&prompts, idx, reqs);
            let prompt_json = if ep.findings.token_ids {
                json!(prompts.iter().map(|p| &p.ids).collect::<Vec<_>>())
            } else {
                json!(prompts[0].text)
            };
            let body = score_body(&self.cfg, &ep.findings.kind, prompt_json);
            let reply = ep.call(&self.cfg, "/completions", Some(&body), &what)?;
            let cs = choices(&reply, prompts.len())
                .map_err(|m| server_err(&ep.url, format!("{what}: {m}")))?;
            cs.iter()
                .zip(&prompts)
                .map(|(c, p)| {
                    let e = parse_echo(c)
                        .map_err(|m| server_err(&ep.url, format!("{what}: {m}")))?;
                    if p.text.is_some() {
                        TextCheck { tok: &self.tok }.check(&e, &p.ids).map_err(|m| {
                            server_err(&ep.url, format!("{what}: {m}; refusing to score a different token sequence (a server that takes token-id prompts, vLLM or SGLang, avoids this)"))
                        })?;
                    } else {
                        check_echoed_ids(&e, &p.ids)
                            .map_err(|m| server_err(&ep.url, format!("{what}: {m}")))?;
                    }
                    score_echo(&e, p).map_err(|m| server_err(&ep.url, format!("{what}: {m}")))
                })
                .collect()
        })
    }

    /// Generate for every prompt concurrently over every server: token ids of the completion
    /// (re-encoded from the server's text), in prompt order.
    pub fn generate_batch(
        &self,
        prompts: &[GenPrompt],
        opts: &GenOptions,
    ) -> Result<Vec<Vec<u32>>> {
        if prompts.iter().any(|p| p.ids.is_empty()) {
            return Err(Error::model("generation needs a non-empty prompt"));
        }
        let keep = self.max_length.saturating_sub(opts.max_new_tokens).max(1);
        let mut stop: Vec<String> = opts.stop_strings.clone();
        for &t in &opts.stop_tokens {
            if let Some(s) = self.tok.tokenizer.id_to_token(t) {
                if !stop.contains(&s) {
                    stop.push(s);
                }
            }
        }
        // OpenAI-style servers take at most 4 stop strings; the rest are applied here.
        let server_stop: Vec<&String> = stop.iter().take(4).collect();
        let texts = self.fan_out(prompts.len(), |ep, idx| {
            let ps: Vec<&[u32]> = idx
                .iter()
                .map(|&i| &prompts[i].ids[prompts[i].ids.len().saturating_sub(keep)..])
                .collect();
            let what = format!(
                "generation request {} ({} prompt tokens)",
                idx.iter()
                    .map(|&i| format!("#{i} ({} doc {})", prompts[i].task, prompts[i].doc_id))
                    .collect::<Vec<_>>()
                    .join(", "),
                ps.iter().map(|p| p.len()).sum::<usize>()
            );
            let prompt_json = if ep.findings.token_ids || ep.findings.kind == "llama.cpp" {
                json!(ps)
            } else {
                json!(tokenizer::decode(&self.tok.tokenizer, ps[0], false)?)
            };
            let mut body = json!({
                "model": self.cfg.model, "prompt": prompt_json, "max_tokens": opts.max_new_tokens,
                "temperature": opts.temperature, "seed": opts.seed, "stop": server_stop,
                "frequency_penalty": 0, "presence_penalty": 0, "top_p": 1.0,
            });
            neutral_sampling(&mut body, &ep.findings.kind);
            if matches!(ep.findings.kind.as_str(), "vllm" | "sglang") {
                body["stop_token_ids"] = json!(opts.stop_tokens);
                body["skip_special_tokens"] = json!(false);
            }
            let reply = ep.call(&self.cfg, "/completions", Some(&body), &what)?;
            let cs = choices(&reply, ps.len())
                .map_err(|m| server_err(&ep.url, format!("{what}: {m}")))?;
            cs.iter()
                .map(|c| {
                    c.get("text")
                        .and_then(Value::as_str)
                        .map(String::from)
                        .ok_or_else(|| {
                            server_err(&ep.url, format!("{what}: no `text` in a choice"))
                        })
                })
                .collect()
        })?;
        texts
            .into_iter()
            .map(|mut t| {
                // Stops the server was not given, or rendered special tokens it kept.
                for s in &stop {
                    if let Some(k) = t.find(s.as_str()) {
                        t.truncate(k);
                    }
                }
                let mut ids = tokenizer::encode(&self.tok.tokenizer, &t)?;
                ids.truncate(opts.max_new_tokens);
                Ok(ids)
            })
            .collect()
    }

    /// Run `n` jobs over every server's `concurrency` workers; each worker takes up to its
    /// server's batch of job indices at a time. The first error stops the others.
    fn fan_out<T: Send>(
        &self,
        n: usize,
        job: impl Fn(&Endpoint, &[usize]) -> Result<Vec<T>> + Sync,
    ) -> Result<Vec<T>> {
        let queue = Mutex::new((0..n).collect::<VecDeque<usize>>());
        let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
        let failed = AtomicBool::new(false);
        let error: Mutex<Option<Error>> = Mutex::new(None);
        let (queue, results_ref, failed_ref, error_ref, job) =
            (&queue, &results, &failed, &error, &job);
        std::thread::scope(|s| {
            for ep in &self.endpoints {
                let workers = self.cfg.concurrency.min(n.div_ceil(ep.batch)).max(1);
                for _ in 0..workers {
                    s.spawn(move || loop {
                        if failed_ref.load(Ordering::SeqCst) {
                            return;
                        }
                        let idx: Vec<usize> = {
                            let mut q = queue.lock().unwrap();
                            let k = ep.batch.min(q.len());
                            q.drain(..k).collect()
                        };
                        if idx.is_empty() {
                            return;
                        }
                        match job(ep, &idx) {
                            Ok(out) => {
                                let mut r = results_ref.lock().unwrap();
                                for (i, v) in idx.into_iter().zip(out) {
                                    r[i] = Some(v);
                                }
                            }
                            Err(e) => {
                                if !failed_ref.swap(true, Ordering::SeqCst) {
                                    *error_ref.lock().unwrap() = Some(e);
                                }
                                return;
                            }
                        }
                    });
                }
            }
        });
        if let Some(e) = error.into_inner().unwrap() {
            return Err(e);
        }
        results
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|x| x.ok_or_else(|| Error::model("a request got no answer")))
            .collect()
    }

    pub fn local_tokenizer(&self) -> &LocalTokenizer {
        &self.tok
    }
}

/// Name the requests of one body in an error: index, token counts and a short key.
fn describe(prompts: &[Prompt], idx: &[usize], reqs: &[TokenRequest]) -> String {
    let parts: Vec<String> = prompts
        .iter()
        .zip(idx)
        .map(|(p, &i)| {
            let mut h = Sha256::new();
            for t in reqs[i].context.iter().chain(&reqs[i].continuation) {
                h.update(t.to_le_bytes());
            }
            format!(
                "#{i}: {} context + {} continuation tokens, key {}",
                p.start,
                p.ids.len() - p.start,
                &hex::encode(h.finalize())[..8]
            )
        })
        .collect();
    format!("loglikelihood request {}", parts.join("; "))
}

/// A token's text as llama-cpp-python echoes it: its bytes decoded, invalid UTF-8 dropped,
/// special tokens empty.
fn token_piece(tok: &tokenizers::Tokenizer, id: u32) -> String {
    tokenizer::decode(tok, &[id], true)
        .unwrap_or_default()
        .replace('\u{FFFD}', "")
}

/// Token-id mode: where the server echoes ids (`token_id:N`, vLLM), they must be ours.
fn check_echoed_ids(e: &EchoLogprobs, ids: &[u32]) -> std::result::Result<(), String> {
    for (j, (t, &id)) in e.tokens.iter().zip(ids).enumerate() {
        if let Some(n) = t.strip_prefix("token_id:") {
            if n.parse::<u32>().ok() != Some(id) {
                return Err(format!("echoed token {j} is {t}, sent {id}"));
            }
        }
    }
    Ok(())
}

/// The body of a log-likelihood request: echo the prompt with its log-probabilities, generate one
/// token (never `max_tokens: 0`, which llama-cpp-python reads as "until the context is full").
fn score_body(cfg: &ServerConfig, kind: &str, prompt: Value) -> Value {
    let mut body = json!({
        "model": cfg.model, "prompt": prompt, "echo": true, "logprobs": 1, "max_tokens": 1,
        "temperature": 0, "seed": cfg.seed, "frequency_penalty": 0, "presence_penalty": 0,
    });
    neutral_sampling(&mut body, kind);
    if kind == "vllm" {
        body["return_tokens_as_token_ids"] = json!(true);
    }
    body
}

/// Each server's own names for "no repetition penalty" (llama.cpp's default is 1.1 even when
/// greedy) and no prompt-cache reuse (llama-server's `cache_prompt` can change logits).
fn neutral_sampling(body: &mut Value, kind: &str) {
    match kind {
        "vllm" | "sglang" => body["repetition_penalty"] = json!(1.0),
        "llama.cpp" => {
            body["repeat_penalty"] = json!(1.0);
            body["cache_prompt"] = json!(false);
            body["top_k"] = json!(0);
            body["min_p"] = json!(0.0);
        }
        _ => {
            body["repeat_penalty"] = json!(1.0);
            body["top_k"] = json!(0);
            body["min_p"] = json!(0.0);
        }
    }
}

const SCORING_ADVICE: &str = "use vLLM, SGLang or llama-cpp-python's server";

/// `owned_by` of `/v1/models` → the server's kind.
fn server_kind(models: &Value) -> String {
    let owned = models["data"][0]["owned_by"].as_str().unwrap_or("");
    match owned {
        "vllm" => "vllm",
        "sglang" => "sglang",
        "llamacpp" => "llama.cpp",
        "me" => "llama-cpp-python",
        "" => "unknown",
        other => other,
    }
    .to_string()
}

/// The conformance probe: `/v1/models` lists the model; an echoed prompt returns one
/// log-probability per prompt token (first null), aligned (the greedy token generated after the
/// prompt scores the same when echoed as part of the next prompt) and repeatable.
fn probe(
    url: &str,
    agent: &ureq::Agent,
    cfg: &ServerConfig,
    tok: &LocalTokenizer,
) -> Result<Findings> {
    let ep = Endpoint {
        url: url.to_string(),
        agent: agent.clone(),
        findings: Findings {
            kind: String::new(),
            models: Value::Null,
            token_ids: false,
            refusal: None,
            deterministic: false,
            max_model_len: None,
        },
        batch: 1,
    };
    let probe_cfg = ServerConfig {
        model: cfg.model.clone(),
        opts: ServerOptions {
            retries: cfg.retries.min(2),
            ..cfg.opts.clone()
        },
    };
    let mut models = ep.call(&probe_cfg, "/models", None, "GET /models")?;
    let ids: Vec<String> = models["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !ids.contains(&cfg.model) {
        return Err(server_err(
            url,
            format!(
                "serves {:?}, not `{}`; pass one of those as --model",
                ids, cfg.model
            ),
        ));
    }
    let kind = server_kind(&models);
    let max_model_len = models["data"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == cfg.model.as_str()))
        .and_then(|m| m["max_model_len"].as_u64())
        .map(|x| x as usize);
    if let Some(a) = models["data"].as_array_mut() {
        for m in a {
            if let Some(o) = m.as_object_mut() {
                o.remove("created");
                o.remove("permission");
            }
        }
    }
    if let Some(o) = models.as_object_mut() {
        o.retain(|k, _| k == "data");
    }
    let mut f = Findings {
        kind,
        models,
        token_ids: false,
        refusal: None,
        deterministic: false,
        max_model_len,
    };
    let p = tokenizer::encode(
        &tok.tokenizer,
        "The capital of France is Paris. The capital of Italy is",
    )?;
    let order: &[bool] = match cfg.prompt_mode {
        PromptMode::Tokens => &[true],
        PromptMode::Text => &[false],
        // llama-cpp-python takes text only; try ids first elsewhere.
        PromptMode::Auto if f.kind == "llama-cpp-python" => &[false],
        PromptMode::Auto => &[true, false],
    };
    let mut reasons = vec![];
    for &ids_mode in order {
        if !ids_mode && tok.bos.is_none() {
            reasons.push("text prompts need a BOS token (llama-cpp-python's echo is shifted by one without it) and the tokenizer has none".to_string());
            continue;
        }
        f.token_ids = ids_mode;
        // No retries: llama-server answers echo with HTTP 500 ("Only no echo is supported").
        let echo_cfg = ServerConfig {
            model: cfg.model.clone(),
            opts: ServerOptions {
                retries: 0,
                ..probe_cfg.opts.clone()
            },
        };
        match probe_echo(&ep, &echo_cfg, tok, &f, &p) {
            Ok(det) => {
                f.deterministic = det;
                f.refusal = None;
                return Ok(f);
            }
            Err(r) => reasons.push(r),
        }
    }
    // Keep token ids for generation where the server takes them (llama-server does).
    f.token_ids = order[0] && f.kind != "llama-cpp-python";
    let no_echo = reasons
        .iter()
        .any(|r| r.contains("no prompt log-probabilities"));
    f.refusal = Some(if no_echo && f.kind == "llama.cpp" {
        format!("server returns no prompt log-probabilities (echo unsupported): llama.cpp's llama-server cannot score multiple-choice tasks; {SCORING_ADVICE}")
    } else if no_echo {
        format!("server returns no prompt log-probabilities (echo unsupported), so it cannot score multiple-choice tasks; {SCORING_ADVICE}")
    } else {
        format!(
            "failed the conformance probe ({}); {SCORING_ADVICE}",
            reasons.join("; ")
        )
    });
    Ok(f)
}

/// The echo/alignment/repeatability checks for one prompt mode; Ok(bit-identical repeat).
fn probe_echo(
    ep: &Endpoint,
    cfg: &ServerConfig,
    tok: &LocalTokenizer,
    f: &Findings,
    base: &[u32],
) -> std::result::Result<bool, String> {
    let send = |ids: &[u32], what: &str| -> std::result::Result<(Value, EchoLogprobs), String> {
        let prompt = if f.token_ids {
            json!([ids])
        } else {
            let bos = tok
                .bos
                .and_then(|b| tok.tokenizer.id_to_token(b))
                .unwrap_or_default();
            json!(format!(
                "{bos}{}",
                tokenizer::decode(&tok.tokenizer, ids, false).map_err(|e| e.to_string())?
            ))
        };
        let body = score_body(cfg, &f.kind, prompt);
        let reply = ep
            .call(cfg, "/completions", Some(&body), what)
            .map_err(|e| {
                let m = e.to_string();
                if m.contains("echo") {
                    format!("no prompt log-probabilities: {m}")
                } else {
                    m
                }
            })?;
        let c = choices(&reply, 1)?.remove(0);
        let e = parse_echo(&c).map_err(|m| format!("no prompt log-probabilities: {m}"))?;
        Ok((c, e))
    };
    let n = base.len();
    let (c1, e1) = send(base, "probe: echo")?;
    let got = e1.token_logprobs.len();
    if got < n {
        return Err(format!(
            "no prompt log-probabilities: {got} `token_logprobs` for a {n}-token prompt (echo ignored or the prompt shifted)"
        ));
    }
    if got > n + 1 {
        return Err(format!(
            "{got} `token_logprobs` for a {n}-token prompt plus one generated token (a BOS added?)"
        ));
    }
    if e1.token_logprobs[0].is_some() || e1.token_logprobs[1..n].iter().any(Option::is_none) {
        return Err("`token_logprobs` must be null at the first prompt token only".into());
    }
    if !f.token_ids {
        TextCheck { tok }.check(&e1, base)?;
    }
    // Alignment: the greedy token g after the prompt, echoed as part of prompt+g, scores the same.
    if got == n + 1 {
        let lg = e1.token_logprobs[n].unwrap_or(f64::NAN);
        let gen_text = c1["text"].as_str().unwrap_or_default();
        let g = match e1.tokens.get(n).and_then(|t| t.strip_prefix("token_id:")) {
            Some(id) => id.parse::<u32>().ok(),
            None => {
                // Text of the generated token: the reply text after the echoed prompt.
                let prompt_text =
                    tokenizer::decode(&tok.tokenizer, base, false).map_err(|e| e.to_string())?;
                let bos = tok
                    .bos
                    .and_then(|b| tok.tokenizer.id_to_token(b))
                    .unwrap_or_default();
                let piece = gen_text
                    .strip_prefix(format!("{bos}{prompt_text}").as_str())
                    .or_else(|| gen_text.strip_prefix(prompt_text.as_str()))
                    .map(String::from)
                    .or_else(|| e1.tokens.get(n).cloned())
                    .unwrap_or_default();
                let ids = tokenizer::encode(&tok.tokenizer, &piece).map_err(|e| e.to_string())?;
                ids.first().copied().filter(|_| ids.len() == 1)
            }
        };
        if let Some(g) = g {
            let mut ext = base.to_vec();
            ext.push(g);
            let (_, e2) = send(&ext, "probe: alignment")?;
            let echoed = e2.token_logprobs.get(n).copied().flatten();
            match echoed {
                Some(v) if (v - lg).abs() <= 1e-3 => {}
                other => {
                    return Err(format!(
                        "prompt log-probabilities are misaligned: the generated token scored {lg:.5} when generated and {other:?} when echoed (off by one?)"
                    ))
                }
            }
            if let Some(m) = e2.top_max.get(n).copied().flatten() {
                if m > lg + 1e-3 {
                    return Err(format!("the greedy token is not the top log-probability when echoed ({lg:.5} < {m:.5})"));
                }
            }
        }
    }
    // Repeatability.
    let (_, e3) = send(base, "probe: repeat")?;
    let a: Vec<f64> = e1.token_logprobs[1..n]
        .iter()
        .map(|x| x.unwrap_or(0.0))
        .collect();
    let b: Vec<f64> = e3
        .token_logprobs
        .get(1..n)
        .unwrap_or(&[])
        .iter()
        .map(|x| x.unwrap_or(f64::NAN))
        .collect();
    if a.len() != b.len() {
        return Err(
            "a repeated probe request returned a different number of log-probabilities".into(),
        );
    }
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f64, f64::max);
    if diff.is_nan() || diff > 1e-3 {
        return Err(format!(
            "a repeated probe request changed a log-probability by {diff:.4}"
        ));
    }
    Ok(diff == 0.0)
}

/// Text mode: the server's echoed token strings must be ours, position by position.
struct TextCheck<'a> {
    tok: &'a LocalTokenizer,
}

impl TextCheck<'_> {
    fn check(&self, e: &EchoLogprobs, ids: &[u32]) -> std::result::Result<(), String> {
        let n = ids.len();
        if e.tokens.len() < n {
            return Err(format!(
                "the server tokenized the prompt into {} tokens, hermes-eval into {n}",
                e.tokens.len()
            ));
        }
        for (j, (&id, theirs)) in ids.iter().zip(&e.tokens).enumerate() {
            let ours = token_piece(&self.tok.tokenizer, id);
            if ours != theirs.replace('\u{FFFD}', "") {
                return Err(format!(
                    "text prompts are tokenized differently: token {j} is `{}` on the server, `{ours}` here",
                    theirs.escape_debug()
                ));
            }
        }
        Ok(())
    }
}

impl LanguageModel for ServerLm {
    fn name(&self) -> &str {
        &self.name
    }
    fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tok.tokenizer
    }
    fn max_length(&self) -> usize {
        self.max_length
    }
    fn loglikelihood(&mut self, requests: &[TokenRequest]) -> Result<Vec<Loglik>> {
        self.score_batch(requests)
    }
    fn generate(&mut self, prompts: &[GenPrompt], opts: &GenOptions) -> Result<Vec<Vec<u32>>> {
        self.generate_batch(prompts, opts)
    }
    fn eos_token_ids(&self) -> Vec<u32> {
        self.tok.eos.clone()
    }
    fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        let eos = self.tok.eos_token.clone().unwrap_or_default();
        let bos = self
            .tok
            .bos
            .and_then(|i| self.tok.tokenizer.id_to_token(i))
            .unwrap_or_default();
        Ok(match &self.tok.chat_template {
            Some(Value::String(s)) => Some(ChatTemplate::from_string(s.clone(), &bos, &eos)),
            Some(v) => ChatTemplate::from_tokenizer_config(
                &json!({"chat_template": v, "bos_token": bos, "eos_token": eos}),
            )?,
            None => None,
        })
    }
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }
    fn details(&self) -> Value {
        self.details.clone()
    }
    fn scoring_refusal(&self) -> Option<String> {
        ServerLm::scoring_refusal(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(ids: &[u32], start: usize) -> Prompt {
        Prompt {
            ids: ids.to_vec(),
            start,
            text: None,
        }
    }

    #[test]
    fn sums_continuation_positions_and_reads_greedy_from_top_values() {
        // vLLM's legacy block: first entry null, generated token last, top-k ∪ actual.
        let c = json!({"index": 0, "text": "", "logprobs": {
            "tokens": ["token_id:5", "token_id:6", "token_id:7", "token_id:8", "token_id:9"],
            "token_logprobs": [null, -1.0, -0.5, -0.25, -3.0],
            "top_logprobs": [null, {"token_id:6": -1.0}, {"token_id:1": -0.1, "token_id:7": -0.5},
                             {"token_id:8": -0.25}, {"token_id:2": -0.01, "token_id:9": -3.0}]}});
        let e = parse_echo(&c).unwrap();
        let l = score_echo(&e, &prompt(&[5, 6, 7, 8], 2)).unwrap();
        assert_eq!(l.logprob, -0.75);
        assert!(!l.is_greedy, "position 2 was not the argmax");
        let l = score_echo(&e, &prompt(&[5, 6, 7, 8], 3)).unwrap();
        assert_eq!(l.logprob, -0.25);
        assert!(l.is_greedy);
        assert!(check_echoed_ids(&e, &[5, 6, 7, 8]).is_ok());
        assert!(check_echoed_ids(&e, &[5, 6, 70, 8]).is_err());
        // The generated entry may be missing (stopped at EOS); anything else is refused.
        let short = EchoLogprobs {
            token_logprobs: e.token_logprobs[..4].to_vec(),
            top_max: e.top_max[..4].to_vec(),
            tokens: vec![],
        };
        assert!(score_echo(&short, &prompt(&[5, 6, 7, 8], 3)).is_ok());
        let err = score_echo(&short, &prompt(&[5, 6, 7, 8, 9], 3)).unwrap_err();
        assert!(err.contains("4 entries for a prompt of 5 tokens"), "{err}");
    }

    #[test]
    fn refuses_replies_without_prompt_logprobs() {
        assert!(parse_echo(&json!({"text": "x"})).is_err());
        assert!(parse_echo(&json!({"logprobs": null})).is_err());
        let err = parse_echo(&json!({"logprobs": {"token_logprobs": [null, "x"]}})).unwrap_err();
        assert!(err.contains("non-number"), "{err}");
        assert!(choices(&json!({"choices": []}), 1).is_err());
    }

    #[test]
    fn urls_are_normalized_and_kinds_recognized() {
        assert_eq!(normalize_url("http://h:8000/").unwrap(), "http://h:8000/v1");
        assert_eq!(
            normalize_url("http://h:8000/v1/").unwrap(),
            "http://h:8000/v1"
        );
        assert!(normalize_url("h:8000").is_err());
        assert_eq!(
            server_kind(&json!({"data": [{"owned_by": "vllm"}]})),
            "vllm"
        );
        assert_eq!(
            server_kind(&json!({"data": [{"owned_by": "llamacpp"}]})),
            "llama.cpp"
        );
    }
}
