//! The engine: tokenize requests exactly as TASKS_SPEC §1.3, score them through the model one
//! document at a time (its choices share a context, which the backend computes once), run the
//! greedy requests, and score every document with its task. Finished requests go to an
//! append-only cache keyed by model and token ids, so an interrupted run resumes where it stopped.
use crate::doc::{Doc, Loglik, LoglikRequest};
use crate::error::{Error, Result};
use crate::model::{tokenizer, GenOptions, LanguageModel, TokenRequest};
use crate::pystr::split_trailing_whitespace;
use crate::tasks::Task;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
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

/// Append-only log-likelihood cache: one JSON line per request, keyed by model and token ids.
pub struct RequestCache {
    path: Option<PathBuf>,
    model_key: String,
    map: HashMap<String, Loglik>,
    /// Generated token ids by prompt + options (greedy generation is deterministic too).
    gens: HashMap<String, Vec<u32>>,
    file: Option<std::fs::File>,
    pub hits: usize,
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
        }
    }

    /// Open (or create) the cache for `fingerprint` under `dir`.
    pub fn open(dir: &Path, fingerprint: &serde_json::Value) -> Result<Self> {
        let model_key = hex::encode(Sha256::digest(fingerprint_identity(fingerprint).as_bytes()));
        let path = dir.join(format!("loglik-{}.jsonl", &model_key[..16]));
        let mut map = HashMap::new();
        let mut gens = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                // A line cut short by an interruption is skipped, not fatal.
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let (Some(k), Some(ids)) = (v["k"].as_str(), v["gen"].as_array()) {
                        let ids: Vec<u32> = ids
                            .iter()
                            .filter_map(|x| x.as_u64().map(|v| v as u32))
                            .collect();
                        gens.insert(k.to_string(), ids);
                    } else if let (Some(k), Some(lp), Some(g)) =
                        (v["k"].as_str(), v["lp"].as_f64(), v["g"].as_bool())
                    {
                        map.insert(
                            k.to_string(),
                            Loglik {
                                logprob: lp,
                                is_greedy: g,
                                logprob_f64: None,
                            },
                        );
                    }
                }
            }
        }
        std::fs::create_dir_all(dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::file(&path, e))?;
        Ok(Self {
            path: Some(path),
            model_key,
            map,
            gens,
            file: Some(file),
            hits: 0,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn key(&self, r: &TokenRequest) -> String {
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

    fn get(&self, r: &TokenRequest) -> Option<Loglik> {
        self.map.get(&self.key(r)).copied()
    }

    fn put(&mut self, r: &TokenRequest, l: Loglik) -> Result<()> {
        let k = self.key(r);
        if let Some(f) = self.file.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({"k": k, "lp": l.logprob, "g": l.is_greedy})
            )?;
        }
        self.map.insert(k, l);
        Ok(())
    }
}

/// What identifies the numbers a model produces: its weights and how they are computed.
impl RequestCache {
    fn gen_key(&self, prompt: &[u32], o: &GenOptions) -> String {
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

    fn get_gen(&self, prompt: &[u32], o: &GenOptions) -> Option<Vec<u32>> {
        self.gens.get(&self.gen_key(prompt, o)).cloned()
    }

    fn put_gen(&mut self, prompt: &[u32], o: &GenOptions, ids: Vec<u32>) -> Result<()> {
        let k = self.gen_key(prompt, o);
        if let Some(f) = self.file.as_mut() {
            writeln!(f, "{}", serde_json::json!({"k": k, "gen": ids}))?;
        }
        self.gens.insert(k, ids);
        Ok(())
    }
}

fn fingerprint_identity(f: &serde_json::Value) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        f["sha256"], f["compute"], f["tokenizer"], f["format"], f["loglik_sum"]
    )
}

/// Everything one task produced.
pub struct TaskRun {
    pub docs: Vec<Doc>,
    pub lls: Vec<Vec<Loglik>>,
    pub generations: Vec<Option<String>>,
    pub metrics: Vec<BTreeMap<String, f64>>,
    /// True when the run was interrupted before every document was scored.
    pub partial: bool,
}

/// Score `docs` of `task`. `tick` is called after each document; `stop` is polled between
/// documents (Ctrl-C): what was finished is returned with `partial = true`.
pub fn evaluate(
    model: &mut dyn LanguageModel,
    task: &Task,
    docs: Vec<Doc>,
    cache: &mut RequestCache,
    stop: &AtomicBool,
    mut tick: impl FnMut(usize),
) -> Result<TaskRun> {
    let eos_ids = eos_ids(model);
    let eos_str: Option<String> = eos_ids
        .first()
        .and_then(|&i| model.tokenizer().id_to_token(i));
    let mut run = TaskRun {
        docs: vec![],
        lls: vec![],
        generations: vec![],
        metrics: vec![],
        partial: false,
    };
    // Documents are taken in chunks so that their generations (if any) run batched; log-likelihood
    // requests are grouped per document, whose choices share a context.
    let chunk = if docs.iter().any(|d| d.generation.is_some()) {
        GEN_DOCS_PER_CHUNK
    } else {
        1
    };
    let mut docs = docs.into_iter().peekable();
    while docs.peek().is_some() {
        if stop.load(Ordering::SeqCst) {
            run.partial = true;
            break;
        }
        let part: Vec<Doc> = docs.by_ref().take(chunk).collect();
        let mut part_lls = Vec::with_capacity(part.len());
        for doc in &part {
            part_lls.push(score_doc(model, task, doc, cache, &eos_ids)?);
        }
        let gens = generate_docs(model, &part, cache, &eos_ids, eos_str.as_deref())?;
        for ((doc, lls), generation) in part.into_iter().zip(part_lls).zip(gens) {
            let metrics = task.process_results(&doc, &lls, generation.as_deref())?;
            run.docs.push(doc);
            run.lls.push(lls);
            run.generations.push(generation);
            run.metrics.push(metrics);
            tick(run.docs.len());
        }
    }
    Ok(run)
}

