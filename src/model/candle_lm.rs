//! The candle backend of [`LanguageModel`]: scoring with a shared-prefix KV cache and batched
//! continuations, and greedy generation.
use super::ggml::log_softmax_at;
use super::llama::{KvCache, Llama};
use super::load::{load, LoadOptions, Loaded, QuantMode};
use super::torch_sum;
use super::{GenOptions, GenPrompt, LanguageModel, ModelIdentity, OpenOptions, TokenRequest, Work};
use crate::chat::ChatTemplate;
use crate::doc::Loglik;
use crate::error::{Error, Result};
use rayon::prelude::*;

pub struct CandleLm {
    pub llama: Llama,
    pub tokenizer: tokenizers::Tokenizer,
    pub name: String,
    /// What was loaded (paths, architecture, weight types), for the results.
    pub details: serde_json::Value,
    pub identity: ModelIdentity,
    pub chat_template: Option<serde_json::Value>,
    pub eos_token: Option<String>,
    /// Longest prefix chunk run at once (bounds attention memory).
    pub prefill_chunk: usize,
    max_length: usize,
    /// Logits buffers kept between calls ([`LogitBuf`]).
    logit_bufs: std::sync::Mutex<Vec<Vec<f32>>>,
}

/// A logits buffer taken from [`CandleLm`]'s pool and put back when dropped. A call's logits
/// are a vocabulary-wide row per scored position (tens of megabytes); a buffer allocated for
/// each call came either zeroed by `memset` or as fresh pages faulted in one by one, and the
/// kernels write every value anyway. A pool, not a per-thread buffer: a thread waiting in one
/// share's parallel product may take up another share ([`CandleLm::score`]), which needs a
/// buffer of its own.
struct LogitBuf<'a> {
    pool: &'a std::sync::Mutex<Vec<Vec<f32>>>,
    buf: Vec<f32>,
}

impl<'a> LogitBuf<'a> {
    fn take(pool: &'a std::sync::Mutex<Vec<Vec<f32>>>) -> Self {
        let buf = pool.lock().map(|mut p| p.pop()).ok().flatten();
        LogitBuf {
            pool,
            buf: buf.unwrap_or_default(),
        }
    }
}

impl Drop for LogitBuf<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(std::mem::take(&mut self.buf));
        }
    }
}

impl CandleLm {
    /// Load a `.gguf` file, a Hugging Face directory or a hub id.
    pub fn open(model: &str, opts: &OpenOptions) -> Result<Self> {
        let load_opts = LoadOptions {
            quant_mode: if opts.dequantize {
                QuantMode::Dequantize
            } else {
                QuantMode::Native
            },
            dtype: opts.dtype,
            tokenizer: opts.tokenizer.clone(),
        };
        Self::load(model, &load_opts)
    }

    pub fn load(model: &str, opts: &LoadOptions) -> Result<Self> {
        let Loaded {
            llama,
            tokenizer,
            name,
            fingerprint,
            chat_template,
            eos_token,
        } = load(model, opts)?;
        let max_length = llama.cfg.max_position_embeddings;
        let weights_sha256 = match &fingerprint["sha256"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        };
        let identity = ModelIdentity {
            backend: "candle".into(),
            format: fingerprint["format"].as_str().unwrap_or("").to_string(),
            weights_sha256,
            compute: format!(
                "{}; {}",
                fingerprint["compute"].as_str().unwrap_or(""),
                fingerprint["loglik_sum"].as_str().unwrap_or("")
            ),
            tokenizer_sha256: super::tokenizer_sha256(&tokenizer),
        };
        Ok(Self {
            llama,
            tokenizer,
            name,
            details: fingerprint,
            identity,
            chat_template,
            eos_token,
            prefill_chunk: 512,
            max_length,
            logit_bufs: Default::default(),
        })
    }

    /// Run `tokens` in chunks of at most `prefill_chunk`, each after the cache of the ones
    /// before (bounds attention memory). Returns the cache and the last token's final-normed
    /// hidden state.
    fn prefill(&self, tokens: &[u32]) -> Result<(KvCache, Vec<f32>)> {
        let mut cache = KvCache::default();
        let mut last = vec![];
        for chunk in tokens.chunks(self.prefill_chunk.max(1)) {
            let (hidden, mut c) = self.llama.forward_packed(&[(chunk, Some(&cache))], true)?;
            cache = c.pop().unwrap_or_default();
            last = hidden.get(chunk.len() - 1)?.to_vec1::<f32>()?;
        }
        Ok((cache, last))
    }

