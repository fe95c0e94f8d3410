//! The candle backend of [`LanguageModel`]: scoring with a shared-prefix KV cache and batched
//! continuations, and greedy generation.
use super::llama::{logprob_at, KvCache, Llama};
use super::load::{load, LoadOptions, Loaded};
use super::torch_sum;
use super::{GenOptions, LanguageModel, TokenRequest};
use crate::doc::Loglik;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

pub struct CandleLm {
    pub llama: Llama,
    pub tokenizer: tokenizers::Tokenizer,
    pub name: String,
    pub fingerprint: serde_json::Value,
    pub chat_template: Option<serde_json::Value>,
    pub eos_token: Option<String>,
    /// Rows per forward call when scoring a group's continuations.
    pub batch_size: usize,
    /// Longest prefix chunk run at once (bounds attention memory).
    pub prefill_chunk: usize,
    max_length: usize,
}

impl CandleLm {
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
        Ok(Self {
            llama,
            tokenizer,
            name,
            fingerprint,
            chat_template,
            eos_token,
            batch_size: 16,
            prefill_chunk: 512,
            max_length,
        })
    }

    fn ids(rows: &[&[u32]], width: usize) -> Result<Tensor> {
        let mut flat = Vec::with_capacity(rows.len() * width);
        for r in rows {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(0u32, width - r.len()));
        }
        Ok(Tensor::from_vec(flat, (rows.len(), width), &Device::Cpu)?)
    }

    /// Run `tokens` after `cache` in chunks, extending the cache.
    fn prefill(&self, tokens: &[u32], mut cache: Option<KvCache>) -> Result<KvCache> {
        for chunk in tokens.chunks(self.prefill_chunk.max(1)) {
            let t = Self::ids(&[chunk], chunk.len())?;
            let (_, c) = self.llama.forward(&t, cache.as_ref(), true)?;
            cache = c;
        }
        Ok(cache.unwrap_or_default())
    }
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
    fn fingerprint(&self) -> serde_json::Value {
        self.fingerprint.clone()
    }

    fn loglikelihood(&mut self, group: &[TokenRequest]) -> Result<Vec<Loglik>> {
        let reqs: Vec<Prepared> = group
            .iter()
            .map(|r| prepare(r, self.max_length))
            .collect::<Result<_>>()?;
        if reqs.is_empty() {
            return Ok(vec![]);
        }
        // Shared prefix: common to every input and ending before the first scored position.
        let mut p = reqs
            .iter()
            .map(|r| r.input.len() - r.targets.len())
            .min()
            .unwrap();
        let first = &reqs[0].input;
        for r in &reqs[1..] {
            p = p.min(
                first
                    .iter()
                    .zip(&r.input)
                    .take_while(|(a, b)| a == b)
                    .count(),
            );
        }
        let cache = if p > 0 {
            Some(self.prefill(&first[..p], None)?)
        } else {
            None
        };
        let mut out = vec![None; reqs.len()];
        let idx: Vec<usize> = (0..reqs.len()).collect();
        for batch in idx.chunks(self.batch_size.max(1)) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| &reqs[i].input[p..]).collect();
            let width = rows.iter().map(|r| r.len()).max().unwrap();
            let (hidden, _) =
                self.llama
                    .forward(&Self::ids(&rows, width)?, cache.as_ref(), false)?;
            let hsize = hidden.dim(2)?;
            let flat = hidden.reshape((rows.len() * width, hsize))?;
            let mut sel = vec![];
            for (bi, &i) in batch.iter().enumerate() {
                let r = &reqs[i];
                let start = r.input.len() - r.targets.len() - p;
                // positions start..start+len(targets) predict the targets
                for k in 0..r.targets.len() {
                    sel.push((bi * width + start + k) as u32);
                }
            }
            let n = sel.len();
            let rows_h = flat.index_select(&Tensor::from_vec(sel, n, &Device::Cpu)?, 0)?;
            let logits = self.llama.logits(&rows_h)?.to_vec2::<f32>()?;
            let mut at = 0;
            for &i in batch {
                let r = &reqs[i];
                let rows = &logits[at..at + r.targets.len()];
                at += r.targets.len();
                if !self.llama.llamacpp_arith {
                    // lm-evaluation-harness's float32 log_softmax and sum (TASKS_SPEC §1.3).
                    out[i] = Some(torch_sum::loglik(rows, &r.targets));
                    continue;
                }
                // llama.cpp's arithmetic: its sums are double precision.
                let (mut lp, mut greedy) = (0f64, true);
                for (row, &t) in rows.iter().zip(&r.targets) {
                    let (l, g) = logprob_at(row, t as usize);
                    lp += l;
                    greedy &= g;
                }
                out[i] = Some(Loglik {
                    logprob: lp,
                    is_greedy: greedy,
                    logprob_f64: Some(lp),
                });
            }
        }
        Ok(out.into_iter().map(|x| x.unwrap()).collect())
    }

    fn generate(&mut self, prompts: &[Vec<u32>], opts: &GenOptions) -> Result<Vec<Vec<u32>>> {
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
        let idx: Vec<usize> = (0..prompts.len()).collect();
        for chunk in idx.chunks(self.batch_size.max(1)) {
            // Each prompt is prefilled alone; the decoding steps of the chunk run batched.
            let mut rows: Vec<GenRow> = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let p = &prompts[i];
                let p = &p[p.len().saturating_sub(keep)..];
                rows.push(GenRow {
                    index: i,
                    cache: self.prefill(&p[..p.len() - 1], None)?,
                    last: *p.last().unwrap(),
                    rng: sampler_rng(opts.seed, p),
                    done: opts.max_new_tokens == 0,
                });
            }
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
                let logits = self.llama.logits(&h)?.to_vec2::<f32>()?;
                for ((&r, cache), row_logits) in active.iter().zip(caches).zip(&logits) {
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
                    row.done = out.len() >= opts.max_new_tokens;
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