/// Documents per engine step when a task generates: their prompts are decoded together.
const GEN_DOCS_PER_CHUNK: usize = 16;

/// A document's log-likelihoods, from the cache or the model (missing requests as one group).
fn score_doc(
    model: &mut dyn LanguageModel,
    task: &Task,
    doc: &Doc,
    cache: &mut RequestCache,
    eos_ids: &[u32],
) -> Result<Vec<Loglik>> {
    let toks: Vec<TokenRequest> = doc
        .requests
        .iter()
        .map(|r| encode_pair(model.tokenizer(), r, eos_ids.first().copied()))
        .collect::<Result<_>>()?;
    let missing: Vec<usize> = (0..toks.len())
        .filter(|&i| cache.get(&toks[i]).is_none())
        .collect();
    cache.hits += toks.len() - missing.len();
    if !missing.is_empty() {
        let group: Vec<TokenRequest> = missing.iter().map(|&i| toks[i].clone()).collect();
        let out = model.loglikelihood(&group)?;
        for (r, l) in group.iter().zip(out) {
            if !l.logprob.is_finite() {
                return Err(Error::task(
                    &task.name,
                    format!("doc {}: model returned a non-finite log-likelihood", doc.id),
                ));
            }
            cache.put(r, l)?;
        }
    }
    Ok(toks.iter().map(|r| cache.get(r).unwrap()).collect())
}

fn eos_ids(model: &dyn LanguageModel) -> Vec<u32> {
    let fp = model.fingerprint();
    let mut ids: Vec<u32> = fp["eos_token_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|v| v as u32))
                .collect()
        })
        .unwrap_or_default();
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

/// TASKS_SPEC §1.4 for every document of `docs` that generates: greedy from the unstripped
/// context (no BOS), stop at EOS or a stop string, decode skipping special tokens, cut at the
/// first stop string. Prompts with the same options are generated in one batched call; results
/// come from and go to the request cache.
fn generate_docs(
    model: &mut dyn LanguageModel,
    docs: &[Doc],
    cache: &mut RequestCache,
    eos: &[u32],
    eos_str: Option<&str>,
) -> Result<Vec<Option<String>>> {
    let mut jobs: Vec<(usize, Vec<u32>, GenOptions)> = vec![];
    for (i, d) in docs.iter().enumerate() {
        if let Some(g) = &d.generation {
            let mut stops = g.until.clone();
            if let Some(e) = eos_str {
                stops.push(e.to_string());
            }
            let opts = GenOptions {
                max_new_tokens: g.max_new_tokens,
                stop_tokens: eos.to_vec(),
                stop_strings: stops,
                ..Default::default()
            };
            jobs.push((i, tokenizer::encode(model.tokenizer(), &g.context)?, opts));
        }
    }
    let mut ids: Vec<Option<Vec<u32>>> = jobs.iter().map(|(_, p, o)| cache.get_gen(p, o)).collect();
    cache.hits += ids.iter().filter(|x| x.is_some()).count();
    let mut todo: Vec<usize> = (0..jobs.len()).filter(|&j| ids[j].is_none()).collect();
    while let Some(&first) = todo.first() {
        let (same, rest): (Vec<usize>, Vec<usize>) = todo.iter().partition(|&&j| {
            let (a, b) = (&jobs[j].2, &jobs[first].2);
            a.max_new_tokens == b.max_new_tokens && a.stop_strings == b.stop_strings
        });
        let prompts: Vec<Vec<u32>> = same.iter().map(|&j| jobs[j].1.clone()).collect();
        let out = model.generate(&prompts, &jobs[first].2)?;
        for (&j, g) in same.iter().zip(out) {
            cache.put_gen(&jobs[j].1, &jobs[j].2, g.clone())?;
            ids[j] = Some(g);
        }
        todo = rest;
    }
    let mut texts = vec![None; docs.len()];
    for ((i, _, o), g) in jobs.iter().zip(ids) {
        let mut text = tokenizer::decode(model.tokenizer(), &g.unwrap(), true)?;
        for s in &o.stop_strings {
            if let Some(k) = text.find(s.as_str()) {
                text.truncate(k);
            }
        }
        texts[*i] = Some(text);
    }
    Ok(texts)
}
