//! The engine: tokenize requests exactly as TASKS_SPEC §1.3, schedule them, and score every
//! document with its task.
//!
//! Scheduling: documents are taken a window at a time; every request of the window that the
//! cache cannot answer is handed to the backend in batches of `--batch-size` requests, across
//! documents — log-likelihood requests with each document's requests kept together (they share
//! a context, which the backend computes once) and documents ordered longest first, generation
//! prompts (raw or rendered through the chat template) longest first. Finished requests go to
//! an append-only cache keyed by the model's identity and the token ids at once, so an
//! interrupted run resumes where it stopped.
use crate::chat::ChatTemplate;
use crate::doc::{Doc, Loglik, LoglikRequest, Responses, Score};
use crate::error::{Error, Result};
use crate::model::{tokenizer, GenOptions, GenPrompt, LanguageModel, ModelIdentity, TokenRequest};
use crate::py::text::split_trailing_whitespace;
use crate::tasks::Task;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// TASKS_SPEC §1.3 steps 1–3: move the context's trailing whitespace into the continuation,
/// encode context and context+continuation without special tokens (no BOS), and take the
/// continuation as the joint encoding after the context's token count.
pub fn encode_pair(
    tok: &tokenizers::Tokenizer,
    req: &LoglikRequest,
    eos: Option<u32>,
) -> Result<TokenRequest> {
    if req.context.is_empty() {
        return Ok(TokenRequest {
            context: eos.into_iter().collect(),
            continuation: tokenizer::encode(tok, &req.continuation)?,
        });
    }
    let (context, continuation) = split_trailing_whitespace(&req.context, &req.continuation);
    let whole = tokenizer::encode(tok, &format!("{context}{continuation}"))?;
    let n = tokenizer::encode(tok, &context)?.len().min(whole.len());
    Ok(TokenRequest {
        context: whole[..n].to_vec(),
        continuation: whole[n..].to_vec(),
    })
}

/// Append-only request cache: one JSON line per finished request, keyed by the model's
/// identity and the token ids, each line carrying a checksum of its key and answer under the
/// model's identity.
///
/// Reading it trusts nothing: a line that is not UTF-8 JSON, has other fields or types than a
/// record (a log-likelihood `{k, lp, g, lp64, c}` or a generation `{k, gen, c}`), a key that is
/// not 32 hex digits, or a checksum that does not match (a torn line, a bit flip, a line of
/// another model's cache) is skipped and counted in [`RequestCache::skipped`]; its request is
/// computed again. A file whose last line was torn by a kill gets a newline before the first
/// append, so a new record never continues the fragment.
pub struct RequestCache {
    path: Option<PathBuf>,
    model_key: String,
    map: HashMap<String, Loglik>,
    /// Generated token ids by prompt + options (greedy generation is deterministic too).
    gens: HashMap<String, Vec<u32>>,
    file: Option<std::fs::File>,
    /// Requests answered from the cache in this run.
    pub hits: usize,
    /// Lines of the cache file skipped when it was opened (never trusted, recomputed).
    pub skipped: usize,
    /// Records read from the cache file when it was opened.
    pub loaded: usize,
}

/// A log-likelihood line of the cache file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoglikRecord {
    k: String,
    lp: f64,
    g: bool,
    lp64: Option<f64>,
    c: String,
}

/// A generation line of the cache file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GenRecord {
    k: String,
    gen: Vec<u32>,
    c: String,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Record {
    Loglik(LoglikRecord),
    Gen(GenRecord),
}