    /// The cache of each of `prompts` (empty for an empty one) and its last token's
    /// final-normed hidden state (empty for an empty one): the short ones computed together in
    /// packed passes, a longer one alone in chunks ([`CandleLm::prefill`]).
    fn prefill_many(&self, prompts: &[&[u32]]) -> Result<(Vec<KvCache>, Vec<Vec<f32>>)> {
        let mut caches = vec![KvCache::default(); prompts.len()];
        let mut lasts = vec![vec![]; prompts.len()];
        let short: Vec<usize> = (0..prompts.len())
            .filter(|&i| !prompts[i].is_empty() && prompts[i].len() <= self.prefill_chunk)
            .collect();
        let sizes: Vec<usize> = short.iter().map(|&i| prompts[i].len()).collect();
        for g in pack_groups(&sizes, PACK_TOKENS) {
            let rows: Vec<(&[u32], Option<&KvCache>)> = short[g.clone()]
                .iter()
                .map(|&i| (prompts[i], None))
                .collect();
            let (hidden, cs) = self.llama.forward_packed(&rows, true)?;
            let mut at = 0;
            for (&i, c) in short[g].iter().zip(cs) {
                at += prompts[i].len();
                caches[i] = c;
                lasts[i] = hidden.get(at - 1)?.to_vec1::<f32>()?;
            }
        }
        for ((cache, last), p) in caches.iter_mut().zip(&mut lasts).zip(prompts) {
            if p.len() > self.prefill_chunk {
                (*cache, *last) = self.prefill(p)?;
            }
        }
        Ok((caches, lasts))
    }
}

/// Tokens of one packed forward pass at most (bounds the activations; a longer row runs alone).
const PACK_TOKENS: usize = 2048;

/// Rows of logits computed at once when scoring (a request's rows are never split; one with
/// more runs alone): 128 vocabulary-wide rows are 25 MB for a 49,152-token vocabulary. Fewer
/// would read the output head's weights more often; more, hold more memory.
const LOGIT_ROWS: usize = 128;