/// Whether `k` has the form of a request key (16 bytes, lowercase hex).
fn is_key(k: &str) -> bool {
    k.len() == 32
        && k.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl RequestCache {
    pub fn disabled() -> Self {
        Self {
            path: None,
            model_key: String::new(),
            map: HashMap::new(),
            gens: HashMap::new(),
            file: None,
            hits: 0,
            skipped: 0,
            loaded: 0,
        }
    }

    /// Open (or create) the cache of the model `identity` under `dir`.
    pub fn open(dir: &Path, identity: &ModelIdentity) -> Result<Self> {
        let model_key = identity.cache_key();
        let path = dir.join(format!("loglik-{}.jsonl", &model_key[..16]));
        let mut cache = Self {
            path: None,
            model_key,
            ..Self::disabled()
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::file(&path, e)),
        };
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if !bytes.is_empty() {
            for line in body.split(|&b| b == b'\n') {
                if cache.load_line(line) {
                    cache.loaded += 1;
                } else {
                    cache.skipped += 1;
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::file(&path, e))?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            // The last line was torn (a kill mid-write): end it, so the next record starts a
            // line of its own.
            file.write_all(b"\n").map_err(|e| Error::file(&path, e))?;
        }
        cache.file = Some(file);
        cache.path = Some(path);
        Ok(cache)
    }

    /// Take one line of the cache file if it is a well-formed record of this model whose
    /// checksum matches; false when it is skipped.
    fn load_line(&mut self, line: &[u8]) -> bool {
        let Ok(rec) = serde_json::from_slice::<Record>(line) else {
            return false;
        };
        match rec {
            Record::Loglik(r) => {
                let l = Loglik {
                    logprob: r.lp,
                    is_greedy: r.g,
                    logprob_f64: r.lp64,
                };
                if !is_key(&r.k) || r.c != self.loglik_sum(&r.k, &l) {
                    return false;
                }
                self.map.insert(r.k, l);
            }
            Record::Gen(r) => {
                if !is_key(&r.k) || r.c != self.gen_sum(&r.k, &r.gen) {
                    return false;
                }
                self.gens.insert(r.k, r.gen);
            }
        }
        true
    }

    /// The checksum of a log-likelihood record (its exact f64 bits) under this model.
    fn loglik_sum(&self, k: &str, l: &Loglik) -> String {
        let mut h = Sha256::new();
        h.update(self.model_key.as_bytes());
        h.update(b"|ll|");
        h.update(k.as_bytes());
        h.update(l.logprob.to_bits().to_le_bytes());
        h.update([l.is_greedy as u8]);
        match l.logprob_f64 {
            Some(x) => {
                h.update([1]);
                h.update(x.to_bits().to_le_bytes());
            }
            None => h.update([0]),
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The checksum of a generation record under this model.
    fn gen_sum(&self, k: &str, ids: &[u32]) -> String {
        let mut h = Sha256::new();
        h.update(self.model_key.as_bytes());
        h.update(b"|gen|");
        h.update(k.as_bytes());
        for t in ids {
            h.update(t.to_le_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// Append one record as a single write, so a kill leaves at most one torn last line.
    fn append(&mut self, record: serde_json::Value) -> Result<()> {
        if let (Some(f), Some(p)) = (self.file.as_mut(), self.path.as_ref()) {
            let mut line = record.to_string();
            line.push('\n');
            f.write_all(line.as_bytes())
                .map_err(|e| Error::file(p, e))?;
        }
        Ok(())
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn key(&self, r: &TokenRequest) -> String {
        let mut h = Sha256::new();
        h.update(self.model_key.as_bytes());
        for t in &r.context {
            h.update(t.to_le_bytes());
        }
        h.update(b"|");
        for t in &r.continuation {
            h.update(t.to_le_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }

    pub fn get(&self, r: &TokenRequest) -> Option<Loglik> {
        self.map.get(&self.key(r)).copied()
    }

    /// Store the answer of request `r`, as the engine does when the backend returns it.
    pub fn insert(&mut self, r: &TokenRequest, l: Loglik) -> Result<()> {
        let k = self.key(r);
        self.put(k, l)
    }

    /// Store the answer of the request whose [`RequestCache::key`] is `k` (appended to the
    /// cache file at once, so an interrupted run keeps it).
    fn put(&mut self, k: String, l: Loglik) -> Result<()> {
        let c = self.loglik_sum(&k, &l);
        self.append(
            serde_json::json!({"k": k, "lp": l.logprob, "g": l.is_greedy, "lp64": l.logprob_f64, "c": c}),
        )?;
        self.map.insert(k, l);
        Ok(())
    }
}

/// What identifies the numbers a model produces: its weights and how they are computed.
impl RequestCache {
    pub fn gen_key(&self, prompt: &[u32], o: &GenOptions) -> String {
        let mut h = Sha256::new();
        h.update(self.model_key.as_bytes());
        h.update(b"gen|");
        for t in prompt {
            h.update(t.to_le_bytes());
        }
        let opts = serde_json::json!([
            o.max_new_tokens,
            o.stop_tokens,
            o.stop_strings,
            o.temperature,
            o.seed
        ]);
        h.update(opts.to_string().as_bytes());
        hex::encode(&h.finalize()[..16])
    }

    pub fn get_gen(&self, prompt: &[u32], o: &GenOptions) -> Option<Vec<u32>> {
        self.gens.get(&self.gen_key(prompt, o)).cloned()
    }

    /// Store the generation of `prompt` under options `o`, as the engine does.
    pub fn insert_gen(&mut self, prompt: &[u32], o: &GenOptions, ids: Vec<u32>) -> Result<()> {
        let k = self.gen_key(prompt, o);
        self.put_gen(k, ids)
    }

    /// Store the generation whose [`RequestCache::gen_key`] is `k`.
    fn put_gen(&mut self, k: String, ids: Vec<u32>) -> Result<()> {
        let c = self.gen_sum(&k, &ids);
        self.append(serde_json::json!({"k": k, "gen": ids, "c": c}))?;
        self.gens.insert(k, ids);
        Ok(())
    }
}

/// How the engine schedules and how generation decodes (one meaning for every task and backend).
#[derive(Debug, Clone, Serialize)]
pub struct EngineOptions {
    /// Requests per backend call: log-likelihood requests, or generation prompts decoded
    /// together.
    pub batch_size: usize,
    /// Documents whose requests are collected and scheduled together.
    pub window: usize,
    /// Sampling temperature of chat tasks; 0 decodes greedily.
    pub temperature: f64,
    pub seed: u64,
    /// Overrides the task's maximum of new tokens for chat tasks.
    pub max_new_tokens: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            batch_size: 16,
            window: 256,
            temperature: 0.0,
            seed: 0,
            max_new_tokens: None,
        }
    }
}

/// Everything one task produced.
pub struct TaskRun {
    pub docs: Vec<Doc>,
    pub responses: Vec<Responses>,
    pub scores: Vec<Score>,
    /// True when the run was interrupted before every document was scored.
    pub partial: bool,
}

/// The EOS ids of a model, or the first end-of-text token its vocabulary has.
pub fn eos_ids(model: &dyn LanguageModel) -> Vec<u32> {
    let mut ids = model.eos_token_ids();
    if ids.is_empty() {
        for t in [
            "<|im_end|>",
            "<|endoftext|>",
            "</s>",
            "<|eot_id|>",
            "<|end_of_text|>",
        ] {
            if let Some(i) = model.tokenizer().token_to_id(t) {
                ids.push(i);
                break;
            }
        }
    }
    ids
}

/// Score `docs` of `task`. `tick` is called with the number of finished documents; `stop` is
/// polled between backend calls (Ctrl-C): what was finished is returned with `partial = true`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &mut dyn LanguageModel,
    task: &Task,
    docs: Vec<Doc>,
    cache: &mut RequestCache,
    chat: &ChatTemplate,
    opts: &EngineOptions,
    stop: &AtomicBool,
    mut tick: impl FnMut(usize),
) -> Result<TaskRun> {
    if opts.batch_size == 0 {
        return Err(Error::model("batch size must be at least 1"));
    }
    let eos = eos_ids(model);
    let eos_str: Option<String> = eos.first().and_then(|&i| model.tokenizer().id_to_token(i));
    let mut run = TaskRun {
        docs: vec![],
        responses: vec![],
        scores: vec![],
        partial: false,
    };
    let mut docs = docs.into_iter().peekable();
    while docs.peek().is_some() {
        let window: Vec<Doc> = docs.by_ref().take(opts.window.max(1)).collect();
        let mut w = Window::plan(&*model, task, &window, chat, opts, &eos, eos_str.as_deref())?;
        let base = run.docs.len();
        let finished = w.run(model, task, cache, opts, stop, |k| tick(base + k))?;
        for (i, doc) in window.into_iter().enumerate() {
            match w.responses(i, cache, model.tokenizer())? {
                Some(resp) => {
                    let score = task.score(&doc, &resp)?;
                    run.docs.push(doc);
                    run.responses.push(resp);
                    run.scores.push(score);
                }
                None => run.partial = true,
            }
        }
        if !finished {
            run.partial = true;
        }
        if run.partial {
            break;
        }
    }
    Ok(run)
}

/// The tokens each document puts through the model: its log-likelihood requests' contexts and
/// continuations, and its generation prompt plus the most new tokens it may take. What
/// `--shard` balances.
pub fn doc_token_counts(
    model: &dyn LanguageModel,
    task: &Task,
    docs: &[Doc],
    chat: &ChatTemplate,
    opts: &EngineOptions,
) -> Result<Vec<usize>> {
    let eos = eos_ids(model);
    let eos_str: Option<String> = eos.first().and_then(|&i| model.tokenizer().id_to_token(i));
    let mut out = Vec::with_capacity(docs.len());
    for window in docs.chunks(opts.window.max(1)) {
        let w = Window::plan(model, task, window, chat, opts, &eos, eos_str.as_deref())?;
        for (lls, gen) in w.lls.iter().zip(&w.gens) {
            let ll: usize = lls
                .iter()
                .map(|r| r.context.len() + r.continuation.len())
                .sum();
            out.push(
                ll + gen
                    .as_ref()
                    .map_or(0, |g| g.prompt.len() + g.opts.max_new_tokens),
            );
        }
    }
    Ok(out)
}

/// One generation job of a window.
struct GenJob {
    doc_id: usize,
    prompt: Vec<u32>,
    opts: GenOptions,
    decode: Decode,
}

/// How a generation is decoded into the samples' prompt and completion.
#[derive(Clone, Copy, PartialEq)]
enum Decode {
    /// A raw prompt (BigBench): the completion with special tokens skipped, cut at the stop
    /// strings.
    Raw,
    /// A chat prompt judged on plain text (IFEval): the completion alone with special tokens
    /// skipped, as lm-eval's `generate_until` decodes.
    ChatText,
    /// Function calling / JSON mode: prompt and completion decoded together with special tokens
    /// kept and split at the prompt (TASKS_SPEC §7.3).
    ChatSplit,
}

/// The requests of a window of documents, tokenized.
struct Window {
    lls: Vec<Vec<TokenRequest>>,
    gens: Vec<Option<GenJob>>,
    eos_token: Option<String>,
}

impl Window {
    fn plan(
        model: &dyn LanguageModel,
        task: &Task,
        docs: &[Doc],
        chat: &ChatTemplate,
        opts: &EngineOptions,
        eos: &[u32],
        eos_str: Option<&str>,
    ) -> Result<Window> {
        let tok = model.tokenizer();
        let mut lls = Vec::with_capacity(docs.len());
        let mut gens = Vec::with_capacity(docs.len());
        let chat_stops: Vec<u32> = {
            let mut v = Vec::new();
            for s in ["<|im_end|>", chat.eos_token.as_str()] {
                if let Some(id) = tok.token_to_id(s).filter(|_| !s.is_empty()) {
                    if !v.contains(&id) {
                        v.push(id);
                    }
                }
            }
            v
        };
        for d in docs {
            lls.push(
                d.requests
                    .iter()
                    .map(|r| encode_pair(tok, r, eos.first().copied()))
                    .collect::<Result<Vec<_>>>()?,
            );
            let job = if let Some(g) = &d.generation {
                let mut stops = g.until.clone();
                if let Some(e) = eos_str {
                    stops.push(e.to_string());
                }
                Some(GenJob {
                    doc_id: d.src_index,
                    prompt: tokenizer::encode(tok, &g.context)?,
                    opts: GenOptions {
                        max_new_tokens: g.max_new_tokens,
                        stop_tokens: eos.to_vec(),
                        stop_strings: stops,
                        ..Default::default()
                    },
                    decode: Decode::Raw,
                })
            } else if let Some(c) = &d.chat {
                let text = chat
                    .render(c.doc.messages(), None, true)
                    .map_err(|e| Error::task(&task.name, format!("doc {}: {e}", d.id)))?;
                Some(GenJob {
                    doc_id: d.src_index,
                    prompt: tokenizer::encode(tok, &text)?,
                    opts: GenOptions {
                        max_new_tokens: opts.max_new_tokens.unwrap_or(c.max_new_tokens),
                        stop_tokens: chat_stops.clone(),
                        stop_strings: Vec::new(),
                        temperature: opts.temperature,
                        seed: opts.seed,
                    },
                    decode: match c.doc {
                        crate::doc::ChatDoc::Prompt { .. } => Decode::ChatText,
                        _ => Decode::ChatSplit,
                    },
                })
            } else {
                None
            };
            if let Some(j) = &job {
                if j.prompt.is_empty() {
                    return Err(Error::task(
                        &task.name,
                        format!("doc {}: empty generation prompt", d.id),
                    ));
                }
            }
            gens.push(job);
        }
        Ok(Window {
            lls,
            gens,
            eos_token: Some(chat.eos_token.clone()).filter(|e| !e.is_empty()),
        })
    }

    /// Compute what the cache cannot answer, calling `done(k)` whenever `k` documents of the
    /// window have all their answers. Returns false when `stop` interrupted it.
    fn run(
        &mut self,
        model: &mut dyn LanguageModel,
        task: &Task,
        cache: &mut RequestCache,
        opts: &EngineOptions,
        stop: &AtomicBool,
        mut done: impl FnMut(usize),
    ) -> Result<bool> {
        let n = self.lls.len();
        // What each document still waits for; which documents wait for each missing answer.
        let mut pending = vec![0usize; n];
        let mut waiters: HashMap<String, Vec<usize>> = HashMap::new();
        // Log-likelihoods: documents longest first, each document's requests together, every
        // distinct request once.
        let mut order: Vec<usize> = (0..n).collect();
        let doc_len = |d: &[TokenRequest]| {
            d.iter()
                .map(|r| r.context.len() + r.continuation.len())
                .max()
                .unwrap_or(0)
        };
        order.sort_by_key(|&d| std::cmp::Reverse(doc_len(&self.lls[d])));
        // Each request's cache key is computed once.
        let mut todo: Vec<(String, &TokenRequest)> = vec![];
        for &d in &order {
            for r in &self.lls[d] {
                let k = cache.key(r);
                if cache.map.contains_key(&k) {
                    cache.hits += 1;
                    continue;
                }
                let w = waiters.entry(k.clone()).or_default();
                if w.is_empty() {
                    todo.push((k, r));
                }
                if !w.contains(&d) {
                    w.push(d);
                    pending[d] += 1;
                }
            }
        }
        // Generations: longest prompts first, same options together.
        let mut jobs: Vec<(String, &GenJob)> = vec![];
        for (d, j) in self.gens.iter().enumerate() {
            let Some(j) = j else { continue };
            let k = cache.gen_key(&j.prompt, &j.opts);
            if cache.gens.contains_key(&k) {
                cache.hits += 1;
                continue;
            }
            let w = waiters.entry(k.clone()).or_default();
            if w.is_empty() {
                jobs.push((k, j));
            }
            w.push(d);
            pending[d] += 1;
        }
        let mut complete = pending.iter().filter(|&&p| p == 0).count();
        done(complete);
        let mut finish = |key: &str, complete: &mut usize| {
            for &d in waiters.get(key).into_iter().flatten() {
                pending[d] -= 1;
                if pending[d] == 0 {
                    *complete += 1;
                }
            }
        };
        for batch in todo.chunks(opts.batch_size) {
            if stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let reqs: Vec<TokenRequest> = batch.iter().map(|(_, r)| (*r).clone()).collect();
            let out = model.loglikelihood(&reqs)?;
            if out.len() != reqs.len() {
                return Err(Error::model(format!(
                    "backend returned {} log-likelihoods for {} requests",
                    out.len(),
                    reqs.len()
                )));
            }
            for ((k, _), l) in batch.iter().zip(out) {
                if !l.logprob.is_finite() {
                    return Err(Error::task(
                        &task.name,
                        "model returned a non-finite log-likelihood",
                    ));
                }
                finish(k, &mut complete);
                cache.put(k.clone(), l)?;
            }
            done(complete);
        }
        jobs.sort_by_key(|(_, j)| std::cmp::Reverse(j.prompt.len()));
        // Batches of prompts with equal options (a task's jobs mostly share them), longest first.
        let mut groups: Vec<Vec<(String, &GenJob)>> = vec![];
        for job in jobs {
            match groups.iter_mut().find(|g| g[0].1.opts == job.1.opts) {
                Some(g) => g.push(job),
                None => groups.push(vec![job]),
            }
        }
        for same in groups {
            for batch in same.chunks(opts.batch_size) {
                if stop.load(Ordering::SeqCst) {
                    return Ok(false);
                }
                let prompts: Vec<GenPrompt> = batch
                    .iter()
                    .map(|(_, j)| GenPrompt {
                        ids: j.prompt.clone(),
                        task: task.name.clone(),
                        doc_id: j.doc_id,
                    })
                    .collect();
                let out = model.generate(&prompts, &batch[0].1.opts)?;
                if out.len() != batch.len() {
                    return Err(Error::model(format!(
                        "backend returned {} generations for {} prompts",
                        out.len(),
                        batch.len()
                    )));
                }
                for ((k, _), g) in batch.iter().zip(out) {
                    finish(k, &mut complete);
                    cache.put_gen(k.clone(), g)?;
                }
                done(complete);
            }
        }
        Ok(true)
    }

    /// Document `i`'s responses from the cache, `None` when some are missing (interrupted).
    fn responses(
        &self,
        i: usize,
        cache: &RequestCache,
        tok: &tokenizers::Tokenizer,
    ) -> Result<Option<Responses>> {
        let mut resp = Responses::default();
        for r in &self.lls[i] {
            match cache.get(r) {
                Some(l) => resp.lls.push(l),
                None => return Ok(None),
            }
        }
        if let Some(j) = &self.gens[i] {
            let Some(ids) = cache.get_gen(&j.prompt, &j.opts) else {
                return Ok(None);
            };
            match j.decode {
                Decode::ChatText => {
                    resp.prompt = Some(tokenizer::decode(tok, &j.prompt, false)?);
                    resp.generation = Some(tokenizer::decode(tok, &ids, true)?);
                    resp.eos_token = self.eos_token.clone();
                }
                Decode::ChatSplit => {
                    // Decode the whole sequence with special tokens kept (TASKS_SPEC §7.3) and
                    // split it at the decoded prompt, so prompt and completion stay apart.
                    let mut all = j.prompt.clone();
                    all.extend_from_slice(&ids);
                    let full = tokenizer::decode(tok, &all, false)?;
                    let p_dec = tokenizer::decode(tok, &j.prompt, false)?;
                    let (p, c) = match full.strip_prefix(p_dec.as_str()) {
                        Some(rest) => (p_dec.clone(), rest.to_string()),
                        None => (p_dec.clone(), tokenizer::decode(tok, &ids, false)?),
                    };
                    resp.prompt = Some(p);
                    resp.generation = Some(c);
                    resp.eos_token = self.eos_token.clone();
                }
                Decode::Raw => {
                    let mut text = tokenizer::decode(tok, &ids, true)?;
                    for s in &j.opts.stop_strings {
                        if let Some(k) = text.find(s.as_str()) {
                            text.truncate(k);
                        }
                    }
                    resp.generation = Some(text);
                }
            }
        }
        Ok(Some(resp))
    }
}