/// Consecutive items of the given sizes in groups of at most `budget` in all (an item larger
/// than the budget alone).
fn pack_groups(sizes: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = vec![];
    let (mut start, mut sum) = (0, 0);
    for (i, &n) in sizes.iter().enumerate() {
        if i > start && sum + n > budget {
            groups.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

impl CandleLm {
    /// Score requests on every thread: the call's requests in one contiguous share per thread
    /// (prefix runs kept whole, shares of about equal tokens computed), each share scored as a batch of
    /// its own ([`CandleLm::score_share`]) on its own thread. A forward pass split over the
    /// threads operation by operation leaves them waiting at every one of its hundreds of
    /// joins (a tenth of the CPU time on 2 threads); a share runs through a whole pass alone,
    /// and the operations' own parallelism still lets an idle thread take over work. A
    /// request's numbers do not depend on what it is batched with, so neither do they on the
    /// shares.
    fn score(&self, reqs: &[Prepared]) -> Result<Vec<Loglik>> {
        let threads = rayon::current_num_threads();
        let runs = prefix_runs(reqs, self.llama.llamacpp_arith);
        if threads < 2 || runs.len() < 2 {
            return self.score_share(reqs);
        }
        // each run's tokens as computed: its prefix once, then each member's rest
        let costs: Vec<usize> = runs
            .iter()
            .map(|run| {
                let rs = &reqs[run.clone()];
                let p = RunPlan::of(rs, self.llama.llamacpp_arith).prefix;
                p + rs.iter().map(|r| r.input.len() - p).sum::<usize>()
            })
            .collect();
        let total: usize = costs.iter().sum();
        let mut shares: Vec<std::ops::Range<usize>> = vec![];
        let (mut start, mut tokens) = (0, 0);
        for (run, cost) in runs.iter().zip(&costs) {
            tokens += cost;
            // close a share once it holds its part of the tokens
            if tokens * threads >= total * (shares.len() + 1) && shares.len() + 1 < threads {
                shares.push(start..run.end);
                start = run.end;
            }
        }
        if start < reqs.len() {
            shares.push(start..reqs.len());
        }
        let scored: Vec<Vec<Loglik>> = shares
            .into_par_iter()
            .map(|share| self.score_share(&reqs[share]))
            .collect::<Result<_>>()?;
        Ok(scored.into_iter().flatten().collect())
    }

    /// Score requests of any number of documents in few forward passes. Requests that share a
    /// prefix ([`prefix_runs`]: a document's choices) have it computed once; then every
    /// run's prefix goes into one packed pass and every request's rest after its prefix into
    /// another ([`Llama::forward_packed`]: no padding, the weights read once for all
    /// documents). Where the members have one context, the prefix is all of it
    /// ([`RunPlan`]): its last position, whose next-token distribution scores every member's
    /// first target, is computed once, not once per member. Each request's numbers equal
    /// scoring it alone.
    fn score_share(&self, reqs: &[Prepared]) -> Result<Vec<Loglik>> {
        let runs = prefix_runs(reqs, self.llama.llamacpp_arith);
        let plans: Vec<RunPlan> = runs
            .iter()
            .map(|r| RunPlan::of(&reqs[r.clone()], self.llama.llamacpp_arith))
            .collect();
        // 1. The prefixes (an empty one where requests share none).
        let heads: Vec<&[u32]> = runs
            .iter()
            .zip(&plans)
            .map(|(run, p)| &reqs[run.start].input[..p.prefix])
            .collect();
        let (caches, lasts) = self.prefill_many(&heads)?;
        let mut owner = vec![0; reqs.len()];
        for (i, run) in runs.iter().enumerate() {
            owner[run.clone()].fill(i);
        }
        // 2. Each member's first target, scored by its prefix's last position: those rows'
        // logits in chunks of rows (one buffer, bounded memory).
        let mut buf = LogitBuf::take(&self.logit_bufs);
        let firsts: Vec<usize> = (0..runs.len()).filter(|&i| plans[i].first).collect();
        let mut first: Vec<Option<(f64, bool)>> = vec![None; reqs.len()];
        for chunk in firsts.chunks(LOGIT_ROWS) {
            let rows: Vec<f32> = chunk.iter().flat_map(|&i| lasts[i].clone()).collect();
            let (logits, vocab) = self.llama.logits(&rows, chunk.len(), &mut buf.buf)?;
            let members: Vec<(usize, &[f32])> = chunk
                .iter()
                .zip(logits.chunks_exact(vocab))
                .flat_map(|(&i, row)| runs[i].clone().map(move |j| (j, row)))
                .collect();
            let scored: Vec<(usize, (f64, bool))> = members
                .into_par_iter()
                .map(|(j, row)| (j, log_softmax_at(row, reqs[j].targets[0] as usize)))
                .collect();
            for (j, t) in scored {
                first[j] = Some(t);
            }
        }
        // 3. Every request's rest after its run's prefix (none where the prefix scores its
        // only target).
        let sizes: Vec<usize> = (0..reqs.len())
            .map(|j| reqs[j].input.len() - plans[owner[j]].prefix)
            .collect();
        let mut out: Vec<Option<Loglik>> = (0..reqs.len()).map(|_| None).collect();
        let rest: Vec<usize> = (0..reqs.len()).filter(|&j| sizes[j] > 0).collect();
        for j in (0..reqs.len()).filter(|&j| sizes[j] == 0) {
            if first[j].is_none() || reqs[j].targets.len() != 1 {
                return Err(Error::model(
                    "a request with no rest after its prefix must have its one target scored by the prefix",
                ));
            }
            out[j] = Some(self.loglik(first[j], &[], &[])?);
        }
        let rest_sizes: Vec<usize> = rest.iter().map(|&j| sizes[j]).collect();
        for g in pack_groups(&rest_sizes, PACK_TOKENS) {
            let members = &rest[g];
            let rows: Vec<(&[u32], Option<&KvCache>)> = members
                .iter()
                .map(|&j| {
                    let i = owner[j];
                    (&reqs[j].input[plans[i].prefix..], Some(&caches[i]))
                })
                .collect();
            let (hidden, _) = self.llama.forward_packed(&rows, false)?;
            let hidden = hidden.flatten_all()?.to_vec1::<f32>()?;
            let h = self.llama.cfg.hidden_size;
            // The positions whose next-token distributions score each request's targets (after
            // the first, where the prefix scores it), `(request, first scored position, count)`.
            let mut spans = vec![];
            let mut at = 0;
            for &j in members {
                let n = reqs[j].targets.len() - usize::from(first[j].is_some());
                spans.push((j, at + sizes[j] - n, n));
                at += sizes[j];
            }
            // their logits for whole requests at a time, about LOGIT_ROWS rows a chunk
            let counts: Vec<usize> = spans.iter().map(|s| s.2).collect();
            for c in pack_groups(&counts, LOGIT_ROWS) {
                let spans = &spans[c];
                let rows: Vec<f32> = spans
                    .iter()
                    .flat_map(|&(_, start, n)| &hidden[start * h..(start + n) * h])
                    .copied()
                    .collect();
                let n: usize = spans.iter().map(|s| s.2).sum();
                let (logits, vocab) = self.llama.logits(&rows, n, &mut buf.buf)?;
                let logits: Vec<&[f32]> = logits.chunks_exact(vocab).collect();
                // each request's log-softmaxes on its own (in parallel: a full vocabulary each)
                let mut from = 0;
                let parts: Vec<(usize, usize, usize)> = spans
                    .iter()
                    .map(|&(j, _, n)| {
                        from += n;
                        (j, from - n, n)
                    })
                    .collect();
                let scored: Vec<(usize, Loglik)> = parts
                    .into_par_iter()
                    .map(|(j, at, n)| {
                        let t = &reqs[j].targets;
                        let l = self.loglik(first[j], &logits[at..at + n], &t[t.len() - n..])?;
                        Ok((j, l))
                    })
                    .collect::<Result<_>>()?;
                for (j, l) in scored {
                    out[j] = Some(l);
                }
            }
        }
        out.into_iter()
            .map(|l| l.ok_or_else(|| Error::model("a request was not scored")))
            .collect()
    }

    /// A continuation's log-likelihood from the logits that predict its tokens, after `first`,
    /// its first token's log-probability and greediness where those were taken apart (llama.cpp's
    /// arithmetic only: its sum starts from them, `0 + l` being `l`).
    fn loglik(
        &self,
        first: Option<(f64, bool)>,
        rows: &[&[f32]],
        targets: &[u32],
    ) -> Result<Loglik> {
        if !self.llama.llamacpp_arith {
            // lm-evaluation-harness's float32 log_softmax and sum (TASKS_SPEC §1.3): its float
            // sum needs every row, and RunPlan takes no first target apart in this arithmetic.
            if first.is_some() {
                return Err(Error::model(
                    "float32 scoring was given a first target scored apart (RunPlan splits only llama.cpp arithmetic's)",
                ));
            }
            return Ok(torch_sum::loglik(rows, targets));
        }
        // llama.cpp's arithmetic: its sums are double precision.
        let (mut lp, mut greedy) = first.unwrap_or((0f64, true));
        for (row, &t) in rows.iter().zip(targets) {
            let (l, g) = log_softmax_at(row, t as usize);
            lp += l;
            greedy &= g;
        }
        Ok(Loglik {
            logprob: lp,
            is_greedy: greedy,
            logprob_f64: Some(lp),
        })
    }
}

/// Where the scored part of a request starts: its shared prefix may not go past it.
fn scored_start(r: &Prepared) -> usize {
    r.input.len() - r.targets.len()
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The prefix common to every input of `reqs`, ending before the first scored position.
fn shared_prefix(reqs: &[Prepared]) -> usize {
    let first = &reqs[0].input;
    reqs.iter()
        .map(|r| scored_start(r).min(common_prefix(first, &r.input)))
        .min()
        .unwrap_or(0)
}

/// How a run of requests ([`prefix_runs`]) is computed: the prefix computed once for all of
/// them, and whether it reaches past every member's first scored position (`first`). That is
/// so where the members have one context (a document's choices): the prefix is then the whole
/// context, and its last position's next-token distribution scores every member's first
/// target; the members' rests are their continuations without the first and last tokens.
/// Otherwise the prefix ends before the first scored position ([`shared_prefix`]). Only with
/// llama.cpp's arithmetic (`llamacpp_arith`) does a row give the same bits in either pass; in f32 the
/// first scored position computed with the context made samples depend on `--batch-size`
/// (tests/pipeline.rs), so f32 keeps it in each member's rest.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RunPlan {
    prefix: usize,
    first: bool,
}

impl RunPlan {
    fn of(rs: &[Prepared], llamacpp_arith: bool) -> RunPlan {
        let p = shared_prefix(rs);
        let one_context = llamacpp_arith
            && rs
                .iter()
                .all(|r| scored_start(r) == p && common_prefix(&rs[0].input, &r.input) > p);
        if one_context {
            RunPlan {
                prefix: p + 1,
                first: true,
            }
        } else {
            RunPlan {
                prefix: p,
                first: false,
            }
        }
    }
}

/// Split consecutive requests into runs that share a prefix computed once. With `partial`,
/// the prefix need only cover half of every member's context (Winogrande's partial contexts;
/// documents with a long common instruction); without, members have the same context (a
/// document's choices) and it is the prefix. Only llama.cpp's arithmetic gives the same bits
/// wherever a row is split between cache and pass; in f32 (candle's gemm sums the attention
/// over the keys in blocks that depend on how many there are) a split that depends on which
/// requests share a call would make a number depend on `--batch-size`, so it never does.
fn prefix_runs(reqs: &[Prepared], partial: bool) -> Vec<std::ops::Range<usize>> {
    let mut runs = vec![];
    let mut start = 0;
    while start < reqs.len() {
        let first = &reqs[start];
        let mut p = scored_start(first);
        let mut longest = scored_start(first);
        let mut end = start + 1;
        while end < reqs.len() {
            let r = &reqs[end];
            let q = p
                .min(scored_start(r))
                .min(common_prefix(&first.input, &r.input));
            let l = longest.max(scored_start(r));
            let whole = q == scored_start(first) && q == scored_start(r);
            if q == 0 || 2 * q < l || !(partial || whole) {
                break;
            }
            p = q;
            longest = l;
            end += 1;
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

/// One request after TASKS_SPEC §1.3 step 4: the model input and the continuation tokens.
struct Prepared {
    input: Vec<u32>,
    targets: Vec<u32>,
}

fn prepare(r: &TokenRequest, max_length: usize) -> Result<Prepared> {
    if r.continuation.is_empty() {
        return Err(Error::model("empty continuation"));
    }
    let mut full: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
    if full.len() > max_length + 1 {
        full.drain(..full.len() - (max_length + 1));
    }
    let c = r.continuation.len().min(full.len() - 1);
    let targets = full[full.len() - c..].to_vec();
    full.pop();
    Ok(Prepared {
        input: full,
        targets,
    })
}

impl LanguageModel for CandleLm {
    fn name(&self) -> &str {
        &self.name
    }
    fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }
    fn max_length(&self) -> usize {
        self.max_length
    }
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }
    fn details(&self) -> serde_json::Value {
        let mut d = self.details.clone();
        if let Some(o) = d.as_object_mut() {
            // Selected at run time from the CPU's features (results are bit-identical across
            // kernels, so the request cache does not depend on it).
            o.insert("kernel".into(), self.llama.kernel().into());
        }
        d
    }
    fn eos_token_ids(&self) -> Vec<u32> {
        self.llama.cfg.eos_token_ids.clone()
    }

    fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        let eos = self.eos_token.clone().unwrap_or_default();
        let bos = self
            .llama
            .cfg
            .bos_token_id
            .and_then(|i| self.tokenizer.id_to_token(i))
            .unwrap_or_default();
        Ok(match &self.chat_template {
            Some(serde_json::Value::String(s)) => {
                Some(ChatTemplate::from_string(s.clone(), &bos, &eos))
            }
            Some(v) => ChatTemplate::from_tokenizer_config(
                &serde_json::json!({"chat_template": v, "bos_token": bos, "eos_token": eos}),
            )?,
            None => None,
        })
    }

    fn work(&self, requests: &[TokenRequest]) -> Option<Work> {
        let reqs: Vec<Prepared> = requests
            .iter()
            .map(|r| prepare(r, self.max_length))
            .collect::<Result<_>>()
            .ok()?;
        let c = &self.llama.cfg;
        let (h, hd) = (c.hidden_size as f64, c.head_dim as f64);
        let (nh, nkv) = (c.num_attention_heads as f64, c.num_key_value_heads as f64);
        let layers = c.num_hidden_layers as f64;
        // Per token: q, k, v, o and the three FFN projections; per attended position: QK and AV.
        let matmul =
            layers * (h * hd * (2.0 * nh + 2.0 * nkv) + 3.0 * h * c.intermediate_size as f64);
        let attend = layers * 2.0 * nh * hd;
        let mut w = Work {
            kernel: self.llama.kernel(),
            ..Work::default()
        };
        // Positions `from..to` each attend to every position up to their own (causal).
        let mut span = |from: usize, to: usize| {
            let n = (to - from) as f64;
            let attended = (from + 1 + to) as f64 * n / 2.0;
            w.computed_tokens += to - from;
            w.flops += 2.0 * (matmul * n + attend * attended.min(n * self.max_length as f64));
        };
        // The output head runs once per scored position: a run's first targets share one.
        let mut scored = 0;
        for run in prefix_runs(&reqs, self.llama.llamacpp_arith) {
            let rs = &reqs[run];
            let plan = RunPlan::of(rs, self.llama.llamacpp_arith);
            span(0, plan.prefix);
            scored += usize::from(plan.first);
            for r in rs {
                span(plan.prefix, r.input.len());
                scored += r.targets.len() - usize::from(plan.first);
            }
        }
        w.flops += 2.0 * h * c.vocab_size as f64 * scored as f64;
        Some(w)
    }

    fn loglikelihood(&mut self, requests: &[TokenRequest]) -> Result<Vec<Loglik>> {
        let reqs: Vec<Prepared> = requests
            .iter()
            .map(|r| prepare(r, self.max_length))
            .collect::<Result<_>>()?;
        on_pool(|| self.score(&reqs))
    }

    fn generate(&mut self, prompts: &[GenPrompt], opts: &GenOptions) -> Result<Vec<Vec<u32>>> {
        let this = &*self;
        on_pool(|| this.generate_on_pool(prompts, opts))
    }
}

/// Run `f` on a worker thread of rayon's pool and wait for it. The forward pass starts
/// hundreds of parallel operations per call (every product, every attention); started from a
/// thread outside the pool, each one is handed to a worker and waited for through a futex
/// (two context switches: ~5 % of a scoring run's CPU time on one thread), while from a
/// worker they start in place.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

impl CandleLm {
    fn generate_on_pool(&self, prompts: &[GenPrompt], opts: &GenOptions) -> Result<Vec<Vec<u32>>> {
        let prompts: Vec<&[u32]> = prompts.iter().map(|p| p.ids.as_slice()).collect();
        if prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::model("generation needs a non-empty prompt"));
        }
        if !(opts.temperature >= 0.0 && opts.temperature.is_finite()) {
            return Err(Error::model(format!(
                "temperature must be a non-negative number, got {}",
                opts.temperature
            )));
        }
        let mut results = vec![Vec::new(); prompts.len()];
        // Keep room for the new tokens (the harness truncates to max_length - max_gen_toks).
        let keep = self.max_length.saturating_sub(opts.max_new_tokens).max(1);
        // The engine bounds the call by --batch-size: every prompt decodes in one batch.
        let idx: Vec<usize> = (0..prompts.len()).collect();
        for chunk in idx.chunks(idx.len().max(1)) {
            // The prompts are prefilled together ([`CandleLm::prefill_many`]), then the
            // decoding steps of the chunk run batched.
            let mut rows: Vec<GenRow> = Vec::with_capacity(chunk.len());
            let mut heads: Vec<&[u32]> = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let p = prompts[i];
                let p = &p[p.len().saturating_sub(keep)..];
                let (&last, head) = p
                    .split_last()
                    .ok_or_else(|| Error::model("generation needs a non-empty prompt"))?;
                // The context window bounds every generation, whatever max_gen_toks says: a
                // row stops when prompt + output fill it (never reached by a real task, whose
                // prompt is cut to leave max_gen_toks of room).
                let limit = opts
                    .max_new_tokens
                    .min(self.max_length.saturating_sub(p.len()).max(1));
                heads.push(head);
                rows.push(GenRow {
                    index: i,
                    cache: KvCache::default(),
                    last,
                    rng: sampler_rng(opts.seed, p),
                    done: opts.max_new_tokens == 0,
                    limit,
                });
            }
            for (row, mut cache) in rows.iter_mut().zip(self.prefill_many(&heads)?.0) {
                // room for the prompt's last token and every new one: the decoding steps
                // write into it in place
                cache.reserve(row.limit + 1)?;
                row.cache = cache;
            }
            let mut logit_buf = LogitBuf::take(&self.logit_bufs);
            loop {
                let active: Vec<usize> = (0..rows.len()).filter(|&r| !rows[r].done).collect();
                if active.is_empty() {
                    break;
                }
                let tokens: Vec<u32> = active.iter().map(|&r| rows[r].last).collect();
                let mut caches: Vec<KvCache> = active
                    .iter()
                    .map(|&r| std::mem::take(&mut rows[r].cache))
                    .collect();
                let h = self.llama.decode_step(&tokens, &mut caches)?;
                let h = h.flatten_all()?.to_vec1::<f32>()?;
                let (logits, vocab) = self.llama.logits(&h, active.len(), &mut logit_buf.buf)?;
                for ((&r, cache), row_logits) in
                    active.iter().zip(caches).zip(logits.chunks_exact(vocab))
                {
                    let row = &mut rows[r];
                    row.cache = cache;
                    let next = pick_token(row_logits, opts.temperature, &mut row.rng);
                    let out = &mut results[row.index];
                    if opts.stop_tokens.contains(&next) {
                        row.done = true;
                        continue;
                    }
                    out.push(next);
                    row.last = next;
                    row.done = out.len() >= row.limit;
                    if !row.done && !opts.stop_strings.is_empty() {
                        let text = super::tokenizer::decode(&self.tokenizer, out, false)?;
                        row.done = opts.stop_strings.iter().any(|s| text.contains(s.as_str()));
                    }
                }
            }
        }
        Ok(results)
    }
}

/// A prompt being generated: its cache, the token to feed next, its sampler.
struct GenRow {
    index: usize,
    cache: KvCache,
    last: u32,
    rng: rand_chacha::ChaCha8Rng,
    done: bool,
    /// Tokens it may generate: max_gen_toks, within the context window.
    limit: usize,
}

/// A generator seeded by the run's seed and the prompt itself (independent of batching).
fn sampler_rng(seed: u64, prompt: &[u32]) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    for t in prompt {
        h.update(t.to_le_bytes());
    }
    rand_chacha::ChaCha8Rng::from_seed(h.finalize().into())
}

/// Argmax (first maximum) when `temperature == 0`, else a sample from softmax(logits / t).
fn pick_token(logits: &[f32], temperature: f64, rng: &mut rand_chacha::ChaCha8Rng) -> u32 {
    use rand::Rng;
    let mut arg = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[arg] {
            arg = i;
        }
    }
    if temperature == 0.0 {
        return arg as u32;
    }
    let max = logits[arg] as f64;
    let w: Vec<f64> = logits
        .iter()
        .map(|&v| ((v as f64 - max) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, x) in w.iter().enumerate() {
        if u < *x {
            return i as u32;
        }
        u -= x;
    }
    arg as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(context: &[u32], continuation: &[u32]) -> Prepared {
        prepare(
            &TokenRequest {
                context: context.to_vec(),
                continuation: continuation.to_vec(),
            },
            2048,
        )
        .unwrap()
    }

    /// A document's choices (one context): the prefix is the whole context and scores every
    /// choice's first token; a one-token choice is left with no rest at all.
    #[test]
    fn one_context_prefix_takes_the_first_scored_position() {
        let rs = [req(&[1, 2, 3], &[7, 8, 9]), req(&[1, 2, 3], &[5])];
        assert_eq!(prefix_runs(&rs, true), vec![0..2]);
        let plan = RunPlan::of(&rs, true);
        assert_eq!(
            plan,
            RunPlan {
                prefix: 3,
                first: true
            }
        );
        let rests: Vec<&[u32]> = rs.iter().map(|r| &r.input[plan.prefix..]).collect();
        assert_eq!(rests, [&[7u32, 8][..], &[][..]]);
        // f32 keeps the first scored position in each member's rest
        assert_eq!(
            RunPlan::of(&rs, false),
            RunPlan {
                prefix: 2,
                first: false
            }
        );
    }

    /// Winogrande's partial contexts (one continuation after different options): the prefix
    /// stops where the contexts part, before any scored position.
    #[test]
    fn partial_contexts_keep_their_own_first_positions() {
        let rs = [req(&[1, 2, 3, 4], &[7, 8]), req(&[1, 2, 3, 6], &[7, 8])];
        assert_eq!(prefix_runs(&rs, true), vec![0..2]);
        assert_eq!(
            RunPlan::of(&rs, true),
            RunPlan {
                prefix: 3,
                first: false
            }
        );
        // contexts of different lengths
        let rs = [req(&[1, 2, 3, 4], &[7]), req(&[1, 2, 3, 4, 5], &[7])];
        assert!(!RunPlan::of(&rs, true).first);
    }
}
